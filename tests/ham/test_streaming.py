"""Step-by-step streaming equals the parallel forward (fp32, 1e-5) for every router, layer and stack."""

import pytest
import torch

from tsham.ham import ROUTERS, HamConfig, HamLayer, HamStack

ROUTER_KWARGS = {
    "surprise": {"threshold": 0.8},
    "uncertainty": {"threshold": 0.3},
    "event": {},
    "learned": {"threshold": 0.5},
    "distilled": {"threshold": 0.5},
    "composite": {"routers": [{"name": "surprise", "threshold": 0.9}, {"name": "event"}]},
    "random": {"fraction": 0.3},
    "recency": {"window": 6, "sinks": 2},
    "all": {},
    "none": {},
    "oracle": {},
}
B, T, D = 2, 37, 32


def test_every_router_is_covered():
    assert set(ROUTER_KWARGS) == set(ROUTERS)


def inputs():
    x = torch.randn(B, T, D)
    flags = (torch.rand(B, T, 2) < 0.15).float()
    oracle = torch.rand(B, T) < 0.25
    return x, flags, oracle


def build(cls, router, **extra):
    cfg = HamConfig(d_model=D, num_heads=2, head_dim=8, router=router, router_kwargs={**ROUTER_KWARGS[router], **extra})
    model = cls(cfg).eval()
    with torch.no_grad():  # spread the router scores, as training would
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def max_error(a, b):
    return (a - b).abs().max().item() / a.abs().max().item()


@pytest.mark.parametrize("router", sorted(ROUTERS))
@pytest.mark.parametrize("cls", [HamLayer, HamStack])
def test_step_equals_parallel(cls, router):
    model = build(cls, router)
    x, flags, oracle = inputs()
    y, *_ = model(x, flags, oracle)
    state = model.init_state(B) if cls is HamStack else model.init_state(B)
    steps = [model.step(x[:, t], state, flags[:, t], oracle[:, t])[0] for t in range(T)]
    assert max_error(y, torch.stack(steps, 1)) < 1e-5


@pytest.mark.parametrize("router", ["surprise", "all", "recency", "random"])
def test_prefill_then_step_equals_parallel(router):
    """A parallel forward hands its state to step(): the stream continues exactly."""
    model = build(HamStack, router)
    x, flags, oracle = inputs()
    y, _ = model(x, flags, oracle)
    _, _, states = model(x[:, :20], flags[:, :20], oracle[:, :20], return_state=True)
    steps = [model.step(x[:, t], states, flags[:, t], oracle[:, t])[0] for t in range(20, T)]
    assert max_error(y[:, 20:], torch.stack(steps, 1)) < 1e-5


@pytest.mark.parametrize(("cap", "sinks"), [(3, 0), (4, 2)])
def test_capped_cache_is_bounded_and_exact(cap, sinks):
    model = build(HamStack, "all", cap=cap, sinks=sinks)
    x, flags, oracle = inputs()
    y, _ = model(x)
    states = model.init_state(B)
    steps = [model.step(x[:, t], states)[0] for t in range(T)]
    assert max_error(y, torch.stack(steps, 1)) < 1e-5
    for state in states:
        assert state.cache()[0].shape[1] == cap + sinks  # memory bounded by the cap, not by T
        assert state.counts.max().item() == T  # while every token was routed


def test_state_counts_match_parallel_routing():
    model = build(HamLayer, "surprise")
    x, _, _ = inputs()
    _, diag, state = model(x, return_state=True)
    assert torch.equal(state.counts, diag.mask.sum(1))


def assert_streams_exactly(model, x, flags, oracle) -> torch.Tensor:
    """Stepping from the start, and a prefill of 20 tokens then stepping, both equal the parallel forward (returned)."""
    y, _ = model(x, flags, oracle)
    state = model.init_state(B)
    steps = [model.step(x[:, t], state, flags[:, t], oracle[:, t])[0] for t in range(T)]
    assert max_error(y, torch.stack(steps, 1)) < 1e-5
    _, _, states = model(x[:, :20], flags[:, :20], oracle[:, :20], return_state=True)
    steps = [model.step(x[:, t], states, flags[:, t], oracle[:, t])[0] for t in range(20, T)]
    assert max_error(y[:, 20:], torch.stack(steps, 1)) < 1e-5
    return y


@pytest.mark.parametrize("router", ["surprise", "all", "recency"])
def test_rotary_positions_stream_exactly(router):
    """With rotary positions the cache holds rotated keys: step, and prefill then step, equal the forward."""
    model = build(HamStack, router)
    for block in model.blocks:
        block.mixer.config.kv_rope_base = 100.0
    x, flags, oracle = inputs()
    y = assert_streams_exactly(model, x, flags, oracle)
    for block in model.blocks:
        block.mixer.config.kv_rope_base = 0.0
    assert max_error(y, model(x, flags, oracle)[0]) > 1e-3  # the positions did change the forward


@pytest.mark.parametrize("cls", [HamLayer, HamStack])
def test_surprise_warmup_streams_like_parallel(cls):
    """The warm-up counts stream positions: a stream stepped token by token skips the same first tokens."""
    model = build(cls, "surprise", threshold=0.0, warmup=5)
    x, flags, oracle = inputs()
    y, *_ = model(x, flags, oracle)
    state = model.init_state(B)
    steps = [model.step(x[:, t], state, flags[:, t], oracle[:, t])[0] for t in range(T)]
    assert max_error(y, torch.stack(steps, 1)) < 1e-5


@pytest.mark.parametrize("seed", range(6))
def test_stepping_the_batch_a_target_was_set_on_equals_the_parallel_pass(seed):
    """A training forward sets the threshold from these very scores; halfway between two of them, the stepped
    scores (equal within float rounding) route the same tokens. At the m-th score itself, 4 of these 6 seeds
    flipped a token's routing and differed from then on."""
    torch.manual_seed(seed)
    stack = HamStack(HamConfig(d_model=32, n_layers=2, num_heads=2, head_dim=16, router="surprise",
                               router_kwargs={"target": 0.1}))
    x = torch.randn(4, 128, 32)
    stack(x)  # training mode: the target sets each threshold on x
    stack.eval()
    with torch.no_grad():
        parallel, _ = stack(x)
        states, stepped = stack.init_state(batch_size=4), []
        for t in range(x.shape[1]):
            y_t, states, _ = stack.step(x[:, t], states)
            stepped.append(y_t)
    torch.testing.assert_close(torch.stack(stepped, 1), parallel, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("router", ["surprise", "all", "recency"])
def test_own_scratchpad_queries_and_keys_stream_exactly(router):
    """HamConfig.kv_own_qk: the scratchpad projects its own q, k from the layer input; streams stay exact and
    gradients reach the new projection."""
    torch.manual_seed(0)
    cfg = HamConfig(d_model=D, num_heads=2, head_dim=8, router=router, router_kwargs=ROUTER_KWARGS[router],
                    kv_own_qk=True, n_layers=2)
    model = HamStack(cfg).eval()
    x, flags, oracle = inputs()
    assert_streams_exactly(model, x, flags, oracle)
    model.train()
    model(x, flags, oracle)[0].square().mean().backward()
    layer = model.blocks[0].mixer
    assert layer.kv_qk_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pass x"):
        q = torch.nn.functional.normalize(torch.randn(B, T, 2, 8), dim=-1)
        layer.kv_read_inputs(q, q)


@pytest.mark.parametrize("router", ["surprise", "random", "none"])
def test_a_guided_router_routes_the_needles_on_top_of_its_own_and_streams_exactly(router):
    """``Router.guided`` (a guided curriculum's first stage): the layer routes the router's tokens and the given
    needles, in the forward and in step(); without needles it says what is missing."""
    torch.manual_seed(0)
    model = build(HamLayer, router, **({"threshold": 1.5} if router == "surprise" else {}))  # leaves needles out
    x, flags, oracle = inputs()
    _, own = model(x, flags, oracle)
    assert own.realised < 0.7
    model.router.guided = True
    _, guided = model(x, flags, oracle)
    assert torch.equal(guided.mask, own.mask | oracle[..., None])
    assert not torch.equal(guided.mask, own.mask)  # the needles were not all routed already
    assert_streams_exactly(model, x, flags, oracle)
    with pytest.raises(ValueError, match="guided router routes the needles.*oracle_mask"):
        model(x, flags)
