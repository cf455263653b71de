"""Deployment and incident records, and the columnar table every DORA figure is computed from.

Times become float epoch seconds (NaN when absent) in numpy arrays, so the computation over a
million deployments is vectorised; `build_frame` is the one place records become that table.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

from guard.dora.levels import DAY


class Outcome(enum.StrEnum):
    """How a rollout ended, as far as delivery performance is concerned."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    FAILED = "failed"
    REFUSED = "refused"
    UNCHANGED = "unchanged"

    @property
    def is_deployment(self) -> bool:
        return self in DEPLOYMENT_OUTCOMES


DEPLOYMENT_OUTCOMES = frozenset(
    {Outcome.PROMOTED, Outcome.ROLLED_BACK, Outcome.ABORTED, Outcome.FAILED}
)
OUTCOME_CODES = {outcome: code for code, outcome in enumerate(Outcome)}


def outcome_of(state: str, outcome_reason: str | None, started_at: datetime | None) -> Outcome:
    """Map a terminal rollout to its outcome; a rollout that changed nothing was refused."""
    if state == "promoted":
        return Outcome.UNCHANGED if outcome_reason == "unchanged" else Outcome.PROMOTED
    if state == "rolled_back":
        return Outcome.ROLLED_BACK
    if started_at is None:
        return Outcome.REFUSED
    return Outcome.ABORTED if state == "aborted" else Outcome.FAILED


@dataclass(frozen=True)
class DeploymentRecord:
    """One finished rollout as the store knows it."""

    rollout_id: str
    service: str
    team: str
    outcome: Outcome
    submitted_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    commit_time: datetime | None = None
    first_bad_sample_at: datetime | None = None
    rollback_started_at: datetime | None = None
    rollback_verified_at: datetime | None = None
    rework_label: bool = False


@dataclass(frozen=True)
class IncidentRecord:
    """A failure of a promoted change found after promotion."""

    rollout_id: str
    opened_at: datetime
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class Window:
    """[start, end); `days` is what deployment frequency divides by."""

    start: datetime
    end: datetime

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / DAY


_WINDOW = re.compile(r"^(\d{1,4})([hdw])$")


def parse_window(text: str, *, now: datetime) -> Window:
    """`30d`, `12h`, `4w`; at most 5 years, so a typo cannot scan all of history by accident."""
    match = _WINDOW.match(text.strip())
    if match is None:
        raise ValueError("window must be a number and a unit h, d or w, e.g. '30d'")
    amount, unit = int(match.group(1)), match.group(2)
    length = timedelta(**{{"h": "hours", "d": "days", "w": "weeks"}[unit]: amount})
    if amount == 0 or length > timedelta(days=5 * 366):
        raise ValueError("window must be more than 0 and at most 5 years")
    return Window(start=now - length, end=now)


COLUMNS = (
    "submitted",
    "started",
    "finished",
    "commit",
    "first_bad",
    "rollback_started",
    "rollback_verified",
    "incident_opened",
    "incident_resolved",
)


def _epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else math.nan


def build_frame(
    deployments: Iterable[DeploymentRecord], incidents: Iterable[IncidentRecord] = ()
) -> pd.DataFrame:
    """Records to the columnar table `report` works on: times as float epoch seconds (NaN when
    absent), the first incident of each rollout joined in, and rework marked."""
    import numpy as np
    import pandas as pd

    rows = list(deployments)
    by_rollout: dict[str, IncidentRecord] = {}
    for incident in sorted(incidents, key=lambda i: i.opened_at):
        by_rollout.setdefault(incident.rollout_id, incident)
    data: dict[str, Any] = {
        "rollout_id": [r.rollout_id for r in rows],
        "service": pd.Categorical([r.service for r in rows]),
        "team": pd.Categorical([r.team for r in rows]),
        "outcome": np.array([OUTCOME_CODES[r.outcome] for r in rows], dtype=np.int8),
        "rework": np.array([r.rework_label for r in rows], dtype=bool),
    }
    for name, attr in zip(COLUMNS[:7], _RECORD_TIMES, strict=True):
        data[name] = np.array([_epoch(getattr(r, attr)) for r in rows], dtype=np.float64)
    found = [by_rollout.get(r.rollout_id) for r in rows]
    data["incident_opened"] = np.array(
        [_epoch(i.opened_at if i else None) for i in found], np.float64
    )
    data["incident_resolved"] = np.array(
        [_epoch(i.resolved_at if i else None) for i in found], np.float64
    )
    frame = pd.DataFrame(data)
    frame["rework"] |= _during_open_incident(frame, by_rollout.values(), rows)
    return frame


_RECORD_TIMES = (
    "submitted_at",
    "started_at",
    "finished_at",
    "commit_time",
    "first_bad_sample_at",
    "rollback_started_at",
    "rollback_verified_at",
)


def _during_open_incident(
    frame: pd.DataFrame, incidents: Iterable[IncidentRecord], rows: Sequence[DeploymentRecord]
) -> npt.NDArray[np.bool_]:
    """Deployments of a service submitted while an incident on that service was open."""
    import numpy as np

    service_of = {r.rollout_id: r.service for r in rows}
    marked = np.zeros(len(frame), dtype=bool)
    services = frame["service"].astype(str).to_numpy()
    submitted = frame["submitted"].to_numpy()
    for incident in incidents:
        service = service_of.get(incident.rollout_id)
        opened = incident.opened_at.timestamp()
        resolved = _epoch(incident.resolved_at)
        end = math.inf if math.isnan(resolved) else resolved
        marked |= (services == service) & (submitted >= opened) & (submitted <= end)
    return marked
