"""Measured attack figures for one job's settings, from the privacy audit's results.

The audit (``make bench-privacy-attacks``, ``fedhealth privacy-audit``) writes
``results/bench_privacy_attacks.json``: gradient-inversion rows (imaging: SSIM/PSNR of the
reconstructed images, Geiping et al. 2020 "Inverting Gradients"; tabular: the share of a patient's
feature values recovered) indexed by data, batch, local steps, optimizer and protection, and
membership-inference AUCs (loss threshold, Yeom et al. 2018; LiRA, Carlini et al. 2022) by data and
protection. This module picks the row for a job's :class:`~fedhealth.reports.attack_settings.JobSettings`.

Never overstating protection: where the audit has no row at the job's setting, the row chosen is
one that is at most as protected as the job. DP: the smallest audited ε at or above the job's (ε 5
reads the ε 8 row). Secure sum: the most sites at or below the job's. Top-k: the smallest kept share
at or above the job's. Batch and local steps: the largest audited value at or below the job's (fewer
patients and fewer steps leak more). Without such a row the unprotected row is the bound. The
sentence of every match names the audited setting when it is not the job's.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from fedhealth.policy.site_limits import Limits
from fedhealth.reports.attack_settings import JobSettings

AUDIT_FILE = "bench_privacy_attacks.json"
AUDIT_COMMAND = "`make bench-privacy-attacks` (or `fedhealth privacy-audit --job <job folder>`)"
ROW_KEYS = ("data", "batch", "local_steps", "optimizer", "protection")
IMAGING_METRICS = ("ssim_mean", "psnr_mean")
TABULAR_METRICS = ("recovered_fraction", "exact_rows")
_PROTECTION = re.compile(r"^(dp_eps|secure_sum|topk)([0-9.]+)$")


def default_audit_path() -> Path:
    """``results/bench_privacy_attacks.json`` of the checkout: the working directory or one above it
    that holds ``jobs/`` and ``project.yml``, else the checkout this package sits in."""
    here = Path.cwd().resolve()
    package_checkout = Path(__file__).resolve().parents[3]
    for folder in (here, *here.parents, package_checkout):
        if (folder / "jobs").is_dir() and (folder / "project.yml").is_file():
            return folder / "results" / AUDIT_FILE
    return here / "results" / AUDIT_FILE


def load_audit(path: Path) -> dict | None:
    """The audit's results, or None when ``path`` does not exist.

    Raises:
        ValueError: the file is not an audit (the message names the file and what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        audit = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(audit, dict) or not isinstance(audit.get("inversion"), list):
        raise ValueError(f"{path}: an audit must be a JSON object with an 'inversion' list")
    for i, row in enumerate(audit["inversion"]):
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"{path}: inversion[{i}] lacks {', '.join(missing)}")
    return audit


def protection_label(name: str) -> str:
    """An audited protection in words: ``dp_eps8`` -> ``DP-SGD ε=8``."""
    match = _PROTECTION.match(name)
    if not match:
        return "no protection" if name == "none" else name
    kind, value = match.groups()
    return {
        "dp_eps": f"DP-SGD ε={value}",
        "secure_sum": f"secure sum of {value} sites (HE or SecAgg+)",
        "topk": f"top-k {value}% of entries",
    }[kind]


def _choose(audited: set[str], kind: str, job_value: float) -> str | None:
    """The audited protection of ``kind`` closest to the job's that is no stronger than it."""
    found = [(m.group(1), float(m.group(2)), n) for n in audited if (m := _PROTECTION.match(n))]
    values = [(v, n) for k, v, n in found if k == kind]
    if kind == "dp_eps":  # larger ε: weaker
        ok = [(v, n) for v, n in values if v >= job_value]
        return min(ok)[1] if ok else None
    if kind == "secure_sum":  # fewer sites summed: weaker
        ok = [(v, n) for v, n in values if v <= job_value]
        return max(ok)[1] if ok else None
    ok = [(v, n) for v, n in values if v / 100 >= job_value]  # top-k: a larger share sent is weaker
    return min(ok)[1] if ok else None


def job_protections(settings: JobSettings, audited: set[str]) -> list[tuple[str, str, str]]:
    """``(job's protection in words, audited protection, note)`` for each protection the job uses."""
    wanted = []
    if settings.epsilon is not None:
        wanted.append(("dp_eps", settings.epsilon, f"DP-SGD ε={settings.epsilon:g}", "ε"))
    if settings.secure_sum_sites is not None:
        n = settings.secure_sum_sites
        by = settings.secure_sum_by
        wanted.append(("secure_sum", n, f"{by}: the server sees the sum of {n} sites", "sites"))
    if settings.k_fraction is not None:
        wanted.append(("topk", settings.k_fraction, f"top-k {settings.k_fraction:.3g} of entries", "share"))
    out = []
    for kind, value, words, _ in wanted:
        chosen = _choose(audited, kind, value)
        if chosen is None:
            stronger = sorted(n for n in audited if n.startswith(kind))
            note = (
                f"no audited {kind} setting is as weak as this job's ({words}); the unprotected figures "
                "bound it" + (f" ({', '.join(stronger)} would overstate its protection)" if stronger else "")
            )
            out.append((words, "none", note))
            continue
        audited_value = float(_PROTECTION.match(chosen).group(2))
        shown = {"dp_eps": f"ε={audited_value:g}", "secure_sum": f"{audited_value:g} sites"}.get(
            kind, f"{audited_value:g}%"
        )
        job_shown = {"dp_eps": f"ε={value:g}", "secure_sum": f"{value:g} sites"}.get(kind, f"{value:.3g}")
        note = (
            ""
            if shown == job_shown
            else f"audited at {shown}, this job {job_shown}: the weaker audited setting"
        )
        out.append((words, chosen, note))
    return out or [("no protection", "none", "")]


def _nearest(values: set[int], job: int | None) -> int:
    """The audited value at or below the job's, nearest to it; the smallest above when none is below."""
    if job is None:
        return min(values)
    below = [v for v in values if v <= job]
    return max(below) if below else min(values)


def nearest_row(rows: list[dict], settings: JobSettings, protection: str) -> tuple[dict | None, bool]:
    """The audited inversion row for ``settings`` under ``protection``, and whether it is an exact match.

    By data (required), protection, optimizer (the job's if audited), then batch and local steps.
    """
    rows = [r for r in rows if r["data"] == settings.data and r["protection"] == protection]
    same_opt = [r for r in rows if r["optimizer"] == settings.optimizer]
    rows = same_opt or rows
    if not rows:
        return None, False
    batch = _nearest({int(r["batch"]) for r in rows}, settings.batch)
    rows = [r for r in rows if int(r["batch"]) == batch]
    steps = _nearest({int(r["local_steps"]) for r in rows}, settings.local_steps)
    row = next(r for r in rows if int(r["local_steps"]) == steps)
    exact = bool(same_opt) and batch == settings.batch and steps == settings.local_steps
    return row, exact


def describe(batch: object, steps: object, optimizer: object, protection: str) -> str:
    """A setting in words, e.g. ``batch 16, 2 local steps, sgd, no protection``."""
    steps_text = "? local steps" if steps is None else f"{steps} local step{'' if steps == 1 else 's'}"
    return f"batch {batch if batch is not None else '?'}, {steps_text}, {optimizer or '?'}, {protection}"


def figures_text(figures: dict) -> str:
    """Inversion figures in words: ``SSIM 0.38, PSNR 15.9 dB`` or the tabular shares."""

    def num(key: str, spec: str = ".2f") -> str:
        return "n/a" if figures.get(key) is None else format(figures[key], spec)

    if "ssim_mean" in figures:
        return f"SSIM {num('ssim_mean')}, PSNR {num('psnr_mean', '.1f')} dB"
    return (
        f"{num('recovered_fraction')} of a patient's feature values recovered, exact rows {num('exact_rows')}"
    )


def metrics_of(row: dict, data: str) -> dict:
    """The figures of an inversion row for its data kind (None where the audit has none)."""
    return {k: row.get(k) for k in (IMAGING_METRICS if data == "cxr" else TABULAR_METRICS)}


def _floor(rows: list[dict], settings: JobSettings, floors: dict) -> dict:
    batch = int(floors.get("min_batch_size", Limits().min_batch_size))
    examples = int(floors.get("min_examples_per_round", Limits().min_examples_per_round))
    floor_settings = JobSettings(data=settings.data, batch=batch, local_steps=1, optimizer=settings.optimizer)
    row, _ = nearest_row([r for r in rows if int(r["batch"]) == batch], floor_settings, "none")
    head = f"Site floor defaults (min_batch_size {batch}, min_examples_per_round {examples}): "
    if row is None:
        return {
            "min_batch_size": batch,
            "min_examples_per_round": examples,
            "row": None,
            "sentence": head + f"the audit has no unprotected row at batch {batch}.",
        }
    where = describe(row["batch"], row["local_steps"], row["optimizer"], "no protection")
    return {
        "min_batch_size": batch,
        "min_examples_per_round": examples,
        "row": row,
        "figures": metrics_of(row, settings.data or ""),
        "sentence": head
        + f"a job at the floor ({where}) measured {figures_text(metrics_of(row, settings.data or ''))}: "
        "what the floor alone buys.",
    }


def attack_figures(
    settings: JobSettings, audit: dict | None, *, audit_path: Path, run_epsilon: dict | None = None
) -> dict:
    """The report's ``attack_figures``: matched inversion rows, membership AUCs, the floor, ε of the run.

    Args:
        settings: the job's settings (:func:`fedhealth.reports.attack_settings.job_settings`).
        audit: the audit's results (:func:`load_audit`), or None when there is no audit file.
        audit_path: where the audit was looked for (named in the report).
        run_epsilon: ``{"epsilon", "delta", "source"}`` of the run, or None for a run without DP.
    """
    base = {
        "audit": str(audit_path),
        "settings": asdict(settings) | {"notes": list(settings.notes)},
        "run_epsilon": run_epsilon,
    }
    if settings.trees:
        return base | {
            "available": False,
            "message": (
                "This job trains gradient-boosted trees: the audit attacks neural-network updates and "
                "has no figures for it."
            ),
        }
    if audit is None:
        return base | {
            "available": False,
            "message": (f"No privacy audit at {audit_path}: run {AUDIT_COMMAND} to measure the attacks."),
        }
    rows = audit["inversion"]
    audited = {r["protection"] for r in rows if r["data"] == settings.data}
    matches = []
    for words, protection, note in job_protections(settings, audited):
        row, exact = nearest_row(rows, settings, protection)
        job_text = describe(settings.batch, settings.local_steps, settings.optimizer, words)
        if row is None:
            sentence = f"The audit has no {settings.data} row for {protection_label(protection)}."
        else:
            where = describe(row["batch"], row["local_steps"], row["optimizer"], protection_label(protection))
            sentence = (
                f"Audited at this job's setting ({where})."
                if exact and not note
                else f"Nearest audited setting: {where}; this job: {job_text}."
            )
        membership = [
            {"attack": m["attack"], "auc": m["auc"]}
            for m in audit.get("membership", [])
            if m.get("data") == settings.data and m.get("protection") == protection
        ]
        matches.append(
            {
                "job_protection": words,
                "protection": protection,
                "exact": exact and not note,
                "row": row,
                "figures": metrics_of(row, settings.data or "") if row else None,
                "sentence": sentence + (f" {note[0].upper()}{note[1:]}." if note else ""),
                "membership": membership,
            }
        )
    return base | {
        "available": True,
        "command": audit.get("command"),
        "matches": matches,
        "floor": _floor(rows, settings, audit.get("floors") or {}),
    }


def run_epsilon(privacy: dict | None, update_privacy: dict | None) -> dict | None:
    """The largest final ε over sites, its δ and which ledger it is from; None for a run without DP."""
    for section, source in ((privacy, "DP-SGD"), (update_privacy, "DPUpdate")):
        finals = [f for f in (section or {}).get("final", {}).values() if f.get("epsilon") is not None]
        if finals:
            top = max(finals, key=lambda f: f["epsilon"])
            return {"epsilon": float(top["epsilon"]), "delta": float(top["delta"]), "source": source}
    return None
