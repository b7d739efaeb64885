"""Installs fedhealth's site policies into every startup kit at provisioning.

Extends :class:`~fedhealth_tools.provision.allow_list_builder.AllowListBuilder` (the exact class
allow-list, the component guard, log streaming off unless the site's policy says ``stream_logs:
true``) with the rest of what a hospital's IT security signs off on, in each kit's ``local/`` folder:

- ``authorization.json.default``: FLARE's role policy with BYOC off for every role (a job that
  ships ``custom/`` code is refused), unless the site's policy says ``byoc: true``, and no shell
  commands for the ``lead`` role (``lead_shell_commands: true`` gives them back: a consortium's
  explicit choice, since ``cat``/``head`` read files in the kit folder, data included);
- ``privacy.json``: the site's privacy scopes (filters applied to every job under the scope) and
  its default scope;
- ``resources.json.default``: the GPU resource manager sized from the participant's ``capacity``
  (none for a CPU-only site);
- ``fedhealth_site.json.default``: the site's limits, the floor under every train request (batch
  size, examples per round, learning rate, DP, ``submit_model``), which the hospital's own
  ``fedhealth_site.json`` overrides key by key.

Place it after ``StaticFileBuilder``/``CertBuilder``/``HEBuilder`` and before ``SignatureBuilder``
(which, in kits with HE contexts, signs ``startup/`` and ``local/``). The math of the filters is in
:mod:`fedhealth.policy`; the files are built by :mod:`fedhealth_tools.policy.site_policy`.
"""

from __future__ import annotations

import json
from pathlib import Path

from nvflare.apis.fl_constant import AdminCommandNames
from nvflare.lighter.spec import Project, ProvisionContext
from nvflare.security.security import COMMAND_CATEGORIES

from fedhealth.constants import SITE_CONFIG_DEFAULT_FILE
from fedhealth_tools.policy.site_policy import (
    RIGHTS,
    add_removed_sites,
    authorization_policy,
    privacy_policy,
    site_limits_file,
    size_resources,
)
from fedhealth_tools.provision.allow_list_builder import AllowListBuilder

AUTHZ_FILE = "authorization.json.default"
PRIVACY_FILE = "privacy.json"
RESOURCES_FILE = "resources.json.default"
LIMITS_FILE = SITE_CONFIG_DEFAULT_FILE
POLICY_KEYS = {"scopes", "default_scope", "byoc", "stream_logs"}


class SitePolicyBuilder(AllowListBuilder):
    """Allow-list, BYOC, privacy scopes and GPU resources for each site kit.

    Args:
        scopes: the project's privacy scopes: name -> ``{"task_data_filters": [...],
            "task_result_filters": [...], "properties": {...}}``.
        default: the policy of a site not named in ``sites``: ``{"scopes": [...],
            "default_scope": ..., "byoc": false, "stream_logs": false}`` (``stream_logs``: the
            site streams each job's ``error_log.txt`` to the server; off unless set).
        sites: site name -> its own policy (same keys; missing keys come from ``default``).
        server_byoc: whether the server accepts jobs with custom code (default no).
        removed: participants removed from the federation: the server refuses their registration
            (:class:`fedhealth.widgets.removed_sites.RemovedSites`; certificates cannot be revoked).
        extra: class paths allowed besides the shipped jobs' (see :class:`AllowListBuilder`).
        lead_shell_commands: give the ``lead`` role FLARE's default shell commands (``ls``, ``cat``,
            ``head``, ... on its own organisation's sites) back, in every kit. Off by default.
        limits: the sites' limits: ``{"default": {...}, "scopes": {scope: {...}}, "sites": {site:
            {...}}}``, written to each site's ``local/fedhealth_site.json.default``
            (:func:`fedhealth_tools.policy.site_policy.site_limits_file`; the kit's defaults where unset).
    """

    def __init__(
        self,
        scopes: dict | None = None,
        default: dict | None = None,
        sites: dict | None = None,
        server_byoc: bool = False,
        removed: list[str] | None = None,
        extra: list[str] | None = None,
        lead_shell_commands: bool = False,
        limits: dict | None = None,
    ) -> None:
        super().__init__(extra=extra)
        self.lead_shell_commands = bool(lead_shell_commands)
        self.limits = dict(limits or {})
        site_limits_file(self.limits, "")  # fail early on a bad limits section
        self.scopes = dict(scopes or {})
        self.default = {
            "scopes": [],
            "default_scope": None,
            "byoc": False,
            "stream_logs": False,
            **(default or {}),
        }
        self.sites = {name: dict(policy or {}) for name, policy in (sites or {}).items()}
        self.server_byoc = bool(server_byoc)
        self.removed = list(removed or [])
        for name, policy in [("default", self.default), *self.sites.items()]:
            extra_keys = sorted(set(policy) - POLICY_KEYS)
            if extra_keys:
                raise ValueError(
                    f"Site policy {name!r} has unknown key(s) {extra_keys}; use {sorted(POLICY_KEYS)}."
                )
            merged = {**self.default, **policy}
            if not isinstance(merged["stream_logs"], bool):
                raise ValueError(f"Site policy {name!r}: stream_logs must be true or false.")
            privacy_policy(self.scopes, list(merged["scopes"]), merged["default_scope"])  # fail early

    def policy_for(self, site: str) -> dict:
        """The effective policy of ``site`` (its own keys over the default)."""
        return {**self.default, **self.sites.get(site, {})}

    def streams_logs(self, site: str) -> bool:
        return bool(self.policy_for(site)["stream_logs"])

    def initialize(self, project: Project, ctx: ProvisionContext) -> None:
        super().initialize(project, ctx)
        clients = {c.name for c in project.get_clients()}
        unknown = sorted((set(self.sites) | set(self.limits.get("sites") or {})) - clients)
        if unknown:
            raise ValueError(
                f"SitePolicyBuilder: site(s) {unknown} are not clients of project {project.name}."
            )
        for site in clients:
            site_limits_file(self.limits, site)

    def build(self, project: Project, ctx: ProvisionContext) -> None:
        super().build(project, ctx)  # the class allow-list, the guard, log streaming
        shell = self.lead_shell_commands
        server = project.get_server()
        if server is not None:
            local = Path(ctx.get_local_dir(server))
            _edit(
                local / AUTHZ_FILE,
                lambda base: authorization_policy(
                    base, byoc=self.server_byoc, lead_shell_commands=shell, rights=flare_rights()
                ),
            )
            if self.removed:
                _edit(local / RESOURCES_FILE, lambda res: add_removed_sites(res, self.removed))
        for client in project.get_clients():
            local = Path(ctx.get_local_dir(client))
            policy = self.policy_for(client.name)
            _edit(
                local / AUTHZ_FILE,
                lambda base, p=policy: authorization_policy(
                    base, byoc=bool(p["byoc"]), lead_shell_commands=shell, rights=flare_rights()
                ),
            )
            privacy = privacy_policy(self.scopes, list(policy["scopes"]), policy["default_scope"])
            (local / PRIVACY_FILE).write_text(json.dumps(privacy, indent=2))
            _edit(local / RESOURCES_FILE, lambda res, c=client: size_resources(res, c.get_prop("capacity")))
            limits = site_limits_file(self.limits, client.name)
            (local / LIMITS_FILE).write_text(json.dumps(limits, indent=2))


def flare_rights() -> tuple[str, ...]:
    """Every right FLARE 2.9 checks: its command categories, and each command that has none."""
    commands = {v for k, v in vars(AdminCommandNames).items() if not k.startswith("_") and isinstance(v, str)}
    return tuple(sorted({*RIGHTS, *COMMAND_CATEGORIES.values(), *(commands - set(COMMAND_CATEGORIES))}))


def _edit(path: Path, change) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: put SitePolicyBuilder after StaticFileBuilder.")
    path.write_text(json.dumps(change(json.loads(path.read_text())), indent=2))
