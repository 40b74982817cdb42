// shmkit/lockfree/detail/claimant.hpp — a process's identity as a claimant
// of a slot (pid and start time packed in 54 bits), and the test of whether
// the process a claim names has certainly exited. Shared by the queues that
// record who holds a slot (MpmcQueue) so a survivor can step over a claim of
// a dead process and only of a dead one.
//
// Contract
//   * claimant_id(): this process's identity; one relaxed load after the
//     first call (computed once per process, again in a forked child: an
//     atfork handler clears the cache). Any thread, noexcept, no syscall on
//     the fast path.
//   * make_claimant_id(pid, start): the packing (pid in bits 32-53, the low
//     32 bits of the start time below; a pid >= 2^22 packs as pid field 0).
//   * claimant_dead(id): true only when the exit is certain (no such pid, a
//     zombie, a pid reused by a process with another start time); false for
//     a live process, one /proc hides, and pid field 0 (unknown). Reads
//     /proc: never on a fast path.
#pragma once

#include <pthread.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "shmkit/detail/process.hpp"

namespace shmkit {

namespace lockfree_detail {

// A process's identity as a claimant, as it sits in the low 54 bits of a
// claim word: pid in bits 32-53 (pids stay below 2^22, Linux's
// PID_MAX_LIMIT), the low 32 bits of its start time (clock ticks after
// boot) below. A pid field of 0 means "unknown": never judged dead.
inline constexpr std::uint64_t kClaimantPidLimit = std::uint64_t{1} << 22;
inline constexpr std::uint64_t kClaimantIdMask = (kClaimantPidLimit << 32) - 1;

// This process's identity, computed once (0: not yet).
inline std::atomic<std::uint64_t> g_claimant_id{0};

inline std::uint64_t make_claimant_id(pid_t pid, std::uint64_t start) noexcept {
  const auto p = static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid));
  return (p < kClaimantPidLimit ? p << 32 : 0) | (start & 0xffffffffu);
}

inline void clear_claimant_id() noexcept { g_claimant_id.store(0, std::memory_order_relaxed); }
inline void register_claimant_atfork() noexcept {
  (void)::pthread_atfork(nullptr, nullptr, clear_claimant_id);
}
// pthread_once, not a function-local static: a fork while another thread is
// inside the registration leaves a C++ static's guard "in progress" in the
// child, which would wait on it for ever; glibc's pthread_once runs it again
// there (it records the fork generation).
inline pthread_once_t g_claimant_atfork_once = PTHREAD_ONCE_INIT;

// Slow path of claimant_id(): computes it once per process; a forked child
// computes its own (the atfork handler clears the cache).
[[gnu::noinline, gnu::cold]] inline std::uint64_t compute_claimant_id() noexcept {
  (void)::pthread_once(&g_claimant_atfork_once, register_claimant_atfork);
  const pid_t pid = ::getpid();
  const std::uint64_t id = make_claimant_id(pid, process::start_time(pid));
  // relaxed: a per-process cache of a value every thread computes alike.
  g_claimant_id.store(id, std::memory_order_relaxed);
  return id;
}

inline std::uint64_t claimant_id() noexcept {
  const std::uint64_t id = g_claimant_id.load(std::memory_order_relaxed);
  return id != 0 ? id : compute_claimant_id();
}

// Whether the process a claim names has certainly exited: no such pid, a
// zombie, or a different start time (the pid was reused), judged by
// process::has_exited (shmkit/detail/process.hpp). Not when /proc hides the process (hidepid,
// another user's), nor when the identity is unknown (pid field 0): a
// survivor then waits rather than step over a claimant that may still
// write.
inline bool claimant_dead(std::uint64_t id) noexcept {
  const auto pid = static_cast<pid_t>((id & kClaimantIdMask) >> 32);
  if (pid <= 0) return false;
  return process::has_exited(pid, id & 0xffffffffu, 0xffffffffu);
}

}  // namespace lockfree_detail

}  // namespace shmkit
