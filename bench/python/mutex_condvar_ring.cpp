// The bench's model of today's shared-memory drop-ins for
// multiprocessing.Queue: one circular byte buffer in shared memory, guarded by
// a process-shared pthread mutex, with two process-shared condition variables
// (not empty, not full); each message is an 8-byte length and its bytes,
// wrapping around the end of the buffer. Built only for the benchmarks (module
// _mutex_condvar_ring, next to bench_python); it is a baseline, not a product.
//
// Contract:
//   * Ring(capacity) maps an anonymous MAP_SHARED region: the ring is shared
//     with processes forked after it was made (fork only; it has no name).
//   * put(data, block=True, timeout=None): data is any C-contiguous buffer;
//     raises ValueError when 8 + len(data) exceeds the capacity, queue.Full
//     when no room came in time. put_parts(parts, ...) writes one message
//     gathered from up to 64 buffers (what shmkit.Queue's encoder returns).
//   * get(block=True, timeout=None) -> bytes; raises queue.Empty likewise.
//   * Both release the GIL for all their work on the ring (locking, waiting,
//     copying), as the Cython drop-ins do; the message is copied into a
//     per-process scratch buffer under the lock and turned into bytes after.
//   * Wake-ups: one pthread_cond_signal per message put (not_empty) and per
//     message taken (not_full), as the drop-ins do; enough when messages are
//     of one size (the bench's case).
//   * Progress: blocking. A process that dies holding the mutex wedges the
//     ring (no robust mutex: the model's design does not have one).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

struct RingHeader {
  pthread_mutex_t mutex;
  pthread_cond_t not_empty;
  pthread_cond_t not_full;
  std::uint64_t capacity;  // bytes of the data area after the header
  std::uint64_t head;      // bytes read so far (the read offset is head % capacity)
  std::uint64_t tail;      // bytes written so far
  std::uint64_t messages;  // messages in the ring
};

constexpr std::size_t kLen = sizeof(std::uint64_t);
constexpr std::size_t kDataOffset = (sizeof(RingHeader) + 63) & ~std::size_t{63};

PyObject* g_full = nullptr;
PyObject* g_empty = nullptr;

struct Ring {
  PyObject_HEAD RingHeader* hdr;
  std::size_t map_size;
  char* scratch;  // this process's copy of the last message taken
  std::size_t scratch_size;
};

char* data_of(RingHeader* h) noexcept { return reinterpret_cast<char*>(h) + kDataOffset; }

void copy_in(RingHeader* h, std::uint64_t pos, const char* src, std::size_t n) noexcept {
  std::size_t off = static_cast<std::size_t>(pos % h->capacity);
  std::size_t first = n < h->capacity - off ? n : static_cast<std::size_t>(h->capacity - off);
  std::memcpy(data_of(h) + off, src, first);
  std::memcpy(data_of(h), src + first, n - first);
}

void copy_out(RingHeader* h, std::uint64_t pos, char* dst, std::size_t n) noexcept {
  std::size_t off = static_cast<std::size_t>(pos % h->capacity);
  std::size_t first = n < h->capacity - off ? n : static_cast<std::size_t>(h->capacity - off);
  std::memcpy(dst, data_of(h) + off, first);
  std::memcpy(dst + first, data_of(h), n - first);
}

// timeout: None or a number of seconds. Fills *deadline (CLOCK_MONOTONIC)
// and *timed; -1 with an exception set on a bad value.
int parse_timeout(PyObject* timeout, bool* timed, timespec* deadline) {
  *timed = false;
  if (timeout == nullptr || timeout == Py_None) return 0;
  double s = PyFloat_AsDouble(timeout);
  if (s == -1.0 && PyErr_Occurred()) return -1;
  if (s < 0) s = 0;
  clock_gettime(CLOCK_MONOTONIC, deadline);
  auto whole = static_cast<time_t>(s);
  long ns = deadline->tv_nsec + static_cast<long>((s - static_cast<double>(whole)) * 1e9);
  deadline->tv_sec += whole + ns / 1000000000L;
  deadline->tv_nsec = ns % 1000000000L;
  *timed = true;
  return 0;
}

// Waits on cv with the mutex held; false when the deadline passed.
bool wait_on(pthread_cond_t* cv, pthread_mutex_t* m, bool block, bool timed, const timespec* deadline) {
  if (!block) return false;
  if (!timed) {
    pthread_cond_wait(cv, m);
    return true;
  }
  return pthread_cond_timedwait(cv, m, deadline) != ETIMEDOUT;
}

int Ring_init(Ring* self, PyObject* args, PyObject* kwds) {
  static const char* kw[] = {"capacity", nullptr};
  Py_ssize_t capacity = 1 << 20;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n", const_cast<char**>(kw), &capacity)) return -1;
  if (capacity < 64) {
    PyErr_SetString(PyExc_ValueError, "Ring: capacity must be at least 64 bytes");
    return -1;
  }
  if (self->hdr != nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "Ring: already initialised");
    return -1;
  }
  std::size_t size = kDataOffset + static_cast<std::size_t>(capacity);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
  }
  auto* h = static_cast<RingHeader*>(p);
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  pthread_mutex_init(&h->mutex, &ma);
  pthread_mutexattr_destroy(&ma);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&h->not_empty, &ca);
  pthread_cond_init(&h->not_full, &ca);
  pthread_condattr_destroy(&ca);
  h->capacity = static_cast<std::uint64_t>(capacity);
  h->head = h->tail = h->messages = 0;
  self->hdr = h;
  self->map_size = size;
  return 0;
}

void Ring_dealloc(Ring* self) {
  if (self->hdr != nullptr) munmap(self->hdr, self->map_size);
  std::free(self->scratch);
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(reinterpret_cast<PyObject*>(self));
  Py_DECREF(type);  // a heap type: each instance holds a reference
}

bool ready(Ring* self) {
  if (self->hdr == nullptr) {
    PyErr_SetString(PyExc_ValueError, "Ring: not initialised");
    return false;
  }
  return true;
}

// Appends one message made of parts[0..count) (released here), waiting for
// room as block/timeout say.
PyObject* write_message(Ring* self, Py_buffer* parts, std::size_t count, int block, PyObject* timeout) {
  RingHeader* h = self->hdr;
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < count; ++i) n += static_cast<std::uint64_t>(parts[i].len);
  auto release = [&] {
    for (std::size_t i = 0; i < count; ++i) PyBuffer_Release(&parts[i]);
  };
  if (n + kLen > h->capacity) {
    release();
    PyErr_SetString(PyExc_ValueError, "Ring.put: message larger than the ring");
    return nullptr;
  }
  bool timed;
  timespec deadline{};
  if (parse_timeout(timeout, &timed, &deadline) < 0) {
    release();
    return nullptr;
  }
  bool ok = true;
  Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&h->mutex);
  while (h->capacity - (h->tail - h->head) < n + kLen) {
    if (!wait_on(&h->not_full, &h->mutex, block, timed, &deadline)) {
      ok = h->capacity - (h->tail - h->head) >= n + kLen;
      break;
    }
  }
  if (ok) {
    std::uint64_t pos = h->tail;
    copy_in(h, pos, reinterpret_cast<const char*>(&n), kLen);
    pos += kLen;
    for (std::size_t i = 0; i < count; ++i) {
      copy_in(h, pos, static_cast<const char*>(parts[i].buf), static_cast<std::size_t>(parts[i].len));
      pos += static_cast<std::uint64_t>(parts[i].len);
    }
    h->tail = pos;
    ++h->messages;
    pthread_cond_signal(&h->not_empty);
  }
  pthread_mutex_unlock(&h->mutex);
  Py_END_ALLOW_THREADS release();
  if (!ok) {
    PyErr_SetNone(g_full);
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* Ring_put(Ring* self, PyObject* args, PyObject* kwds) {
  static const char* kw[] = {"data", "block", "timeout", nullptr};
  Py_buffer buf;
  int block = 1;
  PyObject* timeout = Py_None;
  if (!ready(self)) return nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*|pO", const_cast<char**>(kw), &buf, &block, &timeout))
    return nullptr;
  return write_message(self, &buf, 1, block, timeout);
}

// put_parts(parts, block=True, timeout=None): one message, the parts (a
// sequence of bytes-like objects) gathered into the ring in order.
PyObject* Ring_put_parts(Ring* self, PyObject* args, PyObject* kwds) {
  static const char* kw[] = {"parts", "block", "timeout", nullptr};
  PyObject* seq_arg;
  int block = 1;
  PyObject* timeout = Py_None;
  if (!ready(self)) return nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|pO", const_cast<char**>(kw), &seq_arg, &block, &timeout))
    return nullptr;
  PyObject* seq = PySequence_Fast(seq_arg, "Ring.put_parts: parts must be a sequence");
  if (seq == nullptr) return nullptr;
  Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
  constexpr Py_ssize_t kMaxParts = 64;
  if (count > kMaxParts) {
    Py_DECREF(seq);
    PyErr_SetString(PyExc_ValueError, "Ring.put_parts: at most 64 parts");
    return nullptr;
  }
  Py_buffer parts[kMaxParts];
  PyObject** items = PySequence_Fast_ITEMS(seq);
  for (Py_ssize_t i = 0; i < count; ++i) {
    if (PyObject_GetBuffer(items[i], &parts[i], PyBUF_SIMPLE) < 0) {
      for (Py_ssize_t j = 0; j < i; ++j) PyBuffer_Release(&parts[j]);
      Py_DECREF(seq);
      return nullptr;
    }
  }
  PyObject* r = write_message(self, parts, static_cast<std::size_t>(count), block, timeout);
  Py_DECREF(seq);
  return r;
}

PyObject* Ring_get(Ring* self, PyObject* args, PyObject* kwds) {
  static const char* kw[] = {"block", "timeout", nullptr};
  int block = 1;
  PyObject* timeout = Py_None;
  if (!ready(self)) return nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pO", const_cast<char**>(kw), &block, &timeout))
    return nullptr;
  bool timed;
  timespec deadline{};
  if (parse_timeout(timeout, &timed, &deadline) < 0) return nullptr;
  RingHeader* h = self->hdr;
  bool ok = true, nomem = false;
  std::uint64_t n = 0;
  Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&h->mutex);
  while (h->messages == 0) {
    if (!wait_on(&h->not_empty, &h->mutex, block, timed, &deadline)) {
      ok = h->messages != 0;
      break;
    }
  }
  if (ok) {
    copy_out(h, h->head, reinterpret_cast<char*>(&n), kLen);
    if (n > self->scratch_size) {
      void* grown = std::realloc(self->scratch, static_cast<std::size_t>(n));
      if (grown == nullptr) {
        nomem = true;
      } else {
        self->scratch = static_cast<char*>(grown);
        self->scratch_size = static_cast<std::size_t>(n);
      }
    }
    if (!nomem) {
      copy_out(h, h->head + kLen, self->scratch, static_cast<std::size_t>(n));
      h->head += n + kLen;
      --h->messages;
      pthread_cond_signal(&h->not_full);
    }
  }
  pthread_mutex_unlock(&h->mutex);
  Py_END_ALLOW_THREADS if (nomem) return PyErr_NoMemory();
  if (!ok) {
    PyErr_SetNone(g_empty);
    return nullptr;
  }
  return PyBytes_FromStringAndSize(self->scratch, static_cast<Py_ssize_t>(n));
}

PyObject* Ring_qsize(Ring* self, PyObject*) {
  if (!ready(self)) return nullptr;
  std::uint64_t m;
  Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->hdr->mutex);
  m = self->hdr->messages;
  pthread_mutex_unlock(&self->hdr->mutex);
  Py_END_ALLOW_THREADS return PyLong_FromUnsignedLongLong(m);
}

PyMethodDef ring_methods[] = {
    {"put", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Ring_put)),
     METH_VARARGS | METH_KEYWORDS,
     "put(data, block=True, timeout=None): append one message (a bytes-like object)"},
    {"put_parts", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Ring_put_parts)),
     METH_VARARGS | METH_KEYWORDS,
     "put_parts(parts, block=True, timeout=None): append one message gathered from bytes-like parts"},
    {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Ring_get)),
     METH_VARARGS | METH_KEYWORDS, "get(block=True, timeout=None) -> bytes: take the oldest message"},
    {"qsize", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Ring_qsize)), METH_NOARGS,
     "messages in the ring"},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot ring_slots[] = {
    {Py_tp_doc, const_cast<char*>(
                    "Ring(capacity=1 MiB): a byte ring in a MAP_SHARED region, shared with forked children")},
    {Py_tp_init, reinterpret_cast<void*>(Ring_init)},
    {Py_tp_dealloc, reinterpret_cast<void*>(Ring_dealloc)},
    {Py_tp_methods, ring_methods},
    {0, nullptr},
};

PyType_Spec ring_spec = {"_mutex_condvar_ring.Ring", sizeof(Ring), 0, Py_TPFLAGS_DEFAULT, ring_slots};

PyModuleDef ring_module = {PyModuleDef_HEAD_INIT,
                           "_mutex_condvar_ring",
                           "A mutex+condvar shared-memory byte ring (a benchmark baseline).",
                           -1,
                           nullptr,
                           nullptr,
                           nullptr,
                           nullptr,
                           nullptr};

}  // namespace

extern "C" PyMODINIT_FUNC PyInit__mutex_condvar_ring() {
  PyObject* queue_mod = PyImport_ImportModule("queue");
  if (queue_mod == nullptr) return nullptr;
  g_full = PyObject_GetAttrString(queue_mod, "Full");
  g_empty = PyObject_GetAttrString(queue_mod, "Empty");
  Py_DECREF(queue_mod);
  if (g_full == nullptr || g_empty == nullptr) return nullptr;
  PyObject* m = PyModule_Create(&ring_module);
  if (m == nullptr) return nullptr;
  PyObject* type = PyType_FromSpec(&ring_spec);
  if (type == nullptr || PyModule_AddObject(m, "Ring", type) < 0) {
    Py_XDECREF(type);
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
