"""Locate the shared third-party test corpus (never copied into this repository).

The corpus lives beside the checkout as ``../shared/corpus``; set
``MONITOR_CORPUS`` to point elsewhere. Tests that need it skip with a clear
reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def corpus_path() -> Path | None:
    configured = os.environ.get("MONITOR_CORPUS")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "corpus"
    return candidate if candidate.is_dir() else None


def require_corpus(*parts: str) -> Path:
    """Return the corpus path joined with `parts`, or skip the calling test."""
    root = corpus_path()
    if root is None:
        pytest.skip(
            "test corpus not found: expected ../shared/corpus beside the checkout "
            "(or set MONITOR_CORPUS=/path/to/corpus)"
        )
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test corpus has no {path}")
    return path
