"""FLARE's GPU resource manager, except that a site without GPUs accepts a GPU job and runs it on CPU.

FLARE 2.9 checks a job's ``meta.json`` ``resource_spec`` at each site before it schedules the job:
the job scheduler resolves ``{"@default": {"num_of_gpus": 1}}`` (or the site's own entry) into a
requirement, and the site's ``resource_manager`` (``GPUResourceManager`` in every provisioned kit,
with the project file's ``capacity``; ``num_of_gpus: 0`` where it names none, as in the POC) answers.
A site with no GPUs answers "not enough" to ``num_of_gpus: 1``; the job is scheduled only if enough
other sites answer yes (``min_clients``), and a four-site job with one CPU-only site never starts
(it waits in the queue with "not enough sites have enough resources").

:class:`GpuOrCpuResourceManager` is the same manager with one change: when the site manages no GPU
at all (``num_of_gpus: 0``), a GPU request is accepted with an empty reservation, so the job starts
and trains on the CPU (the kit's loops pick ``cuda`` only when torch sees one). A site with GPUs
behaves exactly as FLARE's: it reserves one (the consumer sets ``CUDA_VISIBLE_DEVICES``) and a job
waits while all its GPUs are busy. Kits get it through
:class:`fedhealth_tools.provision.gpu_fallback_builder.GpuFallbackBuilder`.
"""

from __future__ import annotations

import logging

from nvflare.app_common.resource_managers.gpu_resource_manager import GPUResourceManager

log = logging.getLogger(__name__)


class GpuOrCpuResourceManager(GPUResourceManager):
    """``GPUResourceManager`` whose GPU-less site runs GPU jobs on the CPU (same arguments)."""

    @property
    def cpu_only(self) -> bool:
        """True when this site manages no GPU."""
        return not self.resources

    def _check_required_resource_available(self, resource_requirement: dict) -> bool:
        if self.cpu_only and resource_requirement.get(self.num_gpu_key, 0):
            log.info(
                "the job asks for %s GPU(s); this site has none, so it will train on the CPU",
                resource_requirement[self.num_gpu_key],
            )
            return True
        return super()._check_required_resource_available(resource_requirement)

    def _reserve_resource(self, resource_requirement: dict) -> dict:
        if self.cpu_only:
            return {}
        return super()._reserve_resource(resource_requirement)
