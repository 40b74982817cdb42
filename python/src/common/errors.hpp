// python/src/common/errors.hpp — the C++ exception -> Python exception
// mapping every shmkit extension module shares (DESIGN.md: std::system_error
// keeps errno, so ENOENT is FileNotFoundError, EEXIST FileExistsError, ...;
// std::invalid_argument is ValueError; std::out_of_range IndexError), and a
// small owning PyObject reference.
//
// Contract: header-only, no state; call translate_exception() inside a
// catch (...) block with the GIL held; it always sets a Python exception.
// call_translated(fn) runs fn() with the GIL held and turns a C++ exception
// into that Python exception (nullptr returned).
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <exception>
#include <new>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace shmkit::python {

// Sets the Python exception matching the C++ exception being handled.
inline void translate_exception() noexcept {
  try {
    throw;
  } catch (const std::system_error& e) {
    const int code =
        e.code().category() == std::generic_category() || e.code().category() == std::system_category()
            ? e.code().value()
            : 0;
    // OSError(errno, message) picks the subclass (FileNotFoundError, ...).
    PyObject* exc = PyObject_CallFunction(PyExc_OSError, "is", code, e.what());
    if (exc != nullptr) {
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
      Py_DECREF(exc);
    }
  } catch (const std::out_of_range& e) {
    PyErr_SetString(PyExc_IndexError, e.what());
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "shmkit: unknown C++ exception");
  }
}

// fn() -> PyObject*, with any C++ exception it throws turned into the
// Python one (and nullptr).
template <class F>
PyObject* call_translated(F&& fn) noexcept {
  try {
    return fn();
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

// An owned reference (Py_XDECREF on destruction).
class Ref {
 public:
  Ref() noexcept = default;
  explicit Ref(PyObject* o) noexcept : o_(o) {}
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  Ref(Ref&& r) noexcept : o_(std::exchange(r.o_, nullptr)) {}
  ~Ref() { Py_XDECREF(o_); }
  PyObject* get() const noexcept { return o_; }
  PyObject* release() noexcept { return std::exchange(o_, nullptr); }
  explicit operator bool() const noexcept { return o_ != nullptr; }

 private:
  PyObject* o_ = nullptr;
};

}  // namespace shmkit::python
