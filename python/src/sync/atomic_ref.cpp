// python/src/sync/atomic_ref.cpp — shmkit._sync.AtomicRef: atomic
// operations on an integer in a buffer (Boost.Atomic ipc_atomic_ref
// semantics, seq_cst), with wait/notify across processes on a futex.
// Contract: module.cpp.
#include <cstdint>
#include <limits>
#include <type_traits>

#include "shmkit/atomic.hpp"
#include "shmkit/sync/futex.hpp"
#include "sync/sync.hpp"

namespace shmkit::python::sync {
namespace {

// ============================================================ AtomicRef

struct AtomicObj {
  Bound base;
  char code;  // normalised typecode: b B h H i I q Q
  unsigned char size;
  bool is_signed;
};

// Dispatches on the element type; F is called with a T* tag.
template <class F>
decltype(auto) with_type(const AtomicObj* a, F&& f) {
  switch (a->code) {
    case 'b':
      return f(static_cast<std::int8_t*>(a->base.addr));
    case 'B':
      return f(static_cast<std::uint8_t*>(a->base.addr));
    case 'h':
      return f(static_cast<std::int16_t*>(a->base.addr));
    case 'H':
      return f(static_cast<std::uint16_t*>(a->base.addr));
    case 'i':
      return f(static_cast<std::int32_t*>(a->base.addr));
    case 'I':
      return f(static_cast<std::uint32_t*>(a->base.addr));
    case 'q':
      return f(static_cast<std::int64_t*>(a->base.addr));
    default:
      return f(static_cast<std::uint64_t*>(a->base.addr));
  }
}

PyObject* atomic_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"buffer", "offset", "typecode", nullptr};
  PyObject* buffer = nullptr;
  PyObject* offset = nullptr;
  const char* tc = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOs", const_cast<char**>(kwlist), &buffer, &offset, &tc)) {
    return nullptr;
  }
  char code = tc[0] != '\0' && tc[1] == '\0' ? tc[0] : '\0';
  if (code == 'l') code = 'q';
  if (code == 'L') code = 'Q';
  unsigned char size = 0;
  switch (code) {
    case 'b':
    case 'B':
      size = 1;
      break;
    case 'h':
    case 'H':
      size = 2;
      break;
    case 'i':
    case 'I':
      size = 4;
      break;
    case 'q':
    case 'Q':
      size = 8;
      break;
    default:
      PyErr_Format(PyExc_ValueError,
                   "AtomicRef: typecode must be one of b B h H i I l L q Q (an integer), not '%s'", tc);
      return nullptr;
  }
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) return nullptr;
  AtomicObj* self = reinterpret_cast<AtomicObj*>(o);
  self->base.addr = nullptr;
  self->base.view.obj = nullptr;
  self->base.weakrefs = nullptr;
  self->code = code;
  self->size = size;
  self->is_signed = code == 'b' || code == 'h' || code == 'i' || code == 'q';
  if (bind_view(&self->base, buffer, offset, size, size, "AtomicRef") < 0) {
    Py_DECREF(o);
    return nullptr;
  }
  return o;
}

// Python int -> T, with C's wrap-around for arithmetic operands (fetch_add
// of -1 to an unsigned value) but a range check for stored values.
template <class T>
int to_value(PyObject* o, T* out, bool wrap) {
  if (!PyLong_Check(o)) {
    PyErr_Format(PyExc_TypeError, "an integer is required, not %s", Py_TYPE(o)->tp_name);
    return -1;
  }
  if (wrap) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0) {
      if (v == -1 && PyErr_Occurred()) return -1;
      *out = static_cast<T>(v);
      return 0;
    }
    const unsigned long long u = PyLong_AsUnsignedLongLongMask(o);
    if (u == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return -1;
    *out = static_cast<T>(u);
    return 0;
  }
  if constexpr (std::is_signed_v<T>) {
    const long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < static_cast<long long>(std::numeric_limits<T>::min()) ||
        v > static_cast<long long>(std::numeric_limits<T>::max())) {
      PyErr_SetString(PyExc_OverflowError, "value out of range for the atomic's type");
      return -1;
    }
    *out = static_cast<T>(v);
  } else {
    const unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return -1;
    if (v > static_cast<unsigned long long>(std::numeric_limits<T>::max())) {
      PyErr_SetString(PyExc_OverflowError, "value out of range for the atomic's type");
      return -1;
    }
    *out = static_cast<T>(v);
  }
  return 0;
}

template <class T>
PyObject* from_value(T v) {
  if constexpr (std::is_signed_v<T>)
    return PyLong_FromLongLong(v);
  else
    return PyLong_FromUnsignedLongLong(v);
}

AtomicObj* as_atomic(PyObject* o) { return reinterpret_cast<AtomicObj*>(o); }

PyObject* atomic_load(PyObject* self, PyObject*) {
  return with_type(as_atomic(self), [](auto* p) {
    return from_value(shmkit::AtomicRef<std::remove_pointer_t<decltype(p)>>(*p).load());
  });
}

PyObject* atomic_store(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "store($self, value, /)\n--\n\nStores value (seq_cst).");
    return nullptr;
  }
  return with_type(as_atomic(self), [&](auto* p) -> PyObject* {
    using T = std::remove_pointer_t<decltype(p)>;
    T v;
    if (to_value(args[0], &v, false) < 0) return nullptr;
    shmkit::AtomicRef<T>(*p).store(v);
    Py_RETURN_NONE;
  });
}

PyObject* atomic_exchange(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "exchange(value)");
    return nullptr;
  }
  return with_type(as_atomic(self), [&](auto* p) -> PyObject* {
    using T = std::remove_pointer_t<decltype(p)>;
    T v;
    if (to_value(args[0], &v, false) < 0) return nullptr;
    return from_value(shmkit::AtomicRef<T>(*p).exchange(v));
  });
}

enum class Op { add, sub, and_, or_, xor_ };

// The read-modify-write `op` on `r`; returns the value before it.
template <Op op, class T>
T fetch(shmkit::AtomicRef<T>& r, T d) {
  if constexpr (op == Op::add)
    return r.fetch_add(d);
  else if constexpr (op == Op::sub)
    return r.fetch_sub(d);
  else if constexpr (op == Op::and_)
    return r.fetch_and(d);
  else if constexpr (op == Op::or_)
    return r.fetch_or(d);
  else
    return r.fetch_xor(d);
}

template <Op op>
PyObject* atomic_fetch(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  AtomicObj* a = as_atomic(self);
  if (nargs == 1 && a->code == 'q' && PyLong_CheckExact(args[0])) [[likely]] {
    // The common case (a 64-bit signed counter) without the dispatch.
    int overflow = 0;
    const long long d = PyLong_AsLongLongAndOverflow(args[0], &overflow);
    if (overflow == 0 && !(d == -1 && PyErr_Occurred())) {
      shmkit::AtomicRef<std::int64_t> r(*static_cast<std::int64_t*>(a->base.addr));
      return PyLong_FromLongLong(fetch<op>(r, static_cast<std::int64_t>(d)));
    }
    PyErr_Clear();
  }
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "takes exactly one argument");
    return nullptr;
  }
  return with_type(a, [&](auto* p) -> PyObject* {
    using T = std::remove_pointer_t<decltype(p)>;
    T d;
    if (to_value(args[0], &d, true) < 0) return nullptr;
    shmkit::AtomicRef<T> r(*p);
    return from_value(fetch<op>(r, d));
  });
}

// compare_exchange(expected, desired) -> (success, value found)
PyObject* atomic_cas(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "compare_exchange(expected, desired)");
    return nullptr;
  }
  return with_type(as_atomic(self), [&](auto* p) -> PyObject* {
    using T = std::remove_pointer_t<decltype(p)>;
    T e, d;
    if (to_value(args[0], &e, false) < 0 || to_value(args[1], &d, false) < 0) return nullptr;
    const bool ok = shmkit::AtomicRef<T>(*p).compare_exchange_strong(e, d);
    PyObject* v = from_value(e);
    if (v == nullptr) return nullptr;
    PyObject* t = PyTuple_Pack(2, ok ? Py_True : Py_False, v);
    Py_DECREF(v);
    return t;
  });
}

// The 32-bit word the futex watches: the aligned word holding the value
// (its low half for 8 bytes; the containing word for 1 and 2 bytes).
shmkit::FutexWord& futex_of(const AtomicObj* a) {
  auto addr = reinterpret_cast<std::uintptr_t>(a->base.addr) & ~std::uintptr_t{3};
  return *reinterpret_cast<shmkit::FutexWord*>(addr);
}

// wait(old, timeout=None) -> bool: True once the value differs from old,
// False on timeout.
PyObject* atomic_wait(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  AtomicObj* a = as_atomic(self);
  double timeout;
  if (parse_timeout(args, nargs, kwnames, 1, "wait", Timeouts::clamp, &timeout) < 0) return nullptr;
  return with_type(a, [&](auto* p) -> PyObject* {
    using T = std::remove_pointer_t<decltype(p)>;
    T old;
    if (to_value(args[0], &old, false) < 0) return nullptr;
    shmkit::AtomicRef<T> r(*p);
    if (r.load() != old) Py_RETURN_TRUE;
    shmkit::FutexWord& word = futex_of(a);
    const int w = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) {
      for (;;) {
        const std::uint32_t seen = word.load(std::memory_order_seq_cst);
        if (r.load() != old) return true;
        if (shmkit::futex_wait_until(word, seen, end) == shmkit::FutexResult::timed_out) {
          return r.load() != old;
        }
      }
    });
    if (w < 0) return nullptr;
    return PyBool_FromLong(w);
  });
}

PyObject* atomic_notify(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  long n = INT32_MAX;
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "notify(n=None): None wakes every waiter");
    return nullptr;
  }
  if (nargs == 1 && args[0] != Py_None) {
    n = PyLong_AsLong(args[0]);
    if (n == -1 && PyErr_Occurred()) return nullptr;
    if (n <= 0) Py_RETURN_NONE;
  }
  shmkit::futex_wake(futex_of(as_atomic(self)), n > INT32_MAX ? INT32_MAX : static_cast<int>(n));
  Py_RETURN_NONE;
}
PyObject* atomic_notify_one(PyObject* self, PyObject*) {
  shmkit::futex_wake(futex_of(as_atomic(self)), 1);
  Py_RETURN_NONE;
}
PyObject* atomic_notify_all(PyObject* self, PyObject*) {
  shmkit::futex_wake_all(futex_of(as_atomic(self)));
  Py_RETURN_NONE;
}
PyObject* atomic_typecode(PyObject* self, void*) {
  const char c = as_atomic(self)->code;
  return PyUnicode_FromStringAndSize(&c, 1);
}

#define fastcall(f) fastcall(f)

PyMethodDef atomic_methods[] = {
    {"load", atomic_load, METH_NOARGS, "load($self, /)\n--\n\nThe value (seq_cst)."},
    {"store", fastcall(atomic_store), METH_FASTCALL, "store($self, value, /)\n--\n\nStores value (seq_cst)."},
    {"exchange", fastcall(atomic_exchange), METH_FASTCALL,
     "exchange($self, value, /)\n--\n\nStores value; the old value."},
    {"fetch_add", fastcall(atomic_fetch<Op::add>), METH_FASTCALL,
     "fetch_add($self, delta, /)\n--\n\nAdds delta (wrapping around as C does); the old value."},
    {"fetch_sub", fastcall(atomic_fetch<Op::sub>), METH_FASTCALL,
     "fetch_sub($self, delta, /)\n--\n\nSubtracts delta; the old value."},
    {"fetch_and", fastcall(atomic_fetch<Op::and_>), METH_FASTCALL,
     "fetch_and($self, mask, /)\n--\n\nANDs mask in; the old value."},
    {"fetch_or", fastcall(atomic_fetch<Op::or_>), METH_FASTCALL,
     "fetch_or($self, mask, /)\n--\n\nORs mask in; the old value."},
    {"fetch_xor", fastcall(atomic_fetch<Op::xor_>), METH_FASTCALL,
     "fetch_xor($self, mask, /)\n--\n\nXORs mask in; the old value."},
    {"compare_exchange", fastcall(atomic_cas), METH_FASTCALL,
     "compare_exchange($self, expected, desired, /)\n--\n\n(success, value found)."},
    {"wait", fastcall(atomic_wait), METH_FASTCALL | METH_KEYWORDS,
     "wait($self, old, /, timeout=None)\n--\n\nBlocks while the value equals old (GIL released, Ctrl-C "
     "interrupts); False on timeout."},
    {"notify", fastcall(atomic_notify), METH_FASTCALL,
     "notify($self, n=None, /)\n--\n\nWakes n waiters (None: all)."},
    {"notify_one", atomic_notify_one, METH_NOARGS, "notify_one($self, /)\n--\n\nWakes one waiter."},
    {"notify_all", atomic_notify_all, METH_NOARGS, "notify_all($self, /)\n--\n\nWakes every waiter."},
    {"_over", fastcall(bound_over), METH_FASTCALL | METH_CLASS,
     "_over($type, buffer, offset, typecode, /)\n--\n\nAn atomic view of the integer at `offset`."},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef atomic_getset[] = {
    {"_address", bound_address, nullptr, nullptr, nullptr},
    {"_buffer", bound_buffer, nullptr, nullptr, nullptr},
    {"typecode", atomic_typecode, nullptr, "The integer's typecode ('l'/'L' read as 'q'/'Q').", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};
}  // namespace

bool add_atomic_ref_type(PyObject* m) {
  PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(atomic_new)},
      {Py_tp_dealloc, reinterpret_cast<void*>(bound_dealloc)},
      {Py_tp_methods, atomic_methods},
      {Py_tp_getset, atomic_getset},
      {Py_tp_members, bound_members},
      {Py_tp_doc, const_cast<char*>(
                      "AtomicRef(buffer, offset, typecode)\n--\n\n"
                      "Atomic operations on the integer at `offset` (Boost.Atomic ipc_atomic_ref semantics, "
                      "seq_cst), with wait/notify across processes.")},
      {0, nullptr},
  };
  PyType_Spec spec = {"shmkit._sync.AtomicRef", sizeof(AtomicObj), 0,
                      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots};
  return add_type(m, spec, "AtomicRef") != nullptr;
}

}  // namespace shmkit::python::sync
