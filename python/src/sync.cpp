// python/src/sync.cpp — the extension module shmkit._sync: shmkit's
// process-shared locks, semaphores, events, conditions and atomics for
// Python, written against the CPython C API (METH_FASTCALL) because the hot
// calls (acquire/release, fetch_add) must cost no more than CPython's own
// SemLock (~60 ns for acquire+release); a pybind11 call costs 110-470 ns.
//
// Contract
//   * Every type here is a *view* of a primitive that lives in somebody
//     else's memory: `T(buffer, offset)` (and the classmethod
//     `T._over(buffer, offset)`, the same) binds to the bytes at `offset` of
//     any writable buffer exporter (a SharedMemory's buf, a mmap, a
//     TypedBlock below), checks bounds and alignment, and holds the buffer
//     export until the view is deallocated (so the mapping cannot be closed
//     under it: the exporter's close() raises BufferError meanwhile).
//   * Lock kinds, one per C++ lock that can sit in a Value/Array prefix:
//     Mutex (shmkit::Mutex, CPython's Lock), RecursiveMutex (CPython's RLock,
//     the default lock of a Value), RobustMutex (owner-death recovery).
//     acquire(block=True, timeout=None) and release() follow
//     multiprocessing's SemLock: a negative timeout is 0, block=False tries
//     once, release of an unlocked Mutex raises ValueError, release of an
//     RLock the caller does not hold raises AssertionError.
//   * Blocking: the fast path is one CAS with the GIL held. A call that must
//     wait releases the GIL and sleeps in slices of kSlice; between slices it
//     runs PyErr_CheckSignals with the GIL, so Ctrl-C interrupts a blocked
//     acquire with KeyboardInterrupt (as CPython's does) within one slice.
//     Every blocking call is sliced so, Condition.wait's re-acquire of its
//     lock included: a holder that died or is stopped never makes a waiter
//     deaf to Ctrl-C.
//   * Re-entrancy: a view holds a buffer export of its memory, so nothing
//     an argument's conversion runs can unmap it; TypedBlock.close() is
//     refused while views exist and unmaps only with the object.
//   * RobustMutex: acquire() raises OwnerDiedError when the previous holder
//     died holding it. The caller then HOLDS the lock: it repairs the data,
//     calls make_consistent(), and releases. Releasing without
//     make_consistent() makes the lock not recoverable for good: every later
//     acquire raises NotRecoverableError (never hangs).
//   * AtomicRef(buffer, offset, typecode): Boost.Atomic ipc_atomic_ref
//     operations on an integer (typecodes b B h H i I l L q Q), seq_cst, plus
//     wait(old, timeout=None)/notify(n) on a shared futex: the futex is the
//     aligned 32-bit word that holds (the low half of) the integer, so a
//     store that changes only bytes outside that word is noticed by a waiter
//     at its next slice (kSlice) rather than at once.
//   * TypedBlock: a shmkit typed block (typed_block.hpp) created or attached
//     by name, exporting its whole mapping as a writable buffer. Errors from
//     the C++ side map to Python's: ENOENT FileNotFoundError, EEXIST
//     FileExistsError, other errno OSError, std::invalid_argument
//     ValueError, std::out_of_range IndexError.
//   * Nothing here crashes on bad input: wrong types, offsets, sizes,
//     typecodes and foreign or garbage blocks raise TypeError/ValueError.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <algorithm>
#include <limits>
#include <type_traits>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "common.hpp"
#include "shmkit/atomic.hpp"
#include "shmkit/sync/condition.hpp"
#include "shmkit/sync/event.hpp"
#include "shmkit/sync/futex.hpp"
#include "shmkit/sync/mutex.hpp"
#include "shmkit/sync/recursive_mutex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/sync/semaphore.hpp"
#include "shmkit/sync/spin.hpp"
#include "shmkit/sync/standalone.hpp"
#include "shmkit/typed_block.hpp"

// The static type objects below are initialised field by field in
// PyInit__sync (C++ has no designated initialisers for them in order).
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace {

using shmkit::python::Clock;
using shmkit::python::deadline_for;
using shmkit::python::kSlice;
using shmkit::python::wait_sliced;
// How many lock spin budgets (shmkit/sync/spin.hpp) a contended acquire
// spins with the GIL held before it gives the GIL up to sleep (see
// spin_briefly): 10 x 180 ns by default, in time on every CPU.
constexpr std::uint32_t kGilSpinFactor = 10;

PyObject* g_owner_died = nullptr;       // shmkit._sync.OwnerDiedError
PyObject* g_not_recoverable = nullptr;  // shmkit._sync.NotRecoverableError

// ----------------------------------------------------------------- errors

// The C++ -> Python exception mapping every module shares (common.hpp).
using shmkit::python::translate_exception;

// ------------------------------------------------------------ arguments

// multiprocessing's (block=True, timeout=None). *timeout < 0: no timeout.
// A negative timeout is 0 (SemLock); block=False tries once.
int parse_block_timeout(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                        const char* fname, bool* block, double* timeout) {
  PyObject* b = nullptr;
  PyObject* t = nullptr;
  if (nargs > 2) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most 2 arguments (%zd given)", fname, nargs);
    return -1;
  }
  if (nargs >= 1) b = args[0];
  if (nargs == 2) t = args[1];
  if (kwnames != nullptr) {
    const Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nk; ++i) {
      PyObject* key = PyTuple_GET_ITEM(kwnames, i);
      PyObject* val = args[nargs + i];
      PyObject** slot = nullptr;
      if (PyUnicode_CompareWithASCIIString(key, "block") == 0 ||
          PyUnicode_CompareWithASCIIString(key, "blocking") == 0) {
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
      *slot = val;
    }
  }
  *block = true;
  if (b != nullptr) {
    const int r = PyObject_IsTrue(b);
    if (r < 0) return -1;
    *block = r != 0;
  }
  *timeout = -1.0;
  if (!*block) {
    *timeout = 0.0;
  } else if (t != nullptr && t != Py_None) {
    const double d = PyFloat_AsDouble(t);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    *timeout = (d < 0.0 || std::isnan(d)) ? 0.0 : d;
  }
  return 0;
}

// timeout=None (-1: forever) or seconds (negative: 0).
int parse_timeout_obj(PyObject* t, double* timeout) {
  *timeout = -1.0;
  if (t == nullptr || t == Py_None) return 0;
  const double d = PyFloat_AsDouble(t);
  if (d == -1.0 && PyErr_Occurred()) return -1;
  *timeout = (d < 0.0 || std::isnan(d)) ? 0.0 : d;
  return 0;
}



// Tries `attempt` for a while with the GIL held before the caller gives
// the GIL up to sleep: a lock held by another process is usually released
// within a short critical section, and releasing and re-taking the GIL plus
// a futex sleep and wake cost microseconds. The budget is time, as every
// spin in shmkit: kGilSpinFactor lock budgets of calibrated cpu_relax()
// rounds, so SHMKIT_SPIN_NS scales it too and SHMKIT_SPIN_NS=0 disables it.
std::uint32_t gil_spin_iterations() {
  static const std::uint32_t n = kGilSpinFactor * shmkit::spin_policy().iterations;
  return n;
}
template <class Attempt>
bool spin_briefly(Attempt&& attempt) {
  for (std::uint32_t i = 0, n = gil_spin_iterations(); i < n; ++i) {
    shmkit::detail::cpu_relax();  // PAUSE / YIELD, as the library's spins (spin.hpp)
    if (attempt()) return true;
  }
  return false;
}


// ------------------------------------------------------------ binding

// The common head of every view type: where the primitive is and the
// buffer export that keeps it mapped.
struct Bound {
  PyObject_HEAD
  void* addr;
  Py_buffer view;  // view.obj == nullptr: unbound
  PyObject* weakrefs;
};

int bind_view(Bound* self, PyObject* buffer, PyObject* offset_obj, std::size_t size,
              std::size_t align, const char* what) {
  const Py_ssize_t offset = PyNumber_AsSsize_t(offset_obj, PyExc_OverflowError);
  if (offset == -1 && PyErr_Occurred()) return -1;
  if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE) < 0) return -1;
  if (offset < 0 || self->view.len < 0 || static_cast<std::size_t>(self->view.len) < size ||
      static_cast<std::size_t>(offset) > static_cast<std::size_t>(self->view.len) - size) {
    PyErr_Format(PyExc_ValueError, "shmkit: a %s needs %zu bytes at offset %zd of a buffer of %zd bytes",
                 what, size, offset, self->view.len);
    PyBuffer_Release(&self->view);
    self->view.obj = nullptr;
    return -1;
  }
  char* p = static_cast<char*>(self->view.buf) + offset;
  if (reinterpret_cast<std::uintptr_t>(p) % align != 0) {
    PyErr_Format(PyExc_ValueError, "shmkit: a %s must be %zu-byte aligned; offset %zd is not", what,
                 align, offset);
    PyBuffer_Release(&self->view);
    self->view.obj = nullptr;
    return -1;
  }
  self->addr = p;
  return 0;
}

void bound_dealloc(PyObject* o) {
  Bound* self = reinterpret_cast<Bound*>(o);
  if (self->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  if (self->view.obj != nullptr) PyBuffer_Release(&self->view);
  Py_TYPE(o)->tp_free(o);
}

// tp_new for a view of `size` bytes aligned to `align`: T(buffer, offset).
template <std::size_t Size, std::size_t Align>
PyObject* bound_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"buffer", "offset", nullptr};
  PyObject* buffer = nullptr;
  PyObject* offset = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO", const_cast<char**>(kwlist), &buffer, &offset)) {
    return nullptr;
  }
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) return nullptr;
  Bound* self = reinterpret_cast<Bound*>(o);
  self->addr = nullptr;
  self->view.obj = nullptr;
  self->weakrefs = nullptr;
  if (bind_view(self, buffer, offset, Size, Align, type->tp_name) < 0) {
    Py_DECREF(o);
    return nullptr;
  }
  return o;
}

// classmethod _over(buffer, offset): the agreed entry point.
PyObject* bound_over(PyObject* cls, PyObject* const* args, Py_ssize_t nargs) {
  PyObject* tuple = PyTuple_New(nargs);
  if (tuple == nullptr) return nullptr;
  for (Py_ssize_t i = 0; i < nargs; ++i) PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
  PyTypeObject* type = reinterpret_cast<PyTypeObject*>(cls);
  PyObject* r = type->tp_new(type, tuple, nullptr);
  Py_DECREF(tuple);
  return r;
}

PyObject* bound_address(PyObject* o, void*) {
  return PyLong_FromVoidPtr(reinterpret_cast<Bound*>(o)->addr);
}

PyObject* bound_buffer(PyObject* o, void*) {
  Bound* self = reinterpret_cast<Bound*>(o);
  PyObject* b = self->view.obj != nullptr ? self->view.obj : Py_None;
  Py_INCREF(b);
  return b;
}

template <class P>
P& prim(PyObject* o) {
  return *static_cast<P*>(reinterpret_cast<Bound*>(o)->addr);
}

// =============================================================== Mutex

PyObject* mutex_acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  shmkit::Mutex& m = prim<shmkit::Mutex>(self);
  if (nargs == 0 && kwnames == nullptr) {
    if (m.try_lock()) [[likely]] Py_RETURN_TRUE;
    if (spin_briefly([&] { return !m.is_locked() && m.try_lock(); })) Py_RETURN_TRUE;
    const int r = wait_sliced(Clock::time_point::max(), [&](Clock::time_point end) { return m.try_lock_until(end); });
    if (r < 0) return nullptr;
    return PyBool_FromLong(r);
  }
  bool block;
  double timeout;
  if (parse_block_timeout(args, nargs, kwnames, "acquire", &block, &timeout) < 0) return nullptr;
  if (m.try_lock()) Py_RETURN_TRUE;
  if (!block) Py_RETURN_FALSE;
  if (spin_briefly([&] { return !m.is_locked() && m.try_lock(); })) Py_RETURN_TRUE;
  const int r = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) { return m.try_lock_until(end); });
  if (r < 0) return nullptr;
  return PyBool_FromLong(r);
}

PyObject* mutex_release(PyObject* self, PyObject*) {
  shmkit::Mutex& m = prim<shmkit::Mutex>(self);
  if (!m.is_locked()) [[unlikely]] {
    PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
    return nullptr;
  }
  m.unlock();
  Py_RETURN_NONE;
}

PyObject* mutex_enter(PyObject* self, PyObject*) { return mutex_acquire(self, nullptr, 0, nullptr); }
PyObject* mutex_exit(PyObject* self, PyObject* const*, Py_ssize_t) { return mutex_release(self, nullptr); }
PyObject* mutex_locked(PyObject* self, PyObject*) { return PyBool_FromLong(prim<shmkit::Mutex>(self).is_locked()); }

PyMethodDef mutex_methods[] = {
    {"acquire", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(mutex_acquire)),
     METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool\n\nmultiprocessing.Lock.acquire: block=False tries "
     "once; timeout in seconds (None: forever). Interruptible by Ctrl-C."},
    {"release", mutex_release, METH_NOARGS, "Releases the lock (ValueError if it is not locked)."},
    {"__enter__", mutex_enter, METH_NOARGS, nullptr},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(mutex_exit)), METH_FASTCALL, nullptr},
    {"locked", mutex_locked, METH_NOARGS, "True if the lock is held (by anyone; racy)."},
    {"_over", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(bound_over)), METH_FASTCALL | METH_CLASS,
     "_over(buffer, offset): a view of the lock at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};

// ======================================================= RecursiveMutex

PyObject* rmutex_acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  shmkit::RecursiveMutex& m = prim<shmkit::RecursiveMutex>(self);
  if (nargs == 0 && kwnames == nullptr) {
    if (m.try_lock()) [[likely]] Py_RETURN_TRUE;
    if (spin_briefly([&] { return m.try_lock(); })) Py_RETURN_TRUE;
    const int r = wait_sliced(Clock::time_point::max(), [&](Clock::time_point end) { return m.try_lock_until(end); });
    if (r < 0) return nullptr;
    return PyBool_FromLong(r);
  }
  bool block;
  double timeout;
  if (parse_block_timeout(args, nargs, kwnames, "acquire", &block, &timeout) < 0) return nullptr;
  if (m.try_lock()) Py_RETURN_TRUE;
  if (!block) Py_RETURN_FALSE;
  if (spin_briefly([&] { return m.try_lock(); })) Py_RETURN_TRUE;
  const int r = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) { return m.try_lock_until(end); });
  if (r < 0) return nullptr;
  return PyBool_FromLong(r);
}

PyObject* rmutex_release(PyObject* self, PyObject*) {
  if (!prim<shmkit::RecursiveMutex>(self).unlock()) [[unlikely]] {
    PyErr_SetString(PyExc_AssertionError, "attempt to release recursive lock not owned by thread");
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* rmutex_enter(PyObject* self, PyObject*) { return rmutex_acquire(self, nullptr, 0, nullptr); }
PyObject* rmutex_exit(PyObject* self, PyObject* const*, Py_ssize_t) { return rmutex_release(self, nullptr); }
PyObject* rmutex_count(PyObject* self, PyObject*) {
  return PyLong_FromUnsignedLong(prim<shmkit::RecursiveMutex>(self).level());
}
PyObject* rmutex_is_mine(PyObject* self, PyObject*) {
  return PyBool_FromLong(prim<shmkit::RecursiveMutex>(self).owned_by_me());
}

PyMethodDef rmutex_methods[] = {
    {"acquire", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(rmutex_acquire)),
     METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool\n\nmultiprocessing.RLock.acquire: the owner may "
     "acquire again (one more level)."},
    {"release", rmutex_release, METH_NOARGS,
     "Drops one level (AssertionError if the calling thread does not hold it)."},
    {"__enter__", rmutex_enter, METH_NOARGS, nullptr},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(rmutex_exit)), METH_FASTCALL, nullptr},
    {"_count", rmutex_count, METH_NOARGS, "Recursion level of the calling thread (0 if not the owner)."},
    {"_is_mine", rmutex_is_mine, METH_NOARGS, "True if the calling thread holds the lock."},
    {"_over", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(bound_over)), METH_FASTCALL | METH_CLASS,
     "_over(buffer, offset): a view of the lock at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};

// ========================================================== RobustMutex

// Turns a LockResult into the Python result: True, False, or an exception.
PyObject* robust_result(shmkit::LockResult r, bool block) {
  switch (r) {
    case shmkit::LockResult::acquired:
      Py_RETURN_TRUE;
    case shmkit::LockResult::owner_died:
      PyErr_SetString(g_owner_died,
                      "the previous holder of this RobustLock died holding it; you hold it now: "
                      "repair the data it guards, call make_consistent(), then release()");
      return nullptr;
    case shmkit::LockResult::not_recoverable:
      PyErr_SetString(g_not_recoverable,
                      "this RobustLock is not recoverable: a holder released it after an owner "
                      "death without make_consistent(); recreate it");
      return nullptr;
    case shmkit::LockResult::deadlock:
      if (!block) Py_RETURN_FALSE;
      PyErr_SetString(PyExc_RuntimeError, "RobustLock.acquire(): the calling thread already holds it");
      return nullptr;
    case shmkit::LockResult::busy:
    case shmkit::LockResult::timed_out:
      Py_RETURN_FALSE;
  }
  Py_RETURN_FALSE;
}

PyObject* robust_acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  shmkit::RobustMutex& m = prim<shmkit::RobustMutex>(self);
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, "acquire", &block, &timeout) < 0) {
    return nullptr;
  }
  shmkit::LockResult r = m.try_lock();
  if (r == shmkit::LockResult::acquired) [[likely]] Py_RETURN_TRUE;
  if (r != shmkit::LockResult::busy || !block) return robust_result(r, block);
  const int w = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) {
    r = m.try_lock_until(end);
    return r != shmkit::LockResult::timed_out && r != shmkit::LockResult::busy;
  });
  if (w < 0) return nullptr;
  return robust_result(r, block);
}

PyObject* robust_release(PyObject* self, PyObject*) {
  if (!prim<shmkit::RobustMutex>(self).unlock()) [[unlikely]] {
    PyErr_SetString(PyExc_RuntimeError, "RobustLock.release(): the calling thread does not hold it");
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* robust_enter(PyObject* self, PyObject*) { return robust_acquire(self, nullptr, 0, nullptr); }
PyObject* robust_exit(PyObject* self, PyObject* const*, Py_ssize_t) { return robust_release(self, nullptr); }

PyObject* robust_make_consistent(PyObject* self, PyObject*) {
  if (!prim<shmkit::RobustMutex>(self).make_consistent()) {
    PyErr_SetString(PyExc_RuntimeError,
                    "RobustLock.make_consistent(): the calling thread does not hold this lock "
                    "after an owner death");
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* robust_state(PyObject* self, PyObject*) {
  shmkit::RobustMutex& m = prim<shmkit::RobustMutex>(self);
  const std::uint64_t w = m.native_handle().load(std::memory_order_relaxed);
  const std::uint32_t low = static_cast<std::uint32_t>(w);
  const char* s;
  if ((low & shmkit::RobustMutex::kTidMask) == shmkit::RobustMutex::kNotRecoverable) {
    s = "not_recoverable";
  } else if ((low & shmkit::RobustMutex::kTidMask) == 0) {
    s = "free";
  } else if (low & shmkit::RobustMutex::kOwnerDied) {
    s = "owner_died";
  } else {
    s = "locked";
  }
  return PyUnicode_FromString(s);
}

PyMethodDef robust_methods[] = {
    {"acquire", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(robust_acquire)),
     METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool\n\nTrue when acquired, False when not (timeout, "
     "block=False). Raises OwnerDiedError when the previous holder died holding the lock: the "
     "caller then holds it and must repair the data, call make_consistent() and release(). Raises "
     "NotRecoverableError if a holder released it after an owner death without make_consistent()."},
    {"release", robust_release, METH_NOARGS,
     "Releases the lock (RuntimeError if the calling thread does not hold it)."},
    {"make_consistent", robust_make_consistent, METH_NOARGS,
     "After OwnerDiedError, once the data is repaired: the lock becomes normal again."},
    {"_state", robust_state, METH_NOARGS, "'free', 'locked', 'owner_died' or 'not_recoverable' (racy)."},
    {"__enter__", robust_enter, METH_NOARGS, nullptr},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(robust_exit)), METH_FASTCALL, nullptr},
    {"_over", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(bound_over)), METH_FASTCALL | METH_CLASS,
     "_over(buffer, offset): a view of the lock at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};

// ============================================================ Semaphore

PyObject* sem_acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  shmkit::Semaphore& s = prim<shmkit::Semaphore>(self);
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, "acquire", &block, &timeout) < 0) {
    return nullptr;
  }
  if (s.try_acquire()) [[likely]] Py_RETURN_TRUE;
  if (!block) Py_RETURN_FALSE;
  const int r = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) { return s.try_acquire_until(end); });
  if (r < 0) return nullptr;
  return PyBool_FromLong(r);
}

PyObject* sem_release(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  unsigned long n = 1;
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "release() takes at most 1 argument");
    return nullptr;
  }
  if (nargs == 1) {
    n = PyLong_AsUnsignedLong(args[0]);
    if (n == static_cast<unsigned long>(-1) && PyErr_Occurred()) return nullptr;
    if (n < 1 || n > 0x7fffffffUL) {
      PyErr_SetString(PyExc_ValueError, "release(n): n must be in [1, 2**31)");
      return nullptr;
    }
  }
  if (!prim<shmkit::Semaphore>(self).release(static_cast<std::uint32_t>(n))) {
    PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* sem_enter(PyObject* self, PyObject*) { return sem_acquire(self, nullptr, 0, nullptr); }
PyObject* sem_exit(PyObject* self, PyObject* const*, Py_ssize_t) { return sem_release(self, nullptr, 0); }
PyObject* sem_get_value(PyObject* self, PyObject*) {
  return PyLong_FromUnsignedLong(prim<shmkit::Semaphore>(self).value());
}
PyObject* sem_max_value(PyObject* self, PyObject*) {
  return PyLong_FromUnsignedLong(prim<shmkit::Semaphore>(self).max_value());
}
// The bytes of a Semaphore(value, max_value) (max 0: unbounded), to
// initialise a block with before it is published.
PyObject* sem_layout(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "_layout(value, max_value)");
    return nullptr;
  }
  const long long v = PyLong_AsLongLong(args[0]);
  if (v == -1 && PyErr_Occurred()) return nullptr;
  const long long m = PyLong_AsLongLong(args[1]);
  if (m == -1 && PyErr_Occurred()) return nullptr;
  if (v < 0 || v > 0x7fffffffLL || m < 0 || m > 0x7fffffffLL || (m != 0 && v > m)) {
    PyErr_SetString(PyExc_ValueError, "semaphore initial value must be >= 0 (and <= its bound)");
    return nullptr;
  }
  alignas(shmkit::Semaphore) unsigned char bytes[sizeof(shmkit::Semaphore)] = {};
  ::new (static_cast<void*>(bytes)) shmkit::Semaphore(static_cast<std::uint32_t>(v), static_cast<std::uint32_t>(m));
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(bytes), sizeof bytes);
}

PyMethodDef sem_methods[] = {
    {"acquire", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sem_acquire)),
     METH_FASTCALL | METH_KEYWORDS, "acquire(block=True, timeout=None) -> bool"},
    {"release", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sem_release)), METH_FASTCALL,
     "release(n=1): adds n units (ValueError past a BoundedSemaphore's bound)."},
    {"get_value", sem_get_value, METH_NOARGS, "The value now (racy)."},
    {"_max_value", sem_max_value, METH_NOARGS, "The bound (0: none)."},
    {"_layout", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sem_layout)), METH_FASTCALL | METH_STATIC,
     nullptr},
    {"__enter__", sem_enter, METH_NOARGS, nullptr},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sem_exit)), METH_FASTCALL, nullptr},
    {"_over", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(bound_over)), METH_FASTCALL | METH_CLASS,
     "_over(buffer, offset): a view of the semaphore at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};

// ================================================================ Event

PyObject* event_is_set(PyObject* self, PyObject*) { return PyBool_FromLong(prim<shmkit::Event>(self).is_set()); }
PyObject* event_set(PyObject* self, PyObject*) {
  prim<shmkit::Event>(self).set();
  Py_RETURN_NONE;
}
PyObject* event_clear(PyObject* self, PyObject*) {
  prim<shmkit::Event>(self).clear();
  Py_RETURN_NONE;
}
PyObject* event_wait(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  shmkit::Event& e = prim<shmkit::Event>(self);
  PyObject* t = nargs >= 1 ? args[0] : nullptr;
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "wait() takes at most 1 argument");
    return nullptr;
  }
  if (kwnames != nullptr) {
    if (PyTuple_GET_SIZE(kwnames) != 1 || t != nullptr ||
        PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout") != 0) {
      PyErr_SetString(PyExc_TypeError, "wait(timeout=None)");
      return nullptr;
    }
    t = args[nargs];
  }
  double timeout;
  if (parse_timeout_obj(t, &timeout) < 0) return nullptr;
  if (e.is_set()) Py_RETURN_TRUE;
  const int r = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) { return e.wait_until(end); });
  if (r < 0) return nullptr;
  return PyBool_FromLong(r);
}

PyMethodDef event_methods[] = {
    {"is_set", event_is_set, METH_NOARGS, nullptr},
    {"set", event_set, METH_NOARGS, nullptr},
    {"clear", event_clear, METH_NOARGS, nullptr},
    {"wait", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(event_wait)), METH_FASTCALL | METH_KEYWORDS,
     "wait(timeout=None) -> bool: the flag's value when it returns."},
    {"_over", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(bound_over)), METH_FASTCALL | METH_CLASS,
     "_over(buffer, offset): a view of the event at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};

// ============================================================ Condition
// wait(lock, timeout=None): `lock` is a Mutex, RecursiveMutex or
// RobustMutex view held by the caller. Every level of a RecursiveMutex is
// released while waiting and restored after (CPython's Condition).

PyTypeObject MutexType{PyVarObject_HEAD_INIT(nullptr, 0)};
PyTypeObject RMutexType{PyVarObject_HEAD_INIT(nullptr, 0)};
PyTypeObject RobustType{PyVarObject_HEAD_INIT(nullptr, 0)};

PyObject* cond_wait(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  shmkit::Condition& c = prim<shmkit::Condition>(self);
  PyObject* lock = nargs >= 1 ? args[0] : nullptr;
  PyObject* t = nargs >= 2 ? args[1] : nullptr;
  if (nargs > 2 || (kwnames != nullptr && (PyTuple_GET_SIZE(kwnames) != 1 || t != nullptr ||
                                           PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout") != 0))) {
    PyErr_SetString(PyExc_TypeError, "wait(lock, timeout=None)");
    return nullptr;
  }
  if (kwnames != nullptr) t = args[nargs];
  if (lock == nullptr) {
    PyErr_SetString(PyExc_TypeError, "wait(lock, timeout=None): lock missing");
    return nullptr;
  }
  double timeout;
  if (parse_timeout_obj(t, &timeout) < 0) return nullptr;
  const auto deadline = deadline_for(timeout);

  // Release the caller's hold (all levels), remembering how to restore it.
  enum { kMutex, kRecursive, kRobust } kind;
  std::uint32_t levels = 1;
  if (PyObject_TypeCheck(lock, &MutexType)) {
    kind = kMutex;
  } else if (PyObject_TypeCheck(lock, &RMutexType)) {
    kind = kRecursive;
  } else if (PyObject_TypeCheck(lock, &RobustType)) {
    kind = kRobust;
  } else {
    PyErr_Format(PyExc_TypeError, "Condition.wait: the lock must be a shmkit lock, not %s",
                 Py_TYPE(lock)->tp_name);
    return nullptr;
  }
  void* la = reinterpret_cast<Bound*>(lock)->addr;
  if (kind == kMutex) {
    if (!static_cast<shmkit::Mutex*>(la)->is_locked()) {
      PyErr_SetString(PyExc_RuntimeError, "cannot wait on un-acquired lock");
      return nullptr;
    }
  } else if (kind == kRecursive) {
    auto* m = static_cast<shmkit::RecursiveMutex*>(la);
    if (!m->owned_by_me()) {
      PyErr_SetString(PyExc_AssertionError, "cannot wait on un-acquired lock");
      return nullptr;
    }
    levels = m->level();
  }
  const std::uint32_t ticket = c.begin_wait();
  if (kind == kMutex) {
    static_cast<shmkit::Mutex*>(la)->unlock();
  } else if (kind == kRecursive) {
    for (std::uint32_t i = 0; i < levels; ++i) (void)static_cast<shmkit::RecursiveMutex*>(la)->unlock();
  } else if (!static_cast<shmkit::RobustMutex*>(la)->unlock()) {
    c.end_wait();
    PyErr_SetString(PyExc_RuntimeError, "cannot wait on un-acquired lock");
    return nullptr;
  }
  int w = wait_sliced(deadline, [&](Clock::time_point end) { return c.wait_slice(ticket, end); });
  c.end_wait();
  // Re-acquire: without the GIL, in slices, with signals checked between
  // them, so a holder that died or stopped cannot make the waiter deaf to
  // Ctrl-C. After a wake-up the waiter waits for the lock as long as it
  // takes (a signal handler that raises ends that wait). After an
  // exception in the wait itself (Ctrl-C), it tries for one slice only and
  // then raises that exception. Either way, when wait() raises because of
  // a signal the lock may not be held: the lock tells (locked(),
  // _is_mine()).
  PyObject *et = nullptr, *ev = nullptr, *tb = nullptr;
  if (w < 0) PyErr_Fetch(&et, &ev, &tb);
  shmkit::LockResult lr = shmkit::LockResult::acquired;
  const auto retake_until = w < 0 ? Clock::now() + kSlice : Clock::time_point::max();
  const int ra = wait_sliced(retake_until, [&](Clock::time_point end) {
    if (kind == kMutex) return static_cast<shmkit::Mutex*>(la)->try_lock_until(end);
    if (kind == kRecursive) {
      auto* m = static_cast<shmkit::RecursiveMutex*>(la);
      if (!m->try_lock_until(end)) return false;
      for (std::uint32_t i = 1; i < levels; ++i) m->lock();  // ours now: re-entry never waits
      return true;
    }
    lr = static_cast<shmkit::RobustMutex*>(la)->try_lock_until(end);
    return lr != shmkit::LockResult::timed_out && lr != shmkit::LockResult::busy;
  });
  if (ra < 0) {  // interrupted while re-taking the lock: that exception wins
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    return nullptr;
  }
  if (w < 0) {  // re-taken or not (ra == 0: the holder kept it), the wait's exception
    PyErr_Restore(et, ev, tb);
    return nullptr;
  }
  if (kind == kRobust && lr != shmkit::LockResult::acquired) return robust_result(lr, true);
  return PyBool_FromLong(w);
}

PyObject* cond_notify(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  long n = 1;
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "notify(n=1)");
    return nullptr;
  }
  if (nargs == 1) {
    n = PyLong_AsLong(args[0]);
    if (n == -1 && PyErr_Occurred()) return nullptr;
  }
  if (n <= 0) Py_RETURN_NONE;
  prim<shmkit::Condition>(self).notify(n > INT32_MAX ? INT32_MAX : static_cast<int>(n));
  Py_RETURN_NONE;
}
PyObject* cond_notify_all(PyObject* self, PyObject*) {
  prim<shmkit::Condition>(self).notify_all();
  Py_RETURN_NONE;
}

PyMethodDef cond_methods[] = {
    {"wait", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(cond_wait)), METH_FASTCALL | METH_KEYWORDS,
     "wait(lock, timeout=None) -> bool: releases `lock` (held by the caller, every level of an "
     "RLock), sleeps until notified or the timeout, re-acquires it. False on timeout."},
    {"notify", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(cond_notify)), METH_FASTCALL,
     "notify(n=1): wakes up to n waiters."},
    {"notify_all", cond_notify_all, METH_NOARGS, nullptr},
    {"_over", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(bound_over)), METH_FASTCALL | METH_CLASS,
     "_over(buffer, offset): a view of the condition at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};

// ============================================================ AtomicRef

struct AtomicObj {
  Bound base;
  char code;        // normalised typecode: b B h H i I q Q
  unsigned char size;
  bool is_signed;
};

PyTypeObject AtomicType{PyVarObject_HEAD_INIT(nullptr, 0)};

// Dispatches on the element type; F is called with a T* tag.
template <class F>
decltype(auto) with_type(const AtomicObj* a, F&& f) {
  switch (a->code) {
    case 'b': return f(static_cast<std::int8_t*>(a->base.addr));
    case 'B': return f(static_cast<std::uint8_t*>(a->base.addr));
    case 'h': return f(static_cast<std::int16_t*>(a->base.addr));
    case 'H': return f(static_cast<std::uint16_t*>(a->base.addr));
    case 'i': return f(static_cast<std::int32_t*>(a->base.addr));
    case 'I': return f(static_cast<std::uint32_t*>(a->base.addr));
    case 'q': return f(static_cast<std::int64_t*>(a->base.addr));
    default: return f(static_cast<std::uint64_t*>(a->base.addr));
  }
}

PyObject* atomic_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"buffer", "offset", "typecode", nullptr};
  PyObject* buffer = nullptr;
  PyObject* offset = nullptr;
  const char* tc = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOs", const_cast<char**>(kwlist), &buffer, &offset, &tc)) {
    return nullptr;
  }
  char code = tc[0] != '\0' && tc[1] == '\0' ? tc[0] : '\0';
  if (code == 'l') code = 'q';
  if (code == 'L') code = 'Q';
  unsigned char size = 0;
  switch (code) {
    case 'b': case 'B': size = 1; break;
    case 'h': case 'H': size = 2; break;
    case 'i': case 'I': size = 4; break;
    case 'q': case 'Q': size = 8; break;
    default:
      PyErr_Format(PyExc_ValueError,
                   "AtomicRef: typecode must be one of b B h H i I l L q Q (an integer), not '%s'", tc);
      return nullptr;
  }
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) return nullptr;
  AtomicObj* self = reinterpret_cast<AtomicObj*>(o);
  self->base.addr = nullptr;
  self->base.view.obj = nullptr;
  self->base.weakrefs = nullptr;
  self->code = code;
  self->size = size;
  self->is_signed = code == 'b' || code == 'h' || code == 'i' || code == 'q';
  if (bind_view(&self->base, buffer, offset, size, size, "AtomicRef") < 0) {
    Py_DECREF(o);
    return nullptr;
  }
  return o;
}

// Python int -> T, with C's wrap-around for arithmetic operands (fetch_add
// of -1 to an unsigned value) but a range check for stored values.
template <class T>
int to_value(PyObject* o, T* out, bool wrap) {
  if (!PyLong_Check(o)) {
    PyErr_Format(PyExc_TypeError, "an integer is required, not %s", Py_TYPE(o)->tp_name);
    return -1;
  }
  if (wrap) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0) {
      if (v == -1 && PyErr_Occurred()) return -1;
      *out = static_cast<T>(v);
      return 0;
    }
    const unsigned long long u = PyLong_AsUnsignedLongLongMask(o);
    if (u == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return -1;
    *out = static_cast<T>(u);
    return 0;
  }
  if constexpr (std::is_signed_v<T>) {
    const long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < static_cast<long long>(std::numeric_limits<T>::min()) ||
        v > static_cast<long long>(std::numeric_limits<T>::max())) {
      PyErr_SetString(PyExc_OverflowError, "value out of range for the atomic's type");
      return -1;
    }
    *out = static_cast<T>(v);
  } else {
    const unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return -1;
    if (v > static_cast<unsigned long long>(std::numeric_limits<T>::max())) {
      PyErr_SetString(PyExc_OverflowError, "value out of range for the atomic's type");
      return -1;
    }
    *out = static_cast<T>(v);
  }
  return 0;
}

template <class T>
PyObject* from_value(T v) {
  if constexpr (std::is_signed_v<T>) return PyLong_FromLongLong(v);
  else return PyLong_FromUnsignedLongLong(v);
}

AtomicObj* as_atomic(PyObject* o) { return reinterpret_cast<AtomicObj*>(o); }

PyObject* atomic_load(PyObject* self, PyObject*) {
  return with_type(as_atomic(self), [](auto* p) { return from_value(shmkit::AtomicRef<std::remove_pointer_t<decltype(p)>>(*p).load()); });
}

PyObject* atomic_store(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "store(value)");
    return nullptr;
  }
  return with_type(as_atomic(self), [&](auto* p) -> PyObject* {
    using T = std::remove_pointer_t<decltype(p)>;
    T v;
    if (to_value(args[0], &v, false) < 0) return nullptr;
    shmkit::AtomicRef<T>(*p).store(v);
    Py_RETURN_NONE;
  });
}

PyObject* atomic_exchange(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "exchange(value)");
    return nullptr;
  }
  return with_type(as_atomic(self), [&](auto* p) -> PyObject* {
    using T = std::remove_pointer_t<decltype(p)>;
    T v;
    if (to_value(args[0], &v, false) < 0) return nullptr;
    return from_value(shmkit::AtomicRef<T>(*p).exchange(v));
  });
}

enum class Op { add, sub, and_, or_, xor_ };

template <Op op>
PyObject* atomic_fetch(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  AtomicObj* a = as_atomic(self);
  if (nargs == 1 && a->code == 'q' && PyLong_CheckExact(args[0])) [[likely]] {
    // The common case (a 64-bit signed counter) without the dispatch.
    int overflow = 0;
    const long long d = PyLong_AsLongLongAndOverflow(args[0], &overflow);
    if (overflow == 0 && !(d == -1 && PyErr_Occurred())) {
      shmkit::AtomicRef<std::int64_t> r(*static_cast<std::int64_t*>(a->base.addr));
      std::int64_t old;
      if constexpr (op == Op::add) old = r.fetch_add(d);
      else if constexpr (op == Op::sub) old = r.fetch_sub(d);
      else if constexpr (op == Op::and_) old = r.fetch_and(d);
      else if constexpr (op == Op::or_) old = r.fetch_or(d);
      else old = r.fetch_xor(d);
      return PyLong_FromLongLong(old);
    }
    PyErr_Clear();
  }
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "takes exactly one argument");
    return nullptr;
  }
  return with_type(a, [&](auto* p) -> PyObject* {
    using T = std::remove_pointer_t<decltype(p)>;
    T d;
    if (to_value(args[0], &d, true) < 0) return nullptr;
    shmkit::AtomicRef<T> r(*p);
    T old;
    if constexpr (op == Op::add) old = r.fetch_add(d);
    else if constexpr (op == Op::sub) old = r.fetch_sub(d);
    else if constexpr (op == Op::and_) old = r.fetch_and(d);
    else if constexpr (op == Op::or_) old = r.fetch_or(d);
    else old = r.fetch_xor(d);
    return from_value(old);
  });
}

// compare_exchange(expected, desired) -> (success, value found)
PyObject* atomic_cas(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "compare_exchange(expected, desired)");
    return nullptr;
  }
  return with_type(as_atomic(self), [&](auto* p) -> PyObject* {
    using T = std::remove_pointer_t<decltype(p)>;
    T e, d;
    if (to_value(args[0], &e, false) < 0 || to_value(args[1], &d, false) < 0) return nullptr;
    const bool ok = shmkit::AtomicRef<T>(*p).compare_exchange_strong(e, d);
    PyObject* v = from_value(e);
    if (v == nullptr) return nullptr;
    PyObject* t = PyTuple_Pack(2, ok ? Py_True : Py_False, v);
    Py_DECREF(v);
    return t;
  });
}

// The 32-bit word the futex watches: the aligned word holding the value
// (its low half for 8 bytes; the containing word for 1 and 2 bytes).
shmkit::FutexWord& futex_of(const AtomicObj* a) {
  auto addr = reinterpret_cast<std::uintptr_t>(a->base.addr) & ~std::uintptr_t{3};
  return *reinterpret_cast<shmkit::FutexWord*>(addr);
}

// wait(old, timeout=None) -> bool: True once the value differs from old,
// False on timeout.
PyObject* atomic_wait(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  AtomicObj* a = as_atomic(self);
  PyObject* t = nargs >= 2 ? args[1] : nullptr;
  if (nargs < 1 || nargs > 2 ||
      (kwnames != nullptr && (PyTuple_GET_SIZE(kwnames) != 1 || t != nullptr ||
                              PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout") != 0))) {
    PyErr_SetString(PyExc_TypeError, "wait(old, timeout=None)");
    return nullptr;
  }
  if (kwnames != nullptr) t = args[nargs];
  double timeout;
  if (parse_timeout_obj(t, &timeout) < 0) return nullptr;
  return with_type(a, [&](auto* p) -> PyObject* {
    using T = std::remove_pointer_t<decltype(p)>;
    T old;
    if (to_value(args[0], &old, false) < 0) return nullptr;
    shmkit::AtomicRef<T> r(*p);
    if (r.load() != old) Py_RETURN_TRUE;
    shmkit::FutexWord& word = futex_of(a);
    const int w = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) {
      for (;;) {
        const std::uint32_t seen = word.load(std::memory_order_seq_cst);
        if (r.load() != old) return true;
        if (shmkit::futex_wait_until(word, seen, end) == shmkit::FutexResult::timed_out) {
          return r.load() != old;
        }
      }
    });
    if (w < 0) return nullptr;
    return PyBool_FromLong(w);
  });
}

PyObject* atomic_notify(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  long n = INT32_MAX;
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "notify(n=None): None wakes every waiter");
    return nullptr;
  }
  if (nargs == 1 && args[0] != Py_None) {
    n = PyLong_AsLong(args[0]);
    if (n == -1 && PyErr_Occurred()) return nullptr;
    if (n <= 0) Py_RETURN_NONE;
  }
  shmkit::futex_wake(futex_of(as_atomic(self)), n > INT32_MAX ? INT32_MAX : static_cast<int>(n));
  Py_RETURN_NONE;
}
PyObject* atomic_notify_one(PyObject* self, PyObject*) {
  shmkit::futex_wake(futex_of(as_atomic(self)), 1);
  Py_RETURN_NONE;
}
PyObject* atomic_notify_all(PyObject* self, PyObject*) {
  shmkit::futex_wake_all(futex_of(as_atomic(self)));
  Py_RETURN_NONE;
}
PyObject* atomic_typecode(PyObject* self, void*) {
  const char c = as_atomic(self)->code;
  return PyUnicode_FromStringAndSize(&c, 1);
}

#define FASTCALL(f) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f))

PyMethodDef atomic_methods[] = {
    {"load", atomic_load, METH_NOARGS, "The value (seq_cst)."},
    {"store", FASTCALL(atomic_store), METH_FASTCALL, "store(value)"},
    {"exchange", FASTCALL(atomic_exchange), METH_FASTCALL, "exchange(value) -> old value"},
    {"fetch_add", FASTCALL(atomic_fetch<Op::add>), METH_FASTCALL,
     "fetch_add(delta) -> old value (wraps around as C does)"},
    {"fetch_sub", FASTCALL(atomic_fetch<Op::sub>), METH_FASTCALL, "fetch_sub(delta) -> old value"},
    {"fetch_and", FASTCALL(atomic_fetch<Op::and_>), METH_FASTCALL, "fetch_and(mask) -> old value"},
    {"fetch_or", FASTCALL(atomic_fetch<Op::or_>), METH_FASTCALL, "fetch_or(mask) -> old value"},
    {"fetch_xor", FASTCALL(atomic_fetch<Op::xor_>), METH_FASTCALL, "fetch_xor(mask) -> old value"},
    {"compare_exchange", FASTCALL(atomic_cas), METH_FASTCALL,
     "compare_exchange(expected, desired) -> (success, value found)"},
    {"wait", FASTCALL(atomic_wait), METH_FASTCALL | METH_KEYWORDS,
     "wait(old, timeout=None) -> bool: blocks while the value equals old (GIL released, Ctrl-C "
     "interrupts); False on timeout."},
    {"notify", FASTCALL(atomic_notify), METH_FASTCALL, "notify(n=None): wakes n waiters (None: all)."},
    {"notify_one", atomic_notify_one, METH_NOARGS, nullptr},
    {"notify_all", atomic_notify_all, METH_NOARGS, nullptr},
    {"_over", FASTCALL(bound_over), METH_FASTCALL | METH_CLASS,
     "_over(buffer, offset, typecode): an atomic view of the integer at `offset`."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef bound_getset[] = {
    {"_address", bound_address, nullptr, "Address of the primitive in this process.", nullptr},
    {"_buffer", bound_buffer, nullptr, "The buffer exporter this view holds.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyGetSetDef atomic_getset[] = {
    {"_address", bound_address, nullptr, nullptr, nullptr},
    {"_buffer", bound_buffer, nullptr, nullptr, nullptr},
    {"typecode", atomic_typecode, nullptr, "The integer's typecode ('l'/'L' read as 'q'/'Q').", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

// ============================================================ TypedBlock

// close() is logical: it refuses while a buffer export is alive, then
// marks the block closed (no new export, no use by this handle); the
// mapping itself goes with the object. A consumer that keeps a pointer
// after releasing its export (numpy's ndarray(buffer=...), whose base is
// then this object) thus never sees the block unmapped under it.
struct BlockObj {
  PyObject_HEAD
  shmkit::TypedBlock* block;
  Py_ssize_t exports;
  PyObject* weakrefs;
  bool closed;
};

PyTypeObject BlockType{PyVarObject_HEAD_INIT(nullptr, 0)};

shmkit::TypeFingerprint fingerprint_from(const char* typecode, const char* type_name, unsigned long size,
                                         unsigned long align) {
  shmkit::TypeFingerprint f;
  f.typecode = (typecode != nullptr && typecode[0] != '\0') ? typecode[0] : 0;
  f.size = static_cast<std::uint32_t>(size);
  f.align = static_cast<std::uint32_t>(align);
  f.name_hash = f.typecode != 0 ? shmkit::fnv1a(std::string_view(&f.typecode, 1))
                                : shmkit::fnv1a(type_name != nullptr ? type_name : "");
  return f;
}

PyObject* wrap_block(shmkit::TypedBlock&& b) {
  BlockObj* o = PyObject_New(BlockObj, &BlockType);
  if (o == nullptr) return nullptr;
  o->exports = 0;
  o->weakrefs = nullptr;
  o->closed = false;
  o->block = new (std::nothrow) shmkit::TypedBlock(std::move(b));
  if (o->block == nullptr) {
    Py_DECREF(o);
    return PyErr_NoMemory();
  }
  return reinterpret_cast<PyObject*>(o);
}

bool check_fingerprint_args(const char* typecode, const char* type_name, unsigned long size, unsigned long align) {
  if ((typecode == nullptr || typecode[0] == '\0') && (type_name == nullptr || type_name[0] == '\0')) {
    PyErr_SetString(PyExc_ValueError, "a typed block needs a typecode or a type name");
    return false;
  }
  if (typecode != nullptr && typecode[0] != '\0' && typecode[1] != '\0') {
    PyErr_SetString(PyExc_ValueError, "typecode must be one character");
    return false;
  }
  if (size == 0 || size > (1UL << 30) || align == 0 || (align & (align - 1)) != 0 || align > 64) {
    PyErr_SetString(PyExc_ValueError, "element size must be in [1, 2**30], alignment a power of two <= 64");
    return false;
  }
  return true;
}

// TypedBlock.create(name, kind, typecode, type_name, elem_size, elem_align,
//                   count, prefix_size, payload_size, params=(),
//                   prefix_init=b"", payload_init=b"", track=False)
PyObject* block_create(PyObject*, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"name", "kind", "typecode", "type_name", "elem_size", "elem_align", "count",
                                 "prefix_size", "payload_size", "params", "prefix_init", "payload_init",
                                 "track", nullptr};
  const char* name = nullptr;
  unsigned long kind = 0, size = 0, align = 0, prefix = 0;
  unsigned long long count = 0, payload = 0;
  const char* typecode = nullptr;
  const char* type_name = nullptr;
  PyObject* params = nullptr;
  Py_buffer pinit{}, yinit{};
  int track = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "zkzzkkKkK|Oy*y*p", const_cast<char**>(kwlist), &name, &kind,
                                   &typecode, &type_name, &size, &align, &count, &prefix, &payload, &params,
                                   &pinit, &yinit, &track)) {
    return nullptr;
  }
  struct Release {
    Py_buffer* a;
    Py_buffer* b;
    ~Release() {
      if (a->obj) PyBuffer_Release(a);
      if (b->obj) PyBuffer_Release(b);
    }
  } release{&pinit, &yinit};
  if (!check_fingerprint_args(typecode, type_name, size, align)) return nullptr;
  shmkit::BlockSpec spec;
  spec.kind = static_cast<shmkit::BlockKind>(kind);
  spec.type = fingerprint_from(typecode, type_name, size, align);
  spec.count = count;
  if (prefix > (1UL << 20)) {
    PyErr_SetString(PyExc_ValueError, "prefix_size too large");
    return nullptr;
  }
  spec.prefix_size = static_cast<std::uint32_t>(prefix);
  spec.payload_size = payload;
  if (params != nullptr && params != Py_None) {
    PyObject* seq = PySequence_Fast(params, "params must be a sequence of at most 4 integers");
    if (seq == nullptr) return nullptr;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > 4) {
      Py_DECREF(seq);
      PyErr_SetString(PyExc_ValueError, "params: at most 4 integers");
      return nullptr;
    }
    for (Py_ssize_t i = 0; i < n; ++i) {
      spec.param[i] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
      if (PyErr_Occurred()) {
        Py_DECREF(seq);
        return nullptr;
      }
    }
    Py_DECREF(seq);
  }
  if (static_cast<unsigned long long>(pinit.len) > prefix ||
      static_cast<unsigned long long>(yinit.len) > payload) {
    PyErr_SetString(PyExc_ValueError, "prefix_init/payload_init longer than the prefix/payload");
    return nullptr;
  }
  shmkit::SharedMemory::Options options;
  options.track = track != 0;
  try {
    std::string n = name != nullptr ? name : "";
    shmkit::TypedBlock b;
    {
      // Block creation does system calls (and may start the tracker's
      // watcher): no Python objects are touched meanwhile.
      PyThreadState* ts = PyEval_SaveThread();
      try {
        b = shmkit::create_typed_block(
            n, spec,
            [&](std::span<std::byte> pre, std::span<std::byte> pay) {
              if (pinit.len > 0) std::memcpy(pre.data(), pinit.buf, static_cast<std::size_t>(pinit.len));
              if (yinit.len > 0) std::memcpy(pay.data(), yinit.buf, static_cast<std::size_t>(yinit.len));
            },
            options);
      } catch (...) {
        PyEval_RestoreThread(ts);
        throw;
      }
      PyEval_RestoreThread(ts);
    }
    return wrap_block(std::move(b));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

// TypedBlock.attach(name, kind, typecode, type_name, elem_size, elem_align)
PyObject* block_attach(PyObject*, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"name", "kind", "typecode", "type_name", "elem_size", "elem_align",
                                 "init_timeout", nullptr};
  const char* name = nullptr;
  unsigned long kind = 0, size = 0, align = 0;
  const char* typecode = nullptr;
  const char* type_name = nullptr;
  double init_timeout = 1.0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "skzzkk|d", const_cast<char**>(kwlist), &name, &kind, &typecode,
                                   &type_name, &size, &align, &init_timeout)) {
    return nullptr;
  }
  if (!check_fingerprint_args(typecode, type_name, size, align)) return nullptr;
  const shmkit::TypeFingerprint f = fingerprint_from(typecode, type_name, size, align);
  shmkit::AttachOptions options;
  options.init_timeout = std::chrono::milliseconds(static_cast<long long>(
      std::max(0.0, std::min(init_timeout, 3600.0)) * 1000));
  try {
    shmkit::TypedBlock b;
    PyThreadState* ts = PyEval_SaveThread();
    try {
      b = shmkit::attach_typed_block(name, static_cast<shmkit::BlockKind>(kind), f, options);
    } catch (...) {
      PyEval_RestoreThread(ts);
      throw;
    }
    PyEval_RestoreThread(ts);
    return wrap_block(std::move(b));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

BlockObj* as_block(PyObject* o) { return reinterpret_cast<BlockObj*>(o); }

bool block_open(BlockObj* b) {
  if (b->closed || b->block == nullptr || b->block->shm.closed()) {
    PyErr_SetString(PyExc_ValueError, "operation on a closed TypedBlock");
    return false;
  }
  return true;
}

int block_getbuffer(PyObject* o, Py_buffer* view, int flags) {
  BlockObj* b = as_block(o);
  if (!block_open(b)) {
    view->obj = nullptr;
    return -1;
  }
  const int r = PyBuffer_FillInfo(view, o, b->block->shm.data(), static_cast<Py_ssize_t>(b->block->shm.size()),
                                  0, flags);
  if (r == 0) ++b->exports;
  return r;
}
void block_releasebuffer(PyObject* o, Py_buffer*) { --as_block(o)->exports; }

PyBufferProcs block_as_buffer = {block_getbuffer, block_releasebuffer};

PyObject* block_close(PyObject* o, PyObject*) {
  BlockObj* b = as_block(o);
  if (b->exports > 0) {
    PyErr_SetString(PyExc_BufferError, "cannot close a TypedBlock while views of it exist");
    return nullptr;
  }
  b->closed = true;  // unmapped with the object (see BlockObj)
  Py_RETURN_NONE;
}

PyObject* block_unlink(PyObject* o, PyObject*) {
  BlockObj* b = as_block(o);
  if (b->block == nullptr) Py_RETURN_NONE;
  try {
    b->block->shm.unlink();
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}

void block_dealloc(PyObject* o) {
  BlockObj* b = as_block(o);
  if (b->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  delete b->block;
  Py_TYPE(o)->tp_free(o);
}

PyObject* block_name(PyObject* o, void*) { return PyUnicode_FromString(as_block(o)->block->shm.name().c_str()); }
PyObject* block_size(PyObject* o, void*) {
  return PyLong_FromSize_t(as_block(o)->closed ? 0 : as_block(o)->block->shm.size());
}
PyObject* block_closed(PyObject* o, void*) { return PyBool_FromLong(as_block(o)->closed); }
PyObject* block_header_field(PyObject* o, void* which) {
  const shmkit::BlockHeader& h = as_block(o)->block->header;
  switch (reinterpret_cast<std::uintptr_t>(which)) {
    case 0: return PyLong_FromUnsignedLongLong(h.payload_offset);
    case 1: return PyLong_FromUnsignedLongLong(h.payload_size);
    case 2: return PyLong_FromUnsignedLongLong(h.count);
    case 3: return PyLong_FromUnsignedLong(h.prefix_size);
    case 4: return Py_BuildValue("(KKKK)", h.param[0], h.param[1], h.param[2], h.param[3]);
    case 5: return PyLong_FromUnsignedLong(h.kind);
    case 6: return PyLong_FromUnsignedLong(h.elem_size);
    default: return PyLong_FromSize_t(shmkit::BlockHeader::kSize);
  }
}
PyObject* block_exports(PyObject* o, void*) { return PyLong_FromSsize_t(as_block(o)->exports); }

PyMethodDef block_methods[] = {
    {"create", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(block_create)),
     METH_VARARGS | METH_KEYWORDS | METH_STATIC,
     "create(name, kind, typecode, type_name, elem_size, elem_align, count, prefix_size, "
     "payload_size, params=(), prefix_init=b'', payload_init=b'', track=False)"},
    {"attach", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(block_attach)),
     METH_VARARGS | METH_KEYWORDS | METH_STATIC,
     "attach(name, kind, typecode, type_name, elem_size, elem_align, init_timeout=1.0)"},
    {"close", block_close, METH_NOARGS,
     "Closes this handle (BufferError while views exist); the block is unmapped with the object."},
    {"unlink", block_unlink, METH_NOARGS, "Removes the name (FileNotFoundError if gone)."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef block_getset[] = {
    {"name", block_name, nullptr, nullptr, nullptr},
    {"size", block_size, nullptr, "Bytes mapped.", nullptr},
    {"closed", block_closed, nullptr, nullptr, nullptr},
    {"payload_offset", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(0)},
    {"payload_size", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(1)},
    {"count", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(2)},
    {"prefix_size", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(3)},
    {"params", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(4)},
    {"kind", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(5)},
    {"elem_size", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(6)},
    {"prefix_offset", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(7)},
    {"_exports", block_exports, nullptr, "Buffer exports alive.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

// ------------------------------------------------------------ module

PyObject* py_fnv1a(PyObject*, PyObject* arg) {
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(arg, &n);
  if (s == nullptr) return nullptr;
  return PyLong_FromUnsignedLongLong(shmkit::fnv1a(std::string_view(s, static_cast<std::size_t>(n))));
}

PyMethodDef module_methods[] = {
    {"fnv1a", py_fnv1a, METH_O, "64-bit FNV-1a of a str's UTF-8 (type-name hashes)."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "shmkit._sync",
                          "shmkit's process-shared locks, semaphores, events, conditions, atomics "
                          "and typed blocks (see python/src/sync.cpp).",
                          -1, module_methods};

void init_view_type(PyTypeObject& t, const char* name, const char* doc, Py_ssize_t basicsize, newfunc tp_new,
                    PyMethodDef* methods, PyGetSetDef* getset) {
  t.tp_name = name;
  t.tp_doc = doc;
  t.tp_basicsize = basicsize;
  t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
  t.tp_new = tp_new;
  t.tp_dealloc = bound_dealloc;
  t.tp_methods = methods;
  t.tp_getset = getset;
  t.tp_weaklistoffset = offsetof(Bound, weakrefs);
}

bool add_type(PyObject* m, PyTypeObject* t, const char* name) {
  if (PyType_Ready(t) < 0) return false;
  Py_INCREF(t);
  if (PyModule_AddObject(m, name, reinterpret_cast<PyObject*>(t)) < 0) {
    Py_DECREF(t);
    return false;
  }
  return true;
}

bool add_size(PyTypeObject* t, std::size_t size, std::size_t align, std::string_view type_name) {
  PyObject* d = t->tp_dict;
  PyObject* s = PyLong_FromSize_t(size);
  PyObject* a = PyLong_FromSize_t(align);
  PyObject* n = PyUnicode_FromStringAndSize(type_name.data(), static_cast<Py_ssize_t>(type_name.size()));
  const bool ok = s && a && n && PyDict_SetItemString(d, "SIZE", s) == 0 &&
                  PyDict_SetItemString(d, "ALIGN", a) == 0 && PyDict_SetItemString(d, "TYPE_NAME", n) == 0;
  Py_XDECREF(s);
  Py_XDECREF(a);
  Py_XDECREF(n);
  PyType_Modified(t);
  return ok;
}

PyTypeObject SemType{PyVarObject_HEAD_INIT(nullptr, 0)};
PyTypeObject EventType{PyVarObject_HEAD_INIT(nullptr, 0)};
PyTypeObject CondType{PyVarObject_HEAD_INIT(nullptr, 0)};

}  // namespace

PyMODINIT_FUNC PyInit__sync() {
  init_view_type(MutexType, "shmkit._sync.Mutex",
                 "Mutex(buffer, offset): a view of a shmkit::Mutex (4 bytes, CPython's Lock).", sizeof(Bound),
                 bound_new<sizeof(shmkit::Mutex), alignof(shmkit::Mutex)>, mutex_methods, bound_getset);
  init_view_type(RMutexType, "shmkit._sync.RecursiveMutex",
                 "RecursiveMutex(buffer, offset): a view of a shmkit::RecursiveMutex (12 bytes, CPython's RLock).",
                 sizeof(Bound), bound_new<sizeof(shmkit::RecursiveMutex), alignof(shmkit::RecursiveMutex)>,
                 rmutex_methods, bound_getset);
  init_view_type(RobustType, "shmkit._sync.RobustMutex",
                 "RobustMutex(buffer, offset): a view of a shmkit::RobustMutex (16 bytes): a lock that "
                 "survives a killed holder (OwnerDiedError).",
                 sizeof(Bound), bound_new<sizeof(shmkit::RobustMutex), alignof(shmkit::RobustMutex)>,
                 robust_methods, bound_getset);
  init_view_type(SemType, "shmkit._sync.Semaphore",
                 "Semaphore(buffer, offset): a view of a shmkit::Semaphore (12 bytes).", sizeof(Bound),
                 bound_new<sizeof(shmkit::Semaphore), alignof(shmkit::Semaphore)>, sem_methods, bound_getset);
  init_view_type(EventType, "shmkit._sync.Event", "Event(buffer, offset): a view of a shmkit::Event (4 bytes).",
                 sizeof(Bound), bound_new<sizeof(shmkit::Event), alignof(shmkit::Event)>, event_methods,
                 bound_getset);
  init_view_type(CondType, "shmkit._sync.Condition",
                 "Condition(buffer, offset): a view of a shmkit::Condition (8 bytes); wait() takes the lock.",
                 sizeof(Bound), bound_new<sizeof(shmkit::Condition), alignof(shmkit::Condition)>, cond_methods,
                 bound_getset);
  init_view_type(AtomicType, "shmkit._sync.AtomicRef",
                 "AtomicRef(buffer, offset, typecode): atomic operations on the integer at `offset` "
                 "(Boost.Atomic ipc_atomic_ref semantics, seq_cst), with wait/notify across processes.",
                 sizeof(AtomicObj), atomic_new, atomic_methods, atomic_getset);

  BlockType.tp_name = "shmkit._sync.TypedBlock";
  BlockType.tp_doc = "A shmkit typed block (typed_block.hpp), created or attached by name; exports its mapping.";
  BlockType.tp_basicsize = sizeof(BlockObj);
  BlockType.tp_flags = Py_TPFLAGS_DEFAULT;
  BlockType.tp_dealloc = block_dealloc;
  BlockType.tp_methods = block_methods;
  BlockType.tp_getset = block_getset;
  BlockType.tp_as_buffer = &block_as_buffer;
  BlockType.tp_weaklistoffset = offsetof(BlockObj, weakrefs);

  PyObject* m = PyModule_Create(&module_def);
  if (m == nullptr) return nullptr;
  if (!add_type(m, &MutexType, "Mutex") || !add_type(m, &RMutexType, "RecursiveMutex") ||
      !add_type(m, &RobustType, "RobustMutex") || !add_type(m, &SemType, "Semaphore") ||
      !add_type(m, &EventType, "Event") || !add_type(m, &CondType, "Condition") ||
      !add_type(m, &AtomicType, "AtomicRef") || !add_type(m, &BlockType, "TypedBlock")) {
    Py_DECREF(m);
    return nullptr;
  }
  if (!add_size(&MutexType, sizeof(shmkit::Mutex), alignof(shmkit::Mutex), shmkit::SyncName<shmkit::Mutex>::value) ||
      !add_size(&RMutexType, sizeof(shmkit::RecursiveMutex), alignof(shmkit::RecursiveMutex),
                shmkit::SyncName<shmkit::RecursiveMutex>::value) ||
      !add_size(&RobustType, sizeof(shmkit::RobustMutex), alignof(shmkit::RobustMutex),
                shmkit::SyncName<shmkit::RobustMutex>::value) ||
      !add_size(&SemType, sizeof(shmkit::Semaphore), alignof(shmkit::Semaphore),
                shmkit::SyncName<shmkit::Semaphore>::value) ||
      !add_size(&EventType, sizeof(shmkit::Event), alignof(shmkit::Event), shmkit::SyncName<shmkit::Event>::value) ||
      !add_size(&CondType, sizeof(shmkit::Condition), alignof(shmkit::Condition),
                shmkit::SyncName<shmkit::Condition>::value)) {
    Py_DECREF(m);
    return nullptr;
  }
  g_owner_died = PyErr_NewExceptionWithDoc(
      "shmkit._sync.OwnerDiedError",
      "A RobustLock's previous holder died holding it. The caller now holds the lock: repair the "
      "data, call make_consistent(), then release().",
      PyExc_RuntimeError, nullptr);
  g_not_recoverable = PyErr_NewExceptionWithDoc(
      "shmkit._sync.NotRecoverableError",
      "A RobustLock was released after an owner death without make_consistent(): it can never be "
      "acquired again. Recreate it.",
      PyExc_RuntimeError, nullptr);
  if (g_owner_died == nullptr || g_not_recoverable == nullptr ||
      PyModule_AddObject(m, "OwnerDiedError", Py_NewRef(g_owner_died)) < 0 ||
      PyModule_AddObject(m, "NotRecoverableError", Py_NewRef(g_not_recoverable)) < 0 ||
      PyModule_AddIntConstant(m, "KIND_SYNC", static_cast<long>(shmkit::BlockKind::sync)) < 0 ||
      PyModule_AddIntConstant(m, "KIND_SPSC_QUEUE", static_cast<long>(shmkit::BlockKind::spsc_queue)) < 0 ||
      PyModule_AddIntConstant(m, "KIND_MPMC_QUEUE", static_cast<long>(shmkit::BlockKind::mpmc_queue)) < 0 ||
      PyModule_AddIntConstant(m, "SLICE_MS", static_cast<long>(kSlice.count())) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
