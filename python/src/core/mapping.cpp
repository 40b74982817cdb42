// python/src/core/mapping.cpp — shmkit._core.Mapping (a mapped block with
// the buffer protocol) and its owner _Mapped, and the functions create(),
// attach() and unlink(). Contract: module.cpp.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/buffer.hpp"
#include "common/errors.hpp"
#include "common/gil.hpp"
#include "common/types.hpp"
#include "core/core.hpp"

namespace shmkit::python::core {
namespace {

// ------------------------------------------------------------------ Mapping

// The mapping itself is owned by a Mapped object, which is what every
// buffer export names as its owner (view->obj). A consumer that keeps a
// pointer into the block after releasing its export (numpy's
// ndarray(buffer=...) does: it releases the export at once and keeps a
// reference to view->obj as its base) therefore keeps the Mapped object,
// and with it the mapping, alive. Mapping.close() refuses while an export
// is alive (BufferError, as CPython's mmap) and otherwise drops the
// Mapping's reference: the block is unmapped at once if nobody else holds
// the Mapped object, else when the last holder goes. No pointer handed out
// ever outlives its mapping.
struct MappedObject {
  PyObject_HEAD std::shared_ptr<shmkit::SharedMemory> shm;
  Exports exports;
};
PyTypeObject* mapped_type = nullptr;

void mapped_dealloc(PyObject* o) {
  auto* self = reinterpret_cast<MappedObject*>(o);
  if (self->shm) self->shm->close();  // unmaps and closes, never unlinks
  self->shm.~shared_ptr();
  free_object(o);
}

int mapped_getbuffer(PyObject* o, Py_buffer* view, int flags) {
  auto* self = reinterpret_cast<MappedObject*>(o);
  return self->exports.fill(o, view, self->shm->data(), static_cast<Py_ssize_t>(self->shm->size()),
                            self->shm->read_only(), flags);
}
void mapped_releasebuffer(PyObject* o, Py_buffer*) { reinterpret_cast<MappedObject*>(o)->exports.release(); }
PyBufferProcs mapped_buffer = {mapped_getbuffer, mapped_releasebuffer};

PyType_Slot mapped_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(mapped_dealloc)},
    {Py_tp_doc, const_cast<char*>("The mapping of a Mapping: the owner of every buffer exported over it, "
                                  "unmapped when the last reference goes.")},
    {0, nullptr},
};
PyType_Spec mapped_spec = {"shmkit._core._Mapped", sizeof(MappedObject), 0, kMadeHere, mapped_slots};

struct MappingObject {
  PyObject_HEAD std::shared_ptr<shmkit::SharedMemory> shm;  // the handle: name, unlink (kept after close)
  MappedObject* mapped;                                     // strong; nullptr once closed
};

PyTypeObject* mapping_type = nullptr;

}  // namespace

PyObject* new_mapping(shmkit::SharedMemory shm) {
  std::shared_ptr<shmkit::SharedMemory> sp;
  try {
    sp = std::make_shared<shmkit::SharedMemory>(std::move(shm));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  auto* mapped = PyObject_New(MappedObject, mapped_type);
  if (mapped == nullptr) return nullptr;
  new (&mapped->shm) std::shared_ptr<shmkit::SharedMemory>(sp);
  new (&mapped->exports) Exports();
  auto* self = PyObject_New(MappingObject, mapping_type);
  if (self == nullptr) {
    Py_DECREF(mapped);
    return nullptr;
  }
  new (&self->shm) std::shared_ptr<shmkit::SharedMemory>(std::move(sp));
  self->mapped = mapped;
  return reinterpret_cast<PyObject*>(self);
}

namespace {

void mapping_dealloc(PyObject* o) {
  auto* self = reinterpret_cast<MappingObject*>(o);
  Py_CLEAR(self->mapped);  // unmaps unless a consumer still holds the mapping
  self->shm.~shared_ptr();
  free_object(o);
}

int mapping_getbuffer(PyObject* o, Py_buffer* view, int flags) {
  auto* self = reinterpret_cast<MappingObject*>(o);
  if (self->mapped == nullptr) {
    PyErr_SetString(PyExc_ValueError, "shmkit: the shared memory block is closed");
    view->obj = nullptr;
    return -1;
  }
  // The export belongs to the Mapped object (view->obj), not to the handle.
  return mapped_getbuffer(reinterpret_cast<PyObject*>(self->mapped), view, flags);
}

PyBufferProcs mapping_buffer = {mapping_getbuffer, nullptr};

PyObject* mapping_close(PyObject* o, PyObject*) {
  auto* self = reinterpret_cast<MappingObject*>(o);
  if (self->mapped != nullptr && !self->mapped->exports.none_alive("cannot close exported pointers exist")) {
    return nullptr;
  }
  Py_CLEAR(self->mapped);
  Py_RETURN_NONE;
}

PyObject* mapping_unlink(PyObject* o, PyObject*) {
  // A copy of the handle's owner: the call runs without the GIL.
  std::shared_ptr<shmkit::SharedMemory> shm = reinterpret_cast<MappingObject*>(o)->shm;
  try {
    without_gil([&] { shm->unlink(); });  // reads the name and identity only, never the mapping
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* mapping_name(PyObject* o, void*) {
  const auto& n = reinterpret_cast<MappingObject*>(o)->shm->name();
  return PyUnicode_DecodeUTF8(n.data(), static_cast<Py_ssize_t>(n.size()), "surrogateescape");
}
PyObject* mapping_size(PyObject* o, void*) {
  auto* self = reinterpret_cast<MappingObject*>(o);
  return PyLong_FromSize_t(self->mapped != nullptr ? self->shm->size() : 0);
}
PyObject* mapping_closed(PyObject* o, void*) {
  return PyBool_FromLong(reinterpret_cast<MappingObject*>(o)->mapped == nullptr);
}
PyObject* mapping_tracked(PyObject* o, void*) {
  return PyBool_FromLong(reinterpret_cast<MappingObject*>(o)->shm->tracked());
}
PyObject* mapping_exports(PyObject* o, void*) {
  auto* self = reinterpret_cast<MappingObject*>(o);
  return PyLong_FromSsize_t(self->mapped != nullptr ? self->mapped->exports.n : 0);
}
PyObject* mapping_fd(PyObject* o, void*) {
  auto* self = reinterpret_cast<MappingObject*>(o);
  return PyLong_FromLong(self->mapped != nullptr ? self->shm->fd() : -1);
}
PyObject* mapping_address(PyObject* o, void*) {
  auto* self = reinterpret_cast<MappingObject*>(o);
  return PyLong_FromVoidPtr(self->mapped != nullptr ? self->shm->data() : nullptr);
}

PyMethodDef mapping_methods[] = {
    {"close", mapping_close, METH_NOARGS,
     "close($self, /)\n--\n\nCloses this handle: BufferError while views of it exist; the block is unmapped "
     "and its descriptor "
     "closed once no consumer (a numpy array over it) still holds the mapping."},
    {"unlink", mapping_unlink, METH_NOARGS,
     "unlink($self, /)\n--\n\nRemoves the block's name (FileNotFoundError if gone)."},
    {nullptr, nullptr, 0, nullptr},
};
PyGetSetDef mapping_getset[] = {
    {"name", mapping_name, nullptr, "The block's name, without a leading slash.", nullptr},
    {"size", mapping_size, nullptr, "Bytes mapped (0 once closed).", nullptr},
    {"closed", mapping_closed, nullptr, "True once close() has run.", nullptr},
    {"tracked", mapping_tracked, nullptr, "Registered with shmkit's tracker.", nullptr},
    {"_exports", mapping_exports, nullptr, "Buffer views of the mapping now alive.", nullptr},
    {"fd", mapping_fd, nullptr, "The descriptor (-1 once closed).", nullptr},
    {"address", mapping_address, nullptr, "Where the block is mapped in this process.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};
PyType_Slot mapping_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(mapping_dealloc)},
    {Py_tp_methods, mapping_methods},
    {Py_tp_getset, mapping_getset},
    {Py_tp_doc, const_cast<char*>("A mapped shmkit::SharedMemory block (buffer protocol, export counting). "
                                  "Made by create()/attach()/create_object()/attach_object().")},
    {0, nullptr},
};
PyType_Spec mapping_spec = {"shmkit._core.Mapping", sizeof(MappingObject), 0, kMadeHere, mapping_slots};

}  // namespace

// create(name: str | None, size: int, track: bool) -> Mapping
PyObject* create(PyObject*, PyObject* const* args, Py_ssize_t n) {
  if (n != 3) {
    PyErr_SetString(PyExc_TypeError, "create(name, size, track)");
    return nullptr;
  }
  std::string name;
  if (args[0] != Py_None && !get_str(args[0], name, "name")) return nullptr;
  const Py_ssize_t size = PyLong_AsSsize_t(args[1]);
  if (size == -1 && PyErr_Occurred()) return nullptr;
  if (size <= 0) {
    PyErr_SetString(PyExc_ValueError, "'size' must be a positive number different from zero");
    return nullptr;
  }
  const int track = PyObject_IsTrue(args[2]);
  if (track < 0) return nullptr;
  try {
    shmkit::SharedMemory::Options o;
    o.track = track != 0;
    auto shm = without_gil([&] {
      return args[0] == Py_None ? shmkit::SharedMemory::create(static_cast<std::size_t>(size), o)
                                : shmkit::SharedMemory::create(name, static_cast<std::size_t>(size), o);
    });
    return new_mapping(std::move(shm));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

// attach(name: str, track: bool, read_only: bool = False) -> Mapping
PyObject* attach(PyObject*, PyObject* const* args, Py_ssize_t n) {
  if (n < 2 || n > 3) {
    PyErr_SetString(PyExc_TypeError, "attach(name, track, read_only=False)");
    return nullptr;
  }
  std::string name;
  if (!get_str(args[0], name, "name")) return nullptr;
  const int track = PyObject_IsTrue(args[1]);
  if (track < 0) return nullptr;
  const int ro = n > 2 ? PyObject_IsTrue(args[2]) : 0;
  if (ro < 0) return nullptr;
  try {
    shmkit::SharedMemory::Options o;
    o.track = track != 0;
    o.read_only = ro != 0;
    auto shm = without_gil([&] { return shmkit::SharedMemory::attach(name, o); });
    return new_mapping(std::move(shm));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

// unlink(name: str) -> None
PyObject* unlink(PyObject*, PyObject* arg) {
  std::string name;
  if (!get_str(arg, name, "name")) return nullptr;
  try {
    without_gil([&] { shmkit::SharedMemory::unlink(name); });
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}

bool add_mapping_types(PyObject* m) {
  mapping_type = add_type(m, mapping_spec, "Mapping", &mapping_buffer);
  if (mapping_type == nullptr) return false;
  mapped_type = add_type(m, mapped_spec, "_Mapped", &mapped_buffer);
  return mapped_type != nullptr;
}

}  // namespace shmkit::python::core
