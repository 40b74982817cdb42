// python/src/sync/semaphore.cpp — shmkit._sync.Semaphore: a view of a
// shmkit::Semaphore (Semaphore, BoundedSemaphore). Contract: module.cpp.
#include <new>

#include "shmkit/sync/semaphore.hpp"
#include "shmkit/sync/standalone.hpp"
#include "sync/sync.hpp"

namespace shmkit::python::sync {
namespace {

PyObject* sem_acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  shmkit::Semaphore& s = prim<shmkit::Semaphore>(self);
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 0, "acquire", Timeouts::clamp, &block, &timeout) < 0) {
    return nullptr;
  }
  if (s.try_acquire()) [[likely]]
    Py_RETURN_TRUE;
  if (!block) Py_RETURN_FALSE;
  const int r =
      wait_sliced(deadline_for(timeout), [&](Clock::time_point end) { return s.try_acquire_until(end); });
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
  ::new (static_cast<void*>(bytes))
      shmkit::Semaphore(static_cast<std::uint32_t>(v), static_cast<std::uint32_t>(m));
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(bytes), sizeof bytes);
}

PyMethodDef sem_methods[] = {
    {"acquire", fastcall(sem_acquire), METH_FASTCALL | METH_KEYWORDS,
     SHMKIT_DOC_ACQUIRE "True when a unit was taken."},
    {"release", fastcall(sem_release), METH_FASTCALL,
     "release($self, n=1, /)\n--\n\nAdds n units (ValueError past a BoundedSemaphore's bound)."},
    {"get_value", sem_get_value, METH_NOARGS, "get_value($self, /)\n--\n\nThe value now (racy)."},
    {"_max_value", sem_max_value, METH_NOARGS, "_max_value($self, /)\n--\n\nThe bound (0: none)."},
    {"_layout", fastcall(sem_layout), METH_FASTCALL | METH_STATIC,
     "_layout(value, max_value, /)\n--\n\nThe bytes of a Semaphore(value, max_value) (max 0: unbounded)."},
    {"__enter__", sem_enter, METH_NOARGS, SHMKIT_DOC_ENTER},
    {"__exit__", fastcall(sem_exit), METH_FASTCALL, SHMKIT_DOC_EXIT},
    {"_over", fastcall(bound_over), METH_FASTCALL | METH_CLASS,
     SHMKIT_DOC_OVER "A view of the semaphore at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};
}  // namespace

bool add_semaphore_type(PyObject* m) {
  return add_view_type(m, "shmkit._sync.Semaphore",
                       "Semaphore(buffer, offset)\n--\n\nA view of a shmkit::Semaphore (12 bytes).",
                       sem_methods, sizeof(shmkit::Semaphore), alignof(shmkit::Semaphore),
                       shmkit::SyncName<shmkit::Semaphore>::value,
                       bound_new<sizeof(shmkit::Semaphore), alignof(shmkit::Semaphore)>) != nullptr;
}

}  // namespace shmkit::python::sync
