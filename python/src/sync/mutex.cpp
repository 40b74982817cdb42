// python/src/sync/mutex.cpp — shmkit._sync.Mutex: a view of a shmkit::Mutex
// (CPython's Lock). Contract: module.cpp.
#include "shmkit/sync/mutex.hpp"

#include "shmkit/sync/standalone.hpp"
#include "sync/sync.hpp"

namespace shmkit::python::sync {

PyTypeObject* mutex_type = nullptr;

namespace {

PyObject* mutex_acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return lock_acquire(prim<shmkit::Mutex>(self), args, nargs, kwnames,
                      [](shmkit::Mutex& m) { return !m.is_locked() && m.try_lock(); });
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
PyObject* mutex_locked(PyObject* self, PyObject*) {
  return PyBool_FromLong(prim<shmkit::Mutex>(self).is_locked());
}

PyMethodDef mutex_methods[] = {
    {"acquire", fastcall(mutex_acquire), METH_FASTCALL | METH_KEYWORDS,
     SHMKIT_DOC_ACQUIRE "multiprocessing.Lock.acquire: block=False tries once; timeout in seconds (None: "
                        "forever). Interruptible by Ctrl-C. True when acquired."},
    {"release", mutex_release, METH_NOARGS,
     "release($self, /)\n--\n\nReleases the lock (ValueError if it is not locked)."},
    {"__enter__", mutex_enter, METH_NOARGS, SHMKIT_DOC_ENTER},
    {"__exit__", fastcall(mutex_exit), METH_FASTCALL, SHMKIT_DOC_EXIT},
    {"locked", mutex_locked, METH_NOARGS,
     "locked($self, /)\n--\n\nTrue if the lock is held (by anyone; racy)."},
    {"_over", fastcall(bound_over), METH_FASTCALL | METH_CLASS,
     SHMKIT_DOC_OVER "A view of the lock at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

bool add_mutex_type(PyObject* m) {
  mutex_type = add_view_type(m, "shmkit._sync.Mutex",
                             "Mutex(buffer, offset)\n--\n\n"
                             "A view of a shmkit::Mutex (4 bytes, CPython's Lock).",
                             mutex_methods, sizeof(shmkit::Mutex), alignof(shmkit::Mutex),
                             shmkit::SyncName<shmkit::Mutex>::value,
                             bound_new<sizeof(shmkit::Mutex), alignof(shmkit::Mutex)>);
  return mutex_type != nullptr;
}

}  // namespace shmkit::python::sync
