"""A short run of `scripts/soak.py`: the real daemon killed with SIGKILL at chosen moments
(start-up, page fetches, write transactions, inside SMTP sessions), restarted each time,
then checked against a reference matcher and the SMTP server's log."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.soak import soak


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.timeout(600)
def test_sigkill_many_times_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    report = soak(
        kills=12, seed=3, workdir=tmp_path, feeds=2, cap=10, max_run_seconds=2.0, log=print
    )
    assert report.problems == [], "\n".join(report.lines())
    assert report.kills == 12
    assert report.expected_hits > 0
    assert report.stored_hits == report.expected_hits
    assert report.digests_sent >= 1 and report.messages_received >= report.digests_sent
    # Every extra copy is a re-send of a digest left "sending" by a kill (verify() checks
    # that a kill came between the two copies).
    assert report.duplicate_messages <= report.resends
    assert report.integrity == "ok" and report.orphans == 0
