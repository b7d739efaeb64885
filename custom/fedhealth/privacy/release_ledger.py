"""The ledger of a site's DP releases of its model update (the ``strict`` scope's ``DPUpdate``).

One entry per release: the round and task it answered, ε spent so far at δ, the noise multiplier,
the noise standard deviation, the clip norm, and the releases so far. It is saved to the site's run
folder after every release (atomically), reloaded when a restarted site process releases again, and
records the release it refused once ε would pass the scope's cap. It holds privacy parameters only,
never data (not even the update's norm, which depends on the data).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fedhealth.atomic import write_json
from fedhealth.policy.update_rules import release_epsilon

# Opacus's RDP conversion is not exact to the last digit; a plan that ends exactly at the cap passes.
EPSILON_SLACK = 1e-9


@dataclass(frozen=True)
class ReleaseEntry:
    """One DP release of a site's update."""

    round: int | None
    task: str
    epsilon: float
    delta: float
    noise_multiplier: float
    noise_std: float
    clip_norm: float
    releases: int


@dataclass
class ReleaseLedger:
    """A site's releases in one job, in order.

    Args:
        path: the JSON file in the site's run folder; ``None`` keeps the ledger in memory only.
        max_epsilon: the ε no release may pass (``None``: no cap).
    """

    path: Path | None = None
    max_epsilon: float | None = None
    entries: list[ReleaseEntry] = field(default_factory=list)
    declined: dict | None = None  # the first release refused past max_epsilon

    @classmethod
    def load(cls, path: Path | None, max_epsilon: float | None = None) -> ReleaseLedger:
        """The ledger a previous process of this job left at ``path``, else an empty one."""
        if path is None or not Path(path).is_file():
            return cls(path=Path(path) if path else None, max_epsilon=max_epsilon)
        raw = json.loads(Path(path).read_text())
        entries = [ReleaseEntry(**e) for e in raw.get("entries", [])]
        return cls(path=Path(path), max_epsilon=max_epsilon, entries=entries, declined=raw.get("declined"))

    @property
    def releases(self) -> int:
        return len(self.entries)

    @property
    def epsilon(self) -> float:
        """ε spent so far (0 before the first release)."""
        return self.entries[-1].epsilon if self.entries else 0.0

    def epsilon_after(self, noise_multiplier: float, *, delta: float) -> float:
        """ε at ``delta`` once one more release with ``noise_multiplier`` is made (nothing is spent)."""
        history = [e.noise_multiplier for e in self.entries] + [noise_multiplier]
        return release_epsilon(history, delta=delta)

    def would_pass_cap(self, epsilon: float) -> bool:
        return self.max_epsilon is not None and epsilon > self.max_epsilon + EPSILON_SLACK

    def record(self, entry: ReleaseEntry) -> None:
        self.entries.append(entry)
        self.save()

    def decline(self, round_index: int | None, task: str, predicted: float) -> None:
        if self.declined is None:
            self.declined = {
                "round": round_index,
                "task": task,
                "epsilon": self.epsilon,
                "predicted_epsilon": predicted,
                "max_epsilon": self.max_epsilon,
            }
            self.save()

    def to_dict(self) -> dict:
        return {
            "max_epsilon": self.max_epsilon,
            "epsilon": self.epsilon,
            "releases": self.releases,
            "entries": [asdict(e) for e in self.entries],
            "declined": self.declined,
        }

    def save(self) -> None:
        if self.path is None:
            return
        write_json(self.path, self.to_dict())  # a restart never reads half a ledger
