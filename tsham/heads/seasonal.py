"""Seasonal prior: a forecast that copies the context one season back, added to the quantile head's output.

A patch-token model has to learn to copy a cycle by reading the right patches back and shifting them by a
part of a patch (a 24-step day is 1.5 patches of 16); the default model never learned it, and forecast a sharp
daily cycle as a smooth one (experiments/README.md, "The model does not copy a repeating cycle"). Seasonal
naive gets that copy for free. The prior gives it to the model: for each candidate lag ``p`` it repeats the last
``p`` context steps over the horizon and scores how well that copy fitted the recent context (the mean absolute
difference between ``x_t`` and ``x_{t-p}`` over the last ``window`` steps). Each future token mixes the copies
with softmax weights: a learned score of its hidden state, plus ``-beta * log(error)`` so that the lag that fits
this series best leads, plus an always-available "no copy" option. The head then forecasts what the copy misses.

Frequency-agnostic (the lags are candidates, the context picks), causal, and it reads only the last
``window + max(lags)`` steps: a stream keeps that many steps and forecasts exactly as the batch forward.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import nn

from tsham.ops.backend import device_constant

# Candidate seasons of the shipped model and of `tsham train`: calendar cycles at the usual sampling rates
# (quarterly, weekly, monthly, hourly, half-hourly, 15-minute; a year of weeks; a week of hours) and 1, the last
# value (a random walk's copy)
DEFAULT_LAGS = (1, 4, 7, 12, 24, 48, 52, 96, 168)


@dataclass
class PriorConfig:
    """The seasonal prior (off when ``lags`` is empty: older checkpoints have none)."""

    lags: tuple[int, ...] = ()  # candidate seasons in steps, e.g. (1, 7, 12, 24, 52, 168)
    window: int = 336  # context steps over which each lag's copy is scored
    min_pairs: int = 8  # a lag needs max(lag, min_pairs) observed pairs in the window to be offered
    none_bias: float = 2.0  # initial score of "no copy" (lags start near score 0): the head leads at first

    def __post_init__(self):
        def whole(x) -> bool:  # ints, or floats / numpy numbers with an integral value; never str or bool
            return isinstance(x, numbers.Real) and not isinstance(x, bool) and float(x).is_integer()

        if isinstance(self.lags, str | bytes) or not all(whole(p) for p in self.lags):
            raise ValueError(f"PriorConfig: lags must be a sequence of whole numbers of steps; got {self.lags!r}")
        lags = tuple(int(p) for p in self.lags)
        if any(p < 1 for p in lags) or list(lags) != sorted(set(lags)):
            raise ValueError(f"PriorConfig: lags must be distinct, ascending, >= 1; got {self.lags}")
        if not (whole(self.window) and whole(self.min_pairs)) or self.window < 1 or self.min_pairs < 1:
            raise ValueError(f"PriorConfig: window and min_pairs must be whole numbers >= 1; got {self.window!r}, "
                             f"{self.min_pairs!r}")
        self.window, self.min_pairs = int(self.window), int(self.min_pairs)
        if self.min_pairs > self.window:
            raise ValueError(f"PriorConfig: min_pairs ({self.min_pairs}) > window ({self.window}): no lag could ever "
                             "be offered")
        if lags and max(lags) > self.window:
            raise ValueError(f"PriorConfig: every lag must fit the scoring window ({self.window}); got {max(lags)}")
        self.lags = lags

    @property
    def span(self) -> int:
        """Context steps the prior reads (0 when off)."""
        return self.window + max(self.lags) if self.lags else 0


@dataclass
class SeasonalCopies:
    """What the context offers a forecast: per target channel and lag, the copy and its fit.

    Attributes:
        copies: ``[B, C, K, H]`` scaled values, lag ``k``'s context repeated over the H future steps.
        log_error: ``[B, C, K]`` log of the mean absolute difference over the scoring window.
        available: ``[B, C, K]`` bool, enough observed pairs to trust the score.
    """

    copies: torch.Tensor
    log_error: torch.Tensor
    available: torch.Tensor


class SeasonalPrior(nn.Module):
    """Mixes the context's seasonal copies per future token: ``read [B, C, n, D]`` -> prior ``[B, C, n * P]``.

    Args:
        config: :class:`PriorConfig` with at least one lag.
        d_model: width of the future tokens' states it scores.
    """

    def __init__(self, config: PriorConfig, d_model: int):
        super().__init__()
        if not config.lags:
            raise ValueError("SeasonalPrior: needs at least one lag (PriorConfig.lags)")
        self.config = config
        K = len(config.lags)
        self.score = nn.Linear(d_model, K + 1)  # per lag, then "no copy"
        self.log_beta = nn.Parameter(torch.zeros(()))  # weight of the fit (beta = 1 at first)
        self.log_beta._no_weight_decay = True  # a temperature: decay would pull it to a meaningless value
        with torch.no_grad():
            nn.init.zeros_(self.score.weight)
            self.score.bias.zero_()
            self.score.bias[K] = config.none_bias

    def copies(self, values: torch.Tensor, observed: torch.Tensor, horizon: int) -> SeasonalCopies:
        """The context's copies. ``values``: scaled targets ``[B, T, C]`` (any value where missing),
        ``observed``: ``[B, T, C]`` (1 where observed); only the last :attr:`PriorConfig.span` steps are read.
        Missing steps are filled with the last observed value before them. No host sync (CUDA-graph safe)."""
        c = self.config
        B, T, C = values.shape
        span = c.span
        observed = observed.bool()
        if span <= T:
            x, o = values[:, T - span:].float(), observed[:, T - span:]
        else:  # a short context: unobserved steps in front
            x = torch.cat([values.new_zeros(B, span - T, C).float(), values.float()], 1)
            o = torch.cat([observed.new_zeros(B, span - T, C), observed], 1)
        x = torch.where(o, x, 0.0)  # whatever stands at a missing step (NaN, say) never reaches a copy or a score
        steps = torch.arange(span, device=x.device)[None, :, None]
        last = torch.where(o, steps, -1).cummax(1).values  # (B, span, C): last observed step at or before t
        filled = x.gather(1, last.clamp_min(0))
        lags = device_constant(c.lags, torch.int64, x.device)  # (K,)
        future = torch.arange(horizon, device=x.device)
        source = span - lags[:, None] + future[None] % lags[:, None]  # (K, H): the step one season back
        copies = filled.permute(0, 2, 1)[:, :, source]  # (B, C, K, H)
        t = torch.arange(span - c.window, span, device=x.device)  # scoring window
        now, before = x[:, t], x[:, t[None] - lags[:, None]]  # (B, W, C), (B, K, W, C)
        pairs = (o[:, t][:, None] & o[:, t[None] - lags[:, None]]).float()  # (B, K, W, C)
        count = pairs.sum(2)  # (B, K, C)
        error = ((now[:, None] - before).abs() * pairs).sum(2) / count.clamp_min(1.0)
        need = torch.clamp(lags, min=c.min_pairs)[None, :, None]
        return SeasonalCopies(copies, error.clamp_min(1e-4).log().permute(0, 2, 1),
                              (count >= need).permute(0, 2, 1))

    def forward(self, read: torch.Tensor, copies: SeasonalCopies, patch_length: int, lead: int = 0) -> torch.Tensor:
        """``read``: future-token states ``[B, C, n, D]``; ``copies`` over ``n * patch_length - lead`` steps.
        Returns the prior ``[B, C, n * patch_length]``: 0 on the first ``lead`` steps (observed ones), the mix of
        copies after."""
        K = len(self.config.lags)
        weights = self.weights(read, copies)[..., :K]  # (B, C, n, K); "no copy" adds nothing
        steps = torch.nn.functional.pad(copies.copies, (lead, 0))  # (B, C, K, n * P)
        weights = weights.repeat_interleave(patch_length, 2)  # (B, C, n * P, K)
        return torch.einsum("bcsk,bcks->bcs", weights, steps)

    def weights(self, read: torch.Tensor, copies: SeasonalCopies) -> torch.Tensor:
        """Mixing weights ``[B, C, n, K + 1]`` per future token: one per lag, then "no copy" (sum 1)."""
        K = len(self.config.lags)
        logits = self.score(read).float()  # (B, C, n, K + 1)
        fit = -self.log_beta.exp() * copies.log_error  # (B, C, K)
        lag_logits = (logits[..., :K] + fit[:, :, None]).masked_fill(~copies.available[:, :, None], -torch.inf)
        # an untrustworthy lag is never mixed in; "no copy" is always offered, so the softmax stays finite
        return torch.cat([lag_logits, logits[..., K:]], -1).softmax(-1)
