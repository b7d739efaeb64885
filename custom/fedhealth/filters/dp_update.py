"""Site privacy filter: every model update leaves the site as a differentially private release.

For a site's ``privacy.json`` scope (the ``strict`` scope). List the same filter under the scope's
``task_data_filters`` and ``task_result_filters``: on the data chain it remembers the global model
the server sent with a ``train`` task; on the result chain it turns the site's update (local minus
that global model for ``WEIGHTS``; the ``WEIGHT_DIFF`` itself) into a DP release: clipped to L2 norm
``clip_norm``, plus Gaussian noise of standard deviation ``2 × noise_multiplier × clip_norm``
(:func:`fedhealth.policy.update_rules.dp_release`, which states the neighbouring relation and the
sensitivity ``2 × clip_norm``), accounted per release with Opacus's RDP analysis at sample rate 1.

Each release is written to the site's ledger (``fedhealth_dp_update_ledger.json`` in its run folder,
reloaded after a site restart) and stamped on the DXO (``fedhealth_privacy``: ε, δ, noise, clip,
releases, round), so the server's run record and report show ε per site and round. A release that
would pass ``max_epsilon`` is refused by raising: FLARE's client runner then answers the task with
``TASK_RESULT_FILTER_ERROR`` instead of the update (``nvflare/private/fed/client/client_runner.py``,
the ``except Exception`` around ``apply_filters`` of the task result filters). A model inside a
``COLLECTION`` (SCAFFOLD's weights and control variates) is refused the same way: this filter cannot
protect it. Under HE the scope sees ciphertexts on the data chain, remembers nothing, and refuses.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
from nvflare.apis.dxo import DXO, DataKind
from nvflare.apis.dxo_filter import DXOFilter
from nvflare.apis.filter import FilterChainType, FilterContextKey
from nvflare.apis.fl_constant import FLContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AppConstants

from fedhealth.constants import DP_UPDATE_DECLINED, DP_UPDATE_LEDGER_FILE, META_PRIVACY, TASK_TRAIN
from fedhealth.filters.model_update import MODEL_KINDS, local_update, model_dxo, nested_model
from fedhealth.policy.update_rules import dp_release, noise_std
from fedhealth.privacy.release_ledger import ReleaseEntry, ReleaseLedger

# job id -> (the global model of the last train task, its round). The data-chain and result-chain
# instances of the filter are separate objects in the same job process.
_RECEIVED: dict[str, tuple[dict[str, np.ndarray], int | None]] = {}
_LEDGERS: dict[str, ReleaseLedger] = {}  # job id -> ledger (loaded from the run folder once)
FILTER_NAME = "DPUpdate"


class DPUpdate(DXOFilter):
    """Clips each outgoing model update to ``clip_norm`` and adds Gaussian noise calibrated to it.

    Args:
        clip_norm: ``C``, the largest L2 norm of the site's update over all layers together.
        noise_multiplier: ``z``: the noise standard deviation is ``z × 2C`` (the sensitivity is ``2C``).
        delta: δ of the (ε, δ) guarantee the ledger reports; keep it below ``1 / n`` of the site.
        max_epsilon: the ε no release may pass (``None``: account without a cap).
        seed: seeds the noise, for tests only (``None``: fresh randomness, the production setting);
            the generator is seeded with ``(seed, releases so far)`` so a restart never repeats noise.
    """

    def __init__(
        self,
        clip_norm: float,
        noise_multiplier: float,
        delta: float,
        max_epsilon: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(supported_data_kinds=list(MODEL_KINDS), data_kinds_to_filter=list(MODEL_KINDS))
        for name, value in (("clip_norm", clip_norm), ("noise_multiplier", noise_multiplier)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"DPUpdate needs a positive finite {name}, got {value!r}.")
        if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 < delta < 1:
            raise ValueError(f"DPUpdate needs delta in (0, 1), got {delta!r}.")
        if max_epsilon is not None and (
            isinstance(max_epsilon, bool) or not isinstance(max_epsilon, int | float) or not max_epsilon > 0
        ):
            raise ValueError(f"DPUpdate needs max_epsilon > 0 or null, got {max_epsilon!r}.")
        self.clip_norm = float(clip_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.delta = float(delta)
        self.max_epsilon = float(max_epsilon) if max_epsilon is not None else None
        self.seed = seed

    # ----------------------------------------------------------------------------- chains
    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        data_chain = self.get_prop(FilterContextKey.CHAIN_TYPE) == FilterChainType.TASK_DATA_CHAIN
        dxo = model_dxo(shareable)
        if data_chain:
            task = fl_ctx.get_prop(FLContextKey.TASK_NAME)
            if dxo is not None and dxo.data_kind == DataKind.WEIGHTS and task in (None, TASK_TRAIN):
                self._remember(dxo, shareable, fl_ctx)
            return shareable
        if dxo is None:
            if nested_model(shareable):
                raise ValueError(
                    "DPUpdate: the result holds a model inside a COLLECTION (e.g. SCAFFOLD's weights and "
                    "control variates), which this privacy scope cannot release with DP; refusing to send it."
                )
            return shareable  # statistics, metrics, declined tasks: not a model update
        return super().process(shareable, fl_ctx)

    def _remember(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> None:
        weights = {k: np.array(v, copy=True) for k, v in dxo.data.items()}
        # Under HE the scope sees ciphertexts here, not numbers: remember nothing, refuse later.
        if weights and all(v.dtype.kind == "f" for v in weights.values()):
            round_index = shareable.get_header(AppConstants.CURRENT_ROUND)
            _RECEIVED[fl_ctx.get_job_id()] = (weights, int(round_index) if round_index is not None else None)

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO | None:
        job_id = fl_ctx.get_job_id()
        received, round_index = _RECEIVED.get(job_id, (None, None))
        if dxo.data_kind == DataKind.WEIGHTS:
            if received is None:
                raise ValueError(
                    "DPUpdate: no global model was received in this job, so the update cannot be formed; "
                    "refusing to send local weights. List the filter under the scope's task_data_filters too."
                )
            update = local_update(dxo.data, received, who=FILTER_NAME)
        else:
            update = {k: np.asarray(v) for k, v in dxo.data.items()}
        task = str(fl_ctx.get_prop(FLContextKey.TASK_NAME) or "")
        ledger = self._ledger(fl_ctx)
        epsilon = ledger.epsilon_after(self.noise_multiplier, delta=self.delta)
        if ledger.would_pass_cap(epsilon):
            ledger.decline(round_index, task, epsilon)
            raise RuntimeError(
                f"{DP_UPDATE_DECLINED}: release {ledger.releases + 1} would raise epsilon from "
                f"{ledger.epsilon:.3f} to {epsilon:.3f}, past this scope's max_epsilon {self.max_epsilon:g} "
                f"(delta={self.delta:.2g}); the site sends no update"
            )
        rng = np.random.default_rng(None if self.seed is None else [self.seed, ledger.releases])
        fixed = _pinned_layers(dxo)
        noised = dp_release(
            update, clip_norm=self.clip_norm, noise_multiplier=self.noise_multiplier, rng=rng, fixed=fixed
        )
        if dxo.data_kind == DataKind.WEIGHTS:
            dxo.data = {
                k: (np.asarray(received[k], np.float64) + v).astype(v.dtype) for k, v in noised.items()
            }
        else:
            dxo.data = noised
        entry = ReleaseEntry(
            round=round_index,
            task=task,
            epsilon=epsilon,
            delta=self.delta,
            noise_multiplier=self.noise_multiplier,
            noise_std=noise_std(clip_norm=self.clip_norm, noise_multiplier=self.noise_multiplier),
            clip_norm=self.clip_norm,
            releases=ledger.releases + 1,
        )
        ledger.record(entry)
        stamps = list(dxo.get_meta_prop(META_PRIVACY) or [])
        stamps.append({"filter": FILTER_NAME, **{k: v for k, v in asdict(entry).items() if k != "task"}})
        dxo.set_meta_prop(META_PRIVACY, stamps)
        self.log_info(
            fl_ctx,
            f"privacy scope: update clipped to L2 norm {self.clip_norm:g}, noise std {entry.noise_std:g}; "
            f"epsilon {epsilon:.3f} at delta {self.delta:.2g} after {entry.releases} release(s)",
        )
        return dxo

    def _ledger(self, fl_ctx: FLContext) -> ReleaseLedger:
        job_id = fl_ctx.get_job_id()
        ledger = _LEDGERS.get(job_id)
        if ledger is None:
            engine = fl_ctx.get_engine()
            run_dir = engine.get_workspace().get_run_dir(job_id) if engine is not None else None
            path = Path(run_dir) / DP_UPDATE_LEDGER_FILE if run_dir else None
            ledger = _LEDGERS[job_id] = ReleaseLedger.load(path, max_epsilon=self.max_epsilon)
        ledger.max_epsilon = self.max_epsilon
        return ledger


def _pinned_layers(dxo: DXO) -> list[str]:
    """Layers an earlier filter in the scope pinned to the received value (data-independent)."""
    pinned = []
    for stamp in dxo.get_meta_prop(META_PRIVACY) or []:
        if isinstance(stamp, dict) and stamp.get("filter") == "ExcludeLayers":
            pinned += [name for name in stamp.get("layers", []) if name in dxo.data]
    return pinned
