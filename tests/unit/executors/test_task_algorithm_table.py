"""Every client algorithm on every task, built from a shipped job's config as FLARE builds it.

For each (task x algorithm) pair the test takes the client config of the task's FedAvg job, puts the
algorithm into the executor's ``algorithms``, builds the :class:`SiteExecutor` with FLARE's own
component builder, starts it on a tiny real site (a few dozen heart rows; 24 synthetic DICOM images a
split) with FLARE's ``FLContext`` and ``Workspace``, runs the task's own steps, one ``train`` and one
``validate`` task, and checks the algorithm's signature in what comes back. The composition table
below it says which pairs run together and which are refused, with the reason, at construction.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from flare_doubles import site_context
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal
from nvflare.app_common.app_constant import AppConstants
from nvflare.fuel.utils.component_builder import ComponentBuilder

from fedhealth import constants as C
from fedhealth.compression.topk import topk_count
from fedhealth.data.site_data import write_site
from fedhealth.ehr.alignment import AlignmentPolicy, align
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.ehr.mapping import MAPPING_FILE
from fedhealth.executors.site_executor import SiteExecutor
from fedhealth.models.state import to_numpy
from fedhealth_tools.imaging.synthetic import write_synthetic_site

JOBS_DIR = Path(__file__).resolve().parents[3] / "jobs"
JOB_ID = "job-1"
SITE = "north"
CAP = 2  # the step cap's max_local_steps
K_FRACTION = 0.1
N_IMAGES = 24  # synthetic DICOM images per split
HEART_ROWS = (40, 20)  # training and test rows of the tiny heart site

# task -> (shipped job whose client config is built, executor args changed for the tiny site, server lr)
TASKS = {
    "tabular": ("heart_fedavg", {"n_bootstrap": 20, "stream_metrics": False}, 0.05),
    "dicom": ("cxr_fedavg", {"batch_size": 16, "n_bootstrap": 20, "stream_metrics": False}, 0.003),
}
# algorithm -> (the executor's "algorithms" entry, executor args it changes)
ALGORITHMS = {
    "fedavg": ([], {}),
    "fedprox": ([{"name": "fedprox", "args": {"mu": 1.0}}], {}),
    "scaffold": ([{"name": "scaffold", "args": {"lr": 0.05}}], {}),
    "ditto": ([{"name": "ditto", "args": {"lam": 0.1}}], {}),
    "finetune": ([{"name": "finetune", "args": {"epochs": 1}}], {}),
    "dp_sgd": ([{"name": "dp_sgd", "args": {"target_epsilon": 3.0, "max_grad_norm": 1.0}}], {}),
    "topk": ([{"name": "topk", "args": {"k_fraction": K_FRACTION}}], {}),
    "step_cap": ([{"name": "step_cap", "args": {"max_local_steps": CAP}}], {"local_epochs": 3}),
}
PAIRS = [(task, algorithm) for task in TASKS for algorithm in ALGORITHMS]

DP = {"name": "dp_sgd", "args": {"target_epsilon": 3.0}}
TOPK = {"name": "topk", "args": {"k_fraction": K_FRACTION}}
# algorithms that compose (each runs a round on each task)
ALLOWED = [
    ("dp_sgd+topk", [DP, TOPK]),
    (
        "fedprox+step_cap",
        [{"name": "fedprox", "args": {"mu": 0.5}}, {"name": "step_cap", "args": {"max_local_steps": CAP}}],
    ),
    ("ditto+dp_sgd", [{"name": "ditto", "args": {"lam": 0.1}}, DP]),
]
# algorithms a job may not list together, and the fragment of the refusal
REFUSED = [
    ([DP, {"name": "fedprox", "args": {"mu": 0.1}}], "DP-SGD cannot run with ['fedprox']"),
    ([DP, {"name": "scaffold", "args": {"lr": 0.05}}], "DP-SGD cannot run with ['scaffold']"),
    ([{"name": "scaffold", "args": {"lr": 0.05}}, TOPK], "SCAFFOLD cannot run with ['topk']"),
    (
        [TOPK, {"name": "topk", "args": {"k_fraction": 0.5}}],
        "client algorithm(s) ['topk'] listed more than once",
    ),
    (
        [{"name": "fedprox", "args": {"mu": 0.1, "nu": 1.0}}],
        "client algorithm 'fedprox' has no argument 'nu'; it takes: mu.",
    ),
    (
        [{"name": "ditto", "args": {"lambda": 0.1}}],
        "client algorithm 'ditto' has no argument 'lambda'; it takes: lam, lr, epochs.",
    ),
    (
        [{"name": "dp_sgd", "args": {"target_epsilon": 3.0, "noise": 1.0}}],
        "unknown dp settings ['noise']; known are",
    ),
    ([{"name": "fedsgd"}], "unknown client algorithm 'fedsgd'; known: ditto, dp_sgd, fedavg"),
]


class JobComponents(ComponentBuilder):
    """FLARE's component builder as the client's job config reader uses it (classes named by path)."""

    def get_module_scanner(self):
        return None


@dataclass
class Round:
    """What one pair's run gives back."""

    executor: SiteExecutor
    start: dict[str, np.ndarray]
    reply: DXO
    validated: dict
    run_dir: Path

    @property
    def model(self) -> DXO:
        """The update DXO (the model part of a collection)."""
        return self.reply.data[C.MODEL_PART] if self.reply.data_kind == DataKind.COLLECTION else self.reply

    @property
    def metrics(self) -> dict:
        return self.reply.get_meta_prop(C.META_SITE_METRICS)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, heart_splits: dict) -> dict[str, Path]:
    """Each task's tiny site data, written once: heart rows and synthetic DICOM images."""
    root = tmp_path_factory.mktemp("table_data")
    split = heart_splits["cleveland"]
    folder = write_site(root / "tabular", split.train.head(HEART_ROWS[0]), split.test.head(HEART_ROWS[1]))
    # FLamby's ten columns carry the dictionary's names and UCI codes: only the target needs mapping.
    target = {"column": "target", "positive": ["1"], "negative": ["0"]}
    (folder / MAPPING_FILE).write_text(json.dumps({"target": target}))
    write_synthetic_site(root / "dicom", n=N_IMAGES)
    return {"tabular": root / "tabular", "dicom": root / "dicom"}


def executor_spec(task: str, algorithms: list, **changes: object) -> dict:
    """The task's shipped client config with the job's algorithms (and the tiny site's settings)."""
    job, tiny, _ = TASKS[task]
    config = json.loads((JOBS_DIR / job / "app" / "config" / "config_fed_client.json").read_text())
    (entry,) = config["executors"]
    spec = copy.deepcopy(entry["executor"])
    spec["args"].update({**tiny, **changes, "algorithms": copy.deepcopy(algorithms)})
    return spec


def build(task: str, algorithms: list, **changes: object) -> SiteExecutor:
    return JobComponents().build_component(executor_spec(task, algorithms, **changes))


def _context(kit: Path) -> FLContext:
    fl_ctx = site_context(kit, SITE, JOB_ID)
    return fl_ctx


def _execute(
    executor: SiteExecutor, name: str, fl_ctx: FLContext, shareable: Shareable | None = None
) -> Shareable:
    reply = executor.execute(name, shareable if shareable is not None else Shareable(), fl_ctx, Signal())
    assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK, reply.get_header(C.HEADER_ERROR)
    return reply


def _extra_steps(executor: SiteExecutor, fl_ctx: FLContext) -> None:
    """The task's own steps before training (tabular: its profile, then the schema aligned from it alone)."""
    if C.TASK_EHR_PROFILE not in executor.task.steps:
        assert executor.task.steps == ()
        return
    request = DXO(DataKind.COLLECTION, data={"min_cell": 5}).to_shareable()
    profile = from_shareable(_execute(executor, C.TASK_EHR_PROFILE, fl_ctx, request)).data
    dictionary = DataDictionary.from_dict(executor.task.dictionary)
    schema = align({SITE: profile}, dictionary, AlignmentPolicy(min_sites_with_feature=1))
    _execute(executor, C.TASK_SET_SCHEMA, fl_ctx, DXO(DataKind.COLLECTION, data=schema).to_shareable())


def _train_task(start: dict, lr: float, scaffold: bool) -> Shareable:
    model = DXO(DataKind.WEIGHTS, data=start, meta={C.META_LEARNING_RATE: lr})
    if scaffold:  # ScatterAndGatherScaffold's task: the model and the server's control variate
        c_global = DXO(DataKind.WEIGHT_DIFF, data={k: np.zeros_like(v) for k, v in start.items()})
        model = DXO(DataKind.COLLECTION, data={C.MODEL_PART: model, C.SCAFFOLD_CTRL_GLOBAL: c_global})
    shareable = model.to_shareable()
    shareable.set_header(AppConstants.CURRENT_ROUND, 0)
    shareable.set_header(AppConstants.NUM_ROUNDS, 2)
    return shareable


def run_round(tmp_path: Path, data: dict, task: str, algorithms: list, **changes: object) -> Round:
    """Build the executor from the job config, start it on the tiny site, run the steps, train, validate."""
    executor = build(task, algorithms, **changes)
    kit = tmp_path / "kit"
    (kit / "startup").mkdir(parents=True)
    (kit / "local").mkdir()
    (kit / "local" / C.SITE_CONFIG_FILE).write_text(json.dumps({C.SITE_DATA_ROOT_KEY: str(data[task])}))
    fl_ctx = _context(kit)
    executor.handle_event(EventType.START_RUN, fl_ctx)
    assert executor._site_error is None
    _extra_steps(executor, fl_ctx)
    torch.manual_seed(0)
    start = to_numpy(executor.task.build_model(executor.runner.site))
    scaffold = any(a["name"] == "scaffold" for a in algorithms)
    reply = from_shareable(
        _execute(executor, C.TASK_TRAIN, fl_ctx, _train_task(start, TASKS[task][2], scaffold))
    )
    check = DXO(DataKind.WEIGHTS, data=start).to_shareable()
    validated = from_shareable(_execute(executor, C.TASK_VALIDATE, fl_ctx, check)).data
    return Round(executor, start, reply, validated, kit / JOB_ID)


# ----------------------------------------------------------------------------- signatures
def _fedavg(result: Round, **_: object) -> None:
    assert result.model.data_kind == DataKind.WEIGHTS and result.executor.runner.algorithms == []
    assert any(not np.array_equal(result.model.data[k], v) for k, v in result.start.items())


def _fedprox(result: Round, *, task: str, tmp_path: Path, data: dict) -> None:
    twice = [run_round(tmp_path / f"fedavg{i}", data, task, []).model.data for i in (0, 1)]
    for k, v in twice[0].items():  # the same seed trains the same FedAvg model: the test can see mu
        np.testing.assert_array_equal(twice[1][k], v)
    gap = max(float(np.abs(result.model.data[k] - v).max()) for k, v in twice[0].items())
    assert gap > 1e-6
    moved = {k: float(np.linalg.norm(v - result.start[k])) for k, v in twice[0].items()}
    pulled = {k: float(np.linalg.norm(result.model.data[k] - result.start[k])) for k in moved}
    assert sum(pulled.values()) < sum(moved.values())  # the proximal term holds the model nearer the start


def _scaffold(result: Round, **_: object) -> None:
    assert result.reply.data_kind == DataKind.COLLECTION
    ctrl = result.reply.data[C.SCAFFOLD_CTRL_DIFF]
    assert ctrl.data_kind == DataKind.WEIGHT_DIFF and set(ctrl.data) == set(result.start)
    steps, lr = result.model.get_meta_prop(C.META_LOCAL_STEPS), result.metrics["lr"]
    assert lr == pytest.approx(0.05)
    for k, v in result.start.items():  # option II with c = c_i = 0: (x - y) / (K lr)
        expected = (v.astype("float64") - result.model.data[k]) / (steps * lr)
        np.testing.assert_allclose(ctrl.data[k], expected, rtol=1e-4, atol=1e-5)


def _ditto(result: Round, **_: object) -> None:
    for key in ("accuracy", "auc", "loss", "train_loss"):
        assert f"personal_{key}" in result.metrics
    assert 0.0 <= result.metrics["personal_accuracy"] <= 1.0 and result.metrics["personal_loss"] > 0
    personal = np.load(result.run_dir / C.PERSONAL_MODEL_FILE)
    assert set(personal.files) == set(result.start)


def _finetune(result: Round, **_: object) -> None:
    for key in ("accuracy", "auc", "loss"):
        assert f"finetuned_{key}" in result.metrics
    assert result.metrics["finetuned_loss"] > 0 and (result.run_dir / C.FINETUNED_MODEL_FILE).is_file()


def _dp_sgd(result: Round, **_: object) -> None:
    ledger = result.metrics[C.M_PRIVACY]
    assert ledger["round"] == 0 and 0 < ledger["epsilon"] <= 3.0 and ledger["noise_multiplier"] > 0
    assert ledger["max_grad_norm"] == 1.0 and ledger["steps"] == result.metrics[C.M_STEPS]


def _topk(result: Round, **_: object) -> None:
    assert result.model.data_kind == DataKind.WEIGHT_DIFF
    kept, total = 0, 0
    for k, v in result.model.data.items():
        nonzero = int(np.count_nonzero(v))
        assert nonzero <= topk_count(v.size, K_FRACTION), k
        kept, total = kept + nonzero, total + v.size
    assert (
        0.8 * K_FRACTION * total
        <= kept
        <= sum(topk_count(v.size, K_FRACTION) for v in result.model.data.values())
    )
    assert "ef_residual_norm" in result.metrics and result.metrics["ef_residual_norm"] > 0


def _step_cap(result: Round, **_: object) -> None:
    assert result.model.get_meta_prop(C.META_LOCAL_STEPS) == CAP == result.metrics[C.M_STEPS]


SIGNATURES = {
    "fedavg": _fedavg,
    "fedprox": _fedprox,
    "scaffold": _scaffold,
    "ditto": _ditto,
    "finetune": _finetune,
    "dp_sgd": _dp_sgd,
    "topk": _topk,
    "step_cap": _step_cap,
}


def test_the_table_covers_every_shipped_task_and_algorithm() -> None:
    from fedhealth.client.base import BUILTIN as ALGORITHM_MODULES
    from fedhealth.tasks.registry import BUILTIN as TASK_MODULES

    # "heart" is FLamby's fixed preprocessing, the in-process benchmarks' reference: no shipped job runs it
    # (tests/unit/federation runs it with the algorithms in process).
    assert set(TASKS) == set(TASK_MODULES) - {"heart"}
    # tree_bagging grows XGBoost trees on a tabular task aligned for trees, from a tree model: it has no
    # network round to run on each task (tests/unit/trees/test_tree_bagging_job.py runs it).
    assert set(ALGORITHMS) == set(ALGORITHM_MODULES) - {"tree_bagging"} == set(SIGNATURES)


@pytest.mark.parametrize(("task", "algorithm"), PAIRS)
def test_every_algorithm_runs_a_round_on_every_task(
    tmp_path: Path, data: dict, task: str, algorithm: str
) -> None:
    algorithms, changes = ALGORITHMS[algorithm]
    result = run_round(tmp_path, data, task, algorithms, **changes)
    assert [a.name for a in result.executor.runner.algorithms] == [a["name"] for a in algorithms]
    metrics = result.metrics
    assert math.isfinite(metrics[C.M_TRAIN_LOSS]) and metrics[C.M_STEPS] >= 1
    assert metrics[C.M_N_TRAIN] == (HEART_ROWS[0] if task == "tabular" else N_IMAGES)
    validated = result.validated
    assert {C.M_ACCURACY, C.M_AUC, C.M_LOSS, C.M_INTERVALS} <= set(validated)
    assert validated[C.M_INTERVALS]["n"] == (HEART_ROWS[1] if task == "tabular" else N_IMAGES)
    SIGNATURES[algorithm](result, task=task, tmp_path=tmp_path, data=data)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(("pair", "algorithms"), ALLOWED)
def test_algorithms_that_compose_run_together(
    tmp_path: Path, data: dict, task: str, pair: str, algorithms
) -> None:
    result = run_round(tmp_path, data, task, algorithms, local_epochs=3)
    names = pair.split("+")
    assert [a.name for a in result.executor.runner.algorithms] == names
    checks = {"dp_sgd": _dp_sgd, "topk": _topk, "step_cap": _step_cap, "ditto": _ditto}
    for name in names:
        if name in checks:
            checks[name](result)
    if "fedprox" in names:
        assert result.executor.runner.round_config(0.1).mu == 0.5


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(("algorithms", "fragment"), REFUSED)
def test_algorithms_that_cannot_compose_are_refused_at_construction(
    task: str, algorithms, fragment: str
) -> None:
    with pytest.raises(ValueError) as info:
        build(task, algorithms)
    assert fragment in str(info.value)
