"""JSON log lines: ordinary records at once, decision lines batched, same shape for both."""

from __future__ import annotations

import io
import json
import logging

from serving.logs import BatchingHandler, JsonFormatter


def _handler() -> tuple[BatchingHandler, io.StringIO]:
    out = io.StringIO()
    handler = BatchingHandler(out, max_lines=3)
    handler.setFormatter(JsonFormatter())
    return handler, out


def test_decision_lines_wait_for_a_flush_and_keep_their_order() -> None:
    handler, out = _handler()
    handler.append_info("fraud.decisions", "decision", {"request_id": "a", "score": 0.5})
    handler.append_info("fraud.decisions", "decision", {"request_id": "b", "score": 0.25})
    assert out.getvalue() == ""
    handler.flush()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["a", "b"]
    assert lines[0]["level"] == "INFO" and lines[0]["logger"] == "fraud.decisions"
    assert lines[0]["message"] == "decision" and lines[0]["time"].endswith("Z")


def test_an_ordinary_record_is_written_at_once_after_waiting_decisions() -> None:
    handler, out = _handler()
    handler.append_info("fraud.decisions", "decision", {"request_id": "a"})
    logger = logging.getLogger("test.logs.ordinary")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("model refused", extra={"fields": {"model_dir": "/x"}})
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["decision", "model refused"]
    assert lines[1]["model_dir"] == "/x" and lines[1]["level"] == "WARNING"


def test_a_full_batch_is_written_without_waiting_for_the_timer() -> None:
    handler, out = _handler()
    for i in range(3):
        handler.append_info("fraud.decisions", "decision", {"i": i})
    assert len(out.getvalue().splitlines()) == 3
