"""Input checks for kernel wrappers: a clear error instead of a silently wrong result."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def is_device_array(x: object) -> bool:
    """A numba device array (the simulator's fake one included) or any CUDA Array Interface object."""
    return hasattr(x, "__cuda_array_interface__") or hasattr(x, "__cuda_ndarray__")


def require_array(x: object, name: str, *, ndim: int | None = None, shape: Sequence[int] | None = None,
                  dtype: np.dtype | type | None = np.float32, contiguous: bool = True) -> np.ndarray:
    """Return ``x`` if it is the array a kernel expects; otherwise raise saying what was expected.

    Nothing is converted silently: a float64 array passed to a float32 kernel is an error, because the
    course wants the learner to decide where precision is lost.
    """
    if not isinstance(x, np.ndarray) and not is_device_array(x):
        raise TypeError(f"{name} must be a NumPy or device array, got {type(x).__name__}.")
    if dtype is not None and np.dtype(x.dtype) != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {x.dtype}. "
                        f"Convert explicitly, e.g. {name}.astype(np.{np.dtype(dtype)}).")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}.")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}.")
    if contiguous and isinstance(x, np.ndarray) and not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name}).")
    if contiguous and not isinstance(x, np.ndarray) and not getattr(x, "is_c_contiguous", lambda: True)():
        raise ValueError(f"{name} must be a C-contiguous device array.")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): there is nothing to launch a kernel on.")
    return x


def new_output(like, shape: tuple[int, ...], dtype=np.float32, zeros: bool = False):
    """An output array of the same kind as ``like`` (NumPy stays NumPy, device stays device).

    Uninitialised unless ``zeros``: kernels that write every element need no zeroing pass.
    """
    if isinstance(like, np.ndarray):
        return np.zeros(shape, dtype=dtype) if zeros else np.empty(shape, dtype=dtype)
    from numba import cuda

    if zeros:
        return cuda.to_device(np.zeros(shape, dtype=dtype))
    return cuda.device_array(shape, dtype=dtype)
