// bench/bench_order_book.cpp — the order book of examples/order_book.hpp:
// what a reader pays for the top of book, and what readers cost the writer.
// All workers are forked processes (bench::run_workers), the writer pinned to
// CPU 0 and the readers to the other CPUs; each row runs kWindow and the
// ratios are taken between rows of the same run (bench/targets.py).
//
//   order_book/top_read/seqlock      one reader process calls
//       OrderBook::try_top() (SeqLock::try_read, no lock) in a loop while
//       one writer applies orders at full speed. real_time = ns per
//       consistent snapshot (attempts that met a store in progress are
//       retried and counted in fail_fraction).
//   order_book/top_read/robust_mutex the same reader takes the RobustMutex
//       and computes the same TopOfBook from the book (top_locked()).
//       real_time = ns per snapshot.
//   order_book/writer/<n>readers     apply() at full speed with n reader
//       processes polling try_top(). real_time = ns per order.
// Counters: Morders/s (the writer), reader_Mreads/s, runq_wait (the share of
// the window workers spent runnable without a CPU: 5 processes on 2 CPUs
// are oversubscribed, and the row says so).
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <string>
#include <unistd.h>

#include "order_book.hpp"
#include "shmkit/shared_memory.hpp"
#include "sync_bench_harness.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kWindow = 300ms;

std::string bench_name(const std::string& tag) {
  return "shmkit_bench_ob_" + std::to_string(::getpid()) + "_" + tag;
}

struct alignas(64) ReaderStats {
  std::uint64_t ok;
  std::uint64_t failed;
};
struct StatsBlock {
  ReaderStats w[bench::kMaxWorkers];
};

enum class Read { seqlock, robust_mutex };

// Worker 0 applies the stream; workers 1..readers read the top of book.
// run_workers pins worker i to CPU i mod n; the readers are re-pinned here
// to the CPUs other than the writer's (read in the parent, before any pin),
// so that no reader shares the writer's CPU when there are two or more.
bench::RunResult run(order_book::OrderBook& book, int readers, Read how, StatsBlock* st) {
  auto* bp = &book;
  const std::vector<int> cpus = bench::allowed_cpus();
  return bench::run_workers(
      true, readers + 1, kWindow,
      [bp, how, st, cpus](int me, std::atomic<std::uint32_t>& stop, bench::WorkerResult& out) {
        if (me != 0 && cpus.size() > 1) {
          bench::pin_to_cpu(cpus[1 + static_cast<std::size_t>(me - 1) % (cpus.size() - 1)]);
        }
        if (me == 0) {
          std::uint64_t id = bp->applied();
          const std::uint64_t first = id;
          while (stop.load(std::memory_order_relaxed) == 0) {
            id = bp->apply(order_book::make_order(1, id)).next;
          }
          out.ops = id - first;
          return;
        }
        order_book::TopOfBook t{};
        std::uint64_t ok = 0, failed = 0;
        if (how == Read::seqlock) {
          while (stop.load(std::memory_order_relaxed) == 0) {
            if (bp->try_top(t))
              ++ok;
            else
              ++failed;
            benchmark::DoNotOptimize(t);
          }
        } else {
          while (stop.load(std::memory_order_relaxed) == 0) {
            if (bp->top_locked(t))
              ++ok;
            else
              ++failed;
            benchmark::DoNotOptimize(t);
          }
        }
        st->w[me] = {ok, failed};
        out.ops = 0;
      });
}

struct Fixture {
  order_book::OrderBook book = order_book::OrderBook::create(bench_name("book"), 1u << 16);
  shmkit::SharedMemory stats_block = shmkit::SharedMemory::anonymous(sizeof(StatsBlock));
  StatsBlock* st = new (stats_block.data()) StatsBlock{};
  ~Fixture() { book.unlink(); }
};

void BM_TopRead(benchmark::State& state, Read how) {
  for (auto _ : state) {
    Fixture f;
    const auto r = run(f.book, 1, how, f.st);
    const double reads = static_cast<double>(f.st->w[1].ok);
    const double failed = static_cast<double>(f.st->w[1].failed);
    state.SetIterationTime(reads > 0 ? r.seconds / reads : r.seconds);
    state.counters["reader_Mreads/s"] = reads / r.seconds / 1e6;
    state.counters["fail_fraction"] = reads + failed > 0 ? failed / (reads + failed) : 0;
    state.counters["writer_Morders/s"] = static_cast<double>(r.ops) / r.seconds / 1e6;
    state.counters["runq_wait"] = r.runq_wait_fraction;
  }
}

void BM_Writer(benchmark::State& state, int readers) {
  for (auto _ : state) {
    Fixture f;
    const auto r = run(f.book, readers, Read::seqlock, f.st);
    const double orders = static_cast<double>(r.ops);
    state.SetIterationTime(orders > 0 ? r.seconds / orders : r.seconds);
    double reads = 0;
    for (int i = 1; i <= readers; ++i) reads += static_cast<double>(f.st->w[i].ok);
    state.counters["Morders/s"] = orders / r.seconds / 1e6;
    if (readers > 0) state.counters["reader_Mreads/s"] = reads / readers / r.seconds / 1e6;
    state.counters["runq_wait"] = r.runq_wait_fraction;
  }
}

const bool registered = [] {
  auto reg = [](const std::string& name, auto fn) {
    return benchmark::RegisterBenchmark(name.c_str(), fn)
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kNanosecond);
  };
  reg("order_book/top_read/seqlock", [](benchmark::State& s) { BM_TopRead(s, Read::seqlock); });
  reg("order_book/top_read/robust_mutex", [](benchmark::State& s) { BM_TopRead(s, Read::robust_mutex); });
  for (int readers : {0, 1, 4}) {
    reg("order_book/writer/" + std::to_string(readers) + "readers",
        [readers](benchmark::State& s) { BM_Writer(s, readers); });
  }
  benchmark::AddCustomContext("placement", "writer on CPU 0; readers on the other CPUs");
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
