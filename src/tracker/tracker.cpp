#include "shmkit/tracker.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <map>
#include <optional>
#include <poll.h>
#include <set>
#include <spawn.h>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <unistd.h>

extern char** environ;

#include "platform/platform.hpp"
#include "platform/printable.hpp"
#include "sync/robust_guard.hpp"
#include "tracker/watcher.hpp"
#include "shmkit/detail/fault.hpp"
#include "shmkit/sync/robust_mutex.hpp"
#include "shmkit/typed_block.hpp"

namespace shmkit::tracker {
namespace {

// One registration (layout version 3; version 1 had no PID namespace,
// version 2 no role). `state` makes a half-written entry recognisable after
// a writer died holding the lock: 0 free, 1 being written, 2 in use.
struct Entry {
  std::uint32_t state;
  std::uint32_t pid;          // in the registrant's PID namespace
  std::uint64_t start_time;
  // The registered file: the sweep unlinks only that very file. kReserved
  // (0, no tmpfs inode) marks a name the registrant is about to create (a
  // random temporary name, see SharedMemory::create): any file under it is
  // the registrant's (the manager's fresh names). kNoInode: the name did
  // not exist.
  std::uint64_t inode;
  std::uint64_t pidns_inode;   // the registrant's /proc/self/ns/pid
  std::uint64_t pidns_device;
  // kCreated: the registrant created this file (or reserved the name to
  // create it), or inherited that from its creator (pass_creation); only
  // such a file is ever unlinked by the tracker. Anything else (kUse, or a
  // value no shmkit writes) registers use: the block is kept while the
  // registrant lives, never removed for it.
  std::uint32_t role;
  std::uint32_t unused;        // zero
  char name[256];              // NUL-terminated
};
static_assert(std::is_standard_layout_v<Entry> && sizeof(Entry) == 304);
constexpr std::uint32_t kFree = 0, kWriting = 1, kUsed = 2;
constexpr std::uint32_t kUse = 0, kCreated = 1;
constexpr std::uint64_t kReserved = 0, kNoInode = ~std::uint64_t{0};

struct Control {
  RobustMutex mutex;  // guards every entry
};

struct Registry {
  SharedMemory shm;        // a registrant's, by name
  void* raw = nullptr;     // the watcher's: mapped from the descriptor it was given
  std::size_t raw_size = 0;
  Control* ctl = nullptr;
  Entry* entries = nullptr;
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  ~Registry() {
    if (raw != nullptr) ::munmap(raw, raw_size);
  }
};

}  // namespace
}  // namespace shmkit::tracker

template <>
struct shmkit::TypeName<shmkit::tracker::Entry> {
  static constexpr std::string_view value = "shmkit::tracker::Entry/v3";
};

namespace shmkit::tracker {
namespace {

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
      "shmkit: tracker registry " + platform::quoted(name) + " has layout version " +
      std::to_string(found) + ", this shmkit needs version " + std::to_string(kRegistryVersion) +
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

// The watcher's registry: the very file its registrant registered in (open
// descriptor `fd`, even if its name has gone since), validated as
// open_registry does.
std::unique_ptr<Registry> registry_from_fd(int fd, const std::string& name) {
  const std::string what = "shmkit: tracker registry " + platform::quoted(name);
  struct stat st {};
  if (::fstat(fd, &st) != 0) platform::throw_errno(errno, what + ": fstat failed");
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 077) != 0) {
    char detail[96];
    std::snprintf(detail, sizeof detail, ": not a regular file private to this user (mode %06o, owner uid %u)",
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

// Holds the registry lock; after a dead owner, clears half-written entries.
struct Locked : shmkit::detail::RepairingGuard {
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

// The start time read from /proc/<pid>/stat's format at `path`, in host
// terms (normalised for this process's time namespace, platform/platform.hpp); 0 if
// unreadable, unknown (not normalisable), or the process has exited (a
// zombie, 'Z', or dead, 'X').
std::uint64_t start_time_at(const char* path) {
  const platform::TaskStat t = platform::read_task_stat(path);
  return t.readable && !t.exited ? t.start : 0;
}

PidNamespace pid_namespace_at(const char* path) {
  struct stat st {};
  if (::stat(path, &st) != 0) return {};
  return PidNamespace{static_cast<std::uint64_t>(st.st_ino), static_cast<std::uint64_t>(st.st_dev)};
}

// What this process knows of itself: its pid, start time and PID namespace,
// and whether its /proc shows its own namespace's pids (a process in a new
// PID namespace without its own /proc mount sees another namespace's pids
// there, and must not judge by them).
struct Self {
  pid_t pid = 0;
  std::uint64_t start = 0;
  PidNamespace ns;
  bool proc_is_ours = false;
};
Self self() {
  static thread_local Self cached;
  const pid_t pid = ::getpid();
  if (cached.pid != pid) {
    Self s;
    s.pid = pid;
    s.start = start_time_at("/proc/self/stat");  // not /proc/<getpid()>: see proc_is_ours
    s.ns = pid_namespace_at("/proc/self/ns/pid");
    char link[32] = {};
    const ssize_t n = ::readlink("/proc/self", link, sizeof link - 1);
    s.proc_is_ours = n > 0 && std::strtol(link, nullptr, 10) == pid;
    cached = s;
  }
  return cached;
}

PidNamespace ns_of(const Entry& e) { return PidNamespace{e.pidns_inode, e.pidns_device}; }

// A registrant known to be dead (the watcher's, told by its pidfd).
struct Known {
  pid_t pid;
  std::uint64_t start;
  PidNamespace ns;
  bool matches(const Entry& e) const {
    return static_cast<pid_t>(e.pid) == pid && e.start_time == start && ns_of(e) == ns;
  }
};

enum class Liveness { alive, dead, unknown };

// Judged only in the registrant's own PID namespace, by a process whose
// /proc is that namespace's.
Liveness liveness(const Entry& e, const Self& me, const Known* dead) {
  if (ns_of(e) != me.ns || me.ns == PidNamespace{}) return Liveness::unknown;
  if (dead != nullptr && dead->matches(e)) return Liveness::dead;
  if (!me.proc_is_ours) return Liveness::unknown;
  // Dead only when certain (task_has_exited): no such pid, a zombie, or a
  // live process with another start time (host terms on both sides, so a
  // registrant in another time namespace is judged right). A start of 0
  // (the registrant could not read or normalise its own) is judged by the
  // pid alone; a process /proc hides counts as alive.
  return task_has_exited(static_cast<pid_t>(e.pid), e.start_time) ? Liveness::dead : Liveness::alive;
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
    if (!dry_run) e.state = kFree;
  }
  for (const auto& [block, dropped] : candidates) {
    // Kept while any live process, or one we cannot judge, registers it (the
    // gh-82300 case; another PID namespace's registrant).
    bool kept = false;
    std::set<std::uint64_t> created_files = dropped.created;
    for (std::size_t i = 0; i < kMaxEntries && !kept; ++i) {
      const Entry& e = r.entries[i];
      if (e.state != kUsed || entry_name(e) != block) continue;
      const Liveness l = liveness(e, me, dead);  // (a dry run's dead entries are still used)
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
      if (::shm_unlink(("/" + block).c_str()) != 0) continue;
      if (warn) {
        const std::string msg = leak_message(block);
        (void)!::write(2, msg.data(), msg.size());
      }
    }
    report.unlinked.push_back(block);
  }
}

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// ------------------------------------------------------------ the watcher

std::mutex g_watcher_mutex;  // guards g_watched_for and the spawn
pid_t g_watched_for = 0;     // the pid whose watcher this process started

// A close-on-exec duplicate of `fd` numbered 10 or more, so that
// posix_spawn's dup2 onto 3 or 4 is never a same-number no-op that would
// leave close-on-exec set.
int high_dup(int fd) {
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
  if (moved < 0) platform::throw_errno(errno, "shmkit: tracker: fcntl(F_DUPFD_CLOEXEC) failed");
  return moved;
}

// A descriptor (high_dup) of the file `reg` maps, for the watcher. The
// handle's own descriptor may have been closed behind our back (a daemon
// that closes every descriptor after fork, as the manager's server does) and
// its number reused: then the name is opened again, if it still names that
// file.
int registry_descriptor(const Registry& reg) {
  const auto same = [&](int fd) {
    struct stat st {};
    return fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
           static_cast<std::uint64_t>(st.st_ino) == reg.shm.inode();
  };
  if (same(reg.shm.fd())) return high_dup(reg.shm.fd());
  const int fd = ::open(platform::dev_shm_path(reg.shm.name()).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (!same(fd)) {
    if (fd >= 0) ::close(fd);
    throw std::system_error(EBADF, std::generic_category(),
                            "shmkit: tracker registry " + platform::quoted(reg.shm.name()) +
                                ": this process closed its descriptor and the name no longer names "
                                "the registry it uses; no watcher can be started for it");
  }
  const int moved = high_dup(fd);
  ::close(fd);
  return moved;
}

// Starts this process's watcher (see watcher.hpp) and waits for its
// "ok". Throws std::system_error naming the program on any failure.
void start_watcher(const Self& me, Registry& reg) {
  const std::string path = watcher_path();
  const std::string registry = reg.shm.name();
  const std::string what = "shmkit: tracker: watcher " + platform::quoted(path);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) platform::throw_errno(errno, what + ": pipe2 failed");
  int rd = p[0], wr = -1, regfd = -1;
  try {
    wr = high_dup(p[1]);
    ::close(p[1]);
    p[1] = -1;
    regfd = registry_descriptor(reg);
  } catch (...) {
    for (int fd : {rd, p[1], wr}) {
      if (fd >= 0) ::close(fd);
    }
    throw;
  }
  std::vector<std::string> args{path,
                                std::to_string(detail::kWatcherProtocol),
                                registry,
                                std::to_string(me.pid),
                                std::to_string(me.start),
                                std::to_string(me.ns.inode),
                                std::to_string(me.ns.device)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawnattr_init(&attr);
  ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  ::posix_spawn_file_actions_adddup2(&fa, wr, 3);
  ::posix_spawn_file_actions_adddup2(&fa, regfd, 4);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  ::posix_spawn_file_actions_addclosefrom_np(&fa, 5);  // the program closes the rest too
#endif
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &all);  // ignored signals would stay ignored across exec
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t child = 0;
  const int rc = ::posix_spawn(&child, path.c_str(), &fa, &attr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&fa);
  ::posix_spawnattr_destroy(&attr);
  ::close(wr);
  ::close(regfd);
  if (rc != 0) {
    ::close(rd);
    platform::throw_errno(rc, what + ": cannot start it");
  }
  // Its first act is to fork the watcher and exit.
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  // The answer, bounded: the watcher writes it before it waits for us.
  std::string answer;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::close(rd);
      platform::throw_errno(ETIMEDOUT, what + ": no answer within 30 s");
    }
    pollfd pf{rd, POLLIN, 0};
    const int pr = ::poll(&pf, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (pr < 0 && errno != EINTR) break;
    if (pr <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(rd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(rd);
  if (answer.rfind("ok", 0) != 0) {
    while (!answer.empty() && answer.back() == '\n') answer.pop_back();
    throw std::system_error(EPROTO, std::generic_category(),
                            what + (answer.empty() ? std::string(": exited without answering")
                                                   : ": " + answer));
  }
}

void ensure_watcher(Registry& registry) {
  const Self me = self();
  std::lock_guard g(g_watcher_mutex);
  if (g_watched_for == me.pid) return;
  start_watcher(me, registry);
  g_watched_for = me.pid;
}

// In the watcher: waits for the registrant (`fd`: its pidfd, or -1) to die.
// Slices of a second, so no wait is unbounded.
void wait_for_death(int fd, pid_t pid, std::uint64_t start, bool proc_is_ours) {
  for (;;) {
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 1000) == 1) return;
      continue;
    }
    // No pidfd (kernel < 5.3): poll /proc, or the pid itself.
    if (proc_is_ours ? task_has_exited(pid, start) : (::kill(pid, 0) != 0 && errno == ESRCH)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void say(int fd, const std::string& text) {
  if (fd >= 0) (void)!::write(fd, text.data(), text.size());
}

// In the watcher, after its sweep (never under the registry lock): writes
// `text` on stderr, the registrant's, only if it takes it within a second;
// false if it did not (a reader that stopped reading keeps no watcher).
bool tell(const std::string& text) {
  pollfd p{2, POLLOUT, 0};
  if (::poll(&p, 1, 1000) != 1 || (p.revents & POLLOUT) == 0) return false;
  return ::write(2, text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

}  // namespace

namespace detail {

int watcher_main(int argc, char** argv) {
  constexpr int kAnswer = 3, kRegistry = 4;
  // Nothing inherited but stdin/stdout/stderr, the answer pipe and the
  // registry.
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, 5u, ~0u, 0u) != 0)
#endif
  {
    for (int fd = 5; fd < 1024; ++fd) ::close(fd);
  }
  if (argc != 7 || std::atoi(argv[1]) != kWatcherProtocol) {
    say(kAnswer, "error: protocol mismatch (this watcher speaks " + std::to_string(kWatcherProtocol) +
                     "; was it built from another shmkit version?)\n");
    return 2;
  }
  const pid_t pid = static_cast<pid_t>(std::strtol(argv[3], nullptr, 10));
  const std::uint64_t start = std::strtoull(argv[4], nullptr, 10);
  const PidNamespace ns{std::strtoull(argv[5], nullptr, 10), std::strtoull(argv[6], nullptr, 10)};
  // Detach: the registrant reaps our parent now, and we are nobody's child.
  const pid_t watcher = ::fork();
  if (watcher < 0) {
    say(kAnswer, std::string("error: fork failed: ") + std::strerror(errno) + "\n");
    return 1;
  }
  if (watcher > 0) ::_exit(0);
  ::setsid();
  // Outlive a Ctrl-C or hangup meant for the registrant's group.
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  // Its stderr is the registrant's, whose reader (mpirun, a terminal, a pipe
  // to `head`) may be gone by the time the registrant has died: a write
  // there fails with EPIPE instead of killing the watcher in mid-sweep.
  ::signal(SIGPIPE, SIG_IGN);
  const Self me = self();
  if (me.ns != ns) {
    say(kAnswer, "error: the registrant is in another PID namespace than its watcher "
                 "(did it unshare(CLONE_NEWPID)?)\n");
    ::_exit(1);
  }
  int fd = pidfd_open(pid);
  // The registrant waits for our answer: the pid is still its, unless it was
  // killed meanwhile (then its start time no longer matches, or it is gone).
  bool gone = fd < 0 && errno == ESRCH;
  if (me.proc_is_ours && task_has_exited(pid, start)) gone = true;
  std::unique_ptr<Registry> r;
  try {
    r = registry_from_fd(kRegistry, argv[2]);
  } catch (const std::exception& e) {
    say(kAnswer, std::string("error: ") + e.what() + "\n");
    ::_exit(1);
  }
  ::close(kRegistry);  // the mapping stays
  say(kAnswer, "ok\n");
  ::close(kAnswer);
  if (!gone) wait_for_death(fd, pid, start, me.proc_is_ours);
  if (fd >= 0) ::close(fd);
  GcReport report;
  try {
    Locked lock(*r);
    const Known dead{pid, start, ns};
    sweep(*r, report, false, &dead, false);
  } catch (const std::exception& e) {
    (void)tell(std::string("shmkit tracker: ") + e.what() + "\n");
    return 1;
  }
  // Told once the registry is unlocked: a stderr that blocks (a full pipe)
  // holds up nobody's sweep or registration.
  for (const auto& block : report.unlinked) {
    if (!tell(leak_message(block))) break;
  }
  return 0;
}

}  // namespace detail

std::string registry_name() {
  if (const char* env = std::getenv("SHMKIT_TRACKER_REGISTRY"); env != nullptr && *env != '\0') {
    SharedMemory::validate_name(env);
    return env;
  }
  return "shmkit.registry." + std::to_string(::geteuid());
}

std::string watcher_path() {
  if (const char* env = std::getenv("SHMKIT_WATCHER"); env != nullptr && *env != '\0') return env;
  std::string tried;
  for (const char* candidate : {
#ifdef SHMKIT_WATCHER_INSTALLED
           SHMKIT_WATCHER_INSTALLED,
#endif
#ifdef SHMKIT_WATCHER_BUILT
           SHMKIT_WATCHER_BUILT,
#endif
           static_cast<const char*>(nullptr)}) {
    if (candidate == nullptr) break;
    if (::access(candidate, X_OK) == 0) return candidate;
    tried += std::string(tried.empty() ? "" : ", ") + candidate;
  }
  throw std::system_error(ENOENT, std::generic_category(),
                          "shmkit: tracker: cannot find the watcher program: SHMKIT_WATCHER is not set, "
                          "and none of [" + tried + "] is executable");
}

PidNamespace current_pid_namespace() { return self().ns; }

std::uint64_t process_start_time(pid_t pid) {
  if (pid <= 0) return 0;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  return start_time_at(path);
}

bool task_has_exited(pid_t tid, std::uint64_t start, std::uint64_t start_mask) noexcept {
  if (tid <= 0) return false;
  // kill(tid, 0) looks the id up in our namespace (a thread id works as well
  // as a process id): ESRCH means no such task, so it has exited and its
  // stores are all done (exit is a full barrier in the kernel).
  if (::kill(tid, 0) != 0 && errno == ESRCH) return true;
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(tid));
  const platform::TaskStat t = platform::read_task_stat(path);
  if (!t.readable) return false;  // hidepid or no /proc: cannot tell
  if (t.exited) return true;      // a zombie: killed, not yet reaped (it keeps its id)
  // A live task with that id: the same one, unless the id was reused. Both
  // starts are host-absolute (read_task_stat normalises for the reader's
  // time namespace; the recorder normalised its own): t.start 0 means this
  // reader cannot normalise, and then it does not judge by the start.
  return (start & start_mask) != 0 && t.start != 0 && (t.start & start_mask) != (start & start_mask);
}

namespace {
// Registers `block` with `inode` for this process, as its creator or a user;
// true if the entry is new (false: an existing registration of ours, of
// that file, was refreshed, and made creating if `creator`). A registration
// of a file under a name this process reserved (reserve_block) is of the
// file it created. The watcher is started first: a process that has
// registered anything has a watcher, and a failure to start one registers
// nothing.
bool add(std::string_view block, std::uint64_t inode, bool creator) {
  using shmkit::detail::printable_quoted;
  SharedMemory::validate_name(block);
  Registry* r = registry(true);
  ensure_watcher(*r);
  const Self me = self();
  bool added = false;
  Locked lock(*r);
  const auto mine = [&](const Entry& e) {
    return e.state == kUsed && static_cast<pid_t>(e.pid) == me.pid && e.start_time == me.start &&
           ns_of(e) == me.ns && entry_name(e) == block;
  };
  if (!creator && inode != kReserved) {
    for (std::size_t i = 0; i < kMaxEntries && !creator; ++i) {
      creator = mine(r->entries[i]) && r->entries[i].inode == kReserved && created(r->entries[i]);
    }
  }
  for (int pass = 0; pass < 2; ++pass) {
    std::size_t free_slot = kMaxEntries;
    for (std::size_t i = 0; i < kMaxEntries; ++i) {
      Entry& e = r->entries[i];
      if (mine(e) && e.inode == inode) {
        if (creator) e.role = kCreated;  // one aligned word: either value is whole
        free_slot = kMaxEntries + 1;     // already registered
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
      e.pidns_inode = me.ns.inode;
      e.pidns_device = me.ns.device;
      e.role = creator ? kCreated : kUse;
      e.unused = 0;
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
                                  " registrations); cannot track " + printable_quoted(block));
    }
    GcReport ignored;  // full: drop the dead and retry once
    sweep(*r, ignored, false, nullptr, true);
  }
  return added;
}
}  // namespace

void register_block(std::string_view block, std::uint64_t inode) {
  if (inode == kReserved || inode == kNoInode) {
    throw std::invalid_argument("shmkit: tracker: inode " + std::to_string(inode) + " of " +
                                platform::quoted(block) + " is not a tmpfs inode");
  }
  (void)add(block, inode, false);
}

void register_block(std::string_view block) {
  const std::uint64_t inode = inode_of(block);
  (void)add(block, inode == 0 ? kNoInode : inode, false);
}

bool register_created(std::string_view block, std::uint64_t inode) {
  if (inode == kReserved || inode == kNoInode) {
    throw std::invalid_argument("shmkit: tracker: inode " + std::to_string(inode) +
                                " of " + platform::quoted(block) + " is not a tmpfs inode");
  }
  return add(block, inode, true);
}

void reserve_block(std::string_view block) { (void)add(block, kReserved, true); }

namespace {
// Frees the entries of `block` (only this process's if only_self; only
// those of the file `inode` unless it is nullopt). A creating entry freed
// while the file is still registered by others passes its creation to them
// (pass_creation): an unregistering creator does not turn a block it made
// into one the tracker would never remove. A freed reservation passes
// nothing.
void remove_where(std::string_view block, bool only_self, std::optional<std::uint64_t> inode) {
  Registry* r = registry(false);
  if (r == nullptr) return;
  const Self me = self();
  const std::string name(block);
  Locked lock(*r);
  std::set<std::uint64_t> created_files;
  for (std::size_t i = 0; i < kMaxEntries; ++i) {
    Entry& e = r->entries[i];
    if (e.state != kUsed || entry_name(e) != block) continue;
    if (inode && e.inode != *inode) continue;
    if (only_self && (static_cast<pid_t>(e.pid) != me.pid || e.start_time != me.start || ns_of(e) != me.ns)) {
      continue;
    }
    // A dropped reservation passes nothing: its name may be someone
    // else's file now (the manager drops it on EEXIST); the file made
    // under it has a registration of its own (add()).
    if (created(e) && e.inode != kReserved) created_files.insert(e.inode);
    e.state = kFree;
  }
  for (const std::uint64_t file : created_files) pass_creation(*r, name, file);
}
}  // namespace

void unregister_block(std::string_view block) { remove_where(block, true, std::nullopt); }
void unregister_block(std::string_view block, std::uint64_t inode) { remove_where(block, true, inode); }
void forget_block(std::string_view block, std::uint64_t inode) { remove_where(block, false, inode); }

std::vector<Registration> registrations() {
  std::vector<Registration> out;
  Registry* r = registry(false);
  if (r == nullptr) return out;
  const Self me = self();
  Locked lock(*r);
  for (std::size_t i = 0; i < kMaxEntries; ++i) {
    const Entry& e = r->entries[i];
    if (e.state != kUsed) continue;
    out.push_back(registration_of(e, liveness(e, me, nullptr)));
  }
  return out;
}

GcReport collect_garbage(bool dry_run) {
  GcReport report;
  Registry* r = registry(false);
  if (r == nullptr) return report;
  Locked lock(*r);
  sweep(*r, report, dry_run, nullptr, false);
  return report;
}

}  // namespace shmkit::tracker
