"""Routed causal attention as dense masked attention over all T tokens (the reference)."""

from __future__ import annotations

import torch

from tsham.ops.checks import check_qkv, check_shape


def check_counts(counts: torch.Tensor, B: int, H: int, op: str) -> None:
    """counts: [B, H] integer, else ValueError."""
    check_shape(counts, (B, H), "counts", op)
    if counts.is_floating_point():
        raise ValueError(f"{op}: counts must be an integer tensor; got {counts.dtype}")


def check_routing(indices: torch.Tensor, counts: torch.Tensor, B: int, H: int, op: str) -> None:
    """indices: [B, S, H] integer slots, counts: [B, H] integer, else ValueError."""
    if indices.dim() != 3 or indices.shape[0] != B or indices.shape[2] != H:
        raise ValueError(f"{op}: indices must be [B={B}, S, H={H}]; got {tuple(indices.shape)}")
    if indices.is_floating_point():
        raise ValueError(f"{op}: indices must be an integer tensor; got {indices.dtype}")
    check_counts(counts, B, H, op)


def visible_slots(
    slot_pos: torch.Tensor, counts: torch.Tensor, T: int, window: int | None, sinks: int
) -> torch.Tensor:
    """Which cache slot each query sees.

    Args:
        slot_pos: ``[B, S, H]`` original position of each slot (ascending for slots < counts).
        counts: ``[B, H]`` live slots. T: number of queries (query t sits at position t).
        window: if set, query t sees only the last ``window`` slots routed at or before t ...
        sinks: ... plus the first ``sinks`` slots (StreamingLLM-style sink tokens).

    Returns:
        ``[B, H, T, S]`` bool.
    """
    S = slot_pos.shape[1]
    slot = torch.arange(S, device=slot_pos.device)
    live = slot[None, None, :] < counts[..., None]  # (B, H, S)
    t = torch.arange(T, device=slot_pos.device)
    vis = live[:, :, None, :] & (slot_pos.permute(0, 2, 1)[:, :, None, :] <= t[:, None])  # (B, H, T, S)
    if window is not None:
        seen = vis.sum(-1, keepdim=True)  # slots routed at or before t
        vis = vis & ((slot < sinks) | (slot >= seen - window))
    return vis


def masked_probs(q: torch.Tensor, k: torch.Tensor, vis: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax weights restricted to ``vis``; a query that sees nothing gets all-zero weights.

    Args:
        q: ``[B, T, H, K]``, k: ``[B, S, H, K]``, vis: ``[B, H, T, S]`` bool.

    Returns:
        ``[B, H, T, S]`` float32 (each row sums to 1, or to 0 where nothing is visible).
    """
    scores = torch.einsum("bthk,bshk->bhts", q.float(), k.float()) * scale
    if k.shape[1] == 0:  # an empty cache: keep the graph (gradients of zeros) with no softmax over nothing
        return scores
    peak = scores.masked_fill(~vis, float("-inf")).amax(-1, keepdim=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak)).detach()
    # Masked entries become exp(-inf) = 0 before any overflow can happen, so gradients stay finite.
    p = (scores - peak).masked_fill(~vis, float("-inf")).exp()
    denom = p.sum(-1, keepdim=True)
    return p / torch.where(denom > 0, denom, torch.ones_like(denom))


def masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, vis: torch.Tensor, scale: float
) -> torch.Tensor:
    """Softmax attention restricted to ``vis``; a query that sees nothing gets a zero output.

    Args:
        q: ``[B, T, H, K]``, k: ``[B, S, H, K]``, v: ``[B, S, H, V]``, vis: ``[B, H, T, S]`` bool.

    Returns:
        ``[B, T, H, V]`` float32.
    """
    return torch.einsum("bhts,bshv->bthv", masked_probs(q, k, vis, scale), v.float())


def routed_visibility(routed: torch.Tensor, window: int | None = None, sinks: int = 0) -> torch.Tensor:
    """Dense visibility of routed causal attention: query t sees routed token j <= t (with ``window``: only
    the last ``window`` routed tokens at or before t, plus the first ``sinks`` routed ones).

    Args:
        routed: ``[B, T, H]`` bool routing mask.

    Returns:
        ``[B, H, T, T]`` bool (query, key).
    """
    B, T, H = routed.shape
    # Every position is a slot here: slot t holds token t, routed or not.
    positions = torch.arange(T, device=routed.device)[None, :, None].expand(B, T, H)
    vis = visible_slots(positions, torch.full((B, H), T, device=routed.device), T, None, 0)
    vis = vis & routed.permute(0, 2, 1)[:, :, None, :]
    if window is not None:
        rank = routed.long().cumsum(1).permute(0, 2, 1)[:, :, None, :] - 1  # slot of each routed token
        seen = vis.sum(-1, keepdim=True)
        vis = vis & ((rank < sinks) | (rank >= seen - window))
    return vis


def naive_scratchpad_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    indices: torch.Tensor,
    counts: torch.Tensor,
    scale: float | None = None,
    window: int | None = None,
    sinks: int = 0,
) -> torch.Tensor:
    r"""Routed causal attention: query t attends to the routed tokens at positions <= t.

    The routed set is given compactly, as the kernels take it: ``indices[b, j, h]`` is the original
    position of cache slot j, ascending in j for ``j < counts[b, h]``; slots at or beyond
    ``counts[b, h]`` are ignored whatever they hold. Build both from a mask with
    :func:`compact_routed`. This twin scatters them back to a dense ``[T, T]`` mask.

    Args:
        q, k: ``[B, T, H, K]``; v: ``[B, T, H, V]``.
        indices: ``[B, S, H]`` int, routed positions. counts: ``[B, H]`` int, live slots per head.
        scale: default ``K ** -0.5``.
        window: keep only the last ``window`` routed tokens visible to each query (a cap), or None.
        sinks: with ``window``, the first ``sinks`` routed tokens stay visible too.

    Returns:
        o ``[B, T, H, V]`` in q's dtype; zero for a query with no routed token at or before it.
    """
    B, T, H, K, _ = check_qkv(q, k, v, "naive_scratchpad_attn")
    check_routing(indices, counts, B, H, "naive_scratchpad_attn")
    scale = K**-0.5 if scale is None else scale
    S = indices.shape[1]
    live = torch.arange(S, device=q.device)[None, :, None] < counts[:, None, :]  # (B, S, H)
    routed = torch.zeros(B, T + 1, H, dtype=torch.bool, device=q.device)
    routed.scatter_(1, torch.where(live, indices.long().clamp(0, T - 1), T), live)
    vis = routed_visibility(routed[:, :T], window, sinks)
    return masked_attention(q, k, v, vis, scale).to(q.dtype)
