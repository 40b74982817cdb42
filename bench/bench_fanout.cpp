// bench/bench_fanout.cpp — one writer, several reader processes
// (BroadcastRing, SeqLock, one SpscQueue per reader), in one binary so every
// ratio comes from one run. All workers are forked processes
// started together by bench::run_workers (sync_bench_harness.hpp); 8-byte
// items; each window is kWindow.
//
// Placement: the writer (worker 0) has CPU 0 to itself; every reader is
// re-pinned onto the other CPUs (on 2 CPUs all readers share CPU 1). So a
// writer figure measures what the readers cost it through the cache, not
// time-slicing with them; reader figures with 2 or 4 readers on one CPU
// include that time-slicing (the same for both sides of every ratio).
// Read runq_wait next to every figure: when other jobs take the CPUs, the
// writer and its readers run in turns instead of together, which hides the
// cache-line traffic between them and flatters whichever side causes more
// of it (on 2 busy CPUs the BroadcastRing publish ratios with 1 and 2
// subscribers came out about 3-4x better than in the quiet repetitions of
// the same runs).
//
//   fanout/broadcast_ring/<n>subs    publisher push()es a counter into one
//       BroadcastRing (capacity kCap) as fast as it can; n subscribers poll
//       BroadcastReader::try_read. real_time = ns per item published.
//   fanout/spsc_per_sub/<n>subs      the same publisher loop into n
//       SpscQueues (capacity kCap), one per subscriber, with try_push: an item
//       that does not fit a full queue is dropped for that subscriber (the
//       ring's semantics: the writer never waits; lapped readers lose items).
//   fanout/spsc_per_sub_lossless/<n>subs  the publisher waits (spins) for
//       room in each queue: nothing lost, publish rate = slowest subscriber.
//     Counters: Mitems/s (published), delivered_Mitems/s (per subscriber,
//     mean), lost_Mitems/s (per subscriber: ring laps or queue drops),
//     lag_p50 / lag_max (published minus consumed, in items, sampled by each
//     subscriber after every 64th item it receives: BroadcastReader::backlog()
//     or SpscQueue::size(); p50 = median of the subscribers' medians). The
//     ring's backlog counts items already lapped (it can exceed kCap); a
//     queue's cannot exceed kCap (what does not fit is dropped or waited for).
//   seqlock_writer/64B/<n>readers/<try_read|reader>  store() of a 64-byte
//       value in a loop with n reader processes looping on SeqLock::try_read
//       (or SeqLockReader::try_read). real_time = ns per store. Counters:
//       Mstores/s, reader_ok_Mreads/s (per reader), reader_fail_fraction.
// SpscQueue against other SPSC rings and the spin ping-pong: bench_lockfree's
// spsc/ rows (measured in rounds, under one placement).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "shmkit/lockfree/broadcast_ring.hpp"
#include "shmkit/lockfree/seqlock.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/shared_memory.hpp"
#include "sync_bench_harness.hpp"

using namespace std::chrono_literals;
using Item = std::uint64_t;

namespace {

constexpr auto kWindow = 300ms;
constexpr std::uint64_t kCap = 1024;

std::string bench_name(const std::string& tag) {
  return "shmkit_bench_fo_" + std::to_string(::getpid()) + "_" + tag;
}

// Readers (index >= 1) off CPU 0, which the writer keeps to itself.
void pin_reader(int index) {
  const int ncpu = bench::cpu_count();
  if (ncpu >= 2) bench::pin_to(1 + (index - 1) % (ncpu - 1));
}

// What the harness's WorkerResult does not carry, one line per worker.
struct alignas(64) ReaderStats {
  std::uint64_t delivered;
  std::uint64_t lost;
  std::uint64_t failed;
  std::uint64_t lag_p50;
  std::uint64_t lag_max;
};
struct StatsBlock {
  ReaderStats w[bench::kMaxWorkers];
};

struct SharedStats {
  shmkit::SharedMemory block = shmkit::SharedMemory::anonymous(sizeof(StatsBlock));
  StatsBlock* s = new (block.data()) StatsBlock{};
};

// Backlog samples of one subscriber; at most kMaxSamples kept.
class LagSampler {
 public:
  LagSampler() { samples_.reserve(kMaxSamples); }
  void maybe_sample(std::uint64_t backlog) {
    if (samples_.size() < kMaxSamples) samples_.push_back(backlog);
  }
  void write(ReaderStats& out) {
    if (samples_.empty()) return;
    auto mid = samples_.begin() + static_cast<std::ptrdiff_t>(samples_.size() / 2);
    std::nth_element(samples_.begin(), mid, samples_.end());
    out.lag_p50 = *mid;
    out.lag_max = *std::max_element(samples_.begin(), samples_.end());
  }

 private:
  static constexpr std::size_t kMaxSamples = 1 << 18;
  std::vector<std::uint64_t> samples_;
};
// One lag sample per kSampleEvery items a subscriber receives: how far behind
// the newest item it is when it consumes (idle polls are not sampled).
constexpr std::uint64_t kSampleEvery = 64;

void report_fanout(benchmark::State& state, const bench::RunResult& r, const StatsBlock& st, int subs,
                   const std::vector<std::uint64_t>& dropped) {
  const double published = static_cast<double>(r.ops);
  state.SetIterationTime(published > 0 ? r.seconds / published : r.seconds);
  double delivered = 0, lost = 0;
  std::vector<std::uint64_t> p50;
  std::uint64_t lag_max = 0;
  for (int i = 1; i <= subs; ++i) {
    delivered += static_cast<double>(st.w[i].delivered);
    lost += static_cast<double>(st.w[i].lost);
    p50.push_back(st.w[i].lag_p50);
    lag_max = std::max(lag_max, st.w[i].lag_max);
  }
  for (std::uint64_t d : dropped) lost += static_cast<double>(d);
  std::nth_element(p50.begin(), p50.begin() + static_cast<std::ptrdiff_t>(p50.size() / 2), p50.end());
  state.counters["Mitems/s"] = published / r.seconds / 1e6;
  state.counters["delivered_Mitems/s"] = delivered / subs / r.seconds / 1e6;
  state.counters["lost_Mitems/s"] = lost / subs / r.seconds / 1e6;
  state.counters["lag_p50"] = static_cast<double>(p50[p50.size() / 2]);
  state.counters["lag_max"] = static_cast<double>(lag_max);
  state.counters["runq_wait"] = r.runq_wait_fraction;
}

// ------------------------------------------------------------ BroadcastRing
void BM_FanoutRing(benchmark::State& state, int subs) {
  for (auto _ : state) {
    auto ring = shmkit::BroadcastRing<Item>::create(bench_name("ring"), kCap);
    SharedStats stats;
    StatsBlock* st = stats.s;
    auto* rp = &ring;
    auto r = bench::run_workers(true, subs + 1, kWindow,
                                [rp, st](int me, std::atomic<std::uint32_t>& stop, bench::WorkerResult& out) {
                                  if (me == 0) {
                                    Item v = 0;
                                    while (stop.load(std::memory_order_relaxed) == 0) rp->push(v++);
                                    out.ops = v;
                                    return;
                                  }
                                  pin_reader(me);
                                  auto rd = rp->reader();
                                  LagSampler lag;
                                  ReaderStats& s = st->w[me];
                                  Item v;
                                  while (stop.load(std::memory_order_relaxed) == 0) {
                                    const shmkit::BroadcastResult res = rd.try_read(v);
                                    if (res.status == shmkit::BroadcastStatus::ok) {
                                      if (++s.delivered % kSampleEvery == 0) lag.maybe_sample(rd.backlog());
                                    } else if (res.status == shmkit::BroadcastStatus::lapped) {
                                      s.lost += res.lost;
                                    }
                                  }
                                  lag.write(s);
                                  out.ops = 0;
                                });
    ring.unlink();
    report_fanout(state, r, *st, subs, {});
  }
}

// ------------------------------------------------------------ SpscQueue per subscriber
void BM_FanoutSpsc(benchmark::State& state, int subs, bool lossless) {
  for (auto _ : state) {
    std::vector<shmkit::SpscQueue<Item>> qs;
    for (int i = 0; i < subs; ++i) {
      qs.push_back(shmkit::SpscQueue<Item>::create(bench_name("fan" + std::to_string(i)), kCap));
    }
    SharedStats stats;
    StatsBlock* st = stats.s;
    // The publisher's per-queue drop counts, returned through its stats line
    // (worker 0's `lost` holds the sum; per-queue detail is not needed).
    auto* q = qs.data();
    auto r = bench::run_workers(
        true, subs + 1, kWindow,
        [q, st, subs, lossless](int me, std::atomic<std::uint32_t>& stop, bench::WorkerResult& out) {
          if (me == 0) {
            Item v = 0;
            std::uint64_t dropped = 0;
            while (stop.load(std::memory_order_relaxed) == 0) {
              for (int i = 0; i < subs; ++i) {
                if (q[i].try_push(v)) continue;
                if (!lossless) {
                  ++dropped;
                  continue;
                }
                while (!q[i].try_push(v)) {
                  if (stop.load(std::memory_order_relaxed)) goto done;
                }
              }
              ++v;
            }
          done:
            st->w[0].lost = dropped;
            out.ops = v;
            return;
          }
          pin_reader(me);
          auto& mine = q[me - 1];
          LagSampler lag;
          ReaderStats& s = st->w[me];
          Item v, sum = 0;
          while (stop.load(std::memory_order_relaxed) == 0) {
            if (!mine.try_pop(v)) continue;
            sum += v;  // used, as the ring's reader uses its copy
            if (++s.delivered % kSampleEvery == 0) lag.maybe_sample(mine.size());
          }
          benchmark::DoNotOptimize(sum);
          lag.write(s);
          out.ops = 0;
        });
    for (auto& x : qs) x.unlink();
    report_fanout(state, r, *st, subs, {st->w[0].lost});
  }
}

// ------------------------------------------------------------ SeqLock
struct V64 {
  std::uint64_t w[8];
};

void BM_SeqLockWriter(benchmark::State& state, int readers, bool use_reader) {
  for (auto _ : state) {
    auto lock = shmkit::SeqLock<V64>::create(bench_name("seq"), V64{});
    SharedStats stats;
    StatsBlock* st = stats.s;
    auto* lp = &lock;
    auto r = bench::run_workers(
        true, readers + 1, kWindow,
        [lp, st, use_reader](int me, std::atomic<std::uint32_t>& stop, bench::WorkerResult& out) {
          if (me == 0) {
            V64 v{};
            std::uint64_t n = 0;
            while (stop.load(std::memory_order_relaxed) == 0) {
              ++v.w[0];
              lp->store(v);
              ++n;
            }
            out.ops = n;
            return;
          }
          pin_reader(me);
          ReaderStats& s = st->w[me];
          V64 v;
          std::uint64_t ok = 0, failed = 0;
          if (use_reader) {
            auto rd = lp->reader();
            while (stop.load(std::memory_order_relaxed) == 0) {
              if (rd.try_read(v))
                ++ok;
              else
                ++failed;
              benchmark::DoNotOptimize(v);
            }
          } else {
            while (stop.load(std::memory_order_relaxed) == 0) {
              if (lp->try_read(v))
                ++ok;
              else
                ++failed;
              benchmark::DoNotOptimize(v);
            }
          }
          s.delivered = ok;
          s.failed = failed;
          out.ops = 0;
        });
    lock.unlink();
    const double stores = static_cast<double>(r.ops);
    state.SetIterationTime(stores > 0 ? r.seconds / stores : r.seconds);
    double ok = 0, failed = 0;
    for (int i = 1; i <= readers; ++i) {
      ok += static_cast<double>(st->w[i].delivered);
      failed += static_cast<double>(st->w[i].failed);
    }
    state.counters["Mstores/s"] = stores / r.seconds / 1e6;
    if (readers > 0) {
      state.counters["reader_ok_Mreads/s"] = ok / readers / r.seconds / 1e6;
      state.counters["reader_fail_fraction"] = ok + failed > 0 ? failed / (ok + failed) : 0;
    }
    state.counters["runq_wait"] = r.runq_wait_fraction;
  }
}

// ------------------------------------------------------------ registration
const bool registered = [] {
  auto reg = [](const std::string& name, auto fn) {
    return benchmark::RegisterBenchmark(name.c_str(), fn)
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kNanosecond);
  };
  for (int subs : {1, 2, 4}) {
    const std::string n = "/" + std::to_string(subs) + "subs";
    reg("fanout/broadcast_ring" + n, [subs](benchmark::State& s) { BM_FanoutRing(s, subs); });
    reg("fanout/spsc_per_sub" + n, [subs](benchmark::State& s) { BM_FanoutSpsc(s, subs, false); });
    reg("fanout/spsc_per_sub_lossless" + n, [subs](benchmark::State& s) { BM_FanoutSpsc(s, subs, true); });
  }
  for (int readers : {0, 1, 2}) {
    const std::string n = "seqlock_writer/64B/" + std::to_string(readers) + "readers";
    reg(n + "/try_read", [readers](benchmark::State& s) { BM_SeqLockWriter(s, readers, false); });
  }
  reg("seqlock_writer/64B/1readers/reader", [](benchmark::State& s) { BM_SeqLockWriter(s, 1, true); });

  benchmark::AddCustomContext("placement", "writer/producer on CPU 0; readers/subscribers on the other CPUs");
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
