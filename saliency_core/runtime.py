"""Process-wide runtime settings: thread count and the CPU allocator (see benchmarks/model_throughput.py)."""

from __future__ import annotations

import os

import torch

from .checks import check_int

__all__ = ["configure", "set_fast_cpu_allocator"]


def configure(threads: int | None = None, fast_allocator: bool = True) -> dict:
    """Pin the torch thread count (``SALIENCY_THREADS`` or ``threads``; default: all cores) and stop glibc
    from returning activation buffers to the OS after every batch (measured 2-5x on batched CPU inference).

    Called by the runner, the notebooks' first cell, the benchmarks and the test suite.
    """
    if threads is None:
        env = os.environ.get("SALIENCY_THREADS")
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise ValueError(f"SALIENCY_THREADS={env!r} is not valid; accepted values: an int >= 1") from None
        else:
            threads = os.cpu_count() or 1
    threads = check_int("threads", threads, 1)
    torch.set_num_threads(threads)
    applied = set_fast_cpu_allocator() if fast_allocator else False
    return {"threads": torch.get_num_threads(), "fast_allocator": applied}


def set_fast_cpu_allocator() -> bool:
    """Stop glibc malloc from returning big blocks to the OS after every batch (``mallopt``).

    Batched CPU inference allocates and frees large activation buffers; with glibc's defaults each
    one is an ``mmap``/``munmap`` pair, and page faults dominate. Equivalent to
    ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``.
    Returns True when applied (glibc only).
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1
    ok &= libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return bool(ok)
