// shmkit/lockfree/broadcast_ring.hpp — BroadcastRing<T>: one writer
// publishes a stream that any number of readers, in any processes, each read
// in full at their own pace (market-data fan-out). The writer is never
// blocked: a reader that falls more than `capacity` items behind is lapped
// and learns exactly how many items it lost.
//
// Contract
//   * One writer at a time (push()). Readers are BroadcastReader<T> objects
//     with a process-local cursor (the index of the next item they want);
//     they never write the block, so any number may read, and a reader can
//     restart anywhere: reader() starts at the next item to be written,
//     reader_at(cursor) at a remembered position (a restarted consumer
//     passes the cursor it last saved).
//   * Every slot carries a sequence number: 2*i+1 while item i is being
//     written, 2*i+2 once complete. A reader copies the slot's words with
//     acquire atomic loads between two reads of that number and keeps the
//     copy only if both say "item i, complete" — never a torn item (defined
//     behaviour, as in SeqLock).
//   * try_read() returns ok (an item), empty (nothing new), or lapped with
//     `lost` = how many items between the cursor and the oldest one still
//     available were overwritten; the cursor then skips them. Items read
//     plus items reported lost equal items written: nothing is skipped
//     silently, nothing is delivered twice.
//   * Progress: push() and try_read() are wait-free (try_read retries at
//     most a bounded number of times before reporting a lap). read_for()
//     spins, then sleeps on a futex word that push() bumps only when a reader
//     sleeps.
//   * Crash semantics. A writer killed mid-push leaves one slot marked "being
//     written" and the write index before it: readers see nothing new (timed
//     reads return empty), the item in that slot one lap earlier is reported
//     lost if a reader still wanted it, and a new writer that attaches
//     continues at the write index. A reader killed leaves nothing behind.
//   * A ring can also sit as a typed region inside a block of your own
//     (region_spec(), init_region(), from_block(); examples/order_book.hpp).
//   * Untrusted block: positions are masked before addressing; a forged
//     sequence or write index yields empty/lapped results, never an access
//     outside the payload.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <new>
#include <span>
#include <string>
#include <string_view>

#include "shmkit/detail/fault.hpp"
#include "shmkit/lockfree/detail/common.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit {

struct BroadcastControl {
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> write_index;  // items published
  alignas(lockfree_detail::kFalseSharingRange) lockfree_detail::WaitSlot published;     // readers sleep

  BroadcastControl() = default;
  // Lives in a block at a fixed place: copying or moving it means nothing.
  BroadcastControl(const BroadcastControl&) = delete;
  BroadcastControl& operator=(const BroadcastControl&) = delete;
};
static_assert(offsetof(BroadcastControl, published) >= lockfree_detail::kFalseSharingRange,
              "the write index and the readers' futex must not share a cache line (pair)");

enum class BroadcastStatus : std::uint8_t {
  ok,      // an item was read
  empty,   // no new item (read_for: none before the deadline)
  lapped,  // `lost` items were overwritten before this reader got them
};

struct BroadcastResult {
  BroadcastStatus status = BroadcastStatus::empty;
  std::uint64_t lost = 0;  // with lapped: items skipped
  explicit operator bool() const noexcept { return status == BroadcastStatus::ok; }
};

template <class T>
class BroadcastRing;

// A reader: a cursor plus views into its ring's mapping. It must not outlive
// the BroadcastRing handle it came from (moving that handle is fine). Not
// thread-safe (one per thread).
template <class T>
class BroadcastReader {
  static constexpr std::size_t kWords = lockfree_detail::kWords<T>;

 public:
  [[nodiscard]] BroadcastResult try_read(T& out) noexcept {
    for (int attempt = 0; attempt < 4; ++attempt) {
      // The write index is re-read only when the cursor has caught up with
      // the last value seen: the writer stores it on every publish, so
      // reading it per item would pull its line across on every read. A
      // stale value is safe: the slot's sequence below says whether the slot
      // holds item cursor_, and an overwritten one re-reads the index.
      std::uint64_t w = known_written_;
      if (cursor_ >= w) {
        // (4) acquire: pairs with (3); slots up to w - 1 are complete.
        w = ctl_->write_index.load(std::memory_order_acquire);
        known_written_ = w;
        if (cursor_ >= w) return {};
      }
      if (w - cursor_ > (mask_ + 1)) return skip_to(w - (mask_ + 1));
      const std::uint64_t* slot = base_ + (cursor_ & mask_) * (1 + kWords);
      const std::uint64_t want = 2 * cursor_ + 2;
      // (5) acquire: pairs with (2); the words of item `cursor_` are visible.
      const std::uint64_t s1 = seq_of(slot).load(std::memory_order_acquire);
      if (s1 == want) {
        T tmp;
        // (6) acquire word loads: pair with the release word stores (1), so
        // a copy that saw any word of a later item re-reads a later sequence
        // number; they also keep the re-read below after the copy.
        lockfree_detail::load_words(slot + 1, tmp);
        if (seq_of(slot).load(std::memory_order_relaxed) == want) {
          out = tmp;
          ++cursor_;
          return {BroadcastStatus::ok, 0};
        }
      } else if (s1 < want) {
        return {};  // not plausible for a published index: forged; report nothing
      }
      // Overwritten (now or while we copied): item cursor_ is lost; go round
      // and re-read the write index to learn how far.
      if (attempt == 3) return skip_to(cursor_ + 1);
      const std::uint64_t w2 = ctl_->write_index.load(std::memory_order_acquire);
      known_written_ = w2;
      if (w2 - cursor_ <= (mask_ + 1)) return skip_to(cursor_ + 1);
    }
    return skip_to(cursor_ + 1);
  }

  // Waits up to `timeout` for an item (or a lap report).
  template <class Rep, class Period>
  [[nodiscard]] BroadcastResult read_for(T& out, std::chrono::duration<Rep, Period> timeout) noexcept {
    BroadcastResult r = try_read(out);
    if (r.status != BroadcastStatus::empty) return r;
    (void)lockfree_detail::wait_until(
        ctl_->published, [&] { return (r = try_read(out)).status != BroadcastStatus::empty; },
        lockfree_detail::deadline_after(timeout));
    return r;
  }

  // The index of the next item this reader wants (save it to resume later).
  std::uint64_t cursor() const noexcept { return cursor_; }
  // How many items are published and not yet read (may exceed capacity).
  std::uint64_t backlog() const noexcept {
    const std::uint64_t w = ctl_->write_index.load(std::memory_order_acquire);
    return w > cursor_ ? w - cursor_ : 0;
  }

 private:
  friend class BroadcastRing<T>;
  BroadcastReader(BroadcastControl* ctl, const std::uint64_t* base, std::uint64_t mask,
                  std::uint64_t cursor) noexcept
      : ctl_(ctl), base_(base), mask_(mask), cursor_(cursor) {}

  static std::atomic_ref<std::uint64_t> seq_of(const std::uint64_t* slot) noexcept {
    return std::atomic_ref<std::uint64_t>(*const_cast<std::uint64_t*>(slot));
  }
  BroadcastResult skip_to(std::uint64_t next) noexcept {
    const std::uint64_t lost = next - cursor_;
    cursor_ = next;
    return {BroadcastStatus::lapped, lost};
  }

  BroadcastControl* ctl_;
  const std::uint64_t* base_;
  std::uint64_t mask_;  // the ring's validated mask: addressing stays in bounds
  std::uint64_t cursor_;
  std::uint64_t known_written_ = 0;  // the last write index read (a lower bound)
};

template <class T>
class BroadcastRing {
  SHMKIT_LOCKFREE_CHECK_ELEMENT(T);
  static constexpr std::size_t kWords = lockfree_detail::kWords<T>;
  // Slot: one sequence word then the item's words (8-byte granules, so the
  // atomic word copies are word-sized and aligned).
  static constexpr std::uint64_t kSlotSize = 8 * (1 + kWords);
  static_assert(alignof(T) <= 8,
                "BroadcastRing copies items as 8-byte words: over-aligned T is not supported");

 public:
  using value_type = T;
  static constexpr BlockKind kKind = BlockKind::broadcast_ring;

  static BroadcastRing create(std::string_view name, std::uint64_t capacity) {
    TypedBlock b = create_typed_block(
        name, region_spec(capacity, name),
        [](std::span<std::byte> prefix, std::span<std::byte> payload) { init_region(prefix, payload); });
    return BroadcastRing(std::move(b));
  }

  // A ring region inside a structure of your own (examples/order_book), as
  // SeqLock::region_spec, but at an offset of the block that is a multiple
  // of alignof(BroadcastControl) (128: the control words sit on line pairs
  // of their own). The creator places region_spec(capacity) with
  // init_typed_region(bytes, spec, init_region-calling lambda); every process
  // opens it with open_typed_region() and passes it to from_block(). Throws
  // std::invalid_argument (naming `name`) for a capacity that is not a power
  // of two in [1, 2^40 / slot size].
  static BlockSpec region_spec(std::uint64_t capacity, std::string_view name = "(region)") {
    return lockfree_detail::ring_spec<T, BroadcastControl>(kKind, capacity, kSlotSize, name);
  }
  static void init_region(std::span<std::byte> prefix, std::span<std::byte>) noexcept {
    new (prefix.data()) BroadcastControl();  // slots: zero = "no item yet"
  }

  static BroadcastRing attach(std::string_view name, const AttachOptions& options = AttachOptions()) {
    return BroadcastRing(lockfree_detail::attach_ring<T, BroadcastControl>(name, kKind, kSlotSize, options));
  }

  // Adopts a block whose typed header the caller already validated for
  // kind BroadcastRing and element T (open_typed_region / attach_typed_block), e.g.
  // an anonymous block shared with forked children; checks the ring's own
  // fields as attach() does.
  static BroadcastRing from_block(TypedBlock block) {
    if (reinterpret_cast<std::uintptr_t>(block.prefix.data()) % alignof(BroadcastControl) != 0) {
      lockfree_detail::bad_block(
          block.shm.name().empty() ? "(anonymous)" : block.shm.name(),
          "ring region is not aligned to " + std::to_string(alignof(BroadcastControl)) + " bytes");
    }
    return BroadcastRing(lockfree_detail::adopt_ring<BroadcastControl>(std::move(block), kSlotSize));
  }

  BroadcastRing(BroadcastRing&&) noexcept = default;
  BroadcastRing& operator=(BroadcastRing&&) noexcept = default;

  const std::string& name() const noexcept { return block_.shm.name(); }
  void unlink() { block_.shm.unlink(); }
  std::uint64_t capacity() const noexcept { return mask_ + 1; }

  // Writer: publishes `value` as item write_index(). Wait-free.
  void push(const T& value) noexcept {
    // relaxed: only the writer writes write_index.
    const std::uint64_t i = ctl_->write_index.load(std::memory_order_relaxed);
    std::uint64_t* s = slot(i);
    BroadcastReader<T>::seq_of(s).store(2 * i + 1, std::memory_order_relaxed);
    // (1) release word stores: pair with the reader's acquire word loads (6).
    lockfree_detail::store_words(s + 1, value);
    // (2) release: pairs with (5).
    BroadcastReader<T>::seq_of(s).store(2 * i + 2, std::memory_order_release);
    // (3) release: pairs with (4).
    ctl_->write_index.store(i + 1, std::memory_order_release);
    SHMKIT_FAULT_POINT(broadcast_published);
    lockfree_detail::notify(ctl_->published, asym_);
  }

  // Items published so far (the index the next push writes).
  std::uint64_t write_index() const noexcept { return ctl_->write_index.load(std::memory_order_acquire); }

  // A reader of the items pushed from now on.
  BroadcastReader<T> reader() const noexcept { return BroadcastReader<T>(ctl_, base_, mask_, write_index()); }
  // A reader that resumes at `cursor` (lapped at once if that is gone).
  BroadcastReader<T> reader_at(std::uint64_t cursor) const noexcept {
    return BroadcastReader<T>(ctl_, base_, mask_, cursor);
  }
  // A reader of the oldest item still available.
  BroadcastReader<T> reader_oldest() const noexcept {
    const std::uint64_t w = write_index();
    return BroadcastReader<T>(ctl_, base_, mask_, w > capacity() ? w - capacity() : 0);
  }

 private:
  friend class BroadcastReader<T>;
  explicit BroadcastRing(TypedBlock b) noexcept
      : block_(std::move(b)),
        ctl_(reinterpret_cast<BroadcastControl*>(block_.prefix.data())),
        base_(reinterpret_cast<std::uint64_t*>(block_.payload.data())),
        mask_(block_.header.count - 1),
        asym_(lockfree_detail::asymmetric_fence_available()) {}

  std::uint64_t* slot(std::uint64_t index) const noexcept {
    return base_ + (index & mask_) * (1 + kWords);  // masked: always inside the payload
  }

  TypedBlock block_;
  BroadcastControl* ctl_;
  std::uint64_t* base_;
  std::uint64_t mask_;  // from the validated header snapshot, never re-read
  bool asym_;
};

}  // namespace shmkit
