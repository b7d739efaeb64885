"""Communication benchmark: bytes and model quality per compression mode, in one run.

Chest X-rays (PneumoniaMNIST, real pediatric radiographs, 28x28) split over 4 hospitals with
Dirichlet(alpha=1) label skew; the seed's small CNN (105k parameters); FedAvg with E local epochs.
Every mode starts from the same initial model, split and seeds; each site's update
(``weights - global``) goes through :class:`fedhealth_tools.compression.channel.CompressedChannel`, the
same codec the FLARE filters use, and both message sizes are FOBS-serialized and measured. Each final
model is scored on PneumoniaMNIST's validation split (for choosing a setting, see
``scripts/bench_topk_schedule.py``) and its test split (reported). The heart-disease job (4 real
hospitals, tiny models) is measured too, to show where framing dominates.

Usage: ``make bench-compression`` (writes ``results/bench_compression.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from fedhealth.compression.config import CompressionConfig
from fedhealth.models.cnn import SmallCNN
from fedhealth_tools.compression.channel import CompressedChannel
from fedhealth_tools.imaging.converter import medmnist_file

DATA = medmnist_file("pneumoniamnist")  # bundled with fedhealth-tools, checksum verified
N_SITES, ALPHA, BATCH, LR = 4, 1.0, 64, 1e-3
MODES = {
    "none": {"mode": "none"},
    "fp16": {"mode": "fp16"},
    "int8": {"mode": "int8", "error_feedback": False},
    "int4": {"mode": "int4", "error_feedback": False},
    "topk_10pct_ef": {"mode": "topk", "k_fraction": 0.1},
    "topk_10pct": {"mode": "topk", "k_fraction": 0.1, "error_feedback": False},
    "topk_1pct_ef": {"mode": "topk", "k_fraction": 0.01},
    "topk_1pct": {"mode": "topk", "k_fraction": 0.01, "error_feedback": False},
    "topk_0.1pct_ef": {"mode": "topk", "k_fraction": 0.001},
    "topk_0.1pct": {"mode": "topk", "k_fraction": 0.001, "error_feedback": False},
    # Top-k schedules (chosen on validation AUC by scripts/bench_topk_schedule.py).
    "topk_1pct_ef_warm1": {"mode": "topk", "k_fraction": 0.01, "warmup_rounds": 1},
    "topk_1pct_ef_warm2": {"mode": "topk", "k_fraction": 0.01, "warmup_rounds": 2},
    "topk_1pct_ef_warm3": {"mode": "topk", "k_fraction": 0.01, "warmup_rounds": 3},
    "topk_10to1pct_ef_10r": {"mode": "topk", "k_fraction": 0.01, "k_start": 0.1, "decay_rounds": 10},
    "topk_10to1pct_ef_20r": {"mode": "topk", "k_fraction": 0.01, "k_start": 0.1, "decay_rounds": 20},
    "topk_1pct_ef_warm2_10to1pct_10r": {
        "mode": "topk",
        "k_fraction": 0.01,
        "warmup_rounds": 2,
        "k_start": 0.1,
        "decay_rounds": 10,
    },
}
# (local epochs E, rounds) -> modes run. 40 rounds of E = 1 is the main block (the baseline has
# about levelled off); E = 5 over 8 rounds trains as many local epochs with a fifth of the
# messages (periodic averaging); 10 rounds show how far error feedback lags early in training.
# The top-k schedule scripts/bench_topk_schedule.py chose on validation AUC (3 seeds): 10% decaying
# geometrically to 1% over the first 20 rounds.
CHOSEN_SCHEDULE = "topk_10to1pct_ef_20r"
SCHEDULES = {
    (1, 40): [m for m in MODES if not m.startswith(("topk_1pct_ef_", "topk_10to1pct"))] + [CHOSEN_SCHEDULE],
    (5, 8): ["none", "int8", "topk_1pct_ef", "topk_1pct"],
    (1, 10): ["none", "topk_1pct_ef"],
}
MAIN = (1, 40)
AIMS = {
    "topk_1pct_ef": {"bytes_ratio": 50.0, "auc_loss": 0.005},
    "int8": {"bytes_ratio": 3.9, "auc_loss": 0.002},
    # the issue's 0.5 points; 10x fewer bytes is the schedule study's guard (the >= 3x round-time aim)
    CHOSEN_SCHEDULE: {"bytes_ratio": 10.0, "auc_loss": 0.005},
}


def dirichlet_split(labels: np.ndarray, n_sites: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Indices per site, each class spread over sites by Dirichlet(alpha) proportions."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(n_sites)]
    for cls in np.unique(labels):
        idx = rng.permutation(np.nonzero(labels == cls)[0])
        cuts = (np.cumsum(rng.dirichlet([alpha] * n_sites))[:-1] * idx.size).astype(int)
        for site, chunk in enumerate(np.split(idx, cuts)):
            parts[site] += chunk.tolist()
    return [np.array(sorted(p)) for p in parts]


def load(seed: int):
    data = np.load(DATA)

    def tensors(split: str):
        x = torch.as_tensor(data[f"{split}_images"], dtype=torch.float32).unsqueeze(1) / 255.0
        return x, torch.as_tensor(data[f"{split}_labels"].ravel(), dtype=torch.float32)

    x, y = tensors("train")
    sites = [(x[i], y[i]) for i in dirichlet_split(y.numpy(), N_SITES, ALPHA, seed)]
    return sites, tensors("test")


def load_val():
    """PneumoniaMNIST's validation split (images, labels): for choosing a setting, never reported as test."""
    data = np.load(DATA)
    x = torch.as_tensor(data["val_images"], dtype=torch.float32).unsqueeze(1) / 255.0
    return x, torch.as_tensor(data["val_labels"].ravel(), dtype=torch.float32)


def train_local(model: torch.nn.Module, x, y, epochs: int, gen: torch.Generator) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=gen).split(BATCH):
            opt.zero_grad()
            loss_fn(model(x[batch]).squeeze(1), y[batch]).backward()
            opt.step()


@torch.no_grad()
def score(model: torch.nn.Module, x, y) -> dict[str, float]:
    model.eval()
    p = torch.sigmoid(model(x).squeeze(1)).numpy()
    return {"auc": float(roc_auc_score(y.numpy(), p)), "accuracy": float(np.mean((p >= 0.5) == y.numpy()))}


def run_cxr(mode: str, epochs: int, rounds: int, sites, test, seed: int, val=None) -> dict:
    """One federation in ``mode``; the final model's test AUC (and validation AUC when ``val`` is given)."""
    torch.manual_seed(seed)
    model = SmallCNN()
    channel = CompressedChannel(CompressionConfig(**MODES[mode]))
    gens = [torch.Generator().manual_seed(seed * 100 + i) for i in range(len(sites))]
    sizes = np.array([len(y) for _, y in sites], dtype=float)
    start_time = time.perf_counter()
    for _ in range(rounds):
        start = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        received = []
        for i, (x, y) in enumerate(sites):
            local = SmallCNN()
            local.load_state_dict(model.state_dict())
            train_local(local, x, y, epochs, gens[i])
            sent = {k: v.numpy() for k, v in local.state_dict().items()}
            received.append(channel(f"site-{i + 1}", sent, start))
        avg = {k: sum(w * r[k] for w, r in zip(sizes / sizes.sum(), received, strict=True)) for k in start}
        model.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in avg.items()})
    return {
        "mode": mode,
        "local_epochs": epochs,
        "rounds": rounds,
        **score(model, *test),
        **({"val_auc": score(model, *val)["auc"]} if val is not None else {}),
        **channel.totals(),
        "wall_s": time.perf_counter() - start_time,
    }


def run_heart(modes: list[str], seeds: list[int]) -> dict:
    """The heart job's MLP (heart_topk) and logistic regression (heart_fedavg), 19 rounds."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_heart import load_tables, make_sites

    from fedhealth.models.tabular import TabularNet
    from fedhealth_tools.training.federation import run_federation

    tables, out = load_tables(), {}
    for arch in ("logreg", "mlp"):
        for mode in modes:
            accs, ratios, per_round = [], [], []
            for seed in seeds:
                sites = make_sites(tables, scaling="global", chol=True)
                channel = CompressedChannel(CompressionConfig(**MODES[mode]))
                n = sites[0].n_features
                result = run_federation(
                    sites,
                    lambda seed=seed, n=n, arch=arch: TabularNet(
                        in_features=n, arch=arch, hidden=16, seed=seed
                    ),
                    rounds=19,
                    lr=0.03,
                    local_epochs=1,
                    batch_size=4,
                    seed=seed,
                    channel=channel,
                )
                accs.append(np.mean([s.evaluate(result.model)["accuracy"] for s in sites]))
                totals = channel.totals()
                ratios.append(totals["bytes_ratio"])
                per_round.append(totals["bytes_per_round_per_site"])
            out[f"{arch}/{mode}"] = {
                "client_avg_accuracy": float(np.mean(accs)),
                "client_avg_accuracy_sd": float(np.std(accs)),
                "bytes_ratio": float(np.mean(ratios)),
                "bytes_per_round_per_site": float(np.mean(per_round)),
            }
            print(
                f"heart {arch:6s} {mode:15s} acc {np.mean(accs):.3f} bytes x{np.mean(ratios):.2f}", flush=True
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench_compression.json")
    parser.add_argument("--seed", type=int, default=0)
    # One thread: on a shared 2-core machine two torch threads thrash (measured 15x slower under load).
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sites, test = load(args.seed)
    val = load_val()
    rows = []
    for (epochs, rounds), modes in SCHEDULES.items():
        for mode in modes:
            row = run_cxr(mode, epochs, rounds, sites, test, args.seed, val=val)
            rows.append(row)
            print(
                f"cxr E={epochs} R={rounds} {mode:15s} auc {row['auc']:.4f} val {row['val_auc']:.4f} "
                f"acc {row['accuracy']:.3f} "
                f"bytes/round/site {row['bytes_per_round_per_site']:9.0f} x{row['bytes_ratio']:.1f} "
                f"({row['wall_s']:.0f} s)",
                flush=True,
            )
    for row in rows:
        base = next(
            r
            for r in rows
            if r["mode"] == "none"
            and (r["local_epochs"], r["rounds"]) == (row["local_epochs"], row["rounds"])
        )
        row["metric"] = row["auc"]
        row["metric_delta"] = row["auc"] - base["auc"]
    aims = {}
    for mode, aim in AIMS.items():
        row = next(r for r in rows if r["mode"] == mode and (r["local_epochs"], r["rounds"]) == MAIN)
        aims[mode] = {
            **aim,
            "bytes_ratio_measured": row["bytes_ratio"],
            "auc_loss_measured": -row["metric_delta"],
            "met": row["bytes_ratio"] >= aim["bytes_ratio"] and -row["metric_delta"] <= aim["auc_loss"],
        }
    result = {
        "benchmark": "compression",
        "hardware": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.is_available(),
        },
        "task": f"PneumoniaMNIST 28x28, {N_SITES} sites, Dirichlet({ALPHA}), SmallCNN, FedAvg, Adam lr {LR}",
        "n_params": sum(p.numel() for p in SmallCNN().parameters()),
        "site_sizes": [len(y) for _, y in sites],
        "modes": {f"{r['mode']}@E{r['local_epochs']}R{r['rounds']}": r for r in rows},
        "aims": aims,
        "heart": run_heart(["none", "int8", "int4", "topk_10pct_ef", "topk_10pct"], seeds=[0, 1, 2]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(aims, indent=2))


if __name__ == "__main__":
    main()
