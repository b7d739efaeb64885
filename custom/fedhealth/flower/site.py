"""The site and server steps of a kit job, FLARE-free: what the Flower apps call, and nothing of Flower.

:class:`FlowerSite` is the site side. It loads the site's data with the job's task from the site's own
folder (``local/fedhealth_site.json`` names its data, as under FLARE) and runs each round through
:class:`~fedhealth.client.runner.SiteRunner`, the object the FLARE ``SiteExecutor`` drives, with the
job's client algorithms, seed and local settings. Its only state between rounds, the shuffling
generator and the aligned schema, can be saved and restored (:meth:`FlowerSite.state`), so a site
whose process restarts between messages (Flower's simulation workers, a SuperNode's app processes)
continues exactly as one long-lived FLARE client does.

The server side is :func:`initial_weights` (the persistor's model, seeded; a tabular model's width
from the aligned schema), :func:`align_schema` (the alignment controller's server step) and
:func:`aggregate` (:class:`~fedhealth.aggregators.robust_aggregator.RobustAggregator`'s arithmetic: updates
against the global model in float64, the norm screen, the job's rule weighted by training rows, the
result in the global model's dtypes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedhealth import constants as C
from fedhealth.client.base import RoundInput
from fedhealth.client.runner import SiteRunner
from fedhealth.data.site_data import site_settings
from fedhealth.ehr.alignment import align
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.ehr.profile import check_profile
from fedhealth.flower.job import JobSettings
from fedhealth.models.image_model import ImageModel
from fedhealth.models.tabular import TabularNet
from fedhealth.tasks.base import SiteContext
from fedhealth.tasks.registry import build_task
from fedhealth.training.metrics import clean_metrics
from fedhealth.training.robust import aggregate_updates, norm_outliers, update_norm, validate_update
from fedhealth.training.schedule import lr_for_round

Weights = dict[str, np.ndarray]
ENV_NAME, ENV_ROOT = "FEDHEALTH_SITE_NAME", "FEDHEALTH_SITE_ROOT"
FLARE_APP_PREFIX = "app_"  # FLARE runs a job's app in <site root>/<job id>/app_<site>


def site_location(
    node_config: Mapping[str, Any],
    run_config: Mapping[str, Any],
    *,
    cwd: Path,
    environ: Mapping[str, str],
) -> tuple[str, Path]:
    """Which site this client is and where its folder is: ``(name, site root)``.

    In order: the node config's ``site-name`` and ``site-root`` (a SuperNode's own setting); the
    environment's ``FEDHEALTH_SITE_NAME`` and ``FEDHEALTH_SITE_ROOT``; a FLARE site running the app
    through FLARE's Flower integration (the working folder is ``<site root>/<job>/app_<site>`` and
    the site root holds ``local/``); the simulation's ``sites-file`` entry ``partition-id``.

    Raises:
        ValueError: none of these names the site.
    """
    if node_config.get("site-name") and node_config.get("site-root"):
        return str(node_config["site-name"]), Path(str(node_config["site-root"]))
    if environ.get(ENV_NAME) and environ.get(ENV_ROOT):
        return environ[ENV_NAME], Path(environ[ENV_ROOT])
    cwd = Path(cwd)
    if cwd.name.startswith(FLARE_APP_PREFIX) and (cwd.parents[1] / "local").is_dir():
        return cwd.name[len(FLARE_APP_PREFIX) :], cwd.parents[1]
    sites_file = run_config.get("sites-file")
    if sites_file and "partition-id" in node_config:
        sites = json.loads(Path(str(sites_file)).read_text())
        entry = sites[int(node_config["partition-id"])]
        return str(entry["name"]), Path(str(entry["root"]))
    raise ValueError(
        "this client names no site: give the SuperNode node config 'site-name' and 'site-root' "
        f"(or the environment's {ENV_NAME} and {ENV_ROOT}; in simulation, the run config 'sites-file')."
    )


@dataclass
class TrainResult:
    """A site's round: its weights, FedAvg weight (training rows), steps, released metrics, seconds."""

    weights: Weights
    n_train: int
    steps: int
    metrics: dict[str, Any]
    seconds: float


class FlowerSite:
    """One site of a kit job for a runtime other than FLARE.

    Args:
        job: the job's settings (:func:`fedhealth.flower.job.read_job`).
        name: the site's name.
        site_root: the site's folder; its ``local/fedhealth_site.json`` names ``data_root``.
        run_dir: the job's run folder at the site (``None``: nothing is written).

    Raises:
        SiteDataError, ValueError: the site's data or settings are unusable (the kit's messages).
    """

    def __init__(self, job: JobSettings, name: str, site_root: Path, run_dir: Path | None = None) -> None:
        self.job = job
        self.name = name
        task = build_task(job.task, job.task_args)
        settings = site_settings(Path(site_root))
        self.site = task.load_site(SiteContext(name, Path(site_root), settings, run_dir))
        self.runner = SiteRunner(
            task,
            self.site,
            algorithms=job.algorithms,
            local=job.local,
            seed=job.seed,
            settings=settings,
            run_dir=run_dir,
            min_cell=job.min_cell,
        )
        self.schema: dict | None = None

    # ------------------------------------------------------------------ state between messages
    def state(self) -> dict[str, Any]:
        """What a restarted process needs to continue: the shuffling generator and the schema."""
        return {"generator": self.runner.generator.get_state().numpy().tobytes(), "schema": self.schema}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state` (missing parts stay as loaded)."""
        if state.get("schema") is not None and self.schema != state["schema"]:
            self.set_schema(state["schema"])
        blob = state.get("generator")
        if blob:
            self.runner.generator.set_state(torch.frombuffer(bytearray(blob), dtype=torch.uint8).clone())

    # ------------------------------------------------------------------ the job's steps
    def profile(self, min_cell: int) -> dict:
        """The ``ehr_profile`` step: small-cell-suppressed counts of the site's training table."""
        return self.site.extra_tasks()[C.TASK_EHR_PROFILE]({"min_cell": min_cell})

    def set_schema(self, schema: Mapping[str, Any]) -> None:
        """The ``set_schema`` step: encode the site's table with the server's aligned schema."""
        self.site.extra_tasks()[C.TASK_SET_SCHEMA](dict(schema))
        self.schema = dict(schema)

    def train(self, weights: Mapping[str, np.ndarray], *, round_index: int, num_rounds: int) -> TrainResult:
        """One round from the global ``weights`` at the job's learning rate of ``round_index``."""
        started = time.perf_counter()
        lr = lr_for_round(self.job.lr, self.job.gamma, round_index)
        rnd = RoundInput({k: np.asarray(v) for k, v in weights.items()}, lr, round_index, num_rounds)
        state = self.runner.run_round(rnd)
        return TrainResult(
            weights=dict(state.update),
            n_train=int(self.site.n_train),
            steps=int(state.stats[C.M_STEPS]),
            metrics=clean_metrics(state.metrics),
            seconds=time.perf_counter() - started,
        )

    def validate(self, weights: Mapping[str, np.ndarray]) -> dict:
        """The ``validate`` task on the site's test split (the kit's metrics, small cells withheld)."""
        return clean_metrics(self.runner.validate(weights, n_bootstrap=self.job.n_bootstrap))


# ---------------------------------------------------------------------- server side
def align_schema(job: JobSettings, profiles: Mapping[str, Any]) -> tuple[dict, dict]:
    """The alignment controller's server step: ``(schema, what the sites get)``.

    The sites get the schema without its per-site counts (``sites``), as under FLARE.

    Raises:
        ValueError: the job does not align, a profile is unusable, or fewer sites answered than the
            alignment's ``min_clients``.
    """
    if job.alignment is None:
        raise ValueError(f"job {job.name} has no feature alignment step.")
    dictionary = DataDictionary.from_dict(job.task_args.get("dictionary") or {})
    checked = {site: check_profile(profile, dictionary) for site, profile in profiles.items()}
    if len(checked) < job.alignment_min_clients:
        raise ValueError(
            f"the alignment needs {job.alignment_min_clients} sites' profiles, {len(checked)} answered."
        )
    schema = align(checked, dictionary, job.alignment)
    return schema, {k: v for k, v in schema.items() if k != "sites"}


def initial_weights(job: JobSettings, schema: Mapping[str, Any] | None = None) -> Weights:
    """The job's initial global model, as its persistor builds it (arguments seeded by the job).

    Raises:
        ValueError: a tabular model without a width and no aligned schema.
    """
    kind, args = job.model
    if kind == "tabular":
        args = dict(args)
        if "in_features" not in args:
            if schema is None:
                raise ValueError(f"job {job.name}: the tabular model's width comes from the aligned schema.")
            args["in_features"] = len(schema["columns"])
        model: torch.nn.Module = TabularNet(**args)
    else:
        model = ImageModel(**args)
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def aggregate(
    global_weights: Mapping[str, np.ndarray],
    results: Mapping[str, tuple[Mapping[str, np.ndarray], float]],
    aggregation: Mapping[str, Any],
) -> tuple[Weights, dict[str, str]]:
    """The robust aggregator's round: ``(new global weights, {site: why its update was left out})``.

    Args:
        global_weights: the round's global model.
        results: ``{site: (weights, FedAvg weight)}``.
        aggregation: the job's ``rule``, ``trim_fraction``, ``clip_norm``, ``max_norm_ratio``.
    """
    rejected: dict[str, str] = {}
    updates: dict[str, dict[str, np.ndarray]] = {}
    for site, (weights, _) in results.items():
        reason = validate_update(dict(weights), reference=dict(global_weights))
        if reason is not None:
            rejected[site] = reason
            continue
        updates[site] = {k: np.subtract(v, global_weights[k], dtype="float64") for k, v in weights.items()}
    ratio = aggregation.get("max_norm_ratio", 10.0)
    if ratio is not None:
        norms = {site: update_norm(u) for site, u in updates.items()}
        for site, reason in norm_outliers(norms, max_ratio=float(ratio)).items():
            rejected[site] = reason
            del updates[site]
    sites = sorted(updates)
    if not sites:
        return {k: np.asarray(v).copy() for k, v in global_weights.items()}, rejected
    combined = aggregate_updates(
        [updates[s] for s in sites],
        [float(results[s][1]) for s in sites],
        rule=str(aggregation.get("rule", "mean")),
        trim_fraction=float(aggregation.get("trim_fraction", 0.1)),
        clip_norm=aggregation.get("clip_norm"),
    )
    out: Weights = {}
    for name, value in global_weights.items():
        dtype = np.asarray(value).dtype
        new = np.asarray(np.asarray(value, dtype="float64") + combined[name])
        out[name] = (np.rint(new) if np.issubdtype(dtype, np.integer) else new).astype(dtype)
    return out, rejected
