"""What a site's privacy scope does to an outgoing model update (FLARE-free math).

A hospital's ``privacy.json`` names scopes; each scope lists filters the site applies to every
job that runs under it (FLARE's site-side privacy policies). The filters in ``fedhealth.filters``
only convert DXOs and call these functions:

- :func:`exclude_layers`: the named layers of the local model never leave the site. For full
  weights the site sends the global values it received instead (a zero update for those
  layers); for weight differences it sends zeros. Names and shapes stay intact, so server-side
  validation and aggregation are unchanged (partial sharing as in Li et al., "Privacy-preserving
  federated brain tumour segmentation", MLMI 2019).
- :func:`add_gaussian_noise`: adds N(0, sigma^2) to every value of the update (the Gaussian
  mechanism, Dwork & Roth, "The Algorithmic Foundations of Differential Privacy", 2014). Without
  clipping this is noise, not a differential-privacy guarantee; accounted DP-SGD is the job's
  business (Opacus), this is the site's last line.
- :func:`update_deltas`: what the server can check on arrival: the largest change per layer
  against the global model it sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

Update = Mapping[str, np.ndarray]


def _check_layers(update: Update, layers: Iterable[str]) -> list[str]:
    layers = list(layers)
    unknown = sorted(set(layers) - set(update))
    if unknown:
        raise ValueError(
            f"Layers {unknown} are not in the model update (it has {sorted(update)}); "
            "fix the layer names in the site's privacy.json."
        )
    return layers


def exclude_layers(
    update: Update, layers: Iterable[str], *, received: Update | None = None
) -> dict[str, np.ndarray]:
    """A copy of ``update`` in which the named layers carry no local information.

    Args:
        update: parameter name -> array (full weights, or differences when ``received`` is None).
        layers: names of the layers to keep at the site.
        received: the global weights the site received this round. Given: the excluded layers are
            replaced by these values (full-weight updates). None: they are zeroed (differences).

    Raises:
        ValueError: a named layer is not in the update, or ``received`` lacks it or has another shape.
    """
    names = _check_layers(update, layers)
    out = {k: np.array(v, copy=True) for k, v in update.items()}
    for name in names:
        if received is None:
            out[name] = np.zeros_like(out[name])
            continue
        if name not in received:
            raise ValueError(f"Layer {name!r} is excluded but the global model the site received lacks it.")
        value = np.asarray(received[name])
        if value.shape != out[name].shape:
            raise ValueError(
                f"Layer {name!r}: the received global value has shape {value.shape}, "
                f"the local one {out[name].shape}."
            )
        out[name] = np.array(value, dtype=out[name].dtype, copy=True)
    return out


def add_gaussian_noise(update: Update, *, sigma: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A copy of ``update`` with independent N(0, sigma^2) noise added to every value.

    Raises:
        ValueError: ``sigma`` is negative or not finite.
    """
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, not {sigma}.")
    out = {}
    for name, value in update.items():
        array = np.asarray(value)
        noise = rng.normal(0.0, sigma, size=array.shape)
        out[name] = (array + noise).astype(array.dtype if array.dtype.kind == "f" else np.float32)
    return out


def update_deltas(arrived: Update, sent: Update) -> dict[str, float]:
    """Largest absolute change per layer between an arrived update and the global weights sent.

    Layers the server did not send (or of another shape) are reported as NaN.
    """
    deltas = {}
    for name, value in arrived.items():
        ref = sent.get(name)
        if ref is None or np.shape(ref) != np.shape(value):
            deltas[name] = float("nan")
            continue
        diff = np.asarray(value, dtype=np.float64) - np.asarray(ref, dtype=np.float64)
        deltas[name] = float(np.max(np.abs(diff))) if diff.size else 0.0
    return deltas
