"""gated_delta: chunked torch path and the CUDA dispatch against fla's recurrent reference.

GPU tests (marked ``gpu``): the fused-path dispatch test passed 2026-11-25 on an NVIDIA H100 80GB HBM3 (torch 2.11 +
cu130, triton 3.6, fla-core 0.6.0 + tilelang through ../shared/gpu); the fallback test, on 2026-12-02 on an NVIDIA
H200 with fla-core and without tilelang (``experiments/gpu_lite_site.sh fla``), where the fused-path one skips.
"""

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close

from tsham.ops import chunk_gated_delta, gated_delta, naive_gated_delta

CASES = [  # (B, T, H, K, V, chunk)
    (1, 63, 2, 60, 60, 16),
    (2, 100, 3, 16, 12, 64),
    (2, 64, 1, 32, 100, 32),
    (1, 1, 2, 8, 8, 64),
]


def make_inputs(B, T, H, K, V, device="cpu", requires_grad=True):
    q = F.normalize(torch.randn(B, T, H, K, device=device), dim=-1)
    k = F.normalize(torch.randn(B, T, H, K, device=device), dim=-1)
    v = torch.randn(B, T, H, V, device=device)
    g = F.logsigmoid(torch.randn(B, T, H, device=device) + 2)  # decays in (0, 1), mostly near 1
    beta = torch.rand(B, T, H, device=device)
    h0 = torch.randn(B, H, K, V, device=device)
    return [t.requires_grad_(requires_grad) for t in (q, k, v, g, beta, h0)]


@pytest.mark.parametrize(("B", "T", "H", "K", "V", "chunk"), CASES, ids=lambda x: str(x))
def test_chunk_matches_fla_reference_forward_backward(B, T, H, K, V, chunk):
    from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule

    inputs = make_inputs(B, T, H, K, V)
    do, dht = torch.randn(B, T, H, V), torch.randn(B, H, K, V)

    ref_o, ref_ht = naive_recurrent_gated_delta_rule(
        *inputs[:3], beta=inputs[4], g=inputs[3], initial_state=inputs[5], output_final_state=True
    )
    ((ref_o * do).sum() + (ref_ht * dht).sum()).backward()
    ref_grads = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None

    o, ht, _ = chunk_gated_delta(*inputs[:5], initial_state=inputs[5], output_final_state=True, chunk_size=chunk)
    ((o * do).sum() + (ht * dht).sum()).backward()
    assert_close("o", ref_o, o, 1e-5)
    assert_close("ht", ref_ht, ht, 1e-5)
    for name, ref, t in zip(("dq", "dk", "dv", "dg", "dbeta", "dh0"), ref_grads, inputs, strict=True):
        assert_close(name, ref, t.grad, 1e-4)


@pytest.mark.parametrize(("B", "T", "H", "K", "V", "chunk"), CASES, ids=lambda x: str(x))
def test_error_equals_step_by_step(B, T, H, K, V, chunk):
    inputs = make_inputs(B, T, H, K, V, requires_grad=False)
    q, k, v, g, beta, h0 = inputs
    _, _, e = chunk_gated_delta(q, k, v, g, beta, initial_state=h0, chunk_size=chunk)
    # the definition, written out once more: e_t = v_t - (a_t S_{t-1})^T k_t
    S, expected = h0.clone(), []
    for t in range(T):
        S = S * g[:, t].exp()[..., None, None]
        e_t = v[:, t] - torch.einsum("bhkv,bhk->bhv", S, k[:, t])
        S = S + beta[:, t, :, None, None] * torch.einsum("bhk,bhv->bhkv", k[:, t], e_t)
        expected.append(e_t)
    assert_close("e", torch.stack(expected, 1), e, 1e-5)
    assert_close("e naive", torch.stack(expected, 1), naive_gated_delta(q, k, v, g, beta, initial_state=h0)[2], 1e-6)


def test_bad_shapes_raise_value_error():
    q, k, v, g, beta, h0 = make_inputs(1, 8, 2, 4, 4, requires_grad=False)
    with pytest.raises(ValueError, match="q, k, v must be"):
        chunk_gated_delta(q[0], k, v, g, beta)
    with pytest.raises(ValueError, match="beta must have shape"):
        chunk_gated_delta(q, k, v, g, beta[:, :5])
    with pytest.raises(ValueError, match="initial_state must have shape"):
        gated_delta(q, k, v, g, beta, initial_state=h0[..., :3])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_dispatch_matches_torch_chunks(dtype):
    from tsham.ops.gated_delta.fla_path import fla_backward_blocked

    if (reason := fla_backward_blocked(torch.cuda.current_device())) is not None:
        pytest.skip(f"the dispatch would train on the torch chunks here: {reason}")
    B, T, H, K, V = 2, 300, 4, 64, 64
    inputs = make_inputs(B, T, H, K, V, device="cuda")
    do = torch.randn(B, T, H, V, device="cuda")
    o_ref, ht_ref, e_ref = chunk_gated_delta(*inputs[:5], initial_state=inputs[5], output_final_state=True)
    (o_ref * do).sum().backward()
    ref_grads = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    cast = [t.detach().to(dtype).requires_grad_() for t in inputs[:3]] + [t.detach().clone().requires_grad_()
                                                                            for t in inputs[3:]]
    o, ht, e = gated_delta(*cast[:5], initial_state=cast[5], output_final_state=True)
    (o * do).sum().backward()
    tol = 5e-3 if dtype == torch.float32 else 2e-2
    assert_close("o", o_ref, o, tol)
    assert_close("ht", ht_ref, ht, tol)
    assert_close("e", e_ref, e, tol)
    for name, ref, t in zip(("dq", "dk", "dv", "dg", "dbeta", "dh0"), ref_grads, cast, strict=True):
        assert_close(name, ref, t.grad.float(), 4 * tol)


@pytest.mark.gpu
def test_cuda_dispatch_trains_on_torch_chunks_and_infers_with_fla_where_fla_backward_is_blocked(monkeypatch):
    """The other half of the dispatch test above: on a GPU where fla refuses its backward (an H100 / H200 without
    tilelang), forwards that will be trained through take the torch chunks with one warning in all, and their
    backward runs; a forward without gradients still takes fla's kernel and agrees with the torch chunks."""
    import warnings

    from tsham.ops.gated_delta import chunk as chunk_module
    from tsham.ops.gated_delta import fla_path

    pytest.importorskip("fla")
    if fla_path.fla_backward_blocked(torch.cuda.current_device()) is None:
        pytest.skip("fla's backward runs on this GPU: test_cuda_dispatch_matches_torch_chunks covers it")
    monkeypatch.delenv("TSHAM_BACKEND", raising=False)  # the dispatch under test, not the forced torch path
    fla_calls = []
    real = fla_path.fla_gated_delta
    monkeypatch.setattr(fla_path, "fla_gated_delta", lambda *a, **kw: fla_calls.append(1) or real(*a, **kw))
    B, T, H, K, V = 2, 300, 4, 64, 64
    inputs = make_inputs(B, T, H, K, V, device="cuda")
    chunk_module._warn_torch_fallback.cache_clear()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        o, ht, e = gated_delta(*inputs[:5], initial_state=inputs[5], output_final_state=True)
        gated_delta(*inputs[:5], initial_state=inputs[5], output_final_state=True)  # a second step: no new warning
    fallbacks = [w for w in seen if "training on the torch chunk path" in str(w.message)]
    assert len(fallbacks) == 1 and not fla_calls
    o_ref, ht_ref, e_ref = chunk_gated_delta(*inputs[:5], initial_state=inputs[5], output_final_state=True)
    assert torch.equal(o, o_ref) and torch.equal(ht, ht_ref)  # the same path, bit for bit
    o.square().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in inputs)
    with torch.no_grad():
        o_fla, ht_fla, e_fla = gated_delta(*inputs[:5], initial_state=inputs[5], output_final_state=True)
    assert len(fla_calls) == 1  # inference took fla's kernel
    assert_close("o", o_ref, o_fla, 5e-3)
    assert_close("ht", ht_ref, ht_fla, 5e-3)
    assert_close("e", e_ref, e_fla, 5e-3)


def test_fla_backward_is_blocked_only_on_hopper_with_the_triton_fla_refuses_and_no_tilelang(monkeypatch):
    import importlib.util

    import triton

    from tsham.ops.gated_delta import fla_path

    def blocked(capability, version, tilelang):
        fla_path.fla_backward_blocked.cache_clear()
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: capability)
        monkeypatch.setattr(triton, "__version__", version)
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "tilelang" and tilelang
                            else (None if name == "tilelang" else real(name)))
        return fla_path.fla_backward_blocked(0)

    try:
        assert "pip install tilelang" in blocked((9, 0), "3.6.0", tilelang=False)  # H100 / H200, tsham's pin
        assert blocked((9, 0), "3.6.0", tilelang=True) is None  # tilelang takes the backward over
        assert blocked((9, 0), "3.7.1", tilelang=False) is None  # fixed in Triton
        assert blocked((9, 0), "3.3.1", tilelang=False) is None  # before the bug
        assert blocked((8, 0), "3.6.0", tilelang=False) is None  # A100: not Hopper
    finally:
        fla_path.fla_backward_blocked.cache_clear()


def test_a_trained_forward_takes_the_torch_chunks_where_flas_backward_refuses(monkeypatch):
    """The dispatch, with CUDA faked: inference keeps fla's kernels, training falls back (with one warning) instead
    of crashing in backward."""
    from tsham.ops.gated_delta import chunk as chunk_module
    from tsham.ops.gated_delta import fla_path

    calls = []
    monkeypatch.setattr(chunk_module, "use_fused", lambda tensor: True)
    monkeypatch.setattr(fla_path, "fla_gated_delta", lambda *args: calls.append("fla") or "fla output")
    monkeypatch.setattr(fla_path, "fla_backward_blocked", lambda index: "fla refuses here")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    chunk_module._warn_torch_fallback.cache_clear()
    inputs = make_inputs(1, 20, 2, 8, 8)
    with torch.no_grad():
        assert gated_delta(*inputs[:5], initial_state=inputs[5]) == "fla output"  # inference: fused
    with pytest.warns(UserWarning, match="torch chunk path: fla refuses here"):
        o, _, e = gated_delta(*inputs[:5], initial_state=inputs[5])  # training: the torch chunks
    ref = chunk_gated_delta(*inputs[:5], initial_state=inputs[5])
    assert calls == ["fla"] and o.requires_grad
    assert_close("o", ref[0], o, 1e-6)
    monkeypatch.setattr(fla_path, "fla_backward_blocked", lambda index: None)
    assert gated_delta(*inputs[:5], initial_state=inputs[5]) == "fla output"  # where it can: fused for training too
    chunk_module._warn_torch_fallback.cache_clear()
