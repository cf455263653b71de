"""Where receiver secrets come from, and how they are kept out of logs, the API and reprs.

Webhook URLs, routing keys and signing keys are credentials: config names an environment
variable or a file (`url_env`, `url_file`), the sender reads it at send time, and every error
text is passed through `redact` before it is stored or logged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from .base import SecretRef

REDACTED = "***"


class SecretUnavailable(Exception):
    """A configured secret cannot be read; the message names its source, never its value."""


def one_source(
    name: str, *, literal: str | None, env: str | None, file: str | None, required: bool = True
) -> SecretRef | None:
    """Check that exactly one source is given; the error names the keys to choose from."""
    given = [s for s in (literal, env, file) if s]
    keys = ([name] if literal is not None else []) + [f"{name}_env", f"{name}_file"]
    if len(given) > 1:
        raise ValueError(f"give only one of {', '.join(keys)}")
    if not given:
        if required:
            raise ValueError(f"missing: give one of {', '.join(keys)}")
        return None
    return SecretRef(env=env or None, file=file or None, literal=literal or None)


def read_secret(ref: SecretRef, environ: Mapping[str, str] | None = None) -> str:
    """The secret's value, stripped of surrounding whitespace (files usually end in a newline)."""
    if ref.literal is not None:
        return ref.literal
    if ref.env is not None:
        value = (os.environ if environ is None else environ).get(ref.env, "").strip()
        if not value:
            raise SecretUnavailable(f"environment variable {ref.env} is not set or empty")
        return value
    if ref.file is not None:
        try:
            value = Path(ref.file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretUnavailable(f"cannot read {ref.file}: {exc.strerror}") from None
        if not value:
            raise SecretUnavailable(f"{ref.file} is empty")
        return value
    raise SecretUnavailable("no source configured")


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a secret (longest first) with `***`.

    A secret URL's path and query are secrets on their own (a Slack webhook's token is its
    path), since error pages and proxies often echo just the path.
    """
    variants = {v for secret in secrets for v in _variants(secret) if len(v) >= 4}
    for secret in sorted(variants, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _variants(secret: str) -> list[str]:
    parts = urlsplit(secret)
    if not (parts.scheme and parts.netloc):
        return [secret]
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    return [secret, tail, parts.path, parts.query]
