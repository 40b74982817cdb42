// The Python rows' placement probe: the round trip of a spin ping-pong
// between two processes pinned to two CPUs, the same probe bench_lockfree
// takes around every SPSC run. A VM's host may move its virtual CPUs
// between a "near" and a "far" placement (on the 2-vCPU EPYC VM about 120
// ns against about 500 ns) within seconds; bench/compare.py pairs a
// candidate's repetition with a baseline's only when the probes around the
// two runs agree. Built only for the benchmarks (module _placement_probe,
// next to bench_python); never installed.
//
// Contract:
//   * ping_pong_ns(cpu_a, cpu_b, window=0.015) -> float: this process is
//     pinned to cpu_a for the call (its CPU set is restored after), a forked
//     child to cpu_b; they bounce a counter through two atomics on separate
//     cache lines for `window` seconds (0 < window <= 1). Returns ns per
//     round trip, or 0.0 when no round trip completed within a second (the
//     child never ran: the probe is then absent, never a hang).
//   * The child runs only this file's C++ (no Python) and _exits; it dies
//     with its parent (PR_SET_PDEATHSIG). The caller holds the GIL
//     throughout (the call lasts about `window`).
//   * Errors (mmap, fork, a CPU outside the machine's range) raise OSError
//     or ValueError.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <new>

namespace {

struct alignas(64) Line {
  std::atomic<std::uint64_t> v{0};
};

struct Pair {
  Line ping;  // the parent writes, the child reads
  Line pong;  // the child writes, the parent reads
};

constexpr std::uint64_t kStop = ~std::uint64_t{0};

[[noreturn]] void child(Pair* p, int cpu, pid_t parent) {
  // A parent killed mid-probe takes the child with it (never an orphan
  // spinning for ever); the getppid() check closes the race with a parent
  // that died before the prctl.
  (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  (void)sched_setaffinity(0, sizeof s, &s);
  std::uint64_t last = 0;  // (kept here: reading pong back would pull its line over)
  for (;;) {
    // (1) acquire: pairs with (2); nothing is read after it but the value.
    const std::uint64_t v = p->ping.v.load(std::memory_order_acquire);
    if (v == kStop) _exit(0);
    if (v != last) {
      p->pong.v.store(v, std::memory_order_release);  // (3) pairs with (4)
      last = v;
    }
  }
}

PyObject* ping_pong_ns(PyObject*, PyObject* args) {
  int cpu_a = 0;
  int cpu_b = 0;
  double window = 0.015;
  if (!PyArg_ParseTuple(args, "ii|d:ping_pong_ns", &cpu_a, &cpu_b, &window)) return nullptr;
  if (cpu_a < 0 || cpu_b < 0 || cpu_a >= CPU_SETSIZE || cpu_b >= CPU_SETSIZE) {
    PyErr_SetString(PyExc_ValueError, "ping_pong_ns: CPU numbers must be in [0, CPU_SETSIZE)");
    return nullptr;
  }
  if (!(window > 0.0 && window <= 1.0)) {
    PyErr_SetString(PyExc_ValueError, "ping_pong_ns: window must be in (0, 1] seconds");
    return nullptr;
  }
  void* mem = mmap(nullptr, sizeof(Pair), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return PyErr_SetFromErrno(PyExc_OSError);
  auto* p = new (mem) Pair();
  cpu_set_t old;
  const bool have_old = sched_getaffinity(0, sizeof old, &old) == 0;
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int e = errno;
    munmap(mem, sizeof(Pair));
    errno = e;
    return PyErr_SetFromErrno(PyExc_OSError);
  }
  if (pid == 0) child(p, cpu_b, parent);
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu_a, &s);
  (void)sched_setaffinity(0, sizeof s, &s);
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  const Clock::time_point give_up = start + std::chrono::seconds(1);
  Clock::time_point t0{};
  std::uint64_t i = 0;
  std::uint64_t timed = 0;
  bool ok = true;
  // The first round trip (the child's start) is not timed.
  for (bool warm = false; ok;) {
    ++i;
    p->ping.v.store(i, std::memory_order_release);  // (2) pairs with (1)
    std::uint32_t spins = 0;
    // (4) acquire: pairs with (3).
    while (p->pong.v.load(std::memory_order_acquire) != i) {
      if (++spins % 4096 == 0 && Clock::now() > give_up) {
        ok = false;
        break;
      }
    }
    if (!ok) break;
    if (!warm) {
      warm = true;
      t0 = Clock::now();
      continue;
    }
    if (++timed % 64 == 0) {
      const Clock::time_point now = Clock::now();
      if (now - t0 >= std::chrono::duration<double>(window)) break;
      if (now > give_up) break;
    }
  }
  const double ns =
      ok && timed > 0 ? std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / timed : 0.0;
  p->ping.v.store(kStop, std::memory_order_release);
  if (!ok) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (have_old) (void)sched_setaffinity(0, sizeof old, &old);
  munmap(mem, sizeof(Pair));
  return PyFloat_FromDouble(ns);
}

PyMethodDef probe_methods[] = {
    {"ping_pong_ns", ping_pong_ns, METH_VARARGS,
     "ping_pong_ns(cpu_a, cpu_b, window=0.015) -> float\n--\n\nRound trip (ns) of a spin ping-pong between "
     "this "
     "process pinned to cpu_a and a child pinned to cpu_b; 0.0 when none completed within a second."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef probe_module = {PyModuleDef_HEAD_INIT,
                            "_placement_probe",
                            "The spin ping-pong probe of the placement of two CPUs (a benchmark aid).",
                            -1,
                            probe_methods,
                            nullptr,
                            nullptr,
                            nullptr,
                            nullptr};

}  // namespace

extern "C" PyMODINIT_FUNC PyInit__placement_probe() { return PyModule_Create(&probe_module); }
