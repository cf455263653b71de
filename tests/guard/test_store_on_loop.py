"""A hand-off's store call runs on the event loop on a local file, in a thread otherwise, and
never blocks the loop while a tick holds the writer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from guard.store import Store, read_store, write_store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


@pytest.mark.parametrize("run", [read_store, write_store])
def test_a_call_runs_on_the_loop_thread_only_on_a_local_file(
    store: Store, db_url: str, run: object
) -> None:
    async def where() -> int:
        return await run(store, threading.get_ident)  # type: ignore[operator, no-any-return]

    ran_on = asyncio.run(where())

    if db_url.startswith("sqlite"):
        assert ran_on == threading.get_ident()
    else:  # a network database may stall: never on the loop
        assert ran_on != threading.get_ident()


def test_a_write_waits_for_a_tick_holding_the_writer_without_blocking_the_loop(
    tmp_path: object,
) -> None:
    store = Store(f"sqlite:///{tmp_path}/guard.db")
    held, release = threading.Event(), threading.Event()

    def tick_writing() -> None:
        with store.writer:
            held.set()
            release.wait(10)

    writer = threading.Thread(target=tick_writing)
    writer.start()
    held.wait(10)
    order: list[str] = []

    def hand_off() -> int:
        order.append("hand-off")
        return threading.get_ident()

    async def meanwhile() -> None:
        order.append("loop served another request")
        await asyncio.sleep(0)
        release.set()  # the tick commits

    async def both() -> int:
        ran_on, _ = await asyncio.gather(write_store(store, hand_off), meanwhile())
        return ran_on

    try:
        ran_on = asyncio.run(asyncio.wait_for(both(), 10))
    finally:
        release.set()
        writer.join()
        store.close()
    assert order == ["loop served another request", "hand-off"]
    assert ran_on == threading.get_ident()


def test_the_writer_is_free_again_after_a_write_that_failed(store: Store) -> None:
    def fails() -> None:
        raise ValueError("conflict")

    with pytest.raises(ValueError):
        asyncio.run(write_store(store, fails))

    taken: list[bool] = []

    def other_thread() -> None:
        with store.writer:
            taken.append(True)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(10)
    assert taken == [True]
