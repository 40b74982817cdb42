// The lock-free structures between real processes (fork + attach by name),
// plus header validation: a corrupted, mismatched or forged block is a clear
// error or bounded behaviour, never an out-of-bounds access (the ASan build
// runs these).
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "test_lockfree_common.hpp"

namespace shmkit::test {
namespace {

TEST(LockfreeProcess, Spsc10MItems) { spsc_stream(true, 10'000'000 / kScale, 1024); }
TEST(LockfreeProcess, SpscLargeRing) { spsc_stream(true, 2'000'000 / kScale, 65536); }
TEST(LockfreeProcess, SpscSleepWake) { sleep_wake_stress<SpscQueue>(true, 20'000 / (kScale > 1 ? 10 : 1)); }
TEST(LockfreeProcess, MpmcSleepWake) { sleep_wake_stress<MpmcQueue>(true, 20'000 / (kScale > 1 ? 10 : 1)); }
TEST(LockfreeProcess, Mpmc2x2) { mpmc_stream(true, 2, 2, 5'000'000 / kScale, 1024); }
TEST(LockfreeProcess, SeqLock256ByteNeverTorn) { seqlock_torn(true, 1'000'000 / kScale, 3); }
TEST(LockfreeProcess, BroadcastSlowReaderLappedExactly) { broadcast_lapping(true, 2'000'000 / kScale, 1024); }

// "Wait forever" timeouts saturate instead of overflowing into the past
// (a regression): pop_for(duration::max()) in another process goes to
// sleep in the kernel and stays there, and returns the item once it is
// pushed.
template <template <class> class Queue>
void forever_pop_waits(int consumers) {
  const std::string name = unique_name("forever");
  auto q = Queue<std::uint64_t>::create(name, 16);
  auto shm = SharedMemory::anonymous(4096);
  auto* popped = ::new (shm.data()) std::atomic<int>(0);
  std::vector<pid_t> kids;
  for (int k = 0; k < consumers; ++k) {
    kids.push_back(fork_child([&, k] {
      auto mine = Queue<std::uint64_t>::attach(name);
      std::uint64_t v = 0;
      const bool ok = k == 0 ? mine.pop_for(v, std::chrono::hours::max())
                             : mine.pop_for(v, std::chrono::nanoseconds::max());
      popped->fetch_add(1);
      return ok && v == 7 ? 0 : 1;
    }));
  }
  for (pid_t kid : kids) {
    // (EXPECT: the pushes below still release every consumer.)
    EXPECT_TRUE(eventually([&] { return popped->load() != 0 || asleep_in_futex(kid); }, 20s, 1ms))
        << "consumer " << kid << " never went to sleep in pop_for(max)";
  }
  EXPECT_EQ(popped->load(), 0) << "a pop_for(max) returned at once";
  for (int k = 0; k < consumers; ++k) EXPECT_TRUE(q.push_for(7, 1s));
  for (pid_t kid : kids) EXPECT_TRUE(wait_child(kid, 10s).ok());
  q.unlink();
}
TEST(LockfreeProcess, SpscForeverPopWaits) { forever_pop_waits<SpscQueue>(1); }
TEST(LockfreeProcess, MpmcForeverPopWaits) { forever_pop_waits<MpmcQueue>(2); }

// ---------------------------------------------------------------- headers

template <class F>
void expect_invalid(F f, const std::string& name, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no exception (wanted one mentioning " << needle << ")";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(name), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

BlockHeader* header_of(const SharedMemory& shm) { return static_cast<BlockHeader*>(shm.data()); }

TEST(LockfreeHeader, CreateRejectsBadCapacity) {
  const std::string n = unique_name("cap");
  expect_invalid([&] { (void)SpscQueue<int>::create(n, 1000); }, n, "power of two");
  expect_invalid([&] { (void)MpmcQueue<int>::create(n, 0); }, n, "power of two");
  expect_invalid([&] { (void)BroadcastRing<int>::create(n, 3); }, n, "power of two");
  EXPECT_TRUE(list_blocks(n).empty());
}

TEST(LockfreeHeader, MismatchedKindAndType) {
  const std::string n = unique_name("mis");
  Unlinker u{n};
  auto q = SpscQueue<std::uint64_t>::create(n, 16);
  expect_invalid([&] { (void)SpscQueue<std::uint32_t>::attach(n); }, n, "typecode");
  expect_invalid([&] { (void)MpmcQueue<std::uint64_t>::attach(n); }, n, "spsc_queue");
  expect_invalid([&] { (void)SeqLock<std::uint64_t>::attach(n); }, n, "spsc_queue");
  expect_invalid([&] { (void)BroadcastRing<std::uint64_t>::attach(n); }, n, "spsc_queue");
  auto again = SpscQueue<std::uint64_t>::attach(n);
  EXPECT_EQ(again.capacity(), 16u);
}

TEST(LockfreeHeader, ForgedCountAndSizes) {
  const std::string n = unique_name("forge");
  Unlinker u{n};
  auto q = MpmcQueue<std::uint64_t>::create(n, 64);
  auto raw = SharedMemory::attach(n);
  BlockHeader* h = header_of(raw);
  const BlockHeader saved = *h;
  h->count = 48;
  expect_invalid([&] { (void)MpmcQueue<std::uint64_t>::attach(n); }, n, "not a power of two");
  *h = saved;
  h->count = std::uint64_t{1} << 62;  // count * slot size overflows
  expect_invalid([&] { (void)MpmcQueue<std::uint64_t>::attach(n); }, n, "does not hold");
  *h = saved;
  h->count = 128;  // claims more slots than the payload holds
  expect_invalid([&] { (void)MpmcQueue<std::uint64_t>::attach(n); }, n, "does not hold");
  *h = saved;
  h->param[0] = 8;  // wrong slot size
  expect_invalid([&] { (void)MpmcQueue<std::uint64_t>::attach(n); }, n, "slot size");
  *h = saved;
  h->prefix_size = 16;
  expect_invalid([&] { (void)MpmcQueue<std::uint64_t>::attach(n); }, n, "prefix");
  *h = saved;
  h->payload_size = saved.payload_size * 4;  // beyond the block
  expect_invalid([&] { (void)MpmcQueue<std::uint64_t>::attach(n); }, n, "payload");
  *h = saved;
  h->magic ^= 1;
  expect_invalid([&] { (void)MpmcQueue<std::uint64_t>::attach(n); }, n, "magic");
  *h = saved;
  (void)MpmcQueue<std::uint64_t>::attach(n);
}

// SpscQueue's layout 2 (publication marks after the control block): a block
// of the first layout (param[1] 0) or with a prefix that does not hold
// exactly `capacity` marks is refused by name.
TEST(LockfreeHeader, SpscLayoutAndMarksAreChecked) {
  const std::string n = unique_name("slay");
  Unlinker u{n};
  auto q = SpscQueue<std::uint64_t>::create(n, 16);
  auto raw = SharedMemory::attach(n);
  BlockHeader* h = header_of(raw);
  const BlockHeader saved = *h;
  EXPECT_EQ(saved.param[1], kSpscLayout);
  EXPECT_EQ(saved.prefix_size, sizeof(SpscControl) + 16 * sizeof(std::uint64_t));
  h->param[1] = 0;
  expect_invalid([&] { (void)SpscQueue<std::uint64_t>::attach(n); }, n, "SpscQueue layout 0");
  *h = saved;
  h->prefix_size = sizeof(SpscControl);  // the first layout's prefix: no marks
  expect_invalid([&] { (void)SpscQueue<std::uint64_t>::attach(n); }, n, "marks");
  *h = saved;
  auto again = SpscQueue<std::uint64_t>::attach(n);
  ASSERT_TRUE(q.try_push(5));
  std::uint64_t v = 0;
  ASSERT_TRUE(again.try_pop(v));
  EXPECT_EQ(v, 5u);
}

// process_token() names this process image: stable within it, different in
// a fork child (so a child's producer never passes for its parent's), never
// 0 (a fresh block's "no producer").
TEST(LockfreeProcess, ProcessTokenIsRedrawnInForkChildren) {
  const std::uint64_t mine = lockfree_detail::process_token();
  EXPECT_NE(mine, 0u);
  EXPECT_EQ(lockfree_detail::process_token(), mine);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::uint64_t child = lockfree_detail::process_token();
    (void)!::write(pipefd[1], &child, sizeof child);
    ::_exit(child == lockfree_detail::process_token() ? 0 : 1);
  }
  std::uint64_t child = 0;
  EXPECT_EQ(::read(pipefd[0], &child, sizeof child), static_cast<ssize_t>(sizeof child));
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(child, 0u);
  EXPECT_NE(child, mine);
  ::close(pipefd[0]);
  ::close(pipefd[1]);
}

TEST(LockfreeHeader, SeqLockForgedSizes) {
  const std::string n = unique_name("sfor");
  Unlinker u{n};
  auto s = SeqLock<Quote>::create(n, Quote::make(7));
  auto raw = SharedMemory::attach(n);
  BlockHeader* h = header_of(raw);
  const BlockHeader saved = *h;
  h->param[0] = 8;
  expect_invalid([&] { (void)SeqLock<Quote>::attach(n); }, n, "SeqLock");
  *h = saved;
  h->count = 2;
  expect_invalid([&] { (void)SeqLock<Quote>::attach(n); }, n, "SeqLock");
  *h = saved;
  auto ok = SeqLock<Quote>::attach(n);
  EXPECT_EQ(ok.read().w[0], 7u);
}

// Forged indices and sequence numbers: the calls return (bounded), never
// touch memory outside the payload (ASan would report it).
TEST(LockfreeHeader, ForgedIndicesStayInBounds) {
  const std::string a = unique_name("fi"), b = unique_name("fi"), c = unique_name("fi"),
                    d = unique_name("fi");
  Unlinker ua{a}, ub{b}, uc{c}, ud{d};
  {
    auto q = SpscQueue<std::uint64_t>::create(a, 8);
    auto raw = SharedMemory::attach(a);
    auto* sc = reinterpret_cast<SpscControl*>(static_cast<std::byte*>(raw.data()) + BlockHeader::kSize);
    auto* marks =
        reinterpret_cast<std::atomic<std::uint64_t>*>(reinterpret_cast<std::byte*>(sc) + sizeof(SpscControl));
    sc->tail.store(0xdead'beef'1234'5677ull);
    sc->head.store(3);
    for (std::uint64_t i = 0; i < 8; ++i) marks[i].store(3 + ((i - 3) & 7) + 1);  // every slot "published"
    std::uint64_t out[100];
    std::uint64_t v;
    EXPECT_TRUE(q.try_pop(v));                                     // garbage, in bounds
    EXPECT_LE(q.try_pop(std::span<std::uint64_t>(out, 100)), 8u);  // never more than capacity
    EXPECT_LE(q.peek(100).size(), 8u);
    EXPECT_LE(q.size(), 8u);
    sc->head.store(~0ull);
    sc->tail.store(5);
    // Every mark claims a dead producer published past tail: the producer's
    // catch-up steps over at most capacity of them, then finds no room.
    for (std::uint64_t k = 0; k < 8; ++k) marks[(5 + k) & 7].store(5 + k + 1);
    EXPECT_FALSE(q.try_push(1));
    EXPECT_EQ(q.try_push(std::span<const std::uint64_t>(out, 100)), 0u);
  }
  {
    auto q = MpmcQueue<std::uint64_t>::create(b, 8);
    auto raw = SharedMemory::attach(b);
    const BlockHeader h = *header_of(raw);
    auto* slots =
        reinterpret_cast<MpmcSlot<std::uint64_t>*>(static_cast<std::byte*>(raw.data()) + h.payload_offset);
    for (int i = 0; i < 8; ++i) slots[i].seq.store(0x7fff'0000'0000'0000ull + i);
    std::uint64_t v;
    EXPECT_FALSE(q.try_push(1));  // returns instead of spinning on a forged seq
    EXPECT_FALSE(q.try_pop(v));
    auto* mc = reinterpret_cast<MpmcControl*>(static_cast<std::byte*>(raw.data()) + BlockHeader::kSize);
    mc->tail.store(0xffff'ffff'ffff'fff0ull);
    mc->head.store(0x1234'5678'9abcull);
    (void)q.try_push(2);
    (void)q.try_pop(v);
    EXPECT_FALSE(q.push_for(3, std::chrono::milliseconds(20)));
  }
  {
    auto ring = BroadcastRing<Tick>::create(c, 8);
    for (std::uint64_t i = 0; i < 5; ++i) ring.push(Tick::make(i));
    auto raw = SharedMemory::attach(c);
    auto* bc = reinterpret_cast<BroadcastControl*>(static_cast<std::byte*>(raw.data()) + BlockHeader::kSize);
    bc->write_index.store(0xffff'ffff'0000'0000ull);
    auto r = ring.reader_at(0);
    Tick t;
    BroadcastResult res = r.try_read(t);
    EXPECT_EQ(res.status, BroadcastStatus::lapped);
    for (int i = 0; i < 20; ++i) (void)r.try_read(t);  // bounded, in bounds
    bc->write_index.store(5);
    auto r2 = ring.reader_at(100);  // a cursor beyond the writer
    EXPECT_EQ(r2.try_read(t).status, BroadcastStatus::empty);
  }
  {
    auto s = SeqLock<Quote>::create(d, Quote::make(1));
    auto raw = SharedMemory::attach(d);
    auto* ctl = reinterpret_cast<SeqLockControl*>(static_cast<std::byte*>(raw.data()) + BlockHeader::kSize);
    ctl->seq.store(7);  // odd: "a writer died mid-store"
    Quote q;
    EXPECT_FALSE(s.try_read(q));
    EXPECT_FALSE(s.read_for(std::chrono::milliseconds(20)).has_value());
    s.store(Quote::make(2));  // a new writer repairs the sequence
    EXPECT_EQ(s.version(), 8u);
    EXPECT_EQ(s.read().w[0], 2u);
  }
}

}  // namespace
}  // namespace shmkit::test
