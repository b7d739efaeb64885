"""The task of in-memory sites: heart sites from ``HeartSite`` s, image sites from arrays.

The loop runs the tasks' own :class:`~fedhealth.tasks.base.Site` objects, the ones the FLARE executor
loads: :class:`~fedhealth.tasks.heart.HeartTaskSite` and :class:`~fedhealth.tasks.imaging.ImageSite`
(:meth:`~fedhealth.tasks.imaging.ImageSite.from_arrays` builds one from decoded arrays).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from fedhealth.tasks.base import Site, Task
from fedhealth.tasks.heart import HeartTask, HeartTaskSite
from fedhealth.tasks.imaging import ImageSite, ImagingTask
from fedhealth.training.heart_site import HeartSite


def heart_task_sites(sites: Sequence[HeartSite | HeartTaskSite]) -> tuple[HeartTask, list[HeartTaskSite]]:
    """The heart task and its sites for ``sites`` (``HeartSite`` s are seen through the task contract).

    Raises:
        ValueError: no sites, or sites that encode or scale their features differently.
    """
    if not sites:
        raise ValueError("the federation needs at least one site.")
    wrapped = [s if isinstance(s, HeartTaskSite) else HeartTaskSite(s) for s in sites]
    modes = {(s.site.scaling, s.site.chol_zero_as_missing) for s in wrapped}
    if len(modes) > 1:
        raise ValueError(f"the sites disagree on (scaling, chol_zero_as_missing): {sorted(modes)}.")
    scaling, chol = modes.pop()
    return HeartTask(scaling=scaling, chol_zero_as_missing=chol), wrapped


def image_task(sites: Sequence[ImageSite], model: nn.Module) -> ImagingTask:
    """The imaging task whose models are ``model``'s architecture for these sites' images and labels."""
    if not sites:
        raise ValueError("the federation needs at least one site.")
    spec = sites[0].spec
    arch = str(getattr(model, "arch", "small_cnn"))
    return ImagingTask(
        model=arch,
        label_task=spec.task,
        classes=list(spec.classes),
        positive_class=spec.positive_class,
        image_size=32 if arch == "densenet121" else 28,
        channels=int(sites[0].arrays("train")[0].shape[1]),
    )


def task_for(sites: Sequence[Site | HeartSite], model: nn.Module) -> tuple[Task, list[Site]]:
    """The task of ``sites`` (heart or images) and the sites as that task's own."""
    if sites and all(isinstance(s, ImageSite) for s in sites):
        return image_task(sites, model), list(sites)  # type: ignore[arg-type]
    return heart_task_sites(sites)  # type: ignore[arg-type]
