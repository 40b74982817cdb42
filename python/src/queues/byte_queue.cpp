// python/src/queues/byte_queue.cpp — shmkit._queues.ByteQueue: a
// shmkit::ByteQueue block (shmkit/lockfree/byte_queue.hpp), a queue of byte
// messages of any length, for shmkit.Queue and friends (python/shmkit/
// mpqueues.py) and for bytes traffic with C++ programs; and
// shmkit._queues.ByteMessage, a popped out-of-line message (zero copy).
//
// Contract
//   * ByteQueue.create(name, ring_bytes, out_of_line_threshold=0, track=True)
//     and ByteQueue.attach(name) make handles; unlink_byte_queue(name)
//     removes a queue's block, its doorbell FIFO and any out-of-line block
//     left behind, by name (for finalizers that outlive the handle).
//   * put_parts(parts, block=True, timeout=None): one message, the
//     concatenation of `parts` (a sequence of contiguous buffers), gathered
//     straight into the ring or the out-of-line block (no join in Python).
//     queue.Full when it does not fit in time. A message of more than
//     kNoGilBytes is copied without the GIL.
//   * get(block=True, timeout=None): bytes for a message that travelled in
//     the ring (the bytes object is allocated by the sink's reserve() and
//     the ring copies straight into it), or a read-only ByteMessage over
//     the mapping of an out-of-line message (its name is already unlinked;
//     the mapping lives as long as the ByteMessage, and a memoryview or
//     numpy array over it keeps the ByteMessage alive). get_buffer() is the
//     same with writable results: a bytearray, or a writable ByteMessage
//     (the mapping is this process's alone once popped). queue.Empty when
//     nothing comes in time.
//   * Waits release the GIL and sleep in slices of kSlice (wait_room_until /
//     wait_message_until, which step over dead claimants between their
//     own sleeps), checking for signals (Ctrl-C) between slices; after a
//     wake the pop/push is retried with the GIL held, and a wake that finds
//     nothing (another consumer was first) waits again until the deadline.
//   * spin_for_message(timeout, since) waits for a message without ever sleeping:
//     it spins without the GIL (Pool.apply's caller, which expects its
//     result within microseconds).
//   * Re-entrancy: every argument is converted (buffers acquired, block and
//     timeout parsed, which can run Python code) before the handle is
//     checked open; a call that runs without the GIL counts itself in
//     `waiting`, and close() raises RuntimeError meanwhile. So no call ever
//     uses a freed queue. The codec's callables are held while they run
//     (one may set another codec), a put_obj made while one pickles on the
//     same thread pickles with an encoder of its own, and the handle is a
//     GC type (a codec may refer back to it).
//   * The doorbell: fileno() opens and arms it (ByteQueue::doorbell_fd);
//     from then on a get that takes the last message settles the bell
//     (drains it, re-rings if a message came meanwhile), so a poll() on
//     fileno() right after is not woken by a message already taken here.
//     settle() does that explicitly.
#include <sched.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/buffer.hpp"
#include "queues/queues.hpp"
#include "shmkit/lockfree/byte_queue.hpp"

namespace shmkit::python::queues {
namespace {

// Messages longer than this are copied without the GIL.
constexpr std::size_t kNoGilBytes = 256 * 1024;

struct ByteQueueObj {
  PyObject_HEAD shmkit::ByteQueue* q;
  std::string* name;  // kept after close() (finalizers, repr)
  PyObject* weakrefs;
  WaitCount waiting;  // calls running without the GIL: close() must not free the queue under them
  bool bell;          // fileno() was called: settle the doorbell after taking the last message
  bool used;          // a put through this handle succeeded (CPython's Queue.close() is a no-op before)
  // put_obj/get_obj's codec (set_codec): encode(obj) -> parts, decode(msg)
  // -> obj, loads (pickle.loads); nullptr until set.
  PyObject* encode;
  PyObject* decode;
  PyObject* loads;
  // set_codec's optional encoder factory: () -> (dump, clear_memo, chunks,
  // buffers, reducers, nreducers, finish), one per thread (kept in the
  // thread state's dict under the factory), which put_obj drives itself:
  // the same pickler encode() uses, without encode()'s Python frame.
  PyObject* encoder;
  // set_taken's callable: called once get_obj has taken a message, before
  // decoding it (a bounded Queue's semaphore release); nullptr: none.
  PyObject* taken;
};

struct MessageObj {
  PyObject_HEAD std::optional<shmkit::OutOfLineBlock> block;  // nullopt once released
  std::size_t size;
  bool read_only;
  Exports exports;
};

PyTypeObject* byte_queue_type = nullptr;
PyTypeObject* message_type = nullptr;

ByteQueueObj* as_bq(PyObject* o) { return reinterpret_cast<ByteQueueObj*>(o); }
MessageObj* as_msg(PyObject* o) { return reinterpret_cast<MessageObj*>(o); }

bool check_open(ByteQueueObj* self) {
  if (self->q == nullptr) {
    PyErr_SetString(PyExc_ValueError, "operation on a closed ByteQueue");
    return false;
  }
  return true;
}

// ------------------------------------------------------------- ByteMessage

PyObject* new_message(shmkit::OutOfLineBlock&& block, bool read_only) {
  auto* m = PyObject_New(MessageObj, message_type);
  if (m == nullptr) return nullptr;
  const std::size_t n = block.size();
  new (&m->block) std::optional<shmkit::OutOfLineBlock>(std::move(block));
  m->size = n;
  m->read_only = read_only || m->block->read_only();
  new (&m->exports) Exports();
  return reinterpret_cast<PyObject*>(m);
}

void message_dealloc(PyObject* o) {
  MessageObj* self = as_msg(o);
  self->block.~optional();  // unmaps; a reused block goes back to its producer
  free_object(o);
}

int message_getbuffer(PyObject* o, Py_buffer* view, int flags) {
  MessageObj* self = as_msg(o);
  if (!self->block) {
    view->obj = nullptr;
    PyErr_SetString(PyExc_ValueError, "operation on a released ByteMessage");
    return -1;
  }
  return self->exports.fill(o, view, self->block->data(), static_cast<Py_ssize_t>(self->size),
                            self->read_only, flags);
}
void message_releasebuffer(PyObject* o, Py_buffer*) { as_msg(o)->exports.release(); }
PyBufferProcs message_buffer = {message_getbuffer, message_releasebuffer};

Py_ssize_t message_len(PyObject* o) { return static_cast<Py_ssize_t>(as_msg(o)->size); }

PyObject* message_release(PyObject* o, PyObject*) {
  MessageObj* self = as_msg(o);
  if (!self->exports.none_alive("cannot release a ByteMessage while buffers over it exist")) return nullptr;
  self->block.reset();
  self->size = 0;
  Py_RETURN_NONE;
}
PyObject* message_enter(PyObject* o, PyObject*) { return Py_NewRef(o); }
PyObject* message_exit(PyObject* o, PyObject*) { return message_release(o, nullptr); }
PyObject* message_get_released(PyObject* o, void*) { return PyBool_FromLong(!as_msg(o)->block); }
PyObject* message_get_readonly(PyObject* o, void*) { return PyBool_FromLong(as_msg(o)->read_only); }

PyMethodDef message_methods[] = {
    {"release", message_release, METH_NOARGS,
     "release($self, /)\n--\n\nUnmaps the message now; BufferError while a memoryview or array over it "
     "exists."},
    {"__enter__", message_enter, METH_NOARGS, "__enter__($self, /)\n--\n\n"},
    {"__exit__", message_exit, METH_VARARGS, "__exit__($self, /, *args)\n--\n\nrelease()."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef message_getset[] = {{"released", message_get_released, nullptr, nullptr, nullptr},
                                {"readonly", message_get_readonly, nullptr, nullptr, nullptr},
                                exports_getset<MessageObj, &MessageObj::exports>(),
                                {nullptr, nullptr, nullptr, nullptr, nullptr}};

// ------------------------------------------------------------- the sink

// put_obj/get_obj's message tags: a `bytes` object's bytes follow
// kTagBytes; a pickle (protocol 2+) starts with kTagPickle.
constexpr unsigned char kTagBytes = 1;
constexpr unsigned char kTagPickle = 0x80;

// Receives one popped message: an in-ring one into a new bytes (or
// bytearray) object, an out-of-line one as its mapping. Used with the GIL
// held (try_pop runs with it).
class PySink final : public shmkit::ByteSink {
 public:
  // writable: an in-ring message as a bytearray (else bytes); ool_writable:
  // an out-of-line one as a writable ByteMessage; strip_bytes_tag: an
  // in-ring message that starts with kTagBytes as the bytes after the tag
  // (stripped() says it was; get_obj's `bytes`, copied once).
  PySink(bool writable, bool ool_writable, bool strip_bytes_tag = false) noexcept
      : writable_(writable), ool_writable_(ool_writable), strip_bytes_tag_(strip_bytes_tag) {}
  ~PySink() { Py_XDECREF(obj_); }
  PySink(const PySink&) = delete;
  PySink& operator=(const PySink&) = delete;

  std::byte* reserve(std::size_t n) noexcept override {
    Py_CLEAR(obj_);
    block_.reset();
    if (n > static_cast<std::size_t>(PY_SSIZE_T_MAX)) return nullptr;
    const auto len = static_cast<Py_ssize_t>(n);
    obj_ = writable_ ? PyByteArray_FromStringAndSize(nullptr, len) : PyBytes_FromStringAndSize(nullptr, len);
    if (obj_ == nullptr) return nullptr;  // MemoryError set: the message stays queued
    return reinterpret_cast<std::byte*>(writable_ ? PyByteArray_AS_STRING(obj_) : PyBytes_AS_STRING(obj_));
  }
  std::size_t skip(std::byte first) noexcept override {
    stripped_ = strip_bytes_tag_ && first == std::byte{kTagBytes};
    return stripped_ ? 1 : 0;
  }
  void adopt(shmkit::OutOfLineBlock&& block) noexcept override {
    Py_CLEAR(obj_);
    stripped_ = false;
    block_.emplace(std::move(block));
  }
  // Whether the delivered message is a `bytes` object without its tag.
  bool stripped() const noexcept { return stripped_ && obj_ != nullptr; }

  // The delivered message as a Python object (after BytePop::ok).
  PyObject* result() {
    if (obj_ != nullptr) return std::exchange(obj_, nullptr);
    if (block_) {
      shmkit::OutOfLineBlock b = std::move(*block_);
      block_.reset();
      return new_message(std::move(b), !ool_writable_);
    }
    PyErr_SetString(PyExc_RuntimeError, "ByteQueue: a pop delivered nothing");
    return nullptr;
  }
  // After a pop that delivered nothing: drop what reserve() made.
  void discard() noexcept {
    Py_CLEAR(obj_);
    stripped_ = false;
    block_.reset();
  }

 private:
  bool writable_;
  bool ool_writable_;
  bool strip_bytes_tag_;
  bool stripped_ = false;
  PyObject* obj_ = nullptr;
  std::optional<shmkit::OutOfLineBlock> block_;
};

// ------------------------------------------------------------- put

// The parts of one put: spans over Py_buffers (released, with the GIL
// held, on scope exit) or over memory the caller keeps alive. Up to
// kInline parts live inline (no allocation on the fast path).
class Parts {
 public:
  static constexpr std::size_t kInline = 8;
  Parts() = default;
  Parts(const Parts&) = delete;
  Parts& operator=(const Parts&) = delete;
  ~Parts() {
    for (std::size_t i = 0; i < nviews_; ++i) PyBuffer_Release(view(i));
  }
  // Every item of the sequence `parts` (contiguous buffers). -1 with an
  // exception set.
  int acquire(PyObject* parts) {
    Ref seq(PySequence_Fast(parts, "put_parts(parts): parts must be a sequence of buffers"));
    if (!seq) return -1;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.get());
    if (static_cast<std::size_t>(n) + nspans_ > kInline) {
      try {
        more_views_.reserve(static_cast<std::size_t>(n) + nviews_);
        more_spans_.assign(spans_.begin(), spans_.begin() + static_cast<std::ptrdiff_t>(nspans_));
        more_spans_.reserve(static_cast<std::size_t>(n) + nspans_);
        more_views_.assign(views_.begin(), views_.begin() + static_cast<std::ptrdiff_t>(nviews_));
      } catch (...) {
        translate_exception();
        return -1;
      }
      spill_ = true;
    }
    for (Py_ssize_t i = 0; i < n; ++i) {
      // A buffer export may run Python code (__buffer__) that changes a
      // list: its size is checked before each item, which is held.
      if (PySequence_Fast_GET_SIZE(seq.get()) != n) {
        PyErr_SetString(PyExc_RuntimeError, "put_parts(parts): parts changed size during the call");
        return -1;
      }
      Ref item(Py_NewRef(PySequence_Fast_GET_ITEM(seq.get(), i)));
      Py_buffer b;
      if (PyObject_GetBuffer(item.get(), &b, PyBUF_ANY_CONTIGUOUS) < 0) return -1;
      if (spill_) {
        more_views_.push_back(b);  // reserved: no throw
      } else {
        views_[nviews_] = b;
      }
      ++nviews_;
      add(b.buf, static_cast<std::size_t>(b.len));
    }
    return 0;
  }
  // A span the caller keeps alive (before any acquire(); at most kInline).
  void add(const void* p, std::size_t n) noexcept {
    const std::span<const std::byte> s(static_cast<const std::byte*>(p), n);
    if (spill_) {
      more_spans_.push_back(s);  // reserved: no throw
    } else {
      spans_[nspans_] = s;
    }
    ++nspans_;
    total_ += n;
  }
  std::span<const std::span<const std::byte>> spans() const noexcept {
    return spill_ ? std::span<const std::span<const std::byte>>(more_spans_)
                  : std::span<const std::span<const std::byte>>(spans_.data(), nspans_);
  }
  std::size_t total() const noexcept { return total_; }

 private:
  Py_buffer* view(std::size_t i) noexcept { return spill_ ? &more_views_[i] : &views_[i]; }
  std::array<Py_buffer, kInline> views_;
  std::array<std::span<const std::byte>, kInline> spans_;
  std::vector<Py_buffer> more_views_;
  std::vector<std::span<const std::byte>> more_spans_;
  std::size_t nviews_ = 0;
  std::size_t nspans_ = 0;
  std::size_t total_ = 0;
  bool spill_ = false;
};

// A wait that said "go" (room, a message) but whose attempt then failed:
// the C++ wait's check can pass on something the operation cannot use (a
// claim at tail or head whose claimant may be dead), and then returns at
// once, without sleeping and so without stepping over dead claimants.
// After the first such wake, step over one ourselves and back off briefly
// without the GIL, and look for signals (Ctrl-C) as a slice would: never
// a hot loop that holds the GIL or ignores Ctrl-C. -1 on a signal.
int after_empty_wake(shmkit::ByteQueue* q, int& wakes) {
  if (++wakes < 2) return 0;
  without_gil([&]() noexcept {
    (void)q->unblock();
    std::this_thread::sleep_for(std::chrono::microseconds(wakes < 100 ? 50 : 1000));
  });
  return PyErr_CheckSignals() < 0 ? -1 : 0;
}

// One message, the concatenation of `spans` (`total` bytes in all).
using Spans = std::span<const std::span<const std::byte>>;

// One try_push: 1 pushed, 0 no room, -1 error (an out-of-line block could
// not be made). Long messages are copied without the GIL.
int push_once(ByteQueueObj* self, Spans spans, std::size_t total) {
  shmkit::ByteQueue* q = self->q;
  try {
    bool ok;
    if (total > kNoGilBytes) {
      Waiting guard(self->waiting);
      ok = without_gil([&] { return q->try_push(spans); });
    } else {
      ok = q->try_push(spans);
    }
    if (ok) self->used = true;
    return ok ? 1 : 0;
  } catch (...) {
    translate_exception();
    return -1;
  }
}

PyObject* put_common(ByteQueueObj* self, Spans spans, std::size_t total, bool block, double timeout);

// put_parts(parts, block=True, timeout=None)
PyObject* bq_put_parts(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  ByteQueueObj* self = as_bq(o);
  if (nargs < 1) {
    PyErr_SetString(PyExc_TypeError, "put_parts(parts, block=True, timeout=None)");
    return nullptr;
  }
  Parts parts;
  if (parts.acquire(args[0]) < 0) return nullptr;
  bool block = true;
  double timeout = -1.0;
  if ((nargs > 1 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 1, "put_parts", Timeouts::raise, &block, &timeout) < 0) {
    return nullptr;
  }
  if (!check_open(self)) return nullptr;
  return put_common(self, parts.spans(), parts.total(), block, timeout);
}

PyObject* put_common(ByteQueueObj* self, Spans spans, std::size_t total, bool block, double timeout) {
  int r = push_once(self, spans, total);
  if (r == 1) [[likely]]
    Py_RETURN_NONE;
  if (r < 0) return nullptr;
  if (!block) {
    PyErr_SetNone(g_full);
    return nullptr;
  }
  const Clock::time_point deadline = deadline_for(timeout);
  shmkit::ByteQueue* q = self->q;
  Waiting guard(self->waiting);
  int wakes = 0;
  for (;;) {
    const int w = wait_sliced(deadline, [&, spin = true](Clock::time_point end) mutable {
      return q->wait_room_until(total, end, std::exchange(spin, false));  // spins in the first slice only
    });
    if (w < 0) return nullptr;
    r = push_once(self, spans, total);
    if (r == 1) Py_RETURN_NONE;
    if (r < 0) return nullptr;
    if (w == 1 && after_empty_wake(q, wakes) < 0) return nullptr;
    if (w == 0 || Clock::now() >= deadline) {
      PyErr_SetNone(g_full);
      return nullptr;
    }
  }
}

// ------------------------------------------------------------- get

// After a message was taken: a handle whose doorbell is armed settles it
// when the queue looks empty, so readiness of fileno() stays accurate.
void after_pop(ByteQueueObj* self) {
  if (self->bell && !self->q->has_message()) self->q->settle_doorbell();
}

// Pops one message (bytes/bytearray or a ByteMessage, per the flags),
// waiting up to `timeout` when `block`; queue.Empty. The handle is open.
// strip_bytes_tag: as PySink's; *stripped (when given) says whether the
// result is such a message.
PyObject* pop_message(ByteQueueObj* self, bool block, double timeout, bool writable, bool ool_writable,
                      bool strip_bytes_tag = false, bool* stripped = nullptr) {
  if (!check_open(self)) return nullptr;
  PySink sink(writable, ool_writable, strip_bytes_tag);
  auto deliver = [&] {
    after_pop(self);
    if (stripped != nullptr) *stripped = sink.stripped();
    return sink.result();
  };
  shmkit::ByteQueue* q = self->q;
  shmkit::BytePop p = q->try_pop(sink);
  if (p == shmkit::BytePop::ok) [[likely]]
    return deliver();
  sink.discard();
  if (p == shmkit::BytePop::no_memory) {
    if (!PyErr_Occurred()) PyErr_NoMemory();
    return nullptr;
  }
  if (!block) {
    PyErr_SetNone(g_empty);
    return nullptr;
  }
  const Clock::time_point deadline = deadline_for(timeout);
  Waiting guard(self->waiting);
  int wakes = 0;
  for (;;) {
    const int w = wait_sliced(deadline, [&, spin = true](Clock::time_point end) mutable {
      return q->wait_message_until(end, std::exchange(spin, false));  // spins in the first slice only
    });
    if (w < 0) return nullptr;
    p = q->try_pop(sink);
    if (p == shmkit::BytePop::ok) return deliver();
    sink.discard();
    if (p == shmkit::BytePop::no_memory) {
      if (!PyErr_Occurred()) PyErr_NoMemory();
      return nullptr;
    }
    if (w == 1 && after_empty_wake(q, wakes) < 0) return nullptr;
    if (w == 0 || Clock::now() >= deadline) {
      PyErr_SetNone(g_empty);
      return nullptr;
    }
  }
}

PyObject* pop(ByteQueueObj* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, const char* fn,
              bool writable, bool ool_writable) {
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 0, fn, Timeouts::raise, &block, &timeout) < 0) {
    return nullptr;
  }
  return pop_message(self, block, timeout, writable, ool_writable);
}

// get(block=True, timeout=None) -> bytes | ByteMessage (read-only)
PyObject* bq_get(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return pop(as_bq(o), args, nargs, kwnames, "get", false, false);
}
// get_buffer(block=True, timeout=None) -> bytearray | ByteMessage (writable)
PyObject* bq_get_buffer(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return pop(as_bq(o), args, nargs, kwnames, "get_buffer", true, true);
}
// _get_message(block=True, timeout=None) -> bytes | ByteMessage (writable):
// what shmkit.Queue decodes (bytes index fastest; an out-of-line message's
// out-of-band buffers come back writable, zero copy).
PyObject* bq_get_message(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return pop(as_bq(o), args, nargs, kwnames, "_get_message", false, true);
}

// ------------------------------------------------------------- objects
//
// put_obj/get_obj: shmkit.Queue's and SimpleQueue's put and get without a
// Python frame on the way. A `bytes` object is sent as kTagBytes then its
// bytes; anything else as the parts encode(obj) returns. A message that
// starts with kTagPickle (a pickle, protocol 2+) is unpickled here with
// loads; any other goes to decode(msg). Timeouts as multiprocessing's
// (negative: 0).

bool check_codec(ByteQueueObj* self) {
  if (self->encode == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "ByteQueue: set_codec() first");
    return false;
  }
  return true;
}

// set_codec(encode, decode, loads)
PyObject* bq_set_codec(PyObject* o, PyObject* const* args, Py_ssize_t nargs) {
  ByteQueueObj* self = as_bq(o);
  if (nargs < 3 || nargs > 4 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1]) ||
      !PyCallable_Check(args[2])) {
    PyErr_SetString(PyExc_TypeError, "set_codec(encode, decode, loads, encoder=None): three callables");
    return nullptr;
  }
  if (nargs == 4 && !PyCallable_Check(args[3]) && args[3] != Py_None) {
    PyErr_SetString(PyExc_TypeError, "set_codec(): encoder must be callable or None");
    return nullptr;
  }
  Py_XSETREF(self->encode, Py_NewRef(args[0]));
  Py_XSETREF(self->decode, Py_NewRef(args[1]));
  Py_XSETREF(self->loads, Py_NewRef(args[2]));
  Py_XSETREF(self->encoder, nargs == 4 && args[3] != Py_None ? Py_NewRef(args[3]) : nullptr);
  Py_RETURN_NONE;
}

// set_taken(callable or None)
PyObject* bq_set_taken(PyObject* o, PyObject* arg) {
  ByteQueueObj* self = as_bq(o);
  if (arg != Py_None && !PyCallable_Check(arg)) {
    PyErr_Format(PyExc_TypeError, "set_taken(): a callable or None, not %s", Py_TYPE(arg)->tp_name);
    return nullptr;
  }
  Py_XSETREF(self->taken, arg == Py_None ? nullptr : Py_NewRef(arg));
  Py_RETURN_NONE;
}

// A new encoder of the factory, checked; nullptr with an exception set.
PyObject* new_encoder(PyObject* factory) {
  Ref made(PyObject_CallNoArgs(factory));
  if (!made) return nullptr;
  if (!PyTuple_CheckExact(made.get()) || PyTuple_GET_SIZE(made.get()) != 7 ||
      !PyList_CheckExact(PyTuple_GET_ITEM(made.get(), 2)) ||
      !PyList_CheckExact(PyTuple_GET_ITEM(made.get(), 3)) || !PyDict_Check(PyTuple_GET_ITEM(made.get(), 4)) ||
      !PyLong_CheckExact(PyTuple_GET_ITEM(made.get(), 5))) {
    PyErr_SetString(PyExc_TypeError,
                    "set_codec(): the encoder factory must return (dump, clear_memo, chunks (list), buffers "
                    "(list), reducers (dict), len(reducers), finish)");
    return nullptr;
  }
  return made.release();
}

// This thread's encoder of the factory (made on first use, and again when
// ForkingPickler's registered reducers changed since), a new reference;
// nullptr with an exception set.
PyObject* thread_encoder(PyObject* factory) {
  PyObject* td = PyThreadState_GetDict();  // borrowed
  if (td == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "ByteQueue: no thread state dict");
    return nullptr;
  }
  PyObject* enc = PyDict_GetItemWithError(td, factory);  // borrowed
  if (enc == nullptr && PyErr_Occurred()) return nullptr;
  if (enc != nullptr && PyTuple_CheckExact(enc) && PyTuple_GET_SIZE(enc) == 7 &&
      PyDict_Check(PyTuple_GET_ITEM(enc, 4)) && PyLong_CheckExact(PyTuple_GET_ITEM(enc, 5)) &&
      PyLong_AsSsize_t(PyTuple_GET_ITEM(enc, 5)) == PyDict_GET_SIZE(PyTuple_GET_ITEM(enc, 4))) {
    return Py_NewRef(enc);
  }
  PyErr_Clear();
  Ref made(new_encoder(factory));
  if (!made) return nullptr;
  if (PyDict_SetItem(td, factory, made.get()) < 0) return nullptr;
  return made.release();
}

// How many fast_encode calls this thread is inside. A put made while one
// pickles (by a reducer, a __del__, a signal handler) must not share its
// pickler: the pickler's buffer is not its own while a dump runs.
thread_local int t_encoding = 0;

// Resets an encoder after a failure (or what one left): its pickler's memo (clear_memo, when
// given) and its chunks and buffers. The exception pending is set aside
// meanwhile (no Python call may run with one pending; dropping the lists
// may run finalizers) and is what the caller sees.
void reset_encoder(PyObject* clear_memo, PyObject* chunks, PyObject* buffers) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  if (clear_memo != nullptr) Py_XDECREF(PyObject_CallNoArgs(clear_memo));
  (void)PyList_SetSlice(chunks, 0, PY_SSIZE_T_MAX, nullptr);
  (void)PyList_SetSlice(buffers, 0, PY_SSIZE_T_MAX, nullptr);
  PyErr_Clear();
  PyErr_Restore(type, value, tb);
}

// obj's message parts through the thread's encoder (a new one, used once,
// when this thread is already inside fast_encode): its pickler's dump,
// then its chunks (no out-of-band buffers), or finish() (with them). The
// pickler's state is reset whatever happens, and what an earlier call
// left (a finish() that raised) is dropped first, never sent. A new
// reference (a list or a tuple of buffers); nullptr with an exception set.
PyObject* fast_encode(PyObject* factory, PyObject* obj) {
  Ref enc(t_encoding == 0 ? thread_encoder(factory) : new_encoder(factory));
  if (!enc) return nullptr;
  struct Depth {
    Depth() { ++t_encoding; }
    ~Depth() { --t_encoding; }
    Depth(const Depth&) = delete;
    Depth& operator=(const Depth&) = delete;
  } depth;
  PyObject* dump = PyTuple_GET_ITEM(enc.get(), 0);
  PyObject* clear_memo = PyTuple_GET_ITEM(enc.get(), 1);
  PyObject* chunks = PyTuple_GET_ITEM(enc.get(), 2);
  PyObject* buffers = PyTuple_GET_ITEM(enc.get(), 3);
  if (PyList_GET_SIZE(chunks) != 0 || PyList_GET_SIZE(buffers) != 0) reset_encoder(nullptr, chunks, buffers);
  Ref done(PyObject_CallOneArg(dump, obj));  // runs reducers: any Python code
  if (!done) {
    reset_encoder(clear_memo, chunks, buffers);  // the pickling error is what the caller sees
    return nullptr;
  }
  Ref cleared(PyObject_CallNoArgs(clear_memo));
  if (!cleared) {
    reset_encoder(nullptr, chunks, buffers);
    return nullptr;
  }
  if (PyList_GET_SIZE(buffers) != 0) {
    PyObject* parts = PyObject_CallNoArgs(PyTuple_GET_ITEM(enc.get(), 6));
    if (parts == nullptr) reset_encoder(nullptr, chunks, buffers);
    return parts;
  }
  // The chunks, handed over: the list is emptied for the next message.
  Ref parts(PyList_GetSlice(chunks, 0, PY_SSIZE_T_MAX));
  if (!parts || PyList_SetSlice(chunks, 0, PY_SSIZE_T_MAX, nullptr) < 0) {
    reset_encoder(nullptr, chunks, buffers);
    return nullptr;
  }
  return parts.release();
}

// put_obj(obj, block=True, timeout=None)
PyObject* bq_put_obj(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  ByteQueueObj* self = as_bq(o);
  if (nargs < 1) {
    PyErr_SetString(PyExc_TypeError, "put(obj, block=True, timeout=None)");
    return nullptr;
  }
  if (!check_codec(self)) return nullptr;
  static const unsigned char tag_bytes = kTagBytes;
  PyObject* obj = args[0];
  const bool raw = PyBytes_CheckExact(obj);
  if (raw && nargs == 1 && kwnames == nullptr) [[likely]] {
    // put(b): the tag and the bytes, no Parts to set up (the object is
    // held by the caller's frame for the call).
    if (!check_open(self)) return nullptr;
    const auto n = static_cast<std::size_t>(PyBytes_GET_SIZE(obj));
    const std::span<const std::byte> two[2] = {
        {reinterpret_cast<const std::byte*>(&tag_bytes), 1},
        {reinterpret_cast<const std::byte*>(PyBytes_AS_STRING(obj)), n}};
    return put_common(self, two, n + 1, true, -1.0);
  }
  Parts parts;
  // (The parts keep the buffers they acquire alive; `encoded` is kept too.)
  // (The factory is held: encoding runs Python code, which may set another codec.)
  Ref factory(raw || self->encoder == nullptr ? nullptr : Py_NewRef(self->encoder));
  // (So is the encoder, a callable that may set another codec while it runs.)
  Ref encode(raw || factory ? nullptr : Py_NewRef(self->encode));
  Ref encoded(raw       ? nullptr
              : factory ? fast_encode(factory.get(), obj)
                        : PyObject_CallOneArg(encode.get(), obj));
  if (raw) {
    parts.add(&tag_bytes, 1);
    parts.add(PyBytes_AS_STRING(obj), static_cast<std::size_t>(PyBytes_GET_SIZE(obj)));
  } else if (!encoded || parts.acquire(encoded.get()) < 0) {
    return nullptr;
  }
  bool block = true;
  double timeout = -1.0;
  if ((nargs > 1 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 1, "put", Timeouts::clamp, &block, &timeout) < 0) {
    return nullptr;
  }
  if (!check_open(self)) return nullptr;
  return put_common(self, parts.spans(), parts.total(), block, timeout);
}

// get_obj(block=True, timeout=None)
PyObject* bq_get_obj(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  ByteQueueObj* self = as_bq(o);
  if (!check_codec(self)) return nullptr;
  bool block = true;
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_block_timeout(args, nargs, kwnames, 0, "get", Timeouts::clamp, &block, &timeout) < 0) {
    return nullptr;
  }
  // (clamp: block=False is a timeout of 0, a wait that gives up at once.)
  bool stripped = false;
  Ref msg(pop_message(self, block || timeout != 0.0, timeout, false, true, true, &stripped));
  if (!msg) return nullptr;
  // Taken: the taken() callback first (CPython's Queue.get releases its
  // semaphore before unpickling, so a message that fails to unpickle
  // still gives its room back). The callables are held for their calls:
  // Python code may set another codec meanwhile.
  if (self->taken != nullptr) {
    Ref taken(Py_NewRef(self->taken));
    Ref r(PyObject_CallNoArgs(taken.get()));
    if (!r) return nullptr;
  }
  if (stripped) return msg.release();  // a `bytes` object, its tag left in the ring
  if (PyBytes_CheckExact(msg.get()) && PyBytes_GET_SIZE(msg.get()) > 0) {
    const auto* b = reinterpret_cast<const unsigned char*>(PyBytes_AS_STRING(msg.get()));
    if (b[0] == kTagPickle) {
      Ref loads(Py_NewRef(self->loads));
      return PyObject_CallOneArg(loads.get(), msg.get());
    }
    if (b[0] == kTagBytes)
      return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(b) + 1, PyBytes_GET_SIZE(msg.get()) - 1);
  }
  Ref decode(Py_NewRef(self->decode));
  return PyObject_CallOneArg(decode.get(), msg.get());
}

// wait_message(timeout=None) -> bool: whether a message is there, waiting
// for one up to the timeout (0: a snapshot). Takes nothing.
PyObject* bq_wait_message(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  ByteQueueObj* self = as_bq(o);
  double timeout = -1.0;
  if ((nargs != 0 || kwnames != nullptr) &&
      parse_timeout(args, nargs, kwnames, 0, "wait_message", Timeouts::clamp, &timeout) < 0) {
    return nullptr;
  }
  if (!check_open(self)) return nullptr;
  shmkit::ByteQueue* q = self->q;
  if (q->has_message()) Py_RETURN_TRUE;
  if (timeout == 0.0) Py_RETURN_FALSE;
  const Clock::time_point deadline = deadline_for(timeout);
  Waiting guard(self->waiting);
  for (;;) {
    const int w = wait_sliced(deadline, [&, spin = true](Clock::time_point end) mutable {
      return q->wait_message_until(end, std::exchange(spin, false));  // spins in the first slice only
    });
    if (w < 0) return nullptr;
    if (q->has_message()) Py_RETURN_TRUE;
    if (w == 1 && PyErr_CheckSignals() < 0) return nullptr;
    if (w == 0 || Clock::now() >= deadline) Py_RETURN_FALSE;
  }
}

// spin_for_message(timeout, since=None) -> bool: whether a message is
// there, looking for one up to the timeout without ever sleeping in the
// futex (so a producer's push wakes nobody for us): a busy spin for
// kBusySpin, then looks that yield the CPU between them. The busy spin
// counts from `since` (a time.monotonic() reading, the same clock as
// Clock) when given, so a caller that spins in short calls, looking at
// something else between them (Pool.apply, at its result), keeps this one
// policy over the whole spin. The GIL is released in chunks of kSpinChunk,
// with a look for signals (Ctrl-C) between them. For a thread that expects
// a message within microseconds and would rather burn them than pay a
// wake-up; takes nothing.
constexpr auto kBusySpin = std::chrono::microseconds(20);
constexpr auto kSpinChunk = std::chrono::milliseconds(1);
PyObject* bq_spin_for_message(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  ByteQueueObj* self = as_bq(o);
  PyObject* timeout_arg = nargs > 0 ? args[0] : nullptr;
  PyObject* since_arg = nargs > 1 ? args[1] : nullptr;
  if (nargs > 2) {
    PyErr_Format(PyExc_TypeError, "spin_for_message() takes at most 2 arguments (%zd given)", nargs);
    return nullptr;
  }
  for (Py_ssize_t i = 0; kwnames != nullptr && i < PyTuple_GET_SIZE(kwnames); ++i) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, i);
    PyObject** slot = PyUnicode_CompareWithASCIIString(key, "timeout") == 0 ? &timeout_arg
                      : PyUnicode_CompareWithASCIIString(key, "since") == 0 ? &since_arg
                                                                            : nullptr;
    if (slot == nullptr) {
      PyErr_Format(PyExc_TypeError, "spin_for_message() got an unexpected keyword argument '%U'", key);
      return nullptr;
    }
    if (*slot != nullptr) {
      PyErr_Format(PyExc_TypeError, "spin_for_message() got multiple values for argument '%U'", key);
      return nullptr;
    }
    *slot = args[nargs + i];
  }
  // (Conversions run Python code: the queue is checked open after them.)
  double timeout = -1.0;  // negative or NaN: 0, one look (SemLock's clamp)
  if (timeout_from(timeout_arg, Timeouts::clamp, &timeout) < 0) return nullptr;
  if (timeout < 0.0) {
    PyErr_SetString(PyExc_ValueError, "spin_for_message needs a timeout (it never sleeps)");
    return nullptr;
  }
  double since = -1.0;
  if (since_arg != nullptr && since_arg != Py_None) {
    since = PyFloat_AsDouble(since_arg);
    if (since == -1.0 && PyErr_Occurred()) return nullptr;
    if (!std::isfinite(since)) {
      PyErr_SetString(PyExc_ValueError, "spin_for_message: 'since' must be a time.monotonic() reading");
      return nullptr;
    }
  }
  if (!check_open(self)) return nullptr;
  shmkit::ByteQueue* q = self->q;
  if (q->has_message()) Py_RETURN_TRUE;
  Clock::time_point start = Clock::now();
  if (since_arg != nullptr && since_arg != Py_None) {
    // A reading from before the clock's start is simply long ago; one in
    // the future is now (the busy spin never lasts longer than kBusySpin).
    const std::chrono::duration<double> ago = start.time_since_epoch() - std::chrono::duration<double>(since);
    if (ago >= kBusySpin) {
      start -= kBusySpin;
    } else if (ago.count() > 0.0) {
      start -= std::chrono::duration_cast<Clock::duration>(ago);
    }
  }
  const Clock::time_point deadline = deadline_for(timeout);
  Waiting guard(self->waiting);
  for (;;) {
    const Clock::time_point chunk_end = std::min(deadline, Clock::now() + kSpinChunk);
    const bool found = without_gil([&]() noexcept {
      for (;;) {
        // One pause between looks (a PAUSE is tens of cycles on some
        // CPUs), the clock read every 32 looks.
        for (int i = 0; i < 32; ++i) {
          if (q->has_message()) return true;
          shmkit::lockfree_detail::cpu_relax();
        }
        const Clock::time_point now = Clock::now();
        if (now >= chunk_end) return false;
        if (now - start >= kBusySpin) ::sched_yield();
      }
    });
    if (found) Py_RETURN_TRUE;
    if (PyErr_CheckSignals() < 0) return nullptr;
    if (Clock::now() >= deadline) Py_RETURN_FALSE;
  }
}

// ------------------------------------------------------------- the rest

PyObject* bq_empty(PyObject* o, PyObject*) {
  ByteQueueObj* self = as_bq(o);
  if (!check_open(self)) return nullptr;
  return PyBool_FromLong(!self->q->has_message());
}
PyObject* bq_size(PyObject* o, PyObject*) {
  ByteQueueObj* self = as_bq(o);
  if (!check_open(self)) return nullptr;
  return PyLong_FromUnsignedLongLong(self->q->size());
}
PyObject* bq_unblock(PyObject* o, PyObject*) {
  ByteQueueObj* self = as_bq(o);
  if (!check_open(self)) return nullptr;
  shmkit::ByteQueue* q = self->q;
  shmkit::ByteUnblock r;
  {
    Waiting guard(self->waiting);  // it may read /proc
    Py_BEGIN_ALLOW_THREADS r = q->unblock();
    Py_END_ALLOW_THREADS
  }
  switch (r) {
    case shmkit::ByteUnblock::skipped_producer:
      return PyUnicode_FromString("skipped_producer");
    case shmkit::ByteUnblock::released_consumer:
      return PyUnicode_FromString("released_consumer");
    default:
      return PyUnicode_FromString("none");
  }
}
PyObject* bq_fileno(PyObject* o, PyObject*) {
  ByteQueueObj* self = as_bq(o);
  if (!check_open(self)) return nullptr;
  try {
    const int fd = self->q->doorbell_fd();
    self->bell = true;
    return PyLong_FromLong(fd);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}
PyObject* bq_settle(PyObject* o, PyObject*) {
  ByteQueueObj* self = as_bq(o);
  if (!check_open(self)) return nullptr;
  self->q->settle_doorbell();
  Py_RETURN_NONE;
}
PyObject* bq_drop_blocks(PyObject* o, PyObject*) {
  ByteQueueObj* self = as_bq(o);
  if (self->q != nullptr) self->q->drop_out_of_line_blocks();  // a no-op once closed (finalizers)
  Py_RETURN_NONE;
}
PyObject* bq_keep_blocks(PyObject* o, PyObject* arg) {
  ByteQueueObj* self = as_bq(o);
  if (!PyLong_Check(arg)) {  // an int: converting it runs no Python code
    PyErr_Format(PyExc_TypeError, "keep_out_of_line_blocks() takes an int, not %.100s",
                 Py_TYPE(arg)->tp_name);
    return nullptr;
  }
  const unsigned long n = PyLong_AsUnsignedLong(arg);
  if (n == static_cast<unsigned long>(-1) && PyErr_Occurred()) return nullptr;
  if (n > 64) {
    PyErr_SetString(PyExc_ValueError, "keep_out_of_line_blocks(): at most 64 blocks");
    return nullptr;
  }
  if (!check_open(self)) return nullptr;
  try {
    self->q->keep_out_of_line_blocks(static_cast<unsigned>(n));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}
PyObject* bq_close(PyObject* o, PyObject*) {
  ByteQueueObj* self = as_bq(o);
  if (self->waiting.live() > 0) {
    PyErr_SetString(PyExc_RuntimeError, "cannot close a ByteQueue while other threads wait on it");
    return nullptr;
  }
  delete std::exchange(self->q, nullptr);
  Py_RETURN_NONE;
}
PyObject* bq_unlink(PyObject* o, PyObject*) {
  ByteQueueObj* self = as_bq(o);
  try {
    shmkit::ByteQueue::unlink(*self->name);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}
PyObject* bq_enter(PyObject* o, PyObject*) { return Py_NewRef(o); }
PyObject* bq_exit(PyObject* o, PyObject*) { return bq_close(o, nullptr); }

PyObject* bq_get_name(PyObject* o, void*) { return PyUnicode_FromString(as_bq(o)->name->c_str()); }
PyObject* bq_get_max_inline(PyObject* o, void*) {
  ByteQueueObj* self = as_bq(o);
  if (!check_open(self)) return nullptr;
  return PyLong_FromSize_t(self->q->max_inline());
}
PyObject* bq_get_ring_bytes(PyObject* o, void*) {
  ByteQueueObj* self = as_bq(o);
  if (!check_open(self)) return nullptr;
  return PyLong_FromSize_t(self->q->ring_bytes());
}
PyObject* bq_get_threshold(PyObject* o, void*) {
  ByteQueueObj* self = as_bq(o);
  if (!check_open(self)) return nullptr;
  return PyLong_FromSize_t(self->q->out_of_line_threshold());
}
PyObject* bq_get_losses(PyObject* o, void*) {
  ByteQueueObj* self = as_bq(o);
  if (!check_open(self)) return nullptr;
  const shmkit::ByteQueueLosses l = self->q->losses();
  return Py_BuildValue("{sKsKsK}", "producer_claims_skipped",
                       static_cast<unsigned long long>(l.producer_claims_skipped), "consumer_claims_released",
                       static_cast<unsigned long long>(l.consumer_claims_released), "corrupt_records",
                       static_cast<unsigned long long>(l.corrupt_records));
}
PyObject* bq_get_closed(PyObject* o, void*) { return PyBool_FromLong(as_bq(o)->q == nullptr); }
PyObject* bq_get_waiting(PyObject* o, void*) { return PyLong_FromSsize_t(as_bq(o)->waiting.live()); }
PyObject* bq_get_used(PyObject* o, void*) { return PyBool_FromLong(as_bq(o)->used); }

// The codec's callables may refer back to the handle (a bound method of
// an object that holds it): the handle is a GC type, so such a cycle is
// collected.
int bq_traverse(PyObject* o, visitproc visit, void* arg) {
  ByteQueueObj* self = as_bq(o);
  Py_VISIT(Py_TYPE(o));
  Py_VISIT(self->encode);
  Py_VISIT(self->encoder);
  Py_VISIT(self->decode);
  Py_VISIT(self->loads);
  Py_VISIT(self->taken);
  return 0;
}
int bq_clear(PyObject* o) {
  ByteQueueObj* self = as_bq(o);
  Py_CLEAR(self->encode);
  Py_CLEAR(self->encoder);
  Py_CLEAR(self->decode);
  Py_CLEAR(self->loads);
  Py_CLEAR(self->taken);
  return 0;
}

void bq_dealloc(PyObject* o) {
  ByteQueueObj* self = as_bq(o);
  PyObject_GC_UnTrack(o);
  if (self->weakrefs != nullptr) PyObject_ClearWeakRefs(o);
  delete self->q;
  delete self->name;
  (void)bq_clear(o);
  free_object(o);
}

PyObject* wrap(PyTypeObject* type, shmkit::ByteQueue&& q) {
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) return nullptr;
  ByteQueueObj* self = as_bq(o);
  self->q = nullptr;
  self->name = nullptr;
  self->weakrefs = nullptr;
  self->waiting = WaitCount{0, fork_generation()};
  self->bell = false;
  self->encode = nullptr;
  self->encoder = nullptr;
  self->decode = nullptr;
  self->loads = nullptr;
  self->taken = nullptr;
  try {
    self->name = new std::string(q.name());
    self->q = new shmkit::ByteQueue(std::move(q));
  } catch (...) {
    translate_exception();
    Py_DECREF(o);
    return nullptr;
  }
  return o;
}

template <class O>
void set_track(O& options, bool track) {
  if constexpr (requires { options.track; }) options.track = track;
}

// ByteQueue.create(name, ring_bytes, out_of_line_threshold=0, track=True)
PyObject* bq_create(PyObject* cls, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"name", "ring_bytes", "out_of_line_threshold", "track", nullptr};
  const char* name = nullptr;
  Py_ssize_t ring = 0, threshold = 0;
  int track = 1;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "sn|np", const_cast<char**>(kwlist), &name, &ring, &threshold,
                                   &track)) {
    return nullptr;
  }
  if (ring <= 0 || threshold < 0) {
    PyErr_SetString(PyExc_ValueError, "ring_bytes must be > 0 and out_of_line_threshold >= 0");
    return nullptr;
  }
  std::optional<shmkit::ByteQueue> q;
  try {
    shmkit::ByteQueue::Options options;
    options.out_of_line_threshold = static_cast<std::size_t>(threshold);
    set_track(options, track != 0);
    std::string n = name;
    without_gil([&] { q.emplace(shmkit::ByteQueue::create(n, static_cast<std::size_t>(ring), options)); });
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  return wrap(reinterpret_cast<PyTypeObject*>(cls), std::move(*q));
}

// ByteQueue.attach(name)
PyObject* bq_attach(PyObject* cls, PyObject* arg) {
  if (!PyUnicode_Check(arg)) {
    PyErr_Format(PyExc_TypeError, "name must be str, not %s", Py_TYPE(arg)->tp_name);
    return nullptr;
  }
  Py_ssize_t len = 0;
  const char* s = PyUnicode_AsUTF8AndSize(arg, &len);
  if (s == nullptr) return nullptr;
  std::optional<shmkit::ByteQueue> q;
  try {
    std::string n(s, static_cast<std::size_t>(len));
    without_gil([&] { q.emplace(shmkit::ByteQueue::attach(n)); });
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  return wrap(reinterpret_cast<PyTypeObject*>(cls), std::move(*q));
}

#define fastcall(f) fastcall(f)

PyMethodDef bq_methods[] = {
    {"create", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(bq_create)),
     METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "create($type, /, name, ring_bytes, out_of_line_threshold=0, track=True)\n--\n\nA new queue block: "
     "ring_bytes "
     "a power of two >= 1024; messages longer than the threshold (0: than max_inline) travel out of line."},
    {"attach", bq_attach, METH_O | METH_CLASS, "attach($type, name, /)\n--\n\nThe queue block `name`."},
    {"put_parts", fastcall(bq_put_parts), METH_FASTCALL | METH_KEYWORDS,
     "put_parts($self, parts, /, block=True, timeout=None)\n--\n\nOne message made of the buffers in "
     "`parts`; queue.Full if it does not fit in time."},
    {"get", fastcall(bq_get), METH_FASTCALL | METH_KEYWORDS,
     "get($self, /, block=True, timeout=None)\n--\n\nbytes, or a read-only ByteMessage for an out-of-line "
     "message; queue.Empty if nothing comes in time."},
    {"get_buffer", fastcall(bq_get_buffer), METH_FASTCALL | METH_KEYWORDS,
     "get_buffer($self, /, block=True, timeout=None)\n--\n\nAs get(), writable: a bytearray, or a "
     "writable ByteMessage."},
    {"_get_message", fastcall(bq_get_message), METH_FASTCALL | METH_KEYWORDS,
     "_get_message($self, /, block=True, timeout=None)\n--\n\nbytes, or a writable ByteMessage."},
    {"set_codec", fastcall(bq_set_codec), METH_FASTCALL,
     "set_codec($self, encode, decode, loads, encoder=None, /)\n--\n\nThe codec of put_obj/get_obj; "
     "encoder: a factory of the per-thread pickler put_obj drives itself (the one encode uses)."},
    {"set_taken", bq_set_taken, METH_O,
     "set_taken($self, taken, /)\n--\n\nA callable (or None) get_obj calls once it has taken a message, "
     "before decoding it (a bounded Queue's semaphore release)."},
    {"put_obj", fastcall(bq_put_obj), METH_FASTCALL | METH_KEYWORDS,
     "put_obj($self, obj, /, block=True, timeout=None)\n--\n\nOne object (bytes as they are, others "
     "through encode); queue.Full."},
    {"get_obj", fastcall(bq_get_obj), METH_FASTCALL | METH_KEYWORDS,
     "get_obj($self, /, block=True, timeout=None)\n--\n\nOne object (pickles unpickled with loads, "
     "others through decode); queue.Empty."},
    {"spin_for_message", fastcall(bq_spin_for_message), METH_FASTCALL | METH_KEYWORDS,
     "spin_for_message($self, /, timeout, since=None)\n--\n\nWhether a message is there, looking for one "
     "up to timeout seconds by spinning (busy for 20 us from `since`, a time.monotonic() reading, or from "
     "the call; then yielding the CPU between looks), never sleeping; takes nothing."},
    {"wait_message", fastcall(bq_wait_message), METH_FASTCALL | METH_KEYWORDS,
     "wait_message($self, /, timeout=None)\n--\n\nWhether a message is there, waiting up to timeout; "
     "takes nothing."},
    {"empty", bq_empty, METH_NOARGS,
     "empty($self, /)\n--\n\nTrue if no published message is there (a "
     "snapshot)."},
    {"size", bq_size, METH_NOARGS,
     "size($self, /)\n--\n\nRecords between head and tail (being written and read included), a snapshot."},
    {"unblock", bq_unblock, METH_NOARGS,
     "unblock($self, /)\n--\n\nSteps over one claim of a dead process: 'none', 'skipped_producer' or "
     "'released_consumer'."},
    {"fileno", bq_fileno, METH_NOARGS,
     "fileno($self, /)\n--\n\nThe doorbell descriptor: readable while a message may be there."},
    {"settle", bq_settle, METH_NOARGS,
     "settle($self, /)\n--\n\nDrains the doorbell, ringing it again if a message is there."},
    {"keep_out_of_line_blocks", bq_keep_blocks, METH_O,
     "keep_out_of_line_blocks($self, blocks, /)\n--\n\nHow many out-of-line blocks this handle keeps for "
     "reuse (default 2; 0: a block per message)."},
    {"drop_out_of_line_blocks", bq_drop_blocks, METH_NOARGS,
     "drop_out_of_line_blocks($self, /)\n--\n\nUnlinks the kept out-of-line blocks (a queued one is left to "
     "its consumer). close() does it; a no-op on a closed handle."},
    {"close", bq_close, METH_NOARGS, "close($self, /)\n--\n\nUnmaps the queue (this handle only)."},
    {"unlink", bq_unlink, METH_NOARGS,
     "unlink($self, /)\n--\n\nRemoves the block, its doorbell and any out-of-line block left behind."},
    {"__enter__", bq_enter, METH_NOARGS, "__enter__($self, /)\n--\n\n"},
    {"__exit__", bq_exit, METH_VARARGS, "__exit__($self, /, *args)\n--\n\nclose()."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef bq_getset[] = {
    {"name", bq_get_name, nullptr, nullptr, nullptr},
    {"max_inline", bq_get_max_inline, nullptr, "The longest message that travels in the ring.", nullptr},
    {"ring_bytes", bq_get_ring_bytes, nullptr, nullptr, nullptr},
    {"out_of_line_threshold", bq_get_threshold, nullptr, "Longer messages travel out of line.", nullptr},
    {"losses", bq_get_losses, nullptr, "What survivors stepped over (a dict of counters).", nullptr},
    {"closed", bq_get_closed, nullptr, nullptr, nullptr},
    {"used", bq_get_used, nullptr, "Whether a put through this handle succeeded.", nullptr},
    {"_waiting", bq_get_waiting, nullptr, "Calls of this handle running without the GIL.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMemberDef bq_members[] = {SHMKIT_WEAKLIST_MEMBER(ByteQueueObj, weakrefs), {nullptr, 0, 0, 0, nullptr}};

}  // namespace

// unlink_byte_queue(name)
PyObject* py_unlink_byte_queue(PyObject*, PyObject* arg) {
  if (!PyUnicode_Check(arg)) {
    PyErr_Format(PyExc_TypeError, "name must be str, not %s", Py_TYPE(arg)->tp_name);
    return nullptr;
  }
  Py_ssize_t len = 0;
  const char* s = PyUnicode_AsUTF8AndSize(arg, &len);
  if (s == nullptr) return nullptr;
  try {
    shmkit::ByteQueue::unlink(std::string_view(s, static_cast<std::size_t>(len)));
  } catch (...) {
    translate_exception();
    return nullptr;
  }
  Py_RETURN_NONE;
}

bool add_byte_queue_type(PyObject* m) {
  PyType_Slot mslots[] = {
      {Py_tp_dealloc, reinterpret_cast<void*>(message_dealloc)},
      {Py_tp_methods, message_methods},
      {Py_tp_getset, message_getset},
      {Py_sq_length, reinterpret_cast<void*>(message_len)},
      {Py_tp_doc, const_cast<char*>("An out-of-line message popped from a ByteQueue: its mapping (buffer "
                                    "protocol, zero copy), unmapped when the last reference goes.")},
      {0, nullptr},
  };
  PyType_Spec mspec = {"shmkit._queues.ByteMessage", sizeof(MessageObj), 0, kMadeHere, mslots};
  message_type = add_type(m, mspec, "ByteMessage", &message_buffer);
  if (message_type == nullptr) return false;
  PyType_Slot slots[] = {
      {Py_tp_dealloc, reinterpret_cast<void*>(bq_dealloc)},
      {Py_tp_traverse, reinterpret_cast<void*>(bq_traverse)},
      {Py_tp_clear, reinterpret_cast<void*>(bq_clear)},
      {Py_tp_methods, bq_methods},
      {Py_tp_getset, bq_getset},
      {Py_tp_members, bq_members},
      {Py_tp_doc, const_cast<char*>("A shmkit ByteQueue block: byte messages of any length, any number of "
                                    "producers and consumers (ByteQueue.create / ByteQueue.attach).")},
      {0, nullptr},
  };
  PyType_Spec spec = {"shmkit._queues.ByteQueue", sizeof(ByteQueueObj), 0, kMadeHere | Py_TPFLAGS_HAVE_GC,
                      slots};
  byte_queue_type = add_type(m, spec, "ByteQueue");
  return byte_queue_type != nullptr;
}

}  // namespace shmkit::python::queues
