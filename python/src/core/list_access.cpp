// python/src/core/list_access.cpp — shmkit._core.ListAccess (a
// shmkit::ShareableList) and the functions list_create()/list_attach().
// Contract: module.cpp.
#include <cstring>
#include <memory>
#include <string>
#include <vector>
#include "shmkit/shareable_list.hpp"
#include "shmkit/tracker.hpp"

#include "common/buffer.hpp"
#include "common/errors.hpp"
#include "common/gil.hpp"
#include "common/types.hpp"
#include "core/core.hpp"

namespace shmkit::python::core {
namespace {

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
      PyErr_SetString(struct_error,
                      "'q' format requires -9223372036854775808 <= number <= 9223372036854775807");
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
    PyErr_Format(PyExc_TypeError, "a ShareableList holds int, float, bool, str, bytes and None, not %.100s",
                 Py_TYPE(o)->tp_name);
    return false;
  }
  return true;
}

PyObject* from_item(const shmkit::Item& item) {
  switch (item.index()) {
    case 0:
      Py_RETURN_NONE;
    case 1:
      return PyBool_FromLong(std::get<bool>(item));
    case 2:
      return PyLong_FromLongLong(std::get<std::int64_t>(item));
    case 3:
      return PyFloat_FromDouble(std::get<double>(item));
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

}  // namespace

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

namespace {

struct ListObject {
  PyObject_HEAD shmkit::ShareableList list;
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
  free_object(o);
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
    {"get", list_get, METH_O, "get($self, index, /)\n--\n\nThe item at index (negative from the end)."},
    {"set", fastcall(list_set), METH_FASTCALL,
     "set($self, index, value, /)\n--\n\nSets the item at index (its type may change; a longer str/bytes "
     "than the slot is ValueError)."},
    {"format", fastcall(list_format), METH_FASTCALL,
     "format($self, index=None, /)\n--\n\nThe struct format of one item, or of all."},
    {"length", list_len, METH_NOARGS, "length($self, /)\n--\n\nThe number of items."},
    {"close", list_close, METH_NOARGS, "close($self, /)\n--\n\nUnmaps this handle's view of the list."},
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

}  // namespace

// list_create(name: str | None, items, track: bool = False) -> ListAccess
// With track, the new block is registered with the tracker as created by
// this process (a tracked attach only registers use: shmkit/tracker.hpp).
PyObject* list_create(PyObject*, PyObject* const* args, Py_ssize_t n) {
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
PyObject* list_attach(PyObject*, PyObject* arg) {
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

bool add_list_type(PyObject* m) {
  Ref st(PyImport_ImportModule("struct"));
  if (!st) return false;
  Py_XSETREF(struct_error, PyObject_GetAttrString(st.get(), "error"));
  if (struct_error == nullptr) return false;
  list_type = add_type(m, list_spec, "ListAccess");
  return list_type != nullptr;
}

}  // namespace shmkit::python::core
