"""The C allocator's free memory, given back to the operating system.

glibc keeps the memory that large requests freed (decoded images, anomaly maps) in its heaps
for reuse, so without this a server that once served a large image stays at its peak size
(issue 27: 1.8 GB after a 150 KB request). ``malloc_trim(0)`` returns the free pages; it costs
milliseconds, so the in-flight gate calls it only when the last request of a large load
leaves. On a C library without it nothing happens.
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def give_back() -> bool:
    """Returns the allocator's free memory to the system; whether any was returned."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
