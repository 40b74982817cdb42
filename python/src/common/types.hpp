// python/src/common/types.hpp — the one way a type is added to an extension
// module: a PyType_Spec made into a heap type by PyType_FromSpec
// (add_type), then published under its short name. Also the flags of a
// type only the module makes (kMadeHere), the slot of the weak-reference
// list, the dealloc tail every type shares, and METH_FASTCALL's cast.
//
// Contract: header-only, no state; called from a module's init with the
// GIL held; nullptr with a Python exception set on failure.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

namespace shmkit::python {

// A PyCFunction from a METH_FASTCALL (optionally | METH_KEYWORDS) function.
template <class F>
PyCFunction fastcall(F f) noexcept {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f));
}

// The flags of a type made only by the module's functions: a heap type
// would otherwise inherit object's tp_new, and T() from Python would be an
// object with no block behind it. Before 3.10 (no such flag) add_type
// clears its tp_new instead.
#ifdef Py_TPFLAGS_DISALLOW_INSTANTIATION
inline constexpr unsigned long kMadeHere = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION;
#else
inline constexpr unsigned long kMadeHere = Py_TPFLAGS_DEFAULT;
#endif

// A Py_tp_members entry naming the weak-reference list slot of a type (a
// PyObject* member at `offset`): the heap-type spelling of
// tp_weaklistoffset.
#define SHMKIT_WEAKLIST_MEMBER(Type, field) \
  { const_cast<char*>("__weaklistoffset__"), T_PYSSIZET, offsetof(Type, field), READONLY, nullptr }

// The end of every tp_dealloc: frees the object and drops the reference
// it held on its heap type.
inline void free_object(PyObject* o) noexcept {
  PyTypeObject* type = Py_TYPE(o);
  type->tp_free(o);
  Py_DECREF(type);
}

// The type of `spec` (PyType_FromSpec), added to module `m` as `name`;
// (name nullptr: not published, a type reached through its objects only);
// `buffer` sets its buffer slots (the Py_bf_* slots are not in every
// version's spec), `made_here` marks a type Python code cannot instantiate.
// A strong reference the caller keeps for good (the module holds another),
// or nullptr.
inline PyTypeObject* add_type(PyObject* m, PyType_Spec& spec, const char* name,
                              PyBufferProcs* buffer = nullptr) {
  PyObject* t = PyType_FromSpec(&spec);
  if (t == nullptr) return nullptr;
  auto* type = reinterpret_cast<PyTypeObject*>(t);
  if (buffer != nullptr) type->tp_as_buffer = buffer;
#ifndef Py_TPFLAGS_DISALLOW_INSTANTIATION
  if ((spec.flags & ~static_cast<unsigned long>(Py_TPFLAGS_HAVE_GC)) == kMadeHere) {
    bool has_new = false;
    for (PyType_Slot* s = spec.slots; s->slot != 0; ++s) has_new = has_new || s->slot == Py_tp_new;
    if (!has_new) type->tp_new = nullptr;
  }
#endif
  if (name == nullptr) return type;  // not published: reached through its objects only
  Py_INCREF(t);
  if (PyModule_AddObject(m, name, t) != 0) {
    Py_DECREF(t);
    Py_DECREF(t);
    return nullptr;
  }
  return type;
}

// Sets a class attribute of a type made by add_type (SIZE, ALIGN, ...);
// takes the reference to `value`. False with an exception set.
inline bool set_type_attr(PyTypeObject* type, const char* name, PyObject* value) {
  if (value == nullptr) return false;
  const int r = PyObject_SetAttrString(reinterpret_cast<PyObject*>(type), name, value);
  Py_DECREF(value);
  return r == 0;
}

}  // namespace shmkit::python
