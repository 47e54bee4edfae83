"""Bad input to ``fraud deploy`` is refused before any AWS call, with a message naming it.

AWS here is a local HTTP server that counts requests: every refusal must leave it at zero.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import run
from deploy.config import AwsSettings, EndpointSpec
from deploy.errors import CredentialsMissing, SettingsError
from deploy.package import PackageRecord, file_sha256, record_path
from tests.test_deploy.conftest import make_tarball


class _Counter(http.server.BaseHTTPRequestHandler):
    requests = 0

    def _any(self) -> None:
        type(self).requests += 1
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_HEAD = _any

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[type[_Counter]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Counter.requests = 0
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("FRAUD_AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    yield _Counter
    server.shutdown()
    server.server_close()


def _apply(tarball: Path, *extra: str) -> list[str]:
    return [
        "deploy",
        *extra[:2],
        "apply",
        "--endpoint",
        "fraud-score",
        "--role-arn",
        "arn:aws:iam::123456789012:role/r",
        "--image-uri",
        "img",
        "--kms-key-arn",
        "arn:aws:kms:eu-west-1:123456789012:key/k",
        "--bucket",
        "b",
        "--tarball",
        str(tarball),
        *extra[2:],
    ]


@pytest.fixture()
def packaged(tmp_path: Path) -> Path:
    tarball = make_tarball(tmp_path / "model.tar.gz")
    PackageRecord("b", "models/v/model.tar.gz", file_sha256(tarball), "v").save(
        record_path(tarball)
    )
    return tarball


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--region", "mars-east-1"), "unknown region 'mars-east-1'"),
        (("", "", "--instance-type", "ml.m5.large"), "instance type 'ml.m5.large' is not allowed"),
        (("", "", "--canary-percent", "60"), "canary size 60 % is outside 1-50 %"),
        (("", "", "--instance-count", "1"), "instance count 1 is below 2"),
    ],
)
def test_apply_refuses_bad_settings_before_any_aws_call(
    fake_aws: type[_Counter],
    packaged: Path,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    message: str,
) -> None:
    argv = [a for a in _apply(packaged, *extra) if a]
    assert run(argv, Path("artifacts")) == 1
    assert message in capsys.readouterr().err
    assert fake_aws.requests == 0


def test_apply_refuses_missing_credentials_before_any_aws_call(
    fake_aws: type[_Counter],
    packaged: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert run(_apply(packaged), Path("artifacts")) == 1
    assert "no AWS credentials" in capsys.readouterr().err
    assert fake_aws.requests == 0


def test_apply_refuses_a_package_that_differs_from_the_upload(
    fake_aws: type[_Counter], packaged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_tarball(packaged, b"tampered")  # same path, other bytes: not what was uploaded
    assert run(_apply(packaged), Path("artifacts")) == 1
    err = capsys.readouterr().err
    assert "model.tar.gz has SHA-256" in err and "was uploaded with" in err
    assert fake_aws.requests == 0


def test_package_refuses_a_tarball_whose_files_do_not_match_the_manifest(
    fake_aws: type[_Counter], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tarfile

    tarball = make_tarball(tmp_path / "model.tar.gz")
    with tarfile.open(tarball, "r:gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    (tmp_path / "x" / "model.pt").write_bytes(b"flipped")
    with tarfile.open(tarball, "w:gz") as tar:
        for path in sorted((tmp_path / "x").iterdir()):
            tar.add(path, arcname=path.name)
    argv = ["deploy", "package", "--tarball", str(tarball), "--bucket", "b"]
    assert run(argv, Path("artifacts")) == 1
    assert "model.pt does not match its SHA-256 in manifest.json" in capsys.readouterr().err
    assert fake_aws.requests == 0


def test_unknown_profile_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(CredentialsMissing, match="AWS_PROFILE='prod' is not in the AWS config"):
        AwsSettings.from_env({"AWS_REGION": "eu-west-1", "AWS_PROFILE": "prod"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"traffic": "LINEAR", "canary_percent": 5}, "linear step 5 % is below 10 %"),
        ({"traffic": "BIG_BANG"}, "traffic shifting 'BIG_BANG'"),
        ({"baking_s": 4000}, "baking time 4000 s"),
        ({"name": "bad_name!"}, "endpoint name 'bad_name!'"),
        ({"instance_type": "ml.p4d.24xlarge"}, "is not allowed"),
    ],
)
def test_endpoint_spec_names_the_bad_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        EndpointSpec(**{"name": "fraud", **kwargs})  # type: ignore[arg-type]
