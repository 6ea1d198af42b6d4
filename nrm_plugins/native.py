"""The compiled kernels (``nrm_plugins._nrmk``, C sources in ``nrm_plugins/_native/``), loaded with ctypes.

The extension is built by ``pip install`` when a C compiler is present (it is optional: without one the
package installs and every stage runs its numpy implementation, which computes the same thing).  The
kernels are plain C functions on contiguous arrays; ctypes releases the GIL while one runs, so the
pipeline's worker threads process their chunks in parallel.

``NRM_PURE_PYTHON=1`` in the environment turns the kernels off (the numpy implementations are the
reference the tests compare the kernels with).
"""
from __future__ import annotations

import ctypes
import importlib
import math
import os
import threading

import numpy as np

#: must equal NRM_KERNELS_ABI in _native/kernels.h
ABI = 1

_lib = None
#: why the kernels are not used (None when they are)
reason: str | None = None


def _load():
    global _lib, reason
    if os.environ.get("NRM_PURE_PYTHON", "").strip() not in ("", "0"):
        reason = "turned off by NRM_PURE_PYTHON"
        return
    try:
        mod = importlib.import_module("nrm_plugins._nrmk")
    except ImportError as exc:
        reason = f"the compiled extension is not installed ({exc}); reinstall with a C compiler present"
        return
    if mod.abi_version() != ABI:
        reason = f"the compiled extension is stale (ABI {mod.abi_version()}, expected {ABI}); reinstall"
        return
    lib = ctypes.CDLL(mod.__file__)
    f32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
    f64 = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")
    i64 = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
    c64 = np.ctypeslib.ndpointer(np.complex64, flags="C_CONTIGUOUS")
    n_t = ctypes.c_int64
    lib.nrm_two_line.argtypes = [n_t, n_t, f32, f32, ctypes.c_void_p, f64, f64]
    lib.nrm_two_line.restype = ctypes.c_int
    lib.nrm_resample.argtypes = [n_t, n_t, f32, c64, i64, i64, ctypes.c_double, ctypes.c_double, n_t, c64,
                                 ctypes.c_void_p]
    lib.nrm_resample.restype = ctypes.c_int
    lib.nrm_local_polynomial.argtypes = [n_t, n_t, c64, n_t, ctypes.c_double, c64]
    lib.nrm_local_polynomial.restype = ctypes.c_int
    lib.nrm_background.argtypes = [n_t, n_t, f32, f32, ctypes.c_void_p, i64, i64, i64, f64]
    lib.nrm_background.restype = ctypes.c_int
    lib.nrm_to_output.argtypes = [n_t, n_t, c64, n_t, i64, f32, ctypes.c_double, ctypes.c_double, c64]
    lib.nrm_to_output.restype = ctypes.c_int
    lib.nrm_depth.argtypes = [n_t, n_t, f32, f32, f64, f64, f64, f64, f64, f64, i64, ctypes.c_double, f32, i64,
                              i64, i64]
    lib.nrm_depth.restype = None
    lib.nrm_prepare.argtypes = [n_t, n_t, f64, f32, f32, f32, ctypes.c_double, f32, f32, f32, f32, f64]
    lib.nrm_prepare.restype = None
    u8 = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
    dbl = ctypes.c_double
    lib.nrm_sei_thickness.argtypes = [n_t, n_t, c64, f64, dbl, dbl, n_t, n_t, dbl, dbl, dbl, f64, u8]
    lib.nrm_sei_thickness.restype = ctypes.c_int
    lib.nrm_undo_output_filter.argtypes = [n_t, n_t, f32, dbl, dbl, dbl, n_t, n_t]
    lib.nrm_undo_output_filter.restype = ctypes.c_int
    lib.nrm_masks.argtypes = [n_t, n_t, f64, f32, f32, f32, i64, u8, f32, u8, f32, u8, u8, u8, i64]
    lib.nrm_masks.restype = None
    lib.nrm_lateral_checks.argtypes = [n_t, n_t, f32, f32, u8, u8, i64, i64, i64, n_t, u8, u8, u8, u8]
    lib.nrm_lateral_checks.restype = None
    lib.nrm_resample_xy.argtypes = [n_t, i64, n_t, f32, f32, f32, f32, f32, i64, i64, dbl, dbl, n_t, c64,
                                    ctypes.c_void_p]
    lib.nrm_resample_xy.restype = ctypes.c_int
    lib.nrm_despike.argtypes = [n_t, n_t, f32, i64, dbl, dbl, i64]
    lib.nrm_despike.restype = ctypes.c_int
    _lib = lib


_load()


def available() -> bool:
    """True when the compiled kernels are loaded and used."""
    return _lib is not None


def lib():
    """The loaded shared object (ctypes.CDLL); raises RuntimeError when there is none."""
    if _lib is None:
        raise RuntimeError(f"compiled kernels unavailable: {reason}")
    return _lib


def f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def ptr(a) -> int | None:
    """Address of a contiguous array's data, or None (a NULL pointer) for None."""
    return None if a is None else a.ctypes.data


_local = threading.local()


def scratch(key: str, shape, dtype) -> np.ndarray:
    """A work array of this thread, reused from call to call (contents undefined).

    For the large temporaries of one chunk of the pipeline, which die before the chunk's function returns:
    fresh multi-MiB arrays per chunk are page-faulted in again and again (glibc hands them back to the
    system), and with two worker threads the faults serialize on the process's memory map.  Never return
    one of these arrays (or a view of it) to a caller: the next chunk on this thread overwrites it.
    """
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    pool = _local.__dict__.setdefault("pool", {})
    buf = pool.get(key)
    if buf is None or buf.nbytes < size:
        buf = pool[key] = np.empty(max(size, 1), np.uint8)
    return buf[:size].view(dtype).reshape(shape)
