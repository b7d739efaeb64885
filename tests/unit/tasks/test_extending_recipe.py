"""``docs/extending.md``'s recipe for a new dataset, followed once: a toy task runs FedAvg in a FLARE job.

What the recipe asks for, and nothing more: the task module (``toy_task.py``, next to this test), the
site's installation of it (an entry point in the ``fedhealth.tasks`` group, here a real ``.dist-info``
folder on ``sys.path``), and a job spec (``specs/toy.json``) rendered by the kit's job generator. Two
sites build the :class:`SiteExecutor` from the rendered client config with FLARE's component builder and
FLARE's ``FLContext``/``Workspace``; the server side is the rendered server config's own components
(the scheduled shareable generator and the robust aggregator), driven round by round as FLARE's
``ScatterAndGather`` drives them. The global model's loss at the sites falls round after round.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flare_doubles import WorkspaceEngine, site_context
from installed_plugins import install_package
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReservedKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal
from nvflare.apis.workspace import Workspace
from nvflare.app_common.abstract.model import ModelLearnableKey, make_model_learnable
from nvflare.app_common.app_constant import AppConstants
from nvflare.fuel.utils.component_builder import ComponentBuilder

from fedhealth import constants as C
from fedhealth.models.tabular import TabularNet
from fedhealth.tasks import registry
from fedhealth_tools.jobs.spec import render_all
from fedhealth_tools.provision.allow_list import load as provisioned_allow_list

HERE = Path(__file__).resolve().parent
JOB = "toy_fedavg"
JOB_ID = "toy-job"
LR = 0.5  # the spec's server learning rate
# site -> (training rows, test rows, data seed)
SITES = {"north": (96, 48, 0), "south": (64, 48, 1)}


class JobComponents(ComponentBuilder):
    """FLARE's component builder, for classes named by path (as in every shipped job)."""

    def get_module_scanner(self):
        return None


def _component(config: dict, section: str, component_id: str) -> dict:
    return next(c for c in config[section] if c["id"] == component_id)


def _paths(node: object) -> set[str]:
    if isinstance(node, dict):
        own = {node["path"]} if isinstance(node.get("path"), str) else set()
        return own.union(*(_paths(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_paths(v) for v in node))
    return set()


@pytest.fixture
def installed_toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hospital installs the toy task (its package declares the entry point ``toy``)."""
    for name in registry.BUILTIN:  # registered on import: import them before the snapshot
        registry.task_class(name)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.delitem(sys.modules, "toy_task", raising=False)
    install_package(
        tmp_path / "site-packages",
        monkeypatch,
        dist="hospital_toy_task",
        entry_points={registry.ENTRY_POINT_GROUP: {"toy": "toy_task:ToyTask"}},
    )
    monkeypatch.syspath_prepend(str(HERE))  # where the package's module lives
    yield
    sys.modules.pop("toy_task", None)


def _site(tmp_path: Path, name: str, client: dict) -> tuple[object, FLContext]:
    """A site kit with its own data, and the executor FLARE builds from the job's client config."""
    from toy_task import write_toy_site

    n_train, n_test, seed = SITES[name]
    kit = tmp_path / name
    (kit / "startup").mkdir(parents=True)
    (kit / "local").mkdir()
    (kit / "local" / C.SITE_CONFIG_FILE).write_text(json.dumps({C.SITE_DATA_ROOT_KEY: "hospital"}))
    write_toy_site(kit / "hospital", n_train=n_train, n_test=n_test, seed=seed)
    fl_ctx = site_context(kit, name, JOB_ID)
    (entry,) = client["executors"]
    executor = JobComponents().build_component(json.loads(json.dumps(entry["executor"])))
    executor.handle_event(EventType.START_RUN, fl_ctx)
    return executor, fl_ctx


def _execute(executor, task: str, fl_ctx: FLContext, shareable: Shareable) -> Shareable:
    reply = executor.execute(task, shareable, fl_ctx, Signal())
    assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK, reply.get_header(C.HEADER_ERROR)
    return reply


def test_the_toy_job_renders_from_its_spec_with_classes_every_kit_already_allows() -> None:
    (job,) = render_all(HERE / "specs").items()
    name, files = job
    assert name == JOB and files["meta.json"]["name"] == JOB
    client, server = files["app/config/config_fed_client.json"], files["app/config/config_fed_server.json"]
    assert _paths(client) | _paths(server) <= set(provisioned_allow_list())


def test_the_toy_task_runs_fedavg_through_the_real_executor(tmp_path: Path, installed_toy: None) -> None:
    files = render_all(HERE / "specs")[JOB]
    client, server = files["app/config/config_fed_client.json"], files["app/config/config_fed_server.json"]
    sites = {name: _site(tmp_path, name, client) for name in SITES}
    assert all(
        executor.task.name == "toy" and type(executor.task).__module__ == "toy_task"
        for executor, _ in sites.values()
    )

    builder = JobComponents()
    generator = builder.build_component(_component(server, "components", "shareable_generator"))
    aggregator = builder.build_component(_component(server, "components", "aggregator"))
    rounds = _component(server, "workflows", "scatter_and_gather")["args"]["num_rounds"]
    model_args = _component(server, "components", "persistor")["args"]["model_args"]
    torch.manual_seed(0)
    weights = {k: v.numpy() for k, v in TabularNet(**model_args).state_dict().items()}

    for folder in ("startup", "local"):
        (tmp_path / "server" / folder).mkdir(parents=True)
    server_ctx = FLContext()
    server_ctx.set_prop(
        ReservedKey.ENGINE, WorkspaceEngine(Workspace(str(tmp_path / "server"))), private=True, sticky=True
    )
    aggregator.handle_event(EventType.START_RUN, server_ctx)
    global_loss: list[dict[str, float]] = []
    for current in range(rounds):  # what ScatterAndGather does each round
        server_ctx.set_prop(AppConstants.CURRENT_ROUND, current, private=True, sticky=True)
        server_ctx.set_prop(
            AppConstants.GLOBAL_MODEL, make_model_learnable(weights, {}), private=True, sticky=True
        )
        losses = {}
        for name, (executor, fl_ctx) in sites.items():
            task = generator.learnable_to_shareable(make_model_learnable(weights, {}), server_ctx)
            task.set_header(AppConstants.CURRENT_ROUND, current)
            task.set_header(AppConstants.NUM_ROUNDS, rounds)
            reply = _execute(executor, C.TASK_TRAIN, fl_ctx, task)
            metrics = from_shareable(reply).get_meta_prop(C.META_SITE_METRICS)
            losses[name] = metrics["global_loss"]
            assert metrics[C.M_N_TRAIN] == SITES[name][0] and metrics["lr"] == pytest.approx(LR)
            reply.set_peer_props({ReservedKey.IDENTITY_NAME: name})
            reply.add_cookie(AppConstants.CONTRIBUTION_ROUND, current)
            assert aggregator.accept(reply, server_ctx)
        global_loss.append(losses)
        result = generator.shareable_to_learnable(aggregator.aggregate(server_ctx), server_ctx)
        weights = dict(result[ModelLearnableKey.WEIGHTS])

    final = {
        name: from_shareable(
            _execute(executor, C.TASK_VALIDATE, fl_ctx, DXO(DataKind.WEIGHTS, data=weights).to_shareable())
        ).data
        for name, (executor, fl_ctx) in sites.items()
    }
    for name in SITES:
        curve = [r[name] for r in global_loss] + [final[name][C.M_LOSS]]
        assert all(later < earlier for earlier, later in zip(curve[:-1], curve[1:], strict=True)), (
            name,
            curve,
        )
        assert curve[-1] < 0.6 * curve[0], (name, curve)
        assert final[name][C.M_AUC] > 0.85 and final[name][C.M_N_TEST] == SITES[name][1]
    assert np.isfinite([final[n][C.M_ACCURACY] for n in SITES]).all()
