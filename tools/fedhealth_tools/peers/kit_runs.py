"""The kit's side of the side-by-side runs: shipped jobs in one POC federation, measured from outside.

Every job runs on the same POC federation (server and four hospital processes on 127.0.0.1, mTLS),
one after the other, each watched by the framework-neutral meters
(:mod:`fedhealth_tools.peers.meters`): peak PSS of the server and the four site process trees (their
job processes included) and the TCP bytes each site exchanged with the server's port. Round times
and each site's own training seconds come from the kit's run record
(:func:`fedhealth.reports.timing.timing_summary`), accuracy and AUC from its report
(:func:`fedhealth.reports.run_report.build_report`): the global model on each site's test split.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from fedhealth.reports.job_result import read_job_result
from fedhealth.reports.run_report import build_report
from fedhealth.reports.timing import round_timings, timing_summary
from fedhealth_tools.peers.meters import LinkBytes, TreeMemory
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.variants import heart_poc, job_variant
from fedhealth_tools.poc.workspace import set_site_data
from fedhealth_tools.simulation.run import simulation_job


@dataclass(frozen=True)
class KitJob:
    """One job of the plan: a shipped job folder, optionally with fewer rounds or a wider model.

    ``hidden``/``local_steps``: a TabularNet MLP of that width trained that many optimizer steps a
    round (:func:`fedhealth_tools.simulation.run.simulation_job`), for the overhead of a big model.
    """

    name: str
    job: Path
    rounds: int | None = None
    hidden: int | None = None
    local_steps: int | None = None


def client_average(report: dict, key: str) -> float | None:
    """The mean over sites of ``key`` (``accuracy``/``auc``) of the global model on each site's test split."""
    values = [s[key] for s in report["sites"] if s.get(key) is not None]
    return statistics.fmean(values) if values else None


def _job_folder(plan: KitJob, work: Path, sites: int) -> Path:
    """The job as shipped, with fewer rounds (its cross-site evaluation kept), or with a wider model."""
    if plan.hidden is None and plan.local_steps is None:
        if plan.rounds is None:
            return plan.job
        return job_variant(plan.job, work / "jobs" / plan.name / plan.job.name, rounds=plan.rounds)
    config = json.loads((plan.job / "app" / "config" / "config_fed_server.json").read_text())
    shipped_rounds = next(w["args"]["num_rounds"] for w in config["workflows"] if "num_rounds" in w["args"])
    return simulation_job(
        plan.job,
        work / "jobs" / plan.name / plan.job.name,
        n_sites=sites,
        rounds=plan.rounds or shipped_rounds,
        hidden=plan.hidden,
        local_steps=plan.local_steps,
    )


def run_kit_jobs(
    plans: list[KitJob], work: Path, *, project: Path, data: dict[str, Path] | None = None
) -> dict:
    """Each job of ``plans`` on one fresh POC federation; per job the measured row (see module doc).

    ``data``: each site's data folder (its ``data_root``), e.g. the peer runs' folders
    (:mod:`fedhealth_tools.peers.sites`) so that both frameworks read the very same files; default:
    the POC's own heart exports.
    """
    layout = heart_poc(project, work / "poc")
    if data is not None:
        set_site_data(layout, data)
    server_ports = {layout.port, layout.port + 1}
    results: dict[str, dict] = {}
    with PocProcesses(layout, work / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=120, check=procs.check_alive)
            roots = {name: procs.pid(name) for name in (layout.server, *layout.sites)}
            for plan in plans:
                job = _job_folder(plan, work, len(layout.sites))
                memory = TreeMemory(roots)
                links = LinkBytes({s: roots[s] for s in layout.sites}, server_ports)
                load = os.getloadavg()
                with memory, links:
                    submitted = time.time()
                    job_id = admin.submit(job, work / "submit")
                    status = admin.follow(
                        job_id, on_progress=lambda p: None, check=procs.check_alive, timeout=1800
                    )
                    finished = time.time()
                result = read_job_result(admin.download(job_id, work / "downloads" / job_id))
                results[plan.name] = measured_row(
                    result.record,
                    build_report(result.job, result.record, result.cross),
                    memory=memory.result(),
                    links=links.result(),
                    submitted=submitted,
                    finished=finished,
                    status=status,
                    load=load,
                )
                print(f"kit {plan.name}: {json.dumps(_brief(results[plan.name]))}", flush=True)
    return results


def measured_row(
    record: dict,
    report: dict,
    *,
    memory: dict,
    links: dict,
    submitted: float,
    finished: float,
    status: str,
    load: tuple[float, ...],
) -> dict:
    """One job's figures from its run record, report and meters."""
    rounds = round_timings(record)
    first = record["round_times"][0]["started"] if record.get("round_times") else None
    n_rounds = len(rounds) or 1
    return {
        "status": status,
        **timing_summary(record),
        "rounds": len(rounds),
        "submit_to_first_round_s": None if first is None else first - submitted,
        "job_wall_s": finished - submitted,
        "client_avg_accuracy": client_average(report, "accuracy"),
        "client_avg_auc": client_average(report, "auc"),
        "sites": {s["name"]: {"accuracy": s["accuracy"], "auc": s["auc"]} for s in report["sites"]},
        "peak_mem_mb": memory["peak_total_mb"],
        "peak_mem_by_process_mb": memory["peak_mb"],
        "bytes_per_site_per_round": {
            site: (row["bytes_sent"] + row["bytes_received"]) / n_rounds for site, row in links.items()
        },
        "bytes": links,
        "load_avg": load,
    }


def _brief(row: dict) -> dict:
    keys = ("status", "round_s", "overhead_s", "submit_to_first_round_s", "client_avg_accuracy")
    keys += ("peak_mem_mb",)
    return {k: row.get(k) for k in keys}
