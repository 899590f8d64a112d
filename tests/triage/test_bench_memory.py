"""The memory bench reads resident sets from /proc, for a process and its descendants."""

from __future__ import annotations

import os
import subprocess
import sys

from triage.tools.bench_memory import process_tree_rss_mib


def test_a_process_tree_counts_its_children() -> None:
    own_alone, tree_alone = process_tree_rss_mib(os.getpid())
    assert own_alone > 1 and tree_alone >= own_alone
    child = subprocess.Popen(
        [sys.executable, "-c", 'import time; b = b"x" * (64 << 20); time.sleep(30)']
    )
    try:
        for _ in range(100):
            own, tree = process_tree_rss_mib(os.getpid())
            if tree - own >= 60:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert tree - own >= 60  # the child's 64 MiB buffer is in the tree, not in our own
    finally:
        child.kill()
        child.wait()
    assert process_tree_rss_mib(child.pid) == (0.0, 0.0)  # a process that is gone
