"""Triton scratchpad kernels against the naive twin: on the CPU through TRITON_INTERPRET=1 (fp32, small
shapes), and on CUDA (marked ``gpu``: fp32 and bf16 at realistic sizes, reference in fp32).

Cases cover odd T and D, an empty cache, everything routed, one routed token, ragged batches (counts differ
per stream and head), windows with sinks, and the index tensor both exactly as wide as the largest count
and T wide (the no-sync layout).
"""

import pytest
import torch
from helpers import assert_close

from tsham.ops import compact_routed, naive_scratchpad_attn
from tsham.ops.scratchpad import parallel_scratchpad_attn, parallel_scratchpad_decode, torch_scratchpad_decode

CPU_CASES = [  # (B, T, H, K, V, routing, window, sinks, full-width indices)
    (1, 63, 2, 60, 60, 0.3, None, 0, True),
    (2, 100, 3, 16, 12, 0.1, None, 0, False),
    (2, 150, 2, 32, 32, 0.5, 7, 2, True),
    (1, 40, 1, 8, 8, 0.0, None, 0, True),  # empty cache, T-wide index tensor
    (2, 40, 2, 8, 8, 0.0, None, 0, False),  # empty cache, zero-width index tensor
    (1, 130, 1, 16, 16, 1.0, None, 0, False),  # everything routed
    (1, 130, 1, 16, 16, 1.0, 70, 3, True),  # full routing with a window: sliding-window attention
    (2, 17, 2, 16, 16, "one", None, 0, True),  # one routed token
    (3, 90, 2, 16, 16, "ragged", None, 0, False),  # very different counts per stream and head
]


def routing(B, T, H, kind, device="cpu"):
    if kind == "one":
        mask = torch.zeros(B, T, H, dtype=torch.bool, device=device)
        mask[:, T // 3] = True
        return mask
    if kind == "ragged":
        rates = torch.linspace(0.0, 1.0, B * H, device=device).view(B, 1, H)
        return torch.rand(B, T, H, device=device) < rates
    return torch.rand(B, T, H, device=device) < kind


def check_against_naive(B, T, H, K, V, kind, window, sinks, full, dtype, device, ratios):
    q, k, v = (torch.randn(B, T, H, d, device=device) for d in (K, K, V))
    do = torch.randn(B, T, H, V, device=device)
    indices, counts = compact_routed(routing(B, T, H, kind, device), slots=T if full else None)
    q32, k32, v32 = (t.clone().requires_grad_() for t in (q, k, v))
    ref = naive_scratchpad_attn(q32, k32, v32, indices, counts, window=window, sinks=sinks)
    (ref * do).sum().backward()
    q_, k_, v_ = (t.to(dtype).requires_grad_() for t in (q, k, v))
    out = parallel_scratchpad_attn(q_, k_, v_, indices, counts, window=window, sinks=sinks)
    (out.float() * do).sum().backward()
    pairs = (("o", ref, out), ("dq", q32.grad, q_.grad), ("dk", k32.grad, k_.grad), ("dv", v32.grad, v_.grad))
    for name, r, o in pairs:
        if r.abs().max() == 0:
            # Nothing visible, or a softmax over a single key (dq = dk = 0 exactly in fp32 maths): zero up to the
            # rounding of dp - delta, which TF32 / bf16 matmuls leave at ~1e-2 of the unit-scale inputs.
            atol = 10 * ratios["o"]
            assert o.abs().max() <= atol, f"{name}: expected zeros, got max {o.abs().max().item():.2e}"
        else:
            assert_close(name, r, o.float(), ratios[name])


@pytest.mark.parametrize(("B", "T", "H", "K", "V", "kind", "window", "sinks", "full"), CPU_CASES,
                         ids=lambda x: str(x))
def test_interpreter_matches_naive(B, T, H, K, V, kind, window, sinks, full):
    if torch.cuda.is_available():
        pytest.skip("the CPU interpreter case; CUDA runs the gpu-marked tests")
    check_against_naive(B, T, H, K, V, kind, window, sinks, full, torch.float32, "cpu",
                        {"o": 1e-5, "dq": 1e-5, "dk": 1e-5, "dv": 1e-5})


@pytest.mark.parametrize(("B", "S", "H", "K", "window", "sinks"), [(3, 100, 2, 16, None, 0), (2, 700, 1, 60, None, 0),
                                                                     (2, 300, 2, 32, 20, 3), (1, 5, 1, 8, None, 0)])
def test_decode_interpreter_matches_torch(B, S, H, K, window, sinks):
    if torch.cuda.is_available():
        pytest.skip("the CPU interpreter case")
    q, k_cache, v_cache = torch.randn(B, H, K), torch.randn(B, S, H, K), torch.randn(B, S, H, K)
    counts = torch.randint(0, S + 1, (B, H))
    counts[0, 0] = 0  # one empty cache
    ref = torch_scratchpad_decode(q, k_cache, v_cache, counts, window=window, sinks=sinks)
    assert_close("o", ref, parallel_scratchpad_decode(q, k_cache, v_cache, counts, window=window, sinks=sinks), 1e-5)
    assert parallel_scratchpad_decode(q, k_cache, v_cache, counts)[0, 0].abs().max() == 0


GPU_CASES = [  # (B, T, H, D, routing, window, sinks, full-width indices)
    (4, 2048, 8, 64, 0.125, None, 0, True),
    (2, 4096, 8, 128, 0.25, None, 0, True),
    (2, 1000, 4, 100, 0.5, None, 0, False),
    (1, 4097, 8, 128, 1.0, None, 0, True),
    (2, 3001, 4, 60, "ragged", 256, 8, True),
    (2, 513, 4, 32, 0.0, None, 0, True),
    (2, 777, 4, 64, "one", None, 0, True),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize(("B", "T", "H", "D", "kind", "window", "sinks", "full"), GPU_CASES, ids=lambda x: str(x))
def test_cuda_matches_naive(B, T, H, D, kind, window, sinks, full, dtype):
    # fp32 matmuls run as TF32 in the kernels; bf16 rounds inputs and probabilities.
    ratio = 5e-3 if dtype == torch.float32 else 2e-2
    check_against_naive(B, T, H, D, D, kind, window, sinks, full, dtype, "cuda",
                        {"o": ratio, "dq": 2 * ratio, "dk": 2 * ratio, "dv": 2 * ratio})


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("B", "S", "H", "D"), [(1, 8192, 8, 128), (64, 2048, 8, 128), (1024, 512, 8, 64)])
def test_cuda_decode_matches_torch(B, S, H, D, dtype):
    q, k_cache, v_cache = (torch.randn(*shape, device="cuda") for shape in ((B, H, D), (B, S, H, D), (B, S, H, D)))
    counts = torch.randint(0, S + 1, (B, H), device="cuda")
    ref = torch_scratchpad_decode(q, k_cache, v_cache, counts)
    out = parallel_scratchpad_decode(*(t.to(dtype) for t in (q, k_cache, v_cache)), counts)
    assert_close("o", ref, out.float(), 5e-3 if dtype == torch.float32 else 2e-2)
