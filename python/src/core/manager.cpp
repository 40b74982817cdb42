// python/src/core/manager.cpp — shmkit._core.Manager
// (shmkit::SharedMemoryManager). Contract: module.cpp.
#include "shmkit/manager.hpp"
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

// ------------------------------------------------------------ manager

struct ManagerObject {
  PyObject_HEAD std::unique_ptr<shmkit::SharedMemoryManager> m;
};
PyTypeObject* manager_type = nullptr;

void manager_dealloc(PyObject* o) {
  auto* self = reinterpret_cast<ManagerObject*>(o);
  self->m.~unique_ptr();  // a started manager shuts its server down
  free_object(o);
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
    {"start", manager_start, METH_NOARGS,
     "start($self, /)\n--\n\nForks the server; returns once it listens."},
    {"shutdown", manager_shutdown, METH_NOARGS,
     "shutdown($self, /)\n--\n\nUnlinks every block of the server and stops it."},
    {"create_shared_memory", manager_create_shared_memory, METH_O,
     "create_shared_memory($self, size, /)\n--\n\nA block of size bytes; its name."},
    {"create_shareable_list", manager_create_shareable_list, METH_O,
     "create_shareable_list($self, seq, /)\n--\n\nA ShareableList of seq; its name."},
    {"release", manager_release, METH_O, "release($self, name, /)\n--\n\nUnlinks one block the server owns."},
    {"list", manager_list, METH_NOARGS, "list($self, /)\n--\n\n[(name, kind, size)] of the server's blocks."},
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
    {Py_tp_doc, const_cast<char*>("Manager(address=None, authkey=None, "
                                  "connect=False)\n--\n\nshmkit::SharedMemoryManager (shmkit/manager.hpp).")},
    {0, nullptr},
};
PyType_Spec manager_spec = {"shmkit._core.Manager", sizeof(ManagerObject), 0, Py_TPFLAGS_DEFAULT,
                            manager_slots};

}  // namespace

bool add_manager_type(PyObject* m) {
  manager_type = add_type(m, manager_spec, "Manager");
  return manager_type != nullptr;
}

}  // namespace shmkit::python::core
