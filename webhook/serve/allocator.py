"""Giving freed memory back to the system after a burst of connections (glibc's ``malloc_trim``).

Each TLS connection allocates OpenSSL and transport buffers in C. When hundreds close at once, glibc keeps the freed
pages inside its heaps, fragmented among live allocations, so the RSS stayed at its peak after every burst: 12 bursts
of 500 idle connections took it from 66 to 247 MiB (hack/hostile.py). ``malloc_trim(0)`` returns the free pages;
the connection registry calls :func:`release_free_memory` after many connections closed (at most once a second).
Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from typing import Final

TRIM_AFTER_CLOSED: Final = 256
"""Connections closed since the last trim before the next one (a trim costs about a millisecond)."""
TRIM_INTERVAL: Final = 1.0
"""Seconds between trims at most."""


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None


def release_free_memory() -> bool:
    """Collect cycles, then return the allocator's free pages to the system; whether there was a trim to call.

    uvloop's TLS protocol objects of closed connections sit in reference cycles: until a full collection frees
    them, there is little to give back. The pair costs a few milliseconds on the event loop, once a second at most
    and only after connections closed in bulk.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    gc.collect()
    trim(0)
    return True
