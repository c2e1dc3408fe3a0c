"""StreamingForecaster: feed observations as they arrive, ask for a forecast at any step, at bounded cost.

A stream cuts patches from its first step (``align="start"``) and freezes its instance scaling after a
warm-up of ``warmup`` steps. Its forecasts equal the batch forecast on the same history,
``model(history, horizon, align="start", scale_steps=min(T, warmup))``, to float tolerance. Each complete patch
is one recurrent step of the HAM stack; a forecast runs the partial last patch and the future patches from a
copy of the state. Memory is the recurrent state plus the scratchpad plus at most one patch of pending steps,
plus the last targets a seasonal prior reads (``config.prior.span`` steps, when the model has one). The
scratchpad grows with what the routers keep, about their target fraction of the patches, unless their ``cap``
is set (the shipped model sets none): so the cost of an update and of a forecast stays flat only up to that
growth, constant with a cap.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tsham.checkpoint import model_fingerprint, read_json, read_tensors
from tsham.config import TshamConfig
from tsham.model import TshamModel, routable_tokens
from tsham.patch import ChannelRole
from tsham.series import flat_where_constant, observed_range

STATE_VERSION = 1


def resume_folder(path: str | Path) -> Path:
    """The folder a stream saved at ``path`` resumes from: ``path``, or ``path#old`` where a save was cut in the
    moment between moving the previous state aside and putting the new one in place (:meth:`StreamingForecaster
    .save`; ``#`` never occurs in a ``tsham stream`` series folder, whose ids are percent-encoded)."""
    path = Path(path)
    old = path.with_name(path.name + "#old")
    return old if not path.exists() and old.is_dir() else path


class StreamingForecaster:
    """Online forecasts for ``num_streams`` series of one channel layout.

    Args:
        model: a trained :class:`TshamModel` (eval mode is set).
        num_streams: series updated together (one row each per update).
        num_targets, num_past_covariates, num_future_covariates, num_flags: channels of every update.
        warmup: steps after which the scaling freezes (default: 4 patches). Until then each forecast
            recomputes over the few stored steps; afterwards an update is one recurrent step per patch (its cost
            grows only with the scratchpad).
        device: where the state lives (default: where the model is). The model is shared, not copied: a model
            elsewhere is an error rather than moved under its other users (a pipeline, say).

    Examples::
        >>> stream = StreamingForecaster(TshamPipeline.load().model)
        >>> for value in live_feed:
        ...     stream.update(np.array([[value]]))        # [num_streams, num_targets]: one step
        ...     q = stream.forecast(24)                   # (num_streams, num_targets, Q, 24)
        >>> stream.save("stream_state")                   # ... later: StreamingForecaster.load("stream_state", model)
    """

    def __init__(self, model: TshamModel, num_streams: int = 1, num_targets: int = 1, num_past_covariates: int = 0,
                 num_future_covariates: int = 0, num_flags: int = 0, warmup: int | None = None,
                 device: str | torch.device | None = None):
        P = model.config.patch.patch_length
        warmup = 4 * P if warmup is None else warmup
        if min(num_streams, num_targets) < 1 or min(num_past_covariates, num_future_covariates, num_flags) < 0:
            raise ValueError("StreamingForecaster: need >= 1 stream and target, and no negative channel counts")
        if warmup < 1:
            raise ValueError(f"StreamingForecaster: warmup must be >= 1 step; got {warmup}")
        where = next(model.parameters()).device
        device = where if device is None else torch.device(device)
        if device.type == where.type and device.index in (None, where.index):  # "cuda" means the model's cuda:N
            device = where
        if device != where:
            raise ValueError(f"StreamingForecaster: the model is on {where}, the stream asked for {device}; move the "
                             f"model first (model.to({str(device)!r})): it is shared, and moving it here would move "
                             "it under its other users")
        self.model, self.device, self.P, self.warmup = model.eval(), device, P, warmup
        self.layout = (num_targets, num_past_covariates, num_future_covariates, num_flags)
        self.num_streams = num_streams
        roles = ([ChannelRole.TARGET] * num_targets + [ChannelRole.PAST_COVARIATE] * num_past_covariates
                 + [ChannelRole.FUTURE_COVARIATE] * num_future_covariates + [ChannelRole.EVENT_FLAG] * num_flags)
        self.role_ids = torch.tensor([int(r) for r in roles], device=self.device)
        self.steps = 0  # observations so far
        self.raw = torch.zeros(num_streams, 0, len(roles), device=self.device)  # kept only until warm-up ends
        self.pending = torch.zeros(num_streams, 0, len(roles), device=self.device)  # steps of the open patch
        # the last rows the seasonal prior reads the targets of (model.config.prior.span steps; none without a prior)
        self.history = torch.zeros(num_streams, 0, len(roles), device=self.device)
        self.loc = self.scale = None  # frozen [S, 1, C_scaled] after warm-up
        # lowest and highest observed target so far [S, Ct]: a history of one value is forecast flat at it
        self.low = torch.full((num_streams, num_targets), torch.inf, device=self.device)
        self.high = -self.low
        self.states = None  # HAM stack states after warm-up
        # per stream, whether a target or covariate has been observed yet: the tokens before (all missing) are
        # never routed, as the batch forward keeps a short series' left padding out of the scratchpad
        self.seen = torch.zeros(num_streams, dtype=torch.bool, device=self.device)

    # -- feeding ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, target, past_covariates=None, future_covariates=None, flags=None) -> None:
        """Appends observations: each argument ``[S, C]`` (one step) or ``[S, n, C]`` (n steps); NaN = missing.

        ``future_covariates`` are the values at the observed steps (their future goes to :meth:`forecast`).
        """
        rows = self._rows(target, past_covariates, future_covariates, flags)  # (S, n, C_all), NaN kept
        self.steps += rows.shape[1]
        history = torch.cat([self.history, rows], 1)
        self.history = history[:, history.shape[1] - min(self.model.config.prior.span, history.shape[1]):]
        low, high = observed_range(rows[..., :self.layout[0]])
        self.low, self.high = torch.minimum(self.low, low), torch.maximum(self.high, high)
        if self.states is None:
            self.raw = torch.cat([self.raw, rows], 1)
            if self.raw.shape[1] >= self.warmup:
                self._freeze()
            return
        self.pending = torch.cat([self.pending, rows], 1)
        self._commit()

    def _freeze(self) -> None:
        """Ends the warm-up: fixes the scaling on the first ``warmup`` steps and prefills the stack."""
        k = sum(self.layout[:3])  # targets and covariates are scaled; flags are not
        first = self.raw[:, :self.warmup, :k]
        _, self.loc, self.scale = self.model.scaler(first.nan_to_num(0.0), ~first.isnan())
        whole = self.raw.shape[1] // self.P * self.P
        self.pending = self.raw[:, whole:]
        states = None
        if whole:
            tokens, flags = self._encode(self.raw[:, :whole])
            _, _, states = self.model.stack(tokens, flags=flags, return_state=True,
                                            valid=self._valid(self.raw[:, :whole], commit=True))
        self.states = states if states is not None else self.model.stack.init_state(tokens_rows(self), self.device)
        self.raw = self.raw[:, :0]

    def _commit(self) -> None:
        """Steps the stack once per complete pending patch."""
        while self.pending.shape[1] >= self.P:
            tokens, flags = self._encode(self.pending[:, :self.P])
            valid = self._valid(self.pending[:, :self.P], commit=True)[:, 0]
            self.model.stack.step(tokens[:, 0], self.states, None if flags is None else flags[:, 0], valid=valid)
            self.pending = self.pending[:, self.P:]

    # -- forecasting ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def forecast(self, horizon: int, future_covariates=None, future_flags=None) -> np.ndarray:
        """Quantiles ``(S, num_targets, Q, horizon)`` for the steps after the last observation.

        Args:
            future_covariates: ``[S, horizon, Cf]`` values of the future covariates ahead (required when the
                stream has some). future_flags: ``[S, horizon, F]`` known future events (default: none).
        """
        if self.steps == 0:
            raise ValueError("StreamingForecaster.forecast: no observation yet")
        if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or \
                not 0 < horizon <= self.model.config.max_horizon:
            raise ValueError(f"horizon must lie in 1..{self.model.config.max_horizon} (whole steps); got {horizon!r}")
        Ct, Cp, Cf, F_ = self.layout
        for name, value, width in (("future_covariates", future_covariates, Cf), ("future_flags", future_flags, F_)):
            if value is not None and not width:
                raise ValueError(f"forecast: got {name} but the stream was built with none")
        S = self.num_streams
        future = torch.full((S, horizon, sum(self.layout)), float("nan"), device=self.device)
        if Cf:
            if future_covariates is None:
                raise ValueError(f"forecast: this stream has {Cf} future covariates; pass their next {horizon} "
                                 "values as future_covariates [S, horizon, Cf]")
            future[..., Ct + Cp:Ct + Cp + Cf] = self._tensor(future_covariates, "future_covariates", (S, horizon, Cf))
        if F_ and future_flags is not None:  # otherwise unknown (missing), as in the batch forward
            # a NaN flag reads as "no event", as in the batch forward (flags given are known)
            future[..., Ct + Cp + Cf:] = self._tensor(future_flags, "future_flags", (S, horizon, F_)).nan_to_num(0.0)
        if self.states is None:  # warm-up: the batch forward over the few stored steps
            return flat_where_constant(self._batch_forecast(horizon, future, future_flags is not None), self.low,
                                       self.high).cpu().numpy()
        lead = self.pending.shape[1]
        n_future = math.ceil((lead + horizon) / self.P)
        tail = torch.cat([self.pending, future], 1)
        tail = F.pad(tail, (0, 0, 0, n_future * self.P - tail.shape[1]), value=float("nan"))
        tokens, flags = self._encode(tail)
        valid = self._valid(tail, commit=False)
        states = copy.deepcopy(self.states)
        hidden = []
        for i in range(n_future):
            y, states, _ = self.model.stack.step(tokens[:, i], states, None if flags is None else flags[:, i],
                                                 valid=valid[:, i])
            hidden.append(y)
        scaled, observed = self._scaled(self.history)
        copies = self.model.seasonal_copies(scaled[..., :Ct], observed[..., :Ct], n_future * self.P - lead)
        out = self.model.read_out(torch.stack(hidden, 1), S, Ct, len(self.role_ids), copies, lead)[..., lead:lead +
                                                                                                   horizon]
        loc, scale = self.loc[..., :Ct].permute(0, 2, 1)[..., None], self.scale[..., :Ct].permute(0, 2, 1)[..., None]
        return flat_where_constant(self.model.scaler.inverse(out, loc, scale), self.low, self.high).cpu().numpy()

    def _batch_forecast(self, horizon: int, future: torch.Tensor, future_flags: bool) -> torch.Tensor:
        Ct, Cp, Cf, F_ = self.layout
        raw = self.raw
        kwargs = {}
        if Cp:
            kwargs["past_covariates"] = raw[..., Ct:Ct + Cp]
        if Cf:
            kwargs["future_covariates"] = torch.cat([raw, future], 1)[..., Ct + Cp:Ct + Cp + Cf]
        if F_:
            kwargs["event_flags"] = (torch.cat([raw, future], 1) if future_flags else raw)[..., Ct + Cp + Cf:]
        return self.model(raw[..., :Ct], horizon, align="start", **kwargs).quantiles

    # -- encoding ---------------------------------------------------------------------------------------------
    def _scaled(self, rows: torch.Tensor):
        """Raw rows ``[S, n, C_all]`` -> values (targets and covariates scaled with the frozen statistics, flags
        as they are; 0 where missing) and the observed mask (NaN = missing, unknown future flags included)."""
        k = sum(self.layout[:3])
        observed = ~rows.isnan()
        values = rows.nan_to_num(0.0)
        scaled = torch.where(observed[..., :k], (values[..., :k] - self.loc) / self.scale, 0.0)
        return torch.cat([scaled, values[..., k:]], -1), observed.float()

    def _encode(self, rows: torch.Tensor):
        """Whole patches of raw rows ``[S, n P, C_all]`` -> tokens ``[S', n, D]`` and router flags ``[S', n, F]``."""
        values, observed = self._scaled(rows)
        tokens, _ = self.model.encoder(values, observed, self.role_ids)
        F_ = self.layout[3]
        if not F_:
            return tokens, None
        flags = values[..., -F_:].unflatten(1, (-1, self.P)).amax(2)
        if self.model.config.patch.channel_independent:
            flags = flags.repeat_interleave(len(self.role_ids), 0)
        return tokens, flags

    def _valid(self, rows: torch.Tensor, commit: bool) -> torch.Tensor:
        """Whole patches of raw rows ``[S, n P, C_all]`` -> ``[S', n]`` bool, the tokens a router may keep: from the
        first observed target or covariate of the stream on (as :meth:`TshamModel.forward` computes it);
        ``commit``: the rows join the stream (remember what they observed)."""
        valid = routable_tokens(~rows[..., :sum(self.layout[:3])].isnan(), self.P, self.seen)
        if commit and valid.shape[1]:
            self.seen = valid[:, -1]
        if self.model.config.patch.channel_independent:
            valid = valid.repeat_interleave(len(self.role_ids), 0)
        return valid

    def _rows(self, target, past_covariates, future_covariates, flags) -> torch.Tensor:
        """Checks and joins one update into ``[S, n, C_all]``."""
        Ct, Cp, Cf, F_ = self.layout
        target = self._tensor(target, "target", (self.num_streams, None, Ct))
        n = target.shape[1]
        parts = [target]
        for name, value, width in (("past_covariates", past_covariates, Cp), ("future_covariates", future_covariates,
                                                                               Cf), ("flags", flags, F_)):
            if width and value is None:
                raise ValueError(f"update: this stream has {width} {name} channels; pass them [S, C] or [S, n, C]")
            if not width and value is not None:
                raise ValueError(f"update: got {name} but the stream was built with none")
            if width:
                part = self._tensor(value, name, (self.num_streams, n, width))
                # a NaN flag reads as "no event", as in the batch forward: flags are always known
                parts.append(part.nan_to_num(0.0) if name == "flags" else part)
        return torch.cat(parts, -1)  # every part passed _tensor's check for inf

    def _tensor(self, value, name: str, shape: tuple) -> torch.Tensor:
        """``[S, C]`` (one step) or ``[S, n, C]`` -> float tensor ``[S, n, C]`` on the device, shape-checked."""
        x = torch.as_tensor(np.asarray(value, dtype=np.float32) if not torch.is_tensor(value) else value,
                            dtype=torch.float32, device=self.device)
        if x.dim() == 2:
            x = x[:, None]
        if x.dim() != 3 or x.shape[0] != shape[0] or x.shape[2] != shape[2] or (
                shape[1] is not None and x.shape[1] != shape[1]):
            want = f"[S={shape[0]}, C={shape[2]}] or [S, n, C]" if shape[1] is None else \
                f"[S={shape[0]}, n={shape[1]}, C={shape[2]}]"
            raise ValueError(f"{name} must be {want}; got {tuple(x.shape)}")
        if torch.isinf(x).any():
            raise ValueError(f"{name} contains inf; use NaN for missing values")
        return x

    # -- persistence ------------------------------------------------------------------------------------------
    def memory_bytes(self) -> int:
        """Bytes of stream state: recurrent states, scratchpads, pending (and warm-up) steps, the seasonal prior's
        history, scaling."""
        tensors = [self.raw, self.pending, self.history] + ([] if self.loc is None else [self.loc, self.scale])
        for state in self.states or []:
            tensors += list(state.tensors().values())
        return sum(t.numel() * t.element_size() for t in tensors)

    def save(self, path: str | Path, extra: dict[str, dict] | None = None) -> Path:
        """Writes the stream to ``path/stream.safetensors`` + ``path/stream.json`` (no pickle), and each
        ``extra`` entry ``{file name: dict}`` as JSON beside them (e.g. a caller's own bookkeeping).

        The folder is written whole, then swapped in: a save cut short (a crash, a second signal) leaves the
        previous state, as ``path#old`` for the moment of the swap, which :meth:`load` then resumes from."""
        path = Path(path)
        fresh, old = path.with_name(path.name + "#saving"), path.with_name(path.name + "#old")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(parents=True)
        self._write(fresh)
        for name, content in (extra or {}).items():
            (fresh / name).write_text(json.dumps(content))
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(fresh, path)
        shutil.rmtree(old, ignore_errors=True)
        return path

    def _write(self, path: Path) -> None:
        tensors = {"raw": self.raw, "pending": self.pending, "history": self.history, "low": self.low,
                   "high": self.high, "seen": self.seen}
        if self.loc is not None:
            tensors.update(loc=self.loc, scale=self.scale)
        meta = {"version": STATE_VERSION, "steps": self.steps, "layout": list(self.layout), "warmup": self.warmup,
                "num_streams": self.num_streams, "model_config": self.model.config.to_dict(),
                "model_fingerprint": model_fingerprint(self.model), "layers": []}
        for i, state in enumerate(self.states or []):
            tensors.update({f"layer{i}.{k}": v for k, v in state.tensors().items()})
            meta["layers"].append({"offset": state.offset, "window": state.window, "sinks": state.sinks})
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path / "stream.safetensors"))
        (path / "stream.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: str | Path, model: TshamModel, device: str | torch.device | None = None
             ) -> StreamingForecaster:
        """Resumes a stream saved by :meth:`save` with the same model (on ``device``, default the model's: see the
        constructor); forecasts continue identically."""
        path = resume_folder(path)
        for name in ("stream.json", "stream.safetensors"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"stream state file {path / name} not found")
        meta = read_json(path / "stream.json")
        if meta.get("version") != STATE_VERSION:
            raise ValueError(f"stream state {path} has version {meta.get('version')}; this tsham reads {STATE_VERSION}")
        # compared as this tsham reads it (a config saved before a field existed has that field's default), both
        # through JSON (a tuple in a config built in code is a list once saved)
        as_saved = lambda config: json.loads(json.dumps(config.to_dict()))  # noqa: E731
        if as_saved(TshamConfig.from_dict(meta["model_config"])) != as_saved(model.config):
            raise ValueError(f"stream state {path} was written with another model configuration; resume it with "
                             "the model that wrote it")
        if "model_fingerprint" in meta and meta["model_fingerprint"] != model_fingerprint(model):  # older: none
            raise ValueError(f"stream state {path} was written with other weights or router thresholds (another "
                             "checkpoint, or a budget set since); resume it with the model that wrote it")
        Ct, Cp, Cf, F_ = meta["layout"]
        stream = cls(model, meta["num_streams"], Ct, Cp, Cf, F_, warmup=meta["warmup"], device=device)
        tensors = {k: v.to(stream.device) for k, v in read_tensors(path / "stream.safetensors").items()}
        stream.steps, stream.raw, stream.pending = meta["steps"], tensors["raw"], tensors["pending"]
        if "history" in tensors:  # older states have none, and (checked above) a model without a prior
            stream.history = tensors["history"]
        stream.loc, stream.scale = tensors.get("loc"), tensors.get("scale")
        if "low" in tensors:
            stream.low, stream.high = tensors["low"], tensors["high"]
        else:  # older states did not record the range: an unknown one (-inf, inf) is never forecast flat
            stream.low = torch.full_like(stream.low, -torch.inf)
            stream.high = -stream.low
        # older states did not record it: past the warm-up they routed from the first row on, so every row counts
        # as seen; in the warm-up the rows are all still there, and the prefill finds what was observed
        if "seen" in tensors:
            stream.seen = tensors["seen"]
        elif stream.loc is not None:
            stream.seen = torch.ones_like(stream.seen)
        if meta["layers"]:
            stream.states = stream.model.stack.init_state(1, stream.device)
            for i, (state, extra) in enumerate(zip(stream.states, meta["layers"], strict=True)):
                for k in state.tensors():
                    setattr(state, k, tensors[f"layer{i}.{k}"])
                state.offset, state.window, state.sinks = extra["offset"], extra["window"], extra["sinks"]
        elif stream.loc is not None:  # warm-up done but no whole patch yet
            stream.states = stream.model.stack.init_state(tokens_rows(stream), stream.device)
        return stream


def tokens_rows(stream: StreamingForecaster) -> int:
    """Rows of the HAM stack per stream batch: streams, times channels when the model is channel-independent."""
    independent = stream.model.config.patch.channel_independent
    return stream.num_streams * (len(stream.role_ids) if independent else 1)
