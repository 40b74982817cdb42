// shmkit/sync/standalone.hpp — one sync primitive alone in a named block
// (BlockKind::sync): what Python's shmkit.synchronize.Lock, RLock,
// RobustLock, Semaphore, BoundedSemaphore, Event and Condition are, so that a
// C++ process attaches them by the name a Python process pickled (and the
// other way round).
//
// Contract
//   * Layout: the typed header (typed_block.hpp) with kind sync, typecode 0,
//     element size/alignment of the primitive and name hash
//     fnv1a(SyncName<P>::value) (e.g. "shmkit::Mutex"), count 1, no prefix;
//     the payload is the primitive, constructed in place before the header
//     is published. param[0..3] are the creator's to use (Python records a
//     Semaphore's bound there for the attacher's repr; nothing reads them
//     here).
//   * create() and attach() throw as create_typed_block/attach_typed_block
//     (std::system_error, std::invalid_argument naming the block): attaching
//     a Mutex block as a RecursiveMutex, a Value or a garbage block is an
//     error, never a reinterpretation.
//   * The handle is move-only and process-local; the primitive is shared.
//     Crash behaviour is the primitive's (see its header). The block lives
//     until unlink(); create with Options::track to have the tracker remove
//     it when its creator dies (tracker.hpp).
#pragma once

#include <new>
#include <string>
#include <string_view>
#include <utility>

#include "shmkit/sync/condition.hpp"
#include "shmkit/sync/event.hpp"
#include "shmkit/sync/mutex.hpp"
#include "shmkit/sync/recursive_mutex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/sync/semaphore.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit {

// The stable names of the primitives that may stand alone.
template <class P>
struct SyncName;
template <>
struct SyncName<Mutex> {
  static constexpr std::string_view value = "shmkit::Mutex";
};
template <>
struct SyncName<RecursiveMutex> {
  static constexpr std::string_view value = "shmkit::RecursiveMutex";
};
template <>
struct SyncName<RobustMutex> {
  static constexpr std::string_view value = "shmkit::RobustMutex";
};
template <>
struct SyncName<Semaphore> {
  static constexpr std::string_view value = "shmkit::Semaphore";
};
template <>
struct SyncName<Event> {
  static constexpr std::string_view value = "shmkit::Event";
};
template <>
struct SyncName<Condition> {
  static constexpr std::string_view value = "shmkit::Condition";
};

template <class P>
constexpr TypeFingerprint sync_fingerprint() noexcept {
  TypeFingerprint f;
  f.typecode = 0;
  f.size = sizeof(P);
  f.align = alignof(P);
  f.name_hash = fnv1a(SyncName<P>::value);
  return f;
}

template <class P>
class StandaloneSync {
 public:
  // A new block `name` (a random psm_ name if empty) holding P(args...).
  template <class... Args>
  static StandaloneSync create(std::string_view name, const SharedMemory::Options& options, Args&&... args) {
    BlockSpec spec;
    spec.kind = BlockKind::sync;
    spec.type = sync_fingerprint<P>();
    spec.count = 1;
    spec.payload_size = sizeof(P);
    return StandaloneSync(create_typed_block(
        name, spec,
        [&](std::span<std::byte>, std::span<std::byte> payload) {
          ::new (static_cast<void*>(payload.data())) P(std::forward<Args>(args)...);
        },
        options));
  }
  static StandaloneSync attach(std::string_view name, const AttachOptions& options = AttachOptions()) {
    TypedBlock b = attach_typed_block(name, BlockKind::sync, sync_fingerprint<P>(), options);
    if (b.header.count != 1 || b.header.payload_size != sizeof(P)) {
      throw std::invalid_argument("shmkit: block \"" + std::string(name) + "\": payload of " +
                                  std::to_string(b.header.payload_size) + " bytes, expected one " +
                                  std::string(SyncName<P>::value));
    }
    return StandaloneSync(std::move(b));
  }

  StandaloneSync(StandaloneSync&&) noexcept = default;
  StandaloneSync& operator=(StandaloneSync&&) noexcept = default;

  P& get() const noexcept { return *reinterpret_cast<P*>(block_.payload.data()); }
  const std::string& name() const noexcept { return block_.shm.name(); }
  void unlink() { block_.shm.unlink(); }
  const TypedBlock& block() const noexcept { return block_; }

 private:
  explicit StandaloneSync(TypedBlock b) noexcept : block_(std::move(b)) {}
  TypedBlock block_;
};

}  // namespace shmkit
