// shmkit/sync/spin.hpp — how long shmkit's blocking calls spin before they
// sleep: a budget of time, calibrated once per process on the CPU it runs on.
//
// Contract
//   * Every spin-then-sleep path spins for a time budget, then sleeps on a
//     shared futex: the locks (Mutex, RobustMutex, Semaphore) at most
//     spin_policy().iterations rounds of one cpu_relax() and one load; the
//     queues' and rings' waits (an item is usually a few hundred ns away)
//     kWaitSpinFactor times longer, wait_iterations rounds of an attempt. The budget is time, not a count: a
//     PAUSE costs ~10-50 cycles on AMD Zen and ~140 on Intel since Skylake (Intel's optimisation manual), so
//     a count tuned on one vendor spins 3-8x longer in time on the other (MariaDB calibrates its spins with
//     the TSC for the same reason, MDEV-19845; .NET measures PAUSE at start-up).
//   * Calibration: at the first call, min over 5 runs of the time taken by 256
//     cpu_relax() calls (steady_clock), so about 5-100 us once per process.
//     iterations = budget_ns / ns_per_relax, clamped to [1, 100000], and
//     wait_iterations likewise for kWaitSpinFactor * budget_ns.
//   * The knob: SHMKIT_SPIN_NS (read once, at calibration) sets the budget in
//     nanoseconds (both kinds scale with it); 0 means "never spin, sleep at
//     once" (what glibc's default pthread mutex does). Unset or malformed:
//     kDefaultSpinNs.
//   * cpu_relax(): x86 PAUSE, aarch64 YIELD, a compiler barrier elsewhere.
//   * Never throws; thread-safe (the first callers may calibrate twice; they
//     agree on the result to within noise, and either is valid).
#pragma once

#include <cstdint>

namespace shmkit {

// 180 ns: the 10 PAUSEs (kSpinLimit) that were tuned on an AMD EPYC (Zen 4,
// ~18 ns a PAUSE under KVM) to match pthread's contended throughput; on an
// Intel Xeon (~50-70 ns a PAUSE) the same time is 3 PAUSEs, not 10.
inline constexpr std::uint32_t kDefaultSpinNs = 180;
// The queues' and rings' waits spin this many times longer (18 us by
// default: about the 2000 PAUSEs they spun on that AMD host before).
inline constexpr std::uint32_t kWaitSpinFactor = 100;

struct SpinPolicy {
  double ns_per_relax;            // measured cost of one cpu_relax()
  std::uint32_t budget_ns;        // the spin budget in time
  std::uint32_t iterations;       // budget_ns / ns_per_relax, clamped (0 if budget 0)
  std::uint32_t wait_iterations;  // the same for kWaitSpinFactor * budget_ns
  bool from_environment;          // SHMKIT_SPIN_NS set the budget
};

// The calibrated policy of this process (computed at the first call).
const SpinPolicy& spin_policy() noexcept;

namespace detail {
inline std::uint32_t spin_iterations() noexcept { return spin_policy().iterations; }
inline std::uint32_t wait_spin_iterations() noexcept { return spin_policy().wait_iterations; }
}  // namespace detail

}  // namespace shmkit
