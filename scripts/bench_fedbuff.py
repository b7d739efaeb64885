"""Asynchronous FL (FedBuff) against synchronous FedAvg when one hospital is slow, in-process.

Run as ``python scripts/bench_fedbuff.py --out results/bench_fedbuff.json`` (``make bench-fedbuff``).

The four Fed-Heart-Disease hospitals with the heart jobs' settings (federated global scaling,
logistic regression, SGD at lr 0.1, batch 16, one local epoch a task); VA Long Beach takes
3 or 10 times as long per task as the others (time unit: one fast site's task). Synchronous
FedAvg waits for it every round (``heart_fedavg``: 25 rounds); dropping it keeps the pace but loses
its patients; FedBuff (:mod:`fedhealth_tools.federation.async_loop`, the FLARE
``FedBuffController``'s core on a simulated clock) neither waits nor drops it. Five seeds each;
"client-average" is the mean test accuracy over the four hospitals, VA included. Simulated time,
not the machine's: a POC run adds polling and transfer (``tests/integration/test_poc_fedbuff.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from bench_heart import SEEDS, evaluate, load_tables, make_sites, summarize

from fedhealth.algorithms.fedbuff import FedBuffConfig
from fedhealth.models.tabular import TabularNet
from fedhealth_tools.federation.async_loop import run_fedbuff_loop
from fedhealth_tools.federation.sites import heart_task_sites
from fedhealth_tools.training.federation import run_federation

SLOW_SITE, SLOW_FACTORS = "va_long_beach", (3.0, 10.0)
LR, ROUNDS = 0.1, 25  # heart_fedavg
LOCAL = {"batch_size": 16, "local_epochs": 1, "optimizer": "sgd"}
# name -> FedBuff settings (num_versions, buffer_size, staleness_exponent, max_staleness); about as
# many site updates as FedAvg's 25 rounds x 4 sites. heart_fedbuff ships the first.
FEDBUFF = {
    "fedbuff_k3_a0.5": (35, 3, 0.5, 20),
    "fedbuff_k3_a0": (35, 3, 0.0, 20),
    "fedbuff_k2_a0.5": (50, 2, 0.5, 20),
}


def _model(seed: int, n_features: int) -> TabularNet:
    return TabularNet(in_features=n_features, arch="logreg", seed=seed)


def fedavg(tables, slow: float, *, without: str | None = None) -> dict:
    """Synchronous FedAvg, ``ROUNDS`` rounds; ``without``: that site trains no part (it still tests)."""
    runs = []
    for seed in SEEDS:
        sites = make_sites(tables, scaling="global", chol=True)
        train_on = [s for s in sites if s.name != without]
        result = run_federation(
            train_on,
            lambda seed=seed, n=sites[0].n_features: _model(seed, n),
            rounds=ROUNDS,
            lr=LR,
            seed=seed,
            **LOCAL,
        )
        runs.append(evaluate(result.model, sites, None))
    slowest = 1.0 if without else slow
    trained_on = len(tables) - bool(without)
    share = 0.0 if without else 1 / trained_on  # one update of each site a round
    return summarize(
        runs, rounds=ROUNDS, sim_time=ROUNDS * slowest, trained_on=trained_on, slow_site_share=share
    )


def fedbuff(tables, slow: float, versions: int, k: int, a: float, max_staleness: int | None) -> dict:
    """FedBuff on the simulated clock: VA's tasks take ``slow`` units, the others' one."""
    runs, times, shares, staleness = [], [], [], []
    config = FedBuffConfig(buffer_size=k, staleness_exponent=a, max_staleness=max_staleness)
    for seed in SEEDS:
        sites = make_sites(tables, scaling="global", chol=True)
        task, task_sites = heart_task_sites(sites)
        durations = {s.name: (slow if s.name == SLOW_SITE else 1.0) for s in sites}
        result = run_fedbuff_loop(
            task,
            task_sites,
            _model(seed, sites[0].n_features),
            durations=durations,
            num_versions=versions,
            config=config,
            lr=LR,
            local=LOCAL,
            seeds=[seed * 1000 + i for i in range(len(sites))],
        )
        runs.append(evaluate(result.model, sites, None))
        times.append(result.times[-1])
        updates = [u for v in result.core.history for u in v.updates]
        from_slow = [u for u in updates if u.site == SLOW_SITE]
        shares.append(len(from_slow) / len(updates))
        staleness.extend(u.staleness for u in from_slow)
    return summarize(
        runs,
        versions=versions,
        buffer_size=k,
        staleness_exponent=a,
        max_staleness=max_staleness,
        sim_time=float(np.mean(times)),
        slow_site_share=float(np.mean(shares)),
        slow_site_mean_staleness=float(np.mean(staleness)) if staleness else None,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_fedbuff.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tic = time.perf_counter()
    tables = load_tables()
    rows = {}
    for slow in SLOW_FACTORS:
        tag = f"slow{slow:g}x"
        rows[f"{tag}_fedavg_waits"] = fedavg(tables, slow)
        rows[f"{tag}_fedavg_without_slow"] = fedavg(tables, slow, without=SLOW_SITE)
        for name, (versions, k, a, limit) in FEDBUFF.items():
            rows[f"{tag}_{name}"] = {"slow_factor": slow, **fedbuff(tables, slow, versions, k, a, limit)}
        rows[f"{tag}_fedavg_waits"]["slow_factor"] = rows[f"{tag}_fedavg_without_slow"]["slow_factor"] = slow
    for name, row in rows.items():
        print(
            f"{name:32s} client-avg {row['client_avg']:.3f} ± {row['client_avg_sd']:.3f}  "
            f"VA {row['per_site'][SLOW_SITE]:.3f}  time {row['sim_time']:.0f}"
            + (f"  VA share {row['slow_site_share']:.2f}" if "slow_site_share" in row else "")
        )
    out = {
        "slow_site": SLOW_SITE,
        "slow_factors": list(SLOW_FACTORS),
        "lr": LR,
        "local": LOCAL,
        "seeds": list(SEEDS),
        "rows": rows,
        "seconds": time.perf_counter() - tic,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out} in {out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
