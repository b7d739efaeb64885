"""What every peer run measures the same way: peak memory of a process tree, and the run's timings.

:class:`TreeMemory` samples, in a thread, the resident memory of a set of processes and all their
descendants (Ray's GCS, raylet and workers; a SuperLink and its SuperNodes and app processes) and
keeps the peak of the sum. :func:`summary` applies the kit's own timing definitions
(:func:`fedhealth.reports.timing.timing_summary`: median round wall time and overhead after the
first round, the start-up cost) to a Flower app's results, which are shaped like a run record.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable

import psutil

from fedhealth.reports.timing import round_timings, timing_summary


def tree_rss(roots: list[psutil.Process]) -> int:
    """Resident bytes of ``roots`` and every descendant (each process once)."""
    seen: dict[int, int] = {}
    for root in roots:
        try:
            for proc in [root, *root.children(recursive=True)]:
                if proc.pid not in seen:
                    seen[proc.pid] = proc.memory_info().rss
        except psutil.Error:
            continue  # a process that ended between the listing and the reading
    return sum(seen.values())


class TreeMemory:
    """Peak resident memory of the processes ``roots()`` names and their descendants, sampled.

    Args:
        roots: returns the processes to watch now (the set may grow while a deployment starts).
        interval_s: sampling period.
    """

    def __init__(self, roots: Callable[[], list[psutil.Process]], *, interval_s: float = 0.2) -> None:
        self.roots = roots
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, tree_rss(self.roots()))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak_gb(self) -> float:
        return self.peak_bytes / 1024**3


def summary(results: dict) -> dict:
    """The kit's timing summary of a Flower app's results, with bytes per site per round."""
    out = {**timing_summary(results), "per_round": round_timings(results)}
    ups = [b for r in results.get("rounds", []) for b in r.get("bytes_up", {}).values()]
    downs = [r["bytes_down_per_site"] for r in results.get("rounds", []) if "bytes_down_per_site" in r]
    out["bytes_up_per_site_round"] = statistics.median(ups) if ups else None
    out["bytes_down_per_site_round"] = statistics.median(downs) if downs else None
    for key in ("client_avg_accuracy", "client_avg_auc", "sites"):
        out[key] = results.get(key)
    return out
