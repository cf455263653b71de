"""Secrets come from env vars or files, are read at send time, and are redacted from errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.base import SecretRef
from alerts.secrets import SecretUnavailable, read_secret, redact


def test_reads_an_env_var_or_a_file_stripped() -> None:
    assert read_secret(SecretRef(env="HOOK"), {"HOOK": " https://x/y \n"}) == "https://x/y"


def test_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("s3cret\n")
    assert read_secret(SecretRef(file=str(path)), {}) == "s3cret"


def test_a_missing_secret_names_its_source_not_a_value(tmp_path: Path) -> None:
    with pytest.raises(SecretUnavailable, match="environment variable HOOK is not set"):
        read_secret(SecretRef(env="HOOK"), {})
    with pytest.raises(SecretUnavailable, match=r"cannot read .*missing"):
        read_secret(SecretRef(file=str(tmp_path / "missing")), {})


def test_redact_replaces_every_secret_longest_first() -> None:
    text = "POST https://hooks.example/T1/abcdef failed; key abcdef"
    assert redact(text, ["abcdef", "https://hooks.example/T1/abcdef"]) == (
        "POST *** failed; key ***"
    )


def test_a_literal_is_kept_out_of_repr() -> None:
    assert "token" not in repr(SecretRef(literal="https://x/?token=1"))


def test_redact_hides_a_secret_urls_path_and_query_on_their_own() -> None:
    url = "https://hooks.slack.com/services/T0/B0/XYZ?token=abcd"
    text = 'HTTP 404: no such path "/services/T0/B0/XYZ"; token=abcd'
    assert redact(text, [url]) == 'HTTP 404: no such path "***"; ***'
