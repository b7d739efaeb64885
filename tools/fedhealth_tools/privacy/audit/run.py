"""``fedhealth privacy-audit --job JOB``: attack what this job's sites would send, and write the figures.

For the job's own settings (its batch, the site floor's batch, batch 1, one local step and several)
and protections (none, and the job's own), the audit captures site updates through the site code
(:mod:`.capture`) and reconstructs the patients (:mod:`.inversion`), then trains the job's federation
and runs membership inference on the model it releases (:mod:`.membership`). The same functions
make the benchmark grid (``scripts/bench_privacy_attacks.py``).
"""

from __future__ import annotations

import json
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fedhealth.policy.site_limits import Limits
from fedhealth_tools.privacy.attacks.image_inversion import InversionConfig
from fedhealth_tools.privacy.audit.capture import load_audit_data
from fedhealth_tools.privacy.audit.inversion import Setting, image_row, table_row
from fedhealth_tools.privacy.audit.job import AuditJob
from fedhealth_tools.privacy.audit.membership import membership_rows

MANY_STEPS = 5  # "E local steps": the site takes 5 optimizer steps on the attacked patients
SECURE_SUM_SITES = 4


@dataclass(frozen=True)
class AuditPlan:
    """What to audit for one job.

    Attributes:
        batches: batch sizes (each capture's site holds exactly one batch of patients).
        steps: local steps measured under ``steps_protections``; other protections at one step.
        protections: protections of the reconstruction attacks.
        steps_protections: protections measured at every entry of ``steps``.
        membership: protections of the membership attacks (empty: none).
        lira_shadows: LiRA's shadow federations (0: loss threshold only).
        lira_protections: protections that also get LiRA.
        image_limit: PneumoniaMNIST images per split for the audit's sites (``None``: all).
        table_repeats: draws of patients per tabular setting.
        inversion: the image attacker's settings.
        png_settings: image settings drawn in the PNG (originals over reconstructions).
    """

    batches: tuple[int, ...]
    steps: tuple[int, ...] = (1, MANY_STEPS)
    protections: tuple[str, ...] = ("none",)
    steps_protections: tuple[str, ...] = ("none",)
    membership: tuple[str, ...] = ("none",)
    lira_shadows: int = 0
    lira_protections: tuple[str, ...] = ()
    image_limit: int | None = None
    table_repeats: int = 20
    inversion: InversionConfig = field(default_factory=InversionConfig)
    png_settings: tuple[Setting, ...] = ()


def normalized(protection: str) -> str:
    """A job's protection as audited: ``secure_sum`` (an HE job) is the sum of the audit's 4 sites."""
    return re.sub(r"secure_sum(?![0-9])", f"secure_sum{SECURE_SUM_SITES}", protection)


def job_plan(job: AuditJob, *, quick: bool = False) -> AuditPlan:
    """The audit of ``job``: batch 1, the default floor and the job's batch; none and the job's protection."""
    floor = Limits().min_batch_size
    batch = int(job.local.get("batch_size", floor))
    batches = tuple(sorted({1, floor, batch}))
    own = normalized(job.protection)
    protections = ("none",) if own == "none" else ("none", own)
    return AuditPlan(
        batches=batches[:2] if quick else batches,
        steps=(1,) if quick else (1, MANY_STEPS),
        protections=protections,
        steps_protections=protections,
        membership=protections,
        # LiRA retrains the federation per shadow: on tables (seconds); images: make bench-privacy-attacks
        lira_shadows=0 if quick or job.data != "heart" else 8,
        lira_protections=() if quick or job.data != "heart" else ("none",),
        image_limit=1000 if quick else 2000,
        table_repeats=5 if quick else 20,
        inversion=InversionConfig(iterations=60, restarts=1) if quick else InversionConfig(),
        png_settings=tuple(Setting(b, 1, p) for b in batches[:2] for p in protections),
    )


def settings_of(plan: AuditPlan) -> list[Setting]:
    """Every (batch, steps, protection) the plan measures."""
    out = []
    for protection in plan.protections:
        steps = plan.steps if protection in plan.steps_protections else (1,)
        out += [Setting(b, s, protection) for b in plan.batches for s in steps]
    return out


def run_audit(
    job_dir: Path, plan: AuditPlan | None = None, *, png: Path | None = None, seed: int = 0, log=print
) -> dict:
    """Audit the job in ``job_dir``: reconstruction rows, membership rows, the floors and the settings."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    job = AuditJob.load(Path(job_dir))
    plan = plan or job_plan(job)
    data = load_audit_data(job, limit=None, seed=seed)
    inversion, panels = [], []
    for setting in settings_of(plan):
        if job.data == "cxr":
            keep = setting in plan.png_settings
            row = image_row(job, data, setting, config=plan.inversion, seed=seed, keep=keep)
            if keep:
                panels.append(row.pop("_images"))
        else:
            row = table_row(job, data, setting, repeats=plan.table_repeats, seed=seed)
        log(
            f"  inversion {job.name} batch {setting.batch} steps {setting.local_steps} {setting.protection}: "
            f"{_headline(row)} ({row['seconds']} s)"
        )
        inversion.append(row)
    if png is not None and panels:
        from fedhealth_tools.privacy.audit.figure import draw_panels

        draw_panels(panels, png, title=f"{job.name}: originals (top) over what the server reconstructs")
    member_data = load_audit_data(job, limit=plan.image_limit, seed=seed) if job.data == "cxr" else data
    membership = (
        membership_rows(
            job,
            member_data,
            plan.membership,
            lira_shadows=plan.lira_shadows,
            lira_protections=plan.lira_protections,
            seed=seed,
        )
        if plan.membership
        else []
    )
    for row in membership:
        log(f"  membership {job.name} {row['protection']} {row['attack']}: AUC {row['auc']:.3f}")
    return {
        "job": job.name,
        "data": job.data,
        "job_settings": {
            "task": job.task,
            **dict(job.local),
            "lr": job.lr,
            "rounds": job.rounds,
            "protection": normalized(job.protection),
        },
        "floors": {
            "min_batch_size": Limits().min_batch_size,
            "min_examples_per_round": Limits().min_examples_per_round,
        },
        "plan": {
            "batches": list(plan.batches),
            "steps": list(plan.steps),
            "protections": list(plan.protections),
            "membership": list(plan.membership),
            "lira_shadows": plan.lira_shadows,
            "image_limit_membership": plan.image_limit,
            "inversion": _config(plan.inversion),
        },
        "inversion": inversion,
        "membership": membership,
        "hardware": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def _config(config: InversionConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()}


def _headline(row: dict) -> str:
    if row.get("ssim_mean") is not None:
        return (
            f"SSIM {row['ssim_mean']:.3f} (a generic X-ray: {row['baseline_ssim']:.3f}), "
            f"PSNR {row['psnr_mean']:.1f} dB, re-identified {row['reidentified']:.0%}"
        )
    return f"recovered {row['recovered_fraction']:.2f} of features, exact rows {row['exact_rows']:.2f}"


def floor_verdict(result: dict) -> list[str]:
    """Plain sentences: what the attacks reach at batch 1 and at the site floor's batch (no patient value)."""
    floor, lines = result["floors"]["min_batch_size"], []
    for row in result["inversion"]:
        if row["local_steps"] != 1 or row["batch"] not in (1, floor):
            continue
        where = "the default site floor" if row["batch"] == floor else "below the default site floor"
        lines.append(f"{row['protection']}, batch {row['batch']} ({where}): {_headline(row)}")
    return lines


def write(result: dict, out: Path) -> Path:
    """``result`` as JSON (indent 1) at ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=_plain) + "\n")
    return out


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def main_audit(job_dir: Path, out: Path, png: Path | None, quick: bool) -> int:
    """The command: audit, write, print the floor verdict."""
    job = AuditJob.load(job_dir)
    print(f"privacy audit of {job.name} ({job.data}, protection {normalized(job.protection)}): minutes")
    result = run_audit(job_dir, job_plan(job, quick=quick), png=png)
    result["command"] = (
        " ".join(["fedhealth", "privacy-audit", *sys.argv[2:]]) if sys.argv[1:2] == ["privacy-audit"] else ""
    )
    write(result, out)
    for line in floor_verdict(result):
        print(f"  {line}")
    print(f"wrote {out}" + (f" and {png}" if png and job.data == "cxr" else ""))
    return 0
