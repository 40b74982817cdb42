// python/src/sync/event.cpp — shmkit._sync.Event: a view of a
// shmkit::Event. Contract: module.cpp.
#include "shmkit/sync/event.hpp"
#include "shmkit/sync/standalone.hpp"
#include "sync/sync.hpp"

namespace shmkit::python::sync {
namespace {

PyObject* event_is_set(PyObject* self, PyObject*) {
  return PyBool_FromLong(prim<shmkit::Event>(self).is_set());
}
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
  double timeout;
  if (parse_timeout(args, nargs, kwnames, 0, "wait", Timeouts::clamp, &timeout) < 0) return nullptr;
  if (e.is_set()) Py_RETURN_TRUE;
  const int r = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) { return e.wait_until(end); });
  if (r < 0) return nullptr;
  return PyBool_FromLong(r);
}

PyMethodDef event_methods[] = {
    {"is_set", event_is_set, METH_NOARGS, "is_set($self, /)\n--\n\nTrue if the flag is set."},
    {"set", event_set, METH_NOARGS, "set($self, /)\n--\n\nSets the flag and wakes every waiter."},
    {"clear", event_clear, METH_NOARGS, "clear($self, /)\n--\n\nClears the flag."},
    {"wait", fastcall(event_wait), METH_FASTCALL | METH_KEYWORDS,
     "wait($self, /, timeout=None)\n--\n\nThe flag's value when it returns."},
    {"_over", fastcall(bound_over), METH_FASTCALL | METH_CLASS,
     SHMKIT_DOC_OVER "A view of the event at `offset` of a writable buffer."},
    {nullptr, nullptr, 0, nullptr}};
}  // namespace

bool add_event_type(PyObject* m) {
  return add_view_type(m, "shmkit._sync.Event",
                       "Event(buffer, offset)\n--\n\nA view of a shmkit::Event (4 bytes).", event_methods,
                       sizeof(shmkit::Event), alignof(shmkit::Event), shmkit::SyncName<shmkit::Event>::value,
                       bound_new<sizeof(shmkit::Event), alignof(shmkit::Event)>) != nullptr;
}

}  // namespace shmkit::python::sync
