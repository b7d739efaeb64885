"""What a compromised server learns from fedhealth's updates, and what each protection buys.

Run as ``python scripts/bench_privacy_attacks.py --out results/bench_privacy_attacks.json
--png results/privacy_attacks.png`` (``make bench-privacy-attacks``).

Two shipped jobs are audited through the site code (:mod:`fedhealth_tools.privacy.audit`):

* ``cxr_fedavg`` (PneumoniaMNIST, small CNN, Adam as shipped, and the same job with SGD, the optimizer
  of the gradient-inversion literature): Inverting Gradients (Geiping et al. 2020) on the update of a
  site whose batch is 1, 4, 8, 16 (the default site floor) or 32 images, after 1 or 5 local steps;
* ``heart_fedavg`` (the four hospitals, logistic regression, SGD): the exact row recovery ``x = ΔW / Δb``
  at the same batches and steps;

each under no protection, DP-SGD at ε = 1 and 8 (the noise a site of its real size would add),
the sum of 4 sites (what secure aggregation or HE leaves the server) and top-k 1 %. Membership
inference (loss threshold, Yeom et al. 2018; LiRA, Carlini et al. 2022) attacks the final model of
each job's federation under the same protections. Quality figures only: seconds are for scale, and
the machine may have been shared (``hardware.load_average``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "custom"))

from fedhealth.policy.site_limits import Limits  # noqa: E402
from fedhealth_tools.privacy.attacks.image_inversion import InversionConfig  # noqa: E402
from fedhealth_tools.privacy.audit.capture import PROTECTIONS, load_audit_data  # noqa: E402
from fedhealth_tools.privacy.audit.figure import draw_panels  # noqa: E402
from fedhealth_tools.privacy.audit.inversion import Setting, image_row, table_row  # noqa: E402
from fedhealth_tools.privacy.audit.job import AuditJob  # noqa: E402
from fedhealth_tools.privacy.audit.membership import membership_rows  # noqa: E402
from fedhealth_tools.privacy.audit.run import MANY_STEPS, write  # noqa: E402

BATCHES = (1, 4, 8, 16, 32)
STEPS = (1, MANY_STEPS)
# The attacker (fedhealth_tools.privacy.attacks.image_inversion): 300 iterations; two random starts
# at batch 1 (cheap), one above (batch 32 x 5 steps is about a minute a start on one thread).
INVERSION = InversionConfig(iterations=300, restarts=1)
INVERSION_BATCH1 = InversionConfig(iterations=300, restarts=2)
PNG_SETTINGS = (
    ("sgd", Setting(1, 1, "none")),
    ("sgd", Setting(4, 1, "none")),
    ("sgd", Setting(8, 1, "none")),
    ("adam", Setting(1, 1, "none")),
    ("sgd", Setting(1, 1, "dp_eps8")),
    ("sgd", Setting(1, 1, "secure_sum4")),
    ("sgd", Setting(1, 1, "topk1")),
)
MEMBERSHIP_IMAGES = 2000  # PneumoniaMNIST images per split for the membership federations (CPU time)
LIRA_SHADOWS = {"heart": 16, "cxr": 8}
# LiRA's shadows retrain the whole federation: every protection on heart, two on PneumoniaMNIST (CPU time)
LIRA_PROTECTIONS = {"heart": ("none", "dp_eps1", "dp_eps8", "topk1"), "cxr": ("none", "dp_eps8")}


PROTOCOL = {
    "capture": "the site's own SiteRunner with the job's task, algorithms and local settings, "
    "round 0 (the job's initial model), a site holding exactly the attacked batch",
    "image_attack": f"Inverting Gradients, {dataclasses.asdict(INVERSION)} (2 restarts at batch 1); "
    "labels inferred at batch 1 "
    "(iDLG), given otherwise; each reconstruction matched to one original (Hungarian, SSIM)",
    "cxr_variants": "cxr_fedavg as shipped (Adam, lr 0.001, random affine augmentation at the site) "
    "and "
    "cxr_fedavg+sgd-noaug (SGD momentum 0.9, same lr, no augmentation: the literature's setting)",
    "baseline_ssim": "SSIM of the mean validation image (a generic chest X-ray, no attacked patient) "
    "against the attacked patients: a reconstruction below it shows nothing patient-specific",
    "reidentified": "share of reconstructions whose most correlated image among all training images of the "
    "attacked site(s) is the patient it was matched to (the server could pick the patient out)",
    "table_attack": "x = dW / db of the first layer; the nearest training row of the attacked "
    "site(s); recovered_fraction: share of its feature values within 0.05 (scaled units)",
    "dp": "the dp_sgd plug-in with the noise multiplier a site of its real size would use for that "
    "epsilon (delta 0.1/n, the job's rounds)",
    "secure_sum4": "the FedAvg mean of 4 sites' updates; scored against all 4 sites' patients",
    "membership": "members: every site's training patients; non-members: held-out patients drawn like them "
    "(heart: each hospital's test split; PneumoniaMNIST: the validation split, since MedMNIST's test split "
    "is another acquisition and a loss threshold would measure that shift); "
    f"PneumoniaMNIST limited to {MEMBERSHIP_IMAGES} images per split; secure_sum4 releases the same "
    "model as none",
}


def settings() -> list[Setting]:
    """Every batch at 1 and E steps without protection; every protection at one step."""
    out = [Setting(b, s, "none") for b in BATCHES for s in STEPS]
    return out + [Setting(b, 1, p) for p in PROTECTIONS if p != "none" for b in BATCHES]


def sgd_variant(job: AuditJob) -> AuditJob:
    """The job with SGD (momentum 0.9, the kit's image loop) and no augmentation: the literature's setting."""
    return dataclasses.replace(
        job,
        name=f"{job.name}+sgd-noaug",
        local={**job.local, "optimizer": "sgd"},
        task_args={**job.task_args, "augment": False},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_privacy_attacks.json")
    parser.add_argument("--png", type=Path, default=ROOT / "results" / "privacy_attacks.png")
    parser.add_argument(
        "--smoke", action="store_true", help="a few settings, weak attacks (checks the wiring)"
    )
    parser.add_argument(
        "--only-cxr-membership",
        action="store_true",
        help="rerun only the PneumoniaMNIST membership rows into the existing --out (the rest is kept)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    inversion, membership, panels = [], [], []
    # written after every row (marked partial) so that an interrupted run keeps what it measured
    result: dict = {"partial": True, "inversion": inversion, "membership": membership}
    smoke = InversionConfig(iterations=40, restarts=1)
    grid = settings()[:3] if args.smoke else settings()

    protections = ("none", "dp_eps8") if args.smoke else PROTECTIONS

    def log(text: str) -> None:
        print(text, flush=True)
        write(result, args.out)

    def members(job: AuditJob, data) -> None:
        shadows = 2 if args.smoke else LIRA_SHADOWS[job.data]
        lira = ("none",) if args.smoke else LIRA_PROTECTIONS[job.data]
        for row in membership_rows(job, data, protections, lira_shadows=shadows, lira_protections=lira):
            membership.append(row)
            log(f"membership {job.data} {row['protection']} {row['attack']}: AUC {row['auc']:.3f}")

    if args.only_cxr_membership:
        kept = json.loads(args.out.read_text())
        result.update({k: v for k, v in kept.items() if k not in ("inversion", "membership")})
        inversion.extend(kept["inversion"])
        membership.extend(r for r in kept["membership"] if r["data"] != "cxr")
        cxr_job = AuditJob.load(ROOT / "jobs" / "cxr_fedavg")
        members(cxr_job, load_audit_data(cxr_job, limit=MEMBERSHIP_IMAGES))
        result["protocol"] = PROTOCOL
        result["cxr_membership_rerun"] = "python " + shlex.join(
            ["scripts/bench_privacy_attacks.py", *sys.argv[1:]]
        )
        result.pop("partial", None)
        write(result, args.out)
        return 0

    heart = AuditJob.load(ROOT / "jobs" / "heart_fedavg")
    heart_data = load_audit_data(heart)
    for setting in grid:
        row = table_row(heart, heart_data, setting, repeats=5 if args.smoke else 50)
        inversion.append(row)
        log(f"heart {setting}: recovered {row['recovered_fraction']:.3f}, exact {row['exact_rows']:.2f}")
    members(heart, heart_data)

    cxr = AuditJob.load(ROOT / "jobs" / "cxr_fedavg")
    for job in (sgd_variant(cxr), cxr):
        cxr_data = load_audit_data(job)
        for setting in grid:
            keep = (job.local["optimizer"], setting) in PNG_SETTINGS
            config = smoke if args.smoke else INVERSION_BATCH1 if setting.batch == 1 else INVERSION
            row = image_row(job, cxr_data, setting, config=config, keep=keep)
            if keep:
                panels.append(row.pop("_images"))
            inversion.append(row)
            log(f"cxr {row['optimizer']} {setting}: SSIM {row['ssim_mean']:.3f} ({row['seconds']} s)")
    if panels:
        draw_panels(
            panels, args.png, title="PneumoniaMNIST: originals (top) over the server's reconstruction"
        )
    members(cxr, load_audit_data(cxr, limit=MEMBERSHIP_IMAGES))

    result.update(
        {
            "command": "python " + shlex.join(["scripts/bench_privacy_attacks.py", *sys.argv[1:]]),
            "protocol": PROTOCOL,
            "floors": {
                "min_batch_size": Limits().min_batch_size,
                "min_examples_per_round": Limits().min_examples_per_round,
            },
            "inversion": inversion,
            "membership": membership,
            "hardware": {
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "load_average": list(os.getloadavg()),
            },
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    result.pop("partial", None)
    write(result, args.out)
    print(f"wrote {args.out} and {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
