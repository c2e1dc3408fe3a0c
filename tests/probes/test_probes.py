"""Probe generators: deterministic per seed, the needle really absent from the twin; metrics on hand-made cases."""

import numpy as np
import pandas as pd
import pytest
import torch
from tsham.probes import LEVELS, PROBES, nearest_value_accuracy, recall_skill, tolerance_accuracy


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", sorted(PROBES))
def test_deterministic_shapes_and_needles(name, level):
    a, b = PROBES[name](3, level, seed=5), PROBES[name](3, level, seed=5)
    assert np.array_equal(a.context, b.context) and np.array_equal(a.target, b.target)
    assert not np.array_equal(a.context, PROBES[name](3, level, seed=6).context)
    N, L, C = a.context.shape
    assert a.needles.shape == (N, L) and (a.needles.sum(1) >= 1).all()
    assert a.twin_context.shape == a.context.shape and a.flags.shape[:2] == (N, L + a.target.shape[1])
    assert a.target.shape[2] == len(a.target_channels)
    assert np.isfinite(a.context).all() and np.isfinite(a.target).all()
    # the twin differs from the example only through the needle (values or flags at needle steps)
    changed = (a.context != a.twin_context).any(-1) | (a.flags[:, :L] != a.twin_flags[:, :L]).any(-1)
    assert changed.any(1).all()
    assert not (changed & ~a.needles).any()


def test_delayed_action_twin_removes_the_action_and_its_effect():
    p = PROBES["delayed_action"](4, "easy", seed=0)
    t0 = p.needles.argmax(1)
    rows = np.arange(4)
    assert (p.context[rows, t0, 3] != 0).all() and (p.twin_context[rows, t0, 3] == 0).all()
    assert (p.flags[rows, t0, 0] == 1).all() and (p.twin_flags[rows, t0, 0] == 0).all()


def test_delayed_action_effect_and_its_metrics():
    from tsham.probes import effect_metrics

    p = PROBES["delayed_action"](4, "easy", seed=3)
    a = p.context[np.arange(4), p.needles.argmax(1), 3]  # the action at t0
    assert p.effect.shape == p.target.shape and (p.effect[:, :16] == 0).all()  # onset 16 steps into the horizon
    assert (np.sign(p.effect[:, -1, 0]) == np.sign(a)).all()
    base = np.zeros_like(p.target)
    perfect = effect_metrics(base + p.effect, base, p.effect)
    assert perfect["sign_accuracy"].tolist() == [1.0] * 4 and np.allclose(perfect["magnitude_error"], 0)
    assert np.allclose(perfect["onset_error"], 0)
    assert effect_metrics(base - p.effect, base, p.effect)["sign_accuracy"].tolist() == [0.0] * 4
    delayed = np.concatenate([np.zeros_like(p.effect[:, :3]), p.effect[:, :-3]], 1)  # 3 steps late
    late = effect_metrics(base + delayed, base, p.effect)
    assert np.allclose(late["onset_error"], 3)
    none = effect_metrics(base, base, p.effect)
    assert np.isnan(none["onset_error"]).all() and np.allclose(none["magnitude_error"], 1)


def test_action_window_effect_is_the_sum_over_the_window():
    p = PROBES["action_window"](3, "medium", seed=4)
    assert (p.needles.sum(1) == 8).all()
    for i in range(3):
        window = np.flatnonzero(p.needles[i])
        assert np.array_equal(window, np.arange(window[0], window[0] + 8))  # 8 consecutive steps
        total = p.context[i, window, 3].sum()
        assert (p.twin_context[i, window, 3] == 0).all() and (p.flags[i, window, 0] == 1).all()
        np.testing.assert_allclose(p.effect[i, -1, 0], 1.5 * total * (1 - np.exp(-63 / 16)), rtol=1e-5)
    with pytest.raises(ValueError, match="window"):
        PROBES["delayed_action"](1, "easy", window=0)


@pytest.mark.parametrize("level, followers", [("easy", 1), ("hard", 4)])
def test_action_sequence_hides_the_queried_action_among_alike_ones(level, followers):
    from tsham.probes.generators import _other_actions

    p = PROBES["action_sequence"](5, level, seed=7)
    L = p.context.shape[1]
    t0 = L + 16 - 1024  # B hard's delay at every level
    assert (p.needles.argmax(1) == t0).all() and (p.needles.sum(1) == 1).all()
    acted = p.context[:, :, 3] != 0
    assert (acted[:, t0 + 64:].sum(1) >= followers).all()
    assert (p.effect[:, :16] == 0).all() and (np.abs(p.effect[:, -1, 0]) > 0.7).all()  # 1.5 x >= 0.5, near settled
    rng, counts = np.random.default_rng(0), set()
    for _ in range(200):
        steps = np.array(_other_actions(rng, t0, L, followers))
        before, later = steps[steps < t0], steps[steps > t0]
        counts.add(len(before))
        assert len(later) == followers and (before < t0 - 96).all() and (before >= t0 - 416).all()
        assert later[0] >= t0 + 64 and later[-1] < L - 8 and (np.diff(steps) >= 32).all()
        assert (steps % 16 == 0).all() and t0 % 16 == 0  # the queried action's phase in its patch, for all
    assert counts == {1, 2, 3}  # the queried action's rank from the start varies, from the end it does not
    with pytest.raises(ValueError, match="followers"):
        PROBES["delayed_action"](1, "easy", followers=1)  # a delay of 64 leaves no room after the queried action
    with pytest.raises(ValueError, match="lead"):
        PROBES["delayed_action"](1, "hard", lead=8)  # would move the queried action off the grid of 16


def test_action_sequence_length_varies_and_the_queried_action_keeps_its_distance_from_the_end():
    from tsham.probes import runner

    lengths = set()
    for seed in range(12):
        p = PROBES["action_sequence"](2, "medium", seed=seed)
        L = p.context.shape[1]
        lengths.add(L)
        assert (L - 1536) % 64 == 0 and 0 <= L - 1536 <= 448 and p.flags.shape[1] == L + 80
        assert (p.needles.argmax(1) == L + 16 - 1024).all()  # a fixed distance from the end, not from the start
    assert len(lengths) >= 4
    config = runner.probe_config("none", 0.0, d_model=16, n_layers=1)
    with pytest.raises(ValueError, match="fixed shapes"):  # checked before the model reaches the device
        runner.train_probe_model("action_sequence", "easy", config, steps=1, device="cuda", cuda_graph=True)


def test_mqar_flags_mark_the_writes_and_the_twin_drops_the_queried_one():
    p = PROBES["mqar"](4, "easy", seed=1)
    L = p.context.shape[1]
    assert p.flags.shape == (4, L + 1, 1) and np.array_equal(p.flags[:, :L, 0], p.context[:, :, 16])
    assert (p.flags.sum((1, 2)) == 4).all() and (p.twin_flags.sum((1, 2)) == 3).all()
    assert (p.twin_flags[np.arange(4), p.needles.argmax(1), 0] == 0).all()


def test_scheduled_event_target_returns_to_the_snapshot_level():
    p = PROBES["scheduled_event"](8, "medium", seed=1)
    snap = p.needles.argmax(1)
    level = p.context[np.arange(8), snap, 0]
    assert np.abs(p.target[:, 0, 0] - level).max() < 0.2


def test_mqar_query_key_matches_the_stored_pair():
    p = PROBES["mqar"](4, "easy", seed=2)
    pos = p.needles.argmax(1)
    rows = np.arange(4)
    np.testing.assert_allclose(p.context[rows, pos, :8], p.context[:, -1, :8])  # the query presents that key
    np.testing.assert_allclose(p.context[rows, pos, 8:16], p.target[:, 0])
    assert not np.allclose(p.twin_context[rows, pos, 8:16], p.target[:, 0])
    # the candidates are every pair's value, the answer among them: a perfect forecast picks it
    from tsham.probes import cosine_similarity

    assert p.candidates.shape == (4, 4, 8) and (p.candidates == p.target[:, :1]).all(-1).any(-1).all()
    assert nearest_value_accuracy(p.target, p.target, p.candidates).tolist() == [1.0] * 4
    np.testing.assert_allclose(cosine_similarity(p.target, p.target), 1.0)
    np.testing.assert_allclose(cosine_similarity(-p.target, p.target), -1.0)


def test_recall_skill_on_hand_made_predictions():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 10, 1))
    ablated = y + rng.normal(size=y.shape)
    assert np.allclose(recall_skill(y, ablated, y), 1.0)  # perfect recall
    assert np.allclose(recall_skill(ablated, ablated, y), 0.0)  # no better than without the needle
    assert np.allclose(recall_skill(y + 10, ablated, y), -1.0)  # clipped
    assert tolerance_accuracy(y + 0.1, y, 0.25).tolist() == [1.0] * 5
    cands = rng.normal(size=(5, 16, 3))
    target = cands[:, 3]
    assert nearest_value_accuracy(target + 0.01, target, cands).tolist() == [1.0] * 5


def test_rare_motif_replay_and_compressible_control():
    from tsham.probes.generators import rare_motif

    p = rare_motif(3, "easy", seed=1)
    L = p.context.shape[1]
    start = p.needles.argmax(1)
    assert (p.needles.sum(1) == 48).all() and p.target.shape == (3, 32, 1) and p.flags.shape[2] == 0
    # the replay closes the context: its first 16 samples continue into the 32 targets
    assert not np.allclose(p.context[:, L - 16:, 0], p.twin_context[:, L - 16:, 0] * 0)
    assert (start >= 0.05 * L).all() and (start + 48 <= 0.6 * L + 48).all()
    a2 = rare_motif(3, "easy", seed=1, compressible=True)
    assert a2.flags.shape[2] == 1 and (a2.flags[np.arange(3), start, 0] == 1).all()  # regime flag on the motif
    assert (a2.twin_flags[np.arange(3), start, 0] == 0).all()


def test_cross_channel_binding_control_and_codebook():
    from tsham.probes import codebook_accuracy
    from tsham.probes.generators import cross_channel_binding

    p = cross_channel_binding(4, "medium", seed=2)
    L = p.context.shape[1]
    assert p.target.shape == (4, 4 + 8, 1) and p.answers.shape == (4,)
    # the queried binding's value is its level added to the background: the twin keeps only the background
    level = p.codebook[p.answers]
    for i in range(4):
        value_steps = np.flatnonzero(p.needles[i])[8:]  # the needle is the key's 8 steps, then the value's 8
        np.testing.assert_allclose(p.context[i, value_steps, 0] - p.twin_context[i, value_steps, 0], level[i],
                                   atol=1e-6)
    assert (p.target[:, -8:, 0].std(1) > 0).all()  # the target's level rides on the moving background
    background = p.target - np.concatenate([np.zeros_like(p.target[:, :4]), np.repeat(level[:, None, None], 8, 1)],
                                           1)
    assert codebook_accuracy(p.target, p.codebook, p.answers, baseline=background).tolist() == [1.0] * 4
    # the channel-swap control moves only the query key, from channel 1 to channel 2
    diff = p.control_context != p.context
    assert not diff[:, : L - 8].any() and not diff[..., [0, 3, 4, 5, 6, 7]].any() and diff[:, L - 8:, 2].any()
    wrong = p.target + 10.0
    assert codebook_accuracy(wrong, p.codebook, p.answers, baseline=background).sum() <= 1


def test_cross_channel_binding_decoy_reuses_the_query_shape_on_other_channels():
    # as many decoy keys as bindings sit on channel 2, one of them the queried key's shape: a shape matcher that
    # ignores channels finds two candidates, a (channel, shape) association one
    from tsham.probes.generators import cross_channel_binding, key_codebook

    p = cross_channel_binding(6, "easy", seed=3)
    keys, L = key_codebook(), p.context.shape[1]
    starts = np.arange(0, L - 64, 16)  # easy: events 4, span 16 (lag 0)

    def is_key(window):
        return np.isclose(np.abs(keys - window).sum(1), 0, atol=1e-5).any()

    for i in range(6):
        query_shape = p.context[i, L - 8:, 1]
        assert sum(is_key(p.context[i, s:s + 8, 2]) for s in starts) == 4
        assert sum(is_key(p.context[i, s:s + 8, 1]) for s in starts) == 4
        assert sum(np.allclose(p.context[i, s:s + 8, 2], query_shape) for s in starts) == 1
        assert sum(np.allclose(p.twin_context[i, s:s + 8, 2], query_shape) for s in starts) == 1  # twin keeps it


def test_runner_rows_controls_and_capture(tmp_path):
    from tsham.probes.runner import frontier_plot, run_probe, summarise

    rows = run_probe("mqar", "easy", policies=["oracle", "random"], budgets=[0.25], seeds=[0], n_test=8,
                     train_steps=2, context_length=96, patch_length=4, d_model=16)
    assert len(rows) == 4 * 8 and set(rows["policy"]) == {"none", "all", "oracle", "random"}
    table = summarise(rows).set_index("policy")
    assert table.loc["none", "kv_fraction"] == 0.0 and table.loc["all", "kv_fraction"] == 1.0
    assert table.loc["oracle", "capture_rate"] == 1.0 and table.loc["none", "capture_rate"] == 0.0
    assert table.loc["oracle", "kv_fraction"] < 0.1  # exactly the needle's patch tokens
    assert rows["RS"].between(-1, 1).all() and rows["mse_twin"].gt(0).all()
    frontier_plot(rows, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").stat().st_size > 5_000


def test_runner_refuses_an_unknown_level_policy_or_budget_before_training(monkeypatch):
    import tsham.probes.runner as runner

    monkeypatch.setattr(runner, "train_probe_model", lambda *a, **k: pytest.fail("trained before checking"))
    for kwargs, message in (({"level": "extreme"}, "unknown level 'extreme'"), ({"policies": ["bogus"]},
                            r"unknown policies \['bogus'\]"), ({"budgets": [1.5]}, r"\[0, 1\]; got \[1.5\]"),
                            ({"budgets": [float("nan")]}, r"\[0, 1\]")):
        with pytest.raises(ValueError, match=message):
            runner.run_probe("mqar", **kwargs)
    with pytest.raises(ValueError, match="seeds must be whole numbers >= 0"):
        runner.run_probe("mqar", seeds=[-1])
    with pytest.raises(ValueError, match="asks for a 10008-step forecast.*lower the level's knobs"):
        runner.run_probe("cross_channel_binding", "easy:lag=10000")
    from tsham.cli import main

    with pytest.raises(SystemExit):  # argparse: "a KV budget is a fraction in [0, 1]"
        main(["probe", "mqar", "--budget", "-0.5"])


def test_repeated_seeds_and_control_budgets_train_each_cell_once(monkeypatch):
    """A seed given twice, or a scoring policy at budget 0 or 1 (the pure-GDN and full-attention controls), would
    train and count the same cell twice."""
    import tsham.probes.runner as runner

    trained = []
    monkeypatch.setattr(runner, "train_probe_model", _record(trained))
    monkeypatch.setattr(runner, "evaluate_probe", lambda *a, **k: pd.DataFrame({"RS": [0.0]}))
    runner.run_probe("mqar", policies=["surprise"], budgets=[0.0, 0.1, 1.0], seeds=[0, 0], n_test=2, train_steps=1,
                     d_model=16)
    assert sorted(trained) == [("all", 0), ("none", 0), ("surprise", 0)]
    assert runner.probe_cells("mqar", "easy", ["surprise"], [0.0, 1.0]) == [("none", 0.0), ("all", 1.0)]


def _record(trained):
    def fake(probe, level, config, *args, seed=0, **kwargs):
        trained.append((config.ham.router, seed))
        return None
    return fake


def test_probe_command_writes_rows_and_plot(tmp_path):
    from tsham.cli import main

    out = tmp_path / "rows.csv"
    assert main(["probe", "cross_channel_binding", "--policy", "random", "--budget", "0.2", "--n", "4", "--steps",
                 "1", "--patch-length", "4", "--d-model", "16", "--output", str(out), "--plot",
                 str(tmp_path / "f.png")]) == 0
    import pandas as pd

    rows = pd.read_csv(out)
    assert len(rows) == 3 * 4 and {"codebook_accuracy", "control_RS", "capture_rate"} <= set(rows.columns)
    assert main(["probe", "mqar", "--train", "--policy", "random", "--budget", "0.5", "--n", "2", "--steps", "1",
                 "--d-model", "16", "--output", str(tmp_path / "t.csv")]) == 0  # --train: the spelling
    assert len(pd.read_csv(tmp_path / "t.csv")) == 3 * 2
    assert main(["probe", "mqar", "--train", "--model", str(tmp_path), "--output", str(tmp_path / "x.csv")]) == 2


def test_state_utility_separates_the_memories():
    import torch
    from tsham.probes.diagnostics import recorded_reads
    from tsham.probes.runner import probe_config
    from tsham.probes.state_utility import state_utility

    from tsham.model import TshamModel

    torch.manual_seed(0)
    model = TshamModel(probe_config("oracle", 0.1, patch_length=1, d_model=16, context_length=96))
    scores = state_utility(model, "mqar", "easy", n=512)
    memories = {"recurrent", "scratchpad", "both"}
    assert set(scores) == memories | {f"{m}_twin" for m in memories}
    assert all(np.isfinite(v) for v in scores.values())
    # the oracle scratchpad holds exactly the queried pair, so even untrained reads of it carry the value...
    assert scores["scratchpad"] > scores["recurrent"] + 0.05
    # ...and the twin's, whose queried pair holds another value, do not
    assert scores["scratchpad"] > scores["scratchpad_twin"] + 0.05
    with recorded_reads(model) as reads:
        pass
    assert reads == [] and "merge" not in vars(model.stack.blocks[0].mixer)  # the recording is undone


def test_training_curriculum_draws_the_easier_level_first_then_the_target_level(monkeypatch):
    from tsham.probes import runner

    drawn = []
    original = PROBES["rare_motif"]
    monkeypatch.setitem(runner.PROBES, "rare_motif",
                        lambda n, level, seed: drawn.append((level, seed)) or original(n, level, seed))
    config = runner.probe_config("none", 0.0, patch_length=16, d_model=16, n_layers=1)
    runner.train_probe_model("rare_motif", "easy:length=2048,distractors=3", config, steps=6, batch_size=2,
                             curriculum="easy:distractors=3", curriculum_steps=4)
    levels = [level for level, _ in drawn]
    assert levels == ["easy:distractors=3"] * 4 + ["easy:length=2048,distractors=3"] * 2
    assert len({seed for _, seed in drawn}) == 6  # every step a fresh batch, across the stages too
    drawn.clear()
    runner.train_probe_model("rare_motif", "easy", config, steps=4, batch_size=2, curriculum="easy:distractors=3")
    assert [level for level, _ in drawn] == ["easy:distractors=3"] * 2 + ["easy"] * 2  # half the steps by default
    drawn.clear()
    runner.train_probe_model("rare_motif", "easy", config, steps=3, batch_size=2)
    assert [level for level, _ in drawn] == ["easy"] * 3
    drawn.clear()
    with pytest.raises(ValueError, match="unknown level 'trivial'"):
        runner.train_probe_model("rare_motif", "easy", config, steps=1, curriculum="trivial")
    with pytest.raises(ValueError, match="no knob 'events'"):
        runner.train_probe_model("rare_motif", "easy", config, steps=1, curriculum="easy:events=2")
    with pytest.raises(ValueError, match=r"curriculum_steps must be a whole number in \[0, steps=4\]; got 5"):
        runner.train_probe_model("rare_motif", "easy", config, steps=4, curriculum="easy", curriculum_steps=5)
    with pytest.raises(ValueError, match="need a curriculum level"):
        runner.train_probe_model("rare_motif", "easy", config, steps=4, curriculum_steps=2)
    with pytest.raises(ValueError, match="whole number"):
        runner.train_probe_model("rare_motif", "easy", config, steps=4, curriculum="easy", curriculum_steps=2.0)
    recency = runner.probe_config("recency", 0.1, patch_length=16, d_model=16, n_layers=1)
    with pytest.raises(ValueError, match="recency routing keeps a window sized for the target level"):
        runner.train_probe_model("rare_motif", "easy", recency, steps=4, curriculum="easy:distractors=3")
    with pytest.raises(ValueError, match="recency routing"):  # run_probe says so before the first model trains
        runner.run_probe("rare_motif", "easy", ["recency"], [0.1], train_steps=4, curriculum="easy:distractors=3")
    assert drawn == []


def test_a_curriculum_budget_routes_its_fraction_in_the_first_stage_and_the_cells_own_after(monkeypatch):
    """Every training forward's routed fraction: the curriculum budget through the first stage, the router's own from
    the first step of the second (its threshold reset to that batch's quantile, not drifting down over many)."""
    from tsham.probes import runner

    config = runner.probe_config("surprise", 0.1, patch_length=4, d_model=16, n_layers=1,
                                 context_length=runner.probe_context_length("mqar", "easy"))
    routed = []
    real = runner.training_loss

    def recording(model, batch):
        router = model.stack.blocks[0].mixer.router
        hook = router.register_forward_hook(lambda m, a, out: routed.append((m.target, out.mask.float().mean().item())))
        try:
            return real(model, batch)
        finally:
            hook.remove()

    monkeypatch.setattr(runner, "training_loss", recording)
    model = runner.train_probe_model("mqar", "easy", config, steps=5, batch_size=4, curriculum="easy",
                                     curriculum_steps=3, curriculum_budget=0.5)
    assert [t for t, _ in routed] == [0.5, 0.5, 0.5, 0.1, 0.1]
    assert abs(routed[0][1] - 0.5) < 0.02 and abs(routed[3][1] - 0.1) < 0.02  # each stage's first batch: its quantile
    assert model.stack.blocks[0].mixer.router.target == 0.1  # scored at its own budget
    routed.clear()
    random = runner.probe_config("random", 0.1, patch_length=4, d_model=16, n_layers=1,
                                 context_length=runner.probe_context_length("mqar", "easy"))
    model = runner.train_probe_model("mqar", "easy", random, steps=5, batch_size=4, curriculum="easy",
                                     curriculum_steps=3, curriculum_budget=0.5)
    assert [t for t, _ in routed] == [0.5, 0.5, 0.5, None, None]  # its fixed threshold, not a target, after
    assert float(model.stack.blocks[0].mixer.router.tau) == pytest.approx(0.9)  # scored at its own 10%
    routed.clear()
    runner.train_probe_model("mqar", "easy", runner.probe_config("all", 1.0, patch_length=4, d_model=16, n_layers=1),
                             steps=2, batch_size=4, curriculum="easy", curriculum_budget=0.5)  # no budget to change
    for kwargs, message in (({"curriculum_budget": 0.5}, "need a curriculum level"),
                            ({"curriculum": "easy", "curriculum_budget": 0.0}, r"KV fraction in \(0, 1\]; got 0.0"),
                            ({"curriculum": "easy", "curriculum_budget": 0.5, "curriculum_steps": 5},
                             "needs a second stage")):
        with pytest.raises(ValueError, match=message):
            runner.train_probe_model("mqar", "easy", config, steps=5, batch_size=4, **kwargs)
    with pytest.raises(ValueError, match="scored, not trained"):
        runner.run_probe("mqar", "easy", model=model, curriculum_budget=0.5)


def test_a_guided_curriculum_routes_the_needles_in_the_first_stage_only(monkeypatch):
    """Every training forward's layer mask: the router's tokens and every needle in the first stage, the router's
    alone in the second; the controls get no needles; the recipe's errors name what is wrong."""
    from tsham.probes import runner

    seen = []

    def recording(model, batch):
        mixer = model.stack.blocks[0].mixer
        mine = []
        hooks = [mixer.router.register_forward_hook(lambda m, a, out: mine.append(out.mask)),
                 mixer.register_forward_hook(lambda m, args, out: seen.append((args[2], mine[-1], out[1].mask)))]
        try:
            return real(model, batch)
        finally:
            for hook in hooks:
                hook.remove()

    real = runner.training_loss
    monkeypatch.setattr(runner, "training_loss", recording)
    context = runner.probe_context_length("mqar", "easy")
    config = runner.probe_config("surprise", 0.1, patch_length=4, d_model=16, n_layers=1, context_length=context)
    model = runner.train_probe_model("mqar", "easy", config, steps=5, batch_size=4, curriculum="easy",
                                     curriculum_steps=3, curriculum_guide=True)
    needles = [n for n, _, _ in seen]
    assert all(n is not None and n.any() for n in needles[:3]) and needles[3:] == [None, None]
    for needle, own, layer in seen[:3]:
        assert torch.equal(layer, own | needle[..., None])
    assert any(not torch.equal(layer, own) for _, own, layer in seen[:3])  # the guide added needles
    assert all(torch.equal(layer, own) for _, own, layer in seen[3:])
    assert not model.stack.blocks[0].mixer.router.guided  # scored by its router alone
    seen.clear()
    none = runner.probe_config("none", 0.0, patch_length=4, d_model=16, n_layers=1, context_length=context)
    runner.train_probe_model("mqar", "easy", none, steps=2, batch_size=4, curriculum="easy", curriculum_guide=True)
    assert all(n is None and not layer.any() for n, _, layer in seen)  # pure GDN stays pure GDN
    for kwargs, message in (({"curriculum_guide": True}, "need a curriculum level"),
                            ({"curriculum": "easy", "curriculum_guide": True, "curriculum_steps": 5},
                             "curriculum_guide needs a second stage"),
                            ({"curriculum": "easy", "curriculum_guide": True, "curriculum_steps": 0},
                             "curriculum_guide needs a first stage")):
        with pytest.raises(ValueError, match=message):
            runner.train_probe_model("mqar", "easy", config, steps=5, batch_size=4, **kwargs)
    with pytest.raises(ValueError, match="composite routing has none of its own"):  # its cells would be misnamed
        runner.run_probe("mqar", "easy", ["composite"], [0.1], train_steps=4, curriculum="easy", curriculum_guide=True)


def test_probe_command_passes_rotary_positions_to_every_model(tmp_path, monkeypatch):
    import tsham.probes.runner as runner

    from tsham.cli import main

    built = []

    def recording(*args, **kwargs):
        config = probe_config_original(*args, **kwargs)
        built.append(config.ham.kv_rope_base)
        return config

    probe_config_original = runner.probe_config
    monkeypatch.setattr(runner, "probe_config", recording)
    assert main(["probe", "scheduled_event", "--policy", "event", "--n", "2", "--steps", "1", "--d-model", "16",
                 "--kv-rope-base", "10000", "--output", str(tmp_path / "rows.csv")]) == 0
    assert built and all(base == 10000.0 for base in built)  # the controls and the event model alike


def test_probe_command_trains_every_model_on_the_curriculum_first(tmp_path, monkeypatch, capsys):
    import tsham.probes.runner as runner

    from tsham.cli import main

    drawn = []
    original = PROBES["rare_motif"]
    monkeypatch.setitem(runner.PROBES, "rare_motif",
                        lambda n, level, seed: drawn.append(level) or original(n, level, seed))
    out = str(tmp_path / "rows.csv")
    assert main(["probe", "rare_motif", "--level", "easy:length=2048", "--curriculum", "easy", "--curriculum-steps",
                 "2", "--steps", "3", "--batch-size", "2", "--policy", "oracle", "--n", "2", "--d-model", "16",
                 "--patch-length", "16", "--output", out]) == 0
    # per model (pure GDN, full attention, oracle): 2 curriculum steps, then 1 at the level; scored at the level
    assert drawn.count("easy") == 3 * 2 and set(drawn) == {"easy", "easy:length=2048"}
    assert pd.read_csv(out)["level"].eq("easy:length=2048").all()
    monkeypatch.setattr(runner, "train_probe_model", lambda *a, **k: pytest.fail("trained before checking"))
    for bad, message in ((["--curriculum", "easy:events=2"], "no knob 'events'"),
                         (["--curriculum", "easy", "--curriculum-steps", "9"], "[0, steps=3]; got 9"),
                         (["--curriculum-steps", "1"], "need a curriculum level"),
                         (["--curriculum", "easy", "--curriculum-budget", "0.5", "--curriculum-steps", "3"],
                          "needs a second stage")):
        assert main(["probe", "rare_motif", "--steps", "3", "--output", out, *bad]) == 2
        assert message in capsys.readouterr().err


def test_runner_adds_the_state_utility_of_every_cell():
    from tsham.probes.runner import run_probe

    kwargs = {"policies": ["oracle"], "budgets": [], "n_test": 8, "train_steps": 1, "patch_length": 1,
              "d_model": 16}
    rows = run_probe("mqar", "easy", utility=256, **kwargs)
    cells = rows.groupby("policy")[["utility_recurrent", "utility_scratchpad", "utility_both"]]
    assert (cells.nunique() == 1).all().all() and set(rows["policy"]) == {"none", "all", "oracle"}
    table = cells.first()
    assert abs(table.loc["none", "utility_scratchpad"]) < 0.05  # pure GDN has no scratchpad to read
    assert table.loc["oracle", "utility_scratchpad"] > table.loc["oracle", "utility_recurrent"] + 0.05
    assert "utility_both" not in run_probe("mqar", "easy", **kwargs)  # off by default


def test_probe_cells_skip_the_flag_policies_where_a_probe_has_no_flags():
    from tsham.probes.runner import probe_cells

    flagless = probe_cells("rare_motif", "easy", ["surprise", "event", "composite", "oracle"], [0.1])
    assert [p for p, _ in flagless] == ["none", "all", "surprise", "oracle"]
    flagged = probe_cells("mqar", "easy", ["event", "composite"], [0.1])
    assert [p for p, _ in flagged] == ["none", "all", "event", "composite"]


def test_level_knobs_override_the_level_and_bad_ones_are_named():
    from tsham.probes.generators import parse_level

    assert parse_level("cross_channel_binding", "medium") == ("medium", {})
    assert parse_level("cross_channel_binding", "medium:events=8,lag=0") == ("medium", {"events": 8, "lag": 0})
    # C medium with 8 events at lag 0: 8 binding events of 16 steps each, so the context is 2 * 8 * 16 + 64 steps
    c = PROBES["cross_channel_binding"](2, "medium:events=8,lag=0", seed=1)
    assert c.context.shape[1] == 2 * 8 * 16 + 64 and c.target.shape[1] == 8
    assert c.needles.sum(1).tolist() == [16, 16]  # the key and the value of the queried event, no lag between
    a = PROBES["rare_motif"](2, "medium:length=2048,distractors=7", seed=1)
    assert a.context.shape[1] == 2048
    assert a.needles.sum(1).tolist() == [48, 48]  # the queried motif, 48 steps
    assert not ((a.context != a.twin_context).any(-1) & ~a.needles).any()  # only it leaves the twin
    for probe, level, message in (("mqar", "medium:pairs=8", "mqar has no knob 'pairs'"),
                                  ("cross_channel_binding", "medium:lag=-1", "whole number >= 0"),
                                  ("cross_channel_binding", "medium:events=0", "events must lie in"),
                                  ("rare_motif", "easy:length=512,distractors=9", "no room for 10 motifs"),
                                  ("compressible_regime", "easy:length=1000", "multiple of 16 steps; got 1000"),
                                  ("cross_channel_binding", "easy:events=\u00b2", "whole number"),
                                  ("cross_channel_binding", "easy:events=8,events=2", "events is set twice"),
                                  ("rare_motif", "extreme", "unknown level 'extreme'")):
        with pytest.raises(ValueError, match=message):
            PROBES[probe](1, level, seed=0)


def test_scoring_a_checkpoint_labels_its_controls_and_takes_fixed_policies():
    import torch
    from tsham.probes.runner import probe_config, run_probe

    from tsham.model import TshamModel

    torch.manual_seed(0)
    surprise = TshamModel(probe_config("surprise", 0.1, patch_length=1, d_model=16, n_layers=1, context_length=96))
    rows = run_probe("mqar", "easy", budgets=[0.25], n_test=4, model=surprise)
    assert rows.groupby("budget")["policy"].first().to_dict() == {0.0: "none", 0.25: "surprise", 1.0: "all"}
    oracle = TshamModel(probe_config("oracle", 0.1, patch_length=1, d_model=16, n_layers=1, context_length=96))
    rows = run_probe("mqar", "easy", budgets=[0.25], n_test=4, model=oracle)  # no budget to set: scored as it routes
    assert set(rows["policy"]) == {"oracle"} and rows["budget"].isna().all() and len(rows) == 4


def test_probe_sweep_checks_its_sizes_and_outputs_before_training(tmp_path, monkeypatch):
    import importlib.util

    from tsham.probes.runner import run_probe

    from tsham.cli import main

    for kwargs, message in (({"n_test": 0}, "n_test must be >= 1"), ({"train_steps": 0}, "train_steps"),
                            ({"utility": 4}, "or >= 8")):
        with pytest.raises(ValueError, match=message):
            run_probe("mqar", "easy", **kwargs)
    with pytest.warns(UserWarning, match="no event flags: the policies \\['event'\\]"):
        rows = run_probe("cross_channel_binding", "easy", policies=["event"], budgets=[], n_test=2, train_steps=1,
                         train_batch=1, patch_length=4, d_model=16, n_layers=1)
    assert set(rows["policy"]) == {"none", "all"}  # the controls ran; the event cell did not
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no parquet engine installed
    assert main(["probe", "mqar", "--output", str(tmp_path / "rows.parquet"), "--steps", "1"]) == 2


def test_probe_d_tolerance_compares_with_the_snapshot_level_as_the_spec_defines_it():
    from tsham.probes.metrics import tolerance_accuracy

    batch = PROBES["scheduled_event"](200, "easy", seed=3)
    assert batch.recalled.shape == batch.target.shape
    # the level the reset jumps back to: the target starts there (its walk and noise then move it)
    assert np.abs(batch.target[:, 0] - batch.recalled[:, 0]).max() < 0.3
    assert tolerance_accuracy(batch.recalled, batch.recalled, batch.tolerance).mean() == 1.0  # a perfect recall
    stay = np.repeat(batch.context[:, -1:], batch.target.shape[1], 1)  # no memory: the last value held
    assert tolerance_accuracy(stay, batch.recalled, batch.tolerance).mean() < 0.2


def test_cross_channel_binding_spacing_moves_the_events_apart_and_changes_nothing_at_zero():
    """The distance knob: spacing=0 is the level as it was (same draws), a spacing widens every slot by that much
    background, and the example, twin and control keep their meaning."""
    from tsham.probes.generators import cross_channel_binding, key_codebook

    base, zero = cross_channel_binding(3, "easy", seed=5), cross_channel_binding(3, "easy:spacing=0", seed=5)
    for a, b in ((base.context, zero.context), (base.twin_context, zero.twin_context), (base.target, zero.target)):
        np.testing.assert_array_equal(a, b)
    far = cross_channel_binding(3, "easy:spacing=32", seed=5)
    L, L0 = far.context.shape[1], base.context.shape[1]
    assert L - 64 == 2 * 4 * (16 + 32) and L0 - 64 == 2 * 4 * 16  # 4 events, 4 decoys, each slot 32 steps wider
    keys, starts = key_codebook(), np.arange(0, L - 64, 48)
    for i in range(3):
        on_key_channel = [s for s in starts if np.isclose(np.abs(keys - far.context[i, s:s + 8, 1]).sum(1), 0,
                                                              atol=1e-5).any()]
        assert len(on_key_channel) == 4  # the 4 bindings start on the wider grid
        assert far.needles[i].sum() == 16 and far.needles[i].argmax() in on_key_channel  # key + value of the query
        assert (far.context[i] != far.twin_context[i]).any(-1).sum() == 16  # the twin drops that event alone
    assert far.target.shape == base.target.shape and far.answers.shape == (3,)


def test_probe_command_refuses_a_folder_or_an_unwritable_plot_before_training(tmp_path, monkeypatch, capsys):
    import tsham.probes.runner as runner

    from tsham.cli import main

    monkeypatch.setattr(runner, "train_probe_model", lambda *a, **k: pytest.fail("trained before checking"))
    assert main(["probe", "mqar", "--output", str(tmp_path), "--steps", "1"]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    assert main(["probe", "mqar", "--output", str(tmp_path / "r.csv"), "--plot", str(tmp_path / "f.xyz")]) == 2
    assert "matplotlib cannot write .xyz" in capsys.readouterr().err


def test_long_contexts_are_scored_in_smaller_forwards_with_the_same_result(monkeypatch):
    """Scoring splits sequences into forwards whose attention maps fit (64 of 4112 tokens did not); the rows and the
    state-utility reads do not depend on the split."""
    import tsham.probes.runner as runner
    from tsham.probes.generators import cross_channel_binding
    from tsham.probes.state_utility import query_reads

    from tsham.model import TshamModel

    model = TshamModel(runner.probe_config("surprise", 0.2, patch_length=4, d_model=16, n_layers=1,
                                           context_length=runner.probe_context_length("mqar", "easy"))).eval()
    assert runner.scoring_rows(model, 4 * 1448) == 64 and runner.scoring_rows(model, 4 * 4112) == 7
    labels = {"policy": "surprise"}
    whole = runner.evaluate_probe(model, "mqar", "easy", 12, 3, labels)
    batch = cross_channel_binding(10, "easy", seed=2)
    reads = query_reads(model, batch, "example", "cpu")
    steps = runner.probe_context_length("mqar", "easy")
    monkeypatch.setattr(runner, "SCORING_CELLS", 3 * (steps // 4) ** 2)
    assert runner.scoring_rows(model, steps) == 3 and runner.scoring_rows(model, batch.context.shape[1]) < 10
    pd.testing.assert_frame_equal(runner.evaluate_probe(model, "mqar", "easy", 12, 3, labels), whole, atol=1e-5,
                                  rtol=1e-5)
    for split, one in zip(query_reads(model, batch, "example", "cpu"), reads, strict=True):
        np.testing.assert_allclose(split, one, atol=1e-5)
