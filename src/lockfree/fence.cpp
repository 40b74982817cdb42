// The heavy side of the asymmetric fence used by the lock-free structures
// (see shmkit/lockfree/detail/common.hpp).
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <ctime>

#include "shmkit/lockfree/detail/common.hpp"

namespace shmkit::lockfree_detail {
namespace {

long membarrier(int cmd) noexcept { return ::syscall(__NR_membarrier, cmd, 0, 0); }

// Registration belongs to the address space. A forked child gets a copy of
// the parent's (and of its handles, which cached "available"), but we do not
// rely on the kernel copying the registered state: the child registers again
// before fork() returns in it.
void register_in_child() noexcept { (void)membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED); }

// Whether the kernel offers GLOBAL_EXPEDITED at all (Linux >= 4.16). Any
// process may issue it, registered or not: registration only decides whether
// the process is one of those it interrupts.
// (Each once-only step below runs under pthread_once, not a function-local
// static: a fork while another thread is inside one leaves a C++ static's
// guard "in progress" in the child, which would wait on it for ever;
// glibc's pthread_once runs the step again there.)
std::atomic<bool> g_expedited_supported{false};
pthread_once_t g_expedited_query_once = PTHREAD_ONCE_INIT;
void query_expedited() {
  const long cmds = membarrier(MEMBARRIER_CMD_QUERY);
  g_expedited_supported.store(cmds >= 0 && (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0,
                              std::memory_order_relaxed);
}

bool global_expedited_supported() noexcept {
  (void)::pthread_once(&g_expedited_query_once, query_expedited);
  return g_expedited_supported.load(std::memory_order_relaxed);
}

bool register_once() noexcept {
  // TSan does not model a compiler-only light side: a TSan build keeps full
  // (RMW) fences on its light side and never registers.
  if constexpr (kTsan) return false;
  if (!global_expedited_supported()) return false;
  if (membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0) return false;
  return ::pthread_atfork(nullptr, nullptr, register_in_child) == 0;
}

}  // namespace

std::atomic<std::uint64_t> process_token_word{0};

namespace {
std::uint64_t draw_token() noexcept {
  // Async-signal-safe (it also runs in a fork child): getpid and
  // clock_gettime. The pid tells apart the live processes; the clock tells
  // apart a reused pid. splitmix64's finaliser spreads both.
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  std::uint64_t x =
      (static_cast<std::uint64_t>(::getpid()) << 40) ^
      (static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec));
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x == 0 ? 1 : x;  // 0 is what a fresh block holds: never a token
}

void redraw_token_in_child() noexcept { process_token_word.store(draw_token(), std::memory_order_relaxed); }
pthread_once_t g_token_once = PTHREAD_ONCE_INIT;
void first_token() {
  process_token_word.store(draw_token(), std::memory_order_relaxed);
  ::pthread_atfork(nullptr, nullptr, redraw_token_in_child);
}
std::atomic<bool> g_asym_available{false};
pthread_once_t g_asym_once = PTHREAD_ONCE_INIT;
void register_asym() { g_asym_available.store(register_once(), std::memory_order_relaxed); }
}  // namespace

// The first process_token() of this process image (and of none of its fork
// children: the atfork handler has drawn theirs before they run).
std::uint64_t draw_process_token() noexcept {
  (void)::pthread_once(&g_token_once, first_token);
  return process_token_word.load(std::memory_order_relaxed);
}

bool asymmetric_fence_available() noexcept {
  (void)::pthread_once(&g_asym_once, register_asym);
  return g_asym_available.load(std::memory_order_relaxed);
}

// The pairing must hold whatever either side's registration did: a peer
// that registered uses a compiler-only light side, so the heavy side issues
// GLOBAL_EXPEDITED whenever the kernel has it — also when this process's own
// registration failed (seccomp, a TSan build) — and does a full fence for
// the peers that did not register (their light side is a full fence too).
// If the membarrier call itself fails here (a seccomp filter on this process
// alone), a registered peer's publish may go unseen by this sleeper's
// re-check: the wake it then skips costs at most one bounded sleep slice
// (every wait re-checks; see kLostWakeRecheck), never a hang.
void heavy_fence() noexcept {
#if defined(__SANITIZE_THREAD__)
  // What TSan sees, and a full fence for unregistered peers (an acq_rel RMW
  // is a locked instruction on x86; TSan does not model thread fences).
  tsan_fence();
  if (global_expedited_supported()) (void)membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);  // seq_cst: see above
  if (global_expedited_supported()) {
    if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0) {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
  }
#endif
}

}  // namespace shmkit::lockfree_detail
