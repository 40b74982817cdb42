// The fault-injection points (shmkit/detail/fault.hpp). Linked only into the
// test-only library target shmkit_fault.
#include "shmkit/detail/fault.hpp"

#include <array>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <string>
#include <unistd.h>

namespace shmkit::fault {
namespace {

using P = Point;
constexpr std::array<PointInfo, kPointCount - 1> kPoints{{
    {P::create_opened, "create_opened",
     "a new block exists with 0 bytes (named if untracked, unnamed if tracked)"},
    {P::create_sized, "create_sized", "a new block is sized, not mapped (and unnamed if tracked)"},
    {P::create_registered, "create_registered",
     "tracked create: registered with the inode, not yet linked to its name"},
    {P::create_published, "create_published", "tracked create: linked to its name, not yet returned"},
    {P::attach_opened, "attach_opened", "an attacher has a descriptor, nothing mapped"},
    {P::attach_mapped, "attach_mapped", "an attacher mapped the block, not yet registered"},
    {P::unlink_removed, "unlink_removed", "the name is gone, registrations remain"},
    {P::typed_initialising, "typed_initialising",
     "a typed block fully written but its state is still initialising"},
    {P::registry_writing, "registry_writing",
     "a tracker registry entry half written, the registry lock held"},
    {P::object_locked, "object_locked", "a Value/Array lock held, the value unchanged"},
    {P::object_written, "object_written", "a Value/Array lock held, the new value stored"},
    {P::list_set_data, "list_set_data", "a ShareableList slot holds new bytes under the old format and code"},
    {P::list_set_format, "list_set_format", "a ShareableList item has its new format, the old type code"},
    {P::heap_alloc_split, "heap_alloc_split",
     "a heap split half done (tail tag written), the heap lock held"},
    {P::heap_alloc_committed, "heap_alloc_committed",
     "a heap allocation committed, its handle never returned, the lock held"},
    {P::heap_free_marked, "heap_free_marked", "a heap chunk marked free, the lock held"},
    {P::spsc_push_written, "spsc_push_written", "an SPSC slot written, its mark not stored"},
    {P::spsc_pop_copied, "spsc_pop_copied", "an SPSC item copied out, head not advanced"},
    {P::mpmc_push_claimed, "mpmc_push_claimed",
     "an MPMC slot claimed by a producer (naming it), tail moved past it, never published"},
    {P::mpmc_pop_claimed, "mpmc_pop_claimed",
     "an MPMC slot claimed by a consumer (naming it), head moved past it, never released"},
    {P::manager_created, "manager_created", "the manager server created a block, not recorded as owned"},
    {P::manager_recorded, "manager_recorded", "the manager server owns a new block, the reply not sent"},
    {P::mpmc_push_won, "mpmc_push_won",
     "an MPMC slot claimed by a producer (naming it), tail not yet moved past it"},
    {P::mpmc_push_published, "mpmc_push_published", "an MPMC item published, sleeping consumers never woken"},
    {P::mpmc_pop_won, "mpmc_pop_won",
     "an MPMC slot claimed by a consumer (naming it), head not yet moved past it"},
    {P::mpmc_pop_released, "mpmc_pop_released", "an MPMC slot released, sleeping producers never woken"},
    {P::broadcast_published, "broadcast_published",
     "a BroadcastRing item published, sleeping readers never woken"},
    {P::seqlock_stored, "seqlock_stored", "a SeqLock value stored, sleeping readers never woken"},
    {P::spsc_push_published, "spsc_push_published",
     "an SPSC item published, a sleeping consumer never woken"},
    {P::spsc_pop_released, "spsc_pop_released", "an SPSC slot freed, a sleeping producer never woken"},
    {P::spsc_push_marked, "spsc_push_marked", "an SPSC item published (its mark stored), tail not advanced"},
    {P::byteq_push_won, "byteq_push_won",
     "a ByteQueue record claimed by a producer (naming it), tail not moved"},
    {P::byteq_push_written, "byteq_push_written", "a ByteQueue record written, never published"},
    {P::byteq_push_published, "byteq_push_published",
     "a ByteQueue message published, sleeping consumers never woken, doorbell never rung"},
    {P::byteq_pop_won, "byteq_pop_won",
     "a ByteQueue record claimed by a consumer (naming it), head not moved"},
    {P::byteq_pop_copied, "byteq_pop_copied", "a ByteQueue message copied out, its cells never released"},
    {P::byteq_pop_released, "byteq_pop_released",
     "a ByteQueue record released, sleeping producers never woken"},
    {P::byteq_unblock_seen, "byteq_unblock_seen",
     "a survivor saw a dead ByteQueue consumer's claim and died before taking it over"},
}};

constexpr bool numbered_in_order() {
  for (std::size_t i = 0; i < kPoints.size(); ++i) {
    if (static_cast<std::size_t>(kPoints[i].point) != i + 1) return false;
  }
  return true;
}
static_assert(numbered_in_order(), "kPoints lists every Point once, in number order");

// Relaxed everywhere: arming and passing happen in one process, and a test
// arms before it starts the operation (program order on one thread, or a
// fork after arming).
std::atomic<std::uint16_t> g_armed{0};
std::atomic<std::uint32_t> g_countdown{0};
std::atomic<std::uint8_t> g_action{0};  // an Action
std::array<std::atomic<std::uint64_t>, kPointCount> g_hits{};

// SHMKIT_FAULT=<name>[:<nth>][:stop]: read once, before main (static init).
[[maybe_unused]] const bool g_from_env = [] {
  const char* env = std::getenv("SHMKIT_FAULT");
  if (env == nullptr || *env == '\0') return false;
  std::string_view spec(env);
  Action action = Action::kill;
  if (constexpr std::string_view kStop = ":stop"; spec.ends_with(kStop)) {
    action = Action::stop;
    spec.remove_suffix(kStop.size());
  }
  std::uint32_t nth = 1;
  if (auto colon = spec.find(':'); colon != std::string_view::npos) {
    nth = static_cast<std::uint32_t>(std::strtoul(std::string(spec.substr(colon + 1)).c_str(), nullptr, 10));
    spec = spec.substr(0, colon);
  }
  arm(point_named(spec), nth == 0 ? 1 : nth, action);
  return true;
}();

}  // namespace

std::span<const PointInfo> points() noexcept { return kPoints; }

Point point_named(std::string_view name) noexcept {
  for (const PointInfo& p : kPoints) {
    if (p.name == name) return p.point;
  }
  return Point::none;
}

void arm(Point point, std::uint32_t nth, Action action) noexcept {
  g_countdown.store(nth, std::memory_order_relaxed);
  g_action.store(static_cast<std::uint8_t>(action), std::memory_order_relaxed);
  g_armed.store(static_cast<std::uint16_t>(point), std::memory_order_relaxed);
}

void disarm() noexcept { arm(Point::none, 0); }

std::uint64_t hits(Point point) noexcept {
  const auto i = static_cast<std::size_t>(point);
  return i < kPointCount ? g_hits[i].load(std::memory_order_relaxed) : 0;
}

void pass(Point point) noexcept {
  const auto i = static_cast<std::size_t>(point);
  g_hits[i].fetch_add(1, std::memory_order_relaxed);
  if (g_armed.load(std::memory_order_relaxed) != static_cast<std::uint16_t>(point)) return;
  if (g_countdown.fetch_sub(1, std::memory_order_relaxed) != 1) return;
  if (g_action.load(std::memory_order_relaxed) == static_cast<std::uint8_t>(Action::stop)) {
    // Disarmed first: once resumed, this process runs on as an ordinary
    // one. SIGSTOP stops every thread before kill() returns; SIGCONT lets
    // this one return from it.
    disarm();
    ::kill(::getpid(), SIGSTOP);
    return;
  }
  // SIGKILL to ourselves is delivered before kill() returns; nothing after
  // this line runs.
  ::kill(::getpid(), SIGKILL);
  for (;;) ::pause();
}

}  // namespace shmkit::fault
