"""Chunked LISTs: `limit` and `continue` as the API server serves them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from guard.sim.kubeapi import KubeApiSimulator
from guard.sim.kubeapi.paging import KEPT_LISTS

NS = "paged"
SERVICES = f"/api/v1/namespaces/{NS}/services"


def _service(name: str, tier: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "labels": {"tier": tier}},
        "spec": {"ports": [{"port": 80}]},
    }


@pytest.fixture
def sim() -> Iterator[KubeApiSimulator]:
    simulator = KubeApiSimulator(tick_seconds=0.05)
    simulator.start()
    for i in range(5):
        simulator.apply(_service(f"s-{i}", "web" if i % 2 == 0 else "db"))
    yield simulator
    simulator.stop()


@pytest.fixture
def http(sim: KubeApiSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url) as client:
        yield client


def _pages(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    pages = [http.get(SERVICES, params=params).json()]
    while token := pages[-1]["metadata"].get("continue"):
        pages.append(http.get(SERVICES, params={**params, "continue": token}).json())
    return pages


def _names(pages: list[dict[str, Any]]) -> list[str]:
    return [item["metadata"]["name"] for page in pages for item in page["items"]]


def test_pages_of_limit_items_make_up_the_whole_list(http: httpx.Client) -> None:
    whole = http.get(SERVICES).json()
    pages = _pages(http, limit=2)
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert _names(pages) == _names([whole]) == [f"s-{i}" for i in range(5)]
    assert [p["metadata"].get("remainingItemCount") for p in pages] == [3, 1, None]
    assert {p["metadata"]["resourceVersion"] for p in pages} == {
        whole["metadata"]["resourceVersion"]
    }
    assert all(p["kind"] == "ServiceList" and "kind" not in p["items"][0] for p in pages)


def test_later_pages_show_the_list_as_it_was_at_the_first(http: httpx.Client) -> None:
    first = http.get(SERVICES, params={"limit": 2}).json()
    http.delete(f"{SERVICES}/s-3").raise_for_status()
    http.post(SERVICES, json=_service("s-5")).raise_for_status()
    patch = {"metadata": {"labels": {"tier": "changed"}}}
    http.patch(
        f"{SERVICES}/s-2", json=patch, headers={"Content-Type": "application/merge-patch+json"}
    ).raise_for_status()
    rest = http.get(SERVICES, params={"limit": 2, "continue": first["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in rest.json()["items"]] == ["s-2", "s-3"]
    assert rest.json()["items"][0]["metadata"]["labels"] == {"tier": "web"}
    assert rest.json()["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert _names(_pages(http, limit=2)) == ["s-0", "s-1", "s-2", "s-4", "s-5"]


def test_a_filtered_list_pages_without_a_remaining_count(http: httpx.Client) -> None:
    pages = _pages(http, limit=2, labelSelector="tier=web")
    assert _names(pages) == ["s-0", "s-2", "s-4"]
    assert all("remainingItemCount" not in p["metadata"] for p in pages)


def test_a_list_that_fits_one_page_has_no_continue_token(http: httpx.Client) -> None:
    assert "continue" not in http.get(SERVICES, params={"limit": 5}).json()["metadata"]


def test_a_continue_token_for_a_list_no_longer_held_has_expired(http: httpx.Client) -> None:
    stale = http.get(SERVICES, params={"limit": 1}).json()["metadata"]["continue"]
    for i in range(KEPT_LISTS):
        http.post(SERVICES, json=_service(f"n-{i}")).raise_for_status()  # a new version each
        http.get(SERVICES, params={"limit": 1}).raise_for_status()
    answer = http.get(SERVICES, params={"limit": 1, "continue": stale})
    assert answer.status_code == 410
    assert (answer.json()["reason"], answer.json()["code"]) == ("Expired", 410)


def test_a_continue_token_that_is_not_one_is_a_bad_request(http: httpx.Client) -> None:
    junk = base64.urlsafe_b64encode(b'{"v": "other"}').decode()
    for token in ("nonsense!", junk):
        answer = http.get(SERVICES, params={"limit": 1, "continue": token})
        assert (answer.status_code, answer.json()["reason"]) == (400, "BadRequest")
