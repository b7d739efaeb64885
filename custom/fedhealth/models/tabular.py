"""Torch models for tabular EHR data: logistic regression and a small MLP.

Both output one logit per patient (train with ``BCEWithLogitsLoss``). FLamby's baseline for
Fed-Heart-Disease is the logistic regression (a sigmoid over one linear layer).
"""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES = ("logreg", "mlp")


class TabularNet(nn.Module):
    """Logistic regression (``arch="logreg"``) or a one-hidden-layer MLP (``arch="mlp"``).

    Constructor arguments are kept as attributes of the same name, so FLARE's persistor and
    ``recipe.export`` can rebuild the model from its config.

    Args:
        in_features: number of input features.
        arch: ``"logreg"`` or ``"mlp"``.
        hidden: hidden units of the MLP.
        dropout: dropout before the MLP's output layer.
        seed: when set, the initial weights are drawn from this seed (same start at every site).
    """

    def __init__(
        self,
        *,
        in_features: int,
        arch: str = "logreg",
        hidden: int = 16,
        dropout: float = 0.0,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, not {arch!r}.")
        if in_features < 1:
            raise ValueError(f"in_features must be positive, got {in_features}.")
        self.in_features = in_features
        self.arch = arch
        self.hidden = hidden
        self.dropout = dropout
        self.seed = seed
        generator_state = torch.random.get_rng_state()
        if seed is not None:
            torch.manual_seed(seed)
        try:
            if arch == "logreg":
                self.net = nn.Linear(in_features, 1)
            else:
                self.net = nn.Sequential(
                    nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
                )
        finally:
            if seed is not None:
                torch.random.set_rng_state(generator_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch,)``."""
        return self.net(x).squeeze(-1)
