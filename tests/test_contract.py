"""The HTTP contract written down (GET /openapi.json) and fuzzed with schemathesis against a
real server: no 5xx, no traceback, every response as the document says, and (stateful phase
and the held-record check) a scored transaction takes its label and its retry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
from schemathesis.core.transport import Response

from benchmarks import contract_hooks
from benchmarks.contract_fuzz import FUZZ_SERVER_ENV, fuzz
from tests.test_server import Server, _opt_ml


@pytest.fixture(scope="module")
def contract_server(
    small_package: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = _opt_ml(tmp_path_factory.mktemp("opt_ml"), small_package)
    srv = Server(root, {"SAGEMAKER_CONTAINER_LOG_LEVEL": "WARNING", **FUZZ_SERVER_ENV})
    srv.wait_healthy()
    yield srv
    srv.stop()


def test_the_document_is_served_and_names_every_route(contract_server: Server) -> None:
    r = httpx.get(contract_server.url + "/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/ping",
        "/invocations",
        "/execution-parameters",
        "/metrics",
        "/openapi.json",
    }
    row = doc["components"]["schemas"]["Row"]
    assert row["minItems"] == row["maxItems"] == 15
    assert json.loads(json.dumps(doc["info"]))["version"]  # the loaded package's version


def test_a_known_route_with_another_method_gets_405_naming_the_method(
    contract_server: Server,
) -> None:
    r = httpx.delete(contract_server.url + "/invocations")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert "use POST" in r.json()["error"]["message"]


def test_schemathesis_finds_no_5xx_no_traceback_and_no_undocumented_response(
    contract_server: Server, tmp_path: Path
) -> None:
    result = fuzz(contract_server.url, 400, seed=7, workdir=tmp_path, stateful_examples=100)
    assert result.status == 0, result.output
    assert result.generated >= 1_000, result.output
    # the stateful phase ran and followed the document's links from a scored transaction
    assert result.per_phase["stateful"] > 0 and result.linked > 0, result
    assert result.scored_transactions > 0, result


def _scored(url: str, tx_id: str, claimed: dict[str, object] | None = None) -> Response:
    """A transaction scored by the server, as schemathesis hands it to a check; ``claimed``
    replaces fields of the first prediction, as a server that answered wrongly would."""
    body = json.dumps(
        {
            "transactions": [
                {
                    "transaction_id": tx_id,
                    "customer_id": "c-held",
                    "terminal_id": "m-held",
                    "amount": 12.5,
                    # the last accepted second: never too old, whatever the fuzzing sent before
                    "timestamp": 99_999_999_999,
                }
            ]
        }
    )
    request = requests.Request(
        "POST", url + "/invocations", data=body, headers={"Content-Type": "application/json"}
    ).prepare()
    answer = httpx.post(url + "/invocations", content=body, headers=dict(request.headers))
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    doc["predictions"][0] |= claimed or {}
    headers = {k: [v] for k, v in answer.headers.items()}
    return Response(200, headers, json.dumps(doc).encode(), request, 0.0, verify=True)


def test_the_held_record_check_passes_on_a_scored_transaction(contract_server: Server) -> None:
    response = _scored(contract_server.url, "held-1")
    assert contract_hooks.scored_transactions_are_held(None, response, None) is None


def test_the_held_record_check_fails_on_an_id_the_store_does_not_know(
    contract_server: Server,
) -> None:
    response = _scored(contract_server.url, "held-2", {"transaction_id": "never-sent"})
    with pytest.raises(AssertionError, match="answered as unknown: \\['never-sent'\\]"):
        contract_hooks.scored_transactions_are_held(None, response, None)


def test_the_held_record_check_fails_when_the_retry_answers_otherwise(
    contract_server: Server,
) -> None:
    response = _scored(contract_server.url, "held-3", {"score": 0.5, "decision": "banana"})
    with pytest.raises(AssertionError, match="other answers"):
        contract_hooks.scored_transactions_are_held(None, response, None)
