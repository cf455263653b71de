"""The log channel: one line with the story, for guards with no receiver configured."""

from __future__ import annotations

from alerts.base import LogLine
from alerts.log import LogNotifier, LogSettings

from .conftest import ROLLOUT, render_ctx, rollback_started


def test_one_line_with_what_broke_action_outcome_and_evidence() -> None:
    line = LogNotifier().render(rollback_started(), LogSettings(), render_ctx())
    assert isinstance(line, LogLine)
    assert line.text == (
        f"alert {ROLLOUT}/rollback_started/1: [critical] Automatic rollback started: "
        "shop/checkout: critical: error rate 8.12% > 5.00%; action: started an automatic "
        "rollback to revision 3; outcome: rollback in progress; not yet verified; evidence: "
        "error_rate 8.12% > 5.00% over 1234 requests in 30s (critical)"
    )
