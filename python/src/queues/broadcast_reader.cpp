// python/src/queues/broadcast_reader.cpp — shmkit._queues.BroadcastReader:
// a process-local cursor over a _BroadcastRing. Contract: module.cpp.
#include "queues/queues.hpp"

namespace shmkit::python::queues {
namespace {

ReaderObj* as_reader(PyObject* o) { return reinterpret_cast<ReaderObj*>(o); }

void reader_dealloc(PyObject* o) {
  ReaderObj* self = as_reader(o);
  if (self->r != nullptr) self->ops->reader_destroy(self->r);
  Py_XDECREF(self->st);
  Py_XDECREF(self->ring);
  free_object(o);
}

// read(block=True, timeout=None) -> item; queue.Empty on timeout; Lapped
// (with .lost) when items were overwritten before this reader got them (the
// cursor then skips them; the next read continues).
PyObject* reader_read(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  ReaderObj* self = as_reader(o);
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 0, "read", Timeouts::raise, &block, &timeout) < 0) {
    return nullptr;
  }
  // One reader is one cursor: a second thread must not move it while the
  // first waits without the GIL.
  if (self->busy) {
    PyErr_SetString(PyExc_RuntimeError, "another thread is reading from this reader");
    return nullptr;
  }
  std::uint64_t buf[512];
  std::uint64_t lost = 0;
  int status = self->ops->read(self->r, buf, &lost, Clock::time_point{});
  if (status == 1 && block) {
    const WordOps* ops = self->ops;
    void* r = self->r;
    self->busy = true;
    const int w = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) {
      status = ops->read(r, buf, &lost, end);
      return status != 1;
    });
    self->busy = false;
    if (w < 0) return nullptr;
  }
  if (status == 0) return unpack_item(self, reinterpret_cast<unsigned char*>(buf));
  if (status == 1) {
    PyErr_SetNone(g_empty);
    return nullptr;
  }
  PyObject* exc = PyObject_CallFunction(g_lapped, "K", static_cast<unsigned long long>(lost));
  if (exc != nullptr) {
    PyObject* l = PyLong_FromUnsignedLongLong(lost);
    if (l != nullptr) {
      PyObject_SetAttrString(exc, "lost", l);
      Py_DECREF(l);
    }
    PyErr_SetObject(g_lapped, exc);
    Py_DECREF(exc);
  }
  return nullptr;
}
PyObject* reader_cursor(PyObject* o, void*) {
  return PyLong_FromUnsignedLongLong(as_reader(o)->ops->cursor(as_reader(o)->r));
}
PyObject* reader_backlog(PyObject* o, PyObject*) {
  return PyLong_FromUnsignedLongLong(as_reader(o)->ops->backlog(as_reader(o)->r));
}

PyMethodDef reader_methods[] = {
    {"read", fastcall(reader_read), METH_FASTCALL | METH_KEYWORDS,
     "read($self, /, block=True, timeout=None)\n--\n\nThe next item; queue.Empty on timeout; Lapped(lost) if "
     "overwritten."},
    {"backlog", reader_backlog, METH_NOARGS, "backlog($self, /)\n--\n\nItems published and not yet read."},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef reader_getset[] = {
    {"cursor", reader_cursor, nullptr, "The index of the next item this reader wants.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

}  // namespace

PyTypeObject* reader_type = nullptr;

bool add_broadcast_reader_type(PyObject* m) {
  PyType_Slot slots[] = {
      {Py_tp_dealloc, reinterpret_cast<void*>(reader_dealloc)},
      {Py_tp_methods, reader_methods},
      {Py_tp_getset, reader_getset},
      {Py_tp_doc, const_cast<char*>("A reader of a BroadcastRing: a process-local cursor.")},
      {0, nullptr},
  };
  PyType_Spec spec = {"shmkit._queues.BroadcastReader", sizeof(ReaderObj), 0, kMadeHere, slots};
  reader_type = add_type(m, spec, "BroadcastReader");
  return reader_type != nullptr;
}
}  // namespace shmkit::python::queues
