"""A model card of a finished job, generated from its run report (Mitchell et al. 2019, "Model Cards
for Model Reporting"): intended use, data and sites, per-site performance with 95% intervals, the
deployment gate's decision, privacy settings and known limits.

Everything in it comes from :func:`~fedhealth.reports.run_report.build_report`'s output and the
job's configs, so the card says what the run measured, never more; the limits are the run's own
(withheld metrics, flagged sites, rejected updates, missed rounds, failures) plus the ones every
card of this kit shares.
"""

from __future__ import annotations

import json
from pathlib import Path

from fedhealth.reports.run_report import model_line

MODEL_CARD_MD = "model_card.md"
MODEL_CARD_JSON = "model_card.json"

# What each task's model is for, by the job name's prefix (the task's README says more).
INTENDED_USE = {
    "heart": (
        "Predict the presence of heart disease (angiographic narrowing, UCI Heart Disease as split by "
        "FLamby Fed-Heart-Disease) from routine clinical features of an adult patient."
    ),
    "cxr": "Classify a pediatric chest X-ray (PneumoniaMNIST, 28x28 grayscale) as pneumonia or normal.",
    "indo_rct": "Predict the trial outcome of the IndoRCT task from the sites' baseline EHR features.",
}
USE_LIMITS = (
    "For research and for evaluating federated training across the consortium's sites; not a medical "
    "device and not validated for clinical decisions. Use beyond the participating sites' populations "
    "needs external validation first."
)
SHARED_LIMITS = (
    "Performance is measured on each site's own held-out test split only; no external validation set.",
    "Intervals are 95% and per site; small test splits give wide intervals.",
)
# fedhealth components that change what leaves a site, by path prefix
_PRIVACY_PATHS = ("fedhealth.filters.", "fedhealth.workflows.secagg", "fedhealth.he.", "fedhealth.privacy.")


def _paths(config: object) -> list[str]:
    """Every component class path in a FLARE job config (walked recursively, in order, once each)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            path = node.get("path")
            if isinstance(path, str) and path not in found:
                found.append(path)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def intended_use(job: str) -> str:
    """The card's intended use for a job name (its task by prefix), with the kit's limits of use."""
    task = next((text for prefix, text in INTENDED_USE.items() if job.startswith(prefix)), None)
    return f"{task or f'The task of job {job} (see its README).'} {USE_LIMITS}"


def _metric_text(metric: dict | None) -> str:
    if not metric:
        return "n/a"
    if metric.get("value") is None:
        return f"withheld ({metric.get('reason') or 'no value'})"
    if metric.get("lo") is None or metric.get("hi") is None:
        return f"{metric['value']:.3f}"
    return f"{metric['value']:.3f} [{metric['lo']:.3f}, {metric['hi']:.3f}]"


def privacy_settings(report: dict, client_config: dict | None, server_config: dict | None) -> dict:
    """What protected the sites' updates: the report's DP and encryption sections and the components."""
    final_dp = (report.get("privacy") or {}).get("final") or {}
    update_dp = (report.get("update_privacy") or {}).get("final") or {}
    client_dp = (report.get("client_dp") or {}).get("final")
    encryption = report.get("encryption")
    components = [p for p in _paths(client_config) + _paths(server_config) if p.startswith(_PRIVACY_PATHS)]
    mechanisms = []
    if final_dp:
        mechanisms.append("DP-SGD at each site (per-site (ε, δ) ledger)")
    if update_dp:
        mechanisms.append("differentially private update release at each site")
    if client_dp:
        mechanisms.append("client-level DP (DP-FedAvg) at the server")
    if encryption:
        mechanisms.append("homomorphic encryption of updates")
    if any("secagg" in p for p in components):
        mechanisms.append("secure aggregation")
    return {
        "mechanisms": mechanisms or ["none: site updates reach the server in clear (TLS in transit)"],
        "dp_sgd": final_dp or None,
        "update_dp": update_dp or None,
        "client_dp": client_dp,
        "encryption": {k: v for k, v in encryption.items() if k not in ("sites",)} if encryption else None,
        "components": components,
    }


def known_limits(report: dict) -> list[str]:
    """The run's own limits (withheld metrics, flagged sites, ...) then those every card shares."""
    limits = []
    for site in report.get("sites", []):
        withheld = [m for m, v in (site.get("metrics") or {}).items() if v and v.get("value") is None]
        withheld += [m for m in site.get("suppressed") or [] if m not in withheld]
        if withheld:
            limits.append(f"{site['name']}: metrics withheld by the site ({', '.join(withheld)})")
        if site.get("flagged"):
            k = (report.get("flags") or {}).get("k", 2)
            limits.append(
                f"{site['name']}: flagged by the run report (more than {k:g} SDs below the sites' mean)"
            )
    for name, row in ((report.get("gate") or {}).get("sites") or {}).items():
        if row.get("too_few"):
            limits.append(
                f"{name}: too few patients of a class for the gate to clear it ({row.get('reason')})"
            )
    for r in report.get("rejected_updates") or []:
        limits.append(f"{r.get('site')}: update of round {r.get('round')} rejected ({r.get('reason')})")
    for name, row in (report.get("participation") or {}).items():
        if row.get("missed_rounds"):
            limits.append(
                f"{name}: missed rounds {row['missed_rounds']} (participation {row.get('rate', 0):.0%})"
            )
    for f in report.get("failures") or []:
        limits.append(f"{f.get('site')}: failed in round {f.get('round')} ({f.get('reason')})")
    if report.get("status") == "aborted":
        limits.append(f"the run was aborted: {report.get('abort_reason')}")
    if (report.get("divergence") or {}).get("diverging"):
        limits.append(report["divergence"]["message"])
    return limits + list(SHARED_LIMITS)


def build_model_card(
    report: dict,
    *,
    client_config: dict | None = None,
    server_config: dict | None = None,
    export: dict | None = None,
) -> dict:
    """The model card of a run report (``build_report``'s output) as a JSON-ready dict.

    ``export``: :meth:`~fedhealth.models.export.ExportResult.as_dict` of the exported model, if any.
    """
    participation = report.get("participation") or {}
    sites = [
        {
            "name": s["name"],
            "n_train": s.get("n_train"),
            "n_test": s.get("n_test"),
            "n_pos": s.get("n_pos"),
            "n_neg": s.get("n_neg"),
            "participation": (participation.get(s["name"]) or {}).get("rate"),
            "metrics": s.get("metrics") or {},
            "deploy": s.get("deploy"),
        }
        for s in report.get("sites", [])
    ]
    gate = report.get("gate") or {}
    return {
        "job": report["job"],
        "job_id": report.get("job_id"),
        "rounds": report.get("rounds"),
        "status": report.get("status"),
        "intended_use": intended_use(report["job"]),
        "model": {
            "file": (report.get("global") or {}).get("model"),
            "trees": report.get("model"),  # a tree job's ensemble (family, trees, sha256, file); else None
            "export": export,
        },
        "sites": sites,
        "global": {k: v for k, v in (report.get("global") or {}).items() if k != "model"},
        "gate": {
            "decision": report.get("deploy_decision"),
            "metric": gate.get("metric"),
            "threshold": gate.get("threshold"),
            "confidence": gate.get("confidence"),
            "deciding_site": gate.get("deciding_site"),
            "sites": {
                n: {k: r.get(k) for k in ("decision", "reason")} for n, r in (gate.get("sites") or {}).items()
            },
        },
        "privacy": privacy_settings(report, client_config, server_config),
        "limits": known_limits(report),
    }


def model_card_markdown(card: dict) -> str:
    """The card as Markdown: one section per heading of :func:`build_model_card`."""
    names = sorted({m for s in card["sites"] for m in s["metrics"]})
    lines = [
        f"# Model card: {card['job']}",
        "",
        f"Job {card['job_id']}, {card['rounds']} rounds, status {card['status']}; "
        "generated from its run report.",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Model",
        "",
        f"Global model: `{card['model']['file'] or 'n/a'}` in the job result.",
    ]
    if card["model"].get("trees"):
        lines[-1] = model_line(card["model"]["trees"]).strip()
    export = card["model"].get("export")
    if export:
        lines.append(
            f"Exported: `{Path(export['torchscript']).name}` (TorchScript), `{Path(export['onnx']).name}` "
            f"(ONNX); max abs difference from the torch model on {export['samples']} test inputs: "
            f"TorchScript {export['torchscript_max_abs_diff']:.2g}, ONNX {export['onnx_max_abs_diff']:.2g} "
            f"(tolerance {export['atol']:g})."
        )
    lines += ["", "## Data and sites", "", "| site | train | test | positive | negative | participation |"]
    lines.append("|---|---|---|---|---|---|")
    for s in card["sites"]:
        rate = "n/a" if s["participation"] is None else f"{s['participation']:.0%}"
        counts = [("n/a" if s[k] is None else str(s[k])) for k in ("n_train", "n_test", "n_pos", "n_neg")]
        lines.append(f"| {s['name']} | {' | '.join(counts)} | {rate} |")
    lines += [
        "",
        "## Performance per site",
        "",
        "Final global model on each site's held-out test split, value [95% interval]:",
        "",
        "| site | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    lines += [
        f"| {s['name']} | " + " | ".join(_metric_text(s["metrics"].get(m)) for m in names) + " |"
        for s in card["sites"]
    ]
    gate = card["gate"]
    lines += ["", "## Deployment gate", ""]
    if gate["metric"]:
        lines.append(
            f"**{gate['decision']}**: {gate['metric']} lower {gate['confidence']:.0%} bound "
            f">= {gate['threshold']} at every site; deciding site {gate['deciding_site']}."
        )
        lines += [""] + [f"- {n}: {r['decision']} ({r['reason']})" for n, r in sorted(gate["sites"].items())]
    else:
        lines.append(f"**{gate['decision']}**: no site validated the final model.")
    privacy = card["privacy"]
    lines += ["", "## Privacy settings", ""] + [f"- {m}" for m in privacy["mechanisms"]]
    for label, key in (
        ("DP-SGD, final per site", "dp_sgd"),
        ("DP update release, final per site", "update_dp"),
    ):
        for site, row in sorted((privacy.get(key) or {}).items()):
            lines.append(f"- {label}: {site}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
    if privacy.get("client_dp"):
        lines.append(
            "- client-level DP, final: " + ", ".join(f"{k} {v}" for k, v in privacy["client_dp"].items())
        )
    if privacy["components"]:
        lines.append("- components: " + ", ".join(f"`{p}`" for p in privacy["components"]))
    lines += ["", "## Known limits", ""] + [f"- {limit}" for limit in card["limits"]]
    return "\n".join(lines) + "\n"


def write_model_card(card: dict, out_dir: Path) -> list[Path]:
    """Write ``model_card.md`` and ``model_card.json`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / MODEL_CARD_MD, out_dir / MODEL_CARD_JSON
    md.write_text(model_card_markdown(card))
    js.write_text(json.dumps(card, indent=2, default=str) + "\n")
    return [md, js]
