"""A SQLite store's WAL is copied back into the database by a thread of its own.

SQLite does it by default inside a commit once the WAL holds 1,000 pages: at hundreds of
hand-offs a second one commit in a hundred took 5 to 10 ms instead of 0.1, on the event loop
that serves the API, and the mean commit cost more than twice the median. Here the store's
connections never checkpoint; this thread runs a PASSIVE checkpoint (it waits for no reader
or writer) every `CHECKPOINT_SECONDS`, with the GIL released while SQLite copies pages, and
copies a page written many times since the last checkpoint only once.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 1.0


class WalCheckpointer:
    """Checkpoints `database` until stopped, or until `owner` (the store) is gone."""

    def __init__(self, database: str, owner: object, interval_seconds: float | None = None) -> None:
        # mode=rw: a database deleted meanwhile is not created again, empty.
        self.database = Path(database).resolve().as_uri() + "?mode=rw"
        self.interval_seconds = interval_seconds or CHECKPOINT_SECONDS
        self._owner = weakref.ref(owner)
        self.checkpoints = 0
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
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                connection.close()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # the next one copies what this one could not
            log.warning("store: WAL checkpoint failed: %s", exc)
