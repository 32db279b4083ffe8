"""Pictures of a traced launch (GPU-Puzzles style): who wrote each element, what one thread read, which
sectors one warp request touched. Drawn from :func:`nbkit.tracer.trace` records, never from static images;
exercise checks show them when a learner's kernel fails, notebook 09 uses them to explain coalescing.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from nbkit.tracer import SECTOR_BYTES, Request, Trace


def _grid(values: np.ndarray) -> np.ndarray:
    """Show 1-D arrays as one row and n-D arrays by their last two axes (leading axes folded into rows)."""
    if values.ndim == 0:
        return values.reshape(1, 1)
    if values.ndim == 1:
        return values.reshape(1, -1)
    return values.reshape(-1, values.shape[-1])


def _axes(ax, shape: tuple[int, int]):
    if ax is not None:
        return ax.figure, ax
    rows, cols = shape
    fig, ax = plt.subplots(figsize=(min(14.0, max(7.0, 0.45 * cols + 1.5)), min(10.0, max(1.6, 0.45 * rows + 1.2))))
    return fig, ax


def _frame(ax, shape: tuple[int, int], array: str, ndim: int) -> None:
    rows, cols = shape
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_xlabel(f"{array}: column (last index)" if ndim > 1 else f"{array}: element index")
    ax.set_ylabel("row" if ndim > 1 else "")
    ax.set_aspect("equal")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if ndim <= 1:
        ax.set_yticks([])  # after the locator, which would bring the ticks back


def plot_write_map(trace: Trace, array: str, ax=None, by: str = "thread", annotate: bool | None = None):
    """Colour each element of ``array`` by the thread (``by='thread'``) or block (``by='block'``) that wrote it.

    Never-written elements are drawn white with a red cross, elements written by several threads red with
    their writer count: the two things a check wants the learner to see.
    """
    if by not in ("thread", "block"):
        raise ValueError(f"by must be 'thread' or 'block', got {by!r}")
    wm = trace.write_map(array)
    info = trace.array_info(array)
    owner = _grid(wm.thread if by == "thread" else wm.block)
    writers = _grid(wm.writers)
    fig, ax = _axes(ax, owner.shape)
    base = plt.get_cmap("tab20")
    palette = [base(i) for i in range(20) if i not in (6, 7)]  # no reds: red marks the errors
    cmap = ListedColormap(palette)
    shown = np.ma.masked_where(writers != 1, owner % len(palette))
    ax.imshow(shown, cmap=cmap, vmin=0, vmax=len(palette) - 1, interpolation="nearest")
    rows, cols = owner.shape
    if annotate is None:
        annotate = rows * cols <= 400
    for r in range(rows):
        for c in range(cols):
            w = writers[r, c]
            if w == 0:
                ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor="white", edgecolor="lightgrey"))
                ax.plot([c - 0.35, c + 0.35], [r - 0.35, r + 0.35], color="tab:red", lw=1)
                ax.plot([c - 0.35, c + 0.35], [r + 0.35, r - 0.35], color="tab:red", lw=1)
            elif w > 1:
                ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor="tab:red", edgecolor="black"))
                ax.text(c, r, f"×{w}", ha="center", va="center", fontsize=7, color="white")
            elif annotate:
                who = (trace.thread_index(int(owner[r, c])) if by == "thread" else trace.block_index(int(owner[r, c])))
                ax.text(c, r, ",".join(str(v) for v in who), ha="center", va="center", fontsize=6)
    _frame(ax, owner.shape, array, len(info.shape))
    never, several = int((writers == 0).sum()), int((writers > 1).sum())
    ax.set_title(f"{trace.kernel_name}: who wrote {array} (colour = {by}"
                 f"{' (x,y)' if by == 'thread' and trace.block[1] > 1 else ''} index)\n"
                 f"{never} element(s) never written, {several} written by several threads")
    ax.legend(handles=[Patch(facecolor="white", edgecolor="tab:red", label="never written"),
                       Patch(facecolor="tab:red", label="written by several threads")],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def plot_reads(trace: Trace, array: str, thread: tuple, ax=None):
    """Which elements of ``array`` one thread read, and how often; ``thread`` = (block, thread index)."""
    counts = _grid(trace.read_map(array, thread))
    info = trace.array_info(array)
    fig, ax = _axes(ax, counts.shape)
    shown = np.ma.masked_where(counts == 0, counts)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=max(1, int(counts.max())), interpolation="nearest")
    rows, cols = counts.shape
    for r in range(rows):
        for c in range(cols):
            if counts[r, c] and rows * cols <= 400:
                dark = counts[r, c] > counts.max() / 2
                ax.text(c, r, str(int(counts[r, c])), ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="lightgrey", lw=0.5))
    _frame(ax, counts.shape, array, len(info.shape))
    b, t = thread
    fig.colorbar(im, ax=ax, label="reads by this thread", shrink=0.8)
    ax.set_title(f"{trace.kernel_name}: elements of {array} read by block {b}, thread {t}\n"
                 f"{int((counts > 0).sum())} distinct element(s), {int(counts.sum())} read(s)")
    fig.tight_layout()
    return fig


def plot_warp_request(trace: Trace, request: Request, ax=None):
    """The 32-byte sectors one global warp request touched: lanes above, memory (in sectors) below."""
    if request.space != "global":
        raise ValueError(f"plot_warp_request draws global-memory sectors; request {request.index} is in "
                         f"{request.space} memory (use trace.bank_conflicts for shared memory).")
    sectors = request.sectors
    lo, hi = int(sectors.min()), int(sectors.max())
    touched = sorted(set(sectors.tolist()))
    # memory row: every sector from the lowest to the highest touched; when that is too many to see (a strided
    # request spans hundreds), only the touched ones, with each run of untouched sectors collapsed into a gap
    compress = hi - lo + 1 > 48
    xpos: dict[int, float] = {}
    gaps: list[tuple[float, int]] = []
    x, prev = 0.0, lo - 1
    for s in (touched if compress else range(lo, hi + 1)):
        if compress and s != prev + 1 and xpos:
            gaps.append((x, s - prev - 1))
            x += 1.0
        xpos[s], prev = x, s
        x += 1.0
    n_show = x
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(14.0, max(8.0, 0.5 * n_show + 3)), 3.4))
    else:
        fig = ax.figure
    for s, x0 in xpos.items():
        hit = s in touched
        ax.add_patch(Rectangle((x0, 0), 1, 1, facecolor="tab:orange" if hit else "white",
                               edgecolor="black", alpha=0.8 if hit else 1.0))
        if len(xpos) <= 40:
            ax.text(x0 + 0.5, 0.5, f"{s * SECTOR_BYTES}", ha="center", va="center", fontsize=6, rotation=90)
    for x0, skipped in gaps:
        ax.text(x0 + 0.5, 0.5, f"⋯\n{skipped}", ha="center", va="center", fontsize=6, color="gray")
    # lanes: one dot per lane above the sector holding its element, lines down to memory
    y_lane = 2.2
    for lane, addr in zip(request.lanes, request.addresses):
        x = xpos[int(addr) // SECTOR_BYTES] + (int(addr) % SECTOR_BYTES) / SECTOR_BYTES
        ax.plot([x, x], [1.0, y_lane], color="tab:blue", lw=0.6, alpha=0.6)
        ax.plot(x, y_lane, "o", color="tab:blue", ms=3)
    ax.set_xlim(-0.2, n_show + 0.2)
    ax.set_ylim(-0.3, y_lane + 0.6)
    ax.set_yticks([0.5, y_lane], ["sectors (byte\noffset)", f"{len(request.lanes)} active\nlanes"])
    ax.set_xlabel(f"address of {request.array} in 32-byte sectors from byte {lo * SECTOR_BYTES} "
                  f"({request.itemsize}-byte elements; array 256-byte aligned)"
                  + ("; ⋯ n: n untouched sectors not drawn" if gaps else ""))
    if gaps:
        ax.set_xticks([])  # positions along a collapsed axis are not addresses
    used = len(np.unique(request.addresses)) * request.itemsize
    block = request.block[0] if len(request.block) == 1 else request.block
    ax.set_title(f"{request.op} of {request.array} at {request.site}, block {block}, warp {request.warp}, "
                 f"execution {request.n}\n{len(sectors)} sector(s) = {len(sectors) * SECTOR_BYTES} bytes moved "
                 f"for {used} bytes used (MODEL: no caches)")
    fig.tight_layout()
    return fig
