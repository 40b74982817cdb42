// python/src/queues/batch_view.cpp — shmkit._queues.BatchView: items of
// an SpscQueue read in place, and _Queue.get_view() that makes one.
// Contract: module.cpp.
#include "common/buffer.hpp"

#include "queues/queues.hpp"

namespace shmkit::python::queues {
namespace {

// ------------------------------------------------------------ BatchView
// Items of an SpscQueue read in place (zero copy). A buffer exporter: numpy
// arrays and memoryviews over it count as exports, and release() (which
// hands the slots back to the producer) raises BufferError while any is
// alive, so no view can see a slot the producer reuses.

struct ViewObj {
  PyObject_HEAD PyObject* queue;  // strong; nullptr once released
  const void* data;
  std::size_t n;
  Py_ssize_t item;
  Exports exports;
};

PyTypeObject* view_type = nullptr;
ViewObj* as_view(PyObject* o) { return reinterpret_cast<ViewObj*>(o); }

void view_finish(ViewObj* v) {
  if (v->queue == nullptr) return;
  QueueObj* q = as_q(v->queue);
  if (q->q != nullptr) q->ops->consume(q->q, v->n);
  q->view = nullptr;
  Py_CLEAR(v->queue);
  v->n = 0;
}

int view_getbuffer(PyObject* o, Py_buffer* b, int flags) {
  ViewObj* v = as_view(o);
  if (v->queue == nullptr) {
    PyErr_SetString(PyExc_ValueError, "the BatchView was released");
    b->obj = nullptr;
    return -1;
  }
  static char empty = 0;
  void* data = v->n != 0 ? const_cast<void*>(v->data) : &empty;
  return v->exports.fill(o, b, data, static_cast<Py_ssize_t>(v->n) * v->item, true, flags);
}
void view_releasebuffer(PyObject* o, Py_buffer*) { as_view(o)->exports.release(); }
PyBufferProcs view_as_buffer = {view_getbuffer, view_releasebuffer};

PyObject* view_release(PyObject* o, PyObject*) {
  ViewObj* v = as_view(o);
  if (!v->exports.none_alive("cannot release a BatchView while buffers of it are exported (delete the numpy "
                             "arrays / memoryviews first)")) {
    return nullptr;
  }
  view_finish(v);
  Py_RETURN_NONE;
}
PyObject* view_enter(PyObject* o, PyObject*) { return Py_NewRef(o); }
PyObject* view_exit(PyObject* o, PyObject* const*, Py_ssize_t) { return view_release(o, nullptr); }
Py_ssize_t view_len(PyObject* o) { return static_cast<Py_ssize_t>(as_view(o)->n); }
PyObject* view_itemsize(PyObject* o, void*) { return PyLong_FromSsize_t(as_view(o)->item); }

void view_dealloc(PyObject* o) {
  // Dropped without release(): its items count as consumed. No export can
  // be alive here (each holds a reference to the view).
  view_finish(as_view(o));
  free_object(o);
}

PyMethodDef view_methods[] = {
    {"release", view_release, METH_NOARGS,
     "release($self, /)\n--\n\nHands the items back to the producer (BufferError while buffers of the view "
     "are exported)."},
    {"__enter__", view_enter, METH_NOARGS, "__enter__($self, /)\n--\n\n"},
    {"__exit__", fastcall(view_exit), METH_FASTCALL, "__exit__($self, /, *args)\n--\n\n"},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef view_getset[] = {{"itemsize", view_itemsize, nullptr, nullptr, nullptr},
                             exports_getset<ViewObj, &ViewObj::exports>(),
                             {nullptr, nullptr, nullptr, nullptr, nullptr}};

}  // namespace

// get_view(max) -> BatchView of up to `max` items in place (SpscQueue only;
// never blocks: empty if nothing is there).
PyObject* q_get_view(PyObject* o, PyObject* arg) {
  QueueObj* self = as_q(o);
  if (self->mpmc) {
    PyErr_SetString(PyExc_TypeError,
                    "zero-copy views are for SpscQueue (an MpmcQueue slot carries a sequence "
                    "number between items)");
    return nullptr;
  }
  const Py_ssize_t max = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
  if (max == -1 && PyErr_Occurred()) return nullptr;
  if (max < 0) {
    PyErr_SetString(PyExc_ValueError, "get_view(max): max must be >= 0");
    return nullptr;
  }
  // Allocated before the state check: an allocation may run the garbage
  // collector, and a finaliser may close this queue.
  ViewObj* v = PyObject_New(ViewObj, view_type);
  if (v == nullptr) return nullptr;
  v->queue = nullptr;
  v->n = 0;
  if (!check_open(self) || !check_no_view(self)) {
    Py_DECREF(v);
    return nullptr;
  }
  v->data = self->ops->peek(self->q, static_cast<std::size_t>(max), &v->n);
  v->item = self->item;
  new (&v->exports) Exports();
  v->queue = Py_NewRef(o);
  self->view = reinterpret_cast<PyObject*>(v);
  return reinterpret_cast<PyObject*>(v);
}

bool add_batch_view_type(PyObject* m) {
  PyType_Slot slots[] = {
      {Py_tp_dealloc, reinterpret_cast<void*>(view_dealloc)},
      {Py_tp_methods, view_methods},
      {Py_tp_getset, view_getset},
      {Py_sq_length, reinterpret_cast<void*>(view_len)},
      {Py_tp_doc,
       const_cast<char*>("Items of an SpscQueue read in place; release() hands them back to the producer.")},
      {0, nullptr},
  };
  PyType_Spec spec = {"shmkit._queues.BatchView", sizeof(ViewObj), 0, kMadeHere, slots};
  view_type = add_type(m, spec, nullptr, &view_as_buffer);  // reached through get_view() only
  return view_type != nullptr;
}
}  // namespace shmkit::python::queues
