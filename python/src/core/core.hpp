// python/src/core/core.hpp — what the files of shmkit._core share (private
// to the module): converters, the Mapping factory every block-making
// function returns through, and each type file's entry points (its type,
// added by add_*_type, and its module-level functions, for the method table
// in module.cpp). The contract of the module is in module.cpp.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string>
#include <vector>

#include "shmkit/shareable_list.hpp"
#include "shmkit/shared_memory.hpp"

namespace shmkit::python::core {

// A str argument as UTF-8; false with TypeError set for anything else.
bool get_str(PyObject* o, std::string& out, const char* what);

// mapping.cpp: Mapping and _Mapped; create/attach/unlink.
bool add_mapping_types(PyObject* m);
PyObject* new_mapping(shmkit::SharedMemory shm);
PyObject* create(PyObject*, PyObject* const* args, Py_ssize_t n);
PyObject* attach(PyObject*, PyObject* const* args, Py_ssize_t n);
PyObject* unlink(PyObject*, PyObject* arg);

// list_access.cpp: ListAccess; list_create/list_attach.
bool add_list_type(PyObject* m);
bool to_items(PyObject* seq, std::vector<shmkit::Item>& out);
PyObject* list_create(PyObject*, PyObject* const* args, Py_ssize_t n);
PyObject* list_attach(PyObject*, PyObject* arg);

// manager.cpp: Manager.
bool add_manager_type(PyObject* m);

// typed_object.cpp: the Value/Array block layout.
bool add_object_constants(PyObject* m);
PyObject* create_object(PyObject*, PyObject* const* a, Py_ssize_t n);
PyObject* attach_object(PyObject*, PyObject* const* a, Py_ssize_t n);

}  // namespace shmkit::python::core
