"""The DP-SGD settings of a job and the checks that refuse unsafe ones.

DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy") clips each example's gradient
to ``max_grad_norm`` and adds Gaussian noise. The guarantee is (ε, δ): δ is the probability that the
ε bound fails, so it must be far below ``1/n`` (a δ of ``1/n`` permits releasing one whole record).
Tiny batches are refused too: gradients of a few examples can be inverted to reconstruct the
inputs (Zhu et al. 2019, "Deep Leakage from Gradients"; Geiping et al. 2020, "Inverting Gradients");
the noise bounds what an attacker learns in theory, but practitioners keep batches of at least 8.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

ACCOUNTANTS = ("rdp", "prv")
GRAD_SAMPLE_MODES = ("hooks", "functorch", "ew", "ghost")
MIN_BATCH_SIZE = 8
MAX_AUGMULT = 64  # augmented copies per image (De et al. 2022 used up to 32)
AUGMULT_MODES = ("hooks", "functorch")  # engines that expose p.grad_sample to average over copies
DEFAULT_DELTA_FACTOR = 0.1  # default δ = 0.1 / n: ten times below the 1/n ceiling

SMALL_BATCH_MESSAGE = (
    "batch_size {batch} is below {minimum}: the gradient of a batch this small can be inverted to "
    "reconstruct the patients in it (gradient inversion; Zhu et al. 2019, Geiping et al. 2020), and "
    "DP-SGD's per-example noise is then the only protection. Use batch_size >= {minimum}, or set "
    "allow_small_batch=true in the job's dp settings if your privacy officer accepts the risk."
)
DELTA_MESSAGE = (
    "delta {delta:g} is not below 1/n = {ceiling:g} for this site's n={n} training records: a delta "
    "this large allows the mechanism to release a whole patient record. Use delta < 1/n (the default "
    "is 0.1/n = {default:g})."
)


@dataclass(frozen=True)
class DPConfig:
    """A job's DP-SGD settings (the ``dp`` argument of the heart executor).

    Args:
        target_epsilon: ε the site's accountant may reach after all rounds; sizes the noise.
        delta: δ of the guarantee; ``None`` picks ``0.1 / n`` for the site's ``n``.
        max_grad_norm: per-example clipping norm C.
        accountant: ``"rdp"`` (Mironov 2017) or ``"prv"`` (Gopi et al. 2021).
        rounds: rounds the noise is sized for; ``None`` takes the server's number of rounds.
        allow_small_batch: accept a batch size below 8 (see :data:`SMALL_BATCH_MESSAGE`).
        grad_sample_mode: Opacus's per-example gradient engine (``hooks``, ``functorch``, ``ew``, ``ghost``).
        augmult: augmentation multiplicity K (De et al. 2022, "Unlocking High-Accuracy Differentially
            Private Image Classification through Scale"): each training image's gradient is the mean over
            K randomly augmented copies, taken BEFORE clipping, so the privacy cost is unchanged and the
            clipped signal is less noisy. 0 or 1: off. Images only; ``hooks`` or ``functorch`` engine.
    """

    target_epsilon: float
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "rdp"
    rounds: int | None = None
    allow_small_batch: bool = False
    grad_sample_mode: str = "hooks"
    augmult: int = 0

    def __post_init__(self) -> None:
        if not (self.target_epsilon > 0 and math.isfinite(self.target_epsilon)):
            raise ValueError(
                f"dp target_epsilon must be a positive finite number, got {self.target_epsilon}."
            )
        if self.delta is not None and not 0 < self.delta < 1:
            raise ValueError(f"dp delta must be in (0, 1), got {self.delta}.")
        if self.max_grad_norm <= 0:
            raise ValueError(f"dp max_grad_norm must be positive, got {self.max_grad_norm}.")
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"dp accountant must be one of {ACCOUNTANTS}, not {self.accountant!r}.")
        if self.rounds is not None and self.rounds < 1:
            raise ValueError(f"dp rounds must be at least 1, got {self.rounds}.")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ValueError(
                f"dp grad_sample_mode must be one of {GRAD_SAMPLE_MODES}, not {self.grad_sample_mode!r}."
            )

        if isinstance(self.augmult, bool) or not isinstance(self.augmult, int):
            raise ValueError(f"dp augmult must be a whole number of copies, got {self.augmult!r}.")
        if not 0 <= self.augmult <= MAX_AUGMULT:
            raise ValueError(
                f"dp augmult must be between 0 (off) and {MAX_AUGMULT} copies per image, got {self.augmult}."
            )
        if self.augmult > 1 and self.grad_sample_mode not in AUGMULT_MODES:
            raise ValueError(
                f"dp augmult needs per-example gradients to average (grad_sample_mode in {AUGMULT_MODES}); "
                f"{self.grad_sample_mode!r} does not keep them."
            )

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> DPConfig:
        """Build from a job's JSON ``dp`` dict; unknown keys are refused by name."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown dp settings {unknown}; known are {sorted(known)}.")
        return cls(**raw)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return asdict(self)

    def check_batch(self, batch_size: int) -> None:
        """Refuse a batch below :data:`MIN_BATCH_SIZE` unless ``allow_small_batch`` is set."""
        if batch_size < MIN_BATCH_SIZE and not self.allow_small_batch:
            raise ValueError(SMALL_BATCH_MESSAGE.format(batch=batch_size, minimum=MIN_BATCH_SIZE))

    def delta_for(self, n: int) -> float:
        """The δ this site uses for its ``n`` training records; refuses δ ≥ 1/n."""
        if n < 1:
            raise ValueError("DP-SGD needs at least one training record.")
        default = DEFAULT_DELTA_FACTOR / n
        if self.delta is None:
            return default
        if self.delta >= 1.0 / n:
            raise ValueError(DELTA_MESSAGE.format(delta=self.delta, ceiling=1.0 / n, n=n, default=default))
        return self.delta


def check_site_budget(value: object, where: str) -> float | None:
    """A site's own ε cap from its settings: ``None`` or a positive number, else a clear error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{where}: the privacy budget must be a positive number of epsilon, not {value!r}.")
    return float(value)
