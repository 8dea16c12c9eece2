"""Log lines: JSON objects for log shippers, APScheduler's warnings in plain words."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from monitor.logs import SchedulerWording


def test_json_logs_are_one_object_a_line_with_the_polls_fields(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        """
feeds:
  - url: http://127.0.0.1:9/feed.xml
    name: Injoignable
watchlists:
  - name: Togo
    query: Togo
digest:
  from: veille@example.org
  to: [analyste@example.org]
""",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "-c", str(config), "--log-format", "json", "poll"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert lines and all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    [poll] = [line for line in lines if line.get("event") == "poll"]
    assert poll["feed"] == "Injoignable" and poll["outcome"] == "failed"
    assert poll["url"] == "http://127.0.0.1:9/feed.xml"
    assert "127.0.0.1:9" in poll["error"]


def test_a_skipped_run_is_reworded() -> None:
    record = logging.LogRecord(
        "apscheduler.scheduler",
        logging.WARNING,
        __file__,
        1,
        'Execution of job "Daemon._poll_job (trigger: interval[0:15:00], next run at: '
        '2026-12-01 08:00:00 UTC)" skipped: maximum number of running instances reached (1)',
        (),
        None,
    )
    assert SchedulerWording().filter(record)
    assert record.levelname == "INFO"
    assert record.getMessage().startswith("a job was still running when it came due again")


def test_our_own_records_pass_unchanged() -> None:
    record = logging.LogRecord("monitor.pipeline", logging.INFO, __file__, 1, "x: %s", ("y",), None)
    assert SchedulerWording().filter(record) and record.getMessage() == "x: y"
