"""Membership inference on the final global model of a job's federation, under each protection.

The federation is the job's own: its task, client algorithms, local settings, rounds and learning rate
in the in-process loop (:func:`fedhealth_tools.federation.loop.run_loop`, the sites' own
:class:`~fedhealth.client.runner.SiteRunner`). Members are the sites' training patients, non-members
held-out patients drawn like them (:func:`holdout_split`). Two attacks: the loss threshold (Yeom et
al. 2018) and LiRA (Carlini et al. 2022), whose shadow federations are trained exactly like the target
on random halves of all candidates. Secure aggregation and encryption do not change the model the
federation releases, so under ``secure_sum<k>`` the figures are those of ``none`` (marked ``same_model_as``).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Sequence

import numpy as np
from torch import nn

from fedhealth.tasks.imaging import ImageSite
from fedhealth.tasks.tabular import TabularSite, TabularTask
from fedhealth_tools.federation.loop import run_loop
from fedhealth_tools.privacy.attacks.membership import (
    lira_auc,
    loss_threshold_auc,
    per_example_losses,
    tpr_at_fpr,
)
from fedhealth_tools.privacy.audit.capture import AuditData, protected_algorithms
from fedhealth_tools.privacy.audit.job import AuditJob


def loop_task(task):
    """The task for the in-process loop: a tabular task whose sites are aligned has no server steps left."""
    if isinstance(task, TabularTask):
        from fedhealth_tools.federation.ehr import PrealignedTabularTask

        return PrealignedTabularTask(**{f.name: getattr(task, f.name) for f in dataclasses.fields(task)})
    return task


def released_model_protection(protection: str) -> str:
    """The protection that shapes the released model: ``protection`` without ``secure_sum<k>``."""
    parts = [p for p in protection.split("+") if not p.startswith("secure_sum")]
    return "+".join(parts) or "none"


def federate(job: AuditJob, data: AuditData, sites: Sequence, protection: str, *, seed: int = 0) -> nn.Module:
    """The job's federation over ``sites`` under ``protection``; its final global model."""
    algorithms = protected_algorithms(job, protection)
    for a in algorithms:
        a.get("args", {}).pop("allow_small_batch", None)  # full sites train at the job's own batch
    model = data.task.model_from_weights(data.initial, sites[0])
    result = run_loop(
        loop_task(data.task),
        sites,
        model,
        rounds=job.rounds,
        lr=job.lr,
        algorithms=algorithms,
        local=dict(job.local),
        seeds=[seed] * len(sites),
        shuffle_seeds=[seed * 100 + i for i in range(len(sites))],
        dp_seeds=[seed * 100 + i for i in range(len(sites))],
    )
    return result.model


def holdout_split(site) -> str:
    """The split whose patients are the non-members: drawn like the training patients.

    Images: ``val`` (MedMNIST's validation split comes from the training pool; its test split is
    another acquisition, and a loss threshold would then measure that shift, not membership).
    Tables: ``test`` (each hospital's random held-out share).
    """
    return "val" if isinstance(site, ImageSite) else "test"


def candidates(sites: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every site's training rows (members) then its held-out rows: ``x, y, is_member, site_index``."""
    xs, ys, member, where = [], [], [], []
    for i, site in enumerate(sites):
        for split, is_member in (("train", True), (holdout_split(site), False)):
            x, y = site.arrays(split)
            xs.append(np.asarray(x))
            ys.append(np.asarray(y).ravel())
            member.append(np.full(len(y), is_member))
            where.append(np.full(len(y), i))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(member), np.concatenate(where)


def shadow_sites(sites: Sequence, keep: np.ndarray) -> list:
    """The sites training on the candidates ``keep`` selects (train then test rows, as :func:`candidates`)."""
    out, start = [], 0
    for site in sites:
        n_train, n_test = len(site.arrays("train")[1]), len(site.arrays(holdout_split(site))[1])
        pick_train = np.flatnonzero(keep[start : start + n_train])
        pick_test = np.flatnonzero(keep[start + n_train : start + n_train + n_test])
        start += n_train + n_test
        out.append(_with_training(site, pick_train, pick_test))
    return out


def _with_training(site, pick_train: np.ndarray, pick_test: np.ndarray):
    if isinstance(site, ImageSite):
        (xt, yt), (xs, ys) = site.arrays("train"), site.arrays(holdout_split(site))
        arrays = {s: site.arrays(s) for s in ("val", "test")}
        arrays["train"] = (
            np.concatenate([xt[pick_train], xs[pick_test]]),
            np.concatenate([yt[pick_train], ys[pick_test]]),
        )
        return ImageSite.from_arrays(
            site.name, arrays, site.spec, augment=site.augment, operating_point=site.operating_point
        )
    from fedhealth_tools.federation.ehr import concat, take

    train = concat(
        [take(site.train_table, pick_train), take(site.test_table, pick_test)], label=f"{site.name}/shadow"
    )
    shadow = TabularSite(site.name, train, site.test_table, site.dictionary)
    shadow.set_schema(site.schema, save=False)
    return shadow


def membership_rows(
    job: AuditJob,
    data: AuditData,
    protections: Sequence[str],
    *,
    lira_shadows: int = 0,
    lira_protections: Sequence[str] = (),
    seed: int = 0,
) -> list[dict]:
    """Loss-threshold AUC for every protection; LiRA for ``lira_protections`` (``lira_shadows`` shadows)."""
    x, y, is_member, _ = candidates(data.sites)
    rows, trained = [], {}
    for protection in protections:
        base = released_model_protection(protection)
        started = time.perf_counter()
        if base not in trained:
            trained[base] = federate(job, data, data.sites, base, seed=seed)
        model = trained[base]
        losses = per_example_losses(model, x, y)
        common = {
            "data": job.data,
            "job": job.name,
            "protection": protection,
            "members": int(is_member.sum()),
            "nonmembers": int((~is_member).sum()),
        }
        if base != protection:
            common["same_model_as"] = base
        rows.append(
            {
                **common,
                "attack": "loss_threshold",
                "auc": loss_threshold_auc(losses[is_member], losses[~is_member]),
                "tpr_at_1pct_fpr": tpr_at_fpr(-losses[is_member], -losses[~is_member]),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        if protection in lira_protections and lira_shadows >= 2:
            started = time.perf_counter()
            counter = itertools.count(1)  # each shadow federation its own seed

            def train_shadow(keep: np.ndarray, base: str = base, counter=counter) -> nn.Module:
                return federate(job, data, shadow_sites(data.sites, keep), base, seed=seed + next(counter))

            found = lira_auc(model, x, y, is_member, train_shadow, lira_shadows, seed)
            rows.append(
                {
                    **common,
                    "attack": "lira",
                    "auc": found["auc"],
                    "tpr_at_1pct_fpr": found["tpr_at_1pct_fpr"],
                    "offline_auc": found.get("offline_auc"),
                    "shadows": lira_shadows,
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
    return rows
