"""Encryption tables: `make bench-he` (the job against its clear twin, cost against model size)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import f4, load, nbytes, table


def _he_poc(results: Path, name: str) -> str:
    poc = load(results, name)["poc"]
    labels = {
        "plain": "clear twin",
        "he": "heart_he (all layers)",
        "he_selective": 'heart_he, `encrypt_layers: ["net.weight"]`',
    }
    rows = []
    for key, label in labels.items():
        r = poc[key]
        enc = (
            "-"
            if "encryption_s" not in r
            else f"{r['encryption_s'] * 1e3:.1f} / {r['decryption_s'] * 1e3:.1f} ms"
        )
        rows.append(
            [
                label,
                ", ".join(r["encrypted_layers"]) or "none",
                f"{r['round_time_s']:.2f}",
                nbytes(r["bytes_per_site_per_round"]),
                f4(r["global_auc"]),
                f4(r["global_accuracy"]),
                enc,
            ]
        )
    header = [
        "job (10 rounds, 4 sites)",
        "encrypted layers",
        "s per round (median)",
        "bytes per site per round",
    ]
    header += ["final AUC", "final accuracy", "encrypt / decrypt at a site"]
    return table(header, "llrrrrr", rows)


def he_poc(results: Path) -> str:
    return _he_poc(results, "bench_he.json")


def he_poc_quiet(results: Path) -> str:
    return _he_poc(results, "bench_he_quiet.json")


def he_sweep(results: Path) -> str:
    sweep = load(results, "bench_he.json")["size_sweep"]
    rows = [
        [
            f"{r['parameters']:,}",
            f"{r['encrypted_fraction']:.0%}",
            f"{r['encrypt_s_per_site']:.3f} s",
            f"{r['aggregate_s_server']:.3f} s",
            f"{r['aggregate_s_server_clear'] * 1e3:.1f} ms",
            f"{r['decrypt_s_site']:.3f} s",
            nbytes(r["bytes_per_site"]),
            nbytes(r["bytes_per_site_clear"]),
            f"{r['bytes_ratio']:.0f}×",
            f"{r['max_abs_error_vs_float64']:.1e}",
        ]
        for r in sweep
    ]
    header = ["parameters", "encrypted", "encrypt / site", "aggregate at server (4 sites)", "clear aggregate"]
    header += ["decrypt / site", "bytes per site", "clear", "ratio", "max abs error"]
    return table(header, "rrrrrrrrrr", rows)
