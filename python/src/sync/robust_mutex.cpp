// python/src/sync/robust_mutex.cpp — shmkit._sync.RobustMutex: a view of
// a shmkit::RobustMutex, a lock that survives a killed holder
// (OwnerDiedError, make_consistent). Contract: module.cpp.
#include "shmkit/sync/standalone.hpp"
#include "sync/sync.hpp"

namespace shmkit::python::sync {
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

namespace {

PyObject* robust_acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  shmkit::RobustMutex& m = prim<shmkit::RobustMutex>(self);
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 0, "acquire", Timeouts::clamp, &block, &timeout) < 0) {
    return nullptr;
  }
  shmkit::LockResult r = m.try_lock();
  if (r == shmkit::LockResult::acquired) [[likely]]
    Py_RETURN_TRUE;
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
    {"acquire", fastcall(robust_acquire), METH_FASTCALL | METH_KEYWORDS,
     SHMKIT_DOC_ACQUIRE
     "True when acquired, False when not (timeout, "
     "block=False). Raises OwnerDiedError when the previous holder died holding the lock: the "
     "caller then holds it and must repair the data, call make_consistent() and release(). Raises "
     "NotRecoverableError if a holder released it after an owner death without make_consistent()."},
    {"release", robust_release, METH_NOARGS,
     "release($self, /)\n--\n\nReleases the lock (RuntimeError if the calling thread does not hold it)."},
    {"make_consistent", robust_make_consistent, METH_NOARGS,
     "make_consistent($self, /)\n--\n\nAfter OwnerDiedError, once the data is repaired: the lock becomes "
     "normal again."},
    {"_state", robust_state, METH_NOARGS,
     "_state($self, /)\n--\n\n'free', 'locked', 'owner_died' or 'not_recoverable' (racy)."},
    {"__enter__", robust_enter, METH_NOARGS, SHMKIT_DOC_ENTER},
    {"__exit__", fastcall(robust_exit), METH_FASTCALL, SHMKIT_DOC_EXIT},
    {"_over", fastcall(bound_over), METH_FASTCALL | METH_CLASS,
     SHMKIT_DOC_OVER "A view of the lock at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};
}  // namespace

PyTypeObject* robust_type = nullptr;

bool add_robust_mutex_type(PyObject* m) {
  robust_type = add_view_type(
      m, "shmkit._sync.RobustMutex",
      "RobustMutex(buffer, offset)\n--\n\n"
      "A view of a shmkit::RobustMutex (16 bytes): a lock that survives a killed holder (OwnerDiedError).",
      robust_methods, sizeof(shmkit::RobustMutex), alignof(shmkit::RobustMutex),
      shmkit::SyncName<shmkit::RobustMutex>::value,
      bound_new<sizeof(shmkit::RobustMutex), alignof(shmkit::RobustMutex)>);
  return robust_type != nullptr;
}

}  // namespace shmkit::python::sync
