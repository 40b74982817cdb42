// python/src/common/module.hpp — how every shmkit extension module is
// defined: multi-phase initialisation (PEP 489) with one exec function, and
// the slots every module declares truthfully:
//   * Py_mod_gil (3.13+): Py_MOD_GIL_USED. The extension keeps module state
//     in C++ globals and its objects' fields are guarded by the GIL alone;
//     it has not been audited for running without the GIL, so a
//     free-threaded interpreter re-enables the GIL when it imports it.
//   * Py_mod_multiple_interpreters (3.12+): not supported, for the same
//     globals (one set of type objects per process).
//
// Contract: header-only, no state.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

// The slot array of a module whose exec function is `exec`.
#ifdef Py_mod_gil
#define SHMKIT_MOD_GIL_SLOT {Py_mod_gil, Py_MOD_GIL_USED},
#else
#define SHMKIT_MOD_GIL_SLOT
#endif
#ifdef Py_mod_multiple_interpreters
#define SHMKIT_MOD_INTERP_SLOT {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#else
#define SHMKIT_MOD_INTERP_SLOT
#endif
#define SHMKIT_MODULE_SLOTS(exec)                                                                           \
  {                                                                                                         \
    {Py_mod_exec, reinterpret_cast<void*>(exec)}, SHMKIT_MOD_GIL_SLOT SHMKIT_MOD_INTERP_SLOT { 0, nullptr } \
  }
