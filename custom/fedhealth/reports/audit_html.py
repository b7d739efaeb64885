"""A one-page HTML rendering of a signed audit pack, for a reviewer; ``audit_pack.json`` stays the record.

The page is not signed itself: it says so, and names the file and command that check the pack.
Every value is HTML-escaped.
"""

from __future__ import annotations

import json
from html import escape

AUDIT_HTML_FILE = "audit_pack.html"
STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;font-size:14px}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #bbb;padding:2px 8px;text-align:left}"
    "pre{background:#f4f4f4;padding:6px;white-space:pre-wrap}"
)


def _fmt(value: object) -> str:
    if isinstance(value, float):  # δ and other small values keep their digits (1e-05, not 0.000)
        return f"{value:.2g}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"
    return "-" if value is None else str(value)


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _site_rows(pack: dict) -> list[list[object]]:
    metric = (pack.get("gate") or {}).get("primary_metric") or "auc"
    rows = []
    for site in pack.get("site_metrics") or []:
        m = (site.get("metrics") or {}).get(metric) or {}
        interval = f"[{_fmt(m.get('lo'))}, {_fmt(m.get('hi'))}]" if m else "-"
        value = m.get("value", site.get(metric))
        rows.append(
            [
                site.get("name"),
                site.get("n_test"),
                value,
                interval,
                site.get("deploy_reason") or site.get("deploy"),
            ]
        )
    return rows


def _epsilon_rows(pack: dict) -> list[list[object]]:
    final = ((pack.get("privacy") or {}).get("update_privacy") or {}).get("final") or {}
    return [
        [site, f.get("epsilon"), f.get("delta"), f.get("clip_norm"), f.get("noise_multiplier")]
        for site, f in sorted(final.items())
    ]


def _pre(value: object) -> str:
    return f"<pre>{escape(json.dumps(value, indent=1, sort_keys=True))}</pre>"


def audit_html(pack: dict, signer: str) -> str:
    """The page: job and signer, submission, sites, per-site metrics and decision, privacy, rejections."""
    job, sub, run = pack.get("job") or {}, pack.get("submission") or {}, pack.get("run") or {}
    gate = pack.get("gate") or {}
    metric = gate.get("primary_metric") or "auc"
    facts = [
        ["job", f"{job.get('name')} ({job.get('job_id')})"],
        [
            "signed by",
            f"server {signer} (check: fedhealth verify-audit audit_pack.json --root-ca rootCA.pem)",
        ],
        ["config sha256", (job.get("spec") or {}).get("sha256")],
        ["kit", json.dumps(pack.get("kit"), sort_keys=True)],
        [
            "submitted by",
            f"{sub.get('submitter_name')} ({sub.get('submitter_org')}, {sub.get('submitter_role')})",
        ],
        ["submitted at", sub.get("submit_time_iso")],
        [
            "status",
            f"{run.get('status')}, {run.get('rounds')} rounds"
            + (f": {run['abort_reason']}" if run.get("abort_reason") else ""),
        ],
        ["sites", ", ".join(pack.get("sites") or []) or "-"],
        ["deployment decision", pack.get("deploy_decision")],
    ]
    privacy = pack.get("privacy") or {}
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Audit pack {escape(str(job.get('name')))}"
        f"</title><style>{STYLE}</style></head><body>",
        f"<h1>Audit pack: {escape(str(job.get('name')))}</h1>",
        "<p>This page renders audit_pack.json; the signed file is the record.</p>",
        _table(["", ""], facts),
        f"<h2>Per-site {escape(metric)} (95% interval) and the gate "
        f"(threshold {escape(_fmt(gate.get('threshold')))})</h2>",
        _table(["site", "n test", metric, "95% interval", "decision"], _site_rows(pack)),
        "<h2>Privacy: ε spent per site</h2>",
        _table(["site", "ε", "δ", "clip", "noise multiplier"], _epsilon_rows(pack))
        if _epsilon_rows(pack)
        else "<p>No site released its update with DP (DPUpdate).</p>",
    ]
    if privacy.get("client_dp"):
        parts += ["<h3>Server-side DP-FedAvg</h3>", _pre(privacy["client_dp"])]
    rejected = pack.get("rejected_updates") or []
    parts += [f"<h2>Rejected updates: {len(rejected)}</h2>", _pre(rejected) if rejected else ""]
    failures = pack.get("failures") or []
    if failures:
        parts += [f"<h2>Failures: {len(failures)}</h2>", _pre(failures)]
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)
