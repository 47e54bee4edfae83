"""The bulk lane's admission: a bounded number in progress, a bounded wait, then 503."""

from __future__ import annotations

import asyncio

import pytest

from serving.errors import Overloaded
from serving.lanes import BulkLane


def test_requests_beyond_the_slots_wait_in_order_and_the_rest_are_refused() -> None:
    order: list[int] = []

    async def request(lane: BulkLane, i: int, release: asyncio.Event) -> None:
        async with lane:
            order.append(i)
            await release.wait()

    async def main() -> list[BaseException | None]:
        lane = BulkLane(concurrency=1, max_waiting=2, wait_s=5.0)
        release = asyncio.Event()
        tasks = [asyncio.ensure_future(request(lane, i, release)) for i in range(4)]
        await asyncio.sleep(0.01)
        assert lane.waiting == 2 and order == [0]
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert lane.shed == 1
        return [r if isinstance(r, BaseException) else None for r in results]

    results = asyncio.run(main())
    assert order == [0, 1, 2]  # first come, first served
    assert isinstance(results[3], Overloaded) and "bulk lane full" in str(results[3])
    assert results[:3] == [None, None, None]


def test_a_request_that_waits_past_the_limit_is_refused() -> None:
    async def main() -> None:
        lane = BulkLane(concurrency=1, max_waiting=8, wait_s=0.05)
        async with lane:
            with pytest.raises(Overloaded, match="no slot within 50 ms"):
                async with lane:
                    pass
        async with lane:  # the slot is free again and nobody waits
            assert lane.waiting == 0

    asyncio.run(main())
