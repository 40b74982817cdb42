// src/platform/platform.hpp — shmkit's thin layer over Linux system calls. Internal:
// no public header includes this file or the system headers it needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace shmkit::platform {

// Throws std::system_error(err) whose message is `what` (the caller names the
// block and the operation; system_error appends strerror).
[[noreturn]] void throw_errno(int err, const std::string& what);

// Fills `out` from getrandom(2), retrying on EINTR; throws on failure.
void random_bytes(void* out, std::size_t n);

// Lowercase hex of `n` bytes (two digits a byte).
std::string hex(const void* data, std::size_t n);

// `prefix` + 2*nbytes lowercase hex digits from getrandom.
std::string random_hex_name(std::string_view prefix, std::size_t nbytes);

// "psm_" + 8 lowercase hex digits, as CPython's _make_filename on Linux.
std::string random_block_name();

// Where the block `name` lives in the filesystem: /dev/shm/NAME (what
// shm_open("/NAME") opens).
std::string dev_shm_path(std::string_view name);

// Quotes a block name for a message: 'name'.
std::string quoted(std::string_view name);

// SCM_RIGHTS: sends one descriptor (with a 1-byte payload) / receives one.
// Both retry on EINTR and throw std::system_error on failure; receive throws
// std::system_error(EPROTO) if the message carried no descriptor.
void send_descriptor(int socket, int fd);
int receive_descriptor(int socket);

// What /proc/PID/stat (or /proc/TID/stat, /proc/self/stat, ...) at `path`
// says of a task: `readable` false when the file could not be read (no such
// task, no /proc, hidepid); otherwise whether it has exited (state 'Z' or
// 'X': a zombie keeps its id until reaped) and its start time (field 22),
// in host terms (see below; 0: unknown). The command name "(comm)" may hold
// spaces and ')', so fields are counted after the last ')'. Async-signal-
// safe reads only (open/read/close/stat), no allocation.
//
// Start times and time namespaces: the kernel shows field 22 shifted by the
// READER's boot-time offset (the offset of the time namespace of the task
// that reads the file, whichever task the file describes). Two processes in
// different time namespaces (`unshare --time --boottime N`) would read
// different start times for the same task, and each would take the other's
// recorded identity for a reused id. So every reading is normalised: the
// reader subtracts its own boot-time offset (boottime_offset_ticks()), and
// `start` is clock ticks after the HOST's boot, the same number in every
// namespace. When the reader cannot normalise exactly (its offset is not a
// whole number of clock ticks, or it cannot learn its offset), `start` is 0:
// unknown, and the callers then judge a task by its id alone (never dead
// while a task with that id lives).
struct TaskStat {
  bool readable = false;
  bool exited = false;
  std::uint64_t start = 0;
};
TaskStat read_task_stat(const char* path) noexcept;

// The calling process's boot-time offset in clock ticks (USER_HZ, the unit
// of /proc's field 22): the "boottime" line of /proc/self/timens_offsets,
// 0 on a kernel without time namespaces. `known` is false when it cannot be
// used to normalise: the file cannot be read or parsed, the offset is not a
// whole number of ticks (possible with offsets written in nanoseconds, as
// a checkpoint/restore tool may), or the process's own time namespace is
// not the one that file describes (it shows the namespace for children,
// which differs after unshare(CLONE_NEWTIME) until the process execs).
// Computed once per process (a fork child computes its own); a process that
// later changes its time namespace with setns(2) keeps the first answer.
struct BoottimeOffset {
  bool known = false;
  std::int64_t ticks = 0;
};
BoottimeOffset boottime_offset_ticks() noexcept;

}  // namespace shmkit::platform
