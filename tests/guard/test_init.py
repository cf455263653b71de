"""Importing the guard leaves out the parts of its dependencies it never runs."""

from __future__ import annotations

import subprocess
import sys

SERVE_PATH = """
import sys
import guard.cli
from guard.api import create_app
from guard.kube import KubeClient
import kubernetes
print(sorted(m for m in UNUSED if sys.modules.get(m) is not None))
print(kubernetes.client.AppsV1Api.__name__, kubernetes.config.load_kube_config.__name__)
"""
UNUSED = ("kubernetes.dynamic", "kubernetes.watch", "kubernetes.stream", "httpx._main", "rich")


def test_the_serve_path_imports_no_unused_part_of_kubernetes_or_httpx() -> None:
    code = f"UNUSED = {UNUSED!r}\n{SERVE_PATH}"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["[]", "AppsV1Api load_kube_config"]


def test_a_part_left_out_still_imports_when_asked_for() -> None:
    code = "import guard, kubernetes.watch, sys; print(type(sys.modules['kubernetes.watch']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "<class 'module'>"
