// src/tracker/registry.cpp — the tracker's registry (registry.hpp): opening
// or creating it, its lock's repair, and judging and sweeping registrations.
#include "tracker/registry.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "platform/platform.hpp"
#include "platform/printable.hpp"
#include "shmkit/detail/process.hpp"
#include "shmkit/lockfree/byte_queue.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit::tracker::detail {
namespace {

BlockSpec registry_spec() {
  BlockSpec spec;
  spec.kind = BlockKind::registry;
  spec.type = TypeFingerprint::of<Entry>();
  spec.count = kMaxEntries;
  spec.prefix_size = sizeof(Control);
  spec.payload_size = kMaxEntries * sizeof(Entry);
  spec.param[0] = kRegistryVersion;
  return spec;
}

// The registry `name` did not validate as this version's: if it is a
// registry of another version, say so clearly; else nothing.
void refuse_other_version(const std::string& name) {
  SharedMemory::Options ro;
  ro.read_only = true;
  ro.require_private = true;
  SharedMemory raw;
  try {
    raw = SharedMemory::attach(name, ro);
  } catch (const std::exception&) {
    return;
  }
  if (raw.size() < sizeof(BlockHeader)) return;
  BlockHeader h;
  std::memcpy(&h, raw.data(), sizeof h);
  if (h.magic != BlockHeader::kMagic || h.kind != static_cast<std::uint32_t>(BlockKind::registry)) return;
  // Version 1 wrote no version; its entries were 280 bytes.
  const std::uint64_t found = h.elem_size == 280 && h.param[0] == 0 ? 1 : h.param[0];
  if (found == kRegistryVersion) return;
  throw std::invalid_argument(
      "shmkit: tracker registry " + platform::quoted(name) + " has layout version " + std::to_string(found) +
      ", this shmkit needs version " + std::to_string(kRegistryVersion) +
      " (another shmkit version made it): remove it (shmkit rm " + name +
      ") once no program of that version runs, or set SHMKIT_TRACKER_REGISTRY to another name");
}

std::unique_ptr<Registry> open_registry(bool create) {
  const std::string name = registry_name();
  AttachOptions opt;
  opt.shm.require_private = true;  // a registry planted by another user is refused
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      TypedBlock b = [&] {
        try {
          return attach_typed_block(name, BlockKind::registry, TypeFingerprint::of<Entry>(), opt);
        } catch (const std::invalid_argument&) {
          refuse_other_version(name);
          throw;
        }
      }();
      if (b.header.count != kMaxEntries || b.prefix.size() < sizeof(Control) ||
          b.header.param[0] != kRegistryVersion) {
        throw std::invalid_argument("shmkit: tracker registry " + platform::quoted(name) +
                                    " has an unexpected layout");
      }
      auto r = std::make_unique<Registry>();
      r->ctl = reinterpret_cast<Control*>(b.prefix.data());
      r->entries = reinterpret_cast<Entry*>(b.payload.data());
      r->shm = std::move(b.shm);
      return r;
    } catch (const std::system_error& e) {
      if (e.code().value() != ENOENT) throw;
      if (!create) return nullptr;
    }
    try {
      // Initialised before it has a name: a process killed while creating
      // the registry must not leave a half-made one that every later
      // tracker call would refuse.
      const BlockSpec spec = registry_spec();
      SharedMemory::create_filled(
          name, typed_region_size(spec), SharedMemory::Options{}, [&](std::span<std::byte> block) {
            init_typed_region(block, spec, [](std::span<std::byte> prefix, std::span<std::byte>) {
              ::new (prefix.data()) Control();
            });
          });
    } catch (const std::system_error& e) {
      if (e.code().value() != EEXIST) throw;  // lost a race: attach the winner's
    }
  }
  throw std::system_error(EAGAIN, std::generic_category(),
                          "shmkit: cannot open tracker registry " + platform::quoted(name));
}

}  // namespace

std::string entry_name(const Entry& e) { return std::string(e.name, ::strnlen(e.name, sizeof e.name)); }

bool created(const Entry& e) { return e.role == kCreated; }

// Whether `e` registers the file `inode` of its name: the same inode, or
// `inode` is a reservation (any file under the name is the reserver's).
bool same_file(const Entry& e, std::uint64_t inode) { return inode == kReserved || e.inode == inode; }

// Of the name, now (0 if it does not exist; tmpfs never gives inode 0).
std::uint64_t inode_of(std::string_view block) {
  struct stat st {};
  if (::stat(platform::dev_shm_path(block).c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_ino);
}

// Whether the block is a ByteQueue's (its typed header says so): then its
// doorbell FIFO and out-of-line blocks go with it.
bool is_byte_queue(std::string_view block) {
  const int fd =
      ::open(platform::dev_shm_path(block).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  BlockHeader h{};
  const bool read_whole = ::pread(fd, &h, sizeof h, 0) == static_cast<ssize_t>(sizeof h);
  ::close(fd);
  return read_whole && h.magic == BlockHeader::kMagic &&
         h.kind == static_cast<std::uint32_t>(BlockKind::byte_queue);
}

// The watcher's registry: the very file its registrant registered in (open
// descriptor `fd`, even if its name has gone since), validated as
// open_registry does.
std::unique_ptr<Registry> registry_from_fd(int fd, const std::string& name) {
  const std::string what = "shmkit: tracker registry " + platform::quoted(name);
  struct stat st {};
  if (::fstat(fd, &st) != 0) platform::throw_errno(errno, what + ": fstat failed");
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 077) != 0) {
    char detail[96];
    std::snprintf(detail, sizeof detail,
                  ": not a regular file private to this user (mode %06o, owner uid %u)",
                  static_cast<unsigned>(st.st_mode), static_cast<unsigned>(st.st_uid));
    throw std::invalid_argument(what + detail);
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) platform::throw_errno(errno, what + ": mmap failed");
  auto r = std::make_unique<Registry>();
  r->raw = p;
  r->raw_size = size;
  TypedRegion t = open_typed_region({static_cast<std::byte*>(p), size}, BlockKind::registry,
                                    TypeFingerprint::of<Entry>(), what);
  if (t.header.count != kMaxEntries || t.prefix.size() < sizeof(Control) ||
      t.header.param[0] != kRegistryVersion) {
    throw std::invalid_argument(what + " has an unexpected layout");
  }
  r->ctl = reinterpret_cast<Control*>(t.prefix.data());
  r->entries = reinterpret_cast<Entry*>(t.payload.data());
  return r;
}

// This process's mapping of the registry, opened on first use.
std::mutex g_registry_mutex;
std::unique_ptr<Registry> g_registry;

Registry* registry(bool create) {
  std::lock_guard g(g_registry_mutex);
  if (!g_registry) g_registry = open_registry(create);
  return g_registry.get();
}

PidNamespace pid_namespace_at(const char* path) {
  struct stat st {};
  if (::stat(path, &st) != 0) return {};
  return PidNamespace{static_cast<std::uint64_t>(st.st_ino), static_cast<std::uint64_t>(st.st_dev)};
}

Self self() {
  static thread_local Self cached;
  const pid_t pid = ::getpid();
  if (cached.pid != pid) {
    Self s;
    s.pid = pid;
    s.start = process::self_start_time();  // not /proc/<getpid()>: see proc_is_ours
    s.ns = pid_namespace_at("/proc/self/ns/pid");
    char link[32] = {};
    const ssize_t n = ::readlink("/proc/self", link, sizeof link - 1);
    s.proc_is_ours = n > 0 && std::strtol(link, nullptr, 10) == pid;
    cached = s;
  }
  return cached;
}

// Judged only in the registrant's own PID namespace, by a process whose
// /proc is that namespace's.
Liveness liveness(const Entry& e, const Self& me, const Known* dead) {
  if (ns_of(e) != me.ns || me.ns == PidNamespace{}) return Liveness::unknown;
  if (dead != nullptr && dead->matches(e)) return Liveness::dead;
  if (!me.proc_is_ours) return Liveness::unknown;
  // Dead only when certain (process::has_exited): no such pid, a zombie, or a
  // live process with another start time (host terms on both sides, so a
  // registrant in another time namespace is judged right). A start of 0
  // (the registrant could not read or normalise its own) is judged by the
  // pid alone; a process /proc hides counts as alive.
  return process::has_exited(static_cast<pid_t>(e.pid), e.start_time) ? Liveness::dead : Liveness::alive;
}

Registration registration_of(const Entry& e, Liveness l) {
  Registration r;
  r.block = entry_name(e);
  r.pid = static_cast<pid_t>(e.pid);
  r.start_time = e.start_time;
  r.inode = e.inode;
  r.pid_namespace = ns_of(e);
  r.created = created(e);
  r.judged = l != Liveness::unknown;
  r.alive = l == Liveness::alive;
  return r;
}

std::string leak_message(const std::string& block) {
  return "shmkit tracker: unlinked leaked block " + shmkit::detail::printable_quoted(block) +
         " (every process that registered it has died)\n";
}

// A creating registration of `block`'s file `inode` (kReserved: any file
// under the name) goes away while other registrations of that file stay:
// they inherit the creation, so the file is unlinked once the last of them
// dies (an attach registers use, but of a block a shmkit process created,
// which the tracker is to remove once nobody uses it). Under the lock.
void pass_creation(Registry& r, const std::string& block, std::uint64_t inode) {
  for (std::size_t i = 0; i < kMaxEntries; ++i) {
    Entry& e = r.entries[i];
    if (e.state == kUsed && same_file(e, inode) && entry_name(e) == block) e.role = kCreated;
  }
}

// Drops dead registrations (all, or only the `dead` registrant's) and
// unlinks the blocks they leave with no live or unjudged registrant, if a
// shmkit process created them: a creating registration of the very file
// under the name (a dropped one, or another dead registrant's). A block
// that was only attached (CPython made it, or an untracked handle) is never
// unlinked: its registrations are just dropped. Under the lock.
void sweep(Registry& r, GcReport& report, bool dry_run, const Known* dead, bool warn) {
  const Self me = self();
  struct Dropped {
    std::set<std::uint64_t> created;  // inodes of dropped creating registrations
  };
  std::map<std::string, Dropped> candidates;  // by name
  // The dead registrations are freed only after their blocks are unlinked:
  // a sweeper killed half way (a watcher SIGKILLed by the OOM killer or a
  // job's cgroup teardown) leaves them in place, and the next sweep (the
  // next locker repairs the lock) finds them dead and removes the rest.
  std::vector<std::size_t> drop;
  for (std::size_t i = 0; i < kMaxEntries; ++i) {
    Entry& e = r.entries[i];
    if (e.state != kUsed) continue;
    if (dead != nullptr && !dead->matches(e)) continue;
    const Liveness l = liveness(e, me, dead);
    if (l == Liveness::unknown) {
      report.not_judged.push_back(registration_of(e, l));
      continue;
    }
    if (l == Liveness::alive) continue;
    report.dropped.push_back(registration_of(e, l));
    Dropped& d = candidates[entry_name(e)];
    if (created(e)) d.created.insert(e.inode);
    drop.push_back(i);
  }
  for (const auto& [block, dropped] : candidates) {
    // Kept while any live process, or one we cannot judge, registers it (the
    // gh-82300 case; another PID namespace's registrant).
    bool kept = false;
    std::set<std::uint64_t> created_files = dropped.created;
    for (std::size_t i = 0; i < kMaxEntries && !kept; ++i) {
      const Entry& e = r.entries[i];
      if (e.state != kUsed || entry_name(e) != block) continue;
      const Liveness l = liveness(e, me, dead);  // (the dropped entries are still used here)
      kept = l != Liveness::dead;
      if (l == Liveness::dead && created(e)) created_files.insert(e.inode);  // not swept yet
    }
    if (kept) {
      if (!dry_run) {
        for (const std::uint64_t inode : dropped.created) pass_creation(r, block, inode);
      }
      continue;
    }
    // Only the very file that was registered as created: one re-created
    // under the same name since then has another inode and is left alone,
    // and so is a file no shmkit process created.
    const std::uint64_t now = inode_of(block);
    if (now == 0) continue;  // already gone
    if (created_files.count(now) == 0 && created_files.count(kReserved) == 0) continue;
    if (!dry_run) {
      const bool byte_queue = is_byte_queue(block);
      if (::shm_unlink(("/" + block).c_str()) != 0) continue;
      if (byte_queue) ByteQueue::unlink_companions(block);  // its doorbell, out-of-line blocks left behind
      if (warn) {
        const std::string msg = leak_message(block);
        (void)!::write(2, msg.data(), msg.size());
      }
    }
    report.unlinked.push_back(block);
  }
  if (!dry_run) {
    for (const std::size_t i : drop) r.entries[i].state = kFree;
  }
}

}  // namespace shmkit::tracker::detail
