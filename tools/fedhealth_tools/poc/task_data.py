"""The demo's data for any shipped job: read the task the job names, place that task's data per site.

``fedhealth demo --job JOB`` reads the task from the job's client config (``SiteExecutor``'s
``task``) and gives each POC site its own copy of that task's data: the heart rows of its hospital
(task ``heart``), its own export and mapping of the job's ``task_args["dataset"]`` (task
``tabular``: ``heart_disease`` in the hospital's dialect, or an ``indo_rct`` trial centre), or a
small, non-IID subset of the bundled PneumoniaMNIST written as DICOM files by the converter, with
its own simulated scanner (task ``dicom``). Nothing leaves a site's kit folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fedhealth.imaging.site import CXR_DATASET_DIR, SPLITS
from fedhealth.policy.site_limits import Limits
from fedhealth_tools.imaging.converter import medmnist_file
from fedhealth_tools.poc.cxr_data import write_cxr_data
from fedhealth_tools.poc.tabular_data import write_tabular_data
from fedhealth_tools.poc.workspace import (
    LOCAL_DATA,
    PocError,
    PocLayout,
    sites_with_own_data,
    write_heart_rows,
)

EXECUTOR = "fedhealth.executors.site_executor.SiteExecutor"
DEMO_TASKS = ("heart", "dicom", "tabular")
DEMO_IMAGES = 400  # images per split (train, val, test) dealt over the sites: ~100 a site, seconds a round
DEMO_ALPHA = 1.0  # Dirichlet label skew of the demo's chest X-ray sites (moderate)


def job_task(job_dir: Path) -> tuple[str, dict]:
    """The task a job's sites train on and its ``task_args``, from ``app*/config/config_fed_client.json``.

    Raises:
        PocError: no site executor in the job, or apps that name different tasks.
    """
    found = {}
    for path in sorted(Path(job_dir).glob("app*/config/config_fed_client.json")):
        for entry in json.loads(path.read_text()).get("executors", []):
            executor = entry.get("executor", {})
            if executor.get("path") == EXECUTOR:
                args = executor.get("args", {})
                found[path.parent.parent.name] = (str(args.get("task")), dict(args.get("task_args", {})))
    if not found:
        raise PocError(f"{job_dir}: no app config names {EXECUTOR}; the demo cannot tell which data it needs")
    tasks = {task for task, _ in found.values()}
    if len(tasks) > 1:
        raise PocError(f"{job_dir}: its apps name different tasks ({sorted(tasks)}); the demo places one")
    return next(iter(found.values()))


def place_task_data(
    layout: PocLayout, job_dir: Path, *, images: int = DEMO_IMAGES, seed: int = 0
) -> tuple[str, str]:
    """Give every site of ``layout`` the data of the task ``job_dir`` names; returns ``(task, summary)``.

    Args:
        layout: the provisioned POC workspace.
        job_dir: the job the data is for.
        images: chest X-ray images per split over all sites (task ``dicom``; the converter's ``limit``).
        seed: seed of the chest X-ray split, scanners and DICOM UIDs.

    Raises:
        PocError: a task the demo has no data for, a site that points at its own data, or sites left
            with fewer images than the job's ``min_images`` or, in train, than a site's default
            ``min_examples_per_round`` (the message names the sites and says what to ask for).
    """
    task, task_args = job_task(job_dir)
    if task == "heart":
        sizes = write_heart_rows(layout)
        return task, ", ".join(f"{s} {tr}+{te}" for s, (tr, te) in sizes.items())
    if task == "tabular":
        sizes = write_tabular_data(layout, str(task_args.get("dataset", "")))
        return task, ", ".join(f"{s} {tr}+{te}" for s, (tr, te) in sizes.items())
    if task != "dicom":
        raise PocError(
            f"{Path(job_dir).name} trains task {task!r}; the demo has data for {', '.join(DEMO_TASKS)}. "
            "Run it with fedhealth up and each site's own data (--data SITE=PATH)."
        )
    sites_with_own_data(layout, needs="its chest X-rays")
    for site in layout.sites:  # a new subset: drop the files of an earlier conversion
        shutil.rmtree(layout.kit(site) / LOCAL_DATA / CXR_DATASET_DIR, ignore_errors=True)
    manifest = write_cxr_data(
        layout, medmnist_file("pneumoniamnist"), alpha=DEMO_ALPHA, seed=seed, limit=images
    )
    least = int(task_args.get("min_images", 1))
    floors = {
        split: max(least, Limits().min_examples_per_round) if split == "train" else least for split in SPLITS
    }
    short = [
        f"{site} {split} {info['counts'][split]['n']} < {floors[split]}"
        for site, info in manifest["sites"].items()
        for split in SPLITS
        if info["counts"][split]["n"] < floors[split]
    ]
    if short:
        raise PocError(
            f"{images} images per split leave sites too few ({', '.join(short)}: the job's min_images, and "
            "in train the sites' default min_examples_per_round); ask for more with --images."
        )
    counts = (
        f"{site} {'+'.join(str(info['counts'][split]['n']) for split in SPLITS)}"
        for site, info in manifest["sites"].items()
    )
    return task, ", ".join(counts)
