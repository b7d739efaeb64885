"""The site's privacy ledger: what each round spent, kept in the site's workspace and sent as a metric.

One entry per round: ε spent so far, δ, noise multiplier, clip norm, sample rate, steps this round
and in total, and the accountant. It holds privacy parameters only, never data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fedhealth.atomic import write_json


@dataclass(frozen=True)
class LedgerEntry:
    """What one round of DP-SGD spent at a site."""

    round: int
    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    total_steps: int
    accountant: str


@dataclass
class PrivacyLedger:
    """The rounds a site trained with DP-SGD, in order; saved as JSON after every round.

    Args:
        path: the JSON file (in the site's run folder); ``None`` keeps the ledger in memory only.
        budget: the ε the site will not exceed.
    """

    path: Path | None = None
    budget: float | None = None
    entries: list[LedgerEntry] = field(default_factory=list)
    declined: dict | None = None  # {"round", "reason", "epsilon", "predicted_epsilon"} once the site stops

    @classmethod
    def load(cls, path: Path | None, budget: float | None = None) -> PrivacyLedger:
        """The ledger at ``path`` if a previous process of this job left one, else an empty one."""
        if path is None or not Path(path).is_file():
            return cls(path=Path(path) if path else None, budget=budget)
        raw = json.loads(Path(path).read_text())
        entries = [LedgerEntry(**e) for e in raw.get("entries", [])]
        return cls(path=Path(path), budget=budget, entries=entries, declined=raw.get("declined"))

    def record(self, entry: LedgerEntry) -> None:
        """Add (or, for a round retried after a restart, replace) a round and save."""
        self.entries = [e for e in self.entries if e.round != entry.round] + [entry]
        self.save()

    def decline(self, round_index: int, reason: str, epsilon: float, predicted: float) -> None:
        self.declined = {
            "round": round_index,
            "reason": reason,
            "epsilon": epsilon,
            "predicted_epsilon": predicted,
        }
        self.save()

    @property
    def epsilon(self) -> float:
        """ε spent so far (0 before the first round)."""
        return self.entries[-1].epsilon if self.entries else 0.0

    def to_dict(self) -> dict:
        return {
            "budget": self.budget,
            "epsilon": self.epsilon,
            "entries": [asdict(e) for e in self.entries],
            "declined": self.declined,
        }

    def save(self) -> None:
        if self.path is None:
            return
        write_json(self.path, self.to_dict())  # a restart never reads half a ledger
