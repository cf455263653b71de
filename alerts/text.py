"""Shared wording for every channel, so Slack, PagerDuty and Alertmanager say the same thing."""

from __future__ import annotations

from guard.models import Evidence

from .base import AlertEvent, AlertKind

TITLES = {
    AlertKind.PREFLIGHT_REFUSED: "Rollout refused before any change",
    AlertKind.HOLD: "Rollout on hold",
    AlertKind.HOLD_CLEARED: "Rollout hold cleared",
    AlertKind.ROLLBACK_STARTED: "Automatic rollback started",
    AlertKind.ROLLBACK_VERIFIED: "Rollback verified",
    AlertKind.ROLLBACK_FAILED: "Rollback FAILED",
    AlertKind.ROLLOUT_FAILED: "Rollout failed",
    AlertKind.PROMOTED: "Rollout promoted",
    AlertKind.CONFIG_REFUSED: "New config refused; the old one stays in force",
    AlertKind.CONFIG_RELOADED: "Config reloaded",
}


def title(event: AlertEvent) -> str:
    """`[critical] Automatic rollback started: shop/checkout`."""
    return f"[{event.severity.value}] {TITLES[event.kind]}: {event.target}"


def versions(event: AlertEvent) -> str:
    """`checkout: registry/checkout:1.4.1 -> registry/checkout:1.4.3`."""
    parts = []
    for container, image in sorted(event.images.items()):
        before = event.previous_images.get(container)
        parts.append(f"{container}: {before} -> {image}" if before else f"{container}: {image}")
    return "; ".join(parts) or "-"


def evidence_line(item: Evidence) -> str:
    """`error_rate 8.12% > 5.00% over 1234 requests in 30s`, or the note when there is no value."""
    if item.value is None:
        return f"{item.metric}: {item.note or 'no value'}"
    line = f"{item.metric} {_fmt(item.metric, item.value)}"
    if item.threshold is not None:
        line += f" {_comparison(item)} {_fmt(item.metric, item.threshold)}"
    if item.sample_count is not None and item.metric != "request_count":
        line += f" over {item.sample_count:.0f} requests"
    if item.window_seconds is not None:
        line += f" in {item.window_seconds:g}s"
    if item.severity.value != "none":
        line += f" ({item.severity.value})"
    return line


def evidence_lines(event: AlertEvent) -> list[str]:
    if event.decision is None:
        return []
    return [evidence_line(item) for item in event.decision.evidence]


def queries(event: AlertEvent) -> list[str]:
    if event.decision is None:
        return []
    return [f"{e.metric}: {e.query}" for e in event.decision.evidence if e.query]


def description(event: AlertEvent) -> str:
    """A plain-text body: what broke, evidence, what the guard did, whether it worked."""
    lines = [
        f"What happened: {event.summary}",
        f"Service: {event.service} ({event.target}), strategy {event.strategy}, step {event.step}",
        f"Versions: {versions(event)}",
        *(f"Evidence: {line}" for line in evidence_lines(event)),
        f"Guard action: {event.action}",
        f"Outcome: {event.outcome}",
    ]
    if event.rollback_seconds is not None:
        lines.append(f"Rollback took {event.rollback_seconds:.1f}s")
    lines += [f"{name}: {url}" for name, url in sorted(event.links.items())]
    return "\n".join(lines)


def _comparison(item: Evidence) -> str:
    """The breach operator if the value breaches the threshold, else its negation."""
    assert item.value is not None and item.threshold is not None
    negation = {">": "<=", "<": ">=", ">=": "<", "<=": ">"}
    breached = {
        ">": item.value > item.threshold,
        "<": item.value < item.threshold,
        ">=": item.value >= item.threshold,
        "<=": item.value <= item.threshold,
    }.get(item.comparison, True)
    return item.comparison if breached else negation.get(item.comparison, item.comparison)


def _fmt(metric: str, value: float) -> str:
    if metric == "error_rate":
        return f"{value * 100:.2f}%"
    if metric == "latency":
        return f"{value:.3g}s"
    return f"{value:.4g}"
