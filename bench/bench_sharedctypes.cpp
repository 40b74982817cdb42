// sharedctypes: Value/Array/AtomicValue against the bare operations they
// wrap, in the same binary, and against CPython (python3 subprocess).
//   value_inc/<lock>            Value<int64_t, L>::fetch_add, one process
//   bare_inc/<lock>             L::lock; ++x; L::unlock on the same layout
//   atomic_value/fetch_add      AtomicValue<int64_t>::fetch_add (seq_cst)
//   std_atomic/fetch_add        std::atomic<int64_t>::fetch_add on shm (seq_cst)
//   *_2p                        the same in 2 pinned processes (Mops/s)
//   array_copy_8MiB / memcpy_8MiB, heap vs named block creation
// Run with --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "python_baseline.hpp"
#include "shmkit/array.hpp"
#include "shmkit/value.hpp"
#include "sync_bench_harness.hpp"

namespace {

using namespace std::chrono_literals;
using shmkit::Mutex;
using shmkit::RecursiveMutex;
using shmkit::RobustMutex;

template <class L>
void BM_ValueInc(benchmark::State& state) {
  auto v = shmkit::Value<std::int64_t, L>::anonymous(0);
  for (auto _ : state) benchmark::DoNotOptimize(v.fetch_add(1));
}

// The same lock and counter, laid out as a Value lays them out, used bare.
template <class L>
struct Bare {
  L lock;
  alignas(64) std::int64_t x = 0;
};
template <class L>
void BM_BareInc(benchmark::State& state) {
  auto block = shmkit::SharedMemory::anonymous(4096);
  auto* b = new (block.data()) Bare<L>();
  for (auto _ : state) {
    (void)b->lock.lock();
    benchmark::DoNotOptimize(++b->x);
    (void)b->lock.unlock();
  }
  b->~Bare<L>();
}

void BM_AtomicValue(benchmark::State& state) {
  auto v = shmkit::AtomicValue<std::int64_t>::anonymous(0);
  for (auto _ : state) benchmark::DoNotOptimize(v.fetch_add(1));
}
void BM_StdAtomic(benchmark::State& state) {
  auto block = shmkit::SharedMemory::anonymous(4096);
  auto* a = new (block.data()) std::atomic<std::int64_t>(0);
  for (auto _ : state) benchmark::DoNotOptimize(a->fetch_add(1));
}

// Two pinned processes incrementing one counter; ops/s while both run.
template <class Inc>
void two_processes(benchmark::State& state, Inc inc) {
  bench::RunResult total;
  for (auto _ : state) {
    auto r = bench::run_workers(true, 2, 300ms,
                                [&](int, std::atomic<std::uint32_t>& stop, bench::WorkerResult& out) {
                                  std::uint64_t ops = 0;
                                  while (stop.load(std::memory_order_relaxed) == 0) {
                                    inc();
                                    ++ops;
                                  }
                                  out.ops = ops;
                                });
    state.SetIterationTime(r.seconds);
    total.seconds += r.seconds;
    total.ops += r.ops;
  }
  state.counters["Mops/s"] = total.ops_per_second() / 1e6;
}
void BM_ValueInc2p(benchmark::State& state) {
  auto v = shmkit::Value<std::int64_t>::anonymous(0);  // RecursiveMutex, CPython's default
  two_processes(state, [&] { v.fetch_add(1); });
}
void BM_ValueLockedIdiom2p(benchmark::State& state) {
  auto v = shmkit::Value<std::int64_t>::anonymous(0);
  two_processes(state, [&] {  // with v.get_lock(): v.value += 1
    std::scoped_lock g(v.get_lock());
    v.set_value(v.value() + 1);
  });
}
void BM_AtomicValue2p(benchmark::State& state) {
  auto v = shmkit::AtomicValue<std::int64_t>::anonymous(0);
  two_processes(state, [&] { v.fetch_add(1); });
}
void BM_StdAtomic2p(benchmark::State& state) {
  auto block = shmkit::SharedMemory::anonymous(4096);
  auto* a = new (block.data()) std::atomic<std::int64_t>(0);
  two_processes(state, [&] { a->fetch_add(1); });
}
void BM_CPythonValue2p(benchmark::State& state) {
  for (auto _ : state) {
    auto f = shmkit::bench::run_python_baseline("bench_sharedctypes.py", "0.5");
    state.SetIterationTime(0.5);
    state.counters["Mops/s"] = f.at("locked_increment_2p_ops_per_s") / 1e6;
  }
}
// CPython's 8 MiB Array('d') read: `key` is array_copy_bytes_per_s (a locked
// bytes(memoryview(a.get_obj())), the same work as copy_to) or
// array_slice_bytes_per_s (`a[:]`, which builds a list of floats).
void BM_CPythonArray(benchmark::State& state, const char* key) {
  for (auto _ : state) {
    auto f = shmkit::bench::run_python_baseline("bench_sharedctypes.py", "0");
    const double rate = f.at(key);
    state.SetIterationTime(8.0 * (1 << 20) / rate);
    state.counters["bytes_per_second"] = rate;
  }
}

constexpr std::size_t kCopyBytes = 8u << 20;
void BM_ArrayCopy(benchmark::State& state) {
  auto a = shmkit::Array<double>::anonymous(kCopyBytes / sizeof(double));
  std::vector<double> out(a.size(), 1.0);
  a.copy_from(out);
  for (auto _ : state) {
    a.copy_to(out);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kCopyBytes));
}
void BM_Memcpy(benchmark::State& state) {
  auto block = shmkit::SharedMemory::anonymous(kCopyBytes);
  std::vector<double> out(kCopyBytes / sizeof(double), 1.0);
  std::memcpy(block.data(), out.data(), kCopyBytes);
  for (auto _ : state) {
    std::memcpy(out.data(), block.data(), kCopyBytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kCopyBytes));
}

void BM_HeapValue(benchmark::State& state) {
  auto heap = shmkit::Heap::anonymous(1 << 20);
  for (auto _ : state) {
    auto v = shmkit::Value<std::int64_t>::create(heap, 1);
    benchmark::DoNotOptimize(v.get_obj());
    v.destroy();
  }
}
void BM_NamedValue(benchmark::State& state) {
  const std::string name = "shmkit_bench_value_" + std::to_string(::getpid());
  for (auto _ : state) {
    auto v = shmkit::Value<std::int64_t>::create(name, 1);
    benchmark::DoNotOptimize(v.get_obj());
    v.unlink();
  }
}

}  // namespace

BENCHMARK(BM_ValueInc<RecursiveMutex>)->Name("value_inc/RecursiveMutex");
BENCHMARK(BM_BareInc<RecursiveMutex>)->Name("bare_inc/RecursiveMutex");
BENCHMARK(BM_ValueInc<Mutex>)->Name("value_inc/Mutex");
BENCHMARK(BM_BareInc<Mutex>)->Name("bare_inc/Mutex");
BENCHMARK(BM_ValueInc<RobustMutex>)->Name("value_inc/RobustMutex");
BENCHMARK(BM_BareInc<RobustMutex>)->Name("bare_inc/RobustMutex");
BENCHMARK(BM_AtomicValue)->Name("atomic_value/fetch_add");
BENCHMARK(BM_StdAtomic)->Name("std_atomic/fetch_add");
BENCHMARK(BM_ValueInc2p)
    ->Name("value_inc_2p/RecursiveMutex")
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ValueLockedIdiom2p)
    ->Name("value_get_lock_idiom_2p/RecursiveMutex")
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AtomicValue2p)
    ->Name("atomic_value_2p/fetch_add")
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_StdAtomic2p)
    ->Name("std_atomic_2p/fetch_add")
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CPythonValue2p)
    ->Name("cpython/value_get_lock_idiom_2p")
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_CPythonArray, copy, "array_copy_bytes_per_s")
    ->Name("cpython/array_locked_bytes_copy/8MiB")
    ->Iterations(1)
    ->UseManualTime();
BENCHMARK_CAPTURE(BM_CPythonArray, slice, "array_slice_bytes_per_s")
    ->Name("cpython/array_slice_list/8MiB")
    ->Iterations(1)
    ->UseManualTime();
BENCHMARK(BM_ArrayCopy)->Name("array_copy_to/8MiB");
BENCHMARK(BM_Memcpy)->Name("memcpy/8MiB");
BENCHMARK(BM_HeapValue)->Name("heap_value_create_destroy");
BENCHMARK(BM_NamedValue)->Name("named_value_create_unlink");

BENCHMARK_MAIN();
