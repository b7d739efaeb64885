"""Link profiles and lab layouts for the network lab, read from config (``netlab.json``).

A profile is what one hospital's link to the consortium does to its packets: a bandwidth (kernel
``tc tbf`` on both directions), a one-way delay with jitter and a loss rate (what ``tc netem`` would
add; applied by :mod:`fedhealth_tools.netlab.linkemu` in user space, because ``sch_netem`` is not in
every kernel). A lab names the profile of each participant's link.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).with_name("netlab.json")


class NetlabConfigError(ValueError):
    """The network lab's config is wrong; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class LinkProfile:
    """One link, the same in both directions.

    Args:
        rate_mbit: bandwidth in Mbit/s (token bucket, ``tc tbf``).
        delay_ms: one-way delay added to every packet.
        jitter_ms: the delay varies uniformly within ``delay_ms ± jitter_ms`` (order is kept).
        loss: fraction of packets dropped at random, 0 to 1 (1 cuts the link).
    """

    rate_mbit: float
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not self.rate_mbit > 0:
            raise NetlabConfigError(f"rate_mbit must be positive, got {self.rate_mbit}.")
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise NetlabConfigError(
                f"delay_ms and jitter_ms must be >= 0, got {self.delay_ms}, {self.jitter_ms}."
            )
        if self.jitter_ms > self.delay_ms:
            raise NetlabConfigError(f"jitter_ms ({self.jitter_ms}) cannot exceed delay_ms ({self.delay_ms}).")
        if not 0.0 <= self.loss <= 1.0:
            raise NetlabConfigError(f"loss is a fraction from 0 to 1, got {self.loss}.")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def tbf_burst_bytes(self) -> int:
        """The token bucket's burst: 10 ms of traffic, at least 4 full frames (``tc tbf`` needs >= MTU)."""
        return max(6000, int(self.rate_mbit * 1e6 / 8 * 0.01))


@dataclass(frozen=True)
class LabLayout:
    """Which profile each participant's link has: the server's own link and each site's."""

    name: str
    server: str
    sites: dict[str, str]
    default_site: str


def _profile(entry: object, where: str) -> LinkProfile:
    if not isinstance(entry, dict):
        raise NetlabConfigError(f"{where}: a profile is an object, got {type(entry).__name__}.")
    unknown = sorted(set(entry) - {"rate_mbit", "delay_ms", "jitter_ms", "loss", "about"})
    if unknown:
        raise NetlabConfigError(f"{where}: unknown field(s) {', '.join(unknown)}.")
    if "rate_mbit" not in entry:
        raise NetlabConfigError(f"{where}: rate_mbit is required.")
    try:
        return LinkProfile(**{k: float(v) for k, v in entry.items() if k != "about"})
    except (TypeError, ValueError) as exc:
        raise NetlabConfigError(f"{where}: {exc}") from exc


def load_config(path: Path = DEFAULT_CONFIG) -> tuple[dict[str, LinkProfile], dict[str, LabLayout]]:
    """The profiles and labs of a ``netlab.json``; every lab's profiles must exist."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NetlabConfigError(f"{path}: cannot read the network lab config: {exc}") from exc
    profiles = {name: _profile(p, f"{path}: profiles.{name}") for name, p in raw.get("profiles", {}).items()}
    labs: dict[str, LabLayout] = {}
    for name, lab in raw.get("labs", {}).items():
        where = f"{path}: labs.{name}"
        named = [lab.get("server"), lab.get("default_site"), *lab.get("sites", {}).values()]
        for profile in named:
            if profile not in profiles:
                raise NetlabConfigError(
                    f"{where}: profile {profile!r} is not in profiles ({', '.join(profiles)})."
                )
        labs[name] = LabLayout(name, lab["server"], dict(lab.get("sites", {})), lab["default_site"])
    return profiles, labs


def site_profiles(
    lab: LabLayout, profiles: dict[str, LinkProfile], sites: tuple[str, ...]
) -> dict[str, tuple[str, LinkProfile]]:
    """Each site's profile name and profile: the lab's entry for it, else the lab's default."""
    unknown = sorted(set(lab.sites) - set(sites))
    if unknown:
        raise NetlabConfigError(
            f"lab {lab.name} names sites the project does not have: {', '.join(unknown)}."
        )
    return {
        s: (lab.sites.get(s, lab.default_site), profiles[lab.sites.get(s, lab.default_site)]) for s in sites
    }
