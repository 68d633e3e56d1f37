"""Running a criterion's per-batch kernels on one thread."""

from __future__ import annotations

from collections.abc import Iterator
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
