"""Process-wide runtime settings: thread count and the CPU allocator (see benchmarks/model_throughput.py)."""

from __future__ import annotations

import os

import torch

from .models import set_fast_cpu_allocator

__all__ = ["configure"]


def configure(threads: int | None = None, fast_allocator: bool = True) -> dict:
    """Pin the torch thread count (``SALIENCY_THREADS`` or ``threads``; default: all cores) and stop glibc
    from returning activation buffers to the OS after every batch (measured 2-5x on batched CPU inference).

    Called by the runner, the notebooks' first cell, the benchmarks and the test suite.
    """
    if threads is None:
        env = os.environ.get("SALIENCY_THREADS")
        threads = int(env) if env else (os.cpu_count() or 1)
    if threads < 1:
        raise ValueError(f"threads={threads!r} is not valid; accepted values: an int >= 1")
    torch.set_num_threads(threads)
    applied = set_fast_cpu_allocator() if fast_allocator else False
    return {"threads": torch.get_num_threads(), "fast_allocator": applied}
