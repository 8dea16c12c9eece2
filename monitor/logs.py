"""Logging set up for the CLI and the daemon: text or JSON lines on stderr, and
APScheduler's log lines in the words of this program.

APScheduler logs job ids and internals ("Execution of job "Daemon._poll_job
(trigger: interval[0:15:00], next run at: ...)" skipped: maximum number of
running instances reached (1)"). Those that matter to an operator are reworded
into what happened to which feed; the rest stay at APScheduler's own level,
which the CLI keeps at WARNING.
"""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

_SKIPPED = re.compile(r'Execution of job ".*?" skipped: maximum number of running instances')
_MISSED = re.compile(r'Run time of job ".*?" was missed by (.+)')


class SchedulerWording(logging.Filter):
    """Rewords APScheduler's warnings in place; passes every record on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("apscheduler"):
            return True
        message = record.getMessage()
        if _SKIPPED.match(message):
            record.msg = (
                "a job was still running when it came due again (a slow feed, or a digest "
                "still being delivered): this run is skipped, the next one comes as scheduled"
            )
            record.args = ()
            record.levelno, record.levelname = logging.INFO, "INFO"
        elif match := _MISSED.match(message):
            record.msg = "a job ran late by %s (the machine was busy or asleep); it ran now"
            record.args = (match.group(1),)
        return True


def setup_logging(*, verbose: bool, log_format: str = "text") -> None:
    """Log to stderr as text lines, or as one JSON object a line (`--log-format json`)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        # One JSON object a line for journald and log shippers: timestamp, level, logger,
        # message, and the fields a line carries (event, feed, url, outcome, digest, error...).
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
            )
        )
    handler.addFilter(SchedulerWording())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    # apscheduler logs every job added and run at INFO; its warnings and errors still show.
    # urllib3 (Apprise's requests) logs each request's path at DEBUG: a webhook's path
    # may be its secret (Slack's is).
    for noisy in ("httpx", "httpcore", "apscheduler", "trafilatura", "htmldate", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
