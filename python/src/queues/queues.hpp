// python/src/queues/queues.hpp — what the files of shmkit._queues share
// (private to the module): the tables of C++ instantiations (Ops for the
// queues, WordOps for SeqLock and BroadcastRing), the codec every object
// type starts with, the objects other files reach into, and each type
// file's entry point. The contract of the module is in module.cpp.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/args.hpp"
#include "common/errors.hpp"
#include "common/gil.hpp"
#include "common/types.hpp"
#include "shmkit/typed_block.hpp"

// The object structs extend CodecHead (single inheritance, no virtuals):
// offsetof of their weakref slot is what GCC computes for any such struct.
#pragma GCC diagnostic ignored "-Winvalid-offsetof"

namespace shmkit::python::queues {

extern PyObject* g_full;    // queue.Full
extern PyObject* g_empty;   // queue.Empty
extern PyObject* g_lapped;  // shmkit._queues.Lapped

// ------------------------------------------------- the instantiations

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

// The Ops of item size n, or nullptr (ring_ops.cpp).
const Ops* find_ops(std::size_t n);
// [the item sizes a queue may have]
PyObject* supported_sizes();

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
  void* (*bcreate)(std::string_view name, std::uint64_t capacity, const shmkit::TypeFingerprint& f,
                   bool track);
  void* (*battach)(std::string_view name, const shmkit::TypeFingerprint& f);
  void (*bdestroy)(void*);
  void (*push)(void*, const void*);
  std::uint64_t (*write_index)(void*);
  std::uint64_t (*capacity)(void*);
  const std::string& (*bname)(void*);
  void (*bunlink)(void*);
  void* (*reader_at)(void* ring, std::uint64_t cursor);
  void (*reader_destroy)(void*);
  int (*read)(void* reader, void* out, std::uint64_t* lost,
              Clock::time_point deadline);  // 0 ok 1 empty 2 lapped
  std::uint64_t (*cursor)(void*);
  std::uint64_t (*backlog)(void*);
};

// The WordOps of an item of `item` bytes, or nullptr (word_ops.cpp).
const WordOps* find_word_ops(Py_ssize_t item);

// ------------------------------------------------------------ the codec

// How an object converts Python items to bytes and back: the head of every
// object type of this module.
struct CodecHead {
  PyObject_HEAD char mode;  // 's' scalar, 't' tuple (struct), 'y' bounded bytes, 'r' raw
  char code;                // mode 's': the typecode
  Py_ssize_t item;
  Py_ssize_t maxbytes;  // mode 'y'
  PyObject* st;         // mode 't': a struct.Struct
};

// The bytes of one mode-'s' item of typecode `c` (0: not a scalar typecode).
Py_ssize_t scalar_size(char c);
// Packs `obj` into one item at `dst` (item bytes). 0 or -1 with an exception.
int pack_item(CodecHead* self, PyObject* obj, unsigned char* dst);
PyObject* unpack_item(CodecHead* self, const unsigned char* src);
// Fills the codec and the fingerprint from the Python description of an
// item; -1 with an exception.
int init_codec(CodecHead* c, Py_ssize_t item, Py_ssize_t align, const char* typecode, const char* type_name,
               const char* mode, Py_ssize_t maxbytes, PyObject* st, shmkit::TypeFingerprint* f);

// init_codec, then the WordOps of the item (SeqLock, BroadcastRing);
// nullptr with an exception.
const WordOps* init_word_codec(CodecHead* c, Py_ssize_t item, Py_ssize_t align, const char* typecode,
                               const char* type_name, const char* mode, Py_ssize_t maxbytes, PyObject* st,
                               shmkit::TypeFingerprint* f);

// ------------------------------------------------------------ objects

// How many forks this process descends from (bumped in each forked child,
// by a pthread_atfork handler the module installs).
std::uint64_t fork_generation() noexcept;

// A handle's calls running without the GIL (changed and read with the GIL
// held). A forked child has only the thread that called fork(), which was
// not in such a call: a count inherited from the parent is stale there
// and reads as 0 (else close() would refuse for ever).
struct WaitCount {
  Py_ssize_t n;
  std::uint64_t gen;  // the fork generation n was counted in
  Py_ssize_t live() noexcept {
    if (gen != fork_generation()) {
      n = 0;
      gen = fork_generation();
    }
    return n;
  }
};

// Counts a call that waits without the GIL.
struct Waiting {
  WaitCount& c;
  explicit Waiting(WaitCount& count) : c(count) {
    (void)c.live();
    ++c.n;
  }
  ~Waiting() { --c.n; }  // in the process of the constructor: the thread exists nowhere else
  Waiting(const Waiting&) = delete;
  Waiting& operator=(const Waiting&) = delete;
};

struct QueueObj : CodecHead {
  const Ops* ops;
  void* q;
  bool mpmc;
  PyObject* weakrefs;
  PyObject* view;     // the outstanding BatchView (borrowed), or nullptr
  WaitCount waiting;  // calls waiting without the GIL: close() must not free the queue under them
};

inline QueueObj* as_q(PyObject* o) { return reinterpret_cast<QueueObj*>(o); }

inline bool check_open(QueueObj* self) {
  if (self->q == nullptr) {
    PyErr_SetString(PyExc_ValueError, "operation on a closed queue");
    return false;
  }
  return true;
}

// A consumer call while a BatchView is outstanding would pop its items.
inline bool check_no_view(QueueObj* self) {
  if (self->view != nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "release() the outstanding BatchView of this queue first");
    return false;
  }
  return true;
}

struct ReaderObj : CodecHead {
  const WordOps* ops;
  void* r;
  PyObject* ring;  // keeps the mapping alive
  bool busy;       // a read() of this reader waits without the GIL (its cursor is not shared)
};

extern PyTypeObject* reader_type;  // BroadcastReader (broadcast_reader.cpp)

// _Queue.get_view(max) (batch_view.cpp).
PyObject* q_get_view(PyObject* o, PyObject* arg);

// ------------------------------------------------------------ the types

bool add_queue_type(PyObject* m);
bool add_batch_view_type(PyObject* m);
bool add_seqlock_type(PyObject* m);
bool add_broadcast_ring_type(PyObject* m);
bool add_broadcast_reader_type(PyObject* m);
bool add_byte_queue_type(PyObject* m);  // ByteQueue and ByteMessage (byte_queue.cpp)
// unlink_byte_queue(name) (byte_queue.cpp)
PyObject* py_unlink_byte_queue(PyObject* module, PyObject* name);

}  // namespace shmkit::python::queues
