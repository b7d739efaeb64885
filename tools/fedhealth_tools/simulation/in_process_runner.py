"""FLARE's simulator with every client in the simulator's own process: a hundred sites on two cores.

Stock FLARE 2.9 (:class:`~nvflare.private.fed.app.simulator.simulator_runner.SimulatorRunner`)
runs each client in a worker process (``simulator_worker``): with as many threads as clients that is
one Python process per site (about 300 MB each once torch is imported), and with fewer threads it
starts a new process per client per round (16 sites ≈ 79 s a round here). This runner keeps the
whole of FLARE's simulation, the real server engine, ``ScatterAndGather``, the job's aggregator,
shareable generator and widgets, each client's ``ClientRunner``, its own CellNet cell and the job's
executor, and only replaces the one step that spawns the worker process: the worker's
:class:`~nvflare.private.fed.app.simulator.simulator_worker.ClientTaskWorker` runs in a thread of
this process, talking to its relay thread over an in-process pipe instead of a socket.

Process-wide set-up that FLARE's worker does once per process (object serialization, authorization,
audit, logging) the simulator's main process has already done; nothing else is shared between
clients, so each site keeps its own workspace folder, ``local/`` settings and data.

Pinned to FLARE 2.9.0 (``FLARE_PINNED``; ``tests/unit/simulation/test_flare_pin.py`` fails on any
other version and names the private piece that moved). This module subclasses FLARE's *private*
simulator classes (``nvflare.private.fed.app.simulator``), whose CLI, ``nvflare simulator``, 2.9
deprecates in favour of recipes run in :class:`nvflare.recipe.SimEnv`. The supported path cannot
hold the 100-site figures: ``SimEnv.deploy`` calls ``FedJob.simulator_run``, which starts
``python -m nvflare.private.fed.app.simulator.simulator`` in a subprocess running the stock
``SimulatorRunner``, whose client runner starts one ``simulator_worker`` process per client
(``num_threads`` = clients: a hundred processes of about 300 MB), or with fewer threads a new
process per client per round (16 sites ≈ 79 s a round, 64 sites > 270 s). Neither ``SimEnv`` nor
``FedJob`` has a hook for the client runner, the kit's class allow-list (it installs FLARE's
default list) or each site's ``local/fedhealth_site.json``. Move to ``SimEnv`` (with the job built
from the job spec, or ``FedJob`` loaded from the folder) when FLARE runs simulated clients in
process or lets a caller choose the client runner; until then, on a FLARE upgrade re-check the
names the test lists against the new ``simulator_runner.py`` and ``simulator_worker.py``, re-run
``tests/integration/test_sim_scale.py`` and ``make bench-scale``, then move the pin.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import threading
from multiprocessing import Pipe
from pathlib import Path

from nvflare.apis.fl_constant import RunnerTask
from nvflare.private.fed.app.simulator.simulator_runner import SimulatorClientRunner, SimulatorRunner
from nvflare.private.fed.app.simulator.simulator_worker import ClientTaskWorker
from nvflare.private.fed.simulator.simulator_const import SimulatorConstants

from fedhealth.constants import SITE_CONFIG_FILE, SITE_DATA_ROOT_KEY
from fedhealth_tools.provision.allow_list import load as shipped_allow_list
from fedhealth_tools.provision.allow_list_builder import ALLOW_LIST_KEY, check_entries

FLARE_PINNED = "2.9.0"  # the one FLARE whose private simulator this module was checked against


class InProcessClientRunner(SimulatorClientRunner):
    """FLARE's client runner, with each client's task worker in a thread instead of a process."""

    def do_one_task(self, client, num_of_threads, gpu, lock, timeout=60.0, task_name=RunnerTask.TASK_EXEC):
        parent_conn, child_conn = Pipe()
        args = argparse.Namespace(
            workspace=os.path.join(self.args.workspace, client.client_name),
            client=client.client_name,
            token=client.token,
            simulator_root=self.simulator_root,
            root_url=str(client.cell.get_root_url_for_child()),
            parent_url=str(client.cell.get_internal_listener_url()),
            task_name=str(task_name),
            gpu=gpu,
        )
        worker = threading.Thread(
            target=ClientTaskWorker().run,
            args=(args, child_conn),
            name=f"sim-{client.client_name}",
            daemon=True,
        )
        worker.start()
        deploy_args = copy.deepcopy(self.deploy_args)
        deploy_args.workspace = os.path.join(self.deploy_args.workspace, client.client_name)
        parent_conn.send(
            {
                SimulatorConstants.CLIENT_CONFIG: self.client_config,
                SimulatorConstants.DEPLOY_ARGS: deploy_args,
                # a copy per client: the shared build context is not written from many threads
                SimulatorConstants.BUILD_CTX: {**self.build_ctx, "client_name": client.client_name},
            }
        )
        try:
            while True:
                stop_run = parent_conn.recv()
                end_run_client = parent_conn.recv() if stop_run else None
                with lock:
                    same = num_of_threads == len(self.federated_clients)
                    next_client = client if same else self.get_next_run_client(gpu)
                if not stop_run and next_client.client_name == client.client_name:
                    parent_conn.send(True)
                else:
                    parent_conn.send(False)
                    break
            return stop_run, next_client, end_run_client
        except (EOFError, OSError) as exc:
            self.logger.error(f"in-process worker of {client.client_name} ended: {exc}")
            return True, None, client.client_name
        finally:
            worker.join(timeout=timeout)


class InProcessSimulatorRunner(SimulatorRunner):
    """:class:`SimulatorRunner` whose clients all run in its process, one thread each.

    Args:
        job_folder: the FLARE job to run (the same folder an admin submits in POC or production).
        workspace: the simulation workspace; it is wiped at start, as FLARE's simulator does.
        site_data: ``{site: data folder}``; each site's ``local/fedhealth_site.json`` points at its
            own folder, exactly as a hospital's setting does in POC and production.
        in_process: ``False`` runs FLARE's own client runner instead (the stock baseline).
        stock_threads: FLARE's worker threads when ``in_process`` is ``False``.
        extra_allow: class paths to allow besides the kit's (e.g. a test's widget).
    """

    def __init__(
        self,
        job_folder: str,
        workspace: str,
        site_data: dict[str, Path],
        *,
        in_process: bool = True,
        stock_threads: int = 4,
        extra_allow: list[str] | None = None,
    ) -> None:
        if not site_data:
            raise ValueError("site_data must name at least one site and its data folder.")
        names = list(site_data)
        super().__init__(
            job_folder=str(job_folder),
            workspace=str(workspace),
            clients=",".join(names),
            threads=len(names) if in_process else min(stock_threads, len(names)),
            max_clients=len(names),
        )
        self.site_data = {name: Path(folder).resolve() for name, folder in site_data.items()}
        self.in_process = in_process
        self.allow = check_entries([*shipped_allow_list(), *(extra_allow or [])])

    def setup(self) -> bool:
        """Install the kit's class allow-list (as provisioning does) before FLARE's set-up copies it."""
        local = Path(self.workspace) / "local"
        local.mkdir(parents=True, exist_ok=True)
        resources = {"format_version": 2, ALLOW_LIST_KEY: self.allow}  # the exact list, as provisioned
        (local / "resources.json.default").write_text(json.dumps(resources, indent=2))
        return super().setup()

    def _setup_local_startup(self, log_config_file_path, workspace):
        super()._setup_local_startup(log_config_file_path, workspace)
        site = os.path.basename(os.path.normpath(workspace))
        if site in self.site_data:
            settings = {SITE_DATA_ROOT_KEY: str(self.site_data[site])}
            (Path(workspace) / "local" / SITE_CONFIG_FILE).write_text(json.dumps(settings, indent=2))

    def client_run(self, server_custom_folder, clients, gpu):
        if not self.in_process:  # FLARE's own: a worker process per client (for the baseline)
            return super().client_run(server_custom_folder, clients, gpu)
        runner = InProcessClientRunner(
            server_custom_folder, self.args, clients, self.client_config, self.deploy_args, self.build_ctx
        )
        runner.run(gpu)
