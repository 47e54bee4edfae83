"""The HTTP contract written down (GET /openapi.json) and fuzzed with schemathesis against a
real server: no 5xx, no traceback, every response as the document says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.contract_fuzz import fuzz
from tests.test_server import Server, _opt_ml


@pytest.fixture(scope="module")
def contract_server(
    small_package: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = _opt_ml(tmp_path_factory.mktemp("opt_ml"), small_package)
    srv = Server(root, {"SAGEMAKER_CONTAINER_LOG_LEVEL": "WARNING"})
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
    status, generated, output = fuzz(contract_server.url, 600, seed=7, workdir=tmp_path)
    assert status == 0, output
    assert generated >= 1_000, output
