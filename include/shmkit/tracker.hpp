// shmkit/tracker.hpp — the resource tracker: a block a shmkit process
// created with SharedMemory::Options::track is unlinked once every process
// that registered it (created or attached it tracked) has died, and never
// while one of them lives. A block no shmkit process created is never
// unlinked by the tracker: attaching registers use, never ownership.
//
// Design (and why)
//   * CPython's resource_tracker is a process per Python program that
//     unlinks, at exit, every block that program created *or attached*,
//     even if other programs still use it (gh-82300, open since 2019). Its
//     bookkeeping is per tracker, so it cannot know about the others.
//   * shmkit keeps one registry per user: a typed block
//     "shmkit.registry.<uid>" (mode 0600) holding (block name, inode, pid,
//     process start time, PID namespace, role) entries under a RobustMutex. A
//     registration is keyed by pid *and* start time (/proc/<pid>/stat field
//     22), so a reused pid is never mistaken for the registrant: liveness is
//     "that pid exists and started at that time". A registrant is judged
//     dead only when that is certain (no such pid, a zombie, or a live
//     process with another start time); a process /proc hides from the
//     judge, or one whose start time is unknown and whose pid is in use,
//     counts as alive.
//   * Time namespaces: start times are host-absolute. /proc shows a start
//     time shifted by the boot-time offset of the time namespace of the
//     process that READS it; every reader (registrant, watcher, gc)
//     subtracts its own offset (/proc/self/timens_offsets), so a registrant
//     running under `unshare --time --boottime N` is judged alive by
//     everyone else and its block is kept. A process that cannot normalise
//     exactly (its offset is not a whole number of clock ticks, or it
//     cannot learn it: it called unshare(CLONE_NEWTIME) and has not exec'd)
//     records start time 0 and is judged by its pid alone, and judges
//     others by their pids alone: never a live registrant taken for dead.
//   * Roles: a registration is either creating (the registrant created that
//     file: a tracked create, or a reservation of a name it is about to
//     create, and then the registration of the file it made under that
//     name) or of use (a tracked attach). The sweep unlinks a block only if
//     a creating registration of the very file under the name exists (of a
//     dead registrant) and no registrant of the name lives. So a block that
//     CPython's multiprocessing.shared_memory (or an untracked handle, or
//     any other program) created, attached tracked by shmkit processes, is
//     never removed by shmkit: when its users die their registrations are
//     just dropped, and its creator's unlink() still finds it. A creating
//     registration that goes while other processes still register the same
//     file (the creator died, or unregistered it) passes its role to their
//     registrations: a shmkit-created block is still removed once its last
//     user dies.
//   * PID namespaces (containers in one pod share /dev/shm, not pids): each
//     entry records the registrant's PID namespace (inode and device of
//     /proc/self/ns/pid). A pid means nothing outside its namespace, so an
//     entry of another namespace is never judged: it is neither dropped nor
//     does it let its block be unlinked; collect_garbage() reports it as not
//     judged. Nor are entries judged by a process whose /proc is not its own
//     namespace's (a new PID namespace without its own /proc mount).
//   * Inodes: a registration names the very file the registrant opened (the
//     inode of its open descriptor, SharedMemory::inode()), never whatever
//     file is under the name a moment later, and unlink() drops only the
//     registrations of the file it removed. The sweep unlinks a name only if
//     the file under it is the one a dead registrant registered.
//   * Each process that registers anything gets one watcher: the program
//     shmkit-watcher, started with posix_spawn (no fork of the registrant:
//     it maps none of the registrant's blocks, runs none of its code, needs
//     none of its locks), detached (it forks once itself and calls setsid,
//     so it is never the registrant's child), with stdin/stdout on
//     /dev/null and every descriptor above stderr closed. It holds a pidfd
//     of the registrant and the registry's mapping. When the registrant
//     dies, by exit or SIGKILL, the watcher removes the registrant's entries
//     and unlinks every block a shmkit process created (above) that no live
//     (or unjudged) process has registered, then exits. Only once the sweep is done and the registry
//     unlocked does it print "shmkit tracker: unlinked leaked block 'NAME'"
//     on its stderr (the registrant's), each line only if stderr takes it
//     within a second: it ignores SIGPIPE (and SIGINT, SIGTERM, SIGHUP), so
//     a reader that has gone (mpirun, a terminal, a pipe) or stopped reading
//     never stops a sweep half done nor holds the registry. A block another
//     live process registered survives (the gh-82300 scenario).
//   * Finding shmkit-watcher, in this order: $SHMKIT_WATCHER if set (used as
//     is, no fallback); the installed path (CMAKE_INSTALL_FULL_LIBEXECDIR
//     "/shmkit-watcher" at configure time) if executable; the build tree's
//     if executable. A relocated install sets SHMKIT_WATCHER (the CMake
//     package exports the program as the imported target shmkit::watcher).
//     None found, one that cannot be started, or one that does not answer
//     "ok" (another protocol version, no registry) is an error: the
//     registration throws std::system_error naming the path, and nothing is
//     registered. There is no unwatched fallback.
//   * A tracked create leaves no window where a kill leaks the block: the
//     block is made unnamed (O_TMPFILE), sized, registered under its name
//     with its inode, and only then linked to the name
//     (SharedMemory::create_filled). A kill before the link frees it with
//     the process; after it, the registration covers it. A tracked block
//     never appears under its name at 0 bytes. The registry itself is
//     created the same way, fully initialised before it has a name.
//   * collect_garbage() does the same sweep on demand for every dead
//     registrant (`shmkit gc`), which also covers a watcher that was itself
//     killed, before or in the middle of its sweep: a sweep frees the dead
//     registrations only after it has unlinked their blocks, so what a
//     killed sweeper left is found by the next one. SharedMemory::unlink()
//     removes the block's registrations.
//   * Crash behaviour: every registry change is made under the RobustMutex;
//     a process killed while holding it leaves at most its own half-written
//     entry, which the next locker (told owner-died) validates and repairs.
//   * The registry holds kMaxEntries registrations; registering beyond that
//     throws std::system_error(ENOSPC).
//   * Versions: the registry's layout is version kRegistryVersion (in its
//     header and its entry type). A registry of another version (made by
//     an older or newer shmkit) is refused with std::invalid_argument that
//     says so and what to do; it is never reinterpreted or replaced.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "shmkit/detail/process.hpp"

namespace shmkit::tracker {

constexpr std::size_t kMaxEntries = 1024;
// The registry layout's version (2: PID namespace in each entry; 3: the
// registration's role, creating or of use).
constexpr std::uint32_t kRegistryVersion = 3;

// The registry block's name: $SHMKIT_TRACKER_REGISTRY if set (to isolate a
// test or a group of programs), else "shmkit.registry.<euid>". Read once,
// at a process's first tracker call.
std::string registry_name();

// The watcher program this process starts (lookup order above). Throws
// std::system_error(ENOENT) naming every path tried if none is found.
std::string watcher_path();

// Registers use of the file `block` whose inode is `inode` (fstat of the
// open descriptor: SharedMemory::inode()) for the calling process
// (idempotent; a creating registration of ours stays creating) and makes
// sure this process has a watcher. Use never makes the tracker unlink a
// block; creating registrations do (register_created, reserve_block), and
// a registration of a file under a name this process reserved is one. Throws std::system_error if
// the registry cannot be opened or is full, or the watcher cannot start.
void register_block(std::string_view block, std::uint64_t inode);
// The same for whatever file is under the name now (stat), or the name if
// none is: racy against a re-creation of the name; prefer the above.
void register_block(std::string_view block);
// reserve_block registers (creating) a name this process is about to
// create: a fresh random name nobody else uses (the SharedMemoryManager's),
// so the sweep unlinks whatever file is under it once the process dies.
// register_created (for SharedMemory::create_filled) registers `block` as
// the file with inode `inode`, not yet linked to that name, created by this
// process; true if the entry is new, false if it refreshed a registration
// of this process (now creating).
void reserve_block(std::string_view block);
bool register_created(std::string_view block, std::uint64_t inode);
// Removes the calling process's registrations of `block` (no-op if none):
// all of them, or only that of the file with inode `inode`. A creating
// registration of a file others still register passes its role to theirs
// (a reservation passes nothing).
void unregister_block(std::string_view block);
void unregister_block(std::string_view block, std::uint64_t inode);
// Removes every process's registration of the file `block` with inode
// `inode` (it was unlinked). Registrations of another file under the same
// name (created since) stay.
void forget_block(std::string_view block, std::uint64_t inode);

// A PID namespace: inode and device of /proc/<pid>/ns/pid ({0, 0}: unknown,
// no /proc).
struct PidNamespace {
  std::uint64_t inode = 0;
  std::uint64_t device = 0;
  friend bool operator==(const PidNamespace&, const PidNamespace&) = default;
};
// The calling process's.
PidNamespace current_pid_namespace();

struct Registration {
  std::string block;
  pid_t pid = 0;                 // in the registrant's PID namespace
  std::uint64_t start_time = 0;  // clock ticks since the host's boot (0: unknown)
  std::uint64_t inode = 0;       // of the registered file (0: a reserved name)
  PidNamespace pid_namespace;    // the registrant's
  bool created = false;          // creating (or inherited that); false: use only
  // false: another PID namespace (or this process's /proc is not its own
  // namespace's): liveness unknown, `alive` is false, never unlinked for.
  bool judged = false;
  bool alive = false;
};
// A snapshot of the registry (empty if it does not exist yet).
std::vector<Registration> registrations();

// Process liveness, kept here for source compatibility: the functions are
// those of the platform layer, shmkit/detail/process.hpp, whose contract
// they follow.
// The start time of process `pid` (as this process's /proc sees pids), in
// clock ticks after the HOST's boot: /proc/<pid>/stat field 22 less this
// process's time-namespace boot-time offset, so every process, in any time
// namespace, gets the same number for the same process. 0 if it does not
// exist or has exited (a zombie not yet reaped counts as exited), or if
// this process cannot normalise start times (see the header: then it
// cannot tell; task_has_exited() says so correctly).
// Out of line (src/tracker/tracker.cpp), so that programs linked against an
// earlier libshmkit.so keep finding the symbol.
std::uint64_t process_start_time(pid_t pid);

// Whether the task (process or thread) `tid` that started at `start` (clock
// ticks after the host's boot, as process_start_time() gives it) has
// certainly exited: no such id, a zombie not yet reaped, or its id now names
// a task with another start time (the id was reused). Only the low bits
// selected by `start_mask` are compared; `start` 0 means the start is
// unknown, and then a live task with that id is taken to be the same one.
// False when it cannot tell (/proc hides the task: hidepid, another user's):
// a caller then must assume it may still run. See process::has_exited.
bool task_has_exited(pid_t tid, std::uint64_t start, std::uint64_t start_mask = ~std::uint64_t{0}) noexcept;

struct GcReport {
  std::vector<std::string> unlinked;     // blocks a shmkit process created whose registrants are all dead
  std::vector<Registration> dropped;     // dead registrations removed
  std::vector<Registration> not_judged;  // other namespace: kept, never judged
};
// Sweeps the registry: drops registrations of dead processes and unlinks
// blocks a shmkit process created (a creating registration of the file now
// under the name) left with no live (or unjudged) registrant; a block only
// attached is left alone. With dry_run nothing changes and the report says
// what would.
GcReport collect_garbage(bool dry_run);

}  // namespace shmkit::tracker
