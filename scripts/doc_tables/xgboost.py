"""XGBoost tables: `make bench-xgboost` (tree methods per task and site, the aims, rounds and bytes)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import f3, load, nbytes, pm, signed, site_label, table

METHODS = ("centralized_xgboost", "local_only", "federated_histogram", "bagging", "best_neural_federated")


def _site(task: dict, site: str) -> str:
    centre = task.get("centres", {}).get(site)
    return f"{site_label(site)} ({centre})" if centre else site_label(site)


def _settings(name: str, m: dict, n_sites: int) -> str:
    hp = m["hyperparameters"]
    if name == "local_only":
        return "each site its own (its own folds)"
    if name == "best_neural_federated":
        return f"`{m['method']}`: lr {hp['lr']:g}, weight decay {hp['weight_decay']:g}, {hp['rounds']} rounds"
    if name == "bagging":
        tree = hp["tree_params"]
        return (
            f"eta {hp['eta']:g} (÷{n_sites} a site), {hp['rounds']} rounds × {n_sites} trees, "
            f"depth {tree['max_depth']}, min child weight {tree['min_child_weight']:g}"
        )
    return (
        f"depth {hp['max_depth']}, eta {hp['eta']:g}, min child weight {hp['min_child_weight']:g}, "
        f"{hp['rounds']} rounds"
    )


def xgboost_bench(results: Path) -> str:
    rows = []
    for task_name, task in load(results, "bench_xgboost.json")["tasks"].items():
        for name in METHODS:
            m = task["methods"][name]
            per_site = ", ".join(f"{_site(task, s)} {f3(m['per_site_auc'][s])}" for s in task["sites"])
            rows.append(
                [
                    task_name,
                    name,
                    pm(m["client_avg_auc"], m["client_avg_auc_sd"]),
                    per_site,
                    _settings(name, m, len(task["sites"])),
                ]
            )
    header = ["task", "method", "client-avg AUC ± sd (5 seeds)", "AUC per site", "settings (chosen by CV)"]
    return table(header, "llrll", rows)


def xgboost_aims(results: Path) -> str:
    rows = []
    for task_name, a in load(results, "bench_xgboost.json")["aims"]["per_task"].items():
        hist, vs = a["histogram_within_centralized"], a["trees_vs_best_neural"]
        rows.append(
            [
                task_name,
                hist["aim"],
                f"{f3(hist['federated_histogram'])} / {f3(hist['centralized_xgboost'])} "
                f"= {hist['ratio']:.4f}",
                hist["verdict"] + (" (see below)" if "caveat" in a else ""),
            ]
        )
        diffs = ", ".join(f"{k} {signed(v)}" for k, v in vs["difference_by_method"].items())
        rows.append([task_name, f"trees against `{vs['neural_method']}`", diffs, vs["statement"]])
    return table(["task", "aim", "measured", "verdict"], "lllr", rows)


def xgboost_rounds(results: Path) -> str:
    rows = []
    for task_name, task in load(results, "bench_xgboost.json")["tasks"].items():
        for name in ("federated_histogram", "bagging"):
            t = task["methods"][name]["timing"]
            histogram = t.get("bytes_per_site_per_round")  # counted by the loopback tracker
            if histogram is not None:
                up, down = nbytes(histogram["from_site"]), nbytes(histogram["to_site"])
            else:
                up = nbytes(max(t["upload_bytes_per_site_per_round"].values()))
                down = nbytes(t["download_bytes_per_site_per_round"])
            rows.append(
                [
                    task_name,
                    name,
                    f"{t['seconds_per_run']:.2f}",
                    f"{t['round_seconds_median'] * 1000:.1f}",
                    up,
                    down,
                ]
            )
    header = ["task", "method", "s per training", "ms per round (median)", "site → server per round"]
    header += ["server → site per round"]
    return table(header, "llrrrr", rows)


def xgboost_setup(results: Path) -> str:
    data = load(results, "bench_xgboost.json")
    machine, lines = data["machine"], []
    for task_name, task in data["tasks"].items():
        excluded = "; ".join(f"{site_label(s)}: {why}" for s, why in task["excluded_sites"].items())
        caveat = data["aims"]["per_task"][task_name].get("caveat")
        lines.append(
            f"**{task_name}**: {len(task['sites'])} sites, {len(task['schema']['columns'])} aligned columns "
            f"(imputation `{task['alignment_policy']['imputation']}`)"
            + (f"; left out: {excluded}" if excluded else "")
            + (f". {caveat[0].upper()}{caveat[1:]}" if caveat else "")
            + "."
        )
    edges = [
        f"{task_name} {name}{f' ({site_label(site)})' if site else ''}: {', '.join(hp['cv_at_grid_edge'])}"
        for task_name, task in data["tasks"].items()
        for name, m in task["methods"].items()
        for site, hp in (
            m["hyperparameters"].items() if name == "local_only" else [(None, m["hyperparameters"])]
        )
        if hp.get("cv_at_grid_edge")
    ]
    lines.append("Choices at an end of their grid: " + ("; ".join(edges) or "none") + ".")
    if "grid_history" in data["protocol"]:
        lines.append(f"The grids were widened once: {data['protocol']['grid_history']}.")
    histogram = data["tasks"][next(iter(data["tasks"]))]["methods"]["federated_histogram"]["timing"]
    first = histogram["bytes_per_site_per_round"]["first_round_from_site"]
    lines.append(
        "Histogram bytes: the collectives' payload, counted by the loopback tracker, in the rounds after "
        f"the first (the first round also carries the split candidates: {nbytes(first)} from a site). "
        f"`{data['command']}` took {data['seconds']['total']:.0f} s on {machine['cpu_count']} cores "
        f"(`{machine['platform']}`, XGBoost {machine['xgboost']}, {data['date']}); other jobs may have "
        "shared the cores, so the seconds are not claims."
    )
    return "\n\n".join(lines)
