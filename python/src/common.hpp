// python/src/common.hpp — what every shmkit extension module shares: the
// C++ exception -> Python exception mapping (DESIGN.md: std::system_error
// keeps errno, so ENOENT is FileNotFoundError, EEXIST FileExistsError, ...;
// std::invalid_argument is ValueError; std::out_of_range IndexError), a
// small owning PyObject reference, and how a blocking call waits without the
// GIL (deadline_for, wait_sliced).
//
// Contract: header-only, no state; call translate_exception() inside a
// catch (...) block with the GIL held; it always sets a Python exception.
// wait_sliced() is called with the GIL held and returns with it held.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cerrno>
#include <chrono>
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
    const int code = e.code().category() == std::generic_category() ||
                             e.code().category() == std::system_category()
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

using Clock = std::chrono::steady_clock;

// How long a blocked call sleeps without the GIL before it looks for
// signals: Ctrl-C latency, and the cost of one wake-up per slice.
inline constexpr std::chrono::milliseconds kSlice{20};

// The deadline `timeout` seconds from now; a negative timeout (None) or one
// beyond ~30 years is forever (saturating: steady_clock's nanoseconds would
// overflow near 292 years).
inline Clock::time_point deadline_for(double timeout) {
  if (timeout < 0 || timeout > 1e9) return Clock::time_point::max();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout));
}

// Calls attempt(slice_end) without the GIL, slice after slice, until it
// returns true (1), the deadline passes (0) or a signal handler raises (-1).
// attempt must not touch Python objects.
template <class Attempt>
int wait_sliced(Clock::time_point deadline, Attempt&& attempt) {
  for (;;) {
    const auto now = Clock::now();
    const auto end = (deadline > now && deadline - now > kSlice) ? now + kSlice : deadline;
    bool ok;
    Py_BEGIN_ALLOW_THREADS
    ok = attempt(end);
    Py_END_ALLOW_THREADS
    if (ok) return 1;
    if (PyErr_CheckSignals() < 0) return -1;
    if (Clock::now() >= deadline) return 0;
  }
}

}  // namespace shmkit::python
