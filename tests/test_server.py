"""The server as SageMaker and payment systems see it: a real process on a loopback port."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest

from benchmarks import servers
from core.features import FEATURE_NAMES
from optimize.export import onnx_scores

ROW = [42.5, 0, 1, 2, 40.0, 9, 51.2, 40, 48.7, 3, 0.0, 20, 0.05, 90, 0.01]


class Server:
    """``serve`` (the SageMaker executable, or ``module``, a variant of it) started on a temp
    /opt/ml."""

    def __init__(
        self, root: Path, env: dict[str, str] | None = None, module: str = "serving.entrypoint"
    ) -> None:
        self.root = root
        self.port = servers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        full_env = {
            **os.environ,
            "FRAUD_SAGEMAKER_ROOT": str(root),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "FRAUD_BIND_HOST": "127.0.0.1",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            **(env or {}),
        }
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout_s: float = 60) -> None:
        servers.wait_healthy("serve", self.proc, self.port, self.log, timeout_s)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _messages(log_text: str) -> list[str]:
    """The ``message`` of every JSON log line (non-JSON lines, e.g. from a crash, skipped)."""
    out = []
    for line in log_text.splitlines():
        try:
            out.append(json.loads(line)["message"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _capturing_server(root: Path) -> Server:
    """A healthy server on ``root`` capturing every invocation under ``root/capture``."""
    srv = Server(root, {"FRAUD_CAPTURE_DIR": str(root / "capture"), "FRAUD_CAPTURE_PERCENT": "100"})
    srv.wait_healthy()
    return srv


def _opt_ml(tmp: Path, package: Path) -> Path:
    shutil.copytree(package, tmp / "model")
    return tmp


@pytest.fixture(scope="module")
def server(small_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = _opt_ml(tmp_path_factory.mktemp("opt_ml"), small_package)
    # Python test clients are slower than the server, so their requests arrive spread over
    # milliseconds: a 20 ms max delay lets the batcher gather them (the default is 0.5 ms)
    srv = Server(
        root,
        {
            "FRAUD_CAPTURE_DIR": str(root / "capture"),
            "FRAUD_CAPTURE_PERCENT": "100",
            "FRAUD_IDENTIFIER_FIELDS": "card_token",
            "FRAUD_HMAC_SECRET": "test-secret",
            "FRAUD_MAX_DELAY_US": "20000",
        },
    )
    srv.wait_healthy()
    yield srv
    srv.stop()


def post(
    srv: Server, body: bytes | str, content_type: str = "application/json", **headers: str
) -> httpx.Response:
    data = body.encode() if isinstance(body, str) else body
    return httpx.post(
        srv.url + "/invocations",
        content=data,
        headers={"content-type": content_type, **headers},
        timeout=10,
    )


def test_ping_is_healthy_with_an_empty_body(server: Server) -> None:
    r = httpx.get(server.url + "/ping")
    assert r.status_code == 200 and r.content == b""


def test_json_instances_get_scores_decisions_and_versions(
    server: Server, small_package: Path
) -> None:
    r = post(server, json.dumps({"instances": [ROW, ROW]}))
    assert r.status_code == 200, r.text
    body = r.json()
    manifest = json.loads((small_package / "manifest.json").read_text())
    assert body["model_version"] == manifest["model_version"]
    assert body["thresholds_version"] == manifest["thresholds_version"]
    expected = onnx_scores(small_package / "model.onnx", np.array([ROW], dtype=np.float32))[0]
    for p in body["predictions"]:
        assert abs(p["score"] - expected) < 1e-3  # the picked variant may be int8 or fp16
        assert p["decision"] in {"approve", "review", "decline"}


def test_named_fields_echo_the_extra_fields(server: Server) -> None:
    instance = dict(zip(FEATURE_NAMES, ROW, strict=True)) | {"transaction_id": "tx-1"}
    r = post(server, json.dumps({"instances": [instance]}))
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["transaction_id"] == "tx-1"


def test_each_decision_is_logged_once_with_versions_and_hashed_identifiers(
    server: Server,
) -> None:
    instances = [
        dict(zip(FEATURE_NAMES, ROW, strict=True)) | {"card_token": f"tok-{i}", "tx": i}
        for i in range(2)
    ]
    r = post(
        server,
        json.dumps({"instances": instances}),
        **{"X-Amzn-SageMaker-Inference-Id": "decision-log-test"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    records: list[dict[str, object]] = []
    deadline = time.monotonic() + 5  # lines are written in batches, at least every 0.1 s
    while len(records) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        records = [
            json.loads(line)
            for line in server.log.read_text().splitlines()
            if '"decision-log-test"' in line and '"fraud.decisions"' in line
        ]
    assert [rec["tx"] for rec in records] == [0, 1]
    for rec, prediction in zip(records, body["predictions"], strict=True):
        assert rec["model_version"] == body["model_version"]
        assert rec["thresholds_version"] == body["thresholds_version"]
        assert rec["decision"] == prediction["decision"]
        assert rec["score"] == prediction["score"]
        assert str(rec["card_token"]).startswith("hmac-sha256:")  # never the raw token
        assert "tok-" not in json.dumps(rec)


def test_csv_npy_and_jsonlines_give_the_same_scores(server: Server) -> None:
    rows = np.array([ROW, ROW], dtype=np.float32)
    rows[1, [0, 1, 2, 4, 12]] = [310.25, 1, 0, 77.5, 0.5]
    as_json = [p["score"] for p in post(server, json.dumps(rows.tolist())).json()["predictions"]]
    csv = "\n".join(",".join(repr(float(v)) for v in row) for row in rows) + "\n"
    buf = io.BytesIO()
    np.save(buf, rows)
    lines = "\n".join(json.dumps(r) for r in rows.tolist())
    for body, ctype in (
        (csv, "text/csv"),
        (buf.getvalue(), "application/x-npy"),
        (lines, "application/jsonlines"),
    ):
        r = post(server, body, ctype)
        assert r.status_code == 200, r.text
        got = (
            [p["score"] for p in r.json()["predictions"]]
            if "json" in r.headers["content-type"]
            and not r.headers["content-type"].endswith("jsonlines")
            else [json.loads(line)["score"] for line in r.text.splitlines()]
        )
        np.testing.assert_allclose(got, as_json, rtol=0, atol=1e-6)


def test_accept_csv_returns_one_score_per_line(server: Server) -> None:
    r = post(server, json.dumps([ROW, ROW, ROW]), accept="text/csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert len(r.text.strip().splitlines()) == 3


def test_custom_attributes_are_echoed_and_unknown_headers_tolerated(server: Server) -> None:
    r = post(
        server,
        json.dumps([ROW]),
        **{
            "X-Amzn-SageMaker-Custom-Attributes": "trace=abc",
            "X-Amzn-SageMaker-Target-Variant": "AllTraffic",
            "X-Something-Else": "1",
        },
    )
    assert r.status_code == 200
    assert r.headers["x-amzn-sagemaker-custom-attributes"] == "trace=abc"


@pytest.mark.parametrize(
    ("body", "ctype", "headers", "status", "fragment"),
    [
        ("{not json", "application/json", {}, 400, "invalid JSON"),
        (json.dumps([ROW[:14]]), "application/json", {}, 400, "14 values, expected 15"),
        ("[[NaN" + ", 1" * 14 + "]]", "application/json", {}, 400, "non-finite"),
        (json.dumps([["x"] + ROW[1:]]), "application/json", {}, 400, "not a number"),
        (json.dumps([[*ROW[:3], -2, *ROW[4:]]]), "application/json", {}, 400, "customer_count_1d"),
        ("", "application/json", {}, 400, "empty body"),
        (
            json.dumps([dict(zip(FEATURE_NAMES, ROW, strict=True))])[:-2] + ', "id": NaN}]',
            "application/json",
            {},
            400,
            "extra fields",
        ),
        ("1,2", "application/xml", {}, 415, "application/xml"),
        (json.dumps([ROW]), "application/json", {"accept": "image/png"}, 406, "image/png"),
    ],
)
def test_bad_input_gets_a_4xx_json_error_naming_the_problem(
    server: Server, body: str, ctype: str, headers: dict[str, str], status: int, fragment: str
) -> None:
    r = post(server, body, ctype, **headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert fragment in error["message"]
    assert error["request_id"] and "Traceback" not in r.text


def test_oversize_body_gets_413(server: Server) -> None:
    r = post(server, b"[" + b"1," * (3_500_000) + b"1]")
    assert r.status_code == 413
    assert "limit" in r.json()["error"]["message"]


def test_values_outside_the_training_range_are_scored_and_flagged(server: Server) -> None:
    row = list(ROW)
    row[0] = 1e6  # a possible but unseen amount
    r = post(server, json.dumps([row, ROW]))
    assert r.status_code == 200
    flags = [p["out_of_range"] for p in r.json()["predictions"]]
    assert flags == [True, False]
    assert (
        'fraud_out_of_range_values_total{feature="amount"}'
        in httpx.get(server.url + "/metrics").text
    )


def test_execution_parameters_for_batch_transform(server: Server) -> None:
    r = httpx.get(server.url + "/execution-parameters")
    assert r.json() == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


def test_concurrent_requests_share_batches_and_get_their_own_scores(server: Server) -> None:
    rng = np.random.default_rng(0)
    rows = [[float(v) for v in ROW] for _ in range(64)]
    for r in rows:
        r[0] = float(rng.uniform(1, 200))
    alone = {
        i: post(server, json.dumps([r])).json()["predictions"][0]["score"]
        for i, r in enumerate(rows)
    }

    def metric(text: str, name: str) -> float:
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(name + " ") or line.startswith(name + "{")
        )

    before = httpx.get(server.url + "/metrics").text
    concurrency, results, errors = 16, {}, []

    def client(k: int) -> None:
        with httpx.Client(timeout=10) as c:
            for _ in range(20):
                for i in range(k, len(rows), concurrency):
                    r = c.post(
                        server.url + "/invocations",
                        content=json.dumps([rows[i]]),
                        headers={"content-type": "application/json"},
                    )
                    if r.status_code != 200:
                        errors.append(r.text)
                    results.setdefault(i, []).append(r.json()["predictions"][0]["score"])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, scores in results.items():
        assert max(abs(s - alone[i]) for s in scores) <= 1e-6
    after = httpx.get(server.url + "/metrics").text
    batches = metric(after, "fraud_batch_rows_count") - metric(before, "fraud_batch_rows_count")
    rows_scored = metric(after, "fraud_batch_rows_sum") - metric(before, "fraud_batch_rows_sum")
    assert rows_scored == 20 * len(rows)
    assert rows_scored / batches >= concurrency / 2


def test_ping_stays_fast_while_scoring_is_saturated(server: Server) -> None:
    stop = threading.Event()
    body = json.dumps([ROW] * 200)

    def hammer() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                c.post(
                    server.url + "/invocations",
                    content=body,
                    headers={"content-type": "application/json"},
                )

    threads = [threading.Thread(target=hammer) for _ in range(24)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        worst = 0.0
        for _ in range(10):
            started = time.perf_counter()
            assert httpx.get(server.url + "/ping", timeout=2).status_code == 200
            worst = max(worst, time.perf_counter() - started)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert worst < 2.0


Answer = tuple[int, dict[str, str], bytes]  # status, headers (names lower-cased), body


def parse_responses(data: bytes) -> tuple[list[Answer], bytes]:
    """The complete HTTP/1.1 responses at the start of ``data`` (each framed by its
    Content-Length; none: no body, as a 100 Continue), and the bytes after them."""
    out = []
    while (end := data.find(b"\r\n\r\n")) >= 0:
        status_line, *lines = data[:end].decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
        length = int(headers.get("content-length", 0))
        if len(data) < end + 4 + length:
            break
        out.append((int(status_line.split()[1]), headers, data[end + 4 : end + 4 + length]))
        data = data[end + 4 + length :]
    return out, data


def _raw_responses(port: int, payload: bytes, count: int) -> list[Answer]:
    """Send ``payload`` in one write on one connection; read ``count`` responses off it."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        while len(parse_responses(data)[0]) < count:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection: {data!r}"
            data += chunk
    answers, rest = parse_responses(data)
    assert len(answers) == count and rest == b"", data  # nothing more than the answers
    return answers


def test_under_overload_invocations_get_the_documented_503_and_ping_stays_up(
    small_package: Path, tmp_path: Path
) -> None:
    # a server whose batcher always says full or behind: every real-time request is shed,
    # refused by the HTTP protocol before the app (serving.admission)
    srv = Server(_opt_ml(tmp_path, small_package), module="benchmarks.shedding_server")
    try:
        srv.wait_healthy()
        doc = httpx.get(srv.url + "/openapi.json").json()
        documented = doc["paths"]["/invocations"]["post"]["responses"]["503"]
        ref = documented["content"]["application/json"]["schema"]["$ref"]
        error_schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]

        r = post(srv, json.dumps([ROW]))
        assert r.status_code == 503 and r.headers["content-type"] == "application/json"
        jsonschema.validate(r.json(), error_schema)
        assert r.json()["error"]["code"] == "overloaded"
        assert r.headers["x-request-id"] == r.json()["error"]["request_id"] != ""
        r = post(srv, json.dumps([ROW]), **{"X-Amzn-SageMaker-Inference-Id": 'inf-"7"'})
        assert r.status_code == 503
        assert r.headers["x-request-id"] == r.json()["error"]["request_id"] == 'inf-"7"'
        assert httpx.get(srv.url + "/ping").status_code == 200

        # keep-alive, pipelined in one write: a refused request whose body reads like a
        # request itself (skipped exactly, it is never parsed as one), then /ping, then the
        # same refused request again, then /metrics
        body = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
        refused = (
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        ping = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
        metrics = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        answers = _raw_responses(srv.port, refused + ping + refused + metrics, 4)
        assert [status for status, _, _ in answers] == [503, 200, 503, 200]
        for _, headers, content in answers[::2]:
            assert json.loads(content)["error"]["code"] == "overloaded"
            assert headers.get("connection") != "close"
        shed = 'fraud_requests_total{route="/invocations",status="503"} 4.0'
        assert shed in answers[3][2].decode().splitlines()
    finally:
        srv.stop()


def test_captured_records_follow_the_sagemaker_format(server: Server) -> None:
    r = post(
        server,
        json.dumps(
            {
                "instances": [
                    dict(zip(FEATURE_NAMES, ROW, strict=True)) | {"card_token": "4111111111111111"}
                ]
            }
        ),
        **{"X-Amzn-SageMaker-Inference-Id": "inf-123"},
    )
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    record = None
    while record is None and time.monotonic() < deadline:
        for path in (server.root / "capture").rglob("*.jsonl"):
            for line in path.read_text().splitlines():
                obj = json.loads(line)
                if obj["eventMetadata"].get("inferenceId") == "inf-123":
                    record = obj
        time.sleep(0.05)
    assert record is not None
    assert record["eventVersion"] == "0"
    assert record["captureData"]["endpointInput"]["mode"] == "INPUT"
    assert record["captureData"]["endpointOutput"]["encoding"] == "JSON"
    captured = json.dumps(record)
    assert "4111111111111111" not in captured and "hmac-sha256:" in captured
    parts = (
        next((server.root / "capture").rglob("*.jsonl")).relative_to(server.root / "capture").parts
    )
    assert parts[:2] == ("local", "AllTraffic") and len(parts) == 7  # yyyy/mm/dd/hh/file


def test_a_tampered_package_never_becomes_healthy(small_package: Path, tmp_path: Path) -> None:
    root = _opt_ml(tmp_path, small_package)
    thresholds = root / "model" / "thresholds.json"
    thresholds.write_text(thresholds.read_text().replace("approve", "APPROVE"))
    srv = Server(root)
    try:
        deadline = time.monotonic() + 30
        message = ""
        while time.monotonic() < deadline:
            try:
                r = httpx.get(srv.url + "/ping", timeout=2)
                message = r.json()["error"]["message"]
                if "thresholds.json" in message:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert r.status_code == 503 and "thresholds.json" in message
        r = post(srv, json.dumps([ROW]))
        assert r.status_code == 503
    finally:
        srv.stop()


def test_sigterm_under_load_answers_every_accepted_request_and_flushes_capture(
    small_package: Path, tmp_path: Path
) -> None:
    root = _opt_ml(tmp_path, small_package)
    srv = _capturing_server(root)
    statuses: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post(
                        srv.url + "/invocations",
                        content=json.dumps([ROW] * 10),
                        headers={"content-type": "application/json"},
                    )
                    statuses.append(r.status_code)
                except (httpx.ConnectError, httpx.RemoteProtocolError):
                    # refused, or an idle keep-alive connection closed by the shutdown before
                    # the server read this request: never accepted
                    return
                except httpx.TransportError as exc:
                    failures.append(repr(exc))
                    return

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once its graceful shutdown is done, so -SIGTERM is a clean
    # exit here; the log line proves the lifespan shutdown (drain + capture flush) ran
    assert srv.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    elapsed = time.monotonic() - started
    assert "shut down" in _messages(srv.log.read_text())
    stop.set()
    for t in threads:
        t.join()
    assert elapsed < 25
    assert statuses and set(statuses) <= {200, 503}
    assert not failures, failures[:3]
    captured = sum(len(p.read_text().splitlines()) for p in (root / "capture").rglob("*.jsonl"))
    assert captured == statuses.count(200)


def _twenty_single_rows_answered(srv: Server) -> None:
    with httpx.Client(timeout=10) as c:
        for _ in range(20):
            r = c.post(
                srv.url + "/invocations",
                content=json.dumps([ROW]),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 200


def test_several_workers_serve_and_each_drains_on_sigterm(
    small_package: Path, tmp_path: Path
) -> None:
    root = _opt_ml(tmp_path, small_package)
    srv = Server(root, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    srv.wait_healthy()
    _twenty_single_rows_answered(srv)
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    messages = _messages(srv.log.read_text())
    assert messages.count("model loaded") == 2  # one per worker process
    assert messages.count("draining") == 2
    assert messages.count("shut down") == 2


def _worker_pids(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


def test_a_killed_worker_is_replaced_and_the_others_keep_serving(
    small_package: Path, tmp_path: Path
) -> None:
    root = _opt_ml(tmp_path, small_package)
    srv = Server(root, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    try:
        srv.wait_healthy()
        deadline = time.monotonic() + 120  # generous: the replacement imports and loads afresh
        # /ping answers once one worker is ready: wait for both, so the victim is not one
        # still loading (whose replacement would bring the count to 2, not 3)
        while _messages(srv.log.read_text()).count("model loaded") < 2:
            assert time.monotonic() < deadline, "a worker never loaded the model"
            time.sleep(0.1)
        before = _worker_pids(srv.proc.pid)
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        while time.monotonic() < deadline:
            now = _worker_pids(srv.proc.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.1)
        assert len(now) == 2 and victim not in now, now
        while _messages(srv.log.read_text()).count("model loaded") < 3:
            assert time.monotonic() < deadline, "the replacement never loaded the model"
            time.sleep(0.1)
        _twenty_single_rows_answered(srv)
        assert "worker died; starting a replacement" in _messages(srv.log.read_text())
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        srv.stop()


def test_every_answered_decision_is_in_the_log_and_capture_when_killed_right_after(
    small_package: Path, tmp_path: Path
) -> None:
    # the decision line and the capture record reach the kernel before the response is sent:
    # SIGKILL straight after the last answer loses none of them
    root = _opt_ml(tmp_path, small_package)
    srv = _capturing_server(root)
    ids = [f"answered-{i}" for i in range(30)]
    with httpx.Client(timeout=10) as client:
        for request_id in ids:
            r = client.post(
                srv.url + "/invocations",
                content=json.dumps({"instances": [ROW]}),
                headers={
                    "content-type": "application/json",
                    "x-amzn-sagemaker-inference-id": request_id,
                },
            )
            assert r.status_code == 200
    srv.proc.kill()
    srv.proc.wait(timeout=10)
    logged = set()
    for line in srv.log.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("logger") == "fraud.decisions":
            logged.add(doc["request_id"])
    captured = {
        json.loads(line)["eventMetadata"]["inferenceId"]
        for path in (root / "capture").rglob("*.jsonl")
        for line in path.read_text().splitlines()
    }
    assert set(ids) <= logged
    assert set(ids) <= captured
