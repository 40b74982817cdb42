// SharedMemory create/attach cycles of a 4 KiB block against the raw
// syscalls (same binary) and CPython's SharedMemory (python3 timing its own
// loop, reported through manual time). Run with repetitions and random
// interleaving; bench/compare.py prints medians and ratios.
//
// Like with like against CPython: CPython registers every block it creates
// or attaches with its resource tracker (3.13's track=False turns that off),
// so the tracked rows (the *Tracked candidates, registering with shmkit's
// tracker) face CPython's default, and the untracked rows face CPython's
// track=False, which the baseline script reports only on 3.13 or later.
#include <benchmark/benchmark.h>

#include <cstring>
#include <fcntl.h>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "python_baseline.hpp"
#include "shmkit/shared_memory.hpp"

namespace {

constexpr std::size_t kSize = 4096;

std::string bench_name(const char* tag) { return "shmkit_bench_" + std::to_string(::getpid()) + "_" + tag; }

// The raw POSIX sequence CPython and most C code use.
void BM_Raw_CreateCycle(benchmark::State& state) {
  std::string path = "/" + bench_name("raw");
  for (auto _ : state) {
    int fd = ::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 || ::ftruncate(fd, kSize) != 0) state.SkipWithError("shm_open/ftruncate");
    void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    benchmark::DoNotOptimize(p);
    ::munmap(p, kSize);
    ::close(fd);
    ::shm_unlink(path.c_str());
  }
}
BENCHMARK(BM_Raw_CreateCycle)->UseRealTime();

// The raw sequence with shmkit's create guarantees and nothing else: the
// memory reserved (fallocate instead of ftruncate, so a full /dev/shm is
// ENOSPC at create, never SIGBUS later) and the new file's mode and inode
// read (statx; shmkit fchmods only if the umask cleared bits of the mode,
// and keeps the inode for the tracker). The floor under
// BM_Shmkit_CreateCycle: bench/notes/shared-memory-create.md splits the
// gap to BM_Raw_CreateCycle between the two.
void BM_Raw_CreateCycleReserved(benchmark::State& state) {
  std::string path = "/" + bench_name("rawres");
  for (auto _ : state) {
    int fd = ::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 || ::fallocate(fd, 0, 0, kSize) != 0) state.SkipWithError("shm_open/fallocate");
    void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    benchmark::DoNotOptimize(p);
    ::munmap(p, kSize);
    ::close(fd);
    ::shm_unlink(path.c_str());
  }
}
BENCHMARK(BM_Raw_CreateCycleReserved)->UseRealTime();

// statx of the descriptor the cheapest way the kernel allows: a NULL path
// (Linux 6.11+), else "" (as shmkit does).
int statx_fd(int fd, struct statx* sx) {
  static bool null_path = true;
  if (null_path) {
    if (::syscall(SYS_statx, fd, nullptr, AT_EMPTY_PATH, STATX_MODE | STATX_INO, sx) == 0) return 0;
    null_path = false;
  }
  return ::statx(fd, "", AT_EMPTY_PATH, STATX_MODE | STATX_INO, sx);
}

void BM_Raw_CreateCycleReservedStat(benchmark::State& state) {
  std::string path = "/" + bench_name("rawress");
  for (auto _ : state) {
    int fd = ::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    struct statx sx {};
    if (fd < 0 || statx_fd(fd, &sx) != 0 || ::fallocate(fd, 0, 0, kSize) != 0) {
      state.SkipWithError("shm_open/statx/fallocate");
    }
    benchmark::DoNotOptimize(sx.stx_ino);
    void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    benchmark::DoNotOptimize(p);
    ::munmap(p, kSize);
    ::close(fd);
    ::shm_unlink(path.c_str());
  }
}
BENCHMARK(BM_Raw_CreateCycleReservedStat)->UseRealTime();

void BM_Shmkit_CreateCycle(benchmark::State& state) {
  std::string name = bench_name("create");
  for (auto _ : state) {
    auto shm = shmkit::SharedMemory::create(name, kSize);
    benchmark::DoNotOptimize(shm.data());
    shm.close();
    shm.unlink();
  }
}
BENCHMARK(BM_Shmkit_CreateCycle)->UseRealTime();

// CPython's sparse behaviour (no fallocate): the fair like-for-like figure.
void BM_Shmkit_CreateCycleNoReserve(benchmark::State& state) {
  std::string name = bench_name("sparse");
  shmkit::SharedMemory::Options opt;
  opt.reserve = false;
  for (auto _ : state) {
    auto shm = shmkit::SharedMemory::create(name, kSize, opt);
    benchmark::DoNotOptimize(shm.data());
    shm.close();
    shm.unlink();
  }
}
BENCHMARK(BM_Shmkit_CreateCycleNoReserve)->UseRealTime();

void BM_Shmkit_CreateCycleRandomName(benchmark::State& state) {
  for (auto _ : state) {
    auto shm = shmkit::SharedMemory::create(kSize);
    benchmark::DoNotOptimize(shm.data());
    shm.close();
    shm.unlink();
  }
}
BENCHMARK(BM_Shmkit_CreateCycleRandomName)->UseRealTime();

shmkit::SharedMemory::Options tracked() {
  shmkit::SharedMemory::Options opt;
  opt.track = true;
  return opt;
}

// Registered with shmkit's tracker, as CPython's SharedMemory registers with
// its resource tracker (unlink() drops the registration, as CPython's does).
void BM_Shmkit_CreateCycleRandomNameTracked(benchmark::State& state) {
  const auto opt = tracked();
  for (auto _ : state) {
    auto shm = shmkit::SharedMemory::create(kSize, opt);
    benchmark::DoNotOptimize(shm.data());
    shm.close();
    shm.unlink();
  }
}
BENCHMARK(BM_Shmkit_CreateCycleRandomNameTracked)->UseRealTime();

// With a first write, so the raw path pays for its page too.
void BM_Raw_CreateWriteCycle(benchmark::State& state) {
  std::string path = "/" + bench_name("raww");
  for (auto _ : state) {
    int fd = ::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 || ::ftruncate(fd, kSize) != 0) state.SkipWithError("shm_open/ftruncate");
    auto* p = static_cast<char*>(::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    p[0] = 1;
    benchmark::ClobberMemory();
    ::munmap(p, kSize);
    ::close(fd);
    ::shm_unlink(path.c_str());
  }
}
BENCHMARK(BM_Raw_CreateWriteCycle)->UseRealTime();

void BM_Shmkit_CreateWriteCycle(benchmark::State& state) {
  std::string name = bench_name("createw");
  for (auto _ : state) {
    auto shm = shmkit::SharedMemory::create(name, kSize);
    static_cast<char*>(shm.data())[0] = 1;
    benchmark::ClobberMemory();
    shm.close();
    shm.unlink();
  }
}
BENCHMARK(BM_Shmkit_CreateWriteCycle)->UseRealTime();

class Existing {
 public:
  explicit Existing(const char* tag) : shm_(shmkit::SharedMemory::create(bench_name(tag), kSize)) {}
  ~Existing() { shm_.unlink(); }
  const std::string& name() const { return shm_.name(); }

 private:
  shmkit::SharedMemory shm_;
};

void BM_Raw_Attach(benchmark::State& state) {
  Existing block("rawattach");
  std::string path = "/" + block.name();
  for (auto _ : state) {
    int fd = ::shm_open(path.c_str(), O_RDWR, 0);
    struct stat st {};
    ::fstat(fd, &st);
    void* p =
        ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    benchmark::DoNotOptimize(p);
    ::munmap(p, static_cast<std::size_t>(st.st_size));
    ::close(fd);
  }
}
BENCHMARK(BM_Raw_Attach)->UseRealTime();

void BM_Shmkit_Attach(benchmark::State& state) {
  Existing block("attach");
  for (auto _ : state) {
    auto shm = shmkit::SharedMemory::attach(block.name());
    benchmark::DoNotOptimize(shm.data());
  }
}
BENCHMARK(BM_Shmkit_Attach)->UseRealTime();

void BM_Shmkit_AttachTracked(benchmark::State& state) {
  Existing block("attacht");
  const auto opt = tracked();
  for (auto _ : state) {
    auto shm = shmkit::SharedMemory::attach(block.name(), opt);
    benchmark::DoNotOptimize(shm.data());
  }
}
BENCHMARK(BM_Shmkit_AttachTracked)->UseRealTime();

// CPython: one python3 run per repetition, its own loop of 2000; the
// per-operation time is reported as this benchmark's (single) iteration.
// The track=False figures come from SHMKIT_BENCH_PYTHON_TRACK_FALSE (a
// CPython 3.13 or later, when the build found one), the others from the
// build's own interpreter. A figure the script does not report (track=False
// before 3.13) is an error row, which the suite shows as missing.
std::string python_for(std::string_view key) {
  const std::string with_track_false = SHMKIT_BENCH_PYTHON_TRACK_FALSE;
  if (key.find("untracked") != std::string_view::npos && !with_track_false.empty() &&
      ::access(with_track_false.c_str(), X_OK) == 0) {
    return with_track_false;
  }
  return SHMKIT_BENCH_PYTHON;
}

void BM_CPython(benchmark::State& state, const char* key) {
  const std::string python = python_for(key);
  for (auto _ : state) {
    auto figures = shmkit::bench::run_python_baseline("bench_shared_memory.py", "2000", python);
    const auto it = figures.find(key);
    if (it == figures.end()) {
      state.SkipWithError((std::string("this python3 does not report ") + key).c_str());
      break;
    }
    state.SetIterationTime(it->second * 1e-9);
  }
}
BENCHMARK_CAPTURE(BM_CPython, CreateCycle, "create_cycle_ns")->UseManualTime()->Iterations(1);
BENCHMARK_CAPTURE(BM_CPython, Attach, "attach_ns")->UseManualTime()->Iterations(1);
BENCHMARK_CAPTURE(BM_CPython, CreateCycleUntracked, "create_cycle_untracked_ns")
    ->UseManualTime()
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_CPython, AttachUntracked, "attach_untracked_ns")->UseManualTime()->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
