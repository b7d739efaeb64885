"""Puts fedhealth's components on every site's class allow-list at provisioning.

With fedhealth installed at each site, jobs ship no code (no ``custom/`` folder), so they are not
BYOC jobs: FLARE builds only classes whose dotted path matches a ``class_allow_list`` prefix in the
site's ``local/resources.json(.default)``. This builder adds ``fedhealth.`` (and the stock classes
the jobs use that FLARE's default list lacks) to the list in every server and client kit, keeping
the default entries. Place it after ``StaticFileBuilder`` and before ``SignatureBuilder``.
"""

from __future__ import annotations

import json
from pathlib import Path

from nvflare.app_common.default_component_policy import DEFAULT_CLASS_ALLOW_LIST
from nvflare.lighter.spec import Builder, Project, ProvisionContext

ALLOW_LIST_KEY = "class_allow_list"
RESOURCE_FILES = ("resources.json.default", "resources.json")
DEFAULT_EXTRA = (
    "fedhealth.",
    "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor",
    "nvflare.app_common.workflows.scatter_and_gather_scaffold.ScatterAndGatherScaffold",  # heart_scaffold
)


def add_to_allow_list(path: Path, entries: list[str]) -> list[str]:
    """Add ``entries`` to the allow-list in one resources file; returns the new list.

    Raises:
        ValueError: an entry is a bare package name (it must end with a dot or be a full class path
            with at least one dot; FLARE rejects bare names and every component then fails).
    """
    for entry in entries:
        if "." not in entry:
            raise ValueError(
                f"allow-list entry {entry!r} must end with '.' (a package prefix) or be a class path."
            )
    resources = json.loads(path.read_text())
    current = list(resources.get(ALLOW_LIST_KEY, DEFAULT_CLASS_ALLOW_LIST))
    resources[ALLOW_LIST_KEY] = current + [e for e in entries if e not in current]
    path.write_text(json.dumps(resources, indent=4))
    return resources[ALLOW_LIST_KEY]


class AllowListBuilder(Builder):
    """Adds fedhealth's component prefixes to the server's and each client's allow-list.

    Args:
        extra: entries to add; defaults to ``fedhealth.``, FLARE's ``PTFileModelPersistor`` and its
            ``ScatterAndGatherScaffold`` workflow.
    """

    def __init__(self, extra: list[str] | None = None) -> None:
        self.extra = list(extra) if extra else list(DEFAULT_EXTRA)

    def build(self, project: Project, ctx: ProvisionContext) -> None:
        participants = [project.get_server(), *project.get_clients()]
        for participant in participants:
            if participant is None:
                continue
            local = Path(ctx.get_local_dir(participant))
            for name in RESOURCE_FILES:
                if (local / name).is_file():
                    add_to_allow_list(local / name, self.extra)
