"""A fixed set of threads with two queues: the writer's cores.

:class:`tcscodec.writer.TcsWriter` gives all its work to one
:class:`WorkPool` of ``threads`` threads, so that it keeps that many cores
busy and no more: the row bands of a frame's mask sum and of a group's
quantisation, which the caller waits for, go to the urgent queue
(:meth:`WorkPool.run`); the tiles' record coding, which nobody waits for
until the next group, to the other (:meth:`WorkPool.submit`).  A thread
takes urgent work first, so a frame's sum never waits behind a whole
group of tiles, and a tile being coded when a frame arrives overlaps it.
The kernels release the GIL, so the threads run in parallel.

A ``ThreadPoolExecutor`` has one FIFO queue: the frame's bands would
wait for every queued tile, and a second executor for them would put
twice ``threads`` threads on the cores.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["WorkPool", "row_bands"]

#: a band of rows is at least this many pixels, so that a task's cost stays well above its overhead
BAND_PIXELS = 1 << 18


def row_bands(shape, n: int, min_pixels: int = BAND_PIXELS) -> list[tuple[int, int]]:
    """Up to ``n`` row ranges ``(y0, y1)`` covering ``shape``, each of at
    least ``min_pixels`` pixels where there are enough (one band otherwise)."""
    h, w = int(shape[0]), int(shape[1])
    n = max(1, min(int(n), h, (h * w) // max(1, min_pixels)))
    edges = [h * i // n for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


class WorkPool:
    """``threads`` worker threads serving an urgent and a normal queue.

    Parameters
    ----------
    threads : int
        Worker threads, at least 1.
    name : str
        Prefix of the threads' names.
    """

    def __init__(self, threads: int, name: str = "tcs-work"):
        self.threads = max(1, int(threads))
        self._cond = threading.Condition()
        self._queues: tuple[deque, deque] = (deque(), deque())  # urgent, normal
        self._closed = False
        self._workers = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(self.threads)]
        for t in self._workers:
            t.start()

    def submit(self, fn: Callable, *args: Any, urgent: bool = False) -> Future:
        """Queue ``fn(*args)``; its future holds the result or the exception."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the work pool is shut down")
            self._queues[0 if urgent else 1].append((future, fn, args))
            self._cond.notify()
        return future

    def run(self, jobs: list[Callable[[], Any]]) -> list:
        """Run the callables ``jobs`` ahead of the queued work and wait for
        all; returns their results in order, or raises the first error
        (after all have finished, so that none still writes an array the
        caller reuses)."""
        futures = [self.submit(job, urgent=True) for job in jobs]
        for f in futures:
            f.exception()  # waits
        return [f.result() for f in futures]

    def _work(self) -> None:
        urgent, normal = self._queues
        while True:
            with self._cond:
                while not (urgent or normal or self._closed):
                    self._cond.wait()
                if not (urgent or normal):
                    return  # shut down and nothing left
                future, fn, args = (urgent or normal).popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # the caller sees it through the future
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """No more work; with ``cancel_futures`` the queued work is dropped
        (its futures cancelled), otherwise it is done first."""
        with self._cond:
            self._closed = True
            if cancel_futures:
                for queue in self._queues:
                    while queue:
                        queue.popleft()[0].cancel()
            self._cond.notify_all()
        if wait:
            current = threading.current_thread()
            for t in self._workers:
                if t is not current:
                    t.join()
