"""What a site sends for one round, captured through the site's own code, with patients the audit knows.

The audit must attack exactly what a fedhealth site would send, so a capture runs
:class:`fedhealth.client.runner.SiteRunner` (the object the FLARE ``SiteExecutor`` calls) with the job's
task, client algorithms and local settings (optimizer, weight decay, augmentation), from the job's
initial model (round 0: the persistor's weights, where inversion is easiest), on a site whose training
split is just the ``n`` patients under attack: with ``n_train == batch_size`` every local step sees
exactly those patients, so each reconstruction can be scored against its original.

Protections (:data:`PROTECTIONS`), applied on top of the job's other algorithms:

* ``none``: the job's algorithms without DP-SGD or top-k.
* ``dp_eps<ε>``: the executor's ``dp_sgd`` plug-in (Opacus, per-example clipping at the job's clip
  norm or 1.0) with the noise a real site would add: the noise multiplier the kit's own
  :func:`fedhealth.privacy.dp_sgd.noise_multiplier` gives for ε at δ = 0.1/N, sampling rate
  ``1/ceil(N/batch)`` and the job's rounds × steps for a site of N training patients (the capture site
  holds only the attacked batch, so its own accountant, at sampling rate 1, would add more noise and
  overstate the protection).
* ``secure_sum<k>``: k sites each send their update under encryption or secure aggregation; the server
  decrypts only the FedAvg mean, which is what is attacked (its originals are all k sites' patients).
* ``topk<p>``: the ``topk`` plug-in sending p % of each tensor's update entries (no error feedback in
  round 0); the attack sees which entries were sent.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from torch import nn

from fedhealth.client.base import WEIGHT_DIFF, RoundInput
from fedhealth.client.runner import SiteRunner
from fedhealth.models.state import to_numpy
from fedhealth.privacy import dp_sgd as dp_module
from fedhealth.tasks.base import Task
from fedhealth.tasks.imaging import ImageSite
from fedhealth.tasks.registry import build_task
from fedhealth.tasks.tabular import TabularSite
from fedhealth_tools.privacy.audit.job import AuditJob

PROTECTIONS = ("none", "dp_eps1", "dp_eps8", "secure_sum4", "topk1")
STRIPPED = ("dp_sgd", "topk")  # the job's own protections, replaced by the one under audit
Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class Capture:
    """What the server receives for one attacked batch, and the ground truth the audit scores against.

    Attributes:
        received: the weights the sites started from (the global model of round 0).
        sent: received + the update the server can read (for ``secure_sum``: the sites' mean update).
        x: the attacked patients' inputs as the site trains on them (images ``(n, C, H, W)`` or rows).
        y: their labels.
        mask: for top-k, which entries of each tensor were sent (``None``: all).
        lr: the learning rate the site used.
        local_steps: optimizer steps the site took on these patients.
        noise_multiplier: DP-SGD's σ (``None`` without DP).
    """

    received: Weights
    sent: Weights
    x: np.ndarray
    y: np.ndarray
    mask: dict[str, np.ndarray] | None
    lr: float
    local_steps: int
    noise_multiplier: float | None = None


@dataclass
class AuditData:
    """A job's task, its sites (full training splits) and the job's initial model."""

    task: Task
    sites: list
    initial: Weights

    def subset(self, site_index: int, rows: np.ndarray) -> ImageSite | TabularSite:
        """Site ``site_index`` with only ``rows`` of its training split (the patients under attack)."""
        return subset_site(self.sites[site_index], np.asarray(rows))


def parse_protection(protection: str) -> dict[str, float]:
    """The parts of a protection: ``dp_eps8`` -> ``{"dp": 8.0}``, ``none`` -> ``{}``,
    ``secure_sum4+dp_eps1`` -> ``{"secure_sum": 4.0, "dp": 1.0}``.

    Raises:
        ValueError: an unknown part (the message lists the forms), or one kind twice.
    """
    if protection == "none":
        return {}
    found: dict[str, float] = {}
    for part in protection.split("+"):
        for prefix, kind in (("dp_eps", "dp"), ("secure_sum", "secure_sum"), ("topk", "topk")):
            if part.startswith(prefix):
                try:
                    value = float(part[len(prefix) :])
                except ValueError:
                    break
                if value > 0 and math.isfinite(value) and kind not in found:
                    found[kind] = value
                    break
        else:
            raise ValueError(
                f"unknown protection {part!r} in {protection!r}; use none, or dp_eps<ε>, secure_sum<k> and "
                "topk<percent> joined by +"
            )
        if kind not in found:
            raise ValueError(
                f"protection {protection!r}: {part!r} is not a positive number or repeats a kind"
            )
    return found


def subset_site(site: ImageSite | TabularSite, rows: np.ndarray) -> ImageSite | TabularSite:
    """``site`` with only ``rows`` of its training split; the other splits unchanged."""
    if isinstance(site, ImageSite):
        x, y = site.arrays("train")
        arrays = {s: site.arrays(s) for s in ("val", "test")}
        arrays["train"] = (x[rows], y[rows])
        return ImageSite.from_arrays(
            site.name, arrays, site.spec, augment=site.augment, operating_point=site.operating_point
        )
    from fedhealth_tools.federation.ehr import take

    small = TabularSite(site.name, take(site.train_table, rows), site.test_table, site.dictionary)
    small.set_schema(site.schema, save=False)
    return small


def load_audit_data(job: AuditJob, *, limit: int | None = None, seed: int = 0) -> AuditData:
    """The job's task over the audit's data: PneumoniaMNIST in 4 sites (``dicom``) or the 4 heart hospitals.

    ``limit``: images per split for PneumoniaMNIST (``None``: all 5,856).
    """
    task = build_task(job.task, dict(job.task_args))
    if job.data == "cxr":
        from fedhealth_tools.privacy.utility_curve_cxr import cxr_sites

        base = cxr_sites(limit=limit, seed=seed)
        sites = [
            ImageSite.from_arrays(
                s.name,
                {split: s.arrays(split) for split in ("train", "val", "test")},
                task.spec,
                augment=task.augment,
                operating_point=task.operating_point_config(),
            )
            for s in base
        ]
    else:
        sites = heart_sites(job, task)
    model = task.build_model(sites[0], **_task_model_args(job))
    return AuditData(task=task, sites=sites, initial=to_numpy(model))


def heart_sites(job: AuditJob, task: Task) -> list[TabularSite]:
    """The four hospitals' exports read with their mappings and aligned as the job's server aligns them."""
    from fedhealth.ehr.mapping import SiteMapping
    from fedhealth_tools.data.heart_canonical import canonical_sites
    from fedhealth_tools.data.heart_dialects import export_site
    from fedhealth_tools.federation.ehr import align_sites, job_alignment_policy

    sites = []
    for name, split in canonical_sites().items():
        tables, mapping = export_site(split)
        sites.append(
            task.site_from_frames(name, tables["train"], tables["test"], SiteMapping.from_dict(mapping))
        )
    align_sites(sites, job_alignment_policy(job.server, label=job.name))
    return sites


def _task_model_args(job: AuditJob) -> dict:
    if job.data == "cxr":
        return {}  # the imaging task builds the persistor's model from its own arguments
    return {k: v for k, v in job.model_args.items() if k in ("arch", "hidden", "seed")}


def protected_algorithms(job: AuditJob, protection: str) -> list[dict]:
    """The job's client algorithms with its own DP/top-k replaced by ``protection``'s."""
    parts = parse_protection(protection)
    base = [copy.deepcopy(a) for a in job.algorithms if a["name"] not in STRIPPED]
    if "dp" in parts:
        own = job.algorithm("dp_sgd")
        clip = float(own["args"].get("max_grad_norm", 1.0)) if own else 1.0
        args = {"target_epsilon": parts["dp"], "max_grad_norm": clip, "allow_small_batch": True}
        base.append({"name": "dp_sgd", "args": args})
    if "topk" in parts:
        base.append({"name": "topk", "args": {"k_fraction": parts["topk"] / 100.0, "error_feedback": False}})
    return base


def realistic_sigma(job: AuditJob, *, epsilon: float, n_site: int, batch: int) -> float:
    """σ a site of ``n_site`` training patients would use for ε with this batch over the job's rounds."""
    local = dict(job.local)
    steps = int(local.get("local_steps") or 0) or int(local.get("local_epochs", 1)) * math.ceil(
        n_site / batch
    )
    sample_rate = 1.0 / math.ceil(n_site / batch)
    return dp_module.noise_multiplier(epsilon, 0.1 / n_site, sample_rate, job.rounds * steps, "rdp")


@contextmanager
def _sigma(value: float | None):
    """Within the block, the kit's DP-SGD trainer adds the noise ``value`` (``None``: unchanged).

    Its budget check is lifted too: the capture site's own accountant (sampling rate 1) would count
    this one round as a whole job's ε; the real site of N patients spends a fraction of it.
    """
    originals = dp_module.noise_multiplier, dp_module.check_budget
    if value is not None:
        dp_module.noise_multiplier = lambda *args, **kwargs: value  # type: ignore[assignment]
        dp_module.check_budget = lambda *args, **kwargs: 0.0  # type: ignore[assignment]
    try:
        yield
    finally:
        dp_module.noise_multiplier, dp_module.check_budget = originals


def run_site_round(
    job: AuditJob,
    task: Task,
    site,
    weights: Mapping[str, np.ndarray],
    *,
    algorithms: Sequence[Mapping],
    local_steps: int,
    seed: int = 0,
    sigma: float | None = None,
) -> tuple[Weights, int]:
    """One round of the site's own runner on ``site``; returns the weights it would send and its steps."""
    batch = site.n_train
    local = {**job.local, "batch_size": batch, "local_steps": int(local_steps)}
    runner = SiteRunner(task, site, algorithms=list(algorithms), local=local, seed=seed, dp_seed=seed)
    with _sigma(sigma):
        state = runner.run_round(RoundInput(dict(weights), job.lr, 0, job.rounds, {}))
    sent = {k: np.asarray(v) for k, v in state.update.items()}
    if state.kind == WEIGHT_DIFF:
        sent = {k: np.asarray(weights[k]) + v.astype(np.asarray(weights[k]).dtype) for k, v in sent.items()}
    return sent, int(state.stats["steps"])


def capture(
    job: AuditJob,
    data: AuditData,
    *,
    batch: int,
    local_steps: int,
    protection: str,
    seed: int = 0,
) -> Capture:
    """What the server sees for ``batch`` patients of site 0 (of sites 0..k-1 under ``secure_sum<k>``).
    The attacked patients are a random draw of ``batch`` training rows per site (``seed``).
    """
    parts = parse_protection(protection)
    rng = np.random.default_rng(seed)
    n_sites = int(parts.get("secure_sum", 1))
    if n_sites > len(data.sites):
        raise ValueError(f"{protection} needs {n_sites} sites; the audit data has {len(data.sites)}")
    algorithms = protected_algorithms(job, protection)
    deltas, xs, ys, steps, sigma = [], [], [], local_steps, None
    for index in range(n_sites):
        full = data.sites[index]
        rows = np.sort(rng.choice(full.n_train, size=batch, replace=False))
        site = data.subset(index, rows)
        if "dp" in parts:
            sigma = realistic_sigma(job, epsilon=parts["dp"], n_site=full.n_train, batch=batch)
        sent, steps = run_site_round(
            job,
            data.task,
            site,
            data.initial,
            algorithms=algorithms,
            local_steps=local_steps,
            seed=seed,
            sigma=sigma,
        )
        deltas.append({k: sent[k].astype(np.float64) - data.initial[k].astype(np.float64) for k in sent})
        x, y = site.arrays("train")
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    mean = {k: np.mean([d[k] for d in deltas], axis=0) for k in deltas[0]}
    sent = {k: (data.initial[k].astype(np.float64) + mean[k]).astype(np.float32) for k in mean}
    mask = {k: deltas[0][k] != 0 for k in mean} if "topk" in parts and n_sites == 1 else None
    return Capture(
        received={k: np.asarray(v, np.float32) for k, v in data.initial.items()},
        sent=sent,
        x=np.concatenate(xs),
        y=np.concatenate(ys),
        mask=mask,
        lr=float(job.lr),
        local_steps=int(steps),
        noise_multiplier=sigma,
    )


def model_builder(data: AuditData) -> Callable[[], nn.Module]:
    """A callable that builds the job's architecture for the attack (the weights are the attacker's)."""
    site = data.sites[0]
    return lambda: data.task.model_from_weights(data.initial, site)
