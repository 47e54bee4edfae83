"""The micro-batcher on its own: coalescing, own rows back, queue bound, deadline, drain."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from serving.batcher import BatchStats, MicroBatcher, scores_within
from serving.errors import DeadlineExceeded, Overloaded


def _rows(i: int, n: int = 1) -> np.ndarray:
    return np.full((n, 15), float(i), dtype=np.float32)


def _double_first_column(x: np.ndarray) -> np.ndarray:
    return x[:, 0] * 2


def test_concurrent_requests_coalesce_and_get_their_own_rows_in_order() -> None:
    batches: list[tuple[int, int]] = []

    async def main() -> list[np.ndarray]:
        b = MicroBatcher(
            _double_first_column,
            max_batch_rows=64,
            stats=BatchStats(on_batch=lambda r, q: batches.append((r, q))),
        )
        b.start()
        out = await asyncio.gather(
            *(b.submit(_rows(i, n=1 + i % 3), client=("10.0.0.1", i)) for i in range(32))
        )
        await b.close()
        return out

    results = asyncio.run(main())
    for i, scores in enumerate(results):
        assert scores.tolist() == [2.0 * i] * (1 + i % 3)
    assert sum(q for _, q in batches) == 32
    assert len(batches) <= 3  # 32 concurrent requests share a handful of calls


def test_a_batch_never_exceeds_the_row_limit_unless_one_request_does() -> None:
    sizes: list[int] = []

    async def main() -> None:
        b = MicroBatcher(
            _double_first_column,
            max_batch_rows=10,
            stats=BatchStats(on_batch=lambda r, q: sizes.append(r)),
        )
        b.start()
        await asyncio.gather(*(b.submit(_rows(i, 4)) for i in range(10)), b.submit(_rows(0, 25)))
        await b.close()

    asyncio.run(main())
    assert max(s for s in sizes if s != 25) <= 10 and 25 in sizes


def test_a_full_queue_answers_overloaded_at_once() -> None:
    def slow(x: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return x[:, 0]

    async def main() -> list[object]:
        b = MicroBatcher(slow, max_batch_rows=100, max_queue_rows=40, inline_max_rows=0)
        b.start()
        tasks = [asyncio.ensure_future(b.submit(_rows(i, 10))) for i in range(20)]
        out = await asyncio.gather(*tasks, return_exceptions=True)
        await b.close()
        return out

    out = asyncio.run(main())
    overloaded = [o for o in out if isinstance(o, Overloaded)]
    assert overloaded and "queue full" in str(overloaded[0])
    assert any(isinstance(o, np.ndarray) for o in out)


def test_a_request_past_its_deadline_fails_instead_of_running_late() -> None:
    calls: list[int] = []

    def slow(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        time.sleep(0.2)
        return x[:, 0]

    async def main() -> list[object]:
        b = MicroBatcher(slow, max_batch_rows=1, deadline_s=0.05, inline_max_rows=0)
        b.start()
        out = await asyncio.gather(*(b.submit(_rows(i)) for i in range(3)), return_exceptions=True)
        await b.close()
        return out

    out = asyncio.run(main())
    assert isinstance(out[0], np.ndarray)
    assert all(isinstance(o, DeadlineExceeded) for o in out[1:])
    assert "deadline 50 ms" in str(out[1])
    assert calls == [1]  # the late ones were never scored


def test_close_scores_everything_already_accepted() -> None:
    async def main() -> tuple[list[np.ndarray], Exception | None]:
        b = MicroBatcher(_double_first_column, inline_max_rows=0)
        b.start()
        tasks = [asyncio.ensure_future(b.submit(_rows(i))) for i in range(50)]
        await asyncio.sleep(0)
        await b.close()
        late: Exception | None = None
        try:
            await b.submit(_rows(0))
        except Overloaded as exc:
            late = exc
        return await asyncio.gather(*tasks), late

    done, late = asyncio.run(main())
    assert [float(d[0]) for d in done] == [2.0 * i for i in range(50)]
    assert isinstance(late, Overloaded)


def test_a_failing_backend_fails_its_batch_not_the_batcher() -> None:
    calls = {"n": 0}

    def flaky(x: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("backend fault")
        return x[:, 0]

    async def main() -> tuple[object, object]:
        b = MicroBatcher(flaky)
        b.start()
        first = await asyncio.gather(b.submit(_rows(1)), return_exceptions=True)
        second = await b.submit(_rows(2))
        await b.close()
        return first[0], second

    first, second = asyncio.run(main())
    assert isinstance(first, RuntimeError)
    assert isinstance(second, np.ndarray) and second.tolist() == [2.0]


@pytest.mark.parametrize("inline", [0, 1_000])
def test_inline_and_threaded_scoring_give_identical_results(inline: int) -> None:
    async def main() -> np.ndarray:
        b = MicroBatcher(_double_first_column, inline_max_rows=inline)
        b.start()
        out = await b.submit(_rows(3, 20))
        await b.close()
        return out

    assert asyncio.run(main()).tolist() == [6.0] * 20


def test_a_lone_client_is_scored_at_once_without_waiting_for_company() -> None:
    waits: list[float] = []

    async def main() -> list[np.ndarray]:
        b = MicroBatcher(
            _double_first_column, max_delay_us=50_000, stats=BatchStats(on_wait=waits.append)
        )
        b.start()
        out = []
        for i in range(5):  # one connection, one request at a time (concurrency 1)
            out.append(await b.submit(_rows(i), client=("10.0.0.1", 5000)))
        await b.close()
        return out

    assert [float(o[0]) for o in asyncio.run(main())] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert waits == [0.0] * 5  # scored on arrival: no queue wait, no max-delay wait


def test_close_waits_for_a_batch_already_taken_from_the_queue() -> None:
    def slow(x: np.ndarray) -> np.ndarray:
        time.sleep(0.1)
        return x[:, 0]

    async def main() -> np.ndarray:
        b = MicroBatcher(slow, inline_max_rows=0)  # scored on the worker thread
        b.start()
        task = asyncio.ensure_future(b.submit(_rows(7, 3)))
        await asyncio.sleep(0.02)  # the collector has taken it; scoring is under way
        await b.close()
        assert task.done()
        return task.result()

    assert asyncio.run(main()).tolist() == [7.0] * 3


def test_full_turns_true_while_the_queue_is_at_its_limit_and_false_once_drained() -> None:
    def slow(x: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return x[:, 0]

    async def main() -> tuple[bool, bool, bool]:
        b = MicroBatcher(slow, max_batch_rows=10, max_queue_rows=20, inline_max_rows=0)
        b.start()
        before = b.full
        tasks = [asyncio.ensure_future(b.submit(_rows(0, 10)))]
        await asyncio.sleep(0.01)  # that batch is scoring (50 ms) while two more arrive
        tasks += [asyncio.ensure_future(b.submit(_rows(i, 10))) for i in (1, 2)]
        await asyncio.sleep(0.01)
        during = b.full
        await asyncio.gather(*tasks, return_exceptions=True)
        after = b.full
        await b.close()
        return before, during, after

    assert asyncio.run(main()) == (False, True, False)


def test_real_time_rows_are_scored_before_bulk_rows_queued_earlier() -> None:
    scored: list[float] = []

    def score(x: np.ndarray) -> np.ndarray:
        scored.extend(sorted(set(x[:, 0].tolist())))
        return x[:, 0] * 2

    async def main() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = MicroBatcher(score, max_batch_rows=64, max_delay_us=0)
        b.start()
        bulk = [b.enqueue(_rows(7, 40), bulk=True), b.enqueue(_rows(8, 40), bulk=True)]
        realtime = b.enqueue(_rows(1))  # arrives last, in the same step
        out = await asyncio.gather(realtime, *bulk)
        await b.close()
        return out[0], out[1], out[2]

    realtime, first_bulk, second_bulk = asyncio.run(main())
    assert scored == [1.0, 7.0, 8.0]  # real-time first, then bulk in arrival order
    assert realtime.tolist() == [2.0]
    assert first_bulk.tolist() == [14.0] * 40 and second_bulk.tolist() == [16.0] * 40


def test_bulk_rows_do_not_fill_the_real_time_queue() -> None:
    async def main() -> np.ndarray:
        b = MicroBatcher(_double_first_column, max_queue_rows=10)
        b.start()
        bulk = b.enqueue(_rows(3, 100), bulk=True)
        assert not b.full and b.queued_rows == 0
        out = await b.submit(_rows(2, 5))
        await bulk
        await b.close()
        return out

    assert asyncio.run(main()).tolist() == [4.0] * 5


def test_once_the_oldest_queued_request_waited_too_long_new_ones_are_refused_at_once() -> None:
    def slow(x: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return x[:, 0] * 2

    async def main() -> None:
        b = MicroBatcher(slow, max_batch_rows=1, inline_max_rows=0, shed_wait_s=0.02)
        b.start()
        first = [asyncio.ensure_future(b.submit(_rows(i))) for i in range(3)]
        await asyncio.sleep(0.03)  # the first is being scored, the others have queued 30 ms
        assert b.full
        with pytest.raises(Overloaded, match="behind"):
            await b.submit(_rows(9))
        assert [r.tolist() for r in await asyncio.gather(*first)] == [[0.0], [2.0], [4.0]]
        assert not b.full  # nothing queued any more
        await b.close()

    asyncio.run(main())


def test_while_the_loop_is_behind_no_request_waits_for_company() -> None:
    # two clients arriving close together: company is expected, so the second request
    # queues and the collector waits up to the max delay (10 s here) for more; while the
    # loop is behind, the first is scored on arrival and a queued one without the wait
    async def main(behind: bool) -> tuple[bool, bool]:
        b = MicroBatcher(_double_first_column, max_delay_us=10_000_000)
        b.loop_behind = lambda: behind
        b.start()
        for port in (1, 2):  # two active connections, arrivals microseconds apart
            b.admit(_rows(0), client=("10.0.0.1", port))
        scored_on_arrival = b.admit(_rows(3), client=("10.0.0.1", 1)) is not None
        b._busy = True  # as while a batch is scored: the next request must queue
        queued = b.enqueue(_rows(4))
        b._busy = False
        for _ in range(10):  # a few turns of the loop, far less than the max delay
            await asyncio.sleep(0)
        done = queued.done()
        queued.cancel()
        b._closing = True
        assert b._task is not None
        b._task.cancel()
        return scored_on_arrival, done

    assert asyncio.run(main(behind=True)) == (True, True)
    assert asyncio.run(main(behind=False)) == (False, False)


def test_a_caller_waits_for_its_scores_no_longer_than_its_timeout() -> None:
    async def main() -> tuple[list[float], str, bool, bool]:
        b = MicroBatcher(_double_first_column)
        b.start()
        scored = await scores_within(b.enqueue(_rows(3)), 10.0, "A_TIMEOUT")
        stuck: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        with pytest.raises(DeadlineExceeded) as raised:
            await scores_within(stuck, 0.01, "A_TIMEOUT")
        timers_left = bool(asyncio.get_running_loop()._scheduled)  # type: ignore[attr-defined]
        await b.close()
        return scored.tolist(), str(raised.value), stuck.done(), timers_left

    scores, message, marked_done, timers_left = asyncio.run(main())
    assert scores == [6.0]
    assert message == "not scored within A_TIMEOUT=0.01 s"
    assert marked_done  # the batcher skips a request whose future is done
    assert not timers_left  # the scored request's timer was cancelled


def test_a_caller_resumes_in_the_loop_turn_its_scores_arrive() -> None:
    # one turn, not two: on a loop reading hundreds of connections a turn, each costs ms
    async def main() -> bool:
        queued: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        caller = asyncio.ensure_future(scores_within(queued, 10.0, "A_TIMEOUT"))
        await asyncio.sleep(0)  # the caller now awaits
        queued.set_result(np.zeros(1, dtype=np.float32))
        await asyncio.sleep(0)
        return caller.done()

    assert asyncio.run(main())
