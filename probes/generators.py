"""Seeded probe generators (../shared/PROBES.md): each returns a batch and its needle-ablated twin.

A probe example has observed channels, optional flag channels, a query window whose target the model must
forecast, and needle positions (what the memory must keep; an oracle router routes exactly these). The twin is
the same example (same seed) with the needle removed, so ``RS = 1 - MSE(pred) / MSE(pred on twin)`` measures
what the memory recalled, not general forecasting skill.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from tsham.datasets.synthetic import seasonal_ar_background

LEVELS = ("easy", "medium", "hard")
# the PROBES.md knobs a level may override, per probe ("medium:events=8,lag=0": C medium, 8 binding events at lag 0)
KNOBS = {"rare_motif": ("length", "distractors"), "compressible_regime": ("length", "distractors"),
         "cross_channel_binding": ("events", "lag", "spacing")}


def level_slug(level: str) -> str:
    """A level with knobs as a file-name part: ``"medium:events=8,lag=0"`` -> ``"medium-events8-lag0"``."""
    return level.replace(":", "-").replace(",", "-").replace("=", "")


def parse_level(probe: str, level: str) -> tuple[str, dict[str, int]]:
    """A level name with optional knob overrides (:data:`KNOBS`): ``"medium"`` -> ``("medium", {})``,
    ``"medium:events=8,lag=0"`` -> ``("medium", {"events": 8, "lag": 0})``. Raises ``ValueError`` naming an
    unknown level, a knob ``probe`` does not have, or a value that is not a whole number >= 0."""
    name, _, overrides = level.replace(" ", "").partition(":")  # "Easy: distractors=7" reads as typed
    name = name.lower()
    if name not in LEVELS:
        raise ValueError(f"unknown level {level!r}; known: {LEVELS}, optionally with knobs (e.g. 'medium:lag=0')")
    knobs = {}
    for item in filter(None, overrides.split(",")):
        key, _, value = item.partition("=")
        if key not in KNOBS.get(probe, ()):
            raise ValueError(f"level {level!r}: {probe} has no knob {key!r}; its knobs: {KNOBS.get(probe, ())}")
        if not (value.isascii() and value.isdigit()):
            raise ValueError(f"level {level!r}: knob {key} must be a whole number >= 0; got {value!r}")
        if key in knobs:
            raise ValueError(f"level {level!r}: knob {key} is set twice")
        knobs[key] = int(value)
    return name, knobs


@dataclass
class ProbeBatch:
    """N examples of one probe (arrays, float32 unless stated).

    Attributes:
        context: observed channels up to the query ``[N, L, C]``. flags: ``[N, L + H, F]`` (known ahead).
        target: what to forecast ``[N, H, Ct]``; target_channels: which context channels it continues.
        needles: bool ``[N, L]``, the steps the memory must keep.
        twin_context: the context with the needle removed ``[N, L, C]``; twin_flags likewise.
        control_context: a negative control that must fall to chance (probe C: the query key on another
            channel), or None.
        codebook, answers: where targets come from a finite codebook (probe C: ``[K]`` levels), the index of each
            example's answer ``[N]``; else None.
        tolerance: ``[N]`` window RMSE under which a forecast counts as a recall (tolerance accuracy: probe D
            0.1, probe A 0.25 x the motif's amplitude), or None.
        candidates: ``[N, K, d]`` every value the answer could have been (probe E: the values of all K pairs, for
            nearest-value accuracy, chance 1 / K), or None.
        effect: ``[N, H, Ct]`` the part of the target the needle causes (probe B: the delayed effect of the
            action; the twin's target is ``target - effect``), for sign, magnitude and onset metrics, or None.
        twin_needles: bool ``[N, L]``, what an oracle router keeps in the twin, where it differs from ``needles``
            (probe D: nothing, since the twin keeps the series and loses only the cue that marks the snapshot;
            elsewhere the twin's needle step holds ablated content and the oracle still routes it), or None.
        recalled: ``[N, H, Ct]`` what tolerance accuracy compares the forecast with where it is not the target
            (probe D: the snapshot's level, as PROBES.md defines it; the target walks on from there with noise
            that no memory can forecast), or None.
    """

    context: np.ndarray
    flags: np.ndarray
    target: np.ndarray
    target_channels: list[int]
    needles: np.ndarray
    twin_context: np.ndarray
    twin_flags: np.ndarray
    control_context: np.ndarray | None = None
    codebook: np.ndarray | None = None
    answers: np.ndarray | None = None
    tolerance: np.ndarray | None = None
    candidates: np.ndarray | None = None
    effect: np.ndarray | None = None
    twin_needles: np.ndarray | None = None
    recalled: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> ProbeBatch:
        """Examples ``start:stop`` (what is per probe, the target channels and the codebook, stays whole)."""
        shared = ("target_channels", "codebook")
        return ProbeBatch(*(v if v is None or k in shared else v[start:stop] for k, v in vars(self).items()))


def background(length: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """The default background ``[T, C]`` (:func:`seasonal_ar_background`), normalised per channel, float32."""
    x = np.ascontiguousarray(seasonal_ar_background(length, rng, channels).T)  # reductions over time: 4x faster
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)  # on contiguous rows than down strided columns
    return x.T.astype(np.float32, order="C")


def _rngs(seed: int, n: int):
    return [np.random.default_rng([seed, i]) for i in range(n)]


def delayed_action(n: int, level: str = "easy", seed: int = 0, window: int = 1, followers: int = 0,
                   lead: int = 0) -> ProbeBatch:
    """Probe B: an action's effect appears on channel 1 after a transport delay; 8 distractor actions pulse
    channel 2 at once. The context ends 16 steps before the delayed onset; forecast channel 1 for 80 steps.
    Channels: 3 observed + the action channel u (also flag 0, set where u != 0). Twin: the action zeroed.
    The action sits ``delay - 16`` steps before the query: 48 at easy and 240 at medium, inside a 10% recency
    window at easy and under PROBES.md's "twice the dominant period" (336) at both; only hard (1008) keeps the
    spec's distance, and it is the level the #6 grid reports (experiments/README.md).

    ``window > 1`` is the action-window variant: the action is spread over ``window`` steps (each
    +-U(0.5, 2) / sqrt(window)) and the delayed effect is ``1.5 x`` their sum, so the memory must keep every
    step of the window (the needle), not one of them.

    ``followers > 0`` is the ordering variant (:func:`action_sequence`): as many more actions of the same kind
    follow the queried one before the context ends (their effects land after the forecast window), and 1-3 came
    before it (their effects show in the context). All look alike, so only their order, or their distance to the
    query, says which one acts in the forecast window; a recurrent state, whose writes depend on the token and
    not on what it already holds, cannot keep the (followers + 1)-th most recent once it cannot count to it
    (``lead``).

    ``lead`` adds steps at the start of the context (``L = delay + 512 + lead``). The queried action sits at a
    fixed distance from the context's end, so at one length it also sits at a fixed step from the start, where a
    recurrent model can count to it; contexts of varied lengths leave it only the distance from the end."""
    if window < 1:
        raise ValueError(f"delayed_action: window must be >= 1 step; got {window}")
    if followers < 0 or (followers and window > 1):
        raise ValueError(f"delayed_action: followers must be >= 0 and need window 1; got {followers}, {window}")
    if lead < 0 or lead % 16:
        raise ValueError(f"delayed_action: lead must be a multiple of 16 steps >= 0; got {lead}")
    delay = {"easy": 64, "medium": 256, "hard": 1024}[parse_level("delayed_action", level)[0]]
    H, L = 80, delay + 512 + lead
    t0 = L + 16 - delay  # the onset t0 + delay lands 16 steps after the context ends (t0 = 528 + lead)
    if followers and L - 8 - (t0 + 64) - 32 * (followers - 1) <= 0:  # the room _other_actions needs
        raise ValueError(f"delayed_action: {followers} followers do not fit the {level} level's delay of {delay}")
    out = {k: [] for k in ("ctx", "twin", "flags", "twin_flags", "target", "needles", "effect")}
    for rng in _rngs(seed, n):
        x = background(L + H, 3, rng)
        u = np.zeros(L + H, np.float32)
        others = _other_actions(rng, t0, L, followers)
        busy = [(t0 - 8, t0 + window - 1 + 8)] + [(t - 8, t + 8) for t in others]
        for t in rng.choice(np.arange(0, L - 8), 8, replace=False):  # distractors with immediate pulses
            if not any(lo <= t <= hi for lo, hi in busy):
                u[t] = rng.choice([-1, 1]) * rng.uniform(0.2, 0.6)
                x[t:t + 5, 2] += 3 * u[t]
        if window == 1:
            actions = np.array([rng.choice([-1, 1]) * rng.uniform(0.5, 2)])
        else:
            actions = rng.choice([-1, 1], window) * rng.uniform(0.5, 2, window) / np.sqrt(window)
        steps = np.arange(L + H)
        effect = _delayed_effect(steps - t0 - delay, actions.sum())
        for t in others:  # the alike actions: their effects are part of the series, in the example and the twin
            u[t] = rng.choice([-1, 1]) * rng.uniform(0.5, 2)
            x[:, 1] += _delayed_effect(steps - t - delay, u[t])
        twin_u = u.copy()
        u[t0:t0 + window] = actions
        full, twin_full = np.column_stack([x[:, 0], x[:, 1] + effect, x[:, 2], u]), np.column_stack([*x.T, twin_u])
        out["ctx"].append(full[:L])
        out["twin"].append(twin_full[:L])
        out["flags"].append((u != 0).astype(np.float32)[:, None])
        out["twin_flags"].append((twin_u != 0).astype(np.float32)[:, None])
        out["target"].append(full[L:, 1:2])
        out["effect"].append(effect[L:, None])
        needles = np.zeros(L, bool)
        needles[t0:t0 + window] = True
        out["needles"].append(needles)
    return ProbeBatch(*(np.stack(out[k]) for k in ("ctx", "flags", "target")), [1], np.stack(out["needles"]),
                      np.stack(out["twin"]), np.stack(out["twin_flags"]), effect=np.stack(out["effect"]))


def _delayed_effect(since_onset: np.ndarray, amount: float) -> np.ndarray:
    """B's delayed response ``1.5 a (1 - exp(-t / 16))`` for ``t >= 0`` steps after the onset, 0 before, float32."""
    return np.where(since_onset >= 0, 1.5 * amount * (1 - np.exp(-np.maximum(since_onset, 0) / 16)), 0.0
                    ).astype(np.float32)


def _other_actions(rng: np.random.Generator, t0: int, L: int, followers: int) -> list[int]:
    """The ordering variant's alike actions: ``followers`` steps in ``[t0 + 64, L - 8)`` (their effects start after
    the forecast window) and 1-3 steps in ``[t0 - 416, t0 - 96)`` (their effects settle before it), at least 32
    steps apart; none without followers. Each lies on the queried action's grid of 16 steps (``t0`` is a multiple
    of 16), so each starts a patch as it does: off the grid, a recurrent state knew the queried action by its
    phase in its patch. The number before it varies: with one always before it, its rank from the start gave it
    away; with them up to 416 steps before it, a state that blends the actions of a window around it (what pure
    GDN learned on the CPU) blends them too."""
    if not followers:
        return []
    before = _on_grid(rng, max(0, t0 - 416), t0 - 96, int(rng.integers(1, 4)))
    return before + _on_grid(rng, t0 + 64, L - 8, followers)


def _on_grid(rng: np.random.Generator, lo: int, hi: int, k: int, grid: int = 16, gap: int = 32) -> list[int]:
    """``k`` sorted random multiples of ``grid`` in ``[lo, hi)``, consecutive ones at least ``gap`` apart."""
    if k == 0:
        return []
    slots = np.arange(-(-lo // grid), -(-hi // grid)) * grid  # the multiples of grid in [lo, hi)
    step = -(-gap // grid)  # slots between consecutive picks
    room = len(slots) - step * (k - 1)  # choices left once the minimum gaps are taken
    if room <= 0:
        raise ValueError(f"{k} steps {gap} apart on a grid of {grid} do not fit in [{lo}, {hi})")
    return [int(slots[c + step * i]) for i, c in enumerate(np.sort(rng.integers(0, room, k)))]


def action_window(n: int, level: str = "easy", seed: int = 0) -> ProbeBatch:
    """Probe B's action-window variant: the delayed effect is 1.5 x the sum of an 8-step action window."""
    return delayed_action(n, level, seed, window=8)


def action_sequence(n: int, level: str = "easy", seed: int = 0) -> ProbeBatch:
    """Probe B's ordering variant: B hard's delay (1024) at every level, with 1 / 2 / 4 alike actions after the
    queried one (easy / medium / hard) and 1-3 before it (:func:`delayed_action`, ``followers``). The context's
    length varies with the seed (a ``lead`` of 0-448 steps, in steps of 64): at one length a recurrent state
    counted its way to the queried action (H200, 2026-12-01: pure GDN's sign accuracy 0.988 with 4 followers), so
    each batch has its own (every example of one call shares it: they stack)."""
    followers = {"easy": 1, "medium": 2, "hard": 4}[parse_level("action_sequence", level)[0]]
    lead = 64 * int(np.random.default_rng([seed, 64]).integers(0, 8))
    return delayed_action(n, "hard", seed, followers=followers, lead=lead)


VARIED_LENGTH = frozenset({"action_sequence"})  # probes whose context length changes with the seed


def scheduled_event(n: int, level: str = "easy", seed: int = 0) -> ProbeBatch:
    """Probe D: channel 0 is a slow random walk; flag 0 marks snapshots every 512 steps (nothing happens there),
    flag 1 a reset at which channel 0 jumps back to its level at the k-th most recent snapshot. Forecast 32 steps
    from the reset. Twin: the flag of that snapshot removed (the series is the same: only the memory cue goes).
    Tolerance accuracy: the forecast within 0.1 (window RMSE) of the snapshot's level (``recalled``). The first
    snapshot falls in the first 256 steps, so at easy (k = 1) the snapshot recalled can lie within 64 steps of the
    reset (a quarter of the examples), closer than PROBES.md's distances; medium (k = 2, what the grid reports)
    and hard keep it at least 512 steps back."""
    k = {"easy": 1, "medium": 2, "hard": 4}[parse_level("scheduled_event", level)[0]]
    period, H = 512, 32
    L = period * (k + 1) + 64
    out = {k_: [] for k_ in ("ctx", "flags", "twin_flags", "target", "needles", "level")}
    for rng in _rngs(seed, n):
        walk = np.cumsum(rng.normal(0, 0.05, L + H)).astype(np.float32)
        snaps = np.arange(rng.integers(0, period // 2), L, period)
        snap = snaps[-k]  # the k-th most recent snapshot before the reset
        walk[L:] = walk[snap] + np.cumsum(rng.normal(0, 0.05, H))  # reset at the context's end
        x = (walk + rng.normal(0, 0.02, L + H)).astype(np.float32)
        flags = np.zeros((L + H, 2), np.float32)
        flags[snaps, 0] = 1.0
        flags[L, 1] = 1.0
        twin_flags = flags.copy()
        twin_flags[snap, 0] = 0.0
        out["ctx"].append(x[:L, None])
        out["flags"].append(flags)
        out["twin_flags"].append(twin_flags)
        out["target"].append(x[L:, None])
        needles = np.zeros(L, bool)
        needles[snap] = True
        out["needles"].append(needles)
        out["level"].append(walk[snap])
    ctx = np.stack(out["ctx"])
    needles = np.stack(out["needles"])
    level = np.broadcast_to(np.array(out["level"], np.float32)[:, None, None], (n, H, 1)).copy()
    return ProbeBatch(ctx, np.stack(out["flags"]), np.stack(out["target"]), [0], needles, ctx.copy(),
                      np.stack(out["twin_flags"]), tolerance=np.full(n, 0.1, np.float32),
                      twin_needles=np.zeros_like(needles), recalled=level)


def mqar(n: int, level: str = "easy", seed: int = 0, d: int = 8) -> ProbeBatch:
    """Probe E: continuous multivariate MQAR. Channels ``[key (d) | value (d) | kv-marker | query-marker]``;
    N pairs in the first half (keys on the sphere scaled by sqrt(d)), AR filler of matched scale elsewhere; at the
    end one key is presented (query marker on) and the model outputs its value (target ``[N, 1, d]``).
    The kv-marker is also flag 0 (known ahead: the writer of a stream knows where it wrote a pair), so event
    routing keeps the pairs, as it keeps D's snapshots. Twin: the queried pair replaced by filler, its marker and
    flag gone."""
    pairs = {"easy": 4, "medium": 16, "hard": 64}[parse_level("mqar", level)[0]]
    L = 8 * pairs + 64
    out = {k: [] for k in ("ctx", "twin", "target", "needles", "values")}
    for rng in _rngs(seed, n):
        filler = background(L, 2 * d, rng) * 0.5
        x = np.zeros((L, 2 * d + 2), np.float32)
        x[:, : 2 * d] = filler
        keys = rng.normal(size=(pairs, d))
        keys = keys / np.linalg.norm(keys, axis=1, keepdims=True) * np.sqrt(d)
        values = rng.normal(size=(pairs, d)).astype(np.float32)
        steps = np.sort(rng.choice(np.arange(L // 2), pairs, replace=False))
        x[steps, :d], x[steps, d:2 * d], x[steps, 2 * d] = keys, values, 1.0
        q = int(rng.integers(pairs))
        twin = x.copy()
        twin[steps[q], : 2 * d], twin[steps[q], 2 * d] = filler[steps[q]], 0.0
        for arr in (x, twin):  # the query: the key, the query marker, and no value
            arr[L - 1, :d], arr[L - 1, d:2 * d], arr[L - 1, 2 * d], arr[L - 1, 2 * d + 1] = keys[q], 0.0, 0.0, 1.0
        out["ctx"].append(x)
        out["twin"].append(twin)
        out["target"].append(values[q][None])
        needles = np.zeros(L, bool)
        needles[steps[q]] = True
        out["needles"].append(needles)
        out["values"].append(values)
    ctx, twin = np.stack(out["ctx"]), np.stack(out["twin"])
    marker = lambda a: np.pad(a[:, :, 2 * d:2 * d + 1], ((0, 0), (0, 1), (0, 0)))  # noqa: E731  [N, L + 1, 1]
    return ProbeBatch(ctx, marker(ctx), np.stack(out["target"]), list(range(d, 2 * d)), np.stack(out["needles"]),
                      twin, marker(twin), candidates=np.stack(out["values"]))


def _motif(rng: np.random.Generator, length: int = 48) -> np.ndarray:
    """A smooth motif: three sines (frequencies U(0.05, 0.25) cycles/step), Tukey window, peak 1."""
    t = np.arange(length)[:, None]
    wave = np.sin(2 * np.pi * rng.uniform(0.05, 0.25, 3) * t + rng.uniform(0, 2 * np.pi, 3)).sum(1) * _tukey(length)
    return (wave / np.abs(wave).max()).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _tukey(length: int) -> np.ndarray:
    """The motif window ``[length]`` (cached: 64 motifs a batch would otherwise rebuild it)."""
    from scipy.signal.windows import tukey  # scipy comes with statsmodels

    window = tukey(length)
    window.flags.writeable = False
    return window


def _damped_oscillation(rng: np.random.Generator, length: int = 48) -> np.ndarray:
    """A damped AR(2) oscillation (a few numbers of information: radius, frequency, phase), peak 1."""
    r, w, phase = rng.uniform(0.9, 0.97), 2 * np.pi * rng.uniform(0.05, 0.25), rng.uniform(0, 2 * np.pi)
    wave = r ** np.arange(length) * np.cos(w * np.arange(length) + phase)
    return (wave / np.abs(wave).max()).astype(np.float32)


def rare_motif(n: int, level: str = "easy", seed: int = 0, channels: int = 4, compressible: bool = False
               ) -> ProbeBatch:
    """Probe A: D + 1 motifs (length 48, amplitude in {0.5, 1, 2, 4} std) at non-overlapping onsets in
    [0.05 L, 0.6 L] on channel 0; at the end the first 16 samples of one motif reappear and the model forecasts
    the other 32. Twin: that motif's first occurrence replaced by background. Levels set L and the number of
    distractors D: easy 1024 / 1, medium 4096 / 3, hard 8192 / 15. ``compressible=True`` is the negative
    control A2: every motif is a damped AR(2) oscillation marked by a regime flag (flag 0), which pure GDN
    should already recall (a good router spends almost no slots on it). Knobs (:func:`parse_level`): ``length``
    (L, a multiple of 16) and ``distractors`` (D)."""
    probe = "compressible_regime" if compressible else "rare_motif"
    name, knobs = parse_level(probe, level)
    L, D = {"easy": (1024, 1), "medium": (4096, 3), "hard": (8192, 15)}[name]
    L, D = knobs.get("length", L), knobs.get("distractors", D)
    M, shown = 48, 16
    if L % 16:
        raise ValueError(f"{probe}: length must be a multiple of 16 steps; got {L}")
    if int(0.6 * L) // M - int(0.05 * L) // M < D + 1:
        raise ValueError(f"{probe}: a context of {L} steps has no room for {D + 1} motifs of {M} steps in its first "
                         "60%")
    make = _damped_oscillation if compressible else _motif
    out = {k: [] for k in ("ctx", "twin", "flags", "twin_flags", "target", "needles", "amplitude")}
    for rng in _rngs(seed, n):
        x = background(L + M - shown, channels, rng)
        clean = x.copy()
        slots = rng.choice(np.arange(int(0.05 * L) // M, int(0.6 * L) // M), D + 1, replace=False) * M
        motifs = [make(rng) * rng.choice([0.5, 1.0, 2.0, 4.0]) for _ in range(D + 1)]
        flags = np.zeros((L + M - shown, 1), np.float32)
        for onset, motif in zip(slots, motifs, strict=True):
            x[onset:onset + M, 0] += motif
            flags[onset:onset + M, 0] = float(compressible)
        end = L - shown  # the replay: its first 16 samples close the context, the rest is the target
        x[end:end + M, 0] += motifs[0]
        flags[end:end + M, 0] = float(compressible)
        twin, twin_flags = x.copy(), flags.copy()
        needle = slice(slots[0], slots[0] + M)
        twin[needle, 0] = clean[needle, 0]
        twin_flags[needle, 0] = 0.0
        out["ctx"].append(x[:L])
        out["twin"].append(twin[:L])
        out["flags"].append(flags if compressible else flags[:, :0])
        out["twin_flags"].append(twin_flags if compressible else twin_flags[:, :0])
        out["target"].append(x[L:, :1])
        needles = np.zeros(L, bool)
        needles[needle] = True
        out["needles"].append(needles)
        out["amplitude"].append(np.abs(motifs[0]).max())
    return ProbeBatch(*(np.stack(out[k]) for k in ("ctx", "flags", "target")), [0], np.stack(out["needles"]),
                      np.stack(out["twin"]), np.stack(out["twin_flags"]),
                      tolerance=0.25 * np.array(out["amplitude"], np.float32))


KEY_SHAPES = 64
VALUE_LEVELS = np.linspace(-2, 2, 16).astype(np.float32)


def key_codebook() -> np.ndarray:
    """The 64 smooth key shapes of probe C ``[64, 8]`` (fixed: the same for every seed), peak 2."""
    rng = np.random.default_rng(20261125)
    t = np.arange(8)[:, None] / 8
    shapes = np.stack([np.sin(2 * np.pi * (rng.uniform(0.3, 1.5, 2) * t + rng.uniform(0, 1, 2))).sum(1)
                       for _ in range(KEY_SHAPES)])
    return (2 * shapes / np.abs(shapes).max(1, keepdims=True)).astype(np.float32)


def cross_channel_binding(n: int, level: str = "easy", seed: int = 0, channels: int = 8) -> ProbeBatch:
    """Probe C: 8 channels around a shared latent factor. Binding events write a key shape (codebook of 64,
    8 steps) on the key channel 1 and, ``lag`` steps after it ends, a value level (codebook of 16 in [-2, 2],
    8 steps) added to the value channel 0. As many decoy events bind key shapes on channel 2 to levels on
    channel 3, and one of them reuses the queried key's shape with another level: a model that matches shapes
    but not channels recalls the wrong level half the time, so only a (channel, shape) -> level association
    solves the probe, and the control can fall. The context ends with one bound key on channel 1; the target is
    channel 0 for ``lag + 8`` steps (its background plus the value at the matching lag). The level sits on the
    background so that the target keeps a predictable part: with the level replacing it, forecasters collapsed
    to the unconditional quantiles before learning any binding (experiments/README.md). Twin: that binding
    event removed. Control: the query key on channel 2 instead (there it binds nothing on channel 0: must fall
    to chance). Levels: events / lag = easy 4 / 0, medium 16 / 4, hard 64 / 32; the knobs ``events`` (>= 1) and
    ``lag`` override them (:func:`parse_level`), and ``spacing`` (default 0) adds that many background steps to
    every event's slot: the same bindings, farther from the query and from each other, which a recurrent state must
    carry through more background while attention still matches one key (PROBES.md's distance knob). ``answers``
    index :data:`VALUE_LEVELS`."""
    name, knobs = parse_level("cross_channel_binding", level)
    events, lag = {"easy": (4, 0), "medium": (16, 4), "hard": (64, 32)}[name]
    events, lag, spacing = knobs.get("events", events), knobs.get("lag", lag), knobs.get("spacing", 0)
    if events < 1 or events > KEY_SHAPES:
        raise ValueError(f"cross_channel_binding: events must lie in [1, {KEY_SHAPES}] (one key shape each); got "
                         f"{events}")
    keys = key_codebook()
    span = 16 + lag  # key, lag, value
    stride = span + spacing  # one event's slot (spacing 0: the slots touch, as every level before the knob)
    L = 2 * events * stride + 64
    out = {k: [] for k in ("ctx", "twin", "control", "target", "needles", "answers")}
    for rng in _rngs(seed, n):
        latent = background(L + lag + 8, 1, rng)[:, 0]
        x = (latent[:, None] * rng.uniform(0.5, 1.5, channels) + rng.normal(0, 0.2, (L + lag + 8, channels)))
        x = x.astype(np.float32)
        clean = x.copy()
        slots = rng.permutation((L - 64) // stride) * stride  # every slot: events bindings, then events decoys
        starts, decoys = np.sort(slots[:events]), slots[events:2 * events]
        key_ids = rng.choice(KEY_SHAPES, events, replace=False)
        value_ids = rng.integers(len(VALUE_LEVELS), size=events)
        for start, k, v in zip(starts, key_ids, value_ids, strict=True):
            x[start:start + 8, 1] = keys[k]
            x[start + 8 + lag:start + 16 + lag, 0] += VALUE_LEVELS[v]
        q = int(rng.integers(events))
        decoy_keys = rng.choice(KEY_SHAPES, events, replace=False)
        decoy_keys[0] = key_ids[q]  # the queried shape, bound on the decoy channels to another level
        decoy_values = rng.integers(len(VALUE_LEVELS), size=events)
        decoy_values[0] = (value_ids[q] + rng.integers(1, len(VALUE_LEVELS))) % len(VALUE_LEVELS)
        for start, k, v in zip(decoys, decoy_keys, decoy_values, strict=True):
            x[start:start + 8, 2] = keys[k]
            x[start + 8 + lag:start + 16 + lag, 3] += VALUE_LEVELS[v]
        query = L - 8  # the key closes the context; its value is due lag steps later
        x[query:query + 8, 1] = keys[key_ids[q]]
        x[L + lag:L + lag + 8, 0] += VALUE_LEVELS[value_ids[q]]
        twin, control = x.copy(), x.copy()
        event = np.zeros(L, bool)
        event[starts[q]:starts[q] + 8] = True
        event[starts[q] + 8 + lag:starts[q] + 16 + lag] = True
        twin[:L][event] = clean[:L][event]
        control[query:query + 8, 1] = clean[query:query + 8, 1]
        control[query:query + 8, 2] = keys[key_ids[q]]
        out["ctx"].append(x[:L])
        out["twin"].append(twin[:L])
        out["control"].append(control[:L])
        out["target"].append(x[L:L + lag + 8, :1])
        out["needles"].append(event)
        out["answers"].append(value_ids[q])
    empty = np.zeros((n, L + lag + 8, 0), np.float32)
    return ProbeBatch(np.stack(out["ctx"]), empty, np.stack(out["target"]), [0], np.stack(out["needles"]),
                      np.stack(out["twin"]), empty, np.stack(out["control"]), VALUE_LEVELS,
                      np.array(out["answers"]))


def compressible_regime(n: int, level: str = "easy", seed: int = 0) -> ProbeBatch:
    """Probe A2, the negative control of :func:`rare_motif`: rare but compressible regimes (damped AR(2)
    oscillations under a regime flag) that pure GDN should already recall."""
    return rare_motif(n, level, seed, compressible=True)


PROBES = {"rare_motif": rare_motif, "compressible_regime": compressible_regime, "delayed_action": delayed_action,
          "action_window": action_window, "action_sequence": action_sequence,
          "cross_channel_binding": cross_channel_binding,
          "scheduled_event": scheduled_event, "mqar": mqar}
