"""FedAvg under SecAgg+ as a FLARE workflow: the server only ever holds the sum of the sites' updates.

FLARE 2.9 has no masking protocol. This controller runs the server's side of
:mod:`fedhealth.secagg` (Bonawitz et al. 2017; Bell et al. 2020) around the kit's ordinary ``train``
task. A round is two exchanges (four at a key epoch's start):

1. key epoch start (round 0, and after a round that could not be unmasked): ``secagg_advertise``
   (signed share-sealing keys) and ``secagg_share_keys`` (the roster goes out; each site's signed
   mask key of the round and its sealed shares come back);
2. ``train``: the global model (from the job's shareable generator, learning-rate schedule included)
   with the round's signed mask keys and every site's sealed shares in the ``fedhealth_secagg``
   header; each site trains, then its ``SecAggMask`` filter clips, encodes and masks the update;
3. ``secagg_unmask``: who sent a masked update and who dropped out; the sites answer with the shares
   that remove the masks of the sum, and deal the next round (a fresh mask key and self-mask seed).

The unmasked weighted sum is checked against what clipped updates can add up to, averaged, applied
to the global model through the shareable generator (``WEIGHT_DIFF``) and saved by the persistor.
A round that cannot be unmasked (fewer than ``threshold`` survivors, missing or forged shares, a sum
out of bounds) is logged with its reason, announced as a rejected update, and leaves the global
model unchanged; the next round starts a new key epoch (so does the round after a site dropped out,
to let it back in once it returns). Fewer than ``min_clients`` sites able to take part ends the job.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from nvflare.apis.controller_spec import Task
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal
from nvflare.app_common.abstract.model import ModelLearnableKey
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType

from fedhealth import constants as C
from fedhealth.secagg.config import SecAggConfig
from fedhealth.secagg.encoding import unflatten
from fedhealth.secagg.server import SecAggRoundError, SecAggServer, SecAggSetupError
from fedhealth.workflows.step_controller import StepController


class SecAggController(StepController):
    """FedAvg rounds whose updates are summed under SecAgg+ masks.

    Args:
        num_rounds: training rounds.
        min_clients: sites that must take part in a round (and the fewest with valid keys).
        max_norm: L2 bound each site clips its update to (the sites' own setting must match).
        bits: the ring's width, 32 to 64 in whole bytes (each byte more rounds 256 times finer).
        max_sites: the most sites a round may hold.
        max_weight: the largest FedAvg weight (training rows) of a site.
        threshold: shares that recover a secret (None: a majority of each site's neighbours).
        neighbors: neighbours per site, even (None: every other site, i.e. SecAgg).
        persistor_id: the model persistor.
        shareable_generator_id: turns the global model into the train task and applies the average.
        train_task_name: the sites' train task.
        train_timeout: seconds a round waits for the masked updates (0: no limit; a dropout needs one).
        protocol_timeout: seconds each protocol exchange waits.
        task_check_period: seconds between the controller's checks for answers (FLARE's default 0.2 s
            would cost each of a round's two exchanges up to that much; ScatterAndGather here uses 0.05).
    """

    def __init__(
        self,
        *,
        num_rounds: int,
        min_clients: int,
        max_norm: float,
        bits: int = 40,
        max_sites: int = 16,
        max_weight: float = 10_000.0,
        threshold: int | None = None,
        neighbors: int | None = None,
        persistor_id: str = "persistor",
        shareable_generator_id: str = "shareable_generator",
        train_task_name: str = C.TASK_TRAIN,
        train_timeout: int = 0,
        protocol_timeout: int = 60,
        task_check_period: float = 0.05,
    ) -> None:
        super().__init__(task_check_period=task_check_period)
        if num_rounds < 1 or min_clients < 2:
            raise ValueError(
                f"num_rounds must be at least 1 and min_clients 2, got {num_rounds}, {min_clients}."
            )
        self.config = SecAggConfig(
            max_norm=float(max_norm),
            bits=int(bits),
            max_sites=int(max_sites),
            max_weight=float(max_weight),
            threshold=threshold,
            neighbors=neighbors,
        )
        self.num_rounds, self.min_clients = int(num_rounds), int(min_clients)
        self.persistor_id, self.generator_id = persistor_id, shareable_generator_id
        self.train_task_name = train_task_name
        self.train_timeout, self.protocol_timeout = int(train_timeout), int(protocol_timeout)
        self.core: SecAggServer | None = None
        self.failed_rounds: list[dict] = []

    def start_controller(self, fl_ctx: FLContext) -> None:
        engine = self._engine
        self.persistor = engine.get_component(self.persistor_id)
        self.generator = engine.get_component(self.generator_id)
        if self.persistor is None or self.generator is None:
            self.system_panic(
                f"no {self.persistor_id!r} or {self.generator_id!r} component in the job", fl_ctx
            )
            return
        root = Path(engine.get_workspace().get_startup_kit_dir()) / "rootCA.pem"
        if not root.is_file():
            self.system_panic("the server's startup kit has no rootCA.pem to check the sites' keys", fl_ctx)
            return
        self.core = SecAggServer(
            job=fl_ctx.get_job_id(),
            config=self.config,
            root_pem=root.read_bytes(),
            min_sites=self.min_clients,
        )

    # ------------------------------------------------------------------ exchanges
    def _exchange(self, name: str, data: dict | Shareable, targets: list[str], fl_ctx, abort_signal, timeout):
        """One task to ``targets``; ``(answers by site, failures by site)``."""
        shareable = (
            data if isinstance(data, Shareable) else DXO(C.SECAGG_MESSAGE_KIND, data=data).to_shareable()
        )
        task = Task(name=name, data=shareable, timeout=timeout)
        self.broadcast_and_wait(
            task, fl_ctx, targets=targets, min_responses=len(targets), abort_signal=abort_signal
        )
        answers, failures = {}, {}
        for ct in task.client_tasks:
            site = ct.client.name
            rc = ct.result.get_return_code(ReturnCode.OK) if ct.result is not None else "NO_RESULT"
            if rc == ReturnCode.OK:
                answers[site] = from_shareable(ct.result)
            else:
                failures[site] = (ct.result.get_header(C.HEADER_ERROR, None) if ct.result else None) or str(
                    rc
                )
        for site in sorted(set(targets) - set(answers) - set(failures)):
            failures[site] = "no answer before the timeout"
        for site, why in sorted(failures.items()):
            self.log_warning(fl_ctx, f"{name}: {site} did not take part: {why}")
        return answers, failures

    def _setup(self, rnd: int, sites: list[str], fl_ctx, abort_signal) -> list[str]:
        request = self.core.setup_request()
        got, _ = self._exchange(
            C.TASK_SECAGG_ADVERTISE, request, sites, fl_ctx, abort_signal, self.protocol_timeout
        )
        share_request, refused = self.core.accept_adverts({s: dict(d.data) for s, d in got.items()}, rnd=rnd)
        for site, why in refused.items():
            self.log_error(fl_ctx, f"key epoch {self.core.epoch}: the keys of {site} are refused: {why}")
        roster = sorted(share_request["adverts"])
        got, _ = self._exchange(
            C.TASK_SECAGG_SHARE_KEYS, share_request, roster, fl_ctx, abort_signal, self.protocol_timeout
        )
        contributors = self.core.accept_key_deals(rnd, {s: dict(d.data) for s, d in got.items()})
        self.log_info(
            fl_ctx, f"key epoch {self.core.epoch}: {len(roster)} sites, threshold {self.core.threshold}"
        )
        return contributors

    def _round(self, rnd: int, model, fl_ctx, abort_signal) -> dict[str, np.ndarray]:
        """One SecAgg+ round: the weighted mean update (layer -> array), or SecAggRoundError."""
        sites = sorted(c.name for c in self._engine.get_clients())
        if self.core.needs_setup or not self.core.rounds.get(rnd):
            contributors = self._setup(rnd, sites, fl_ctx, abort_signal)
        else:
            contributors = self.core.rounds[rnd].contributors
        if len(contributors) < self.min_clients:
            raise SecAggSetupError(f"round {rnd}: {len(contributors)} sites ready, {self.min_clients} needed")
        data = self.generator.learnable_to_shareable(model, fl_ctx)
        data.set_header(AppConstants.CURRENT_ROUND, rnd)
        data.set_header(AppConstants.NUM_ROUNDS, self.num_rounds)
        routed = {s: self.core.routed(s, rnd) for s in contributors}
        payload = {"epoch": self.core.epoch, "rnd": rnd, "contributors": contributors}
        payload.update(keys=self.core.rounds[rnd].keys, shares={s: r["shares"] for s, r in routed.items()})
        data.set_header(C.HEADER_SECAGG, payload)  # each share is sealed for its receiver
        weights = model[ModelLearnableKey.WEIGHTS]
        shapes = {k: tuple(np.shape(weights[k])) for k in sorted(weights)}
        size = sum(int(np.prod(s)) for s in shapes.values()) + 1
        got, _ = self._exchange(
            self.train_task_name, data, contributors, fl_ctx, abort_signal, self.train_timeout
        )
        for site, dxo in got.items():
            try:
                if dxo.data_kind != C.SECAGG_MASKED_KIND:
                    raise ValueError(f"{site} sent a {dxo.data_kind} result, not a masked update; refused")
                vector = self.config.fixed_point.from_wire(dxo.data[C.SECAGG_MASKED_KEY], size=size)
                self.core.accept_masked(rnd, site, vector, size=size)
            except (ValueError, KeyError) as exc:
                self.log_error(fl_ctx, f"round {rnd}: {exc}")
        request = self.core.unmask_request(rnd, deal_next=rnd + 1 < self.num_rounds)
        got, _ = self._exchange(
            C.TASK_SECAGG_UNMASK, request, request["survivors"], fl_ctx, abort_signal, self.protocol_timeout
        )
        self.core.accept_reveals(rnd, {s: dict(d.data) for s, d in got.items()})
        values, weight, survivors = self.core.aggregate(rnd)
        self.log_info(
            fl_ctx,
            f"round {rnd}: unmasked the sum of {len(survivors)} sites ({', '.join(survivors)})"
            + (
                f"; recovered the masks of {request['dropped']}, who dropped out"
                if request["dropped"]
                else ""
            ),
        )
        return unflatten(values / weight, shapes)

    # ------------------------------------------------------------------ flow
    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        if self.core is None:
            return
        model = self.persistor.load(fl_ctx)
        fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, model, private=True, sticky=True)
        fl_ctx.set_prop(AppConstants.NUM_ROUNDS, self.num_rounds, private=True, sticky=False)
        fl_ctx.set_prop(AppConstants.START_ROUND, 0, private=True, sticky=False)
        for rnd in range(self.num_rounds):
            if abort_signal.triggered:
                return
            fl_ctx.set_prop(AppConstants.CURRENT_ROUND, rnd, private=True, sticky=True)
            self.fire_event(AppEventType.ROUND_STARTED, fl_ctx)
            try:
                mean = self._round(rnd, model, fl_ctx, abort_signal)
            except SecAggRoundError as exc:
                if abort_signal.triggered:
                    return
                self._failed(rnd, str(exc), fl_ctx)
                if isinstance(exc, SecAggSetupError):
                    self.system_panic(str(exc), fl_ctx)
                    return
                self.fire_event(AppEventType.ROUND_DONE, fl_ctx)
                continue
            dxo = DXO(DataKind.WEIGHT_DIFF, data={k: v.astype(np.float32) for k, v in mean.items()})
            model = self.generator.shareable_to_learnable(dxo.to_shareable(), fl_ctx)
            fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, model, private=True, sticky=True)
            self.persistor.save(model, fl_ctx)
            self.fire_event(AppEventType.ROUND_DONE, fl_ctx)

    def _failed(self, rnd: int, reason: str, fl_ctx: FLContext) -> None:
        """A round that could not be unmasked: logged, recorded, announced; the model is unchanged."""
        record = {"site": "secure aggregation", "round": rnd, "reason": reason}
        self.failed_rounds.append(record)
        self.log_error(fl_ctx, f"SecAgg+ {reason}")
        self.fire_event_with_data(C.EVENT_UPDATE_REJECTED, fl_ctx, C.PROP_REJECTION, dict(record))
