"""What a site's privacy scope does to an outgoing model update (FLARE-free math).

A hospital's ``privacy.json`` names scopes; each scope lists filters the site applies to every
job that runs under it (FLARE's site-side privacy policies). The filters in ``fedhealth.filters``
only convert DXOs and call these functions:

- :func:`exclude_layers`: the named layers of the local model never leave the site. For full
  weights the site sends the global values it received instead (a zero update for those
  layers); for weight differences it sends zeros. Names and shapes stay intact, so server-side
  validation and aggregation are unchanged (partial sharing as in Li et al., "Privacy-preserving
  federated brain tumour segmentation", MLMI 2019).
- :func:`dp_release`: the Gaussian mechanism on the site's whole update (Dwork & Roth, "The
  Algorithmic Foundations of Differential Privacy", 2014, Appendix A; McMahan et al. 2018, "Learning
  Differentially Private Recurrent Language Models"): the update is clipped to L2 norm ``C`` and
  N(0, (2 z C)^2) is added to every value. :func:`release_epsilon` accounts the releases with
  Opacus's RDP analysis (Mironov 2017) at sample rate 1.

  Neighbouring relation: the site's training data replaced by any other data (one patient changed,
  added or removed, or the whole site's data: site-level DP). Sensitivity: every update is clipped
  to norm ``C`` whatever the data, so two neighbouring updates differ by at most ``2 C`` in L2.
  The noise standard deviation is ``z`` times that sensitivity, so each release is the Gaussian
  mechanism with noise multiplier ``z``: RDP ``α / (2 z²)`` at every order ``α``, composed over
  releases. Layers another filter pinned to a data-independent value (``ExcludeLayers``) are
  released as they are: they carry nothing of the data. Only the model update is covered; metrics
  that travel with it are not.
- :func:`add_gaussian_noise`: N(0, sigma^2) on every value, the noise step of :func:`dp_release`.
- :func:`update_deltas`: what the server can check on arrival: the largest change per layer
  against the global model it sent.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

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


def l2_norm(update: Update, *, skip: Collection[str] = ()) -> float:
    """The L2 norm of all values of ``update`` together, leaving out the layers in ``skip``."""
    return float(
        np.sqrt(
            sum(
                float(np.sum(np.square(np.asarray(v, np.float64))))
                for k, v in update.items()
                if k not in skip
            )
        )
    )


def noise_std(*, clip_norm: float, noise_multiplier: float) -> float:
    """The standard deviation of :func:`dp_release`'s noise: ``noise_multiplier × 2 × clip_norm``."""
    return 2.0 * float(clip_norm) * float(noise_multiplier)


def dp_release(
    update: Update,
    *,
    clip_norm: float,
    noise_multiplier: float,
    rng: np.random.Generator,
    fixed: Collection[str] = (),
) -> dict[str, np.ndarray]:
    """``update`` clipped to L2 norm ``clip_norm`` plus N(0, (2 z C)^2) on every value (see the module).

    Args:
        update: parameter name -> the site's update (local minus received weights).
        clip_norm: ``C``, the largest L2 norm of the update over all its layers together.
        noise_multiplier: ``z``, the noise standard deviation over the sensitivity ``2 C``.
        rng: the noise generator.
        fixed: layers released unchanged because their value does not depend on the data (zero
            updates that ``ExcludeLayers`` pinned); they count neither in the norm nor get noise.

    Raises:
        ValueError: ``clip_norm`` or ``noise_multiplier`` not positive and finite, or a fixed layer
            that is not all zeros.
    """
    if not (0 < clip_norm < np.inf) or not (0 < noise_multiplier < np.inf):
        raise ValueError(
            "clip_norm and noise_multiplier must be positive finite numbers, "
            f"got {clip_norm}, {noise_multiplier}."
        )
    for name in fixed:
        if name in update and np.any(np.asarray(update[name]) != 0):
            raise ValueError(f"Layer {name!r} is to be released unchanged but its update is not zero.")
    norm = l2_norm(update, skip=fixed)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    moving = {k: np.asarray(v, np.float64) * scale for k, v in update.items() if k not in fixed}
    noised = add_gaussian_noise(
        moving, sigma=noise_std(clip_norm=clip_norm, noise_multiplier=noise_multiplier), rng=rng
    )
    out = {}
    for name, value in update.items():
        array = np.asarray(value)
        dtype = array.dtype if array.dtype.kind == "f" else np.float32
        out[name] = np.array(array, dtype=dtype, copy=True) if name in fixed else noised[name].astype(dtype)
    return out


def release_epsilon(noise_multipliers: Sequence[float], *, delta: float) -> float:
    """ε after releasing with these noise multipliers, at ``delta`` (Opacus's RDP analysis, sample rate 1)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}.")
    from fedhealth.privacy.budget import epsilon_of  # Opacus loads only where a scope releases with DP

    counts: dict[float, int] = {}
    for z in noise_multipliers:
        counts[float(z)] = counts.get(float(z), 0) + 1
    return epsilon_of([(z, 1.0, n) for z, n in counts.items()], mechanism="rdp", delta=delta)


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
