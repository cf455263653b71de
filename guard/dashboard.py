"""The `/dashboard` page: DORA tiles with levels, weekly trends, recent rollouts. Pure HTML.

The guard runs where the network may be closed, so the page carries everything inline: CSS, and
charts drawn as SVG on the server. No script and no CDN: it renders the same in a browser, in a
headless test and in a screenshot. Every figure carries its raw value in `data-value`, so a test
can check the page shows exactly what `GET /v1/dora` returns.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from guard.dora import DoraReport, Kpi, Level, WeekPoint
from guard.report import fmt_ratio, fmt_seconds

LEVEL_COLOURS = {
    Level.ELITE: "#0b7a4b",
    Level.HIGH: "#2f7dd1",
    Level.MEDIUM: "#c77c02",
    Level.LOW: "#c2362f",
    None: "#7b8794",
}


@dataclass(frozen=True)
class RecentRollout:
    """One row of the recent rollouts table."""

    id: str
    service: str
    team: str
    state: str
    outcome: str
    submitted_at: str
    duration_seconds: float | None


@dataclass(frozen=True)
class Tile:
    metric: str
    title: str
    value: float | None
    shown: str
    level: Level | None
    detail: str


def tiles(report: DoraReport) -> list[Tile]:
    s = report.overall
    lead, restore = s.lead_time_seconds, s.time_to_restore_seconds
    return [
        Tile(
            "deployment_frequency_per_day",
            "Deployment frequency",
            s.deployment_frequency_per_day,
            f"{s.deployment_frequency_per_day:.2f} / day",
            s.levels["deployment_frequency"],
            f"{s.deployments} deployments in {report.window_days:g} days",
        ),
        Tile(
            "lead_time_median_seconds",
            "Lead time for changes",
            lead.median,
            fmt_seconds(lead.median),
            s.levels["lead_time"],
            f"median; p90 {fmt_seconds(lead.p90)}; {lead.count} changes",
        ),
        Tile(
            "change_failure_rate",
            "Change failure rate",
            s.change_failure_rate,
            fmt_ratio(s.change_failure_rate),
            s.levels["change_failure_rate"],
            f"{s.failed_changes} failed of {s.deployments}",
        ),
        Tile(
            "time_to_restore_median_seconds",
            "Failed deployment recovery time",
            restore.median,
            fmt_seconds(restore.median),
            s.levels["time_to_restore"],
            f"median; p90 {fmt_seconds(restore.p90)}; {restore.count} recoveries",
        ),
        Tile(
            "rework_rate",
            "Rework rate",
            s.rework_rate,
            fmt_ratio(s.rework_rate),
            None,
            f"{s.rework_deployments} deployments fixing a failure",
        ),
    ]


def _tile_html(tile: Tile) -> str:
    e = html.escape
    level = tile.level.value if tile.level else "no level"
    raw = "" if tile.value is None else repr(tile.value)
    return (
        f"<div class='tile' data-metric='{e(tile.metric)}'>"
        f"<div class='title'>{e(tile.title)}</div>"
        f"<div class='value' data-value='{e(raw)}'>{e(tile.shown)}</div>"
        f"<div class='level' style='background:{LEVEL_COLOURS[tile.level]}' "
        f"data-level='{e(level)}'>{e(level)}</div>"
        f"<div class='detail'>{e(tile.detail)}</div></div>"
    )


def _kpi_html(kpi: Kpi) -> str:
    e = html.escape
    fmt = fmt_ratio if kpi.unit == "ratio" else fmt_seconds
    colour = {"pass": "#0b7a4b", "warn": "#c77c02", "no_data": "#7b8794"}[kpi.status]
    raw = "" if kpi.value is None else repr(kpi.value)
    return (
        f"<tr data-kpi='{e(kpi.name)}'><td>{e(kpi.name.replace('_', ' '))}</td>"
        f"<td data-value='{e(raw)}'>{e(fmt(kpi.value))} ({e(kpi.statistic)})</td>"
        f"<td>{e(kpi.comparison)} {e(fmt(kpi.target))}</td>"
        f"<td><span class='badge' style='background:{colour}'>{e(kpi.status)}</span></td></tr>"
    )


def bar_chart(
    title: str,
    weeks: Sequence[WeekPoint],
    total: Callable[[WeekPoint], float],
    part: Callable[[WeekPoint], float],
) -> str:
    """Bars per week: `total` in blue with `part` (failures) stacked in red at the bottom."""
    width, height, pad = 520, 180, 28
    peak = max([total(w) for w in weeks] + [1.0])
    slot = (width - 2 * pad) / max(len(weeks), 1)
    bars = []
    for i, week in enumerate(weeks):
        x = pad + i * slot + slot * 0.15
        h_total = (height - 2 * pad) * total(week) / peak
        h_part = (height - 2 * pad) * part(week) / peak
        y = height - pad
        bars.append(
            f"<rect x='{x:.1f}' y='{y - h_total:.1f}' width='{slot * 0.7:.1f}' "
            f"height='{h_total:.1f}' fill='#2f7dd1'><title>{week.week_start}: "
            f"{total(week):g}</title></rect>"
            f"<rect x='{x:.1f}' y='{y - h_part:.1f}' width='{slot * 0.7:.1f}' "
            f"height='{h_part:.1f}' fill='#c2362f'/>"
            f"<text x='{x + slot * 0.35:.1f}' y='{height - 8}' font-size='10' "
            f"text-anchor='middle'>{week.week_start.strftime('%m-%d')}</text>"
        )
    return _svg(title, width, height, pad, peak, "".join(bars), f"{peak:g}")


def line_chart(
    title: str,
    weeks: Sequence[WeekPoint],
    value: Callable[[WeekPoint], float | None],
    label: Callable[[float], str],
) -> str:
    """A line through the weeks that have a value; weeks without one leave a gap."""
    width, height, pad = 520, 180, 28
    values = [value(w) for w in weeks]
    peak = max([v for v in values if v is not None] + [1e-9])
    slot = (width - 2 * pad) / max(len(weeks), 1)
    points, marks = [], []
    for i, (week, v) in enumerate(zip(weeks, values, strict=True)):
        x = pad + i * slot + slot / 2
        marks.append(
            f"<text x='{x:.1f}' y='{height - 8}' font-size='10' text-anchor='middle'>"
            f"{week.week_start.strftime('%m-%d')}</text>"
        )
        if v is None:
            continue
        y = height - pad - (height - 2 * pad) * v / peak
        points.append(f"{x:.1f},{y:.1f}")
        marks.append(
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='#0b7a4b'>"
            f"<title>{week.week_start}: {html.escape(label(v))}</title></circle>"
        )
    line = f"<polyline fill='none' stroke='#0b7a4b' stroke-width='2' points='{' '.join(points)}'/>"
    return _svg(title, width, height, pad, peak, line + "".join(marks), label(peak))


def _svg(title: str, width: int, height: int, pad: int, peak: float, body: str, top: str) -> str:
    e = html.escape
    return (
        f"<figure><figcaption>{e(title)}</figcaption>"
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"role='img' aria-label='{e(title)}'>"
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' "
        f"stroke='#9aa5b1'/><line x1='{pad}' y1='{pad}' x2='{pad}' y2='{height - pad}' "
        f"stroke='#9aa5b1'/><text x='2' y='{pad}' font-size='10'>{e(top)}</text>"
        f"{body}</svg></figure>"
    )


def _recent_html(rows: Sequence[RecentRollout]) -> str:
    e = html.escape
    if not rows:
        return "<p class='none'>No rollouts yet.</p>"
    body = "".join(
        f"<tr data-rollout='{e(r.id)}'><td><a href='/v1/rollouts/{e(r.id)}/report?format=html'>"
        f"{e(r.id[:8])}</a></td><td>{e(r.service)}</td><td>{e(r.team)}</td>"
        f"<td class='outcome {e(r.outcome)}'>{e(r.outcome)}</td><td>{e(r.submitted_at)}</td>"
        f"<td>{e(fmt_seconds(r.duration_seconds))}</td></tr>"
        for r in rows
    )
    return (
        "<table class='recent'><tr><th>report</th><th>service</th><th>team</th>"
        f"<th>outcome</th><th>submitted</th><th>duration</th></tr>{body}</table>"
    )


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1f2933;background:#f5f7fa}
h1{font-size:1.4rem;margin:0 0 .2rem} h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.sub{color:#52606d;font-size:.9rem}
.tiles{display:flex;gap:1rem;flex-wrap:wrap}
.tile{background:#fff;border-radius:8px;padding:1rem;width:200px;box-shadow:0 1px 3px #0002}
.tile .title{font-size:.85rem;color:#52606d}
.tile .value{font-size:1.6rem;font-weight:600;margin:.3rem 0}
.level,.badge{display:inline-block;color:#fff;border-radius:4px;padding:.1rem .5rem;font-size:.8rem;
text-transform:uppercase}.detail{font-size:.75rem;color:#7b8794;margin-top:.4rem}
.charts{display:flex;gap:1rem;flex-wrap:wrap} figure{background:#fff;margin:0;padding:.5rem;
border-radius:8px;box-shadow:0 1px 3px #0002} figcaption{font-size:.85rem;color:#52606d}
table{border-collapse:collapse;background:#fff;font-size:.9rem}
th,td{border:1px solid #d9e2ec;padding:.3rem .6rem;text-align:left}th{background:#f0f4f8}
.outcome.promoted{color:#0b7a4b}.outcome.rolled_back,.outcome.failed{color:#c2362f}
.none{color:#7b8794}
"""


def render(report: DoraReport, recent: Sequence[RecentRollout]) -> str:
    e = html.escape
    weeks = report.weekly
    scope = ", ".join(
        f"{k} {v}" for k, v in (("service", report.service), ("team", report.team)) if v
    )
    charts = "".join(
        [
            bar_chart(
                "Deployments per week (failed in red)",
                weeks,
                lambda w: float(w.deployments),
                lambda w: float(w.failed_changes),
            ),
            line_chart(
                "Change failure rate per week",
                weeks,
                lambda w: w.change_failure_rate,
                fmt_ratio,
            ),
            line_chart(
                "Lead time for changes per week (median)",
                weeks,
                lambda w: w.lead_time_median_seconds,
                fmt_seconds,
            ),
            line_chart(
                "Recovery time per week (median)",
                weeks,
                lambda w: w.time_to_restore_median_seconds,
                fmt_seconds,
            ),
        ]
    )
    return "".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>Deploy Guard - DORA</title><style>{_STYLE}</style></head><body>",
            "<h1>Deploy Guard: delivery performance</h1>",
            f"<div class='sub' id='window' data-days='{report.window_days:g}'>Last "
            f"{report.window_days:g} days ({e(report.window_start.date().isoformat())} to "
            f"{e(report.window_end.date().isoformat())}){'; ' + e(scope) if scope else ''}. "
            f"Levels: {e(report.benchmark)}.</div>",
            "<form class='sub' method='post' action='/dashboard/logout'>"
            "<button type='submit'>Sign out</button></form>",
            "<div class='tiles'>",
            *(_tile_html(t) for t in tiles(report)),
            "</div><h2>Release KPIs</h2><table class='kpis'><tr><th>KPI</th><th>value</th>"
            "<th>target</th><th>status</th></tr>",
            *(_kpi_html(k) for k in report.overall.kpis),
            f"</table><h2>Weekly trends</h2><div class='charts'>{charts}</div>",
            "<h2>Recent rollouts</h2>",
            _recent_html(recent),
            "</body></html>",
        ]
    )
