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


def plot_computational_graph():
    """The computational graph of a two-layer network: forward values in black, gradients in red."""
    fig, ax = plt.subplots(figsize=(11, 3.4))
    nodes = [  # (x position, label, is_operation)
        (0.0, "$X$\n(N, in)", False), (1.5, "dense\n$W_1, b_1$", True), (3.0, "$Z_1$", False),
        (4.3, "ReLU", True), (5.6, "$A_1$", False), (7.1, "dense\n$W_2, b_2$", True), (8.6, "$Z_2$", False),
        (10.3, "softmax +\ncross-\nentropy ($y$)", True), (12.1, "$L$", False),
    ]
    for x, label, is_op in nodes:
        style = dict(boxstyle="round,pad=0.4", facecolor="#dbe9f6" if is_op else "white", edgecolor="black")
        ax.text(x, 0, label, ha="center", va="center", fontsize=10, bbox=style)
    fwd = dict(arrowstyle="->", color="black", lw=1.5)
    bwd = dict(arrowstyle="->", color="tab:red", lw=1.5)
    # The gradient of each value node is written under the backward arrow that delivers it.
    grads = [r"$\partial L/\partial X = \delta_1 W_1$", "",
             r"$\delta_1 = \partial L/\partial Z_1$" "\n" r"$= \partial L/\partial A_1 \odot \mathrm{ReLU}'(Z_1)$", "",
             r"$\partial L/\partial A_1 = \delta_2 W_2$", "", r"$\delta_2 = \partial L/\partial Z_2$" "\n" r"$= (p - y)/N$",
             r"$\partial L/\partial L = 1$"]
    half = {x: (0.75 if "entropy" in label else 0.45) for x, label, _ in nodes}  # half-widths of the boxes
    for (x0, *_), (x1, *_), g in zip(nodes, nodes[1:], grads):
        ax.annotate("", xy=(x1 - half[x1], 0.12), xytext=(x0 + half[x0], 0.12), arrowprops=fwd)
        ax.annotate("", xy=(x0 + half[x0], -0.12), xytext=(x1 - half[x1], -0.12), arrowprops=bwd)
        if g:
            ax.text((x0 + x1) / 2, -0.42, g, ha="center", va="top", color="tab:red", fontsize=9)
    for x, text in ((1.5, r"$\partial L/\partial W_1 = \delta_1^\top X$" "\n" r"$\partial L/\partial b_1 = \sum_n \delta_1$"),
                    (7.1, r"$\partial L/\partial W_2 = \delta_2^\top A_1$" "\n" r"$\partial L/\partial b_2 = \sum_n \delta_2$")):
        ax.text(x, 0.55, text, ha="center", va="bottom", color="tab:red", fontsize=9)
    ax.text(0, 1.05, "forward: values flow right (black)     backward: gradients flow left (red)",
            fontsize=10, ha="left")
    ax.set_xlim(-0.7, 12.6)
    ax.set_ylim(-1.0, 1.2)
    ax.axis("off")
    ax.set_title("Computational graph of a two-layer classifier (samples as rows)")
    fig.tight_layout()
    return fig
