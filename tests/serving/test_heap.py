"""Start-up objects are frozen out of the collector's scans, and still freed when unreferenced."""

import gc
import weakref


class Loaded:
    """Stands for something loaded at start-up (a module's objects, the model)."""


def test_what_exists_at_freeze_time_is_no_longer_scanned_by_the_collector():
    from serving.heap import freeze_startup_objects

    loaded = Loaded()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
        assert not any(o is loaded for o in gc.get_objects())  # in no generation the GC scans
        later = Loaded()
        assert any(o is later for o in gc.get_objects())  # made afterwards: collected as usual
        gone = weakref.ref(loaded)
        del loaded
        assert gone() is None  # reference counting still frees a frozen object
    finally:
        gc.unfreeze()
