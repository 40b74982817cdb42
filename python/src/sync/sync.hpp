// python/src/sync/sync.hpp — what the files of shmkit._sync share (private
// to the module): the view every primitive type is (Bound: where the
// primitive is and the buffer export that keeps it mapped), the one acquire
// of the two plain locks, the GIL-held spin before a blocking wait, the
// module's exceptions, and each type file's entry point. The contract of
// the module is in module.cpp.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/args.hpp"
#include "common/errors.hpp"
#include "common/gil.hpp"
#include "common/types.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/sync/spin.hpp"

namespace shmkit::python::sync {

extern PyObject* g_owner_died;       // shmkit._sync.OwnerDiedError
extern PyObject* g_not_recoverable;  // shmkit._sync.NotRecoverableError

// The lock types Condition.wait accepts (set by their add_* functions).
extern PyTypeObject* mutex_type;
extern PyTypeObject* rmutex_type;
extern PyTypeObject* robust_type;

// ------------------------------------------------------------ the view

// The common head of every view type: where the primitive is and the
// buffer export that keeps it mapped.
struct Bound {
  PyObject_HEAD void* addr;
  Py_buffer view;  // view.obj == nullptr: unbound
  PyObject* weakrefs;
};

// Binds `self` to `size` bytes aligned to `align` at `offset_obj` of the
// writable buffer `buffer`; -1 with ValueError/TypeError set.
int bind_view(Bound* self, PyObject* buffer, PyObject* offset_obj, std::size_t size, std::size_t align,
              const char* what);
// tp_new of a view: T(buffer, offset), `size` bytes aligned to `align`.
PyObject* bound_new_sized(PyTypeObject* type, PyObject* args, PyObject* kwds, std::size_t size,
                          std::size_t align);
template <std::size_t Size, std::size_t Align>
PyObject* bound_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  return bound_new_sized(type, args, kwds, Size, Align);
}
void bound_dealloc(PyObject* o);
// classmethod _over(buffer, offset, ...): the agreed entry point.
PyObject* bound_over(PyObject* cls, PyObject* const* args, Py_ssize_t nargs);
PyObject* bound_address(PyObject* o, void*);
PyObject* bound_buffer(PyObject* o, void*);
extern PyGetSetDef bound_getset[];   // _address, _buffer
extern PyMemberDef bound_members[];  // the weak-reference list

// The type of a view of primitive P (its spec: name, doc, methods; the
// view's tp_new, dealloc, getset and weak-reference slot are added here),
// added to module `m` with P's SIZE, ALIGN and TYPE_NAME.
PyTypeObject* add_view_type(PyObject* m, const char* name, const char* doc, PyMethodDef* methods,
                            std::size_t size, std::size_t align, std::string_view type_name, newfunc tp_new,
                            Py_ssize_t basicsize = sizeof(Bound), PyGetSetDef* getset = bound_getset);

// The docstrings every view type's methods share (text signatures).
#define SHMKIT_DOC_ENTER "__enter__($self, /)\n--\n\n"
#define SHMKIT_DOC_EXIT "__exit__($self, /, *args)\n--\n\n"
#define SHMKIT_DOC_OVER "_over($type, buffer, offset, /)\n--\n\n"
#define SHMKIT_DOC_ACQUIRE "acquire($self, /, block=True, timeout=None)\n--\n\n"

template <class P>
P& prim(PyObject* o) {
  return *static_cast<P*>(reinterpret_cast<Bound*>(o)->addr);
}

// ------------------------------------------------------------ waiting

// Tries `attempt` for a while with the GIL held before the caller gives
// the GIL up to sleep: a lock held by another process is usually released
// within a short critical section, and releasing and re-taking the GIL plus
// a futex sleep and wake cost microseconds. The budget is time, as every
// spin in shmkit: kGilSpinFactor lock budgets of calibrated cpu_relax()
// rounds, so SHMKIT_SPIN_NS scales it too and SHMKIT_SPIN_NS=0 disables it.
std::uint32_t gil_spin_iterations();
template <class Attempt>
bool spin_briefly(Attempt&& attempt) {
  for (std::uint32_t i = 0, n = gil_spin_iterations(); i < n; ++i) {
    shmkit::detail::cpu_relax();  // PAUSE / YIELD, as the library's spins (spin.hpp)
    if (attempt()) return true;
  }
  return false;
}

// acquire(block=True, timeout=None) of a plain lock M (Mutex,
// RecursiveMutex): multiprocessing's SemLock. The fast path is one
// try_lock with the GIL held; then `spin_try(m)` is tried while spinning
// (spin_briefly), then the wait runs without the GIL in slices.
template <class M, class SpinTry>
PyObject* lock_acquire(M& m, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, SpinTry&& spin_try) {
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 0, "acquire", Timeouts::clamp, &block, &timeout) < 0) {
    return nullptr;
  }
  if (m.try_lock()) [[likely]]
    Py_RETURN_TRUE;
  if (!block) Py_RETURN_FALSE;
  if (spin_briefly([&] { return spin_try(m); })) Py_RETURN_TRUE;
  const int r =
      wait_sliced(deadline_for(timeout), [&](Clock::time_point end) { return m.try_lock_until(end); });
  if (r < 0) return nullptr;
  return PyBool_FromLong(r);
}

// A RobustMutex LockResult as the Python result: True, False, or an
// exception (robust_mutex.cpp; Condition.wait uses it too).
PyObject* robust_result(shmkit::LockResult r, bool block);

// ------------------------------------------------------------ the types

bool add_mutex_type(PyObject* m);
bool add_recursive_mutex_type(PyObject* m);
bool add_robust_mutex_type(PyObject* m);
bool add_semaphore_type(PyObject* m);
bool add_event_type(PyObject* m);
bool add_condition_type(PyObject* m);
bool add_atomic_ref_type(PyObject* m);
bool add_typed_block_type(PyObject* m);

}  // namespace shmkit::python::sync
