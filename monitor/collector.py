"""Pausing Python's cyclic garbage collector while a large structure that all lives is built.

Loading 100,000 watchlists, or compiling them, allocates millions of objects and leaves almost
no garbage; the collections those allocations trigger only walk the growing heap again and
again. `collector_paused` turns the collector off for the block. At its end the objects the
block allocated would all sit in the youngest generation, and the first allocation after it
would walk every one of them (then the middle generation would, a little later): about a
second of CPU after a 100,000-watchlist load, as long again after a compilation. So they are
moved straight to the oldest generation (`gc.freeze` then `gc.unfreeze`, which add no
collection): garbage cycles among them are still collected, by the next full collection.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off (unless it was off already)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        age_young_objects()
        gc.enable()


def age_young_objects() -> None:
    """Move every object the collector tracks to its oldest generation, without a collection.

    Not when objects were frozen on purpose (`gc.freeze`, as the workers' fork server does):
    `gc.unfreeze` would hand those back to the collector as well.
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
