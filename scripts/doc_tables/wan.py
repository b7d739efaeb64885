"""Network lab tables: `make bench-wan` (round time, bytes and AUC over emulated WAN links)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import f3, load, nbytes, pts, ratio, site_label, table

NAME = "bench_wan.json"
LABS = ("fast", "wan", "rural")


def _find(rows: list[dict], job: str, lab: str, compression: str, min_clients: int = 4) -> dict | None:
    key = (job, lab, compression, min_clients)
    return next((r for r in rows if _key(r) == key), None)


def _key(row: dict) -> tuple:
    return row["job"], row["profile"], row["compression"], row["min_clients"]


def _participation(row: dict) -> str:
    rates = row.get("participation", {})
    low = {s: r for s, r in rates.items() if r < 1.0}
    if not low:
        return "all 100 %"
    return ", ".join(f"{site_label(s)} {r:.0%}" for s, r in sorted(low.items()))


def wan_rows(results: Path) -> str:
    """Every run: job, lab, upload compression, sites waited for; median s/round, wire bytes, AUC."""
    out = []
    for r in load(results, NAME)["rows"]:
        out.append(
            [
                r["job"],
                r["profile"],
                r["compression"],
                "all 4" if r["min_clients"] == 4 else f"{r['min_clients']} + wait",
                f"{r['round_s']:.2f}",
                _seconds(r.get("slowest_site_s")),
                _seconds(r.get("overhead_s")),
                nbytes(r["bytes_per_site"]),
                nbytes(r["upload_bytes_per_site"]),
                f3(r["auc"]),
                _participation(r),
            ]
        )
    header = [
        "job",
        "lab",
        "upload",
        "sites waited for",
        "s/round (median)",
        "slowest site's task s",
        "the rest s",
        "wire bytes/site/round",
        "of which up",
        "AUC",
        "participation",
    ]
    return table(header, "llllrrrrrrl", out)


def _seconds(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def wan_links(results: Path) -> str:
    """What each lab's links measured before the federation started: RTT and upload goodput."""
    probes = load(results, NAME)["probes"]
    out = []
    for lab in LABS:
        for site, p in sorted(probes.get(lab, {}).items()):
            rtt, goodput = f"{p['rtt_ms']:.1f}", f"{p['goodput_mbit']:.1f}"
            out.append([lab, site_label(site), p["profile"], rtt, goodput])
    return table(["lab", "site", "profile", "RTT ms", "upload goodput Mbit/s (2 MB)"], "lllrr", out)


def wan_aims(results: Path) -> str:
    """The issue's two aims, as measured: top-k on the rural lab's CXR job, and the 10x slower site."""
    data = load(results, NAME)
    rows = data["rows"]
    out = []
    dense, topk = _find(rows, "cxr", "rural", "none"), _find(rows, "cxr", "rural", "topk 1% +EF")
    if dense and topk:
        speed = dense["round_s"] / topk["round_s"]
        up = dense["upload_bytes_per_site"] / topk["upload_bytes_per_site"]
        out.append(
            [
                "rural CXR: top-k 1 % + EF vs none, round time",
                "≥ 3× faster",
                f"{ratio(speed, 2)} faster ({dense['round_s']:.2f} → {topk['round_s']:.2f} s); "
                f"uploads {ratio(up)} smaller",
                "met" if speed >= 3 else "not met",
            ]
        )
        diff = topk["auc"] - dense["auc"]
        met = "met" if diff >= -0.005 else "not met"
        out.append(["rural CXR: top-k 1 % + EF vs none, AUC", "≥ −0.5 pts", pts(diff), met])
    scheduled = _find(rows, "cxr", "rural", "topk 10%→1% +EF")
    if dense and scheduled:
        diff = scheduled["auc"] - dense["auc"]
        speed = dense["round_s"] / scheduled["round_s"]
        out.append(
            [
                f"rural CXR: cxr_topk's schedule (10 %→1 % over 20 rounds) vs none, "
                f"{scheduled['rounds']} rounds",
                "≥ −0.5 pts, ≥ 3× faster",
                f"{pts(diff)}; {ratio(speed, 2)} faster",
                "met" if diff >= -0.005 and speed >= 3 else "not met",
            ]
        )
    slow = data.get("slow_site")
    if slow:
        r = slow["ratio_to_fast"]
        share = slow["participation"].get(slow["slow_site"], 0.0)
        out.append(
            [
                f"a site {slow['delay_s']:.0f} s late a round (10× a round), min_clients 3, no wait",
                "≤ 1.2× the fast sites' round",
                f"{ratio(r, 2)} ({slow['round_s_with_slow_site']:.2f} vs {slow['round_s_fast_sites']:.2f} s; "
                f"all 4 waited for: {slow['all_sites']['round_s']:.2f} s); its participation {share:.0%}, "
                f"the final model's AUC at that site {f3(slow['min_clients_3'].get('slow_site_auc'))}",
                "met" if r <= 1.2 else "not met",
            ]
        )
    return table(["aim", "target", "measured", ""], "llll", out)
