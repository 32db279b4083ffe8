"""Registrations that exist only to prove the PTX test can fail. Imported by test_ptx.py in a subprocess."""

from numba import cuda, float32

from nbkit.precision import half_square_float32, half_square_float64_literal
from nbkit.registry import kernel

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
