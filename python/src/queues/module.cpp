// python/src/queues/module.cpp — the extension module shmkit._queues: shmkit's
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
//     (and BufferError while a BatchView is out). A forked child counts
//     from 0: the threads counted are the parent's. A BroadcastReader refuses
//     a second thread's read() while one waits (one cursor). So a close()
//     from any Python code or thread is a ValueError in the call, never a
//     use of a freed queue.
//   * Sizes: a scalar typecode's size must equal the item size, and a bytes
//     item's maxbytes must leave 4 bytes of length (checked without
//     overflow, sys.maxsize included); batches are bounded at 1 GiB.
//   * Items: mode 's' a single typecode (int/float/bool/bytes of 1),
//     't' a struct format (tuples, packed/unpacked with struct.Struct),
//     'y' bounded bytes (a uint32 length, then up to maxbytes bytes), 'r'
//     raw items (any buffer of exactly the item size; numpy dtypes).//
// The files: queue.cpp (_Queue), batch_view.cpp (BatchView), seqlock.cpp
// (_SeqLock), broadcast_ring.cpp and broadcast_reader.cpp, codec.cpp (items
// to bytes), ring_ops.cpp and word_ops.cpp (the C++ instantiations),
// queues.hpp (what they share); this file holds the module's functions,
// exceptions and init.
#include <pthread.h>

#include <atomic>
#include <cstdint>

#include "common/module.hpp"
#include "queues/queues.hpp"

namespace shmkit::python::queues {

PyObject* g_full = nullptr;
PyObject* g_empty = nullptr;
PyObject* g_lapped = nullptr;

namespace {

std::atomic<std::uint64_t> g_fork_generation{0};
void count_fork_in_child() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }
pthread_once_t g_fork_counter_once = PTHREAD_ONCE_INIT;
void install_fork_counter() { (void)pthread_atfork(nullptr, nullptr, count_fork_in_child); }

}  // namespace

std::uint64_t fork_generation() noexcept { return g_fork_generation.load(std::memory_order_relaxed); }

namespace {

PyObject* py_supported_sizes(PyObject*, PyObject*) { return supported_sizes(); }

PyMethodDef module_methods[] = {
    {"supported_sizes", py_supported_sizes, METH_NOARGS,
     "supported_sizes($module, /)\n--\n\nThe item sizes a queue may have."},
    {"unlink_byte_queue", py_unlink_byte_queue, METH_O,
     "unlink_byte_queue($module, name, /)\n--\n\nRemoves a ByteQueue's block, its doorbell and any "
     "out-of-line block left behind."},
    {nullptr, nullptr, 0, nullptr}};

int queues_exec(PyObject* m) {
  (void)pthread_once(&g_fork_counter_once, install_fork_counter);
  if (!add_queue_type(m) || !add_batch_view_type(m) || !add_seqlock_type(m) || !add_broadcast_ring_type(m) ||
      !add_broadcast_reader_type(m) || !add_byte_queue_type(m)) {
    return -1;
  }
  Py_XSETREF(g_lapped,
             PyErr_NewExceptionWithDoc("shmkit._queues.Lapped",
                                       "A BroadcastRing reader fell more than `capacity` items behind: "
                                       "`lost` items were overwritten; the reader continues after them.",
                                       PyExc_Exception, nullptr));
  if (g_lapped == nullptr || PyModule_AddObject(m, "Lapped", Py_NewRef(g_lapped)) < 0) return -1;
  Ref qmod(PyImport_ImportModule("queue"));
  if (!qmod) return -1;
  Py_XSETREF(g_full, PyObject_GetAttrString(qmod.get(), "Full"));
  Py_XSETREF(g_empty, PyObject_GetAttrString(qmod.get(), "Empty"));
  return g_full == nullptr || g_empty == nullptr ? -1 : 0;
}

PyModuleDef_Slot module_slots[] = SHMKIT_MODULE_SLOTS(queues_exec);

PyModuleDef module_def = {PyModuleDef_HEAD_INIT,
                          "shmkit._queues",
                          "shmkit's SpscQueue and MpmcQueue with run-time item types (python/src/queues/).",
                          0,
                          module_methods,
                          module_slots,
                          nullptr,
                          nullptr,
                          nullptr};

}  // namespace
}  // namespace shmkit::python::queues

PyMODINIT_FUNC PyInit__queues() { return PyModuleDef_Init(&shmkit::python::queues::module_def); }
