"""The kit's heart and CXR jobs as Flower apps in Flower's deployment engine, as real processes.

``.venv-flower/bin/python -m fedhealth_tools.peers.flower_deploy --task heart --rounds 3 --out x.json``
starts a ``flower-superlink`` and one ``flower-supernode`` per site on 127.0.0.1 (free ports,
``--insecure`` on loopback, no dependency installation at run time), each SuperNode with its own
node config (``site-name``, ``site-root``: the site's folder, whose own setting names its data),
submits the FAB folder ``fedhealth/flower/apps/<task>`` (a ``pyproject.toml`` naming the installed
``fedhealth.flower.<task>`` apps) with ``flwr run``, waits for the ServerApp's results file, and
stops every process it started, in ``finally``. Workspaces (``FLWR_HOME``, logs) live under
``--work`` (inside the repository's ``workspace/``).

Reported: the app's results and the kit's timing summary of them (as
:mod:`fedhealth_tools.peers.flower_sim`), ``start_to_first_round_s`` (SuperLink start to the first
training round) and ``submit_to_first_round_s``, the peak of the summed resident memory of the
SuperLink, the SuperNodes and every process they start (Flower's app processes), and the bytes each
site receives and sends per round (the deflated Flower messages, without gRPC framing).
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from fedhealth_tools.peers.flower_sim import DEFAULT_WORK as _SIM_WORK
from fedhealth_tools.peers.measure import summary, write_report
from fedhealth_tools.peers.meters import LinkBytes, TreeMemory
from fedhealth_tools.peers.sites import JOBS, write_sites
from fedhealth_tools.poc.processes import free_port

ROOT = Path(__file__).resolve().parents[3]
FABS = ROOT / "custom" / "fedhealth" / "flower" / "apps"
DEFAULT_WORK = _SIM_WORK.parent / "flower_deploy"
HOST = "127.0.0.1"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


class Deployment:
    """A SuperLink and its SuperNodes on 127.0.0.1; a context manager that stops them all."""

    def __init__(self, work: Path, sites: dict[str, Path]) -> None:
        self.work = Path(work)
        self.sites = sites
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = free_port()  # Flower 1.42: the Runtime, Control and Fleet HTTP APIs share one port
        self.home = self.work / "flwr_home"
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # flower-superexec
        self.env = {**os.environ, "FLWR_HOME": str(self.home), "OMP_NUM_THREADS": "1", "PATH": path}
        self.started: float | None = None

    def _start(self, name: str, command: list[str]) -> None:
        log = (self.work / "logs" / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.work,
            start_new_session=True,
        )

    def start(self) -> None:
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            '[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "{HOST}:{self.port}"\ninsecure = true\n'
        )
        self.started = time.time()
        self._start(
            "superlink",
            [
                _bin("flower-superlink"),
                "--insecure",
                "--disable-runtime-dependency-installation",
                "--host",
                HOST,
                "--port",
                str(self.port),
            ],
        )
        for name, folder in self.sites.items():
            node_config = (
                f"site-name={_toml_string(name)} site-root={_toml_string(str(Path(folder).resolve()))}"
            )
            self._start(
                f"supernode_{name}",
                [
                    _bin("flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"{HOST}:{self.port}",
                    "--host",
                    HOST,
                    "--port",
                    str(free_port()),
                    "--node-config",
                    node_config,
                ],
            )

    def check_alive(self) -> None:
        """Raise ``RuntimeError`` naming the log of a process that has ended."""
        for proc in self.procs.values():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(proc.args[:1])} ended with {proc.returncode}; logs in {self.work / 'logs'}"
                )

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Wait until the SuperLink's control API accepts connections."""
        deadline = time.time() + timeout_s
        while True:
            self.check_alive()
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"the SuperLink did not listen within {timeout_s} s") from None
                time.sleep(0.2)

    def submit(self, fab: Path, run_config: dict) -> float:
        """``flwr run`` the FAB folder with ``run_config``; returns the submission time."""
        pairs = " ".join(f"{k}={_toml_string(v) if isinstance(v, str) else v}" for k, v in run_config.items())
        submitted = time.time()
        done = subprocess.run(
            [_bin("flwr"), "run", str(fab), "local", "--run-config", pairs],
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        (self.work / "logs" / "flwr_run.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"flwr run failed ({done.returncode}): {(done.stdout + done.stderr)[-1500:]}")
        return submitted

    def roots(self, prefix: str = "") -> dict[str, int]:
        """Name -> pid of the processes started whose name starts with ``prefix`` (for the meters)."""
        return {name: proc.pid for name, proc in self.procs.items() if name.startswith(prefix)}

    def processes(self) -> list[psutil.Process]:
        out = []
        for proc in self.procs.values():
            try:
                out.append(psutil.Process(proc.pid))
            except psutil.Error:
                continue
        return out

    def stop(self) -> None:
        """Stop every process started and every process they started (Flower detaches its app runners).

        SIGTERM to all, then SIGKILL to what is left after 10 s.
        """
        tree: list[psutil.Process] = []
        for proc in self.processes():
            try:
                tree.extend([proc, *proc.children(recursive=True)])
            except psutil.Error:
                continue
        for proc in tree:
            try:
                proc.terminate()
            except psutil.Error:
                continue
        _, alive = psutil.wait_procs(tree, timeout=10)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                continue
        psutil.wait_procs(alive, timeout=5)
        for proc in self.procs.values():
            proc.poll()  # reap

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run(
    task: str,
    *,
    rounds: int = 0,
    out: Path | None = None,
    work: Path = DEFAULT_WORK,
    timeout_s: float = 1800,
    job_dir: Path | None = None,
) -> dict:
    """Run ``task``'s kit job as Flower apps on a local SuperLink and 4 SuperNodes; returns the results.

    ``job_dir``: another job folder of the same task to read the settings from (e.g. a wider model).

    Raises:
        RuntimeError: a process ended, ``flwr run`` failed, or no results came within ``timeout_s``.
    """
    work = Path(work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    folders = write_sites(task, 4, work / "sites")
    results_file = work / "results.json"
    with Deployment(work, folders) as deployment:
        deployment.start()
        deployment.wait_ready()
        sites = lambda: deployment.roots("supernode_")  # noqa: E731
        with TreeMemory(deployment.roots) as memory, LinkBytes(sites, {deployment.port}) as links:
            submitted = deployment.submit(
                FABS / task,
                {
                    "results": str(results_file),
                    "num-rounds": int(rounds),
                    "min-sites": len(folders),
                    **({"job-dir": str(Path(job_dir).resolve())} if job_dir else {}),
                },
            )
            deadline = time.time() + timeout_s
            while not results_file.is_file():
                deployment.check_alive()
                if time.time() > deadline:
                    raise RuntimeError(f"no results within {timeout_s} s; logs in {work / 'logs'}")
                time.sleep(0.5)
        time.sleep(0.2)  # the file is written in one call; let it close
        results = json.loads(results_file.read_text())
    first = results["round_times"][0]["started"] if results["round_times"] else None
    report = {
        "framework": "flower",
        "flwr": __import__("flwr").__version__,
        "engine": "deployment",
        "task": task,
        "job": results["job"],
        "wall_s": results["ended"] - deployment.started,
        "start_to_first_round_s": None if first is None else first - deployment.started,
        "submit_to_first_round_s": None if first is None else first - submitted,
        "peak_mem_mb": memory.result()["peak_total_mb"],
        "peak_mem_by_process_mb": memory.result()["peak_mb"],
        "wire_bytes": links.result(),
        **summary(results),
        "load_avg": os.getloadavg(),
        "results": results,
    }
    return write_report(report, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(JOBS), default="heart")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (0: the job's)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--job-dir", type=Path, default=None, help="a variant of the task's job folder")
    args = parser.parse_args(argv)
    report = run(args.task, rounds=args.rounds, out=args.out, work=args.work, job_dir=args.job_dir)
    print(json.dumps({k: v for k, v in report.items() if k not in ("results", "per_round")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
