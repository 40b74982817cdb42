// examples/mpi_worker_pool.cpp — a hybrid worker pool: MPI between nodes,
// shmkit within one.
//
//   mpirun -np 4 build/release/examples/example_mpi_worker_pool 2
//
// (the argument: split this host into that many virtual nodes, so the
// multi-node path runs on one machine; 0 or none: the real nodes). Per node:
//   * the read-only input table is held once (an Array the node's leader
//     fills before the others attach), not once per rank;
//   * a node-local MpmcQueue hands that node's chunks to its ranks;
//   * the ranks add their results into a node-local AtomicValue, then the
//     leaders combine the nodes' sums with MPI_Allreduce.
// The result is checked against a serial computation (integers: exact).
#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "shmkit/array.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/mpi.hpp"
#include "shmkit/value.hpp"

namespace {

constexpr std::uint64_t kItems = 2'000'000;
constexpr std::uint64_t kChunk = 10'000;
constexpr std::uint64_t kNoMoreWork = ~std::uint64_t{0};

std::uint64_t input(std::uint64_t i) { return (i * 0x9e3779b97f4a7c15ull) >> 40; }
std::uint64_t work(std::uint64_t x) { return (x * x + 7 * x) % 1'000'003; }

int run(int virtual_nodes) {
  shmkit::mpi::NodeView node(MPI_COMM_WORLD, virtual_nodes);
  using Table = shmkit::RawArray<std::uint64_t>;
  // One copy per node, filled by the leader before anyone else attaches.
  auto table = node.create_with<Table>(
      "table",
      [](const std::string& name) {
        Table t = Table::create(name, kItems);
        for (std::uint64_t i = 0; i < kItems; ++i) t.set(static_cast<std::ptrdiff_t>(i), input(i));
        return t;
      },
      [](const std::string& name) { return Table::attach(name); });
  auto chunks = node.create<shmkit::MpmcQueue<std::uint64_t>>("chunks", 512);
  auto node_sum = node.create<shmkit::AtomicValue<std::uint64_t>>("node_sum", 0);

  // The leader queues this node's chunks (chunk c belongs to node c % nodes),
  // then one "no more work" per rank of the node.
  const std::uint64_t n_chunks = kItems / kChunk;
  std::uint64_t mine_chunks = 0;
  if (node.is_leader()) {
    for (std::uint64_t c = static_cast<std::uint64_t>(node.node_index()); c < n_chunks;
         c += static_cast<std::uint64_t>(node.node_count())) {
      chunks->push(c);
    }
    for (int r = 0; r < node.node_size(); ++r) chunks->push(kNoMoreWork);
  }
  std::uint64_t sum = 0;
  for (std::uint64_t c; (c = chunks->pop()) != kNoMoreWork; ++mine_chunks) {
    for (std::uint64_t i = c * kChunk; i < (c + 1) * kChunk; ++i)
      sum += work(table->get(static_cast<std::ptrdiff_t>(i)));
  }
  node_sum->fetch_add(sum);
  node.node_barrier();  // every rank of the node has added its share

  std::uint64_t total = 0;
  if (node.is_leader()) {
    const std::uint64_t mine = node_sum->load();
    MPI_Allreduce(&mine, &total, 1, MPI_UINT64_T, MPI_SUM, node.leaders_comm());
  }
  MPI_Bcast(&total, 1, MPI_UINT64_T, 0, node.node_comm());
  std::printf("rank %d: node %d of %d, node rank %d of %d, %llu chunk(s), table %s\n", node.rank(),
              node.node_index(), node.node_count(), node.node_rank(), node.node_size(),
              static_cast<unsigned long long>(mine_chunks), table.name().c_str());
  std::fflush(stdout);
  MPI_Barrier(MPI_COMM_WORLD);
  if (node.rank() != 0) return 0;
  std::uint64_t serial = 0;
  for (std::uint64_t i = 0; i < kItems; ++i) serial += work(input(i));
  std::printf("%d ranks on %d node(s): total %llu, serial check %llu: %s\n", node.size(), node.node_count(),
              static_cast<unsigned long long>(total), static_cast<unsigned long long>(serial),
              total == serial ? "OK" : "MISMATCH");
  return total == serial ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 1;
  try {
    rc = run(argc > 1 ? std::atoi(argv[1]) : 0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_worker_pool: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return rc;
}
