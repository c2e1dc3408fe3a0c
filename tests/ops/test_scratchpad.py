"""scratchpad_attn (compact torch path) against its dense naive twin, SDPA, and the decode op."""

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close

from tsham.ops import compact_routed, naive_scratchpad_attn, scratchpad_attn, scratchpad_decode

CASES = [  # (B, T, H, K, V, routed fraction, window, sinks)
    (1, 63, 2, 60, 60, 0.3, None, 0),
    (2, 100, 3, 16, 12, 0.1, None, 0),
    (2, 50, 2, 32, 32, 0.5, 7, 2),
    (1, 40, 1, 8, 8, 0.5, 3, 0),
    (2, 33, 2, 16, 16, 0.0, None, 0),  # empty cache
    (2, 33, 2, 16, 16, 1.0, None, 0),  # everything routed
    (1, 17, 2, 16, 16, "one", None, 0),  # one routed token
]


def routing(B, T, H, frac):
    if frac == "one":
        mask = torch.zeros(B, T, H, dtype=torch.bool)
        mask[:, T // 2] = True
        return mask
    return torch.rand(B, T, H) < frac


def qkv(B, T, H, K, V):
    return [torch.randn(B, T, H, d).requires_grad_() for d in (K, K, V)]


@pytest.mark.parametrize(("B", "T", "H", "K", "V", "frac", "window", "sinks"), CASES, ids=lambda x: str(x))
def test_compact_matches_naive_forward_backward(B, T, H, K, V, frac, window, sinks):
    q, k, v = qkv(B, T, H, K, V)
    indices, counts = compact_routed(routing(B, T, H, frac))
    do = torch.randn(B, T, H, V)
    grads = []
    for op in (naive_scratchpad_attn, scratchpad_attn):
        for t in (q, k, v):
            t.grad = None
        o = op(q, k, v, indices, counts, window=window, sinks=sinks)
        (o * do).sum().backward()
        grads.append((o, q.grad.clone(), k.grad.clone(), v.grad.clone()))
    for name, ref, out in zip(("o", "dq", "dk", "dv"), *grads, strict=True):
        if ref.abs().max() == 0:
            assert out.abs().max() == 0, f"{name}: expected zeros for an empty cache"
        else:
            assert_close(name, ref, out, 1e-5)


def test_all_routed_equals_sdpa_causal():
    B, T, H, K = 2, 70, 3, 24
    q, k, v = qkv(B, T, H, K, K)
    indices, counts = compact_routed(torch.ones(B, T, H, dtype=torch.bool))
    ref = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)), is_causal=True).transpose(1, 2)
    for op in (naive_scratchpad_attn, scratchpad_attn):
        assert_close(op.__name__, ref, op(q, k, v, indices, counts), 1e-5)


def test_routed_subset_equals_attention_over_that_subset():
    """Query t sees exactly the routed tokens <= t: compare with SDPA on an explicit boolean mask."""
    B, T, H, K = 1, 30, 2, 8
    q, k, v = qkv(B, T, H, K, K)
    mask = torch.rand(B, T, H) < 0.4
    mask[:, 0] = True  # every query sees at least token 0, so SDPA has no empty row
    allowed = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask.permute(0, 2, 1)[:, :, None, :]
    ref = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)), attn_mask=allowed).transpose(1, 2)
    assert_close("o", ref, scratchpad_attn(q, k, v, *compact_routed(mask)), 1e-5)


def test_compact_routed_layout():
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 1, 0]], dtype=torch.bool)[..., None]  # (B=2, T=5, H=1)
    indices, counts = compact_routed(mask)
    assert counts.tolist() == [[3], [1]]
    assert indices[0, :, 0].tolist() == [0, 2, 3]
    assert indices[1, :1, 0].tolist() == [3] and indices[1, 1:, 0].tolist() == [5, 5]
    indices, counts = compact_routed(mask, slots=2)
    assert counts.tolist() == [[2], [1]] and indices[0, :, 0].tolist() == [0, 2]


@pytest.mark.parametrize(("window", "sinks"), [(None, 0), (4, 1)])
def test_decode_equals_last_query_of_parallel(window, sinks):
    B, T, H, K = 3, 25, 2, 16
    q, k, v = (t.detach() for t in qkv(B, T, H, K, K))
    mask = torch.rand(B, T, H) < 0.5
    indices, counts = compact_routed(mask)
    ref = naive_scratchpad_attn(q, k, v, indices, counts, window=window, sinks=sinks)[:, -1]
    gather = indices.long().clamp(max=T - 1)[..., None].expand(-1, -1, -1, K)
    out = scratchpad_decode(q[:, -1], k.gather(1, gather), v.gather(1, gather), counts, window=window, sinks=sinks)
    assert_close("o", ref, out, 1e-5)


def test_bad_routing_raises_value_error():
    q, k, v = qkv(1, 10, 2, 4, 4)
    indices, counts = compact_routed(torch.rand(1, 10, 2) < 0.5)
    with pytest.raises(ValueError, match="indices must be"):
        scratchpad_attn(q, k, v, indices[..., :1], counts)
    with pytest.raises(ValueError, match="counts must have shape"):
        naive_scratchpad_attn(q, k, v, indices, counts[:, :1])
    with pytest.raises(ValueError, match="integer"):
        scratchpad_attn(q, k, v, indices.float(), counts)
    with pytest.raises(ValueError, match="bool"):
        compact_routed(torch.rand(1, 10, 2))
