"""Group commit: what the committer promises its callers, whoever they are."""

from __future__ import annotations

import asyncio
import threading

from broadcaster.groupcommit import GroupCommitter, Pending


def test_an_event_whose_waiter_is_cancelled_is_committed_and_the_others_answered() -> None:
    release = threading.Event()
    rounds: list[list[str]] = []

    def commit(items: list[Pending]) -> list[str]:
        release.wait(5)  # the first round holds the committer: the next two queue together
        rounds.append([item.data["id"] for item in items])
        for item in items:
            item.future.set_result(item.data["id"])
        return rounds[-1]

    committer = GroupCommitter(commit, lambda changed: None)
    committer.start()
    try:

        async def storm() -> list[str]:
            busy = committer.submit(Pending({"id": "first"}, "test", "http"))
            a = committer.submit(Pending({"id": "a"}, "test", "http"))
            b = committer.submit(Pending({"id": "b"}, "test", "http"))
            waiter = asyncio.ensure_future(asyncio.wrap_future(a))
            await asyncio.sleep(0)
            waiter.cancel()  # what uvicorn does to a request's task past its grace
            await asyncio.sleep(0)  # the cancel reaches ``a`` (asyncio's callbacks run soon)
            release.set()
            return [await asyncio.wrap_future(f) for f in (busy, b)]

        assert asyncio.run(storm()) == ["first", "b"]
        assert [i for r in rounds for i in r] == ["first", "a", "b"]
    finally:
        committer.close()
