"""One job over the network lab: production kits, each host in its own namespace, shaped links.

:func:`run_in_lab` provisions the production project with the server at its lab address
(``fedhealth provision --server-host 10.77.0.1``: real certificates for that address), gives each
hospital its data, builds the lab (:class:`~fedhealth_tools.netlab.topology.Topology`), starts the
server and each site from its kit inside its own namespace (sites connect out to the server; nothing
listens at a site), runs the job as the project admin from the admin's namespace
(:mod:`fedhealth_tools.netlab.driver`), optionally cuts a site's link for a while mid-job, and
removes everything it made on the way out, on an error too.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.netlab.driver import MARK
from fedhealth_tools.netlab.profiles import DEFAULT_CONFIG, load_config, site_profiles
from fedhealth_tools.netlab.topology import SERVER_ADDRESS, NetlabError, Topology
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.task_data import DEMO_IMAGES, place_task_data
from fedhealth_tools.poc.variants import project_allowing, project_without_gpus
from fedhealth_tools.poc.workspace import PocLayout, read_project
from fedhealth_tools.provision.kits import run_provision


@dataclass(frozen=True)
class LinkCut:
    """Cut ``site``'s link (100 % loss both ways) when round ``at_round`` starts, for ``seconds``."""

    site: str
    at_round: int
    seconds: float


@dataclass
class LabRun:
    """What a lab run did: the job's status and result, the links' counters and the cut's times."""

    status: str
    job_id: str
    result: Path
    seconds: float
    profiles: dict[str, str]
    links: dict[str, dict]
    report: dict
    cuts: list[dict] = field(default_factory=list)
    progress: list[dict] = field(default_factory=list)
    probes: dict[str, dict] = field(default_factory=dict)


def _listening(netns: str, port: int) -> bool:
    proc = subprocess.run(
        ["ss", "-N", netns, "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=30
    )
    return bool(proc.stdout.strip())


def provision_lab(project_file: Path, workspace: Path) -> PocLayout:
    """Production kits for the lab: the project's participants, the server named by its lab address.

    The lab's hosts share this machine's CPUs and have no GPU, so each site's ``capacity`` (its GPUs)
    is left out of the copy that is provisioned; everything else is the project file's.
    """
    info = read_project(project_file)
    copy = project_without_gpus(project_file, workspace / "project_lab.yml")
    prod_dir = run_provision(copy, workspace / "provision", server_host=SERVER_ADDRESS)
    return PocLayout(workspace, prod_dir, SERVER_ADDRESS, info["admin"], info["sites"], info["port"])


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


class Lab:
    """A running lab federation: provisioned, namespaces and links up, server and sites started.

    ``with Lab(...) as lab: lab.run(job)`` runs jobs one after another on the same federation (the
    links' counters are read before and after each, so a run's bytes are its own); leaving the block
    stops every process and removes every namespace, on an error too.

    Args:
        workspace: the kits, logs and downloads (inside the checkout, git-ignored).
        project_file: the production project (``project.yml``).
        lab: the lab of ``config`` that gives each link its profile.
        allow: extra classes the kits' allow-list accepts (the fault drills' straggler filter).
        probe: measure each site's round-trip time and upload goodput before the federation starts.
    """

    def __init__(
        self,
        *,
        workspace: Path,
        project_file: Path,
        lab: str = "consortium",
        config: Path = DEFAULT_CONFIG,
        seed: int = 0,
        allow: list[str] | None = None,
        probe: bool = False,
    ) -> None:
        self.workspace = Path(workspace).resolve()
        self.project_file = Path(project_file)
        self.seed = seed
        self.allow = list(allow or [])
        self.probe = probe
        self.profiles, labs = load_config(config)
        if lab not in labs:
            raise NetlabError(f"no lab {lab!r} in {config} (labs: {', '.join(labs)})")
        self.lab = labs[lab]
        self.probes: dict[str, dict] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Lab:
        self.workspace.mkdir(parents=True, exist_ok=True)
        project = self.project_file
        if self.allow:
            project = project_allowing(project, self.workspace / "project_allowing.yml", self.allow)
        self.layout = provision_lab(project, self.workspace)
        self.chosen = site_profiles(self.lab, self.profiles, self.layout.sites)
        logs = self.workspace / "logs"
        try:
            self.topo = self._stack.enter_context(
                Topology(self.chosen, self.profiles[self.lab.server], logs, seed=self.seed)
            )
            self.probes = self.topo.probe_links() if self.probe else {}
            prefix = {self.layout.server: self.topo.exec_prefix(self.topo.server_ns)}
            prefix.update({site: self.topo.exec_prefix(link.netns) for site, link in self.topo.links.items()})
            server_ns = self.topo.server_ns
            self.procs = self._stack.enter_context(
                PocProcesses(
                    self.layout, logs, prefix=prefix, listening=lambda port: _listening(server_ns, port)
                )
            )
            self.procs.start(timeout=120)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def run(
        self, job_dir: Path, *, cut: LinkCut | None = None, timeout: float = 900.0, images: int = DEMO_IMAGES
    ) -> LabRun:
        """Place the job's data at each site, run it as the project admin, return what happened."""
        started = time.monotonic()
        if cut is not None and cut.site not in self.layout.sites:
            raise NetlabError(f"cannot cut {cut.site}: not a site of {self.project_file}")
        place_task_data(self.layout, job_dir, images=images, seed=self.seed)
        before = {site: self.topo.counters(site) for site in self.topo.links}
        outcome, progress, cuts = _drive(
            self.topo, self.procs, self.layout, job_dir, self.workspace, cut, timeout
        )
        after = {site: self.topo.counters(site) for site in self.topo.links}
        result = Path(outcome["result"])
        try:
            record, cross = find_run_files(result)
        except (FileNotFoundError, ValueError) as exc:
            raise NetlabError(
                f"job {outcome['job_id']} ended {outcome['status']} without a run record ({exc}); "
                f"the server's and sites' logs are in {self.workspace / 'logs'}"
            ) from exc
        return LabRun(
            status=outcome["status"],
            job_id=outcome["job_id"],
            result=result,
            seconds=time.monotonic() - started,
            profiles={site: name for site, (name, _) in self.chosen.items()},
            links={site: _difference(before[site], after[site]) for site in after},
            report=build_report(Path(job_dir).name, record, cross),
            cuts=cuts,
            progress=progress,
            probes=self.probes,
        )


def _difference(before: dict, after: dict) -> dict:
    """A link's counters over one job: ``after`` minus ``before``, per direction (``queued``: as after)."""
    return {
        way: {key: after[way][key] - (0 if key == "queued" else before[way][key]) for key in after[way]}
        for way in after
    }


def run_in_lab(
    job_dir: Path,
    *,
    workspace: Path,
    project_file: Path,
    lab: str = "consortium",
    config: Path = DEFAULT_CONFIG,
    cut: LinkCut | None = None,
    timeout: float = 900.0,
    images: int = DEMO_IMAGES,
    seed: int = 0,
    probe: bool = False,
) -> LabRun:
    """Run one job over the lab ``lab`` of ``config`` (a :class:`Lab` for that job alone).

    Raises:
        NetlabError: the lab could not be built, a process died, or the job did not finish in time.
    """
    with Lab(
        workspace=workspace, project_file=project_file, lab=lab, config=config, seed=seed, probe=probe
    ) as run:
        return run.run(job_dir, cut=cut, timeout=timeout, images=images)


def _drive(
    topo: Topology,
    procs: PocProcesses,
    layout: PocLayout,
    job_dir: Path,
    workspace: Path,
    cut: LinkCut | None,
    timeout: float,
) -> tuple[dict, list[dict], list[dict]]:
    """The driver in the admin's namespace; reacts to its progress lines (the link cut)."""
    spec = {
        "root": str(layout.root),
        "prod_dir": str(layout.prod_dir),
        "server": layout.server,
        "admin": layout.admin,
        "sites": list(layout.sites),
        "port": layout.port,
    }
    command = [
        *topo.exec_prefix(topo.admin_ns), sys.executable, "-m", "fedhealth_tools.netlab.driver",
        "--layout", json.dumps(spec), "--job", str(Path(job_dir).resolve()),
        "--workspace", str(workspace), "--timeout", str(timeout),
    ]  # fmt: skip
    with open(workspace / "logs" / "driver.log", "wb") as err:
        driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(driver.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + timeout + 180
    progress: list[dict] = []
    cuts: list[dict] = []
    try:
        while True:
            procs.check_alive()
            if cuts and "restored" not in cuts[-1] and time.monotonic() >= cuts[-1]["until"]:
                topo.set_link(cut.site, loss=topo.links[cut.site].profile.loss)  # type: ignore[union-attr]
                cuts[-1]["restored"] = time.monotonic()
            if time.monotonic() > deadline:
                raise NetlabError(f"the job did not finish within {timeout:.0f} s (driver log: {err.name})")
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                raise NetlabError(f"the admin driver ended without a result (see {err.name})")
            if not line.startswith(MARK):
                continue
            message = json.loads(line[len(MARK) :])
            if "error" in message:
                raise NetlabError(f"the admin driver failed: {message['error']}")
            if "progress" in message:
                current = (message["progress"] or {}).get("current_round")
                progress.append({"t": time.monotonic(), "current_round": current})
                if cut is not None and not cuts and current is not None and current >= cut.at_round:
                    topo.set_link(cut.site, loss=1.0)
                    now = time.monotonic()
                    cuts.append({"site": cut.site, "round": current, "cut": now, "until": now + cut.seconds})
            if "status" in message:
                if cuts and "restored" not in cuts[-1]:
                    topo.set_link(cut.site, loss=topo.links[cut.site].profile.loss)  # type: ignore[union-attr]
                    cuts[-1]["restored"] = time.monotonic()
                return message, progress, cuts
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait(timeout=10)
