"""Gives every site kit the resource manager that runs a GPU job on the CPU where the site has no GPU.

FLARE's provisioning writes ``nvflare...GPUResourceManager`` (sized from the project file's
``capacity``) into each client kit's ``local/resources.json.default``. A GPU-less site then refuses
any job whose ``resource_spec`` asks a GPU, and a job that needs every site never starts. This
builder swaps the class for :class:`fedhealth.resources.gpu_fallback.GpuOrCpuResourceManager`, same
arguments: a site with GPUs reserves one as before; a site without accepts the job and trains on CPU.

Place it after ``StaticFileBuilder`` (which writes the file) and before ``SignatureBuilder``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from nvflare.lighter.spec import Builder, Project, ProvisionContext

RESOURCE_FILES = ("resources.json.default", "resources.json")
RESOURCE_MANAGER_ID = "resource_manager"
FLARE_MANAGER = "nvflare.app_common.resource_managers.gpu_resource_manager.GPUResourceManager"
FALLBACK_MANAGER = "fedhealth.resources.gpu_fallback.GpuOrCpuResourceManager"


def with_gpu_fallback(resources: Mapping) -> dict:
    """A kit's resources config with FLARE's GPU resource manager replaced by the CPU-fallback one.

    Raises:
        ValueError: the kit has no ``resource_manager`` component, or one of another class (a
            site's own manager is not replaced silently).
    """
    out = dict(resources)
    components = [dict(c) for c in out.get("components", [])]
    managers = [c for c in components if c.get("id") == RESOURCE_MANAGER_ID]
    if len(managers) != 1 or managers[0].get("path") not in (FLARE_MANAGER, FALLBACK_MANAGER):
        found = [c.get("path") for c in managers]
        raise ValueError(
            f"expected one '{RESOURCE_MANAGER_ID}' component of class {FLARE_MANAGER}, found {found}"
        )
    managers[0]["path"] = FALLBACK_MANAGER
    out["components"] = components
    return out


class GpuFallbackBuilder(Builder):
    """Every client kit's ``resource_manager`` becomes :data:`FALLBACK_MANAGER` (arguments kept)."""

    def build(self, project: Project, ctx: ProvisionContext) -> None:
        for client in project.get_clients():
            local = Path(ctx.get_local_dir(client))
            for name in RESOURCE_FILES:
                path = local / name
                if path.is_file():
                    resources = with_gpu_fallback(json.loads(path.read_text()))
                    path.write_text(json.dumps(resources, indent=4))
