"""The long-running processes settle their heap once started; checked in a fresh interpreter,
since freezing the test process's own objects would outlive the test."""

from __future__ import annotations

import subprocess
import sys

from guard.heap import YOUNG_COLLECTION_EVERY

PROBE = """
import gc
from guard import heap
before = gc.get_freeze_count()
heap.settle()
print(before, gc.get_freeze_count(), gc.get_threshold()[0])
"""


def test_settle_freezes_start_up_objects_and_collects_young_objects_less_often() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    frozen_before, frozen_after, young_threshold = map(int, shown)
    assert frozen_before == 0
    assert frozen_after > 1000
    assert young_threshold == YOUNG_COLLECTION_EVERY


def test_reference_cycles_are_still_collected_without_being_asked() -> None:
    probe = (
        PROBE
        + """
import weakref
class Node: pass
node = Node(); node.self = node
alive = weakref.ref(node)
del node
kept = [[] for _ in range(3 * heap.YOUNG_COLLECTION_EVERY)]
print(alive() is None)
"""
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert shown.stdout.split()[-1] == "True"
