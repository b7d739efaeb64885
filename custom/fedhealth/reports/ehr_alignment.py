"""The feature-alignment section of a run report: which features the federation kept, and who lacks what.

Built from the aligned schema the server writes into its run folder (``ehr_schema.json``, downloaded
with the job result). The schema holds counts only (per site: rows, and per feature the present and
missing counts, ``null`` where a count was small-cell suppressed), so nothing here can show a
patient value. The section has a feature table, sentences saying which site lacks what, and a
missingness heat map (site x feature) written next to the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fedhealth.constants import EHR_SCHEMA_FILE  # noqa: E402

HEATMAP_FILE = "ehr_missingness.png"
LACKS_FROM = 0.5  # a site "lacks" a feature it misses for at least this share of its patients
DEFAULT_MIN_CELL = 5
OK, ABSENT, SUPPRESSED, UNKNOWN = "ok", "absent", "suppressed", "unknown"


def find_ehr_schema(result_dir: Path) -> dict | None:
    """The aligned schema in a downloaded job result folder; ``None`` when the job had no EHR alignment.

    Raises:
        ValueError: the file is not JSON (the message names it).
    """
    found = sorted(Path(result_dir).rglob(EHR_SCHEMA_FILE), key=lambda p: len(p.parts))
    if not found:
        return None
    try:
        return json.loads(found[0].read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{found[0]}: not valid JSON ({exc})") from exc


def _site_cell(counts: dict | None, rows: int | None) -> dict:
    """One site's view of one feature: status, missing fraction (None when not known) and the counts."""
    if not isinstance(counts, dict) or not rows:
        return {"status": UNKNOWN, "missing_fraction": None, "present": None, "missing": None, "rows": rows}
    present, missing = counts.get("present"), counts.get("missing")
    cell = {"present": present, "missing": missing, "rows": rows}
    if present == 0 or missing == rows:
        return {"status": ABSENT, "missing_fraction": 1.0, **cell}
    if missing is None:
        return {"status": SUPPRESSED, "missing_fraction": None, **cell}
    return {"status": OK, "missing_fraction": missing / rows, **cell}


def _check(schema: dict) -> None:
    if not isinstance(schema, dict):
        raise ValueError(f"{EHR_SCHEMA_FILE}: expected a JSON object, got {type(schema).__name__}")
    for key in ("features", "sites"):
        if key not in schema:
            raise ValueError(f"{EHR_SCHEMA_FILE}: no '{key}' (is this an aligned EHR schema?)")
    for where, entries in (("features", schema["features"]), ("dropped", schema.get("dropped", []))):
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not entry.get("name"):
                raise ValueError(f"{EHR_SCHEMA_FILE}: {where}[{i}] has no 'name'")


def feature_table(schema: dict) -> list[dict]:
    """One row per feature of the schema, kept ones first (schema order), then the dropped ones.

    A row: ``name``, ``kind``, ``kept``, ``reason`` (why dropped), ``indicator``, ``impute``,
    ``sites_with_feature`` (sites with at least ``min_cell`` values present, as the server's
    ``min_sites_with_feature`` rule counts them),
    ``n_sites``, the federation's missing fraction as ``missing_fraction`` and
    ``missing_fraction_max`` (equal unless a site's missing count was suppressed: it is then
    somewhere in 1 .. min_cell - 1), and ``per_site`` {site: {status, missing_fraction, present,
    missing, rows}}. Sites without a count for the feature are left out of the federation's fraction.
    """
    _check(schema)
    min_cell = int((schema.get("policy") or {}).get("min_cell", DEFAULT_MIN_CELL))
    sites = schema["sites"]
    kept = [{**f, "kept": True} for f in schema["features"]]
    dropped = [{**d, "kept": False} for d in schema.get("dropped", [])]
    rows = []
    for feature in kept + dropped:
        name = feature["name"]
        per_site = {
            site: _site_cell((data.get("features") or {}).get(name), data.get("rows"))
            for site, data in sorted(sites.items())
        }
        known = [c for c in per_site.values() if c["status"] in (OK, ABSENT, SUPPRESSED)]
        total = sum(c["rows"] for c in known)
        lo = sum({ABSENT: c["rows"], SUPPRESSED: 1}.get(c["status"], c["missing"]) for c in known)
        hi = lo + sum(min(min_cell - 1, c["rows"]) - 1 for c in known if c["status"] == SUPPRESSED)
        rows.append(
            {
                "name": name,
                "kind": feature.get("kind"),
                "kept": feature["kept"],
                "reason": feature.get("reason"),
                "indicator": feature.get("indicator") if feature["kept"] else None,
                "impute": feature.get("impute"),
                "sites_with_feature": sum((c["present"] or 0) >= min_cell for c in per_site.values()),
                "n_sites": len(per_site),
                "missing_fraction": lo / total if total else None,
                "missing_fraction_max": hi / total if total else None,
                "per_site": per_site,
            }
        )
    return rows


def _whole_pct(fraction: float) -> str:
    """A share as whole percent that says 100 only when all are missing."""
    pct = round(fraction * 100)
    return str(99 if pct == 100 and fraction < 1 else pct)


def lacks(schema: dict) -> list[str]:
    """Sentences saying which site lacks what, site by site (sites in name order, features in table order).

    A feature counts as lacking at a site when it is missing for at least half of the site's
    patients; a suppressed count and a feature the site sent no count for are said as such.
    """
    min_cell = int((schema.get("policy") or {}).get("min_cell", DEFAULT_MIN_CELL))
    table = feature_table(schema)
    sentences = []
    for site in sorted(schema["sites"]):
        for row in table:
            name, cell = row["name"], row["per_site"][site]
            if cell["status"] == UNKNOWN:
                sentences.append(f"{site} sent no count for {name}")
            elif cell["status"] == ABSENT:
                sentences.append(f"{site} does not record {name} (100 % missing)")
            elif cell["status"] == SUPPRESSED:
                sentences.append(
                    f"{name} is missing for fewer than {min_cell} patients at {site} (count suppressed)"
                )
            elif cell["missing_fraction"] >= LACKS_FROM:
                few = f" (fewer than {min_cell} have it: count suppressed)" if cell["present"] is None else ""
                pct = _whole_pct(cell["missing_fraction"])
                sentences.append(f"{name} is missing for {pct} % of patients at {site}{few}")
    return sentences


def alignment_section(schema: dict) -> dict:
    """The report's section: policy, the feature table, the sentences and the heat map's file name."""
    table = feature_table(schema)
    return {
        "policy": schema.get("policy") or {},
        "sites": sorted(schema["sites"]),
        "rows": {site: data.get("rows") for site, data in sorted(schema["sites"].items())},
        "kept": sum(r["kept"] for r in table),
        "dropped": sum(not r["kept"] for r in table),
        "columns": len(schema.get("columns") or []),
        "features": table,
        "lacks": lacks(schema),
        "heatmap": HEATMAP_FILE,
    }


def _pct(low: float | None, high: float | None = None) -> str:
    if low is None:
        return "–"
    if high is None or abs(high - low) < 5e-4:
        return f"{100 * low:.1f} %"
    return f"{100 * low:.1f}–{100 * high:.1f} %"


def _cell_text(cell: dict) -> str:
    if cell["status"] == OK:
        return _pct(cell["missing_fraction"])
    return {ABSENT: "absent", SUPPRESSED: "suppressed", UNKNOWN: "–"}[cell["status"]]


def _value(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table_markdown(rows: list[dict], sites: list[str]) -> str:
    """The feature table in Markdown: one row per feature, one missing-% column per site."""
    lines = [
        "| feature | kind | kept | reason dropped | indicator | imputation | sites with it | missing (all) | "
        + " | ".join(sites)
        + " |",
        "|---|---|---|---|---|---:|---:|---:|" + "---:|" * len(sites),
    ]
    for r in rows:
        indicator = "–" if r["indicator"] is None else ("yes" if r["indicator"] else "no")
        lines.append(
            f"| {r['name']} | {r['kind'] or '–'} | {'kept' if r['kept'] else 'dropped'} | "
            f"{r['reason'] or ''} | {indicator} | {_value(r['impute'])} | "
            f"{r['sites_with_feature']} of {r['n_sites']} | "
            f"{_pct(r['missing_fraction'], r['missing_fraction_max'])} | "
            + " | ".join(_cell_text(r["per_site"][s]) for s in sites)
            + " |"
        )
    return "\n".join(lines)


def alignment_markdown(section: dict | None) -> str:
    """The "Feature alignment" section of ``report.md`` (empty text for a job without EHR alignment)."""
    if not section:
        return ""
    policy = section["policy"]
    settings = ", ".join(f"{k} {_value(v)}" for k, v in policy.items()) or "not recorded"
    rows = ", ".join(f"{site} {_value(n)}" for site, n in section["rows"].items())
    lines = [
        "## Feature alignment (data dictionary, counts only)",
        "",
        f"Policy: {settings}. {section['kept']} features kept ({section['columns']} model columns), "
        f"{section['dropped']} dropped. Patients per site: {rows}.",
        "",
        "Missing share per site (suppressed: a count below the small-cell minimum was not sent; "
        "absent: the site does not record it; –: no count sent). Sites with it: sites with at least "
        "min_cell values present (as the policy's min_sites_with_feature counts them).",
        "",
        table_markdown(section["features"], section["sites"]),
        "",
    ]
    if section["lacks"]:
        lines += [
            f"Which site lacks what (missing for at least {100 * LACKS_FROM:.0f} % of its patients; "
            "suppressed and unsent counts said as such):",
            "",
        ]
        lines += [f"- {sentence}" for sentence in section["lacks"]]
    else:
        lines.append(f"No site misses any feature for {100 * LACKS_FROM:.0f} % or more of its patients.")
    lines += [
        "",
        f"Missingness heat map (site x feature): `{section['heatmap']}`, next to this report.",
        "",
        f"![missingness per site and feature]({section['heatmap']})",
    ]
    return "\n".join(lines) + "\n"


def heatmap_size(n_sites: int, n_features: int) -> tuple[float, float]:
    """The heat map's figure size in inches (width, height)."""
    return 0.8 * max(n_features, 2) + 3.0, 0.5 * max(n_sites, 2) + 2.5


def plot_missingness(section: dict, path: Path) -> Path:
    """The heat map of a report section: missing fraction per site and feature, grey hatched where unknown."""
    rows, sites = section["features"], section["sites"]
    values = np.array(
        [
            [
                np.nan
                if r["per_site"][s]["missing_fraction"] is None
                else r["per_site"][s]["missing_fraction"]
                for r in rows
            ]
            for s in sites
        ],
        dtype=float,
    ).reshape(len(sites), len(rows))
    fig, ax = plt.subplots(figsize=heatmap_size(len(sites), len(rows)))
    image = ax.imshow(np.ma.masked_invalid(values), vmin=0.0, vmax=1.0, cmap="OrRd", aspect="auto")
    for i, site in enumerate(sites):
        for j, r in enumerate(rows):
            cell = r["per_site"][site]
            if cell["missing_fraction"] is None:
                ax.add_patch(
                    plt.Rectangle(
                        (j - 0.5, i - 0.5), 1, 1, facecolor="lightgrey", hatch="///", edgecolor="grey"
                    )
                )
                label = "supp." if cell["status"] == SUPPRESSED else "n/a"
                ax.text(j, i, label, ha="center", va="center", fontsize=7, color="black")
                continue
            v = cell["missing_fraction"]
            ax.text(
                j,
                i,
                f"{100 * v:.0f}%",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if v > 0.6 else "black",
            )
    labels = [r["name"] if r["kept"] else f"{r['name']} (dropped)" for r in rows]
    ax.set_xticks(range(len(rows)), labels, rotation=40, ha="right", fontsize=8)
    for tick, r in zip(ax.get_xticklabels(), rows, strict=True):
        if not r["kept"]:
            tick.set_color("tab:red")
    ax.set_yticks(range(len(sites)), sites, fontsize=8)
    ax.set_xlabel("feature (red: dropped by the alignment policy)")
    ax.set_title("missing share per site and feature (grey hatched: suppressed or not sent)")
    fig.colorbar(image, ax=ax, label="missing fraction")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def missingness_heatmap(schema: dict, path: Path) -> Path:
    """Write the missingness heat map (rows = sites, columns = features) of an aligned schema as a PNG."""
    return plot_missingness(alignment_section(schema), path)
