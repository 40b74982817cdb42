// python/src/queues/broadcast_ring.cpp — shmkit._queues._BroadcastRing:
// a BroadcastRing block (one writer, readers that may be lapped).
// Contract: module.cpp.
#include <string>

#include "queues/queues.hpp"

namespace shmkit::python::queues {
namespace {

struct RingObj : CodecHead {
  const WordOps* ops;
  void* p;
  PyObject* weakrefs;
};
RingObj* as_ring(PyObject* o) { return reinterpret_cast<RingObj*>(o); }
// _BroadcastRing(name, create, capacity, item_size, item_align, typecode,
//                type_name, mode, maxbytes=0, struct=None, track=False)
PyObject* ring_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"name",      "create", "capacity", "item_size", "item_align", "typecode",
                                 "type_name", "mode",   "maxbytes", "struct",    "track",      nullptr};
  const char* name = nullptr;
  int create = 0, track = 0;
  unsigned long long capacity = 0;
  Py_ssize_t item = 0, align = 0, maxbytes = 0;
  const char *typecode = nullptr, *type_name = nullptr, *mode = nullptr;
  PyObject* st = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "zpKnnzzs|nOp", const_cast<char**>(kwlist), &name, &create,
                                   &capacity, &item, &align, &typecode, &type_name, &mode, &maxbytes, &st,
                                   &track)) {
    return nullptr;
  }
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) return nullptr;
  RingObj* self = as_ring(o);
  shmkit::TypeFingerprint f;
  const WordOps* ops = init_word_codec(self, item, align, typecode, type_name, mode, maxbytes, st, &f);
  if (ops == nullptr) {
    Py_DECREF(o);
    return nullptr;
  }
  const std::string n = name != nullptr ? name : "";
  if (!without_gil_translated(
          [&] { self->p = create ? ops->bcreate(n, capacity, f, track != 0) : ops->battach(n, f); })) {
    Py_DECREF(o);
    return nullptr;
  }
  self->ops = ops;
  return o;
}

void ring_dealloc(PyObject* o) {
  RingObj* self = as_ring(o);
  if (self->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  if (self->p != nullptr) self->ops->bdestroy(self->p);
  Py_XDECREF(self->st);
  free_object(o);
}

PyObject* ring_push(PyObject* o, PyObject* const* args, Py_ssize_t nargs) {
  RingObj* self = as_ring(o);
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "push(value)");
    return nullptr;
  }
  std::uint64_t buf[512] = {};
  if (pack_item(self, args[0], reinterpret_cast<unsigned char*>(buf)) < 0) return nullptr;
  self->ops->push(self->p, buf);
  Py_RETURN_NONE;
}

// reader(cursor=None): from the next item pushed (None), or from `cursor`
// ("oldest": the oldest item still in the ring).
PyObject* ring_reader(PyObject* o, PyObject* const* args, Py_ssize_t nargs) {
  RingObj* self = as_ring(o);
  std::uint64_t cursor = self->ops->write_index(self->p);
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "reader(cursor=None)");
    return nullptr;
  }
  if (nargs == 1 && args[0] != Py_None) {
    if (PyUnicode_Check(args[0]) && PyUnicode_CompareWithASCIIString(args[0], "oldest") == 0) {
      const std::uint64_t cap = self->ops->capacity(self->p);
      cursor = cursor > cap ? cursor - cap : 0;
    } else {
      cursor = PyLong_AsUnsignedLongLong(args[0]);
      if (PyErr_Occurred()) return nullptr;
    }
  }
  ReaderObj* r = PyObject_New(ReaderObj, reader_type);
  if (r == nullptr) return nullptr;
  r->mode = self->mode;
  r->code = self->code;
  r->item = self->item;
  r->maxbytes = self->maxbytes;
  r->st = Py_XNewRef(self->st);
  r->ops = self->ops;
  r->ring = Py_NewRef(o);
  r->busy = false;
  r->r = self->ops->reader_at(self->p, cursor);
  return reinterpret_cast<PyObject*>(r);
}

PyObject* ring_write_index(PyObject* o, void*) {
  return PyLong_FromUnsignedLongLong(as_ring(o)->ops->write_index(as_ring(o)->p));
}
PyObject* ring_capacity(PyObject* o, void*) {
  return PyLong_FromUnsignedLongLong(as_ring(o)->ops->capacity(as_ring(o)->p));
}
PyObject* ring_name(PyObject* o, void*) {
  return PyUnicode_FromString(as_ring(o)->ops->bname(as_ring(o)->p).c_str());
}
PyObject* ring_unlink(PyObject* o, PyObject*) {
  try {
    as_ring(o)->ops->bunlink(as_ring(o)->p);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyMethodDef ring_methods[] = {
    {"push", fastcall(ring_push), METH_FASTCALL,
     "push($self, value, /)\n--\n\nThe writer publishes an item (wait-free)."},
    {"reader", fastcall(ring_reader), METH_FASTCALL,
     "reader($self, cursor=None, /)\n--\n\nA reader from the next item (None), 'oldest', or a saved cursor."},
    {"unlink", ring_unlink, METH_NOARGS, "unlink($self, /)\n--\n\nRemoves the block's name."},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef ring_getset[] = {{"write_index", ring_write_index, nullptr, "Items published so far.", nullptr},
                             {"capacity", ring_capacity, nullptr, nullptr, nullptr},
                             {"name", ring_name, nullptr, nullptr, nullptr},
                             {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMemberDef ring_members[] = {SHMKIT_WEAKLIST_MEMBER(RingObj, weakrefs), {nullptr, 0, 0, 0, nullptr}};

}  // namespace

bool add_broadcast_ring_type(PyObject* m) {
  PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(ring_new)},
      {Py_tp_dealloc, reinterpret_cast<void*>(ring_dealloc)},
      {Py_tp_methods, ring_methods},
      {Py_tp_getset, ring_getset},
      {Py_tp_members, ring_members},
      {Py_tp_doc,
       const_cast<char*>(
           "_BroadcastRing(name, create, capacity, item_size, item_align, typecode, type_name, mode, "
           "maxbytes=0, struct=None, track=False)\n--\n\n"
           "A shmkit BroadcastRing block (shmkit/lockfree/broadcast_ring.hpp).")},
      {0, nullptr},
  };
  PyType_Spec spec = {"shmkit._queues._BroadcastRing", sizeof(RingObj), 0,
                      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots};
  return add_type(m, spec, "_BroadcastRing") != nullptr;
}
}  // namespace shmkit::python::queues
