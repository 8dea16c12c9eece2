"""The `monitor` command line. Commands only parse arguments, call the shared
operations in `service`/`pipeline`, and format the results; each module holds one
group of commands, registered on `main` when it is imported."""

from monitor.cli import operate, reading, sources, status
from monitor.cli.app import main

__all__ = ["main", "operate", "reading", "sources", "status"]
