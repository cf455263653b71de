"""A SQLite store's WAL is copied back into the database by a thread of its own.

SQLite does it by default inside a commit once the WAL holds 1,000 pages: at hundreds of
hand-offs a second one commit in a hundred took 5 to 10 ms instead of 0.1, on the event loop
that serves the API, and the mean commit cost more than twice the median. Here the store's
connections never checkpoint; this thread runs a PASSIVE checkpoint (it waits for no reader
or writer) every `CHECKPOINT_SECONDS`, with the GIL released while SQLite copies pages, and
copies a page written many times since the last checkpoint only once.

A PASSIVE checkpoint copies only the frames committed when it starts, and SQLite starts the WAL
over only once every frame is copied. Under a steady stream of writes (hundreds of hand-offs a
second) some always came in meanwhile, so the WAL never started over: it grew by 40 MB a
second, to 7 GB beside a 400 MB database, and each hand-off's transaction took twice as long.
So once the WAL holds `RESTART_FRAMES`, the thread copies what came in meanwhile once more,
then takes the store's writer lock and copies the rest, the few milliseconds' worth of writes
since: with no write in between, the next writer starts the WAL over.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from pathlib import Path

from guard.writer_lock import WriterLock

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 1.0
RESTART_FRAMES = 10_000
"""About 40 MB of WAL: below it the WAL is left to grow. Taking the writer lock costs the
writers that wait the checkpoint's two fsyncs (1-3 ms at 500 hand-offs a second in process, up
to 24 ms in the hand-off benchmark); above it, that happens about once a second at that rate."""
WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""The size SQLite cuts the WAL file back to when it starts over, after a burst grew it."""
PASSIVE = "PRAGMA wal_checkpoint(PASSIVE)"


class WalCheckpointer:
    """Checkpoints `database` until stopped, or until `owner` (the store) is gone."""

    def __init__(
        self,
        database: str,
        owner: object,
        writer: WriterLock,
        interval_seconds: float | None = None,
    ) -> None:
        # mode=rw: a database deleted meanwhile is not created again, empty.
        self.database = Path(database).resolve().as_uri() + "?mode=rw"
        self.interval_seconds = interval_seconds or CHECKPOINT_SECONDS
        self._owner = weakref.ref(owner)
        self._writer = writer
        self.checkpoints = 0
        self.catch_ups = 0  # checkpoints that took the writer lock to copy the rest
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guard-wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop; SQLite itself checkpoints and removes the WAL when the store's last connection
        closes (unless another process still has the file open)."""
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_seconds) and self._owner() is not None:
            self._checkpoint()

    def _checkpoint(self) -> None:
        try:
            connection = sqlite3.connect(self.database, timeout=1, uri=True)
            try:
                _, frames, _ = connection.execute(PASSIVE).fetchone()
                if frames >= RESTART_FRAMES:
                    connection.execute(PASSIVE)  # what came meanwhile, holding nobody up
                    # Not waiting on the other process's checkpoint with the writers held up.
                    connection.execute("PRAGMA busy_timeout=0")
                    with self._writer:
                        connection.execute(PASSIVE)
                    self.catch_ups += 1
            finally:
                connection.close()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # the next one copies what this one could not
            log.warning("store: WAL checkpoint failed: %s", exc)
