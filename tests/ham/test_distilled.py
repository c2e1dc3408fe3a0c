"""The distilled router: its teacher (what the last tokens' attention reads) against a plain loop, and its fit."""

import pytest
import torch
from helpers import assert_close

from tsham.ham import HamConfig, HamLayer
from tsham.ham.routers import RouterInput, build_router
from tsham.ham.routers.distilled import read_attention


def loop_read_attention(q, k, queries, valid=None):
    """read_attention's twin: one query, one head at a time."""
    B, T, H, _ = q.shape
    out = torch.zeros(B, T)
    for b in range(B):
        for i in range(max(0, T - queries), T):
            seen = [t for t in range(i + 1) if valid is None or valid[b, t]]
            if not seen:
                continue
            for h in range(H):
                w = torch.softmax(torch.stack([q[b, i, h] @ k[b, t, h] for t in seen]), 0)
                for t, wt in zip(seen, w, strict=True):
                    out[b, t] = max(out[b, t], wt)
    return out


@pytest.mark.parametrize("T, queries", [(1, 4), (7, 3), (29, 4), (33, 40)])
def test_read_attention_matches_a_loop(T, queries):
    torch.manual_seed(T)
    q, k = torch.randn(2, T, 3, 5) * 2, torch.randn(2, T, 3, 5)
    valid = torch.rand(2, T) < 0.7
    valid[1] = False  # a stream with nothing to read reads nothing
    for v in (None, valid):
        assert_close("attention", loop_read_attention(q, k, queries, v), read_attention(q, k, queries, v), 1e-6)


def test_read_attention_is_a_weight_of_the_last_queries_only():
    q, k = torch.randn(1, 20, 2, 4), torch.randn(1, 20, 2, 4)
    a = read_attention(q, k, 1)
    assert a.min() >= 0 and a.max() <= 1
    q2 = q.clone()
    q2[:, :19] = torch.randn(1, 19, 2, 4)  # other queries than the last: nothing changes
    assert torch.equal(read_attention(q2, k, 1), a)


def make_layer(**kwargs):
    cfg = HamConfig(d_model=16, num_heads=2, head_dim=8, router="distilled", router_kwargs=kwargs)
    return HamLayer(cfg)


def test_the_layer_gives_the_teacher_only_while_training():
    layer = make_layer(threshold=0.5)
    x = torch.randn(2, 23, 16)
    layer.train()
    _, diag = layer(x)
    diag.aux_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.router.parameters())
    layer.eval()
    assert layer(x)[1].aux_loss is None


def test_the_fit_ranks_what_attention_reads_first():
    """Tokens whose key carries a marker get the teacher's attention; fitted, the router ranks them first."""
    torch.manual_seed(0)
    router = build_router("distilled", 16, 0, 2, hidden=8, queries=1)
    router.bind_layer(4, 4)  # keys and values of 2 heads x 4: 16 features
    optimizer = torch.optim.Adam(router.parameters(), lr=1e-2)

    def draw():
        x = torch.randn(8, 40, 16)
        marked = torch.rand(8, 40) < 0.1
        x[..., 0] += 6 * marked
        attention = marked.float() * torch.rand(8, 40)  # the reads land on marked tokens only
        key, value = x.view(8, 40, 2, 2, 4).unbind(2)  # (B, T, H, 4) each
        inp = RouterInput(x, x, torch.zeros_like(value), value, key=key, attention=attention)
        return inp, marked

    def top_precision():
        inp, marked = draw()
        with torch.no_grad():
            score = router.score(inp)
        top = score.flatten().topk(int(marked.sum())).indices
        return marked.flatten()[top].float().mean().item()

    before = top_precision()
    for _ in range(300):
        inp, _ = draw()
        loss = router.extras(inp, router.score(inp))["aux_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert top_precision() > max(0.9, before + 0.3), before


def test_bad_settings_and_inputs_are_named():
    with pytest.raises(ValueError, match="queries"):
        build_router("distilled", 16, 0, 2, queries=0)
    router = build_router("distilled", 16, 0, 2)
    x = torch.randn(1, 5, 16)
    with pytest.raises(ValueError, match="bind_layer"):
        router.score(RouterInput(x, x, torch.zeros(1, 5, 2, 8), torch.zeros(1, 5, 2, 8)))
    router.bind_layer(8, 8)
    with pytest.raises(ValueError, match="RouterInput.key is None"):
        router.score(RouterInput(x, x, torch.zeros(1, 5, 2, 8), torch.zeros(1, 5, 2, 8)))
