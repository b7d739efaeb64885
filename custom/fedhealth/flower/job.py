"""A kit job folder read as plain settings, for a runtime other than FLARE (the Flower apps).

Everything a federation needs is read from the job's own config files at run time, never retyped:
the site executor's arguments (task, task arguments, client algorithms, batch size, local steps and
epochs, optimizer, weight decay, seed, bootstrap resamples, minimum cell), the server's rounds and
minimum sites (``ScatterAndGather``), the learning-rate schedule
(:class:`~fedhealth.shareables.scheduled_generator.ScheduledShareableGenerator`: ``lr * gamma ** round``),
the aggregation rule (:class:`~fedhealth.aggregators.robust_aggregator.RobustAggregator`), the
initial model (the persistor's arguments) and the feature alignment policy
(:class:`~fedhealth.workflows.ehr_alignment_controller.EhrAlignmentController`), if the job aligns.
Components are recognised by class path; nothing here imports FLARE.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fedhealth.ehr.alignment import AlignmentPolicy
from fedhealth.privacy.small_cells import DEFAULT_MIN_CELL

EXECUTOR = "fedhealth.executors.site_executor.SiteExecutor"
GENERATOR = "fedhealth.shareables.scheduled_generator.ScheduledShareableGenerator"
AGGREGATOR = "fedhealth.aggregators.robust_aggregator.RobustAggregator"
SCATTER_AND_GATHER = "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather"
ALIGNMENT = "fedhealth.workflows.ehr_alignment_controller.EhrAlignmentController"
TABULAR_PERSISTOR = "fedhealth.persistors.tabular_model_persistor.TabularModelPersistor"
PT_PERSISTOR = "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor"
IMAGE_MODEL = "fedhealth.models.image_model.ImageModel"
LOCAL_KEYS = ("batch_size", "local_steps", "local_epochs", "optimizer", "weight_decay")
AGGREGATOR_KEYS = ("rule", "trim_fraction", "clip_norm", "max_norm_ratio")


@dataclass(frozen=True)
class JobSettings:
    """One kit job as data: what the sites train and what the server does.

    Attributes:
        name: the job folder's name (``heart_fedprox``).
        task, task_args: the site task (:mod:`fedhealth.tasks.registry`) and its arguments.
        algorithms: the client algorithms (``[{"name": "fedprox", "args": {"mu": 1.0}}]``).
        local: ``batch_size``, ``local_steps``, ``local_epochs``, ``optimizer``, ``weight_decay``.
        seed, n_bootstrap, min_cell: the executor's seed, bootstrap resamples and minimum cell.
        rounds, min_clients: ``ScatterAndGather``'s ``num_rounds`` and ``min_clients``.
        lr, gamma: the learning-rate schedule of round ``r``: ``lr * gamma ** r``.
        aggregation: the robust aggregator's ``rule``, ``trim_fraction``, ``clip_norm``, ``max_norm_ratio``.
        model: ``("tabular", model_args)`` (width from the aligned schema) or ``("image", args)``.
        alignment: the feature-alignment policy, or ``None`` when the job does not align.
        alignment_min_clients: sites whose profile the alignment needs.
    """

    name: str
    task: str
    task_args: dict[str, Any]
    algorithms: list[dict[str, Any]]
    local: dict[str, Any]
    seed: int
    n_bootstrap: int
    min_cell: int
    rounds: int
    min_clients: int
    lr: float
    gamma: float
    aggregation: dict[str, Any]
    model: tuple[str, dict[str, Any]]
    alignment: AlignmentPolicy | None = None
    alignment_min_clients: int = 1

    @property
    def mu(self) -> float:
        """FedProx's ``mu`` (0 when the job trains plain FedAvg)."""
        for spec in self.algorithms:
            if spec.get("name") == "fedprox":
                return float((spec.get("args") or {}).get("mu", 0.0))
        return 0.0


def _read(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path} is missing: a kit job folder has app/config/{path.name}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON (line {exc.lineno}).") from exc


def _component(items: list[Mapping], path: str, *, where: str, required: bool = True) -> dict | None:
    found = [dict(item.get("args") or {}) for item in items if item.get("path") == path]
    if len(found) > 1 or (required and not found):
        raise ValueError(f"{where} names {len(found)} {path.rsplit('.', 1)[-1]}; expected exactly one.")
    return found[0] if found else None


def _executor_args(client: Mapping, where: str) -> dict:
    found = [
        dict(e["executor"].get("args") or {})
        for e in client.get("executors", [])
        if e.get("executor", {}).get("path") == EXECUTOR
    ]
    if len(found) != 1:
        raise ValueError(f"{where} names {len(found)} SiteExecutor(s); the Flower apps need exactly one.")
    return found[0]


def _model(components: list[Mapping], where: str) -> tuple[str, dict[str, Any]]:
    tabular = _component(components, TABULAR_PERSISTOR, where=where, required=False)
    if tabular is not None:
        return "tabular", dict(tabular.get("model_args") or {})
    pt = _component(components, PT_PERSISTOR, where=where, required=False)
    model = (pt or {}).get("model")
    if isinstance(model, Mapping) and model.get("path") == IMAGE_MODEL:
        return "image", dict(model.get("args") or {})
    raise ValueError(f"{where}: no TabularModelPersistor, nor a PTFileModelPersistor of an ImageModel.")


def read_job(job_folder: Path) -> JobSettings:
    """The settings of the kit job in ``job_folder`` (``jobs/heart_fedprox``).

    Raises:
        ValueError: a config file is missing or not JSON, or a component the Flower apps need is
            missing or named twice (the message names the file and the class).
    """
    folder = Path(job_folder)
    config = folder / "app" / "config"
    client_file, server_file = config / "config_fed_client.json", config / "config_fed_server.json"
    client, server = _read(client_file), _read(server_file)
    args = _executor_args(client, str(client_file))
    components, workflows = server.get("components", []), server.get("workflows", [])
    generator = _component(components, GENERATOR, where=str(server_file))
    aggregator = _component(components, AGGREGATOR, where=str(server_file))
    sag = _component(workflows, SCATTER_AND_GATHER, where=str(server_file))
    alignment = _component(workflows, ALIGNMENT, where=str(server_file), required=False)
    policy = None
    if alignment is not None:
        names = {f.name for f in fields(AlignmentPolicy)}
        policy = AlignmentPolicy(**{k: v for k, v in alignment.items() if k in names})
    algorithms = [{"name": a} if isinstance(a, str) else dict(a) for a in args.get("algorithms") or []]
    return JobSettings(
        name=folder.resolve().name,
        task=str(args["task"]),
        task_args=dict(args.get("task_args") or {}),
        algorithms=algorithms,
        local={k: args[k] for k in LOCAL_KEYS if k in args},
        seed=int(args.get("seed", 0)),
        n_bootstrap=int(args.get("n_bootstrap", 1000)),
        min_cell=int(args.get("min_cell", DEFAULT_MIN_CELL)),
        rounds=int(sag.get("num_rounds", 5)),
        min_clients=int(sag.get("min_clients", 1)),
        lr=float(generator["lr"]),
        gamma=float(generator.get("gamma", 1.0)),
        aggregation={k: aggregator[k] for k in AGGREGATOR_KEYS if k in aggregator},
        model=_model(components, str(server_file)),
        alignment=policy,
        alignment_min_clients=int((alignment or {}).get("min_clients", 1)),
    )


def kit_job_folder(name: str) -> Path:
    """The kit's own ``jobs/<name>`` next to this source tree (a checkout or an editable install).

    Raises:
        ValueError: the folder is not there (an installed wheel ships no jobs): pass the job folder.
    """
    folder = Path(__file__).resolve().parents[3] / "jobs" / name
    if not (folder / "app" / "config").is_dir():
        raise ValueError(
            f"the kit's job folder jobs/{name} is not next to this installation ({folder}); "
            "give the job folder's path in the run config key 'job-dir'."
        )
    return folder
