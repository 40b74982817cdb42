// shmkit/lockfree/byte_queue.hpp — ByteQueue: a multi-producer
// multi-consumer queue of byte messages of any length in a named block,
// usable by unrelated processes (C++ and Python's shmkit.Queue family), that
// survives a peer killed at any instruction and goes on around a peer that
// is only stopped.
//
// Contract
//   * Any number of producers and consumers, in any processes of one PID
//     namespace. A message is a byte string of 0 bytes up to 2^63: pushed
//     whole (a gather of parts), popped whole, by exactly one consumer. FIFO
//     per producer thread; between producers, in the order their claims
//     were made (a consumer may take a later message around one whose
//     producer is still writing: see "Stopped").
//   * The ring. The block holds N cells of 64 bytes (N a power of two >= 16,
//     fixed at create()) and one 64-bit state word per cell. A message of
//     L bytes takes ceil((16 + L) / 64) consecutive cells: a 16-byte record
//     header (length, flags, cells), then the bytes; a message that would
//     run past the last cell takes the cells to the end as padding and
//     continues at cell 0, so every message's bytes are contiguous. Messages
//     up to max_inline() bytes (N * 32 - 16, at most 8 MiB - 16) travel in
//     the ring; longer ones, and those longer than the threshold given at
//     create(), travel out of line (below). Positions are 64-bit counters;
//     cell = position mod N.
//   * Claims. Cell state words are positions or claim words, as in
//     MpmcQueue (Vyukov's bounded queue with the claim made on the slot):
//     the word of a record's first cell at position p is p ("free for the
//     producer of p"), p + 1 ("published, for a consumer"), a claim word, or
//     p + N ("released to the next lap"). A claim is one CAS of that word to
//     a word naming the claimant (bit 63; kind: producer, consumer, or a
//     dead producer's skipped claim; 5 lap bits; the record's cell count;
//     the claimant's pid (22 bits) and the low 16 bits of its start time).
//     tail (head) moves past the record after the claim, by the claimant or
//     by anyone who finds the claim there (the cell count is in the claim
//     word), so a claimant stalled or dead between its two CASes holds up
//     no one. The other cells of a record keep their "free" positions while
//     it lives; the consumer releases every cell (the first last).
//   * Progress. try_push/try_pop are lock-free. A consumer that finds the
//     record at head still being written looks past it (claim words carry
//     the length) and takes the first published record behind it, so a
//     producer stalled mid-message delays only its own message (up to
//     kMaxPassed = 16 such records in a row; behind more, consumers wait,
//     asleep, until one is finished or its producer found dead). Such a
//     record, and one a stalled consumer is reading, pins its cells: the
//     other producers go on until the ring comes round to those cells a lap
//     later, and then see the queue full until the peer resumes. push/pop
//     spin, then sleep on a shared futex word in slices of kLostWakeRecheck.
//   * Crash semantics. Killed (any signal that ends the process, at any
//     instruction): a claim whose claimant is proven dead (no such pid, a
//     zombie, or a pid with another start time) is stepped over by any
//     survivor that waits (push/pop/..._for/..._until, between sleep slices)
//     or calls unblock(): a dead producer's record is skipped (its cells are
//     released unread) as soon as a consumer waits; a dead consumer's record
//     (behind head: it blocks no consumer) is released, and its out-of-line
//     block unlinked, when a producer comes round to its cells a lap later
//     and waits (waiting consumers look for it too, at most every
//     kProducersSideEvery per handle, for producers that only try).
//     head is only a hint: records may be taken and released ahead of it,
//     and producers may reuse released cells before head passes them; a
//     scan from head steps over such cells. What is lost is at most the one message
//     in the dead process's hands, counted in losses(): a message whose
//     push never returned, or one its consumer had claimed (its pop never
//     returned, or returned just before the death). Nothing else is lost
//     or corrupted: no other message's cells are touched. Stopped (SIGSTOP,
//     a frozen cgroup, a debugger, a slow process): alive, never stepped
//     over; its record waits for it (see Progress), and when it resumes it
//     finishes its own operation. A claimant whose identity cannot be read
//     is counted alive. The 16 start-time bits tell apart a reused pid but
//     for one start time in 65536 ticks (11 minutes at 100 Hz): such a
//     reuse makes a dead claimant look alive, never the other way round.
//   * Out of line. A message longer than the threshold is written to a
//     block of its own named "<queue name>.o<n>" (n from a counter in the
//     queue), created untracked and reserved (no SIGBUS), and the ring
//     carries its name and length. The consumer maps it and keeps the
//     mapping for as long as it holds the message (zero copy).
//     - Reused blocks (the default: keep_out_of_line_blocks(2)). A producer
//       handle keeps up to that many blocks and writes the next long
//       message into one its consumer has given back, so a stream of long
//       messages touches the same, already faulted pages instead of fresh
//       ones (zeroed by the kernel, faulted in one by one: most of the cost
//       of a 16 MiB message). Such a block ends in a 64-byte trailer: a
//       state word (idle, queued, held; a generation that the record
//       repeats, so a stale or forged record never matches a reused block)
//       and the producer's identity. A consumer that pops the message
//       holds the block until it drops the message (ByteMessage,
//       OutOfLineBlock), then gives it back; the producer writes into a
//       block only while it is idle. A holder that is stopped or dead
//       keeps its block from reuse: the producer makes another and, beyond
//       its limit, drops the oldest one (unlinks its name; a holder keeps
//       its mapping). The handle's destructor and drop_out_of_line_blocks()
//       unlink its idle blocks and leave a queued one to its consumer, who
//       unlinks it when popping, as it does a block whose producer died.
//     - Single-use blocks (keep_out_of_line_blocks(0), and messages over
//       256 MiB, so that a handle keeps at most 2 x 256 MiB between
//       messages): the consumer unlinks the name when popping.
//     What a kill can leave behind: a block of a producer killed between
//     making it and publishing; a single-use block of a consumer killed
//     before unlinking it; the idle and held blocks of a killed producer
//     (a block never outlives its queue's users for long: a producer that
//     makes a new reused block first unlinks those of dead producers,
//     except one still queued for a consumer). unlink() of the queue
//     removes every "<name>.o<n>" with it; a tracked queue's blocks go
//     with it when the tracker sweeps it.
//   * Doorbell. doorbell_fd() gives a file descriptor (a FIFO named
//     "<queue name>.bell", created with the queue) that is readable while
//     the queue may hold a message, for poll/select/epoll (Python's
//     multiprocessing.connection.wait, selectors, asyncio). It costs
//     nothing until some process asks for it: from then on a producer
//     writes one byte when it finds the bell silent (once per transition
//     to non-empty, not per message), and a consumer that finds the queue
//     empty drains the FIFO, re-checks, and rings again if a message came
//     meanwhile. Readability can be spurious (a message taken by another
//     consumer first): readers then find the queue empty and wait again.
//   * Untrusted block. Positions are masked before addressing; a record
//     header's length and cell count are checked against the ring before
//     any byte is copied (a bad record is released unread and counted as
//     corrupt; so is a dead producer's skipped claim whose cells are not
//     all its own), an out-of-line name must carry this queue's prefix
//     and the block's size must match (a name that cannot be mapped for
//     any reason but a lack of descriptors or memory is a corrupt record),
//     and forged words make try_ calls return false rather than loop. The
//     doorbell is opened only if it is a FIFO, never through a symbolic
//     link. Names "<queue name>.o<n>" and "<queue name>.bell" belong to
//     the queue: a forged record can name any block so named (and have it
//     unlinked), so no other block should be. A block truncated by another
//     process after it was mapped faults (SIGBUS) on access, as any shared
//     mapping does: the queue's own blocks are reserved, never truncated
//     by shmkit.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

#include "shmkit/lockfree/detail/common.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit {

struct ByteQueueControl {
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> tail;  // producers' next position
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> head;  // consumers' next position
  alignas(lockfree_detail::kFalseSharingRange) lockfree_detail::WaitSlot not_empty;
  lockfree_detail::WaitSlot not_full;
  // The doorbell: how many handles have its descriptor open (a killed
  // process leaves its count: only extra rings), and whether it has rung
  // since a consumer last found the queue empty.
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint32_t> bell_armed;
  std::atomic<std::uint32_t> bell_rung;
  std::atomic<std::uint64_t> out_of_line_counter;  // names out-of-line blocks
  // What survivors stepped over (losses()); written only then.
  alignas(lockfree_detail::kFalseSharingRange) std::atomic<std::uint64_t> producer_claims_skipped;
  std::atomic<std::uint64_t> consumer_claims_released;
  std::atomic<std::uint64_t> corrupt_records;

  ByteQueueControl() = default;
  ByteQueueControl(const ByteQueueControl&) = delete;
  ByteQueueControl& operator=(const ByteQueueControl&) = delete;
};
static_assert(std::is_standard_layout_v<ByteQueueControl>, "ByteQueueControl is read by other processes");

struct ByteQueueLosses {
  std::uint64_t producer_claims_skipped = 0;   // a dead producer's message, never published
  std::uint64_t consumer_claims_released = 0;  // a message claimed by a consumer that died
  std::uint64_t corrupt_records = 0;           // records with impossible headers, released unread
  friend bool operator==(const ByteQueueLosses&, const ByteQueueLosses&) = default;
};

// A popped out-of-line message: the mapping of its block, and for a block
// its producer reuses, the right to give it back, which the destructor (or
// give_back()) uses; the producer may then write the next message into it.
// Move-only. A block held while the process forks is never given back
// (the child may map it, and its bytes must not change under it): its
// producer unlinks it when it lets it go. A copy inherited by a forked
// child never gives it back either.
class OutOfLineBlock {
 public:
  OutOfLineBlock() = default;
  OutOfLineBlock(OutOfLineBlock&& o) noexcept
      : map_(std::move(o.map_)),
        size_(std::exchange(o.size_, 0)),
        state_(std::exchange(o.state_, nullptr)),
        expect_(o.expect_),
        pid_(o.pid_),
        forks_(o.forks_) {}
  OutOfLineBlock& operator=(OutOfLineBlock&& o) noexcept {
    if (this != &o) {
      give_back();
      map_ = std::move(o.map_);
      size_ = std::exchange(o.size_, 0);
      state_ = std::exchange(o.state_, nullptr);
      expect_ = o.expect_;
      pid_ = o.pid_;
      forks_ = o.forks_;
    }
    return *this;
  }
  ~OutOfLineBlock() { give_back(); }

  // The message's bytes (the block's first size() bytes).
  std::byte* data() const noexcept { return map_ ? map_->buf().data() : nullptr; }
  std::size_t size() const noexcept { return map_ ? size_ : 0; }
  bool read_only() const noexcept { return map_ && map_->read_only(); }
  // Whether it is a block its producer reuses (it gets it back when this is
  // dropped, unless the process forked meanwhile).
  bool reused() const noexcept { return state_ != nullptr; }
  // Unmaps now; a reused block goes back to its producer.
  void give_back() noexcept;

 private:
  friend class ByteQueue;
  OutOfLineBlock(SharedMemory&& map, std::size_t size, std::atomic<std::uint64_t>* state,
                 std::uint64_t expect) noexcept;
  std::optional<SharedMemory> map_;
  std::size_t size_ = 0;
  std::atomic<std::uint64_t>* state_ = nullptr;  // in the block's trailer (reused blocks)
  std::uint64_t expect_ = 0;                     // the state word while we hold it
  pid_t pid_ = 0;                                // the process that popped it
  std::uint64_t forks_ = 0;                      // its forks when it popped it
};

// One popped message: its bytes, either a private copy (it travelled in the
// ring) or its out-of-line block (zero copy). Move-only.
class ByteMessage {
 public:
  ByteMessage() = default;
  ByteMessage(ByteMessage&&) noexcept = default;
  ByteMessage& operator=(ByteMessage&&) noexcept = default;

  std::span<const std::byte> bytes() const noexcept {
    return block_ ? std::span<const std::byte>(block_->data(), block_->size())
                  : std::span<const std::byte>(copy_);
  }
  std::size_t size() const noexcept { return bytes().size(); }
  bool out_of_line() const noexcept { return block_.has_value(); }
  std::string_view view() const noexcept {
    const auto b = bytes();
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  // The block of an out-of-line message (for zero-copy hand-off); empty
  // for a message copied from the ring.
  std::optional<OutOfLineBlock> take_block() noexcept { return std::exchange(block_, std::nullopt); }

 private:
  friend class ByteQueue;
  friend class ByteMessageSink;
  std::vector<std::byte> copy_;
  std::optional<OutOfLineBlock> block_;
};

// Where try_pop(ByteSink&) puts a message (the Python binding allocates a
// bytes object of the right size; ByteMessage is the C++ sink).
class ByteSink {
 public:
  // Room for an in-ring message of n bytes, or nullptr (out of memory: the
  // message stays in the queue).
  virtual std::byte* reserve(std::size_t n) noexcept = 0;
  // How many leading bytes of an in-ring message of at least one byte to
  // leave out of what reserve() receives (at most the message's length),
  // given its first byte as the ring holds it just before the copy: a
  // leading tag the sink interprets itself. Called before reserve(), once
  // per record tried (a pop that loses its record to another consumer
  // calls it again for the next). Another process can rewrite the byte
  // after the call: the sink must take whatever the copy then holds.
  // Default: none.
  virtual std::size_t skip(std::byte first) noexcept {
    (void)first;
    return 0;
  }
  // An out-of-line message, as its block.
  virtual void adopt(OutOfLineBlock&& block) noexcept = 0;

 protected:
  ~ByteSink() = default;
};

enum class BytePop : std::uint8_t {
  ok,         // a message was delivered to the sink
  empty,      // nothing published (or all held by live writers)
  no_memory,  // the sink's reserve() failed; the message is still queued
};

enum class ByteUnblock : std::uint8_t {
  none,               // nothing held up by a dead claimant
  skipped_producer,   // a dead producer's record was skipped
  released_consumer,  // a dead consumer's record was released
};

class ByteQueue {
 public:
  static constexpr BlockKind kKind = BlockKind::byte_queue;
  static constexpr std::size_t kCell = 64;  // bytes per cell
  static constexpr std::size_t kRecordHeader = 16;
  static constexpr std::uint64_t kLayout = 1;  // param[1]

  struct Options {
    // Messages longer than this go out of line (0: only those longer than
    // max_inline()).
    std::size_t out_of_line_threshold = 0;
    unsigned permissions = 0600;  // of the block and the doorbell FIFO
    // Register the block with shmkit's resource tracker (SharedMemory's
    // Options::track): once every process that registered it has died, the
    // tracker unlinks it, and with it the doorbell FIFO and out-of-line
    // blocks left behind (unlink_companions()).
    bool track = false;
  };

  // `ring_bytes`: the ring's data size, a power of two >= 1 KiB (N = ring_bytes / 64).
  // Throws std::invalid_argument (bad size, a name too long for the
  // out-of-line suffix), std::system_error (EEXIST, ...).
  static ByteQueue create(std::string_view name, std::size_t ring_bytes);
  static ByteQueue create(std::string_view name, std::size_t ring_bytes, const Options& options);
  static ByteQueue attach(std::string_view name, const AttachOptions& options = AttachOptions());
  // Adopts a block whose typed header the caller validated (kind byte_queue),
  // e.g. an anonymous block shared with forked children; checks the ring's
  // own fields as attach() does. A queue without a name has no doorbell and
  // no out-of-line path: longer messages throw std::length_error, and an
  // out-of-line record is released unread as corrupt.
  static ByteQueue from_block(TypedBlock block) { return ByteQueue(std::move(block)); }
  // Removes the block, its doorbell FIFO and any out-of-line block left
  // behind. Handles stay usable until destroyed.
  static void unlink(std::string_view name);
  // Removes only what a queue named `name` leaves beside its block: the
  // doorbell FIFO "<name>.bell" and every "<name>.o<digits>". The tracker
  // calls it when it unlinks a dead queue's block.
  static void unlink_companions(std::string_view name) noexcept;

  ByteQueue(ByteQueue&&) noexcept;
  ByteQueue& operator=(ByteQueue&&) noexcept;
  ~ByteQueue();

  const std::string& name() const noexcept { return block_.shm.name(); }
  void unlink() { unlink(name()); }
  std::size_t ring_bytes() const noexcept { return static_cast<std::size_t>(cells_) * kCell; }
  // The longest message that travels in the ring.
  std::size_t max_inline() const noexcept { return max_inline_; }
  // Messages longer than this travel out of line.
  std::size_t out_of_line_threshold() const noexcept { return threshold_; }
  // How many out-of-line blocks this handle keeps for reuse (default 2; 0:
  // a block per message, unlinked by its consumer). Lowering it drops the
  // oldest ones now.
  void keep_out_of_line_blocks(unsigned blocks);
  // Drops every kept block: unlinks the idle and held ones, leaves a queued
  // one to its consumer. The destructor does it; a process that ends
  // without destructors (os._exit after its finalizers) calls it first.
  void drop_out_of_line_blocks() noexcept;

  // Push one message made of `parts` (concatenated). False: the ring has no
  // room now. Out-of-line messages create their block first and may throw
  // std::system_error (ENOSPC, EMFILE, ...); in-ring ones never throw.
  [[nodiscard]] bool try_push(std::span<const std::span<const std::byte>> parts);
  [[nodiscard]] bool try_push(std::span<const std::byte> message) { return try_push({&message, 1}); }
  [[nodiscard]] bool try_push(std::string_view message) {
    return try_push(std::as_bytes(std::span<const char>(message.data(), message.size())));
  }
  void push(std::span<const std::span<const std::byte>> parts);
  void push(std::span<const std::byte> message) { push({&message, 1}); }
  void push(std::string_view message) {
    push(std::as_bytes(std::span<const char>(message.data(), message.size())));
  }
  [[nodiscard]] bool push_until(std::span<const std::span<const std::byte>> parts,
                                std::chrono::steady_clock::time_point deadline);
  template <class Rep, class Period>
  [[nodiscard]] bool push_for(std::span<const std::byte> message,
                              std::chrono::duration<Rep, Period> timeout) {
    return push_wait({&message, 1}, lockfree_detail::deadline_after(timeout), true);
  }

  // Pop one message into `sink`. Never blocks, never throws.
  BytePop try_pop(ByteSink& sink) noexcept;
  [[nodiscard]] bool try_pop(ByteMessage& out) noexcept;
  ByteMessage pop();
  [[nodiscard]] bool pop_until(ByteMessage& out, std::chrono::steady_clock::time_point deadline);
  template <class Rep, class Period>
  [[nodiscard]] bool pop_for(ByteMessage& out, std::chrono::duration<Rep, Period> timeout) {
    return pop_until_opt(out, lockfree_detail::deadline_after(timeout));
  }

  // Waits (spin, then futex slices, running unblock() between them) until
  // a message seems to be there (true) or the deadline passes (false;
  // nullopt: no deadline). For bindings that pop with try_pop(ByteSink&)
  // and wait without holding their own locks. spin = false skips the spin
  // (about 30 us of CPU): for the later calls of a wait cut into slices
  // (to look for signals between them), which spun in its first.
  bool wait_message_until(std::optional<std::chrono::steady_clock::time_point> deadline,
                          bool spin = true) noexcept;
  // Likewise until a message of `bytes` bytes would seem to fit.
  bool wait_room_until(std::size_t bytes, std::optional<std::chrono::steady_clock::time_point> deadline,
                       bool spin = true) noexcept;

  // Whether a published message is there now (a snapshot).
  bool has_message() const noexcept;
  // How many records still being written a consumer looks past (try_pop,
  // has_message); behind more, it waits for them (see Progress).
  static constexpr int kMaxPassed = 16;
  // Messages and records between head and tail, a snapshot (records being
  // written and read included).
  std::uint64_t size() const noexcept;
  bool empty() const noexcept { return !has_message(); }

  // Steps over one claim, at head or in the cells a producer at tail
  // needs, whose claimant is proven dead. Not on any fast path: it may read
  // /proc.
  ByteUnblock unblock() noexcept;
  ByteQueueLosses losses() const noexcept;

  // The doorbell's descriptor (opened and armed on first call; owned by this
  // handle). Throws std::system_error if the FIFO cannot be opened.
  int doorbell_fd();
  // A consumer that found the queue empty and is about to wait on the
  // doorbell calls this: drains the FIFO, then rings it again if a message
  // came meanwhile. try_pop calls it itself when it finds the queue empty
  // while the bell is armed.
  void settle_doorbell() noexcept;

 private:
  explicit ByteQueue(TypedBlock b);

  enum class Claimed : std::uint8_t { yes, retry, full };
  std::uint64_t cells_for(std::size_t bytes, std::uint64_t cell) const noexcept;
  bool push_record(std::span<const std::span<const std::byte>> parts, std::size_t length, std::uint32_t flags,
                   std::uint64_t ool_size) noexcept;
  bool push_out_of_line(std::span<const std::span<const std::byte>> parts, std::size_t length,
                        const std::optional<std::chrono::steady_clock::time_point>& deadline, bool wait);
  bool push_wait(std::span<const std::span<const std::byte>> parts,
                 std::optional<std::chrono::steady_clock::time_point> deadline, bool wait);
  bool pop_until_opt(ByteMessage& out, std::optional<std::chrono::steady_clock::time_point> deadline);
  void release_record(std::uint64_t pos, std::uint64_t cells) noexcept;
  bool release_dead_consumer(std::uint64_t pos, std::uint64_t word) noexcept;
  void sweep_dead_producers_blocks() noexcept;
  SharedMemory make_out_of_line_block(std::size_t bytes, std::string& name);
  bool push_staged(std::span<const std::span<const std::byte>> parts, std::size_t length,
                   const std::optional<std::chrono::steady_clock::time_point>& deadline, bool wait);
  bool push_ref(std::span<const std::span<const std::byte>> body, std::uint32_t flags, std::uint64_t length,
                const std::optional<std::chrono::steady_clock::time_point>& deadline, bool wait);
  // Whether a claim word's cell count is one a record can have: 1 up to
  // 2 * max_cells_ - 1 (a record that wraps pads to the ring's end, fewer
  // cells than it needs).
  bool plausible_cells(std::uint64_t k) const noexcept { return k != 0 && k < 2 * max_cells_; }
  [[gnu::cold]] void ring_bell() noexcept;
  // This handle's descriptor of the doorbell FIFO, opened on first use (by
  // whichever thread comes first); -1 with errno set if it cannot be.
  int bell() noexcept;
  bool skip_dead_producer(std::uint64_t pos, std::uint64_t word) noexcept;
  ByteUnblock unblock_consumers_side() noexcept;
  ByteUnblock unblock_producers_side() noexcept;
  // What a consumer's wait runs between its sleeps: unblock(), its
  // producers' side at most every kProducersSideEvery per handle.
  ByteUnblock unblock_waiting_consumer() noexcept;
  static constexpr std::chrono::nanoseconds kProducersSideEvery = std::chrono::milliseconds(100);
  std::string out_of_line_prefix() const;

  TypedBlock block_;
  ByteQueueControl* ctl_ = nullptr;
  std::atomic<std::uint64_t>* words_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint64_t cells_ = 0;  // N, from the validated header snapshot
  std::uint64_t mask_ = 0;
  unsigned lap_shift_ = 0;
  std::uint64_t max_cells_ = 0;  // of an in-ring record before wrapping
  std::size_t max_inline_ = 0;
  std::size_t threshold_ = 0;
  bool asym_ = false;
  std::atomic<int> bell_fd_{-1};  // opened by doorbell_fd() (armed) or by a ring: bell()
  pid_t bell_armed_by_ = 0;       // the process whose doorbell_fd() armed it (a fork child's copy did not)
  struct Staging;                 // the out-of-line blocks this handle keeps (byte_queue.cpp)
  std::unique_ptr<Staging> staging_;
};

}  // namespace shmkit
