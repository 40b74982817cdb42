// python/src/common/buffer.hpp — export-counted buffers: an object that
// exports memory it may later give up (a block it closes, slots it hands
// back) counts its live exports, and refuses to give the memory up while
// any exists (BufferError, as CPython's mmap). Every such object of the
// extension counts with an Exports member and shows the count as the
// attribute `_exports` (exports_getset).
//
// Contract: header-only, no state; called with the GIL held.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace shmkit::python {

struct Exports {
  Py_ssize_t n = 0;

  // Fills `view` (owner: `owner`) over [buf, buf+len) and counts it; -1
  // with an exception set (view->obj nullptr) on failure.
  int fill(PyObject* owner, Py_buffer* view, void* buf, Py_ssize_t len, bool read_only, int flags) noexcept {
    if (PyBuffer_FillInfo(view, owner, buf, len, read_only ? 1 : 0, flags) != 0) {
      view->obj = nullptr;
      return -1;
    }
    ++n;
    return 0;
  }
  void release() noexcept { --n; }

  // False with BufferError set while an export is alive ("cannot close
  // ..." from `what`).
  bool none_alive(const char* what) const noexcept {
    if (n <= 0) return true;
    PyErr_Format(PyExc_BufferError, "%s (%zd exported buffers alive)", what, n);
    return false;
  }
};

// The getter of `_exports` for an object type T with an Exports member
// (its address found by Member).
template <class T, Exports T::*Member>
PyObject* exports_getter(PyObject* o, void*) {
  return PyLong_FromSsize_t((reinterpret_cast<T*>(o)->*Member).n);
}

template <class T, Exports T::*Member>
constexpr PyGetSetDef exports_getset() {
  return {"_exports", exports_getter<T, Member>, nullptr, "Buffer exports of this object now alive.",
          nullptr};
}

}  // namespace shmkit::python
