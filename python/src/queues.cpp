// python/src/queues.cpp — the extension module shmkit._queues: shmkit's
// SpscQueue<T> and MpmcQueue<T> (shmkit/lockfree/*.hpp) for Python, with the
// element type chosen at run time (a struct format, a numpy dtype, or a
// bounded bytes item), on the CPython C API (METH_FASTCALL for put/get).
//
// Contract
//   * The C++ queues are templates over T. The byte layout of a ring depends
//     only on sizeof(T) (and, for MpmcQueue, on alignof(T) <= 8), so this
//     module instantiates them over Blob<N> (N opaque bytes) for a fixed set
//     of sizes (kSizes: 1-16, 24-256 by 8, 320-1024 by 64, 2048, 4096) and
//     picks the one for the element size at run time. The block's type
//     fingerprint is not Blob's but the one the Python caller gives (its
//     typecode, or the hash of its type name), built with the same rule as
//     TypeFingerprint::of<T>() (typed_block.hpp); so a C++ SpscQueue<double>
//     and a Python SpscQueue('d') attach to each other, and so do a C++
//     SpscQueue<Quote> with TypeName<Quote> = "Quote/v1" and a Python queue
//     with that type name and a format of the same size and alignment.
//   * create() writes the header and the control block exactly as the C++
//     create() does (ring_spec: count = capacity, prefix = the Control
//     struct, param[0] = slot size, MpmcQueue's param[1] = kMpmcLayout and
//     slot sequence numbers), then adopts the block with from_block(), which
//     runs the C++ attach checks. attach() validates the header's kind and
//     fingerprint (attach_typed_block) and then the ring's own fields.
//   * put/get take the fast path (one try_push/try_pop) with the GIL held;
//     a call that must wait releases the GIL and waits in slices of kSlice
//     (the C++ blocking calls spin, then sleep on the queue's futex), checking
//     for signals (Ctrl-C) between slices. A timeout raises queue.Full /
//     queue.Empty, as the queue module does.
//   * Re-entrancy: a method converts every argument (which may run Python
//     code: __index__, __float__, __bool__, iteration, struct packing, or a
//     thread switch) before it checks that the object is open, and touches
//     the queue only after that check. A call that waits without the GIL
//     counts itself in `waiting`; close() raises RuntimeError meanwhile
//     (and BufferError while a BatchView is out). A BroadcastReader refuses
//     a second thread's read() while one waits (one cursor). So a close()
//     from any Python code or thread is a ValueError in the call, never a
//     use of a freed queue.
//   * Sizes: a scalar typecode's size must equal the item size, and a bytes
//     item's maxbytes must leave 4 bytes of length (checked without
//     overflow, sys.maxsize included); batches are bounded at 1 GiB.
//   * Items: mode 's' a single typecode (int/float/bool/bytes of 1),
//     't' a struct format (tuples, packed/unpacked with struct.Struct),
//     'y' bounded bytes (a uint32 length, then up to maxbytes bytes), 'r'
//     raw items (any buffer of exactly the item size; numpy dtypes).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "common.hpp"
#include "shmkit/lockfree/broadcast_ring.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/lockfree/seqlock.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/typed_block.hpp"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
// The object structs extend CodecHead (single inheritance, no virtuals):
// offsetof of their weakref slot is what GCC computes for any such struct.
#pragma GCC diagnostic ignored "-Winvalid-offsetof"

namespace {

using shmkit::python::Clock;
using shmkit::python::deadline_for;
using shmkit::python::kSlice;
using shmkit::python::wait_sliced;

PyObject* g_full = nullptr;   // queue.Full
PyObject* g_empty = nullptr;  // queue.Empty

// The C++ -> Python exception mapping every module shares (common.hpp).
using shmkit::python::translate_exception;

template <std::size_t N>
struct Blob {
  unsigned char bytes[N];
};

// What the Python type needs of one queue instantiation.
struct Ops {
  std::size_t item_size;
  void* (*create)(bool mpmc, std::string_view name, std::uint64_t capacity, const shmkit::TypeFingerprint& f,
                  bool track);
  void* (*attach)(bool mpmc, std::string_view name, const shmkit::TypeFingerprint& f);
  void (*destroy)(bool mpmc, void* q);
  std::size_t (*try_push)(bool mpmc, void* q, const void* items, std::size_t n);
  std::size_t (*try_pop)(bool mpmc, void* q, void* out, std::size_t n);
  bool (*push_until)(bool mpmc, void* q, const void* item, Clock::time_point deadline);
  bool (*pop_until)(bool mpmc, void* q, void* out, Clock::time_point deadline);
  std::uint64_t (*size)(bool mpmc, void* q);
  std::uint64_t (*capacity)(bool mpmc, void* q);
  const std::string& (*name)(bool mpmc, void* q);
  void (*unlink)(bool mpmc, void* q);
  // SpscQueue only: the zero-copy consumer.
  const void* (*peek)(void* q, std::size_t max, std::size_t* n);
  void (*consume)(void* q, std::size_t n);
};

template <std::size_t N>
struct Impl {
  using T = Blob<N>;
  using Spsc = shmkit::SpscQueue<T>;
  using Mpmc = shmkit::MpmcQueue<T>;
  using MSlot = shmkit::MpmcSlot<T>;

  static shmkit::BlockSpec spec(bool mpmc, std::string_view name, std::uint64_t capacity,
                                const shmkit::TypeFingerprint& f) {
    if (!mpmc) {
      shmkit::BlockSpec s = Spsc::region_spec(capacity, name);  // checks the capacity
      s.type = f;
      return s;
    }
    const std::uint64_t slot = sizeof(MSlot);
    if (capacity < 2 || (capacity & (capacity - 1)) != 0 || capacity > (std::uint64_t{1} << 40) / slot) {
      throw std::invalid_argument("shmkit: cannot create block \"" + std::string(name) + "\": capacity " +
                                  std::to_string(capacity) +
                                  " is not a power of two in [2, 2^40 / slot size] (MpmcQueue)");
    }
    shmkit::BlockSpec s;
    s.kind = shmkit::BlockKind::mpmc_queue;
    s.type = f;
    s.count = capacity;
    s.prefix_size = sizeof(shmkit::MpmcControl);
    s.payload_size = capacity * slot;
    s.param[0] = slot;
    s.param[1] = shmkit::kMpmcLayout;
    return s;
  }

  static void* create(bool mpmc, std::string_view name, std::uint64_t capacity, const shmkit::TypeFingerprint& f,
                      bool track) {
    shmkit::SharedMemory::Options options;
    options.track = track;
    const shmkit::BlockSpec s = spec(mpmc, name, capacity, f);
    if (mpmc) {
      shmkit::TypedBlock b = shmkit::create_typed_block(
          name, s,
          [capacity](std::span<std::byte> prefix, std::span<std::byte> payload) {
            new (prefix.data()) shmkit::MpmcControl();
            auto* slots = reinterpret_cast<MSlot*>(payload.data());
            for (std::uint64_t i = 0; i < capacity; ++i) {
              // relaxed: published by create_typed_block's release of kReady.
              slots[i].seq.store(i, std::memory_order_relaxed);
            }
          },
          options);
      return new Mpmc(Mpmc::from_block(std::move(b)));
    }
    shmkit::TypedBlock b = shmkit::create_typed_block(name, s, Spsc::init_region, options);
    return new Spsc(Spsc::from_block(std::move(b)));
  }

  static void* attach(bool mpmc, std::string_view name, const shmkit::TypeFingerprint& f) {
    shmkit::TypedBlock b = shmkit::attach_typed_block(
        name, mpmc ? shmkit::BlockKind::mpmc_queue : shmkit::BlockKind::spsc_queue, f);
    if (mpmc) return new Mpmc(Mpmc::from_block(std::move(b)));
    return new Spsc(Spsc::from_block(std::move(b)));
  }

  static void destroy(bool mpmc, void* q) {
    if (mpmc) delete static_cast<Mpmc*>(q);
    else delete static_cast<Spsc*>(q);
  }
  static std::size_t try_push(bool mpmc, void* q, const void* items, std::size_t n) {
    const T* p = static_cast<const T*>(items);
    if (n == 1) {
      return mpmc ? static_cast<Mpmc*>(q)->try_push(*p) : static_cast<Spsc*>(q)->try_push(*p);
    }
    std::span<const T> s(p, n);
    return mpmc ? static_cast<Mpmc*>(q)->try_push(s) : static_cast<Spsc*>(q)->try_push(s);
  }
  static std::size_t try_pop(bool mpmc, void* q, void* out, std::size_t n) {
    T* p = static_cast<T*>(out);
    if (n == 1) return mpmc ? static_cast<Mpmc*>(q)->try_pop(*p) : static_cast<Spsc*>(q)->try_pop(*p);
    std::span<T> s(p, n);
    return mpmc ? static_cast<Mpmc*>(q)->try_pop(s) : static_cast<Spsc*>(q)->try_pop(s);
  }
  static bool push_until(bool mpmc, void* q, const void* item, Clock::time_point d) {
    const T& v = *static_cast<const T*>(item);
    return mpmc ? static_cast<Mpmc*>(q)->push_until(v, d) : static_cast<Spsc*>(q)->push_until(v, d);
  }
  static bool pop_until(bool mpmc, void* q, void* out, Clock::time_point d) {
    T& v = *static_cast<T*>(out);
    return mpmc ? static_cast<Mpmc*>(q)->pop_until(v, d) : static_cast<Spsc*>(q)->pop_until(v, d);
  }
  static std::uint64_t size(bool mpmc, void* q) {
    if (mpmc) {
      auto* m = static_cast<Mpmc*>(q);
      return m->size();
    }
    return static_cast<Spsc*>(q)->size();
  }
  static std::uint64_t capacity(bool mpmc, void* q) {
    return mpmc ? static_cast<Mpmc*>(q)->capacity() : static_cast<Spsc*>(q)->capacity();
  }
  static const std::string& name(bool mpmc, void* q) {
    return mpmc ? static_cast<Mpmc*>(q)->name() : static_cast<Spsc*>(q)->name();
  }
  static void unlink(bool mpmc, void* q) {
    if (mpmc) static_cast<Mpmc*>(q)->unlink();
    else static_cast<Spsc*>(q)->unlink();
  }

  static const void* peek(void* q, std::size_t max, std::size_t* n) {
    const std::span<const T> s = static_cast<Spsc*>(q)->peek(max);
    *n = s.size();
    return s.data();
  }
  static void consume(void* q, std::size_t n) { static_cast<Spsc*>(q)->consume(n); }

  static constexpr Ops ops{N, create, attach, destroy, try_push, try_pop, push_until, pop_until, size, capacity,
                           name, unlink, peek, consume};
};

// The element sizes instantiated.
template <std::size_t... I>
constexpr auto make_table(std::index_sequence<I...>) {
  return std::array<const Ops*, sizeof...(I)>{&Impl<(I < 16 ? I + 1 : I < 46 ? 16 + 8 * (I - 15)
                                                     : I < 58 ? 256 + 64 * (I - 45)
                                                     : I == 58 ? 2048 : 4096)>::ops...};
}
constexpr auto kTable = make_table(std::make_index_sequence<60>());

const Ops* find_ops(std::size_t n) {
  for (const Ops* o : kTable) {
    if (o->item_size == n) return o;
  }
  return nullptr;
}

PyObject* supported_sizes() {
  PyObject* l = PyList_New(0);
  if (l == nullptr) return nullptr;
  for (const Ops* o : kTable) {
    PyObject* v = PyLong_FromSize_t(o->item_size);
    if (v == nullptr || PyList_Append(l, v) < 0) {
      Py_XDECREF(v);
      Py_DECREF(l);
      return nullptr;
    }
    Py_DECREF(v);
  }
  return l;
}

// ------------------------------------------------------------ the type

// How an object converts Python items to bytes and back: the head of every
// object type of this module.
struct CodecHead {
  PyObject_HEAD
  char mode;  // 's' scalar, 't' tuple (struct), 'y' bounded bytes, 'r' raw
  char code;  // mode 's': the typecode
  Py_ssize_t item;
  Py_ssize_t maxbytes;  // mode 'y'
  PyObject* st;         // mode 't': a struct.Struct
};

struct QueueObj : CodecHead {
  const Ops* ops;
  void* q;
  bool mpmc;
  PyObject* weakrefs;
  PyObject* view;  // the outstanding BatchView (borrowed), or nullptr
  Py_ssize_t waiting;  // calls waiting without the GIL: close() must not free the queue under them
};

QueueObj* as_q(PyObject* o) { return reinterpret_cast<QueueObj*>(o); }

bool check_open(QueueObj* self) {
  if (self->q == nullptr) {
    PyErr_SetString(PyExc_ValueError, "operation on a closed queue");
    return false;
  }
  return true;
}

// A consumer call while a BatchView is outstanding would pop its items.
bool check_no_view(QueueObj* self) {
  if (self->view != nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "release() the outstanding BatchView of this queue first");
    return false;
  }
  return true;
}

// The bytes of one mode-'s' item of typecode `c` (0: not a scalar typecode).
Py_ssize_t scalar_size(char c) {
  switch (c) {
    case 'b': case 'B': case '?': case 'c': return 1;
    case 'h': case 'H': return 2;
    case 'i': case 'I': case 'f': return 4;
    case 'q': case 'Q': case 'd': return 8;
    default: return 0;
  }
}

// Packs `obj` into one item at `dst` (item bytes). 0 or -1 with an exception.
int pack_item(CodecHead* self, PyObject* obj, unsigned char* dst) {
  switch (self->mode) {
    case 's': {
      switch (self->code) {
        case 'd': case 'f': {
          const double v = PyFloat_AsDouble(obj);
          if (v == -1.0 && PyErr_Occurred()) return -1;
          if (self->code == 'd') std::memcpy(dst, &v, 8);
          else {
            const float f = static_cast<float>(v);
            std::memcpy(dst, &f, 4);
          }
          return 0;
        }
        case '?': {
          const int t = PyObject_IsTrue(obj);
          if (t < 0) return -1;
          dst[0] = static_cast<unsigned char>(t);
          return 0;
        }
        case 'c': {
          if (!PyBytes_Check(obj) || PyBytes_GET_SIZE(obj) != 1) {
            PyErr_SetString(PyExc_TypeError, "a 'c' queue takes bytes of length 1");
            return -1;
          }
          dst[0] = static_cast<unsigned char>(PyBytes_AS_STRING(obj)[0]);
          return 0;
        }
        case 'Q': case 'I': case 'H': case 'B': {
          if (!PyLong_Check(obj)) {
            PyErr_Format(PyExc_TypeError, "an integer is required, not %s", Py_TYPE(obj)->tp_name);
            return -1;
          }
          const unsigned long long v = PyLong_AsUnsignedLongLong(obj);
          if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return -1;
          if (self->item < 8 && v >> (8 * self->item) != 0) {
            PyErr_SetString(PyExc_OverflowError, "value out of range for the queue's item type");
            return -1;
          }
          std::memcpy(dst, &v, static_cast<std::size_t>(self->item));  // little-endian
          return 0;
        }
        default: {  // q i h b
          if (!PyLong_Check(obj)) {
            PyErr_Format(PyExc_TypeError, "an integer is required, not %s", Py_TYPE(obj)->tp_name);
            return -1;
          }
          const long long v = PyLong_AsLongLong(obj);
          if (v == -1 && PyErr_Occurred()) return -1;
          if (self->item < 8) {
            const long long lim = 1LL << (8 * self->item - 1);
            if (v < -lim || v >= lim) {
              PyErr_SetString(PyExc_OverflowError, "value out of range for the queue's item type");
              return -1;
            }
          }
          std::memcpy(dst, &v, static_cast<std::size_t>(self->item));  // little-endian
          return 0;
        }
      }
    }
    case 'y': {
      Py_buffer b;
      if (PyObject_GetBuffer(obj, &b, PyBUF_SIMPLE) < 0) return -1;
      if (b.len > self->maxbytes) {
        PyErr_Format(PyExc_ValueError, "item of %zd bytes is longer than the queue's maxbytes (%zd)", b.len,
                     self->maxbytes);
        PyBuffer_Release(&b);
        return -1;
      }
      const std::uint32_t n = static_cast<std::uint32_t>(b.len);
      std::memcpy(dst, &n, 4);
      std::memcpy(dst + 4, b.buf, static_cast<std::size_t>(b.len));
      PyBuffer_Release(&b);
      return 0;
    }
    case 't': {
      PyObject* packed;
      if (PyTuple_Check(obj)) {
        PyObject* pack = PyObject_GetAttrString(self->st, "pack");
        if (pack == nullptr) return -1;
        packed = PyObject_Call(pack, obj, nullptr);
        Py_DECREF(pack);
      } else {
        packed = Py_NewRef(obj);  // bytes-like of the item's size
      }
      if (packed == nullptr) return -1;
      Py_buffer b;
      const int r = PyObject_GetBuffer(packed, &b, PyBUF_SIMPLE);
      Py_DECREF(packed);
      if (r < 0) return -1;
      if (b.len != self->item) {
        PyErr_Format(PyExc_ValueError, "item of %zd bytes, the queue's items have %zd", b.len, self->item);
        PyBuffer_Release(&b);
        return -1;
      }
      std::memcpy(dst, b.buf, static_cast<std::size_t>(b.len));
      PyBuffer_Release(&b);
      return 0;
    }
    default: {  // 'r'
      Py_buffer b;
      if (PyObject_GetBuffer(obj, &b, PyBUF_SIMPLE) < 0) return -1;
      if (b.len != self->item) {
        PyErr_Format(PyExc_ValueError, "item of %zd bytes, the queue's items have %zd", b.len, self->item);
        PyBuffer_Release(&b);
        return -1;
      }
      std::memcpy(dst, b.buf, static_cast<std::size_t>(b.len));
      PyBuffer_Release(&b);
      return 0;
    }
  }
}

PyObject* unpack_item(CodecHead* self, const unsigned char* src) {
  switch (self->mode) {
    case 's':
      switch (self->code) {
        case 'd': { double v; std::memcpy(&v, src, 8); return PyFloat_FromDouble(v); }
        case 'f': { float v; std::memcpy(&v, src, 4); return PyFloat_FromDouble(v); }
        case '?': return PyBool_FromLong(src[0] != 0);
        case 'c': return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(src), 1);
        case 'q': { long long v; std::memcpy(&v, src, 8); return PyLong_FromLongLong(v); }
        case 'Q': { unsigned long long v; std::memcpy(&v, src, 8); return PyLong_FromUnsignedLongLong(v); }
        case 'i': { std::int32_t v; std::memcpy(&v, src, 4); return PyLong_FromLong(v); }
        case 'I': { std::uint32_t v; std::memcpy(&v, src, 4); return PyLong_FromUnsignedLong(v); }
        case 'h': { std::int16_t v; std::memcpy(&v, src, 2); return PyLong_FromLong(v); }
        case 'H': { std::uint16_t v; std::memcpy(&v, src, 2); return PyLong_FromLong(v); }
        case 'b': return PyLong_FromLong(static_cast<signed char>(src[0]));
        default: return PyLong_FromLong(src[0]);
      }
    case 'y': {
      std::uint32_t n;
      std::memcpy(&n, src, 4);
      // The length comes from shared memory: never read past the item.
      if (n > static_cast<std::uint64_t>(self->item - 4)) {
        PyErr_Format(PyExc_ValueError, "corrupt item: length %u > the slot's %zd bytes", n, self->item - 4);
        return nullptr;
      }
      return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(src + 4), n);
    }
    case 't': {
      // A copy, not a memoryview of `src`: the caller's struct object is
      // Python code that could keep what it is given, and `src` is often a
      // stack buffer.
      PyObject* b = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(src), self->item);
      if (b == nullptr) return nullptr;
      PyObject* r = PyObject_CallMethod(self->st, "unpack", "O", b);
      Py_DECREF(b);
      return r;
    }
    default:
      return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(src), self->item);
  }
}

int parse_block_timeout(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, Py_ssize_t first,
                        const char* fname, bool* block, double* timeout) {
  PyObject* b = nargs > first ? args[first] : nullptr;
  PyObject* t = nargs > first + 1 ? args[first + 1] : nullptr;
  if (nargs > first + 2) {
    PyErr_Format(PyExc_TypeError, "%s(): too many arguments", fname);
    return -1;
  }
  if (kwnames != nullptr) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
      PyObject* key = PyTuple_GET_ITEM(kwnames, i);
      if (PyUnicode_CompareWithASCIIString(key, "block") == 0 && b == nullptr) b = args[nargs + i];
      else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0 && t == nullptr) t = args[nargs + i];
      else {
        PyErr_Format(PyExc_TypeError, "%s(): unexpected or repeated keyword argument '%U'", fname, key);
        return -1;
      }
    }
  }
  *block = true;
  if (b != nullptr) {
    const int r = PyObject_IsTrue(b);
    if (r < 0) return -1;
    *block = r != 0;
  }
  *timeout = -1.0;
  if (t != nullptr && t != Py_None) {
    const double d = PyFloat_AsDouble(t);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    if (d < 0 || std::isnan(d)) {
      PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
      return -1;
    }
    *timeout = d;
  }
  return 0;
}


// Counts a call that waits without the GIL (changed with the GIL held).
struct Waiting {
  Py_ssize_t& n;
  explicit Waiting(Py_ssize_t& count) : n(count) { ++n; }
  ~Waiting() { --n; }
  Waiting(const Waiting&) = delete;
  Waiting& operator=(const Waiting&) = delete;
};


// put(item, block=True, timeout=None)
PyObject* q_put(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  QueueObj* self = as_q(o);
  if (nargs < 1) {
    PyErr_SetString(PyExc_TypeError, "put(item, block=True, timeout=None)");
    return nullptr;
  }
  // On the stack (items are at most 4096 bytes): another thread may use
  // this handle while we wait without the GIL.
  alignas(16) unsigned char buf[4096];
  if (self->mode == 'y') std::memset(buf, 0, static_cast<std::size_t>(self->item));
  // Every conversion first (each may run Python code that closes the
  // queue), then the state check, then the queue.
  if (pack_item(self, args[0], buf) < 0) return nullptr;
  bool block = true;
  double timeout = -1.0;
  if ((nargs > 1 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 1, "put", &block, &timeout) < 0) {
    return nullptr;
  }
  if (!check_open(self)) return nullptr;
  if (self->ops->try_push(self->mpmc, self->q, buf, 1) == 1) [[likely]] Py_RETURN_NONE;
  if (!block) {
    PyErr_SetNone(g_full);
    return nullptr;
  }
  const Ops* ops = self->ops;
  const bool mpmc = self->mpmc;
  void* q = self->q;
  Waiting guard(self->waiting);
  const int r = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) { return ops->push_until(mpmc, q, buf, end); });
  if (r < 0) return nullptr;
  if (r == 0) {
    PyErr_SetNone(g_full);
    return nullptr;
  }
  Py_RETURN_NONE;
}

// get(block=True, timeout=None)
PyObject* q_get(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  QueueObj* self = as_q(o);
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 0, "get", &block, &timeout) < 0) {
    return nullptr;
  }
  if (!check_open(self)) return nullptr;
  if (!check_no_view(self)) [[unlikely]] return nullptr;
  // On the stack (items are at most 4096 bytes): another thread may use
  // this handle while we wait without the GIL.
  alignas(16) unsigned char buf[4096];
  if (self->ops->try_pop(self->mpmc, self->q, buf, 1) == 1) [[likely]] return unpack_item(self, buf);
  if (!block) {
    PyErr_SetNone(g_empty);
    return nullptr;
  }
  const Ops* ops = self->ops;
  const bool mpmc = self->mpmc;
  void* q = self->q;
  Waiting guard(self->waiting);
  const int r = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) { return ops->pop_until(mpmc, q, buf, end); });
  if (r < 0) return nullptr;
  if (r == 0) {
    PyErr_SetNone(g_empty);
    return nullptr;
  }
  return unpack_item(self, buf);
}

// put_many(items, timeout=None) -> None: every item, in order, blocking
// while full. `items` is a buffer of k whole items (bytes, a numpy array)
// or an iterable of items. On timeout raises queue.Full; the items before
// the one that did not fit were put (their count is in the exception's
// `count` attribute).
PyObject* q_put_many(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  QueueObj* self = as_q(o);
  if (nargs < 1 || nargs > 2 || (kwnames != nullptr && (nargs != 1 || PyTuple_GET_SIZE(kwnames) != 1 ||
                                                         PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout") != 0))) {
    PyErr_SetString(PyExc_TypeError, "put_many(items, timeout=None)");
    return nullptr;
  }
  PyObject* t = nargs == 2 ? args[1] : (kwnames != nullptr ? args[1] : nullptr);
  double timeout = -1.0;
  if (t != nullptr && t != Py_None) {
    timeout = PyFloat_AsDouble(t);
    if (timeout == -1.0 && PyErr_Occurred()) return nullptr;
    if (timeout < 0) timeout = 0;
  }
  // Pack into one contiguous run of items.
  Py_buffer b{};
  PyObject* bytes = nullptr;
  const unsigned char* data;
  std::size_t n;
  if ((self->mode == 'r' || self->mode == 't') && PyObject_CheckBuffer(args[0])) {
    if (PyObject_GetBuffer(args[0], &b, PyBUF_C_CONTIGUOUS) < 0) return nullptr;
    if (b.len % self->item != 0 || b.len / self->item > (Py_ssize_t{1} << 30) / self->item) {
      PyErr_Format(PyExc_ValueError, "a buffer of %zd bytes is not a whole number of %zd-byte items", b.len,
                   self->item);
      PyBuffer_Release(&b);
      return nullptr;
    }
    data = static_cast<const unsigned char*>(b.buf);
    n = static_cast<std::size_t>(b.len / self->item);
  } else {
    PyObject* seq = PySequence_Fast(args[0], "put_many(items): items must be iterable or a buffer");
    if (seq == nullptr) return nullptr;
    const Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    if (k > (Py_ssize_t{1} << 30) / self->item) {
      PyErr_SetString(PyExc_ValueError, "put_many(items): more than 1 GiB of items");
      Py_DECREF(seq);
      return nullptr;
    }
    bytes = PyBytes_FromStringAndSize(nullptr, k * self->item);
    if (bytes == nullptr) {
      Py_DECREF(seq);
      return nullptr;
    }
    auto* dst = reinterpret_cast<unsigned char*>(PyBytes_AS_STRING(bytes));
    std::memset(dst, 0, static_cast<std::size_t>(k * self->item));
    for (Py_ssize_t i = 0; i < k; ++i) {
      if (pack_item(self, PySequence_Fast_GET_ITEM(seq, i), dst + i * self->item) < 0) {
        Py_DECREF(seq);
        Py_DECREF(bytes);
        return nullptr;
      }
    }
    Py_DECREF(seq);
    data = dst;
    n = static_cast<std::size_t>(k);
  }
  // Converting the items ran Python code (which may have closed the queue).
  if (!check_open(self)) {
    if (b.obj != nullptr) PyBuffer_Release(&b);
    Py_XDECREF(bytes);
    return nullptr;
  }
  std::size_t done = n == 0 ? 0 : self->ops->try_push(self->mpmc, self->q, data, n);
  int r = 1;
  if (done < n) {
    const Ops* ops = self->ops;
    const bool mpmc = self->mpmc;
    void* q = self->q;
    const std::size_t item = static_cast<std::size_t>(self->item);
    Waiting guard(self->waiting);
    r = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) {
      while (done < n) {
        if (!ops->push_until(mpmc, q, data + done * item, end)) return false;
        ++done;
        done += ops->try_push(mpmc, q, data + done * item, n - done);
      }
      return true;
    });
  }
  if (b.obj != nullptr) PyBuffer_Release(&b);
  Py_XDECREF(bytes);
  if (r < 0) return nullptr;
  if (r == 0) {
    PyObject* exc = PyObject_CallNoArgs(g_full);
    if (exc != nullptr) {
      PyObject* c = PyLong_FromSize_t(done);
      if (c != nullptr) {
        PyObject_SetAttrString(exc, "count", c);
        Py_DECREF(c);
      }
      PyErr_SetObject(g_full, exc);
      Py_DECREF(exc);
    }
    return nullptr;
  }
  Py_RETURN_NONE;
}

// Pops up to `max` items into a new bytes object: blocks (up to the timeout)
// for the first, then takes what is there. Empty on timeout / non-blocking.
PyObject* pop_batch(QueueObj* self, Py_ssize_t max, bool block, double timeout, Py_ssize_t* got) {
  // No pop returns more than the ring holds: get_many(10**8) on a small
  // queue must not allocate for 10**8 items.
  const std::uint64_t cap = self->ops->capacity(self->mpmc, self->q);
  if (static_cast<std::uint64_t>(max) > cap) max = static_cast<Py_ssize_t>(cap);
  PyObject* out = PyBytes_FromStringAndSize(nullptr, max * self->item);
  if (out == nullptr) return nullptr;
  auto* dst = reinterpret_cast<unsigned char*>(PyBytes_AS_STRING(out));
  std::size_t n = max == 0 ? 0 : self->ops->try_pop(self->mpmc, self->q, dst, static_cast<std::size_t>(max));
  if (n == 0 && max > 0 && block) {
    const Ops* ops = self->ops;
    const bool mpmc = self->mpmc;
    void* q = self->q;
    Waiting guard(self->waiting);
    const int r = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) { return ops->pop_until(mpmc, q, dst, end); });
    if (r < 0) {
      Py_DECREF(out);
      return nullptr;
    }
    if (r == 1) n = 1 + self->ops->try_pop(self->mpmc, self->q, dst + self->item, static_cast<std::size_t>(max - 1));
  }
  *got = static_cast<Py_ssize_t>(n);
  if (static_cast<Py_ssize_t>(n) != max && _PyBytes_Resize(&out, static_cast<Py_ssize_t>(n) * self->item) < 0) {
    return nullptr;
  }
  return out;
}

// get_many(max, block=True, timeout=None) -> list: waits for one item (up
// to the timeout), then takes up to `max` that are there. [] on timeout.
PyObject* q_get_many(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  QueueObj* self = as_q(o);
  if (nargs < 1) {
    PyErr_SetString(PyExc_TypeError, "get_many(max, block=True, timeout=None)");
    return nullptr;
  }
  const Py_ssize_t max = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
  if (max == -1 && PyErr_Occurred()) return nullptr;
  if (max < 0 || max > (Py_ssize_t{1} << 30) / self->item) {
    PyErr_SetString(PyExc_ValueError, "get_many(max): max must be >= 0 and fit 1 GiB of items");
    return nullptr;
  }
  bool block;
  double timeout;
  if (parse_block_timeout(args, nargs, kwnames, 1, "get_many", &block, &timeout) < 0) return nullptr;
  if (!check_open(self) || !check_no_view(self)) return nullptr;
  Py_ssize_t got = 0;
  PyObject* raw = pop_batch(self, max, block, timeout, &got);
  if (raw == nullptr) return nullptr;
  PyObject* list = PyList_New(got);
  if (list == nullptr) {
    Py_DECREF(raw);
    return nullptr;
  }
  const auto* src = reinterpret_cast<const unsigned char*>(PyBytes_AS_STRING(raw));
  for (Py_ssize_t i = 0; i < got; ++i) {
    PyObject* v = unpack_item(self, src + i * self->item);
    if (v == nullptr) {
      Py_DECREF(raw);
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SET_ITEM(list, i, v);
  }
  Py_DECREF(raw);
  return list;
}

// get_many_bytes(max, block=True, timeout=None) -> bytes of k whole items
// (numpy: np.frombuffer(result, dtype), no further copy).
PyObject* q_get_many_bytes(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  QueueObj* self = as_q(o);
  if (nargs < 1) {
    PyErr_SetString(PyExc_TypeError, "get_many_bytes(max, block=True, timeout=None)");
    return nullptr;
  }
  const Py_ssize_t max = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
  if (max == -1 && PyErr_Occurred()) return nullptr;
  if (max < 0 || max > (Py_ssize_t{1} << 30) / self->item) {
    PyErr_SetString(PyExc_ValueError, "get_many_bytes(max): max must be >= 0 and fit 1 GiB of items");
    return nullptr;
  }
  bool block;
  double timeout;
  if (parse_block_timeout(args, nargs, kwnames, 1, "get_many_bytes", &block, &timeout) < 0) return nullptr;
  if (!check_open(self) || !check_no_view(self)) return nullptr;
  Py_ssize_t got = 0;
  return pop_batch(self, max, block, timeout, &got);
}

PyObject* q_qsize(PyObject* o, PyObject*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  return PyLong_FromUnsignedLongLong(self->ops->size(self->mpmc, self->q));
}
PyObject* q_empty(PyObject* o, PyObject*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  return PyBool_FromLong(self->ops->size(self->mpmc, self->q) == 0);
}
PyObject* q_full(PyObject* o, PyObject*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  return PyBool_FromLong(self->ops->size(self->mpmc, self->q) >= self->ops->capacity(self->mpmc, self->q));
}
PyObject* q_unlink(PyObject* o, PyObject*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  try {
    self->ops->unlink(self->mpmc, self->q);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}
PyObject* q_close(PyObject* o, PyObject*) {
  QueueObj* self = as_q(o);
  if (self->view != nullptr) {
    PyErr_SetString(PyExc_BufferError, "cannot close a queue while a BatchView of it exists");
    return nullptr;
  }
  if (self->waiting > 0) {
    PyErr_SetString(PyExc_RuntimeError, "cannot close a queue while other threads wait on it");
    return nullptr;
  }
  if (self->q != nullptr) {
    self->ops->destroy(self->mpmc, self->q);
    self->q = nullptr;
  }
  Py_RETURN_NONE;
}
PyObject* q_get_name(PyObject* o, void*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  return PyUnicode_FromString(self->ops->name(self->mpmc, self->q).c_str());
}
PyObject* q_get_capacity(PyObject* o, void*) {
  QueueObj* self = as_q(o);
  if (!check_open(self)) return nullptr;
  return PyLong_FromUnsignedLongLong(self->ops->capacity(self->mpmc, self->q));
}
PyObject* q_get_itemsize(PyObject* o, void*) { return PyLong_FromSsize_t(as_q(o)->item); }
PyObject* q_get_closed(PyObject* o, void*) { return PyBool_FromLong(as_q(o)->q == nullptr); }
PyObject* q_get_waiting(PyObject* o, void*) { return PyLong_FromSsize_t(as_q(o)->waiting); }

void q_dealloc(PyObject* o) {
  QueueObj* self = as_q(o);
  if (self->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  if (self->q != nullptr) self->ops->destroy(self->mpmc, self->q);
  Py_XDECREF(self->st);
  Py_TYPE(o)->tp_free(o);
}

// _Queue(kind, name, create, capacity, item_size, item_align, typecode,
//        type_name, mode, maxbytes=0, struct=None, track=False)
PyObject* q_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"kind", "name", "create", "capacity", "item_size", "item_align", "typecode",
                                 "type_name", "mode", "maxbytes", "struct", "track", nullptr};
  const char* kind = nullptr;
  const char* name = nullptr;
  int create = 0, track = 0;
  unsigned long long capacity = 0;
  Py_ssize_t item = 0, align = 0, maxbytes = 0;
  const char* typecode = nullptr;
  const char* type_name = nullptr;
  const char* mode = nullptr;
  PyObject* st = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "szpKnnzzs|nOp", const_cast<char**>(kwlist), &kind, &name, &create,
                                   &capacity, &item, &align, &typecode, &type_name, &mode, &maxbytes, &st, &track)) {
    return nullptr;
  }
  const bool mpmc = std::strcmp(kind, "mpmc") == 0;
  if (!mpmc && std::strcmp(kind, "spsc") != 0) {
    PyErr_SetString(PyExc_ValueError, "kind must be 'spsc' or 'mpmc'");
    return nullptr;
  }
  if (std::strlen(mode) != 1 || std::strchr("styr", mode[0]) == nullptr) {
    PyErr_SetString(PyExc_ValueError, "mode must be one of s t y r");
    return nullptr;
  }
  const Ops* ops = item > 0 ? find_ops(static_cast<std::size_t>(item)) : nullptr;
  if (ops == nullptr) {
    PyErr_Format(PyExc_ValueError,
                 "shmkit queues hold items of 1-16 bytes, multiples of 8 up to 256, of 64 up to 1024, "
                 "2048 or 4096 bytes; not %zd (pad the format)",
                 item);
    return nullptr;
  }
  if (align <= 0 || align > 8 || (align & (align - 1)) != 0 || item % align != 0) {
    PyErr_Format(PyExc_ValueError, "item alignment %zd must be a power of two <= 8 dividing the item size %zd (pad a "
                 "struct format to C's sizeof with trailing x bytes, e.g. 'qi4x')",
                 align, item);
    return nullptr;
  }
  shmkit::TypeFingerprint f;
  f.typecode = (typecode != nullptr && typecode[0] != '\0') ? typecode[0] : 0;
  f.size = static_cast<std::uint32_t>(item);
  f.align = static_cast<std::uint32_t>(align);
  if (f.typecode == 0 && (type_name == nullptr || type_name[0] == '\0')) {
    PyErr_SetString(PyExc_ValueError, "a queue of structs needs a type name");
    return nullptr;
  }
  f.name_hash = f.typecode != 0 ? shmkit::fnv1a(std::string_view(&f.typecode, 1)) : shmkit::fnv1a(type_name);
  if (mode[0] == 't' && (st == nullptr || st == Py_None)) {
    PyErr_SetString(PyExc_ValueError, "mode 't' needs a struct.Struct");
    return nullptr;
  }
  if (mode[0] == 'y' && (maxbytes < 0 || item < 4 || maxbytes > item - 4)) {
    PyErr_SetString(PyExc_ValueError, "bytes items: maxbytes + 4 must fit the item");
    return nullptr;
  }
  if (mode[0] == 's' && (typecode == nullptr || scalar_size(typecode[0]) == 0)) {
    PyErr_SetString(PyExc_ValueError, "mode 's' needs a typecode among b B h H i I q Q f d ? c");
    return nullptr;
  }
  // pack_item writes the typecode's size: the item must be exactly that.
  if (mode[0] == 's' && scalar_size(typecode[0]) != item) {
    PyErr_Format(PyExc_ValueError, "typecode '%c' is %zd bytes, not the item size %zd", typecode[0],
                 scalar_size(typecode[0]), item);
    return nullptr;
  }
  void* q = nullptr;
  try {
    std::string n = name != nullptr ? name : "";
    PyThreadState* ts = PyEval_SaveThread();
    try {
      q = create ? ops->create(mpmc, n, capacity, f, track != 0) : ops->attach(mpmc, n, f);
    } catch (...) {
      PyEval_RestoreThread(ts);
      throw;
    }
    PyEval_RestoreThread(ts);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) {
    ops->destroy(mpmc, q);
    return nullptr;
  }
  QueueObj* self = as_q(o);
  self->ops = ops;
  self->q = q;
  self->mpmc = mpmc;
  self->mode = mode[0];
  self->code = (typecode != nullptr) ? typecode[0] : 0;
  self->item = item;
  self->maxbytes = maxbytes;
  self->st = (st != nullptr && st != Py_None) ? Py_NewRef(st) : nullptr;
  self->weakrefs = nullptr;
  return o;
}

// ------------------------------------------------------------ BatchView
// Items of an SpscQueue read in place (zero copy). A buffer exporter: numpy
// arrays and memoryviews over it count as exports, and release() (which
// hands the slots back to the producer) raises BufferError while any is
// alive, so no view can see a slot the producer reuses.

struct ViewObj {
  PyObject_HEAD
  PyObject* queue;  // strong; nullptr once released
  const void* data;
  std::size_t n;
  Py_ssize_t item;
  Py_ssize_t exports;
};

PyTypeObject ViewType{PyVarObject_HEAD_INIT(nullptr, 0)};
ViewObj* as_view(PyObject* o) { return reinterpret_cast<ViewObj*>(o); }

void view_finish(ViewObj* v) {
  if (v->queue == nullptr) return;
  QueueObj* q = as_q(v->queue);
  if (q->q != nullptr) q->ops->consume(q->q, v->n);
  q->view = nullptr;
  Py_CLEAR(v->queue);
  v->n = 0;
}

int view_getbuffer(PyObject* o, Py_buffer* b, int flags) {
  ViewObj* v = as_view(o);
  if (v->queue == nullptr) {
    PyErr_SetString(PyExc_ValueError, "the BatchView was released");
    b->obj = nullptr;
    return -1;
  }
  static char empty = 0;
  void* data = v->n != 0 ? const_cast<void*>(v->data) : &empty;
  const int r = PyBuffer_FillInfo(b, o, data, static_cast<Py_ssize_t>(v->n) * v->item, 1, flags);
  if (r == 0) ++v->exports;
  return r;
}
void view_releasebuffer(PyObject* o, Py_buffer*) { --as_view(o)->exports; }
PyBufferProcs view_as_buffer = {view_getbuffer, view_releasebuffer};

PyObject* view_release(PyObject* o, PyObject*) {
  ViewObj* v = as_view(o);
  if (v->exports > 0) {
    PyErr_Format(PyExc_BufferError, "cannot release a BatchView while %zd buffer(s) of it are exported "
                 "(delete the numpy arrays / memoryviews first)", v->exports);
    return nullptr;
  }
  view_finish(v);
  Py_RETURN_NONE;
}
PyObject* view_enter(PyObject* o, PyObject*) { return Py_NewRef(o); }
PyObject* view_exit(PyObject* o, PyObject* const*, Py_ssize_t) { return view_release(o, nullptr); }
Py_ssize_t view_len(PyObject* o) { return static_cast<Py_ssize_t>(as_view(o)->n); }
PyObject* view_itemsize(PyObject* o, void*) { return PyLong_FromSsize_t(as_view(o)->item); }
PyObject* view_exports(PyObject* o, void*) { return PyLong_FromSsize_t(as_view(o)->exports); }

void view_dealloc(PyObject* o) {
  // Dropped without release(): its items count as consumed. No export can
  // be alive here (each holds a reference to the view).
  view_finish(as_view(o));
  PyObject_Free(o);
}

PyMethodDef view_methods[] = {
    {"release", view_release, METH_NOARGS,
     "Hands the items back to the producer (BufferError while buffers of the view are exported)."},
    {"__enter__", view_enter, METH_NOARGS, nullptr},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(view_exit)), METH_FASTCALL, nullptr},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef view_getset[] = {
    {"itemsize", view_itemsize, nullptr, nullptr, nullptr},
    {"_exports", view_exports, nullptr, "Buffers of this view alive.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};
PySequenceMethods view_as_sequence = {view_len};

// get_view(max) -> BatchView of up to `max` items in place (SpscQueue only;
// never blocks: empty if nothing is there).
PyObject* q_get_view(PyObject* o, PyObject* arg) {
  QueueObj* self = as_q(o);
  if (self->mpmc) {
    PyErr_SetString(PyExc_TypeError, "zero-copy views are for SpscQueue (an MpmcQueue slot carries a sequence "
                    "number between items)");
    return nullptr;
  }
  const Py_ssize_t max = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
  if (max == -1 && PyErr_Occurred()) return nullptr;
  if (max < 0) {
    PyErr_SetString(PyExc_ValueError, "get_view(max): max must be >= 0");
    return nullptr;
  }
  // Allocated before the state check: an allocation may run the garbage
  // collector, and a finaliser may close this queue.
  ViewObj* v = PyObject_New(ViewObj, &ViewType);
  if (v == nullptr) return nullptr;
  v->queue = nullptr;
  v->n = 0;
  if (!check_open(self) || !check_no_view(self)) {
    Py_DECREF(v);
    return nullptr;
  }
  v->data = self->ops->peek(self->q, static_cast<std::size_t>(max), &v->n);
  v->item = self->item;
  v->exports = 0;
  v->queue = Py_NewRef(o);
  self->view = reinterpret_cast<PyObject*>(v);
  return reinterpret_cast<PyObject*>(v);
}

#define FASTCALL(f) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f))

PyMethodDef q_methods[] = {
    {"put", FASTCALL(q_put), METH_FASTCALL | METH_KEYWORDS,
     "put(item, block=True, timeout=None): queue.Full if it does not fit in time."},
    {"get", FASTCALL(q_get), METH_FASTCALL | METH_KEYWORDS,
     "get(block=True, timeout=None): queue.Empty if nothing comes in time."},
    {"put_many", FASTCALL(q_put_many), METH_FASTCALL | METH_KEYWORDS,
     "put_many(items, timeout=None): every item in order; queue.Full (with .count put) on timeout."},
    {"get_many", FASTCALL(q_get_many), METH_FASTCALL | METH_KEYWORDS,
     "get_many(max, block=True, timeout=None) -> list: waits for one item, then takes up to max."},
    {"get_many_bytes", FASTCALL(q_get_many_bytes), METH_FASTCALL | METH_KEYWORDS,
     "get_many_bytes(max, block=True, timeout=None) -> bytes of whole items."},
    {"get_view", q_get_view, METH_O,
     "get_view(max) -> BatchView: up to max items in place, zero copy (SpscQueue; never blocks)."},
    {"qsize", q_qsize, METH_NOARGS, "Items in the queue (a snapshot)."},
    {"empty", q_empty, METH_NOARGS, nullptr},
    {"full", q_full, METH_NOARGS, nullptr},
    {"unlink", q_unlink, METH_NOARGS, "Removes the block's name."},
    {"close", q_close, METH_NOARGS, "Unmaps the queue (this handle only)."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef q_getset[] = {
    {"name", q_get_name, nullptr, nullptr, nullptr},
    {"capacity", q_get_capacity, nullptr, nullptr, nullptr},
    {"itemsize", q_get_itemsize, nullptr, nullptr, nullptr},
    {"closed", q_get_closed, nullptr, nullptr, nullptr},
    {"_waiting", q_get_waiting, nullptr, "Calls of this handle waiting without the GIL.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyTypeObject QueueType{PyVarObject_HEAD_INIT(nullptr, 0)};

// ============================================ SeqLock and BroadcastRing
// Both copy items as 64-bit words, so their layout depends only on the
// number of words: instantiated over Words<W>, the item's bytes padded with
// zeros to whole words (a C++ T of the same size reads its sizeof(T) bytes).

template <std::size_t W>
struct Words {
  std::uint64_t w[W];
};

struct WordOps {
  std::size_t words;
  // SeqLock
  void* (*create)(std::string_view name, const shmkit::TypeFingerprint& f, const void* initial, bool track);
  void* (*attach)(std::string_view name, const shmkit::TypeFingerprint& f);
  void (*destroy)(void*);
  void (*store)(void*, const void*);
  bool (*try_read)(void*, void*);
  bool (*read_until)(void*, void*, Clock::time_point);
  std::uint64_t (*version)(void*);
  const std::string& (*name)(void*);
  void (*unlink)(void*);
  // BroadcastRing
  void* (*bcreate)(std::string_view name, std::uint64_t capacity, const shmkit::TypeFingerprint& f, bool track);
  void* (*battach)(std::string_view name, const shmkit::TypeFingerprint& f);
  void (*bdestroy)(void*);
  void (*push)(void*, const void*);
  std::uint64_t (*write_index)(void*);
  std::uint64_t (*capacity)(void*);
  const std::string& (*bname)(void*);
  void (*bunlink)(void*);
  void* (*reader_at)(void* ring, std::uint64_t cursor);
  void (*reader_destroy)(void*);
  int (*read)(void* reader, void* out, std::uint64_t* lost, Clock::time_point deadline);  // 0 ok 1 empty 2 lapped
  std::uint64_t (*cursor)(void*);
  std::uint64_t (*backlog)(void*);
};

template <std::size_t W>
struct WordImpl {
  using T = Words<W>;
  using Seq = shmkit::SeqLock<T>;
  using Ring = shmkit::BroadcastRing<T>;
  using Reader = shmkit::BroadcastReader<T>;

  static void* create(std::string_view name, const shmkit::TypeFingerprint& f, const void* initial, bool track) {
    shmkit::BlockSpec spec;
    spec.kind = shmkit::BlockKind::seqlock;
    spec.type = f;
    spec.count = 1;
    spec.prefix_size = sizeof(shmkit::SeqLockControl);
    spec.payload_size = sizeof(T);
    spec.param[0] = sizeof(T);
    shmkit::SharedMemory::Options o;
    o.track = track;
    shmkit::TypedBlock b = shmkit::create_typed_block(
        name, spec,
        [initial](std::span<std::byte> prefix, std::span<std::byte> payload) {
          new (prefix.data()) shmkit::SeqLockControl();
          // No reader can see the block before it is published.
          std::memcpy(payload.data(), initial, sizeof(T));
        },
        o);
    return new Seq(Seq::from_block(std::move(b)));
  }
  static void* attach(std::string_view name, const shmkit::TypeFingerprint& f) {
    return new Seq(Seq::from_block(shmkit::attach_typed_block(name, shmkit::BlockKind::seqlock, f)));
  }
  static void destroy(void* p) { delete static_cast<Seq*>(p); }
  static void store(void* p, const void* v) { static_cast<Seq*>(p)->store(*static_cast<const T*>(v)); }
  static bool try_read(void* p, void* out) { return static_cast<Seq*>(p)->try_read(*static_cast<T*>(out)); }
  static bool read_until(void* p, void* out, Clock::time_point d) {
    const auto now = Clock::now();
    auto r = static_cast<Seq*>(p)->read_for(d > now ? d - now : Clock::duration::zero());
    if (!r) return false;
    *static_cast<T*>(out) = *r;
    return true;
  }
  static std::uint64_t version(void* p) { return static_cast<Seq*>(p)->version(); }
  static const std::string& name(void* p) { return static_cast<Seq*>(p)->name(); }
  static void unlink(void* p) { static_cast<Seq*>(p)->unlink(); }

  static void* bcreate(std::string_view name, std::uint64_t capacity, const shmkit::TypeFingerprint& f, bool track) {
    constexpr std::uint64_t slot = 8 * (1 + W);
    if (capacity == 0 || (capacity & (capacity - 1)) != 0 || capacity > (std::uint64_t{1} << 40) / slot) {
      throw std::invalid_argument("shmkit: cannot create block \"" + std::string(name) + "\": capacity " +
                                  std::to_string(capacity) + " is not a power of two in [1, 2^40 / slot size]");
    }
    shmkit::BlockSpec spec;
    spec.kind = shmkit::BlockKind::broadcast_ring;
    spec.type = f;
    spec.count = capacity;
    spec.prefix_size = sizeof(shmkit::BroadcastControl);
    spec.payload_size = capacity * slot;
    spec.param[0] = slot;
    shmkit::SharedMemory::Options o;
    o.track = track;
    shmkit::TypedBlock b = shmkit::create_typed_block(
        name, spec,
        [](std::span<std::byte> prefix, std::span<std::byte>) { new (prefix.data()) shmkit::BroadcastControl(); }, o);
    return new Ring(Ring::from_block(std::move(b)));
  }
  static void* battach(std::string_view name, const shmkit::TypeFingerprint& f) {
    return new Ring(Ring::from_block(shmkit::attach_typed_block(name, shmkit::BlockKind::broadcast_ring, f)));
  }
  static void bdestroy(void* p) { delete static_cast<Ring*>(p); }
  static void push(void* p, const void* v) { static_cast<Ring*>(p)->push(*static_cast<const T*>(v)); }
  static std::uint64_t write_index(void* p) { return static_cast<Ring*>(p)->write_index(); }
  static std::uint64_t capacity(void* p) { return static_cast<Ring*>(p)->capacity(); }
  static const std::string& bname(void* p) { return static_cast<Ring*>(p)->name(); }
  static void bunlink(void* p) { static_cast<Ring*>(p)->unlink(); }
  static void* reader_at(void* p, std::uint64_t cursor) { return new Reader(static_cast<Ring*>(p)->reader_at(cursor)); }
  static void reader_destroy(void* r) { delete static_cast<Reader*>(r); }
  static int read(void* r, void* out, std::uint64_t* lost, Clock::time_point d) {
    const auto now = Clock::now();
    const shmkit::BroadcastResult res =
        static_cast<Reader*>(r)->read_for(*static_cast<T*>(out), d > now ? d - now : Clock::duration::zero());
    *lost = res.lost;
    return res.status == shmkit::BroadcastStatus::ok ? 0 : res.status == shmkit::BroadcastStatus::empty ? 1 : 2;
  }
  static std::uint64_t cursor(void* r) { return static_cast<Reader*>(r)->cursor(); }
  static std::uint64_t backlog(void* r) { return static_cast<Reader*>(r)->backlog(); }

  static constexpr WordOps ops{W, create, attach, destroy, store, try_read, read_until, version, name, unlink,
                               bcreate, battach, bdestroy, push, write_index, capacity, bname, bunlink,
                               reader_at, reader_destroy, read, cursor, backlog};
};

// 1-32 words (8-256 bytes), then 48, 64, 128, 256 and 512 words.
template <std::size_t... I>
constexpr auto make_word_table(std::index_sequence<I...>) {
  return std::array<const WordOps*, sizeof...(I)>{
      &WordImpl<(I < 32 ? I + 1 : I == 32 ? 48 : I == 33 ? 64 : I == 34 ? 128 : I == 35 ? 256 : 512)>::ops...};
}
constexpr auto kWordTable = make_word_table(std::make_index_sequence<37>());

const WordOps* find_word_ops(Py_ssize_t item) {
  const std::size_t w = (static_cast<std::size_t>(item) + 7) / 8;
  for (const WordOps* o : kWordTable) {
    if (o->words == w) return o;
  }
  return nullptr;
}

// Fills the codec and the fingerprint from the Python description of an
// item; -1 with an exception.
int init_codec(CodecHead* c, Py_ssize_t item, Py_ssize_t align, const char* typecode, const char* type_name,
               const char* mode, Py_ssize_t maxbytes, PyObject* st, shmkit::TypeFingerprint* f) {
  if (item <= 0 || align <= 0 || align > 8 || (align & (align - 1)) != 0 || item % align != 0) {
    PyErr_Format(PyExc_ValueError, "item of %zd bytes aligned to %zd: the alignment must be a power of two <= 8 "
                 "dividing the size", item, align);
    return -1;
  }
  if (std::strlen(mode) != 1 || std::strchr("styr", mode[0]) == nullptr) {
    PyErr_SetString(PyExc_ValueError, "mode must be one of s t y r");
    return -1;
  }
  if (mode[0] == 't' && (st == nullptr || st == Py_None)) {
    PyErr_SetString(PyExc_ValueError, "mode 't' needs a struct.Struct");
    return -1;
  }
  if (mode[0] == 'y' && (maxbytes < 0 || item < 4 || maxbytes > item - 4)) {
    PyErr_SetString(PyExc_ValueError, "bytes items: maxbytes + 4 must fit the item");
    return -1;
  }
  if (mode[0] == 's' && (typecode == nullptr || scalar_size(typecode[0]) == 0)) {
    PyErr_SetString(PyExc_ValueError, "mode 's' needs a typecode among b B h H i I q Q f d ? c");
    return -1;
  }
  // pack_item writes the typecode's size: the item must be exactly that.
  if (mode[0] == 's' && scalar_size(typecode[0]) != item) {
    PyErr_Format(PyExc_ValueError, "typecode '%c' is %zd bytes, not the item size %zd", typecode[0],
                 scalar_size(typecode[0]), item);
    return -1;
  }
  f->typecode = (typecode != nullptr && typecode[0] != '\0') ? typecode[0] : 0;
  f->size = static_cast<std::uint32_t>(item);
  f->align = static_cast<std::uint32_t>(align);
  if (f->typecode == 0 && (type_name == nullptr || type_name[0] == '\0')) {
    PyErr_SetString(PyExc_ValueError, "a struct item needs a type name");
    return -1;
  }
  f->name_hash = f->typecode != 0 ? shmkit::fnv1a(std::string_view(&f->typecode, 1)) : shmkit::fnv1a(type_name);
  c->mode = mode[0];
  c->code = typecode != nullptr ? typecode[0] : 0;
  c->item = item;
  c->maxbytes = maxbytes;
  c->st = (st != nullptr && st != Py_None) ? Py_NewRef(st) : nullptr;
  return 0;
}

// ------------------------------------------------------------ _SeqLock

struct SeqObj : CodecHead {
  const WordOps* ops;
  void* p;
  PyObject* weakrefs;
  Py_ssize_t waiting;  // calls waiting without the GIL
};

SeqObj* as_seq(PyObject* o) { return reinterpret_cast<SeqObj*>(o); }

// _SeqLock(name, create, item_size, item_align, typecode, type_name, mode,
//          maxbytes=0, struct=None, initial=None, track=False)
PyObject* seq_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"name", "create", "item_size", "item_align", "typecode", "type_name", "mode",
                                 "maxbytes", "struct", "initial", "track", nullptr};
  const char* name = nullptr;
  int create = 0, track = 0;
  Py_ssize_t item = 0, align = 0, maxbytes = 0;
  const char *typecode = nullptr, *type_name = nullptr, *mode = nullptr;
  PyObject *st = nullptr, *initial = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "zpnnzzs|nOOp", const_cast<char**>(kwlist), &name, &create, &item,
                                   &align, &typecode, &type_name, &mode, &maxbytes, &st, &initial, &track)) {
    return nullptr;
  }
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) return nullptr;
  SeqObj* self = as_seq(o);
  shmkit::TypeFingerprint f;
  if (init_codec(self, item, align, typecode, type_name, mode, maxbytes, st, &f) < 0) {
    Py_DECREF(o);
    return nullptr;
  }
  const WordOps* ops = find_word_ops(item);
  if (ops == nullptr) {
    Py_DECREF(o);
    PyErr_Format(PyExc_ValueError, "SeqLock/BroadcastRing items hold up to 256 bytes, or 384, 512, 1024, 2048 "
                 "or 4096; not %zd", item);
    return nullptr;
  }
  std::uint64_t buf[512] = {};
  if (create && initial != nullptr && initial != Py_None &&
      pack_item(self, initial, reinterpret_cast<unsigned char*>(buf)) < 0) {
    Py_DECREF(o);
    return nullptr;
  }
  try {
    std::string n = name != nullptr ? name : "";
    PyThreadState* ts = PyEval_SaveThread();
    try {
      self->p = create ? ops->create(n, f, buf, track != 0) : ops->attach(n, f);
    } catch (...) {
      PyEval_RestoreThread(ts);
      throw;
    }
    PyEval_RestoreThread(ts);
  } catch (...) {
    translate_exception();
    Py_DECREF(o);
    return nullptr;
  }
  self->ops = ops;
  return o;
}

void seq_dealloc(PyObject* o) {
  SeqObj* self = as_seq(o);
  if (self->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  if (self->p != nullptr) self->ops->destroy(self->p);
  Py_XDECREF(self->st);
  Py_TYPE(o)->tp_free(o);
}

bool seq_open(SeqObj* self) {
  if (self->p == nullptr) {
    PyErr_SetString(PyExc_ValueError, "operation on a closed SeqLock");
    return false;
  }
  return true;
}

PyObject* seq_store(PyObject* o, PyObject* const* args, Py_ssize_t nargs) {
  SeqObj* self = as_seq(o);
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "store(value)");
    return nullptr;
  }
  std::uint64_t buf[512] = {};
  if (pack_item(self, args[0], reinterpret_cast<unsigned char*>(buf)) < 0) return nullptr;
  if (!seq_open(self)) return nullptr;  // after the conversion, which may close it
  self->ops->store(self->p, buf);
  Py_RETURN_NONE;
}

// try_read() -> value, or None if a write overlapped.
PyObject* seq_try_read(PyObject* o, PyObject*) {
  SeqObj* self = as_seq(o);
  if (!seq_open(self)) return nullptr;
  std::uint64_t buf[512];
  if (!self->ops->try_read(self->p, buf)) Py_RETURN_NONE;
  return unpack_item(self, reinterpret_cast<unsigned char*>(buf));
}

// read(timeout=None) -> value; TimeoutError if no consistent value in time
// (only while a writer killed mid-store is not replaced).
PyObject* seq_read(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  SeqObj* self = as_seq(o);
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 0, "read", &block, &timeout) < 0) {
    return nullptr;
  }
  if (!seq_open(self)) return nullptr;
  std::uint64_t buf[512];
  if (self->ops->try_read(self->p, buf)) [[likely]] return unpack_item(self, reinterpret_cast<unsigned char*>(buf));
  const WordOps* ops = self->ops;
  void* p = self->p;
  Waiting guard(self->waiting);
  const int r = wait_sliced(deadline_for(block ? timeout : 0.0), [&](Clock::time_point end) { return ops->read_until(p, buf, end); });
  if (r < 0) return nullptr;
  if (r == 0) {
    PyErr_SetString(PyExc_TimeoutError, "SeqLock.read(): no consistent value in time (a writer died mid-store?)");
    return nullptr;
  }
  return unpack_item(self, reinterpret_cast<unsigned char*>(buf));
}

PyObject* seq_version(PyObject* o, void*) {
  SeqObj* self = as_seq(o);
  if (!seq_open(self)) return nullptr;
  return PyLong_FromUnsignedLongLong(self->ops->version(self->p));
}
PyObject* seq_name(PyObject* o, void*) {
  SeqObj* self = as_seq(o);
  if (!seq_open(self)) return nullptr;
  return PyUnicode_FromString(self->ops->name(self->p).c_str());
}
PyObject* seq_unlink(PyObject* o, PyObject*) {
  SeqObj* self = as_seq(o);
  if (!seq_open(self)) return nullptr;
  try {
    self->ops->unlink(self->p);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}
PyObject* seq_close(PyObject* o, PyObject*) {
  SeqObj* self = as_seq(o);
  if (self->waiting > 0) {
    PyErr_SetString(PyExc_RuntimeError, "cannot close a SeqLock while other threads wait on it");
    return nullptr;
  }
  if (self->p != nullptr) self->ops->destroy(self->p);
  self->p = nullptr;
  Py_RETURN_NONE;
}

PyMethodDef seq_methods[] = {
    {"store", FASTCALL(seq_store), METH_FASTCALL, "store(value): the writer publishes a value (wait-free)."},
    {"try_read", seq_try_read, METH_NOARGS, "The value, or None if a write overlapped the copy."},
    {"read", FASTCALL(seq_read), METH_FASTCALL | METH_KEYWORDS,
     "read(block=True, timeout=None): a consistent value (never torn)."},
    {"unlink", seq_unlink, METH_NOARGS, nullptr},
    {"close", seq_close, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr}};
PyObject* seq_waiting(PyObject* o, void*) { return PyLong_FromSsize_t(as_seq(o)->waiting); }

PyGetSetDef seq_getset[] = {
    {"version", seq_version, nullptr, "The sequence number (even when stable; +2 per store).", nullptr},
    {"_waiting", seq_waiting, nullptr, "Calls of this handle waiting without the GIL.", nullptr},
    {"name", seq_name, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyTypeObject SeqType{PyVarObject_HEAD_INIT(nullptr, 0)};

// ------------------------------------------------------ _BroadcastRing

PyObject* g_lapped = nullptr;  // shmkit._queues.Lapped

struct RingObj : CodecHead {
  const WordOps* ops;
  void* p;
  PyObject* weakrefs;
};
struct ReaderObj : CodecHead {
  const WordOps* ops;
  void* r;
  PyObject* ring;  // keeps the mapping alive
  bool busy;       // a read() of this reader waits without the GIL (its cursor is not shared)
};

RingObj* as_ring(PyObject* o) { return reinterpret_cast<RingObj*>(o); }
ReaderObj* as_reader(PyObject* o) { return reinterpret_cast<ReaderObj*>(o); }
PyTypeObject RingType{PyVarObject_HEAD_INIT(nullptr, 0)};
PyTypeObject ReaderType{PyVarObject_HEAD_INIT(nullptr, 0)};

// _BroadcastRing(name, create, capacity, item_size, item_align, typecode,
//                type_name, mode, maxbytes=0, struct=None, track=False)
PyObject* ring_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"name", "create", "capacity", "item_size", "item_align", "typecode", "type_name",
                                 "mode", "maxbytes", "struct", "track", nullptr};
  const char* name = nullptr;
  int create = 0, track = 0;
  unsigned long long capacity = 0;
  Py_ssize_t item = 0, align = 0, maxbytes = 0;
  const char *typecode = nullptr, *type_name = nullptr, *mode = nullptr;
  PyObject* st = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "zpKnnzzs|nOp", const_cast<char**>(kwlist), &name, &create,
                                   &capacity, &item, &align, &typecode, &type_name, &mode, &maxbytes, &st, &track)) {
    return nullptr;
  }
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) return nullptr;
  RingObj* self = as_ring(o);
  shmkit::TypeFingerprint f;
  if (init_codec(self, item, align, typecode, type_name, mode, maxbytes, st, &f) < 0) {
    Py_DECREF(o);
    return nullptr;
  }
  const WordOps* ops = find_word_ops(item);
  if (ops == nullptr) {
    Py_DECREF(o);
    PyErr_Format(PyExc_ValueError, "SeqLock/BroadcastRing items hold up to 256 bytes, or 384, 512, 1024, 2048 "
                 "or 4096; not %zd", item);
    return nullptr;
  }
  try {
    std::string n = name != nullptr ? name : "";
    PyThreadState* ts = PyEval_SaveThread();
    try {
      self->p = create ? ops->bcreate(n, capacity, f, track != 0) : ops->battach(n, f);
    } catch (...) {
      PyEval_RestoreThread(ts);
      throw;
    }
    PyEval_RestoreThread(ts);
  } catch (...) {
    translate_exception();
    Py_DECREF(o);
    return nullptr;
  }
  self->ops = ops;
  return o;
}

void ring_dealloc(PyObject* o) {
  RingObj* self = as_ring(o);
  if (self->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  if (self->p != nullptr) self->ops->bdestroy(self->p);
  Py_XDECREF(self->st);
  Py_TYPE(o)->tp_free(o);
}

PyObject* ring_push(PyObject* o, PyObject* const* args, Py_ssize_t nargs) {
  RingObj* self = as_ring(o);
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "push(value)");
    return nullptr;
  }
  std::uint64_t buf[512] = {};
  if (pack_item(self, args[0], reinterpret_cast<unsigned char*>(buf)) < 0) return nullptr;
  self->ops->push(self->p, buf);
  Py_RETURN_NONE;
}

// reader(cursor=None): from the next item pushed (None), or from `cursor`
// ("oldest": the oldest item still in the ring).
PyObject* ring_reader(PyObject* o, PyObject* const* args, Py_ssize_t nargs) {
  RingObj* self = as_ring(o);
  std::uint64_t cursor = self->ops->write_index(self->p);
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "reader(cursor=None)");
    return nullptr;
  }
  if (nargs == 1 && args[0] != Py_None) {
    if (PyUnicode_Check(args[0]) && PyUnicode_CompareWithASCIIString(args[0], "oldest") == 0) {
      const std::uint64_t cap = self->ops->capacity(self->p);
      cursor = cursor > cap ? cursor - cap : 0;
    } else {
      cursor = PyLong_AsUnsignedLongLong(args[0]);
      if (PyErr_Occurred()) return nullptr;
    }
  }
  ReaderObj* r = PyObject_New(ReaderObj, &ReaderType);
  if (r == nullptr) return nullptr;
  r->mode = self->mode;
  r->code = self->code;
  r->item = self->item;
  r->maxbytes = self->maxbytes;
  r->st = Py_XNewRef(self->st);
  r->ops = self->ops;
  r->ring = Py_NewRef(o);
  r->busy = false;
  r->r = self->ops->reader_at(self->p, cursor);
  return reinterpret_cast<PyObject*>(r);
}

PyObject* ring_write_index(PyObject* o, void*) { return PyLong_FromUnsignedLongLong(as_ring(o)->ops->write_index(as_ring(o)->p)); }
PyObject* ring_capacity(PyObject* o, void*) { return PyLong_FromUnsignedLongLong(as_ring(o)->ops->capacity(as_ring(o)->p)); }
PyObject* ring_name(PyObject* o, void*) { return PyUnicode_FromString(as_ring(o)->ops->bname(as_ring(o)->p).c_str()); }
PyObject* ring_unlink(PyObject* o, PyObject*) {
  try {
    as_ring(o)->ops->bunlink(as_ring(o)->p);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyMethodDef ring_methods[] = {
    {"push", FASTCALL(ring_push), METH_FASTCALL, "push(value): the writer publishes an item (wait-free)."},
    {"reader", FASTCALL(ring_reader), METH_FASTCALL,
     "reader(cursor=None): a reader from the next item (None), 'oldest', or a saved cursor."},
    {"unlink", ring_unlink, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef ring_getset[] = {
    {"write_index", ring_write_index, nullptr, "Items published so far.", nullptr},
    {"capacity", ring_capacity, nullptr, nullptr, nullptr},
    {"name", ring_name, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

void reader_dealloc(PyObject* o) {
  ReaderObj* self = as_reader(o);
  if (self->r != nullptr) self->ops->reader_destroy(self->r);
  Py_XDECREF(self->st);
  Py_XDECREF(self->ring);
  PyObject_Free(o);
}

// read(block=True, timeout=None) -> item; queue.Empty on timeout; Lapped
// (with .lost) when items were overwritten before this reader got them (the
// cursor then skips them; the next read continues).
PyObject* reader_read(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  ReaderObj* self = as_reader(o);
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 0, "read", &block, &timeout) < 0) {
    return nullptr;
  }
  // One reader is one cursor: a second thread must not move it while the
  // first waits without the GIL.
  if (self->busy) {
    PyErr_SetString(PyExc_RuntimeError, "another thread is reading from this reader");
    return nullptr;
  }
  std::uint64_t buf[512];
  std::uint64_t lost = 0;
  int status = self->ops->read(self->r, buf, &lost, Clock::time_point{});
  if (status == 1 && block) {
    const WordOps* ops = self->ops;
    void* r = self->r;
    self->busy = true;
    const int w = wait_sliced(deadline_for(timeout), [&](Clock::time_point end) {
      status = ops->read(r, buf, &lost, end);
      return status != 1;
    });
    self->busy = false;
    if (w < 0) return nullptr;
  }
  if (status == 0) return unpack_item(self, reinterpret_cast<unsigned char*>(buf));
  if (status == 1) {
    PyErr_SetNone(g_empty);
    return nullptr;
  }
  PyObject* exc = PyObject_CallFunction(g_lapped, "K", static_cast<unsigned long long>(lost));
  if (exc != nullptr) {
    PyObject* l = PyLong_FromUnsignedLongLong(lost);
    if (l != nullptr) {
      PyObject_SetAttrString(exc, "lost", l);
      Py_DECREF(l);
    }
    PyErr_SetObject(g_lapped, exc);
    Py_DECREF(exc);
  }
  return nullptr;
}
PyObject* reader_cursor(PyObject* o, void*) { return PyLong_FromUnsignedLongLong(as_reader(o)->ops->cursor(as_reader(o)->r)); }
PyObject* reader_backlog(PyObject* o, PyObject*) { return PyLong_FromUnsignedLongLong(as_reader(o)->ops->backlog(as_reader(o)->r)); }

PyMethodDef reader_methods[] = {
    {"read", FASTCALL(reader_read), METH_FASTCALL | METH_KEYWORDS,
     "read(block=True, timeout=None): the next item; queue.Empty on timeout; Lapped(lost) if overwritten."},
    {"backlog", reader_backlog, METH_NOARGS, "Items published and not yet read."},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef reader_getset[] = {
    {"cursor", reader_cursor, nullptr, "The index of the next item this reader wants.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyObject* py_supported_sizes(PyObject*, PyObject*) { return supported_sizes(); }

PyMethodDef module_methods[] = {
    {"supported_sizes", py_supported_sizes, METH_NOARGS, "The item sizes a queue may have."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "shmkit._queues",
                          "shmkit's SpscQueue and MpmcQueue with run-time item types (python/src/queues.cpp).", -1,
                          module_methods};

}  // namespace

PyMODINIT_FUNC PyInit__queues() {
  QueueType.tp_name = "shmkit._queues._Queue";
  QueueType.tp_doc = "A shmkit SpscQueue or MpmcQueue block (see python/src/queues.cpp).";
  QueueType.tp_basicsize = sizeof(QueueObj);
  QueueType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
  QueueType.tp_new = q_new;
  QueueType.tp_dealloc = q_dealloc;
  QueueType.tp_methods = q_methods;
  QueueType.tp_getset = q_getset;
  QueueType.tp_weaklistoffset = offsetof(QueueObj, weakrefs);
  if (PyType_Ready(&QueueType) < 0) return nullptr;
  ViewType.tp_name = "shmkit._queues.BatchView";
  ViewType.tp_doc = "Items of an SpscQueue read in place; release() hands them back to the producer.";
  ViewType.tp_basicsize = sizeof(ViewObj);
  ViewType.tp_flags = Py_TPFLAGS_DEFAULT;
  ViewType.tp_dealloc = view_dealloc;
  ViewType.tp_methods = view_methods;
  ViewType.tp_getset = view_getset;
  ViewType.tp_as_buffer = &view_as_buffer;
  ViewType.tp_as_sequence = &view_as_sequence;
  if (PyType_Ready(&ViewType) < 0) return nullptr;
  SeqType.tp_name = "shmkit._queues._SeqLock";
  SeqType.tp_doc = "A shmkit SeqLock block (shmkit/lockfree/seqlock.hpp).";
  SeqType.tp_basicsize = sizeof(SeqObj);
  SeqType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
  SeqType.tp_new = seq_new;
  SeqType.tp_dealloc = seq_dealloc;
  SeqType.tp_methods = seq_methods;
  SeqType.tp_getset = seq_getset;
  SeqType.tp_weaklistoffset = offsetof(SeqObj, weakrefs);
  RingType.tp_name = "shmkit._queues._BroadcastRing";
  RingType.tp_doc = "A shmkit BroadcastRing block (shmkit/lockfree/broadcast_ring.hpp).";
  RingType.tp_basicsize = sizeof(RingObj);
  RingType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
  RingType.tp_new = ring_new;
  RingType.tp_dealloc = ring_dealloc;
  RingType.tp_methods = ring_methods;
  RingType.tp_getset = ring_getset;
  RingType.tp_weaklistoffset = offsetof(RingObj, weakrefs);
  ReaderType.tp_name = "shmkit._queues.BroadcastReader";
  ReaderType.tp_doc = "A reader of a BroadcastRing: a process-local cursor.";
  ReaderType.tp_basicsize = sizeof(ReaderObj);
  ReaderType.tp_flags = Py_TPFLAGS_DEFAULT;
  ReaderType.tp_dealloc = reader_dealloc;
  ReaderType.tp_methods = reader_methods;
  ReaderType.tp_getset = reader_getset;
  if (PyType_Ready(&SeqType) < 0 || PyType_Ready(&RingType) < 0 || PyType_Ready(&ReaderType) < 0) return nullptr;
  g_lapped = PyErr_NewExceptionWithDoc("shmkit._queues.Lapped",
                                       "A BroadcastRing reader fell more than `capacity` items behind: `lost` "
                                       "items were overwritten; the reader continues after them.",
                                       PyExc_Exception, nullptr);
  if (g_lapped == nullptr) return nullptr;
  PyObject* qmod = PyImport_ImportModule("queue");
  if (qmod == nullptr) return nullptr;
  g_full = PyObject_GetAttrString(qmod, "Full");
  g_empty = PyObject_GetAttrString(qmod, "Empty");
  Py_DECREF(qmod);
  if (g_full == nullptr || g_empty == nullptr) return nullptr;
  PyObject* m = PyModule_Create(&module_def);
  if (m == nullptr) return nullptr;
  Py_INCREF(&QueueType);
  Py_INCREF(&SeqType);
  Py_INCREF(&RingType);
  Py_INCREF(&ReaderType);
  if (PyModule_AddObject(m, "_SeqLock", reinterpret_cast<PyObject*>(&SeqType)) < 0 ||
      PyModule_AddObject(m, "_BroadcastRing", reinterpret_cast<PyObject*>(&RingType)) < 0 ||
      PyModule_AddObject(m, "BroadcastReader", reinterpret_cast<PyObject*>(&ReaderType)) < 0 ||
      PyModule_AddObject(m, "Lapped", Py_NewRef(g_lapped)) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  if (PyModule_AddObject(m, "_Queue", reinterpret_cast<PyObject*>(&QueueType)) < 0) {
    Py_DECREF(&QueueType);
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
