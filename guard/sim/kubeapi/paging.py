"""Chunked LISTs (`limit` and `continue`) served the way the API server serves them.

A client that pages through a list gets one consistent list: every page is cut from the list
as it was at the first page's resourceVersion, which the list carries on every page, however
the objects change in between. The API server reads those pages from etcd at that revision;
the simulator keeps the first page's copy of the whole list instead, for the last few lists
still being paged, and like etcd after a compaction it answers a continue token whose list
it no longer holds with 410 Gone (reason Expired), after which the client lists afresh.
The token is opaque to clients; like the API server's, it is base64 (URL alphabet, no
padding) of `{"v": "meta.k8s.io/v1", "rv": ..., "start": ...}`, where `start` is the key the
next page starts after. `remainingItemCount` is set only when no selector filters the list,
as there the server can count what is left.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import threading
from collections import OrderedDict
from typing import Any

from guard.sim.kubeapi import errors
from guard.sim.kubeapi.errors import ApiError

JSON = dict[str, Any]
TOKEN_VERSION = "meta.k8s.io/v1"
#: Lists kept for paging at once; a continue token for an older one is Expired.
KEPT_LISTS = 8
EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter."
)

#: What identifies one list: resource, namespace, label and field selector.
ListKey = tuple[str, str | None, str | None, str | None]


def key_of(item: JSON) -> str:
    """An object's place in a list: etcd's key order, namespace then name."""
    meta = item["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def encode(rv: str, start: str) -> str:
    raw = json.dumps({"v": TOKEN_VERSION, "rv": int(rv), "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> tuple[str, str]:
    """(resourceVersion, start key) of a continue token; 400 Bad Request when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
        if body.get("v") != TOKEN_VERSION:
            raise ValueError(f"unsupported version {body.get('v')!r}")
        return str(int(body["rv"])), str(body["start"])
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError) as err:
        raise errors.bad_request(f"continue key is not valid: {err}") from err


class Pager:
    """The lists being paged through, newest last, each with its items' keys."""

    def __init__(self, kept: int = KEPT_LISTS) -> None:
        self._kept = kept
        self._lists: OrderedDict[tuple[ListKey, str], tuple[list[str], list[JSON]]] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, key: ListKey, items: list[JSON], rv: str, limit: int, filtered: bool) -> JSON:
        """The list's metadata and first page; the list is kept if more pages follow."""
        keys = [key_of(item) for item in items]
        if 0 < limit < len(items):
            with self._lock:
                self._lists[(key, rv)] = (keys, items)
                self._lists.move_to_end((key, rv))
                while len(self._lists) > self._kept:
                    self._lists.popitem(last=False)
        return _page(keys, items, rv, 0, limit, filtered)

    def next(self, key: ListKey, token: str, limit: int, filtered: bool) -> JSON:
        """A later page, cut from the list as it was at the token's resourceVersion."""
        rv, start = decode(token)
        with self._lock:
            kept = self._lists.get((key, rv))
        if kept is None:
            raise ApiError(410, "Expired", EXPIRED_MESSAGE)
        keys, items = kept
        first = bisect.bisect_right(keys, start)
        page = _page(keys, items, rv, first, limit, filtered)
        if "continue" not in page["metadata"]:
            with self._lock:
                self._lists.pop((key, rv), None)
        return page


def _page(
    keys: list[str], items: list[JSON], rv: str, first: int, limit: int, filtered: bool
) -> JSON:
    """Items from `first`, at most `limit` of them (all when 0), with the list's metadata."""
    end = first + limit if limit > 0 else len(items)
    meta: JSON = {"resourceVersion": rv}
    if end < len(items):
        meta["continue"] = encode(rv, keys[end - 1])
        if not filtered:
            meta["remainingItemCount"] = len(items) - end
    page = [dict(item) for item in items[first:end]]
    for item in page:  # list items carry no kind/apiVersion on a real API server
        item.pop("kind", None)
        item.pop("apiVersion", None)
    return {"metadata": meta, "items": page}
