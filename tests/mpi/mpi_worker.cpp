// tests/mpi/mpi_worker.cpp — the MPI program test_mpi runs under mpirun, one
// scenario per run (argv[1]); rank 0 prints what the driver checks. Each rank
// has an in-process watchdog (alarm), so a hang ends the job.
//   exact V N       every object kind shared per node (V virtual nodes, 0:
//                   physical), N items summed through a node MpmcQueue and
//                   AtomicValue, leaders' MPI_Allreduce; checked against serial
//   kill [ERR]      the last rank SIGKILLs itself while the others wait in a
//                   shmkit queue pop. ERR sets every rank's stderr (which its
//                   tracker watcher inherits) before the first shmkit call:
//                   "broken" a pipe with no reader (as once mpirun has exited),
//                   a path: that file opened for writing (the driver's full pipe)
//   abort           rank 1 calls MPI_Abort while the others wait in a pop
//   squat V / enospc V   the last node's leader cannot create (a squatted name /
//                   no space); every rank of that node must see the same error
//   badlabel V      the leaders pass an invalid label: every rank throws it
//   ls V CLI        rank 0 runs `CLI ls` while the job holds its blocks
#include <mpi.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "shmkit/array.hpp"
#include "shmkit/heap.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/lockfree/seqlock.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/mpi.hpp"
#include "shmkit/value.hpp"

namespace {

using shmkit::mpi::NodeView;
constexpr std::uint64_t kStop = ~std::uint64_t{0};
constexpr std::uint64_t kChunk = 1000;

std::uint32_t input(std::uint64_t i) { return static_cast<std::uint32_t>((i * 2654435761u) ^ (i >> 3)); }
std::uint64_t work(std::uint32_t x) { return (static_cast<std::uint64_t>(x) * x) % 1000003u; }

struct Quote {
  double bid, ask;
};
struct Histogram {  // a user's own type, in a block of kind user+7
  std::uint64_t bins[16];
};

int fail(const char* what) {
  std::fprintf(stderr, "mpi_worker: %s\n", what);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 3);
  return 3;
}

#define CHECK(cond)                                   \
  do {                                                \
    if (!(cond)) return fail("check failed: " #cond); \
  } while (0)

// Every rank's (node index, node rank, node size) at rank 0, as "r:n.k/s ...".
std::string layout(const NodeView& v) {
  int mine[3] = {v.node_index(), v.node_rank(), v.node_size()};
  std::vector<int> all(3 * static_cast<std::size_t>(v.size()));
  MPI_Gather(mine, 3, MPI_INT, all.data(), 3, MPI_INT, 0, MPI_COMM_WORLD);
  std::string s;
  for (int r = 0; r < v.size(); ++r) {
    s += (r ? " " : "") + std::to_string(r) + ":" + std::to_string(all[3 * r]) + "." +
         std::to_string(all[3 * r + 1]) + "/" + std::to_string(all[3 * r + 2]);
  }
  return s;
}

int exact(int virtual_nodes, std::uint64_t n) {
  NodeView v(MPI_COMM_WORLD, virtual_nodes);
  const std::string where = layout(v);
  // The read-only input, filled by the leader before anyone attaches.
  auto table = v.create_with<shmkit::RawArray<std::uint32_t>>(
      "table",
      [n](const std::string& name) {
        auto a = shmkit::RawArray<std::uint32_t>::create(name, n);
        for (std::uint64_t i = 0; i < n; ++i) a.set(static_cast<std::ptrdiff_t>(i), input(i));
        return a;
      },
      [](const std::string& name) { return shmkit::RawArray<std::uint32_t>::attach(name); });
  auto chunks = v.create<shmkit::MpmcQueue<std::uint64_t>>("chunks", 1024);
  auto partial = v.create<shmkit::AtomicValue<std::uint64_t>>("partial", 0);
  auto locked = v.create<shmkit::Value<std::int64_t>>("ranks_seen", 0);
  auto ring = v.create<shmkit::SpscQueue<std::uint64_t>>("ring", 64);
  auto quote = v.create<shmkit::SeqLock<Quote>>("quote", Quote{1.25, 1.5});
  auto heap = v.create<shmkit::Heap>("heap", 1 << 16);
  shmkit::BlockSpec spec;
  spec.kind = static_cast<shmkit::BlockKind>(static_cast<std::uint32_t>(shmkit::BlockKind::user) + 7);
  spec.type = shmkit::TypeFingerprint::of<Histogram>();
  spec.count = 1;
  spec.payload_size = sizeof(Histogram);
  auto hist = v.create_block("histogram", spec, [](std::span<std::byte>, std::span<std::byte> payload) {
    reinterpret_cast<Histogram*>(payload.data())->bins[3] = 42;
  });

  // Every object is the same block on every rank of the node, and a
  // different one on each node.
  CHECK(table->size() == n && table->get(7) == input(7) && table->get(-1) == input(n - 1));
  CHECK(quote->read().ask == 1.5);
  CHECK(heap->name() == heap.name());
  CHECK(reinterpret_cast<const Histogram*>(hist->payload.data())->bins[3] == 42);
  CHECK(table.name().find(".n" + std::to_string(v.node_index()) + ".") != std::string::npos);
  locked->fetch_add(1);
  if (v.node_rank() == 0) ring->push(1000 + static_cast<std::uint64_t>(v.node_index()));

  // The node's chunks: chunk c belongs to node c % node_count.
  const std::uint64_t n_chunks = (n + kChunk - 1) / kChunk;
  if (v.is_leader()) {
    for (std::uint64_t c = static_cast<std::uint64_t>(v.node_index()); c < n_chunks; c += v.node_count()) {
      chunks->push(c);
    }
    for (int i = 0; i < v.node_size(); ++i) chunks->push(kStop);
  }
  std::uint64_t mine = 0;
  for (std::uint64_t c; (c = chunks->pop()) != kStop;) {
    for (std::uint64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) {
      mine += work(table->get(static_cast<std::ptrdiff_t>(i)));
    }
  }
  partial->fetch_add(mine);
  v.node_barrier();
  CHECK(locked->value() == v.node_size());
  if (v.node_rank() == v.node_size() - 1)
    CHECK(ring->pop() == 1000 + static_cast<std::uint64_t>(v.node_index()));
  std::uint64_t total = 0;
  if (v.is_leader()) {
    std::uint64_t node_total = partial->load();
    MPI_Allreduce(&node_total, &total, 1, MPI_UINT64_T, MPI_SUM, v.leaders_comm());
  }
  MPI_Bcast(&total, 1, MPI_UINT64_T, 0, v.node_comm());
  std::uint64_t serial = 0;
  for (std::uint64_t i = 0; i < n; ++i) serial += work(input(i));
  CHECK(total == serial);
  int ok = 1, all_ok = 0;
  MPI_Reduce(&ok, &all_ok, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
  if (v.rank() == 0) {
    std::printf("exact: %d ranks, %d nodes [%s]; total %llu serial %llu: OK on %d ranks\n", v.size(),
                v.node_count(), where.c_str(), static_cast<unsigned long long>(total),
                static_cast<unsigned long long>(serial), all_ok);
  }
  return 0;
}

// Replaces this rank's stderr: "broken" (a pipe whose reader is gone), or
// the file at `path`. The rank ignores SIGPIPE itself: only its watcher
// (which resets every signal to its default) is under test.
int redirect_stderr(const std::string& where) {
  ::signal(SIGPIPE, SIG_IGN);
  int fd = -1;
  if (where == "broken") {
    int p[2];
    if (::pipe(p) != 0) return -1;
    ::close(p[0]);
    fd = p[1];
  } else {
    fd = ::open(where.c_str(), O_WRONLY);
    if (fd < 0) return -1;
  }
  const int rc = ::dup2(fd, 2);
  ::close(fd);
  return rc < 0 ? -1 : 0;
}

// Blocks whose job the driver can find: it sets $SHMKIT_MPI_JOB.
int killed(bool abort, const std::string& err) {
  if (!err.empty()) CHECK(redirect_stderr(err) == 0);
  NodeView v(MPI_COMM_WORLD, 0);
  auto table = v.create<shmkit::RawArray<double>>("table", 1 << 16);
  auto q = v.create<shmkit::MpmcQueue<std::uint64_t>>("chunks", 16);
  // More blocks than ranks: a watcher that died after its first unlink
  // (each rank has one) cannot have removed them all.
  std::vector<shmkit::mpi::NodeShared<shmkit::RawArray<double>>> extra;
  for (int i = 0; i < v.size(); ++i) extra.push_back(v.create<shmkit::RawArray<double>>("extra", 1));
  MPI_Barrier(MPI_COMM_WORLD);
  if (v.rank() == 0) {
    // Every block of the job, the node's rank table too.
    std::string names = table.name() + " " + q.name();
    for (const auto& e : extra) names += " " + e.name();
    std::printf("created %s %sn0.ranks\n", names.c_str(), v.prefix().c_str());
    std::fflush(stdout);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (abort && v.rank() == 1) MPI_Abort(MPI_COMM_WORLD, 7);
  if (!abort && v.rank() == v.size() - 1) ::raise(SIGKILL);
  (void)q->pop();  // nobody pushes: only the job's end ends this wait
  return fail("the queue pop returned");
}

std::string describe(const std::exception& e) {
  if (auto* s = dynamic_cast<const std::system_error*>(&e)) {
    return "system_error " + std::to_string(s->code().value()) + " " + s->what();
  }
  if (dynamic_cast<const std::invalid_argument*>(&e)) return std::string("invalid_argument ") + e.what();
  return std::string("other ") + e.what();
}

int leader_fails(bool squat, int virtual_nodes) {
  NodeView v(MPI_COMM_WORLD, virtual_nodes);
  const bool failing = v.node_index() == v.node_count() - 1;
  const std::string name = v.next_name("victim");
  if (squat && failing && v.node_rank() == v.node_size() - 1) {
    (void)shmkit::SharedMemory::create(name, 4096);  // another's block under the job's name
  }
  MPI_Barrier(MPI_COMM_WORLD);
  std::size_t count = 16;
  if (!squat && failing) count = std::size_t{1} << 40;  // 8 TiB: /dev/shm has no room
  char outcome[600] = "ok";
  try {
    auto a = v.create<shmkit::RawArray<double>>("victim", count);
    a->set(0, 1.0);
  } catch (const std::exception& e) {
    std::snprintf(outcome, sizeof outcome, "%s", describe(e).c_str());
  }
  // The node goes on: the next collective create works on every rank.
  auto after = v.create<shmkit::AtomicValue<std::uint64_t>>("after", 0);
  after->fetch_add(1);
  v.node_barrier();
  CHECK(after->load() == static_cast<std::uint64_t>(v.node_size()));
  int squat_kept = 1;
  if (squat && failing && v.node_rank() == v.node_size() - 1) {
    squat_kept = ::access(("/dev/shm/" + name).c_str(), F_OK) == 0;
    shmkit::SharedMemory::unlink(name);
  }
  std::vector<char> outcomes(600 * static_cast<std::size_t>(v.size()));
  MPI_Gather(outcome, 600, MPI_CHAR, outcomes.data(), 600, MPI_CHAR, 0, MPI_COMM_WORLD);
  int info[2] = {v.node_index(), squat_kept}, kept = 0;
  std::vector<int> infos(2 * static_cast<std::size_t>(v.size()));
  MPI_Gather(info, 2, MPI_INT, infos.data(), 2, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Reduce(&squat_kept, &kept, 1, MPI_INT, MPI_MIN, 0, MPI_COMM_WORLD);
  if (v.rank() != 0) return 0;
  std::string first;
  int reached = 0, others_ok = 0;
  for (int r = 0; r < v.size(); ++r) {
    const std::string o(&outcomes[600 * static_cast<std::size_t>(r)]);
    if (infos[2 * r] == v.node_count() - 1) {
      if (first.empty()) first = o;
      if (o != "ok" && o == first) ++reached;
      std::printf("rank %d (failing node %d): %s\n", r, infos[2 * r], o.c_str());
    } else {
      others_ok += o == "ok";
    }
  }
  std::printf(
      "leader failure reached %d rank(s) of node %d identically; %d rank(s) of other nodes ok; "
      "squatted block %s\n",
      reached, v.node_count() - 1, others_ok, kept ? "untouched" : "REMOVED");
  return 0;
}

// The leaders pass an invalid label, the others a valid one: the leader's
// counts, and every rank throws its invalid_argument (nobody waits).
int bad_label(int virtual_nodes) {
  NodeView v(MPI_COMM_WORLD, virtual_nodes);
  char outcome[600] = "ok";
  try {
    auto a = v.create<shmkit::RawArray<double>>(v.is_leader() ? "no/slash" : "fine", 4);
  } catch (const std::exception& e) {
    std::snprintf(outcome, sizeof outcome, "%s", describe(e).c_str());
  }
  std::vector<char> all(600 * static_cast<std::size_t>(v.size()));
  MPI_Gather(outcome, 600, MPI_CHAR, all.data(), 600, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (v.rank() != 0) return 0;
  int same = 0;
  for (int r = 0; r < v.size(); ++r) same += std::string(&all[600 * static_cast<std::size_t>(r)]) == outcome;
  std::printf("bad label: %d of %d ranks threw the same: %s\n", same, v.size(), outcome);
  return 0;
}

// Rank 0 runs `shmkit ls` while every rank holds the job's blocks.
int ls(int virtual_nodes, const std::string& cli) {
  NodeView v(MPI_COMM_WORLD, virtual_nodes);
  auto table = v.create<shmkit::RawArray<double>>("table", 1024);
  MPI_Barrier(MPI_COMM_WORLD);
  int rc = 0;
  if (v.rank() == 0) {
    std::fflush(stdout);
    rc = std::system((cli + " ls").c_str());
    std::fflush(stdout);
  }
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return rc == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  ::alarm(90);  // the in-process watchdog: SIGALRM ends this rank, and mpirun the job
  MPI_Init(&argc, &argv);
  int rc = 2;
  try {
    const std::string what = argc > 1 ? argv[1] : "";
    const int vn = argc > 2 ? std::atoi(argv[2]) : 0;
    if (what == "exact") {
      rc = exact(vn, argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 100000);
    } else if (what == "kill" || what == "abort") {
      rc = killed(what == "abort", what == "kill" && argc > 2 ? argv[2] : "");
    } else if (what == "squat" || what == "enospc") {
      rc = leader_fails(what == "squat", vn);
    } else if (what == "badlabel") {
      rc = bad_label(vn);
    } else if (what == "ls" && argc > 3) {
      rc = ls(vn, argv[3]);
    } else {
      std::fprintf(stderr,
                   "usage: mpi_worker exact|kill|abort|squat|enospc|badlabel|ls [virtual_nodes | stderr] [n "
                   "| shmkit]\n");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_worker: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 4);
  }
  MPI_Finalize();
  return rc;
}
