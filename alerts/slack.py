"""Slack incoming webhook: Block Kit message readable on a phone at 3 a.m.

The webhook URL is the credential, so it only comes from `url_env` or `url_file`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from .base import AlertEvent, HttpPost, ReceiverSettings, RenderContext, SecretRef, json_post
from .secrets import one_source
from .text import evidence_lines, queries, title, versions

EMOJI = {"firing": ":rotating_light:", "resolved": ":white_check_mark:"}


class SlackSettings(ReceiverSettings):
    type: Literal["slack"] = "slack"
    url_env: str | None = None
    url_file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_literal_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "url" in data:
            raise ValueError(
                "url: a Slack webhook URL is a credential; name where it comes from with "
                "url_env (an environment variable) or url_file (a file)"
            )
        return data

    @model_validator(mode="after")
    def _one_url(self) -> SlackSettings:
        one_source("url", literal=None, env=self.url_env, file=self.url_file)
        return self

    def secret_refs(self) -> dict[str, SecretRef]:
        ref = one_source("url", literal=None, env=self.url_env, file=self.url_file)
        assert ref is not None
        return {"url": ref}


class SlackNotifier:
    type = "slack"
    settings_model = SlackSettings

    def render(self, event: AlertEvent, settings: SlackSettings, ctx: RenderContext) -> HttpPost:
        return json_post(ctx.secrets["url"], payload(event))


def payload(event: AlertEvent) -> dict[str, Any]:
    """The Slack message: header, facts, evidence, action and outcome, links."""
    headline = f"{EMOJI[event.status]} {title(event)}"
    facts = [
        f"*Service*\n{event.service}",
        f"*Strategy / step*\n{event.strategy} / {event.step}",
        f"*Versions*\n{versions(event)}",
        f"*Severity*\n{event.severity.value}",
    ]
    if event.rollback_seconds is not None:
        facts.append(f"*Rollback took*\n{event.rollback_seconds:.1f}s")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(headline[:150])},
        {"type": "section", "text": _md(f"*What happened:* {event.summary}")},
        {"type": "section", "fields": [_md(f) for f in facts]},
    ]
    evidence = evidence_lines(event)
    if evidence:
        lines = "\n".join(f"• {line}" for line in evidence)
        blocks.append({"type": "section", "text": _md(f"*Evidence*\n{lines}")})
    shown = queries(event)
    if shown:
        blocks.append({"type": "context", "elements": [_md(f"`{q}`"[:3000]) for q in shown[:10]]})
    blocks.append(
        {
            "type": "section",
            "text": _md(f"*Guard action:* {event.action}\n*Outcome:* {event.outcome}"),
        }
    )
    if event.links:
        links = " | ".join(f"<{url}|{name}>" for name, url in sorted(event.links.items()))
        blocks.append({"type": "context", "elements": [_md(links)]})
    return {"text": f"{headline}: {event.summary}", "blocks": blocks}


def _md(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}
