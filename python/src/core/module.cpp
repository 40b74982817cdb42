// python/src/core/module.cpp — shmkit._core: blocks (Mapping), ShareableList,
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
//   * Every C++ exception becomes the Python exception common/errors.hpp maps it
//     to; a block written by another process is validated by the C++ side,
//     so a garbage block is a ValueError, never a crash.
//   * Calls that make system calls or take the tracker's registry lock run
//     without the GIL; nothing here blocks for long.
//
// The files: mapping.cpp (Mapping, _Mapped), list_access.cpp (ListAccess),
// manager.cpp (Manager), typed_object.cpp (the Value/Array layout); this
// file holds the method table and the module's init.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/buffer.hpp"
#include "common/errors.hpp"
#include "common/gil.hpp"
#include "common/module.hpp"
#include "common/types.hpp"
#include "core/core.hpp"
#include "shmkit/tracker.hpp"

namespace shmkit::python::core {

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

namespace {

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

PyMethodDef core_methods[] = {
    {"_noop", fastcall(core_noop), METH_FASTCALL,
     "_noop($module, /, *args)\n--\n\nDoes nothing: the cost of one call into the extension."},
    {"create", fastcall(create), METH_FASTCALL,
     "create($module, name, size, track, /)\n--\n\n"
     "A new block as a Mapping (name None: a random psm_ name)."},
    {"attach", fastcall(attach), METH_FASTCALL,
     "attach($module, name, track, read_only=False, /)\n--\n\nAn existing block as a Mapping."},
    {"unlink", unlink, METH_O, "unlink($module, name, /)\n--\n\nRemoves the block's name."},
    {"list_create", fastcall(list_create), METH_FASTCALL,
     "list_create($module, name, items, track=False, /)\n--\n\nA new ShareableList block (name None: "
     "random)."},
    {"list_attach", list_attach, METH_O,
     "list_attach($module, name, /)\n--\n\nA ListAccess of an existing list."},
    {"create_object", fastcall(create_object), METH_FASTCALL,
     "create_object($module, name, is_array, typecode, size, align, type_name, count, lock_kind, initial, "
     "track, /)\n--\n\n"
     "A Value/Array block (shmkit/object_layout.hpp): (Mapping, payload_offset, count, lock_kind, "
     "prefix_offset)."},
    {"attach_object", fastcall(attach_object), METH_FASTCALL,
     "attach_object($module, name, is_array, typecode, size, align, type_name, count, lock_kind, track, /)"
     "\n--\n\nAttaches a Value/Array block, checking every header field (count 0: any; lock_kind -1: "
     "any lock kept in the block)."},
    {"_registrations", core_registrations, METH_NOARGS,
     "_registrations($module, /)\n--\n\n"
     "[(block, pid)] registered with shmkit's tracker now (its registry: $SHMKIT_TRACKER_REGISTRY)."},
    {nullptr, nullptr, 0, nullptr},
};

int core_exec(PyObject* m) {
  if (!add_mapping_types(m) || !add_list_type(m) || !add_manager_type(m) || !add_object_constants(m)) {
    return -1;
  }
  return 0;
}

PyModuleDef_Slot core_slots[] = SHMKIT_MODULE_SLOTS(core_exec);

PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    "shmkit._core",
    "shmkit's blocks, ShareableList, manager and Value/Array layout (the C++ library, C API).",
    0,
    core_methods,
    core_slots,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace
}  // namespace shmkit::python::core

PyMODINIT_FUNC PyInit__core() { return PyModuleDef_Init(&shmkit::python::core::core_module); }
