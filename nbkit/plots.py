"""Pictures drawn by code, from real launches or from the index arithmetic they explain; never static images."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle


def plot_thread_map(tmap: dict, title: str | None = None):
    """Draw which (block, thread) handled each element, from :func:`nbkit.kernels.threads.thread_map`.

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


def plot_grid_stride_map(gmap: dict):
    """Draw, for each element, the (block, thread) that handled it in a grid-stride loop."""
    n, tpb, blocks = gmap["block"].size, gmap["threads_per_block"], gmap["blocks"]
    total = tpb * blocks
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, n * 0.42), 2.2))
    for i in range(n):
        b, t = int(gmap["block"][i]), int(gmap["thread"][i])
        ax.add_patch(Rectangle((i, 0), 1, 1, facecolor=colors(b % 10), alpha=0.55, edgecolor="black"))
        ax.text(i + 0.5, 0.5, f"b{b}\nt{t}", ha="center", va="center", fontsize=7)
    for k in range(total, n, total):
        ax.axvline(k, color="black", linewidth=2.5)
    ax.set_xlim(0, n)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xticks(np.arange(n) + 0.5, [str(i) for i in range(n)])
    ax.set_xlabel(f"element index (thick lines every gridsize = {total} elements: one pass of the whole grid)")
    ax.set_title(f"Grid-stride loop: {n} elements, only {blocks} blocks × {tpb} threads; "
                 f"thread g handles g, g+{total}, g+{2 * total}, ...")
    fig.tight_layout()
    return fig


def plot_thread_map_2d(tmap: dict):
    """Draw a 2-D launch over a matrix: colour = block, label = thread index inside the block."""
    block_id, thread_id = tmap["block"], tmap["thread"]
    rows, cols = block_id.shape
    bx, by = tmap["block_dim"]
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(5.0, cols * 0.62), max(3.2, rows * 0.6)))
    for r in range(rows):
        for c in range(cols):
            ax.add_patch(Rectangle((c, r), 1, 1, facecolor=colors(int(block_id[r, c]) % 10), alpha=0.55,
                                   edgecolor="grey"))
            t = int(thread_id[r, c])  # (x, y) in the tracer's order: x = t % bx runs fastest
            ax.text(c + 0.5, r + 0.5, f"({t % bx}, {t // bx})", ha="center", va="center", fontsize=7)
    for c in range(bx, cols, bx):
        ax.axvline(c, color="black", linewidth=2.5)
    for r in range(by, rows, by):
        ax.axhline(r, color="black", linewidth=2.5)
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_xticks(np.arange(cols) + 0.5, [str(c) for c in range(cols)])
    ax.set_yticks(np.arange(rows) + 0.5, [str(r) for r in range(rows)])
    ax.set_xlabel("column = blockIdx.x · blockDim.x + threadIdx.x")
    ax.set_ylabel("row = blockIdx.y · blockDim.y\n+ threadIdx.y")
    gx, gy = tmap["grid"]
    ax.set_title(f"{rows}×{cols} matrix, grid of {gx}×{gy} blocks (x × y) of {bx}×{by} threads\n"
                 "colour = block, label = (threadIdx.x, threadIdx.y)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_matmul_reads(M: int, K: int, N: int, tile: int, row: int, col: int):
    """Which parts of A (M×K) and B (K×N) are read to compute C: one element (naive) vs one tile (tiled)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, tiled in zip(axes, (False, True)):
        r0, c0 = (row // tile * tile, col // tile * tile) if tiled else (row, col)
        h, w = (min(tile, M - r0), min(tile, N - c0)) if tiled else (1, 1)
        # A at x in [0, K), B at x in [K + 2, K + 2 + N), C at x in [K + N + 4, ...)
        for x0, (rows, cols), name in ((0, (M, K), "A"), (K + 2, (K, N), "B"), (K + N + 4, (M, N), "C")):
            ax.add_patch(Rectangle((x0, 0), cols, rows, facecolor="white", edgecolor="black"))
            ax.text(x0 + cols / 2, -1, f"{name} ({rows}×{cols})", ha="center", va="bottom")
        ax.add_patch(Rectangle((0, r0), K, h, facecolor="tab:blue", alpha=0.5))
        ax.add_patch(Rectangle((K + 2 + c0, 0), w, K, facecolor="tab:orange", alpha=0.5))
        ax.add_patch(Rectangle((K + N + 4 + c0, r0), w, h, facecolor="tab:green", alpha=0.8))
        if tiled:
            for k in range(tile, K, tile):  # the K/TILE steps of the tiled loop
                ax.plot([k, k], [r0, r0 + h], color="black", linewidth=1)
                ax.plot([K + 2 + c0, K + 2 + c0 + w], [k, k], color="black", linewidth=1)
        reads = 2 * -(-K // tile)  # each thread loads one element of each tile per step
        ax.set_title(("naive: one thread, one output: reads a row of A and a column of B\n"
                      f"= {2 * K} global loads per output") if not tiled else
                     (f"tiled: one block of {tile}×{tile} threads, {tile}×{tile} outputs: reads {tile} rows and "
                      f"{tile} columns\nonce per block, in {-(-K // tile)} tile steps = {reads} global loads per output"),
                     fontsize=9)
        ax.set_xlim(-1, K + N + 4 + N + 1)
        ax.set_ylim(max(M, K) + 1, -3)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.suptitle(f"C = A @ B with M={M}, K={K}, N={N}, TILE={tile}: the data behind output C[{row}, {col}]")
    fig.tight_layout()
    return fig


def plot_conv_reads(rmap: dict, examples: tuple[tuple[int, int], ...] = ((0, 0), (3, 5), (7, 7))):
    """Left: which block computed each output. Right: how many threads read each input pixel, with the
    windows of a few example threads outlined. Both from the arrays a real launch recorded."""
    reads, owner = rmap["reads"], rmap["owner"]
    KH, KW = rmap["kernel"]
    fig, (ax_out, ax_in) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [owner.shape[1], reads.shape[1]]})
    ax_out.imshow(owner, cmap="tab10", vmin=0, vmax=9)
    ax_out.set_title(f"output {owner.shape[0]}×{owner.shape[1]}: colour = block that computed it\n"
                     f"(blocks of {rmap['block'][0]}×{rmap['block'][1]} threads, one per output)", fontsize=9)
    im = ax_in.imshow(reads, cmap="viridis")
    fig.colorbar(im, ax=ax_in, label="threads that read this pixel")
    for k, (i, j) in enumerate(examples):
        if i < owner.shape[0] and j < owner.shape[1]:
            color = ("white", "magenta", "red")[k % 3]
            ax_in.add_patch(Rectangle((j - 0.5, i - 0.5), KW, KH, fill=False, edgecolor=color, linewidth=2.5))
            ax_in.text(j, i, str(k + 1), color=color, ha="center", va="center", fontsize=10, fontweight="bold")
            ax_out.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=2.5))
            ax_out.text(j, i, str(k + 1), color=color, ha="center", va="center", fontsize=9, fontweight="bold")
    ax_in.set_title(f"input {reads.shape[0]}×{reads.shape[1]}: reads per pixel; outlined: the {KH}×{KW} windows of\n"
                    "the outlined output threads (same colour)", fontsize=9)
    for ax in (ax_out, ax_in):
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    fig.suptitle("conv2d forward, one thread per output: which input each thread reads (recorded from a launch)")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- conv2d windows (notebook 01): index arithmetic


def _conv_sizes(H: int, W: int, KH: int, KW: int) -> tuple[int, int]:
    """Output size of a stride-1, unpadded conv2d; a clear error where the kernel does not fit."""
    if min(H, W, KH, KW) < 1 or KH > H or KW > W:
        raise ValueError(f"a {KH}x{KW} kernel does not fit a {H}x{W} input (need 1 <= KH <= H, 1 <= KW <= W)")
    return H - KH + 1, W - KW + 1


def _require_pixel(pixel: tuple[int, int], rows: int, cols: int, what: str) -> tuple[int, int]:
    r, c = pixel
    if not (0 <= r < rows and 0 <= c < cols):
        raise ValueError(f"{what} {pixel} lies outside the {rows}x{cols} map")
    return r, c


def conv_writers(H: int, W: int, KH: int, KW: int) -> np.ndarray:
    """For each input pixel, how many outputs of a stride-1, unpadded conv2d read it (one channel, one filter):
    the number of threads that would add into it if the input gradient were scattered from the outputs."""
    OH, OW = _conv_sizes(H, W, KH, KW)
    count = np.zeros((H, W), dtype=np.int64)
    for p in range(KH):
        for q in range(KW):
            count[p:p + OH, q:q + OW] += 1  # output (i, j) reads input (i + p, j + q)
    return count


def _grid(ax, x0: float, rows: int, cols: int, name: str, counts=None, numbers: bool = True):
    """A rows x cols grid of unit cells with its left edge at x0; row and column numbers outside it (``numbers``);
    ``counts`` (rows x cols) shades each cell and writes its count in it."""
    for r in range(rows):
        for c in range(cols):
            face = "white" if counts is None else plt.get_cmap("Greys")(0.05 + 0.45 * counts[r, c] / max(1, counts.max()))
            ax.add_patch(Rectangle((x0 + c, r), 1, 1, facecolor=face, edgecolor="grey", linewidth=0.8))
            if counts is not None:
                ax.text(x0 + c + 0.5, r + 0.5, str(counts[r, c]), ha="center", va="center", fontsize=8)
    if not numbers:
        return
    for r in range(rows):
        ax.text(x0 - 0.25, r + 0.5, str(r), ha="right", va="center", fontsize=7, color="dimgrey")
    for c in range(cols):
        ax.text(x0 + c + 0.5, -0.2, str(c), ha="center", va="bottom", fontsize=7, color="dimgrey")
    ax.text(x0 + cols / 2, -0.9, name, ha="center", va="bottom", fontsize=9)


def _mark(ax, x0: float, r: int, c: int, color: str, gid: str, label: str = "", fontsize: int = 7, fill: bool = True):
    """Highlight cell (r, c) of the grid at x0; ``gid`` names the role, so a test can count what was drawn."""
    ax.add_patch(Rectangle((x0 + c, r), 1, 1, facecolor=color, alpha=0.6 if fill else 1.0, fill=fill,
                           edgecolor=color if not fill else "black", linewidth=2.0 if not fill else 1.5, gid=gid))
    if label:
        ax.text(x0 + c + 0.5, r + 0.5, label, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], color: str):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color=color, lw=0.9, alpha=0.8,
                                                          shrinkA=2, shrinkB=2))


def plot_conv_window(H: int, W: int, KH: int, KW: int, out_pixel: tuple[int, int]):
    """Which input pixels one output pixel of a stride-1, unpadded conv2d reads: the KH x KW window
    x[i+p, j+q], each cell labelled with its kernel offset (p, q), i.e. the weight w[p, q] it meets.

    One channel and one filter; with C channels the same window is read in each channel.
    """
    OH, OW = _conv_sizes(H, W, KH, KW)
    i, j = _require_pixel(out_pixel, OH, OW, "output pixel")
    x_out = W + 2  # the output grid's left edge
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * (x_out + OW + 1)), max(3.0, 0.75 * (H + 2.5))))
    _grid(ax, 0, H, W, f"input x ({H}×{W})")
    _grid(ax, x_out, OH, OW, f"output y ({OH}×{OW})")
    for p in range(KH):
        for q in range(KW):
            _mark(ax, 0, i + p, j + q, "tab:orange", "window", f"p={p}\nq={q}")
    _mark(ax, x_out, i, j, "tab:green", "output", f"y[{i},{j}]")
    _arrow(ax, (j + KW, i + KH / 2), (x_out + j, i + 0.5), "black")
    ax.text(-0.9, H / 2, "row (pixel)", rotation=90, ha="center", va="center", fontsize=8)
    ax.text(W / 2, H + 0.3, "column (pixel)", ha="center", va="top", fontsize=8)
    ax.set_xlim(-1.2, x_out + OW + 0.2)
    ax.set_ylim(H + 1.0, -1.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"conv2d (stride 1, no padding, {KH}×{KW} kernel): output y[{i},{j}] reads the {KH * KW} inputs "
                 f"x[{i}+p, {j}+q],\neach times the weight w[p, q] of its kernel offset (p down, q across)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_gather_scatter(H: int, W: int, KH: int, KW: int, out_pixel: tuple[int, int], in_pixel: tuple[int, int]):
    """Forward conv2d gathers; its input gradient scatters, unless it is turned around into a gather.

    Three panels on the same input (left grid) and output (right grid): (1) forward, one thread per output
    reads its KH x KW window; (2) ∂L/∂x as a scatter, one thread per output adds into its window, and the
    input pixels are shaded by how many threads add into each (hence atomics); (3) ∂L/∂x as a gather, one
    thread per input reads the outputs whose window covered it (δ[r-p, s-q]) and writes only its own pixel.
    """
    OH, OW = _conv_sizes(H, W, KH, KW)
    i, j = _require_pixel(out_pixel, OH, OW, "output pixel")
    r, s = _require_pixel(in_pixel, H, W, "input pixel")
    writers = conv_writers(H, W, KH, KW)
    x_out = W + 2  # the output grid's left edge
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    titles = (f"1. forward: GATHER\nthread = output y[{i},{j}]: reads {KH * KW} inputs, writes 1",
              f"2. ∂L/∂x as a SCATTER\nthread = output δ[{i},{j}]: adds into {KH * KW} inputs; number = threads adding\n"
              f"into that pixel (up to {writers.max()}): they collide, so every add must be atomic",
              f"3. ∂L/∂x as a GATHER (notebook 06)\nthread = input pixel [{r},{s}]: reads the {writers[r, s]} outputs "
              f"δ[{r}-p, {s}-q]\nwhose window covered it, writes only its own pixel: no atomics")
    for k, (ax, title) in enumerate(zip(axes, titles)):
        _grid(ax, 0, H, W, "input x (H×W)" if k == 0 else "input gradient ∂L/∂x", writers if k == 1 else None)
        _grid(ax, x_out, OH, OW, "output y" if k == 0 else "output gradient δ")
        if k < 2:  # the window of output (i, j), read (forward) or written (scatter)
            for p in range(KH):
                for q in range(KW):
                    if k == 0:
                        _mark(ax, 0, i + p, j + q, "tab:orange", "read", f"{p},{q}")
                    else:
                        _mark(ax, 0, i + p, j + q, "tab:orange", "written", fill=False)
                    start, end = (q + j + 0.5, p + i + 0.5), (x_out + j + 0.5, i + 0.5)
                    _arrow(ax, *((start, end) if k == 0 else (end, start)), "tab:orange")
            _mark(ax, x_out, i, j, "tab:green", "thread")
        else:
            _mark(ax, 0, r, s, "tab:green", "thread")
            for p in range(KH):
                for q in range(KW):
                    oi, oj = r - p, s - q
                    if 0 <= oi < OH and 0 <= oj < OW:
                        _mark(ax, x_out, oi, oj, "tab:blue", "gathered", f"{p},{q}")
                        _arrow(ax, (x_out + oj + 0.5, oi + 0.5), (s + 0.5, r + 0.5), "tab:blue")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-1, x_out + OW + 0.2)
        ax.set_ylim(max(H, OH) + 0.2, -1.6)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.suptitle(f"conv2d, {H}×{W} input, {KH}×{KW} kernel, one channel and one filter (labels in cells: kernel offset "
                 f"p,q; numbers outside: row and column)", fontsize=10)
    fig.tight_layout()
    return fig
