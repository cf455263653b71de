"""The README's config example is a config the guard accepts."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from guard.config import parse_config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_example_is_valid() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks
    config = parse_config(yaml.safe_load(blocks[0]))
    assert config.analysis.tiers.critical.error_rate == 0.05
    assert config.analysis_for("checkout").tiers.high.error_rate == 0.03
