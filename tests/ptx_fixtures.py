"""Registrations that exist only to prove the PTX test can fail. Imported by test_ptx.py in a subprocess."""

from numba import cuda, float32

from nbkit.core.registry import kernel
from nbkit.kernels.precision import half_square_float32, half_square_float64_literal

SIG = "void(float32[::1], float32[::1])"
TILE = 8

# The float64 demonstration, registered as an ordinary float32 kernel: must fail.
kernel(SIG, name="ptx_fixtures.float64_literal_unmarked")(half_square_float64_literal.py_func)
# A clean float32 kernel that claims to demonstrate float64: must fail too.
kernel(SIG, name="ptx_fixtures.float32_marked_as_demo", expect_f64=True)(half_square_float32.py_func)
# The same float64 code in a float64 kernel: allowed.
kernel("void(float64[::1], float64[::1])", name="ptx_fixtures.float64_kernel")(half_square_float64_literal.py_func)


@kernel(SIG)
def tile_copy(x, out):
    tile = cuda.shared.array((TILE, TILE), float32)
    i = cuda.grid(1)
    t = cuda.threadIdx.x
    if i < out.size:
        tile[0, t % TILE] = x[i]
    cuda.syncthreads()
    if i < out.size:
        out[i] = tile[0, t % TILE]


# A kernel that keeps 32 values alive, limited to 16 registers: ptxas must spill, and the test must fail.
@kernel(SIG, max_registers=16)
def forced_spill(x, out):
    i = cuda.grid(1)
    if i < out.size:
        v = cuda.local.array(32, float32)
        for j in range(32):
            v[j] = x[(i + j) % x.size]
        acc = float32(0)
        for j in range(32):
            for k in range(32):
                acc += v[j] * v[(j + k) % 32]
        out[i] = acc


# The same code allowed to spill: passes.
kernel(SIG, max_registers=16, allow_spills=True, name="ptx_fixtures.forced_spill_allowed")(forced_spill.py_func)

BIG = 12 * 1024  # 48 KiB of float32: at most 3 such blocks fit in an A100 SM's 164 KiB


# 48 KiB of shared memory per block of 256 threads cannot reach the stated 50% occupancy on any GPU here.
@kernel(SIG, block=256, min_occupancy=0.5)
def shared_hog(x, out):
    buf = cuda.shared.array(BIG, float32)
    i = cuda.grid(1)
    t = cuda.threadIdx.x
    buf[t] = x[i] if i < x.size else float32(0)
    cuda.syncthreads()
    if i < out.size:
        out[i] = buf[(t + 1) % 256]


# The same kernel promising only what it reaches.
kernel(SIG, block=256, min_occupancy=0.25, name="ptx_fixtures.shared_hog_honest")(shared_hog.py_func)
