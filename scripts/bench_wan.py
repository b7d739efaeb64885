"""Round time, bytes and AUC over emulated WAN links: ``make bench-wan`` -> ``results/bench_wan.json``.

Each lab of ``fedhealth_tools/netlab/netlab.json`` (``fast``: every site on 1 Gbit/s 5 ms; ``wan``:
50 Mbit/s 30 ms; ``rural``: the same with one rural site on 20 Mbit/s 60 ms and 0.5 % loss) is one
federation of real FLARE processes, each host in its own network namespace (production kits at the
server's lab address). On it run the heart job and the chest X-ray job (``small_cnn``, 105k weights)
with no compression, int8 and top-k 1 % with error feedback, waiting for all four sites; on the
rural lab also with ``min_clients`` 3 and a 1 s wait. Then the straggler: one site 10x slower than
a round (the fault drill's ``slow`` filter holds its result back), with all sites and with
``min_clients`` 3 and no wait (a round closes when 3 have answered).

Measured per run: the median round wall time (the server's round stamps), the bytes each site's link
carried per round both ways (the link emulator's frame counts: TCP/IP, TLS and FLARE framing
included), the final global model's AUC (test-size-weighted mean of the sites' AUCs) and each site's
participation. Nothing here is chosen after seeing test figures: the settings are the shipped jobs'.
Run it alone (speed figures); 1200 s here on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from fedhealth.reports.run_report import find_run_files
from fedhealth.reports.timing import round_timings
from fedhealth_tools.netlab.lab import Lab, LabRun
from fedhealth_tools.poc.variants import FAULT_FILTER, job_variant, project_with_default_scopes

ROOT = Path(__file__).resolve().parents[1]
JOBS = {"heart": ROOT / "jobs" / "heart_topk", "cxr": ROOT / "jobs" / "cxr_topk"}
ROUNDS = {"heart": 6, "cxr": 10}
COMPRESSIONS = ("none", "int8", "topk")
# the CXR job's shipped schedule (cxr_topk: 10 % decaying to 1 % over 20 rounds), as a fourth upload
SCHEDULED = "topk_schedule"
SCHEDULE_KEYS = ("warmup_rounds", "k_start", "decay_rounds")
LABELS = {"topk": "topk 1% +EF", SCHEDULED: "topk 10%→1% +EF"}
TOPK_FRACTION = 0.01
WAIT_AFTER_MIN_S = 1  # FLARE takes whole seconds; the slow-site run waits 0 (closes at 3 of 4)
SLOW_FACTOR = 10
SLOW_SITE = "va_long_beach"
UPDATE_COMPRESSOR = "fedhealth.filters.update_compressor.UpdateCompressor"


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def _compressors(config: dict, direction: str):
    for entry in config.get(direction, []):
        for f in entry.get("filters", []):
            if f.get("path") == UPDATE_COMPRESSOR:
                yield f


def compression_job(src: Path, dest: Path, compression: str, **variant: object) -> Path:
    """``src`` (a ``*_topk`` job: compressors both ways), uploads ``none``, ``int8``, top-k 1 % + EF
    (flat) or ``topk_schedule`` (the job's own top-k schedule, unchanged).

    Downloads (the server's global model): dense for ``none``, int8 otherwise (as the shipped job).
    """
    job = job_variant(src, dest, **variant)
    sparse = compression in ("topk", SCHEDULED)

    def topk_args(args: dict) -> dict:
        if compression == "topk":  # flat 1 %: no warm-up, no decay
            args = {k: v for k, v in args.items() if k not in SCHEDULE_KEYS}
            args["k_fraction"] = TOPK_FRACTION
        return args

    def client(config: dict) -> None:
        for f in _compressors(config, "task_result_filters"):
            f["args"] = topk_args(f["args"]) if sparse else {"mode": compression, "error_feedback": False}
        for executor in config["executors"]:
            args = executor["executor"]["args"]
            algorithms = [a for a in args.get("algorithms", []) if a["name"] != "topk" or sparse]
            for a in algorithms:
                if a["name"] == "topk":
                    a["args"] = topk_args(a["args"])
            args["algorithms"] = algorithms

    def server(config: dict) -> None:
        for f in _compressors(config, "task_data_filters"):
            f["args"] = {"mode": "none" if compression == "none" else "int8", "error_feedback": False}
        for component in config["components"]:  # without the top-k plug-in the sites send WEIGHTS
            if component["id"] == "aggregator" and not sparse:
                component["args"]["expected_data_kind"] = "WEIGHTS"

    _edit(job / "app" / "config" / "config_fed_client.json", client)
    _edit(job / "app" / "config" / "config_fed_server.json", server)
    return job


def measure(run: LabRun, *, job: str, lab: str, compression: str, min_clients: int) -> dict:
    """One row: median round time, wire bytes per site per round, AUC, participation."""
    if not any(p["rate"] for p in run.report["participation"].values()):
        raise RuntimeError(
            f"{job} {lab} {compression}: no site's update was aggregated; the row would be void"
        )
    record, _ = find_run_files(run.result)
    timings = round_timings(record)
    walls = [r["wall_s"] for r in timings]
    overheads = [r["overhead_s"] for r in timings if r.get("overhead_s") is not None]
    rounds = max(len(walls), 1)
    per_site = {s: (c["up"]["bytes"] + c["down"]["bytes"]) / rounds for s, c in run.links.items()}
    upload = {s: c["up"]["bytes"] / rounds for s, c in run.links.items()}
    return {
        "job": job,
        "profile": lab,
        "compression": LABELS.get(compression, compression),
        "min_clients": min_clients,
        "status": run.status,
        "rounds": len(walls),
        "round_s": statistics.median(walls) if walls else None,
        "round_s_all": [round(w, 3) for w in walls],
        "overhead_s": statistics.median(overheads) if overheads else None,
        "slowest_site_s": statistics.median(
            t["slowest_site_s"] for t in timings if t["slowest_site_s"] is not None
        )
        if overheads
        else None,
        "bytes_per_site": statistics.mean(per_site.values()),
        "upload_bytes_per_site": statistics.mean(upload.values()),
        "bytes_by_site": {s: round(b) for s, b in per_site.items()},
        "auc": run.report["global"]["auc"],
        "auc_by_site": {s["name"]: s["auc"] for s in run.report["sites"]},
        "participation": {s: p["rate"] for s, p in run.report["participation"].items()},
        "seconds": round(run.seconds, 1),
    }


def _write(out: Path, payload: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_wan.json")
    parser.add_argument("--workspace", type=Path, default=ROOT / "workspace" / "bench_wan")
    parser.add_argument("--labs", nargs="+", default=["fast", "wan", "rural"])
    parser.add_argument("--jobs", nargs="+", default=list(JOBS))
    args = parser.parse_args(argv)
    started = time.monotonic()
    project = project_with_default_scopes(ROOT / "project.yml", args.workspace / "project_standard.yml")
    payload: dict = {
        "command": "make bench-wan",
        "machine": f"{platform.machine()} {platform.release()}, 2 cores shared by every host",
        "project": "project.yml with every site offering the default scopes (switzerland's strict-only scope "
        "filters the heart model's net.bias, which a chest X-ray job does not have)",
        "links": "netlab.json labs; rate: tc tbf; delay, jitter, loss: the user-space link emulator",
        "rounds": ROUNDS,
        "wait_time_after_min_received_s": WAIT_AFTER_MIN_S,
        "load_average_start": os.getloadavg(),
        "rows": [],
        "probes": {},
    }
    jobs_dir = args.workspace / "jobs"
    for lab_name in args.labs:
        allow = [FAULT_FILTER] if lab_name == "rural" else []
        with Lab(
            workspace=args.workspace / lab_name, project_file=project, lab=lab_name, allow=allow, probe=True
        ) as lab:
            payload["probes"][lab_name] = lab.probes
            for job in args.jobs:
                settings = [(c, 4) for c in COMPRESSIONS] + ([(SCHEDULED, 4)] if job == "cxr" else [])
                if lab_name == "rural":
                    settings += [("none", 3), ("topk", 3)]
                for compression, min_clients in settings:
                    variant: dict = {"rounds": ROUNDS[job], "min_sites": min_clients, "cse_timeout_s": 300}
                    if min_clients < 4:
                        variant["wait_after_min_s"] = WAIT_AFTER_MIN_S
                    dest = jobs_dir / f"{job}_{lab_name}_{compression}_{min_clients}"
                    run = lab.run(compression_job(JOBS[job], dest, compression, **variant), timeout=1200)
                    row = measure(
                        run, job=job, lab=lab_name, compression=compression, min_clients=min_clients
                    )
                    payload["rows"].append(row)
                    print(
                        json.dumps(
                            {
                                k: row[k]
                                for k in (
                                    "job",
                                    "profile",
                                    "compression",
                                    "min_clients",
                                    "round_s",
                                    "bytes_per_site",
                                    "auc",
                                )
                            }
                        ),
                        flush=True,
                    )
                    _write(args.out, payload)
            if lab_name == "rural" and "cxr" in args.jobs:
                payload["slow_site"] = slow_site(lab, jobs_dir, payload["rows"])
                _write(args.out, payload)
    payload["seconds"] = round(time.monotonic() - started)
    payload["load_average_end"] = os.getloadavg()
    _write(args.out, payload)
    print(f"wrote {args.out} in {payload['seconds']} s")
    return 0


def slow_site(lab: Lab, jobs_dir: Path, rows: list[dict]) -> dict:
    """One site SLOW_FACTOR x slower than the fast sites' round: with all sites, and with min_clients 3."""
    fast = next(
        r
        for r in rows
        if r["job"] == "cxr"
        and r["profile"] == "rural"
        and r["compression"] == "none"
        and r["min_clients"] == 4
    )
    delay = round((SLOW_FACTOR - 1) * fast["round_s"], 1)
    out: dict = {
        "job": "cxr",
        "profile": "rural",
        "slow_site": SLOW_SITE,
        "delay_s": delay,
        "round_s_fast_sites": fast["round_s"],
    }
    for min_clients in (4, 3):
        variant: dict = {"rounds": ROUNDS["cxr"], "min_sites": min_clients, "cse_timeout_s": 300}
        if min_clients < 4:
            variant.update(wait_after_min_s=0, train_timeout_s=int(3 * fast["round_s"]) + 10)
        # dense first, then the straggler's own app copy (its filter list is the fault filter alone)
        dense = compression_job(JOBS["cxr"], jobs_dir / f"cxr_slow_{min_clients}_dense", "none")
        job = job_variant(
            dense,
            jobs_dir / f"cxr_slow_{min_clients}",
            faulty_site=SLOW_SITE,
            fault={"mode": "slow", "delay_s": delay},
            **variant,
        )
        row = measure(
            lab.run(job, timeout=2400), job="cxr", lab="rural", compression="none", min_clients=min_clients
        )
        key = "all_sites" if min_clients == 4 else "min_clients_3"
        out[key] = row
        out[key]["slow_site_auc"] = row["auc_by_site"].get(SLOW_SITE)
    if out["all_sites"]["round_s"] < delay:
        raise RuntimeError(
            f"waiting for all sites took {out['all_sites']['round_s']:.1f} s a round, less than the "
            f"straggler's {delay} s: its results were not held back, so the comparison would be void"
        )
    out["round_s_with_slow_site"] = out["min_clients_3"]["round_s"]
    out["participation"] = out["min_clients_3"]["participation"]
    out["ratio_to_fast"] = out["round_s_with_slow_site"] / fast["round_s"]
    return out


if __name__ == "__main__":
    sys.exit(main())
