// python/src/sync/module.cpp — the extension module shmkit._sync: shmkit's
// process-shared locks, semaphores, events, conditions and atomics for
// Python, written against the CPython C API (METH_FASTCALL) because the hot
// calls (acquire/release, fetch_add) must cost no more than CPython's own
// SemLock (~60 ns for acquire+release); a pybind11 call costs 110-470 ns.
//
// Contract
//   * Every type here is a *view* of a primitive that lives in somebody
//     else's memory: `T(buffer, offset)` (and the classmethod
//     `T._over(buffer, offset)`, the same) binds to the bytes at `offset` of
//     any writable buffer exporter (a SharedMemory's buf, a mmap, a
//     TypedBlock below), checks bounds and alignment, and holds the buffer
//     export until the view is deallocated (so the mapping cannot be closed
//     under it: the exporter's close() raises BufferError meanwhile).
//   * Lock kinds, one per C++ lock that can sit in a Value/Array prefix:
//     Mutex (shmkit::Mutex, CPython's Lock), RecursiveMutex (CPython's RLock,
//     the default lock of a Value), RobustMutex (owner-death recovery).
//     acquire(block=True, timeout=None) and release() follow
//     multiprocessing's SemLock: a negative timeout is 0, block=False tries
//     once, release of an unlocked Mutex raises ValueError, release of an
//     RLock the caller does not hold raises AssertionError.
//   * Blocking: the fast path is one CAS with the GIL held. A call that must
//     wait releases the GIL and sleeps in slices of kSlice; between slices it
//     runs PyErr_CheckSignals with the GIL, so Ctrl-C interrupts a blocked
//     acquire with KeyboardInterrupt (as CPython's does) within one slice.
//     Every blocking call is sliced so, Condition.wait's re-acquire of its
//     lock included: a holder that died or is stopped never makes a waiter
//     deaf to Ctrl-C.
//   * Re-entrancy: a view holds a buffer export of its memory, so nothing
//     an argument's conversion runs can unmap it; TypedBlock.close() is
//     refused while views exist and unmaps only with the object.
//   * RobustMutex: acquire() raises OwnerDiedError when the previous holder
//     died holding it. The caller then HOLDS the lock: it repairs the data,
//     calls make_consistent(), and releases. Releasing without
//     make_consistent() makes the lock not recoverable for good: every later
//     acquire raises NotRecoverableError (never hangs).
//   * AtomicRef(buffer, offset, typecode): Boost.Atomic ipc_atomic_ref
//     operations on an integer (typecodes b B h H i I l L q Q), seq_cst, plus
//     wait(old, timeout=None)/notify(n) on a shared futex: the futex is the
//     aligned 32-bit word that holds (the low half of) the integer, so a
//     store that changes only bytes outside that word is noticed by a waiter
//     at its next slice (kSlice) rather than at once.
//   * TypedBlock: a shmkit typed block (typed_block.hpp) created or attached
//     by name, exporting its whole mapping as a writable buffer. Errors from
//     the C++ side map to Python's: ENOENT FileNotFoundError, EEXIST
//     FileExistsError, other errno OSError, std::invalid_argument
//     ValueError, std::out_of_range IndexError.
//   * Nothing here crashes on bad input: wrong types, offsets, sizes,
//     typecodes and foreign or garbage blocks raise TypeError/ValueError.//
// The files: one a type (mutex.cpp, recursive_mutex.cpp, robust_mutex.cpp,
// semaphore.cpp, event.cpp, condition.cpp, atomic_ref.cpp, typed_block.cpp),
// view.cpp (the view they share), sync.hpp (what they share); this file
// holds the module's functions, its exceptions and its init.
#include <string_view>

#include "common/module.hpp"
#include "shmkit/typed_block.hpp"
#include "sync/sync.hpp"

namespace shmkit::python::sync {

PyObject* g_owner_died = nullptr;
PyObject* g_not_recoverable = nullptr;

namespace {

PyObject* py_fnv1a(PyObject*, PyObject* arg) {
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(arg, &n);
  if (s == nullptr) return nullptr;
  return PyLong_FromUnsignedLongLong(shmkit::fnv1a(std::string_view(s, static_cast<std::size_t>(n))));
}

PyMethodDef module_methods[] = {
    {"fnv1a", py_fnv1a, METH_O,
     "fnv1a($module, s, /)\n--\n\n64-bit FNV-1a of a str's UTF-8 (type-name hashes)."},
    {nullptr, nullptr, 0, nullptr}};

int sync_exec(PyObject* m) {
  if (!add_mutex_type(m) || !add_recursive_mutex_type(m) || !add_robust_mutex_type(m) ||
      !add_semaphore_type(m) || !add_event_type(m) || !add_condition_type(m) || !add_atomic_ref_type(m) ||
      !add_typed_block_type(m)) {
    return -1;
  }
  Py_XSETREF(g_owner_died,
             PyErr_NewExceptionWithDoc(
                 "shmkit._sync.OwnerDiedError",
                 "A RobustLock's previous holder died holding it. The caller now holds the lock: repair the "
                 "data, call make_consistent(), then release().",
                 PyExc_RuntimeError, nullptr));
  Py_XSETREF(g_not_recoverable,
             PyErr_NewExceptionWithDoc(
                 "shmkit._sync.NotRecoverableError",
                 "A RobustLock was released after an owner death without make_consistent(): it can never be "
                 "acquired again. Recreate it.",
                 PyExc_RuntimeError, nullptr));
  if (g_owner_died == nullptr || g_not_recoverable == nullptr ||
      PyModule_AddObject(m, "OwnerDiedError", Py_NewRef(g_owner_died)) < 0 ||
      PyModule_AddObject(m, "NotRecoverableError", Py_NewRef(g_not_recoverable)) < 0 ||
      PyModule_AddIntConstant(m, "KIND_SYNC", static_cast<long>(shmkit::BlockKind::sync)) < 0 ||
      PyModule_AddIntConstant(m, "KIND_SPSC_QUEUE", static_cast<long>(shmkit::BlockKind::spsc_queue)) < 0 ||
      PyModule_AddIntConstant(m, "KIND_MPMC_QUEUE", static_cast<long>(shmkit::BlockKind::mpmc_queue)) < 0 ||
      PyModule_AddIntConstant(m, "SLICE_MS", static_cast<long>(kSlice.count())) < 0) {
    return -1;
  }
  return 0;
}

PyModuleDef_Slot module_slots[] = SHMKIT_MODULE_SLOTS(sync_exec);

PyModuleDef module_def = {PyModuleDef_HEAD_INIT,
                          "shmkit._sync",
                          "shmkit's process-shared locks, semaphores, events, conditions, atomics "
                          "and typed blocks (see python/src/sync/).",
                          0,
                          module_methods,
                          module_slots,
                          nullptr,
                          nullptr,
                          nullptr};

}  // namespace
}  // namespace shmkit::python::sync

PyMODINIT_FUNC PyInit__sync() { return PyModuleDef_Init(&shmkit::python::sync::module_def); }
