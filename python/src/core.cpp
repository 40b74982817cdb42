// python/src/core.cpp — shmkit._core: blocks (Mapping), ShareableList,
// SharedMemoryManager and the Value/Array block layout, for the pure-Python
// modules shmkit.shared_memory and shmkit.sharedctypes.
//
// Binding: the CPython C API with METH_FASTCALL/METH_O, the path shmkit._sync
// takes for its hot calls, so the package has one approach (pybind11 costs
// 110-470 ns a call; python/bench/bench_core.py measures ours).
//
// Contract
//   * Mapping is a shmkit::SharedMemory exporting the buffer protocol over
//     the whole block. It counts its exports; close() raises BufferError
//     while any exists (as CPython's mmap). The mapping is owned by a
//     _Mapped object that every export names as its owner, so a consumer
//     that keeps a pointer after releasing its export (numpy's
//     ndarray(buffer=...)) keeps the block mapped: close() then returns and
//     the unmap waits for that consumer. No pointer outlives its mapping.
//   * Re-entrancy: a method converts all its arguments (which may run
//     Python code that closes the object) before it checks the object's
//     state, and touches nothing of the object after a call that may run
//     Python code or release the GIL without checking again.
//   * Every C++ exception becomes the Python exception common.hpp maps it
//     to; a block written by another process is validated by the C++ side,
//     so a garbage block is a ValueError, never a crash.
//   * Calls that make system calls or take the tracker's registry lock run
//     without the GIL; nothing here blocks for long.
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "shmkit/manager.hpp"
#include "shmkit/object_layout.hpp"
#include "shmkit/shareable_list.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/sync/mutex.hpp"
#include "shmkit/sync/recursive_mutex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/tracker.hpp"
#include "shmkit/typed_block.hpp"

namespace {

using shmkit::python::Ref;
using shmkit::python::translate_exception;

// Runs fn() with the GIL released; a C++ exception is rethrown with it held.
template <class F>
auto without_gil(F&& fn) {
  std::exception_ptr error;
  using R = decltype(fn());
  std::optional<std::conditional_t<std::is_void_v<R>, int, R>> result;
  Py_BEGIN_ALLOW_THREADS
  try {
    if constexpr (std::is_void_v<R>) {
      fn();
      result.emplace(0);
    } else {
      result.emplace(fn());
    }
  } catch (...) {
    error = std::current_exception();
  }
  Py_END_ALLOW_THREADS
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<R>) return std::move(*result);
}

bool get_str(PyObject* o, std::string& out, const char* what) {
  if (!PyUnicode_Check(o)) {
    PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what, Py_TYPE(o)->tp_name);
    return false;
  }
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(o, &n);
  if (s == nullptr) return false;
  out.assign(s, static_cast<std::size_t>(n));
  return true;
}

// The flags of a type made only by this module's functions: a heap type
// would otherwise inherit object's tp_new, and Mapping() or ListAccess()
// from Python would be an object with no block behind it.
// Before 3.10 (no such flag) PyInit__core clears their tp_new instead.
#ifdef Py_TPFLAGS_DISALLOW_INSTANTIATION
constexpr unsigned long kMadeHere = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION;
#else
constexpr unsigned long kMadeHere = Py_TPFLAGS_DEFAULT;
#endif

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
  PyObject_HEAD
  std::shared_ptr<shmkit::SharedMemory> shm;
  Py_ssize_t exports;
};
PyTypeObject* mapped_type = nullptr;

void mapped_dealloc(PyObject* o) {
  auto* self = reinterpret_cast<MappedObject*>(o);
  if (self->shm) self->shm->close();  // unmaps and closes, never unlinks
  self->shm.~shared_ptr();
  PyObject_Free(o);
}

int mapped_getbuffer(PyObject* o, Py_buffer* view, int flags) {
  auto* self = reinterpret_cast<MappedObject*>(o);
  if (PyBuffer_FillInfo(view, o, self->shm->data(), static_cast<Py_ssize_t>(self->shm->size()),
                        self->shm->read_only() ? 1 : 0, flags) != 0) {
    return -1;
  }
  ++self->exports;
  return 0;
}
void mapped_releasebuffer(PyObject* o, Py_buffer*) { --reinterpret_cast<MappedObject*>(o)->exports; }
PyBufferProcs mapped_buffer = {mapped_getbuffer, mapped_releasebuffer};

PyType_Slot mapped_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(mapped_dealloc)},
    {Py_tp_doc, const_cast<char*>("The mapping of a Mapping: the owner of every buffer exported over it, "
                                  "unmapped when the last reference goes.")},
    {0, nullptr},
};
PyType_Spec mapped_spec = {"shmkit._core._Mapped", sizeof(MappedObject), 0, kMadeHere, mapped_slots};

struct MappingObject {
  PyObject_HEAD
  std::shared_ptr<shmkit::SharedMemory> shm;  // the handle: name, unlink (kept after close)
  MappedObject* mapped;                       // strong; nullptr once closed
};

PyTypeObject* mapping_type = nullptr;

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
  mapped->exports = 0;
  auto* self = PyObject_New(MappingObject, mapping_type);
  if (self == nullptr) {
    Py_DECREF(mapped);
    return nullptr;
  }
  new (&self->shm) std::shared_ptr<shmkit::SharedMemory>(std::move(sp));
  self->mapped = mapped;
  return reinterpret_cast<PyObject*>(self);
}

void mapping_dealloc(PyObject* o) {
  auto* self = reinterpret_cast<MappingObject*>(o);
  Py_CLEAR(self->mapped);  // unmaps unless a consumer still holds the mapping
  self->shm.~shared_ptr();
  PyObject_Free(o);
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
  if (self->mapped != nullptr && self->mapped->exports > 0) {
    PyErr_SetString(PyExc_BufferError, "cannot close exported pointers exist");
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
  return PyLong_FromSsize_t(self->mapped != nullptr ? self->mapped->exports : 0);
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
     "Closes this handle: BufferError while views of it exist; the block is unmapped and its descriptor "
     "closed once no consumer (a numpy array over it) still holds the mapping."},
    {"unlink", mapping_unlink, METH_NOARGS, "Removes the block's name (FileNotFoundError if gone)."},
    {nullptr, nullptr, 0, nullptr},
};
PyGetSetDef mapping_getset[] = {
    {"name", mapping_name, nullptr, "The block's name, without a leading slash.", nullptr},
    {"size", mapping_size, nullptr, "Bytes mapped (0 once closed).", nullptr},
    {"closed", mapping_closed, nullptr, "True once close() has run.", nullptr},
    {"tracked", mapping_tracked, nullptr, "Registered with shmkit's tracker.", nullptr},
    {"exports", mapping_exports, nullptr, "Buffer views of the mapping now alive.", nullptr},
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
PyType_Spec mapping_spec = {"shmkit._core.Mapping", sizeof(MappingObject), 0, kMadeHere,
                            mapping_slots};

// create(name: str | None, size: int, track: bool) -> Mapping
PyObject* core_create(PyObject*, PyObject* const* args, Py_ssize_t n) {
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
PyObject* core_attach(PyObject*, PyObject* const* args, Py_ssize_t n) {
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
PyObject* core_unlink(PyObject*, PyObject* arg) {
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

// ------------------------------------------------------------ ShareableList

PyObject* struct_error = nullptr;  // struct.error, for ints CPython's struct refuses

// Python object -> Item. false (exception set) for an unsupported type.
bool to_item(PyObject* o, shmkit::Item& out) {
  if (o == Py_None) {
    out = shmkit::None;
  } else if (PyBool_Check(o)) {
    out = o == Py_True;
  } else if (PyLong_Check(o)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow != 0) {
      PyErr_SetString(struct_error, "'q' format requires -9223372036854775808 <= number <= 9223372036854775807");
      return false;
    }
    if (v == -1 && PyErr_Occurred()) return false;
    out = static_cast<std::int64_t>(v);
  } else if (PyFloat_Check(o)) {
    out = PyFloat_AS_DOUBLE(o);
  } else if (PyUnicode_Check(o)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(o, &n);
    if (s == nullptr) return false;
    out = std::string(s, static_cast<std::size_t>(n));
  } else if (PyBytes_Check(o)) {
    out = shmkit::Bytes(PyBytes_AS_STRING(o), static_cast<std::size_t>(PyBytes_GET_SIZE(o)));
  } else {
    PyErr_Format(PyExc_TypeError,
                 "a ShareableList holds int, float, bool, str, bytes and None, not %.100s",
                 Py_TYPE(o)->tp_name);
    return false;
  }
  return true;
}

PyObject* from_item(const shmkit::Item& item) {
  switch (item.index()) {
    case 0: Py_RETURN_NONE;
    case 1: return PyBool_FromLong(std::get<bool>(item));
    case 2: return PyLong_FromLongLong(std::get<std::int64_t>(item));
    case 3: return PyFloat_FromDouble(std::get<double>(item));
    case 4: {
      const auto& s = std::get<std::string>(item);
      return PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), nullptr);
    }
    default: {
      const auto& b = std::get<shmkit::Bytes>(item);
      return PyBytes_FromStringAndSize(b.data(), static_cast<Py_ssize_t>(b.size()));
    }
  }
}

bool to_items(PyObject* seq, std::vector<shmkit::Item>& out) {
  Ref fast(PySequence_Fast(seq, "a ShareableList is made from an iterable"));
  if (!fast) return false;
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(fast.get());
  out.resize(static_cast<std::size_t>(n));
  PyObject** items = PySequence_Fast_ITEMS(fast.get());
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!to_item(items[i], out[static_cast<std::size_t>(i)])) return false;
  }
  return true;
}

struct ListObject {
  PyObject_HEAD
  shmkit::ShareableList list;
  shmkit::Item scratch;  // get() reuses its string capacity
};
PyTypeObject* list_type = nullptr;

PyObject* new_list(shmkit::ShareableList list) {
  auto* self = PyObject_New(ListObject, list_type);
  if (self == nullptr) return nullptr;
  new (&self->list) shmkit::ShareableList(std::move(list));
  new (&self->scratch) shmkit::Item();
  return reinterpret_cast<PyObject*>(self);
}
void list_dealloc(PyObject* o) {
  auto* self = reinterpret_cast<ListObject*>(o);
  self->list.~ShareableList();
  using shmkit::Item;
  self->scratch.~Item();
  PyObject_Free(o);
}

bool index_arg(PyObject* o, std::ptrdiff_t& i) {
  const Py_ssize_t v = PyNumber_AsSsize_t(o, PyExc_IndexError);
  if (v == -1 && PyErr_Occurred()) return false;
  i = v;
  return true;
}

bool check_open(ListObject* self) {
  if (self->list.shm().closed()) {
    PyErr_SetString(PyExc_ValueError, "shmkit: the ShareableList's block is closed");
    return false;
  }
  return true;
}

// get(index) -> item
PyObject* list_get(PyObject* o, PyObject* arg) {
  auto* self = reinterpret_cast<ListObject*>(o);
  std::ptrdiff_t i = 0;
  if (!index_arg(arg, i) || !check_open(self)) return nullptr;
  try {
    self->list.get(i, self->scratch);
  } catch (const std::out_of_range&) {
    PyErr_SetString(PyExc_IndexError, "index out of range");
    return nullptr;
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  return from_item(self->scratch);
}

// set(index, value)
PyObject* list_set(PyObject* o, PyObject* const* args, Py_ssize_t n) {
  auto* self = reinterpret_cast<ListObject*>(o);
  if (n != 2) {
    PyErr_SetString(PyExc_TypeError, "set(index, value)");
    return nullptr;
  }
  std::ptrdiff_t i = 0;
  shmkit::Item item;
  if (!index_arg(args[0], i) || !to_item(args[1], item) || !check_open(self)) return nullptr;
  try {
    self->list.set(i, item);
  } catch (const std::out_of_range&) {
    PyErr_SetString(PyExc_IndexError, "assignment index out of range");
    return nullptr;
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}

// format(index=None) -> str
PyObject* list_format(PyObject* o, PyObject* const* args, Py_ssize_t n) {
  auto* self = reinterpret_cast<ListObject*>(o);
  if (n > 1) {
    PyErr_SetString(PyExc_TypeError, "format(index=None)");
    return nullptr;
  }
  const bool all = n == 0 || args[0] == Py_None;
  std::ptrdiff_t i = 0;
  if (!all && !index_arg(args[0], i)) return nullptr;  // __index__ may close the list
  if (!check_open(self)) return nullptr;
  try {
    const std::string f = all ? self->list.format() : self->list.format(i);
    return PyUnicode_FromStringAndSize(f.data(), static_cast<Py_ssize_t>(f.size()));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

PyObject* list_len(PyObject* o, PyObject*) {
  auto* self = reinterpret_cast<ListObject*>(o);
  if (!check_open(self)) return nullptr;
  return PyLong_FromSize_t(self->list.size());
}

PyObject* list_close(PyObject* o, PyObject*) {
  reinterpret_cast<ListObject*>(o)->list.shm().close();
  Py_RETURN_NONE;
}

PyMethodDef list_methods[] = {
    {"get", list_get, METH_O, "The item at index (negative from the end)."},
    {"set", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(list_set)), METH_FASTCALL,
     "Sets the item at index (its type may change; a longer str/bytes than the slot is ValueError)."},
    {"format", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(list_format)), METH_FASTCALL,
     "format(index=None): the struct format of one item, or of all."},
    {"length", list_len, METH_NOARGS, "The number of items."},
    {"close", list_close, METH_NOARGS, "Unmaps this handle's view of the list."},
    {nullptr, nullptr, 0, nullptr},
};
PyObject* list_name(PyObject* o, void*) {
  const auto& n = reinterpret_cast<ListObject*>(o)->list.name();
  return PyUnicode_DecodeUTF8(n.data(), static_cast<Py_ssize_t>(n.size()), "surrogateescape");
}
PyGetSetDef list_getset[] = {
    {"name", list_name, nullptr, "The block's name.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};
PyType_Slot list_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(list_dealloc)},
    {Py_tp_methods, list_methods},
    {Py_tp_getset, list_getset},
    {Py_tp_doc, const_cast<char*>("shmkit::ShareableList: CPython's layout, read and written in C++.")},
    {0, nullptr},
};
PyType_Spec list_spec = {"shmkit._core.ListAccess", sizeof(ListObject), 0, kMadeHere, list_slots};

// list_create(name: str | None, items, track: bool = False) -> ListAccess
// With track, the new block is registered with the tracker as created by
// this process (a tracked attach only registers use: shmkit/tracker.hpp).
PyObject* core_list_create(PyObject*, PyObject* const* args, Py_ssize_t n) {
  if (n != 2 && n != 3) {
    PyErr_SetString(PyExc_TypeError, "list_create(name, items, track=False)");
    return nullptr;
  }
  std::string name;
  if (args[0] != Py_None && !get_str(args[0], name, "name")) return nullptr;
  const int track = n == 3 ? PyObject_IsTrue(args[2]) : 0;
  if (track < 0) return nullptr;
  std::vector<shmkit::Item> items;
  if (!to_items(args[1], items)) return nullptr;
  try {
    auto l = without_gil([&] {
      auto made = args[0] == Py_None ? shmkit::ShareableList::create(std::move(items))
                                     : shmkit::ShareableList::create(name, std::move(items));
      if (track != 0) {
        try {
          (void)shmkit::tracker::register_created(made.shm().name(), made.shm().inode());
        } catch (...) {
          made.shm().unlink();  // not tracked as asked: nothing is left behind
          throw;
        }
      }
      return made;
    });
    return new_list(std::move(l));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

// list_attach(name: str) -> ListAccess
PyObject* core_list_attach(PyObject*, PyObject* arg) {
  std::string name;
  if (!get_str(arg, name, "name")) return nullptr;
  try {
    auto l = without_gil([&] { return shmkit::ShareableList::attach(name); });
    return new_list(std::move(l));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

// ------------------------------------------------------------ manager

struct ManagerObject {
  PyObject_HEAD
  std::unique_ptr<shmkit::SharedMemoryManager> m;
};
PyTypeObject* manager_type = nullptr;

void manager_dealloc(PyObject* o) {
  auto* self = reinterpret_cast<ManagerObject*>(o);
  self->m.~unique_ptr();  // a started manager shuts its server down
  PyObject_Free(o);
}

// Manager(address: str | None, authkey: bytes | None, connect: bool)
PyObject* manager_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  PyObject* address = Py_None;
  PyObject* authkey = Py_None;
  int connect = 0;
  static const char* kw[] = {"address", "authkey", "connect", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OOp", const_cast<char**>(kw), &address, &authkey,
                                   &connect)) {
    return nullptr;
  }
  std::string a, k;
  if (address != Py_None && !get_str(address, a, "address")) return nullptr;
  if (authkey != Py_None) {
    if (!PyBytes_Check(authkey)) {
      PyErr_SetString(PyExc_TypeError, "authkey must be bytes");
      return nullptr;
    }
    k.assign(PyBytes_AS_STRING(authkey), static_cast<std::size_t>(PyBytes_GET_SIZE(authkey)));
  }
  auto* self = reinterpret_cast<ManagerObject*>(type->tp_alloc(type, 0));
  if (self == nullptr) return nullptr;
  new (&self->m) std::unique_ptr<shmkit::SharedMemoryManager>();
  try {
    if (connect) {
      self->m = std::make_unique<shmkit::SharedMemoryManager>(shmkit::SharedMemoryManager::connect(a, k));
    } else if (address == Py_None && authkey == Py_None) {
      self->m = std::make_unique<shmkit::SharedMemoryManager>();
    } else {
      if (authkey == Py_None) {
        PyErr_SetString(PyExc_ValueError, "shmkit: a manager with an address needs an authkey");
        Py_DECREF(self);
        return nullptr;
      }
      self->m = std::make_unique<shmkit::SharedMemoryManager>(a, k);
    }
  } catch (...) {
    translate_exception();
    Py_DECREF(self);
    return nullptr;
  }
  return reinterpret_cast<PyObject*>(self);
}

template <class F>
PyObject* manager_call(PyObject* o, F&& fn) {
  auto* self = reinterpret_cast<ManagerObject*>(o);
  try {
    return fn(*self->m);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

PyObject* manager_start(PyObject* o, PyObject*) {
  return manager_call(o, [](shmkit::SharedMemoryManager& m) -> PyObject* {
    without_gil([&] { m.start(); });
    Py_RETURN_NONE;
  });
}
PyObject* manager_shutdown(PyObject* o, PyObject*) {
  return manager_call(o, [](shmkit::SharedMemoryManager& m) -> PyObject* {
    without_gil([&] { m.shutdown(); });
    Py_RETURN_NONE;
  });
}
PyObject* manager_create_shared_memory(PyObject* o, PyObject* arg) {
  const Py_ssize_t size = PyLong_AsSsize_t(arg);
  if (size == -1 && PyErr_Occurred()) return nullptr;
  if (size <= 0) {
    PyErr_SetString(PyExc_ValueError, "'size' must be a positive number different from zero");
    return nullptr;
  }
  return manager_call(o, [&](shmkit::SharedMemoryManager& m) -> PyObject* {
    auto name = without_gil([&] { return m.create_shared_memory(static_cast<std::size_t>(size)); });
    return PyUnicode_FromStringAndSize(name.data(), static_cast<Py_ssize_t>(name.size()));
  });
}
PyObject* manager_create_shareable_list(PyObject* o, PyObject* arg) {
  std::vector<shmkit::Item> items;
  if (!to_items(arg, items)) return nullptr;
  return manager_call(o, [&](shmkit::SharedMemoryManager& m) -> PyObject* {
    auto name = without_gil([&] { return m.create_shareable_list(items); });
    return PyUnicode_FromStringAndSize(name.data(), static_cast<Py_ssize_t>(name.size()));
  });
}
PyObject* manager_release(PyObject* o, PyObject* arg) {
  std::string name;
  if (!get_str(arg, name, "name")) return nullptr;
  return manager_call(o, [&](shmkit::SharedMemoryManager& m) -> PyObject* {
    without_gil([&] { m.release(name); });
    Py_RETURN_NONE;
  });
}
PyObject* manager_list(PyObject* o, PyObject*) {
  return manager_call(o, [&](shmkit::SharedMemoryManager& m) -> PyObject* {
    auto blocks = without_gil([&] { return m.list(); });
    Ref out(PyList_New(0));
    if (!out) return nullptr;
    for (const auto& b : blocks) {
      Ref t(Py_BuildValue("(s#sK)", b.name.data(), static_cast<Py_ssize_t>(b.name.size()),
                          shmkit::managed_kind_name(b.kind), static_cast<unsigned long long>(b.size)));
      if (!t || PyList_Append(out.get(), t.get()) != 0) return nullptr;
    }
    return out.release();
  });
}
PyObject* manager_address(PyObject* o, void*) {
  const auto& a = reinterpret_cast<ManagerObject*>(o)->m->address();
  return PyUnicode_FromStringAndSize(a.data(), static_cast<Py_ssize_t>(a.size()));
}
PyObject* manager_authkey(PyObject* o, void*) {
  const auto& k = reinterpret_cast<ManagerObject*>(o)->m->authkey();
  return PyBytes_FromStringAndSize(k.data(), static_cast<Py_ssize_t>(k.size()));
}
PyObject* manager_started(PyObject* o, void*) {
  return PyBool_FromLong(reinterpret_cast<ManagerObject*>(o)->m->started());
}
PyObject* manager_pid(PyObject* o, void*) {
  return PyLong_FromLong(reinterpret_cast<ManagerObject*>(o)->m->server_pid());
}

PyMethodDef manager_methods[] = {
    {"start", manager_start, METH_NOARGS, "Forks the server; returns once it listens."},
    {"shutdown", manager_shutdown, METH_NOARGS, "Unlinks every block of the server and stops it."},
    {"create_shared_memory", manager_create_shared_memory, METH_O, "A block of size bytes; its name."},
    {"create_shareable_list", manager_create_shareable_list, METH_O, "A ShareableList of seq; its name."},
    {"release", manager_release, METH_O, "Unlinks one block the server owns."},
    {"list", manager_list, METH_NOARGS, "[(name, kind, size)] of the server's blocks."},
    {nullptr, nullptr, 0, nullptr},
};
PyGetSetDef manager_getset[] = {
    {"address", manager_address, nullptr, "The server's Unix socket address.", nullptr},
    {"authkey", manager_authkey, nullptr, "The key clients authenticate with.", nullptr},
    {"started", manager_started, nullptr, "True between start() and shutdown().", nullptr},
    {"server_pid", manager_pid, nullptr, "The server's pid (-1 unless started here).", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};
PyType_Slot manager_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(manager_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(manager_dealloc)},
    {Py_tp_methods, manager_methods},
    {Py_tp_getset, manager_getset},
    {Py_tp_doc, const_cast<char*>("shmkit::SharedMemoryManager (shmkit/manager.hpp).")},
    {0, nullptr},
};
PyType_Spec manager_spec = {"shmkit._core.Manager", sizeof(ManagerObject), 0, Py_TPFLAGS_DEFAULT,
                            manager_slots};

// ------------------------------------------------------------ typed objects

// The element type as the typed block records it.
struct ElementType {
  shmkit::TypeFingerprint fp;
};

// (typecode: str of length 0 or 1, size, align, type_name) -> fingerprint.
// A typecode names a C++ arithmetic type (python_typecode); otherwise the
// name's hash tells struct types apart (shmkit::TypeName on the C++ side).
bool parse_type(PyObject* const* a, ElementType& t) {
  std::string code, tname;
  if (!get_str(a[0], code, "typecode") || !get_str(a[3], tname, "type name")) return false;
  const long size = PyLong_AsLong(a[1]);
  const long align = PyLong_AsLong(a[2]);
  if (PyErr_Occurred()) return false;
  if (code.size() > 1 || size <= 0 || align <= 0 || (align & (align - 1)) != 0 || align > 64 ||
      size > (1L << 30)) {
    PyErr_SetString(PyExc_ValueError, "shmkit: bad element type (typecode, size or alignment)");
    return false;
  }
  t.fp.typecode = code.empty() ? 0 : code[0];
  t.fp.size = static_cast<std::uint32_t>(size);
  t.fp.align = static_cast<std::uint32_t>(align);
  t.fp.name_hash = code.empty() ? shmkit::fnv1a(tname) : shmkit::fnv1a(code);
  return true;
}

std::uint32_t lock_size_of(shmkit::ObjectLockKind k) {
  switch (k) {
    case shmkit::ObjectLockKind::mutex: return sizeof(shmkit::Mutex);
    case shmkit::ObjectLockKind::recursive_mutex: return sizeof(shmkit::RecursiveMutex);
    case shmkit::ObjectLockKind::robust_mutex: return sizeof(shmkit::RobustMutex);
    default: return 0;
  }
}

bool parse_lock_kind(PyObject* o, shmkit::ObjectLockKind& k) {
  const long v = PyLong_AsLong(o);
  if (v == -1 && PyErr_Occurred()) return false;
  if (v < 0 || v > 4) {
    PyErr_SetString(PyExc_ValueError, "shmkit: lock kind must be 0..4 (none, mutex, rlock, robust, external)");
    return false;
  }
  k = static_cast<shmkit::ObjectLockKind>(v);
  return true;
}

PyObject* object_result(shmkit::SharedMemory shm, const shmkit::BlockHeader& h) {
  const auto offset = h.payload_offset;
  const auto count = h.count;
  const auto lock = h.param[0];
  Ref m(new_mapping(std::move(shm)));
  if (!m) return nullptr;
  return Py_BuildValue("(OKKKK)", m.get(), static_cast<unsigned long long>(offset),
                       static_cast<unsigned long long>(count), static_cast<unsigned long long>(lock),
                       static_cast<unsigned long long>(shmkit::BlockHeader::kSize));
}

// create_object(name|None, is_array, typecode, size, align, type_name, count,
//               lock_kind, initial: bytes-like|None, track)
//   -> (Mapping, payload_offset, count, lock_kind, prefix_offset)
PyObject* core_create_object(PyObject*, PyObject* const* a, Py_ssize_t n) {
  if (n != 10) {
    PyErr_SetString(PyExc_TypeError,
                    "create_object(name, is_array, typecode, size, align, type_name, count, lock_kind, initial, track)");
    return nullptr;
  }
  std::string name;
  if (a[0] != Py_None && !get_str(a[0], name, "name")) return nullptr;
  const int is_array = PyObject_IsTrue(a[1]);
  ElementType t;
  if (is_array < 0 || !parse_type(a + 2, t)) return nullptr;
  const Py_ssize_t count = PyLong_AsSsize_t(a[6]);
  if (count == -1 && PyErr_Occurred()) return nullptr;
  if (count < 0 || (count == 0 && is_array == 0)) {
    PyErr_SetString(PyExc_ValueError, is_array != 0 ? "shmkit: an array cannot have a negative length"
                                                    : "shmkit: a Value holds exactly one element");
    return nullptr;
  }
  shmkit::ObjectLockKind lk{};
  if (!parse_lock_kind(a[7], lk)) return nullptr;
  const int track = PyObject_IsTrue(a[9]);
  if (track < 0) return nullptr;
  Py_buffer init{};
  bool have_init = false;
  if (a[8] != Py_None) {
    if (PyObject_GetBuffer(a[8], &init, PyBUF_SIMPLE) != 0) return nullptr;
    have_init = true;
  }
  struct Release {
    Py_buffer* b;
    bool on;
    ~Release() {
      if (on) PyBuffer_Release(b);
    }
  } release{&init, have_init};
  const std::uint64_t payload = static_cast<std::uint64_t>(count) * t.fp.size;
  if (have_init && static_cast<std::uint64_t>(init.len) != payload) {
    PyErr_Format(PyExc_ValueError, "shmkit: %zd initial bytes for a payload of %llu", init.len,
                 static_cast<unsigned long long>(payload));
    return nullptr;
  }
  try {
    const std::uint32_t lsize = lock_size_of(lk);
    auto block = without_gil([&] {
      const shmkit::BlockSpec spec =
          shmkit::object_spec(is_array ? shmkit::BlockKind::array : shmkit::BlockKind::value, t.fp,
                              static_cast<std::uint64_t>(count), t.fp.size, lk, lsize);
      shmkit::SharedMemory::Options o;
      o.track = track != 0;
      return shmkit::create_typed_block(
          name, spec,
          [&](std::span<std::byte> prefix, std::span<std::byte> pl) {
            switch (lk) {
              case shmkit::ObjectLockKind::mutex: ::new (prefix.data()) shmkit::Mutex(); break;
              case shmkit::ObjectLockKind::recursive_mutex:
                ::new (prefix.data()) shmkit::RecursiveMutex();
                break;
              case shmkit::ObjectLockKind::robust_mutex: ::new (prefix.data()) shmkit::RobustMutex(); break;
              default: break;
            }
            if (have_init) std::memcpy(pl.data(), init.buf, pl.size());
          },
          o);
    });
    return object_result(std::move(block.shm), block.header);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

// attach_object(name, is_array, typecode, size, align, type_name, count (0:
//               any), lock_kind (-1: any in-block lock), track)
//   -> (Mapping, payload_offset, count, lock_kind, prefix_offset)
PyObject* core_attach_object(PyObject*, PyObject* const* a, Py_ssize_t n) {
  if (n != 9) {
    PyErr_SetString(PyExc_TypeError,
                    "attach_object(name, is_array, typecode, size, align, type_name, count, lock_kind, track)");
    return nullptr;
  }
  std::string name;
  if (!get_str(a[0], name, "name")) return nullptr;
  const int is_array = PyObject_IsTrue(a[1]);
  ElementType t;
  if (is_array < 0 || !parse_type(a + 2, t)) return nullptr;
  const Py_ssize_t count = PyLong_AsSsize_t(a[6]);
  const long lock = PyLong_AsLong(a[7]);
  if (PyErr_Occurred()) return nullptr;
  const int track = PyObject_IsTrue(a[8]);
  if (track < 0) return nullptr;
  if (count < 0 || lock < -1 || lock > 4) {
    PyErr_SetString(PyExc_ValueError, "shmkit: bad count or lock kind");
    return nullptr;
  }
  try {
    auto block = without_gil([&] {
      const auto kind = is_array ? shmkit::BlockKind::array : shmkit::BlockKind::value;
      shmkit::AttachOptions o;
      o.shm.track = track != 0;
      shmkit::TypedBlock b = shmkit::attach_typed_block(name, kind, t.fp, o);
      auto lk = static_cast<shmkit::ObjectLockKind>(lock);
      if (lock == -1) {  // any lock kept in the block
        lk = static_cast<shmkit::ObjectLockKind>(b.header.param[0]);
        if (lk != shmkit::ObjectLockKind::mutex && lk != shmkit::ObjectLockKind::recursive_mutex &&
            lk != shmkit::ObjectLockKind::robust_mutex) {
          throw std::invalid_argument("shmkit: block '" + name + "' was made with lock '" +
                                      shmkit::lock_kind_name(b.header.param[0]) +
                                      "', not a lock kept in the block (attach it with lock=False)");
        }
      }
      const shmkit::ObjectLayout layout{lk, lock_size_of(lk), t.fp.size, static_cast<std::uint64_t>(count)};
      const auto r = shmkit::open_object_region(b.shm.buf(), kind, t.fp, layout, name);
      b.header = r.header;
      return b;
    });
    return object_result(std::move(block.shm), block.header);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

// _registrations() -> [(block, pid)]: the tracker registry now (tests, tools).
PyObject* core_registrations(PyObject*, PyObject*) {
  try {
    auto regs = without_gil([] { return shmkit::tracker::registrations(); });
    Ref out(PyList_New(0));
    if (!out) return nullptr;
    for (const auto& r : regs) {
      Ref t(Py_BuildValue("(s#i)", r.block.data(), static_cast<Py_ssize_t>(r.block.size()),
                          static_cast<int>(r.pid)));
      if (!t || PyList_Append(out.get(), t.get()) != 0) return nullptr;
    }
    return out.release();
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

// ------------------------------------------------------------ module

PyObject* core_noop(PyObject*, PyObject* const*, Py_ssize_t) { Py_RETURN_NONE; }

template <class F>
PyCFunction fastcall(F f) {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f));
}

PyMethodDef core_methods[] = {
    {"_noop", fastcall(core_noop), METH_FASTCALL, "Does nothing: the cost of one call into the extension."},
    {"create", fastcall(core_create), METH_FASTCALL,
     "create(name|None, size, track) -> Mapping: a new block (a random psm_ name for None)."},
    {"attach", fastcall(core_attach), METH_FASTCALL, "attach(name, track, read_only=False) -> Mapping."},
    {"unlink", core_unlink, METH_O, "unlink(name): removes the block's name."},
    {"list_create", fastcall(core_list_create), METH_FASTCALL,
     "list_create(name|None, items, track=False) -> ListAccess."},
    {"list_attach", core_list_attach, METH_O, "list_attach(name) -> ListAccess."},
    {"create_object", fastcall(core_create_object), METH_FASTCALL,
     "A Value/Array block (shmkit/object_layout.hpp)."},
    {"attach_object", fastcall(core_attach_object), METH_FASTCALL,
     "Attaches a Value/Array block, checking every header field."},
    {"_registrations", core_registrations, METH_NOARGS,
     "[(block, pid)] registered with shmkit's tracker now (its registry: $SHMKIT_TRACKER_REGISTRY)."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "shmkit._core",
    "shmkit's blocks, ShareableList, manager and Value/Array layout (the C++ library, C API).", -1,
    core_methods, nullptr, nullptr, nullptr, nullptr,
};

bool add_type(PyObject* m, PyType_Spec* spec, PyTypeObject*& out, const char* name) {
  PyObject* t = PyType_FromSpec(spec);
  if (t == nullptr) return false;
  out = reinterpret_cast<PyTypeObject*>(t);
  Py_INCREF(t);
  if (PyModule_AddObject(m, name, t) != 0) {
    Py_DECREF(t);
    return false;
  }
  return true;
}

}  // namespace

PyMODINIT_FUNC PyInit__core() {
  Ref m(PyModule_Create(&core_module));
  if (!m) return nullptr;
  mapping_spec.basicsize = sizeof(MappingObject);
  if (!add_type(m.get(), &mapping_spec, mapping_type, "Mapping")) return nullptr;
  // The buffer slots of a heap type (Py_bf_* exist only from 3.9 in the
  // limited API; set them directly, as the full API allows).
  mapping_type->tp_as_buffer = &mapping_buffer;
  if (!add_type(m.get(), &mapped_spec, mapped_type, "_Mapped")) return nullptr;
  mapped_type->tp_as_buffer = &mapped_buffer;
  if (!add_type(m.get(), &list_spec, list_type, "ListAccess")) return nullptr;
  if (!add_type(m.get(), &manager_spec, manager_type, "Manager")) return nullptr;
#ifndef Py_TPFLAGS_DISALLOW_INSTANTIATION
  mapping_type->tp_new = nullptr;
  mapped_type->tp_new = nullptr;
  list_type->tp_new = nullptr;
#endif
  Ref st(PyImport_ImportModule("struct"));
  if (!st) return nullptr;
  struct_error = PyObject_GetAttrString(st.get(), "error");
  if (struct_error == nullptr) return nullptr;
  if (PyModule_AddIntConstant(m.get(), "HEADER_SIZE", shmkit::BlockHeader::kSize) != 0 ||
      PyModule_AddIntConstant(m.get(), "LOCK_NONE", 0) != 0 ||
      PyModule_AddIntConstant(m.get(), "LOCK_MUTEX", 1) != 0 ||
      PyModule_AddIntConstant(m.get(), "LOCK_RLOCK", 2) != 0 ||
      PyModule_AddIntConstant(m.get(), "LOCK_ROBUST", 3) != 0 ||
      PyModule_AddIntConstant(m.get(), "LOCK_EXTERNAL", 4) != 0) {
    return nullptr;
  }
  return m.release();
}
