// python/src/sync/recursive_mutex.cpp — shmkit._sync.RecursiveMutex: a
// view of a shmkit::RecursiveMutex (CPython's RLock, the default lock of a
// Value). Contract: module.cpp.
#include "shmkit/sync/recursive_mutex.hpp"

#include "shmkit/sync/standalone.hpp"
#include "sync/sync.hpp"

namespace shmkit::python::sync {

PyTypeObject* rmutex_type = nullptr;

namespace {

PyObject* rmutex_acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return lock_acquire(prim<shmkit::RecursiveMutex>(self), args, nargs, kwnames,
                      [](shmkit::RecursiveMutex& m) { return m.try_lock(); });
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
    {"acquire", fastcall(rmutex_acquire), METH_FASTCALL | METH_KEYWORDS,
     SHMKIT_DOC_ACQUIRE "multiprocessing.RLock.acquire: the owner may acquire again (one more level)."},
    {"release", rmutex_release, METH_NOARGS,
     "release($self, /)\n--\n\nDrops one level (AssertionError if the calling thread does not hold it)."},
    {"__enter__", rmutex_enter, METH_NOARGS, SHMKIT_DOC_ENTER},
    {"__exit__", fastcall(rmutex_exit), METH_FASTCALL, SHMKIT_DOC_EXIT},
    {"_count", rmutex_count, METH_NOARGS,
     "_count($self, /)\n--\n\nRecursion level of the calling thread (0 if not the owner)."},
    {"_is_mine", rmutex_is_mine, METH_NOARGS,
     "_is_mine($self, /)\n--\n\nTrue if the calling thread holds the lock."},
    {"_over", fastcall(bound_over), METH_FASTCALL | METH_CLASS,
     SHMKIT_DOC_OVER "A view of the lock at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

bool add_recursive_mutex_type(PyObject* m) {
  rmutex_type = add_view_type(m, "shmkit._sync.RecursiveMutex",
                              "RecursiveMutex(buffer, offset)\n--\n\n"
                              "A view of a shmkit::RecursiveMutex (12 bytes, CPython's RLock).",
                              rmutex_methods, sizeof(shmkit::RecursiveMutex), alignof(shmkit::RecursiveMutex),
                              shmkit::SyncName<shmkit::RecursiveMutex>::value,
                              bound_new<sizeof(shmkit::RecursiveMutex), alignof(shmkit::RecursiveMutex)>);
  return rmutex_type != nullptr;
}

}  // namespace shmkit::python::sync
