// python/src/common/gil.hpp — running C++ without the GIL: the one
// release-and-retake block of the extension (without_gil), and how a
// blocking call waits without it (deadline_for, wait_sliced).
//
// Contract: header-only, no state. without_gil(fn) is called with the GIL
// held and returns with it held; fn must not touch Python objects; a C++
// exception fn throws is rethrown once the GIL is back. wait_sliced() is
// called with the GIL held and returns with it held; between slices it runs
// PyErr_CheckSignals, so Ctrl-C interrupts a wait within one slice.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <chrono>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "common/errors.hpp"

namespace shmkit::python {

// Runs fn() with the GIL released; a C++ exception is rethrown with it held.
template <class F>
auto without_gil(F&& fn) {
  std::exception_ptr error;
  using R = decltype(fn());
  std::optional<std::conditional_t<std::is_void_v<R>, int, R>> result;
  Py_BEGIN_ALLOW_THREADS try {
    if constexpr (std::is_void_v<R>) {
      fn();
      result.emplace(0);
    } else {
      result.emplace(fn());
    }
  } catch (...) {
    error = std::current_exception();
  }
  Py_END_ALLOW_THREADS if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<R>) return std::move(*result);
}

// without_gil(fn), with a C++ exception turned into the Python one (false).
template <class F>
bool without_gil_translated(F&& fn) noexcept {
  try {
    without_gil(std::forward<F>(fn));
    return true;
  } catch (...) {
    translate_exception();
    return false;
  }
}

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
// attempt must not touch Python objects, and must not throw.
template <class Attempt>
int wait_sliced(Clock::time_point deadline, Attempt&& attempt) {
  for (;;) {
    const auto now = Clock::now();
    const auto end = (deadline > now && deadline - now > kSlice) ? now + kSlice : deadline;
    if (without_gil([&]() noexcept -> bool { return attempt(end); })) return 1;
    if (PyErr_CheckSignals() < 0) return -1;
    if (Clock::now() >= deadline) return 0;
  }
}

}  // namespace shmkit::python
