"""The outage backlog's spool (serving.backlog): files, processes and renames are real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serving.backlog import Backlog
from serving.feature_store.base import Transaction


def _tx(k: int) -> Transaction:
    return Transaction(f"t-{k}" if k % 2 else k, f"1t-{k}", "1c", "1m", 1_000 + k, 100 * k)


def _spool(directory: Path, pid: int, transactions: list[Transaction], tail: bytes = b"") -> None:
    """A spool as a stopped (or running) process ``pid`` left it."""
    writer = Backlog(directory)
    writer.add(transactions)
    writer.close()
    (directory / next(p.name for p in directory.iterdir())).rename(
        directory / f"backlog-{pid}.jsonl"
    )
    with (directory / f"backlog-{pid}.jsonl").open("ab") as f:
        f.write(tail)


def test_the_spool_of_a_stopped_process_is_taken_over_first(tmp_path: Path) -> None:
    stopped = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(stopped.stdout)
    _spool(tmp_path, dead_pid, [_tx(1), _tx(2)], tail=b'["t-3", "1t-3", "1c"')  # cut short
    backlog = Backlog(tmp_path)
    backlog.add([_tx(9)])
    assert backlog.recover() == 2
    assert list(backlog.queue) == [_tx(1), _tx(2), _tx(9)]
    # the stopped process's file is gone; this process's spool holds all three
    (own,) = list(tmp_path.iterdir())
    assert len(own.read_bytes().splitlines()) == 3
    backlog.written(list(backlog.queue)[:2])
    assert own.read_bytes() != b""  # one still waits
    backlog.written(list(backlog.queue))
    assert own.read_bytes() == b""
    backlog.close()


def test_a_running_process_keeps_its_spool(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as running:
        try:
            _spool(tmp_path, running.pid, [_tx(1)])
            backlog = Backlog(tmp_path)
            assert backlog.recover() == 0
            assert [p.name for p in tmp_path.iterdir()] == [f"backlog-{running.pid}.jsonl"]
        finally:
            running.kill()
    assert Backlog(tmp_path).recover() == 1  # once it has stopped


def test_the_queue_is_bounded_and_nothing_is_written_without_a_directory(tmp_path: Path) -> None:
    backlog = Backlog(None, maxlen=3)
    backlog.add(_tx(k) for k in range(5))
    assert [tx.time_s for tx in backlog.queue] == [1_002, 1_003, 1_004]
    assert backlog.recover() == 0
    # a batch taken from the front, then the full queue drops its oldest as more are added:
    # only what is still at the front leaves once the batch is written
    batch = list(backlog.queue)[:2]
    backlog.add([_tx(5)])
    backlog.written(batch)
    assert [tx.time_s for tx in backlog.queue] == [1_004, 1_005]


def test_a_directory_that_cannot_be_written_keeps_the_backlog_in_memory(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    backlog = Backlog(tmp_path / "a-file" / "backlog")  # mkdir fails (not a directory)
    backlog.add([_tx(1), _tx(2)])  # does not raise: the fallback answers go out
    assert [tx.time_s for tx in backlog.queue] == [1_001, 1_002]
    assert backlog.directory is None
    assert Backlog(tmp_path / "a-file" / "backlog").recover() == 0


def test_a_long_outage_rewrites_the_spool_from_the_queue(tmp_path: Path) -> None:
    backlog = Backlog(tmp_path, maxlen=3)
    for k in range(20):
        backlog.add([_tx(k)])
        (spool,) = list(tmp_path.iterdir())
        assert len(spool.read_bytes().splitlines()) <= 6  # twice the bound at most
    backlog.close()
    taker = Backlog(tmp_path)
    stopped = tmp_path / "backlog-999999999.jsonl"
    spool.rename(stopped)  # as if its process had stopped (no such pid)
    taker.recover()
    # every transaction still queued was in the spool (and some older ones too)
    assert [tx.time_s for tx in taker.queue][-3:] == [1_017, 1_018, 1_019]
