"""Heart tables: `make bench-heart` (methods, per hospital) and `make bench-jobs` (shipped jobs in POC)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import HEART_SITES, f3, load, pm, signed, site_label, table

HEART_BENCH_ROWS = (
    ("flamby_pooled", "flamby_pooled"),
    ("flamby_fedavg", "flamby_fedavg"),
    ("flamby_fedprox", "flamby_fedprox"),
    ("flamby_local_cleveland", "flamby_local_cleveland"),
    ("kit_pooled_logreg", "kit_pooled_logreg"),
    ("kit_pooled_mlp", "kit_pooled_mlp"),
    ("kit_fedavg_logreg", "kit_fedavg_logreg"),
    ("kit_fedprox_logreg", "kit_fedprox_logreg"),
    ("kit_fedavg_mlp", "kit_fedavg_mlp"),
    ("kit_fedprox_mlp", "kit_fedprox_mlp"),
    ("kit_fedprox_mlp_finetuned", "kit_fedprox_mlp_finetuned"),
    ("kit_local_own_site_models", "kit_local_own_site_models"),
    ("kit_local_cleveland", "kit_local_cleveland"),
    ("kit_fedprox_mlp_finetuned_chol0_as_value", "kit_fedprox_mlp_finetuned_chol0_as_value"),
    ("kit_pooled_logreg_chol0_as_value", "kit_pooled_logreg_chol0_as_value"),
)


def heart_bench(results: Path) -> str:
    data = load(results, "bench_heart.json")
    methods, published = data["methods"], data["flamby_published"]
    best = data["aims"]["best_federated_by_cv"]
    rows = []
    for key, label in HEART_BENCH_ROWS:
        m = methods[key]
        name = f"{label} **(best FL by CV)**" if key == best else label
        pub = published.get(key, {}).get("client_avg")
        rows.append(
            [
                name,
                pm(m["client_avg"], m["client_avg_sd"]),
                f3(m["pooled_test"]),
                f"{f3(m['worst_site'])} {m['worst_site_name']}",
                *(f3(m["per_site"][s]) for s in HEART_SITES),
                "" if pub is None else f3(pub),
            ]
        )
    header = ["method", "client-avg ± sd", "pooled test", "worst hospital"]
    header += [site_label(s) for s in HEART_SITES] + ["FLamby published"]
    return table(header, "lrrlrrrrr", rows)


def heart_per_site(results: Path) -> str:
    comparison = load(results, "bench_heart.json")["per_site_comparison"]
    rows = [
        [
            site,
            f3(c["federated"]),
            f3(c["local_only"]),
            f3(c["pooled"]),
            signed(c["gain_vs_local"]),
            signed(c["gain_vs_pooled"]),
        ]
        for site, c in comparison.items()
    ]
    return table(["hospital", "federated", "local only", "pooled", "vs local", "vs pooled"], "lrrrrr", rows)


def heart_jobs(results: Path) -> str:
    data = load(results, "bench_jobs.json")
    rows = []
    for job, r in sorted(data["jobs"].items()):
        per_site = r["per_site"]
        worst = min(per_site, key=lambda s: per_site[s]["accuracy"])
        rows.append(
            [
                f"`{job}`",
                r["status"],
                r["rounds"],
                f"{r['seconds']:.1f}",
                f3(r["client_avg_accuracy"]),
                f"{f3(per_site[worst]['accuracy'])} {worst}",
                *(f"{f3(per_site[s]['accuracy'])} / {f3(per_site[s]['auc'])}" for s in HEART_SITES),
                r["gate"],
            ]
        )
    header = ["job", "status", "rounds", "s", "client-avg accuracy", "worst site"]
    header += [f"{site_label(s)} acc / AUC" for s in HEART_SITES] + ["gate"]
    return table(header, "llrrrlrrrrl", rows)


def heart_jobs_setup(results: Path) -> str:
    data = load(results, "bench_jobs.json")
    hw = data["hardware"]
    load_end = ", ".join(f"{x:.1f}" for x in data["load_average_at_end"])
    return (
        f"`{data['command']}`: {len(data['jobs'])} jobs, {data['seconds']:.0f} s in all, on "
        f"{hw['cpu_count']} cores (`{hw['platform']}`), load average at the end {load_end}."
    )
