"""The forecast picture: context, median and quantile band, and the steps the scratchpad kept."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_forecasts(
    items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    quantiles: tuple[float, ...],
    path: str | Path,
    context_shown: int | None = None,
    times: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> Path:
    """One panel per series: ``(name, context [T], forecast quantiles [Q, H], kept [T] in 0..1)``.

    The band spans the outermost quantiles; kept steps (share of layers and heads whose scratchpad holds the
    step's patch) are shaded under the context. A strip under each panel shows them over the whole context, since
    the scratchpad often keeps steps long before the ``context_shown`` last ones (the shown window is framed).
    ``times``: per item, the context's ``[T]`` and the forecast's ``[H]`` timestamps (dates or steps) for the x
    axis; default: step numbers.
    """
    fig = plt.figure(figsize=(10, 3.0 * len(items)), layout="constrained")
    grid = fig.add_gridspec(2 * len(items), 1, height_ratios=[5, 1] * len(items))
    lo, mid, hi = 0, quantiles.index(0.5), len(quantiles) - 1
    for i, (name, context, q, kept) in enumerate(items):
        ax, strip = fig.add_subplot(grid[2 * i]), fig.add_subplot(grid[2 * i + 1])
        T, H = len(context), q.shape[1]
        start = 0 if context_shown is None else max(0, T - context_shown)
        past, future = times[i] if times is not None else (np.arange(T), np.arange(T, T + H))
        t = past[start:]
        ax.plot(t, context[start:], color="black", lw=1, label="context")
        ax.fill_between(future, q[lo], q[hi], color="tab:blue", alpha=0.25,
                        label=f"{quantiles[lo]:g}-{quantiles[hi]:g} quantiles")
        ax.plot(future, q[mid], color="tab:blue", lw=1.5, label="median")
        if kept[start:].any():
            y0, y1 = ax.get_ylim()
            ax.fill_between(t, y0, y1, where=kept[start:] > 0, color="tab:orange", alpha=0.2,
                            step="mid", label="kept in scratchpad")
            ax.set_ylim(y0, y1)
        ax.set_title(str(name), fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper left")
        strip.fill_between(past, 0, kept, color="tab:orange", step="mid")
        strip.axvspan(past[start], past[-1], facecolor="none", edgecolor="black", lw=0.8)
        strip.set(xlim=(past[0], future[-1]), ylim=(0, 1), yticks=[])
        strip.set_title(f"kept in scratchpad over the whole history ({int((kept > 0).sum())} of {T} steps; the "
                        "frame is the window above; the model reads its last context_length steps)", fontsize=7,
                        loc="left")
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
