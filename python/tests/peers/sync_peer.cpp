// The C++ side of the cross-language tests of shmkit.synchronize,
// shmkit.queues and AtomicRef (python/tests/test_sync_interop.py). Each
// command does one thing to a block named on the command line and reports on
// stdout, one line per step, so the Python test can drive it through pipes.
//
//   create KIND NAME [ARG]   create a standalone primitive (mutex, rmutex,
//                            robust, semaphore ARG=value, event), print
//                            "created", wait for a line on stdin, unlink, exit
//   hold KIND NAME           attach (mutex, rmutex, robust, semaphore),
//                            acquire, print "held", wait for a line on stdin,
//                            release, print "released"
//   die-holding NAME         attach a robust lock, acquire, print "held",
//                            then _exit without releasing (as if killed)
//   owner-died NAME          attach a robust lock, lock(): print the result
//                            (acquired / owner_died ...), make_consistent,
//                            unlock
//   acquire-timeout KIND NAME MS  try to acquire for MS ms, print "acquired"
//                            or "timed_out" (releases if acquired)
//   event-set NAME           attach an event, set it
//   event-wait NAME MS       print "set" or "timeout"
//   sem-release NAME N       release a semaphore N times
//   queue-create KIND TYPE NAME CAP   create (spsc|mpmc, q|d|pair), print
//                            "created", wait for a line on stdin, unlink
//   queue-push KIND TYPE NAME N       attach, push 0..N-1 (pair: (i, i/2.0))
//   queue-pop KIND TYPE NAME N        attach, pop N items, print their sum
//   seqlock-create TYPE NAME  create a SeqLock (q|d|pair), "created", wait for
//                            a line on stdin, print the value read, unlink
//   seqlock-store TYPE NAME V attach, store V (pair: (V, V/2))
//   ring-create TYPE NAME CAP create a BroadcastRing, "created", wait for a
//                            line, read items 0..N-1 where N is the line's
//                            number, print their sum, unlink
//   ring-push TYPE NAME N    attach, push 0..N-1
//   atomic-add NAME OFFSET N  attach a SharedMemory block, fetch_add 1 to the
//                            int64 at OFFSET N times, notify, print the last
//                            old value
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

#include "shmkit/atomic.hpp"
#include "shmkit/lockfree/broadcast_ring.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/lockfree/seqlock.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/sync/futex.hpp"
#include "shmkit/sync/standalone.hpp"

struct Pair {
  std::int64_t a;
  double b;
};
template <>
struct shmkit::TypeName<Pair> {
  static constexpr std::string_view value = "Pair/v1";
};

namespace {

void say(const std::string& s) { std::cout << s << std::endl; }
void wait_line() {
  std::string line;
  std::getline(std::cin, line);
}

template <class P>
int create(const std::string& name, unsigned arg) {
  shmkit::SharedMemory::Options o;
  auto s = [&] {
    if constexpr (std::is_same_v<P, shmkit::Semaphore>) {
      return shmkit::StandaloneSync<P>::create(name, o, arg);
    } else {
      return shmkit::StandaloneSync<P>::create(name, o);
    }
  }();
  say("created");
  wait_line();
  s.unlink();
  return 0;
}

template <class P>
int hold(const std::string& name) {
  auto s = shmkit::StandaloneSync<P>::attach(name);
  if constexpr (std::is_same_v<P, shmkit::RobustMutex>) {
    if (s.get().lock() != shmkit::LockResult::acquired) return 3;
  } else if constexpr (std::is_same_v<P, shmkit::Semaphore>) {
    s.get().acquire();
  } else {
    s.get().lock();
  }
  say("held");
  wait_line();
  if constexpr (std::is_same_v<P, shmkit::Semaphore>) {
    (void)s.get().release();
  } else {
    (void)s.get().unlock();
  }
  say("released");
  return 0;
}

template <class P>
int acquire_timeout(const std::string& name, int ms) {
  auto s = shmkit::StandaloneSync<P>::attach(name);
  const auto t = std::chrono::milliseconds(ms);
  bool ok;
  if constexpr (std::is_same_v<P, shmkit::RobustMutex>) {
    ok = shmkit::holds_lock(s.get().try_lock_for(t));
    if (ok) (void)s.get().make_consistent();
  } else if constexpr (std::is_same_v<P, shmkit::Semaphore>) {
    ok = s.get().try_acquire_for(t);
  } else {
    ok = s.get().try_lock_for(t);
  }
  say(ok ? "acquired" : "timed_out");
  if (ok) {
    if constexpr (std::is_same_v<P, shmkit::Semaphore>) {
      (void)s.get().release();
    } else {
      (void)s.get().unlock();
    }
  }
  return 0;
}

template <class T>
T item(long i) {
  if constexpr (std::is_same_v<T, Pair>)
    return Pair{i, static_cast<double>(i) / 2.0};
  else
    return static_cast<T>(i);
}
template <class T>
double value_of(const T& v) {
  if constexpr (std::is_same_v<T, Pair>)
    return static_cast<double>(v.a) + v.b;
  else
    return static_cast<double>(v);
}

template <template <class> class Q, class T>
int queue_cmd(const std::string& cmd, const std::string& name, long n) {
  if (cmd == "queue-create") {
    auto q = Q<T>::create(name, static_cast<std::uint64_t>(n));
    say("created");
    wait_line();
    q.unlink();
    return 0;
  }
  auto q = Q<T>::attach(name);
  if (cmd == "queue-push") {
    for (long i = 0; i < n; ++i) q.push(item<T>(i));
    say("pushed");
    return 0;
  }
  double sum = 0;
  for (long i = 0; i < n; ++i) {
    T v{};
    if (!q.pop_for(v, std::chrono::seconds(10))) return 4;
    sum += value_of(v);
  }
  std::printf("%.1f\n", sum);
  std::fflush(stdout);
  return 0;
}

template <class T>
int seqlock_cmd(const std::string& cmd, const std::string& name, long v) {
  if (cmd == "seqlock-create") {
    auto s = shmkit::SeqLock<T>::create(name);
    say("created");
    wait_line();
    std::printf("%.1f\n", value_of(s.read()));
    std::fflush(stdout);
    s.unlink();
    return 0;
  }
  shmkit::SeqLock<T>::attach(name).store(item<T>(v));
  say("stored");
  return 0;
}

template <class T>
int ring_cmd(const std::string& cmd, const std::string& name, long n) {
  if (cmd == "ring-create") {
    auto r = shmkit::BroadcastRing<T>::create(name, static_cast<std::uint64_t>(n));
    say("created");
    std::string line;
    std::getline(std::cin, line);
    const long count = std::atol(line.c_str());
    auto rd = r.reader_at(0);
    double sum = 0;
    for (long i = 0; i < count; ++i) {
      T v{};
      if (rd.read_for(v, std::chrono::seconds(10)).status != shmkit::BroadcastStatus::ok) return 4;
      sum += value_of(v);
    }
    std::printf("%.1f\n", sum);
    std::fflush(stdout);
    r.unlink();
    return 0;
  }
  auto r = shmkit::BroadcastRing<T>::attach(name);
  for (long i = 0; i < n; ++i) r.push(item<T>(i));
  say("pushed");
  return 0;
}

template <template <class> class Q>
int queue_typed(const std::string& cmd, const std::string& type, const std::string& name, long n) {
  if (type == "q") return queue_cmd<Q, std::int64_t>(cmd, name, n);
  if (type == "d") return queue_cmd<Q, double>(cmd, name, n);
  if (type == "pair") return queue_cmd<Q, Pair>(cmd, name, n);
  return 2;
}

template <class F>
int by_kind(const std::string& kind, F&& f) {
  if (kind == "mutex") return f(shmkit::Mutex{});
  if (kind == "rmutex") return f(shmkit::RecursiveMutex{});
  if (kind == "robust") return f(shmkit::RobustMutex{});
  if (kind == "semaphore") return f(shmkit::Semaphore{});
  if (kind == "event") return f(shmkit::Event{});
  return 2;
}

int run(int argc, char** argv) {
  if (argc < 3) return 2;
  const std::string cmd = argv[1];
  if (cmd == "create" && argc >= 4) {
    const unsigned arg = argc >= 5 ? static_cast<unsigned>(std::atoi(argv[4])) : 0;
    return by_kind(argv[2], [&](auto&& p) { return create<std::decay_t<decltype(p)>>(argv[3], arg); });
  }
  if (cmd == "hold" && argc >= 4) {
    return by_kind(argv[2], [&](auto&& p) -> int {
      using P = std::decay_t<decltype(p)>;
      if constexpr (std::is_same_v<P, shmkit::Event>)
        return 2;
      else
        return hold<P>(argv[3]);
    });
  }
  if (cmd == "acquire-timeout" && argc >= 5) {
    return by_kind(argv[2], [&](auto&& p) -> int {
      using P = std::decay_t<decltype(p)>;
      if constexpr (std::is_same_v<P, shmkit::Event>)
        return 2;
      else
        return acquire_timeout<P>(argv[3], std::atoi(argv[4]));
    });
  }
  if (cmd == "die-holding") {
    auto s = shmkit::StandaloneSync<shmkit::RobustMutex>::attach(argv[2]);
    if (s.get().lock() != shmkit::LockResult::acquired) return 3;
    say("held");
    std::_Exit(0);
  }
  if (cmd == "owner-died") {
    auto s = shmkit::StandaloneSync<shmkit::RobustMutex>::attach(argv[2]);
    const shmkit::LockResult r = s.get().lock();
    say(shmkit::to_string(r));
    if (r == shmkit::LockResult::owner_died) (void)s.get().make_consistent();
    if (shmkit::holds_lock(r)) (void)s.get().unlock();
    return 0;
  }
  if (cmd == "event-set") {
    shmkit::StandaloneSync<shmkit::Event>::attach(argv[2]).get().set();
    say("set");
    return 0;
  }
  if (cmd == "event-wait" && argc >= 4) {
    auto s = shmkit::StandaloneSync<shmkit::Event>::attach(argv[2]);
    say(s.get().wait_for(std::chrono::milliseconds(std::atoi(argv[3]))) ? "set" : "timeout");
    return 0;
  }
  if (cmd == "sem-release" && argc >= 4) {
    auto s = shmkit::StandaloneSync<shmkit::Semaphore>::attach(argv[2]);
    for (int i = 0; i < std::atoi(argv[3]); ++i) (void)s.get().release();
    say("released");
    return 0;
  }
  if ((cmd == "queue-create" || cmd == "queue-push" || cmd == "queue-pop") && argc >= 6) {
    const long n = std::atol(argv[5]);
    if (std::string(argv[2]) == "spsc") return queue_typed<shmkit::SpscQueue>(cmd, argv[3], argv[4], n);
    return queue_typed<shmkit::MpmcQueue>(cmd, argv[3], argv[4], n);
  }
  if ((cmd == "seqlock-create" || cmd == "seqlock-store" || cmd == "ring-create" || cmd == "ring-push") &&
      argc >= 4) {
    const std::string type = argv[2];
    const long n = argc >= 5 ? std::atol(argv[4]) : 0;
    const bool seq = cmd.rfind("seqlock", 0) == 0;
    if (type == "q")
      return seq ? seqlock_cmd<std::int64_t>(cmd, argv[3], n) : ring_cmd<std::int64_t>(cmd, argv[3], n);
    if (type == "d") return seq ? seqlock_cmd<double>(cmd, argv[3], n) : ring_cmd<double>(cmd, argv[3], n);
    if (type == "pair") return seq ? seqlock_cmd<Pair>(cmd, argv[3], n) : ring_cmd<Pair>(cmd, argv[3], n);
    return 2;
  }
  if (cmd == "atomic-add" && argc >= 5) {
    auto shm = shmkit::SharedMemory::attach(argv[2]);
    const std::size_t off = static_cast<std::size_t>(std::atol(argv[3]));
    if (off % 8 != 0 || off + 8 > shm.size()) return 2;
    auto* p = reinterpret_cast<std::int64_t*>(static_cast<char*>(shm.data()) + off);
    std::int64_t last = 0;
    for (long i = 0; i < std::atol(argv[4]); ++i) last = shmkit::AtomicRef<std::int64_t>(*p).fetch_add(1);
    // The waiters' futex word is the low half of the int64 (python/src/sync/atomic_ref.cpp).
    shmkit::futex_wake_all(*reinterpret_cast<shmkit::FutexWord*>(p));
    std::printf("%lld\n", static_cast<long long>(last));
    std::fflush(stdout);
    return 0;
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sync_peer: %s\n", e.what());
    return 1;
  }
}
