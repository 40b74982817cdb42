// shmkit/detail/fault.hpp — fault injection for tests: numbered points
// inside the operations whose crash behaviour the headers promise, where a
// test makes a process SIGKILL itself (Samba tdb's "die at step N" tests,
// glibc's tst-robust kill tests) or SIGSTOP itself (a stalled peer: job
// control, cgroup freezing, a debugger), to be resumed later with SIGCONT.
//
// Contract
//   * Compiled in only for tests. SHMKIT_FAULT_POINT(x) expands to nothing
//     unless SHMKIT_FAULT_INJECTION is defined, which only the test-only
//     library target shmkit_fault (tests/CMakeLists.txt) does; the installed
//     library and every benchmark have no trace of it. A program must not
//     mix the two builds (the inline code in headers differs).
//   * arm(point, nth): the nth time this process passes `point` it raises
//     SIGKILL at once: no destructor, no unlock, no flush runs, exactly as an
//     OOM kill or `kill -9` at that instruction. arm(point, nth,
//     Action::stop): it raises SIGSTOP there instead (every thread stops,
//     as under `kill -STOP`), disarmed first, so after a SIGCONT it goes on
//     from that instruction as a peer that was only slow. Arming is per
//     process (inherited by fork). SHMKIT_FAULT=<name>[:<nth>][:stop] in the
//     environment arms the same way for an exec'd program.
//   * hits(point) counts passes (armed or not), so a test can check that a
//     scenario reaches the point it means to test.
//   * Every point is listed in points() with its number, name and what state
//     a kill there leaves; tests walk that list, so a point added here
//     without a scenario fails the walk.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace shmkit::fault {

enum class Point : std::uint16_t {
  none = 0,
  // SharedMemory::create / attach / unlink (src/shm/shared_memory.cpp)
  create_opened = 1,      // the file exists (0 bytes, mode not yet exact): named if
                          // untracked, unnamed (O_TMPFILE) if tracked or create_filled
  create_sized = 2,       // sized and reserved; not mapped, not named (tracked)
  create_registered = 3,  // tracked: registered with the inode, not yet linked to its name
  create_published = 4,   // create_filled: linked to its name, not yet returned
  attach_opened = 5,      // descriptor open, not mapped
  attach_mapped = 6,      // mapped; tracked: not yet registered
  unlink_removed = 7,     // name removed; registrations not yet dropped
  // typed blocks (src/typed/block.cpp)
  typed_initialising = 8,  // header, prefix and payload written; state still "initialising"
  // the tracker's registry (src/tracker/tracker.cpp)
  registry_writing = 9,  // an entry half written under the registry's RobustMutex
  // Value / Array accessors (shmkit/detail/object_base.hpp)
  object_locked = 10,   // the object's lock taken; the accessor's body not run
  object_written = 11,  // the body (a store) done; the lock not released
  // ShareableList::set (src/list/shareable_list_view.cpp)
  list_set_data = 12,    // the slot holds the new bytes; format and code are old
  list_set_format = 13,  // new format written; the type code is old
  // Heap (src/typed/heap.cpp)
  heap_alloc_split = 14,      // the split-off tail's tag written; the head not committed
  heap_alloc_committed = 15,  // the allocation committed; lock held, handle not returned
  heap_free_marked = 16,      // the chunk marked free; lock held
  // SpscQueue / MpmcQueue (shmkit/lockfree/*.hpp)
  spsc_push_written = 17,  // the slot written; its mark not stored (not published)
  spsc_pop_copied = 18,    // the item copied out; head not advanced
  mpmc_push_claimed = 19,  // the slot claimed (its word names us) and tail moved past it; not published
  mpmc_pop_claimed = 20,   // the slot claimed (its word names us) and head moved past it; not released
  // SharedMemoryManager's server (src/manager/server.cpp)
  manager_created = 21,   // the server created a block; not yet recorded as owned
  manager_recorded = 22,  // recorded as owned; the reply not yet sent
  // MpmcQueue (shmkit/lockfree/mpmc_queue.hpp), BroadcastRing, SeqLock
  mpmc_push_won = 23,        // the slot claimed (one CAS naming us); tail not yet moved past it
  mpmc_push_published = 24,  // the item published; sleeping consumers not woken
  mpmc_pop_won = 25,         // the slot (an item or a skipped slot) claimed; head not yet moved past it
  mpmc_pop_released = 26,    // the slot released to producers; sleeping producers not woken
  broadcast_published = 27,  // BroadcastRing item published; sleeping readers not woken
  seqlock_stored = 28,       // SeqLock value stored (sequence even); sleeping readers not woken
  spsc_push_published = 29,  // SpscQueue item published (tail); a sleeping consumer not woken
  spsc_pop_released = 30,    // SpscQueue slot freed (head); a sleeping producer not woken
  spsc_push_marked = 31,     // SpscQueue item published (its mark); tail not advanced
  // ByteQueue (src/lockfree/byte_queue.cpp)
  byteq_push_won = 32,        // the record's first cell claimed (its word names us); tail not yet moved
  byteq_push_written = 33,    // header and bytes written; not published
  byteq_push_published = 34,  // published; sleeping consumers not woken, doorbell not rung
  byteq_pop_won = 35,         // a record claimed; head not yet moved past it
  byteq_pop_copied = 36,      // the bytes copied (out-of-line block unlinked); cells not released
  byteq_pop_released = 37,    // cells released to producers; sleeping producers not woken
  byteq_unblock_seen = 38,    // a survivor read a dead consumer's claim; not taken over yet
};
inline constexpr std::size_t kPointCount = 39;  // one past the last number

struct PointInfo {
  Point point;
  std::string_view name;   // as SHMKIT_FAULT spells it: "create_opened"
  std::string_view state;  // what a kill there leaves
};

// Every point above, in number order (none excluded).
std::span<const PointInfo> points() noexcept;
// The point named `name` (Point::none if there is none).
Point point_named(std::string_view name) noexcept;

// What an armed point does to its process.
enum class Action : std::uint8_t {
  kill,  // SIGKILL: it dies there
  stop,  // SIGSTOP: it stalls there until someone sends SIGCONT
};

// The nth pass through `point` (1 = the next) from now on SIGKILLs (or
// SIGSTOPs) this process. Point::none disarms.
void arm(Point point, std::uint32_t nth = 1, Action action = Action::kill) noexcept;
void disarm() noexcept;
// Passes through `point` in this process so far.
std::uint64_t hits(Point point) noexcept;

// Called by SHMKIT_FAULT_POINT.
void pass(Point point) noexcept;

}  // namespace shmkit::fault

#if defined(SHMKIT_FAULT_INJECTION)
#define SHMKIT_FAULT_POINT(name) ::shmkit::fault::pass(::shmkit::fault::Point::name)
#else
#define SHMKIT_FAULT_POINT(name) static_cast<void>(0)
#endif
