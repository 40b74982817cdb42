// bench/sync_bench_harness.hpp — run a locked (or atomic) loop in N pinned
// processes or threads for a fixed window and count only the operations done
// while ALL of them were running.
//
// Each worker: pin to CPU (index % ncpu), announce itself, wait until every
// worker has announced (so nobody runs alone at the start), then loop until
// the parent raises `stop`. The parent times the window from the moment the
// last worker started to the moment it raises stop. Operations after stop is
// seen are not counted; each worker reports its count and how many of its
// acquisitions followed an acquisition by another worker ("handoffs"), and
// how long it waited for a CPU while runnable (a noise gauge: on a shared
// machine another job's compile shows up here).
#pragma once

#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "shmkit/shared_memory.hpp"

namespace bench {

inline int cpu_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set);
}

// The CPUs the calling thread may run on. Read it before pinning: a process
// forked after its parent pinned itself inherits that one CPU.
inline std::vector<int> allowed_cpus() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ::sched_getaffinity(0, sizeof allowed, &allowed);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  }
  return cpus;
}

inline void pin_to_cpu(int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  ::sched_setaffinity(0, sizeof one, &one);  // 0 = calling thread
}

inline void pin_to(int index) {
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.empty()) return;
  pin_to_cpu(cpus[static_cast<std::size_t>(index) % cpus.size()]);
}

// The CPUs that share the level-`level` cache of `cpu` (its
// /sys/devices/system/cpu/cpuN/cache/indexK/shared_cpu_list, a list such as
// "0-1,4"); empty when sysfs does not say.
inline std::vector<int> cache_sharers(int cpu, int level) {
  std::vector<int> out;
  for (int k = 0; k < 8; ++k) {
    const std::string dir =
        "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/cache/index" + std::to_string(k);
    std::ifstream lv(dir + "/level"), ty(dir + "/type"), list(dir + "/shared_cpu_list");
    int l = 0;
    std::string type, text;
    if (!(lv >> l) || !(ty >> type) || !(list >> text)) continue;
    if (l != level || type == "Instruction") continue;
    std::size_t pos = 0;
    while (pos < text.size()) {
      const std::size_t comma = std::min(text.find(',', pos), text.size());
      const std::string part = text.substr(pos, comma - pos);
      const std::size_t dash = part.find('-');
      const int lo = std::stoi(part.substr(0, dash));
      const int hi = dash == std::string::npos ? lo : std::stoi(part.substr(dash + 1));
      for (int c = lo; c <= hi; ++c) out.push_back(c);
      pos = comma + 1;
    }
  }
  return out;
}

// Whether CPUs a and b share the level-`level` cache: 1 yes, 0 no, -1 unknown.
inline int share_cache(int a, int b, int level) {
  if (a < 0 || b < 0) return -1;
  if (a == b) return 1;
  const std::vector<int> s = cache_sharers(a, level);
  if (s.empty()) return -1;
  return std::find(s.begin(), s.end(), b) != s.end() ? 1 : 0;
}

constexpr int kMaxWorkers = 64;

// The process counts a scaling benchmark sweeps: powers of two from 2 up to
// the CPUs this process may use, the CPU count itself, then 2x and 4x that
// (deliberately oversubscribed), at most kMaxWorkers. 2 CPUs: 2, 4, 8;
// 16 CPUs: 2, 4, 8, 16, 32, 64. All even, so producer/consumer pairs split.
inline std::vector<int> process_sweep() {
  const int ncpu = cpu_count();
  std::vector<int> sweep;
  for (int n = 2; n <= ncpu; n *= 2) sweep.push_back(n);
  const int even = ncpu % 2 == 0 ? ncpu : ncpu + 1;
  for (int n : {even, 2 * even, 4 * even}) sweep.push_back(n);
  std::sort(sweep.begin(), sweep.end());
  sweep.erase(std::unique(sweep.begin(), sweep.end()), sweep.end());
  std::erase_if(sweep, [](int n) { return n < 2 || n > kMaxWorkers; });
  return sweep;
}

struct alignas(64) WorkerResult {
  std::uint64_t ops;
  std::uint64_t handoffs;
  std::int64_t runq_wait_ns;  // runnable but not running during the window
  int cpu_start;              // sched_getcpu() as the loop began and as it ended
  int cpu_end;
};

// Nanoseconds this thread spent runnable but waiting for a CPU (the second
// field of /proc/thread-self/schedstat); -1 if unavailable.
inline std::int64_t runqueue_wait_ns() {
  std::FILE* f = std::fopen("/proc/thread-self/schedstat", "r");
  if (!f) return -1;
  long long on_cpu = 0, waited = -1;
  if (std::fscanf(f, "%lld %lld", &on_cpu, &waited) != 2) waited = -1;
  std::fclose(f);
  return waited;
}

struct Control {
  alignas(64) std::atomic<std::uint32_t> announced;
  alignas(64) std::atomic<std::uint32_t> stop;
  alignas(64) std::atomic<std::int64_t> all_started_ns;  // steady_clock ns, set once
  WorkerResult results[kMaxWorkers];
};

struct RunResult {
  double seconds = 0;
  std::uint64_t ops = 0;
  std::uint64_t handoffs = 0;
  // Sum over workers of their run-queue wait / (workers x window): 0 when
  // every worker had a CPU whenever it was runnable. With n workers on c
  // CPUs expect about 1 - c/n; above that, something else took the CPUs.
  double runq_wait_fraction = 0;
  // Where each worker ran: sched_getcpu() as its loop began and ended.
  std::vector<int> cpu_start, cpu_end;
  double ops_per_second() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
  double handoff_fraction() const {
    return ops > 0 ? static_cast<double>(handoffs) / static_cast<double>(ops) : 0;
  }
};

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// body(worker_index, stop_flag, result&) runs the loop until stop is seen.
template <class Body>
void worker_main(Control* ctl, int index, int n, Body& body) {
  pin_to(index);
  ctl->announced.fetch_add(1);
  while (ctl->announced.load() < static_cast<std::uint32_t>(n)) ::sched_yield();
  std::int64_t expected = 0;
  ctl->all_started_ns.compare_exchange_strong(expected, now_ns());
  const std::int64_t wait0 = runqueue_wait_ns();
  ctl->results[index].cpu_start = ::sched_getcpu();
  body(index, ctl->stop, ctl->results[index]);
  ctl->results[index].cpu_end = ::sched_getcpu();
  const std::int64_t wait1 = runqueue_wait_ns();
  ctl->results[index].runq_wait_ns = (wait0 < 0 || wait1 < 0) ? 0 : wait1 - wait0;
}

// Runs `n` processes (fork) or threads for `window`; body as above.
template <class Body>
RunResult run_workers(bool processes, int n, std::chrono::milliseconds window, Body body) {
  auto block = shmkit::SharedMemory::anonymous(sizeof(Control));
  auto* ctl = new (block.data()) Control{};
  std::vector<pid_t> kids;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    if (processes) {
      pid_t pid = ::fork();
      if (pid == 0) {
        worker_main(ctl, i, n, body);
        ::_exit(0);
      }
      kids.push_back(pid);
    } else {
      threads.emplace_back([&, i] { worker_main(ctl, i, n, body); });
    }
  }
  while (ctl->all_started_ns.load() == 0) ::sched_yield();
  std::this_thread::sleep_for(window);
  ctl->stop.store(1);
  const std::int64_t end = now_ns();
  for (pid_t k : kids) {
    int st = 0;
    ::waitpid(k, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      std::fprintf(stderr, "bench worker failed\n");
      std::abort();
    }
  }
  for (auto& t : threads) t.join();
  RunResult r;
  r.seconds = static_cast<double>(end - ctl->all_started_ns.load()) * 1e-9;
  std::int64_t waited = 0;
  for (int i = 0; i < n; ++i) {
    r.ops += ctl->results[i].ops;
    r.handoffs += ctl->results[i].handoffs;
    waited += ctl->results[i].runq_wait_ns;
    r.cpu_start.push_back(ctl->results[i].cpu_start);
    r.cpu_end.push_back(ctl->results[i].cpu_end);
  }
  if (r.seconds > 0) r.runq_wait_fraction = static_cast<double>(waited) * 1e-9 / (n * r.seconds);
  return r;
}

}  // namespace bench
