"""Kernels that exist only to prove the PTX test can fail. Imported by test_ptx.py in a subprocess."""

from numba import cuda, float32

from nbkit.registry import kernel

TILE = 8


@kernel("void(float32[::1], float32[::1])")
def half_with_float64_literal(x, out):
    i = cuda.grid(1)
    if i < out.size:
        # 0.5 is a float64 literal, so x is widened and both products run in float64. (A lone x[i] * 0.5
        # is exact in float32 too, and LLVM narrows it back; here the second product is not exact.)
        out[i] = 0.5 * x[i] * x[i]


@kernel("void(float32[::1], float32[::1])")
def half_in_float32(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = float32(0.5) * x[i] * x[i]


@kernel("void(float32[::1], float32[::1])")
def tile_copy(x, out):
    tile = cuda.shared.array((TILE, TILE), float32)
    i = cuda.grid(1)
    t = cuda.threadIdx.x
    if i < out.size:
        tile[0, t % TILE] = x[i]
    cuda.syncthreads()
    if i < out.size:
        out[i] = tile[0, t % TILE]


@kernel("void(float64[::1], float64[::1])")
def half_in_float64(x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] * 0.5  # a float64 kernel may use .f64
