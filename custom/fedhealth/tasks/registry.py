"""Tasks registered by name: a job says ``"task": "heart"`` and its ``task_args``.

Only classes registered here can be built from a job, so a job cannot name arbitrary code (a job config
is code-equivalent; see :mod:`fedhealth.policy.component_check`). A new dataset registers its task class
with :func:`register_task` in its own module and is listed in :data:`BUILTIN`; ``docs/extending.md``
walks through it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping

from fedhealth.tasks.base import Task

# Name -> module that registers it on import (imported only when a job names the task).
BUILTIN: dict[str, str] = {
    "heart": "fedhealth.tasks.heart",
    "dicom": "fedhealth.tasks.imaging",
}
_REGISTRY: dict[str, type] = {}


def register_task(name: str):
    """Class decorator: register a task class (a dataclass whose fields are its job arguments)."""

    def decorate(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(
                f"task {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})."
            )
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return decorate


def task_names() -> list[str]:
    """Every task a job may name."""
    return sorted(set(BUILTIN) | set(_REGISTRY))


def build_task(name: str, args: Mapping[str, object] | None = None) -> Task:
    """The task ``name`` with the job's ``task_args``; unknown names and arguments are errors.

    Raises:
        ValueError: an unknown task, or an argument the task does not take (listing those it does).
    """
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}.")
    return build_options(cls, args or {}, what=f"task {name!r}")


def build_options(cls: type, args: Mapping[str, object], *, what: str):
    """``cls(**args)`` for a dataclass, with unknown keys named (a typo is an error, not ignored)."""
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ValueError(
            f"{what} has no argument {', '.join(map(repr, unknown))}; it takes: {', '.join(known)}."
        )
    return cls(**args)
