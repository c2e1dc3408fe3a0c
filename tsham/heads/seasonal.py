"""Seasonal prior: a forecast that copies the context one season back, added to the quantile head's output.

A patch-token model has to learn to copy a cycle by reading the right patches back and shifting them by a
part of a patch (a 24-step day is 1.5 patches of 16); the default model never learned it, and forecast a sharp
daily cycle as a smooth one (experiments/README.md, "The model does not copy a repeating cycle"). Seasonal
naive gets that copy for free. The prior gives it to the model: for each candidate lag ``p`` it repeats the last
``p`` context steps over the horizon and scores how well that copy fitted the recent context (the mean absolute
difference between ``x_t`` and ``x_{t-p}`` over the last ``window`` steps). Each future token mixes the copies
with softmax weights: a learned score of its hidden state, plus ``-beta * log(error)`` so that the lag that fits
this series best leads, plus an always-available "no copy" option. The head then forecasts what the copy misses.

Averaged copies (``PriorConfig.means``) are candidates too: the mean of the last ``s`` seasons of lag ``p``, which
keeps the season and averages the noise out (a plain average of the last 7 days beats seasonal naive and the
model on ETT's longer terms, experiments/README.md); scored, mixed and trained like the plain copies.

Two optional refinements (``PriorConfig.per_step``, ``PriorConfig.spread``; the shipped model has both). A patch
token's one set of weights has to serve all its steps, so the first future token could not copy the last value
for its first steps and the daily mean for its later ones (the default's median at one step ahead on ETTh1 erred
2.6x more than the last value did, experiments/README.md): ``per_step`` adds a learned score per step of the patch.
And a forecast's uncertainty follows the season (a load is steady at night and volatile in the morning), which the
head, reading one state per token, could not see: ``spread`` offers each averaged candidate's spread at each step
(the mean absolute deviation of its seasons from their mean) and widens every quantile by a learned multiple of the
mixed spread.

Frequency-agnostic (the lags are candidates, the context picks), causal, and it reads only the last
:attr:`PriorConfig.span` steps: a stream keeps that many steps and forecasts exactly as the batch forward.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import torch
from torch import nn

from tsham.ops.backend import device_constant

# Candidate seasons of the shipped model and of `tsham train`: calendar cycles at the usual sampling rates
# (quarterly, weekly, monthly, hourly, half-hourly, 15-minute; a year of weeks; a week of hours) and 1, the last
# value (a random walk's copy)
DEFAULT_LAGS = (1, 4, 7, 12, 24, 48, 52, 96, 168)
# Averaged candidates (lag, seasons) over the same rates: 3 years of quarters, months or weeks, 4 weeks of days,
# 1, 2 and 3 weeks of days at hourly rate (the mean daily profile of the last 21 days forecasts ETTh1 at MSE
# 0.390 / 0.401 / 0.399 / 0.423 under the LTSF protocol, against PatchTST/64's 0.370 / 0.413 / 0.422 / 0.447),
# 1 and 2 weeks of days at half-hourly rate, a week of days at 15-minute rate, 3 weeks of hours. Spans <= 672 steps
DEFAULT_MEANS = ((4, 3), (7, 4), (12, 3), (24, 7), (24, 14), (24, 21), (48, 7), (48, 14), (52, 3), (96, 7), (168, 3))


def parse_means(texts) -> tuple[tuple[int, int], ...]:
    """Averaged candidates from the command line: ``["24x7", "168x3"]`` -> ``((24, 7), (168, 3))``, sorted (each
    pair is checked by :class:`PriorConfig`). Raises ValueError naming the text that is not LAGxSEASONS."""
    out = []
    for text in texts:
        parts = str(text).lower().split("x")
        if len(parts) != 2 or not all(p.strip().isascii() and p.strip().isdecimal() for p in parts):
            raise ValueError(f"averaged candidates are LAGxSEASONS, e.g. 24x7 (the mean of the last 7 seasons of 24 "
                             f"steps); got {text!r}")
        out.append((int(parts[0]), int(parts[1])))
    return tuple(sorted(out))


@dataclass
class PriorConfig:
    """The seasonal prior (off when ``lags`` is empty: older checkpoints have none)."""

    lags: tuple[int, ...] = ()  # candidate seasons in steps, e.g. (1, 7, 12, 24, 52, 168)
    means: tuple[tuple[int, int], ...] = ()  # averaged candidates (lag, seasons), e.g. ((24, 7),): last 7 days' mean
    window: int = 336  # context steps over which each lag's copy is scored
    min_pairs: int = 8  # a lag needs max(lag, min_pairs) observed pairs in the window to be offered
    none_bias: float = 2.0  # initial score of "no copy" (lags start near score 0): the head leads at first
    # a score per step of a future patch besides the token's (SeasonalPrior.step_score). Steps count from the patch's
    # start, not the forecast's: a model streamed (align "start", where the context may end inside a patch) should
    # train with TrainConfig.align_jitter, as the shipped one did (`tsham finetune` of it does; `tsham train
    # --align-jitter` for a new model meant for streams)
    per_step: bool = False
    spread: bool = False  # widen the quantiles by the mixed averaged candidates' spread (SeasonalPrior.spread_scale)

    def __post_init__(self):
        if not all(isinstance(flag, bool) for flag in (self.per_step, self.spread)):
            raise ValueError(f"PriorConfig: per_step and spread must be true or false; got {self.per_step!r}, "
                             f"{self.spread!r}")
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
        if isinstance(self.means, str | bytes) or not all(
                isinstance(m, list | tuple) and len(m) == 2 and whole(m[0]) and whole(m[1]) for m in self.means):
            raise ValueError(f"PriorConfig: means must be (lag, seasons) pairs of whole numbers; got {self.means!r}")
        means = tuple((int(p), int(n)) for p, n in self.means)
        if means and not lags:
            raise ValueError("PriorConfig: means need lags (a prior without plain lags is off)")
        if any(p < 1 or p > self.window or n < 2 for p, n in means) or list(means) != sorted(set(means)):
            raise ValueError(f"PriorConfig: means must be distinct, ascending (lag, seasons) pairs with 1 <= lag <= "
                             f"window ({self.window}) and seasons >= 2; got {self.means}")
        self.means = means

    @property
    def candidates(self) -> tuple[tuple[int, int], ...]:
        """Every copy offered, as (lag, seasons averaged): the plain lags (1 season), then the means."""
        return tuple((p, 1) for p in self.lags) + self.means

    def within(self, context_length: int) -> PriorConfig:
        """This config without the averaged candidates a context of ``context_length`` steps can never offer: a
        mean of n seasons of lag p needs ``n * p + max(p, min_pairs)`` steps to be scored, so in training its
        score would get no gradient, and a longer context at inference would mix it in untrained."""
        keep = tuple((p, n) for p, n in self.means if n * p + max(p, self.min_pairs) <= context_length)
        return dataclasses.replace(self, means=keep)

    @property
    def span(self) -> int:
        """Context steps the prior reads (0 when off)."""
        return self.window + max(p * n for p, n in self.candidates) if self.lags else 0


@dataclass
class SeasonalCopies:
    """What the context offers a forecast: per target channel and lag, the copy and its fit.

    Attributes:
        copies: ``[B, C, K, H]`` scaled values, candidate ``k``'s context repeated over the H future steps
            (K = :attr:`PriorConfig.candidates`: the plain lags, then the means).
        log_error: ``[B, C, K]`` log of the mean absolute difference over the scoring window.
        available: ``[B, C, K]`` bool, enough observed pairs to trust the score.
        spread: ``[B, C, K, H]`` per step, the mean absolute deviation of candidate ``k``'s seasons from their
            mean (0 for a plain lag); None unless :attr:`PriorConfig.spread`.
    """

    copies: torch.Tensor
    log_error: torch.Tensor
    available: torch.Tensor
    spread: torch.Tensor | None = None


class SeasonalPrior(nn.Module):
    """Mixes the context's seasonal copies per future token: ``read [B, C, n, D]`` -> prior ``[B, C, Q', n * P]``
    added to the head's quantiles (Q' = 1, one shift for every quantile, unless :attr:`PriorConfig.spread`).

    Args:
        config: :class:`PriorConfig` with at least one lag.
        d_model: width of the future tokens' states it scores.
        patch_length: steps per future token (needed for :attr:`PriorConfig.per_step`).
        quantiles: number of quantile levels (needed for :attr:`PriorConfig.spread`).
    """

    def __init__(self, config: PriorConfig, d_model: int, patch_length: int = 1, quantiles: int = 1):
        super().__init__()
        if not config.lags:
            raise ValueError("SeasonalPrior: needs at least one lag (PriorConfig.lags)")
        self.config = config
        K = len(config.candidates)
        self.score = nn.Linear(d_model, K + 1)  # per candidate, then "no copy"
        self.patch_length = patch_length
        # both start at zero, so a model continued with them forecasts as before until they learn
        self.step_score = nn.Linear(d_model, patch_length * (K + 1)) if config.per_step else None
        self.spread_scale = nn.Linear(d_model, quantiles) if config.spread else None
        for extra in (self.step_score, self.spread_scale):
            if extra is not None:
                nn.init.zeros_(extra.weight)
                nn.init.zeros_(extra.bias)
        self.log_beta = nn.Parameter(torch.zeros(()))  # weight of the fit (beta = 1 at first)
        self.log_beta._no_weight_decay = True  # a temperature: decay would pull it to a meaningless value
        # candidate k averages the seasons j = 1..n_k back: slots [first_k, end_k) of S = sum n_k in all (95 for the
        # shipped model's 20 candidates), each with its offset j * lag_k and lag; the plain lags (one season each)
        # are the first slots. Host tuples, made once: copies() turns them into cached device constants
        candidates = config.candidates
        slots = [(p, j) for p, n in candidates for j in range(1, n + 1)]
        self._slot_offsets = tuple(p * j for p, j in slots)  # (S,)
        self._slot_lags = tuple(p for p, _ in slots)  # (S,)
        ends = tuple(sum(n for _, n in candidates[:k + 1]) for k in range(K))
        self._mean_slots = tuple(zip(ends[len(config.lags) - 1:-1], ends[len(config.lags):], strict=True))
        self._averaged = tuple(n > 1 for _, n in candidates)  # (K,): True for a mean
        self._lags = tuple(p for p, _ in candidates)  # (K,)
        with torch.no_grad():
            nn.init.zeros_(self.score.weight)
            self.score.bias.zero_()
            self.score.bias[K] = config.none_bias

    def copies(self, values: torch.Tensor, observed: torch.Tensor, horizon: int) -> SeasonalCopies:
        """The context's copies. ``values``: scaled targets ``[B, T, C]`` (any value where missing),
        ``observed``: ``[B, T, C]`` (1 where observed); only the last :attr:`PriorConfig.span` steps are read.
        Missing steps are filled with the last observed value before them. No host sync (CUDA-graph safe). In
        float32 even under autocast: bf16 sums of a few seasons blur a copy (and a zero spread) at the level's
        precision."""
        with torch.autocast(values.device.type, enabled=False):
            return self._copies(values, observed, horizon)

    def _copies(self, values: torch.Tensor, observed: torch.Tensor, horizon: int) -> SeasonalCopies:
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
        lags = device_constant(self._lags, torch.int64, x.device)  # (K,)
        offsets = device_constant(self._slot_offsets, torch.int64, x.device)  # (S,): j seasons of lag_k back
        slot_lags = device_constant(self._slot_lags, torch.int64, x.device)  # (S,)
        future = torch.arange(horizon, device=x.device)
        source = span - offsets[:, None] + future[None] % slot_lags[:, None]  # (S, H): each slot's season, forward
        t = torch.arange(span - c.window, span, device=x.device)  # scoring window
        back = t - offsets[:, None]  # (S, W)
        rows = filled.permute(0, 2, 1)  # (B, C, span)
        # the plain lags in one gather, then the means one at a time, so what is held at once is one mean's seasons
        # [B, C, n_k, H], not all S slots' (the shipped model, B=4, 321 channels, a 720-step forecast: the CPU
        # forward's peak memory fell from 1.3 GB to 0.9 GB, copies() on an H200 from 1.3 GB to 0.5 GB)
        plain = len(c.lags)
        copies = [rows[:, :, source[:plain]]]  # (B, C, plain, H): one season each
        spread = [torch.zeros_like(copies[0])] if c.spread else []  # a plain lag does not stray from itself
        before = [x[:, back[:plain]]]  # (B, plain, W, C): what each offered for each scored step
        complete = [o[:, back[:plain]]]  # (B, plain, W, C): its season observed
        for first, end in self._mean_slots:
            seasons = rows[:, :, source[first:end]]  # (B, C, n_k, H)
            copies.append(seasons.mean(2, keepdim=True))
            if c.spread:  # how far each season strays from the mean it joins, per step
                spread.append((seasons - copies[-1]).abs().mean(2, keepdim=True))
            before.append(x[:, back[first:end]].mean(1, keepdim=True))
            complete.append(o[:, back[first:end]].all(1, keepdim=True))  # every season it averages observed
        now = x[:, t]  # (B, W, C)
        before = torch.cat(before, 1)  # (B, K, W, C)
        pairs = (o[:, t][:, None] & torch.cat(complete, 1)).float()  # (B, K, W, C): x_t and every season seen
        count = pairs.sum(2)  # (B, K, C)
        error = ((now[:, None] - before).abs() * pairs).sum(2) / count.clamp_min(1.0)
        need = torch.clamp(lags, min=c.min_pairs)[None, :, None]
        return SeasonalCopies(torch.cat(copies, 2), error.clamp_min(1e-4).log().permute(0, 2, 1),
                              (count >= need).permute(0, 2, 1), torch.cat(spread, 2) if c.spread else None)

    def forward(self, read: torch.Tensor, copies: SeasonalCopies, patch_length: int, lead: int = 0) -> torch.Tensor:
        """``read``: future-token states ``[B, C, n, D]``; ``copies`` over ``n * patch_length - lead`` steps.
        Returns the prior ``[B, C, Q', n * patch_length]`` (Q' = 1 unless :attr:`PriorConfig.spread`, then one row
        per quantile): 0 on the first ``lead`` steps (observed ones), the mix of copies after."""
        if self.step_score is not None and patch_length != self.patch_length:
            raise ValueError(f"SeasonalPrior: scores per step were built for patches of {self.patch_length}; got "
                             f"{patch_length}")
        K = len(self.config.candidates)
        B, C, n = read.shape[:3]
        logits = self.logits(read, copies)  # (B, C, n, 1 or P, K + 1)

        def per_step(x: torch.Tensor) -> torch.Tensor:  # (B, C, n, 1 or P, K) -> (B, C, n * P, K)
            return x.expand(B, C, n, patch_length, K).reshape(B, C, n * patch_length, K)

        weights = per_step(logits.softmax(-1)[..., :K])  # "no copy" adds nothing
        steps = torch.nn.functional.pad(copies.copies, (lead, 0))  # (B, C, K, n * P)
        prior = torch.einsum("bcsk,bcks->bcs", weights, steps)[:, :, None]  # (B, C, 1, n * P)
        if self.spread_scale is None:
            return prior
        if copies.spread is None:
            raise ValueError("SeasonalPrior: this prior widens by the spread; the copies carry none (they were made "
                             "by a prior without PriorConfig.spread)")
        # the spread of the averaged candidates, weighted as the mix weighs them among themselves (their own
        # softmax: the mix's weights renormalised, without underflow); none offered -> no spread
        averaged = device_constant(self._averaged, torch.bool, read.device)  # (K,)
        among = logits[..., :K].masked_fill(~averaged, -torch.inf)
        offered = torch.isfinite(among).any(-1, keepdim=True)
        among = among.masked_fill(~offered, 0.0).softmax(-1) * offered  # an all -inf row never meets softmax
        spread = torch.nn.functional.pad(copies.spread, (lead, 0))  # (B, C, K, n * P)
        mixed = torch.einsum("bcsk,bcks->bcs", per_step(among), spread)  # (B, C, n * P)
        scale = self.spread_scale(read).float().repeat_interleave(patch_length, 2).transpose(2, 3)  # (B, C, Q, n*P)
        return prior + scale * mixed[:, :, None]

    def weights(self, read: torch.Tensor, copies: SeasonalCopies) -> torch.Tensor:
        """Mixing weights ``[B, C, n, P', K + 1]`` per future token (P' = 1) or per step of it (P' = patch length,
        :attr:`PriorConfig.per_step`): one per candidate, then "no copy" (sum 1)."""
        return self.logits(read, copies).softmax(-1)

    def logits(self, read: torch.Tensor, copies: SeasonalCopies) -> torch.Tensor:
        """The scores :meth:`weights` softmaxes ``[B, C, n, P', K + 1]``: -inf for a candidate not offered."""
        K = len(self.config.candidates)
        logits = self.score(read).float()[..., None, :]  # (B, C, n, 1, K + 1)
        if self.step_score is not None:
            logits = logits + self.step_score(read).float().unflatten(-1, (self.patch_length, K + 1))
        fit = -self.log_beta.exp() * copies.log_error  # (B, C, K)
        lag_logits = (logits[..., :K] + fit[:, :, None, None]).masked_fill(~copies.available[:, :, None, None],
                                                                          -torch.inf)
        # an untrustworthy lag is never mixed in; "no copy" is always offered, so the softmax stays finite
        return torch.cat([lag_logits, logits[..., K:]], -1)


def carry_scores(state: dict, old: PriorConfig, new: PriorConfig, prefix: str = "prior.") -> dict:
    """A state dict whose prior scores ``{prefix}score.weight [K_old + 1, D]`` (and bias) are rearranged for
    ``new``'s candidates ``[K_new + 1, D]``: a candidate both configs offer keeps its learned row, a new one starts
    as a fresh prior's (zero), "no copy" keeps its own. Lets a model continue training with candidates added
    (e.g. :attr:`PriorConfig.means`) without losing what its prior learned. Scores per step
    (``step_score [P * (K + 1), D]``) are rearranged alike; scores per step or a spread scale that ``new`` lacks are
    dropped, and those a start lacks start at zero. Other entries pass through."""
    if old.window != new.window or old.min_pairs != new.min_pairs:
        raise ValueError(f"carry_scores: the scoring window must not change (window {old.window} -> {new.window}, "
                         f"min_pairs {old.min_pairs} -> {new.min_pairs}); the learned scores read its errors")
    old_index = {cand: k for k, cand in enumerate(old.candidates)}
    rows = [old_index.get(cand) for cand in new.candidates] + [len(old.candidates)]  # then "no copy"

    def rearranged(source: torch.Tensor) -> torch.Tensor:  # [..., K_old + 1, *rest] -> [..., K_new + 1, *rest]
        grown = source.new_zeros(source.shape[:1] + (len(rows),) + tuple(source.shape[2:]))
        for row, k in enumerate(rows):
            if k is not None:
                grown[:, row] = source[:, k]
        return grown

    out = dict(state)
    for name in ("weight", "bias"):
        key = f"{prefix}score.{name}"
        if key not in state:
            raise KeyError(f"carry_scores: {key} is not in the state dict (no prior, or another prefix?)")
        out[key] = rearranged(state[key][None])[0]
        for part, kept in (("spread_scale", new.spread), ("step_score", new.per_step)):
            if f"{prefix}{part}.{name}" in state and not kept:  # a part the new prior lacks
                del out[f"{prefix}{part}.{name}"]
        step_key = f"{prefix}step_score.{name}"
        if step_key in out:  # (P * (K_old + 1), ...) viewed per step
            source = state[step_key]
            per_step = source.reshape(-1, len(old.candidates) + 1, *source.shape[1:])
            out[step_key] = rearranged(per_step).flatten(0, 1)
    return out
