// The random-SIGKILL storm (issue 9), in the style of glibc's tst-robust8:
// children hammer one shared structure; every round the parent SIGKILLs a
// random subset of them at a random moment (microseconds to milliseconds
// into their work), reaps them, checks what the structure promises after a
// crash (see each header's "Crash semantics"), and starts replacements.
//
//   RobustMutexStorm  a journaled multi-word update under a RobustMutex:
//                     owner death is always reported, the torn update is
//                     seen and rolled forward, no update lost or invented.
//   HeapStorm         allocators write self-checking objects and record
//                     their handles; after each round the heap checks,
//                     every recorded object is intact and none overlap,
//                     leaks stay within one object per killed process.
//   SpscQueueStorm, MpmcQueueStorm, BroadcastRingStorm
//                     sequence-numbered, checksummed items: never a torn
//                     item, per-producer order, no duplicates, losses only
//                     where the header documents them, timed calls return.
//
// Each storm counts the kills that landed in its crash windows (a side
// killed after the structure took its operation and before it recorded it;
// a claimant killed inside the queue's claim; a writer killed inside push)
// and fails if a window was never hit: at any size where the storm widens or
// aims at the window, else from the nightly size (kNightlyRounds). A storm
// that passes without its kills landing where the crash semantics matter
// proves nothing.
//
// Rounds: SHMKIT_STORM_ROUNDS (default 100, the CI size; 1000 nightly, with
// SHMKIT_TEST_TIMEOUT raised if a sanitizer build runs it). The seed is
// printed; SHMKIT_STORM_SEED replays the victims and delays it chose (the
// interleaving is the machine's). Where a check needs a quiescent structure
// the parent parks every survivor at a checkpoint between operations first;
// a survivor that never gets there is stuck in a call, and the failure says
// where it sleeps. Children cannot use gtest assertions: they report the
// first failure they see through a FailureLog in the shared state block and
// exit non-zero; the parent fails the test with that message. Every block is
// named by unique_name(), so the suite's leak check covers it, and unlinked
// when the case ends.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <new>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "shmkit/heap.hpp"
#include "shmkit/lockfree/broadcast_ring.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/sync/futex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "test_support.hpp"

namespace shmkit::test {
namespace {

using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------ parameters

int storm_rounds() {
  const char* env = std::getenv("SHMKIT_STORM_ROUNDS");
  if (env == nullptr || *env == '\0') return 100;
  char* end = nullptr;
  const long n = std::strtol(env, &end, 10);
  if (*end != '\0' || n <= 0 || n > 1'000'000) {
    ADD_FAILURE() << "SHMKIT_STORM_ROUNDS=\"" << env << "\" is not a round count (1..1000000)";
    return 100;
  }
  return static_cast<int>(n);
}

// Random by default (a storm that always kills at the same moments explores
// less); printed so that a failing run can be replayed.
std::uint64_t storm_seed() {
  if (const char* env = std::getenv("SHMKIT_STORM_SEED"); env != nullptr && *env != '\0') {
    return std::strtoull(env, nullptr, 0);
  }
  return (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
}

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// Where in the children's work the kill lands: log-uniform from a couple of
// microseconds to a few milliseconds. Not synchronisation: only the moment of
// the kill depends on it.
void random_delay(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> exponent(std::log(2.0), std::log(4000.0));
  std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(std::exp(exponent(rng))));
}

void busy_pause(std::mt19937_64& rng, unsigned max_spins) {
  for (auto i = rng() % max_spins; i > 0; --i) lockfree_detail::cpu_relax();
}

// Where a process sleeps in the kernel (a stuck child's diagnosis).
std::string wchan_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/wchan");
  std::string w;
  std::getline(f, w);
  return w.empty() || w == "0" ? "running" : w;
}

std::string describe_wait_status(int status) {
  ExitStatus st;
  if (WIFEXITED(status)) {
    st.exited = true;
    st.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    st.signal = WTERMSIG(status);
  }
  return st.describe();
}

// ------------------------------------------------------------ shared plumbing

// The first failure a child saw, for the parent's message.
struct FailureLog {
  std::atomic<std::uint32_t> count;
  std::atomic<std::uint32_t> claimed;  // the first reporter owns `first`
  std::atomic<std::uint32_t> ready;    // `first` is complete
  char first[400];

  __attribute__((format(printf, 2, 3))) void report(const char* fmt, ...) noexcept {
    count.fetch_add(1);
    if (claimed.exchange(1) != 0) return;
    const int n = std::snprintf(first, sizeof first, "pid %d: ", static_cast<int>(::getpid()));
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(first + n, sizeof first - static_cast<std::size_t>(n), fmt, ap);
    va_end(ap);
    ready.store(1, std::memory_order_release);
  }
  std::string describe() const {
    const std::uint32_t n = count.load();
    if (n == 0) return "no child reported a failure";
    std::string s = std::to_string(n) + " failure(s) reported by children, the first: ";
    s += ready.load(std::memory_order_acquire) != 0 ? first : "(its reporter died writing it)";
    return s;
  }
};

constexpr int kMaxCrew = 8;

// What a storm's children share besides the structure under test (the first
// member of each storm's state block).
struct CrewControl {
  FutexWord phase;                  // even: run; odd: park at the next checkpoint
  std::atomic<std::uint32_t> stop;  // 1: leave at the next checkpoint, exit 0
  std::atomic<std::uint32_t> parked[kMaxCrew];    // the odd phase at which the slot's child parked
  std::atomic<std::uint64_t> beats[kMaxCrew];     // checkpoints passed by the slot's child
  std::atomic<std::uint64_t> progress[kMaxCrew];  // its successful operations
  FailureLog log;
};

// Child side, called between operations (the child holds no lock, has no
// half-done operation and has recorded everything). Returns false when the
// parent asked to stop; while the parent asks to pause, parks here, so the
// parent can inspect a quiescent structure.
bool checkpoint(CrewControl& c, int slot) {
  c.beats[slot].fetch_add(1, std::memory_order_relaxed);
  for (;;) {
    if (c.stop.load(std::memory_order_acquire) != 0) return false;
    // acquire: pairs with the parent's phase bumps; what it changed while we
    // were parked (a new queue epoch, reclaimed records) is visible.
    const std::uint32_t ph = c.phase.load(std::memory_order_acquire);
    if ((ph & 1) == 0) return true;
    // release: pairs with the parent's acquire in Crew::pause(); everything
    // this child did before parking is visible to the parent.
    c.parked[slot].store(ph, std::memory_order_release);
    while (c.phase.load(std::memory_order_acquire) == ph && c.stop.load() == 0) {
      (void)futex_wait_for(c.phase, ph, std::chrono::milliseconds(100));
    }
  }
}

// Parent side: the children of one storm, one per slot, each running
// body(slot) in a forked process.
class Crew {
 public:
  using Body = std::function<int(int slot)>;

  Crew(CrewControl& control, int size, Body body)
      : c_(control), pids_(static_cast<std::size_t>(size), -1), body_(std::move(body)) {}
  ~Crew() {
    // After a failed assertion: leave no child running.
    for (pid_t& pid : pids_) {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        (void)wait_child(pid, std::chrono::seconds(10));
        pid = -1;
      }
    }
  }
  Crew(const Crew&) = delete;
  Crew& operator=(const Crew&) = delete;

  int size() const { return static_cast<int>(pids_.size()); }
  pid_t pid(int slot) const { return pids_[static_cast<std::size_t>(slot)]; }

  void start(int slot) {
    c_.parked[slot].store(0);
    c_.beats[slot].store(0);
    c_.progress[slot].store(0);
    pids_[static_cast<std::size_t>(slot)] = fork_child([this, slot] { return body_(slot); });
  }
  void start_all() {
    for (int s = 0; s < size(); ++s) start(s);
  }

  // A random non-empty subset of the slots.
  std::vector<int> pick_victims(std::mt19937_64& rng) const {
    const std::uint64_t all = (std::uint64_t{1} << size()) - 1;
    const std::uint64_t mask = 1 + rng() % all;
    std::vector<int> v;
    for (int s = 0; s < size(); ++s) {
      if (mask & (std::uint64_t{1} << s)) v.push_back(s);
    }
    return v;
  }

  // SIGKILLs and reaps the victims. A victim that had already exited left on
  // its own, which a child does only after it found an error.
  testing::AssertionResult kill(const std::vector<int>& victims) {
    for (int v : victims) {
      const pid_t pid = pids_[static_cast<std::size_t>(v)];
      ::kill(pid, SIGKILL);
      const ExitStatus st = wait_child(pid, std::chrono::seconds(10));
      pids_[static_cast<std::size_t>(v)] = -1;
      if (st.timed_out || st.exited || st.signal != SIGKILL) {
        return testing::AssertionFailure() << "slot " << v << " (pid " << pid
                                           << ") was no longer running when killed: "
                                           << st.describe() << "; " << c_.log.describe();
      }
    }
    return testing::AssertionSuccess();
  }

  // Polls `done` until it holds. Fails at once if a child exited (children
  // leave only on an error or when told to stop), or after `timeout`: the
  // bound that turns a hung survivor into a failure.
  template <class Pred>
  testing::AssertionResult wait_until(Pred done, const std::string& what,
                                      std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      for (int s = 0; s < size(); ++s) {
        const pid_t pid = pids_[static_cast<std::size_t>(s)];
        if (pid <= 0) continue;
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
          pids_[static_cast<std::size_t>(s)] = -1;
          return testing::AssertionFailure()
                 << "while waiting for " << what << ": slot " << s << " (pid " << pid
                 << ") exited on its own (" << describe_wait_status(status) << "); "
                 << c_.log.describe();
        }
      }
      if (Clock::now() >= deadline) {
        return testing::AssertionFailure() << "no " << what << " within " << timeout.count()
                                           << " s: a child hung; " << c_.log.describe();
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return testing::AssertionSuccess();
  }

  // Parks every running child at its next checkpoint. A child that does
  // not get there is stuck in a call of the structure under test; the
  // failure says where each such child sleeps, plus `diagnose()` (e.g.
  // whether the lock it waits for is in fact free).
  testing::AssertionResult pause(const std::function<std::string()>& diagnose = {}) {
    const std::uint32_t ph = c_.phase.fetch_add(1) + 1;  // odd
    // acquire: pairs with the child's release in checkpoint().
    auto parked = [&](int s) { return c_.parked[s].load(std::memory_order_acquire) == ph; };
    testing::AssertionResult r = wait_until(
        [&] {
          for (int s = 0; s < size(); ++s) {
            if (pids_[static_cast<std::size_t>(s)] > 0 && !parked(s)) return false;
          }
          return true;
        },
        "child parking at a checkpoint (a survivor stuck in a call)");
    if (!r) {
      for (int s = 0; s < size(); ++s) {
        const pid_t pid = pids_[static_cast<std::size_t>(s)];
        if (pid > 0 && !parked(s)) {
          r << "; slot " << s << " (pid " << pid << ") is in " << wchan_of(pid);
        }
      }
      if (diagnose) r << "; " << diagnose();
    }
    return r;
  }
  void resume() {
    c_.phase.fetch_add(1);  // even (seq_cst: also publishes the parent's repairs)
    futex_wake_all(c_.phase);
  }

  // Each slot in `slots` made progress (a successful operation) since start().
  testing::AssertionResult await_started(const std::vector<int>& slots, const char* what) {
    return wait_until(
        [&] {
          for (int s : slots) {
            if (c_.progress[s].load() == 0) return false;
          }
          return true;
        },
        what);
  }
  // Each slot in `slots` went once round its loop since start() (attached,
  // and a timed call returned), whether or not it got anything.
  testing::AssertionResult await_looped(const std::vector<int>& slots, const char* what) {
    return wait_until(
        [&] {
          for (int s : slots) {
            if (c_.beats[s].load() < 2) return false;
          }
          return true;
        },
        what);
  }

  // Tells every child to stop and checks that each exits 0.
  testing::AssertionResult stop_all() {
    c_.stop.store(1);
    futex_wake_all(c_.phase);  // parked children look at `stop` again
    testing::AssertionResult result = testing::AssertionSuccess();
    for (int s = 0; s < size(); ++s) {
      const pid_t pid = pids_[static_cast<std::size_t>(s)];
      if (pid <= 0) continue;
      const ExitStatus st = wait_child(pid, std::chrono::seconds(30));
      pids_[static_cast<std::size_t>(s)] = -1;
      if (!st.ok()) {
        result = testing::AssertionFailure() << "slot " << s << " (pid " << pid
                                             << ") did not stop cleanly: " << st.describe()
                                             << "; " << c_.log.describe();
      }
    }
    return result;
  }

 private:
  CrewControl& c_;
  std::vector<pid_t> pids_;
  Body body_;
};

// A named block holding a T, built in place by the parent before any child
// exists, and unlinked when the case ends (children attach by name, so each
// maps it at its own address, as unrelated processes would).
template <class T>
class StateBlock {
 public:
  explicit StateBlock(std::string_view tag)
      : name_(unique_name(tag)), shm_(SharedMemory::create(name_, sizeof(T))) {
    state_ = new (shm_.data()) T();
  }
  // T is not destroyed: after a failed case it may hold a RobustMutex owned
  // by a dead child, and unlinking the block is all the cleanup it needs.
  ~StateBlock() {
    try {
      SharedMemory::unlink(name_);
    } catch (...) {
    }
  }
  StateBlock(const StateBlock&) = delete;
  StateBlock& operator=(const StateBlock&) = delete;

  const std::string& name() const { return name_; }
  T& operator*() const { return *state_; }
  T* operator->() const { return state_; }

 private:
  std::string name_;
  SharedMemory shm_;
  T* state_;
};

// A child's view of a StateBlock: its own mapping, by name.
template <class T>
struct Attached {
  explicit Attached(const std::string& name) : shm(SharedMemory::attach(name)) {}
  T& operator*() const { return *static_cast<T*>(shm.data()); }
  SharedMemory shm;
};

// Unlinks a named block at scope exit (the name may change: MPMC epochs).
struct UnlinkAtExit {
  std::string name;
  ~UnlinkAtExit() {
    try {
      SharedMemory::unlink(name);
    } catch (...) {
    }
  }
};

// A child's seed: its copy of the parent's generator, mixed with its pid
// (start_all() forks several children without the parent's generator moving).
std::uint64_t child_seed(std::mt19937_64& parent_rng) {
  return parent_rng() ^ mix(static_cast<std::uint64_t>(::getpid()));
}

// Runs `body` and turns an exception into a reported failure (exit 90).
template <class Body>
int guarded(FailureLog& log, const char* who, Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    log.report("%s threw: %s", who, e.what());
  } catch (...) {
    log.report("%s threw a non-std exception", who);
  }
  return 90;
}

// Rounds from which every crash window of a storm must have been hit
// (scripts/test.sh --nightly runs 1000): some windows are hit only a few
// times per 100 rounds, so only a large storm lands in each for sure; the
// windows a storm widens or aims at are required at any size.
constexpr int kNightlyRounds = 1000;

// The "the kill landed in this window" check: required when `required`,
// else only reported.
void expect_window_hit(const char* storm, const char* window, std::uint64_t hits, bool required,
                       int rounds) {
  if (required) {
    EXPECT_GT(hits, 0u) << storm << ": no kill landed in its window \"" << window << "\" in "
                        << rounds << " rounds";
  } else if (hits == 0) {
    std::printf("[storm] %s: window \"%s\" not hit in %d rounds (required from %d rounds)\n",
                storm, window, rounds, kNightlyRounds);
  }
}

void print_summary(const std::string& line) {
  std::printf("[storm] %s\n", line.c_str());
  std::fflush(stdout);
}

// ============================================================ RobustMutex

constexpr int kMutexWorkers = 4;
constexpr int kDataWords = 8;

// The protected data: version v is committed when words[k] == word_value(v, k)
// for every k. An update writes the version it is making into the journal,
// then the words one by one, then the version, then clears the journal, so
// a holder killed anywhere leaves either a consistent state or a journal
// from which the next holder can roll the update forward.
struct MutexStormState {
  CrewControl crew;
  RobustMutex mutex;
  // Protected by `mutex`. std::atomic only so that each store is one store
  // the compiler keeps in program order (a SIGKILL can cut between any two).
  std::atomic<std::uint64_t> version;
  std::atomic<std::uint64_t> journal;  // the version being written; 0: none
  std::atomic<std::uint64_t> words[kDataWords];
  std::atomic<std::int32_t> holder;  // pid inside the critical section, 0 outside
  // Statistics (relaxed).
  std::atomic<std::uint64_t> committed;        // updates counted after unlock
  std::atomic<std::uint64_t> owner_died;       // lock() results owner_died
  std::atomic<std::uint64_t> torn_rolled;      // ... that found a half-written update
  std::atomic<std::uint64_t> journal_rolled;   // ... that found a journal, words untouched
  std::atomic<std::uint64_t> clean_recovered;  // ... that found no update in flight
  std::atomic<std::uint64_t> timed_out;        // timed lock calls that returned timed_out
};

std::uint64_t word_value(std::uint64_t version, int k) {
  return mix(version * kDataWords + static_cast<std::uint64_t>(k) + 0x5bd1e995u);
}

bool words_match(const MutexStormState& s, std::uint64_t version) {
  for (int k = 0; k < kDataWords; ++k) {
    if (s.words[k].load(std::memory_order_relaxed) != word_value(version, k)) return false;
  }
  return true;
}

// The next holder after an owner death: check the state is one a dead holder
// can leave, roll a journaled update forward, count what was seen.
bool repair_after_owner_death(MutexStormState& s, FailureLog& log) {
  const std::uint64_t v = s.version.load(std::memory_order_relaxed);
  const std::uint64_t j = s.journal.load(std::memory_order_relaxed);
  if (j == 0) {
    if (!words_match(s, v)) {
      log.report("owner died with no update in flight, yet the words do not match version %llu",
                 static_cast<unsigned long long>(v));
      return false;
    }
    s.clean_recovered.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // Killed after writing the journal: v + 1 (words partly written), or after
  // committing the version but before clearing the journal: v.
  if (j != v + 1 && j != v) {
    log.report("journal names version %llu but version is %llu",
               static_cast<unsigned long long>(j), static_cast<unsigned long long>(v));
    return false;
  }
  bool torn = false;
  for (int k = 0; k < kDataWords; ++k) {
    const std::uint64_t w = s.words[k].load(std::memory_order_relaxed);
    if (w == word_value(v, k)) continue;
    if (w != word_value(j, k)) {
      log.report("word %d is neither version %llu's nor version %llu's: corrupted", k,
                 static_cast<unsigned long long>(v), static_cast<unsigned long long>(j));
      return false;
    }
    torn = true;
  }
  (torn ? s.torn_rolled : s.journal_rolled).fetch_add(1, std::memory_order_relaxed);
  // Roll forward; idempotent, so a repairer killed here is repaired in turn.
  for (int k = 0; k < kDataWords; ++k) {
    s.words[k].store(word_value(j, k), std::memory_order_release);
  }
  s.version.store(j, std::memory_order_release);
  s.journal.store(0, std::memory_order_release);
  return true;
}

LockResult lock_some_way(MutexStormState& s, std::mt19937_64& rng) {
  // Every entry point: a SIGKILL may land in any of them, and owner death
  // must be reported by each.
  switch (rng() % 4) {
    case 0:
      return s.mutex.lock();
    case 1:
      for (;;) {
        const LockResult r = s.mutex.try_lock();
        if (r != LockResult::busy) return r;
        ::sched_yield();
      }
    case 2:
      for (;;) {
        const LockResult r = s.mutex.try_lock_for(std::chrono::microseconds(rng() % 2000));
        if (r != LockResult::timed_out) return r;
        s.timed_out.fetch_add(1, std::memory_order_relaxed);
      }
    default:
      for (;;) {
        const LockResult r = s.mutex.try_lock_until(std::chrono::system_clock::now() +
                                                     std::chrono::microseconds(rng() % 2000));
        if (r != LockResult::timed_out) return r;
        s.timed_out.fetch_add(1, std::memory_order_relaxed);
      }
  }
}

int mutex_worker(const std::string& name, int slot, std::uint64_t seed) {
  Attached<MutexStormState> block(name);
  MutexStormState& s = *block;
  FailureLog& log = s.crew.log;
  std::mt19937_64 rng(seed);
  const std::int32_t me = static_cast<std::int32_t>(::getpid());
  while (checkpoint(s.crew, slot)) {
    const LockResult r = lock_some_way(s, rng);
    if (!holds_lock(r)) {
      log.report("lock returned %s: only acquired or owner_died are possible here", to_string(r));
      return 2;
    }
    const std::int32_t inside = s.holder.load();
    if (r == LockResult::acquired) {
      if (inside != 0) {
        log.report("acquired (no owner death reported) while pid %d was inside", inside);
        return 3;
      }
      if (s.journal.load() != 0 || !words_match(s, s.version.load())) {
        log.report("acquired normally but the data is torn (version %llu, journal %llu): "
                   "an owner death went unreported",
                   static_cast<unsigned long long>(s.version.load()),
                   static_cast<unsigned long long>(s.journal.load()));
        return 4;
      }
    } else {
      s.owner_died.fetch_add(1, std::memory_order_relaxed);
      if (inside == me) {
        log.report("owner_died names this live process as the dead owner");
        return 5;
      }
      if (!repair_after_owner_death(s, log)) return 6;
      if (!s.mutex.make_consistent()) {
        log.report("make_consistent() failed after owner_died");
        return 7;
      }
    }
    s.holder.store(me);
    // The update, word by word, with pauses that widen the window in which
    // a kill leaves it half-written.
    const std::uint64_t next = s.version.load(std::memory_order_relaxed) + 1;
    s.journal.store(next, std::memory_order_release);
    for (int k = 0; k < kDataWords; ++k) {
      s.words[k].store(word_value(next, k), std::memory_order_release);
      busy_pause(rng, 32);
    }
    s.version.store(next, std::memory_order_release);
    s.journal.store(0, std::memory_order_release);
    if (s.holder.load() != me) {
      log.report("pid %d entered the critical section while this process held the lock",
                 s.holder.load());
      return 8;
    }
    s.holder.store(0);
    if (!s.mutex.unlock()) {
      log.report("unlock() refused by the owner");
      return 9;
    }
    s.committed.fetch_add(1, std::memory_order_relaxed);
    s.crew.progress[slot].fetch_add(1, std::memory_order_relaxed);
    busy_pause(rng, 256);  // outside the lock: let the others in
  }
  return 0;
}

// The parent's turn, while every survivor is parked outside the lock: it
// locks like any worker (told owner_died if a victim died holding the lock,
// and repairing then), and checks the invariant and the update accounting:
// no update lost, none invented. Every counted update is in the version; the
// only uncounted ones belong to killed holders (committed before the count,
// or rolled forward by the next holder): at most one per kill.
testing::AssertionResult parent_turn(MutexStormState& s, std::uint64_t kills,
                                     std::uint64_t* parent_repairs) {
  const LockResult r = s.mutex.try_lock_for(std::chrono::seconds(10));
  if (!holds_lock(r)) {
    return testing::AssertionFailure() << "the parent could not lock with every worker parked: "
                                       << to_string(r);
  }
  if (r == LockResult::owner_died) {
    ++*parent_repairs;
    s.owner_died.fetch_add(1);
    if (!repair_after_owner_death(s, s.crew.log)) {
      return testing::AssertionFailure() << "parent repair: " << s.crew.log.describe();
    }
    if (!s.mutex.make_consistent()) {
      return testing::AssertionFailure() << "make_consistent() failed";
    }
  } else if (s.holder.load() != 0) {
    return testing::AssertionFailure() << "acquired (no owner death) but pid " << s.holder.load()
                                       << " is marked inside the critical section";
  }
  s.holder.store(0);
  const std::uint64_t version = s.version.load();
  const std::uint64_t committed = s.committed.load();
  testing::AssertionResult result = testing::AssertionSuccess();
  if (s.journal.load() != 0 || !words_match(s, version)) {
    result = testing::AssertionFailure() << "the protected data is torn at rest (version "
                                         << version << ", journal " << s.journal.load() << ")";
  } else if (version < committed) {
    result = testing::AssertionFailure() << "version " << version << " < " << committed
                                         << " counted updates: committed updates were lost";
  } else if (version > committed + kills) {
    result = testing::AssertionFailure() << "version " << version << " > " << committed
                                         << " counted updates + " << kills
                                         << " kills: updates invented";
  }
  if (!s.mutex.unlock()) return testing::AssertionFailure() << "the parent's unlock() failed";
  return result;
}

// Why survivors did not park: is the lock they wait for in fact free?
std::string mutex_diagnosis(MutexStormState& s) {
  const LockResult r = s.mutex.try_lock();
  if (holds_lock(r)) {
    if (r == LockResult::owner_died) (void)s.mutex.make_consistent();
    (void)s.mutex.unlock();
    return std::string("the mutex is free (parent's try_lock: ") + to_string(r) +
           "), yet a survivor sleeps in lock(): a lost wake-up";
  }
  return std::string("parent's try_lock: ") + to_string(r) + ", holder field pid " +
         std::to_string(s.holder.load());
}

TEST(Storm, RobustMutexStorm) {
  const int rounds = storm_rounds();
  const std::uint64_t seed = storm_seed();
  SCOPED_TRACE("SHMKIT_STORM_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  StateBlock<MutexStormState> block("storm_mutex");
  MutexStormState& s = *block;
  for (int k = 0; k < kDataWords; ++k) s.words[k].store(word_value(0, k));

  Crew crew(s.crew, kMutexWorkers, [&](int slot) {
    return guarded(s.crew.log, "mutex worker",
                   [&] { return mutex_worker(block.name(), slot, child_seed(rng)); });
  });
  crew.start_all();
  ASSERT_TRUE(crew.await_started({0, 1, 2, 3}, "first update by every worker"));

  const auto t0 = Clock::now();
  std::uint64_t kills = 0, parent_repairs = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    random_delay(rng);
    const std::vector<int> victims = crew.pick_victims(rng);
    ASSERT_TRUE(crew.kill(victims));
    kills += victims.size();
    // Every survivor must reach its checkpoint with no one else working: a
    // survivor asleep in lock() that no unlock or owner death will wake
    // (which the others' traffic would otherwise hide) fails here.
    ASSERT_TRUE(crew.pause([&] { return mutex_diagnosis(s); }));
    ASSERT_TRUE(parent_turn(s, kills, &parent_repairs));
    for (int v : victims) crew.start(v);
    crew.resume();
    // Every worker, survivors included, must update again.
    std::array<std::uint64_t, kMutexWorkers> before{};
    for (int w = 0; w < kMutexWorkers; ++w) before[w] = s.crew.progress[w].load();
    ASSERT_TRUE(crew.wait_until(
        [&] {
          for (int w = 0; w < kMutexWorkers; ++w) {
            const bool restarted = std::find(victims.begin(), victims.end(), w) != victims.end();
            if (s.crew.progress[w].load() <= (restarted ? 0 : before[w])) return false;
          }
          return true;
        },
        "update by every worker after the kill"));
  }
  ASSERT_TRUE(crew.stop_all());
  EXPECT_EQ(s.crew.log.count.load(), 0u) << s.crew.log.describe();

  // Every worker unlocked before exiting, and the owner deaths were all
  // consumed by later lockers: the parent gets the lock plainly.
  std::uint64_t late_repairs = 0;
  ASSERT_EQ(s.mutex.try_lock(), LockResult::acquired);
  ASSERT_TRUE(s.mutex.unlock());
  ASSERT_TRUE(parent_turn(s, kills, &late_repairs));
  EXPECT_EQ(late_repairs, 0u);
  const std::uint64_t committed = s.committed.load();
  // Usable by an unrelated mapping of the block, too.
  const ExitStatus other = run_child([&] {
    auto shm = SharedMemory::attach(block.name());
    auto& t = *static_cast<MutexStormState*>(shm.data());
    if (t.mutex.lock() != LockResult::acquired) return 1;
    return t.mutex.unlock() ? 0 : 2;
  });
  EXPECT_TRUE(other.ok()) << other.describe();

  const std::uint64_t died = s.owner_died.load();
  const std::uint64_t torn = s.torn_rolled.load();
  std::ostringstream line;
  line << "RobustMutexStorm: " << rounds << " rounds, " << kills << " kills, " << died
       << " owner-died recoveries (" << parent_repairs << " by the parent; " << torn
       << " torn updates rolled forward, "
       << s.journal_rolled.load() << " journal-only, " << s.clean_recovered.load()
       << " clean), " << committed << " updates, " << s.timed_out.load()
       << " timed locks returned timed_out, seed " << seed << ", "
       << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
       << " ms";
  print_summary(line.str());
  RecordProperty("rounds", rounds);
  RecordProperty("kills", static_cast<int>(kills));
  RecordProperty("owner_died_recoveries", static_cast<int>(died));
  RecordProperty("torn_updates_rolled_forward", static_cast<int>(torn));
  EXPECT_GT(died, 0u) << "no kill landed while a worker held the lock in " << rounds << " rounds";
  EXPECT_GT(torn, 0u) << "no kill landed inside an update in " << rounds << " rounds";
}

// ============================================================ Heap

constexpr int kHeapWorkers = 3;
constexpr int kRecordsPerWorker = 64;
constexpr std::size_t kHeapArena = 8 << 20;  // live objects < 200 KiB; room for leaks

// A worker's record of one of its objects. The fields are written first,
// then `published`; a worker unpublishes before it frees. So a record the
// parent sees published names an object that its worker allocated and
// filled, whenever the worker died.
struct ObjectRecord {
  std::atomic<std::uint64_t> published;
  std::atomic<std::uint64_t> offset;
  std::atomic<std::uint64_t> generation;
  std::atomic<std::uint64_t> size;  // bytes asked for, a multiple of 8
  std::atomic<std::uint64_t> seed;
};

HeapHandle handle_of(const ObjectRecord& rec, const std::string& heap_name) {
  return {heap_name, rec.offset.load(), rec.generation.load()};
}

struct HeapStormState {
  CrewControl crew;
  ObjectRecord records[kHeapWorkers][kRecordsPerWorker];
  std::atomic<std::uint64_t> allocations;
  std::atomic<std::uint64_t> frees;
};

// An object's words: its offset, generation and seed, then a stream from the
// seed. An overlapping allocation, or a repair that handed out a live chunk,
// breaks it.
std::uint64_t pattern_word(std::uint64_t offset, std::uint64_t generation, std::uint64_t seed,
                           std::size_t i) {
  switch (i) {
    case 0: return offset;
    case 1: return generation;
    case 2: return seed;
    default: return mix(seed + i * 0x9e3779b97f4a7c15ull);
  }
}

void fill_object(std::span<std::byte> bytes, std::uint64_t offset, std::uint64_t generation,
                 std::uint64_t seed, std::size_t size) {
  for (std::size_t i = 0; i < size / 8; ++i) {
    const std::uint64_t w = pattern_word(offset, generation, seed, i);
    std::memcpy(bytes.data() + 8 * i, &w, 8);
  }
}

// Index of the first word of the recorded object that is wrong, or -1.
long check_record(std::span<const std::byte> bytes, const ObjectRecord& rec) {
  const std::uint64_t size = rec.size.load();
  if (bytes.size() < size) return 0;
  for (std::size_t i = 0; i < size / 8; ++i) {
    std::uint64_t w;
    std::memcpy(&w, bytes.data() + 8 * i, 8);
    if (w != pattern_word(rec.offset.load(), rec.generation.load(), rec.seed.load(), i)) {
      return static_cast<long>(i);
    }
  }
  return -1;
}

int heap_worker(const std::string& state_name, const std::string& heap_name, int slot,
                std::uint64_t seed) {
  Attached<HeapStormState> block(state_name);
  HeapStormState& s = *block;
  FailureLog& log = s.crew.log;
  Heap heap = Heap::attach(heap_name);
  std::mt19937_64 rng(seed);
  ObjectRecord* mine = s.records[slot];
  while (checkpoint(s.crew, slot)) {
    int live = 0;
    int empty = -1;
    for (int i = 0; i < kRecordsPerWorker; ++i) {
      if (mine[i].published.load(std::memory_order_relaxed) != 0) {
        ++live;
      } else if (empty < 0 || rng() % 4 == 0) {
        empty = i;
      }
    }
    if (empty >= 0 && (live == 0 || rng() % 2 == 0)) {
      const std::size_t size = 8 * (3 + rng() % 125);  // 24..1016 bytes
      Heap::Allocation a = heap.allocate(size);
      if (a.bytes.size() < size) {
        log.report("allocate(%zu) returned only %zu bytes", size, a.bytes.size());
        return 2;
      }
      for (std::size_t i = 0; i < a.bytes.size(); ++i) {
        if (a.bytes[i] != std::byte{0}) {
          log.report("new object at offset %llu is not zero-filled at byte %zu (0x%02x): "
                     "overlaps a live object?",
                     static_cast<unsigned long long>(a.handle.offset), i,
                     static_cast<unsigned>(a.bytes[i]));
          return 3;
        }
      }
      const std::uint64_t object_seed = rng();
      fill_object(a.bytes, a.handle.offset, a.handle.generation, object_seed, size);
      ObjectRecord& rec = mine[empty];
      rec.offset.store(a.handle.offset, std::memory_order_relaxed);
      rec.generation.store(a.handle.generation, std::memory_order_relaxed);
      rec.size.store(size, std::memory_order_relaxed);
      rec.seed.store(object_seed, std::memory_order_relaxed);
      // release: the record's fields before `published` (the parent reads it
      // only while this child is parked or dead, but a kill may cut here).
      rec.published.store(1, std::memory_order_release);
      s.allocations.fetch_add(1, std::memory_order_relaxed);
    } else {
      int pick = static_cast<int>(rng() % kRecordsPerWorker);
      while (mine[pick].published.load(std::memory_order_relaxed) == 0) {
        pick = (pick + 1) % kRecordsPerWorker;
      }
      ObjectRecord& rec = mine[pick];
      const HeapHandle h = handle_of(rec, heap_name);
      const std::span<std::byte> bytes = heap.resolve(h);
      const long bad = check_record(bytes, rec);
      if (bad >= 0) {
        log.report("own object %s corrupted at word %ld before free", h.to_string().c_str(), bad);
        return 4;
      }
      rec.published.store(0, std::memory_order_release);
      heap.deallocate(h);
      s.frees.fetch_add(1, std::memory_order_relaxed);
    }
    s.crew.progress[slot].fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

struct LiveObject {
  std::uint64_t begin;  // chunk offset (its tag)
  std::uint64_t end;    // one past the chunk
  int slot;
};

// The parent's check of a quiescent heap (every worker parked or dead):
// the chain is valid, every published object resolves and self-checks, no
// two overlap, and the counters agree with the records up to the leaks the
// header allows (an object allocated or being freed by a killed worker).
testing::AssertionResult verify_heap(const Heap& heap, HeapStormState& s, std::uint64_t kills,
                                     std::uint64_t* leaked_out) {
  try {
    heap.check();
  } catch (const std::exception& e) {
    return testing::AssertionFailure() << "heap.check(): " << e.what();
  }
  std::vector<LiveObject> live;
  std::uint64_t recorded_bytes = 0;
  for (int w = 0; w < kHeapWorkers; ++w) {
    for (int i = 0; i < kRecordsPerWorker; ++i) {
      ObjectRecord& rec = s.records[w][i];
      if (rec.published.load(std::memory_order_acquire) == 0) continue;
      const HeapHandle h = handle_of(rec, heap.name());
      std::span<std::byte> bytes;
      try {
        bytes = heap.resolve(h);
      } catch (const std::exception& e) {
        return testing::AssertionFailure() << "worker " << w << "'s recorded object "
                                           << h.to_string() << " does not resolve: " << e.what();
      }
      const long bad = check_record(bytes, rec);
      if (bad >= 0) {
        return testing::AssertionFailure() << "worker " << w << "'s object " << h.to_string()
                                           << " is corrupted at word " << bad
                                           << " (overwritten by an overlapping allocation?)";
      }
      live.push_back({h.offset, h.offset + Heap::kChunkTag + bytes.size(), w});
      recorded_bytes += Heap::kChunkTag + bytes.size();
    }
  }
  std::sort(live.begin(), live.end(),
            [](const LiveObject& a, const LiveObject& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < live.size(); ++i) {
    if (live[i].begin < live[i - 1].end) {
      return testing::AssertionFailure()
             << "objects overlap: chunk [" << live[i - 1].begin << ", " << live[i - 1].end
             << ") of worker " << live[i - 1].slot << " and chunk at " << live[i].begin
             << " of worker " << live[i].slot;
    }
  }
  const HeapStats st = heap.stats();
  if (st.live_objects < live.size()) {
    return testing::AssertionFailure() << "stats() counts " << st.live_objects
                                       << " live objects, fewer than the " << live.size()
                                       << " recorded";
  }
  const std::uint64_t leaked = st.live_objects - live.size();
  if (leaked > kills) {
    return testing::AssertionFailure() << leaked << " allocated objects are recorded by nobody, "
                                       << "more than one per killed worker (" << kills << " kills)";
  }
  if (st.used_bytes < recorded_bytes || st.used_bytes > st.arena_bytes) {
    return testing::AssertionFailure() << "stats().used_bytes " << st.used_bytes
                                       << " is not between the recorded objects' "
                                       << recorded_bytes << " and the arena's " << st.arena_bytes;
  }
  if (st.free_chunks > 0 && st.largest_free + Heap::kChunkTag > st.arena_bytes - st.used_bytes) {
    return testing::AssertionFailure() << "stats().largest_free " << st.largest_free
                                       << " does not fit in the free bytes "
                                       << st.arena_bytes - st.used_bytes;
  }
  *leaked_out = leaked;
  return testing::AssertionSuccess();
}

// Why survivors did not park: can another process take the heap lock now?
// (Asked from a child, with a bound: the parent must not hang on it.)
std::string heap_lock_diagnosis(const std::string& heap_name) {
  const ExitStatus st = run_child(
      [&] {
        (void)Heap::attach(heap_name).stats();  // takes the heap's lock
        return 0;
      },
      std::chrono::seconds(5));
  if (st.ok()) {
    return "the heap lock is free (another process took it at once), yet a survivor sleeps "
           "in its lock(): a lost wake-up";
  }
  return "another process could not take the heap lock either: " + st.describe();
}

TEST(Storm, HeapStorm) {
  const int rounds = storm_rounds();
  const std::uint64_t seed = storm_seed();
  SCOPED_TRACE("SHMKIT_STORM_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  StateBlock<HeapStormState> block("storm_heaprec");
  HeapStormState& s = *block;
  const std::string heap_name = unique_name("storm_heap");
  UnlinkAtExit heap_guard{heap_name};
  Heap heap = Heap::create(heap_name, kHeapArena);

  Crew crew(s.crew, kHeapWorkers, [&](int slot) {
    return guarded(s.crew.log, "heap worker",
                   [&] { return heap_worker(block.name(), heap_name, slot, child_seed(rng)); });
  });
  crew.start_all();
  ASSERT_TRUE(crew.await_started({0, 1, 2}, "first heap operation by every worker"));

  const auto t0 = Clock::now();
  std::uint64_t kills = 0, reclaimed = 0, leaked = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    random_delay(rng);
    const std::vector<int> victims = crew.pick_victims(rng);
    ASSERT_TRUE(crew.kill(victims));
    kills += victims.size();
    ASSERT_TRUE(crew.pause([&] { return heap_lock_diagnosis(heap_name); }));
    // Survivors' objects intact, the dead's published objects intact too.
    ASSERT_TRUE(verify_heap(heap, s, kills, &leaked));
    // The parent takes over the dead workers' objects and frees them (a free
    // from another process than the allocator's); the handle is stale after.
    for (int v : victims) {
      for (ObjectRecord& rec : s.records[v]) {
        if (rec.published.load() == 0) continue;
        const HeapHandle h = handle_of(rec, heap_name);
        ASSERT_NO_THROW(heap.deallocate(h)) << h.to_string();
        EXPECT_THROW((void)heap.resolve(h), std::invalid_argument)
            << "a freed object's handle " << h.to_string() << " still resolves";
        rec.published.store(0);
        ++reclaimed;
      }
    }
    for (int v : victims) crew.start(v);
    crew.resume();
    ASSERT_TRUE(crew.await_started(victims, "first heap operation by a restarted worker"));
  }
  ASSERT_TRUE(crew.stop_all());
  EXPECT_EQ(s.crew.log.count.load(), 0u) << s.crew.log.describe();
  ASSERT_TRUE(verify_heap(heap, s, kills, &leaked));
  // Free everything recorded: what stays allocated is exactly the leak.
  for (auto& worker : s.records) {
    for (ObjectRecord& rec : worker) {
      if (rec.published.load() == 0) continue;
      ASSERT_NO_THROW(heap.deallocate(handle_of(rec, heap_name)));
      rec.published.store(0);
    }
  }
  ASSERT_NO_THROW(heap.check());
  const HeapStats st = heap.stats();
  EXPECT_EQ(st.live_objects, leaked) << "objects left once every recorded one was freed";
  EXPECT_LE(st.live_objects, kills);
  // The heap still serves a large allocation after the storm.
  EXPECT_NO_THROW(heap.deallocate(heap.allocate(64 * 1024).handle));

  std::ostringstream line;
  line << "HeapStorm: " << rounds << " rounds, " << kills << " kills, "
       << st.owner_deaths_recovered << " owner-death repairs of the heap lock, "
       << s.allocations.load() << " allocations, " << s.frees.load() << " frees, " << reclaimed
       << " objects of dead workers freed by the parent, " << leaked << " leaked, seed " << seed
       << ", " << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
       << " ms";
  print_summary(line.str());
  RecordProperty("rounds", rounds);
  RecordProperty("kills", static_cast<int>(kills));
  RecordProperty("owner_deaths_recovered", static_cast<int>(st.owner_deaths_recovered));
  RecordProperty("leaked", static_cast<int>(leaked));
  EXPECT_GT(st.owner_deaths_recovered, 0u)
      << "no kill landed inside the heap lock in " << rounds << " rounds: the repair never ran";
}

// ============================================================ queue items

// A 32-byte self-checking item: a torn copy (words of two items) fails
// intact().
struct StormItem {
  std::uint64_t seq;     // position in its producer's stream
  std::uint64_t origin;  // who produced it (meaning depends on the storm)
  std::uint64_t check;
  std::uint64_t inverse;

  static std::uint64_t checksum(std::uint64_t seq, std::uint64_t origin) {
    return mix(seq ^ (origin * 0x2545f4914f6cdd1dull));
  }
  static StormItem make(std::uint64_t seq, std::uint64_t origin) {
    return {seq, origin, checksum(seq, origin), ~seq};
  }
  bool intact() const { return check == checksum(seq, origin) && inverse == ~seq; }
};
static_assert(sizeof(StormItem) == 32);

// A StormItem followed by kBody words derived from it: the same checks, and
// a copy in or out takes ~kBody stores. The MPMC and BroadcastRing storms use
// it to widen their structures' own crash windows (claim to publish, claim to
// release, a slot "being written"), which with 4 words are a few
// instructions wide and a random kill all but never lands in.
template <std::size_t kBody>
struct WideItem {
  std::uint64_t seq;
  std::uint64_t origin;
  std::uint64_t check;
  std::uint64_t inverse;
  std::uint64_t body[kBody];

  static WideItem make(std::uint64_t seq, std::uint64_t origin) {
    const StormItem head = StormItem::make(seq, origin);
    WideItem w;
    w.seq = head.seq;
    w.origin = head.origin;
    w.check = head.check;
    w.inverse = head.inverse;
    for (std::size_t k = 0; k < kBody; ++k) w.body[k] = head.check + k;
    return w;
  }
  bool intact() const {
    if (check != StormItem::checksum(seq, origin) || inverse != ~seq) return false;
    for (std::size_t k = 0; k < kBody; ++k) {
      if (body[k] != check + k) return false;
    }
    return true;
  }
};
using MpmcItem = WideItem<124>;  // 1 KiB
using RingItem = WideItem<252>;  // 2 KiB

// ============================================================ SPSC

constexpr std::uint64_t kSpscCapacity = 256;
constexpr std::size_t kSpscBatch = 16;
constexpr int kSpscProducer = 0;
constexpr int kSpscConsumer = 1;
constexpr auto kTimedCall = std::chrono::milliseconds(20);

// Item seq == its queue position: the producer of position p pushes seq p,
// so the consumer checks no loss and no duplicate by seq == position alone.
struct SpscStormState {
  CrewControl crew;
  std::atomic<std::uint64_t> pushed;    // producer: positions it saw accepted
  std::atomic<std::uint64_t> consumed;  // consumer: positions it checked
  std::atomic<std::uint64_t> producers; // incarnations (the items' origin)
  std::atomic<std::uint64_t> consumed_unrecorded;  // ... consumed without recording (its business)
  // Crash windows hit: restarts that found what the dead one had done past
  // its last record (a consumer: head moved; a producer: items published).
  std::atomic<std::uint64_t> consumer_died_unrecorded;
  std::atomic<std::uint64_t> producer_died_unrecorded;
  std::atomic<std::uint64_t> timeouts;  // timed calls that returned false
};

// Now and then, between an operation and its record, a pause: it widens
// the window "done in the queue, not yet recorded" that a kill must land in
// for a restarted side to find the queue ahead of the record.
void record_window(std::mt19937_64& rng) {
  if (rng() % 64 == 0) busy_pause(rng, 2000);
}

int spsc_producer(const std::string& state_name, const std::string& queue_name,
                  std::uint64_t seed) {
  Attached<SpscStormState> block(state_name);
  SpscStormState& s = *block;
  FailureLog& log = s.crew.log;
  auto q = SpscQueue<StormItem>::attach(queue_name);
  std::mt19937_64 rng(seed);
  const std::uint64_t origin = s.producers.fetch_add(1) + 1;
  // The new producer continues from producer_index() (tail, and the items
  // a dead producer marked after its last tail store). A dead one may have
  // published up to one batch it did not record.
  std::uint64_t next = q.producer_index();
  const std::uint64_t recorded = s.pushed.load();
  if (next < recorded || next > recorded + kSpscBatch) {
    log.report("restarted producer finds tail %llu, the last one recorded %llu pushed",
               static_cast<unsigned long long>(next), static_cast<unsigned long long>(recorded));
    return 2;
  }
  if (q.consumer_index() > next) {
    log.report("head %llu is past tail %llu", static_cast<unsigned long long>(q.consumer_index()),
               static_cast<unsigned long long>(next));
    return 3;
  }
  if (next > recorded) s.producer_died_unrecorded.fetch_add(1);
  s.pushed.store(next);
  std::array<StormItem, kSpscBatch> batch;
  while (checkpoint(s.crew, kSpscProducer)) {
    std::uint64_t n = 0;
    if (rng() % 4 == 0) {
      const std::size_t k = 1 + rng() % kSpscBatch;
      for (std::size_t i = 0; i < k; ++i) batch[i] = StormItem::make(next + i, origin);
      n = q.push_for(std::span<const StormItem>(batch.data(), k), kTimedCall);
    } else {
      n = q.push_for(StormItem::make(next, origin), kTimedCall) ? 1 : 0;
    }
    if (n == 0) {
      s.timeouts.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    next += n;
    record_window(rng);
    s.pushed.store(next, std::memory_order_release);
    s.crew.progress[kSpscProducer].fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

bool spsc_check_item(FailureLog& log, const StormItem& it, std::uint64_t position) {
  if (!it.intact()) {
    log.report("torn item at position %llu (seq %llu)", static_cast<unsigned long long>(position),
               static_cast<unsigned long long>(it.seq));
    return false;
  }
  if (it.seq != position) {
    log.report("position %llu delivered item %llu: %s", static_cast<unsigned long long>(position),
               static_cast<unsigned long long>(it.seq),
               it.seq < position ? "a duplicate" : "items were lost");
    return false;
  }
  return true;
}

int spsc_consumer(const std::string& state_name, const std::string& queue_name,
                  std::uint64_t seed) {
  Attached<SpscStormState> block(state_name);
  SpscStormState& s = *block;
  FailureLog& log = s.crew.log;
  auto q = SpscQueue<StormItem>::attach(queue_name);
  std::mt19937_64 rng(seed);
  // The new consumer resumes at the shared head: what the dead one had
  // consumed (head store) but not recorded is gone for us (the header: its
  // business), what it had only copied comes again.
  std::uint64_t expect = q.consumer_index();
  const std::uint64_t recorded = s.consumed.load();
  if (expect < recorded || expect > recorded + kSpscBatch) {
    log.report("restarted consumer finds head %llu, the last one recorded %llu consumed",
               static_cast<unsigned long long>(expect), static_cast<unsigned long long>(recorded));
    return 2;
  }
  s.consumed_unrecorded.fetch_add(expect - recorded);
  if (expect > recorded) s.consumer_died_unrecorded.fetch_add(1);
  s.consumed.store(expect);
  std::array<StormItem, kSpscBatch> buf;
  while (checkpoint(s.crew, kSpscConsumer)) {
    std::size_t n = 0;
    if (rng() % 4 == 0) {
      n = q.pop_for(std::span<StormItem>(buf.data(), 1 + rng() % kSpscBatch), kTimedCall);
    } else {
      n = q.pop_for(buf[0], kTimedCall) ? 1 : 0;
    }
    if (n == 0) {
      s.timeouts.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (!spsc_check_item(log, buf[i], expect)) return 3;
      ++expect;
    }
    record_window(rng);
    s.consumed.store(expect, std::memory_order_release);
    s.crew.progress[kSpscConsumer].fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

TEST(Storm, SpscQueueStorm) {
  const int rounds = storm_rounds();
  const std::uint64_t seed = storm_seed();
  SCOPED_TRACE("SHMKIT_STORM_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  StateBlock<SpscStormState> block("storm_spscst");
  SpscStormState& s = *block;
  const std::string queue_name = unique_name("storm_spsc");
  UnlinkAtExit queue_guard{queue_name};
  auto q = SpscQueue<StormItem>::create(queue_name, kSpscCapacity);

  Crew crew(s.crew, 2, [&](int slot) {
    return guarded(s.crew.log, slot == kSpscProducer ? "spsc producer" : "spsc consumer", [&] {
      return slot == kSpscProducer ? spsc_producer(block.name(), queue_name, child_seed(rng))
                                   : spsc_consumer(block.name(), queue_name, child_seed(rng));
    });
  });
  crew.start_all();
  ASSERT_TRUE(crew.await_started({kSpscProducer, kSpscConsumer}, "first push and pop"));

  const auto t0 = Clock::now();
  std::uint64_t producer_kills = 0, consumer_kills = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    random_delay(rng);
    const std::vector<int> victims = crew.pick_victims(rng);
    ASSERT_TRUE(crew.kill(victims));
    for (int v : victims) (v == kSpscProducer ? producer_kills : consumer_kills) += 1;
    // While one side is dead the other's timed calls return (it loops on
    // them); the replacement attaches and the stream flows again.
    const std::uint64_t consumed = s.consumed.load();
    for (int v : victims) crew.start(v);
    ASSERT_TRUE(crew.await_started(victims, "first operation by a restarted side"));
    ASSERT_TRUE(crew.wait_until([&] { return s.consumed.load() > consumed; },
                                "item delivered after the restart"));
  }
  ASSERT_TRUE(crew.stop_all());
  EXPECT_EQ(s.crew.log.count.load(), 0u) << s.crew.log.describe();

  // Both sides stopped cleanly: the indices are exactly what they recorded,
  // and a fresh consumer drains the rest of the stream in order.
  EXPECT_EQ(q.producer_index(), s.pushed.load());
  EXPECT_EQ(q.consumer_index(), s.consumed.load());
  std::uint64_t expect = q.consumer_index();
  {
    auto drain = SpscQueue<StormItem>::attach(queue_name);
    StormItem it;
    while (drain.try_pop(it)) {
      ASSERT_TRUE(it.intact()) << "torn item at position " << expect;
      ASSERT_EQ(it.seq, expect) << "lost or duplicated at position " << expect;
      ++expect;
    }
  }
  EXPECT_EQ(expect, q.producer_index()) << "committed items missing at the end";
  EXPECT_TRUE(q.empty());
  EXPECT_GT(expect, 0u);

  // The creator's handle, idle since create() while other processes
  // produced and consumed, takes over each side in turn (one producer and
  // one consumer at a time, as the header allows): a supervisor replacing a
  // dead worker with the handle it already has. Its process-local caches of
  // the other side's index are stale; they must not matter.
  {
    StormItem it;
    EXPECT_FALSE(q.try_pop(it))
        << "the creator's handle popped an item from an empty queue (seq " << it.seq
        << "): its stale cache of tail was trusted";
    EXPECT_EQ(q.consumer_index(), q.producer_index()) << "head moved past tail";
    ASSERT_TRUE(q.try_push(StormItem::make(expect, 0)));
    auto other = SpscQueue<StormItem>::attach(queue_name);
    ASSERT_TRUE(other.try_pop(it));
    EXPECT_TRUE(it.intact() && it.seq == expect) << "the creator's handle as producer";
  }

  std::ostringstream line;
  line << "SpscQueueStorm: " << rounds << " rounds, " << producer_kills + consumer_kills
       << " kills (" << producer_kills << " producer, " << consumer_kills << " consumer), "
       << expect << " items in order, " << s.consumed_unrecorded.load()
       << " consumed by a dead consumer before it recorded them; kills after the queue moved, before "
       << "the record: " << s.consumer_died_unrecorded.load() << " consumer, "
       << s.producer_died_unrecorded.load() << " producer; " << s.timeouts.load()
       << " timed calls returned empty-handed, seed " << seed << ", "
       << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
       << " ms";
  print_summary(line.str());
  RecordProperty("rounds", rounds);
  RecordProperty("kills", static_cast<int>(producer_kills + consumer_kills));
  RecordProperty("items", static_cast<int>(expect));
  // The crash windows: a side killed after the queue took its operation and
  // before it recorded it, whose successor must resume from the queue's
  // index (widened by record_window(): required at any size).
  expect_window_hit("SpscQueueStorm", "consumer killed after its pop, before recording it",
                    s.consumer_died_unrecorded.load(), true, rounds);
  expect_window_hit("SpscQueueStorm", "producer killed after its push, before recording it",
                    s.producer_died_unrecorded.load(), true, rounds);
}

// ============================================================ MPMC

constexpr int kMpmcProducers = 2;
constexpr int kMpmcConsumers = 2;
constexpr std::uint64_t kMpmcCapacity = 64;
constexpr std::uint64_t kWindow = std::uint64_t{1} << 17;  // seen[] entries per producer
constexpr std::uint64_t kQuota = kWindow / 2;              // items per producer per round
constexpr std::uint64_t kProbeOrigin = 0xfeed;

// Producer p pushes items (seq, p) with seq increasing; every pop marks
// seen[p][seq % kWindow]. Each round the parent pauses everyone, drains the
// queue, and checks the round's range of every producer: each item seen
// once, or lost only as the header allows.
struct MpmcStormState {
  CrewControl crew;
  std::atomic<std::uint64_t> epoch;  // the queue's name suffix: stays 0 (dead claims are stepped over, the queue is never recreated)
  std::atomic<std::uint64_t> next_seq[kMpmcProducers];   // recorded after each accepted push
  std::atomic<std::uint64_t> quota_end[kMpmcProducers];  // a producer idles at this seq
  std::atomic<std::uint8_t> seen[kMpmcProducers][kWindow];
  std::atomic<std::uint64_t> popped;
  std::atomic<std::uint64_t> timeouts;
};

std::string mpmc_name(const std::string& base, std::uint64_t epoch) {
  return base + "_e" + std::to_string(epoch);
}

int mpmc_producer(const std::string& state_name, const std::string& base, int p) {
  Attached<MpmcStormState> block(state_name);
  MpmcStormState& s = *block;
  std::uint64_t epoch = s.epoch.load();
  auto q = MpmcQueue<MpmcItem>::attach(mpmc_name(base, epoch));
  std::uint64_t next = s.next_seq[p].load();  // the parent set where this incarnation starts
  while (checkpoint(s.crew, p)) {
    if (s.epoch.load() != epoch) {
      epoch = s.epoch.load();
      q = MpmcQueue<MpmcItem>::attach(mpmc_name(base, epoch));
    }
    if (next >= s.quota_end[p].load()) {
      // Done for this round (keeps a round's items within seen[]'s window).
      (void)futex_wait_for(s.crew.phase, s.crew.phase.load(), std::chrono::milliseconds(5));
      continue;
    }
    if (!q.push_for(MpmcItem::make(next, static_cast<std::uint64_t>(p)), kTimedCall)) {
      s.timeouts.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    ++next;
    s.next_seq[p].store(next, std::memory_order_release);
    s.crew.progress[p].fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

// One consumer's checks of an item; `last` is its per-producer high mark.
bool mpmc_accept(MpmcStormState& s, std::array<std::int64_t, kMpmcProducers>& last,
                 const MpmcItem& it, const char* who) {
  FailureLog& log = s.crew.log;
  if (!it.intact() || it.origin >= kMpmcProducers) {
    log.report("%s popped a torn or foreign item (seq %llu, origin %llu)", who,
               static_cast<unsigned long long>(it.seq), static_cast<unsigned long long>(it.origin));
    return false;
  }
  const std::size_t p = static_cast<std::size_t>(it.origin);
  if (static_cast<std::int64_t>(it.seq) <= last[p]) {
    log.report("%s popped producer %zu's item %llu after its item %lld: per-producer FIFO broken",
               who, p, static_cast<unsigned long long>(it.seq), static_cast<long long>(last[p]));
    return false;
  }
  last[p] = static_cast<std::int64_t>(it.seq);
  s.seen[p][it.seq % kWindow].fetch_add(1, std::memory_order_relaxed);
  s.popped.fetch_add(1, std::memory_order_relaxed);
  return true;
}

int mpmc_consumer(const std::string& state_name, const std::string& base, int slot) {
  Attached<MpmcStormState> block(state_name);
  MpmcStormState& s = *block;
  std::uint64_t epoch = s.epoch.load();
  auto q = MpmcQueue<MpmcItem>::attach(mpmc_name(base, epoch));
  std::array<std::int64_t, kMpmcProducers> last;
  last.fill(-1);
  while (checkpoint(s.crew, slot)) {
    if (s.epoch.load() != epoch) {
      epoch = s.epoch.load();
      q = MpmcQueue<MpmcItem>::attach(mpmc_name(base, epoch));
    }
    MpmcItem it;
    if (!q.pop_for(it, kTimedCall)) {
      s.timeouts.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (!mpmc_accept(s, last, it, "consumer")) return 2;
    s.crew.progress[slot].fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

TEST(Storm, MpmcQueueStorm) {
  const int rounds = storm_rounds();
  const std::uint64_t seed = storm_seed();
  SCOPED_TRACE("SHMKIT_STORM_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  StateBlock<MpmcStormState> block("storm_mpmcst");
  MpmcStormState& s = *block;
  const std::string base = unique_name("storm_mpmc");
  UnlinkAtExit queue_guard{mpmc_name(base, 0)};
  auto q = MpmcQueue<MpmcItem>::create(queue_guard.name, kMpmcCapacity);
  std::array<std::uint64_t, kMpmcProducers> round_start{};
  for (int p = 0; p < kMpmcProducers; ++p) s.quota_end[p].store(kQuota);

  auto is_producer = [](int slot) { return slot < kMpmcProducers; };
  Crew crew(s.crew, kMpmcProducers + kMpmcConsumers, [&](int slot) {
    return guarded(s.crew.log, is_producer(slot) ? "mpmc producer" : "mpmc consumer", [&] {
      return is_producer(slot) ? mpmc_producer(block.name(), base, slot)
                               : mpmc_consumer(block.name(), base, slot);
    });
  });
  crew.start_all();
  ASSERT_TRUE(crew.await_started({0, 1, 2, 3}, "first push or pop by every child"));

  std::array<std::int64_t, kMpmcProducers> parent_last;
  parent_last.fill(-1);
  std::uint64_t producer_kills = 0, consumer_kills = 0, lost = 0, lost_allowed = 0;
  std::uint64_t stalls = 0, probes = 0, skipped_total = 0, released_total = 0;
  // A killed producer's item at its recorded seq that was delivered: it
  // died after its push and before recording it.
  std::uint64_t published_unrecorded = 0;
  MpmcLosses reported{};
  const auto t0 = Clock::now();

  // After a pause (or the stop): drains (stepping over dead claims), checks
  // each producer's range for the round and what the queue reported lost.
  auto settle_round = [&](const std::vector<int>& victims) -> testing::AssertionResult {
    std::uint64_t round_consumer_kills = 0;
    std::array<bool, kMpmcProducers> producer_killed{};
    for (int v : victims) {
      if (is_producer(v)) {
        producer_killed[static_cast<std::size_t>(v)] = true;
      } else {
        ++round_consumer_kills;
      }
    }
    // Everyone is parked or dead. A producer killed between its claim and
    // its publish, or a consumer killed between its claim and its release,
    // must not stall the queue (the header): the parent drains it, running
    // unblock() as a survivor that only uses try_ calls must, until it is
    // empty and a full lap of probes goes round. Every claimant here is
    // SIGKILLed, never stopped, so every claim left behind is a dead one.
    MpmcItem it;
    testing::AssertionResult bad = testing::AssertionSuccess();
    const bool settled = eventually(
        [&] {
          while (q.try_pop(it)) {
            if (it.origin == kProbeOrigin) continue;  // a probe a previous pass left
            if (!mpmc_accept(s, parent_last, it, "parent")) {
              bad = testing::AssertionFailure() << s.crew.log.describe();
              return true;
            }
          }
          if (q.unblock() != MpmcUnblock::none || !q.empty()) return false;
          std::uint64_t pushed = 0;
          while (pushed < kMpmcCapacity && q.try_push(MpmcItem::make(pushed, kProbeOrigin))) ++pushed;
          for (std::uint64_t i = 0; i < pushed; ++i) {
            if (!q.try_pop(it) || it.origin != kProbeOrigin || it.seq != i || !it.intact()) {
              bad = testing::AssertionFailure() << "probe " << i << " of " << pushed
                                                << " did not come back in order";
              return true;
            }
          }
          probes += pushed;
          if (pushed == kMpmcCapacity) return true;
          (void)q.unblock();
          return false;
        },
        std::chrono::milliseconds(10'000), std::chrono::milliseconds(2));
    if (!bad) return bad;
    if (!settled) {
      ++stalls;
      return testing::AssertionFailure() << "the queue stayed stalled after the kills (size "
                                         << q.size() << "): a dead claimant was not stepped over";
    }
    const MpmcLosses now = q.losses();
    const std::uint64_t skipped = now.producer_claims_skipped - reported.producer_claims_skipped;
    const std::uint64_t released = now.consumer_claims_released - reported.consumer_claims_released;
    reported = now;
    skipped_total += skipped;
    released_total += released;
    std::uint64_t round_producer_kills = 0;
    for (bool k : producer_killed) round_producer_kills += k ? 1 : 0;
    // Each dead producer held at most one claim, each dead consumer at most
    // one; the queue counts each stepped-over claim once.
    if (skipped > round_producer_kills || released > round_consumer_kills) {
      return testing::AssertionFailure()
             << "the queue reported " << skipped << " skipped producer claims and " << released
             << " released consumer claims after " << round_producer_kills << " producer and "
             << round_consumer_kills << " consumer kills";
    }
    // Every item of the round: seen once; or unseen, which only a consumer
    // killed with it in hand or a stall explains; or the one item a killed
    // producer may have pushed without recording it.
    std::uint64_t round_lost = 0;
    for (int p = 0; p < kMpmcProducers; ++p) {
      const std::uint64_t recorded = s.next_seq[p].load();
      const bool killed = producer_killed[static_cast<std::size_t>(p)];
      const std::uint64_t end = recorded + (killed ? 1 : 0);
      for (std::uint64_t seq = round_start[static_cast<std::size_t>(p)]; seq < end; ++seq) {
        auto& cell = s.seen[p][seq % kWindow];
        const std::uint8_t n = cell.load();
        if (n > 1) {
          return testing::AssertionFailure() << "producer " << p << "'s item " << seq
                                             << " was popped " << int{n} << " times";
        }
        if (n == 0 && !(killed && seq == recorded)) ++round_lost;
        if (n == 1 && killed && seq == recorded) ++published_unrecorded;
        cell.store(0);
      }
      for (std::uint64_t k = 0; k < kWindow; ++k) {
        if (s.seen[p][k].load() != 0) {
          return testing::AssertionFailure() << "an item of producer " << p << " with seq = " << k
                                             << " mod " << kWindow << " was popped, but was "
                                             << "never pushed in this round";
        }
      }
      // A killed producer's successor skips the unrecorded number.
      round_start[static_cast<std::size_t>(p)] = end;
      s.next_seq[p].store(end);
      s.quota_end[p].store(end + kQuota);
    }
    // Lost: only items in a killed consumer's hands (popped, or claimed
    // and released by a survivor: those the queue reported).
    const std::uint64_t allowed = round_consumer_kills;
    lost += round_lost;
    lost_allowed += allowed;
    if (round_lost > allowed) {
      return testing::AssertionFailure()
             << round_lost << " items lost in one round, but only " << round_consumer_kills
             << " consumers were killed";
    }
    if (released > round_lost + round_producer_kills) {
      return testing::AssertionFailure()
             << "the queue reported " << released << " items lost with dead consumers, but only "
             << round_lost << " went missing";
    }
    return testing::AssertionSuccess();
  };

  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    random_delay(rng);
    const std::vector<int> victims = crew.pick_victims(rng);
    ASSERT_TRUE(crew.kill(victims));
    for (int v : victims) (is_producer(v) ? producer_kills : consumer_kills) += 1;
    ASSERT_TRUE(crew.pause());
    ASSERT_TRUE(settle_round(victims));
    for (int v : victims) crew.start(v);
    const std::uint64_t popped = s.popped.load();
    crew.resume();
    ASSERT_TRUE(crew.await_looped(victims, "first loop by a restarted child"));
    ASSERT_TRUE(crew.wait_until([&] { return s.popped.load() > popped; },
                                "item popped after the restart"));
  }
  ASSERT_TRUE(crew.pause());
  ASSERT_TRUE(settle_round({}));
  ASSERT_TRUE(crew.stop_all());
  EXPECT_EQ(s.crew.log.count.load(), 0u) << s.crew.log.describe();
  EXPECT_TRUE(q.empty());

  std::ostringstream line;
  line << "MpmcQueueStorm: " << rounds << " rounds, " << producer_kills + consumer_kills
       << " kills (" << producer_kills << " producer, " << consumer_kills << " consumer), "
       << s.popped.load() << " items popped, " << lost << " lost (" << lost_allowed
       << " allowed by the crash semantics), " << skipped_total
       << " dead producer claims skipped and " << released_total
       << " dead consumer claims released (reported by the queue), " << published_unrecorded
       << " items pushed by a producer killed before it recorded them, " << stalls << " stalls, "
       << probes << " probes, "
       << s.timeouts.load() << " timed calls returned empty-handed, seed " << seed << ", "
       << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
       << " ms";
  print_summary(line.str());
  RecordProperty("rounds", rounds);
  RecordProperty("kills", static_cast<int>(producer_kills + consumer_kills));
  RecordProperty("lost", static_cast<int>(lost));
  RecordProperty("skipped", static_cast<int>(skipped_total));
  RecordProperty("released", static_cast<int>(released_total));
  EXPECT_EQ(stalls, 0u);
  EXPECT_GT(s.popped.load(), 0u);
  // The crash windows (the wide items widen the queue's own), each hit a
  // few times per 100 rounds at best, so required at the nightly size: a
  // consumer killed with an item popped but not yet marked (the loss the
  // header allows), a producer killed after its push, before recording it;
  // inside the queue, a producer killed between its claim and its publish,
  // a consumer between its claim and its release, each repaired by a
  // survivor once its claimant is proven dead (what losses() counts; every
  // claimant here is SIGKILLed, none stopped).
  const bool nightly = rounds >= kNightlyRounds;
  expect_window_hit("MpmcQueueStorm", "consumer killed with a popped item in hand", lost, nightly,
                    rounds);
  expect_window_hit("MpmcQueueStorm", "producer killed after its push, before recording it",
                    published_unrecorded, nightly, rounds);
  expect_window_hit("MpmcQueueStorm", "producer killed between its claim and its publish",
                    skipped_total, nightly, rounds);
  expect_window_hit("MpmcQueueStorm", "consumer killed between its claim and its release",
                    released_total, nightly, rounds);
}

// ============================================================ BroadcastRing

constexpr std::uint64_t kRingCapacity = 1024;
constexpr int kRingWriter = 0;
constexpr int kRingReaders = 2;

struct RingStormState {
  CrewControl crew;
  std::atomic<std::uint64_t> saved_cursor[1 + kRingReaders];  // reader r's next item
  std::atomic<std::uint64_t> read;
  std::atomic<std::uint64_t> lost;
  std::atomic<std::uint64_t> laps;
  std::atomic<std::uint64_t> timeouts;
  // Writer restarts that found the slot at the write index mid-push: its
  // sequence odd (words being written) or already the item's (published,
  // the write index not yet advanced): a writer killed inside push().
  std::atomic<std::uint64_t> writer_died_writing;
  std::atomic<std::uint64_t> writer_died_publishing;
};

// The sequence word of ring slot `i` (the layout of broadcast_ring.hpp: a
// sequence word, then the item's words, per slot, from the payload).
std::uint64_t ring_slot_seq(const SharedMemory& raw, std::uint64_t i) {
  const auto* bytes = static_cast<const std::byte*>(raw.data());
  const auto* h = reinterpret_cast<const BlockHeader*>(bytes);
  constexpr std::size_t kSlotWords = 1 + lockfree_detail::kWords<RingItem>;
  const auto* slot = reinterpret_cast<const std::atomic<std::uint64_t>*>(
      bytes + h->payload_offset + (i & (kRingCapacity - 1)) * kSlotWords * sizeof(std::uint64_t));
  return slot->load(std::memory_order_acquire);
}

int ring_writer(const std::string& state_name, const std::string& ring_name, std::uint64_t seed) {
  Attached<RingStormState> block(state_name);
  RingStormState& s = *block;
  auto ring = BroadcastRing<RingItem>::attach(ring_name);
  std::mt19937_64 rng(seed);
  // A new writer continues at the write index (a dead one's half-written
  // slot is rewritten).
  std::uint64_t i = ring.write_index();
  {
    const std::uint64_t seq = ring_slot_seq(SharedMemory::attach(ring_name), i);
    if (seq == 2 * i + 1) s.writer_died_writing.fetch_add(1);
    if (seq == 2 * i + 2) s.writer_died_publishing.fetch_add(1);
  }
  while (checkpoint(s.crew, kRingWriter)) {
    for (unsigned burst = 1 + static_cast<unsigned>(rng() % 64); burst > 0; --burst) {
      ring.push(RingItem::make(i++, 0));
    }
    s.crew.progress[kRingWriter].fetch_add(1, std::memory_order_relaxed);
    busy_pause(rng, 4000);  // readers keep up sometimes, and are lapped sometimes
  }
  return 0;
}

int ring_reader(const std::string& state_name, const std::string& ring_name, int slot) {
  Attached<RingStormState> block(state_name);
  RingStormState& s = *block;
  FailureLog& log = s.crew.log;
  auto ring = BroadcastRing<RingItem>::attach(ring_name);
  // A restarted reader resumes at the cursor its predecessor saved.
  auto reader = ring.reader_at(s.saved_cursor[slot].load());
  while (checkpoint(s.crew, slot)) {
    const std::uint64_t before = reader.cursor();
    RingItem it;
    const BroadcastResult r = reader.read_for(it, kTimedCall);
    switch (r.status) {
      case BroadcastStatus::ok:
        if (!it.intact() || it.seq != before || reader.cursor() != before + 1) {
          log.report("reader %d at cursor %llu got %s item %llu", slot,
                     static_cast<unsigned long long>(before), it.intact() ? "the wrong" : "a torn",
                     static_cast<unsigned long long>(it.seq));
          return 2;
        }
        s.read.fetch_add(1, std::memory_order_relaxed);
        break;
      case BroadcastStatus::lapped:
        if (r.lost == 0 || reader.cursor() != before + r.lost) {
          log.report("reader %d lapped at %llu: lost %llu but the cursor moved to %llu", slot,
                     static_cast<unsigned long long>(before),
                     static_cast<unsigned long long>(r.lost),
                     static_cast<unsigned long long>(reader.cursor()));
          return 3;
        }
        s.lost.fetch_add(r.lost, std::memory_order_relaxed);
        s.laps.fetch_add(1, std::memory_order_relaxed);
        break;
      case BroadcastStatus::empty:
        s.timeouts.fetch_add(1, std::memory_order_relaxed);
        if (reader.cursor() != before) {
          log.report("reader %d: an empty read moved the cursor", slot);
          return 4;
        }
        continue;
    }
    // Nothing is delivered or skipped past what was published.
    if (reader.cursor() > ring.write_index()) {
      log.report("reader %d's cursor %llu is past the write index %llu", slot,
                 static_cast<unsigned long long>(reader.cursor()),
                 static_cast<unsigned long long>(ring.write_index()));
      return 5;
    }
    s.saved_cursor[slot].store(reader.cursor(), std::memory_order_release);
    s.crew.progress[slot].fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

TEST(Storm, BroadcastRingStorm) {
  const int rounds = storm_rounds();
  const std::uint64_t seed = storm_seed();
  SCOPED_TRACE("SHMKIT_STORM_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  StateBlock<RingStormState> block("storm_ringst");
  RingStormState& s = *block;
  const std::string ring_name = unique_name("storm_ring");
  UnlinkAtExit ring_guard{ring_name};
  auto ring = BroadcastRing<RingItem>::create(ring_name, kRingCapacity);

  Crew crew(s.crew, 1 + kRingReaders, [&](int slot) {
    return guarded(s.crew.log, slot == kRingWriter ? "ring writer" : "ring reader", [&] {
      return slot == kRingWriter ? ring_writer(block.name(), ring_name, child_seed(rng))
                                 : ring_reader(block.name(), ring_name, slot);
    });
  });
  crew.start_all();
  ASSERT_TRUE(crew.await_started({0, 1, 2}, "first push or read by every child"));

  const auto t0 = Clock::now();
  std::uint64_t writer_kills = 0, reader_kills = 0, aimed = 0;
  // Aiming the writer's kill at push(): even with wide items push is a
  // short part of the writer's time (it pauses between bursts), so a kill
  // at a random moment seldom lands inside it.
  // When the writer is a victim the parent stops it (SIGSTOP) at random
  // moments, up to kAimTries times, until it is stopped inside push (the
  // slot at the write index odd, or published with the index not yet
  // advanced), and kills it there, stopped; else wherever the last try
  // left it. The restarted writer then finds (and counts) that slot.
  constexpr int kAimTries = 200;
  const SharedMemory raw = SharedMemory::attach(ring_name);
  auto stopped_inside_push = [&] {
    const std::uint64_t i = ring.write_index();
    const std::uint64_t seq = ring_slot_seq(raw, i);
    return seq == 2 * i + 1 || seq == 2 * i + 2;
  };
  auto aim_at_push = [&](pid_t pid) {
    for (int t = 0; t < kAimTries; ++t) {
      int status = 0;
      if (::kill(pid, SIGSTOP) != 0 || ::waitpid(pid, &status, WUNTRACED) != pid || !WIFSTOPPED(status)) {
        return;  // gone: crew.kill() reports it
      }
      if (stopped_inside_push()) {
        ++aimed;
        return;
      }
      ::kill(pid, SIGCONT);
      busy_pause(rng, 2000);
    }
  };
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    random_delay(rng);
    const std::vector<int> victims = crew.pick_victims(rng);
    if (std::find(victims.begin(), victims.end(), kRingWriter) != victims.end()) {
      aim_at_push(crew.pid(kRingWriter));
    }
    ASSERT_TRUE(crew.kill(victims));
    for (int v : victims) (v == kRingWriter ? writer_kills : reader_kills) += 1;
    for (int v : victims) crew.start(v);
    ASSERT_TRUE(crew.await_started(victims, "first push or read by a restarted child"));
  }
  ASSERT_TRUE(crew.stop_all());
  EXPECT_EQ(s.crew.log.count.load(), 0u) << s.crew.log.describe();

  // From each reader's saved cursor to the end: items read plus items
  // reported lost equal items written, never a torn one.
  const std::uint64_t written = ring.write_index();
  EXPECT_GT(written, 0u);
  for (int r = 1; r <= kRingReaders; ++r) {
    auto reader = ring.reader_at(s.saved_cursor[r].load());
    ASSERT_LE(reader.cursor(), written) << "reader " << r;
    std::uint64_t read = 0, lost = 0;
    for (;;) {
      const std::uint64_t before = reader.cursor();
      RingItem it;
      const BroadcastResult res = reader.try_read(it);
      if (res.status == BroadcastStatus::empty) break;
      if (res.status == BroadcastStatus::lapped) {
        lost += res.lost;
        continue;
      }
      ASSERT_TRUE(it.intact() && it.seq == before) << "reader " << r << " at " << before;
      ++read;
    }
    EXPECT_EQ(reader.cursor(), written) << "reader " << r << " did not reach the write index";
    EXPECT_EQ(s.saved_cursor[r].load() + read + lost, written) << "reader " << r;
  }

  std::ostringstream line;
  line << "BroadcastRingStorm: " << rounds << " rounds, " << writer_kills + reader_kills
       << " kills (" << writer_kills << " writer, " << reader_kills << " reader), " << written
       << " items written; the " << kRingReaders << " readers read " << s.read.load()
       << " and were told of " << s.lost.load() << " lost in " << s.laps.load() << " laps, "
       << s.timeouts.load()
       << " timed reads returned empty; writer killed inside push: " << s.writer_died_writing.load()
       << " while writing a slot, " << s.writer_died_publishing.load()
       << " before advancing the index (" << aimed << " kills aimed there); seed " << seed << ", "
       << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
       << " ms";
  print_summary(line.str());
  RecordProperty("rounds", rounds);
  RecordProperty("kills", static_cast<int>(writer_kills + reader_kills));
  // The crash window (header: "a writer killed mid-push leaves one slot
  // marked being written"), as the restarted writers found it. With wide
  // items and aimed kills it is hit about every fourth writer kill, so it
  // is required at any size.
  expect_window_hit("BroadcastRingStorm", "writer killed inside push()",
                    s.writer_died_writing.load() + s.writer_died_publishing.load(), true, rounds);
}

}  // namespace
}  // namespace shmkit::test
