"""TshamModel: series -> patches -> HAM stack -> quantile forecasts. The only module that knows every stage."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tsham.config import TshamConfig
from tsham.ham import HamStack, LayerDiagnostics
from tsham.heads import QuantileHead, SeasonalCopies, SeasonalPrior, pinball_loss
from tsham.ops.backend import capturing, device_constant
from tsham.patch import ChannelRole, PatchEncoder, channel_identity
from tsham.series import InstanceScaler


@dataclass
class TshamOutput:
    """What one forward returns.

    Attributes:
        quantiles: forecasts in data units ``[B, C, Q, H]`` (C target channels; ``[:, c]`` is the usual
            ``(B, Q, H)``), quantiles ascending.
        scaled_quantiles: the same before inverse scaling (what the loss sees).
        loc, scale: per-target scaling ``[B, 1, C]``.
        layers: per-layer :class:`LayerDiagnostics` (routing masks over patch tokens, realised KV fraction of
            the tokens from each series' first observation on, scratchpad sizes); what probes read.
        num_context_patches: tokens before the first forecast token.
    """

    quantiles: torch.Tensor
    scaled_quantiles: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    layers: list[LayerDiagnostics]
    num_context_patches: int
    median_index: int

    @property
    def median(self) -> torch.Tensor:
        """Point forecast ``[B, C, H]``: the 0.5 quantile."""
        return self.quantiles[:, :, self.median_index]

    @property
    def kv_fraction(self) -> torch.Tensor:
        """Realised KV fraction averaged over layers (scalar tensor)."""
        return torch.stack([d.realised for d in self.layers]).mean()


def routable_tokens(observed: torch.Tensor, patch_length: int, seen: torch.Tensor | None = None) -> torch.Tensor:
    """The patch tokens a router may keep: ``observed [B, n P, C]`` (non-zero where a target or covariate is
    observed; flags do not count, being known everywhere) -> ``[B, n]`` bool, True from the first token holding an
    observed value on, or everywhere where ``seen [B]`` (a stream that observed something before these rows). A
    short series' left padding is not routable."""
    routable = observed.unflatten(1, (-1, patch_length)).flatten(2).any(2).cumsum(1) > 0
    return routable if seen is None else routable | seen[:, None]


def _as_3d(x: torch.Tensor | None, name: str, B: int, T: int) -> torch.Tensor | None:
    """``[B, T]`` -> ``[B, T, 1]``; checks batch and length."""
    if x is None:
        return None
    x = x[..., None] if x.dim() == 2 else x
    if x.dim() != 3 or x.shape[0] != B or x.shape[1] != T:
        raise ValueError(f"{name} must be [B={B}, T={T}, C]; got {tuple(x.shape)}")
    return x


class TshamModel(nn.Module):
    """Probabilistic forecaster over any number of target, covariate and flag channels.

    The context is left-padded (as missing) to whole patches and followed by ``ceil(H / P)`` future patches
    in which targets and past covariates are missing while future covariates and flags are known; the HAM
    stack runs causally over all tokens and the head reads each future token into P steps of Q quantiles
    per target channel (direct multi-patch output: one forward per forecast, no rollout).

    Args:
        config: :class:`TshamConfig`.
    """

    def __init__(self, config: TshamConfig):
        super().__init__()
        self.config = config
        D = config.ham.d_model
        self.encoder = PatchEncoder(config.patch)
        self.stack = HamStack(config.ham)
        self.target_id = nn.Linear(config.patch.channel_id_dim, D, bias=False)  # which target to read out
        self.head = QuantileHead(config.head)
        self.prior = (SeasonalPrior(config.prior, D, config.patch.patch_length, len(config.head.quantiles))
                      if config.prior.lags else None)
        self.scaler = InstanceScaler()

    def forward(
        self,
        past_target: torch.Tensor,
        horizon: int,
        past_observed_values: torch.Tensor | None = None,
        past_covariates: torch.Tensor | None = None,
        future_covariates: torch.Tensor | None = None,
        event_flags: torch.Tensor | None = None,
        align: str | None = None,
        scale_steps: int | None = None,
        oracle_steps: torch.Tensor | None = None,
    ) -> TshamOutput:
        """Forecast ``horizon`` steps.

        Args:
            past_target: ``[B, T, C]`` or ``[B, T]``; NaN = missing (or give past_observed_values).
            past_observed_values: ``[B, T, C]`` 1 where observed.
            past_covariates: ``[B, T, Cp]`` known up to now. future_covariates: ``[B, T + H, Cf]`` known ahead.
            event_flags: ``[B, T + H, F]`` (or ``[B, T, F]``: none known ahead) 0/1 events, also read by
                event routers.
            align: where patches are cut (default ``config.align``). ``"end"``: the context is left-padded so
                its last patch ends at T. ``"start"``: patches start at step 0 and the last ``T % P`` steps
                open the first future token (observed there, the rest of it forecast): what a stream that
                began at step 0 computes (:class:`tsham.forecasting.StreamingForecaster`).
            scale_steps: compute the instance scaling on the first ``scale_steps`` steps only (a stream
                freezes its scaling after a warm-up); default: the whole context.
            oracle_steps: ``[B, T]`` bool, the context steps an oracle router must keep (probes), and a guided
                router keeps on top of its own (``Router.guided``); a patch token is routed when any of its
                steps is set.
        """
        B, T = past_target.shape[:2]
        if not 0 < horizon <= self.config.max_horizon:
            raise ValueError(f"horizon must lie in 1..{self.config.max_horizon}; got {horizon}")
        align = align or self.config.align
        if align not in ("end", "start"):
            raise ValueError(f"align must be 'end' or 'start'; got {align!r}")
        if scale_steps is not None and not 0 < scale_steps <= T:
            raise ValueError(f"scale_steps must lie in 1..T={T}; got {scale_steps}")
        past_target = _as_3d(past_target, "past_target", B, T)
        C = past_target.shape[-1]
        if past_observed_values is not None:
            past_observed_values = _as_3d(past_observed_values, "past_observed_values", B, T)
            if past_observed_values.shape != past_target.shape:
                raise ValueError(f"past_observed_values {tuple(past_observed_values.shape)} must match past_target "
                                 f"{tuple(past_target.shape)}")
        P = self.config.patch.patch_length
        pad = (-T) % P if align == "end" else 0  # missing steps in front of the first patch
        lead = 0 if align == "end" else T % P  # observed steps inside the first future token
        n_future = math.ceil((lead + horizon) / P)
        full = T - lead + n_future * P  # context steps + whole future patches, before the left pad

        def per_token(steps: torch.Tensor) -> torch.Tensor:
            """``[B, t, k]`` per step -> ``[B, N, k]`` per patch token (max over its steps), padded like the input."""
            return F.pad(self._extend(steps, full), (0, 0, pad, 0)).unflatten(1, (-1, P)).amax(2)

        scaled, _, loc, scale = self._scaled(past_target, T, scale_steps, past_observed_values)
        observed = (past_observed_values if past_observed_values is not None else ~past_target.isnan()).float()
        values, masks, roles = [self._extend(scaled, full)], [self._extend(observed, full)], [ChannelRole.TARGET] * C
        if past_covariates is not None:
            cov, cov_obs, *_ = self._scaled(_as_3d(past_covariates, "past_covariates", B, T), T, scale_steps)
            values.append(self._extend(cov, full))
            masks.append(self._extend(cov_obs, full))
            roles += [ChannelRole.PAST_COVARIATE] * cov.shape[-1]
        if future_covariates is not None:
            cov, cov_obs, *_ = self._scaled(_as_3d(future_covariates, "future_covariates", B, T + horizon), T,
                                            scale_steps)
            values.append(self._extend(cov, full))
            masks.append(self._extend(cov_obs, full))
            roles += [ChannelRole.FUTURE_COVARIATE] * cov.shape[-1]
        valid = routable_tokens(F.pad(torch.cat(masks, -1), (0, 0, pad, 0)), P)  # (B, N), before the flags join
        flags = None
        if event_flags is not None:
            length = event_flags.shape[1] if event_flags.dim() >= 2 else -1
            if length not in (T, T + horizon):
                raise ValueError(f"event_flags must cover T={T} or T+H={T + horizon} steps; got {length}")
            flag_values = _as_3d(event_flags, "event_flags", B, length).float().nan_to_num(0.0)
            flag_known = torch.ones_like(flag_values)
            values.append(self._extend(flag_values, full))
            masks.append(self._extend(flag_known, full))
            roles += [ChannelRole.EVENT_FLAG] * flag_values.shape[-1]
            flags = per_token(flag_values)  # routers see one flag per patch token: any step of it flagged

        x = F.pad(torch.cat(values, -1), (0, 0, pad, 0))  # left pad to whole patches
        m = F.pad(torch.cat(masks, -1), (0, 0, pad, 0))
        role_ids = device_constant(tuple(int(r) for r in roles), torch.int64, x.device)
        tokens, _ = self.encoder(x, m, role_ids)  # (B, N, D), or (B * C_all, N, D) channel-independent
        if self.config.patch.channel_independent:  # one stream per channel; every stream sees the flags
            flags = None if flags is None else flags.repeat_interleave(len(roles), 0)
            valid = valid.repeat_interleave(len(roles), 0)
        oracle = None
        if oracle_steps is not None:
            if tuple(oracle_steps.shape) != (B, T):
                raise ValueError(f"oracle_steps must be [B={B}, T={T}]; got {tuple(oracle_steps.shape)}")
            oracle = per_token(oracle_steps[..., None].float())[..., 0] > 0  # (B, N)
            if self.config.patch.channel_independent:
                oracle = oracle.repeat_interleave(len(roles), 0)
        hidden, layers = self.stack(tokens, flags=flags, oracle_mask=oracle, valid=valid)
        n_context = hidden.shape[1] - n_future
        copies = self.seasonal_copies(scaled, observed, n_future * P - lead)
        out = self.read_out(hidden[:, n_context:], B, C, len(roles), copies, lead)[..., lead:lead + horizon]
        quantiles = self.scaler.inverse(out, loc.permute(0, 2, 1)[..., None], scale.permute(0, 2, 1)[..., None])
        return TshamOutput(quantiles, out, loc, scale, layers, n_context, self.head.median_index)

    def seasonal_copies(self, scaled: torch.Tensor, observed: torch.Tensor, steps: int) -> SeasonalCopies | None:
        """The seasonal prior's copies of the scaled targets ``[B, T, C]`` (``observed`` alike) over the next
        ``steps`` steps; None when the model has no prior."""
        return None if self.prior is None else self.prior.copies(scaled, observed, steps)

    def read_out(self, future: torch.Tensor, B: int, C: int, channels: int, copies: SeasonalCopies | None = None,
                 lead: int = 0) -> torch.Tensor:
        """Future-token states ``[B (x channels if channel-independent), n, D]`` -> scaled quantiles
        ``[B, C, Q, n * P]`` for the C targets (each target reads its channel identity), plus the seasonal
        prior's mix of ``copies`` (:meth:`seasonal_copies` over the ``n * P - lead`` steps after the context)."""
        n = future.shape[1]
        # channel-independent: each target reads its own stream
        future = future.reshape(B, channels, n, -1)[:, :C] if self.config.patch.channel_independent else future[:, None]
        read = future + self.target_id(channel_identity(C, self.config.patch.channel_id_dim, future.device))[
            None, :, None]  # (B, C, n, D)
        P = self.config.patch.patch_length
        out = self.head(read.reshape(-1, read.shape[-1]), P)  # (B * C * n, Q, P)
        Q = out.shape[1]
        out = out.view(B, C, n, Q, P).permute(0, 1, 3, 2, 4).reshape(B, C, Q, n * P)
        if self.prior is None:
            return out
        if copies is None:
            raise ValueError("read_out: this model has a seasonal prior; pass the context's copies "
                             "(TshamModel.seasonal_copies)")
        out = out + self.prior(read, copies, P, lead)  # (B, C, 1 or Q, n * P)
        # one shift for every quantile keeps the head's order; widening by the spread need not (a negative scale)
        return out if self.training or self.prior.spread_scale is None else out.sort(dim=2).values

    def loss(self, output: TshamOutput, future_target: torch.Tensor,
             future_observed_values: torch.Tensor | None = None, aux: bool = True) -> torch.Tensor:
        """Pinball loss on the scaled future ``[B, H, C]`` (NaN = missing), plus the routers' auxiliary losses
        unless ``aux=False`` (validation compares forecasts only)."""
        B, C, Q, H = output.scaled_quantiles.shape
        future_target = _as_3d(future_target, "future_target", B, H)
        observed = (future_observed_values if future_observed_values is not None else ~future_target.isnan())
        observed = _as_3d(observed, "future_observed_values", B, H).float()
        target = ((future_target.nan_to_num(0.0) - output.loc) / output.scale).permute(0, 2, 1).reshape(B * C, H)
        pred = output.scaled_quantiles.reshape(B * C, Q, H)
        loss = pinball_loss(pred, target, observed.permute(0, 2, 1).reshape(B * C, H), self.config.head.quantiles)
        extra = self.stack.aux_loss(output.layers) if aux else None
        return loss if extra is None else loss + extra

    def _scaled(self, values: torch.Tensor, context: int, scale_steps: int | None = None,
                observed: torch.Tensor | None = None):
        """Scales ``[B, t, C]`` (NaN = missing unless ``observed``) by its statistics over the first
        ``scale_steps`` (default: all ``context``) steps only, so no step depends on later values; returns
        scaled values (0 where missing), the observed mask (float), loc and scale ``[B, 1, C]``."""
        if observed is None:  # with a given mask (training batches) no check: it would sync with the GPU
            if not capturing(values) and torch.isinf(values).any():
                raise ValueError("series contains inf; use NaN for missing values")
            observed = ~values.isnan()
        observed = observed.bool()
        clean = torch.where(observed, values.float(), 0.0)
        steps = context if scale_steps is None else scale_steps
        _, loc, scale = self.scaler(clean[:, :steps], observed[:, :steps])
        scaled = torch.where(observed, (clean - loc) / scale, 0.0)
        return scaled, observed.float(), loc, scale

    @staticmethod
    def _extend(x: torch.Tensor, length: int) -> torch.Tensor:
        """Right-pads the time axis of ``[B, t, C]`` to ``length`` with zeros (unknown / unobserved)."""
        return F.pad(x, (0, 0, 0, length - x.shape[1]))
