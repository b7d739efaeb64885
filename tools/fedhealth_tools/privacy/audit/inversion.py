"""Reconstruction attacks on captured updates: images by gradient inversion, table rows by ``ΔW / Δb``.

One row of figures per (data, batch, local steps, protection): the mean SSIM and PSNR of the
reconstructed images against the patients' own images (each reconstruction matched to one original),
or, for a table, the share of a patient's feature values the server recovers within tolerance and the
share of attacks that recover a whole training row exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fedhealth_tools.privacy.attacks.image_inversion import InversionConfig, invert_image_update
from fedhealth_tools.privacy.attacks.image_scores import score_reconstructions
from fedhealth_tools.privacy.attacks.tabular_inversion import recovery
from fedhealth_tools.privacy.audit.capture import AuditData, capture, model_builder, parse_protection
from fedhealth_tools.privacy.audit.job import AuditJob


@dataclass(frozen=True)
class Setting:
    """One audited setting."""

    batch: int
    local_steps: int
    protection: str


def image_row(
    job: AuditJob,
    data: AuditData,
    setting: Setting,
    *,
    config: InversionConfig,
    seed: int = 0,
    keep: bool = False,
) -> dict:
    """Invert one captured image update; ``keep``: the row also carries ``_images`` (title, originals,
    reconstructions, scores) for :func:`fedhealth_tools.privacy.audit.figure.draw_panels`."""
    started = time.perf_counter()
    cap = capture(
        job,
        data,
        batch=setting.batch,
        local_steps=setting.local_steps,
        protection=setting.protection,
        seed=seed,
    )
    n = len(cap.y)
    labels = None if n == 1 else cap.y  # batch 1: the label is inferred (iDLG); else given (Geiping et al.)
    recon = invert_image_update(
        model_builder(data),
        cap.received,
        cap.sent,
        n_images=n,
        image_shape=tuple(cap.x.shape[1:]),
        labels=labels,
        optimizer=str(job.local.get("optimizer", "sgd")),
        lr=cap.lr,
        local_steps=cap.local_steps,
        weight_decay=float(job.local.get("weight_decay", 0.0)),
        mask=cap.mask,
        config=config,
    )
    scores = score_reconstructions(cap.x, recon)
    pool = attacked_pool(data, setting.protection)
    found = reidentified(cap.x, recon[scores["matching"]], pool)
    generic = np.asarray(data.sites[0].arrays("val")[0]).mean(axis=0)  # no attacked patient in it
    baseline = score_reconstructions(cap.x, np.repeat(generic[None], n, axis=0))
    row = {
        **_common(job, setting, cap.noise_multiplier),
        "images": n,
        "ssim_mean": scores["ssim_mean"],
        "psnr_mean": scores["psnr_mean"],
        "ssim_max": float(np.max(scores["ssim"])),
        # what a generic chest X-ray (the mean validation image) already scores against these patients
        "baseline_ssim": baseline["ssim_mean"],
        "baseline_psnr": baseline["psnr_mean"],
        "reidentified": found,
        "pool": int(len(pool)),
        "recovered_fraction": None,
        "exact_rows": None,
        "attack": f"{config.method} ({config.iterations} iterations x {config.restarts} restarts)",
        "seconds": round(time.perf_counter() - started, 1),
    }
    if keep:
        augmented = ", augmented" if getattr(data.sites[0], "augment", False) else ""
        title = f"{job.local.get('optimizer', 'sgd')}{augmented}, batch {setting.batch}, "
        title += f"{setting.local_steps} step(s), {setting.protection}"
        title += f": SSIM {scores['ssim_mean']:.2f}"
        row["_images"] = (title, cap.x, recon, scores)
    return row


def attacked_pool(data: AuditData, protection: str) -> np.ndarray:
    """Every training input of the attacked site(s): site 0, or sites 0..k-1 under ``secure_sum<k>``."""
    n_sites = int(parse_protection(protection).get("secure_sum", 1))
    return np.concatenate([data.sites[i].arrays("train")[0] for i in range(n_sites)])


def _standardized(images: np.ndarray) -> np.ndarray:
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-12)


def reidentified(originals: np.ndarray, reconstructions: np.ndarray, pool: np.ndarray) -> float:
    """Share of reconstructions whose most correlated image in ``pool`` (every training image of the
    attacked sites) is the patient it was matched to: the server could pick that patient out.

    ``reconstructions[i]`` goes with ``originals[i]``; each original is in ``pool``.
    """
    pool_z = _standardized(pool)
    own = np.argmax(_standardized(originals) @ pool_z.T, axis=1)  # each original's own index
    guess = np.argmax(_standardized(reconstructions) @ pool_z.T, axis=1)
    return float(np.mean(own == guess))


def table_row(job: AuditJob, data: AuditData, setting: Setting, *, repeats: int = 20, seed: int = 0) -> dict:
    """Invert ``repeats`` captured table updates (each a fresh draw of patients); mean recovery."""
    started = time.perf_counter()
    rows = attacked_pool(data, setting.protection)
    fractions, exact, sigma = [], [], None
    for r in range(repeats):
        cap = capture(
            job,
            data,
            batch=setting.batch,
            local_steps=setting.local_steps,
            protection=setting.protection,
            seed=seed + r,
        )
        sigma = cap.noise_multiplier
        found = recovery(cap.received, cap.sent, rows)
        fractions.append(found["fraction"])
        exact.append(bool(found["exact"]))
    return {
        **_common(job, setting, sigma),
        "images": None,
        "ssim_mean": None,
        "psnr_mean": None,
        "ssim_max": None,
        "baseline_ssim": None,
        "baseline_psnr": None,
        "reidentified": None,
        "pool": int(len(rows)),
        "recovered_fraction": float(np.mean(fractions)),
        "exact_rows": float(np.mean(exact)),
        "attack": f"x = dW / db on the first layer, nearest training row ({repeats} draws)",
        "seconds": round(time.perf_counter() - started, 1),
    }


def _common(job: AuditJob, setting: Setting, sigma: float | None) -> dict:
    return {
        "data": job.data,
        "job": job.name,
        "batch": setting.batch,
        "local_steps": setting.local_steps,
        "optimizer": str(job.local.get("optimizer", "sgd")),
        "lr": float(job.lr),
        "protection": setting.protection,
        "noise_multiplier": sigma,
    }
