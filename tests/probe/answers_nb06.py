"""Exercises 06.1-06.4 (conv and pool): answers written from the learner notebook."""

from numba import cuda, float32

from ._answer import Answer

# ---- 06.1 average pooling


@cuda.jit
def ap_f_ok(x, y):
    """Correct forward."""
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    if z < y.shape[0] * C and i < y.shape[2] and j < y.shape[3]:
        n, c = z // C, z % C
        s = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1]
        y[n, c, i, j] = s * float32(0.25)


@cuda.jit
def ap_b_ok(dy, dx):
    """Correct backward."""
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    if z < dx.shape[0] * C and h < dx.shape[2] and w < dx.shape[3]:
        n, c = z // C, z % C
        i, j = h // 2, w // 2
        if i < dy.shape[2] and j < dy.shape[3]:
            dx[n, c, h, w] = dy[n, c, i, j] * float32(0.25)
        else:
            dx[n, c, h, w] = float32(0)


@cuda.jit
def ap_f_loops(x, y):
    """Correct forward: loops over the window, divide by float32(4)."""
    j, i, z = cuda.grid(3)
    N, C, OH, OW = y.shape
    if i >= OH or j >= OW or z >= N * C:
        return
    n = z // C
    c = z - n * C
    s = float32(0)
    for a in range(2):
        for b in range(2):
            s += x[n, c, 2 * i + a, 2 * j + b]
    y[n, c, i, j] = s / float32(4)


@cuda.jit
def ap_b_guard2(dy, dx):
    """Correct backward: the dropped row/column tested as h >= 2 * OH."""
    w, h, z = cuda.grid(3)
    N, C, H, W = dx.shape
    if h < H and w < W and z < N * C:
        n, c = z // C, z % C
        v = float32(0)
        if h < 2 * dy.shape[2] and w < 2 * dy.shape[3]:
            v = dy[n, c, h // 2, w // 2] / float32(4)
        dx[n, c, h, w] = v


@cuda.jit
def ap_f_f64(x, y):
    """Correct in effect: s * 0.25 with a bare 0.25 (the hint calls it float64, but the compiler narrows a lone
    * 0.25 back to float32: the PTX has no .f64)."""
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    if z < y.shape[0] * C and i < y.shape[2] and j < y.shape[3]:
        n, c = z // C, z % C
        s = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1]
        y[n, c, i, j] = s * 0.25


@cuda.jit
def ap_f_f64_acc(x, y):
    """Wrong: float64 accumulator (s = 0.0) and float64 literals in a chain: float64 in the PTX."""
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    if z < y.shape[0] * C and i < y.shape[2] and j < y.shape[3]:
        n, c = z // C, z % C
        s = 0.0
        for a in range(2):
            for b in range(2):
                s += x[n, c, 2 * i + a, 2 * j + b] * 0.5
        y[n, c, i, j] = s * 0.5


@cuda.jit
def ap_f_sum(x, y):
    """Wrong: forward returns the window's sum."""
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    if z < y.shape[0] * C and i < y.shape[2] and j < y.shape[3]:
        n, c = z // C, z % C
        s = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1]
        y[n, c, i, j] = s


@cuda.jit
def ap_b_no_zero(dy, dx):
    """Wrong: backward leaves the dropped odd row/column unwritten."""
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    if z < dx.shape[0] * C and h < dx.shape[2] and w < dx.shape[3]:
        n, c = z // C, z % C
        i, j = h // 2, w // 2
        if i < dy.shape[2] and j < dy.shape[3]:
            dx[n, c, h, w] = dy[n, c, i, j] * float32(0.25)


@cuda.jit
def ap_b_full(dy, dx):
    """Wrong: backward passes the whole gradient (no / 4)."""
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    if z < dx.shape[0] * C and h < dx.shape[2] and w < dx.shape[3]:
        n, c = z // C, z % C
        i, j = h // 2, w // 2
        if i < dy.shape[2] and j < dy.shape[3]:
            dx[n, c, h, w] = dy[n, c, i, j]
        else:
            dx[n, c, h, w] = float32(0)


@cuda.jit
def ap_f_swapped_nc(x, y):
    """Correct: z decoded as n = z % N, c = z // N (another bijection of z onto (n, c): every (n, c) is computed once)."""
    j, i, z = cuda.grid(3)
    N, C = y.shape[0], y.shape[1]
    if z < N * C and i < y.shape[2] and j < y.shape[3]:
        n, c = z % N, z // N
        s = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j] + x[n, c, 2 * i + 1, 2 * j + 1]
        y[n, c, i, j] = s * float32(0.25)


@cuda.jit
def ap_f_no_stride(x, y):
    """Wrong: window at (i, j) instead of (2i, 2j) (stride 1)."""
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    if z < y.shape[0] * C and i < y.shape[2] and j < y.shape[3]:
        n, c = z // C, z % C
        s = x[n, c, i, j] + x[n, c, i, j + 1] + x[n, c, i + 1, j] + x[n, c, i + 1, j + 1]
        y[n, c, i, j] = s * float32(0.25)


# ---- 06.2 max pooling without argmax


@cuda.jit
def mp_f_ok(x, y):
    """Correct forward (first element, strictly greater)."""
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    if z < y.shape[0] * C and i < y.shape[2] and j < y.shape[3]:
        n, c = z // C, z % C
        m = x[n, c, 2 * i, 2 * j]
        for a in range(2):
            for b in range(2):
                v = x[n, c, 2 * i + a, 2 * j + b]
                if v > m:
                    m = v
        y[n, c, i, j] = m


@cuda.jit
def mp_b_ok(x, dy, dx):
    """Correct backward: scan, compare winner with k."""
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    if z < dx.shape[0] * C and h < dx.shape[2] and w < dx.shape[3]:
        n, c = z // C, z % C
        i, j = h // 2, w // 2
        g = float32(0)
        if i < dy.shape[2] and j < dy.shape[3]:
            best = 0
            m = x[n, c, 2 * i, 2 * j]
            for k in range(1, 4):
                v = x[n, c, 2 * i + k // 2, 2 * j + k % 2]
                if v > m:
                    m = v
                    best = k
            if best == (h % 2) * 2 + w % 2:
                g = dy[n, c, i, j]
        dx[n, c, h, w] = g


@cuda.jit
def mp_f_max(x, y):
    """Correct forward: nested max()."""
    j, i, z = cuda.grid(3)
    N, C, OH, OW = y.shape
    if i < OH and j < OW and z < N * C:
        n, c = z // C, z % C
        y[n, c, i, j] = max(max(x[n, c, 2 * i, 2 * j], x[n, c, 2 * i, 2 * j + 1]),
                            max(x[n, c, 2 * i + 1, 2 * j], x[n, c, 2 * i + 1, 2 * j + 1]))


@cuda.jit
def mp_b_earlier(x, dy, dx):
    """Correct backward: a pixel wins if it equals the max and no earlier pixel of the window equals it."""
    w, h, z = cuda.grid(3)
    N, C, H, W = dx.shape
    if h < H and w < W and z < N * C:
        n, c = z // C, z % C
        i, j = h // 2, w // 2
        out = float32(0)
        if i < dy.shape[2] and j < dy.shape[3]:
            m = max(max(x[n, c, 2 * i, 2 * j], x[n, c, 2 * i, 2 * j + 1]),
                    max(x[n, c, 2 * i + 1, 2 * j], x[n, c, 2 * i + 1, 2 * j + 1]))
            me = (h % 2) * 2 + w % 2
            first = True
            for k in range(me):
                if x[n, c, 2 * i + k // 2, 2 * j + k % 2] == m:
                    first = False
            if first and x[n, c, h, w] == m:
                out = dy[n, c, i, j]
        dx[n, c, h, w] = out


@cuda.jit
def mp_b_all_ties(x, dy, dx):
    """Wrong: every pixel equal to the max gets the gradient (ties duplicated)."""
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    if z < dx.shape[0] * C and h < dx.shape[2] and w < dx.shape[3]:
        n, c = z // C, z % C
        i, j = h // 2, w // 2
        g = float32(0)
        if i < dy.shape[2] and j < dy.shape[3]:
            m = max(max(x[n, c, 2 * i, 2 * j], x[n, c, 2 * i, 2 * j + 1]),
                    max(x[n, c, 2 * i + 1, 2 * j], x[n, c, 2 * i + 1, 2 * j + 1]))
            if x[n, c, h, w] == m:
                g = dy[n, c, i, j]
        dx[n, c, h, w] = g


@cuda.jit
def mp_b_last_tie(x, dy, dx):
    """Wrong: on ties the LAST maximum wins (>= in the scan)."""
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    if z < dx.shape[0] * C and h < dx.shape[2] and w < dx.shape[3]:
        n, c = z // C, z % C
        i, j = h // 2, w // 2
        g = float32(0)
        if i < dy.shape[2] and j < dy.shape[3]:
            best = 0
            m = x[n, c, 2 * i, 2 * j]
            for k in range(1, 4):
                v = x[n, c, 2 * i + k // 2, 2 * j + k % 2]
                if v >= m:
                    m = v
                    best = k
            if best == (h % 2) * 2 + w % 2:
                g = dy[n, c, i, j]
        dx[n, c, h, w] = g


@cuda.jit
def mp_f_zero_start(x, y):
    """Wrong: the max starts at 0 (all-negative windows give 0)."""
    j, i, z = cuda.grid(3)
    C = y.shape[1]
    if z < y.shape[0] * C and i < y.shape[2] and j < y.shape[3]:
        n, c = z // C, z % C
        m = float32(0)
        for a in range(2):
            for b in range(2):
                v = x[n, c, 2 * i + a, 2 * j + b]
                if v > m:
                    m = v
        y[n, c, i, j] = m


@cuda.jit
def mp_b_column_major(x, dy, dx):
    """Wrong: scans the window column-major, (0,0), (1,0), (0,1), (1,1) (wrong winner on some ties)."""
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    if z < dx.shape[0] * C and h < dx.shape[2] and w < dx.shape[3]:
        n, c = z // C, z % C
        i, j = h // 2, w // 2
        g = float32(0)
        if i < dy.shape[2] and j < dy.shape[3]:
            bi, bj = 0, 0
            m = x[n, c, 2 * i, 2 * j]
            for b in range(2):
                for a in range(2):
                    v = x[n, c, 2 * i + a, 2 * j + b]
                    if v > m:
                        m = v
                        bi, bj = a, b
            if bi == h % 2 and bj == w % 2:
                g = dy[n, c, i, j]
        dx[n, c, h, w] = g


@cuda.jit
def mp_b_no_drop(x, dy, dx):
    """Wrong: the dropped last row/column is not written (only window pixels write)."""
    w, h, z = cuda.grid(3)
    C = dx.shape[1]
    if z < dx.shape[0] * C and h < dx.shape[2] and w < dx.shape[3]:
        n, c = z // C, z % C
        i, j = h // 2, w // 2
        if i < dy.shape[2] and j < dy.shape[3]:
            best = 0
            m = x[n, c, 2 * i, 2 * j]
            for k in range(1, 4):
                v = x[n, c, 2 * i + k // 2, 2 * j + k % 2]
                if v > m:
                    m = v
                    best = k
            dx[n, c, h, w] = dy[n, c, i, j] if best == (h % 2) * 2 + w % 2 else float32(0)


# ---- 06.3 conv2d weight gradient


@cuda.jit
def cw_ok(dy, x, dw):
    """Correct: one thread per weight."""
    j, i, z = cuda.grid(3)
    F, C, KH, KW = dw.shape
    if i < KH and j < KW and z < F * C:
        f, c = z // C, z % C
        acc = float32(0)
        for n in range(dy.shape[0]):
            for yy in range(dy.shape[2]):
                for xx in range(dy.shape[3]):
                    acc += dy[n, f, yy, xx] * x[n, c, yy + i, xx + j]
        dw[f, c, i, j] = acc


@cuda.jit
def cw_stride(dy, x, dw):
    """Correct: grid-stride over all three dimensions, other loop order."""
    j0, i0, z0 = cuda.grid(3)
    sj, si, sz = cuda.gridsize(3)
    F, C, KH, KW = dw.shape
    for z in range(z0, F * C, sz):
        f, c = z // C, z % C
        for i in range(i0, KH, si):
            for j in range(j0, KW, sj):
                acc = float32(0)
                for xx in range(dy.shape[3]):
                    for yy in range(dy.shape[2]):
                        for n in range(dy.shape[0]):
                            acc += x[n, c, yy + i, xx + j] * dy[n, f, yy, xx]
                dw[f, c, i, j] = acc


@cuda.jit
def cw_swapped_ij(dy, x, dw):
    """Wrong: i and j swapped in the read of x (guarded to stay in bounds)."""
    j, i, z = cuda.grid(3)
    F, C, KH, KW = dw.shape
    if i < KH and j < KW and z < F * C:
        f, c = z // C, z % C
        acc = float32(0)
        for n in range(dy.shape[0]):
            for yy in range(dy.shape[2]):
                for xx in range(dy.shape[3]):
                    if yy + j < x.shape[2] and xx + i < x.shape[3]:
                        acc += dy[n, f, yy, xx] * x[n, c, yy + j, xx + i]
        dw[f, c, i, j] = acc


@cuda.jit
def cw_no_batch(dy, x, dw):
    """Wrong: forgets the batch (n = 0 only)."""
    j, i, z = cuda.grid(3)
    F, C, KH, KW = dw.shape
    if i < KH and j < KW and z < F * C:
        f, c = z // C, z % C
        acc = float32(0)
        for yy in range(dy.shape[2]):
            for xx in range(dy.shape[3]):
                acc += dy[0, f, yy, xx] * x[0, c, yy + i, xx + j]
        dw[f, c, i, j] = acc


@cuda.jit
def cw_short(dy, x, dw):
    """Wrong: the x loop one step short."""
    j, i, z = cuda.grid(3)
    F, C, KH, KW = dw.shape
    if i < KH and j < KW and z < F * C:
        f, c = z // C, z % C
        acc = float32(0)
        for n in range(dy.shape[0]):
            for yy in range(dy.shape[2]):
                for xx in range(dy.shape[3] - 1):
                    acc += dy[n, f, yy, xx] * x[n, c, yy + i, xx + j]
        dw[f, c, i, j] = acc


@cuda.jit
def cw_fc_swapped(dy, x, dw):
    """Correct: z decoded as f = z % F, c = z // F (another bijection onto (f, c); every weight computed once)."""
    j, i, z = cuda.grid(3)
    F, C, KH, KW = dw.shape
    if i < KH and j < KW and z < F * C:
        f, c = z % F, z // F
        acc = float32(0)
        for n in range(dy.shape[0]):
            for yy in range(dy.shape[2]):
                for xx in range(dy.shape[3]):
                    acc += dy[n, f, yy, xx] * x[n, c, yy + i, xx + j]
        dw[f, c, i, j] = acc


@cuda.jit
def cw_into_dw(dy, x, dw):
    """Wrong: accumulates into dw directly (nothing zeroes it)."""
    j, i, z = cuda.grid(3)
    F, C, KH, KW = dw.shape
    if i < KH and j < KW and z < F * C:
        f, c = z // C, z % C
        for n in range(dy.shape[0]):
            for yy in range(dy.shape[2]):
                for xx in range(dy.shape[3]):
                    dw[f, c, i, j] += dy[n, f, yy, xx] * x[n, c, yy + i, xx + j]


@cuda.jit
def cw_no_guard(dy, x, dw):
    """Wrong: no guard on i (block has 4 rows, kernel 3)."""
    j, i, z = cuda.grid(3)
    F, C, KH, KW = dw.shape
    if j < KW:
        f, c = z // C, z % C
        acc = float32(0)
        for n in range(dy.shape[0]):
            for yy in range(dy.shape[2]):
                for xx in range(dy.shape[3]):
                    acc += dy[n, f, yy, xx] * x[n, c, yy + i, xx + j]
        dw[f, c, i, j] = acc


# ---- 06.4 the seed kernel, fixed


@cuda.jit
def seed_ok(output, input, weights, biases, width, height, depth):  # noqa: A002 - the notebook\'s names
    """Correct: the hint's three fixes."""
    col, row = cuda.grid(2)
    if row < height and col < width:
        s = float32(0.0)
        for d in range(depth):
            for i in range(3):
                for j in range(3):
                    x = i - 1 + row
                    y = j - 1 + col
                    if x >= 0 and x < height and y >= 0 and y < width:
                        s += input[d * width * height + x * width + y] * weights[d * 9 + i * 3 + j]
        s += biases[0]
        output[row * width + col] = s


@cuda.jit
def seed_stride(output, input, weights, biases, width, height, depth):  # noqa: A002 - the notebook\'s names
    """Correct: 2-D grid-stride, bias first, clamped window bounds."""
    c0, r0 = cuda.grid(2)
    sc, sr = cuda.gridsize(2)
    for row in range(r0, height, sr):
        for col in range(c0, width, sc):
            s = biases[0]
            for d in range(depth):
                for i in range(max(0, 1 - row), min(3, height + 1 - row)):
                    for j in range(max(0, 1 - col), min(3, width + 1 - col)):
                        s += input[(d * height + row + i - 1) * width + col + j - 1] * weights[(d * 3 + i) * 3 + j]
            output[row * width + col] = s


@cuda.jit
def seed_bias_per_pixel(output, input, weights, biases, width, height, depth):  # noqa: A002 - the notebook\'s names
    """Wrong: keeps the article's biases[row * width + col]."""
    col, row = cuda.grid(2)
    if row < height and col < width:
        s = float32(0.0)
        for d in range(depth):
            for i in range(3):
                for j in range(3):
                    x = i - 1 + row
                    y = j - 1 + col
                    if x >= 0 and x < height and y >= 0 and y < width:
                        s += input[d * width * height + x * width + y] * weights[d * 9 + i * 3 + j]
        s += biases[row * width + col]
        output[row * width + col] = s


@cuda.jit
def seed_no_guard(output, input, weights, biases, width, height, depth):  # noqa: A002 - the notebook\'s names
    """Wrong: 2-D index but no bounds guard."""
    col, row = cuda.grid(2)
    s = float32(0.0)
    for d in range(depth):
        for i in range(3):
            for j in range(3):
                x = i - 1 + row
                y = j - 1 + col
                if x >= 0 and x < height and y >= 0 and y < width:
                    s += input[d * width * height + x * width + y] * weights[d * 9 + i * 3 + j]
    s += biases[0]
    output[row * width + col] = s


@cuda.jit
def seed_1d_index(output, input, weights, biases, width, height, depth):  # noqa: A002 - the notebook\'s names
    """Wrong: keeps the 1-D idx (launched on a 2-D grid) with a guard on idx."""
    idx = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    row = idx // width
    col = idx % width
    if row < height:
        s = float32(0.0)
        for d in range(depth):
            for i in range(3):
                for j in range(3):
                    x = i - 1 + row
                    y = j - 1 + col
                    if x >= 0 and x < height and y >= 0 and y < width:
                        s += input[d * width * height + x * width + y] * weights[d * 9 + i * 3 + j]
        s += biases[0]
        output[idx] = s


@cuda.jit
def seed_rowcol_swapped(output, input, weights, biases, width, height, depth):  # noqa: A002 - the notebook\'s names
    """Wrong: row, col = cuda.grid(2) (x along rows) with output[row * width + col]: right only with matching guards;
    here the guard is row < width and col < height (swapped)."""
    row, col = cuda.grid(2)
    if row < width and col < height:
        s = float32(0.0)
        for d in range(depth):
            for i in range(3):
                for j in range(3):
                    x = i - 1 + row
                    y = j - 1 + col
                    if x >= 0 and x < height and y >= 0 and y < width:
                        s += input[d * width * height + x * width + y] * weights[d * 9 + i * 3 + j]
        s += biases[0]
        if row < height and col < width:
            output[row * width + col] = s


@cuda.jit
def seed_f64(output, input, weights, biases, width, height, depth):  # noqa: A002 - the notebook\'s names
    """Wrong: s = 0.0 (float64 accumulation)."""
    col, row = cuda.grid(2)
    if row < height and col < width:
        s = 0.0
        for d in range(depth):
            for i in range(3):
                for j in range(3):
                    x = i - 1 + row
                    y = j - 1 + col
                    if x >= 0 and x < height and y >= 0 and y < width:
                        s += input[d * width * height + x * width + y] * weights[d * 9 + i * 3 + j]
        s += biases[0]
        output[row * width + col] = s


@cuda.jit
def seed_no_pad_check(output, input, weights, biases, width, height, depth):  # noqa: A002 - the notebook\'s names
    """Wrong: padding check only on x (rows), not y (columns): wraps into the neighbouring row."""
    col, row = cuda.grid(2)
    if row < height and col < width:
        s = float32(0.0)
        for d in range(depth):
            for i in range(3):
                for j in range(3):
                    x = i - 1 + row
                    y = j - 1 + col
                    idx = d * width * height + x * width + y
                    if x >= 0 and x < height and 0 <= idx < input.size:
                        s += input[idx] * weights[d * 9 + i * 3 + j]
        s += biases[0]
        output[row * width + col] = s


ANSWERS = [
    Answer("06.1", "plain", "check_avgpool", (ap_f_ok, ap_b_ok), True),
    Answer("06.1", "loops-guard2", "check_avgpool", (ap_f_loops, ap_b_guard2), True),
    Answer("06.1", "lone-0.25-literal", "check_avgpool", (ap_f_f64, ap_b_ok), True),
    Answer("06.1", "float64-accumulator", "check_avgpool", (ap_f_f64_acc, ap_b_ok), False),
    Answer("06.1", "forward-sum", "check_avgpool", (ap_f_sum, ap_b_ok), False),
    Answer("06.1", "backward-dropped-unwritten", "check_avgpool", (ap_f_ok, ap_b_no_zero), False),
    Answer("06.1", "backward-no-quarter", "check_avgpool", (ap_f_ok, ap_b_full), False),
    Answer("06.1", "z-decoded-n-fastest", "check_avgpool", (ap_f_swapped_nc, ap_b_ok), True),
    Answer("06.1", "stride-1-window", "check_avgpool", (ap_f_no_stride, ap_b_ok), False),
    Answer("06.2", "scan-k", "check_maxpool", (mp_f_ok, mp_b_ok), True),
    Answer("06.2", "max-and-earlier-equal", "check_maxpool", (mp_f_max, mp_b_earlier), True),
    Answer("06.2", "all-ties-win", "check_maxpool", (mp_f_ok, mp_b_all_ties), False),
    Answer("06.2", "last-tie-wins", "check_maxpool", (mp_f_ok, mp_b_last_tie), False),
    Answer("06.2", "max-starts-at-0", "check_maxpool", (mp_f_zero_start, mp_b_ok), False),
    Answer("06.2", "column-major-scan", "check_maxpool", (mp_f_ok, mp_b_column_major), False),
    Answer("06.2", "dropped-unwritten", "check_maxpool", (mp_f_ok, mp_b_no_drop), False),
    Answer("06.3", "one-thread-per-weight", "check_conv_weight_grad", (cw_ok,), True),
    Answer("06.3", "grid-stride-loop-order", "check_conv_weight_grad", (cw_stride,), True),
    Answer("06.3", "swapped-ij", "check_conv_weight_grad", (cw_swapped_ij,), False),
    Answer("06.3", "no-batch", "check_conv_weight_grad", (cw_no_batch,), False),
    Answer("06.3", "loop-short", "check_conv_weight_grad", (cw_short,), False),
    Answer("06.3", "z-decoded-f-fastest", "check_conv_weight_grad", (cw_fc_swapped,), True),
    Answer("06.3", "into-dw", "check_conv_weight_grad", (cw_into_dw,), False),
    Answer("06.3", "no-guard-i", "check_conv_weight_grad", (cw_no_guard,), False),
    Answer("06.4", "hint", "check_seed_conv_fixed", (seed_ok,), True),
    Answer("06.4", "grid-stride-clamped", "check_seed_conv_fixed", (seed_stride,), True),
    Answer("06.4", "bias-per-pixel", "check_seed_conv_fixed", (seed_bias_per_pixel,), False),
    Answer("06.4", "no-guard", "check_seed_conv_fixed", (seed_no_guard,), False),
    Answer("06.4", "1d-index", "check_seed_conv_fixed", (seed_1d_index,), False),
    Answer("06.4", "swapped-guard", "check_seed_conv_fixed", (seed_rowcol_swapped,), False),
    Answer("06.4", "float64-acc", "check_seed_conv_fixed", (seed_f64,), False),
    Answer("06.4", "column-padding-missing", "check_seed_conv_fixed", (seed_no_pad_check,), False),
]


@cuda.jit
def cw_hardcoded(dy, x, dw):
    """Wrong: the statement's sizes copied in: batch 2, C = 3, a 3 x 5 kernel, a 7 x 9 output."""
    j, i, z = cuda.grid(3)
    if i < 3 and j < 5 and z < 12:
        f, c = z // 3, z % 3
        acc = float32(0)
        for n in range(2):
            for yy in range(7):
                for xx in range(9):
                    acc += dy[n, f, yy, xx] * x[n, c, yy + i, xx + j]
        dw[f, c, i, j] = acc


ANSWERS.append(Answer("06.3", "hard-coded-sizes", "check_conv_weight_grad", (cw_hardcoded,), False))


@cuda.jit
def seed_hardcoded(output, input, weights, biases, width, height, depth):  # noqa: A002 - the notebook's names
    """Wrong: the check's 9 x 11 image and 3 channels copied in, the size parameters ignored."""
    col, row = cuda.grid(2)
    if row < 9 and col < 11:
        s = float32(0.0)
        for d in range(3):
            for i in range(3):
                for j in range(3):
                    x = i - 1 + row
                    y = j - 1 + col
                    if x >= 0 and x < 9 and y >= 0 and y < 11:
                        s += input[d * 99 + x * 11 + y] * weights[d * 9 + i * 3 + j]
        output[row * 11 + col] = s + biases[0]


ANSWERS.append(Answer("06.4", "hard-coded-9x11x3", "check_seed_conv_fixed", (seed_hardcoded,), False))
