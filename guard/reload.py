"""Config hot reload: a new file (or SIGHUP) takes effect at the next tick, or is refused.

The file is polled by its stat signature in the guard's own scheduler rather than watched with
inotify: a Kubernetes ConfigMap volume updates by swapping a symlink, which a watch on the file
misses and a `stat()` (it follows links) sees, and polling adds no thread. SIGHUP asks for a
reload at the next poll whatever the signature says.

A valid file is swapped in whole (engine, alert sender, routes), never key by key, so a tick
always runs under one config. An invalid one, or one that changes what is read only at start
(`RESTART_ONLY`), is refused: the reason, naming each key path, is logged and alerted
(`config_refused`), and the config in force stays. The first good file after a refusal resolves
that alert (`config_reloaded`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from alerts.base import AlertKind
from alerts.events import config_event
from guard.audit import AuditAction
from guard.config import ConfigError, GuardConfig, load_config
from guard.outbox import RoutedAlert
from guard.store import Store
from guard.tokens import TokenBook

log = logging.getLogger("guard.reload")

#: Read once when the process starts (sockets, database, clients, scheduler intervals).
RESTART_ONLY = ("server", "store", "prometheus", "kubernetes", "scheduler", "alerts.delivery")

Signature = tuple[int, int, int] | None


@dataclass(frozen=True)
class Reload:
    """What a reload attempt found: the config to apply, or why the file was refused."""

    config: GuardConfig | None
    problems: list[str]
    changed: list[str]


def signature(path: Path) -> Signature:
    """(mtime, size, inode) of the file the path leads to; None when it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves that differ between two dumped configs."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        paths: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            paths += changed_keys(old.get(key), new.get(key), path)
        return paths
    return [] if old == new else [prefix or "(top level)"]


def check(current: GuardConfig, path: Path, environ: Mapping[str, str] | None = None) -> Reload:
    """Load and validate the file as `guard serve` would; refuse what needs a restart."""
    try:
        new = load_config(path, environ)
        TokenBook.from_config(new.auth)  # a tokens file that cannot be read is refused too
    except ConfigError as exc:
        return Reload(None, exc.problems, [])
    changed = changed_keys(current.model_dump(mode="json"), new.model_dump(mode="json"))
    restart = [
        f"{key}: only read when the guard starts; restart the guard to change it"
        for key in changed
        if any(key == section or key.startswith(f"{section}.") for section in RESTART_ONLY)
    ]
    if restart:
        return Reload(None, restart, changed)
    return Reload(new, [], changed)


def record_reload(store: Store, path: Path, outcome: Reload, *, actor: str, now: datetime) -> None:
    """The one place a reload attempt is recorded: the log, and the audit log (refusals too,
    since a refused file is what someone tried to put in force)."""
    if outcome.config is not None:
        keys = ", ".join(outcome.changed) or "nothing changed"
        log.info("config %s reloaded; takes effect at the next tick: %s", path, keys)
    else:
        reasons = "; ".join(outcome.problems)
        log.error("config %s refused, the config in force stays: %s", path, reasons)
    store.audit(
        actor=actor,
        action=AuditAction.CONFIG_RELOAD,
        target=str(path),
        reason="applied" if outcome.config is not None else "refused",
        details={"changed": outcome.changed, "problems": outcome.problems},
        now=now,
    )


class ConfigReloader:
    """Polls the config file (and honours SIGHUP) from a scheduler job; applies or refuses."""

    def __init__(
        self,
        path: Path,
        config: GuardConfig,
        *,
        apply: Callable[[GuardConfig], Awaitable[None]],
        store: Store,
        clock: Callable[[], datetime],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self._apply = apply
        self._store = store
        self._clock = clock
        self._environ = environ
        self._seen = signature(path)
        self._requested = False
        self._refused = False

    def request(self) -> None:
        """SIGHUP: reload at the next poll even if the file looks unchanged."""
        self._requested = True

    async def run_once(self) -> Reload | None:
        """Reload if the file changed or a reload was asked for; None when nothing was due."""
        seen = signature(self.path)
        if not self._requested and seen == self._seen:
            return None
        actor = "SIGHUP" if self._requested else "config file change"
        self._requested, self._seen = False, seen
        outcome = check(self.config, self.path, self._environ)
        now = self._clock()
        await asyncio.to_thread(
            record_reload, self._store, self.path, outcome, actor=actor, now=now
        )
        if outcome.config is None:
            self._refused = True
            await self._alert(AlertKind.CONFIG_REFUSED, "\n".join(outcome.problems), now)
            return outcome
        self.config = outcome.config
        await self._apply(outcome.config)
        if self._refused:
            self._refused = False
            changed = ", ".join(outcome.changed) or "nothing changed"
            await self._alert(AlertKind.CONFIG_RELOADED, f"changed: {changed}", now)
        return outcome

    async def _alert(self, kind: AlertKind, message: str, now: datetime) -> None:
        alerts = self.config.alerts
        event = config_event(
            kind, source=str(self.path), message=message, now=now, guard_url=alerts.guard_url
        )
        await asyncio.to_thread(
            self._store.outbox.add,
            [RoutedAlert(event, alerts.route(event))],
            now=now,
            expire_after=alerts.delivery.expire_after_seconds,
        )
