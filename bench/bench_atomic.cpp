// fetch_add on a counter in shared memory: shmkit::Atomic<uint64_t> (Boost
// ipc_atomic) against a raw std::atomic<uint64_t> on the same kind of block.
//   uncontended/<type>          one process
//   contended/<type>/procs:<n>  n pinned processes, ops/s while all run
// Run with --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true.
#include <benchmark/benchmark.h>

#include <atomic>
#include <string>

#include "shmkit/atomic.hpp"
#include "shmkit/shared_memory.hpp"
#include "sync_bench_harness.hpp"

namespace {

using namespace std::chrono_literals;

template <class A>
void BM_Uncontended(benchmark::State& state) {
  auto block = shmkit::SharedMemory::anonymous(4096);
  auto* a = new (block.data()) A();
  for (auto _ : state) {
    benchmark::DoNotOptimize(a->fetch_add(1, std::memory_order_relaxed));
  }
}

template <class A>
void BM_Contended(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto block = shmkit::SharedMemory::anonymous(4096);
  auto* a = new (block.data()) A();
  bench::RunResult total;
  for (auto _ : state) {
    auto r = bench::run_workers(true, n, 300ms,
                                [a](int, std::atomic<std::uint32_t>& stop, bench::WorkerResult& out) {
                                  std::uint64_t ops = 0;
                                  while (stop.load(std::memory_order_relaxed) == 0) {
                                    benchmark::DoNotOptimize(a->fetch_add(1, std::memory_order_relaxed));
                                    ++ops;
                                  }
                                  out.ops = ops;
                                });
    state.SetIterationTime(r.seconds);
    total.seconds += r.seconds;
    total.ops += r.ops;
    total.runq_wait_fraction += r.runq_wait_fraction;
  }
  state.counters["Mops/s"] = total.ops_per_second() / 1e6;
  state.counters["runq_wait"] = total.runq_wait_fraction / static_cast<double>(state.iterations());
}

}  // namespace

int main(int argc, char** argv) {
  // boost::memory_order and std::memory_order are distinct enums; Atomic's
  // fetch_add takes Boost's, so shim it.
  struct Shmkit : shmkit::Atomic<std::uint64_t> {
    std::uint64_t fetch_add(std::uint64_t v, std::memory_order) noexcept {
      return shmkit::Atomic<std::uint64_t>::fetch_add(v, shmkit::memory_order::relaxed);
    }
  };
  using Std = std::atomic<std::uint64_t>;
  benchmark::RegisterBenchmark("uncontended/shmkit::Atomic", BM_Uncontended<Shmkit>)->MinTime(0.2);
  benchmark::RegisterBenchmark("uncontended/std::atomic", BM_Uncontended<Std>)->MinTime(0.2);
  benchmark::RegisterBenchmark("contended/shmkit::Atomic/procs", BM_Contended<Shmkit>)
      ->Arg(2)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("contended/std::atomic/procs", BM_Contended<Std>)
      ->Arg(2)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
