// python/src/common/args.hpp — the one parser of (block=True, timeout=None)
// style arguments of a METH_FASTCALL | METH_KEYWORDS call, with the two
// documented timeout policies:
//   * Timeouts::clamp — multiprocessing's SemLock: a negative (or NaN)
//     timeout is 0, block=False is a timeout of 0, and `blocking` is
//     accepted as the keyword of `block` (threading's spelling);
//   * Timeouts::raise — the queue module's: a negative (or NaN) timeout is a
//     ValueError, and block=False leaves the timeout as given (the caller
//     does not wait).
// A timeout of None is -1.0 (forever) in both.
//
// Contract: header-only, no state; called with the GIL held; -1 with a
// Python exception set, or 0. Argument conversion may run Python code
// (__bool__, __float__): callers check their object's state afterwards.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cmath>

namespace shmkit::python {

enum class Timeouts { clamp, raise };

// One timeout argument (nullptr: absent) under `policy`: None or absent is
// -1.0 (forever); a negative or NaN one is 0 (clamp) or a ValueError (raise).
inline int timeout_from(PyObject* t, Timeouts policy, double* timeout) {
  *timeout = -1.0;
  if (t == nullptr || t == Py_None) return 0;
  const double d = PyFloat_AsDouble(t);
  if (d == -1.0 && PyErr_Occurred()) return -1;
  if (d < 0.0 || std::isnan(d)) {
    if (policy == Timeouts::raise) {
      PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
      return -1;
    }
    *timeout = 0.0;
  } else {
    *timeout = d;
  }
  return 0;
}

// The trailing arguments after `first` positional ones (which the caller
// reads itself): `block` (unless has_block is false) then `timeout`,
// positional or by keyword. *block is true and *timeout -1.0 when absent.
inline int parse_block_timeout(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, Py_ssize_t first,
                               const char* fname, Timeouts policy, bool* block, double* timeout,
                               bool has_block = true) {
  PyObject* b = nullptr;
  PyObject* t = nullptr;
  const Py_ssize_t most = first + (has_block ? 2 : 1);
  if (nargs > most) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %zd positional arguments (%zd given)", fname, most,
                 nargs);
    return -1;
  }
  if (nargs < first) {
    PyErr_Format(PyExc_TypeError, "%s() takes at least %zd positional arguments (%zd given)", fname, first,
                 nargs);
    return -1;
  }
  if (has_block) {
    if (nargs > first) b = args[first];
    if (nargs > first + 1) t = args[first + 1];
  } else if (nargs > first) {
    t = args[first];
  }
  if (kwnames != nullptr) {
    const Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nk; ++i) {
      PyObject* key = PyTuple_GET_ITEM(kwnames, i);
      PyObject** slot = nullptr;
      if (has_block &&
          (PyUnicode_CompareWithASCIIString(key, "block") == 0 ||
           (policy == Timeouts::clamp && PyUnicode_CompareWithASCIIString(key, "blocking") == 0))) {
        slot = &b;
      } else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
        slot = &t;
      } else {
        PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
        return -1;
      }
      if (*slot != nullptr) {
        PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%U'", fname, key);
        return -1;
      }
      *slot = args[nargs + i];
    }
  }
  *block = true;
  if (b != nullptr) {
    const int r = PyObject_IsTrue(b);
    if (r < 0) return -1;
    *block = r != 0;
  }
  if (policy == Timeouts::clamp && !*block) {
    *timeout = 0.0;
    return 0;
  }
  return timeout_from(t, policy, timeout);
}

// Only a timeout (after `first` positional arguments): wait(timeout=None).
inline int parse_timeout(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, Py_ssize_t first,
                         const char* fname, Timeouts policy, double* timeout) {
  bool block = true;
  return parse_block_timeout(args, nargs, kwnames, first, fname, policy, &block, timeout, false);
}

}  // namespace shmkit::python
