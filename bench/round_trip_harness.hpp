// bench/round_trip_harness.hpp — the queue loops that bench_lockfree and
// bench_fanout both measure (each binary needs its own copy of the runs,
// because the suite's ratios compare names within one binary's run):
//   spin_ping_pong:   two atomics on separate lines, the physical limit of a
//                     cross-core round trip;
//   queue_round_trip: one item there through one queue, back through another;
//                     the initiator checks that what it pops is what it sent
//                     (a round trip whose item differs ends the run short);
//   queue_throughput: one producer pushing, one consumer popping and using
//                     every item (a checksum: a loop that drops what it pops
//                     lets the compiler skip the slot read of an inlined
//                     queue, and the row times index traffic only).
// All return bench::run_workers' result; ops = round trips completed or
// items delivered.
#pragma once

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>

#include "sync_bench_harness.hpp"

namespace bench {

struct SpinPair {
  alignas(128) std::atomic<std::uint64_t> ping{0};
  alignas(128) std::atomic<std::uint64_t> pong{0};
};

inline RunResult spin_ping_pong(SpinPair* p, bool processes, std::chrono::milliseconds window) {
  p->ping = 0;
  p->pong = 0;
  return run_workers(processes, 2, window, [p](int me, std::atomic<std::uint32_t>& stop, WorkerResult& out) {
    std::uint64_t n = 0;
    if (me == 0) {
      for (std::uint64_t i = 1; stop.load(std::memory_order_relaxed) == 0; ++i) {
        p->ping.store(i, std::memory_order_release);
        while (p->pong.load(std::memory_order_acquire) != i) {
          if (stop.load(std::memory_order_relaxed)) goto done;
        }
        ++n;
      }
    done:
      out.ops = n;
    } else {
      std::uint64_t seen = 0;
      while (stop.load(std::memory_order_relaxed) == 0) {
        const std::uint64_t v = p->ping.load(std::memory_order_acquire);
        if (v != seen) {
          seen = v;
          p->pong.store(v, std::memory_order_release);
        }
      }
      out.ops = 0;
    }
  });
}

// Q: try_push(std::uint64_t) / try_pop(std::uint64_t&).
template <class Q>
RunResult queue_round_trip(Q* there, Q* back, bool processes, std::chrono::milliseconds window) {
  return run_workers(processes, 2, window,
                     [there, back](int me, std::atomic<std::uint32_t>& stop, WorkerResult& out) {
                       std::uint64_t n = 0;
                       std::uint64_t v = 0;
                       if (me == 0) {
                         while (stop.load(std::memory_order_relaxed) == 0) {
                           while (!there->try_push(++v)) {
                             if (stop.load(std::memory_order_relaxed)) goto done;
                           }
                           std::uint64_t w;
                           while (!back->try_pop(w)) {
                             if (stop.load(std::memory_order_relaxed)) goto done;
                           }
                           // Use what came back (the compiler would otherwise drop the slot
                           // read of an inlined queue): only the item sent counts as a trip.
                           if (w != v) goto done;
                           ++n;
                         }
                       done:
                         out.ops = n;
                       } else {
                         while (stop.load(std::memory_order_relaxed) == 0) {
                           if (there->try_pop(v)) {
                             while (!back->try_push(v)) {
                               if (stop.load(std::memory_order_relaxed)) break;
                             }
                           }
                         }
                         out.ops = 0;
                       }
                     });
}

// Q: try_push(std::uint64_t) / try_pop(std::uint64_t&).
template <class Q>
RunResult queue_throughput(Q* q, bool processes, std::chrono::milliseconds window) {
  return run_workers(processes, 2, window, [q](int me, std::atomic<std::uint32_t>& stop, WorkerResult& out) {
    std::uint64_t n = 0;
    if (me == 0) {
      std::uint64_t v = 1;
      while (stop.load(std::memory_order_relaxed) == 0) {
        if (q->try_push(v)) ++v;
      }
    } else {
      std::uint64_t v, sum = 0;
      while (stop.load(std::memory_order_relaxed) == 0) {
        if (q->try_pop(v)) {
          ++n;
          sum += v;
        }
      }
      benchmark::DoNotOptimize(sum);
    }
    out.ops = n;
  });
}

}  // namespace bench
