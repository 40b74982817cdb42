// python/src/queues/queue.cpp — shmkit._queues._Queue: an SpscQueue or
// MpmcQueue block with a run-time item type. Contract: module.cpp.
#include <algorithm>
#include <cstring>
#include <string>

#include "queues/queues.hpp"

namespace shmkit::python::queues {
namespace {

// put(item, block=True, timeout=None)
PyObject* q_put(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  QueueObj* self = as_q(o);
  if (nargs < 1) {
    PyErr_SetString(PyExc_TypeError, "put(item, block=True, timeout=None)");
    return nullptr;
  }
  // On the stack (items are at most 4096 bytes): another thread may use
  // this handle while we wait without the GIL.
  alignas(16) unsigned char buf[4096];
  if (self->mode == 'y') std::memset(buf, 0, static_cast<std::size_t>(self->item));
  // Every conversion first (each may run Python code that closes the
  // queue), then the state check, then the queue.
  if (pack_item(self, args[0], buf) < 0) return nullptr;
  bool block = true;
  double timeout = -1.0;
  if ((nargs > 1 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 1, "put", Timeouts::raise, &block, &timeout) < 0) {
    return nullptr;
  }
  if (!check_open(self)) return nullptr;
  if (self->ops->try_push(self->mpmc, self->q, buf, 1) == 1) [[likely]]
    Py_RETURN_NONE;
  if (!block) {
    PyErr_SetNone(g_full);
    return nullptr;
  }
  const Ops* ops = self->ops;
  const bool mpmc = self->mpmc;
  void* q = self->q;
  Waiting guard(self->waiting);
  const int r = wait_sliced(deadline_for(timeout),
                            [&](Clock::time_point end) { return ops->push_until(mpmc, q, buf, end); });
  if (r < 0) return nullptr;
  if (r == 0) {
    PyErr_SetNone(g_full);
    return nullptr;
  }
  Py_RETURN_NONE;
}

// get(block=True, timeout=None)
PyObject* q_get(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  QueueObj* self = as_q(o);
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 0, "get", Timeouts::raise, &block, &timeout) < 0) {
    return nullptr;
  }
  if (!check_open(self)) return nullptr;
  if (!check_no_view(self)) [[unlikely]]
    return nullptr;
  // On the stack (items are at most 4096 bytes): another thread may use
  // this handle while we wait without the GIL.
  alignas(16) unsigned char buf[4096];
  if (self->ops->try_pop(self->mpmc, self->q, buf, 1) == 1) [[likely]]
    return unpack_item(self, buf);
  if (!block) {
    PyErr_SetNone(g_empty);
    return nullptr;
  }
  const Ops* ops = self->ops;
  const bool mpmc = self->mpmc;
  void* q = self->q;
  Waiting guard(self->waiting);
  const int r = wait_sliced(deadline_for(timeout),
                            [&](Clock::time_point end) { return ops->pop_until(mpmc, q, buf, end); });
  if (r < 0) return nullptr;
  if (r == 0) {
    PyErr_SetNone(g_empty);
    return nullptr;
  }
  return unpack_item(self, buf);
}

// put_many(items, timeout=None) -> None: every item, in order, blocking
// while full. `items` is a buffer of k whole items (bytes, a numpy array)
// or an iterable of items. On timeout raises queue.Full; the items before
// the one that did not fit were put (their count is in the exception's
// `count` attribute).
PyObject* q_put_many(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  QueueObj* self = as_q(o);
  // A negative timeout is 0 here (as it always was for put_many), unlike put().
  double timeout = -1.0;
  if (parse_timeout(args, nargs, kwnames, 1, "put_many", Timeouts::clamp, &timeout) < 0) return nullptr;
  // Pack into one contiguous run of items.
  Py_buffer b{};
  PyObject* bytes = nullptr;
  const unsigned char* data;
  std::size_t n;
  if ((self->mode == 'r' || self->mode == 't') && PyObject_CheckBuffer(args[0])) {
    if (PyObject_GetBuffer(args[0], &b, PyBUF_C_CONTIGUOUS) < 0) return nullptr;
    if (b.len % self->item != 0 || b.len / self->item > (Py_ssize_t{1} << 30) / self->item) {
      PyErr_Format(PyExc_ValueError, "a buffer of %zd bytes is not a whole number of %zd-byte items", b.len,
                   self->item);
      PyBuffer_Release(&b);
      return nullptr;
    }
    data = static_cast<const unsigned char*>(b.buf);
    n = static_cast<std::size_t>(b.len / self->item);
  } else {
    PyObject* seq = PySequence_Fast(args[0], "put_many(items): items must be iterable or a buffer");
    if (seq == nullptr) return nullptr;
    const Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    if (k > (Py_ssize_t{1} << 30) / self->item) {
      PyErr_SetString(PyExc_ValueError, "put_many(items): more than 1 GiB of items");
      Py_DECREF(seq);
      return nullptr;
    }
    bytes = PyBytes_FromStringAndSize(nullptr, k * self->item);
    if (bytes == nullptr) {
      Py_DECREF(seq);
      return nullptr;
    }
    auto* dst = reinterpret_cast<unsigned char*>(PyBytes_AS_STRING(bytes));
    std::memset(dst, 0, static_cast<std::size_t>(k * self->item));
    for (Py_ssize_t i = 0; i < k; ++i) {
      if (pack_item(self, PySequence_Fast_GET_ITEM(seq, i), dst + i * self->item) < 0) {
        Py_DECREF(seq);
        Py_DECREF(bytes);
        return nullptr;
      }
    }
    Py_DECREF(seq);
    data = dst;
    n = static_cast<std::size_t>(k);
  }
  // Converting the items ran Python code (which may have closed the queue).
  if (!check_open(self)) {
    if (b.obj != nullptr) PyBuffer_Release(&b);
    Py_XDECREF(bytes);
    return nullptr;
  }
  std::size_t done = n == 0 ? 0 : self->ops->try_push(self->mpmc, self->q, data, n);
  int r = 1;
  if (done < n) {
    const Ops* ops = self->ops;
    const bool mpmc = self->mpmc;
    void* q = self->q;
    const std::size_t item = static_cast<std::size_t>(self->item);
    Waiting guard(self->waiting);
    r = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) {
      while (done < n) {
        if (!ops->push_until(mpmc, q, data + done * item, end)) return false;
        ++done;
        done += ops->try_push(mpmc, q, data + done * item, n - done);
      }
      return true;
    });
  }
  if (b.obj != nullptr) PyBuffer_Release(&b);
  Py_XDECREF(bytes);
  if (r < 0) return nullptr;
  if (r == 0) {
    PyObject* exc = PyObject_CallNoArgs(g_full);
    if (exc != nullptr) {
      PyObject* c = PyLong_FromSize_t(done);
      if (c != nullptr) {
        PyObject_SetAttrString(exc, "count", c);
        Py_DECREF(c);
      }
      PyErr_SetObject(g_full, exc);
      Py_DECREF(exc);
    }
    return nullptr;
  }
  Py_RETURN_NONE;
}

// Pops up to `max` items into a new bytes object: blocks (up to the timeout)
// for the first, then takes what is there. Empty on timeout / non-blocking.
PyObject* pop_batch(QueueObj* self, Py_ssize_t max, bool block, double timeout, Py_ssize_t* got) {
  // No pop returns more than the ring holds: get_many(10**8) on a small
  // queue must not allocate for 10**8 items.
  const std::uint64_t cap = self->ops->capacity(self->mpmc, self->q);
  if (static_cast<std::uint64_t>(max) > cap) max = static_cast<Py_ssize_t>(cap);
  PyObject* out = PyBytes_FromStringAndSize(nullptr, max * self->item);
  if (out == nullptr) return nullptr;
  auto* dst = reinterpret_cast<unsigned char*>(PyBytes_AS_STRING(out));
  std::size_t n = max == 0 ? 0 : self->ops->try_pop(self->mpmc, self->q, dst, static_cast<std::size_t>(max));
  if (n == 0 && max > 0 && block) {
    const Ops* ops = self->ops;
    const bool mpmc = self->mpmc;
    void* q = self->q;
    Waiting guard(self->waiting);
    const int r = wait_sliced(deadline_for(timeout),
                              [&](Clock::time_point end) { return ops->pop_until(mpmc, q, dst, end); });
    if (r < 0) {
      Py_DECREF(out);
      return nullptr;
    }
    if (r == 1)
      n = 1 + self->ops->try_pop(self->mpmc, self->q, dst + self->item, static_cast<std::size_t>(max - 1));
  }
  *got = static_cast<Py_ssize_t>(n);
  if (static_cast<Py_ssize_t>(n) != max &&
      _PyBytes_Resize(&out, static_cast<Py_ssize_t>(n) * self->item) < 0) {
    return nullptr;
  }
  return out;
}

// get_many and get_many_bytes: converts (max, block=True, timeout=None)
// first, then checks the handle (conversion can run Python code that
// closes it), then pops up to max items (bytes of whole items; nullptr with
// an exception set on error). *got: how many.
PyObject* pop_many(QueueObj* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, const char* fn,
                   Py_ssize_t* got) {
  if (nargs < 1) {
    PyErr_Format(PyExc_TypeError, "%s(max, block=True, timeout=None)", fn);
    return nullptr;
  }
  const Py_ssize_t max = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
  if (max == -1 && PyErr_Occurred()) return nullptr;
  if (max < 0 || max > (Py_ssize_t{1} << 30) / self->item) {
    PyErr_Format(PyExc_ValueError, "%s(max): max must be >= 0 and fit 1 GiB of items", fn);
    return nullptr;
  }
  bool block;
  double timeout;
  if (parse_block_timeout(args, nargs, kwnames, 1, fn, Timeouts::raise, &block, &timeout) < 0) return nullptr;
  if (!check_open(self) || !check_no_view(self)) return nullptr;
  *got = 0;
  return pop_batch(self, max, block, timeout, got);
}

// get_many(max, block=True, timeout=None) -> list: waits for one item (up
// to the timeout), then takes up to `max` that are there. [] on timeout.
PyObject* q_get_many(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  QueueObj* self = as_q(o);
  Py_ssize_t got = 0;
  PyObject* raw = pop_many(self, args, nargs, kwnames, "get_many", &got);
  if (raw == nullptr) return nullptr;
  PyObject* list = PyList_New(got);
  if (list == nullptr) {
    Py_DECREF(raw);
    return nullptr;
  }
  const auto* src = reinterpret_cast<const unsigned char*>(PyBytes_AS_STRING(raw));
  for (Py_ssize_t i = 0; i < got; ++i) {
    PyObject* v = unpack_item(self, src + i * self->item);
    if (v == nullptr) {
      Py_DECREF(raw);
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SET_ITEM(list, i, v);
  }
  Py_DECREF(raw);
  return list;
}

// get_many_bytes(max, block=True, timeout=None) -> bytes of k whole items
// (numpy: np.frombuffer(result, dtype), no further copy).
PyObject* q_get_many_bytes(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  Py_ssize_t got = 0;
  return pop_many(as_q(o), args, nargs, kwnames, "get_many_bytes", &got);
}

PyObject* q_qsize(PyObject* o, PyObject*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  return PyLong_FromUnsignedLongLong(self->ops->size(self->mpmc, self->q));
}
PyObject* q_empty(PyObject* o, PyObject*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  return PyBool_FromLong(self->ops->size(self->mpmc, self->q) == 0);
}
PyObject* q_full(PyObject* o, PyObject*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  return PyBool_FromLong(self->ops->size(self->mpmc, self->q) >= self->ops->capacity(self->mpmc, self->q));
}
PyObject* q_unlink(PyObject* o, PyObject*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  try {
    self->ops->unlink(self->mpmc, self->q);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}
PyObject* q_close(PyObject* o, PyObject*) {
  QueueObj* self = as_q(o);
  if (self->view != nullptr) {
    PyErr_SetString(PyExc_BufferError, "cannot close a queue while a BatchView of it exists");
    return nullptr;
  }
  if (self->waiting.live() > 0) {
    PyErr_SetString(PyExc_RuntimeError, "cannot close a queue while other threads wait on it");
    return nullptr;
  }
  if (self->q != nullptr) {
    self->ops->destroy(self->mpmc, self->q);
    self->q = nullptr;
  }
  Py_RETURN_NONE;
}
PyObject* q_get_name(PyObject* o, void*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  return PyUnicode_FromString(self->ops->name(self->mpmc, self->q).c_str());
}
PyObject* q_get_capacity(PyObject* o, void*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  return PyLong_FromUnsignedLongLong(self->ops->capacity(self->mpmc, self->q));
}
PyObject* q_get_itemsize(PyObject* o, void*) { return PyLong_FromSsize_t(as_q(o)->item); }
PyObject* q_get_closed(PyObject* o, void*) { return PyBool_FromLong(as_q(o)->q == nullptr); }
PyObject* q_get_waiting(PyObject* o, void*) { return PyLong_FromSsize_t(as_q(o)->waiting.live()); }

void q_dealloc(PyObject* o) {
  QueueObj* self = as_q(o);
  if (self->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  if (self->q != nullptr) self->ops->destroy(self->mpmc, self->q);
  Py_XDECREF(self->st);
  free_object(o);
}

// _Queue(kind, name, create, capacity, item_size, item_align, typecode,
//        type_name, mode, maxbytes=0, struct=None, track=False)
PyObject* q_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"kind",       "name",     "create",    "capacity", "item_size",
                                 "item_align", "typecode", "type_name", "mode",     "maxbytes",
                                 "struct",     "track",    nullptr};
  const char* kind = nullptr;
  const char* name = nullptr;
  int create = 0, track = 0;
  unsigned long long capacity = 0;
  Py_ssize_t item = 0, align = 0, maxbytes = 0;
  const char* typecode = nullptr;
  const char* type_name = nullptr;
  const char* mode = nullptr;
  PyObject* st = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "szpKnnzzs|nOp", const_cast<char**>(kwlist), &kind, &name,
                                   &create, &capacity, &item, &align, &typecode, &type_name, &mode, &maxbytes,
                                   &st, &track)) {
    return nullptr;
  }
  const bool mpmc = std::strcmp(kind, "mpmc") == 0;
  if (!mpmc && std::strcmp(kind, "spsc") != 0) {
    PyErr_SetString(PyExc_ValueError, "kind must be 'spsc' or 'mpmc'");
    return nullptr;
  }
  if (std::strlen(mode) != 1 || std::strchr("styr", mode[0]) == nullptr) {
    PyErr_SetString(PyExc_ValueError, "mode must be one of s t y r");
    return nullptr;
  }
  const Ops* ops = item > 0 ? find_ops(static_cast<std::size_t>(item)) : nullptr;
  if (ops == nullptr) {
    PyErr_Format(PyExc_ValueError,
                 "shmkit queues hold items of 1-16 bytes, multiples of 8 up to 256, of 64 up to 1024, "
                 "2048 or 4096 bytes; not %zd (pad the format)",
                 item);
    return nullptr;
  }
  if (align <= 0 || align > 8 || (align & (align - 1)) != 0 || item % align != 0) {
    PyErr_Format(PyExc_ValueError,
                 "item alignment %zd must be a power of two <= 8 dividing the item size %zd (pad a "
                 "struct format to C's sizeof with trailing x bytes, e.g. 'qi4x')",
                 align, item);
    return nullptr;
  }
  shmkit::TypeFingerprint f;
  f.typecode = (typecode != nullptr && typecode[0] != '\0') ? typecode[0] : 0;
  f.size = static_cast<std::uint32_t>(item);
  f.align = static_cast<std::uint32_t>(align);
  if (f.typecode == 0 && (type_name == nullptr || type_name[0] == '\0')) {
    PyErr_SetString(PyExc_ValueError, "a queue of structs needs a type name");
    return nullptr;
  }
  f.name_hash = f.typecode != 0 ? shmkit::fnv1a(std::string_view(&f.typecode, 1)) : shmkit::fnv1a(type_name);
  if (mode[0] == 't' && (st == nullptr || st == Py_None)) {
    PyErr_SetString(PyExc_ValueError, "mode 't' needs a struct.Struct");
    return nullptr;
  }
  if (mode[0] == 'y' && (maxbytes < 0 || item < 4 || maxbytes > item - 4)) {
    PyErr_SetString(PyExc_ValueError, "bytes items: maxbytes + 4 must fit the item");
    return nullptr;
  }
  if (mode[0] == 's' && (typecode == nullptr || scalar_size(typecode[0]) == 0)) {
    PyErr_SetString(PyExc_ValueError, "mode 's' needs a typecode among b B h H i I q Q f d ? c");
    return nullptr;
  }
  // pack_item writes the typecode's size: the item must be exactly that.
  if (mode[0] == 's' && scalar_size(typecode[0]) != item) {
    PyErr_Format(PyExc_ValueError, "typecode '%c' is %zd bytes, not the item size %zd", typecode[0],
                 scalar_size(typecode[0]), item);
    return nullptr;
  }
  void* q = nullptr;
  try {
    std::string n = name != nullptr ? name : "";
    without_gil(
        [&] { q = create ? ops->create(mpmc, n, capacity, f, track != 0) : ops->attach(mpmc, n, f); });
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) {
    ops->destroy(mpmc, q);
    return nullptr;
  }
  QueueObj* self = as_q(o);
  self->ops = ops;
  self->q = q;
  self->mpmc = mpmc;
  self->mode = mode[0];
  self->code = (typecode != nullptr) ? typecode[0] : 0;
  self->item = item;
  self->maxbytes = maxbytes;
  self->st = (st != nullptr && st != Py_None) ? Py_NewRef(st) : nullptr;
  self->weakrefs = nullptr;
  return o;
}
#define fastcall(f) fastcall(f)

PyMethodDef q_methods[] = {
    {"put", fastcall(q_put), METH_FASTCALL | METH_KEYWORDS,
     "put($self, item, /, block=True, timeout=None)\n--\n\nqueue.Full if it does not fit in time."},
    {"get", fastcall(q_get), METH_FASTCALL | METH_KEYWORDS,
     "get($self, /, block=True, timeout=None)\n--\n\nqueue.Empty if nothing comes in time."},
    {"put_many", fastcall(q_put_many), METH_FASTCALL | METH_KEYWORDS,
     "put_many($self, items, /, timeout=None)\n--\n\nEvery item in order; queue.Full (with .count put) on "
     "timeout."},
    {"get_many", fastcall(q_get_many), METH_FASTCALL | METH_KEYWORDS,
     "get_many($self, max, /, block=True, timeout=None)\n--\n\nA list: waits for one item, then takes up to "
     "max."},
    {"get_many_bytes", fastcall(q_get_many_bytes), METH_FASTCALL | METH_KEYWORDS,
     "get_many_bytes($self, max, /, block=True, timeout=None)\n--\n\nBytes of whole items."},
    {"get_view", q_get_view, METH_O,
     "get_view($self, max, /)\n--\n\nA BatchView: up to max items in place, zero copy (SpscQueue; never "
     "blocks)."},
    {"qsize", q_qsize, METH_NOARGS, "qsize($self, /)\n--\n\nItems in the queue (a snapshot)."},
    {"empty", q_empty, METH_NOARGS, "empty($self, /)\n--\n\nTrue if no item is there (a snapshot)."},
    {"full", q_full, METH_NOARGS, "full($self, /)\n--\n\nTrue if no item fits (a snapshot)."},
    {"unlink", q_unlink, METH_NOARGS, "unlink($self, /)\n--\n\nRemoves the block's name."},
    {"close", q_close, METH_NOARGS, "close($self, /)\n--\n\nUnmaps the queue (this handle only)."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef q_getset[] = {
    {"name", q_get_name, nullptr, nullptr, nullptr},
    {"capacity", q_get_capacity, nullptr, nullptr, nullptr},
    {"itemsize", q_get_itemsize, nullptr, nullptr, nullptr},
    {"closed", q_get_closed, nullptr, nullptr, nullptr},
    {"_waiting", q_get_waiting, nullptr, "Calls of this handle waiting without the GIL.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMemberDef q_members[] = {SHMKIT_WEAKLIST_MEMBER(QueueObj, weakrefs), {nullptr, 0, 0, 0, nullptr}};

}  // namespace

bool add_queue_type(PyObject* m) {
  PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(q_new)},
      {Py_tp_dealloc, reinterpret_cast<void*>(q_dealloc)},
      {Py_tp_methods, q_methods},
      {Py_tp_getset, q_getset},
      {Py_tp_members, q_members},
      {Py_tp_doc,
       const_cast<char*>(
           "_Queue(kind, name, create, capacity, item_size, item_align, typecode, type_name, mode, "
           "maxbytes=0, struct=None, track=False)\n--\n\n"
           "A shmkit SpscQueue or MpmcQueue block (see python/src/queues/).")},
      {0, nullptr},
  };
  PyType_Spec spec = {"shmkit._queues._Queue", sizeof(QueueObj), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
                      slots};
  return add_type(m, spec, "_Queue") != nullptr;
}
}  // namespace shmkit::python::queues
