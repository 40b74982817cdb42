// ByteQueue (shmkit/lockfree/byte_queue.hpp): the cell ring, its claims, the
// out-of-line path and the doorbell.
//
// Memory orders (numbered pairs):
//   (1) producer's acquire load of a cell word it will claim or needs free:
//       pairs with (4), the previous lap's consumer is done with the cell.
//   (2) producer's release store of p + 1 (publish): pairs with (3); the
//       record header and bytes are written before a consumer sees them.
//   (3) consumer's acquire load of a record's first word: pairs with (2)
//       (and with (8) for a skipped record).
//   (4) consumer's release stores handing cells to the next lap: pairs
//       with (1); its reads are done before the next producer writes.
//   (5) claim CASes (release): pair with (7); whoever reads a claim also sees
//       the position the claimant read before it.
//   (6) tail/head CAS (release) and (9) their acquire loads: a reader of a
//       position sees the claim that allowed it.
//   (7) acquire loads of a claim word in help() and unblock(): pair with (5).
//   (8) survivors' CASes over a dead claim (acq_rel).
//   The doorbell pairs a producer's light fence (after (2)) with a
//   consumer's heavy fence (after clearing bell_rung), as WaitSlot does.
#include "shmkit/lockfree/byte_queue.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>

#include "platform/platform.hpp"
#include "shmkit/detail/fault.hpp"
#include "shmkit/detail/process.hpp"
#include "shmkit/lockfree/detail/claimant.hpp"

namespace shmkit {

namespace {

using lockfree_detail::kFalseSharingRange;

// A cell word with bit 63 set is a claim word:
//   bits 62-61 kind, 60-56 lap (position / N, low 5 bits), 55-38 the
//   record's cell count, 37-0 the claimant (pid << 16 | start time & 0xffff).
constexpr std::uint64_t kClaim = std::uint64_t{1} << 63;
constexpr unsigned kKindShift = 61;
constexpr std::uint64_t kConsumerOfSkipped = 0;  // a consumer releasing a skipped record
constexpr std::uint64_t kProducer = 1;
constexpr std::uint64_t kConsumer = 2;
constexpr std::uint64_t kSkipped = 3;  // a dead producer's claim, stepped over
constexpr unsigned kLapShift = 56;
constexpr std::uint64_t kLapMask = 0x1f;
constexpr unsigned kCellsShift = 38;
constexpr std::uint64_t kCellsMask = (std::uint64_t{1} << 18) - 1;
constexpr std::uint64_t kIdMask = (std::uint64_t{1} << kCellsShift) - 1;

constexpr bool is_claim(std::uint64_t w) noexcept { return (w & kClaim) != 0; }
constexpr std::uint64_t kind_of(std::uint64_t w) noexcept { return (w >> kKindShift) & 3; }
constexpr std::uint64_t lap_bits(std::uint64_t w) noexcept { return (w >> kLapShift) & kLapMask; }
constexpr std::uint64_t cells_of(std::uint64_t w) noexcept {
  const std::uint64_t k = (w >> kCellsShift) & kCellsMask;
  return k == 0 ? 1 : k;  // a forged 0 would never move a scan
}

// Record header flags.
constexpr std::uint32_t kWrapped = 1;    // the bytes start at cell 0
constexpr std::uint32_t kOutOfLine = 2;  // the bytes are [u64 size][name]
constexpr std::uint32_t kReused = 4;     // with kOutOfLine: [u64 size][u64 tag][name], a reused block

// The trailer of a reused out-of-line block: its last 64 bytes. magic,
// owner and capacity are written once, before the block's first record is
// published; state is the block's life:
//   bits 0-1: idle (the producer may write), queued (a record names it),
//             held (a consumer popped it and holds its mapping);
//   bit 2:    orphan (queued, and its producer let go of it: the consumer
//             unlinks it when popping);
//   bits 3-63: the tag, which the producer moves on each time it reuses
//             the block and which the record repeats.
// Memory orders: (10) the producer's acquire CAS idle -> queued pairs with
// (11), a holder's release CAS held -> idle: the holder's reads of the old
// message are done before the producer writes the next one. The message's
// bytes reach the consumer through the record's (2)/(3).
struct ReusedTrailer {
  std::uint64_t magic;
  std::atomic<std::uint64_t> state;
  std::uint64_t owner;     // the producer, as lockfree_detail::claimant_id()
  std::uint64_t capacity;  // bytes before the trailer
  std::uint64_t reserved[4];
};
static_assert(sizeof(ReusedTrailer) == 64);
constexpr std::uint64_t kTrailerMagic = 0x31'47'53'55'51'42'4b'53ull;  // "SKBQUSG1"
constexpr std::uint64_t kIdle = 0, kQueued = 1, kHeld = 2, kLifeMask = 3;
constexpr std::uint64_t kOrphan = 4;
constexpr std::uint64_t kTagMask = ~std::uint64_t{7};
constexpr std::uint64_t kTagStep = 8;
// Longer messages get single-use blocks: a handle keeps at most
// keep x 256 MiB of /dev/shm between messages.
constexpr std::size_t kMaxKeptBlock = std::size_t{256} << 20;
// The sweep of dead producers' blocks reads at most this many /dev/shm
// entries and checks at most this many of the queue's blocks.
constexpr std::size_t kSweepEntries = std::size_t{1} << 16;
constexpr std::size_t kSweepCandidates = 1024;

// The trailer of a mapped reused block, or nullptr if it has none.
ReusedTrailer* trailer_of(const SharedMemory& m) noexcept {
  const std::size_t n = m.size();
  if (n < sizeof(ReusedTrailer) || n % 64 != 0) return nullptr;
  auto* t = reinterpret_cast<ReusedTrailer*>(m.buf().data() + n - sizeof(ReusedTrailer));
  const std::uint64_t magic = std::atomic_ref<std::uint64_t>(t->magic).load(std::memory_order_relaxed);
  const std::uint64_t capacity = std::atomic_ref<std::uint64_t>(t->capacity).load(std::memory_order_relaxed);
  if (magic != kTrailerMagic || capacity != n - sizeof(ReusedTrailer)) return nullptr;
  return t;
}

// Whether `name` is one of this queue's out-of-line block names: the prefix
// "<queue>.o" and digits (a forged one is never mapped or unlinked).
bool is_out_of_line_name(std::string_view name, std::string_view prefix) noexcept {
  return !prefix.empty() && name.size() > prefix.size() && name.substr(0, prefix.size()) == prefix &&
         name.find_first_not_of("0123456789", prefix.size()) == std::string_view::npos;
}

// The claimant's identity as it fits a claim word: pid (22 bits) and the
// low 16 bits of its start time.
std::uint64_t short_id() noexcept {
  const std::uint64_t id = lockfree_detail::claimant_id();
  return ((id >> 32) << 16) | (id & 0xffff);
}
bool short_id_dead(std::uint64_t word) noexcept {
  const std::uint64_t id = word & kIdMask;
  const auto pid = static_cast<pid_t>(id >> 16);
  if (pid <= 0) return false;  // unknown: never judged dead
  return process::has_exited(pid, id & 0xffff, 0xffff);
}

std::uint64_t div_up(std::uint64_t a, std::uint64_t b) noexcept { return (a + b - 1) / b; }

// Whether cell word `w`, read for position `pos` (lap bits `lap`) of a ring
// of `cells`, says this lap is over for that cell: released (pos + cells),
// or already in the next lap's hands (a later position, or a claim of the
// next lap). head is only a hint: producers may reuse released cells before
// head passes them, so a scan from head steps over such cells one by one.
bool lap_done(std::uint64_t w, std::uint64_t pos, std::uint64_t lap, std::uint64_t cells) noexcept {
  if (is_claim(w)) return lap_bits(w) == ((lap + 1) & kLapMask);
  return static_cast<std::int64_t>(w - (pos + cells)) >= 0 &&
         static_cast<std::int64_t>(w - (pos + 2 * cells)) < 0;
}

// Record header fields, read and written as relaxed atomics (a stale reader
// may race a writer of the next lap; the CASes around decide what counts).
struct Header {
  std::uint64_t length;
  std::uint32_t flags;
  std::uint32_t cells;
};
Header load_header(std::byte* at) noexcept {
  Header h;
  h.length =
      std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(at)).load(std::memory_order_relaxed);
  h.flags = std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(at + 8))
                .load(std::memory_order_relaxed);
  h.cells = std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(at + 12))
                .load(std::memory_order_relaxed);
  return h;
}
void store_header(std::byte* at, const Header& h) noexcept {
  std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(at))
      .store(h.length, std::memory_order_relaxed);
  std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(at + 8))
      .store(h.flags, std::memory_order_relaxed);
  std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(at + 12))
      .store(h.cells, std::memory_order_relaxed);
}

std::size_t total_length(std::span<const std::span<const std::byte>> parts) {
  std::size_t n = 0;
  for (const auto& p : parts) {
    if (p.size() > SIZE_MAX / 2 - n)
      throw std::length_error("shmkit: ByteQueue message longer than 2^63 bytes");
    n += p.size();
  }
  return n;
}

void gather(std::byte* dst, std::span<const std::span<const std::byte>> parts) noexcept {
  for (const auto& p : parts) {
    if (!p.empty()) std::memcpy(dst, p.data(), p.size());
    dst += p.size();
  }
}

// Moves tail (head) from `pos` to pos + cells unless someone did already.
void advance(std::atomic<std::uint64_t>& index, std::uint64_t pos, std::uint64_t cells) noexcept {
  std::uint64_t expected = pos;
  // (6) release.
  (void)index.compare_exchange_strong(expected, pos + cells, std::memory_order_release,
                                      std::memory_order_relaxed);
}

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

std::string bell_path(std::string_view name) { return platform::dev_shm_path(name) + ".bell"; }

constexpr std::size_t kMaxQueueName = 200;  // room for ".o<20 digits>" and ".bell"

// The spin before a sleep: a short busy spin, then the rest of the spin
// budget yielding the CPU between looks. A message queue's peers are often
// more processes than CPUs (a pool, its handler threads), and a peer that
// shares our CPU gets to run (and answer) during a yield, where a busy spin
// would hold the CPU for the whole budget before the futex sleep lets it
// in. Whether the peer shares our CPU is the scheduler's business, so both
// are done: first busy (a peer on another CPU answers within it), then
// yielding.
template <class Attempt>
bool spin_then_yield(Attempt&& attempt) noexcept {
  const std::uint32_t n = detail::wait_spin_iterations();
  for (std::uint32_t i = 0; i < n / 2; ++i) {
    if (attempt()) return true;
    lockfree_detail::cpu_relax();
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
  do {
    if (attempt()) return true;
    ::sched_yield();
  } while (std::chrono::steady_clock::now() < end);
  return attempt();
}

}  // namespace

ByteQueue ByteQueue::create(std::string_view name, std::size_t ring_bytes) {
  return create(name, ring_bytes, Options{});
}

ByteQueue ByteQueue::create(std::string_view name, std::size_t ring_bytes, const Options& options) {
  const std::string what = "shmkit: cannot create ByteQueue \"" + std::string(name) + "\"";
  if (name.size() > kMaxQueueName) {
    throw std::invalid_argument(what + ": the name is longer than " + std::to_string(kMaxQueueName) +
                                " bytes (out-of-line blocks add a suffix)");
  }
  if (!lockfree_detail::is_power_of_two(ring_bytes) || ring_bytes < 1024 ||
      ring_bytes > (std::size_t{1} << 40)) {
    throw std::invalid_argument(what + ": ring size " + std::to_string(ring_bytes) +
                                " is not a power of two in [1 KiB, 1 TiB]");
  }
  const std::uint64_t cells = ring_bytes / kCell;
  BlockSpec spec;
  spec.kind = kKind;
  spec.type = TypeFingerprint::of<std::byte>();
  spec.count = cells;
  spec.prefix_size = sizeof(ByteQueueControl);
  spec.payload_size = cells * 8 + ring_bytes;
  spec.param[0] = kCell;
  spec.param[1] = kLayout;
  spec.param[2] = options.out_of_line_threshold;
  SharedMemory::Options shm_options;
  shm_options.mode = options.permissions;
  shm_options.track = options.track;
  TypedBlock b = create_typed_block(
      name, spec,
      [cells](std::span<std::byte> prefix, std::span<std::byte> payload) {
        new (prefix.data()) ByteQueueControl();
        auto* words = reinterpret_cast<std::atomic<std::uint64_t>*>(payload.data());
        for (std::uint64_t i = 0; i < cells; ++i) {
          new (&words[i]) std::atomic<std::uint64_t>(i);  // free for the producer of position i
        }
      },
      shm_options);
  // The doorbell FIFO. The block was created exclusively, so a FIFO under
  // its name is a leftover of a queue killed before its unlink: replace it.
  const std::string bell = bell_path(name);
  if (::mkfifo(bell.c_str(), options.permissions) != 0) {
    int err = errno;
    if (err == EEXIST && ::unlink(bell.c_str()) == 0 && ::mkfifo(bell.c_str(), options.permissions) == 0) {
      err = 0;
    }
    if (err != 0) {
      b.shm.unlink();
      throw_errno(err, what + ": cannot make its doorbell FIFO " + bell);
    }
  }
  (void)::chmod(bell.c_str(), options.permissions);  // the umask narrowed mkfifo's mode
  return ByteQueue(std::move(b));
}

ByteQueue ByteQueue::attach(std::string_view name, const AttachOptions& options) {
  return ByteQueue(attach_typed_block(name, kKind, TypeFingerprint::of<std::byte>(), options));
}

ByteQueue::ByteQueue(TypedBlock b) : block_(std::move(b)) {
  std::string_view name = block_.shm.name();
  if (name.empty()) name = "(anonymous)";
  const BlockHeader& h = block_.header;
  if (h.param[1] != kLayout) {
    lockfree_detail::bad_block(
        name, "ByteQueue layout " + std::to_string(h.param[1]) + ", expected " + std::to_string(kLayout));
  }
  if (h.param[0] != kCell)
    lockfree_detail::bad_block(name, "ByteQueue cell size " + std::to_string(h.param[0]));
  if (!lockfree_detail::is_power_of_two(h.count) || h.count < 16 || h.count > (std::uint64_t{1} << 34)) {
    lockfree_detail::bad_block(name, "ByteQueue cell count " + std::to_string(h.count));
  }
  if (h.payload_size != h.count * (8 + kCell)) {
    lockfree_detail::bad_block(name, "ByteQueue payload of " + std::to_string(h.payload_size) + " bytes");
  }
  if (h.prefix_size < sizeof(ByteQueueControl))
    lockfree_detail::bad_block(name, "ByteQueue prefix too small");
  cells_ = h.count;
  mask_ = cells_ - 1;
  lap_shift_ = static_cast<unsigned>(__builtin_ctzll(cells_));
  ctl_ = reinterpret_cast<ByteQueueControl*>(block_.prefix.data());
  words_ = reinterpret_cast<std::atomic<std::uint64_t>*>(block_.payload.data());
  data_ = block_.payload.data() + cells_ * 8;
  // An in-ring record before wrapping takes at most half the ring, and a
  // wrapped one (padding + bytes) stays below the 18-bit cell count.
  max_cells_ = std::min<std::uint64_t>(cells_ / 2, (std::uint64_t{1} << 17) - 1);
  max_inline_ = static_cast<std::size_t>(max_cells_ * kCell - kRecordHeader);
  threshold_ = h.param[2] == 0 ? max_inline_
                               : static_cast<std::size_t>(std::min<std::uint64_t>(h.param[2], max_inline_));
  staging_ = std::make_unique<Staging>();  // made here: threads may share the handle
  // Notifiers run a full fence (no asymmetric pairing): a sleeper then needs
  // no membarrier, whose interrupts of the other CPUs cost tens of
  // microseconds in a VM on every sleep; a push pays one fence instead.
  asym_ = false;
}

// The out-of-line blocks a producer handle keeps for reuse, oldest first.
struct ByteQueue::Staging {
  struct Entry {
    std::string name;
    std::shared_ptr<SharedMemory> map;  // a push in flight holds it too
    ReusedTrailer* trailer;
    std::size_t capacity;  // ours: the trailer's copy is writable by anyone
  };
  std::mutex mu;
  unsigned keep = 2;
  pid_t pid = ::getpid();  // entries belong to this process (a fork child starts empty)
  bool swept = false;      // dead producers' blocks were looked for once
  std::vector<Entry> entries;
  // When a waiting consumer of this handle last ran unblock's producers'
  // side (steady clock, ns; unblock_waiting_consumer()).
  std::atomic<std::int64_t> producers_side_ns{0};

  // Every Staging of the process, so that a forked child can reset them:
  // another thread may hold a Staging's mutex (or be changing its entries)
  // at the fork, and the child must neither wait for it for ever nor read
  // a half-changed vector.
  Staging* prev = nullptr;
  Staging* next = nullptr;
  static std::mutex& registry_mu() {
    static std::mutex mu;
    return mu;
  }
  static Staging*& registry() {
    static Staging* head = nullptr;
    return head;
  }
  static void before_fork() { registry_mu().lock(); }
  static void after_fork_in_parent() { registry_mu().unlock(); }
  static void after_fork_in_child() {
    for (Staging* s = registry(); s != nullptr; s = s->next) {
      new (&s->mu) std::mutex();
      new (&s->entries) std::vector<Entry>();
      s->pid = ::getpid();
      s->swept = false;
    }
    registry_mu().unlock();
  }
  // prepare: no Staging is being added or removed across the fork; child:
  // each one starts afresh (its mutex unlocked, no entries; the old vector
  // is left as it was: the parent's blocks are not ours). Registered with
  // pthread_once (fork-safe, unlike a function-local static's guard).
  static void register_atfork() {
    (void)::pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
  }
  static pthread_once_t& atfork_once() {
    static pthread_once_t once = PTHREAD_ONCE_INIT;  // constant-initialized: no guard
    return once;
  }
  Staging() {
    (void)::pthread_once(&atfork_once(), register_atfork);
    std::lock_guard lk(registry_mu());
    next = registry();
    if (next != nullptr) next->prev = this;
    registry() = this;
  }
  ~Staging() {
    std::lock_guard lk(registry_mu());
    if (prev != nullptr) prev->next = next;
    if (next != nullptr) next->prev = prev;
    if (registry() == this) registry() = next;
  }
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  // A copy in a child forked without the handlers above (vfork-like
  // clones run none): the parent's blocks are not ours to use or drop.
  void forget_if_forked() noexcept {
    if (pid == ::getpid()) return;
    entries.clear();  // unmaps only
    pid = ::getpid();
    swept = false;
  }
};

namespace {

// Lets go of one kept block: a queued one is left to its consumer (who
// unlinks it when popping); an idle or held one is unlinked now (a holder
// keeps its mapping).
void let_go(const std::string& name, ReusedTrailer* t) noexcept {
  std::uint64_t s = t->state.load(std::memory_order_acquire);
  for (;;) {
    if ((s & kLifeMask) == kQueued) {
      if (s & kOrphan) return;
      if (t->state.compare_exchange_weak(s, s | kOrphan, std::memory_order_acq_rel)) return;
      continue;
    }
    (void)::unlink(platform::dev_shm_path(name).c_str());
    return;
  }
}

}  // namespace

namespace {

// Forks of this process so far (counted in the parent). A reused block held
// across a fork is never given back: the child may still map it, and its
// bytes must not change under it.
std::atomic<std::uint64_t> g_forks{0};
std::atomic<bool> g_forks_counted{false};
pthread_once_t g_forks_once = PTHREAD_ONCE_INIT;  // fork-safe, unlike a static's guard

void count_fork() { g_forks.fetch_add(1, std::memory_order_relaxed); }
void register_fork_counter() {
  g_forks_counted.store(::pthread_atfork(nullptr, count_fork, nullptr) == 0, std::memory_order_relaxed);
}

std::uint64_t forks_so_far() noexcept {
  (void)::pthread_once(&g_forks_once, register_fork_counter);
  // Unregistered (ENOMEM): count every hold as forked, so none is given back.
  return g_forks_counted.load(std::memory_order_relaxed) ? g_forks.load(std::memory_order_relaxed)
                                                         : ~std::uint64_t{0};
}

}  // namespace

OutOfLineBlock::OutOfLineBlock(SharedMemory&& map, std::size_t size, std::atomic<std::uint64_t>* state,
                               std::uint64_t expect) noexcept
    : map_(std::move(map)),
      size_(size),
      state_(state),
      expect_(expect),
      pid_(::getpid()),
      forks_(state != nullptr ? forks_so_far() : 0) {}

void OutOfLineBlock::give_back() noexcept {
  if (state_ != nullptr && pid_ == ::getpid() && forks_ != ~std::uint64_t{0} &&
      forks_ == g_forks.load(std::memory_order_relaxed)) {
    std::uint64_t s = expect_;
    // (11) release: our reads of the message are done before the producer
    // writes into the block again. A word that moved on (the producer
    // dropped the block) is left alone.
    (void)state_->compare_exchange_strong(s, (expect_ & kTagMask) | kIdle, std::memory_order_release,
                                          std::memory_order_relaxed);
  }
  state_ = nullptr;
  map_.reset();
  size_ = 0;
}

void ByteQueue::keep_out_of_line_blocks(unsigned blocks) {
  std::lock_guard lk(staging_->mu);
  staging_->forget_if_forked();
  staging_->keep = blocks;
  auto& e = staging_->entries;
  while (e.size() > blocks) {
    let_go(e.front().name, e.front().trailer);
    e.erase(e.begin());
  }
}

void ByteQueue::drop_out_of_line_blocks() noexcept {
  if (!staging_) return;
  std::lock_guard lk(staging_->mu);
  staging_->forget_if_forked();
  for (auto& e : staging_->entries) let_go(e.name, e.trailer);
  staging_->entries.clear();
}

ByteQueue::ByteQueue(ByteQueue&& o) noexcept
    : block_(std::move(o.block_)),
      ctl_(o.ctl_),
      words_(o.words_),
      data_(o.data_),
      cells_(o.cells_),
      mask_(o.mask_),
      lap_shift_(o.lap_shift_),
      max_cells_(o.max_cells_),
      max_inline_(o.max_inline_),
      threshold_(o.threshold_),
      asym_(o.asym_),
      bell_fd_(o.bell_fd_.exchange(-1, std::memory_order_relaxed)),
      bell_armed_by_(std::exchange(o.bell_armed_by_, 0)),
      staging_(std::move(o.staging_)) {
  o.ctl_ = nullptr;
}

ByteQueue& ByteQueue::operator=(ByteQueue&& o) noexcept {
  if (this != &o) {
    this->~ByteQueue();
    new (this) ByteQueue(std::move(o));
  }
  return *this;
}

ByteQueue::~ByteQueue() {
  drop_out_of_line_blocks();
  if (bell_armed_by_ != 0 && bell_armed_by_ == ::getpid() && ctl_ != nullptr) {
    ctl_->bell_armed.fetch_sub(1, std::memory_order_relaxed);
  }
  if (const int fd = bell_fd_.load(std::memory_order_relaxed); fd >= 0) ::close(fd);
}

std::string ByteQueue::out_of_line_prefix() const { return name() + ".o"; }

void ByteQueue::unlink(std::string_view name) {
  SharedMemory::unlink(name);
  unlink_companions(name);
}

void ByteQueue::unlink_companions(std::string_view name) noexcept {
  struct stat st {};
  const std::string bell = bell_path(name);
  if (::lstat(bell.c_str(), &st) == 0 && S_ISFIFO(st.st_mode)) (void)::unlink(bell.c_str());
  // Out-of-line blocks left behind by killed producers or consumers.
  std::string prefix;
  try {
    prefix = std::string(name) + ".o";
  } catch (...) {
    return;
  }
  if (DIR* d = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(d)) {
      if (is_out_of_line_name(e->d_name, prefix)) (void)::unlinkat(::dirfd(d), e->d_name, 0);
    }
    ::closedir(d);
  }
}

// ------------------------------------------------------------------ push

bool ByteQueue::push_record(std::span<const std::span<const std::byte>> parts, std::size_t length,
                            std::uint32_t flags, std::uint64_t ool_size) noexcept {
  const std::uint64_t me = short_id();
  const std::uint64_t k1 = div_up(kRecordHeader + length, kCell);
  std::uint64_t pos = ctl_->tail.load(std::memory_order_relaxed);
  // helps: claims found at tail and moved past for their claimant; more
  // than a ring's worth, or a claim no record could make, is forged.
  for (std::uint64_t stale = 0, helps = 0;;) {
    const std::uint64_t c = pos & mask_;
    const bool wrap = c + k1 > cells_;
    const std::uint64_t k = wrap ? (cells_ - c) + div_up(length, kCell) : k1;
    std::uint64_t w = words_[c].load(std::memory_order_acquire);  // (1)
    if (w == pos) {
      bool free = true;
      for (std::uint64_t j = 1; j < k; ++j) {
        if (words_[(pos + j) & mask_].load(std::memory_order_acquire) != pos + j) {  // (1)
          free = false;
          break;
        }
      }
      if (!free) return false;  // full: a record of the previous lap still holds cells we need
      const std::uint64_t claim = kClaim | (kProducer << kKindShift) |
                                  (((pos >> lap_shift_) & kLapMask) << kLapShift) | (k << kCellsShift) | me;
      // (5) release.
      if (!words_[c].compare_exchange_weak(w, claim, std::memory_order_release, std::memory_order_relaxed))
        continue;
      SHMKIT_FAULT_POINT(byteq_push_won);
      advance(ctl_->tail, pos, k);
      std::byte* rec = data_ + c * kCell;
      store_header(rec, Header{length, flags | (wrap ? kWrapped : 0), static_cast<std::uint32_t>(k)});
      std::byte* dst = wrap ? data_ : rec + kRecordHeader;
      if (flags & kOutOfLine) {
        std::memcpy(dst, &ool_size, 8);
        gather(dst + 8, parts);
      } else {
        gather(dst, parts);
      }
      SHMKIT_FAULT_POINT(byteq_push_written);
      // (2) release: a plain store; no one else writes a live claimant's word.
      words_[c].store(pos + 1, std::memory_order_release);
      SHMKIT_FAULT_POINT(byteq_push_published);
      // (3) one fence for both checks: the sleepers' word (pairs with (2))
      // and the doorbell's arming (pairs with the full fence in
      // doorbell_fd() and settle_doorbell()).
      lockfree_detail::light_fence(asym_);
      lockfree_detail::wake_sleepers(ctl_->not_empty);
      // relaxed: ordered by (3).
      if (ctl_->bell_armed.load(std::memory_order_relaxed) != 0) [[unlikely]]
        ring_bell();
      return true;
    }
    const std::uint64_t lap = (pos >> lap_shift_) & kLapMask;
    if (is_claim(w)) {
      if ((kind_of(w) == kProducer || kind_of(w) == kSkipped) && lap_bits(w) == lap) {
        // Claimed for this lap and tail not past it yet: move it for the claimant.
        if (!plausible_cells(cells_of(w)) || ++helps > cells_) return false;   // forged
        const std::uint64_t now = ctl_->tail.load(std::memory_order_acquire);  // (9)
        if (now == pos && words_[c].load(std::memory_order_acquire) == w) {    // (7)
          advance(ctl_->tail, pos, cells_of(w));
        }
        pos = ctl_->tail.load(std::memory_order_relaxed);
        continue;
      }
      if (lap_bits(w) == ((lap - 1) & kLapMask)) return false;  // full: the previous lap's record
    } else if (static_cast<std::int64_t>(w - pos) < 0) {
      return false;  // full: the cell still belongs to the previous lap
    }
    const std::uint64_t now = ctl_->tail.load(std::memory_order_relaxed);
    if (now == pos && ++stale > 2) return false;  // a forged word: no producer moves on
    pos = now;
  }
}

bool ByteQueue::try_push(std::span<const std::span<const std::byte>> parts) {
  return push_wait(parts, std::nullopt, false);
}

void ByteQueue::push(std::span<const std::span<const std::byte>> parts) {
  (void)push_wait(parts, std::nullopt, true);
}

bool ByteQueue::push_until(std::span<const std::span<const std::byte>> parts,
                           std::chrono::steady_clock::time_point deadline) {
  return push_wait(parts, deadline, true);
}

bool ByteQueue::push_wait(std::span<const std::span<const std::byte>> parts,
                          std::optional<std::chrono::steady_clock::time_point> deadline, bool wait) {
  const std::size_t length = total_length(parts);
  if (length > threshold_) {
    if (name().empty()) {
      throw std::length_error("shmkit: a message of " + std::to_string(length) +
                              " bytes is longer than an anonymous ByteQueue carries (" +
                              std::to_string(threshold_) + "): out-of-line blocks need the queue's name");
    }
    return push_out_of_line(parts, length, deadline, wait);
  }
  auto attempt = [&] { return push_record(parts, length, 0, 0); };
  if (attempt()) return true;
  if (!wait) return false;
  if (spin_then_yield(attempt)) return true;
  return lockfree_detail::sleep_until(
      ctl_->not_full, attempt, deadline, [&] { (void)unblock(); }, asym_);
}

bool ByteQueue::push_ref(std::span<const std::span<const std::byte>> body, std::uint32_t flags,
                         std::uint64_t length,
                         const std::optional<std::chrono::steady_clock::time_point>& deadline, bool wait) {
  std::size_t n = 0;
  for (const auto& p : body) n += p.size();
  auto attempt = [&] { return push_record(body, 8 + n, flags, length); };
  bool ok = attempt();
  if (!ok && wait) {
    ok = spin_then_yield(attempt) || lockfree_detail::sleep_until(
                                         ctl_->not_full, attempt, deadline, [&] { (void)unblock(); }, asym_);
  }
  return ok;
}

// A new out-of-line block of `bytes` (named from the queue's counter, into
// `name`), untracked and reserved, with the queue block's permission bits.
SharedMemory ByteQueue::make_out_of_line_block(std::size_t bytes, std::string& name) {
  name = out_of_line_prefix() +
         std::to_string(ctl_->out_of_line_counter.fetch_add(1, std::memory_order_relaxed));
  SharedMemory::Options o;
  struct stat st {};
  o.mode = ::fstat(block_.shm.fd(), &st) == 0 ? (st.st_mode & 0777) : 0600;
  return SharedMemory::create(name, bytes, o);
}

bool ByteQueue::push_out_of_line(std::span<const std::span<const std::byte>> parts, std::size_t length,
                                 const std::optional<std::chrono::steady_clock::time_point>& deadline,
                                 bool wait) {
  {
    std::lock_guard lk(staging_->mu);
    staging_->forget_if_forked();
    if (staging_->keep > 0 && length <= kMaxKeptBlock) return push_staged(parts, length, deadline, wait);
  }
  std::string block_name;
  {
    SharedMemory m = make_out_of_line_block(std::max<std::size_t>(length, 1), block_name);
    gather(m.buf().data(), parts);
  }  // unmapped: the consumer maps it again
  const auto ref = std::as_bytes(std::span<const char>(block_name.data(), block_name.size()));
  const std::span<const std::byte> body[] = {ref};
  const bool ok = push_ref(body, kOutOfLine, length, deadline, wait);
  if (!ok) {
    try {
      SharedMemory::unlink(block_name);
    } catch (...) {
    }
  }
  return ok;
}

// Called with staging_->mu held; returns with it held (it is released
// while the block is written and the record pushed).
bool ByteQueue::push_staged(std::span<const std::span<const std::byte>> parts, std::size_t length,
                            const std::optional<std::chrono::steady_clock::time_point>& deadline, bool wait) {
  Staging& st = *staging_;
  std::shared_ptr<SharedMemory> map;
  std::string block_name;
  ReusedTrailer* t = nullptr;
  std::uint64_t tag = 0;
  // A kept block that is idle and large enough. (10) acquire: its last
  // holder's reads are done.
  for (auto& e : st.entries) {
    if (e.capacity < length) continue;
    std::uint64_t s = e.trailer->state.load(std::memory_order_relaxed);
    if ((s & (kLifeMask | kOrphan)) != kIdle) continue;
    if (e.trailer->state.compare_exchange_strong(s, ((s & kTagMask) + kTagStep) | kQueued,
                                                 std::memory_order_acquire, std::memory_order_relaxed)) {
      map = e.map;
      block_name = e.name;
      t = e.trailer;
      tag = (s & kTagMask) + kTagStep;
      break;
    }
  }
  if (!map) {
    // None: a new one (after unlinking what dead producers left, once per
    // handle), and the oldest kept one let go beyond the limit.
    if (!st.swept) {
      sweep_dead_producers_blocks();
      st.swept = true;
    }
    st.entries.reserve(st.entries.size() + 1);  // no throw after the block exists
    const std::size_t page = 4096;
    if (length > SIZE_MAX - 2 * page) throw std::length_error("shmkit: ByteQueue message too long");
    const std::size_t capacity =
        (length + sizeof(ReusedTrailer) + page - 1) / page * page - sizeof(ReusedTrailer);
    map =
        std::make_shared<SharedMemory>(make_out_of_line_block(capacity + sizeof(ReusedTrailer), block_name));
    t = new (map->buf().data() + capacity) ReusedTrailer{};
    t->magic = kTrailerMagic;
    t->owner = lockfree_detail::claimant_id();
    t->capacity = capacity;
    tag = kTagStep;
    t->state.store(tag | kQueued, std::memory_order_relaxed);  // published by the record's (2)
    if (st.entries.size() >= st.keep) {
      let_go(st.entries.front().name, st.entries.front().trailer);
      st.entries.erase(st.entries.begin());
    }
    st.entries.push_back(Staging::Entry{block_name, map, t, capacity});  // reserved: no throw
  }
  staging_->mu.unlock();
  struct Relock {
    std::mutex& mu;
    ~Relock() { mu.lock(); }
  } relock{staging_->mu};
  gather(map->buf().data(), parts);
  const auto ref = std::as_bytes(std::span<const char>(block_name.data(), block_name.size()));
  const std::span<const std::byte> body[] = {std::as_bytes(std::span<const std::uint64_t>(&tag, 1)), ref};
  bool ok = false;
  try {
    ok = push_ref(body, kOutOfLine | kReused, length, deadline, wait);
  } catch (...) {
  }
  if (!ok) {
    // Never published: idle again, unless it was let go meanwhile (then
    // no consumer will ever unlink it: we do).
    std::uint64_t s = tag | kQueued;
    // (11) release, as a give-back: our writes into it come before the
    // next push's (another thread of this handle may take it next).
    if (!t->state.compare_exchange_strong(s, tag | kIdle, std::memory_order_release,
                                          std::memory_order_relaxed)) {
      (void)::unlink(platform::dev_shm_path(block_name).c_str());
    }
  }
  return ok;
}

// Unlinks the reused blocks of dead producers that no record names any more
// (idle or held; a queued one is its consumer's to unlink). Reads each
// candidate's trailer with pread: nothing is mapped. The names are listed
// first, up to a bound, then checked: a scan that checked as it read could
// chase the new blocks live producers keep making (a directory read sees
// entries made after it started) and never end.
void ByteQueue::sweep_dead_producers_blocks() noexcept {
  std::vector<std::string> candidates;
  try {
    const std::string prefix = out_of_line_prefix();
    DIR* d = ::opendir("/dev/shm");
    if (d == nullptr) return;
    std::size_t seen = 0;
    while (const dirent* e = ::readdir(d)) {
      if (++seen > kSweepEntries) break;
      if (is_out_of_line_name(e->d_name, prefix)) candidates.emplace_back(e->d_name);
      if (candidates.size() >= kSweepCandidates) break;
    }
    ::closedir(d);
  } catch (...) {
    return;  // no memory: sweep another time
  }
  for (const std::string& n : candidates) {
    const std::string path = platform::dev_shm_path(n);
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat fs {};
    std::uint64_t t[8];  // a ReusedTrailer: magic, state, owner, capacity
    bool dead = false;
    if (::fstat(fd, &fs) == 0 && S_ISREG(fs.st_mode) && fs.st_size >= 64 && fs.st_size % 64 == 0 &&
        ::pread(fd, t, sizeof t, fs.st_size - 64) == static_cast<ssize_t>(sizeof t) &&
        t[0] == kTrailerMagic && t[3] == static_cast<std::uint64_t>(fs.st_size) - 64) {
      dead = (t[1] & kLifeMask) != kQueued && lockfree_detail::claimant_dead(t[2]);
    }
    ::close(fd);
    if (dead) (void)::unlink(path.c_str());
  }
}

bool ByteQueue::wait_room_until(std::size_t bytes,
                                std::optional<std::chrono::steady_clock::time_point> deadline,
                                bool spin) noexcept {
  const std::size_t length = bytes > threshold_ ? 8 + kMaxQueueName + 24 : bytes;
  const std::uint64_t k1 = div_up(kRecordHeader + length, kCell);
  // A long message needs many cells (8193 for 512 KiB), and this check runs
  // at every look of the spin and after every sleep: it resumes where the
  // last look at the same tail stopped. Cells found free behind an
  // unclaimed tail stay free until a producer claims at tail (only cells a
  // consumer frees change, to free), so only cell 0 is looked at again.
  std::uint64_t seen_pos = 0, seen_free = 0;  // cells seen_pos + [0, seen_free) were free
  auto room = [&] {
    const std::uint64_t pos = ctl_->tail.load(std::memory_order_acquire);
    const std::uint64_t c = pos & mask_;
    const std::uint64_t k = c + k1 > cells_ ? (cells_ - c) + div_up(length, kCell) : k1;
    for (std::uint64_t j = 0; j < k; ++j) {
      const std::uint64_t w = words_[(pos + j) & mask_].load(std::memory_order_acquire);
      if (w != pos + j) {
        seen_pos = pos;
        seen_free = j;
        // A producer's claim of this lap at tail: tail moves on (we help it), look again.
        return j == 0 && is_claim(w) && (kind_of(w) == kProducer || kind_of(w) == kSkipped) &&
               lap_bits(w) == ((pos >> lap_shift_) & kLapMask);
      }
      if (j == 0 && pos == seen_pos && seen_free > 1) j = seen_free - 1;  // 1 .. seen_free - 1 were free
    }
    return true;
  };
  if (spin ? spin_then_yield(room) : room()) return true;
  return lockfree_detail::sleep_until(
      ctl_->not_full, room, deadline, [&] { (void)unblock(); }, asym_);
}

// ------------------------------------------------------------------- pop

BytePop ByteQueue::try_pop(ByteSink& sink) noexcept {
  const std::uint64_t me = short_id();
  std::uint64_t h = ctl_->head.load(std::memory_order_acquire);  // (9)
  std::uint64_t pos = h;
  // Records still being written that this scan looked past (position, claim
  // word). Before taking a message behind them we look at them again: one
  // published meanwhile may be an earlier message of the same producer
  // (FIFO per producer), so the scan starts over and takes it first. One
  // still claimed has not been published, so its producer's push has not
  // returned and the message behind it is not that producer's.
  std::uint64_t passed_pos[kMaxPassed], passed_word[kMaxPassed];
  int passed = 0;
  for (std::uint64_t steps = 0, restarts = 0, rescans = 0; steps <= cells_; ++steps) {
    const std::uint64_t c = pos & mask_;
    const std::uint64_t lap = (pos >> lap_shift_) & kLapMask;
    std::uint64_t w = words_[c].load(std::memory_order_acquire);  // (3)
    if (w == pos + 1 || (is_claim(w) && kind_of(w) == kSkipped && lap_bits(w) == lap)) {
      bool moved = false;
      for (int i = 0; i < passed && !moved; ++i) {
        moved = words_[passed_pos[i] & mask_].load(std::memory_order_acquire) != passed_word[i];  // (3)
      }
      if (moved) {
        if (++rescans > cells_) break;
        passed = 0;
        h = ctl_->head.load(std::memory_order_acquire);
        pos = h;
        steps = 0;
        continue;
      }
      const bool skipped = w != pos + 1;
      std::uint64_t k = skipped ? cells_of(w) : 0;
      std::byte* rec = data_ + c * kCell;
      Header hd{};
      std::byte* dst = nullptr;
      std::optional<SharedMemory> block;
      std::string block_name;
      ReusedTrailer* trailer = nullptr;  // a reused block's
      std::uint64_t ool_size = 0, ool_tag = 0;
      std::uint64_t lead = 0;           // the leading bytes the sink leaves out
      const std::byte* body = nullptr;  // the record's bytes (after the header, or at the ring's start)
      bool corrupt = false;
      if (skipped) {
        // A dead producer's record keeps its inner cells' "free" words
        // while it lives: a claim whose count no record can have, or whose
        // cells are not all its own, is forged. Release what is provably
        // ours: the first cell.
        bool own = plausible_cells(k);
        for (std::uint64_t j = 1; own && j < k; ++j)
          own = words_[(pos + j) & mask_].load(std::memory_order_acquire) == pos + j;
        if (!own) {
          corrupt = true;
          k = 1;
        }
      }
      if (!skipped) {
        hd = load_header(rec);
        k = hd.cells;
        const bool wrap = (hd.flags & kWrapped) != 0;
        body = wrap ? data_ : rec + kRecordHeader;
        const std::uint64_t k1 =
            div_up(kRecordHeader + std::min<std::uint64_t>(hd.length, cells_ * kCell), kCell);
        const bool fits = hd.length <= max_inline_ &&
                          (wrap ? c + k1 > cells_ && k == (cells_ - c) + div_up(hd.length, kCell)
                                : c + k1 <= cells_ && k == k1);
        const std::size_t ref_head = (hd.flags & kReused) ? 16 : 8;  // [size][tag]
        const bool ool_ok =
            (hd.flags & kOutOfLine) == 0 || (hd.length >= ref_head && hd.length <= ref_head + 255);
        if (!fits || !ool_ok || k == 0 || k >= cells_) {
          corrupt = true;
          k = 1;  // release what we can prove is ours: the first cell
        } else if (hd.flags & kOutOfLine) {
          std::memcpy(&ool_size, body, 8);
          if (hd.flags & kReused) std::memcpy(&ool_tag, body + 8, 8);
          block_name.assign(reinterpret_cast<const char*>(body + ref_head), hd.length - ref_head);
          if (name().empty() || !is_out_of_line_name(block_name, out_of_line_prefix())) {
            corrupt = true;  // not one of ours: never map or unlink it
          } else {
            try {
              block.emplace(SharedMemory::attach(block_name));
            } catch (const std::system_error& e) {
              if (e.code().value() == ENOENT) {
                // Taken and unlinked by another consumer since we read the word: look again.
                if (words_[c].load(std::memory_order_acquire) != w) continue;
                corrupt = true;  // published, yet its block is gone
              } else if (e.code().value() == EMFILE || e.code().value() == ENFILE ||
                         e.code().value() == ENOMEM) {
                return BytePop::no_memory;  // the message stays queued
              } else {
                corrupt = true;  // not a block we can map (a directory, a FIFO, no permission)
              }
            } catch (...) {
              corrupt = true;
            }
            if (block && block->size() < ool_size) corrupt = true;
            if (block && !corrupt && (hd.flags & kReused)) {
              trailer = trailer_of(*block);
              if (trailer == nullptr || ool_size > block->size() - sizeof(ReusedTrailer) ||
                  (ool_tag & ~kTagMask) != 0)
                corrupt = true;
            }
          }
        } else {
          if (hd.length != 0) lead = std::min<std::uint64_t>(sink.skip(body[0]), hd.length);
          dst = sink.reserve(static_cast<std::size_t>(hd.length - lead));
          if (dst == nullptr && hd.length != lead) return BytePop::no_memory;
        }
      }
      const std::uint64_t kind = skipped ? kConsumerOfSkipped : kConsumer;
      const std::uint64_t claim =
          kClaim | (kind << kKindShift) | (lap << kLapShift) | (k << kCellsShift) | me;
      // (5) release.
      if (!words_[c].compare_exchange_strong(w, claim, std::memory_order_acq_rel,
                                             std::memory_order_relaxed)) {
        continue;  // another consumer took it: look at this position again
      }
      SHMKIT_FAULT_POINT(byteq_pop_won);
      advance(ctl_->head, pos, k);
      bool delivered = false;
      std::atomic<std::uint64_t>* give_back = nullptr;
      if (trailer != nullptr && !corrupt) {
        // A reused block: queued for this record (the tag matches) -> held.
        std::uint64_t st = trailer->state.load(std::memory_order_acquire);
        bool took = false;
        while ((st & kTagMask) == ool_tag && (st & kLifeMask) == kQueued) {
          if (trailer->state.compare_exchange_weak(st, ool_tag | kHeld | (st & kOrphan),
                                                   std::memory_order_acq_rel)) {
            took = true;
            break;
          }
        }
        if (!took) {
          corrupt = true;  // not queued for this record: a forged or stale name; never read it
        } else if ((st & kOrphan) == 0 && !lockfree_detail::claimant_dead(trailer->owner)) {
          give_back = &trailer->state;  // its producer takes it back when we are done
        }
      }
      if (!skipped && !corrupt) {
        if (block) {
          if (give_back == nullptr) (void)::unlink(platform::dev_shm_path(block->name()).c_str());
          sink.adopt(OutOfLineBlock(std::move(*block), static_cast<std::size_t>(ool_size), give_back,
                                    ool_tag | kHeld));
        } else if (hd.length != lead) {
          std::memcpy(dst, body + lead, hd.length - lead);
        }
        delivered = true;
      }
      SHMKIT_FAULT_POINT(byteq_pop_copied);
      if (corrupt) ctl_->corrupt_records.fetch_add(1, std::memory_order_relaxed);
      release_record(pos, k);
      SHMKIT_FAULT_POINT(byteq_pop_released);
      lockfree_detail::notify(ctl_->not_full, asym_);
      if (delivered) return BytePop::ok;
      pos = ctl_->head.load(std::memory_order_acquire);
      continue;
    }
    if (is_claim(w) && lap_bits(w) == lap && kind_of(w) != kSkipped) {
      const std::uint64_t k = cells_of(w);
      if (kind_of(w) != kProducer) {
        // Taken by a consumer: head may not be past it yet.
        if (ctl_->head.load(std::memory_order_acquire) == pos &&
            words_[c].load(std::memory_order_acquire) == w) {
          advance(ctl_->head, pos, k);
        }
      }
      if (kind_of(w) == kProducer) {
        // A producer still writing: look past it (its claim carries its length).
        if (passed == kMaxPassed) break;
        passed_pos[passed] = pos;
        passed_word[passed] = w;
        ++passed;
      }
      pos += k;
      continue;
    }
    if (lap_done(w, pos, lap, cells_)) {
      // Released already (taken by a consumer that looked past head), maybe
      // reused by the next lap since.
      if (ctl_->head.load(std::memory_order_acquire) == pos) advance(ctl_->head, pos, 1);
      pos += 1;
      continue;
    }
    if (w == pos) break;  // nothing claimed here yet: no more messages
    // Not this lap's: our head was stale, or we ran past tail.
    if (static_cast<std::int64_t>(pos - ctl_->tail.load(std::memory_order_acquire)) >= 0) break;
    if (++restarts > 3) break;  // forged words
    h = ctl_->head.load(std::memory_order_acquire);
    pos = h;
    steps = 0;
    passed = 0;
  }
  if (ctl_->bell_armed.load(std::memory_order_relaxed) != 0 &&
      ctl_->bell_rung.load(std::memory_order_relaxed) != 0) {
    settle_doorbell();
  }
  return BytePop::empty;
}

void ByteQueue::release_record(std::uint64_t pos, std::uint64_t cells) noexcept {
  // (4) release: inner cells first, the first cell last (a survivor that
  // finds the first cell released knows the rest are).
  for (std::uint64_t j = cells; j-- > 1;)
    words_[(pos + j) & mask_].store(pos + j + cells_, std::memory_order_release);
  words_[pos & mask_].store(pos + cells_, std::memory_order_release);
}

class ByteMessageSink final : public ByteSink {
 public:
  explicit ByteMessageSink(ByteMessage& m) : m_(m) {}
  std::byte* reserve(std::size_t n) noexcept override {
    try {
      m_.copy_.resize(n);
    } catch (...) {
      return nullptr;
    }
    return m_.copy_.data();
  }
  void adopt(OutOfLineBlock&& block) noexcept override {
    m_.copy_.clear();
    m_.block_.emplace(std::move(block));
  }

 private:
  ByteMessage& m_;
};

bool ByteQueue::try_pop(ByteMessage& out) noexcept {
  out.block_.reset();
  ByteMessageSink sink(out);
  return try_pop(sink) == BytePop::ok;
}

ByteMessage ByteQueue::pop() {
  ByteMessage m;
  (void)pop_until_opt(m, std::nullopt);
  return m;
}

bool ByteQueue::pop_until(ByteMessage& out, std::chrono::steady_clock::time_point deadline) {
  return pop_until_opt(out, deadline);
}

bool ByteQueue::pop_until_opt(ByteMessage& out,
                              std::optional<std::chrono::steady_clock::time_point> deadline) {
  for (;;) {
    out.block_.reset();
    ByteMessageSink sink(out);
    const BytePop r = try_pop(sink);
    if (r == BytePop::ok) return true;
    if (r == BytePop::no_memory) throw std::bad_alloc();
    if (!wait_message_until(deadline)) return false;
  }
}

bool ByteQueue::wait_message_until(std::optional<std::chrono::steady_clock::time_point> deadline,
                                   bool spin) noexcept {
  auto attempt = [&] { return has_message(); };
  if (spin ? spin_then_yield(attempt) : attempt()) return true;
  return lockfree_detail::sleep_until(
      ctl_->not_empty, attempt, deadline, [&] { (void)unblock_waiting_consumer(); }, asym_);
}

bool ByteQueue::has_message() const noexcept {
  std::uint64_t pos = ctl_->head.load(std::memory_order_acquire);
  // As try_pop: past at most kMaxPassed records still being written (a
  // message it cannot take is no message, or a waiter would never sleep).
  int passed = 0;
  for (std::uint64_t steps = 0; steps <= cells_; ++steps) {
    const std::uint64_t c = pos & mask_;
    const std::uint64_t lap = (pos >> lap_shift_) & kLapMask;
    const std::uint64_t w = words_[c].load(std::memory_order_acquire);
    if (w == pos + 1) return true;
    if (is_claim(w) && lap_bits(w) == lap) {
      if (kind_of(w) == kSkipped) return true;  // a consumer must release it
      if (kind_of(w) == kProducer && passed++ == kMaxPassed) return false;
      pos += cells_of(w);
      continue;
    }
    if (lap_done(w, pos, lap, cells_)) {
      pos += 1;
      continue;
    }
    return false;
  }
  return false;
}

std::uint64_t ByteQueue::size() const noexcept {
  std::uint64_t n = 0;
  std::uint64_t pos = ctl_->head.load(std::memory_order_acquire);
  const std::uint64_t tail = ctl_->tail.load(std::memory_order_acquire);
  for (std::uint64_t steps = 0; steps <= cells_ && static_cast<std::int64_t>(tail - pos) > 0; ++steps) {
    const std::uint64_t c = pos & mask_;
    const std::uint64_t lap = (pos >> lap_shift_) & kLapMask;
    const std::uint64_t w = words_[c].load(std::memory_order_acquire);
    if (w == pos + 1) {
      const Header hd = load_header(data_ + c * kCell);
      ++n;
      pos += std::clamp<std::uint64_t>(hd.cells, 1, cells_);
    } else if (is_claim(w) && lap_bits(w) == lap) {
      if (kind_of(w) == kProducer) ++n;
      pos += cells_of(w);
    } else if (lap_done(w, pos, lap, cells_)) {
      pos += 1;
    } else {
      break;
    }
  }
  return n;
}

// ----------------------------------------------------- dead claimants

bool ByteQueue::release_dead_consumer(std::uint64_t pos, std::uint64_t w) noexcept {
  SHMKIT_FAULT_POINT(byteq_unblock_seen);
  const std::uint64_t k = cells_of(w);
  const std::uint64_t c = pos & mask_;
  advance(ctl_->head, pos, k);  // it may have died before moving head
  // Take the record over first (a claim naming us, same kind, lap and
  // cells): a survivor that read `w` long ago (stopped, preempted) finds the
  // word moved on and touches nothing, not the record nor the block a later
  // record of these cells names. If we die in turn, the next survivor
  // steps over our claim the same way. (8)
  std::uint64_t expected = w;
  if (!words_[c].compare_exchange_strong(expected, (w & ~kIdMask) | short_id(), std::memory_order_acq_rel,
                                         std::memory_order_relaxed)) {
    return false;
  }
  if (kind_of(w) == kConsumer) {
    ctl_->consumer_claims_released.fetch_add(1, std::memory_order_relaxed);
    // Its out-of-line block: a single-use one unlinked, if it had not done
    // so yet; a reused one given back to its producer (or unlinked, if its
    // producer let go of it or died), if it was still queued for this
    // record or held by the dead consumer (the tag tells). The header is
    // untrusted: the bytes it names must lie inside the record's cells.
    const Header hd = load_header(data_ + c * kCell);
    const bool wrap = (hd.flags & kWrapped) != 0;
    const bool fits = k < cells_ && hd.cells == k &&
                      (wrap ? c + k > cells_ && hd.length <= (k - (cells_ - c)) * kCell
                            : c + k <= cells_ && hd.length <= k * kCell - kRecordHeader);
    const std::size_t ref_head = (hd.flags & kReused) ? 16 : 8;
    if (fits && (hd.flags & kOutOfLine) && hd.length > ref_head && hd.length <= ref_head + 255) {
      const std::byte* src = wrap ? data_ : data_ + c * kCell + kRecordHeader;
      try {
        const std::string block_name(reinterpret_cast<const char*>(src + ref_head), hd.length - ref_head);
        if (!name().empty() && is_out_of_line_name(block_name, out_of_line_prefix())) {
          if ((hd.flags & kReused) == 0) {
            (void)::unlink(platform::dev_shm_path(block_name).c_str());
          } else {
            std::uint64_t tag = 0;
            std::memcpy(&tag, src + 8, 8);
            SharedMemory m = SharedMemory::attach(block_name);
            if (ReusedTrailer* t = trailer_of(m)) {
              std::uint64_t st = t->state.load(std::memory_order_acquire);
              while ((st & kTagMask) == tag && ((st & kLifeMask) == kQueued || (st & kLifeMask) == kHeld)) {
                if ((st & kOrphan) || lockfree_detail::claimant_dead(t->owner)) {
                  (void)::unlink(platform::dev_shm_path(block_name).c_str());
                  break;
                }
                // (11) release, as a holder's give-back.
                if (t->state.compare_exchange_weak(st, tag | kIdle, std::memory_order_release,
                                                   std::memory_order_relaxed)) {
                  break;
                }
              }
            }
          }
        }
      } catch (...) {
        // Gone already (its producer let go of it), or no memory: nothing to give back.
      }
    }
  }
  // Inner cells: each from its position in this lap (untouched, or the
  // dead consumer did not get to it) to the next lap's; then the first.
  for (std::uint64_t j = k; j-- > 1;) {
    std::uint64_t inner = pos + j;
    (void)words_[(pos + j) & mask_].compare_exchange_strong(inner, pos + j + cells_,
                                                            std::memory_order_acq_rel,
                                                            std::memory_order_relaxed);  // (8)
  }
  words_[c].store(pos + cells_, std::memory_order_release);  // (4): ours since the CAS above
  lockfree_detail::notify(ctl_->not_full, asym_);
  return true;
}

// Marks the dead producer's claim `w` at position `pos` skipped (its cells
// are then released unread by a consumer); false if the word moved.
bool ByteQueue::skip_dead_producer(std::uint64_t pos, std::uint64_t w) noexcept {
  std::uint64_t expected = w;
  const std::uint64_t skipped = (w & ~(std::uint64_t{3} << kKindShift)) | (kSkipped << kKindShift);
  if (!words_[pos & mask_].compare_exchange_strong(expected, skipped, std::memory_order_acq_rel,
                                                   std::memory_order_relaxed)) {  // (8)
    return false;
  }
  ctl_->producer_claims_skipped.fetch_add(1, std::memory_order_relaxed);
  lockfree_detail::notify(ctl_->not_empty, asym_);
  return true;
}

ByteUnblock ByteQueue::unblock() noexcept {
  const ByteUnblock r = unblock_consumers_side();
  return r != ByteUnblock::none ? r : unblock_producers_side();
}

ByteUnblock ByteQueue::unblock_waiting_consumer() noexcept {
  const ByteUnblock r = unblock_consumers_side();
  if (r != ByteUnblock::none) return r;
  // The producers' side reads every free cell from tail on, up to the
  // ring's size (65536 loads for the default 4 MiB ring): between every
  // sleep of every idle consumer that was most of its CPU. Producers that
  // wait for room run it themselves between their sleeps; consumers, for
  // producers that do not wait, every kProducersSideEvery.
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
  // relaxed: a hint shared by the threads of this handle; a race runs it twice.
  if (now - staging_->producers_side_ns.load(std::memory_order_relaxed) < kProducersSideEvery.count())
    return ByteUnblock::none;
  staging_->producers_side_ns.store(now, std::memory_order_relaxed);
  return unblock_producers_side();
}

ByteUnblock ByteQueue::unblock_consumers_side() noexcept {
  // A dead producer's claim between head and tail (the first few live ones
  // are looked past; each check reads /proc). Claims are made at tail only,
  // so none lies past the tail read here (a later one is not stuck yet).
  std::uint64_t pos = ctl_->head.load(std::memory_order_acquire);      // (9)
  const std::uint64_t t = ctl_->tail.load(std::memory_order_acquire);  // (9)
  int checked = 0;
  for (std::uint64_t steps = 0; steps <= cells_ && checked < 8 && static_cast<std::int64_t>(pos - t) <= 0;
       ++steps) {
    const std::uint64_t c = pos & mask_;
    const std::uint64_t lap = (pos >> lap_shift_) & kLapMask;
    const std::uint64_t w = words_[c].load(std::memory_order_acquire);  // (7)
    if (w == pos + 1) {
      pos += std::clamp<std::uint64_t>(load_header(data_ + c * kCell).cells, 1, cells_);
      continue;
    }
    if (lap_done(w, pos, lap, cells_)) {
      pos += 1;
      continue;
    }
    if (!is_claim(w) || lap_bits(w) != lap) break;
    if (kind_of(w) == kProducer) {
      ++checked;
      if (short_id_dead(w)) {
        advance(ctl_->tail, pos, cells_of(w));  // it may have died before moving tail
        if (skip_dead_producer(pos, w)) return ByteUnblock::skipped_producer;
      }
    } else if (kind_of(w) != kSkipped) {
      ++checked;
      if (short_id_dead(w) && release_dead_consumer(pos, w)) return ByteUnblock::released_consumer;
    }
    pos += cells_of(w);
  }
  return ByteUnblock::none;
}

ByteUnblock ByteQueue::unblock_producers_side() noexcept {
  // The first cell at or after tail still held by the previous lap; walk
  // back over its record's inner cells to its first.
  const std::uint64_t t = ctl_->tail.load(std::memory_order_acquire);  // (9)
  std::uint64_t x = t;
  for (; x < t + max_cells_ * 2; ++x) {
    if (words_[x & mask_].load(std::memory_order_acquire) != x) break;
  }
  if (x == t + max_cells_ * 2 || x < cells_) return ByteUnblock::none;
  std::uint64_t s = x - cells_;  // the previous lap's position of that cell
  for (std::uint64_t back = 0;
       back < max_cells_ * 2 && s > 0 && words_[s & mask_].load(std::memory_order_acquire) == s; ++back) {
    --s;  // an inner cell of an unreleased record: its first is further back
  }
  const std::uint64_t w = words_[s & mask_].load(std::memory_order_acquire);  // (7)
  if (!is_claim(w) || lap_bits(w) != ((s >> lap_shift_) & kLapMask) || !short_id_dead(w)) {
    return ByteUnblock::none;
  }
  if (kind_of(w) == kConsumer || kind_of(w) == kConsumerOfSkipped) {
    if (release_dead_consumer(s, w)) return ByteUnblock::released_consumer;
  } else if (kind_of(w) == kProducer) {
    if (skip_dead_producer(s, w)) return ByteUnblock::skipped_producer;
  }
  return ByteUnblock::none;
}

ByteQueueLosses ByteQueue::losses() const noexcept {
  return {ctl_->producer_claims_skipped.load(std::memory_order_relaxed),
          ctl_->consumer_claims_released.load(std::memory_order_relaxed),
          ctl_->corrupt_records.load(std::memory_order_relaxed)};
}

// -------------------------------------------------------------- doorbell

namespace {

// The FIFO at `path`, opened so that open() never blocks and read() never
// sees EOF (O_RDWR); -1 with errno set when it cannot be opened, is a
// symbolic link (ELOOP) or is not a FIFO (ENXIO): the name is in /dev/shm,
// where another user's file must never be read or written through it.
int open_fifo(const std::string& path) noexcept {
  const int fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
    ::close(fd);
    errno = ENXIO;
    return -1;
  }
  return fd;
}

}  // namespace

int ByteQueue::bell() noexcept {
  int fd = bell_fd_.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  try {
    fd = open_fifo(bell_path(name()));
  } catch (const std::bad_alloc&) {  // the path's string
    errno = ENOMEM;
    return -1;
  }
  if (fd < 0) return -1;
  int first = -1;
  // acq_rel: a thread of this handle that opened it first keeps its own.
  if (!bell_fd_.compare_exchange_strong(first, fd, std::memory_order_acq_rel)) {
    ::close(fd);
    return first;
  }
  return fd;
}

int ByteQueue::doorbell_fd() {
  const int fd = bell();
  if (fd < 0) throw_errno(errno, "shmkit: cannot open the doorbell of ByteQueue \"" + name() + "\"");
  if (bell_armed_by_ != ::getpid()) {  // not yet, or armed by the parent this copy was forked from
    bell_armed_by_ = ::getpid();
    ctl_->bell_armed.fetch_add(1, std::memory_order_relaxed);
    lockfree_detail::full_fence();  // pairs with the producers' fence (3) before they read bell_armed
    if (has_message()) {
      ctl_->bell_rung.store(1, std::memory_order_relaxed);
      const char b = 1;
      (void)!::write(fd, &b, 1);
    }
  }
  return fd;
}

// A push that found the bell armed, after its fence (3).
void ByteQueue::ring_bell() noexcept {
  if (ctl_->bell_rung.exchange(1, std::memory_order_acq_rel) != 0) return;
  const int fd = bell();
  if (fd < 0) return;
  const char b = 1;
  (void)!::write(fd, &b, 1);  // EAGAIN: the FIFO is full, so readable anyway
  // A consumer may have taken the message and settled before our write:
  // do not leave the bell readable over an empty queue.
  lockfree_detail::full_fence();
  if (!has_message()) settle_doorbell();
}

void ByteQueue::settle_doorbell() noexcept {
  const int fd = bell();
  if (fd < 0) return;
  // A FIFO holds at most its pipe buffer (64 KiB by default): the bound
  // only matters if the name was swapped for something that never drains.
  char buf[256];
  for (int i = 0; i < 4096 && ::read(fd, buf, sizeof buf) > 0; ++i) {
  }
  ctl_->bell_rung.store(0, std::memory_order_relaxed);
  lockfree_detail::full_fence();
  if (has_message()) {
    ctl_->bell_rung.store(1, std::memory_order_relaxed);
    const char b = 1;
    (void)!::write(fd, &b, 1);
  }
}

}  // namespace shmkit
