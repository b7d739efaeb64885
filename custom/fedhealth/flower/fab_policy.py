"""Which Flower apps a site runs: the check of a FAB (Flower App Bundle) before its ClientApp starts.

FLARE's Flower integration hands each site the Flower app as a FAB that the server's SuperLink
built (``flwr run``), relayed through FLARE's own messages to the site's SuperNode, which then
imports and runs the ClientApp the FAB names. That path never meets FLARE's BYOC check or the
site's class allow-list, so the kit checks every FAB itself, at the site, before the SuperNode gets
it (:class:`fedhealth.executors.flower_site_executor.FlowerSiteExecutor`).

A site accepts a FAB only when all of these hold:

- its bytes hash to the SHA-256 it declares (``Fab.hash_str``): a FAB changed on the way is refused;
- when the site pins FABs (``fab_sha256``), its SHA-256 is one of them;
- it holds no file but ``pyproject.toml`` and Flower's manifest ``.info/CONTENT`` (whose lines match
  the files): code comes only from what the hospital installed, never from the FAB;
- its ``[tool.flwr.app.components] clientapp`` (``module.path:attribute``) is one the site lists.

The site's list is its own setting, in ``local/fedhealth_site.json`` (or the provisioned
``.default``); no job and no server writes it::

    "flower_apps": {"clientapps": ["fedhealth.flower.heart_flower:client_app"], "fab_sha256": []}

A site without the setting runs no Flower app. FLARE-free: plain Python, ``zipfile`` and ``tomllib``.
"""

from __future__ import annotations

import hashlib
import io
import re
import tomllib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

SETTINGS_KEY = "flower_apps"  # in the site's local/fedhealth_site.json(.default)
CLIENTAPPS_KEY = "clientapps"
FAB_SHA256_KEY = "fab_sha256"
PYPROJECT = "pyproject.toml"
MANIFEST = ".info/CONTENT"
ALLOWED_FILES = frozenset({PYPROJECT, MANIFEST})
MAX_FAB_BYTES = 1_000_000  # a FAB of a pyproject.toml and its manifest is a few kB
_COMPONENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
HOW_TO_ALLOW = (
    "a site runs only Flower apps installed at the site whose ClientApp its own "
    f"local/fedhealth_site.json lists under {SETTINGS_KEY!r}.{CLIENTAPPS_KEY!r}"
)


class FabRefusedError(Exception):
    """A FAB the site does not run; the message names the site, the FAB's hash and why."""


@dataclass(frozen=True)
class FabPolicy:
    """A site's Flower apps.

    Args:
        clientapps: the ClientApps the site runs, as ``module.path:attribute``.
        fab_sha256: when not empty, the only FABs (their SHA-256, hex) the site accepts.
    """

    clientapps: frozenset[str] = frozenset()
    fab_sha256: frozenset[str] = frozenset()

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, object], *, where: str = "local/fedhealth_site.json"
    ) -> FabPolicy:
        """The policy in a site's merged settings (an empty policy when the key is absent).

        Raises:
            ValueError: the setting is not ``{"clientapps": [...], "fab_sha256": [...]}`` with
                ``module.path:attribute`` entries and 64-digit lower-case hex hashes; the message
                names ``where`` and the entry.
        """
        value = settings.get(SETTINGS_KEY)
        if value is None:
            return cls()
        if not isinstance(value, Mapping) or set(value) - {CLIENTAPPS_KEY, FAB_SHA256_KEY}:
            got = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise ValueError(
                f"{where}: {SETTINGS_KEY!r} must be an object with {CLIENTAPPS_KEY!r} and optionally "
                f"{FAB_SHA256_KEY!r}, got keys {got}."
            )
        apps = _strings(value.get(CLIENTAPPS_KEY, []), f"{where}: {SETTINGS_KEY}.{CLIENTAPPS_KEY}")
        hashes = _strings(value.get(FAB_SHA256_KEY, []), f"{where}: {SETTINGS_KEY}.{FAB_SHA256_KEY}")
        for app in apps:
            if not _COMPONENT.match(app):
                raise ValueError(
                    f"{where}: {SETTINGS_KEY}.{CLIENTAPPS_KEY} entry {app!r} is not module.path:attribute."
                )
        for sha in hashes:
            if not _SHA256.match(sha):
                raise ValueError(
                    f"{where}: {SETTINGS_KEY}.{FAB_SHA256_KEY} entry {sha!r} is not a lower-case hex SHA-256."
                )
        return cls(frozenset(apps), frozenset(hashes))


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where} must be a list of strings.")
    return list(value)


@dataclass(frozen=True)
class FabInfo:
    """What an accepted FAB is: its SHA-256, its app name and the ClientApp it runs."""

    sha256: str
    name: str
    clientapp: str


def check_fab(content: bytes, hash_str: str, policy: FabPolicy, *, site: str) -> FabInfo:
    """Accept ``content`` (a FAB's bytes, declared as ``hash_str``) at ``site`` or raise.

    Raises:
        FabRefusedError: the message reads ``site <site> refuses the Flower app <name> (FAB sha256
            <12 digits>): <reason>; <how to allow>``.
    """
    sha = hashlib.sha256(content).hexdigest()
    label = f"(FAB sha256 {sha[:12]})"

    def refuse(reason: str, name: str = "") -> FabRefusedError:
        app = f"{name} {label}" if name else label
        return FabRefusedError(f"site {site} refuses the Flower app {app}: {reason}; {HOW_TO_ALLOW}.")

    if sha != hash_str:
        raise refuse(
            f"its content does not match the sha256 it declares ({str(hash_str)[:12]}): changed on the way"
        )
    if len(content) > MAX_FAB_BYTES:
        raise refuse(f"it is {len(content)} bytes, more than the {MAX_FAB_BYTES} a FAB without code needs")
    files = _read_zip(content, refuse)
    extra = sorted(set(files) - ALLOWED_FILES)
    if extra:
        raise refuse(f"it carries file(s) {extra}: a FAB may hold only {sorted(ALLOWED_FILES)}, no code")
    if PYPROJECT not in files:
        raise refuse(f"it has no {PYPROJECT}")
    _check_manifest(files, refuse)
    try:
        config = tomllib.loads(files[PYPROJECT].decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise refuse(f"its {PYPROJECT} is not valid TOML ({type(exc).__name__})") from exc
    name = str(config.get("project", {}).get("name", ""))
    components = config.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {})
    clientapp = components.get("clientapp") if isinstance(components, dict) else None
    if not isinstance(clientapp, str):
        raise refuse(f"its {PYPROJECT} names no [tool.flwr.app.components] clientapp", name)
    if not policy.clientapps:
        raise refuse(f"this site lists no Flower app (its ClientApp is {clientapp!r})", name)
    if clientapp not in policy.clientapps:
        raise refuse(
            f"its ClientApp {clientapp!r} is not one this site lists ({sorted(policy.clientapps)})", name
        )
    if policy.fab_sha256 and sha not in policy.fab_sha256:
        raise refuse(f"this site pins its FABs ({FAB_SHA256_KEY}) and {sha} is not one of them", name)
    return FabInfo(sha, name, clientapp)


def _read_zip(content: bytes, refuse) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as fab:
            infos = fab.infolist()
            if sum(i.file_size for i in infos) > MAX_FAB_BYTES:
                raise refuse(f"it unpacks to more than {MAX_FAB_BYTES} bytes")
            return {i.filename: fab.read(i) for i in infos}
    except zipfile.BadZipFile as exc:
        raise refuse("it is not a zip archive") from exc


def _check_manifest(files: Mapping[str, bytes], refuse) -> None:
    """Flower's ``.info/CONTENT``: one ``path,sha256,size_bits`` line per other file, all matching."""
    if MANIFEST not in files:
        raise refuse(f"it has no manifest {MANIFEST}")
    listed = {}
    for line in files[MANIFEST].decode("utf-8", errors="replace").splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) != 3:
            raise refuse(f"its manifest {MANIFEST} has a malformed line")
        listed[parts[0]] = (parts[1], parts[2])
    actual = {
        path: (hashlib.sha256(data).hexdigest(), str(len(data) * 8))
        for path, data in files.items()
        if path != MANIFEST
    }
    if listed != actual:
        raise refuse(f"its manifest {MANIFEST} does not match its files")
