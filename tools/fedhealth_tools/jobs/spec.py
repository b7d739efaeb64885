"""Job folders from one spec per job family: defaults once, overrides per job (FLARE-free).

Each ``job_specs/<family>.json`` holds::

    {
      "family": "heart",
      "defaults": {"meta": {...}, "client": {...}, "server": {...}},
      "jobs": {"heart_fedavg": {}, "heart_fedprox": {"client": PATCH, "server": PATCH}}
    }

``defaults.meta``, ``.client`` and ``.server`` are a whole ``meta.json``,
``app/config/config_fed_client.json`` and ``config_fed_server.json``; a job's patch is merged into
them by :func:`fedhealth_tools.jobs.merge.merge` (objects merge, lists are replaced, component lists
are patched by id). An optional ``defaults.federation`` (the site count and how a round treats a
slow or missing site, :mod:`fedhealth_tools.jobs.federation`) is patched the same way; its values
replace each ``{"$federation": "min_clients"}`` reference in the job's files. An object
``{"$file": "dictionaries/x.json"}`` anywhere in a spec is that file's JSON (relative to the spec's
folder), inlined when the spec loads. ``meta.json``'s ``name`` is
always the job's name. :func:`write` writes the files (indent 2, the spec's key order, a trailing
newline) and nothing else: a job's ``README.md`` is hand-written. :func:`check` lists every way
the committed ``jobs/`` differ from what the specs generate; ``make jobs`` (``python -m
fedhealth_tools.jobs --write``) brings them back in line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedhealth_tools.jobs import federation
from fedhealth_tools.jobs.merge import SpecError, merge

REPO = Path(__file__).resolve().parents[3]
JOBS_DIR = REPO / "jobs"
SPECS_DIR = REPO / "job_specs"  # beside jobs/: every folder under jobs/ is a submittable job
WRITE_COMMAND = "make jobs"
# spec section -> the file it becomes, relative to the job folder
FILES = {
    "meta": "meta.json",
    "client": "app/config/config_fed_client.json",
    "server": "app/config/config_fed_server.json",
}
HAND_WRITTEN = ("README.md",)
INCLUDE = "$file"  # {"$file": "dictionaries/heart.json"}: that file's JSON, inlined when the spec loads


def dump(data: Any) -> str:
    """The one JSON formatting of generated files: indent 2, key order kept, trailing newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def load_family(path: Path) -> dict[str, Any]:
    """A family spec, checked for its three top-level keys.

    Raises:
        SpecError: the file is not JSON or lacks ``defaults`` sections or ``jobs``.
    """
    try:
        spec = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise SpecError(f"{path} is not valid JSON: {e}") from e
    defaults = spec.get("defaults") if isinstance(spec, dict) else None
    if not isinstance(defaults, dict) or set(defaults) - {federation.SECTION} != set(FILES):
        raise SpecError(
            f"{path}: 'defaults' must hold exactly {sorted(FILES)} (and optionally {federation.SECTION!r})."
        )
    if not isinstance(spec.get("jobs"), dict) or not spec["jobs"]:
        raise SpecError(f"{path}: 'jobs' must map each job name to its overrides.")
    return include_files(spec, Path(path).parent, where=Path(path).name)


def include_files(value: Any, folder: Path, *, where: str) -> Any:
    """``value`` with every ``{"$file": "rel/path.json"}`` replaced by that JSON file's data.

    The path is relative to ``folder`` (the spec's folder) and must stay inside it; an included
    file is inserted as it is (it may not include further files). A data dictionary is written
    once (``job_specs/dictionaries/``) and inlined into each job that uses it.

    Raises:
        SpecError: the object has keys besides ``$file``, or the file is missing, outside the
            folder or not JSON.
    """
    if isinstance(value, list):
        return [include_files(v, folder, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if INCLUDE not in value:
        return {k: include_files(v, folder, where=f"{where}.{k}") for k, v in value.items()}
    if set(value) != {INCLUDE} or not isinstance(value[INCLUDE], str):
        raise SpecError(f'{where}: an include is {{"{INCLUDE}": "path.json"}} and nothing else.')
    root = Path(folder).resolve()
    target = (root / value[INCLUDE]).resolve()
    if not target.is_relative_to(root):
        raise SpecError(f"{where}: {value[INCLUDE]!r} is outside {root.name}/.")
    try:
        return json.loads(target.read_text())
    except FileNotFoundError as e:
        raise SpecError(f"{where}: included file {value[INCLUDE]!r} does not exist.") from e
    except json.JSONDecodeError as e:
        raise SpecError(f"{where}: included file {value[INCLUDE]!r} is not valid JSON: {e}") from e


def render_job(spec: dict[str, Any], name: str, *, source: str = "the spec") -> dict[str, Any]:
    """The contents of one job's generated files: relative path -> JSON data.

    Raises:
        SpecError: the job is not in the spec, its patch does not apply, or its federation block is
            invalid or missing where a ``$federation`` reference needs it.
    """
    patches = _chain(spec, name, source, ())
    sections = {*FILES, federation.SECTION}
    for patch in patches:
        unknown = sorted(set(patch) - sections - {"$extends"})
        if unknown:
            raise SpecError(f"{source}: job {name!r} has section(s) {unknown}; use {sorted(sections)}.")
    values = _federation(spec, patches, f"{source}: {name}.{federation.SECTION}")
    out = {}
    for section, rel in FILES.items():
        where = f"{source}: {name}.{section}"
        data = federation.resolve(spec["defaults"][section], values, where=where)
        for patch in patches:
            data = merge(data, federation.resolve(patch.get(section, {}), values, where=where), where=where)
        if section == "meta":
            data = {"name": name, **{k: v for k, v in data.items() if k != "name"}}
        out[rel] = data
    return out


def _federation(spec: dict[str, Any], patches: list[dict[str, Any]], where: str) -> dict[str, Any] | None:
    """The job's federation values (defaults, then each patch), or None if neither has a block."""
    block = spec["defaults"].get(federation.SECTION)
    for patch in patches:
        if federation.SECTION in patch:
            block = merge(block if block is not None else {}, patch[federation.SECTION], where=where)
    return None if block is None else federation.federation_values(block, where=where)


def _chain(spec: dict[str, Any], name: str, source: str, seen: tuple[str, ...]) -> list[dict[str, Any]]:
    """A job's patches in the order they apply: those of the jobs it ``$extends`` first."""
    if name not in spec["jobs"]:
        what = f"job {seen[-1]!r} extends {name!r}, which it lacks" if seen else f"no job {name!r}"
        raise SpecError(f"{source}: {what}; its jobs are {sorted(spec['jobs'])}.")
    if name in seen:
        raise SpecError(f"{source}: jobs extend each other in a loop: {' -> '.join((*seen, name))}.")
    patch = spec["jobs"][name]
    if not isinstance(patch, dict):
        raise SpecError(f"{source}: job {name!r} must map to an object of overrides.")
    parent = patch.get("$extends")
    return ([] if parent is None else _chain(spec, parent, source, (*seen, name))) + [patch]


def render_all(specs_dir: Path = SPECS_DIR) -> dict[str, dict[str, Any]]:
    """Every job of every family spec: job name -> its files.

    Raises:
        SpecError: a spec does not apply, or two families name the same job.
    """
    jobs: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    for path in sorted(Path(specs_dir).glob("*.json")):
        spec = load_family(path)
        for name in spec["jobs"]:
            if name in owner:
                raise SpecError(f"Job {name!r} is in both {owner[name]} and {path.name}.")
            owner[name] = path.name
            jobs[name] = render_job(spec, name, source=path.name)
    return jobs


def write(specs_dir: Path = SPECS_DIR, jobs_dir: Path = JOBS_DIR) -> list[Path]:
    """Write every generated file that differs from what is there; returns the files written."""
    written = []
    for name, files in render_all(specs_dir).items():
        for rel, data in files.items():
            target = Path(jobs_dir) / name / rel
            text = dump(data)
            if not target.is_file() or target.read_text() != text:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
                written.append(target)
    return written


def check(specs_dir: Path = SPECS_DIR, jobs_dir: Path = JOBS_DIR) -> list[str]:
    """Every difference between the committed job folders and the specs, one sentence each."""
    jobs_dir = Path(jobs_dir)
    wanted = render_all(specs_dir)
    problems = []
    for name, files in wanted.items():
        folder = jobs_dir / name
        if not folder.is_dir():
            problems.append(f"jobs/{name} is in the spec but missing from {jobs_dir}.")
            continue
        for rel, data in files.items():
            problems += _compare(folder / rel, data, f"jobs/{name}/{rel}")
        extra = sorted(
            str(p.relative_to(folder)) for p in _files(folder) if str(p.relative_to(folder)) not in files
        )
        problems += [f"jobs/{name}/{rel} is not generated by the spec." for rel in extra]
    for folder in sorted(p for p in jobs_dir.iterdir() if p.is_dir()):
        if folder.name not in wanted:
            problems.append(f"jobs/{folder.name} is in no spec under {specs_dir.name}/.")
    return problems


def _files(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in HAND_WRITTEN)


def _compare(path: Path, data: Any, label: str) -> list[str]:
    if not path.is_file():
        return [f"{label} is missing."]
    text = path.read_text()
    if text == dump(data):
        return []
    try:
        committed = json.loads(text)
    except json.JSONDecodeError as e:
        return [f"{label} is not valid JSON ({e})."]
    where = first_difference(committed, data)
    if where is None:
        return [f"{label} holds the spec's data but not in the generated formatting."]
    return [f"{label} differs from the spec at {where}."]


def first_difference(a: Any, b: Any, where: str = "$") -> str | None:
    """The path of the first place two JSON values differ (key order counts), or ``None``."""
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return f"{where} (keys {list(a)} vs {list(b)})"
        for key in a:
            found = first_difference(a[key], b[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where} (length {len(a)} vs {len(b)})"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b and type(a) is type(b) else f"{where} ({a!r} vs {b!r})"
