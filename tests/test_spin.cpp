// The spin budget (shmkit/sync/spin.hpp): calibrated in time, overridden by
// SHMKIT_SPIN_NS, and every lock still correct at the extremes (no spin at
// all, and a long spin). Each case runs in a fresh fork child, because the
// policy is computed once per process.
#include <gtest/gtest.h>

#include <cstdlib>

#include "shmkit/shared_memory.hpp"
#include "shmkit/sync/mutex.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/sync/semaphore.hpp"
#include "shmkit/sync/spin.hpp"
#include "test_support.hpp"

namespace shmkit::test {
namespace {

TEST(SpinPolicy, DefaultBudgetIsTimeConvertedToIterations) {
  EXPECT_TRUE(run_child([] {
                ::unsetenv("SHMKIT_SPIN_NS");
                const SpinPolicy& p = spin_policy();
                if (p.from_environment || p.budget_ns != kDefaultSpinNs) return 1;
                if (!(p.ns_per_relax > 0.0)) return 2;
                const double want = p.budget_ns / p.ns_per_relax;
                if (p.iterations < 1 || p.iterations > 100000) return 3;
                if (want >= 1 && want <= 100000 && (p.iterations + 1 < want || p.iterations > want + 1)) {
                  return 4;
                }
                if (p.wait_iterations < p.iterations) return 6;  // waits spin kWaitSpinFactor x longer
                return &spin_policy() == &p ? 0 : 5;             // computed once
              }).ok());
}

TEST(SpinPolicy, EnvironmentOverridesAndMalformedIsIgnored) {
  EXPECT_TRUE(run_child([] {
                ::setenv("SHMKIT_SPIN_NS", "0", 1);
                const SpinPolicy& p = spin_policy();
                return p.from_environment && p.budget_ns == 0 && p.iterations == 0 && p.wait_iterations == 0
                           ? 0
                           : 1;
              }).ok());
  EXPECT_TRUE(run_child([] {
                ::setenv("SHMKIT_SPIN_NS", "5000", 1);
                const SpinPolicy& p = spin_policy();
                return p.from_environment && p.budget_ns == 5000 && p.iterations >= 1 ? 0 : 1;
              }).ok());
  EXPECT_TRUE(run_child([] {
                ::setenv("SHMKIT_SPIN_NS", "12x", 1);
                const SpinPolicy& p = spin_policy();
                return !p.from_environment && p.budget_ns == kDefaultSpinNs ? 0 : 1;
              }).ok());
}

// Exact counts from 4 processes under each lock with no spin at all and
// with a long one: the budget changes speed, never correctness.
void count_under_locks(const char* spin_ns) {
  auto shm = SharedMemory::anonymous(4096);
  struct S {
    Mutex m;
    RobustMutex r;
    Semaphore sem{1, 1};
    std::uint64_t a, b, c;
  };
  auto* s = ::new (shm.data()) S();
  constexpr int kProcs = 4, kIters = 5000;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    kids.push_back(fork_child([&] {
      ::setenv("SHMKIT_SPIN_NS", spin_ns, 1);
      if (spin_policy().budget_ns != std::strtoul(spin_ns, nullptr, 10)) return 9;
      for (int i = 0; i < kIters; ++i) {
        s->m.lock();
        ++s->a;
        s->m.unlock();
        if (s->r.lock() != LockResult::acquired) return 1;
        ++s->b;
        (void)s->r.unlock();
        s->sem.acquire();
        ++s->c;
        (void)s->sem.release();
      }
      return 0;
    }));
  }
  for (pid_t k : kids) EXPECT_TRUE(wait_child(k, 60s).ok());
  EXPECT_EQ(s->a, std::uint64_t{kProcs} * kIters);
  EXPECT_EQ(s->b, std::uint64_t{kProcs} * kIters);
  EXPECT_EQ(s->c, std::uint64_t{kProcs} * kIters);
}

TEST(SpinPolicy, LocksCountExactlyWithoutSpinning) { count_under_locks("0"); }
TEST(SpinPolicy, LocksCountExactlyWithALongSpin) { count_under_locks("20000"); }

}  // namespace
}  // namespace shmkit::test
