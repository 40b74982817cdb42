// shmkit/lockfree/mpmc_queue.hpp — MpmcQueue<T>: a bounded multi-producer
// multi-consumer queue in a named block (Dmitry Vyukov's bounded queue, as in
// rigtorp/MPMCQueue and xenium's vyukov_bounded_queue), usable by unrelated
// processes.
//
// Contract
//   * Any number of producers and consumers, in any processes. Capacity: a
//     power of two fixed at create(). T: trivially copyable (static_assert).
//   * Algorithm: slot i holds a sequence number. For position p (a 64-bit
//     counter, slot p & mask), seq == p means "free for the producer of p",
//     seq == p + 1 "full, for the consumer of p", and the consumer hands the
//     slot to the next lap with seq = p + capacity. A producer claims p with
//     a CAS on tail only after seeing seq == p; a consumer claims p with a CAS
//     on head after seeing seq == p + 1. Each item is thus written and read
//     by exactly one process; FIFO per producer; linearisable at the CASes.
//   * Progress: try_push/try_pop are lock-free (a CAS loop that retries only
//     when another side made progress) but not wait-free: a producer stalled
//     between its CAS and its publishing store delays consumers of that slot
//     (they see it empty). push/pop spin, then sleep on a shared futex word
//     (woken only when a sleeper may exist); *_for/*_until return false at
//     the deadline. Nothing throws after create/attach.
//   * Crash semantics. A producer killed between claiming a slot and
//     publishing it leaves that slot "claimed" forever: consumers see the
//     queue as empty from that position on (timed pops return false; items
//     pushed after it stay unreachable) and producers fill the rest and then
//     see the queue as full. Recreate the queue in that case. A consumer
//     killed between claiming and releasing a slot loses that one item and
//     leaves the slot unusable for producers a lap later (same remedy).
//     Outside those windows (a few instructions) a kill loses nothing
//     committed, and no survivor hangs in a timed call.
//   * Untrusted block: positions are masked before addressing; a forged
//     sequence number makes try_ calls return false rather than loop.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <string_view>

#include "shmkit/detail/fault.hpp"
#include "shmkit/lockfree/detail/common.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit {

struct MpmcControl {
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> tail;  // producers claim
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> head;  // consumers claim
  alignas(lockfree_detail::kFalseSharingRange) lockfree_detail::WaitSlot not_empty;
  lockfree_detail::WaitSlot not_full;

  MpmcControl() = default;
  // Lives in a block at a fixed place: copying or moving it means nothing.
  MpmcControl(const MpmcControl&) = delete;
  MpmcControl& operator=(const MpmcControl&) = delete;
};
static_assert(offsetof(MpmcControl, head) - offsetof(MpmcControl, tail) >=
                  lockfree_detail::kFalseSharingRange,
              "producer and consumer positions must not share a cache line (pair)");
static_assert(std::is_standard_layout_v<MpmcControl>, "MpmcControl is read by other processes");

template <class T>
struct MpmcSlot {
  std::atomic<std::uint64_t> seq;
  T value;
};

template <class T>
class MpmcQueue {
  SHMKIT_LOCKFREE_CHECK_ELEMENT(T);
  using Slot = MpmcSlot<T>;
  static_assert(std::is_standard_layout_v<Slot>, "a slot is read by other processes");

 public:
  using value_type = T;
  static constexpr BlockKind kKind = BlockKind::mpmc_queue;

  static MpmcQueue create(std::string_view name, std::uint64_t capacity) {
    const BlockSpec spec =
        lockfree_detail::ring_spec<T, MpmcControl>(kKind, capacity, sizeof(Slot), name);
    TypedBlock b = create_typed_block(
        name, spec, [capacity](std::span<std::byte> prefix, std::span<std::byte> payload) {
          new (prefix.data()) MpmcControl();
          auto* slots = reinterpret_cast<Slot*>(payload.data());
          for (std::uint64_t i = 0; i < capacity; ++i) {
            // relaxed: published by create_typed_block's release of kReady.
            slots[i].seq.store(i, std::memory_order_relaxed);
          }
        });
    return MpmcQueue(std::move(b));
  }

  static MpmcQueue attach(std::string_view name, const AttachOptions& options = AttachOptions()) {
    return MpmcQueue(lockfree_detail::attach_ring<T, MpmcControl>(name, kKind, sizeof(Slot), options));
  }

  // Adopts a block whose typed header the caller already validated for
  // kind MpmcQueue and element T (open_typed_region / attach_typed_block), e.g.
  // an anonymous block shared with forked children; checks the ring's own
  // fields as attach() does.
  static MpmcQueue from_block(TypedBlock block) {
    return MpmcQueue(lockfree_detail::adopt_ring<MpmcControl>(std::move(block), sizeof(Slot)));
  }

  MpmcQueue(MpmcQueue&&) noexcept = default;
  MpmcQueue& operator=(MpmcQueue&&) noexcept = default;

  const std::string& name() const noexcept { return block_.shm.name(); }
  void unlink() { block_.shm.unlink(); }
  std::uint64_t capacity() const noexcept { return mask_ + 1; }

  [[nodiscard]] bool try_push(const T& value) noexcept {
    // relaxed: the position is only a hint; the slot's seq (1) decides.
    std::uint64_t pos = ctl_->tail.load(std::memory_order_relaxed);
    for (;;) {
      Slot& s = slots_[pos & mask_];
      // (1) acquire: pairs with (4); the consumer of the previous lap has
      // finished reading the slot.
      const std::uint64_t seq = s.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - pos);
      if (diff == 0) {
        // relaxed: the slot's seq, not tail, carries the data.
        if (ctl_->tail.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          SHMKIT_FAULT_POINT(mpmc_push_claimed);
          std::memcpy(&s.value, &value, sizeof(T));
          // (2) release: pairs with (3); the value is written before the
          // consumer sees seq == pos + 1.
          s.seq.store(pos + 1, std::memory_order_release);
          lockfree_detail::notify(ctl_->not_empty, asym_);
          return true;
        }
      } else if (diff < 0) {
        return false;  // full: the slot still holds the previous lap's item
      } else {
        const std::uint64_t now = ctl_->tail.load(std::memory_order_relaxed);
        if (now == pos) return false;  // forged seq: no producer moved on
        pos = now;
      }
    }
  }

  [[nodiscard]] bool try_pop(T& out) noexcept {
    std::uint64_t pos = ctl_->head.load(std::memory_order_relaxed);
    for (;;) {
      Slot& s = slots_[pos & mask_];
      // (3) acquire: pairs with (2); the value is visible.
      const std::uint64_t seq = s.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - (pos + 1));
      if (diff == 0) {
        if (ctl_->head.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          SHMKIT_FAULT_POINT(mpmc_pop_claimed);
          std::memcpy(&out, &s.value, sizeof(T));
          // (4) release: pairs with (1); our read is done before the next
          // lap's producer writes.
          s.seq.store(pos + mask_ + 1, std::memory_order_release);
          lockfree_detail::notify(ctl_->not_full, asym_);
          return true;
        }
      } else if (diff < 0) {
        return false;  // empty (or the slot's producer has not published)
      } else {
        const std::uint64_t now = ctl_->head.load(std::memory_order_relaxed);
        if (now == pos) return false;  // forged seq
        pos = now;
      }
    }
  }

  // Batch forms: as many as fit / are there, one by one (each item is its
  // own linearisation point). Return the count.
  [[nodiscard]] std::size_t try_push(std::span<const T> items) noexcept {
    std::size_t n = 0;
    while (n < items.size() && try_push(items[n])) ++n;
    return n;
  }
  [[nodiscard]] std::size_t try_pop(std::span<T> out) noexcept {
    std::size_t n = 0;
    while (n < out.size() && try_pop(out[n])) ++n;
    return n;
  }

  void push(const T& value) noexcept {
    (void)lockfree_detail::wait_until(ctl_->not_full, [&] { return try_push(value); }, std::nullopt);
  }
  [[nodiscard]] bool push_until(const T& value, std::chrono::steady_clock::time_point deadline) noexcept {
    return lockfree_detail::wait_until(ctl_->not_full, [&] { return try_push(value); }, deadline);
  }
  template <class Rep, class Period>
  [[nodiscard]] bool push_for(const T& value, std::chrono::duration<Rep, Period> timeout) noexcept {
    return push_until(value, *lockfree_detail::deadline_after(timeout));
  }
  T pop() noexcept {
    T out;
    (void)lockfree_detail::wait_until(ctl_->not_empty, [&] { return try_pop(out); }, std::nullopt);
    return out;
  }
  [[nodiscard]] bool pop_until(T& out, std::chrono::steady_clock::time_point deadline) noexcept {
    return lockfree_detail::wait_until(ctl_->not_empty, [&] { return try_pop(out); }, deadline);
  }
  template <class Rep, class Period>
  [[nodiscard]] bool pop_for(T& out, std::chrono::duration<Rep, Period> timeout) noexcept {
    return pop_until(out, *lockfree_detail::deadline_after(timeout));
  }

  // A snapshot (positions move concurrently).
  std::uint64_t size() const noexcept {
    const std::uint64_t h = ctl_->head.load(std::memory_order_acquire);
    const std::uint64_t t = ctl_->tail.load(std::memory_order_acquire);
    return t > h ? std::min<std::uint64_t>(t - h, capacity()) : 0;
  }
  bool empty() const noexcept { return size() == 0; }

 private:
  explicit MpmcQueue(TypedBlock b) noexcept
      : block_(std::move(b)),
        ctl_(reinterpret_cast<MpmcControl*>(block_.prefix.data())),
        slots_(reinterpret_cast<Slot*>(block_.payload.data())),
        mask_(block_.header.count - 1),
        asym_(lockfree_detail::asymmetric_fence_available()) {}

  TypedBlock block_;
  MpmcControl* ctl_;
  Slot* slots_;
  std::uint64_t mask_;  // from the validated header snapshot, never re-read
  bool asym_;
};

}  // namespace shmkit
