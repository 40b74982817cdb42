// python/src/core/typed_object.cpp — the Value/Array block layout
// (shmkit/object_layout.hpp): create_object() and attach_object(), and the
// LOCK_* constants, taken from shmkit::ObjectLockKind. Contract: module.cpp.
#include <cstring>
#include <memory>
#include <string>
#include <vector>
#include "shmkit/object_layout.hpp"
#include "shmkit/sync/mutex.hpp"
#include "shmkit/sync/recursive_mutex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/typed_block.hpp"

#include "common/buffer.hpp"
#include "common/errors.hpp"
#include "common/gil.hpp"
#include "common/types.hpp"
#include "core/core.hpp"

namespace shmkit::python::core {
namespace {

// ------------------------------------------------------------ typed objects

// The element type as the typed block records it.
struct ElementType {
  shmkit::TypeFingerprint fp;
};

// (typecode: str of length 0 or 1, size, align, type_name) -> fingerprint.
// A typecode names a C++ arithmetic type (python_typecode); otherwise the
// name's hash tells struct types apart (shmkit::TypeName on the C++ side).
bool parse_type(PyObject* const* a, ElementType& t) {
  std::string code, tname;
  if (!get_str(a[0], code, "typecode") || !get_str(a[3], tname, "type name")) return false;
  const long size = PyLong_AsLong(a[1]);
  const long align = PyLong_AsLong(a[2]);
  if (PyErr_Occurred()) return false;
  if (code.size() > 1 || size <= 0 || align <= 0 || (align & (align - 1)) != 0 || align > 64 ||
      size > (1L << 30)) {
    PyErr_SetString(PyExc_ValueError, "shmkit: bad element type (typecode, size or alignment)");
    return false;
  }
  t.fp.typecode = code.empty() ? 0 : code[0];
  t.fp.size = static_cast<std::uint32_t>(size);
  t.fp.align = static_cast<std::uint32_t>(align);
  t.fp.name_hash = code.empty() ? shmkit::fnv1a(tname) : shmkit::fnv1a(code);
  return true;
}

std::uint32_t lock_size_of(shmkit::ObjectLockKind k) {
  switch (k) {
    case shmkit::ObjectLockKind::mutex:
      return sizeof(shmkit::Mutex);
    case shmkit::ObjectLockKind::recursive_mutex:
      return sizeof(shmkit::RecursiveMutex);
    case shmkit::ObjectLockKind::robust_mutex:
      return sizeof(shmkit::RobustMutex);
    default:
      return 0;
  }
}

using shmkit::ObjectLockKind;

// The kinds a Value/Array block is made with, as _core.LOCK_* (none ..
// external; `atomic` is the C++ side's only).
constexpr long kLockKindLast = static_cast<long>(ObjectLockKind::external);

bool parse_lock_kind(PyObject* o, ObjectLockKind& k) {
  const long v = PyLong_AsLong(o);
  if (v == -1 && PyErr_Occurred()) return false;
  if (v < 0 || v > kLockKindLast) {
    PyErr_SetString(PyExc_ValueError,
                    "shmkit: lock kind must be 0..4 (none, mutex, rlock, robust, external)");
    return false;
  }
  k = static_cast<ObjectLockKind>(v);
  return true;
}

PyObject* object_result(shmkit::SharedMemory shm, const shmkit::BlockHeader& h) {
  const auto offset = h.payload_offset;
  const auto count = h.count;
  const auto lock = h.param[0];
  Ref m(new_mapping(std::move(shm)));
  if (!m) return nullptr;
  return Py_BuildValue("(OKKKK)", m.get(), static_cast<unsigned long long>(offset),
                       static_cast<unsigned long long>(count), static_cast<unsigned long long>(lock),
                       static_cast<unsigned long long>(shmkit::BlockHeader::kSize));
}

// create_object(name|None, is_array, typecode, size, align, type_name, count,
//               lock_kind, initial: bytes-like|None, track)
//   -> (Mapping, payload_offset, count, lock_kind, prefix_offset)
}  // namespace

PyObject* create_object(PyObject*, PyObject* const* a, Py_ssize_t n) {
  if (n != 10) {
    PyErr_SetString(
        PyExc_TypeError,
        "create_object(name, is_array, typecode, size, align, type_name, count, lock_kind, initial, track)");
    return nullptr;
  }
  std::string name;
  if (a[0] != Py_None && !get_str(a[0], name, "name")) return nullptr;
  const int is_array = PyObject_IsTrue(a[1]);
  ElementType t;
  if (is_array < 0 || !parse_type(a + 2, t)) return nullptr;
  const Py_ssize_t count = PyLong_AsSsize_t(a[6]);
  if (count == -1 && PyErr_Occurred()) return nullptr;
  if (count < 0 || (count == 0 && is_array == 0)) {
    PyErr_SetString(PyExc_ValueError, is_array != 0 ? "shmkit: an array cannot have a negative length"
                                                    : "shmkit: a Value holds exactly one element");
    return nullptr;
  }
  shmkit::ObjectLockKind lk{};
  if (!parse_lock_kind(a[7], lk)) return nullptr;
  const int track = PyObject_IsTrue(a[9]);
  if (track < 0) return nullptr;
  Py_buffer init{};
  bool have_init = false;
  if (a[8] != Py_None) {
    if (PyObject_GetBuffer(a[8], &init, PyBUF_SIMPLE) != 0) return nullptr;
    have_init = true;
  }
  struct Release {
    Py_buffer* b;
    bool on;
    ~Release() {
      if (on) PyBuffer_Release(b);
    }
  } release{&init, have_init};
  const std::uint64_t payload = static_cast<std::uint64_t>(count) * t.fp.size;
  if (have_init && static_cast<std::uint64_t>(init.len) != payload) {
    PyErr_Format(PyExc_ValueError, "shmkit: %zd initial bytes for a payload of %llu", init.len,
                 static_cast<unsigned long long>(payload));
    return nullptr;
  }
  try {
    const std::uint32_t lsize = lock_size_of(lk);
    auto block = without_gil([&] {
      const shmkit::BlockSpec spec =
          shmkit::object_spec(is_array ? shmkit::BlockKind::array : shmkit::BlockKind::value, t.fp,
                              static_cast<std::uint64_t>(count), t.fp.size, lk, lsize);
      shmkit::SharedMemory::Options o;
      o.track = track != 0;
      return shmkit::create_typed_block(
          name, spec,
          [&](std::span<std::byte> prefix, std::span<std::byte> pl) {
            switch (lk) {
              case shmkit::ObjectLockKind::mutex:
                ::new (prefix.data()) shmkit::Mutex();
                break;
              case shmkit::ObjectLockKind::recursive_mutex:
                ::new (prefix.data()) shmkit::RecursiveMutex();
                break;
              case shmkit::ObjectLockKind::robust_mutex:
                ::new (prefix.data()) shmkit::RobustMutex();
                break;
              default:
                break;
            }
            if (have_init) std::memcpy(pl.data(), init.buf, pl.size());
          },
          o);
    });
    return object_result(std::move(block.shm), block.header);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

// attach_object(name, is_array, typecode, size, align, type_name, count (0:
//               any), lock_kind (-1: any in-block lock), track)
//   -> (Mapping, payload_offset, count, lock_kind, prefix_offset)
PyObject* attach_object(PyObject*, PyObject* const* a, Py_ssize_t n) {
  if (n != 9) {
    PyErr_SetString(
        PyExc_TypeError,
        "attach_object(name, is_array, typecode, size, align, type_name, count, lock_kind, track)");
    return nullptr;
  }
  std::string name;
  if (!get_str(a[0], name, "name")) return nullptr;
  const int is_array = PyObject_IsTrue(a[1]);
  ElementType t;
  if (is_array < 0 || !parse_type(a + 2, t)) return nullptr;
  const Py_ssize_t count = PyLong_AsSsize_t(a[6]);
  const long lock = PyLong_AsLong(a[7]);
  if (PyErr_Occurred()) return nullptr;
  const int track = PyObject_IsTrue(a[8]);
  if (track < 0) return nullptr;
  if (count < 0 || lock < -1 || lock > kLockKindLast) {
    PyErr_SetString(PyExc_ValueError, "shmkit: bad count or lock kind");
    return nullptr;
  }
  try {
    auto block = without_gil([&] {
      const auto kind = is_array ? shmkit::BlockKind::array : shmkit::BlockKind::value;
      shmkit::AttachOptions o;
      o.shm.track = track != 0;
      shmkit::TypedBlock b = shmkit::attach_typed_block(name, kind, t.fp, o);
      auto lk = static_cast<shmkit::ObjectLockKind>(lock);
      if (lock == -1) {  // any lock kept in the block
        lk = static_cast<shmkit::ObjectLockKind>(b.header.param[0]);
        if (lk != shmkit::ObjectLockKind::mutex && lk != shmkit::ObjectLockKind::recursive_mutex &&
            lk != shmkit::ObjectLockKind::robust_mutex) {
          throw std::invalid_argument("shmkit: block '" + name + "' was made with lock '" +
                                      shmkit::lock_kind_name(b.header.param[0]) +
                                      "', not a lock kept in the block (attach it with lock=False)");
        }
      }
      const shmkit::ObjectLayout layout{lk, lock_size_of(lk), t.fp.size, static_cast<std::uint64_t>(count)};
      const auto r = shmkit::open_object_region(b.shm.buf(), kind, t.fp, layout, name);
      b.header = r.header;
      return b;
    });
    return object_result(std::move(block.shm), block.header);
  } catch (...) {
    translate_exception();
    return nullptr;
  }
}

bool add_object_constants(PyObject* m) {
  const struct {
    const char* name;
    ObjectLockKind kind;
  } kinds[] = {{"LOCK_NONE", ObjectLockKind::none},
               {"LOCK_MUTEX", ObjectLockKind::mutex},
               {"LOCK_RLOCK", ObjectLockKind::recursive_mutex},
               {"LOCK_ROBUST", ObjectLockKind::robust_mutex},
               {"LOCK_EXTERNAL", ObjectLockKind::external}};
  for (const auto& k : kinds) {
    if (PyModule_AddIntConstant(m, k.name, static_cast<long>(k.kind)) != 0) return false;
  }
  return PyModule_AddIntConstant(m, "HEADER_SIZE", shmkit::BlockHeader::kSize) == 0;
}

}  // namespace shmkit::python::core
