// shmkit/lockfree/seqlock.hpp — SeqLock<T>: one writer publishes a value of
// any trivially copyable size (a 256-byte quote), any number of readers in
// any processes read it without locks and never return a torn value.
//
// Contract
//   * One writer at a time (store()); readers never write the block.
//   * The writer is wait-free and never waits for readers. Readers:
//     try_read() is wait-free (one attempt, false if a write overlapped);
//     read()/read_for() retry, spinning briefly and then sleeping on a futex
//     word that store() bumps only when a reader sleeps. A reader never
//     returns a value mixing two writes. Readers are obstruction-free, not
//     lock-free: a writer storing back-to-back with gaps shorter than a
//     reader's copy can make that reader retry until it pauses (read_for()
//     bounds the wait).
//   * Why this is defined behaviour: the payload is an array of 64-bit words
//     accessed only through std::atomic_ref loads (acquire) and stores
//     (release), so a reader racing the writer reads stale-or-new words (a
//     benign, defined race) and then rejects the copy because the sequence
//     number changed (H.-J. Boehm, "Can seqlocks get along with programming
//     language memory models?", 2012). On x86-64 these are plain MOVs.
//   * Layout: header (kind seqlock, count 1, param[0] = payload bytes =
//     sizeof(T) rounded up to 8), prefix = SeqLockControl, payload = words.
//     The same region can sit inside a block of your own (region_spec(),
//     init_region(), from_block(); examples/order_book.hpp).
//   * Crash semantics. A writer killed mid-store leaves the sequence odd:
//     readers then see "write in progress" forever — try_read() returns
//     false, read_for() returns nullopt at its deadline, read() sleeps on the
//     futex (in bounded slices, no spinning) until a new writer attaches
//     and stores, which repairs the sequence (a repairing writer killed
//     before its wake costs a sleeping reader one kLostWakeRecheck slice). The last completely written value
//     is gone only in that case (its words were partly overwritten). Readers dying leave nothing behind.
#pragma once

#include <chrono>
#include <cstdint>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "shmkit/detail/fault.hpp"
#include "shmkit/lockfree/detail/common.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit {

struct SeqLockControl {
  // Even: stable; odd: a write is in progress. Written by the writer only.
  alignas(64) std::atomic<std::uint64_t> seq;
  alignas(64) lockfree_detail::WaitSlot changed;  // readers sleep here

  SeqLockControl() = default;
  // Lives in a block at a fixed place: copying or moving it means nothing.
  SeqLockControl(const SeqLockControl&) = delete;
  SeqLockControl& operator=(const SeqLockControl&) = delete;
};
static_assert(offsetof(SeqLockControl, changed) >= 64,
              "the sequence word and the readers' futex must not share a cache line");

template <class T>
class SeqLock;

// A polling reader with a process-local snapshot: when the sequence number
// has not moved since its last consistent copy, try_read() returns the
// snapshot after one shared load (the common case of a quote polled faster
// than it changes). One per thread; it must not outlive its SeqLock handle
// (moving that handle is fine). Same guarantees as SeqLock::try_read().
template <class T>
class SeqLockReader {
 public:
  [[nodiscard]] bool try_read(T& out) noexcept {
    // (3) acquire: pairs with (2).
    const std::uint64_t s = ctl_->seq.load(std::memory_order_acquire);
    if (s == version_) {
      // Unchanged: no store began before this load (it would have made seq
      // odd first), so the snapshot is the current value.
      out = snapshot_;
      return true;
    }
    if (s & 1) return false;
    T tmp;
    lockfree_detail::load_words(words_, tmp);  // (4) as in SeqLock::try_read
    if (ctl_->seq.load(std::memory_order_relaxed) != s) return false;
    snapshot_ = tmp;
    version_ = s;
    out = tmp;
    return true;
  }
  // Retries as SeqLock::read(); sleeps on the futex while a dead writer's
  // odd sequence is not repaired.
  T read() noexcept {
    T out{};  // always written below (the untimed wait returns only on success)
    if (try_read(out)) return out;
    (void)lockfree_detail::wait_until(
        *changed_, [&] { return try_read(out); }, std::nullopt);
    return out;
  }
  std::uint64_t version() const noexcept { return version_; }

 private:
  friend class SeqLock<T>;
  SeqLockReader(SeqLockControl* ctl, const std::uint64_t* words) noexcept
      : ctl_(ctl), words_(words), changed_(&ctl->changed) {}

  SeqLockControl* ctl_;
  const std::uint64_t* words_;
  lockfree_detail::WaitSlot* changed_;
  std::uint64_t version_ = ~std::uint64_t{0};  // odd: "no snapshot yet"
  T snapshot_{};
};

template <class T>
class SeqLock {
  SHMKIT_LOCKFREE_CHECK_ELEMENT(T);
  static constexpr std::size_t kWords = lockfree_detail::kWords<T>;
  static constexpr std::uint64_t kPayload = kWords * 8;

 public:
  using value_type = T;
  static constexpr BlockKind kKind = BlockKind::seqlock;

  static SeqLock create(std::string_view name, const T& initial = T{}) {
    TypedBlock b = create_typed_block(name, region_spec(),
                                      [&initial](std::span<std::byte> prefix, std::span<std::byte> payload) {
                                        init_region(prefix, payload, initial);
                                      });
    return SeqLock(std::move(b));
  }

  static SeqLock attach(std::string_view name, const AttachOptions& options = AttachOptions()) {
    return from_block(attach_typed_block(name, kKind, TypeFingerprint::of<T>(), options));
  }

  // A SeqLock region inside a structure of your own (examples/order_book):
  // the creator places region_spec() at a 64-byte aligned offset with
  // init_typed_region(bytes, region_spec(), init_region-calling lambda);
  // every process then opens it with open_typed_region(bytes, kKind,
  // TypeFingerprint::of<T>(), ...) into a TypedBlock whose shm is a mapping
  // that holds those bytes, and passes it to from_block().
  static BlockSpec region_spec() noexcept {
    BlockSpec spec;
    spec.kind = kKind;
    spec.type = TypeFingerprint::of<T>();
    spec.count = 1;
    spec.prefix_size = sizeof(SeqLockControl);
    spec.payload_size = kPayload;
    spec.param[0] = kPayload;
    return spec;
  }
  static void init_region(std::span<std::byte> prefix, std::span<std::byte> payload,
                          const T& initial = T{}) noexcept {
    new (prefix.data()) SeqLockControl();
    lockfree_detail::store_words(reinterpret_cast<std::uint64_t*>(payload.data()), initial);
  }

  // Adopts a block whose typed header the caller already validated for
  // kind SeqLock and element T (open_typed_region / attach_typed_block,
  // e.g. with the fingerprint of a type another language names: the Python
  // binding); checks the SeqLock's own fields as attach() does
  // (std::invalid_argument naming the block).
  static SeqLock from_block(TypedBlock b) {
    const BlockHeader& h = b.header;
    if (h.count != 1 || h.param[0] != kPayload || h.payload_size != kPayload ||
        h.prefix_size < sizeof(SeqLockControl)) {
      lockfree_detail::bad_block(
          b.shm.name().empty() ? "(anonymous)" : b.shm.name(),
          "is not a consistent SeqLock of " + std::to_string(sizeof(T)) + "-byte values");
    }
    return SeqLock(std::move(b));
  }

  SeqLock(SeqLock&&) noexcept = default;
  SeqLock& operator=(SeqLock&&) noexcept = default;

  const std::string& name() const noexcept { return block_.shm.name(); }
  void unlink() { block_.shm.unlink(); }

  // Writer. Wait-free; wakes sleeping readers only if there are some.
  void store(const T& value) noexcept {
    // relaxed: only the writer writes seq. A dead writer's odd value is
    // reused (s | 1), so the sequence is even again after this store.
    const std::uint64_t odd = ctl_->seq.load(std::memory_order_relaxed) | 1;
    ctl_->seq.store(odd, std::memory_order_relaxed);
    // (1) release word stores: pair with the reader's acquire word loads
    // (4); a reader whose copy saw any word written here then re-reads
    // seq == odd (or later) and retries.
    lockfree_detail::store_words(words_, value);
    // (2) release: pairs with (3); a reader that sees odd + 1 sees all words.
    ctl_->seq.store(odd + 1, std::memory_order_release);
    SHMKIT_FAULT_POINT(seqlock_stored);
    lockfree_detail::notify(ctl_->changed, asym_);
  }

  // One attempt; false if a write was in progress or overlapped the copy
  // (then `out` holds unspecified bytes).
  [[nodiscard]] bool try_read(T& out) const noexcept {
    // (3) acquire: pairs with (2).
    const std::uint64_t s1 = ctl_->seq.load(std::memory_order_acquire);
    if (s1 & 1) return false;
    // (4) acquire word loads: pair with (1); they also keep the re-read of
    // seq below from moving above the copy.
    lockfree_detail::load_words(words_, out);
    // relaxed: ordered after the copy by (4).
    return ctl_->seq.load(std::memory_order_relaxed) == s1;
  }

  // Retries until it gets a consistent value (sleeps while a writer killed
  // mid-store is not replaced).
  T read() const noexcept {
    T out{};  // always written below (the untimed wait returns only on success)
    if (try_read(out)) return out;
    (void)lockfree_detail::wait_until(
        ctl_->changed, [&] { return try_read(out); }, std::nullopt);
    return out;
  }
  template <class Rep, class Period>
  std::optional<T> read_for(std::chrono::duration<Rep, Period> timeout) const noexcept {
    T out;
    if (try_read(out)) return out;
    if (lockfree_detail::wait_until(
            ctl_->changed, [&] { return try_read(out); }, lockfree_detail::deadline_after(timeout))) {
      return out;
    }
    return std::nullopt;
  }

  // A polling reader with a local snapshot (see SeqLockReader).
  SeqLockReader<T> reader() const noexcept { return SeqLockReader<T>(ctl_, words_); }

  // The sequence number (even when stable; advances by 2 per store).
  std::uint64_t version() const noexcept { return ctl_->seq.load(std::memory_order_acquire); }

 private:
  explicit SeqLock(TypedBlock b) noexcept
      : block_(std::move(b)),
        ctl_(reinterpret_cast<SeqLockControl*>(block_.prefix.data())),
        words_(reinterpret_cast<std::uint64_t*>(block_.payload.data())),
        asym_(lockfree_detail::asymmetric_fence_available()) {}

  TypedBlock block_;
  SeqLockControl* ctl_;
  std::uint64_t* words_;  // kWords words, payload size checked at attach
  bool asym_;
};

}  // namespace shmkit
