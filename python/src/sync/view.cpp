// python/src/sync/view.cpp — the view every shmkit._sync primitive type
// is (Bound, sync.hpp): binding to a buffer, T(buffer, offset) and
// T._over(buffer, offset), and adding such a type to the module.
#include <cstdint>
#include <cstring>
#include <string_view>

#include "sync/sync.hpp"

namespace shmkit::python::sync {

// How many lock spin budgets (shmkit/sync/spin.hpp) a contended acquire
// spins with the GIL held before it gives the GIL up to sleep (see
// spin_briefly): 10 x 180 ns by default, in time on every CPU.
constexpr std::uint32_t kGilSpinFactor = 10;

std::uint32_t gil_spin_iterations() {
  static const std::uint32_t n = kGilSpinFactor * shmkit::spin_policy().iterations;
  return n;
}

int bind_view(Bound* self, PyObject* buffer, PyObject* offset_obj, std::size_t size, std::size_t align,
              const char* what) {
  const Py_ssize_t offset = PyNumber_AsSsize_t(offset_obj, PyExc_OverflowError);
  if (offset == -1 && PyErr_Occurred()) return -1;
  if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE) < 0) return -1;
  if (offset < 0 || self->view.len < 0 || static_cast<std::size_t>(self->view.len) < size ||
      static_cast<std::size_t>(offset) > static_cast<std::size_t>(self->view.len) - size) {
    PyErr_Format(PyExc_ValueError, "shmkit: a %s needs %zu bytes at offset %zd of a buffer of %zd bytes",
                 what, size, offset, self->view.len);
    PyBuffer_Release(&self->view);
    self->view.obj = nullptr;
    return -1;
  }
  char* p = static_cast<char*>(self->view.buf) + offset;
  if (reinterpret_cast<std::uintptr_t>(p) % align != 0) {
    PyErr_Format(PyExc_ValueError, "shmkit: a %s must be %zu-byte aligned; offset %zd is not", what, align,
                 offset);
    PyBuffer_Release(&self->view);
    self->view.obj = nullptr;
    return -1;
  }
  self->addr = p;
  return 0;
}

void bound_dealloc(PyObject* o) {
  Bound* self = reinterpret_cast<Bound*>(o);
  if (self->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  if (self->view.obj != nullptr) PyBuffer_Release(&self->view);
  free_object(o);
}

PyObject* bound_new_sized(PyTypeObject* type, PyObject* args, PyObject* kwds, std::size_t size,
                          std::size_t align) {
  static const char* kwlist[] = {"buffer", "offset", nullptr};
  PyObject* buffer = nullptr;
  PyObject* offset = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO", const_cast<char**>(kwlist), &buffer, &offset)) {
    return nullptr;
  }
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) return nullptr;
  Bound* self = reinterpret_cast<Bound*>(o);
  self->addr = nullptr;
  self->view.obj = nullptr;
  self->weakrefs = nullptr;
  if (bind_view(self, buffer, offset, size, align, type->tp_name) < 0) {
    Py_DECREF(o);
    return nullptr;
  }
  return o;
}

// classmethod _over(buffer, offset): the agreed entry point.
PyObject* bound_over(PyObject* cls, PyObject* const* args, Py_ssize_t nargs) {
  PyObject* tuple = PyTuple_New(nargs);
  if (tuple == nullptr) return nullptr;
  for (Py_ssize_t i = 0; i < nargs; ++i) PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
  PyTypeObject* type = reinterpret_cast<PyTypeObject*>(cls);
  PyObject* r = type->tp_new(type, tuple, nullptr);
  Py_DECREF(tuple);
  return r;
}

PyObject* bound_address(PyObject* o, void*) { return PyLong_FromVoidPtr(reinterpret_cast<Bound*>(o)->addr); }

PyObject* bound_buffer(PyObject* o, void*) {
  Bound* self = reinterpret_cast<Bound*>(o);
  PyObject* b = self->view.obj != nullptr ? self->view.obj : Py_None;
  Py_INCREF(b);
  return b;
}

PyGetSetDef bound_getset[] = {
    {"_address", bound_address, nullptr, "Address of the primitive in this process.", nullptr},
    {"_buffer", bound_buffer, nullptr, "The buffer exporter this view holds.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMemberDef bound_members[] = {SHMKIT_WEAKLIST_MEMBER(Bound, weakrefs), {nullptr, 0, 0, 0, nullptr}};

PyTypeObject* add_view_type(PyObject* m, const char* name, const char* doc, PyMethodDef* methods,
                            std::size_t size, std::size_t align, std::string_view type_name, newfunc tp_new,
                            Py_ssize_t basicsize, PyGetSetDef* getset) {
  PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(tp_new)},
      {Py_tp_dealloc, reinterpret_cast<void*>(bound_dealloc)},
      {Py_tp_methods, methods},
      {Py_tp_getset, getset},
      {Py_tp_members, bound_members},
      {Py_tp_doc, const_cast<char*>(doc)},
      {0, nullptr},
  };
  PyType_Spec spec = {name, static_cast<int>(basicsize), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots};
  const char* dot = std::strrchr(name, '.');
  PyTypeObject* t = add_type(m, spec, dot != nullptr ? dot + 1 : name);
  if (t == nullptr) return nullptr;
  if (!set_type_attr(t, "SIZE", PyLong_FromSize_t(size)) ||
      !set_type_attr(t, "ALIGN", PyLong_FromSize_t(align)) ||
      !set_type_attr(
          t, "TYPE_NAME",
          PyUnicode_FromStringAndSize(type_name.data(), static_cast<Py_ssize_t>(type_name.size())))) {
    return nullptr;
  }
  return t;
}

}  // namespace shmkit::python::sync
