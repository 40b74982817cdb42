// src/sync/spin.cpp — the spin budget's calibration (shmkit/sync/spin.hpp).
#include <chrono>
#include <cstdlib>

#include "shmkit/detail/sync_common.hpp"
#include "shmkit/sync/spin.hpp"

namespace shmkit {
namespace {

double measure_ns_per_relax() noexcept {
  using Clock = std::chrono::steady_clock;
  constexpr int kRelaxes = 256;
  double best = 1e9;
  for (int run = 0; run < 5; ++run) {
    const Clock::time_point t0 = Clock::now();
    for (int i = 0; i < kRelaxes; ++i) detail::cpu_relax();
    const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
    if (ns / kRelaxes < best) best = ns / kRelaxes;  // min: a preempted run is not the CPU
  }
  return best > 0.1 ? best : 0.1;  // a compiler barrier costs next to nothing
}

std::uint32_t iterations_for(std::uint64_t ns, double ns_per_relax) noexcept {
  if (ns == 0) return 0;
  const double n = static_cast<double>(ns) / ns_per_relax;
  return n < 1 ? 1u : n > 100000 ? 100000u : static_cast<std::uint32_t>(n + 0.5);
}

SpinPolicy calibrate() noexcept {
  SpinPolicy p{};
  p.ns_per_relax = measure_ns_per_relax();
  p.budget_ns = kDefaultSpinNs;
  if (const char* env = std::getenv("SHMKIT_SPIN_NS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const unsigned long v = std::strtoul(env, &end, 10);
    if (end != nullptr && *end == '\0' && v <= 10'000'000) {
      p.budget_ns = static_cast<std::uint32_t>(v);
      p.from_environment = true;
    }
  }
  p.iterations = iterations_for(p.budget_ns, p.ns_per_relax);
  p.wait_iterations = iterations_for(std::uint64_t{p.budget_ns} * kWaitSpinFactor, p.ns_per_relax);
  return p;
}

}  // namespace

const SpinPolicy& spin_policy() noexcept {
  static const SpinPolicy policy = calibrate();
  return policy;
}

}  // namespace shmkit
