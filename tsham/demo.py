"""The routing demo: one HAM stack per router on a synthetic stream with rare level shifts.

Each router gets the same 10% KV target; the threshold controller warms up on training batches (no weight
updates), then held-out streams report the realised KV fraction, the scratchpad size and how many of the
rare shift tokens each policy kept. Runs on a CPU in seconds, with no download.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from tsham.ham import HamConfig, HamStack

# Router name -> policy arguments at the demo's 10% budget.
DEMO_ROUTERS = {
    "surprise": {"target": 0.1},
    "uncertainty": {"target": 0.1},
    "learned": {"target": 0.1},
    "event": {},
    "composite": {"routers": [{"name": "surprise", "target": 0.05}, {"name": "event"}]},
    "random": {"fraction": 0.1},
    "recency": {"window": 16, "sinks": 4},
    "all": {},
    "none": {},
}


def shift_stream(batch: int, length: int, generator: torch.Generator, shift_rate: float = 0.02):
    """Random walks with rare level shifts.

    Returns:
        series ``[B, T, 2]`` (level and first difference) and the shift flags ``[B, T, 1]`` (1.0 at a shift).
    """
    noise = torch.randn(batch, length, 1, generator=generator) * 0.1
    flags = (torch.rand(batch, length, 1, generator=generator) < shift_rate).float()
    shifts = flags * torch.randn(batch, length, 1, generator=generator).sign() * 3.0
    level = (noise + shifts).cumsum(1)
    return torch.cat([level, level.diff(dim=1, prepend=level[:, :1])], -1), flags


@dataclass
class RouterReport:
    """One row of the demo table."""

    router: str
    kv_fraction: float  # slots held at the end over the stream's tokens, averaged over layers
    slots_per_stream: float  # scratchpad entries a query sees per stream and head after the stream (a capped
    # router, e.g. recency's window, holds at most cap + sinks of the tokens it routed)
    shift_capture: float  # fraction of the level-shift tokens routed (first layer)


def run_demo(batch: int = 8, length: int = 256, warmup: int = 40, seed: int = 0, progress: bool = True):
    """Runs every demo router; returns a list of :class:`RouterReport`."""
    reports = []
    for name in tqdm(DEMO_ROUTERS, desc="routers", disable=not progress):
        torch.manual_seed(seed)
        config = HamConfig(d_model=32, n_layers=2, num_heads=2, head_dim=16, router=name,
                           router_kwargs=DEMO_ROUTERS[name])
        stack, embed = HamStack(config), torch.nn.Linear(2, config.d_model)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            stack.train()  # threshold controllers move only in training mode
            for _ in range(warmup):
                series, flags = shift_stream(batch, length, gen)
                stack(embed(series), flags=flags)
            stack.eval()
            series, flags = shift_stream(batch, length, gen)
            _, diags = stack(embed(series), flags=flags)
        shifts = flags[..., 0].bool()
        first = diags[0].mask[..., 0]
        held = []
        for block, d in zip(stack.blocks, diags, strict=True):
            router = block.mixer.router
            counts = d.counts.float()
            held.append((counts.clamp(max=router.cap + router.sinks) if router.cap else counts).mean())
        slots = torch.stack(held).mean().item()
        reports.append(RouterReport(
            router=name, kv_fraction=slots / length, slots_per_stream=slots,
            shift_capture=(first & shifts).sum().item() / max(shifts.sum().item(), 1),
        ))
    return reports


def format_table(reports: list[RouterReport], length: int) -> str:
    """The demo's table as text."""
    lines = [f"{'router':<12} {'KV fraction':>11} {'slots/stream':>12} {'shifts routed':>13}   (T = {length})"]
    for r in reports:
        lines.append(f"{r.router:<12} {r.kv_fraction:>11.3f} {r.slots_per_stream:>12.1f} {r.shift_capture:>13.2f}")
    return "\n".join(lines)
