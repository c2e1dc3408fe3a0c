"""HAM layer invariants: minimal twin, tau = 0 / inf limits, monotone budget, controller, learned gradient."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close

from tsham.ham import HamConfig, HamLayer, HamStack
from tsham.ham.minimal import ham_minimal
from tsham.ops import naive_gated_delta


def make_layer(router="surprise", d_model=32, num_heads=2, head_dim=8, expand_v=2, **router_kwargs):
    cfg = HamConfig(d_model=d_model, num_heads=num_heads, head_dim=head_dim, expand_v=expand_v, router=router,
                    router_kwargs=router_kwargs)
    layer = HamLayer(cfg)
    with torch.no_grad():  # the merge gates start at 1/2 each; randomise them so both reads matter differently
        layer.merge_proj.weight.normal_(std=0.3)
        layer.merge_proj.bias.normal_()
        layer.kv_log_scale.normal_(1.0, 0.3)
    return layer.eval()


@pytest.mark.parametrize("tau", [0.0, 0.6, 0.9, math.inf])
def test_layer_equals_minimal(tau):
    layer = make_layer(threshold=tau)
    x = torch.randn(2, 45, 32)
    y, diag = layer(x)
    y_min, mask, _ = ham_minimal(layer, x, tau=tau)
    assert torch.equal(diag.mask[..., 0], mask)
    assert_close("y", y_min, y, 1e-5)


def test_layer_equals_minimal_with_given_mask():
    layer = make_layer("oracle")
    x = torch.randn(2, 31, 32)
    mask = torch.rand(2, 31) < 0.3
    y, _ = layer(x, oracle_mask=mask)
    assert_close("y", ham_minimal(layer, x, mask=mask)[0], y, 1e-5)


@pytest.mark.parametrize("rope", [0.0, 100.0])
def test_layer_equals_minimal_with_own_scratchpad_queries_and_keys(rope):
    cfg = HamConfig(d_model=32, num_heads=2, head_dim=8, expand_v=2, router="oracle", kv_own_qk=True,
                    kv_rope_base=rope)
    layer = HamLayer(cfg).eval()
    with torch.no_grad():
        layer.merge_proj.bias.fill_(-3.0)
        layer.merge_proj.bias[2:].fill_(3.0)  # the scratchpad's read dominates, so its q, k are what is compared
    x = torch.randn(2, 29, 32)
    mask = torch.rand(2, 29) < 0.4
    y, _ = layer(x, oracle_mask=mask)
    assert_close("y", ham_minimal(layer, x, mask=mask)[0], y, 1e-5)
    with torch.no_grad():
        layer.kv_qk_proj.weight.add_(torch.randn_like(layer.kv_qk_proj.weight))
    assert (layer(x, oracle_mask=mask)[0] - y).abs().max() > 1e-3  # the projection does drive the read


def reference_parts(layer, x):
    """GDN output (naive recurrence) and the layer's q, k, v, computed outside the layer's forward."""
    q, k, v, g, beta, _ = layer.project(x)
    o_gdn, _, _ = naive_gated_delta(q, k, v, g, beta)
    return q, k, v, o_gdn


def test_threshold_zero_equals_gdn_plus_full_causal_attention():
    layer = make_layer(threshold=0.0)
    x = torch.randn(2, 40, 32)
    y, diag = layer(x)
    assert diag.mask.all()
    q, k, v, o_gdn = reference_parts(layer, x)
    o_attn = F.scaled_dot_product_attention(
        *(t.transpose(1, 2) for t in (layer.kv_query(q), k, v.float())), is_causal=True, scale=1.0
    ).transpose(1, 2)
    assert_close("y", layer.merge(x, o_gdn, o_attn), y, 1e-5)


def test_threshold_inf_equals_pure_gdn():
    layer = make_layer(threshold=math.inf)
    x = torch.randn(2, 40, 32)
    y, diag = layer(x)
    assert not diag.mask.any()
    _, _, _, o_gdn = reference_parts(layer, x)
    assert_close("y", layer.merge(x, o_gdn, torch.zeros_like(o_gdn)), y, 1e-5)
    none = make_layer("none")
    none.load_state_dict(layer.state_dict())
    assert_close("y vs router none", none(x)[0], y, 1e-6)


@pytest.mark.parametrize("router", ["surprise", "uncertainty", "learned", "random"])
def test_realised_fraction_non_increasing_in_threshold(router):
    layer = make_layer(router)
    with torch.no_grad():  # as if trained: router weights that spread the scores
        for p in layer.router.parameters():
            p.normal_(std=0.5)
    x = torch.randn(4, 64, 32)
    scores = layer(x)[1].scores.flatten()
    fractions = []
    for tau in [0.0, *torch.quantile(scores, torch.linspace(0.05, 0.95, 10)).tolist(), math.inf]:
        layer.router.tau.fill_(tau)
        fractions.append(layer(x)[1].realised.item())
    assert all(a >= b for a, b in zip(fractions, fractions[1:], strict=False)), fractions
    assert fractions[0] == 1.0 and fractions[-1] == 0.0
    assert len(set(fractions)) > 3, f"the threshold barely moved the budget: {fractions}"


def synthetic_stream(batch, T, generator):
    """Random walks with rare level shifts: a stream where surprise is uneven over time."""
    steps = torch.randn(batch, T, 1, generator=generator) * 0.1
    shifts = (torch.rand(batch, T, 1, generator=generator) < 0.03) * torch.randn(batch, T, 1, generator=generator) * 3
    series = (steps + shifts).cumsum(1)
    return torch.cat([series, series.diff(dim=1, prepend=series[:, :1])], -1)  # (B, T, 2)


@pytest.mark.parametrize("target", [0.05, 0.1, 0.25])
def test_controller_reaches_target_fraction(target):
    torch.manual_seed(1)
    layer = make_layer(target=target)
    embed = torch.nn.Linear(2, 32)
    gen = torch.Generator().manual_seed(0)
    layer.train()
    with torch.no_grad():
        for _ in range(150):
            layer(embed(synthetic_stream(8, 128, gen)))
        layer.eval()
        realised = torch.stack([layer(embed(synthetic_stream(8, 128, gen)))[1].realised for _ in range(10)]).mean()
    assert abs(realised.item() - target) <= 0.02, f"realised {realised.item():.3f} for target {target}"


def test_learned_router_trained_by_task_loss_alone():
    layer = make_layer("learned", threshold=0.5)
    layer.train()
    x = torch.randn(2, 50, 32)
    y, diag = layer(x)
    assert diag.mask.any() and diag.aux_loss is None
    y.pow(2).mean().backward()
    grads = [p.grad for p in layer.router.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_a_guided_learned_router_is_trained_by_its_own_tokens_only():
    """While guided, the needles the guide adds teach the read, not the router's score: a router that routes nothing
    gets no gradient from them (the straight-through value scale is detached there), one that routes gets some."""
    x, needles = torch.randn(2, 50, 32), torch.rand(2, 50) < 0.3
    for threshold, learns in ((2.0, False), (0.5, True)):  # sigmoid scores lie below 2: nothing of its own
        layer = make_layer("learned", threshold=threshold)
        layer.router.guided = True
        y, diag = layer(x, oracle_mask=needles)
        assert diag.mask[..., 0].equal(needles | diag.mask[..., 0]) and diag.mask.any()
        y.pow(2).mean().backward()
        grad = sum(p.grad.abs().sum() for p in layer.router.parameters() if p.grad is not None)
        assert (grad > 0) == learns


def test_learned_router_does_not_change_the_forward():
    """The straight-through value scale is exactly 1: same output as routing that mask through the oracle."""
    layer = make_layer("learned", threshold=0.5)
    x = torch.randn(2, 30, 32)
    y, diag = layer(x)
    oracle = make_layer("oracle")
    oracle.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("router.mlp")},
                           strict=False)
    assert_close("y", oracle(x, oracle_mask=diag.mask[..., 0])[0], y, 1e-6)


def test_uncertainty_router_learns_from_its_aux_loss():
    layer = make_layer("uncertainty")
    layer.train()
    _, diag = layer(torch.randn(2, 30, 32))
    diag.aux_loss.backward()
    assert layer.router.log_var.weight.grad.abs().sum() > 0


def test_per_layer_targets():
    cfg = HamConfig(d_model=16, n_layers=3, num_heads=2, head_dim=8, router_kwargs={"target": [0.05, 0.1, 0.2]})
    stack = HamStack(cfg)
    assert [b.mixer.router.target for b in stack.blocks] == [0.05, 0.1, 0.2]
    with pytest.raises(ValueError, match="per-layer target needs 3"):
        HamConfig(n_layers=3, router_kwargs={"target": [0.1, 0.2]})


@pytest.mark.gpu
@pytest.mark.parametrize("router", ["random", "all", "surprise"])
def test_layer_on_cuda_matches_cpu(router):
    """The CUDA path (fla-core GDN kernel) against the CPU torch path, fp32, forward and backward."""
    cpu = make_layer(router, threshold=0.7) if router == "surprise" else make_layer(router)
    gpu = make_layer(router).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(2, 200, 32, requires_grad=True)
    x_gpu = x.detach().cuda().requires_grad_()
    y, diag = cpu(x)
    y_gpu, diag_gpu = gpu(x_gpu)
    agreement = (diag.mask == diag_gpu.mask.cpu()).float().mean().item()
    assert agreement > 0.98, f"routing masks agree on only {agreement:.3f} of tokens"
    if router != "surprise":  # a mask that flips at the threshold changes y; compare outputs where routing is fixed
        assert_close("y", y, y_gpu.cpu(), 5e-3)
        y.pow(2).sum().backward()
        y_gpu.pow(2).sum().backward()
        assert_close("dx", x.grad, x_gpu.grad.cpu(), 1e-2)


def test_first_controlled_forward_starts_at_the_target():
    """With a target, the first training batch calibrates tau to its own quantile: no warm-up from `threshold`."""
    layer = make_layer(target=0.1, threshold=123.0).train()
    _, diag = layer(torch.randn(4, 64, 32))
    assert abs(diag.realised.item() - 0.1) < 0.01


def test_layer_with_rotary_positions_equals_minimal():
    layer = make_layer(threshold=0.6)
    layer.config.kv_rope_base = 50.0
    x = torch.randn(2, 45, 32)
    y, diag = layer(x)
    y_min, mask, _ = ham_minimal(layer, x, tau=0.6)
    assert torch.equal(diag.mask[..., 0], mask)
    assert_close("y", y_min, y, 1e-5)


def test_rotary_scores_depend_on_content_and_offset_only():
    from tsham.ham.layer import rotary

    q, k = F.normalize(torch.randn(1, 1, 2, 8), dim=-1), F.normalize(torch.randn(1, 1, 2, 8), dim=-1)
    score = lambda i, j: (rotary(torch.tensor([i]), 10.0, q)[0] * rotary(torch.tensor([j]), 10.0, k)[0]).sum(-1)  # noqa: E731
    assert_close("shifted", score(7, 3), score(104, 100), 1e-5)
    assert not torch.allclose(score(7, 3), score(7, 5))
    assert_close("norm", rotary(torch.tensor([13]), 10.0, q)[0].norm(dim=-1), q.norm(dim=-1), 1e-6)
    with pytest.raises(ValueError, match="kv_rope_base"):
        HamConfig(head_dim=7, kv_rope_base=10.0)
    with pytest.raises(ValueError, match="kv_rope_base"):
        HamConfig(kv_rope_base=-1.0)


def test_surprise_warmup_skips_the_first_tokens():
    """Tokens before ``warmup`` (stream positions, offset included) are never routed at a threshold every ratio
    passes; while training to a budget larger than the tokens after the warm-up, tau stays finite."""
    from tsham.ham.routers import RouterInput, build_router

    B, T, H, V = 3, 12, 2, 4
    error, value = torch.randn(B, T, H, V), torch.randn(B, T, H, V)
    router = build_router("surprise", 8, 0, H, threshold=0.0, warmup=5)
    mask = router(RouterInput(torch.zeros(B, T, 8), torch.zeros(B, T, 8), error, value)).mask
    assert not mask[:, :5].any() and mask[:, 5:].all()
    later = router(RouterInput(torch.zeros(B, T, 8), torch.zeros(B, T, 8), error, value, offset=3)).mask
    assert not later[:, :2].any() and later[:, 2:].all()
    controlled = build_router("surprise", 8, 0, H, target=0.9, warmup=5).train()
    for _ in range(3):
        controlled(RouterInput(torch.zeros(B, T, 8), torch.zeros(B, T, 8), error, value))
    assert torch.isfinite(controlled.tau)
