"""Deep merge of a job's overrides into its family's defaults (FLARE-free, no dependencies).

A job spec is the family's default config plus a *patch*; :func:`merge` applies the patch. The rules
(Flower baselines' defaults-plus-overrides, with FLARE's ``{id, path, args}`` lists made patchable):

- **Objects merge** key by key, recursively. A key the default lacks is appended (after the default's
  keys, in the patch's order). ``"$delete": ["key", ...]`` removes keys of the default;
  ``"$replace": true`` makes the patch object replace the default one instead of merging into it.
- **Lists and scalars are replaced** wholesale (``"tasks": ["train"]`` is the new task list).
- **Lists of components** (under the keys in :data:`ID_LISTS`) are patched *by id* with an object
  that maps an id to an item patch; an ``executors`` entry's id is its ``executor``'s id:

  - ``{"aggregator": {"args": {"rule": "median"}}}`` merges into the item with that id;
  - ``{"aggregator": {"$replace": true, "path": "...", "args": {...}}}`` replaces it in place;
  - ``{"shareable_generator": {"$remove": true}}`` removes it;
  - ``{"serialize_filter": {"$add": true, "$after": "persistor", "path": "...", "args": {}}}`` adds
    one (``$after``/``$before`` an id; at the end without them). The id goes first in the new item.

  An id that is not in the list (without ``$add``), an ``$add`` of an id that is, or an unknown
  ``$`` directive is a :class:`SpecError` that names where in the spec it is.
"""

from __future__ import annotations

from typing import Any

ID_LISTS = ("components", "workflows", "executors")
MERGE_DIRECTIVES = ("$replace", "$delete")
ITEM_DIRECTIVES = ("$add", "$remove", "$after", "$before")


class SpecError(ValueError):
    """A job spec that cannot be applied; the message says where and why."""


def item_id(item: Any) -> str | None:
    """A component's ``id``, or for an ``executors`` entry its executor's id."""
    if not isinstance(item, dict):
        return None
    if "id" in item:
        return item["id"]
    executor = item.get("executor")
    return executor.get("id") if isinstance(executor, dict) else None


def literal(value: Any, where: str) -> Any:
    """``value`` as new content: a copy with ``$replace`` dropped; any other directive is an error."""
    if isinstance(value, dict):
        for key in value:
            if key.startswith("$") and key != "$replace":
                raise SpecError(f"{where}: {key!r} has nothing to apply to here (it is new content).")
        return {k: literal(v, f"{where}.{k}") for k, v in value.items() if k != "$replace"}
    if isinstance(value, list):
        return [literal(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def merge(base: Any, patch: Any, *, where: str = "") -> Any:
    """``base`` with ``patch`` applied by the rules in the module docstring; neither is modified.

    Raises:
        SpecError: a patch that does not fit its base; the message names ``where``.
    """
    if not isinstance(patch, dict) or not isinstance(base, dict) or patch.get("$replace"):
        return literal(patch, where)
    unknown = [k for k in patch if k.startswith("$") and k not in MERGE_DIRECTIVES]
    if unknown:
        raise SpecError(
            f"{where or 'the patch'}: unknown directive(s) {unknown}; use {list(MERGE_DIRECTIVES)}."
        )
    out = dict(base)
    for key in patch.get("$delete", []):
        if key not in out:
            raise SpecError(f"{where}: cannot $delete {key!r}, there is no such key (keys: {list(out)}).")
        del out[key]
    for key, value in patch.items():
        if key in MERGE_DIRECTIVES:
            continue
        here = f"{where}.{key}" if where else key
        if key in ID_LISTS and isinstance(out.get(key), list) and isinstance(value, dict):
            out[key] = merge_by_id(out[key], value, where=here)
        else:
            out[key] = merge(out[key], value, where=here) if key in out else literal(value, here)
    return out


def merge_by_id(items: list[Any], patch: dict[str, Any], *, where: str) -> list[Any]:
    """A list of components patched per id (see the module docstring)."""
    out = list(items)
    for ident, op in patch.items():
        here = f"{where}[{ident}]"
        if not isinstance(op, dict):
            raise SpecError(f"{here}: an item patch must be an object, not {type(op).__name__}.")
        ids = [item_id(item) for item in out]
        if op.get("$remove"):
            if ident not in ids:
                raise SpecError(f"{here}: cannot $remove {ident!r}, the list's ids are {ids}.")
            del out[ids.index(ident)]
            continue
        if op.get("$add"):
            if ident in ids:
                raise SpecError(f"{here}: cannot $add {ident!r}, the list already has it; patch it instead.")
            item = literal({k: v for k, v in op.items() if k not in ITEM_DIRECTIVES}, here)
            if item_id(item) is None:
                item = {"id": ident, **item}
            elif item_id(item) != ident:
                raise SpecError(f"{here}: the new item's id is {item_id(item)!r}, not {ident!r}.")
            out.insert(_position(op, ids, here), item)
            continue
        if ident not in ids:
            raise SpecError(
                f"{here}: no item with id {ident!r} to patch; the list's ids are {ids} "
                '(to add one, give it "$add": true).'
            )
        stray = [k for k in op if k in ITEM_DIRECTIVES]
        if stray:
            raise SpecError(f'{here}: {stray} only go with "$add".')
        index = ids.index(ident)
        item = merge(out[index], op, where=here)
        if item_id(item) is None:  # a $replace of a component may leave its id out
            item = {"id": ident, **item}
        if item_id(item) != ident:
            raise SpecError(f"{here}: a patch cannot change the id (to {item_id(item)!r}); remove and add.")
        out[index] = item
    return out


def _position(op: dict[str, Any], ids: list[str | None], where: str) -> int:
    """Where an ``$add`` goes: after ``$after``, before ``$before``, else at the end."""
    if "$after" in op and "$before" in op:
        raise SpecError(f"{where}: give $after or $before, not both.")
    for key, offset in (("$after", 1), ("$before", 0)):
        if key in op:
            if op[key] not in ids:
                raise SpecError(f"{where}: {key} {op[key]!r} is not in the list; its ids are {ids}.")
            return ids.index(op[key]) + offset
    return len(ids)
