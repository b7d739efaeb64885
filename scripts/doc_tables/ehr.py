"""Missing-data tables: `make bench-ehr` (complete-case vs missingness-aware, per hospital, the aims)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import HEART_SITES, f3, load, pm, signed, site_label, table

EHR_METHODS = (
    "complete_case_federated",
    "complete_case_pooled",
    "missingness_aware_federated",
    "missingness_aware_pooled",
)


def _total(counts: dict[str, int]) -> int:
    return sum(counts[s] for s in HEART_SITES)


def ehr_bench(results: Path) -> str:
    methods = load(results, "bench_ehr.json")["methods"]
    rows = []
    for name in EHR_METHODS:
        m = methods[name]
        flamby, dropped, hp = m["flamby_test"], m["dropped_test"], m["hyperparameters"]
        rows.append(
            [
                name,
                pm(m["client_avg_auc"], m["client_avg_auc_sd"]),
                f"{_total(m['patients_scored'])} of {_total(m['test_patients'])}",
                f3(flamby["client_avg_auc"]),
                f3(dropped["all_hospitals_auc"]),
                f"{hp['lr']:g} / {hp['weight_decay']:g} / {hp['rounds']}",
            ]
        )
    header = [
        "method",
        "client-avg AUC ± sd (patients it scores)",
        "test patients scored",
        "client-avg AUC, FLamby's test patients",
        "AUC, dropped test patients (all hospitals)",
        "lr / weight decay / rounds (CV)",
    ]
    return table(header, "lrrrrl", rows)


def ehr_per_site(results: Path) -> str:
    methods = load(results, "bench_ehr.json")["methods"]
    cc, ma = methods["complete_case_federated"], methods["missingness_aware_federated"]
    pooled = methods["missingness_aware_pooled"]
    rows = []
    for site in HEART_SITES:
        flamby_ma = ma["flamby_test"]["per_site_auc"][site]
        gain = (
            None
            if flamby_ma is None or cc["per_site_auc"][site] is None
            else flamby_ma - cc["per_site_auc"][site]
        )
        rows.append(
            [
                site_label(site),
                f"{ma['flamby_test']['patients'][site]} ({ma['flamby_test']['negatives'][site]})",
                f"{ma['dropped_test']['patients'][site]} ({ma['dropped_test']['negatives'][site]})",
                cc["patients_not_scored"][site],
                f3(cc["per_site_auc"][site]),
                f3(flamby_ma),
                "–" if gain is None else signed(gain),
                f3(ma["dropped_test"]["per_site_auc"][site]),
                f3(ma["per_site_auc"][site]),
                f3(pooled["per_site_auc"][site]),
            ]
        )
    header = [
        "hospital",
        "FLamby test (negatives)",
        "dropped test (negatives)",
        "complete-case cannot score",
        "complete-case fed AUC",
        "missingness-aware fed, FLamby's patients",
        "gain, same patients",
        "missingness-aware fed, dropped patients",
        "missingness-aware fed, all",
        "missingness-aware pooled, all",
    ]
    return table(header, "lrrrrrrrrr", rows)


def ehr_aims(results: Path) -> str:
    data = load(results, "bench_ehr.json")
    aims = data["aims"]
    gain, worse, pooled = (
        aims["gain_over_complete_case"],
        aims["no_hospital_worse"],
        aims["federated_within_pooled"],
    )
    worst = worse["worst_site"]
    rows = [
        [
            gain["aim"],
            gain["judged_on"],
            f"{signed(gain['client_avg_gain'])} client-average",
            gain["verdict"],
        ],
        [
            worse["aim"],
            worse["judged_on"],
            f"worst {site_label(worst)} {signed(worse['per_site_gain'][worst])}",
            worse["verdict"],
        ],
        [
            pooled["aim"],
            pooled["judged_on"],
            f"pooled − federated {signed(pooled['gap'])}",
            pooled["verdict"],
        ],
    ]
    every = gain["on_all_scored_patients"]
    rows.append(
        [
            "(for reference) the same gain over all the patients each method scores",
            "each method's scored patients (not the same set)",
            f"{signed(every['client_avg_gain'])} client-average",
            "–",
        ]
    )
    return table(["aim", "judged on", "measured", "verdict"], "lllr", rows)


def ehr_setup(results: Path) -> str:
    data = load(results, "bench_ehr.json")
    schema, machine = data["schema"], data["machine"]
    dropped = "; ".join(f"`{d['name']}` ({d['reason']})" for d in schema["dropped"]) or "none"
    load_end = ", ".join(f"{x:.1f}" for x in machine["load_average_at_end"])
    return (
        f"The aligned schema has {len(schema['columns'])} columns; "
        f"dropped by the alignment policy: {dropped}. "
        f"`{data['command']}` took {data['seconds']['total']:.0f} s on {machine['cpu_count']} cores "
        f"(`{machine['platform']}`, {data['date']}), load average at the end {load_end}: other jobs shared "
        "the cores, so the time is not a claim (the AUCs do not depend on load)."
    )
