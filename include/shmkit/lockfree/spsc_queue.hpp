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
//   * Layout (version 2, in the header's param[1]; a block of the first
//     layout, whose param[1] is 0, is refused by name): header
//     (typed_block.hpp, kind spsc_queue, count = capacity, param[0] =
//     sizeof(T)), prefix = SpscControl (tail and the last producer's
//     process_token(), head 128 bytes further, two WaitSlots) followed by
//     `capacity` 8-byte publication marks, payload = capacity contiguous
//     slots of T (what peek() exposes in place).
//   * Publication. Item number i (counting from 0 since create) sits in slot
//     i & (capacity - 1) and is published when that slot's mark holds i + 1
//     (a release store after the slot's bytes). The consumer polls the mark
//     of the slot it wants, never the producer's tail, so a hand-off moves
//     the mark's line and the slot's line to the consumer and nothing else
//     (bench/notes/spsc-layout.md). Published items always form a prefix, so
//     one published mark shows every item before it published: the
//     consumer remembers (in its handle, not in the block) how far the marks
//     it read reached, and reads the next mark line only when it gets there
//     (batched consumption, as B-Queue's). `tail` (items published,
//     stored after the marks) is for observers and for a restarted producer;
//     `head` (items consumed) is what the producer polls when its cached copy
//     says the ring is full.
//   * Crash semantics. An item is committed when its mark is stored, and
//     consumed when the consumer's release store of head covers it. A
//     producer killed after writing a slot but before its mark leaves an
//     invisible slot, overwritten by the next producer, which attaches and
//     continues from tail. A producer killed after a mark but before the
//     tail store leaves tail behind items the consumer can see:
//     producer_index() counts them, and the next producer's first push steps
//     tail over them (at most capacity marks read). A consumer killed before its head store leaves head
//     unchanged: the items it was copying are delivered again to the next consumer (they had not been
//     consumed); one killed after it has consumed them (what it did with them is the application's business:
//     record progress if you need exactly-once processing). Nothing committed is lost or duplicated by the
//     queue; a survivor's timed waits return false; a killed sleeper leaves a flag that costs the other side
//     one futex_wake.
//   * Indices and marks in the block are untrusted: forged ones can make the
//     queue report garbage items or lose items, but never address outside the
//     payload, and no call loops more than capacity times over them.
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
  // The process_token() of the producer that stored tail last.
  std::atomic<std::uint64_t> producer;
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> head;      // consumer writes
  alignas(lockfree_detail::kFalseSharingRange) lockfree_detail::WaitSlot not_empty;  // consumer sleeps
  lockfree_detail::WaitSlot not_full;                                                // producer sleeps

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

// The layout's version, in the header's param[1] (1, the header's 0, was the
// layout without publication marks: the consumer polled tail).
inline constexpr std::uint64_t kSpscLayout = 2;

template <class T>
class SpscQueue {
  SHMKIT_LOCKFREE_CHECK_ELEMENT(T);

 public:
  using value_type = T;
  static constexpr BlockKind kKind = BlockKind::spsc_queue;

  // Creates the block `name` holding an empty queue of `capacity` slots
  // (a power of two). Throws std::system_error (EEXIST, ...) or
  // std::invalid_argument.
  static SpscQueue create(std::string_view name, std::uint64_t capacity,
                          const SharedMemory::Options& options = SharedMemory::Options()) {
    TypedBlock b = create_typed_block(name, region_spec(capacity, name), init_region, options);
    return SpscQueue(std::move(b));
  }

  // Attaches to an existing queue of T. Throws std::invalid_argument naming
  // the block if it is not an SpscQueue<T> or its header is inconsistent.
  static SpscQueue attach(std::string_view name, const AttachOptions& options = AttachOptions()) {
    return from_block(attach_typed_block(name, kKind, TypeFingerprint::of<T>(), options));
  }

  // Adopts a block whose typed header the caller already validated for
  // kind SpscQueue and element T (open_typed_region / attach_typed_block), e.g.
  // an anonymous block shared with forked children; checks the ring's own
  // fields as attach() does.
  static SpscQueue from_block(TypedBlock block) {
    const std::string name = block.shm.name().empty() ? "(anonymous)" : block.shm.name();
    const BlockHeader& h = block.header;
    if (h.param[1] != kSpscLayout) {
      lockfree_detail::bad_block(name, "SpscQueue layout " + std::to_string(h.param[1]) + ", expected " +
                                           std::to_string(kSpscLayout) +
                                           " (made by an older shmkit: recreate it)");
    }
    lockfree_detail::validate_ring(h, sizeof(T), sizeof(SpscControl), name);
    // validate_ring bounded count by the payload; the marks must fit exactly.
    if (h.prefix_size != prefix_bytes(h.count)) {
      lockfree_detail::bad_block(name, "prefix of " + std::to_string(h.prefix_size) + " bytes, expected " +
                                           std::to_string(prefix_bytes(h.count)) + " (control and " +
                                           std::to_string(h.count) + " marks)");
    }
    return SpscQueue(std::move(block));
  }

  // The typed-region spec and initialiser of a queue of `capacity` slots,
  // for a queue placed in a block of your own (typed_block.hpp) or made with
  // another element fingerprint of the same size (the Python binding).
  // Throws std::invalid_argument naming `name` for a bad capacity.
  static BlockSpec region_spec(std::uint64_t capacity, std::string_view name) {
    lockfree_detail::check_capacity(capacity, sizeof(T) + sizeof(std::uint64_t), name);
    BlockSpec spec = lockfree_detail::ring_spec<T, SpscControl>(kKind, capacity, sizeof(T), name);
    spec.prefix_size = prefix_bytes(capacity);
    spec.param[1] = kSpscLayout;
    return spec;
  }
  // Constructs the control block and clears the marks (nothing published).
  static void init_region(std::span<std::byte> prefix, std::span<std::byte> /*payload*/) noexcept {
    new (prefix.data()) SpscControl();  // indices 0, no producer yet
    auto* marks = reinterpret_cast<std::atomic<std::uint64_t>*>(prefix.data() + sizeof(SpscControl));
    const std::size_t n = (prefix.size() - sizeof(SpscControl)) / sizeof(std::uint64_t);
    // relaxed: published by create_typed_block's release of the ready state.
    for (std::size_t i = 0; i < n; ++i) new (&marks[i]) std::atomic<std::uint64_t>(0);
  }

  SpscQueue(SpscQueue&&) noexcept = default;
  SpscQueue& operator=(SpscQueue&&) noexcept = default;

  const std::string& name() const noexcept { return block_.shm.name(); }
  void unlink() { block_.shm.unlink(); }
  std::uint64_t capacity() const noexcept { return mask_ + 1; }

  // ------------------------------------------------------------ producer
  [[nodiscard]] bool try_push(const T& value) noexcept {
    // Locals: a store through the block's words could alias the handle's
    // own 64-bit members, and the compiler would reload them after each.
    SpscControl* const ctl = ctl_;
    const std::uint64_t mask = mask_;
    const std::uint64_t t = producer_start(ctl);
    if (t - head_cache_ > mask) {
      // (5) acquire: pairs with (8); the consumer is done with the slot.
      head_cache_ = ctl->head.load(std::memory_order_acquire);
      if (t - head_cache_ > mask) return false;
    }
    std::memcpy(&slots_[t & mask], &value, sizeof(T));
    SHMKIT_FAULT_POINT(spsc_push_written);
    // (6) release: pairs with (7); the slot is written before it is seen.
    marks_[t & mask].store(t + 1, std::memory_order_release);
    SHMKIT_FAULT_POINT(spsc_push_marked);
    // release: observers that read tail see the items it counts.
    ctl->tail.store(t + 1, std::memory_order_release);
    next_ = t + 1;
    SHMKIT_FAULT_POINT(spsc_push_published);
    lockfree_detail::notify(ctl->not_empty, asym_);
    return true;
  }

  // Pushes a prefix of `items`; returns how many (0 when full).
  [[nodiscard]] std::size_t try_push(std::span<const T> items) noexcept {
    SpscControl* const ctl = ctl_;
    const std::uint64_t mask = mask_;
    const std::uint64_t t = producer_start(ctl);
    std::uint64_t room = capacity() - std::min<std::uint64_t>(t - head_cache_, capacity());
    if (room < items.size()) {
      head_cache_ = ctl->head.load(std::memory_order_acquire);  // (5)
      room = capacity() - std::min<std::uint64_t>(t - head_cache_, capacity());
    }
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(room, items.size()));
    if (n == 0) return 0;
    T* const slots = slots_;
    std::atomic<std::uint64_t>* const marks = marks_;
    for (std::size_t i = 0; i < n; ++i) std::memcpy(&slots[(t + i) & mask], &items[i], sizeof(T));
    // (6) in order, so the consumer never sees a mark beyond an unmarked slot.
    for (std::size_t i = 0; i < n; ++i) marks[(t + i) & mask].store(t + i + 1, std::memory_order_release);
    ctl->tail.store(t + n, std::memory_order_release);
    next_ = t + n;
    lockfree_detail::notify(ctl->not_empty, asym_);
    return n;
  }

  void push(const T& value) noexcept {
    (void)lockfree_detail::wait_until(
        ctl_->not_full, [&] { return try_push(value); }, std::nullopt);
  }
  [[nodiscard]] bool push_until(const T& value, std::chrono::steady_clock::time_point deadline) noexcept {
    return lockfree_detail::wait_until(
        ctl_->not_full, [&] { return try_push(value); }, deadline);
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
    SpscControl* const ctl = ctl_;
    // relaxed: only this consumer writes head.
    const std::uint64_t h = ctl->head.load(std::memory_order_relaxed);
    // Item h was seen published by an earlier call (look-ahead), or is now.
    if (seen_end_ - h - 1 > mask_ && !look(h)) return false;
    std::memcpy(&out, &slots_[h & mask_], sizeof(T));
    SHMKIT_FAULT_POINT(spsc_pop_copied);
    // (8) release: pairs with (5); our read of the slot is done before the
    // producer may overwrite it.
    ctl->head.store(h + 1, std::memory_order_release);
    SHMKIT_FAULT_POINT(spsc_pop_released);
    lockfree_detail::notify(ctl->not_full, asym_);
    return true;
  }

  // Pops up to out.size() items; returns how many (0 when empty).
  [[nodiscard]] std::size_t try_pop(std::span<T> out) noexcept {
    SpscControl* const ctl = ctl_;
    const std::uint64_t mask = mask_;
    const std::uint64_t h = ctl->head.load(std::memory_order_relaxed);
    const std::size_t n = published(h, std::min<std::uint64_t>(out.size(), capacity()));
    if (n == 0) return 0;
    const T* const slots = slots_;
    for (std::size_t i = 0; i < n; ++i) std::memcpy(&out[i], &slots[(h + i) & mask], sizeof(T));
    ctl->head.store(h + n, std::memory_order_release);  // (8)
    lockfree_detail::notify(ctl->not_full, asym_);
    return n;
  }

  T pop() noexcept {
    T out{};  // always written below (the untimed wait returns only on success)
    (void)lockfree_detail::wait_until(
        ctl_->not_empty, [&] { return try_pop(out); }, std::nullopt);
    return out;
  }
  [[nodiscard]] bool pop_until(T& out, std::chrono::steady_clock::time_point deadline) noexcept {
    return lockfree_detail::wait_until(
        ctl_->not_empty, [&] { return try_pop(out); }, deadline);
  }
  template <class Rep, class Period>
  [[nodiscard]] bool pop_for(T& out, std::chrono::duration<Rep, Period> timeout) noexcept {
    return pop_until(out, *lockfree_detail::deadline_after(timeout));
  }
  // Waits until at least one item is there, then pops up to out.size().
  [[nodiscard]] std::size_t pop_for(std::span<T> out, std::chrono::nanoseconds timeout) noexcept {
    std::size_t n = 0;
    (void)lockfree_detail::wait_until(
        ctl_->not_empty, [&] { return (n = try_pop(out)) != 0; }, lockfree_detail::deadline_after(timeout));
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
    const std::uint64_t to_end = capacity() - (h & mask_);
    return {&slots_[h & mask_], published(h, std::min<std::uint64_t>(to_end, max))};
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
    const std::uint64_t t = producer_index();
    // Forged indices: never more than capacity, never "negative".
    return static_cast<std::int64_t>(t - h) > 0 ? std::min<std::uint64_t>(t - h, capacity()) : 0;
  }
  bool empty() const noexcept { return size() == 0; }
  // Items ever published / consumed: what a restarted producer or consumer
  // continues from. producer_index() counts the items a killed producer
  // marked after its last tail store too (it reads marks from tail on, at
  // most capacity of them), so it is never behind consumer_index() and is
  // the number the next push uses.
  std::uint64_t producer_index() const noexcept {
    // acquire: pairs with the producer's release stores of tail and (6).
    const std::uint64_t t = ctl_->tail.load(std::memory_order_acquire);
    return t + ready(t, capacity());
  }
  std::uint64_t consumer_index() const noexcept { return ctl_->head.load(std::memory_order_acquire); }

 private:
  explicit SpscQueue(TypedBlock b) noexcept
      : block_(std::move(b)),
        ctl_(reinterpret_cast<SpscControl*>(block_.prefix.data())),
        marks_(reinterpret_cast<std::atomic<std::uint64_t>*>(block_.prefix.data() + sizeof(SpscControl))),
        slots_(reinterpret_cast<T*>(block_.payload.data())),
        mask_(block_.header.count - 1),
        asym_(lockfree_detail::asymmetric_fence_available()) {
    head_cache_ = ctl_->head.load(std::memory_order_acquire);
  }

  static std::uint64_t prefix_bytes(std::uint64_t capacity) noexcept {
    return sizeof(SpscControl) + capacity * sizeof(std::uint64_t);  // capacity checked first
  }

  // How many items from number t on are published, at most `max` (<=
  // capacity), one acquire load (7) per mark: what producer_index() adds to
  // tail (exact, for the next producer to continue from).
  std::size_t ready(std::uint64_t t, std::uint64_t max) const noexcept {
    std::uint64_t n = 0;
    while (n < max && marks_[(t + n) & mask_].load(std::memory_order_acquire) == t + n + 1) ++n;  // (7)
    return static_cast<std::size_t>(n);
  }

  // The consumer's look-ahead. Published items always form a prefix from
  // head on: each producer marks its items in order, and the next one
  // continues from producer_index(), after every marked item. So an acquire
  // load (7) that finds item k's mark published shows items h..k published
  // too (their slots were written before that mark's release (6), by that
  // producer or by one it continued from), and they stay published until
  // head passes them: the producer overwrites a slot only after the head
  // store (8) that frees it. seen_end_ records the end of what a load saw;
  // a later call whose head h has 1 <= seen_end_ - h <= capacity reads no
  // mark for item h. That is batched consumption of the marks (B-Queue,
  // Wang et al. 2013): while the producer runs ahead, the consumer reads a
  // mark line once per line instead of once per item, so the producer can
  // go on writing the marks behind it without taking the line back at every
  // item. A forged head or forged marks can only make the consumer return
  // garbage, as before (every index is masked).
  //
  // One item: item h's mark; then, only if it is published and h starts a
  // mark line, the last mark on that line (no extra line transfer) and the
  // last mark of each following line while published, up to kLookAhead
  // items. The first load is the only one when the queue is empty, so a
  // consumer polling an empty queue touches only the line it waits on (the
  // round trip).
  bool look(std::uint64_t h) noexcept {
    const std::uint64_t mask = mask_;
    std::atomic<std::uint64_t>* const marks = marks_;
    // A read prefetch of item h's slot line, issued with the mark's load:
    // when the producer publishes, the poll that sees the mark has the slot
    // line on its way too, instead of asking for it after the mark arrived
    // (two line transfers overlapped, not in a row: about 7% of the round
    // trip on the EPYC VM). A prefetch reads nothing the program uses.
    __builtin_prefetch(&slots_[h & mask], 0);
    // (7) acquire: pairs with (6); the slots of the items it shows published
    // are visible (to this call and, by program order, to the later calls
    // that rely on seen_end_).
    if (marks[h & mask].load(std::memory_order_acquire) != h + 1) return false;
    std::uint64_t end = h + 1;
    // Mid-line: the last look (or batch) ended here, most likely because the
    // consumer had caught up with the producer; the rest of the line is not
    // worth a load.
    if ((h & (kMarksPerLine - 1)) != 0) {
      seen_end_ = end;
      return true;
    }
    const std::uint64_t window = std::min<std::uint64_t>(kLookAhead, mask + 1);
    for (std::uint64_t k = h | (kMarksPerLine - 1); k - h < window; k += kMarksPerLine) {
      if (marks[k & mask].load(std::memory_order_acquire) != k + 1) break;  // (7)
      end = k + 1;
    }
    seen_end_ = end;
    return true;
  }

  // Many items (try_pop(span), peek()): how many from number h on are
  // published, at most `max` (<= capacity): what the look-ahead saw, then
  // the last mark of the whole batch (B-Queue's probe), and if that one is
  // not published a binary search for the last one that is (B-Queue's
  // backtracking; valid because published items form a prefix). At most
  // log2(max) + 2 acquire loads (7).
  std::size_t published(std::uint64_t h, std::uint64_t max) noexcept {
    const std::uint64_t mask = mask_;
    std::atomic<std::uint64_t>* const marks = marks_;
    // Items h .. h + k - 1 are published.
    auto all = [&](std::uint64_t k) {
      return marks[(h + k - 1) & mask].load(std::memory_order_acquire) == h + k;  // (7)
    };
    std::uint64_t lo = seen_end_ - h - 1 <= mask ? std::min<std::uint64_t>(seen_end_ - h, max) : 0;
    if (lo == max) return static_cast<std::size_t>(max);
    std::uint64_t hi = max + 1;  // the first count not known to be published
    if (all(max)) {
      lo = max;
    } else {
      hi = max;
      while (hi - lo > 1) {
        const std::uint64_t mid = lo + (hi - lo) / 2;
        (all(mid) ? lo : hi) = mid;
      }
    }
    if (lo > 0) seen_end_ = h + lo;
    return static_cast<std::size_t>(lo);
  }

  // The number of the next item to write. A producer killed between its
  // marks and its tail store left tail behind published items: the next
  // producer steps over them (take_over) and repairs tail. Reading a mark
  // on every push would cost the round trip a third line transfer (the
  // consumer polls that line), so a push skips the check while this handle,
  // in this process image, was the last producer and tail is where its last
  // push left it: then nobody can have marked beyond tail.
  std::uint64_t producer_start(SpscControl* ctl) noexcept {
    const std::uint64_t t = next_;
    // relaxed: only producers write marks, tail and `producer`, one at a time.
    if (ctl->tail.load(std::memory_order_relaxed) == t &&
        ctl->producer.load(std::memory_order_relaxed) == lockfree_detail::process_token()) [[likely]]
      return t;
    return take_over(ctl);
  }
  [[gnu::noinline, gnu::cold]] std::uint64_t take_over(SpscControl* ctl) noexcept {
    const std::uint64_t t = producer_index();
    ctl->producer.store(lockfree_detail::process_token(), std::memory_order_relaxed);
    ctl->tail.store(t, std::memory_order_release);
    next_ = t;
    return t;
  }

  static constexpr std::uint64_t kMarksPerLine = 64 / sizeof(std::uint64_t);
  // How far one single-item look reads ahead (items; capped by capacity).
  static constexpr std::uint64_t kLookAhead = 32;

  TypedBlock block_;
  SpscControl* ctl_;
  std::atomic<std::uint64_t>* marks_;  // capacity of them, after the control block
  T* slots_;
  std::uint64_t mask_;  // from the validated header snapshot, never re-read
  bool asym_;
  // The producer's cache of head and the number its next push will use
  // (process-local, on their own line pair; next_ is checked as
  // producer_start() says). ~0 until this handle pushes.
  alignas(lockfree_detail::kFalseSharingRange) std::uint64_t head_cache_ = 0;
  std::uint64_t next_ = ~std::uint64_t{0};
  // The consumer's look-ahead (look()): items before seen_end_ were seen
  // published. Process-local, on its own line pair, away from the
  // producer's members (the two sides may share one handle from two threads).
  alignas(lockfree_detail::kFalseSharingRange) std::uint64_t seen_end_ = 0;
};

}  // namespace shmkit
