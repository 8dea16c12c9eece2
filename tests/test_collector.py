"""`monitor.collector`: the cyclic garbage collector paused while a large structure is built,
and the objects built moved to its oldest generation at the end instead of walked at once."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from monitor.collector import collector_paused


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def no_frozen_objects() -> Iterator[None]:
    gc.collect()
    frozen = gc.get_freeze_count()
    if frozen:
        pytest.skip(f"{frozen} objects were frozen before this test")
    yield


def test_the_block_runs_without_the_collector_which_comes_back_after(
    no_frozen_objects: None,
) -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the outer block decides
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_what_the_block_built_is_old_at_its_end_and_its_garbage_still_collected(
    no_frozen_objects: None,
) -> None:
    with collector_paused():
        kept = [[index] for index in range(50_000)]
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        del cycle
        assert gc.get_count()[0] > 50_000  # all young
    # Nothing young is left to walk at the next allocation: the block's objects are old.
    assert gc.get_count()[0] < 1000
    assert gc.get_freeze_count() == 0  # handed back to the collector, not frozen
    assert gone() is not None  # a cycle waits for a full collection...
    gc.collect()
    assert gone() is None  # ...which frees it
    assert len(kept) == 50_000


def test_objects_frozen_on_purpose_stay_frozen(no_frozen_objects: None) -> None:
    frozen = [[index] for index in range(1000)]
    gc.freeze()
    try:
        count = gc.get_freeze_count()
        with collector_paused():
            built = [[index] for index in range(1000)]
        assert gc.get_freeze_count() == count  # a worker's compiled matcher, for one
        assert len(built) == len(frozen)
    finally:
        gc.unfreeze()
