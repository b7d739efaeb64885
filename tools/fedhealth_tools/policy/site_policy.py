"""The policy files fedhealth installs into a site kit, as plain data (FLARE-free).

- ``authorization.json``: FLARE's role/right policy with the ``byoc`` right switched off for every
  role (jobs that ship ``custom/`` code are refused), unless the site allows it, and no
  ``shell_commands`` for the ``lead`` role (FLARE's default gives a lead ``head``, ``cat``, ... on
  its own organisation's sites, which read files inside the kit folder, data included), unless the
  consortium gives them back explicitly.
- ``privacy.json``: named scopes, each a list of filters the site applies to every job that runs
  under it (the job's ``meta.json`` ``scope``, or the site's ``default_scope`` when it names none).
- ``resources.json``: the resource manager sized from the site's ``capacity`` (GPUs, memory per GPU);
  a CPU-only site gets a manager with no GPUs, so a job that asks for one is not scheduled there.
- ``fedhealth_site.json.default``: the site's limits (the floor under every train request:
  :mod:`fedhealth.policy.site_limits`), which the hospital's own ``fedhealth_site.json`` overrides
  key by key.

The ``strict`` scope's filters are ``ExcludeLayers`` (named layers never leave the site) and
``DPUpdate`` (each update clipped to a norm and released with Gaussian noise calibrated to it, ε in
the site's ledger); both remember the global model on the data chain, so both must be listed under
``task_data_filters`` as well as ``task_result_filters``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from fedhealth.constants import (
    SITE_CONFIG_DEFAULT_FILE,
    SITE_DP_MAX_EPSILON_KEY,
    SITE_LIMITS_KEY,
    SITE_SCOPE_LIMITS_KEY,
)
from fedhealth.policy.site_limits import Limits, SiteLimits

BYOC = "byoc"
SHELL = "shell_commands"
LEAD = "lead"
ANY = "any"
NONE = "none"
# Every right FLARE 2.9's default authorization policy names (lighter/templates/master_template.yml).
RIGHTS = (
    "submit_job",
    "clone_job",
    "manage_job",
    "download_job",
    "view",
    "operate",
    SHELL,
    BYOC,
    "server-predeployed-flwr",
)
EXCLUDE_LAYERS = "fedhealth.filters.exclude_layers.ExcludeLayers"
DP_UPDATE = "fedhealth.filters.dp_update.DPUpdate"
REMEMBERING_FILTERS = (EXCLUDE_LAYERS, DP_UPDATE)  # keep the received global model from the data chain
LIMITS_KEYS = {"default", "scopes", "sites"}
SITE_LIMIT_EXTRA = {"scopes", SITE_DP_MAX_EPSILON_KEY}  # what a site's entry may hold besides limits
GPU_MANAGER = "nvflare.app_common.resource_managers.gpu_resource_manager.GPUResourceManager"
GPU_CONSUMER = "nvflare.app_common.resource_consumers.gpu_resource_consumer.GPUResourceConsumer"
REMOVED_SITES = "fedhealth.widgets.removed_sites.RemovedSites"
CHAINS = ("task_data_filters", "task_result_filters")


def authorization_policy(
    base: Mapping, *, byoc: bool, lead_shell_commands: bool = False, rights: Sequence[str] = RIGHTS
) -> dict:
    """FLARE's authorization policy ``base`` with the ``byoc`` right of every role set.

    A role given ``"any"`` (all rights, e.g. ``project_admin``) is spelled out right by right so
    that ``byoc`` alone can be switched off: ``rights`` must then be every right FLARE checks (its
    command categories and every command without one, such as ``download_job_components``;
    :func:`fedhealth_tools.provision.site_policy_builder.flare_rights`), or the role loses those
    that are missing (FLARE evaluates a role's catch-all ``*`` before any single right, so
    ``{"*": "any", "byoc": "none"}`` would not switch ``byoc`` off).

    Args:
        base: FLARE's policy (``authorization.json.default`` as provisioned).
        byoc: whether every role may run jobs that ship code.
        lead_shell_commands: keep the ``lead`` role's ``shell_commands`` right as ``base`` has it
            (FLARE's default: on its own organisation's sites). Off unless a consortium chooses it.
    """
    policy = copy.deepcopy(dict(base))
    permissions = policy.get("permissions")
    if not isinstance(permissions, dict) or not permissions:
        raise ValueError("The authorization policy has no 'permissions' table of roles.")
    value = ANY if byoc else NONE
    for role, granted in list(permissions.items()):
        if isinstance(granted, str):
            granted = {right: granted for right in rights}
        granted = dict(granted)
        granted[BYOC] = value
        if role == LEAD and not lead_shell_commands:
            granted[SHELL] = NONE
        permissions[role] = granted
    return policy


def _check_filter(scope: str, chain: str, entry: Mapping) -> None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str) or "." not in entry["path"]:
        raise ValueError(
            f"Privacy scope {scope!r}: each entry of {chain} needs a dotted 'path' to a filter class, "
            f"got {entry!r}."
        )


def privacy_policy(scopes: Mapping[str, Mapping], names: list[str], default_scope: str | None) -> dict:
    """The ``privacy.json`` of one site: the named ``scopes`` out of the project's library.

    Args:
        scopes: scope name -> ``{"task_data_filters": [...], "task_result_filters": [...],
            "properties": {...}}`` (FLARE's scope format without the name; each filter is
            ``{"path": ..., "args": {...}}``).
        names: the scopes this site offers; a job naming any other scope is refused by the site.
        default_scope: the scope for jobs that name none (None: no filters for those).

    Raises:
        ValueError: an unknown scope, a default not offered, a malformed filter, or an
            ``ExcludeLayers`` on the result chain that is not on the data chain too.
    """
    unknown = sorted(set(names) - set(scopes))
    if unknown:
        raise ValueError(
            f"Site policy names scope(s) {unknown} that the project does not define ({sorted(scopes)})."
        )
    if default_scope is not None and default_scope not in names:
        raise ValueError(f"default_scope {default_scope!r} is not one of the site's scopes {names}.")
    out = []
    for name in names:
        spec = dict(scopes[name] or {})
        extra = sorted(set(spec) - {*CHAINS, "properties"})
        if extra:
            raise ValueError(
                f"Privacy scope {name!r} has unknown key(s) {extra}; use {[*CHAINS, 'properties']}."
            )
        scope: dict = {"name": name, "properties": dict(spec.get("properties") or {})}
        for chain in CHAINS:
            entries = [dict(e) for e in spec.get(chain) or []]
            for entry in entries:
                _check_filter(name, chain, entry)
            scope[chain] = entries
        data_paths = {e["path"] for e in scope["task_data_filters"]}
        for path in REMEMBERING_FILTERS:
            if any(e["path"] == path for e in scope["task_result_filters"]) and path not in data_paths:
                raise ValueError(
                    f"Privacy scope {name!r}: {path.rsplit('.', 1)[-1]} must be in task_data_filters too (it "
                    "remembers the global model the site received)."
                )
        out.append(scope)
    policy: dict = {"scopes": out}
    if default_scope is not None:
        policy["default_scope"] = default_scope
    return policy


def size_resources(resources: Mapping, capacity: Mapping | None) -> dict:
    """A site's resources config with the GPU resource manager sized from ``capacity``.

    With ``capacity`` (``num_of_gpus`` > 0) the manager hands out that many GPUs of
    ``mem_per_gpu_in_GiB`` and the consumer sets ``CUDA_VISIBLE_DEVICES`` for each job. Without it
    the site is CPU-only: the manager has no GPUs (a job whose ``resource_spec`` asks for one is not
    scheduled there) and the consumer is removed.

    Raises:
        ValueError: capacity values that are not a whole number of GPUs >= 0 and memory >= 0.
    """
    out = copy.deepcopy(dict(resources))
    gpus = int((capacity or {}).get("num_of_gpus", 0))
    mem = (capacity or {}).get("mem_per_gpu_in_GiB", 0)
    if gpus < 0 or not isinstance(mem, (int, float)) or mem < 0 or (gpus > 0 and mem <= 0):
        raise ValueError(
            f"capacity {dict(capacity or {})} must have num_of_gpus >= 0 and, "
            "with GPUs, mem_per_gpu_in_GiB > 0."
        )
    components = [c for c in out.get("components", []) if c.get("path") not in (GPU_MANAGER, GPU_CONSUMER)]
    manager = {
        "id": "resource_manager",
        "path": GPU_MANAGER,
        "args": {"num_of_gpus": gpus, "mem_per_gpu_in_GiB": mem if gpus else 0, "expiration_period": 300},
    }
    added = [manager]
    if gpus:
        added.append({"id": "resource_consumer", "path": GPU_CONSUMER, "args": {}})
    out["components"] = added + components
    return out


def add_removed_sites(resources: Mapping, sites: list[str]) -> dict:
    """The server's resources config with the participants in ``sites`` refused at registration."""
    out = copy.deepcopy(dict(resources))
    components = [c for c in out.get("components", []) if c.get("path") != REMOVED_SITES]
    components.append({"id": "removed_sites", "path": REMOVED_SITES, "args": {"sites": sorted(sites)}})
    out["components"] = components
    return out


def site_limits_file(limits: Mapping | None, site: str) -> dict:
    """The ``local/fedhealth_site.json.default`` of ``site`` from the project's ``limits`` section.

    Args:
        limits: ``{"default": {limit: value, "dp_max_epsilon": x}, "scopes": {scope: {limit: value}},
            "sites": {site: {limit: value, "scopes": {...}, "dp_max_epsilon": x}}}`` (every part
            optional; a site's entry wins over ``default``). The file spells out every limit (the
            kit's defaults where the project says nothing), so a hospital reads its floor in its kit.

    Raises:
        ValueError: an unknown key, or a value :mod:`fedhealth.policy.site_limits` would refuse (the
            message names the site and the key).
    """
    limits = dict(limits or {})
    unknown = sorted(set(limits) - LIMITS_KEYS)
    if unknown:
        raise ValueError(f"SitePolicyBuilder limits: unknown key(s) {unknown}; use {sorted(LIMITS_KEYS)}.")
    default = dict(limits.get("default") or {})
    own = dict((limits.get("sites") or {}).get(site) or {})
    base = asdict(Limits())
    for layer in (default, own):
        base.update({k: v for k, v in layer.items() if k not in SITE_LIMIT_EXTRA})
    scopes: dict[str, dict] = {}
    for source in (limits.get("scopes") or {}, own.get("scopes") or {}):
        for scope, values in source.items():
            scopes[scope] = {**scopes.get(scope, {}), **dict(values or {})}
    content: dict = {SITE_LIMITS_KEY: base}
    if scopes:
        content[SITE_SCOPE_LIMITS_KEY] = scopes
    cap = own.get(SITE_DP_MAX_EPSILON_KEY, default.get(SITE_DP_MAX_EPSILON_KEY))
    if cap is not None:
        content[SITE_DP_MAX_EPSILON_KEY] = cap
    try:
        SiteLimits.from_layers([(f"project limits of site {site} ({SITE_CONFIG_DEFAULT_FILE})", content)])
    except ValueError as exc:
        raise ValueError(f"SitePolicyBuilder limits: {exc}") from exc
    return content
