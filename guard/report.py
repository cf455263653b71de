"""Per-rollout execution report, in Markdown and HTML, built from what the store recorded.

A release review needs one page per rollout that answers: did each phase take as long as the
plan said, what did the new version's error rate and latency look like before, during and after
the fault, which decisions were taken on which evidence, and was it rolled back and how fast.
`build` is a pure function of the stored rollout, so the page never disagrees with the API.
"""

from __future__ import annotations

import html
from datetime import datetime
from statistics import median

from pydantic import BaseModel

from guard.config import AnalysisConfig
from guard.models import Decision, RolloutView
from guard.records import Incident, SentAlert


class PhaseTiming(BaseModel):
    """A state the rollout went through: planned vs actual seconds."""

    state: str
    started_at: datetime
    ended_at: datetime | None
    actual_seconds: float | None
    planned_seconds: float | None
    plan: str


class MetricWindow(BaseModel):
    """The new version's metrics in one phase, from the decisions' evidence."""

    phase: str
    samples: int
    error_rate_median: float | None = None
    error_rate_max: float | None = None
    latency_median_seconds: float | None = None
    latency_max_seconds: float | None = None


class RolloutReport(BaseModel):
    id: str
    service: str
    team: str
    target: str
    images: dict[str, str]
    commit_sha: str | None
    commit_time: datetime | None
    state: str
    outcome_reason: str | None
    message: str
    timestamps: dict[str, datetime | None]
    phases: list[PhaseTiming]
    metrics: list[MetricWindow]
    decisions: list[Decision]
    rolled_back: bool
    rollback_decision_seconds: float | None
    time_to_restore_seconds: float | None
    duration_seconds: float | None
    incidents: list[Incident]
    alerts: list[SentAlert]


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def plan_for(state: str, config: AnalysisConfig, tick_seconds: float) -> tuple[float | None, str]:
    """What the guard planned for each state: one tick in the queue, N healthy intervals of
    analysis once the update completes; a rollback is never planned."""
    if state == "pending":
        return tick_seconds, "picked up at the next tick"
    if state == "progressing":
        n = config.healthy_intervals_to_promote
        planned = n * config.interval_seconds
        return planned, f"update, then {n} healthy intervals of {config.interval_seconds:g}s"
    if state == "paused":
        return None, "held by an operator"
    if state == "rolling_back":
        return None, "not planned: restore the previous revision"
    return 0.0, "terminal"


def phases(view: RolloutView, config: AnalysisConfig, tick_seconds: float) -> list[PhaseTiming]:
    """One row per state change in the events history, timed to the next change."""
    history = view.details.get("history", [])
    rows = []
    for i, event in enumerate(history):
        start = datetime.fromisoformat(event["at"])
        following = history[i + 1] if i + 1 < len(history) else None
        end = datetime.fromisoformat(following["at"]) if following else None
        planned, plan = plan_for(event["state"], config, tick_seconds)
        terminal = following is None and view.state.terminal
        rows.append(
            PhaseTiming(
                state=event["state"],
                started_at=start,
                ended_at=start if terminal else end,
                actual_seconds=0.0 if terminal else _seconds(start, end),
                planned_seconds=planned,
                plan=plan,
            )
        )
    return rows


def _value(decision: Decision, metric: str) -> float | None:
    for evidence in decision.evidence:
        if evidence.metric == metric and evidence.value is not None:
            return evidence.value
    return None


def metric_windows(view: RolloutView) -> list[MetricWindow]:
    """Before the first bad sample, during the fault (to the verified recovery), and after.

    The guard measures the new version only, and stops once a rollback starts, so "after" is
    usually empty for a rolled-back release: the report says so rather than inventing numbers.
    """
    stamps = view.timestamps
    fault = stamps.first_bad_sample_at or stamps.rollback_started_at
    recovered = stamps.rollback_verified_at or stamps.finished_at
    buckets: dict[str, list[Decision]] = {"before": [], "during": [], "after": []}
    for decision in view.decisions:
        if fault is None or decision.at < fault:
            buckets["before"].append(decision)
        elif recovered is None or decision.at <= recovered:
            buckets["during"].append(decision)
        else:
            buckets["after"].append(decision)
    return [_window(name, decisions) for name, decisions in buckets.items()]


def _window(name: str, decisions: list[Decision]) -> MetricWindow:
    errors = [v for d in decisions if (v := _value(d, "error_rate")) is not None]
    latencies = [v for d in decisions if (v := _value(d, "latency")) is not None]
    return MetricWindow(
        phase=name,
        samples=max(len(errors), len(latencies)),
        error_rate_median=median(errors) if errors else None,
        error_rate_max=max(errors) if errors else None,
        latency_median_seconds=median(latencies) if latencies else None,
        latency_max_seconds=max(latencies) if latencies else None,
    )


def build(
    view: RolloutView,
    *,
    team: str,
    config: AnalysisConfig,
    tick_seconds: float,
    incidents: list[Incident],
    alerts: list[SentAlert],
) -> RolloutReport:
    stamps = view.timestamps
    detected = stamps.first_bad_sample_at or stamps.rollback_started_at
    request = view.request
    return RolloutReport(
        id=view.id,
        service=request.service_name,
        team=team,
        target=f"{request.namespace}/{request.deployment}",
        images=request.images,
        commit_sha=request.commit_sha,
        commit_time=request.commit_time,
        state=view.state.value,
        outcome_reason=view.outcome_reason,
        message=view.message,
        timestamps=stamps.model_dump(),
        phases=phases(view, config, tick_seconds),
        metrics=metric_windows(view),
        decisions=view.decisions,
        rolled_back=stamps.rollback_started_at is not None,
        rollback_decision_seconds=_seconds(stamps.first_bad_sample_at, stamps.rollback_started_at),
        time_to_restore_seconds=_seconds(detected, stamps.rollback_verified_at),
        duration_seconds=_seconds(stamps.started_at, stamps.finished_at),
        incidents=incidents,
        alerts=alerts,
    )


NA = "n/a"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return NA
    if value < 10:
        return f"{value:.2f} s"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    if value < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def fmt_ratio(value: float | None) -> str:
    return NA if value is None else f"{value * 100:.2f} %"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def sections(report: RolloutReport) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables, shared by the Markdown and HTML renderings."""
    stamps = [
        [name, value.isoformat(timespec="seconds") if value else NA]
        for name, value in report.timestamps.items()
    ]
    phases_rows = [
        [
            p.state,
            p.started_at.isoformat(timespec="seconds"),
            fmt_seconds(p.planned_seconds),
            fmt_seconds(p.actual_seconds),
            p.plan,
        ]
        for p in report.phases
    ]
    metric_rows = [
        [
            m.phase,
            str(m.samples),
            fmt_ratio(m.error_rate_median),
            fmt_ratio(m.error_rate_max),
            fmt_seconds(m.latency_median_seconds),
            fmt_seconds(m.latency_max_seconds),
        ]
        for m in report.metrics
    ]
    decision_rows = [
        [
            d.at.isoformat(timespec="seconds"),
            d.step,
            d.verdict.value,
            d.severity.value,
            d.action,
            d.summary,
            "; ".join(
                f"{e.metric}={e.value:g} (breach {e.comparison} {e.threshold:g})"
                if e.value is not None and e.threshold is not None
                else f"{e.metric}: {e.note or e.value}"
                for e in d.evidence
            ),
        ]
        for d in report.decisions
    ]
    rollback = [
        ["rolled back", "yes" if report.rolled_back else "no"],
        ["reason", report.outcome_reason or NA],
        ["first bad sample → rollback decision", fmt_seconds(report.rollback_decision_seconds)],
        ["detection → verified recovery", fmt_seconds(report.time_to_restore_seconds)],
        ["rollout duration", fmt_seconds(report.duration_seconds)],
    ]
    incident_rows = [
        [
            i.opened_at.isoformat(timespec="seconds"),
            i.resolved_at.isoformat(timespec="seconds") if i.resolved_at else "open",
            i.link or NA,
        ]
        for i in report.incidents
    ]
    alert_rows = [
        [a.sent_at.isoformat(timespec="seconds"), a.channel, a.summary] for a in report.alerts
    ]
    return [
        ("Timestamps", ["moment", "at"], stamps),
        ("Plan vs actual", ["state", "from", "planned", "actual", "plan"], phases_rows),
        (
            "Error rate and latency of the new version",
            [
                "phase",
                "samples",
                "error rate (median)",
                "error rate (max)",
                "latency (median)",
                "latency (max)",
            ],
            metric_rows,
        ),
        (
            "Decisions",
            ["at", "step", "verdict", "severity", "action", "summary", "evidence"],
            decision_rows,
        ),
        ("Rollback", ["what", "value"], rollback),
        ("Incidents after promotion", ["opened", "resolved", "link"], incident_rows),
        ("Alerts sent", ["at", "channel", "summary"], alert_rows),
    ]


def _heading(report: RolloutReport) -> list[tuple[str, str]]:
    commit_time = report.commit_time.isoformat(timespec="seconds") if report.commit_time else NA
    return [
        ("service", report.service),
        ("team", report.team),
        ("target", report.target),
        ("images", ", ".join(f"{k}={v}" for k, v in report.images.items())),
        ("commit", f"{report.commit_sha or NA} at {commit_time}"),
        ("outcome", f"{report.state} ({report.outcome_reason or NA})"),
        ("message", report.message),
    ]


def markdown(report: RolloutReport) -> str:
    lines = [f"# Rollout {report.id}", ""]
    lines += [f"- **{name}**: {value}" for name, value in _heading(report)]
    for title, headers, rows in sections(report):
        lines += ["", f"## {title}", ""]
        lines += _table(headers, rows) if rows else ["None recorded."]
    return "\n".join(lines) + "\n"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1f2933;max-width:1200px}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{border:1px solid #cbd2d9;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f0f4f8} h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:1.5rem}
.none{color:#7b8794}
"""


def to_html(report: RolloutReport) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Rollout {e(report.id)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Rollout <code>{e(report.id)}</code></h1><ul>",
    ]
    parts += [f"<li><b>{e(name)}</b>: {e(value)}</li>" for name, value in _heading(report)]
    parts.append("</ul>")
    for title, headers, rows in sections(report):
        parts.append(f"<h2>{e(title)}</h2>")
        if not rows:
            parts.append("<p class='none'>None recorded.</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("<p><a href='/dashboard'>Back to the dashboard</a></p></body></html>")
    return "".join(parts)
