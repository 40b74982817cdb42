// python/src/sync/condition.cpp — shmkit._sync.Condition: a view of a
// shmkit::Condition; wait() takes the lock (a Mutex, RecursiveMutex or
// RobustMutex view). Contract: module.cpp.
#include <cstdint>

#include "shmkit/sync/condition.hpp"
#include "shmkit/sync/mutex.hpp"
#include "shmkit/sync/recursive_mutex.hpp"
#include "shmkit/sync/standalone.hpp"
#include "sync/sync.hpp"

namespace shmkit::python::sync {
// ============================================================ Condition
// wait(lock, timeout=None): `lock` is a Mutex, RecursiveMutex or
// RobustMutex view held by the caller. Every level of a RecursiveMutex is
// released while waiting and restored after (CPython's Condition).

namespace {

PyObject* cond_wait(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  shmkit::Condition& c = prim<shmkit::Condition>(self);
  double timeout;
  if (parse_timeout(args, nargs, kwnames, 1, "wait", Timeouts::clamp, &timeout) < 0) return nullptr;
  PyObject* lock = args[0];
  const auto deadline = deadline_for(timeout);

  // Release the caller's hold (all levels), remembering how to restore it.
  enum { kMutex, kRecursive, kRobust } kind;
  std::uint32_t levels = 1;
  if (PyObject_TypeCheck(lock, mutex_type)) {
    kind = kMutex;
  } else if (PyObject_TypeCheck(lock, rmutex_type)) {
    kind = kRecursive;
  } else if (PyObject_TypeCheck(lock, robust_type)) {
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
    {"wait", fastcall(cond_wait), METH_FASTCALL | METH_KEYWORDS,
     "wait($self, lock, /, timeout=None)\n--\n\nReleases `lock` (held by the caller, every level of an "
     "RLock), sleeps until notified or the timeout, re-acquires it. False on timeout."},
    {"notify", fastcall(cond_notify), METH_FASTCALL, "notify($self, n=1, /)\n--\n\nWakes up to n waiters."},
    {"notify_all", cond_notify_all, METH_NOARGS, "notify_all($self, /)\n--\n\nWakes every waiter."},
    {"_over", fastcall(bound_over), METH_FASTCALL | METH_CLASS,
     SHMKIT_DOC_OVER "A view of the condition at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};
}  // namespace

bool add_condition_type(PyObject* m) {
  return add_view_type(m, "shmkit._sync.Condition",
                       "Condition(buffer, offset)\n--\n\n"
                       "A view of a shmkit::Condition (8 bytes); wait() takes the lock.",
                       cond_methods, sizeof(shmkit::Condition), alignof(shmkit::Condition),
                       shmkit::SyncName<shmkit::Condition>::value,
                       bound_new<sizeof(shmkit::Condition), alignof(shmkit::Condition)>) != nullptr;
}

}  // namespace shmkit::python::sync
