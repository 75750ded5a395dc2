"""Keep freed host memory in the process, so a forward does not fault its buffers in anew.

HF's KV cache grows by `torch.cat`: each forward allocates the whole cache of every layer
again (16 sequences x 2,048 tokens of Qwen2.5-1.5B is 16 MiB per tensor). glibc serves blocks
that large with a fresh `mmap` and unmaps them on free, so every forward page-faults them in
again: 1.6 million minor faults per forward measured here, and a cost that depended on what
the allocator had done before (the profile grid read 30-70% high at large batch x context).
A serving engine preallocates its KV cache and never pays that. Turning off glibc's mmap path
and its heap trimming makes freed blocks reusable: 0 faults per forward once settled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done: bool | None = None


def retain_freed_memory() -> bool:
    """Process-wide, idempotent; True if applied (glibc on Linux), False elsewhere."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
