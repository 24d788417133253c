"""BackgroundLoop.run: results, errors and cancellation cross threads, in batched wake-ups."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from agentrl.policy._common import BackgroundLoop


@pytest.fixture()
def bg() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop("test-bg")
    yield loop
    loop.close()


def test_results_errors_and_thread(bg: BackgroundLoop) -> None:
    async def work(k: int) -> tuple[int, str]:
        await asyncio.sleep(0.001 * (k % 3))
        if k == 7:
            raise ValueError("seven")
        return k * k, threading.current_thread().name

    async def main() -> list[object]:
        return await asyncio.gather(*(bg.run(work(k)) for k in range(20)), return_exceptions=True)

    out = asyncio.run(main())
    for k, got in enumerate(out):
        if k == 7:
            assert isinstance(got, ValueError) and str(got) == "seven"
        else:
            assert got == (k * k, "test-bg")  # ran on the background thread


def test_same_pass_calls_share_one_wakeup(bg: BackgroundLoop) -> None:
    wakeups = 0
    original = bg.loop.call_soon_threadsafe

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal wakeups
        wakeups += 1
        return original(*args, **kwargs)

    bg.loop.call_soon_threadsafe = counting  # type: ignore[method-assign]

    async def main() -> list[int]:
        async def one(k: int) -> int:
            return k

        # 16 calls made in one pass of this loop: one hop to the background loop.
        return await asyncio.gather(*(bg.run(one(k)) for k in range(16)))

    assert asyncio.run(main()) == list(range(16))
    assert wakeups == 1


def test_cancelling_the_caller_cancels_the_coroutine(bg: BackgroundLoop) -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        task = asyncio.create_task(bg.run(slow()))
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cancelled.wait(5)


def test_runs_from_successive_event_loops(bg: BackgroundLoop) -> None:
    async def double(x: int) -> int:
        return 2 * x

    async def main(x: int) -> int:
        return await bg.run(double(x))

    assert [asyncio.run(main(x)) for x in (1, 2, 3)] == [2, 4, 6]


def test_run_after_close_raises_and_later_calls_do_not_hang() -> None:
    bg = BackgroundLoop("test-closed")
    bg.close()

    async def nothing() -> None:
        return None

    async def main() -> None:
        for _ in range(2):  # the second call must raise too, not wait forever
            with pytest.raises(RuntimeError):
                await asyncio.wait_for(bg.run(nothing()), 5)

    asyncio.run(main())
