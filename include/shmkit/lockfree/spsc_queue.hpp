// shmkit/lockfree/spsc_queue.hpp — SpscQueue<T>: a bounded single-producer
// single-consumer ring in a named block, usable by unrelated processes.
//
// Contract
//   * One producer and one consumer at a time (any processes or threads; each
//     uses its own handle or one handle per side). A second concurrent
//     producer or consumer is undefined behaviour of the queue (never of the
//     process: every slot address is masked, so it stays in bounds).
//   * Capacity: a power of two fixed at create(); all `capacity` slots are
//     usable. T: trivially copyable (static_assert).
//   * Progress: try_push/try_pop, the batch forms and peek/consume (the
//     zero-copy consumer) are wait-free. push/pop
//     spin briefly, then sleep on a shared futex word; the other side wakes
//     them with a syscall only when a sleeper may exist (see
//     lockfree/detail/common.hpp). *_for/*_until variants return false at the
//     deadline. Nothing throws after create/attach.
//   * Layout: header (typed_block.hpp, kind spsc_queue, count = capacity,
//     param[0] = sizeof(T)), prefix = SpscControl (tail and head 128 bytes
//     apart, two WaitSlots), payload = capacity slots of T.
//   * Crash semantics. An item is committed when the producer's release store
//     of tail covers it, and consumed when the consumer's release store of
//     head covers it. A producer killed mid-push (or mid-batch) leaves written
//     but unpublished slots: invisible, overwritten by the next producer,
//     which attaches and continues from tail. A consumer killed before its
//     head store leaves head unchanged: the items it was copying are
//     delivered again to the next consumer (they had not been consumed); one
//     killed after it has consumed them (what it did with them is the
//     application's business: record progress if you need exactly-once
//     processing). Nothing committed is lost or duplicated by the queue; a
//     survivor's timed waits return false; a killed sleeper leaves a flag
//     that costs the other side one futex_wake.
//   * Indices in the block are untrusted: a forged head/tail can make the
//     queue report garbage items or lose items, but never address outside the
//     payload.
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

// The prefix of an SPSC block. Lives in shared memory.
struct SpscControl {
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> tail;  // producer writes
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> head;  // consumer writes
  alignas(lockfree_detail::kFalseSharingRange) lockfree_detail::WaitSlot not_empty;  // consumer sleeps
  lockfree_detail::WaitSlot not_full;  // producer sleeps

  SpscControl() = default;
  // Lives in a block at a fixed place: copying or moving it means nothing.
  SpscControl(const SpscControl&) = delete;
  SpscControl& operator=(const SpscControl&) = delete;
};
static_assert(offsetof(SpscControl, head) - offsetof(SpscControl, tail) >=
                  lockfree_detail::kFalseSharingRange,
              "producer and consumer indices must not share a cache line (pair)");
static_assert(offsetof(SpscControl, not_empty) - offsetof(SpscControl, head) >=
                  lockfree_detail::kFalseSharingRange,
              "the wait slots must not share the consumer index's lines");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "64-bit indices must be lock-free to live in shared memory");
static_assert(std::is_standard_layout_v<SpscControl>, "SpscControl is read by other processes");

template <class T>
class SpscQueue {
  SHMKIT_LOCKFREE_CHECK_ELEMENT(T);

 public:
  using value_type = T;
  static constexpr BlockKind kKind = BlockKind::spsc_queue;

  // Creates the block `name` holding an empty queue of `capacity` slots
  // (a power of two). Throws std::system_error (EEXIST, ...) or
  // std::invalid_argument.
  static SpscQueue create(std::string_view name, std::uint64_t capacity) {
    const BlockSpec spec =
        lockfree_detail::ring_spec<T, SpscControl>(kKind, capacity, sizeof(T), name);
    TypedBlock b = create_typed_block(name, spec, [](std::span<std::byte> prefix, std::span<std::byte>) {
      new (prefix.data()) SpscControl();
    });
    return SpscQueue(std::move(b));
  }

  // Attaches to an existing queue of T. Throws std::invalid_argument naming
  // the block if it is not an SpscQueue<T> or its header is inconsistent.
  static SpscQueue attach(std::string_view name, const AttachOptions& options = AttachOptions()) {
    return SpscQueue(lockfree_detail::attach_ring<T, SpscControl>(name, kKind, sizeof(T), options));
  }

  // Adopts a block whose typed header the caller already validated for
  // kind SpscQueue and element T (open_typed_region / attach_typed_block), e.g.
  // an anonymous block shared with forked children; checks the ring's own
  // fields as attach() does.
  static SpscQueue from_block(TypedBlock block) {
    return SpscQueue(lockfree_detail::adopt_ring<SpscControl>(std::move(block), sizeof(T)));
  }

  SpscQueue(SpscQueue&&) noexcept = default;
  SpscQueue& operator=(SpscQueue&&) noexcept = default;

  const std::string& name() const noexcept { return block_.shm.name(); }
  void unlink() { block_.shm.unlink(); }
  std::uint64_t capacity() const noexcept { return mask_ + 1; }

  // ------------------------------------------------------------ producer
  [[nodiscard]] bool try_push(const T& value) noexcept {
    // relaxed: only this producer writes tail.
    const std::uint64_t t = ctl_->tail.load(std::memory_order_relaxed);
    if (t - head_cache_ > mask_) {
      // (5) acquire: pairs with (8); the consumer is done with the slot.
      head_cache_ = ctl_->head.load(std::memory_order_acquire);
      if (t - head_cache_ > mask_) return false;
    }
    std::memcpy(&slots_[t & mask_], &value, sizeof(T));
    SHMKIT_FAULT_POINT(spsc_push_written);
    // (6) release: pairs with (7); the slot is written before it is seen.
    ctl_->tail.store(t + 1, std::memory_order_release);
    SHMKIT_FAULT_POINT(spsc_push_published);
    lockfree_detail::notify(ctl_->not_empty, asym_);
    return true;
  }

  // Pushes a prefix of `items`; returns how many (0 when full).
  [[nodiscard]] std::size_t try_push(std::span<const T> items) noexcept {
    const std::uint64_t t = ctl_->tail.load(std::memory_order_relaxed);
    std::uint64_t room = capacity() - std::min<std::uint64_t>(t - head_cache_, capacity());
    if (room < items.size()) {
      head_cache_ = ctl_->head.load(std::memory_order_acquire);  // (5)
      room = capacity() - std::min<std::uint64_t>(t - head_cache_, capacity());
    }
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(room, items.size()));
    if (n == 0) return 0;
    for (std::size_t i = 0; i < n; ++i) std::memcpy(&slots_[(t + i) & mask_], &items[i], sizeof(T));
    ctl_->tail.store(t + n, std::memory_order_release);  // (6)
    lockfree_detail::notify(ctl_->not_empty, asym_);
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
  // Pushes as many of `items` as fit before `timeout`; returns how many.
  [[nodiscard]] std::size_t push_for(std::span<const T> items, std::chrono::nanoseconds timeout) noexcept {
    const auto deadline = lockfree_detail::deadline_after(timeout);
    std::size_t done = 0;
    while (done < items.size()) {
      std::size_t n = 0;
      if (!lockfree_detail::wait_until(
              ctl_->not_full, [&] { return (n = try_push(items.subspan(done))) != 0; }, deadline)) {
        break;
      }
      done += n;
    }
    return done;
  }
  // Pushes all of `items`, blocking while full.
  void push(std::span<const T> items) noexcept {
    while (!items.empty()) {
      std::size_t n = 0;
      (void)lockfree_detail::wait_until(
          ctl_->not_full, [&] { return (n = try_push(items)) != 0; }, std::nullopt);
      items = items.subspan(n);
    }
  }

  // ------------------------------------------------------------ consumer
  [[nodiscard]] bool try_pop(T& out) noexcept {
    // relaxed: only this consumer writes head.
    const std::uint64_t h = ctl_->head.load(std::memory_order_relaxed);
    // A cache behind head (this handle sat idle while another consumed) is
    // as stale as one equal to it: reload.
    if (h == tail_cache_ || tail_cache_ - h > capacity()) {
      // (7) acquire: pairs with (6); the slot's bytes are visible.
      tail_cache_ = ctl_->tail.load(std::memory_order_acquire);
      if (h == tail_cache_) return false;
    }
    std::memcpy(&out, &slots_[h & mask_], sizeof(T));
    SHMKIT_FAULT_POINT(spsc_pop_copied);
    // (8) release: pairs with (5); our read of the slot is done before the
    // producer may overwrite it.
    ctl_->head.store(h + 1, std::memory_order_release);
    SHMKIT_FAULT_POINT(spsc_pop_released);
    lockfree_detail::notify(ctl_->not_full, asym_);
    return true;
  }

  // Pops up to out.size() items; returns how many (0 when empty).
  [[nodiscard]] std::size_t try_pop(std::span<T> out) noexcept {
    const std::uint64_t h = ctl_->head.load(std::memory_order_relaxed);
    std::uint64_t avail = tail_cache_ - h;
    if (avail < out.size() || avail > capacity()) {
      tail_cache_ = ctl_->tail.load(std::memory_order_acquire);  // (7)
      avail = tail_cache_ - h;
    }
    // A forged tail may claim more than capacity: never copy more than that.
    const std::size_t n = static_cast<std::size_t>(
        std::min<std::uint64_t>({avail, out.size(), capacity()}));
    if (n == 0) return 0;
    for (std::size_t i = 0; i < n; ++i) std::memcpy(&out[i], &slots_[(h + i) & mask_], sizeof(T));
    ctl_->head.store(h + n, std::memory_order_release);  // (8)
    lockfree_detail::notify(ctl_->not_full, asym_);
    return n;
  }

  T pop() noexcept {
    T out{};  // always written below (the untimed wait returns only on success)
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
  // Waits until at least one item is there, then pops up to out.size().
  [[nodiscard]] std::size_t pop_for(std::span<T> out, std::chrono::nanoseconds timeout) noexcept {
    std::size_t n = 0;
    (void)lockfree_detail::wait_until(
        ctl_->not_empty, [&] { return (n = try_pop(out)) != 0; },
        lockfree_detail::deadline_after(timeout));
    return n;
  }

  // ------------------------------------------------- zero-copy consumer
  // The items ready at the head, in place: up to `max` of them, contiguous
  // (a batch stops at the end of the ring; the next peek() continues from
  // its start). They stay as they are until consume(): the producer cannot
  // overwrite a slot before head passes it. Between peek() and consume()
  // this consumer must not pop. Wait-free.
  [[nodiscard]] std::span<const T> peek(std::size_t max) noexcept {
    const std::uint64_t h = ctl_->head.load(std::memory_order_relaxed);
    tail_cache_ = ctl_->tail.load(std::memory_order_acquire);  // (7)
    // A forged tail may claim more than capacity: never expose more.
    const std::uint64_t ready = std::min<std::uint64_t>(tail_cache_ - h, capacity());
    const std::uint64_t to_end = capacity() - (h & mask_);
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>({ready, to_end, max}));
    return {&slots_[h & mask_], n};
  }
  // Hands the first n items of the last peek() back to the producer (n at
  // most that peek's size).
  void consume(std::size_t n) noexcept {
    if (n == 0) return;
    const std::uint64_t h = ctl_->head.load(std::memory_order_relaxed);
    ctl_->head.store(h + n, std::memory_order_release);  // (8)
    lockfree_detail::notify(ctl_->not_full, asym_);
  }

  // ------------------------------------------------------------ observers
  // A snapshot; exact only when called by a side while the other is idle.
  std::uint64_t size() const noexcept {
    const std::uint64_t h = ctl_->head.load(std::memory_order_acquire);
    const std::uint64_t t = ctl_->tail.load(std::memory_order_acquire);
    return std::min<std::uint64_t>(t - h, capacity());
  }
  bool empty() const noexcept { return size() == 0; }
  // The shared indices (items ever pushed / popped): what a restarted
  // producer or consumer continues from.
  std::uint64_t producer_index() const noexcept { return ctl_->tail.load(std::memory_order_acquire); }
  std::uint64_t consumer_index() const noexcept { return ctl_->head.load(std::memory_order_acquire); }

 private:
  explicit SpscQueue(TypedBlock b) noexcept
      : block_(std::move(b)),
        ctl_(reinterpret_cast<SpscControl*>(block_.prefix.data())),
        slots_(reinterpret_cast<T*>(block_.payload.data())),
        mask_(block_.header.count - 1),
        asym_(lockfree_detail::asymmetric_fence_available()) {
    head_cache_ = ctl_->head.load(std::memory_order_acquire);
    tail_cache_ = ctl_->tail.load(std::memory_order_acquire);
  }

  TypedBlock block_;
  SpscControl* ctl_;
  T* slots_;
  std::uint64_t mask_;  // from the validated header snapshot, never re-read
  bool asym_;
  // Process-local caches of the other side's index, on separate line pairs
  // so a producer thread and a consumer thread may share one handle.
  alignas(lockfree_detail::kFalseSharingRange) std::uint64_t head_cache_ = 0;  // producer's view of head
  alignas(lockfree_detail::kFalseSharingRange) std::uint64_t tail_cache_ = 0;  // consumer's view of tail
};

}  // namespace shmkit
