"""A hand-off's store call runs on the event loop only when it cannot wait there."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from guard.services import on_store
from guard.store import Store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def test_a_call_runs_on_the_loop_thread_only_on_a_local_file_with_the_writer_free(
    store: Store, db_url: str
) -> None:
    async def where() -> int:
        return await on_store(store, threading.get_ident)

    ran_on = asyncio.run(where())

    if db_url.startswith("sqlite"):
        assert ran_on == threading.get_ident()
    else:  # a network database may stall: never on the loop
        assert ran_on != threading.get_ident()


def test_a_call_goes_to_a_thread_while_another_thread_holds_the_writer(store: Store) -> None:
    held, release = threading.Event(), threading.Event()

    def tick_writing() -> None:
        with store.writer_if_free():  # as a tick's write transaction holds it
            held.set()
            release.wait(10)

    writer = threading.Thread(target=tick_writing)
    writer.start()
    held.wait(10)

    try:
        ran_on = asyncio.run(on_store(store, threading.get_ident))
    finally:
        release.set()
        writer.join()
    assert ran_on != threading.get_ident()  # waiting for the writer would have blocked the loop


def test_the_writer_is_free_again_after_a_call_that_failed(store: Store) -> None:
    def fails() -> None:
        raise ValueError("conflict")

    with pytest.raises(ValueError):
        asyncio.run(on_store(store, fails))

    def other_thread_takes_it() -> bool:
        with store.writer_if_free() as free:
            return free

    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(other_thread_takes_it()))
    thread.start()
    thread.join()
    assert result == [store.engine.dialect.name == "sqlite"]
