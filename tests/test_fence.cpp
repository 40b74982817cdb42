// The asymmetric fence of the lock-free structures' sleep/wake protocol
// (shmkit/lockfree/detail/common.hpp): its heavy side must interrupt the
// registered peers whatever this process's own registration did, or a
// registered notifier's compiler-only light side pairs with nothing.
//
// A seccomp filter in a forked child refuses
// membarrier(REGISTER_GLOBAL_EXPEDITED) with EPERM (as a container's policy
// or a failed registration would) and traps membarrier(GLOBAL_EXPEDITED)
// into a SIGSYS handler that counts it and returns success.
#include <gtest/gtest.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>

#include "shmkit/lockfree/detail/common.hpp"
#include "test_support.hpp"

namespace shmkit::test {
namespace {

#if defined(__x86_64__)
volatile sig_atomic_t g_trapped = 0;

void on_sigsys(int, siginfo_t* info, void* ctx) {
  if (info->si_syscall == __NR_membarrier) {
    g_trapped = g_trapped + 1;
    static_cast<ucontext_t*>(ctx)->uc_mcontext.gregs[REG_RAX] = 0;  // "succeeded"
  }
}

bool install_filter() {
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  if (::sigaction(SIGSYS, &sa, nullptr) != 0) return false;
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

bool kernel_has_global_expedited() {
  const long cmds = ::syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  return cmds >= 0 && (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0;
}

// Fails on the code before the fix: a process whose registration failed
// made its heavy side a plain fence, which a registered peer's
// compiler-only light side does not pair with.
TEST(AsymmetricFence, HeavySideInterruptsPeersEvenWhenItsOwnRegistrationFailed) {
  if (!kernel_has_global_expedited()) GTEST_SKIP() << "no membarrier GLOBAL_EXPEDITED here";
  const ExitStatus st = run_child([] {
    if (!install_filter()) return 10;
    // The filter refuses the registration: the light side must be a full fence.
    if (lockfree_detail::asymmetric_fence_available()) return 11;
    const int before = g_trapped;
    lockfree_detail::heavy_fence();
    if (g_trapped != before + 1) return 12;  // no membarrier: the pairing is broken
    return 0;
  });
  EXPECT_TRUE(st.ok()) << st.describe()
                       << " (10: no filter, 11: registered anyway, 12: no membarrier issued)";
}

// The ordinary case, for contrast: registered, and the heavy side issues it.
TEST(AsymmetricFence, RegisteredProcessUsesTheCompilerOnlyLightSide) {
  if (!kernel_has_global_expedited()) GTEST_SKIP() << "no membarrier GLOBAL_EXPEDITED here";
  const ExitStatus st = run_child([] {
    const bool registered = lockfree_detail::asymmetric_fence_available();
    if (lockfree_detail::kTsan) return registered ? 1 : 0;
    return registered ? 0 : 2;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
}
#else
TEST(AsymmetricFence, HeavySideInterruptsPeersEvenWhenItsOwnRegistrationFailed) {
  GTEST_SKIP() << "the seccomp trap in this test is written for x86-64";
}
#endif

}  // namespace
}  // namespace shmkit::test
