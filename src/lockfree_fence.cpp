// The heavy side of the asymmetric fence used by the lock-free structures
// (see shmkit/lockfree/detail/common.hpp).
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "shmkit/lockfree/detail/common.hpp"

namespace shmkit::lockfree_detail {
namespace {

long membarrier(int cmd) noexcept { return ::syscall(__NR_membarrier, cmd, 0, 0); }

// Registration belongs to the address space. A forked child gets a copy of
// the parent's (and of its handles, which cached "available"), but we do not
// rely on the kernel copying the registered state: the child registers again
// before fork() returns in it.
void register_in_child() noexcept { (void)membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED); }

bool register_once() noexcept {
  if constexpr (kTsan) return false;  // TSan does not model membarrier
  const long cmds = membarrier(MEMBARRIER_CMD_QUERY);
  if (cmds < 0 || (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0) return false;
  if (membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0) return false;
  return ::pthread_atfork(nullptr, nullptr, register_in_child) == 0;
}

}  // namespace

bool asymmetric_fence_available() noexcept {
  static const bool available = register_once();
  return available;
}

void heavy_fence() noexcept {
#if defined(__SANITIZE_THREAD__)
  tsan_fence();
#else
  // A process with the asymmetric fence off uses full fences on the light
  // side too, so a full fence here suffices for it; the membarrier makes the
  // registered processes' compiler-only barriers count as full ones.
  std::atomic_thread_fence(std::memory_order_seq_cst);  // seq_cst: see above
  if (asymmetric_fence_available()) {
    if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0) {
      // Cannot fail once registered (the kernel documents no such error);
      // the full fence above is then all we can do.
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
  }
#endif
}

}  // namespace shmkit::lockfree_detail
