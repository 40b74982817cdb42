#include "shmkit/tracker.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <poll.h>
#include <set>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <unistd.h>

#include "platform.hpp"
#include "robust_guard.hpp"
#include "shmkit/detail/fault.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit::tracker {
namespace {

// One registration. `state` makes a half-written entry recognisable after a
// writer died holding the lock: 0 free, 1 being written, 2 in use.
struct Entry {
  std::uint32_t state;
  std::uint32_t pid;
  std::uint64_t start_time;
  // Of /dev/shm/<name> when registered: the sweep unlinks only that very
  // file. kReserved (0, no tmpfs inode) marks a name the registrant is about
  // to create (a random temporary name, see SharedMemory::create): any file
  // under it is the registrant's (the manager's fresh names). kNoInode: the
  // name did not exist.
  std::uint64_t inode;
  char name[256];       // NUL-terminated
};
static_assert(std::is_standard_layout_v<Entry> && sizeof(Entry) == 280);
constexpr std::uint32_t kFree = 0, kWriting = 1, kUsed = 2;
constexpr std::uint64_t kReserved = 0, kNoInode = ~std::uint64_t{0};

struct Control {
  RobustMutex mutex;  // guards every entry
};

struct Registry {
  SharedMemory shm;
  Control* ctl = nullptr;
  Entry* entries = nullptr;
};

}  // namespace
}  // namespace shmkit::tracker

template <>
struct shmkit::TypeName<shmkit::tracker::Entry> {
  static constexpr std::string_view value = "shmkit::tracker::Entry/v1";
};

namespace shmkit::tracker {
namespace {

std::string entry_name(const Entry& e) { return std::string(e.name, ::strnlen(e.name, sizeof e.name)); }

// 0 if the name does not exist (tmpfs never gives inode 0).
std::uint64_t inode_of(std::string_view block) {
  struct stat st {};
  if (::stat(platform::dev_shm_path(block).c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_ino);
}

BlockSpec registry_spec() {
  BlockSpec spec;
  spec.kind = BlockKind::registry;
  spec.type = TypeFingerprint::of<Entry>();
  spec.count = kMaxEntries;
  spec.prefix_size = sizeof(Control);
  spec.payload_size = kMaxEntries * sizeof(Entry);
  return spec;
}

std::unique_ptr<Registry> open_registry(bool create) {
  const std::string name = registry_name();
  AttachOptions opt;
  opt.shm.require_private = true;  // a registry planted by another user is refused
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      TypedBlock b = attach_typed_block(name, BlockKind::registry, TypeFingerprint::of<Entry>(), opt);
      if (b.header.count != kMaxEntries || b.prefix.size() < sizeof(Control)) {
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
      SharedMemory::create_filled(name, typed_region_size(spec), SharedMemory::Options{},
                                  [&](std::span<std::byte> block) {
                                    init_typed_region(block, spec, [](std::span<std::byte> prefix,
                                                                      std::span<std::byte>) {
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

// This process's mapping of the registry, opened on first use.
std::mutex g_registry_mutex;
std::unique_ptr<Registry> g_registry;

Registry* registry(bool create) {
  std::lock_guard g(g_registry_mutex);
  if (!g_registry) g_registry = open_registry(create);
  return g_registry.get();
}

// Holds the registry lock; after a dead owner, clears half-written entries.
struct Locked : detail::RepairingGuard {
  explicit Locked(Registry& r)
      : RepairingGuard(
            r.ctl->mutex,
            [&r] {
              for (std::size_t i = 0; i < kMaxEntries; ++i) {
                if (r.entries[i].state != kUsed) r.entries[i].state = kFree;
                r.entries[i].name[sizeof r.entries[i].name - 1] = '\0';
              }
            },
            [] { return std::string("shmkit: tracker registry"); }) {}
};

struct Self {
  pid_t pid;
  std::uint64_t start;
};
Self self() {
  static thread_local Self cached{0, 0};
  pid_t pid = ::getpid();
  if (cached.pid != pid) cached = Self{pid, process_start_time(pid)};
  return cached;
}

bool alive(const Entry& e) {
  return e.start_time != 0 && process_start_time(static_cast<pid_t>(e.pid)) == e.start_time;
}

// Drops dead registrations (all, or only `only_pid`'s) and unlinks the blocks
// they leave with no live registrant. Under the lock.
void sweep(Registry& r, GcReport& report, bool dry_run, pid_t only_pid, bool warn) {
  std::set<std::string> candidates;
  for (std::size_t i = 0; i < kMaxEntries; ++i) {
    Entry& e = r.entries[i];
    if (e.state != kUsed) continue;
    if (only_pid != 0 && static_cast<pid_t>(e.pid) != only_pid) continue;
    if (alive(e)) continue;
    Registration reg{entry_name(e), static_cast<pid_t>(e.pid), e.start_time, false};
    report.dropped.push_back(reg);
    candidates.insert(reg.block);
    if (!dry_run) e.state = kFree;
  }
  for (const std::string& block : candidates) {
    // Kept while any live process registers it (the gh-82300 case).
    bool kept = false;
    for (std::size_t i = 0; i < kMaxEntries && !kept; ++i) {
      const Entry& e = r.entries[i];
      kept = e.state == kUsed && entry_name(e) == block && alive(e);
    }
    if (kept) continue;
    // Only the very block that was registered: one re-created under the
    // same name since then has another inode and is left alone. (Dropped
    // entries keep their bytes until reused, so their inode is still there.)
    const std::uint64_t now = inode_of(block);
    if (now == 0) continue;  // already gone
    bool same = false;
    for (std::size_t i = 0; i < kMaxEntries && !same; ++i) {
      const Entry& e = r.entries[i];
      same = (e.inode == now || e.inode == kReserved) && entry_name(e) == block;
    }
    if (!same) continue;
    if (!dry_run) {
      if (::shm_unlink(("/" + block).c_str()) != 0) continue;
      if (warn) {
        std::string msg = "shmkit tracker: unlinked leaked block '" + block +
                          "' (every process that registered it has died)\n";
        (void)!::write(2, msg.data(), msg.size());
      }
    }
    report.unlinked.push_back(block);
  }
}

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// Runs in the watcher: waits for `pid` (started at `start`) to exit.
void wait_for_death(pid_t pid, std::uint64_t start) {
  int fd = pidfd_open(pid);
  if (fd >= 0) {
    if (process_start_time(pid) == start) {  // still ours after pidfd_open
      pollfd p{fd, POLLIN, 0};
      while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
      }
    }
    ::close(fd);
    return;
  }
  while (process_start_time(pid) == start) {  // no pidfd: poll /proc
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

pid_t g_watched_for = 0;  // the pid whose watcher this process started

void ensure_watcher() {
  const Self me = self();
  if (g_watched_for == me.pid) return;
  g_watched_for = me.pid;
  // Double fork: the watcher is never our child, so a wait() loop of ours
  // cannot hang on it, and it is reaped by init when it ends.
  std::fflush(nullptr);
  pid_t mid = ::fork();
  if (mid < 0) platform::throw_errno(errno, "shmkit: tracker: fork failed");
  if (mid == 0) {
    ::setsid();
    pid_t watcher = ::fork();
    if (watcher != 0) ::_exit(watcher < 0 ? 1 : 0);
    // The watcher: keep stderr only; ignore terminal signals meant for the
    // registrant's group, so it outlives a Ctrl-C and cleans up after it.
    ::signal(SIGINT, SIG_IGN);
    ::signal(SIGTERM, SIG_IGN);
    ::signal(SIGHUP, SIG_IGN);
    int keep_registry = g_registry ? g_registry->shm.fd() : -1;
    for (int fd = 3; fd < 1024; ++fd) {
      if (fd != keep_registry) ::close(fd);
    }
    wait_for_death(me.pid, me.start);
    try {
      if (Registry* r = registry(false)) {
        Locked lock(*r);
        GcReport report;
        sweep(*r, report, false, me.pid, true);
      }
    } catch (const std::exception& e) {
      std::string msg = std::string("shmkit tracker: ") + e.what() + "\n";
      (void)!::write(2, msg.data(), msg.size());
    }
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(mid, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

std::string registry_name() {
  if (const char* env = std::getenv("SHMKIT_TRACKER_REGISTRY"); env != nullptr && *env != '\0') {
    SharedMemory::validate_name(env);
    return env;
  }
  return "shmkit.registry." + std::to_string(::geteuid());
}

std::uint64_t process_start_time(pid_t pid) {
  if (pid <= 0) return 0;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  // Fields after "(comm)": the command may contain spaces and ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return 0;
  // p+2 is field 3 (state); starttime is field 22. A zombie ('Z') or dead
  // ('X') process has exited: it registers nothing any more.
  if (p[1] != ' ' || p[2] == 'Z' || p[2] == 'X') return 0;
  int field = 3;
  for (const char* q = p + 2; *q != '\0'; ++q) {
    if (*q == ' ') {
      if (++field == 22) return std::strtoull(q + 1, nullptr, 10);
    }
  }
  return 0;
}

namespace {
// Registers `block` with `inode` for this process; true if the entry is new
// (false: an existing registration of ours was refreshed).
bool add(std::string_view block, std::uint64_t inode) {
  SharedMemory::validate_name(block);
  Registry* r = registry(true);
  const Self me = self();
  bool added = false;
  {
    Locked lock(*r);
    for (int pass = 0; pass < 2; ++pass) {
      std::size_t free_slot = kMaxEntries;
      for (std::size_t i = 0; i < kMaxEntries; ++i) {
        Entry& e = r->entries[i];
        if (e.state == kUsed && static_cast<pid_t>(e.pid) == me.pid && e.start_time == me.start &&
            entry_name(e) == block) {
          e.inode = inode;  // re-registration: refresh
          free_slot = kMaxEntries + 1;
          break;
        }
        if (e.state != kUsed && free_slot == kMaxEntries) free_slot = i;
      }
      if (free_slot == kMaxEntries + 1) break;
      if (free_slot < kMaxEntries) {
        Entry& e = r->entries[free_slot];
        e.state = kWriting;
        e.pid = static_cast<std::uint32_t>(me.pid);
        e.start_time = me.start;
        e.inode = inode;
        std::memset(e.name, 0, sizeof e.name);
        SHMKIT_FAULT_POINT(registry_writing);
        std::memcpy(e.name, block.data(), block.size());
        e.state = kUsed;
        added = true;
        break;
      }
      if (pass == 1) {
        throw std::system_error(ENOSPC, std::generic_category(),
                                "shmkit: tracker registry is full (" + std::to_string(kMaxEntries) +
                                    " registrations); cannot track " + platform::quoted(block));
      }
      GcReport ignored;  // full: drop the dead and retry once
      sweep(*r, ignored, false, 0, true);
    }
  }
  ensure_watcher();
  return added;
}
}  // namespace

void register_block(std::string_view block) {
  const std::uint64_t inode = inode_of(block);
  (void)add(block, inode == 0 ? kNoInode : inode);
}

bool register_created(std::string_view block, std::uint64_t inode) {
  if (inode == kReserved || inode == kNoInode) {
    throw std::invalid_argument("shmkit: tracker: inode " + std::to_string(inode) +
                                " of " + platform::quoted(block) + " is not a tmpfs inode");
  }
  return add(block, inode);
}

void reserve_block(std::string_view block) { (void)add(block, kReserved); }

namespace {
void remove_where(std::string_view block, bool only_self) {
  Registry* r = registry(false);
  if (r == nullptr) return;
  const Self me = self();
  Locked lock(*r);
  for (std::size_t i = 0; i < kMaxEntries; ++i) {
    Entry& e = r->entries[i];
    if (e.state != kUsed || entry_name(e) != block) continue;
    if (only_self && (static_cast<pid_t>(e.pid) != me.pid || e.start_time != me.start)) continue;
    e.state = kFree;
  }
}
}  // namespace

void unregister_block(std::string_view block) { remove_where(block, true); }
void forget_block(std::string_view block) { remove_where(block, false); }

std::vector<Registration> registrations() {
  std::vector<Registration> out;
  Registry* r = registry(false);
  if (r == nullptr) return out;
  Locked lock(*r);
  for (std::size_t i = 0; i < kMaxEntries; ++i) {
    const Entry& e = r->entries[i];
    if (e.state != kUsed) continue;
    out.push_back(Registration{entry_name(e), static_cast<pid_t>(e.pid), e.start_time, alive(e)});
  }
  return out;
}

GcReport collect_garbage(bool dry_run) {
  GcReport report;
  Registry* r = registry(false);
  if (r == nullptr) return report;
  Locked lock(*r);
  sweep(*r, report, dry_run, 0, false);
  return report;
}

}  // namespace shmkit::tracker
