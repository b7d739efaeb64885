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

import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.netlab.driver import MARK
from fedhealth_tools.netlab.profiles import DEFAULT_CONFIG, load_config, site_profiles
from fedhealth_tools.netlab.topology import SERVER_ADDRESS, NetlabError, Topology
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.task_data import DEMO_IMAGES, place_task_data
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
    project = yaml.safe_load(Path(project_file).read_text())
    for participant in project.get("participants", []):
        participant.pop("capacity", None)
    copy = workspace / "project_lab.yml"
    copy.write_text(yaml.safe_dump(project, sort_keys=False))
    prod_dir = run_provision(copy, workspace / "provision", server_host=SERVER_ADDRESS)
    return PocLayout(workspace, prod_dir, SERVER_ADDRESS, info["admin"], info["sites"], info["port"])


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


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
    """Run ``job_dir`` over the lab ``lab`` of ``config``; returns what happened.

    ``probe``: first measure each site's round-trip time and upload goodput to the server's address.

    Raises:
        NetlabError: the lab could not be built, a process died, or the job did not finish in time.
    """
    started = time.monotonic()
    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    profiles, labs = load_config(config)
    if lab not in labs:
        raise NetlabError(f"no lab {lab!r} in {config} (labs: {', '.join(labs)})")
    layout = provision_lab(project_file, workspace)
    chosen = site_profiles(labs[lab], profiles, layout.sites)
    if cut is not None and cut.site not in layout.sites:
        raise NetlabError(f"cannot cut {cut.site}: not a site of {project_file}")
    place_task_data(layout, job_dir, images=images, seed=seed)
    logs = workspace / "logs"
    with Topology(chosen, profiles[labs[lab].server], logs, seed=seed) as topo:
        probes = topo.probe_links() if probe else {}
        prefix = {layout.server: topo.exec_prefix(topo.server_ns)}
        prefix.update({site: topo.exec_prefix(link.netns) for site, link in topo.links.items()})
        with PocProcesses(
            layout, logs, prefix=prefix, listening=lambda port: _listening(topo.server_ns, port)
        ) as procs:
            procs.start(timeout=120)
            outcome, progress, cuts = _drive(topo, procs, layout, job_dir, workspace, cut, timeout)
            links = {site: topo.counters(site) for site in topo.links}
    result = Path(outcome["result"])
    record, cross = find_run_files(result)
    return LabRun(
        status=outcome["status"],
        job_id=outcome["job_id"],
        result=result,
        seconds=time.monotonic() - started,
        profiles={site: name for site, (name, _) in chosen.items()},
        links=links,
        report=build_report(Path(job_dir).name, record, cross),
        cuts=cuts,
        progress=progress,
        probes=probes,
    )


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
