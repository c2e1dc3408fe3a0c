"""The seasonal prior: its copies are seasonal naive, its scores pick the lag that fits, old checkpoints keep none."""

from __future__ import annotations

import pytest
import torch

from tsham.config import TshamConfig
from tsham.heads import PriorConfig, SeasonalPrior, carry_scores, parse_means
from tsham.model import TshamModel


def model_with_prior(**prior) -> TshamModel:
    torch.manual_seed(0)
    config = TshamConfig.small(d_model=32, patch_length=8, n_layers=1, num_heads=2, head_dim=16)
    config.prior = PriorConfig(**prior)
    return TshamModel(config).eval()


def silence_head(model: TshamModel) -> None:
    """The quantile head forecasts 0 (the scaled mean): the forecast is the prior alone."""
    with torch.no_grad():
        model.head.out.weight.zero_()
        model.head.out.bias.zero_()


def test_all_weight_on_one_lag_forecasts_seasonal_naive_in_data_units():
    model = model_with_prior(lags=(1, 7, 24), window=48)
    silence_head(model)
    with torch.no_grad():
        model.prior.score.bias.copy_(torch.tensor([-1e4, -1e4, 1e4, -1e4]))  # lag 24 only
    g = torch.Generator().manual_seed(0)
    x = 50 + 10 * torch.randn(3, 203, generator=g)  # odd length: the context does not end on a patch
    with torch.no_grad():
        q = model(x, 37).quantiles  # (B, 1, Q, 37)
    naive = torch.cat([x[:, -24:], x[:, -24:]], 1)[:, :37]
    torch.testing.assert_close(q[:, 0], naive[:, None].expand_as(q[:, 0]), rtol=0, atol=1e-3)


def test_the_fit_prefers_the_true_season_and_a_short_context_offers_no_long_lag():
    prior = SeasonalPrior(PriorConfig(lags=(1, 12, 24), window=48, min_pairs=4), d_model=8)
    t = torch.arange(120.0)
    x = torch.stack([torch.sin(2 * torch.pi * t / 24), torch.sin(2 * torch.pi * t / 12)], -1)[None]  # (1, T, 2)
    copies = prior.copies(x, torch.ones_like(x), 5)
    assert copies.log_error[0, 0].argmin() == 2 and copies.log_error[0, 1].argmin() == 1  # lag 24, lag 12
    assert copies.available.all()
    short = prior.copies(x[:, -30:], torch.ones_like(x[:, -30:]), 5)  # 30 steps: 6 pairs for lag 24
    assert short.available[0, :, :2].all() and not short.available[0, :, 2].any()
    weights = prior.weights(torch.zeros(1, 2, 1, 8), copies)  # (1, 2, 1, 1, 4): untrained scores, the fit decides
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 2, 1, 1))
    assert weights[0, 0, 0, 0].argmax() == 2 and weights[0, 1, 0, 0].argmax() == 1
    mix = prior(torch.zeros(1, 2, 1, 8), copies, patch_length=5)  # (1, 2, 1, 5): one shift for every quantile
    torch.testing.assert_close(mix[0, 0, 0], copies.copies[0, 0, 2], atol=1e-2, rtol=0)  # channel 0 copies lag 24
    torch.testing.assert_close(mix[0, 1, 0], copies.copies[0, 1, 1], atol=1e-2, rtol=0)  # channel 1 copies lag 12


def test_missing_steps_are_filled_with_the_last_observed_value():
    prior = SeasonalPrior(PriorConfig(lags=(4,), window=8, min_pairs=1), d_model=8)
    x = torch.arange(12.0)[None, :, None]
    observed = torch.ones_like(x)
    observed[0, 9] = 0  # step 9 missing: its copy is step 8's value
    copies = prior.copies(torch.where(observed.bool(), x, 123.0), observed, 4)
    assert copies.copies[0, 0, 0].tolist() == [8.0, 8.0, 10.0, 11.0]


@pytest.mark.parametrize("means", [(), ((2, 3),)])
def test_values_at_missing_steps_never_reach_a_copy_or_a_score(means):
    prior = SeasonalPrior(PriorConfig(lags=(2, 4), means=means, window=8, min_pairs=1), d_model=8)
    x = torch.arange(14.0)[None, :, None]
    observed = torch.ones_like(x)
    observed[0, :3] = 0  # the first steps unobserved (a left pad) ...
    observed[0, 10] = 0  # ... and one inside the scored window
    clean = prior.copies(torch.where(observed.bool(), x, 0.0), observed, 6)
    for junk in (float("nan"), 1e6):
        dirty = prior.copies(torch.where(observed.bool(), x, junk), observed, 6)
        for a, b in ((clean.copies, dirty.copies), (clean.log_error, dirty.log_error)):
            torch.testing.assert_close(a, b)
        assert torch.equal(clean.available, dirty.available)


def test_unavailable_lags_leave_only_the_head():
    model = model_with_prior(lags=(24,), window=48)
    silence_head(model)
    with torch.no_grad():
        model.prior.score.bias.copy_(torch.tensor([1e4, -1e4]))  # would take lag 24 if it were offered
        q = model(torch.randn(2, 30), 8).quantiles  # 30 steps: 6 pairs for lag 24, fewer than 24
    assert q.std(-1).max() < 1e-5  # the silent head alone: flat


def test_prior_config_is_checked_and_old_configs_load_without_a_prior():
    with pytest.raises(ValueError, match="ascending"):
        PriorConfig(lags=(24, 12))
    with pytest.raises(ValueError, match="window"):
        PriorConfig(lags=(500,), window=336)
    for bad in ((1.5, 24), "24", (True, 24)):
        with pytest.raises(ValueError, match="whole numbers of steps"):
            PriorConfig(lags=bad)
    with pytest.raises(ValueError, match="whole numbers >= 1"):
        PriorConfig(lags=(4,), window=18.5)
    with pytest.raises(ValueError, match="no lag could ever"):
        PriorConfig(lags=(1,), window=4, min_pairs=8)
    assert PriorConfig(lags=[1.0, 24], window=48.0).lags == (1, 24)  # integral floats (JSON) are fine
    old = TshamConfig.small().to_dict()
    del old["prior"]  # a config saved before the prior existed
    config = TshamConfig.from_dict(old)
    assert config.prior.lags == () and TshamModel(config).prior is None
    saved = model_with_prior(lags=(1, 24)).config.to_dict()
    assert TshamConfig.from_dict(saved).prior.lags == (1, 24)  # through JSON, lists come back as tuples


def test_gradients_reach_the_scores_and_the_temperature():
    model = model_with_prior(lags=(1, 6), window=24).train()
    x = torch.sin(torch.arange(96.0) * 2 * torch.pi / 6).repeat(2, 1)
    out = model(x[:, :80], 16)
    model.loss(out, x[:, 80:, None]).backward()
    assert model.prior.score.weight.grad.abs().sum() > 0 and model.prior.log_beta.grad.abs() > 0


def test_an_averaged_candidate_copies_the_mean_of_its_seasons_and_scores_the_noise_out():
    prior = SeasonalPrior(PriorConfig(lags=(1, 6), means=((6, 4),), window=24, min_pairs=4), d_model=8)
    g = torch.Generator().manual_seed(0)
    season = torch.randn(6, generator=g)
    x = (season.repeat(20) + 0.5 * torch.randn(120, generator=g))[None, :, None]  # (1, 120, 1): a noisy cycle
    copies = prior.copies(x, torch.ones_like(x), 9)
    assert copies.copies.shape == (1, 1, 3, 9)  # lags 1 and 6, then the mean
    seasons = torch.stack([x[0, 120 - 6 * j:120 - 6 * j + 6, 0] for j in range(1, 5)])  # the last 4 cycles
    expected = seasons.mean(0).repeat(2)[:9]
    torch.testing.assert_close(copies.copies[0, 0, 2], expected)
    torch.testing.assert_close(copies.copies[0, 0, 1], x[0, -6:, 0].repeat(2)[:9])  # the plain lag is unchanged
    now = x[0, 120 - 24:, 0]
    before = torch.stack([x[0, 120 - 24 - 6 * j:120 - 6 * j, 0] for j in range(1, 5)]).mean(0)
    torch.testing.assert_close(copies.log_error[0, 0, 2], (now - before).abs().mean().log())
    assert copies.log_error[0, 0, 2] < copies.log_error[0, 0, 1]  # averaging beats one noisy season
    short = prior.copies(x[:, -40:], torch.ones_like(x[:, -40:]), 9)  # 16 scored steps see 4 seasons back: >= 6
    assert short.available[0, 0].tolist() == [True, True, True]
    shorter = prior.copies(x[:, -28:], torch.ones_like(x[:, -28:]), 9)  # 4 pairs with 4 seasons back: too few
    assert shorter.available[0, 0].tolist() == [True, True, False]


def test_a_gap_in_any_averaged_season_drops_that_pair_from_the_score():
    prior = SeasonalPrior(PriorConfig(lags=(3,), means=((3, 2),), window=6, min_pairs=1), d_model=8)
    x = torch.arange(12.0)[None, :, None] ** 2
    observed = torch.ones_like(x)
    observed[0, 1] = 0  # two seasons before step 7 (a scored step): only the mean loses that pair
    copies = prior.copies(x, observed, 3)
    t = torch.arange(6, 12)
    keep = t != 7
    now, mean = x[0, t, 0], (x[0, t - 3, 0] + x[0, t - 6, 0]) / 2
    torch.testing.assert_close(copies.log_error[0, 0, 1], (now - mean).abs()[keep].mean().log())
    torch.testing.assert_close(copies.log_error[0, 0, 0], (now - x[0, t - 3, 0]).abs().mean().log())


def test_carry_scores_keeps_learned_candidates_and_starts_new_ones_fresh():
    old = PriorConfig(lags=(1, 24), window=48)
    new = PriorConfig(lags=(1, 12, 24), means=((24, 2),), window=48)
    state = {"prior.score.weight": torch.arange(12.0).reshape(3, 4), "prior.score.bias": torch.tensor([1.0, 2, 3]),
             "prior.log_beta": torch.tensor(0.5)}
    grown = carry_scores(state, old, new)
    assert grown["prior.score.weight"].tolist() == [[0, 1, 2, 3], [0, 0, 0, 0], [4, 5, 6, 7], [0, 0, 0, 0],
                                                    [8, 9, 10, 11]]  # lag 1, new 12, lag 24, new mean, no copy
    assert grown["prior.score.bias"].tolist() == [1, 0, 2, 0, 3]
    assert grown["prior.log_beta"] is state["prior.log_beta"]
    start = model_with_prior(lags=(1, 24), window=48)
    model = model_with_prior(lags=(1, 12, 24), means=((24, 2),), window=48)
    model.load_state_dict(carry_scores(start.state_dict(), old, new))  # strict: every shape fits
    torch.testing.assert_close(model.prior.score.bias[[0, 2, 4]], start.prior.score.bias)
    with pytest.raises(ValueError, match="scoring window"):
        carry_scores(state, old, PriorConfig(lags=(1, 24), window=96))
    with pytest.raises(KeyError, match="prior.score.weight"):
        carry_scores({}, old, new)


def test_means_are_checked_and_survive_the_config_round_trip():
    for bad in (((24, 1),), ((24, 7), (12, 3)), ((500, 2),), "24x7", ((24, 7, 1),), ((24.5, 2),)):
        with pytest.raises(ValueError, match="means must be"):
            PriorConfig(lags=(24,), means=bad, window=336)
    with pytest.raises(ValueError, match="means need lags"):
        PriorConfig(means=((24, 7),))
    config = PriorConfig(lags=(1, 24), means=[[24.0, 7], [168, 3]], window=336)
    assert config.means == ((24, 7), (168, 3)) and config.span == 336 + 504
    assert config.candidates == ((1, 1), (24, 1), (24, 7), (168, 3))
    saved = model_with_prior(lags=(1, 24), means=((24, 3),), window=48).config.to_dict()
    assert TshamConfig.from_dict(saved).prior.means == ((24, 3),)


def test_parse_means_reads_lag_x_seasons_and_names_what_it_cannot():
    assert parse_means(["168x3", "24X7"]) == ((24, 7), (168, 3))
    assert parse_means([]) == ()
    for bad in ("24", "24x7x2", "x7", "24x-7", "dayx7", "²x3"):
        with pytest.raises(ValueError, match=f"got '{bad}'"):
            parse_means([bad])


def test_within_keeps_exactly_the_means_a_context_can_score():
    config = PriorConfig(lags=(1, 24), means=((24, 2), (24, 7)), window=336, min_pairs=8)
    assert config.within(2048).means == ((24, 2), (24, 7)) and config.within(100).means == ((24, 2),)
    assert config.within(100).lags == (1, 24)  # plain lags stay
    prior = SeasonalPrior(config, d_model=8)
    for T in (7 * 24 + 24 - 1, 7 * 24 + 24):  # the boundary within() reads, against what copies() offers
        x = torch.randn(1, T, 1)
        offered = prior.copies(x, torch.ones_like(x), 4).available[0, 0, 3]  # candidate (24, 7)
        assert bool(offered) == ((24, 7) in config.within(T).means)


def test_scores_per_step_mix_each_step_of_a_patch_on_its_own():
    model = model_with_prior(lags=(1, 6), window=24, per_step=True)
    silence_head(model)
    x = 5 + torch.sin(torch.arange(77.0) * 2 * torch.pi / 6)[None] + torch.arange(77.0)[None] / 20  # ends off-season
    with torch.no_grad():
        before = model(x, 16).quantiles  # the per-step scores start at zero: one mix per token, as before
        model.prior.score.bias.copy_(torch.tensor([0.0, 0.0, -1e4]))
        step = model.prior.step_score.bias.view(8, 3)  # patches of 8: step 0 copies the last value, the rest lag 6
        step[:, 0], step[:, 1] = -1e4, 1e4
        step[0, 0], step[0, 1] = 1e4, -1e4
        after = model(x, 16).quantiles[0, 0, 0]
    assert before.std(-1).max() > 0.1  # a mix of copies, not a flat line
    last, season = x[0, -1], torch.cat([x[0, -6:]] * 3)[:16]
    torch.testing.assert_close(after[[0, 8]], last.expand(2), atol=1e-3, rtol=0)  # the first step of each token
    rest = [i for i in range(16) if i % 8]
    torch.testing.assert_close(after[rest], season[rest], atol=1e-3, rtol=0)


def test_the_spread_is_each_steps_deviation_from_the_seasons_mean_and_widens_the_quantiles():
    prior = SeasonalPrior(PriorConfig(lags=(1, 4), means=((4, 3),), window=8, min_pairs=2, spread=True), d_model=8,
                          quantiles=3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 30, 1, generator=g)
    copies = prior.copies(x, torch.ones_like(x), 6)
    seasons = torch.stack([x[:, 30 - 4 * j:34 - 4 * j, 0] for j in (1, 2, 3)], 1)  # (B, 3, 4)
    expected = (seasons - seasons.mean(1, keepdim=True)).abs().mean(1)  # (B, 4) per step of the season
    torch.testing.assert_close(copies.spread[:, 0, 2], expected[:, [0, 1, 2, 3, 0, 1]])
    assert copies.spread[:, :, :2].abs().max() == 0  # a plain lag has one season: no spread
    with torch.no_grad():
        prior.spread_scale.bias.copy_(torch.tensor([-1.0, 0.0, 2.0]))
        prior.score.bias.copy_(torch.tensor([1e4, -1e4, 0.0, -1e4]))  # all but nothing on the mean: its spread
        out = prior(torch.zeros(2, 1, 2, 8), copies, patch_length=3)  # (B, C, Q, 6)
    shift = copies.copies[:, 0, 0]  # lag 1 carries the mix
    for q, scale in enumerate((-1.0, 0.0, 2.0)):
        torch.testing.assert_close(out[:, 0, q], shift + scale * copies.spread[:, 0, 2], atol=1e-4, rtol=0)


def test_a_model_without_any_averaged_candidate_offered_gets_no_spread_and_the_quantiles_stay_sorted():
    model = model_with_prior(lags=(1, 6), means=((6, 3),), window=12, min_pairs=4, spread=True)
    with torch.no_grad():
        torch.nn.init.normal_(model.prior.spread_scale.weight, std=2.0)
        short = model(torch.randn(2, 20), 8)  # 20 < 3 * 6 + 6 steps: the mean is never offered
        model.prior.spread_scale.weight.zero_()
        model.prior.spread_scale.bias.zero_()
        plain = model(torch.randn(2, 20, generator=torch.Generator().manual_seed(0)), 8)
        torch.nn.init.normal_(model.prior.spread_scale.weight, std=2.0)
        long = model(torch.randn(2, 60), 8).quantiles
    assert torch.isfinite(short.quantiles).all() and torch.isfinite(plain.quantiles).all()
    assert (long.diff(dim=2) >= 0).all()  # a negative scale would cross them: sorted outside training


def test_a_model_continued_with_both_refinements_forecasts_as_before_until_they_learn():
    base = model_with_prior(lags=(1, 6), means=((6, 3),), window=12, min_pairs=4)
    grown = model_with_prior(lags=(1, 6), means=((6, 3),), window=12, min_pairs=4, per_step=True, spread=True)
    missing, unexpected = grown.load_state_dict(base.state_dict(), strict=False)
    assert sorted(missing) == ["prior.spread_scale.bias", "prior.spread_scale.weight", "prior.step_score.bias",
                               "prior.step_score.weight"] and not unexpected
    x = torch.randn(3, 70, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(grown(x, 20).quantiles, base(x, 20).quantiles)


def test_carry_scores_rearranges_scores_per_step_and_drops_them_for_a_prior_without():
    old = PriorConfig(lags=(1, 24), window=48, per_step=True)
    new = PriorConfig(lags=(1, 12, 24), window=48, per_step=True)
    weight = torch.arange(2 * 3 * 2.0).view(6, 2)  # P = 2 steps x (K = 2 + "no copy") rows, D = 2
    state = {"prior.score.weight": torch.ones(3, 2), "prior.score.bias": torch.ones(3),
             "prior.step_score.weight": weight, "prior.step_score.bias": torch.arange(6.0)}
    out = carry_scores(state, old, new)
    per_step = out["prior.step_score.weight"].view(2, 4, 2)
    torch.testing.assert_close(per_step[:, [0, 2, 3]], weight.view(2, 3, 2))  # lags 1, 24, "no copy" kept
    assert per_step[:, 1].abs().max() == 0  # lag 12 starts fresh
    torch.testing.assert_close(out["prior.step_score.bias"].view(2, 4)[:, [0, 2, 3]], torch.arange(6.0).view(2, 3))
    state["prior.spread_scale.weight"], state["prior.spread_scale.bias"] = torch.ones(9, 2), torch.ones(9)
    dropped = carry_scores(state, old, PriorConfig(lags=(1, 24), window=48))
    assert not any(k.startswith(("prior.step_score.", "prior.spread_scale.")) for k in dropped)
    kept = carry_scores(state, old, PriorConfig(lags=(1, 24), window=48, spread=True))
    assert "prior.spread_scale.weight" in kept and "prior.step_score.weight" not in kept
    with pytest.raises(ValueError, match="true or false"):
        PriorConfig(lags=(1,), per_step="yes")


def test_copies_stay_float32_under_autocast():
    prior = SeasonalPrior(PriorConfig(lags=(1, 4), means=((4, 3),), window=8, min_pairs=2, spread=True), d_model=8)
    x = (500 + torch.arange(4.0).repeat(8))[None, :, None]  # an exact cycle at a level bf16 cannot resolve
    with torch.autocast("cpu", dtype=torch.bfloat16):
        copies = prior.copies(x, torch.ones_like(x), 6)
    assert copies.copies.dtype == torch.float32 and copies.spread.abs().max() < 1e-3  # no season strays (bf16: ~1)
    torch.testing.assert_close(copies.copies[0, 0, 2], x[0, -4:, 0].repeat(2)[:6])


def test_every_averaged_candidates_spread_is_its_own_seasons_deviation():
    means = ((2, 5), (4, 3), (6, 2))
    prior = SeasonalPrior(PriorConfig(lags=(1, 4), means=means, window=8, min_pairs=2, spread=True), d_model=8,
                          quantiles=3)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 40, 2, generator=g)
    H = 7
    copies = prior.copies(x, torch.ones_like(x), H)
    candidates = prior.config.candidates
    for k, (lag, n) in enumerate(candidates):
        steps = torch.arange(H) % lag
        seasons = torch.stack([x[:, 40 - lag * j + steps] for j in range(1, n + 1)], 1)  # (B, n, H, C)
        expected = (seasons - seasons.mean(1, keepdim=True)).abs().mean(1).permute(0, 2, 1)  # (B, C, H)
        torch.testing.assert_close(copies.spread[:, :, k], expected)
        torch.testing.assert_close(copies.copies[:, :, k], seasons.mean(1).permute(0, 2, 1))
    assert {candidates[k][1] for k in range(len(candidates))} >= {1, 2, 3, 5}  # lags and means of every length


def test_copies_and_scores_with_gaps_match_a_step_by_step_reference():
    config = PriorConfig(lags=(1, 4), means=((2, 5), (4, 3), (6, 2)), window=8, min_pairs=2, spread=True)
    prior = SeasonalPrior(config, d_model=8, quantiles=3)
    g = torch.Generator().manual_seed(3)
    B, T, C, H = 2, 40, 2, 9
    x = torch.randn(B, T, C, generator=g)
    o = torch.rand(B, T, C, generator=g) > 0.3
    got = prior.copies(x.masked_fill(~o, float("nan")), o.float(), H)
    span = config.span
    xs, os_ = x[:, T - span:], o[:, T - span:]
    for b in range(B):
        for c in range(C):
            filled, last = [], 0.0  # a missing step holds the last observed value (0 before any)
            for t in range(span):
                last = float(xs[b, t, c]) if os_[b, t, c] else last
                filled.append(last)
            for k, (lag, n) in enumerate(config.candidates):
                seasons = [[float(filled[span - j * lag + h % lag]) for h in range(H)] for j in range(1, n + 1)]
                copy = torch.tensor(seasons).mean(0)
                torch.testing.assert_close(got.copies[b, c, k], copy)
                torch.testing.assert_close(got.spread[b, c, k], (torch.tensor(seasons) - copy).abs().mean(0))
                errors = [abs(float(xs[b, t, c]) - sum(float(xs[b, t - j * lag, c]) for j in range(1, n + 1)) / n)
                          for t in range(span - config.window, span)
                          if os_[b, t, c] and all(os_[b, t - j * lag, c] for j in range(1, n + 1))]
                error = max(sum(errors) / max(len(errors), 1), 1e-4)
                torch.testing.assert_close(got.log_error[b, c, k], torch.tensor(error).log())
                assert bool(got.available[b, c, k]) == (len(errors) >= max(lag, config.min_pairs))
    assert got.available.any() and not got.available.all()  # the gaps leave some candidates too few pairs
