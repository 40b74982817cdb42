// examples/python_pair_worker.cpp — the C++ half of a Python/C++ pair.
//
// python_pair.py (CPython) creates a ShareableList of parameters and a block
// holding a numpy float64 array, then runs this worker with their names. The
// worker attaches both by name, computes, and writes back: the array is
// scaled in place and replaced by its prefix sums; the list gets the total,
// a status string and the worker's pid. Python then prints the result.
//
//   python_pair_worker LIST_NAME ARRAY_NAME
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <unistd.h>

#include <shmkit/shareable_list.hpp>
#include <shmkit/shared_memory.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: python_pair_worker LIST_NAME ARRAY_NAME\n");
    return 2;
  }
  try {
    // ['params', scale, count, total, status, pid]  (see python_pair.py)
    auto params = shmkit::ShareableList::attach(argv[1]);
    const double scale = std::get<double>(params.get(1));
    const auto count = static_cast<std::size_t>(std::get<std::int64_t>(params.get(2)));

    auto block = shmkit::SharedMemory::attach(argv[2]);
    if (count * sizeof(double) > block.size()) {
      throw std::invalid_argument("array block is smaller than count doubles");
    }
    std::span<double> a(static_cast<double*>(block.data()), count);
    double running = 0;
    for (double& x : a) {
      running += x * scale;
      x = running;
    }
    params.set(3, running);
    params.set(4, std::string("done by C++"));
    params.set(5, static_cast<std::int64_t>(::getpid()));
    std::printf("C++ worker: scaled %zu values by %g, total %g\n", count, scale, running);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "C++ worker: %s\n", e.what());
    return 1;
  }
}
