"""The report's operating-point section: each site's threshold chosen on its validation split.

Input is what each site returned with its validation of the final global model under
``operating_point`` (:mod:`fedhealth.training.site_operating_point`). A result without that key (a
heart job, a run from before the key existed) adds no section.
"""

from __future__ import annotations

from fedhealth.constants import M_OPERATING_POINT, M_SUPPRESSED
from fedhealth.reports.site_report import SUPPRESSED_TEXT, ci_text


def operating_point_section(cross: dict, model: str | None) -> dict | None:
    """``{"sites": {site: report}, "half_failed": {site: sentence}}`` for ``model``; None: no site has one."""
    if model is None:
        return None
    sites = {
        site: models[model][M_OPERATING_POINT]
        for site, models in sorted(cross.items())
        if isinstance(models.get(model, {}).get(M_OPERATING_POINT), dict)
    }
    if not sites:
        return None
    failed = {site: op["half_failed"] for site, op in sites.items() if op.get("half_failed")}
    return {"sites": sites, "half_failed": failed}


def _v(value: float | None, withheld: bool = False) -> str:
    if value is None:
        return SUPPRESSED_TEXT if withheld else "n/a"
    return f"{value:.3f}"


def _val_withheld(op: dict) -> bool:
    """Whether the site withheld its validation sensitivity and specificity as a small cell."""
    return any(str(s).startswith("val.") for s in op.get(M_SUPPRESSED) or [])


def _calibration(cal: dict | None) -> str:
    if not cal or cal.get("kind", "none") == "none":
        return "none"
    params = ", ".join(f"{k} {v:.3g}" for k, v in cal.get("params", {}).items())
    return f"{cal['kind']} ({params})"


def operating_point_markdown(section: dict | None) -> str:
    """The section as Markdown: a row per site, then a sentence per site whose 0.5 threshold fails it."""
    if not section:
        return ""
    lines = [
        "## Operating point (threshold chosen on each site's validation split)",
        "",
        "| site | method | threshold | calibration | val sens / spec | test sensitivity | test specificity "
        "| test sens / spec at 0.5 |",
        "|---|---|---:|---|---|---|---|---|",
    ]
    for site, op in section["sites"].items():
        val, test, half = op.get("val", {}), op.get("test", {}), op.get("test_at_0_5", {})
        withheld = _val_withheld(op)
        method = op.get("method") if op.get("chosen_by") == op.get("method") else f"{op.get('method')} -> 0.5"
        lines.append(
            f"| {site} | {method} | {_v(op.get('threshold'))} | {_calibration(op.get('calibration'))} | "
            f"{_v(val.get('sensitivity'), withheld)} / {_v(val.get('specificity'), withheld)} | "
            f"{ci_text(test.get('sensitivity'))} | "
            f"{ci_text(test.get('specificity'))} | {ci_text(half.get('sensitivity'))} / "
            f"{ci_text(half.get('specificity'))} |"
        )
    lines.append("")
    for site, op in section["sites"].items():
        for reason in (op.get("reason"), (op.get("calibration") or {}).get("reason")):
            if reason:
                lines.append(f"- {site}: {reason}.")
    for site, sentence in section["half_failed"].items():
        lines.append(f"- **The 0.5 threshold would have failed {site}**: {sentence}.")
    floors = sorted({op.get("floor") for op in section["sites"].values() if op.get("floor") is not None})
    lines += [
        "",
        "The deployment gate's intervals above are at each site's chosen threshold (AUC does not depend "
        "on it). A site is named when, on its test split, sensitivity or specificity at 0.5 (uncalibrated) "
        f"is below the floor ({', '.join(f'{f:g}' for f in floors) or 'n/a'}) while both reach it at the "
        "chosen threshold.",
        "",
    ]
    return "\n".join(lines)
