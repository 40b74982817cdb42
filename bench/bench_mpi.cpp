// bench/bench_mpi.cpp — shmkit::mpi against MPI itself, on one node (built
// only when CMake finds MPI). Started plainly (by the suite), it runs two MPI
// jobs itself with the mpirun it was configured with: a 4-rank memory probe,
// then re-runs itself as a 2-rank job in which rank 0 runs Google Benchmark
// (its stdout is the suite's) and rank 1 serves each benchmark.
//
//   mpi_rtt/shmkit_spsc            8-byte round trip between the two ranks through
//   mpi_rtt/mpi_send_recv          two SpscQueues shared by shmkit::mpi, or by
//       MPI_Send/MPI_Recv (Open MPI's shared-memory transport, vader).
//       real_time = ns per round trip. Open MPI binds the 2 ranks to 2 cores.
//   mpi_node_sum/shmkit_slots      node-local sum of one double per rank, every
//   mpi_node_sum/mpi_allreduce     rank getting the sum: shmkit's per-rank slots
//       (atomic sequence numbers, double-buffered values, summed in rank order,
//       spin-then-yield) or MPI_Allreduce on the node communicator.
//       real_time = ns per sum (as rank 0 sees it).
//     Counter runq_wait (the timed rows): the fraction of the run rank 0 spent
//     runnable but not running; trust a figure only when it is near 0.
//   mpi_memory/one_copy_per_node   proportional set size of the whole node
//   mpi_memory/one_copy_per_rank   (4 ranks, sum of /proc/self/smaps_rollup Pss)
//       holding a table of $SHMKIT_BENCH_MPI_TABLE_MIB MiB (default 256) once per
//       node (a shmkit::mpi Array) or once per rank (a private copy); counter
//       PSS_MiB (node total) and table_PSS_MiB (minus the ranks' PSS before
//       the table). Measured once, by the 4-rank probe; reported in every
//       repetition.
#include <benchmark/benchmark.h>
#include <mpi.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "shmkit/array.hpp"
#include "shmkit/atomic.hpp"
#include "shmkit/detail/sync_common.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/mpi.hpp"

namespace {

enum Op : std::int64_t { kQuit = 0, kRttShmkit, kRttMpi, kSumShmkit, kSumMpi };

std::optional<shmkit::mpi::NodeView> g_node;
std::optional<shmkit::mpi::NodeShared<shmkit::SpscQueue<std::uint64_t>>> g_req, g_rep;

// Node-sum slots: one cache line per rank; value[k & 1] is iteration k's.
struct alignas(64) Slot {
  shmkit::Atomic<std::uint64_t> seq;
  shmkit::Atomic<std::uint64_t> value[2];  // the double's bits
};
constexpr int kMaxRanks = 64;
struct Slots {
  Slot slot[kMaxRanks];
};
std::optional<shmkit::mpi::NodeShared<shmkit::TypedBlock>> g_slots;
std::uint64_t g_sum_iteration = 0;

Slots& slots() { return *reinterpret_cast<Slots*>((*g_slots)->payload.data()); }

inline void relax(unsigned& spins) {
  if (++spins % 1024 == 0) {
    std::this_thread::yield();
  } else {
    shmkit::detail::cpu_relax();  // x86 PAUSE, aarch64 YIELD (shmkit/sync/spin.hpp)
  }
}

// Every rank of the node calls this with its value; every rank gets the sum
// (in rank order: the same bits everywhere).
double shmkit_node_sum(double mine) {
  Slots& s = slots();
  const std::uint64_t k = ++g_sum_iteration;
  const int me = g_node->node_rank(), n = g_node->node_size();
  std::uint64_t bits;
  std::memcpy(&bits, &mine, sizeof bits);
  s.slot[me].value[k & 1].store(bits, boost::memory_order_relaxed);
  // (1) release: publishes value[k & 1]; pairs with (2).
  s.slot[me].seq.store(k, boost::memory_order_release);
  double sum = 0;
  for (int j = 0; j < n; ++j) {
    unsigned spins = 0;
    // (2) acquire: pairs with rank j's (1). Rank j cannot overwrite
    // value[k & 1] (its iteration k + 2) before every rank reached k + 1,
    // that is, finished reading iteration k.
    while (s.slot[j].seq.load(boost::memory_order_acquire) < k) relax(spins);
    const std::uint64_t b = s.slot[j].value[k & 1].load(boost::memory_order_relaxed);
    double v;
    std::memcpy(&v, &b, sizeof v);
    sum += v;
  }
  return sum;
}

void command(Op op, std::int64_t iterations) {
  std::int64_t cmd[2] = {op, iterations};
  MPI_Bcast(cmd, 2, MPI_INT64_T, 0, MPI_COMM_WORLD);
}

// Rank 1 (and any other rank): serve rank 0's benchmarks until told to quit.
void serve() {
  for (;;) {
    std::int64_t cmd[2];
    MPI_Bcast(cmd, 2, MPI_INT64_T, 0, MPI_COMM_WORLD);
    const std::int64_t n = cmd[1];
    switch (cmd[0]) {
      case kQuit:
        return;
      case kRttShmkit:
        if (g_node->rank() == 1) {
          for (std::int64_t i = 0; i < n; ++i) (*g_rep)->push((*g_req)->pop());
        }
        break;
      case kRttMpi:
        if (g_node->rank() == 1) {
          for (std::int64_t i = 0; i < n; ++i) {
            std::uint64_t v;
            MPI_Recv(&v, 1, MPI_UINT64_T, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(&v, 1, MPI_UINT64_T, 0, 2, MPI_COMM_WORLD);
          }
        }
        break;
      case kSumShmkit:
        for (std::int64_t i = 0; i < n; ++i) benchmark::DoNotOptimize(shmkit_node_sum(g_node->rank() + 0.25));
        break;
      case kSumMpi:
        for (std::int64_t i = 0; i < n; ++i) {
          double mine = g_node->rank() + 0.25, sum = 0;
          MPI_Allreduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, g_node->node_comm());
          benchmark::DoNotOptimize(sum);
        }
        break;
    }
  }
}

// Nanoseconds this thread has waited on a run queue (/proc/thread-self/schedstat
// field 2), to report runq_wait: the fraction of a run's wall time rank 0 was
// runnable but not running. Near 0 the figures are the transport's; high, they
// are the machine's load (other jobs on the 2 CPUs).
std::int64_t runq_wait_ns() {
  std::ifstream in("/proc/thread-self/schedstat");
  long long run = 0, wait = -1;
  in >> run >> wait;
  return wait;
}

struct RunqWait {
  benchmark::State& state;
  std::int64_t wait0 = runq_wait_ns();
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  ~RunqWait() {
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::int64_t wait1 = runq_wait_ns();
    if (wall > 0 && wait0 >= 0 && wait1 >= 0)
      state.counters["runq_wait"] = static_cast<double>(wait1 - wait0) * 1e-9 / wall;
  }
};

void BM_RttShmkit(benchmark::State& state) {
  RunqWait rq{state};
  command(kRttShmkit, static_cast<std::int64_t>(state.max_iterations));
  std::uint64_t i = 0;
  for (auto _ : state) {
    (*g_req)->push(i);
    benchmark::DoNotOptimize((*g_rep)->pop());
    ++i;
  }
}

void BM_RttMpi(benchmark::State& state) {
  RunqWait rq{state};
  command(kRttMpi, static_cast<std::int64_t>(state.max_iterations));
  std::uint64_t i = 0;
  for (auto _ : state) {
    std::uint64_t back;
    MPI_Send(&i, 1, MPI_UINT64_T, 1, 1, MPI_COMM_WORLD);
    MPI_Recv(&back, 1, MPI_UINT64_T, 1, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    benchmark::DoNotOptimize(back);
    ++i;
  }
}

void BM_SumShmkit(benchmark::State& state) {
  RunqWait rq{state};
  command(kSumShmkit, static_cast<std::int64_t>(state.max_iterations));
  for (auto _ : state) benchmark::DoNotOptimize(shmkit_node_sum(0.25));
  state.counters["ranks"] = g_node->node_size();
}

void BM_SumMpi(benchmark::State& state) {
  RunqWait rq{state};
  command(kSumMpi, static_cast<std::int64_t>(state.max_iterations));
  for (auto _ : state) {
    double mine = 0.25, sum = 0;
    MPI_Allreduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, g_node->node_comm());
    benchmark::DoNotOptimize(sum);
  }
  state.counters["ranks"] = g_node->node_size();
}

struct Memory {
  double shared_mib = 0, private_mib = 0, base_mib = 0, table_mib = 0;
};
Memory g_memory;

void BM_Memory(benchmark::State& state, bool shared) {
  // Measured by the probe; the loop only gives the row a time. (Not
  // DoNotOptimize on a global double: its "+m,r" constraint lets GCC write a
  // general register back into it.)
  const double total = shared ? g_memory.shared_mib : g_memory.private_mib;
  for (auto _ : state) benchmark::ClobberMemory();
  state.counters["PSS_MiB"] = total;
  state.counters["table_PSS_MiB"] = total - g_memory.base_mib;
  state.counters["table_MiB"] = g_memory.table_mib;
  state.counters["ranks"] = 4;
}

// ------------------------------------------------------------ memory probe

double pss_mib() {
  std::ifstream in("/proc/self/smaps_rollup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Pss:", 0) == 0) return std::strtod(line.c_str() + 4, nullptr) / 1024.0;
  }
  return -1;
}

double node_pss() {
  MPI_Barrier(MPI_COMM_WORLD);
  double mine = pss_mib(), total = 0;
  MPI_Reduce(&mine, &total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  return total;
}

int memory_probe(std::size_t mib) {
  shmkit::mpi::NodeView node(MPI_COMM_WORLD, 0);
  const std::size_t n = mib * 1024 * 1024 / sizeof(double);
  const double base = node_pss();
  double shared = 0, priv = 0;
  {
    using Table = shmkit::RawArray<double>;
    auto table = node.create_with<Table>(
        "table",
        [n](const std::string& name) {
          Table t = Table::create(name, n);
          double* d = t.get_obj().data();
          for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<double>(i);
          return t;
        },
        [](const std::string& name) { return Table::attach(name); });
    double s = 0;
    const double* d = table->get_obj().data();
    for (std::size_t i = 0; i < n; ++i) s += d[i];  // every rank maps every page
    benchmark::DoNotOptimize(s);
    shared = node_pss();
  }
  {
    std::vector<double> copy(n);
    for (std::size_t i = 0; i < n; ++i) copy[i] = static_cast<double>(i);
    benchmark::DoNotOptimize(copy.data());
    priv = node_pss();
  }
  if (node.rank() == 0) {
    std::printf("shmkit-mpi-memory %.1f %.1f %.1f %zu\n", shared, priv, base, mib);
    std::fflush(stdout);
  }
  return 0;
}

// ------------------------------------------------------------ launching

// The timed job (2 ranks) is bound one rank per core; the memory probe (4
// ranks) may oversubscribe a 2-CPU machine.
std::vector<std::string> mpirun(int np) {
  std::vector<std::string> a = {SHMKIT_BENCH_MPIEXEC, "-np", std::to_string(np), "--bind-to", "core"};
  if (static_cast<long>(np) > ::sysconf(_SC_NPROCESSORS_ONLN))
    a.back() = "none", a.push_back("--oversubscribe");
  if (::geteuid() == 0) a.push_back("--allow-run-as-root");
  return a;
}

std::vector<char*> c_args(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Runs the 4-rank probe; "" if it failed (the memory rows are then left out).
std::string run_probe(const std::string& self) {
  const char* mib = std::getenv("SHMKIT_BENCH_MPI_TABLE_MIB");
  std::vector<std::string> argv = mpirun(4);
  argv.insert(argv.end(), {self, "--shmkit-memory-probe", mib ? mib : "256"});
  int fds[2];
  if (::pipe(fds) != 0) return "";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    auto a = c_args(argv);
    ::execv(a[0], a.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t got; (got = ::read(fds[0], buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(got));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const auto at = out.find("shmkit-mpi-memory ");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || at == std::string::npos) {
    std::fprintf(stderr, "bench_mpi: the memory probe failed; its rows are left out\n");
    return "";
  }
  return out.substr(at + 18, out.find('\n', at) - at - 18);
}

}  // namespace

int main(int argc, char** argv) {
  const bool under_mpi = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr ||
                         std::getenv("PMI_RANK") != nullptr || std::getenv("PMIX_RANK") != nullptr;
  if (!under_mpi) {
    // Launcher: the probe (unless only listing), then this binary as 2 ranks.
    bool listing = false;
    for (int i = 1; i < argc; ++i) listing = listing || std::strcmp(argv[i], "--benchmark_list_tests") == 0;
    const std::string self = argv[0];
    const std::string memory = listing ? "" : run_probe(self);
    std::vector<std::string> args = mpirun(2);
    args.push_back(self);
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    if (!memory.empty()) args.insert(args.end(), {"--shmkit-memory", memory});
    if (listing) args.push_back("--shmkit-memory=listing");
    std::fflush(nullptr);
    auto a = c_args(args);
    ::execv(a[0], a.data());
    std::perror("bench_mpi: exec mpirun");
    return 127;
  }

  MPI_Init(&argc, &argv);
  std::vector<char*> rest;
  bool with_memory = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--shmkit-memory-probe") == 0 && i + 1 < argc) {
      const int rc = memory_probe(std::strtoul(argv[i + 1], nullptr, 10));
      MPI_Finalize();
      return rc;
    }
    if (std::strcmp(argv[i], "--shmkit-memory") == 0 && i + 1 < argc) {
      std::sscanf(argv[++i], "%lf %lf %lf %lf", &g_memory.shared_mib, &g_memory.private_mib,
                  &g_memory.base_mib, &g_memory.table_mib);
      with_memory = true;
      continue;
    }
    if (std::strcmp(argv[i], "--shmkit-memory=listing") == 0) {
      with_memory = true;
      continue;
    }
    rest.push_back(argv[i]);
  }
  int rc = 0;
  {
    g_node.emplace(MPI_COMM_WORLD, 0);
    g_req.emplace(g_node->create<shmkit::SpscQueue<std::uint64_t>>("req", 1024));
    g_rep.emplace(g_node->create<shmkit::SpscQueue<std::uint64_t>>("rep", 1024));
    shmkit::BlockSpec spec;
    spec.kind = static_cast<shmkit::BlockKind>(static_cast<std::uint32_t>(shmkit::BlockKind::user) + 16);
    spec.type = shmkit::TypeFingerprint::of<Slots>();
    spec.count = 1;
    spec.payload_size = sizeof(Slots);
    g_slots.emplace(g_node->create_block(
        "sum_slots", spec, [](std::span<std::byte>, std::span<std::byte> p) { new (p.data()) Slots(); }));
    if (g_node->node_size() > kMaxRanks) throw std::out_of_range("bench_mpi: more than 64 ranks on a node");
    if (g_node->rank() == 0) {
      int n = static_cast<int>(rest.size());
      benchmark::Initialize(&n, rest.data());
      benchmark::AddCustomContext("mpi_ranks", std::to_string(g_node->size()));
      benchmark::AddCustomContext("mpi_placement", "mpirun --bind-to core (2 ranks: one core each)");
      if (g_node->size() >= 2) {
        benchmark::RegisterBenchmark("mpi_rtt/shmkit_spsc", BM_RttShmkit)->UseRealTime();
        benchmark::RegisterBenchmark("mpi_rtt/mpi_send_recv", BM_RttMpi)->UseRealTime();
      }
      benchmark::RegisterBenchmark("mpi_node_sum/shmkit_slots", BM_SumShmkit)->UseRealTime();
      benchmark::RegisterBenchmark("mpi_node_sum/mpi_allreduce", BM_SumMpi)->UseRealTime();
      if (with_memory) {
        benchmark::RegisterBenchmark("mpi_memory/one_copy_per_node", BM_Memory, true)->Iterations(1);
        benchmark::RegisterBenchmark("mpi_memory/one_copy_per_rank", BM_Memory, false)->Iterations(1);
      }
      benchmark::RunSpecifiedBenchmarks();
      benchmark::Shutdown();
      command(kQuit, 0);
    } else {
      serve();
    }
    g_slots.reset();
    g_rep.reset();
    g_req.reset();
    g_node.reset();
  }
  MPI_Finalize();
  return rc;
}
