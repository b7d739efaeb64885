"""LoopbackXGBController: FLARE's own server adaptor and bridge client, served by the loopback runner."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import nvflare.app_opt.xgboost.histogram_based_v2.proto.federated_pb2 as pb2
import pytest
from flare_doubles import WorkspaceEngine, site_context
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.app_opt.xgboost.histogram_based_v2.adaptors.grpc_server_adaptor import GrpcServerAdaptor
from nvflare.app_opt.xgboost.histogram_based_v2.defs import Constant

from fedhealth.workflows.loopback_xgb_controller import LoopbackXGBController, LoopbackXGBServerRunner

ARGS = {"num_rounds": 3, "data_split_mode": 0, "xgb_params": {"max_depth": 3}}
# (extra arguments, message)
BAD = [
    ({"secure_training": True}, "does not support secure_training"),
    ({"secure_training": False, "collective_timeout": 0}, "collective_timeout must be > 0"),
]


class _ServerEngine(WorkspaceEngine):
    """The server engine's one extra call here: the controller registers FLARE's security handler."""

    def __init__(self, workspace: object) -> None:
        super().__init__(workspace)
        self.components: dict[str, object] = {}

    def add_component(self, component_id: str, component: object) -> None:
        self.components[component_id] = component


def _server_context(tmp_path: Path) -> FLContext:
    for folder in ("startup", "local"):  # what FLARE checks a workspace has
        (tmp_path / folder).mkdir()
    fl_ctx = site_context(tmp_path, "server", "job1")
    engine = _ServerEngine(fl_ctx.get_engine().get_workspace())
    fl_ctx.set_prop(ReservedKey.ENGINE, engine, private=True, sticky=True)
    return fl_ctx


def _wait_until_stopped(is_stopped: Callable[[], tuple[bool, int]], timeout: float = 5.0) -> tuple[bool, int]:
    deadline = time.monotonic() + timeout
    while not is_stopped()[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    return is_stopped()


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_bad_arguments_are_refused(extra: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoopbackXGBController(**ARGS, **extra)


def test_the_runner_refuses_a_non_loopback_address() -> None:
    ctx = {Constant.RUNNER_CTX_SERVER_ADDR: "0.0.0.0:9091", Constant.RUNNER_CTX_WORLD_SIZE: 2}
    with pytest.raises(ValueError, match=r"127\.0\.0\.1 only"):
        LoopbackXGBServerRunner().run(ctx)


def test_a_runner_stopped_before_it_runs_never_listens() -> None:
    runner = LoopbackXGBServerRunner()
    runner.stop()
    runner.run({Constant.RUNNER_CTX_SERVER_ADDR: "127.0.0.1:0", Constant.RUNNER_CTX_WORLD_SIZE: 2})
    assert runner.is_stopped() == (True, 0)


def test_flares_adaptor_reaches_the_loopback_runner_and_stops_it(tmp_path: Path) -> None:
    fl_ctx = _server_context(tmp_path)
    adaptor = LoopbackXGBController(**ARGS, secure_training=False, collective_timeout=10).get_adaptor(fl_ctx)
    assert isinstance(adaptor, GrpcServerAdaptor)
    assert isinstance(adaptor.app_runner, LoopbackXGBServerRunner)
    assert len(fl_ctx.get_engine().components) == 1  # FLARE's security handler, as XGBFedController adds
    runner = adaptor.app_runner

    adaptor.configure({Constant.CONF_KEY_WORLD_SIZE: 2}, fl_ctx)
    adaptor.start(fl_ctx)  # the runner in a thread, then FLARE's GrpcClient to 127.0.0.1:port
    try:
        assert adaptor.internal_xgb_client.server_addr.startswith("127.0.0.1:")
        hists = [np.array([1.0, 2.0]), np.array([0.5, 0.25])]
        with ThreadPoolExecutor(2) as pool:
            replies = list(
                pool.map(
                    lambda r: adaptor.all_reduce(r, 0, pb2.DOUBLE, pb2.SUM, hists[r].tobytes(), fl_ctx),
                    [0, 1],
                )
            )
        assert [np.frombuffer(b).tolist() for b in replies] == [[1.5, 2.25]] * 2
        assert runner.is_stopped() == (False, 0)
    finally:
        adaptor.stop(fl_ctx)
    assert _wait_until_stopped(adaptor.is_runner_stopped) == (True, 0)
    assert runner.is_stopped() == (True, 0)
    assert not any(t.name.startswith("xgb-tracker") and t.is_alive() for t in threading.enumerate())
