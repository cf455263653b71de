"""Small helpers shared by the store and the controllers (time formats, naming, hashing)."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

# k8s.io/apimachinery/pkg/util/rand: vowels and look-alike characters removed so generated
# names never spell words and are unambiguous.
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(when: datetime | None = None) -> str:
    """``metav1.Time`` serialises with second precision."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(when: datetime | None = None) -> str:
    """``metav1.MicroTime`` (Lease acquire/renew times) keeps microseconds."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def new_uid() -> str:
    return str(uuid.uuid4())


def random_suffix(length: int = 5) -> str:
    return "".join(random.choice(ALPHANUMS) for _ in range(length))


def safe_encode(text: str) -> str:
    """``rand.SafeEncodeString``: maps every byte onto ``ALPHANUMS``."""
    return "".join(ALPHANUMS[b % len(ALPHANUMS)] for b in text.encode())


def pod_template_hash(template: dict[str, Any], collision_count: int = 0) -> str:
    """Stable hash of a pod template, encoded the way ``controller.ComputeHash`` does.

    Go hashes a spew dump of the struct; we hash canonical JSON, so values differ from a real
    cluster but are stable, short and drawn from the same alphabet.
    """
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    value = _FNV_OFFSET
    for byte in data:
        value ^= byte
        value = (value * _FNV_PRIME) & 0xFFFFFFFF
    return safe_encode(str(value))
