"""Scratchpad kernels and the HAM layer on the GPU, against the attention a user would otherwise pick.

    python -m tsham.experiments.bench_scratchpad [--sections kernel decode layer] [--quick]

Sections (each writes experiments/results/bench_scratchpad_<section>.{md,json}):
- kernel: routed attention fwd and fwd+bwd (bf16) at fractions f of routed tokens, against SDPA causal
  attention over all T tokens, FlexAttention over the same compact cache (compiled outside the timing; compile
  time reported apart; the gathered cache is handed to it untimed), and the naive twin where it fits.
- decode: microseconds per step per layer, one query per stream against caches of equal length, against SDPA.
- layer: HamLayer (surprise router, f = 0.25) fwd+bwd against a GDN-only and an SDPA attention layer.
All times are medians of triton.testing.do_bench, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch
import torch.nn.functional as F
from triton.testing import do_bench
from tsham.experiments.common import header, write_results

from tsham.ops import compact_routed, naive_scratchpad_attn
from tsham.ops.scratchpad import parallel_scratchpad_attn, parallel_scratchpad_decode

SHAPES = [(8, 2048, 8, 64), (4, 4096, 8, 128), (2, 16384, 8, 128), (1, 65536, 8, 128)]
FRACTIONS = [0.03, 0.06, 0.125, 0.25, 0.5, 1.0]
FLEX_AT = {(4, 4096, 8, 128), (2, 16384, 8, 128)}  # shapes where FlexAttention is compiled (each costs seconds)
FLEX_FRACTIONS = (0.06, 0.125, 0.25)


def ms(fn) -> float:
    return do_bench(fn, warmup=10, rep=50, return_mode="median")


def fwd_bwd(fn, inputs, do):
    """A closure running fn forward and backward (grads of the inputs reset each call)."""
    def run():
        for t in inputs:
            t.grad = None
        fn().backward(do)
    return run


def flex_times(q, k, v, indices, counts, do) -> dict:
    """FlexAttention over the gathered compact cache: compile time, fwd and fwd+bwd (ms)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    B, T, H, D = q.shape
    S = int(counts.max())
    pos = torch.where(torch.arange(S, device=q.device)[None, :, None] < counts[:, None, :], indices[:, :S], T)
    pos = pos.permute(0, 2, 1).contiguous()  # (B, H, S)
    gather = indices[:, :S].long().clamp(max=T - 1)
    k_c, v_c = (t.gather(1, gather[..., None].expand(-1, -1, -1, D)).transpose(1, 2).detach().requires_grad_()
                for t in (k, v))
    qh = q.transpose(1, 2).detach().requires_grad_()

    def mask_mod(b, h, q_idx, kv_idx):
        return pos[b, h, kv_idx] <= q_idx

    block_mask = create_block_mask(mask_mod, B, H, T, S, device=q.device)
    flex = torch.compile(flex_attention)
    start = time.perf_counter()
    flex(qh, k_c, v_c, block_mask=block_mask).backward(do.transpose(1, 2))
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - start
    dot = do.transpose(1, 2)
    return {
        "flex_compile_s": compile_s,
        "flex_fwd": ms(lambda: flex(qh, k_c, v_c, block_mask=block_mask)),
        "flex_fb": ms(fwd_bwd(lambda: flex(qh, k_c, v_c, block_mask=block_mask), (qh, k_c, v_c), dot)),
    }


def kernel_section(quick: bool) -> list[dict]:
    rows = []
    for B, T, H, D in SHAPES[:2] if quick else SHAPES:
        torch.manual_seed(0)
        try:
            q, k, v, do = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
            for t in (q, k, v):
                t.requires_grad_()
            qh, kh, vh = (t.detach().transpose(1, 2).contiguous().requires_grad_() for t in (q, k, v))
            sdpa = partial(F.scaled_dot_product_attention, qh, kh, vh, is_causal=True)
            sdpa_fwd, sdpa_fb = ms(sdpa), ms(fwd_bwd(sdpa, (qh, kh, vh), do.transpose(1, 2).contiguous()))
        except torch.OutOfMemoryError:
            rows.append({"shape": (B, T, H, D), "skipped": "out of memory"})
            continue
        for f in FRACTIONS:
            indices, counts = compact_routed(torch.rand(B, T, H, device="cuda") < f, slots=T)  # no host sync
            ours = partial(parallel_scratchpad_attn, q, k, v, indices, counts)
            row = {"shape": (B, T, H, D), "f": f, "sdpa_fwd": sdpa_fwd, "sdpa_fb": sdpa_fb,
                   "ours_fwd": ms(ours), "ours_fb": ms(fwd_bwd(ours, (q, k, v), do))}
            if T <= 4096 and f in (0.125, 1.0):
                naive = partial(naive_scratchpad_attn, q, k, v, indices, counts)
                row["naive_fb"] = ms(fwd_bwd(naive, (q, k, v), do))
            if (B, T, H, D) in FLEX_AT and f in FLEX_FRACTIONS and not quick:
                row.update(flex_times(q, k, v, indices, counts, do))
            row["target_fb_ms"] = 2 * f * sdpa_fb + 0.030 if f <= 0.25 else (1.5 * sdpa_fb if f == 1.0 else None)
            rows.append(row)
            print(row, flush=True)
        del q, k, v, do, qh, kh, vh
        torch.cuda.empty_cache()
    return rows


def decode_section(quick: bool) -> list[dict]:
    rows = []
    H, D = 8, 128
    for streams in (1, 64, 1024):
        for length in (512, 2048, 8192):
            if quick and streams * length > 64 * 2048:
                continue
            q = torch.randn(streams, H, D, device="cuda", dtype=torch.bfloat16)
            k_cache, v_cache = (torch.randn(streams, length, H, D, device="cuda", dtype=torch.bfloat16)
                                for _ in range(2))
            counts = torch.full((streams, H), length, device="cuda", dtype=torch.int32)
            # SDPA gets its own contiguous (N, H, L, D) layout where memory allows, strided views otherwise.
            contiguous = streams * length <= 64 * 8192
            kh, vh = (t.transpose(1, 2) for t in (k_cache, v_cache))
            kh, vh = (kh.contiguous(), vh.contiguous()) if contiguous else (kh, vh)
            qh = q[:, :, None]
            ours = ms(partial(parallel_scratchpad_decode, q, k_cache, v_cache, counts)) * 1e3
            sdpa = ms(partial(F.scaled_dot_product_attention, qh, kh, vh)) * 1e3
            gbytes = 2 * streams * length * H * D * 2 / 1e9
            rows.append({"streams": streams, "cache": length, "ours_us": ours, "sdpa_us": sdpa,
                         "sdpa_layout": "contiguous" if contiguous else "strided view",
                         "ours_TBps": gbytes / ours * 1e3, "ratio": ours / sdpa})
            print(rows[-1], flush=True)
            del k_cache, v_cache, kh, vh
            torch.cuda.empty_cache()
    return rows


def layer_section(quick: bool) -> list[dict]:
    from tsham.experiments.baseline_layers import AttentionLayer, GdnLayer

    from tsham.ham import HamConfig, HamLayer

    rows = []
    base = dict(d_model=1024, num_heads=8, head_dim=128, check_inputs=False)
    for B, T in [(4, 4096)] if quick else [(4, 4096), (2, 16384)]:
        torch.manual_seed(0)
        x = torch.randn(B, T, base["d_model"], device="cuda")
        routing = {"target": 0.25, "controller_lr": 0.5}
        ham = HamLayer(HamConfig(**base, router="surprise", router_kwargs=routing)).cuda()
        layers = {"ham (surprise, f=0.25)": ham, "gdn only": GdnLayer(HamConfig(**base)).cuda(),
                  "sdpa attention": AttentionLayer(HamConfig(**base)).cuda()}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            with torch.no_grad():
                for _ in range(20):  # settle the threshold controller
                    realised = ham(x)[1].realised.item()
            times = {}
            for name, layer in layers.items():
                def step(layer=layer, x=x):
                    out = layer(x)
                    (out[0] if isinstance(out, tuple) else out).float().square().mean().backward()
                times[name] = ms(step)
        for name, t in times.items():
            rows.append({"B": B, "T": T, "layer": name, "fb_ms": t, "vs_sdpa": t / times["sdpa attention"],
                         "vs_gdn": t / times["gdn only"],
                         "kv_fraction": realised if name.startswith("ham") else None})
            print(rows[-1], flush=True)
    return rows


def fmt(x, digits=3):
    return "-" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def kernel_table(rows):
    lines = ["| B, T, H, D | f | ours fwd | ours fwd+bwd | SDPA causal fwd | SDPA fwd+bwd | ours/SDPA fb | target fb "
             "| flex fwd | flex fwd+bwd | flex/ours fb | flex compile s | naive fwd+bwd |", "|" + "---|" * 13]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['shape']} | {r['skipped']} |" + " |" * 11)
            continue
        flex_ratio = r["flex_fb"] / r["ours_fb"] if "flex_fb" in r else None
        target = r["target_fb_ms"]
        met = "" if target is None else (" met" if r["ours_fb"] <= target else f" MISSED x{r['ours_fb'] / target:.2f}")
        lines.append(
            f"| {r['shape']} | {r['f']} | {fmt(r['ours_fwd'])} | {fmt(r['ours_fb'])} | {fmt(r['sdpa_fwd'])} | "
            f"{fmt(r['sdpa_fb'])} | {fmt(r['ours_fb'] / r['sdpa_fb'], 2)} | {fmt(target)}{met} | "
            f"{fmt(r.get('flex_fwd'))} | {fmt(r.get('flex_fb'))} | {fmt(flex_ratio, 2)} | "
            f"{fmt(r.get('flex_compile_s'), 1)} | {fmt(r.get('naive_fb'))} |")
    return "times in ms\n\n" + "\n".join(lines)


def decode_table(rows):
    lines = ["| streams | cache | ours us | SDPA us | ours/SDPA | ours TB/s | SDPA layout |", "|---" * 7 + "|"]
    lines += [f"| {r['streams']} | {r['cache']} | {r['ours_us']:.1f} | {r['sdpa_us']:.1f} | {r['ratio']:.2f} | "
              f"{r['ours_TBps']:.2f} | {r['sdpa_layout']} |" for r in rows]
    return "\n".join(lines)


def layer_table(rows):
    lines = ["| B | T | layer | KV fraction | fwd+bwd ms | / SDPA layer | / GDN only |", "|---" * 7 + "|"]
    lines += [f"| {r['B']} | {r['T']} | {r['layer']} | {fmt(r['kv_fraction'])} | {r['fb_ms']:.3f} | "
              f"{r['vs_sdpa']:.2f} | {r['vs_gdn']:.2f} |" for r in rows]
    return "\n".join(lines)


SECTIONS = {"kernel": (kernel_section, kernel_table), "decode": (decode_section, decode_table),
            "layer": (layer_section, layer_table)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="two shapes, no FlexAttention, small decode")
    parser.add_argument("--out", default=None, help="also copy the tables here (e.g. $OUT on the device)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_scratchpad needs a CUDA GPU (run it through the device tool)")
    for section in args.sections:
        run, table = SECTIONS[section]
        meta = header()
        rows = run(args.quick)
        path = write_results(f"bench_scratchpad_{section}", meta, rows, table(rows))
        print(path.read_text(), flush=True)
        if args.out:
            import shutil

            for ext in ("md", "json"):
                shutil.copy(path.with_suffix(f".{ext}"), args.out)


if __name__ == "__main__":
    main()
