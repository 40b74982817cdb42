// ShareableList get/set against CPython's ShareableList doing the same
// (bench/python/bench_shareable_list.py times CPython's own loop).
//
//   build/release/bench/bench_shareable_list --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
//   python3 bench/python/bench_shareable_list.py
//
// Each benchmark touches item 3 of a 16-item list in a block created for the
// run (and unlinked after it): an int slot for *Int, a 16-byte str for *Str16.
#include <benchmark/benchmark.h>

#include "python_baseline.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "shmkit/shareable_list.hpp"

namespace {

using shmkit::Item;
using shmkit::ShareableList;

const std::string kStr16 = "abcdefghijklmnop";  // 16 bytes: a "24s" slot

ShareableList make_list(const Item& slot3) {
  std::vector<Item> items;
  for (std::int64_t i = 0; i < 16; ++i) items.emplace_back(i);
  items[3] = slot3;
  return ShareableList::create(std::move(items));
}

// Unlinks the run's block however the benchmark ends.
struct Fixture {
  explicit Fixture(const Item& slot3) : list(make_list(slot3)) {}
  ~Fixture() {
    try {
      list.shm().unlink();
    } catch (...) {
    }
  }
  ShareableList list;
};

void BM_GetInt(benchmark::State& state) {
  Fixture f{Item(std::int64_t{12345})};
  for (auto _ : state) {
    Item v = f.list.get(3);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_SetInt(benchmark::State& state) {
  Fixture f{Item(std::int64_t{12345})};
  std::int64_t n = 0;
  for (auto _ : state) {
    f.list.set(3, Item(n++));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_GetStr16(benchmark::State& state) {
  Fixture f{Item(kStr16)};
  for (auto _ : state) {
    Item v = f.list.get(3);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

// get(index, out): the string's capacity is reused, no allocation per call.
void BM_GetStr16Into(benchmark::State& state) {
  Fixture f{Item(kStr16)};
  Item v;
  for (auto _ : state) {
    f.list.get(3, v);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_SetStr16(benchmark::State& state) {
  Fixture f{Item(kStr16)};
  const Item a(std::string("ABCDEFGHIJKLMNOP"));
  const Item b(kStr16);
  bool flip = false;
  for (auto _ : state) {
    f.list.set(3, flip ? a : b);
    flip = !flip;
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_GetInt)->UseRealTime();
BENCHMARK(BM_SetInt)->UseRealTime();
BENCHMARK(BM_GetStr16)->UseRealTime();
BENCHMARK(BM_GetStr16Into)->UseRealTime();
BENCHMARK(BM_SetStr16)->UseRealTime();

// CPython's ShareableList doing the same, one python3 run per repetition
// (so it interleaves with the C++ runs); its per-op time is this
// benchmark's single iteration.
void BM_CPython(benchmark::State& state, const char* key) {
  for (auto _ : state) {
    auto f = shmkit::bench::run_python_baseline("bench_shareable_list.py", "--repetitions 1 --ops 100000");
    state.SetIterationTime(f.at(key) * 1e-9);
  }
}
BENCHMARK_CAPTURE(BM_CPython, GetInt, "get_int")->UseManualTime()->Iterations(1);
BENCHMARK_CAPTURE(BM_CPython, SetInt, "set_int")->UseManualTime()->Iterations(1);
BENCHMARK_CAPTURE(BM_CPython, GetStr16, "get_str16")->UseManualTime()->Iterations(1);
BENCHMARK_CAPTURE(BM_CPython, SetStr16, "set_str16")->UseManualTime()->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
