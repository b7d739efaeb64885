"""The settings of a job that decide what its sites send: task, client algorithms, batch, steps, lr, filters.

Read from the job folder an admin submits (``app*/config/config_fed_client.json`` and
``config_fed_server.json``), not from a spec, so the audit sees what would run. Nothing here imports
FLARE or reads patient data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fedhealth.compression.config import largest_topk_share
from fedhealth.reports.attack_settings import data_kind, encrypts_updates

EXECUTOR = "fedhealth.executors.site_executor.SiteExecutor"
SCATTER_AND_GATHER = "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather"
SECAGG_CONTROLLER = "fedhealth.workflows.secagg_controller.SecAggController"  # FedAvg under SecAgg+
LOCAL_KEYS = ("batch_size", "local_steps", "local_epochs", "optimizer", "weight_decay")


@dataclass(frozen=True)
class AuditJob:
    """One job's settings as its sites and server would use them.

    Attributes:
        name: the job folder's name.
        task: the task name (``dicom``, ``tabular``, ``heart``).
        task_args: the task's arguments as the job gives them.
        algorithms: the client algorithms (``{"name", "args"}``).
        local: ``batch_size``, ``local_steps``, ``local_epochs``, ``optimizer``, ``weight_decay``.
        lr: the learning rate the server sends in round 0 (its scheduled generator's ``lr``).
        rounds: ``ScatterAndGather``'s ``num_rounds``.
        model_args: the persistor's model arguments (``model.args`` or ``model_args``).
        encrypted: the sites encrypt (HE) or mask (SecAgg+) their updates: the server sees only the sum.
        server: the server config (the alignment policy of a tabular job).
    """

    name: str
    task: str
    task_args: Mapping[str, object]
    algorithms: list[dict]
    local: Mapping[str, object]
    lr: float
    rounds: int
    model_args: Mapping[str, object] = field(default_factory=dict)
    encrypted: bool = False
    server: Mapping[str, object] = field(default_factory=dict)

    @property
    def data(self) -> str:
        """``cxr`` or ``heart``: which audited data this job's task trains on."""
        kind = data_kind(self.task)  # the run report's own mapping
        if kind is None:
            raise ValueError(f"job {self.name}: the audit knows imaging and tabular tasks, not {self.task!r}")
        return kind

    def algorithm(self, name: str) -> dict | None:
        """The job's client algorithm ``name`` (``{"name", "args"}``), if it uses it."""
        return next((a for a in self.algorithms if a["name"] == name), None)

    @property
    def protection(self) -> str:
        """What the job itself does against an honest-but-curious server, in the audit's words.

        ``dp_eps<ε>`` (DP-SGD at each site), ``secure_sum`` (encrypted or masked aggregation: the server
        sees the sum), ``topk<k %>`` (sparsified updates), ``none``; joined by ``+`` when several apply.
        """
        parts = []
        dp = self.algorithm("dp_sgd")
        if dp is not None:
            parts.append(f"dp_eps{float(dp['args']['target_epsilon']):g}")
        if self.encrypted:
            parts.append("secure_sum")
        topk = self.algorithm("topk")
        if topk is not None:
            parts.append(f"topk{100 * largest_topk_share(topk['args']):g}")  # a schedule's largest share
        return "+".join(parts) or "none"

    @classmethod
    def load(cls, job_dir: Path) -> AuditJob:
        """The job in folder ``job_dir``.

        Raises:
            ValueError: no client config with the kit's site executor, several, or no
                ``ScatterAndGather`` / scheduled learning rate on the server (the file is named).
        """
        job_dir = Path(job_dir)
        clients = sorted(job_dir.glob("app*/config/config_fed_client.json"))
        found = []
        for path in clients:
            config = json.loads(path.read_text())
            for entry in config.get("executors", []):
                if entry.get("executor", {}).get("path") == EXECUTOR:
                    found.append((path, config, entry["executor"].get("args", {})))
        if len(found) != 1:
            raise ValueError(
                f"{job_dir}: the audit needs exactly one {EXECUTOR} in the client configs, found {len(found)}"
            )
        client_path, client, args = found[0]
        server_path = client_path.with_name("config_fed_server.json")
        if not server_path.is_file():
            raise ValueError(f"{server_path}: missing (the audit reads the server's lr and rounds there)")
        server = json.loads(server_path.read_text())
        return cls(
            name=job_dir.name,
            task=str(args["task"]),
            task_args=dict(args.get("task_args") or {}),
            algorithms=[
                a if isinstance(a, dict) else {"name": a, "args": {}} for a in args.get("algorithms", [])
            ],
            local={k: args[k] for k in LOCAL_KEYS if k in args},
            lr=_server_lr(server, server_path),
            rounds=_rounds(server, server_path),
            model_args=_model_args(server),
            encrypted=encrypts_updates(client),
            server=server,
        )


def _components(server: Mapping) -> dict[str, Mapping]:
    return {c.get("id"): c for c in server.get("components", [])}


def _server_lr(server: Mapping, path: Path) -> float:
    generator = _components(server).get("shareable_generator", {})
    lr = generator.get("args", {}).get("lr")
    if lr is None:
        raise ValueError(
            f"{path}: no shareable_generator with an lr (the kit's scheduled generator sends it)"
        )
    return float(lr)


def _rounds(server: Mapping, path: Path) -> int:
    for workflow in server.get("workflows", []):
        if workflow.get("path") in (SCATTER_AND_GATHER, SECAGG_CONTROLLER):
            return int(workflow.get("args", {}).get("num_rounds", 1))
    raise ValueError(
        f"{path}: no {SCATTER_AND_GATHER} or SecAggController workflow (the audit reads num_rounds there)"
    )


def _model_args(server: Mapping) -> dict:
    args = _components(server).get("persistor", {}).get("args", {})
    if "model_args" in args:
        return dict(args["model_args"])
    return dict(args.get("model", {}).get("args", {}))
