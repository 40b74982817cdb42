// The random-SIGKILL storms, in the style of glibc's tst-robust8:
// children hammer one shared structure; every round the parent SIGKILLs a
// random subset of them at a random moment (microseconds to milliseconds
// into their work), reaps them, checks what the structure promises after a
// crash (see each header's "Crash semantics"), and starts replacements.
//
// One file per structure, one test binary (test_storm), each storm its own
// ctest case and process:
//
//   RobustMutexStorm  (robust_mutex.cpp) a journaled multi-word update under a RobustMutex:
//                     owner death is always reported, the torn update is
//                     seen and rolled forward, no update lost or invented.
//   HeapStorm         (heap.cpp) allocators write self-checking objects and record
//                     their handles; after each round the heap checks,
//                     every recorded object is intact and none overlap,
//                     leaks stay within one object per killed process.
//   SpscQueueStorm, MpmcQueueStorm, BroadcastRingStorm (spsc.cpp, mpmc.cpp,
//                     broadcast_ring.cpp) sequence-numbered, checksummed items: never a torn
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
//
// This header is the harness the storms share: parameters, the crew of
// children and its checkpoint, the failure log, the shared state block, the
// window-hit checks and the self-checking queue items.
#pragma once

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

#include "shmkit/lockfree/detail/common.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/sync/futex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "test_support.hpp"

namespace shmkit::test {

using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------ parameters

inline int storm_rounds() {
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
inline std::uint64_t storm_seed() {
  if (const char* env = std::getenv("SHMKIT_STORM_SEED"); env != nullptr && *env != '\0') {
    return std::strtoull(env, nullptr, 0);
  }
  return (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
}

inline std::uint64_t mix(std::uint64_t x) {
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
inline void random_delay(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> exponent(std::log(2.0), std::log(4000.0));
  std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(std::exp(exponent(rng))));
}

inline void busy_pause(std::mt19937_64& rng, unsigned max_spins) {
  for (auto i = rng() % max_spins; i > 0; --i) lockfree_detail::cpu_relax();
}

// Where a process sleeps in the kernel (a stuck child's diagnosis).
inline std::string wchan_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/wchan");
  std::string w;
  std::getline(f, w);
  return w.empty() || w == "0" ? "running" : w;
}

inline std::string describe_wait_status(int status) {
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
  FutexWord phase;                                // even: run; odd: park at the next checkpoint
  std::atomic<std::uint32_t> stop;                // 1: leave at the next checkpoint, exit 0
  std::atomic<std::uint32_t> parked[kMaxCrew];    // the odd phase at which the slot's child parked
  std::atomic<std::uint64_t> beats[kMaxCrew];     // checkpoints passed by the slot's child
  std::atomic<std::uint64_t> progress[kMaxCrew];  // its successful operations
  FailureLog log;
};

// Child side, called between operations (the child holds no lock, has no
// half-done operation and has recorded everything). Returns false when the
// parent asked to stop; while the parent asks to pause, parks here, so the
// parent can inspect a quiescent structure.
inline bool checkpoint(CrewControl& c, int slot) {
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
        return testing::AssertionFailure()
               << "slot " << v << " (pid " << pid << ") was no longer running when killed: " << st.describe()
               << "; " << c_.log.describe();
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
                 << ") exited on its own (" << describe_wait_status(status) << "); " << c_.log.describe();
        }
      }
      if (Clock::now() >= deadline) {
        return testing::AssertionFailure()
               << "no " << what << " within " << timeout.count() << " s: a child hung; " << c_.log.describe();
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
        result = testing::AssertionFailure()
                 << "slot " << s << " (pid " << pid << ") did not stop cleanly: " << st.describe() << "; "
                 << c_.log.describe();
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
inline std::uint64_t child_seed(std::mt19937_64& parent_rng) {
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
inline void expect_window_hit(const char* storm, const char* window, std::uint64_t hits, bool required,
                              int rounds) {
  if (required) {
    EXPECT_GT(hits, 0u) << storm << ": no kill landed in its window \"" << window << "\" in " << rounds
                        << " rounds";
  } else if (hits == 0) {
    std::printf("[storm] %s: window \"%s\" not hit in %d rounds (required from %d rounds)\n", storm, window,
                rounds, kNightlyRounds);
  }
}

inline void print_summary(const std::string& line) {
  std::printf("[storm] %s\n", line.c_str());
  std::fflush(stdout);
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

// The bound of every timed call the queue storms make (push_for, pop_for,
// read_for): it must return, whoever was killed.
constexpr auto kTimedCall = std::chrono::milliseconds(20);

}  // namespace shmkit::test
