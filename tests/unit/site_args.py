"""SiteExecutor arguments from the settings the executor tests speak in (heart and imaging defaults).

The tests were written against per-dataset executors; these helpers say the same runs in the one
executor's terms (task, task_args, algorithms), so each test keeps its table of cases.
"""

from __future__ import annotations

LOCAL = (
    "batch_size",
    "local_steps",
    "local_epochs",
    "optimizer",
    "weight_decay",
    "seed",
    "n_bootstrap",
    "stream_metrics",
)
HEART_TASK = ("scaling", "chol_zero_as_missing")
IMAGE_TASK = (
    "model",
    "label_task",
    "classes",
    "positive_class",
    "operating_point",
    "image_size",
    "channels",
    "intensity",
    "min_images",
    "augment",
)


def _common(kw: dict, task: str, task_keys: tuple[str, ...], defaults: dict) -> dict:
    kw = dict(kw)
    algorithms = []
    mu = kw.pop("mu", 0.0)
    if mu:
        algorithms.append({"name": "fedprox", "args": {"mu": mu}})
    if "lr" in kw or "gamma" in kw:
        algorithms.append({"name": "scaffold", "args": {"lr": kw.pop("lr"), "gamma": kw.pop("gamma", 1.0)}})
    if "ditto_lambda" in kw:
        args = {"lam": kw.pop("ditto_lambda")}
        for old, new in (("ditto_lr", "lr"), ("ditto_epochs", "epochs")):
            if old in kw:
                args[new] = kw.pop(old)
        algorithms.append({"name": "ditto", "args": args})
    dp = kw.pop("dp", None)
    if dp:
        algorithms.append({"name": "dp_sgd", "args": dp})
    if kw.pop("send_weight_diff", False):
        algorithms.append(
            {"name": "topk", "args": {"k_fraction": 1.0, "error_feedback": False, "value_dtype": "float32"}}
        )
    task_args = {k: kw.pop(k) for k in task_keys if k in kw}
    out = {**defaults, "task": task, "task_args": task_args, "algorithms": algorithms}
    out.update({k: kw.pop(k) for k in LOCAL if k in kw})
    out.update(kw)  # anything left is passed as is (the executor refuses what it does not take)
    return out


def heart(**kw: object) -> dict:
    """The heart task's executor arguments."""
    return _common(kw, "heart", HEART_TASK, {})


def cxr(**kw: object) -> dict:
    """The imaging task's executor arguments (the imaging jobs' defaults: batch 64, Adam)."""
    return _common(kw, "dicom", IMAGE_TASK, {"batch_size": 64, "optimizer": "adam"})
