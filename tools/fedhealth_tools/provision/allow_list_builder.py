"""Writes the exact class allow-list, the component guard and log streaming off into every kit.

With fedhealth installed at each site, jobs ship no code (no ``custom/`` folder), so they are not
BYOC jobs: FLARE builds only classes whose dotted path matches a ``class_allow_list`` entry in the
site's ``local/resources.json(.default)``. This builder, in the server's and every client's kit:

- REPLACES that list with exactly the classes the shipped jobs use
  (:mod:`fedhealth_tools.provision.allow_list`) plus the project file's explicit ``extra`` class
  paths. FLARE's default list goes: it admits file writers (``JsonStatsFileWriter``,
  ``FilePSIWriter``) and ``JobLogStreamer``, which a hospital should not accept from a stranger.
  A package prefix (an entry ending with ``.``) or ``*`` is refused: it admits every callable in
  the package, and FLARE 2.9 calls whatever a path names with the job's args;
- adds :class:`fedhealth.widgets.component_guard.ComponentGuard` to the kit's ``components`` (it
  refuses functions, modules, methods, aliases, private names and unsafe args at build time);
- sets ``allow_log_streaming`` false in every site kit, unless the site is named in
  ``stream_logs`` (FLARE's kits stream each job's ``error_log.txt`` to the server by default).

Place it after ``StaticFileBuilder`` (which writes the file) and before ``SignatureBuilder``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from nvflare.lighter.spec import Builder, Project, ProvisionContext

from fedhealth.policy.component_check import check_path
from fedhealth_tools.provision.allow_list import load

ALLOW_LIST_KEY = "class_allow_list"
LOG_STREAMING_KEY = "allow_log_streaming"
RESOURCE_FILES = ("resources.json.default", "resources.json")
GUARD = "fedhealth.widgets.component_guard.ComponentGuard"
GUARD_COMPONENT = {"id": "component_guard", "path": GUARD, "args": {}}
# What FLARE's SiteLogStreamer injects into every job of a site that streams its logs: such a site
# must allow it, or every job it runs fails to build.
JOB_LOG_STREAMER = "nvflare.app_common.logging.job_log_streamer.JobLogStreamer"


def check_entries(entries: Iterable[object]) -> list[str]:
    """The entries as a list, each a full dotted class path.

    Raises:
        ValueError: a package prefix (ends with ``.``), ``*``, a bare name or a non-string.
    """
    out = []
    for entry in entries:
        if not isinstance(entry, str) or entry.strip() != entry or not entry:
            raise ValueError(f"allow-list entry {entry!r} must be a dotted class path.")
        if entry == "*" or entry.endswith("."):
            raise ValueError(
                f"allow-list entry {entry!r} is a package prefix: it would admit every function in the "
                "package. Name each component class in full "
                "(e.g. fedhealth.filters.update_audit.UpdateAudit)."
            )
        if "." not in entry:
            raise ValueError(f"allow-list entry {entry!r} must be a full class path such as a.b.Class.")
        out.append(entry)
    return out


def check_classes(entries: Iterable[str]) -> None:
    """Import each entry (calling nothing) and refuse what the site's guard would refuse.

    Raises:
        ValueError: an entry that is not a component class at its canonical path, with why.
    """
    problems = [f"{entry}: {'; '.join(reasons)}" for entry in entries if (reasons := check_path(entry))]
    if problems:
        raise ValueError("allow-list entries that are not component classes:\n  " + "\n  ".join(problems))


def site_resources(resources: Mapping, allow: list[str], *, stream_logs: bool | None) -> dict:
    """One kit's resources config: ``allow`` as its whole allow-list, the guard among its components.

    Args:
        resources: the kit's ``resources.json(.default)`` as provisioned.
        allow: the allow-list (replaces any list there).
        stream_logs: a site's ``allow_log_streaming``; None (the server) leaves the key as it is.
            A site that streams also allows :data:`JOB_LOG_STREAMER`, which FLARE injects into its jobs.
    """
    out = dict(resources)
    out[ALLOW_LIST_KEY] = (
        [*allow, JOB_LOG_STREAMER] if stream_logs and JOB_LOG_STREAMER not in allow else list(allow)
    )
    components = [c for c in out.get("components", []) if c.get("path") != GUARD]
    out["components"] = [*components, dict(GUARD_COMPONENT)]
    if stream_logs is not None:
        out[LOG_STREAMING_KEY] = bool(stream_logs)
    return out


class AllowListBuilder(Builder):
    """The exact allow-list, the component guard and log streaming off in every server/client kit.

    Args:
        extra: class paths to allow besides the shipped jobs' (e.g. a drill filter a test federation
            uses); each must be a full path to a component class.
        stream_logs: sites that stream their job error logs to the server (none by default).
    """

    def __init__(self, extra: list[str] | None = None, stream_logs: list[str] | None = None) -> None:
        self.extra = check_entries(extra or [])
        check_classes(self.extra)
        self.stream_logs = set(stream_logs or [])
        self.allow = list(dict.fromkeys([*check_entries(load()), *self.extra]))  # in order, once each

    def streams_logs(self, site: str) -> bool:
        """Whether ``site`` streams its job error logs to the server."""
        return site in self.stream_logs

    def initialize(self, project: Project, ctx: ProvisionContext) -> None:
        unknown = sorted(self.stream_logs - {c.name for c in project.get_clients()})
        if unknown:
            raise ValueError(f"stream_logs names {unknown}, which are not clients of project {project.name}.")

    def build(self, project: Project, ctx: ProvisionContext) -> None:
        server = project.get_server()
        kits = [(server, None)] if server is not None else []
        kits += [(client, self.streams_logs(client.name)) for client in project.get_clients()]
        for participant, stream in kits:
            local = Path(ctx.get_local_dir(participant))
            for name in RESOURCE_FILES:
                path = local / name
                if path.is_file():
                    resources = json.loads(path.read_text())
                    path.write_text(
                        json.dumps(site_resources(resources, self.allow, stream_logs=stream), indent=4)
                    )
