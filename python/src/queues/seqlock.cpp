// python/src/queues/seqlock.cpp — shmkit._queues._SeqLock: a SeqLock
// block (one writer, any readers, never torn). Contract: module.cpp.
#include <string>

#include "queues/queues.hpp"

namespace shmkit::python::queues {
namespace {

// ------------------------------------------------------------ _SeqLock

struct SeqObj : CodecHead {
  const WordOps* ops;
  void* p;
  PyObject* weakrefs;
  WaitCount waiting;  // calls waiting without the GIL
};

SeqObj* as_seq(PyObject* o) { return reinterpret_cast<SeqObj*>(o); }

// _SeqLock(name, create, item_size, item_align, typecode, type_name, mode,
//          maxbytes=0, struct=None, initial=None, track=False)
PyObject* seq_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"name", "create",   "item_size", "item_align", "typecode", "type_name",
                                 "mode", "maxbytes", "struct",    "initial",    "track",    nullptr};
  const char* name = nullptr;
  int create = 0, track = 0;
  Py_ssize_t item = 0, align = 0, maxbytes = 0;
  const char *typecode = nullptr, *type_name = nullptr, *mode = nullptr;
  PyObject *st = nullptr, *initial = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "zpnnzzs|nOOp", const_cast<char**>(kwlist), &name, &create,
                                   &item, &align, &typecode, &type_name, &mode, &maxbytes, &st, &initial,
                                   &track)) {
    return nullptr;
  }
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) return nullptr;
  SeqObj* self = as_seq(o);
  shmkit::TypeFingerprint f;
  const WordOps* ops = init_word_codec(self, item, align, typecode, type_name, mode, maxbytes, st, &f);
  if (ops == nullptr) {
    Py_DECREF(o);
    return nullptr;
  }
  std::uint64_t buf[512] = {};
  if (create && initial != nullptr && initial != Py_None &&
      pack_item(self, initial, reinterpret_cast<unsigned char*>(buf)) < 0) {
    Py_DECREF(o);
    return nullptr;
  }
  const std::string n = name != nullptr ? name : "";
  if (!without_gil_translated(
          [&] { self->p = create ? ops->create(n, f, buf, track != 0) : ops->attach(n, f); })) {
    Py_DECREF(o);
    return nullptr;
  }
  self->ops = ops;
  return o;
}

void seq_dealloc(PyObject* o) {
  SeqObj* self = as_seq(o);
  if (self->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  if (self->p != nullptr) self->ops->destroy(self->p);
  Py_XDECREF(self->st);
  free_object(o);
}

bool seq_open(SeqObj* self) {
  if (self->p == nullptr) {
    PyErr_SetString(PyExc_ValueError, "operation on a closed SeqLock");
    return false;
  }
  return true;
}

PyObject* seq_store(PyObject* o, PyObject* const* args, Py_ssize_t nargs) {
  SeqObj* self = as_seq(o);
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "store(value)");
    return nullptr;
  }
  std::uint64_t buf[512] = {};
  if (pack_item(self, args[0], reinterpret_cast<unsigned char*>(buf)) < 0) return nullptr;
  if (!seq_open(self)) return nullptr;  // after the conversion, which may close it
  self->ops->store(self->p, buf);
  Py_RETURN_NONE;
}

// try_read() -> value, or None if a write overlapped.
PyObject* seq_try_read(PyObject* o, PyObject*) {
  SeqObj* self = as_seq(o);
  if (!seq_open(self)) return nullptr;
  std::uint64_t buf[512];
  if (!self->ops->try_read(self->p, buf)) Py_RETURN_NONE;
  return unpack_item(self, reinterpret_cast<unsigned char*>(buf));
}

// read(timeout=None) -> value; TimeoutError if no consistent value in time
// (only while a writer killed mid-store is not replaced).
PyObject* seq_read(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  SeqObj* self = as_seq(o);
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 0, "read", Timeouts::raise, &block, &timeout) < 0) {
    return nullptr;
  }
  if (!seq_open(self)) return nullptr;
  std::uint64_t buf[512];
  if (self->ops->try_read(self->p, buf)) [[likely]]
    return unpack_item(self, reinterpret_cast<unsigned char*>(buf));
  const WordOps* ops = self->ops;
  void* p = self->p;
  Waiting guard(self->waiting);
  const int r = wait_sliced(deadline_for(block ? timeout : 0.0),
                            [&](Clock::time_point end) { return ops->read_until(p, buf, end); });
  if (r < 0) return nullptr;
  if (r == 0) {
    PyErr_SetString(PyExc_TimeoutError,
                    "SeqLock.read(): no consistent value in time (a writer died mid-store?)");
    return nullptr;
  }
  return unpack_item(self, reinterpret_cast<unsigned char*>(buf));
}

PyObject* seq_version(PyObject* o, void*) {
  SeqObj* self = as_seq(o);
  if (!seq_open(self)) return nullptr;
  return PyLong_FromUnsignedLongLong(self->ops->version(self->p));
}
PyObject* seq_name(PyObject* o, void*) {
  SeqObj* self = as_seq(o);
  if (!seq_open(self)) return nullptr;
  return PyUnicode_FromString(self->ops->name(self->p).c_str());
}
PyObject* seq_unlink(PyObject* o, PyObject*) {
  SeqObj* self = as_seq(o);
  if (!seq_open(self)) return nullptr;
  try {
    self->ops->unlink(self->p);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}
PyObject* seq_close(PyObject* o, PyObject*) {
  SeqObj* self = as_seq(o);
  if (self->waiting.live() > 0) {
    PyErr_SetString(PyExc_RuntimeError, "cannot close a SeqLock while other threads wait on it");
    return nullptr;
  }
  if (self->p != nullptr) self->ops->destroy(self->p);
  self->p = nullptr;
  Py_RETURN_NONE;
}

PyMethodDef seq_methods[] = {
    {"store", fastcall(seq_store), METH_FASTCALL,
     "store($self, value, /)\n--\n\nThe writer publishes a value (wait-free)."},
    {"try_read", seq_try_read, METH_NOARGS,
     "try_read($self, /)\n--\n\nThe value, or None if a write overlapped the copy."},
    {"read", fastcall(seq_read), METH_FASTCALL | METH_KEYWORDS,
     "read($self, /, block=True, timeout=None)\n--\n\nA consistent value (never torn)."},
    {"unlink", seq_unlink, METH_NOARGS, "unlink($self, /)\n--\n\nRemoves the block's name."},
    {"close", seq_close, METH_NOARGS, "close($self, /)\n--\n\nUnmaps the block (this handle only)."},
    {nullptr, nullptr, 0, nullptr}};
PyObject* seq_waiting(PyObject* o, void*) { return PyLong_FromSsize_t(as_seq(o)->waiting.live()); }

PyGetSetDef seq_getset[] = {
    {"version", seq_version, nullptr, "The sequence number (even when stable; +2 per store).", nullptr},
    {"_waiting", seq_waiting, nullptr, "Calls of this handle waiting without the GIL.", nullptr},
    {"name", seq_name, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMemberDef seq_members[] = {SHMKIT_WEAKLIST_MEMBER(SeqObj, weakrefs), {nullptr, 0, 0, 0, nullptr}};

}  // namespace

bool add_seqlock_type(PyObject* m) {
  PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(seq_new)},
      {Py_tp_dealloc, reinterpret_cast<void*>(seq_dealloc)},
      {Py_tp_methods, seq_methods},
      {Py_tp_getset, seq_getset},
      {Py_tp_members, seq_members},
      {Py_tp_doc, const_cast<char*>(
                      "_SeqLock(name, create, item_size, item_align, typecode, type_name, mode, maxbytes=0, "
                      "struct=None, initial=None, track=False)\n--\n\n"
                      "A shmkit SeqLock block (shmkit/lockfree/seqlock.hpp).")},
      {0, nullptr},
  };
  PyType_Spec spec = {"shmkit._queues._SeqLock", sizeof(SeqObj), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
                      slots};
  return add_type(m, spec, "_SeqLock") != nullptr;
}
}  // namespace shmkit::python::queues
