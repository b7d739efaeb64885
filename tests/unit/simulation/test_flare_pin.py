"""The in-process simulator stands on FLARE's private simulator: fail loudly when FLARE changes.

:mod:`fedhealth_tools.simulation.in_process_runner` subclasses ``SimulatorRunner`` and
``SimulatorClientRunner`` and drives ``ClientTaskWorker`` itself (why, and what to move to, is in
that module's docstring). A FLARE upgrade must stop here, naming what moved, rather than in a
100-site run that hangs or silently runs the stock worker processes.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import nvflare
import pytest
from nvflare.private.fed.app.simulator import simulator_runner, simulator_worker
from nvflare.private.fed.simulator.simulator_const import SimulatorConstants

from fedhealth_tools.simulation import in_process_runner
from fedhealth_tools.simulation.in_process_runner import FLARE_PINNED

ROOT = Path(__file__).resolve().parents[3]
RUNNER = simulator_runner.SimulatorRunner
CLIENT_RUNNER = simulator_runner.SimulatorClientRunner
WORKER = simulator_worker.ClientTaskWorker

# (class, method, its parameters in FLARE 2.9.0): the subclasses override or call each of these
SIGNATURES = [
    (
        RUNNER,
        "__init__",
        ["self", "job_folder", "workspace", "clients", "n_clients", "threads", "gpu", "log_config"]
        + ["max_clients", "end_run_for_all"],
    ),
    (RUNNER, "setup", ["self"]),
    (RUNNER, "_setup_local_startup", ["self", "log_config_file_path", "workspace"]),
    (RUNNER, "client_run", ["self", "server_custom_folder", "clients", "gpu"]),
    (
        CLIENT_RUNNER,
        "__init__",
        ["self", "server_custom_folder", "args", "clients", "client_config", "deploy_args", "build_ctx"],
    ),
    (CLIENT_RUNNER, "run", ["self", "gpu"]),
    (
        CLIENT_RUNNER,
        "do_one_task",
        ["self", "client", "num_of_threads", "gpu", "lock", "timeout", "task_name"],
    ),
    (CLIENT_RUNNER, "get_next_run_client", ["self", "gpu"]),
    (WORKER, "run", ["self", "args", "conn"]),
]
# attributes the subclasses read, and the class whose source must still set them
ATTRIBUTES = [
    (RUNNER, ["workspace", "args", "client_config", "deploy_args", "build_ctx"]),
    (
        CLIENT_RUNNER,
        ["args", "simulator_root", "client_config", "deploy_args", "build_ctx", "federated_clients"],
    ),
]


def test_flare_is_the_pinned_version() -> None:
    assert nvflare.__version__ == FLARE_PINNED, (
        f"nvflare {nvflare.__version__} is installed; fedhealth_tools.simulation.in_process_runner was "
        f"checked against {FLARE_PINNED} only (see its docstring): re-check it, then move FLARE_PINNED"
    )
    assert f'"nvflare=={FLARE_PINNED}"' in (ROOT / "pyproject.toml").read_text()  # the runtime's pin


@pytest.mark.parametrize(("cls", "method", "params"), SIGNATURES, ids=lambda v: getattr(v, "__name__", None))
def test_private_method_signature_unchanged(cls: type, method: str, params: list[str]) -> None:
    assert method in vars(cls), f"{cls.__module__}.{cls.__name__}.{method} is gone"
    found = list(inspect.signature(getattr(cls, method)).parameters)
    assert found == params, f"{cls.__name__}.{method} now takes {found}, not {params}"


@pytest.mark.parametrize(("cls", "names"), ATTRIBUTES, ids=lambda v: getattr(v, "__name__", None))
def test_private_attributes_still_set(cls: type, names: list[str]) -> None:
    source = inspect.getsource(cls)
    missing = [n for n in names if not re.search(rf"self\.{n}\s*=", source)]
    assert missing == [], f"{cls.__name__} no longer sets self.{missing}"


def test_worker_handshake_keys_exist() -> None:
    """The first message to the worker carries these three keys (ClientTaskWorker.run reads them)."""
    source = inspect.getsource(WORKER.run)
    for key in ("CLIENT_CONFIG", "DEPLOY_ARGS", "BUILD_CTX"):
        assert hasattr(SimulatorConstants, key), f"SimulatorConstants.{key} is gone"
        assert f"data[SimulatorConstants.{key}]" in source, f"ClientTaskWorker.run no longer reads {key}"


def _namespace_fields() -> set[str]:
    """The fields of the ``argparse.Namespace`` the in-process runner hands each worker thread."""
    tree = ast.parse(inspect.getsource(in_process_runner))
    (call,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "Namespace"
    ]
    return {kw.arg for kw in call.keywords if kw.arg}


# ClientTaskWorker's methods that receive the runner's Namespace (``run`` hands it to the other two)
WORKER_ARGS_METHODS = ("run", "_create_client", "do_one_task")


def test_the_worker_reads_only_the_arguments_the_runner_passes() -> None:
    """Every ``args.X`` the worker thread reads is a field the runner sets."""
    passed = _namespace_fields()
    assert passed >= {"workspace", "client", "token", "simulator_root", "root_url", "parent_url", "task_name"}
    read = set()
    for name in WORKER_ARGS_METHODS:
        method = vars(WORKER).get(name)
        assert method is not None and "args" in inspect.signature(method).parameters, (
            f"ClientTaskWorker.{name}(args, ...) is gone"
        )
        read |= set(re.findall(r"\bargs\.(\w+)", inspect.getsource(method)))
    assert read == {"simulator_root", "token", "root_url", "parent_url", "task_name"}  # what 2.9.0 reads
    assert read - passed == set(), f"ClientTaskWorker now reads args.{sorted(read - passed)}"
