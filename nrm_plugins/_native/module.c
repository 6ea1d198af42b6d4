/* nrm_plugins._nrmk: compiled kernels of the 1D-NRM pipeline.
 *
 * The kernels are plain C functions on contiguous arrays (see nrm_plugins/native.py, which loads this
 * shared object with ctypes: ctypes releases the GIL for the duration of each call, so chunks processed by
 * several threads run truly in parallel).  This file only makes the shared object an importable Python
 * extension module, so that setuptools builds, names and installs it like any other.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "kernels.h"

static PyObject *abi_version(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyLong_FromLong(NRM_KERNELS_ABI);
}

static PyMethodDef methods[] = {
    {"abi_version", abi_version, METH_NOARGS, "Version of the C kernels' calling convention."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_nrmk", "Compiled kernels of nrm_plugins (loaded through ctypes).", -1, methods,
};

PyMODINIT_FUNC PyInit__nrmk(void) { return PyModule_Create(&moduledef); }
