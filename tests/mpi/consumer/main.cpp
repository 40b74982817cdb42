// Built against the *installed* shmkit::mpi: every rank of the node shares
// one Value through NodeView; rank 0 prints "mpi consumer: ok".
#include <mpi.h>

#include <cstdio>
#include <cstdlib>

#include <shmkit/mpi.hpp>
#include <shmkit/value.hpp>

int main(int argc, char** argv) {
  ::setenv("SHMKIT_WATCHER", SHMKIT_CONSUMER_WATCHER, 0);  // a relocated install
  MPI_Init(&argc, &argv);
  int ok = 0;
  {
    shmkit::mpi::NodeView node(MPI_COMM_WORLD, 0);
    auto count = node.create<shmkit::Value<long>>("count", 0L);
    count->fetch_add(1);
    node.node_barrier();
    ok = count->value() == node.node_size();
    if (node.rank() == 0) std::printf("mpi consumer: %s (%ld ranks)\n", ok ? "ok" : "WRONG", count->value());
  }
  MPI_Finalize();
  return ok ? 0 : 1;
}
