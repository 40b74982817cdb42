// Locks in shared memory: shmkit's Mutex, RecursiveMutex and RobustMutex
// against a process-shared pthread mutex, a robust process-shared pthread
// mutex, Boost.Interprocess interprocess_mutex and a POSIX sem_t (what
// CPython's multiprocessing.Lock is), all in the same binary; thread-only
// baselines std::mutex, tbb::spin_mutex, tbb::queuing_mutex.
//
//   uncontended/<lock>            one process, lock+unlock (ns per pair)
//   contended/<lock>/<mode>:<n>   n pinned processes (or threads) incrementing
//                                 a shared counter under the lock; ops/s are
//                                 counted only while all n run (see
//                                 sync_bench_harness.hpp); "handoff" is the
//                                 fraction of acquisitions that changed owner;
//                                 "runq_wait" the fraction of the window the
//                                 workers were runnable but had no CPU (expect
//                                 ~0 for 2 procs, ~0.5 for 4, ~0.75 for 8 on 2
//                                 CPUs; more means the machine was shared and
//                                 the sample is noise).
// Run: bench_sync --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
//      --benchmark_report_aggregates_only=true   (medians are the figures)
#include <benchmark/benchmark.h>

#include <cstdio>
#include <pthread.h>
#include <semaphore.h>

#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <cstdlib>
#include <mutex>
#include <string>
#include <tbb/queuing_mutex.h>
#include <tbb/spin_mutex.h>

#include "shmkit/shared_memory.hpp"
#include "shmkit/sync/mutex.hpp"
#include "shmkit/sync/recursive_mutex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/sync/spin.hpp"
#include "sync_bench_harness.hpp"

namespace {

using namespace std::chrono_literals;

// ------------------------------------------------------------ lock adapters
struct ShmkitMutex {
  shmkit::Mutex m;
  void lock() { m.lock(); }
  void unlock() { m.unlock(); }
};
struct ShmkitRecursive {
  shmkit::RecursiveMutex m;
  void lock() { m.lock(); }
  void unlock() { (void)m.unlock(); }
};
struct ShmkitRobust {
  shmkit::RobustMutex m;
  void lock() {
    if (m.lock() != shmkit::LockResult::acquired) std::abort();
  }
  void unlock() { (void)m.unlock(); }
};
template <bool Robust>
struct PthreadShared {
  pthread_mutex_t m;
  PthreadShared() {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (Robust) pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&m, &a);
    pthread_mutexattr_destroy(&a);
  }
  void lock() {
    if (pthread_mutex_lock(&m) != 0) std::abort();
  }
  void unlock() { pthread_mutex_unlock(&m); }
};
struct BoostIpc {
  boost::interprocess::interprocess_mutex m;
  void lock() { m.lock(); }
  void unlock() { m.unlock(); }
};
struct PosixSem {
  sem_t s;
  PosixSem() { sem_init(&s, 1, 1); }
  void lock() {
    while (sem_wait(&s) != 0) {
    }
  }
  void unlock() { sem_post(&s); }
};
struct StdMutex {
  std::mutex m;
  void lock() { m.lock(); }
  void unlock() { m.unlock(); }
};
struct TbbSpin {
  tbb::spin_mutex m;
  void lock() { m.lock(); }
  void unlock() { m.unlock(); }
};
// queuing_mutex needs a per-acquisition node: handled in the loop below.
struct TbbQueuing {
  tbb::queuing_mutex m;
};

template <class L>
struct Protected {
  alignas(64) L lock;
  alignas(64) std::uint64_t counter;
  std::uint32_t last_owner;
};

// ------------------------------------------------------------ uncontended
template <class L>
void BM_Uncontended(benchmark::State& state) {
  auto block = shmkit::SharedMemory::anonymous(sizeof(Protected<L>));
  auto* p = new (block.data()) Protected<L>{};
  for (auto _ : state) {
    if constexpr (std::is_same_v<L, TbbQueuing>) {
      tbb::queuing_mutex::scoped_lock g(p->lock.m);
      benchmark::DoNotOptimize(p->counter);
    } else {
      p->lock.lock();
      benchmark::DoNotOptimize(p->counter);
      p->lock.unlock();
    }
  }
  p->~Protected<L>();
}

// ------------------------------------------------------------ contended
template <class L>
void BM_Contended(benchmark::State& state, bool processes) {
  const int n = static_cast<int>(state.range(0));
  auto block = shmkit::SharedMemory::anonymous(sizeof(Protected<L>));
  auto* p = new (block.data()) Protected<L>{};
  bench::RunResult total;
  for (auto _ : state) {
    auto r = bench::run_workers(processes, n, 300ms,
                                [p](int me, std::atomic<std::uint32_t>& stop, bench::WorkerResult& out) {
                                  const auto id = static_cast<std::uint32_t>(me + 1);
                                  std::uint64_t ops = 0, handoffs = 0;
                                  while (stop.load(std::memory_order_relaxed) == 0) {
                                    if constexpr (std::is_same_v<L, TbbQueuing>) {
                                      tbb::queuing_mutex::scoped_lock g(p->lock.m);
                                      if (p->last_owner != id) ++handoffs, p->last_owner = id;
                                      ++p->counter;
                                    } else {
                                      p->lock.lock();
                                      if (p->last_owner != id) ++handoffs, p->last_owner = id;
                                      ++p->counter;
                                      p->lock.unlock();
                                    }
                                    ++ops;
                                  }
                                  out.ops = ops;
                                  out.handoffs = handoffs;
                                });
    state.SetIterationTime(r.seconds);
    total.seconds += r.seconds;
    total.ops += r.ops;
    total.runq_wait_fraction += r.runq_wait_fraction;
    total.handoffs += r.handoffs;
  }
  state.counters["Mops/s"] = total.ops_per_second() / 1e6;
  state.counters["runq_wait"] = total.runq_wait_fraction / static_cast<double>(state.iterations());
  state.counters["handoff"] = total.handoff_fraction();
  p->~Protected<L>();
}

template <class L>
void register_lock(const char* name, bool process_capable) {
  benchmark::RegisterBenchmark((std::string("uncontended/") + name).c_str(), BM_Uncontended<L>)->MinTime(0.2);
  if (process_capable) {
    auto* b = benchmark::RegisterBenchmark((std::string("contended/") + name + "/procs").c_str(),
                                           BM_Contended<L>, true);
    for (int n : bench::process_sweep()) b->Arg(n);
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark((std::string("contended/") + name + "/threads").c_str(), BM_Contended<L>,
                               false)
      ->Arg(2)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  register_lock<ShmkitMutex>("shmkit::Mutex", true);
  register_lock<ShmkitRecursive>("shmkit::RecursiveMutex", true);
  register_lock<ShmkitRobust>("shmkit::RobustMutex", true);
  register_lock<PthreadShared<false>>("pthread_pshared", true);
  register_lock<PthreadShared<true>>("pthread_robust_pshared", true);
  register_lock<BoostIpc>("boost_interprocess_mutex", true);
  register_lock<PosixSem>("sem_t", true);
  register_lock<StdMutex>("std::mutex", false);
  register_lock<TbbSpin>("tbb::spin_mutex", false);
  register_lock<TbbQueuing>("tbb::queuing_mutex", false);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("cpus", std::to_string(bench::cpu_count()));
  benchmark::AddCustomContext("placement", "worker i pinned to allowed CPU i % ncpu");
  const shmkit::SpinPolicy& spin = shmkit::spin_policy();
  char policy[160];
  std::snprintf(policy, sizeof policy, "%.1f ns per cpu_relax; budget %u ns = %u iterations%s",
                spin.ns_per_relax, spin.budget_ns, spin.iterations,
                spin.from_environment ? " (SHMKIT_SPIN_NS)" : "");
  benchmark::AddCustomContext("spin_policy", policy);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
