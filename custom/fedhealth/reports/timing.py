"""Round timing from the kit's own run record: wall time, slowest site, and the overhead between.

The server's :class:`~fedhealth.widgets.run_recorder.RunRecorder` stamps each round's start and end
(``round_times``), and each site reports the seconds it spent in its train task
(:data:`fedhealth.constants.M_TASK_S`). A round's overhead is what the federation adds on top of the
slowest site's own work: task polling, serialization, transfer, aggregation and persisting.
"""

from __future__ import annotations

from statistics import median

from fedhealth.constants import M_TASK_S
from fedhealth.reports.run_record import RunRecord


def round_timings(record: RunRecord) -> list[dict]:
    """One row per finished round: ``round``, ``wall_s``, ``slowest_site_s``, ``overhead_s``, ``sites``.

    Raises:
        ValueError: the record has no ``round_times`` (it was written by an older kit).
    """
    if "round_times" not in record:
        raise ValueError("the run record has no round_times; it was written before the kit recorded them")
    per_round = {r["round"]: r.get("sites", {}) for r in record.get("rounds", [])}
    rows = []
    for stamp in record["round_times"]:
        if "done" not in stamp:
            continue
        wall = stamp["done"] - stamp["started"]
        sites = per_round.get(stamp["round"], {})
        task = [m[M_TASK_S] for m in sites.values() if m.get(M_TASK_S) is not None]
        slowest = max(task) if task else None
        rows.append(
            {
                "round": stamp["round"],
                "wall_s": wall,
                "slowest_site_s": slowest,
                "overhead_s": None if slowest is None else wall - slowest,
                "sites": len(sites),
            }
        )
    return rows


def timing_summary(record: RunRecord, *, skip_first: bool = True) -> dict:
    """Median round wall time and overhead, and the start-up cost before the first round.

    Args:
        record: a run record (``fedhealth_run.json``).
        skip_first: leave the first round out of the medians (it pays one-off costs: imports, first
            connections); its own figures are reported separately.
    """
    rows = round_timings(record)
    steady = rows[1:] if skip_first and len(rows) > 1 else rows
    walls = [r["wall_s"] for r in steady]
    overheads = [r["overhead_s"] for r in steady if r["overhead_s"] is not None]
    first = record["round_times"][0]["started"] if record.get("round_times") else None
    return {
        "rounds": len(rows),
        "round_s": median(walls) if walls else None,
        "overhead_s": median(overheads) if overheads else None,
        "first_round_s": rows[0]["wall_s"] if rows else None,
        "startup_s": None if first is None or "started" not in record else first - record["started"],
    }
