// shmkit/detail/process.hpp — process liveness: who a process (or thread)
// is, and whether it has exited. The one place shmkit judges another process
// alive or dead: RobustMutex's owner check (sync), MpmcQueue's claimant check
// (lockfree) and the tracker's registrations all use it. Part of the platform
// layer: it depends on nothing else of shmkit.
//
// Contract
//   * Identity: a task is named by its id (pid or tid, as this process's
//     /proc and kill(2) see ids) AND its start time, so a reused id is never
//     taken for the task that had it before. Start times are clock ticks
//     (USER_HZ) after the HOST's boot: /proc/<id>/task/<id>/stat field 22
//     (the same as /proc/<id>/stat's, which qemu-user fakes for an emulated
//     process's own id; src/platform/process.cpp) less the
//     reader's time-namespace boot-time offset (/proc/self/timens_offsets),
//     so every process, in any time namespace, gets the same number for the
//     same task and can compare what another recorded.
//   * Start time 0 means unknown: the task does not exist or has exited (a
//     zombie not yet reaped counts as exited), /proc hides it (hidepid,
//     another user's, no /proc), or this process cannot normalise start
//     times (its offset is not a whole number of ticks, or it called
//     unshare(CLONE_NEWTIME) and has not exec'd). A caller that records 0
//     is judged by its id alone.
//   * has_exited() is true only when the exit is certain, never for a task
//     that may still run: a caller may then take over what that task held
//     (its stores are all visible: exit is a full barrier in the kernel).
//     False when it cannot tell.
//   * A task of another PID namespace is the caller's to exclude: its id
//     means nothing here. Another time namespace needs nothing (both sides
//     are in host terms).
//   * Any thread may call any function at any time: each reads /proc (and
//     calls kill(tid, 0)) and returns; never blocks on another process, no
//     allocation, never throws.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace shmkit::process {

// The start time of task `pid` (host terms; 0: unknown, see above).
std::uint64_t start_time(pid_t pid) noexcept;

// The calling process's own start time (/proc/self/task/<its id>/stat:
// /proc/self names this process even where /proc shows another PID
// namespace's ids).
std::uint64_t self_start_time() noexcept;

// The calling thread's own start time (/proc/thread-self/stat).
std::uint64_t thread_start_time() noexcept;

// Whether the task (process or thread) `tid` that started at `start` (as
// start_time() gives it) has certainly exited: no such id (kill(2) says
// ESRCH), a zombie not yet reaped, or its id now names a task with another
// start time (the id was reused). Only the bits selected by `start_mask`
// are compared (a caller that keeps the low 32 bits passes 0xffffffff);
// `start` 0 means the start is unknown, and then a live task with that id
// is taken to be the same one; likewise when this process cannot normalise
// start times. False when it cannot tell (/proc hides the task).
bool has_exited(pid_t tid, std::uint64_t start, std::uint64_t start_mask = ~std::uint64_t{0}) noexcept;

}  // namespace shmkit::process
