#include "shmkit/shared_memory.hpp"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <stdexcept>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <system_error>
#include <unistd.h>
#include <utility>

#include "platform/platform.hpp"
#include "shmkit/detail/fault.hpp"
#include "shmkit/tracker.hpp"

namespace shmkit {
namespace {

using platform::quoted;
using platform::throw_errno;

std::string describe(std::string_view verb, std::string_view name) {
  std::string s = "shmkit: cannot ";
  s += verb;
  s += " shared memory block ";
  s += quoted(name);
  return s;
}

// The start of an error message ("shmkit: cannot create shared memory
// block 'x'"), built only when something is thrown: create and attach are
// measured against the bare system calls, and building the text up front
// cost a heap allocation or two on every call.
class What {
 public:
  What(const char* verb, std::string_view name) noexcept : verb_(verb), name_(name) {}
  explicit What(const char* fixed) noexcept : fixed_(fixed) {}
  std::string str() const { return fixed_ != nullptr ? std::string(fixed_) : describe(verb_, name_); }
  std::string operator+(std::string_view tail) const {
    std::string s = str();
    s += tail;
    return s;
  }

 private:
  const char* fixed_ = nullptr;
  const char* verb_ = nullptr;
  std::string_view name_;
};

// What this file needs of a descriptor's inode. statx with a NULL path
// (Linux 6.11+) reads it without the path walk that glibc's fstat
// (fstatat(fd, "", AT_EMPTY_PATH)) still makes; measured in a 4 KiB
// create cycle on the 2-vCPU AMD EPYC VM (kernel 6.18), about 0.3 us
// against 0.6-0.8 us. A kernel that refuses the NULL path (EFAULT before
// 6.11; ENOSYS, or EPERM from an old container seccomp profile, without
// statx) gets plain fstat, then and from then on.
struct FileInfo {
  mode_t mode = 0;  // type and permission bits
  std::uint64_t inode = 0;
  std::uint64_t size = 0;
  uid_t uid = 0;
};

std::atomic<bool> g_statx_null_path_refused{false};

bool file_info(int fd, FileInfo& out) noexcept {
#if defined(SYS_statx) && defined(STATX_BASIC_STATS)
  if (!g_statx_null_path_refused.load(std::memory_order_relaxed)) {
    struct statx sx {};
    constexpr unsigned kMask = STATX_TYPE | STATX_MODE | STATX_INO | STATX_SIZE | STATX_UID;
    if (::syscall(SYS_statx, fd, nullptr, AT_EMPTY_PATH, kMask, &sx) == 0) {
      if ((sx.stx_mask & kMask) == kMask) {
        out.mode = sx.stx_mode;
        out.inode = sx.stx_ino;
        out.size = sx.stx_size;
        out.uid = sx.stx_uid;
        return true;
      }
    } else if (errno == EFAULT || errno == ENOSYS || errno == EPERM || errno == EINVAL) {
      g_statx_null_path_refused.store(true, std::memory_order_relaxed);
    }
    // Anything else (EBADF, ...): fstat fails the same way and sets errno.
  }
#endif
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  out.mode = st.st_mode;
  out.inode = static_cast<std::uint64_t>(st.st_ino);
  out.size = static_cast<std::uint64_t>(st.st_size);
  out.uid = st.st_uid;
  return true;
}

// Throws std::system_error with the current errno; errno is read before the
// message is built (building it may allocate).
[[noreturn]] void fail_errno(const What& what, std::string_view tail) {
  const int err = errno;
  throw_errno(err, what + tail);
}

// Gives the open unnamed file `fd` the name `path` (linkat); false with errno
// (EEXIST if the name exists). linkat(fd, "", AT_EMPTY_PATH) links the open
// file itself, allowed since Linux 6.10 to the process that opened it (same
// credentials), before that only with CAP_DAC_READ_SEARCH; refused, it
// fails with ENOENT, and the /proc/self/fd path (which needs neither) is
// used, then and from then on. The /proc path walks procfs: about 2 us of a
// 19 us tracked create cycle on the 2-vCPU AMD EPYC VM (kernel 6.18).
std::atomic<bool> g_empty_path_link_refused{false};

bool link_open_file(int fd, const std::string& path) {
  if (!g_empty_path_link_refused.load(std::memory_order_relaxed)) {
    if (::linkat(fd, "", AT_FDCWD, path.c_str(), AT_EMPTY_PATH) == 0) return true;
    if (errno != ENOENT) return false;
    g_empty_path_link_refused.store(true, std::memory_order_relaxed);
  }
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  return ::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) == 0;
}

std::string block_path(std::string_view name) {
  std::string path;
  path.reserve(name.size() + 1);
  path += '/';
  path += name;
  return path;
}

// Closes a descriptor (and removes the name it was created under) unless
// released: the "unlink if creation fails half-way" rule.
class CreateGuard {
 public:
  CreateGuard(int fd, const std::string* path) noexcept : fd_(fd), path_(path) {}
  CreateGuard(const CreateGuard&) = delete;
  CreateGuard& operator=(const CreateGuard&) = delete;
  ~CreateGuard() {
    if (fd_ < 0) return;
    int saved = errno;
    ::close(fd_);
    if (path_ != nullptr) ::shm_unlink(path_->c_str());
    errno = saved;
  }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
  const std::string* path_;
};

// Gives `fd` exactly `size` bytes; with `reserve`, backs them with memory now
// (fallocate) so that a full tmpfs fails here with ENOSPC instead of raising
// SIGBUS on a later first touch.
void size_block(int fd, std::size_t size, bool reserve, const What& what) {
  const auto sized = [&] { return what + (" (" + std::to_string(size) + " bytes)"); };
  if (reserve) {
    int rc;
    do {
      rc = ::fallocate(fd, 0, 0, static_cast<off_t>(size));
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) return;
    if (errno != EOPNOTSUPP) {
      const int err = errno;
      throw_errno(err, sized() + ": cannot reserve memory (fallocate)");
    }
    // A filesystem without fallocate: fall through to a sparse block.
  }
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const int err = errno;
    throw_errno(err, sized() + ": cannot set size (ftruncate)");
  }
}

// Sets the exact mode (the umask may have cleared bits of it) and the size;
// returns the new file's inode. The fstat that gives the inode also tells
// whether the umask cleared anything, so the usual case (a umask that
// leaves `mode` alone) costs no fchmod.
std::uint64_t prepare_block(int fd, mode_t mode, std::size_t size, const SharedMemory::Options& options,
                            const What& what) {
  FileInfo info;
  if (!file_info(fd, info)) fail_errno(what, ": fstat failed");
  if ((info.mode & 07777) != mode && ::fchmod(fd, mode) != 0) fail_errno(what, ": fchmod failed");
  size_block(fd, size, options.reserve, what);
  return info.inode;
}

void* map_block(int fd, std::size_t size, bool read_only, const SharedMemory::Options& options,
                const What& what) {
  int prot = read_only ? PROT_READ : PROT_READ | PROT_WRITE;
  int flags = MAP_SHARED | (options.prefault ? MAP_POPULATE : 0);
  void* p = ::mmap(nullptr, size, prot, flags, fd, 0);
  if (p == MAP_FAILED) fail_errno(what, ": mmap failed");
  if (options.mlock && ::mlock(p, size) != 0) {
    int err = errno;
    ::munmap(p, size);
    throw_errno(err, what + ": mlock failed (see RLIMIT_MEMLOCK)");
  }
  return p;
}

// The size to map from fstat: not empty, at least Options::min_size.
std::size_t checked_size(std::uint64_t file_size, const SharedMemory::Options& options, const What& what) {
  const auto size = static_cast<std::size_t>(file_size);
  if (size == 0) throw std::invalid_argument(what + ": the block is empty (0 bytes)");
  if (size < options.min_size) {
    throw std::invalid_argument(what + ": the block is " + std::to_string(size) + " bytes, at least " +
                                std::to_string(options.min_size) + " required");
  }
  return size;
}

// What a non-regular file at a block's name is, for messages.
const char* file_kind(mode_t mode) noexcept {
  if (S_ISFIFO(mode)) return "FIFO";
  if (S_ISDIR(mode)) return "directory";
  if (S_ISSOCK(mode)) return "socket";
  if (S_ISCHR(mode)) return "character device";
  if (S_ISBLK(mode)) return "block device";
  if (S_ISLNK(mode)) return "symbolic link";
  return "file of unknown type";
}

}  // namespace

void SharedMemory::validate_name(std::string_view name) {
  auto fail = [&](const char* why) {
    std::string msg = "shmkit: invalid shared memory block name ";
    msg += quoted(name.size() > 64 ? std::string(name.substr(0, 64)) + "..." : std::string(name));
    msg += ": ";
    msg += why;
    throw std::invalid_argument(msg);
  };
  if (name.empty()) fail("the name is empty");
  if (name.size() > kMaxNameLength) fail("longer than 255 bytes");
  if (name.find('\0') != std::string_view::npos) fail("contains a NUL byte");
  if (name.find('/') != std::string_view::npos) {
    fail("contains '/' (give the name without a leading slash, as CPython reports it)");
  }
}

SharedMemory SharedMemory::create(std::size_t size) { return create(size, Options{}); }

SharedMemory SharedMemory::create(std::size_t size, const Options& options) {
  // CPython retries forever on FileExistsError; 2^32 names make a long run of
  // collisions a sign of something else, so give up after many.
  constexpr int kAttempts = 256;
  for (int attempt = 1;; ++attempt) {
    std::string name = platform::random_block_name();
    try {
      return create(name, size, options);
    } catch (const std::system_error& e) {
      if (e.code().value() != EEXIST || attempt == kAttempts) throw;
    }
  }
}

SharedMemory SharedMemory::create(std::string_view name, std::size_t size) {
  return create(name, size, Options{});
}

SharedMemory SharedMemory::create(std::string_view name, std::size_t size, const Options& options) {
  // Tracked: never visible half made, and covered by the tracker from the
  // moment it has a name (create_filled checks the arguments too).
  if (options.track) return create_filled(name, size, options, {});
  validate_name(name);
  const What what("create", name);
  if (size == 0) {
    throw std::invalid_argument(what + ": size must be greater than zero");
  }
  const mode_t mode = options.mode & 07777;
  const std::string path = block_path(name);
  int fd = ::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, mode);
  if (fd < 0) fail_errno(what, "");
  CreateGuard guard(fd, &path);
  SHMKIT_FAULT_POINT(create_opened);
  const std::uint64_t inode = prepare_block(fd, mode, size, options, what);
  SHMKIT_FAULT_POINT(create_sized);
  void* data = map_block(fd, size, false, options, what);
  return SharedMemory(std::string(name), guard.release(), inode, data, size, true, false, false, false);
}

SharedMemory SharedMemory::create_filled(std::string_view name, std::size_t size, const Options& options,
                                         const Fill& fill) {
  validate_name(name);
  const What what("create", name);
  if (size == 0) {
    throw std::invalid_argument(what + ": size must be greater than zero");
  }
  const mode_t mode = options.mode & 07777;
  // The block is made unnamed (O_TMPFILE in /dev/shm), sized and filled,
  // registered (tracked) under `name` with its inode, and only then linked
  // to `name`; linkat fails with EEXIST as O_EXCL would. Nobody sees it
  // half made, a kill before the link frees it with the process, and a kill
  // after the link leaves a registration that covers it.
  int fd = ::open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  if (fd < 0) fail_errno(what, ": cannot create an unnamed file in /dev/shm (O_TMPFILE)");
  CreateGuard guard(fd, nullptr);
  SHMKIT_FAULT_POINT(create_opened);
  const std::uint64_t inode = prepare_block(fd, mode, size, options, what);
  SHMKIT_FAULT_POINT(create_sized);
  void* data = map_block(fd, size, false, options, what);
  SharedMemory shm(std::string(name), guard.release(), inode, data, size, true, false, false, options.track);
  if (fill) fill(shm.buf());
  bool new_registration = false;
  if (options.track) {
    new_registration = tracker::register_created(name, inode);
    SHMKIT_FAULT_POINT(create_registered);
  }
  if (!link_open_file(shm.fd_, platform::dev_shm_path(name))) {
    const int err = errno;
    // Our registration of the unnamed file must not outlive the attempt;
    // one we had of the file under the name (we attached it) stays.
    if (options.track && new_registration) tracker::unregister_block(name, shm.inode_);
    throw_errno(err, what.str());
  }
  SHMKIT_FAULT_POINT(create_published);
  return shm;
}

SharedMemory SharedMemory::attach(std::string_view name) { return attach(name, Options{}); }

SharedMemory SharedMemory::attach(std::string_view name, const Options& options) {
  validate_name(name);
  const What what("attach", name);
  std::string path = block_path(name);
  // O_NONBLOCK: whatever sits at the name is opened before its type is
  // known, and a FIFO opened for reading would wait for a writer forever.
  // Non-blocking, the open returns at once; the type is then checked on the
  // descriptor (no rename race) and only a regular file goes on. (glibc's
  // shm_open adds O_NOFOLLOW | O_CLOEXEC; a directory opened for writing is
  // EINVAL there, a socket ENXIO from the kernel.)
  int fd = ::shm_open(path.c_str(), (options.read_only ? O_RDONLY : O_RDWR) | O_NONBLOCK, 0);
  if (fd < 0) {
    const int err = errno;
    struct stat lst {};
    if ((err == EINVAL || err == ENXIO) && ::lstat(platform::dev_shm_path(name).c_str(), &lst) == 0 &&
        !S_ISREG(lst.st_mode)) {
      throw_errno(err, what + ": it is a " + file_kind(lst.st_mode) + ", not a regular file");
    }
    throw_errno(err, what.str());
  }
  CreateGuard guard(fd, nullptr);
  SHMKIT_FAULT_POINT(attach_opened);
  FileInfo st;
  if (!file_info(fd, st)) fail_errno(what, ": fstat failed");
  if (!S_ISREG(st.mode)) {
    throw_errno(EINVAL, what + ": it is a " + file_kind(st.mode) +
                            ", not a regular file (a shared memory block is one)");
  }
  // O_NONBLOCK stays set: on a regular file it changes nothing (reads,
  // writes, ftruncate and mmap never block on it), so clearing it would cost
  // two fcntl calls on every attach for nothing.
  if (options.require_private && (st.uid != ::geteuid() || (st.mode & 077) != 0)) {
    char detail[80];
    std::snprintf(detail, sizeof detail, ": not private to this user (owner uid %u, mode %04o)",
                  static_cast<unsigned>(st.uid), static_cast<unsigned>(st.mode & 07777));
    throw_errno(EPERM, what + detail);
  }
  const std::size_t size = checked_size(st.size, options, what);
  void* data = map_block(fd, size, options.read_only, options, what);
  SHMKIT_FAULT_POINT(attach_mapped);
  SharedMemory shm(std::string(name), guard.release(), st.inode, data, size, false, false, options.read_only,
                   options.track);
  if (options.track) tracker::register_block(name, shm.inode_);  // the file we opened
  return shm;
}

SharedMemory SharedMemory::anonymous(std::size_t size) { return anonymous(size, Options{}); }

namespace {
// The inode of an anonymous block (memfd) this process just made.
std::uint64_t inode_of(int fd, const What& what) {
  FileInfo info;
  if (!file_info(fd, info)) fail_errno(what, ": fstat failed");
  return info.inode;
}
}  // namespace

SharedMemory SharedMemory::anonymous(std::size_t size, const Options& options) {
  const What what("shmkit: cannot create an anonymous shared memory block");
  if (size == 0) throw std::invalid_argument(what + ": size must be greater than zero");
  int fd = ::memfd_create("shmkit", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) fail_errno(what, " (memfd_create)");
  CreateGuard guard(fd, nullptr);
  size_block(fd, size, options.reserve, what);
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0) fail_errno(what, ": F_ADD_SEALS failed");
  void* data = map_block(fd, size, false, options, what);
  return SharedMemory(std::string(), guard.release(), inode_of(fd, what), data, size, true, true, false,
                      false);
}

void SharedMemory::send_fd(int socket) const {
  if (!anonymous_) {
    throw std::logic_error("shmkit: send_fd: block " + quoted(name_) + " is named; send its name instead");
  }
  if (closed()) throw std::logic_error("shmkit: send_fd: the block is closed");
  platform::send_descriptor(socket, fd_);
}

SharedMemory SharedMemory::receive_fd(int socket) { return receive_fd(socket, Options{}); }

SharedMemory SharedMemory::receive_fd(int socket, const Options& options) {
  const What what("shmkit: cannot map a received anonymous shared memory block");
  int fd = platform::receive_descriptor(socket);
  CreateGuard guard(fd, nullptr);
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    throw std::invalid_argument(what + ": the descriptor is not a memfd sealed against shrinking");
  }
  FileInfo st;
  if (!file_info(fd, st)) fail_errno(what, ": fstat failed");
  const std::size_t size = checked_size(st.size, options, what);
  void* data = map_block(fd, size, options.read_only, options, what);
  return SharedMemory(std::string(), guard.release(), st.inode, data, size, false, true, options.read_only,
                      false);
}

SharedMemory::SharedMemory(std::string name, int fd, std::uint64_t inode, void* data, std::size_t size,
                           bool created, bool anonymous, bool read_only, bool tracked) noexcept
    : name_(std::move(name)),
      fd_(fd),
      inode_(inode),
      data_(data),
      size_(size),
      created_(created),
      anonymous_(anonymous),
      read_only_(read_only),
      tracked_(tracked) {}

SharedMemory::SharedMemory(SharedMemory&& other) noexcept
    : name_(std::move(other.name_)),
      fd_(std::exchange(other.fd_, -1)),
      inode_(std::exchange(other.inode_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      created_(other.created_),
      anonymous_(other.anonymous_),
      read_only_(other.read_only_),
      tracked_(other.tracked_) {}

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
  if (this != &other) {
    close();
    name_ = std::move(other.name_);
    fd_ = std::exchange(other.fd_, -1);
    inode_ = std::exchange(other.inode_, 0);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    created_ = other.created_;
    anonymous_ = other.anonymous_;
    read_only_ = other.read_only_;
    tracked_ = other.tracked_;
  }
  return *this;
}

SharedMemory::~SharedMemory() { close(); }

void SharedMemory::close() noexcept {
  if (data_ != nullptr) {
    ::munmap(data_, size_);
    data_ = nullptr;
  }
  size_ = 0;
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void SharedMemory::unlink() {
  if (anonymous_ || name_.empty()) return;
  unlink(name_);
  SHMKIT_FAULT_POINT(unlink_removed);
  if (tracked_) tracker::forget_block(name_, inode_);  // only the file we removed
}

void SharedMemory::unlink(std::string_view name) {
  validate_name(name);
  std::string path = block_path(name);
  if (::shm_unlink(path.c_str()) != 0) throw_errno(errno, describe("unlink", name));
}

}  // namespace shmkit
