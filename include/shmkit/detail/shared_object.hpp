// shmkit/detail/shared_object.hpp — what Value and Array share: lock
// policies, the per-thread record of locks taken through get_lock(), and
// storage of a typed region in a named block, a Heap or an anonymous block.
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "shmkit/heap.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/sync/mutex.hpp"
#include "shmkit/sync/recursive_mutex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit {

// lock=False: no lock at all (RawValue, RawArray).
struct NoLock {};
// lock=some_lock: the object uses a lock that lives elsewhere (in another
// block, or another object's) and may be shared by several objects. Every
// process passes the same lock to create/attach.
template <class L>
struct ExternalLock {};

// Thrown by the locking accessors of an object guarded by a RobustMutex
// when a process died holding the lock: the value may be partly written.
// The lock has been marked consistent and released, so later accesses work;
// the exception is how the caller is told.
class OwnerDiedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

// Recorded in the header's param[0]: attach refuses another lock policy.
enum class LockKind : std::uint64_t {
  none = 0,
  mutex = 1,
  recursive_mutex = 2,
  robust_mutex = 3,
  external = 4,
  atomic = 5,
};
const char* lock_kind_name(std::uint64_t kind) noexcept;

template <class Policy>
struct LockTraits;
template <>
struct LockTraits<NoLock> {
  using lock_type = void;
  static constexpr LockKind kind = LockKind::none;
  static constexpr bool in_block = false;
};
template <>
struct LockTraits<Mutex> {
  using lock_type = Mutex;
  static constexpr LockKind kind = LockKind::mutex;
  static constexpr bool in_block = true;
};
template <>
struct LockTraits<RecursiveMutex> {
  using lock_type = RecursiveMutex;
  static constexpr LockKind kind = LockKind::recursive_mutex;
  static constexpr bool in_block = true;
};
template <>
struct LockTraits<RobustMutex> {
  using lock_type = RobustMutex;
  static constexpr LockKind kind = LockKind::robust_mutex;
  static constexpr bool in_block = true;
};
template <class L>
struct LockTraits<ExternalLock<L>> {
  using lock_type = L;
  static constexpr LockKind kind = LockKind::external;
  static constexpr bool in_block = false;
};

// Locks this thread holds through a get_lock() handle: the locking
// accessors skip acquiring a lock found here, so `get_lock()` then an
// accessor never self-deadlocks, whatever the lock (CPython deadlocks with a
// plain Lock). Per thread, so another thread still waits as it should.
struct HeldLocks {
  std::array<const void*, 32> locks{};
  std::array<std::uint32_t, 32> depth{};
  std::size_t n = 0;
};
inline thread_local HeldLocks tls_held_locks;

inline bool held_by_this_thread(const void* lock) noexcept {
  const HeldLocks& h = tls_held_locks;
  for (std::size_t i = 0; i < h.n; ++i) {
    if (h.locks[i] == lock) return true;
  }
  return false;
}
inline void note_acquired(const void* lock) noexcept {
  HeldLocks& h = tls_held_locks;
  for (std::size_t i = 0; i < h.n; ++i) {
    if (h.locks[i] == lock) {
      ++h.depth[i];
      return;
    }
  }
  if (h.n < h.locks.size()) {  // past 32 distinct locks: not recorded (documented)
    h.locks[h.n] = lock;
    h.depth[h.n] = 1;
    ++h.n;
  }
}
inline void note_released(const void* lock) noexcept {
  HeldLocks& h = tls_held_locks;
  for (std::size_t i = 0; i < h.n; ++i) {
    if (h.locks[i] == lock) {
      if (--h.depth[i] == 0) {
        h.locks[i] = h.locks[h.n - 1];
        h.depth[i] = h.depth[h.n - 1];
        --h.n;
      }
      return;
    }
  }
}

[[noreturn]] void throw_owner_died(const std::string& what);
[[noreturn]] void throw_lock_failed(const std::string& what, LockResult r);

template <class L>
void release(L& lock) noexcept {
  (void)lock.unlock();
}

}  // namespace detail

// What get_lock() returns: a Lockable (and TimedLockable) view of the
// object's lock that records, per thread, that the lock is held, so the
// object's own accessors can be used while holding it. Lives in the
// object's handle (one process), never in shared memory.
template <class L>
class LockRef {
 public:
  explicit LockRef(L* lock) noexcept : lock_(lock) {}
  LockRef(const LockRef&) = delete;
  LockRef& operator=(const LockRef&) = delete;

  // Mutex/RecursiveMutex: void. RobustMutex: the LockResult, which the
  // caller should check (owner_died: repair, then native().make_consistent()).
  auto lock() noexcept {
    if constexpr (std::is_same_v<L, RobustMutex>) {
      LockResult r = lock_->lock();
      if (holds_lock(r)) detail::note_acquired(lock_);
      return r;
    } else {
      lock_->lock();
      detail::note_acquired(lock_);
    }
  }
  bool try_lock() noexcept { return note(lock_->try_lock()); }
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    return note(lock_->try_lock_for(timeout));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) noexcept {
    return note(lock_->try_lock_until(deadline));
  }
  void unlock() noexcept {
    detail::note_released(lock_);
    (void)lock_->unlock();
  }
  // The lock itself (in shared memory).
  L& native() const noexcept { return *lock_; }

 private:
  bool note(bool ok) noexcept {
    if (ok) detail::note_acquired(lock_);
    return ok;
  }
  bool note(LockResult r) noexcept { return note(holds_lock(r)); }
  L* lock_;
};

namespace detail {

// Where an object's bytes live, and what keeps them mapped.
struct ObjectPlace {
  std::shared_ptr<SharedMemory> mapping;  // own block, heap block or memfd
  std::string name;                       // own block's name ("" otherwise)
  std::optional<HeapHandle> handle;       // heap objects
  std::optional<Heap> heap;
  TypedRegion region;

  std::string what(std::string_view noun) const;
};

// Layout of an object: the lock (if in the block) in the prefix, the
// elements in the payload. Recorded so attach can check the lock policy.
// Fields: count = elements, prefix_size = lock_size, payload_size = count *
// elem_bytes, param[0] = lock kind, param[1] = lock size, param[2] =
// elem_bytes (bytes per element in the payload), param[3] = 0. An array may
// have count 0 (an empty payload; the header and the lock are still there).
BlockSpec object_spec(BlockKind kind, const TypeFingerprint& type, std::uint64_t count,
                      std::uint64_t elem_bytes, LockKind lock, std::uint32_t lock_size);

// What an attaching handle needs an object's region to be, beyond its kind
// and element type. Attach recomputes the layout object_spec would have
// written for this type and refuses any header field that differs (the
// header is untrusted: a forged stride or count would otherwise send the
// accessors past the payload).
struct ObjectLayout {
  LockKind lock = LockKind::none;
  std::uint32_t lock_size = 0;   // bytes of the lock in the prefix (0: none in the block)
  std::uint64_t elem_bytes = 0;  // bytes per element: sizeof(T), or the atomic cell's
  std::uint64_t count = 0;       // the exact element count (a Value: 1); 0: any (an Array)
};

// The three places an object can live. `init` constructs the lock and the
// elements in the zero-filled region.
ObjectPlace create_named_object(std::string_view name, const BlockSpec& spec, const RegionInit& init);
ObjectPlace create_heap_object(const Heap& heap, const BlockSpec& spec, const RegionInit& init);
ObjectPlace create_anonymous_object(const BlockSpec& spec, const RegionInit& init);
ObjectPlace attach_named_object(std::string_view name, BlockKind kind, const TypeFingerprint& type,
                                const ObjectLayout& layout);
ObjectPlace attach_heap_object(const Heap& heap, const HeapHandle& handle, BlockKind kind,
                               const TypeFingerprint& type, const ObjectLayout& layout);
// open_typed_region plus the ObjectLayout checks (what attach_heap_object
// does with the heap's bytes; the fuzz target drives it). `what` names the
// object in messages.
TypedRegion open_object_region(std::span<std::byte> region, BlockKind kind, const TypeFingerprint& type,
                               const ObjectLayout& layout, std::string_view what);

template <class Policy>
constexpr std::uint32_t lock_size() {
  if constexpr (LockTraits<Policy>::in_block) {
    using L = typename LockTraits<Policy>::lock_type;
    // The prefix starts at byte 128 of a 64-byte aligned region.
    static_assert(alignof(L) <= BlockHeader::kPayloadAlignment,
                  "an in-block lock must fit the prefix's alignment");
    return sizeof(L);
  } else {
    return 0;
  }
}

// The layout Value<T, Policy> (count 1) and Array<T, Policy> (count 0: any)
// create and attach.
template <class T, class Policy>
constexpr ObjectLayout object_layout(std::uint64_t count) {
  return ObjectLayout{LockTraits<Policy>::kind, lock_size<Policy>(), sizeof(T), count};
}

}  // namespace detail
}  // namespace shmkit
