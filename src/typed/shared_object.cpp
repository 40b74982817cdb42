#include "shmkit/detail/shared_object.hpp"

#include <stdexcept>

#include "platform/platform.hpp"

namespace shmkit::detail {
namespace {

[[noreturn]] void refuse(const std::string& what, const std::string& why) {
  throw std::invalid_argument("shmkit: " + what + ": " + why);
}

// Every layout field of the (validated) header snapshot against what
// object_spec writes for the attaching type.
void check_object(const TypedRegion& r, const ObjectLayout& want, const std::string& what) {
  const BlockHeader& h = r.header;
  const auto lock = static_cast<std::uint64_t>(want.lock);
  if (h.param[0] != lock) {
    refuse(what, std::string("was made with lock '") + lock_kind_name(h.param[0]) + "', not '" +
                     lock_kind_name(lock) + "'");
  }
  if (h.param[1] != want.lock_size) {
    refuse(what, "lock size (param[1]) is " + std::to_string(h.param[1]) + ", expected " +
                     std::to_string(want.lock_size));
  }
  if (h.prefix_size != want.lock_size) {
    refuse(what, "prefix_size is " + std::to_string(h.prefix_size) + ", expected " +
                     std::to_string(want.lock_size) + " (the lock)");
  }
  const std::uint64_t elem = h.param[2];
  if (elem != want.elem_bytes) {
    refuse(what, "bytes per element (param[2]) is " + std::to_string(elem) + ", expected " +
                     std::to_string(want.elem_bytes) + " for this element type");
  }
  if (h.param[3] != 0) refuse(what, "param[3] is " + std::to_string(h.param[3]) + ", expected 0");
  // Exactly count elements fill the payload (overflow-safe: elem > 0 here).
  // Only an Array may be empty (CPython's Array('i', [])); a Value is one.
  const bool empty_ok = h.kind == static_cast<std::uint32_t>(BlockKind::array);
  if ((h.count == 0 && !empty_ok) || (want.count != 0 && h.count != want.count) ||
      h.count > h.payload_size / elem || h.count * elem != h.payload_size) {
    refuse(what,
           "count " + std::to_string(h.count) + ": that many elements of " + std::to_string(elem) +
               " bytes do not fill a payload of " + std::to_string(h.payload_size) + " bytes" +
               (want.count != 0 ? " (expected count " + std::to_string(want.count) + ")" : std::string()));
  }
  BlockSpec spec;
  spec.type = h.fingerprint();
  spec.prefix_size = want.lock_size;
  if (h.payload_offset != payload_offset_for(spec)) {
    refuse(what, "payload_offset is " + std::to_string(h.payload_offset) + ", expected " +
                     std::to_string(payload_offset_for(spec)));
  }
}

}  // namespace

const char* lock_kind_name(std::uint64_t kind) noexcept {
  switch (static_cast<LockKind>(kind)) {
    case LockKind::none:
      return "none";
    case LockKind::mutex:
      return "Mutex";
    case LockKind::recursive_mutex:
      return "RecursiveMutex";
    case LockKind::robust_mutex:
      return "RobustMutex";
    case LockKind::external:
      return "external";
    case LockKind::atomic:
      return "atomic";
  }
  return "unknown";
}

void throw_owner_died(const std::string& what) {
  throw OwnerDiedError("shmkit: " + what +
                       ": a process died holding its lock; the value may be partly written "
                       "(the lock was made consistent and released)");
}

void throw_lock_failed(const std::string& what, LockResult r) {
  throw std::system_error(r == LockResult::not_recoverable ? ENOTRECOVERABLE : EDEADLK,
                          std::generic_category(), "shmkit: " + what + ": lock failed: " + to_string(r));
}

std::string ObjectPlace::what(std::string_view noun) const {
  std::string s(noun);
  if (handle) return s + " " + platform::quoted(handle->to_string());
  if (!name.empty()) return s + " " + platform::quoted(name);
  return "anonymous " + s;
}

BlockSpec object_spec(BlockKind kind, const TypeFingerprint& type, std::uint64_t count,
                      std::uint64_t elem_bytes, LockKind lock, std::uint32_t lock_size) {
  if (count == 0 && kind != BlockKind::array) {
    throw std::invalid_argument("shmkit: a value holds one element, not 0");
  }
  if (count > (std::uint64_t{1} << 48) / elem_bytes) {
    throw std::invalid_argument("shmkit: " + std::to_string(count) + " elements are too many");
  }
  BlockSpec spec;
  spec.kind = kind;
  spec.type = type;
  spec.count = count;
  spec.prefix_size = lock_size;
  spec.payload_size = count * elem_bytes;
  spec.param[0] = static_cast<std::uint64_t>(lock);
  spec.param[1] = lock_size;
  spec.param[2] = elem_bytes;
  return spec;
}

ObjectPlace create_named_object(std::string_view name, const BlockSpec& spec, const RegionInit& init) {
  TypedBlock b = create_typed_block(name, spec, init);
  ObjectPlace p;
  p.name = b.shm.name();
  p.region = b;
  p.mapping = std::make_shared<SharedMemory>(std::move(b.shm));
  return p;
}

ObjectPlace create_heap_object(const Heap& heap, const BlockSpec& spec, const RegionInit& init) {
  Heap::Allocation a = const_cast<Heap&>(heap).allocate(typed_region_size(spec));
  ObjectPlace p;
  try {
    p.region = init_typed_region(a.bytes, spec, init);
  } catch (...) {
    const_cast<Heap&>(heap).deallocate(a.handle);
    throw;
  }
  p.handle = a.handle;
  p.heap = heap;
  p.mapping = heap.mapping();
  return p;
}

ObjectPlace create_anonymous_object(const BlockSpec& spec, const RegionInit& init) {
  auto shm = std::make_shared<SharedMemory>(
      SharedMemory::anonymous(static_cast<std::size_t>(typed_region_size(spec))));
  ObjectPlace p;
  p.region = init_typed_region(shm->buf(), spec, init);
  p.mapping = std::move(shm);
  return p;
}

ObjectPlace attach_named_object(std::string_view name, BlockKind kind, const TypeFingerprint& type,
                                const ObjectLayout& layout) {
  TypedBlock b = attach_typed_block(name, kind, type);
  ObjectPlace p;
  p.name = std::string(name);
  check_object(b, layout, p.what(block_kind_name(static_cast<std::uint32_t>(kind))));
  p.region = b;
  p.mapping = std::make_shared<SharedMemory>(std::move(b.shm));
  return p;
}

TypedRegion open_object_region(std::span<std::byte> region, BlockKind kind, const TypeFingerprint& type,
                               const ObjectLayout& layout, std::string_view what) {
  TypedRegion r = open_typed_region(region, kind, type, what);
  check_object(r, layout, std::string(what));
  return r;
}

ObjectPlace attach_heap_object(const Heap& heap, const HeapHandle& handle, BlockKind kind,
                               const TypeFingerprint& type, const ObjectLayout& layout) {
  ObjectPlace p;
  p.handle = handle;
  const std::string what = p.what(block_kind_name(static_cast<std::uint32_t>(kind)));
  p.region = open_object_region(heap.resolve(handle), kind, type, layout, what);
  p.heap = heap;
  p.mapping = heap.mapping();
  return p;
}

}  // namespace shmkit::detail
