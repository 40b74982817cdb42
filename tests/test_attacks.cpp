// Hostile or broken peers: another user planting a block under the name we
// are about to use, a peer shrinking a block in use, forged lock words.
// Run as root these drop the attacker to "nobody"; otherwise the parts that
// need a second user are skipped.
#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shmkit/array.hpp"
#include "shmkit/sync/event.hpp"
#include "shmkit/sync/mutex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/typed_block.hpp"
#include "shmkit/value.hpp"
#include "test_support.hpp"

namespace shmkit::test {
namespace {

using namespace std::chrono_literals;
constexpr uid_t kNobody = 65534;

int errno_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::system_error& e) {
    return e.code().value();
  }
  return 0;
}

// As "nobody" (a real second user), with umask 0: shm_open(name, 0666).
void plant_as_nobody(const std::string& name) {
  auto st = run_child([&] {
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) return 10;
    ::umask(0);
    int fd = ::shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0666);
    if (fd < 0 || ::ftruncate(fd, 4096) != 0) return 11;
    ::close(fd);
    return 0;
  });
  ASSERT_TRUE(st.ok()) << st.describe();
}

TEST(Attacks, BlockPlantedByAnotherUserUnderOurName) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as a second user";
  auto name = unique_name("planted");
  plant_as_nobody(name);
  // create() never adopts it: O_CREAT|O_EXCL fails.
  EXPECT_EQ(errno_of([&] { SharedMemory::create(name, 4096); }), EEXIST);
  // attach() checks owner and mode when asked to.
  SharedMemory::Options strict;
  strict.require_private = true;
  EXPECT_EQ(errno_of([&] { SharedMemory::attach(name, strict); }), EPERM);
  AttachOptions typed;
  typed.shm.require_private = true;
  EXPECT_EQ(errno_of([&] { attach_typed_block(name, BlockKind::array, TypeFingerprint::of<int>(), typed); }),
            EPERM);
  // Without the check, a typed attach still refuses the foreign bytes.
  EXPECT_THROW(Array<int>::attach(name), std::invalid_argument);
  SharedMemory::unlink(name);
}

TEST(Attacks, WorldWritableBlockOfOurOwnIsRefusedWhenAsked) {
  auto name = unique_name("wide");
  ::umask(0);
  int fd = ::shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0666);
  ::umask(022);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  ::close(fd);
  EXPECT_EQ(errno_of([&] { SharedMemory::create(name, 4096); }), EEXIST);
  SharedMemory::Options strict;
  strict.require_private = true;
  EXPECT_EQ(errno_of([&] { SharedMemory::attach(name, strict); }), EPERM);
  SharedMemory::unlink(name);
}

// Our block, mode 0600: another user can neither attach nor unlink it.
TEST(Attacks, AnotherUserCannotTouchOurBlock) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as a second user";
  auto name = unique_name("mine");
  auto shm = SharedMemory::create(name, 4096);
  auto st = run_child([&] {
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) return 10;
    if (errno_of([&] { SharedMemory::attach(name); }) != EACCES) return 11;
    // /dev/shm is sticky: only the owner may remove the name (the kernel
    // says EPERM; glibc's shm_unlink reports it as EACCES).
    if (::shm_unlink(("/" + name).c_str()) == 0 || (errno != EACCES && errno != EPERM)) return 12;
    return 0;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
  shm.unlink();
}

// A peer shrinks a block in use to 0 (documented in shared_memory.hpp): a
// process touching the vanished pages dies with SIGBUS (never reads or
// writes someone else's memory), and a new typed attach is refused.
TEST(Attacks, PeerTruncatesABlockInUse) {
  auto name = unique_name("shrunk");
  auto a = Array<std::int64_t>::create(name, 100000);
  a.set(99999, 7);
  int fd = ::shm_open(("/" + name).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 0), 0);  // the attack
  ::close(fd);
  auto st = run_child([&] {
    // The default disposition, also under ASan (whose handler would turn the
    // signal into an exit code): a raw rt_sigaction bypasses its interceptor.
    struct {
      void* handler;
      unsigned long flags;
      void* restorer;
      unsigned long mask;
    } dfl{nullptr, 0, nullptr, 0};  // SIG_DFL
    ::syscall(SYS_rt_sigaction, SIGBUS, &dfl, nullptr, sizeof(unsigned long));
    volatile std::int64_t x = a.get_obj()[99999];  // raw access to a page now gone
    return static_cast<int>(x);
  });
  EXPECT_EQ(st.signal, SIGBUS) << st.describe();
  AttachOptions opt;
  opt.init_timeout = 50ms;
  EXPECT_THROW(attach_typed_block(name, BlockKind::array, TypeFingerprint::of<std::int64_t>(), opt),
               std::invalid_argument);
  a.unlink();
}

// A forged object header (a hostile peer). The element fingerprint (size 8)
// is right, but the layout fields say 1 byte per element and count = the
// payload's bytes: count * 1 == payload_size held, attach used to accept it,
// and Array<int64_t> then read and wrote 8x past its payload. Every layout
// field must match what the attaching type would have created.
TEST(Attacks, ForgedObjectLayoutIsRefused) {
  auto name = unique_name("forged_stride");
  auto made = Array<std::int64_t>::create(name, 16);
  auto* h = static_cast<BlockHeader*>(made.shm().data());
  const BlockHeader good = *h;
  auto refused = [&](const char* field, auto mutate) {
    *h = good;
    mutate(*h);
    try {
      (void)Array<std::int64_t>::attach(name);
      ADD_FAILURE() << field << ": a forged header was accepted";
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(name), std::string::npos) << field << ": " << msg;
      EXPECT_NE(msg.find(field), std::string::npos) << field << ": " << msg;
    }
  };
  // The reported attack: 1 byte per element, 128 elements in 128 bytes.
  refused("bytes per element", [](BlockHeader& x) {
    x.param[2] = 1;
    x.count = x.payload_size;
  });
  refused("bytes per element", [](BlockHeader& x) {  // a wider stride
    x.param[2] = 16;
    x.count = x.payload_size / 16;
  });
  refused("elem_size", [](BlockHeader& x) {  // the fingerprint's size
    x.elem_size = 1;
    x.elem_align = 1;
    x.count = x.payload_size;
  });
  refused("prefix_size", [](BlockHeader& x) { x.prefix_size += 64; });
  refused("lock size", [](BlockHeader& x) { x.param[1] = 1; });
  refused("lock", [](BlockHeader& x) { x.param[0] = 1; });  // a Mutex, not a RecursiveMutex
  refused("count", [](BlockHeader& x) { x.count = 0; });
  refused("count", [](BlockHeader& x) { x.count = 17; });
  refused("param[3]", [](BlockHeader& x) { x.param[3] = 5; });
  *h = good;
  EXPECT_EQ(Array<std::int64_t>::attach(name).size(), 16u);

  // A Value holds exactly one element.
  auto vname = unique_name("forged_value");
  auto v = Value<double>::create(vname, 1.5);
  auto* vh = static_cast<BlockHeader*>(v.shm().data());
  const BlockHeader vgood = *vh;
  vh->param[2] = 4;
  vh->count = 2;
  EXPECT_THROW((void)Value<double>::attach(vname), std::invalid_argument);
  *vh = vgood;
  EXPECT_EQ(Value<double>::attach(vname).value(), 1.5);
  v.unlink();
  made.unlink();
}

// Forged lock words (a peer writes garbage where a lock lives): the timed
// calls return within their bound; nothing spins forever.
TEST(Attacks, ForgedLockWordsGiveBoundedWaits) {
  auto block = SharedMemory::anonymous(4096);
  auto* m = ::new (block.data()) Mutex();
  std::uint32_t forged = 2;  // "locked, with waiters", by nobody alive
  std::memcpy(static_cast<void*>(m), &forged, sizeof forged);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(m->try_lock_for(100ms));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);

  auto* r = ::new (static_cast<std::byte*>(block.data()) + 64) RobustMutex();
  // A lock word naming a live thread that will never unlock it (our parent,
  // with waiters): the timed call returns, and nobody is woken for nothing.
  r->native_handle().store(static_cast<std::uint32_t>(::getppid()) | RobustMutex::kWaiters);
  // (The high half, the owner's start time, is 0: "unknown", judged by the id.)
  t0 = std::chrono::steady_clock::now();
  LockResult res = r->try_lock_for(100ms);
  EXPECT_EQ(res, LockResult::timed_out) << to_string(res);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  // Every other value a forger can write: "not recoverable", a thread id
  // that does not exist (a dead owner: the data is suspect), our own id.
  r->native_handle().store(RobustMutex::kNotRecoverable | RobustMutex::kWaiters);
  EXPECT_EQ(r->try_lock_for(100ms), LockResult::not_recoverable);
  r->native_handle().store(0x3ffffffe);
  EXPECT_EQ(r->try_lock_for(100ms), LockResult::owner_died);
  EXPECT_TRUE(r->make_consistent());
  EXPECT_TRUE(r->unlock());
  // Our own identity (thread id and start time; the id alone would name a
  // dead earlier thread: test_sync_robust's OwnThreadIdWithAnotherStart...).
  r->native_handle().store((std::uint64_t{detail::robust_identity().start} << 32) |
                           static_cast<std::uint32_t>(::gettid()));
  EXPECT_EQ(r->try_lock(), LockResult::deadlock);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

// A peer rewrites the lock's bytes while another process holds it, aiming
// at the holder's private memory: glibc's robust mutex keeps its robust-list
// links at bytes 24..39 of the shared pthread_mutex_t (x86-64), and the
// holder's unlock then wrote through them (prev->next = next, next->prev =
// prev): a write to an address of the peer's choice. RobustMutex keeps no
// pointer, so whatever the peer writes stays data in the block.
std::uint64_t g_canary[2] = {0x1111111111111111, 0x2222222222222222};

TEST(Attacks, RewrittenLockBytesNeverMakeTheHolderWriteItsOwnMemory) {
  auto block = SharedMemory::anonymous(4096);
  struct S {
    RobustMutex m;
    std::byte after[64];  // where glibc's list links would be: still in the block
    Event locked;
    Event forged;
  };
  static_assert(sizeof(S) >= 40, "the forged bytes lie inside the block");
  auto* s = ::new (block.data()) S();
  const pid_t holder = fork_child([s] {
    if (s->m.lock() != LockResult::acquired) return 1;
    s->locked.set();
    s->forged.wait();
    (void)s->m.unlock();  // whatever it reports, it must write nowhere else
    return (g_canary[0] == 0x1111111111111111 && g_canary[1] == 0x2222222222222222) ? 0 : 3;
  });
  s->locked.wait();
  // The peer knows the holder's addresses (a fork shares the layout): it
  // writes &g_canary into every 8-byte word from byte 8 to byte 40, keeping
  // the lock word, and the owner field glibc checks (byte 8) and the kind
  // (byte 16) as they were, so glibc's unlock goes on to its list removal.
  auto* bytes = reinterpret_cast<unsigned char*>(s);
  unsigned char keep[24];
  std::memcpy(keep, bytes, sizeof keep);
  const auto target = reinterpret_cast<std::uintptr_t>(&g_canary[0]);
  for (std::size_t off = 8; off < 40; off += 8) std::memcpy(bytes + off, &target, sizeof target);
  std::memcpy(bytes + 8, keep + 8, 4);    // glibc: __owner
  std::memcpy(bytes + 16, keep + 16, 4);  // glibc: __kind
  s->forged.set();
  const ExitStatus st = wait_child(holder, 10s);
  EXPECT_TRUE(st.ok()) << "the holder's unlock wrote into its own memory or crashed: " << st.describe();
}

}  // namespace
}  // namespace shmkit::test
