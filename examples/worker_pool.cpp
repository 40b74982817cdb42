// examples/worker_pool.cpp — an HPC worker pool on one node.
//
// The parent puts the input in a shared Array, the chunk numbers in an
// MpmcQueue, and forks one worker per CPU. Each worker pops chunks, reduces
// its chunk with oneTBB (tbb::parallel_reduce inside the worker process),
// publishes the partial result and marks the chunk done with atomic stores,
// and bumps an AtomicValue the parent sleeps on (wait/notify across
// processes). One worker is killed on purpose in the middle of a chunk: the
// parent sees it die (waitpid), finds the chunk it held, queues it again and
// starts a replacement. The total is checked against a serial sum.
//
//   worker_pool [WORKERS] [--no-kill]
//
// Exactly-once accounting: a chunk's result is a plain store into its own
// slot followed by a release store of its "done" flag, so redoing a chunk
// whose worker died overwrites, never adds twice. Simplification: a worker
// records the chunk it holds right after popping it; one killed between the
// pop and that store would lose the chunk (a production pool would claim
// chunks by compare-and-swap on a per-chunk word instead of a queue).
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_reduce.h>

#include <shmkit/array.hpp>
#include <shmkit/lockfree/mpmc_queue.hpp>
#include <shmkit/value.hpp>

namespace {

constexpr std::uint32_t kChunks = 64;
constexpr std::size_t kChunkSize = 1 << 16;
constexpr std::uint32_t kStop = ~std::uint32_t{0};
constexpr std::uint32_t kNone = ~std::uint32_t{0};

struct Pool {
  shmkit::RawArray<std::int64_t> input = shmkit::RawArray<std::int64_t>::anonymous(kChunks * kChunkSize);
  shmkit::RawArray<std::int64_t> results = shmkit::RawArray<std::int64_t>::anonymous(kChunks);
  shmkit::RawArray<std::uint32_t> done = shmkit::RawArray<std::uint32_t>::anonymous(kChunks);
  shmkit::RawArray<std::uint32_t> current = shmkit::RawArray<std::uint32_t>::anonymous(64);  // per worker
  shmkit::AtomicValue<std::uint32_t> completed = shmkit::AtomicValue<std::uint32_t>::anonymous(0);
  // 1 once the worker meant to die has taken its first chunk: the others
  // wait for it, so they cannot drain the queue before it gets its second.
  shmkit::AtomicValue<std::uint32_t> victim_started = shmkit::AtomicValue<std::uint32_t>::anonymous(0);
  shmkit::MpmcQueue<std::uint32_t> work;

  explicit Pool(const std::string& queue_name)
      : work(shmkit::MpmcQueue<std::uint32_t>::create(queue_name, 128)) {}
};

std::atomic_ref<std::uint32_t> at(std::span<std::uint32_t> a, std::size_t i) { return std::atomic_ref(a[i]); }

int worker(Pool& pool, unsigned index, bool die_on_second_chunk, bool wait_for_victim) {
  const std::span<const std::int64_t> in = pool.input.get_obj();
  while (wait_for_victim && pool.victim_started.load() == 0) {
    pool.victim_started.wait_for(0, std::chrono::milliseconds(50));
  }
  int taken = 0;
  for (;;) {
    std::uint32_t chunk = pool.work.pop();
    if (chunk == kStop) return 0;
    at(pool.current.get_obj(), index).store(chunk, std::memory_order_relaxed);
    if (die_on_second_chunk && ++taken == 2) {
      // The others start only now, so the victim surely holds a chunk when
      // it dies (however the scheduler orders the workers).
      pool.victim_started.store(1);
      pool.victim_started.notify_all();
      ::raise(SIGKILL);  // mid-chunk, on purpose
    }
    const auto part = in.subspan(std::size_t{chunk} * kChunkSize, kChunkSize);
    const std::int64_t sum = tbb::parallel_reduce(
        tbb::blocked_range<std::size_t>(0, part.size()), std::int64_t{0},
        [&](const tbb::blocked_range<std::size_t>& r, std::int64_t acc) {
          for (std::size_t i = r.begin(); i < r.end(); ++i) acc += part[i] * part[i];
          return acc;
        },
        std::plus<>());
    // (1) the result, then (2) release: "done" published after the result;
    // pairs with the parent's acquire load (3).
    std::atomic_ref(pool.results.get_obj()[chunk]).store(sum, std::memory_order_relaxed);
    at(pool.done.get_obj(), chunk).store(1, std::memory_order_release);
    at(pool.current.get_obj(), index).store(kNone, std::memory_order_relaxed);
    pool.completed.fetch_add(1);
    pool.completed.notify_all();
  }
}

pid_t start_worker(Pool& pool, unsigned index, bool die, bool wait_for_victim) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(worker(pool, index, die, wait_for_victim));
  return pid;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned workers = std::max(2u, std::thread::hardware_concurrency());
  bool kill_one = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--no-kill")
      kill_one = false;
    else
      workers = static_cast<unsigned>(std::max(1, std::atoi(argv[i])));
  }
  workers = std::min(workers, 64u);
  const std::string queue_name = "shmkit_example_pool_" + std::to_string(::getpid());
  Pool pool(queue_name);
  std::span<std::int64_t> in = pool.input.get_obj();
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<std::int64_t>(i % 1000) - 500;
  for (unsigned w = 0; w < workers; ++w) at(pool.current.get_obj(), w).store(kNone);
  for (std::uint32_t c = 0; c < kChunks; ++c) pool.work.push(c);

  std::vector<pid_t> pids(workers);
  for (unsigned w = 0; w < workers; ++w)
    pids[w] = start_worker(pool, w, kill_one && w == 0, kill_one && w != 0);
  std::printf("parent: %u workers, %u chunks of %zu values\n", workers, kChunks, kChunkSize);

  int redone = 0;
  while (pool.completed.load() < kChunks) {
    pool.completed.wait_for(pool.completed.load(), std::chrono::milliseconds(50));
    for (unsigned w = 0; w < workers; ++w) {
      int status = 0;
      if (pids[w] == 0 || ::waitpid(pids[w], &status, WNOHANG) != pids[w]) continue;
      // A worker ended before the work did: it died. Redo what it held.
      const std::uint32_t held = at(pool.current.get_obj(), w).load();
      std::printf("parent: worker %u (pid %d) died (%s)", w, pids[w],
                  WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exit");
      // (3) acquire: pairs with (2).
      if (held != kNone && at(pool.done.get_obj(), held).load(std::memory_order_acquire) == 0) {
        pool.work.push(held);
        ++redone;
        std::printf(" holding chunk %u: queued again", held);
      }
      at(pool.current.get_obj(), w).store(kNone);
      pids[w] = start_worker(pool, w, false, false);
      std::printf("; replacement pid %d\n", pids[w]);
    }
  }
  for (unsigned w = 0; w < workers; ++w) pool.work.push(kStop);
  for (pid_t p : pids) {
    if (p != 0) ::waitpid(p, nullptr, 0);
  }

  std::int64_t total = 0, expected = 0;
  for (std::uint32_t c = 0; c < kChunks; ++c) total += std::atomic_ref(pool.results.get_obj()[c]).load();
  for (std::int64_t x : in) expected += x * x;
  std::printf("parent: total %lld, serial check %lld: %s; %d chunk(s) redone\n",
              static_cast<long long>(total), static_cast<long long>(expected),
              total == expected ? "OK" : "MISMATCH", redone);
  shmkit::SharedMemory::unlink(queue_name);
  return total == expected ? 0 : 1;
}
