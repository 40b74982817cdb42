// python/src/sync/typed_block.cpp — shmkit._sync.TypedBlock: a shmkit
// typed block (typed_block.hpp) created or attached by name, exporting its
// whole mapping as a writable buffer. Contract: module.cpp.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <string_view>

#include "common/buffer.hpp"
#include "shmkit/typed_block.hpp"
#include "sync/sync.hpp"

namespace shmkit::python::sync {
namespace {

// ============================================================ TypedBlock

// close() is logical: it refuses while a buffer export is alive, then
// marks the block closed (no new export, no use by this handle); the
// mapping itself goes with the object. A consumer that keeps a pointer
// after releasing its export (numpy's ndarray(buffer=...), whose base is
// then this object) thus never sees the block unmapped under it.
struct BlockObj {
  PyObject_HEAD shmkit::TypedBlock* block;
  Exports exports;
  PyObject* weakrefs;
  bool closed;
};

PyTypeObject* block_type = nullptr;

shmkit::TypeFingerprint fingerprint_from(const char* typecode, const char* type_name, unsigned long size,
                                         unsigned long align) {
  shmkit::TypeFingerprint f;
  f.typecode = (typecode != nullptr && typecode[0] != '\0') ? typecode[0] : 0;
  f.size = static_cast<std::uint32_t>(size);
  f.align = static_cast<std::uint32_t>(align);
  f.name_hash = f.typecode != 0 ? shmkit::fnv1a(std::string_view(&f.typecode, 1))
                                : shmkit::fnv1a(type_name != nullptr ? type_name : "");
  return f;
}

PyObject* wrap_block(shmkit::TypedBlock&& b) {
  BlockObj* o = PyObject_New(BlockObj, block_type);
  if (o == nullptr) return nullptr;
  new (&o->exports) Exports();
  o->weakrefs = nullptr;
  o->closed = false;
  o->block = new (std::nothrow) shmkit::TypedBlock(std::move(b));
  if (o->block == nullptr) {
    Py_DECREF(o);
    return PyErr_NoMemory();
  }
  return reinterpret_cast<PyObject*>(o);
}

bool check_fingerprint_args(const char* typecode, const char* type_name, unsigned long size,
                            unsigned long align) {
  if ((typecode == nullptr || typecode[0] == '\0') && (type_name == nullptr || type_name[0] == '\0')) {
    PyErr_SetString(PyExc_ValueError, "a typed block needs a typecode or a type name");
    return false;
  }
  if (typecode != nullptr && typecode[0] != '\0' && typecode[1] != '\0') {
    PyErr_SetString(PyExc_ValueError, "typecode must be one character");
    return false;
  }
  if (size == 0 || size > (1UL << 30) || align == 0 || (align & (align - 1)) != 0 || align > 64) {
    PyErr_SetString(PyExc_ValueError, "element size must be in [1, 2**30], alignment a power of two <= 64");
    return false;
  }
  return true;
}

// TypedBlock.create(name, kind, typecode, type_name, elem_size, elem_align,
//                   count, prefix_size, payload_size, params=(),
//                   prefix_init=b"", payload_init=b"", track=False)
PyObject* block_create(PyObject*, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"name",        "kind",         "typecode",    "type_name",    "elem_size",
                                 "elem_align",  "count",        "prefix_size", "payload_size", "params",
                                 "prefix_init", "payload_init", "track",       nullptr};
  const char* name = nullptr;
  unsigned long kind = 0, size = 0, align = 0, prefix = 0;
  unsigned long long count = 0, payload = 0;
  const char* typecode = nullptr;
  const char* type_name = nullptr;
  PyObject* params = nullptr;
  Py_buffer pinit{}, yinit{};
  int track = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "zkzzkkKkK|Oy*y*p", const_cast<char**>(kwlist), &name, &kind,
                                   &typecode, &type_name, &size, &align, &count, &prefix, &payload, &params,
                                   &pinit, &yinit, &track)) {
    return nullptr;
  }
  struct Release {
    Py_buffer* a;
    Py_buffer* b;
    ~Release() {
      if (a->obj) PyBuffer_Release(a);
      if (b->obj) PyBuffer_Release(b);
    }
  } release{&pinit, &yinit};
  if (!check_fingerprint_args(typecode, type_name, size, align)) return nullptr;
  shmkit::BlockSpec spec;
  spec.kind = static_cast<shmkit::BlockKind>(kind);
  spec.type = fingerprint_from(typecode, type_name, size, align);
  spec.count = count;
  if (prefix > (1UL << 20)) {
    PyErr_SetString(PyExc_ValueError, "prefix_size too large");
    return nullptr;
  }
  spec.prefix_size = static_cast<std::uint32_t>(prefix);
  spec.payload_size = payload;
  if (params != nullptr && params != Py_None) {
    PyObject* seq = PySequence_Fast(params, "params must be a sequence of at most 4 integers");
    if (seq == nullptr) return nullptr;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > 4) {
      Py_DECREF(seq);
      PyErr_SetString(PyExc_ValueError, "params: at most 4 integers");
      return nullptr;
    }
    for (Py_ssize_t i = 0; i < n; ++i) {
      spec.param[i] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
      if (PyErr_Occurred()) {
        Py_DECREF(seq);
        return nullptr;
      }
    }
    Py_DECREF(seq);
  }
  if (static_cast<unsigned long long>(pinit.len) > prefix ||
      static_cast<unsigned long long>(yinit.len) > payload) {
    PyErr_SetString(PyExc_ValueError, "prefix_init/payload_init longer than the prefix/payload");
    return nullptr;
  }
  shmkit::SharedMemory::Options options;
  options.track = track != 0;
  try {
    std::string n = name != nullptr ? name : "";
    // Block creation does system calls (and may start the tracker's
    // watcher): no Python objects are touched meanwhile.
    shmkit::TypedBlock b = without_gil([&] {
      return shmkit::create_typed_block(
          n, spec,
          [&](std::span<std::byte> pre, std::span<std::byte> pay) {
            if (pinit.len > 0) std::memcpy(pre.data(), pinit.buf, static_cast<std::size_t>(pinit.len));
            if (yinit.len > 0) std::memcpy(pay.data(), yinit.buf, static_cast<std::size_t>(yinit.len));
          },
          options);
    });
    return wrap_block(std::move(b));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

// TypedBlock.attach(name, kind, typecode, type_name, elem_size, elem_align)
PyObject* block_attach(PyObject*, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"name",      "kind",       "typecode",     "type_name",
                                 "elem_size", "elem_align", "init_timeout", nullptr};
  const char* name = nullptr;
  unsigned long kind = 0, size = 0, align = 0;
  const char* typecode = nullptr;
  const char* type_name = nullptr;
  double init_timeout = 1.0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "skzzkk|d", const_cast<char**>(kwlist), &name, &kind,
                                   &typecode, &type_name, &size, &align, &init_timeout)) {
    return nullptr;
  }
  if (!check_fingerprint_args(typecode, type_name, size, align)) return nullptr;
  const shmkit::TypeFingerprint f = fingerprint_from(typecode, type_name, size, align);
  shmkit::AttachOptions options;
  options.init_timeout =
      std::chrono::milliseconds(static_cast<long long>(std::max(0.0, std::min(init_timeout, 3600.0)) * 1000));
  try {
    shmkit::TypedBlock b = without_gil(
        [&] { return shmkit::attach_typed_block(name, static_cast<shmkit::BlockKind>(kind), f, options); });
    return wrap_block(std::move(b));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

BlockObj* as_block(PyObject* o) { return reinterpret_cast<BlockObj*>(o); }

bool block_open(BlockObj* b) {
  if (b->closed || b->block == nullptr || b->block->shm.closed()) {
    PyErr_SetString(PyExc_ValueError, "operation on a closed TypedBlock");
    return false;
  }
  return true;
}

int block_getbuffer(PyObject* o, Py_buffer* view, int flags) {
  BlockObj* b = as_block(o);
  if (!block_open(b)) {
    view->obj = nullptr;
    return -1;
  }
  return b->exports.fill(o, view, b->block->shm.data(), static_cast<Py_ssize_t>(b->block->shm.size()), false,
                         flags);
}
void block_releasebuffer(PyObject* o, Py_buffer*) { as_block(o)->exports.release(); }

PyBufferProcs block_as_buffer = {block_getbuffer, block_releasebuffer};

PyObject* block_close(PyObject* o, PyObject*) {
  BlockObj* b = as_block(o);
  if (!b->exports.none_alive("cannot close a TypedBlock while views of it exist")) return nullptr;
  b->closed = true;  // unmapped with the object (see BlockObj)
  Py_RETURN_NONE;
}

PyObject* block_unlink(PyObject* o, PyObject*) {
  BlockObj* b = as_block(o);
  if (b->block == nullptr) Py_RETURN_NONE;
  try {
    b->block->shm.unlink();
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}

void block_dealloc(PyObject* o) {
  BlockObj* b = as_block(o);
  if (b->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  delete b->block;
  free_object(o);
}

PyObject* block_name(PyObject* o, void*) {
  return PyUnicode_FromString(as_block(o)->block->shm.name().c_str());
}
PyObject* block_size(PyObject* o, void*) {
  return PyLong_FromSize_t(as_block(o)->closed ? 0 : as_block(o)->block->shm.size());
}
PyObject* block_closed(PyObject* o, void*) { return PyBool_FromLong(as_block(o)->closed); }
PyObject* block_header_field(PyObject* o, void* which) {
  const shmkit::BlockHeader& h = as_block(o)->block->header;
  switch (reinterpret_cast<std::uintptr_t>(which)) {
    case 0:
      return PyLong_FromUnsignedLongLong(h.payload_offset);
    case 1:
      return PyLong_FromUnsignedLongLong(h.payload_size);
    case 2:
      return PyLong_FromUnsignedLongLong(h.count);
    case 3:
      return PyLong_FromUnsignedLong(h.prefix_size);
    case 4:
      return Py_BuildValue("(KKKK)", h.param[0], h.param[1], h.param[2], h.param[3]);
    case 5:
      return PyLong_FromUnsignedLong(h.kind);
    case 6:
      return PyLong_FromUnsignedLong(h.elem_size);
    default:
      return PyLong_FromSize_t(shmkit::BlockHeader::kSize);
  }
}

PyMethodDef block_methods[] = {
    {"create", fastcall(block_create), METH_VARARGS | METH_KEYWORDS | METH_STATIC,
     "create(name, kind, typecode, type_name, elem_size, elem_align, count, prefix_size, "
     "payload_size, params=(), prefix_init=b'', payload_init=b'', track=False)\n--\n\n"
     "A new typed block (name None: a random one)."},
    {"attach", fastcall(block_attach), METH_VARARGS | METH_KEYWORDS | METH_STATIC,
     "attach(name, kind, typecode, type_name, elem_size, elem_align, init_timeout=1.0)\n--\n\n"
     "An existing typed block, its header checked."},
    {"close", block_close, METH_NOARGS,
     "close($self, /)\n--\n\nCloses this handle (BufferError while views exist); the block is unmapped with "
     "the object."},
    {"unlink", block_unlink, METH_NOARGS,
     "unlink($self, /)\n--\n\nRemoves the name (FileNotFoundError if gone)."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef block_getset[] = {
    {"name", block_name, nullptr, nullptr, nullptr},
    {"size", block_size, nullptr, "Bytes mapped.", nullptr},
    {"closed", block_closed, nullptr, nullptr, nullptr},
    {"payload_offset", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(0)},
    {"payload_size", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(1)},
    {"count", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(2)},
    {"prefix_size", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(3)},
    {"params", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(4)},
    {"kind", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(5)},
    {"elem_size", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(6)},
    {"prefix_offset", block_header_field, nullptr, nullptr, reinterpret_cast<void*>(7)},
    exports_getset<BlockObj, &BlockObj::exports>(),
    {nullptr, nullptr, nullptr, nullptr, nullptr}};
PyMemberDef block_members[] = {SHMKIT_WEAKLIST_MEMBER(BlockObj, weakrefs), {nullptr, 0, 0, 0, nullptr}};

}  // namespace

bool add_typed_block_type(PyObject* m) {
  PyType_Slot slots[] = {
      {Py_tp_dealloc, reinterpret_cast<void*>(block_dealloc)},
      {Py_tp_methods, block_methods},
      {Py_tp_getset, block_getset},
      {Py_tp_members, block_members},
      {Py_tp_doc, const_cast<char*>("A shmkit typed block (typed_block.hpp), created or attached by name; "
                                    "exports its mapping.")},
      {0, nullptr},
  };
  PyType_Spec spec = {"shmkit._sync.TypedBlock", sizeof(BlockObj), 0, kMadeHere, slots};
  block_type = add_type(m, spec, "TypedBlock", &block_as_buffer);
  return block_type != nullptr;
}

}  // namespace shmkit::python::sync
