"""Pictures drawn from real launches, never from static images."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle


def plot_thread_map(tmap: dict, title: str | None = None):
    """Draw which (block, thread) handled each element, from :func:`nbkit.vector.thread_map`.

    Every thread of the grid gets a cell: coloured by its block when it owned an element, hatched
    grey when the bounds guard kept it idle (the grid has more threads than elements).
    """
    n = tmap["global"].size
    tpb, blocks = tmap["threads_per_block"], tmap["blocks"]
    total = tpb * blocks
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, total * 0.42), 2.2))
    for g in range(total):
        b, t = divmod(g, tpb)
        if g < n:
            if tmap["block"][g] != b or tmap["thread"][g] != t:
                raise ValueError(f"element {g} was handled by block {tmap['block'][g]}, thread {tmap['thread'][g]}: "
                                 "the launch did not follow i = blockIdx.x * blockDim.x + threadIdx.x")
            ax.add_patch(Rectangle((g, 0), 1, 1, facecolor=colors(b % 10), alpha=0.55, edgecolor="black"))
            ax.text(g + 0.5, 0.5, f"b{b}\nt{t}", ha="center", va="center", fontsize=7)
        else:
            ax.add_patch(Rectangle((g, 0), 1, 1, facecolor="lightgrey", hatch="//", edgecolor="black"))
            ax.text(g + 0.5, 0.5, f"b{b}\nt{t}\nidle", ha="center", va="center", fontsize=7,
                    bbox=dict(facecolor="white", edgecolor="none", pad=1))
    for b in range(1, blocks):
        ax.axvline(b * tpb, color="black", linewidth=2.5)
    ax.set_xlim(0, total)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    step = max(1, total // 20)
    ax.set_xticks(np.arange(0, total, step) + 0.5, [str(i) for i in range(0, total, step)])
    ax.set_xlabel("global thread index i = blockIdx.x · blockDim.x + threadIdx.x  (= element index)")
    ax.set_title(title or f"{n} elements, {blocks} blocks × {tpb} threads: "
                 f"{total - n} idle thread(s) stopped by the guard `if i < n`")
    fig.tight_layout()
    return fig
