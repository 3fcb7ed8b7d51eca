"""The garbage collector's settings for a long-running server process.

CPython's cycle collector runs a young-generation pass every 700 container
allocations. A busy XMPP server allocates tens of thousands of short-lived
containers a second (elements, Deferreds, tuples), most of them freed by
reference counting long before a pass would see them; with the default
threshold the collector took 8-14% of the server's time in the login and
presence-storm benchmarks (py-spy; ``benchmarks/README.md``). Two settings
cut that without letting garbage grow unbounded:

* ``gc.freeze()`` once the server is ready moves everything built at
  start-up (modules, configuration, code objects, loaded rooms) into the
  permanent generation, so no later pass walks it again;
* a young-generation threshold of :data:`YOUNG_THRESHOLD` allocations:
  passes run ~70x less often, and each finds mostly objects still alive in
  an operation in flight. Cyclic garbage waits a little longer (a few MB at
  most), then goes as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable

#: Container allocations between two young-generation collections (CPython: 700).
YOUNG_THRESHOLD = 50_000
#: Young collections between two middle-generation ones (CPython: 10).
MIDDLE_THRESHOLD = 20
#: Middle collections before an old-generation one is considered (CPython: 10;
#: CPython also waits until a quarter of the old generation is new).
OLD_THRESHOLD = 10


def tune_for_server() -> tuple[int, int, int]:
    """Collect once, freeze what start-up built, raise the thresholds.

    Returns the previous thresholds (for :func:`restore`).
    """
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    return previous


def restore(thresholds: tuple[int, int, int]) -> None:
    """Undo :func:`tune_for_server` (tests; a process exits instead)."""
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once (None: not glibc)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def return_free_memory() -> bool:
    """Hand the C allocator's free pages back to the system (glibc's ``malloc_trim``).

    Memory freed in the middle of the heap (idle streams' parsers, see
    ``limits.hibernate_after``) is otherwise kept by the process: free for
    its own reuse, but still counted in its resident size. False where the
    C library has no ``malloc_trim`` (not glibc).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
