"""The settings of a finished job that decide what a privacy attack on it can recover.

The privacy audit (``fedhealth privacy-audit``) measures gradient-inversion and membership attacks
on a grid of settings; the run report looks up this job's point on that grid
(:mod:`fedhealth.reports.attack_figures`). The settings come from the ``config_fed_client.json``
the job ran with (the server's copy of the deployed app, in the downloaded result) and from the run
record: the local steps each site actually took, its DP ledger, its HE facts, its compression
label. A result without the config falls back to the record alone (batch size then unknown).
FLARE-free; no patient value is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fedhealth.compression.config import largest_topk_share
from fedhealth.constants import M_COMPRESSION, M_HE, M_IMAGES_PER_S, M_N_QUARANTINED, M_PRIVACY, M_STEPS
from fedhealth.reports.run_record import RunRecord

IMAGING_TASKS = ("dicom",)  # the executor's task names whose updates the audit measures on chest X-rays
TABULAR_TASKS = ("heart", "tabular")
DP_PLUGIN = "dp_sgd"
TOPK_PLUGIN = "topk"
TREE_MARKERS = ("tree_bagging", "FedXGB", "xgb")  # a tree job: no gradient update to invert
SECAGG_FILTER = "SecAggMask"  # fedhealth.filters.secagg_mask: SecAgg+ masking
HE_FILTER = "he.model_encryptor"  # FLARE's HEModelEncryptor: the server sees only the sum of updates
CLIENT_DP_AGGREGATOR = "DPFedAvgAggregator"  # server-side clipping and noise (DP-FedAvg)
_TOPK_LABEL = re.compile(r"^topk ([0-9.eE+-]+)")


@dataclass(frozen=True)
class JobSettings:
    """What the audit is indexed by, for one job.

    Args:
        data: ``cxr`` (imaging tasks) or ``heart`` (tabular tasks: the audit's tabular data); None
            for a tree job or when neither config nor record tells.
        dataset: the tabular task's dataset name, e.g. ``indo_rct`` (None: heart or imaging).
        batch: the local batch size (None: no job config in the result).
        local_steps: the fewest local optimizer steps a site took in a round (the most exposed
            update), else the configured ``local_steps``; None when unknown.
        steps_site: the site that took ``local_steps`` (None: from the config).
        optimizer: ``sgd`` or ``adam``.
        epsilon: the DP-SGD plug-in's ``target_epsilon`` (None: no DP-SGD).
        secure_sum_sites: HE or SecAgg+: the fewest sites whose updates were summed in a round.
        secure_sum_by: what hides the single updates: ``"HE"`` or ``"SecAgg+"``.
        k_fraction: top-k: the share of each tensor's entries a site sends.
        trees: a tree job (XGBoost), which sends no gradient update.
        source: where the settings came from, for the report.
        notes: facts the report states next to the figures.
    """

    data: str | None
    batch: int | None = None
    local_steps: int | None = None
    steps_site: str | None = None
    optimizer: str | None = None
    epsilon: float | None = None
    secure_sum_sites: int | None = None
    secure_sum_by: str = "HE"
    k_fraction: float | None = None
    trees: bool = False
    dataset: str | None = None
    source: str = "the run record"
    notes: tuple[str, ...] = field(default=())


def _site_executor_args(config: dict) -> dict | None:
    for entry in config.get("executors", []):
        args = (entry.get("executor") or {}).get("args") or {}
        if "task" in args:
            return args
    return None


def result_filters(config: dict) -> list[dict]:
    """Every filter of a client config's ``task_result_filters`` chains."""
    return [f for group in config.get("task_result_filters", []) for f in group.get("filters", [])]


def masks_updates(config: dict) -> bool:
    """Whether the client config masks the updates with SecAgg+ (``SecAggMask`` on the train results)."""
    return any(f.get("path", "").endswith(SECAGG_FILTER) for f in result_filters(config))


def encrypts_updates(config: dict) -> bool:
    """Whether the client config encrypts (HE) or masks (SecAgg+) the updates: the server sees their sum."""
    return any(
        HE_FILTER in f.get("path", "") or f.get("path", "").endswith(SECAGG_FILTER)
        for f in result_filters(config)
    )


def _is_tree_job(client_config: dict | None, record: RunRecord) -> bool:
    if record.get("model"):
        return True
    text = str(client_config or "")
    return any(marker in text for marker in TREE_MARKERS)


def _record_sites(record: RunRecord) -> list[tuple[str, dict]]:
    return [(s, m) for r in record.get("rounds", []) for s, m in r.get("sites", {}).items()]


def _fewest_steps(record: RunRecord) -> tuple[int | None, str | None]:
    steps = [(int(m[M_STEPS]), s) for s, m in _record_sites(record) if m.get(M_STEPS)]
    return min(steps) if steps else (None, None)


def _fewest_summed(record: RunRecord) -> int | None:
    counts = [
        sum(isinstance(m.get(M_HE), dict) for m in r.get("sites", {}).values())
        for r in record.get("rounds", [])
    ]
    counts = [c for c in counts if c]
    return min(counts) if counts else None


def _record_k_fraction(record: RunRecord) -> float | None:
    for _, metrics in _record_sites(record):
        match = _TOPK_LABEL.match(str(metrics.get(M_COMPRESSION) or ""))
        if match:
            return float(match.group(1))
    return None


def _record_data(job: str, record: RunRecord) -> str:
    imaging = any(M_IMAGES_PER_S in m or M_N_QUARANTINED in m for _, m in _record_sites(record))
    return "cxr" if imaging or job.startswith("cxr") else "heart"


def data_kind(task: str) -> str | None:
    """The audited data of an executor task: ``cxr`` (imaging), ``heart`` (tabular), else None."""
    if task in IMAGING_TASKS:
        return "cxr"
    return "heart" if task in TABULAR_TASKS else None


def job_settings(
    job: str,
    record: RunRecord,
    client_config: dict | None = None,
    server_config: dict | None = None,
) -> JobSettings:
    """The audit-relevant settings of a job from its client config (when the result has it) and its record.

    Args:
        job: the job's name (a fallback for the data kind and HE when there is no config).
        record: the run record (local steps taken, DP ledger, HE facts, compression labels).
        client_config: the ``config_fed_client.json`` the job ran with, or None.
        server_config: its ``config_fed_server.json``, or None (tells server-side client-level DP).
    """
    notes: list[str] = []
    if server_config and CLIENT_DP_AGGREGATOR in str(server_config):
        notes.append(
            "Client-level DP (DP-FedAvg) is added by the server after it receives each update: it "
            "hides a hospital from whoever sees the global model, not the updates from the server."
        )
    if _is_tree_job(client_config, record):
        return JobSettings(data=None, trees=True, notes=tuple(notes))
    steps, steps_site = _fewest_steps(record)
    summed = _fewest_summed(record)
    k_fraction = _record_k_fraction(record)
    ledger = [m[M_PRIVACY] for _, m in _record_sites(record) if isinstance(m.get(M_PRIVACY), dict)]
    epsilon = max((float(e["epsilon"]) for e in ledger if e.get("epsilon") is not None), default=None)
    args = _site_executor_args(client_config) if client_config else None
    if args is None:
        if summed is None and "_he" in job:
            summed = len(record.get("sites", [])) or None
        return JobSettings(
            data=_record_data(job, record),
            local_steps=steps,
            steps_site=steps_site,
            epsilon=epsilon,
            secure_sum_sites=summed,
            k_fraction=k_fraction,
            notes=tuple(notes),
        )
    plugins = {a.get("name"): a.get("args") or {} for a in args.get("algorithms") or []}
    if DP_PLUGIN in plugins and plugins[DP_PLUGIN].get("target_epsilon") is not None:
        epsilon = float(plugins[DP_PLUGIN]["target_epsilon"])
    filters = result_filters(client_config)
    if TOPK_PLUGIN in plugins:  # with a schedule, the largest share any round sends
        k_fraction = largest_topk_share(plugins[TOPK_PLUGIN])
    for f in filters:  # a compressor filter in top-k mode sparsifies on its own
        if f.get("path", "").endswith("UpdateCompressor") and (f.get("args") or {}).get("mode") == "topk":
            k_fraction = k_fraction or largest_topk_share(f["args"])
    if summed is None and encrypts_updates(client_config):
        summed = len(record.get("sites", [])) or None
    if steps is None and int(args.get("local_steps") or 0) > 0:
        steps = int(args["local_steps"])
    task_args = args.get("task_args") or {}
    dataset = task_args.get("dataset") if isinstance(task_args, dict) else None
    return JobSettings(
        data=data_kind(str(args.get("task"))),
        batch=int(args["batch_size"]) if args.get("batch_size") else None,
        local_steps=steps,
        steps_site=steps_site,
        optimizer=str(args.get("optimizer", "sgd")).lower(),
        epsilon=epsilon,
        secure_sum_sites=summed,
        secure_sum_by="SecAgg+" if masks_updates(client_config) else "HE",
        k_fraction=k_fraction,
        dataset=dataset if dataset and dataset != "heart_disease" else None,
        source="config_fed_client.json",
        notes=tuple(notes),
    )
