"""Peak memory of a whole process tree, sampled in a background thread (psutil)."""

import os
import threading
from typing import Any


class MemorySampler(threading.Thread):
    """Peak of summed memory over this process and all its descendants.

    Every ``interval`` s: psutil ``memory_full_info().pss`` (proportional set
    size: shared pages split between the processes that map them) of each
    process, summed; falls back to RSS for a process whose PSS cannot be read.
    Summed RSS is tracked too (it over-counts pages shared between processes).
    """

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="memory-sampler")
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.root = psutil.Process(os.getpid())
        self.peak_pss = 0
        self.peak_rss = 0
        self.peak_procs = 0
        self.peak_ray_workers = 0
        self.pss_ok = True
        self.samples = 0
        # Every process ever seen in the tree: Ray workers can outlive
        # ray.shutdown() for a few seconds, re-parented to init; they still count.
        self.seen: dict[int, Any] = {}
        self._stop_evt = threading.Event()

    def sample(self) -> None:
        psutil = self._psutil
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            self.seen.setdefault(p.pid, p)
        listed = {p.pid for p in procs}
        procs += [p for pid, p in list(self.seen.items()) if pid not in listed and p.is_running()]
        pss = rss = 0
        n = ray_workers = 0
        for p in procs:
            try:
                if p.name().startswith("ray::"):
                    ray_workers += 1
            except psutil.Error:
                pass
            try:
                mi = p.memory_full_info()
                rss += mi.rss
                pss += getattr(mi, "pss", mi.rss)
                n += 1
            except psutil.AccessDenied:
                try:
                    r = p.memory_info().rss
                except psutil.Error:
                    continue
                self.pss_ok = False
                rss += r
                pss += r
                n += 1
            except psutil.Error:  # exited between listing and reading
                continue
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_procs = max(self.peak_procs, n)
        self.peak_ray_workers = max(self.peak_ray_workers, ray_workers)
        self.samples += 1

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.sample()
            self._stop_evt.wait(self.interval)

    def stragglers(self) -> list[Any]:
        """Processes seen in the tree that are still running (other than us)."""
        me = os.getpid()
        return [p for pid, p in list(self.seen.items()) if pid != me and p.is_running()]

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=5)
        self.sample()
