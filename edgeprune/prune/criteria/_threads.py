"""Running a criterion's per-batch kernels on one thread, or one thread per core."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the enclosed tensor code on one intra-op thread, then restore the previous count.

    The kernels that reduce feature maps to statistics (SSIM blocks, CHIP's spectra, HRank's
    ranks) are many medium and small operations: batched LAPACK loops over tiny matrices and lets
    MKL thread each one, and every parallel region pays a hand-off between threads. On two busy
    cores that cost more than the work (measured on ResNet-56's maps with the machine loaded:
    SSIM 5–20× and a batched 49×49 eigh 40× slower on 2 threads than on 1, CPU time included);
    on an idle machine one thread loses at most the second core on these kernels. The setting is
    process-wide, so it is held only for the kernel.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def per_image(fn: Callable[[torch.Tensor], torch.Tensor], maps: torch.Tensor) -> torch.Tensor:
    """``fn(maps)`` for a kernel that treats each image (dim 0) on its own: the images are split
    into one piece per intra-op thread torch had, and the pieces run at once on Python threads,
    each kernel on one intra-op thread (`one_thread`; torch releases the GIL inside its ops).

    Each image's result is computed as it would be in one call, so the values do not depend on
    the thread count. Small kernels' per-call cost stays on one thread (no intra-op hand-offs)
    while a second core still does half the work (ResNet-56's HRank ranks, CHIP's spectra,
    QSFM's SSIM blocks).
    """
    workers = min(torch.get_num_threads(), maps.shape[0])
    with one_thread():
        if workers <= 1:
            return fn(maps)
        pieces = torch.tensor_split(maps, workers)

        def run(piece: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():  # grad mode is per thread; scores need no graph
                return fn(piece)

        return torch.cat(list(_pool(workers).map(run, pieces)))


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """One kernel pool per process, kept between calls: a scoring pass calls `per_image` once
    per layer and batch (285 times for ResNet-56 with 5 batches), and starting its threads each
    time cost ~2 s of a 23 s QSFM pass. A forked child makes its own (the parent's threads do
    not exist there); a larger ``workers`` replaces it."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < workers:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[2].shutdown(wait=False)
            _POOL = (
                os.getpid(),
                workers,
                ThreadPoolExecutor(workers, thread_name_prefix="edgeprune-kernel"),
            )
        return _POOL[2]
