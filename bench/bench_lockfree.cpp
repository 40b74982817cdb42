// bench/bench_lockfree.cpp — SpscQueue, MpmcQueue, SeqLock and the
// baselines, in one binary so ratios come from one run.
//
//   tput/<impl>/<capacity>/<procs|threads>  one producer, one consumer on the
//       two pinned CPUs (bench::run_workers), 8-byte items, try_push/try_pop
//       loops; real_time = ns per item delivered (manual time = window / items).
//   rtt/<impl>/<capacity>/<procs|threads>   ping-pong through two queues;
//       real_time = ns per round trip.
//   rtt/spin_pingpong/...                   two atomics on separate lines: the
//       physical limit of a cross-core round trip.
//   tput/vyukov_bounded[_padded]/...       a Vyukov bounded MPMC written here
//       from the published design (no crash recovery), the baseline of
//       MpmcQueue's fast path; _padded: one cell per cache line (rigtorp's
//       layout).
//   mpmc_scaling/shmkit_mpmc/<n>procs       n/2 producers, n/2 consumers on the
//       two CPUs, blocking push_for/pop_for (spin, then futex).
//   seqlock_read/...                        an unchanged 64-byte value: SeqLock
//       try_read (word copy every time), SeqLockReader::try_read (local
//       snapshot while the sequence is unchanged) vs a plain 64-byte copy
//       from shared memory.
// Run: bench_lockfree --benchmark_repetitions=5
//        --benchmark_enable_random_interleaving=true --benchmark_format=json
// and bench/compare.py on the JSON. Counters: Mitems/s, runq_wait (the share
// of the window the workers waited for a CPU: noise from other jobs).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/lockfree/queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>
#include <chrono>
#include <concurrentqueue/concurrentqueue.h>
#include <cstring>
#include <memory>
#include <new>
#include <readerwriterqueue/readerwriterqueue.h>
#include <string>
#include <tbb/concurrent_queue.h>

#include "python_baseline.hpp"
#include "round_trip_harness.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/lockfree/seqlock.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/shared_memory.hpp"
#include "sync_bench_harness.hpp"

using namespace std::chrono_literals;
using Item = std::uint64_t;

namespace {

constexpr auto kWindow = 300ms;

std::string bench_name(const char* tag) {
  return "shmkit_bench_lf_" + std::to_string(::getpid()) + "_" + tag;
}

// ------------------------------------------------------------ adaptors
// Each: constructible in a zeroed shared block (process-capable ones) or on
// the heap; try_push/try_pop of one Item.

template <std::size_t Cap>
struct BoostSpsc {
  boost::lockfree::spsc_queue<Item, boost::lockfree::capacity<Cap>> q;
  bool try_push(Item v) { return q.push(v); }
  bool try_pop(Item& v) { return q.pop(v); }
};
template <std::size_t Cap>
struct BoostQueue {
  // capacity<> makes it fixed-size with an inline node array (index-based
  // tagged pointers), so it works in a shared block across fork.
  boost::lockfree::queue<Item, boost::lockfree::capacity<(Cap < 65535 ? Cap : 65534)>> q;
  bool try_push(Item v) { return q.bounded_push(v); }
  bool try_pop(Item& v) { return q.pop(v); }
};
template <std::size_t Cap>
struct MoodyRwq {
  moodycamel::ReaderWriterQueue<Item> q{Cap};
  bool try_push(Item v) { return q.try_enqueue(v); }
  bool try_pop(Item& v) { return q.try_dequeue(v); }
};
template <std::size_t Cap>
struct MoodyCq {
  moodycamel::ConcurrentQueue<Item> q{Cap};
  bool try_push(Item v) { return q.try_enqueue(v); }
  bool try_pop(Item& v) { return q.try_dequeue(v); }
};
template <std::size_t Cap>
struct TbbBounded {
  tbb::concurrent_bounded_queue<Item> q;
  TbbBounded() { q.set_capacity(Cap); }
  bool try_push(Item v) { return q.try_push(v); }
  bool try_pop(Item& v) { return q.try_pop(v); }
};

// A bounded MPMC queue written here from Dmitry Vyukov's published design
// ("Bounded MPMC queue", 1024cores.net, 2010), the design rigtorp/MPMCQueue
// also follows: one sequence word per cell (pos: free for the producer of
// pos; pos + 1: full for its consumer; the consumer hands the cell on with
// pos + capacity), the position claimed with one CAS on the shared
// enqueue (dequeue) counter, then a plain write and a release store of the
// cell's sequence. No claimant record, so no crash recovery: the contender
// MpmcQueue must match. Cells inline (no pointer), so it works in a shared
// block across fork. SlotAlign 16: Vyukov's packed cells (4 per 64-byte
// line); 64: rigtorp's layout, one cell per cache line.
template <std::size_t Cap, std::size_t SlotAlign>
struct VyukovBounded {
  static_assert((Cap & (Cap - 1)) == 0 && Cap >= 2);
  struct alignas(SlotAlign) Cell {
    std::atomic<std::uint64_t> seq;
    Item data;
  };
  alignas(128) std::atomic<std::uint64_t> enqueue_pos{0};
  alignas(128) std::atomic<std::uint64_t> dequeue_pos{0};
  alignas(128) Cell cells[Cap];
  VyukovBounded() {
    for (std::uint64_t i = 0; i < Cap; ++i) cells[i].seq.store(i, std::memory_order_relaxed);
  }
  bool try_push(Item v) {
    std::uint64_t pos = enqueue_pos.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells[pos & (Cap - 1)];
      const std::uint64_t seq = c.seq.load(std::memory_order_acquire);
      const auto dif = static_cast<std::int64_t>(seq - pos);
      if (dif == 0) {
        if (enqueue_pos.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          c.data = v;
          c.seq.store(pos + 1, std::memory_order_release);
          return true;
        }
      } else if (dif < 0) {
        return false;
      } else {
        pos = enqueue_pos.load(std::memory_order_relaxed);
      }
    }
  }
  bool try_pop(Item& v) {
    std::uint64_t pos = dequeue_pos.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells[pos & (Cap - 1)];
      const std::uint64_t seq = c.seq.load(std::memory_order_acquire);
      const auto dif = static_cast<std::int64_t>(seq - (pos + 1));
      if (dif == 0) {
        if (dequeue_pos.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          v = c.data;
          c.seq.store(pos + Cap, std::memory_order_release);
          return true;
        }
      } else if (dif < 0) {
        return false;
      } else {
        pos = dequeue_pos.load(std::memory_order_relaxed);
      }
    }
  }
};

// A factory gives a queue object shared by both workers, and a cleanup.
template <class Q>
struct InShm {  // placement-new into an anonymous shared block (fork-shared)
  shmkit::SharedMemory block = shmkit::SharedMemory::anonymous(sizeof(Q) + 64);
  Q* q = new (block.data()) Q();
  ~InShm() { q->~Q(); }
};
template <class Q>
struct OnHeap {
  std::unique_ptr<Q> owner = std::make_unique<Q>();
  Q* q = owner.get();
};

template <template <class> class Queue>
struct ShmkitNamed {
  std::string name;
  Queue<Item> h;
  explicit ShmkitNamed(std::uint64_t cap, const char* tag)
      : name(bench_name(tag)), h(Queue<Item>::create(name, cap)) {}
  ~ShmkitNamed() { h.unlink(); }
  bool try_push(Item v) { return h.try_push(v); }
  bool try_pop(Item& v) { return h.try_pop(v); }
};

struct MsgQueue {
  std::string name;
  std::unique_ptr<boost::interprocess::message_queue> mq;
  explicit MsgQueue(std::size_t cap, const char* tag) : name(bench_name(tag)) {
    boost::interprocess::message_queue::remove(name.c_str());
    mq = std::make_unique<boost::interprocess::message_queue>(boost::interprocess::create_only, name.c_str(),
                                                              cap, sizeof(Item));
  }
  ~MsgQueue() {
    mq.reset();
    boost::interprocess::message_queue::remove(name.c_str());
  }
  bool try_push(Item v) { return mq->try_send(&v, sizeof v, 0); }
  bool try_pop(Item& v) {
    std::size_t got = 0;
    unsigned prio = 0;
    return mq->try_receive(&v, sizeof v, got, prio);
  }
};

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() {
    if (::pipe2(fd, O_NONBLOCK) != 0) std::abort();
  }
  ~Pipe() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
  bool try_push(Item v) { return ::write(fd[1], &v, sizeof v) == sizeof v; }
  bool try_pop(Item& v) { return ::read(fd[0], &v, sizeof v) == sizeof v; }
};

void report(benchmark::State& state, const bench::RunResult& r, double items) {
  state.SetIterationTime(items > 0 ? r.seconds / items : r.seconds);
  state.counters["Mitems/s"] = items / r.seconds / 1e6;
  state.counters["runq_wait"] = r.runq_wait_fraction;
}

// ------------------------------------------------------------ throughput
template <class Q>
void throughput(benchmark::State& state, Q* q, bool processes) {
  for (auto _ : state) {
    const bench::RunResult r = bench::queue_throughput(q, processes, kWindow);
    report(state, r, static_cast<double>(r.ops));
  }
}

// ------------------------------------------------------------ round trip
template <class Q>
void round_trip(benchmark::State& state, Q* there, Q* back, bool processes) {
  for (auto _ : state) {
    const bench::RunResult r = bench::queue_round_trip(there, back, processes, kWindow);
    report(state, r, static_cast<double>(r.ops));
  }
}

void BM_SpinPingPong(benchmark::State& state, bool processes) {
  auto block = shmkit::SharedMemory::anonymous(sizeof(bench::SpinPair));
  auto* p = new (block.data()) bench::SpinPair();
  for (auto _ : state) {
    const bench::RunResult r = bench::spin_ping_pong(p, processes, kWindow);
    report(state, r, static_cast<double>(r.ops));
  }
}

// ------------------------------------------------------------ registration
template <std::size_t Cap>
void register_capacity() {
  const std::string c = "/" + std::to_string(Cap);
  auto reg = [](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kNanosecond);
  };
  for (bool procs : {true, false}) {
    const std::string mode = procs ? "/procs" : "/threads";
    reg("tput/shmkit_spsc" + c + mode, [procs](benchmark::State& s) {
      ShmkitNamed<shmkit::SpscQueue> q(Cap, "spsc");
      throughput(s, &q, procs);
    });
    reg("rtt/shmkit_spsc" + c + mode, [procs](benchmark::State& s) {
      ShmkitNamed<shmkit::SpscQueue> a(Cap, "spsc_a"), b(Cap, "spsc_b");
      round_trip(s, &a, &b, procs);
    });
    reg("tput/shmkit_mpmc" + c + mode, [procs](benchmark::State& s) {
      ShmkitNamed<shmkit::MpmcQueue> q(Cap, "mpmc");
      throughput(s, &q, procs);
    });
    reg("rtt/shmkit_mpmc" + c + mode, [procs](benchmark::State& s) {
      ShmkitNamed<shmkit::MpmcQueue> a(Cap, "mpmc_a"), b(Cap, "mpmc_b");
      round_trip(s, &a, &b, procs);
    });
    reg("tput/vyukov_bounded" + c + mode, [procs](benchmark::State& s) {
      InShm<VyukovBounded<Cap, 16>> q;
      throughput(s, q.q, procs);
    });
    reg("tput/vyukov_bounded_padded" + c + mode, [procs](benchmark::State& s) {
      InShm<VyukovBounded<Cap, 64>> q;
      throughput(s, q.q, procs);
    });
    reg("tput/boost_spsc" + c + mode, [procs](benchmark::State& s) {
      InShm<BoostSpsc<Cap>> q;
      throughput(s, q.q, procs);
    });
    reg("rtt/boost_spsc" + c + mode, [procs](benchmark::State& s) {
      InShm<BoostSpsc<Cap>> a, b;
      round_trip(s, a.q, b.q, procs);
    });
    reg("tput/boost_queue" + c + mode, [procs](benchmark::State& s) {
      InShm<BoostQueue<Cap>> q;
      throughput(s, q.q, procs);
    });
    reg("rtt/boost_queue" + c + mode, [procs](benchmark::State& s) {
      InShm<BoostQueue<Cap>> a, b;
      round_trip(s, a.q, b.q, procs);
    });
  }
  // Cross-process only.
  reg("tput/boost_ipc_message_queue" + c + "/procs", [](benchmark::State& s) {
    MsgQueue q(Cap, "mq");
    throughput(s, &q, true);
  });
  reg("rtt/boost_ipc_message_queue" + c + "/procs", [](benchmark::State& s) {
    MsgQueue a(Cap, "mq_a"), b(Cap, "mq_b");
    round_trip(s, &a, &b, true);
  });
  // Thread-only baselines (they hold raw pointers / private memory).
  reg("tput/moodycamel_rwq" + c + "/threads", [](benchmark::State& s) {
    OnHeap<MoodyRwq<Cap>> q;
    throughput(s, q.q, false);
  });
  reg("rtt/moodycamel_rwq" + c + "/threads", [](benchmark::State& s) {
    OnHeap<MoodyRwq<Cap>> a, b;
    round_trip(s, a.q, b.q, false);
  });
  reg("tput/moodycamel_cq" + c + "/threads", [](benchmark::State& s) {
    OnHeap<MoodyCq<Cap>> q;
    throughput(s, q.q, false);
  });
  reg("rtt/moodycamel_cq" + c + "/threads", [](benchmark::State& s) {
    OnHeap<MoodyCq<Cap>> a, b;
    round_trip(s, a.q, b.q, false);
  });
  reg("tput/tbb_bounded" + c + "/threads", [](benchmark::State& s) {
    OnHeap<TbbBounded<Cap>> q;
    throughput(s, q.q, false);
  });
  reg("rtt/tbb_bounded" + c + "/threads", [](benchmark::State& s) {
    OnHeap<TbbBounded<Cap>> a, b;
    round_trip(s, a.q, b.q, false);
  });
}

void BM_Pipe(benchmark::State& s, bool rtt) {
  Pipe a, b;
  if (rtt) {
    round_trip(s, &a, &b, true);
  } else {
    throughput(s, &a, true);
  }
}

// MpmcQueue with n processes (n/2 producers, n/2 consumers) on the CPUs the
// harness pins them to, blocking calls with short timeouts.
void BM_MpmcScaling(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  ShmkitNamed<shmkit::MpmcQueue> q(1024, "mpmc_scale");
  auto* h = &q.h;
  for (auto _ : state) {
    auto r = bench::run_workers(true, n, kWindow,
                                [h](int me, std::atomic<std::uint32_t>& stop, bench::WorkerResult& out) {
                                  std::uint64_t k = 0;
                                  if (me % 2 == 0) {
                                    while (stop.load(std::memory_order_relaxed) == 0)
                                      (void)h->push_for(Item{1}, 1ms);
                                    out.ops = 0;
                                  } else {
                                    Item v;
                                    while (stop.load(std::memory_order_relaxed) == 0) {
                                      if (h->pop_for(v, 1ms)) ++k;
                                    }
                                    out.ops = k;
                                  }
                                });
    report(state, r, static_cast<double>(r.ops));
  }
}

// ------------------------------------------------------------ SeqLock
struct V64 {
  std::uint64_t w[8];
};

void BM_SeqLockRead64(benchmark::State& state) {
  const std::string name = bench_name("seq");
  auto s = shmkit::SeqLock<V64>::create(name, V64{{1, 2, 3, 4, 5, 6, 7, 8}});
  V64 out;
  for (auto _ : state) {
    bool ok = s.try_read(out);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(out);
  }
  s.unlink();
}

void BM_SeqLockReaderRead64(benchmark::State& state) {
  const std::string name = bench_name("seqr");
  auto s = shmkit::SeqLock<V64>::create(name, V64{{1, 2, 3, 4, 5, 6, 7, 8}});
  auto reader = s.reader();
  V64 out;
  for (auto _ : state) {
    bool ok = reader.try_read(out);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(out);
  }
  s.unlink();
}

void BM_PlainCopy64(benchmark::State& state) {
  auto block = shmkit::SharedMemory::anonymous(4096);
  auto* src = static_cast<V64*>(block.data());
  *src = V64{{1, 2, 3, 4, 5, 6, 7, 8}};
  V64 out;
  for (auto _ : state) {
    std::memcpy(&out, src, sizeof out);
    benchmark::DoNotOptimize(out);
  }
}

void BM_SeqLockWrite64(benchmark::State& state) {
  const std::string name = bench_name("seqw");
  auto s = shmkit::SeqLock<V64>::create(name);
  V64 v{};
  for (auto _ : state) {
    ++v.w[0];
    s.store(v);
    benchmark::ClobberMemory();
  }
  s.unlink();
}

// CPython's multiprocessing.Queue between two processes (python3 timing its
// own loops, one run per repetition): the per-item and round-trip times are
// this benchmark's single iteration.
void BM_CPythonMpQueue(benchmark::State& state, const char* key) {
  for (auto _ : state) {
    auto f = shmkit::bench::run_python_baseline("bench_mp_queue.py", "20000 2000");
    state.SetIterationTime(f.at(key) * 1e-9);
  }
}

const bool registered = [] {
  register_capacity<1024>();
  register_capacity<65536>();
  for (bool procs : {true, false}) {
    benchmark::RegisterBenchmark(procs ? "rtt/spin_pingpong/procs" : "rtt/spin_pingpong/threads",
                                 BM_SpinPingPong, procs)
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kNanosecond);
  }
  benchmark::RegisterBenchmark("tput/pipe/procs", BM_Pipe, false)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kNanosecond);
  benchmark::RegisterBenchmark("rtt/pipe/procs", BM_Pipe, true)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kNanosecond);
  auto* scaling = benchmark::RegisterBenchmark("mpmc_scaling/shmkit_mpmc", BM_MpmcScaling);
  for (int n : bench::process_sweep()) scaling->Arg(n);
  scaling->Iterations(1)->UseManualTime()->Unit(benchmark::kNanosecond);
  benchmark::RegisterBenchmark("tput/cpython_mp_queue/procs", BM_CPythonMpQueue, "tput_ns_per_item")
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kNanosecond);
  benchmark::RegisterBenchmark("rtt/cpython_mp_queue/procs", BM_CPythonMpQueue, "rtt_ns")
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kNanosecond);
  benchmark::RegisterBenchmark("seqlock_read/64B/shmkit", BM_SeqLockRead64);
  benchmark::RegisterBenchmark("seqlock_read/64B/shmkit_reader", BM_SeqLockReaderRead64);
  benchmark::RegisterBenchmark("seqlock_read/64B/plain_copy", BM_PlainCopy64);
  benchmark::RegisterBenchmark("seqlock_write/64B/shmkit", BM_SeqLockWrite64);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
