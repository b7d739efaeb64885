"""The run's timings, measured the same way for every peer run (memory and bytes: :mod:`.meters`).

:func:`summary` applies the kit's own timing definitions
(:func:`fedhealth.reports.timing.timing_summary`: median round wall time and overhead after the
first round, the start-up cost) to a Flower app's results, which are shaped like a run record.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from fedhealth.reports.timing import round_timings, timing_summary


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


def write_report(report: dict, out: Path | None) -> dict:
    """Write a runner's report as JSON to ``out`` (when given); returns the report."""
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=1))
    return report
