#include "shmkit/detail/shared_object.hpp"

#include <stdexcept>

#include "platform.hpp"

namespace shmkit::detail {
namespace {

void check_lock(const TypedRegion& r, LockKind lock, std::uint32_t lock_size,
                const std::string& what) {
  if (r.header.param[0] != static_cast<std::uint64_t>(lock)) {
    throw std::invalid_argument("shmkit: " + what + " was made with lock '" +
                                lock_kind_name(r.header.param[0]) + "', not '" +
                                lock_kind_name(static_cast<std::uint64_t>(lock)) + "'");
  }
  if (r.header.param[1] != lock_size || r.header.prefix_size < lock_size) {
    throw std::invalid_argument("shmkit: " + what + ": lock size " +
                                std::to_string(r.header.param[1]) + " in a prefix of " +
                                std::to_string(r.header.prefix_size) + " bytes, expected " +
                                std::to_string(lock_size));
  }
  // Elements: exactly count of them in the payload (overflow-safe).
  const std::uint64_t elem = r.header.param[2];
  if (elem == 0 || r.header.count == 0 || r.header.count > r.header.payload_size / elem ||
      r.header.count * elem != r.header.payload_size) {
    throw std::invalid_argument("shmkit: " + what + ": " + std::to_string(r.header.count) +
                                " elements do not fill a payload of " +
                                std::to_string(r.header.payload_size) + " bytes");
  }
}

}  // namespace

const char* lock_kind_name(std::uint64_t kind) noexcept {
  switch (static_cast<LockKind>(kind)) {
    case LockKind::none: return "none";
    case LockKind::mutex: return "Mutex";
    case LockKind::recursive_mutex: return "RecursiveMutex";
    case LockKind::robust_mutex: return "RobustMutex";
    case LockKind::external: return "external";
    case LockKind::atomic: return "atomic";
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
                          std::generic_category(),
                          "shmkit: " + what + ": lock failed: " + to_string(r));
}

std::string ObjectPlace::what(std::string_view noun) const {
  std::string s(noun);
  if (handle) return s + " " + platform::quoted(handle->to_string());
  if (!name.empty()) return s + " " + platform::quoted(name);
  return "anonymous " + s;
}

BlockSpec object_spec(BlockKind kind, const TypeFingerprint& type, std::uint64_t count,
                      std::uint64_t elem_bytes, LockKind lock, std::uint32_t lock_size) {
  if (count == 0) throw std::invalid_argument("shmkit: an object needs at least one element");
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
                                LockKind lock, std::uint32_t lock_size) {
  TypedBlock b = attach_typed_block(name, kind, type);
  ObjectPlace p;
  p.name = std::string(name);
  check_lock(b, lock, lock_size, p.what(block_kind_name(static_cast<std::uint32_t>(kind))));
  p.region = b;
  p.mapping = std::make_shared<SharedMemory>(std::move(b.shm));
  return p;
}

ObjectPlace attach_heap_object(const Heap& heap, const HeapHandle& handle, BlockKind kind,
                               const TypeFingerprint& type, LockKind lock, std::uint32_t lock_size) {
  ObjectPlace p;
  p.handle = handle;
  const std::string what = p.what(block_kind_name(static_cast<std::uint32_t>(kind)));
  p.region = open_typed_region(heap.resolve(handle), kind, type, what);
  check_lock(p.region, lock, lock_size, what);
  p.heap = heap;
  p.mapping = heap.mapping();
  return p;
}

}  // namespace shmkit::detail
