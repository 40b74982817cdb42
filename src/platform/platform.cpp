#include "platform/platform.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace shmkit::platform {

void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

void random_bytes(void* out, std::size_t n) {
  auto* p = static_cast<unsigned char*>(out);
  while (n > 0) {
    ssize_t got = ::getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "shmkit: getrandom failed");
    }
    p += got;
    n -= static_cast<std::size_t>(got);
  }
}

std::string hex(const void* data, std::size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string s;
  s.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    s += kHex[p[i] >> 4];
    s += kHex[p[i] & 0xf];
  }
  return s;
}

std::string random_hex_name(std::string_view prefix, std::size_t nbytes) {
  unsigned char raw[32];
  nbytes = std::min(nbytes, sizeof raw);
  random_bytes(raw, nbytes);
  return std::string(prefix) + hex(raw, nbytes);
}

std::string random_block_name() { return random_hex_name("psm_", 4); }

std::string dev_shm_path(std::string_view name) {
  std::string path = "/dev/shm/";
  path += name;
  return path;
}

std::string quoted(std::string_view name) {
  std::string s;
  s.reserve(name.size() + 2);
  s += '\'';
  s += name;
  s += '\'';
  return s;
}

void send_descriptor(int socket, int fd) {
  char payload = 'F';
  iovec iov{&payload, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  for (;;) {
    if (::sendmsg(socket, &msg, MSG_NOSIGNAL) == 1) return;
    if (errno != EINTR) throw_errno(errno, "shmkit: sending a descriptor (sendmsg) failed");
  }
}

int receive_descriptor(int socket) {
  char payload = 0;
  iovec iov{&payload, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t got;
  do {
    got = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  if (got < 0) throw_errno(errno, "shmkit: receiving a descriptor (recvmsg) failed");
  if (got == 0) throw_errno(ECONNRESET, "shmkit: receiving a descriptor: peer closed the socket");
  int fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int))) {
      std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    if (fd >= 0) ::close(fd);
    throw_errno(EPROTO, "shmkit: receiving a descriptor: control data truncated");
  }
  if (fd < 0) throw_errno(EPROTO, "shmkit: receiving a descriptor: message carried none");
  return fd;
}

namespace {

// Reads a small /proc file into buf (NUL-terminated); false if unreadable.
bool read_small(const char* path, char* buf, std::size_t size) noexcept {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = ::read(fd, buf, size - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  return true;
}

// A decimal integer with an optional '-' at *p, advancing p; false if none.
bool parse_integer(const char*& p, std::int64_t& out) noexcept {
  while (*p == ' ' || *p == '\t') ++p;
  const bool negative = *p == '-';
  if (negative) ++p;
  if (*p < '0' || *p > '9') return false;
  std::int64_t v = 0;
  for (; *p >= '0' && *p <= '9'; ++p) {
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v)) return false;
  }
  out = negative ? -v : v;
  return true;
}

BoottimeOffset compute_boottime_offset() noexcept {
  BoottimeOffset off;
  struct stat own {
  }, children{};
  if (::stat("/proc/self/ns/time", &own) != 0) {
    // No time namespaces in this kernel (no such link while /proc is there):
    // every reader sees host times.
    if (errno == ENOENT && ::access("/proc/self/stat", R_OK) == 0) off.known = true;
    return off;
  }
  // /proc/self/timens_offsets describes the namespace for children: usable
  // only while it is also our own.
  if (::stat("/proc/self/ns/time_for_children", &children) != 0 || own.st_ino != children.st_ino ||
      own.st_dev != children.st_dev) {
    return off;
  }
  char buf[256];
  if (!read_small("/proc/self/timens_offsets", buf, sizeof buf)) return off;
  // Lines "<clock> <seconds> <nanoseconds>"; the clock by name ("boottime")
  // or by id (CLOCK_BOOTTIME, 7) depending on the kernel.
  for (const char* line = buf; *line != '\0';) {
    const char* p = line;
    const bool boottime =
        std::strncmp(p, "boottime", 8) == 0 || (p[0] == '7' && (p[1] == ' ' || p[1] == '\t'));
    const char* nl = std::strchr(line, '\n');
    line = nl != nullptr ? nl + 1 : line + std::strlen(line);
    if (!boottime) continue;
    p += p[0] == '7' ? 1 : 8;
    std::int64_t secs = 0, nsecs = 0;
    if (!parse_integer(p, secs) || !parse_integer(p, nsecs)) return off;
    const long hz = ::sysconf(_SC_CLK_TCK);
    if (hz <= 0 || 1000000000L % hz != 0 || nsecs < 0 || nsecs >= 1000000000L) return off;
    const std::int64_t tick_ns = 1000000000L / hz;
    if (nsecs % tick_ns != 0) return off;  // not a whole number of ticks: cannot normalise exactly
    std::int64_t ticks = 0;
    if (__builtin_mul_overflow(secs, static_cast<std::int64_t>(hz), &ticks) ||
        __builtin_add_overflow(ticks, nsecs / tick_ns, &ticks)) {
      return off;
    }
    off.known = true;
    off.ticks = ticks;
    return off;
  }
  return off;  // no boottime line
}

// Per process: the pid it was computed for is stored last (release) and
// read first (acquire), so a reader that sees its own pid sees its values.
std::atomic<pid_t> g_offset_pid{0};
std::atomic<std::int64_t> g_offset_ticks{0};
std::atomic<bool> g_offset_known{false};

}  // namespace

BoottimeOffset boottime_offset_ticks() noexcept {
  const pid_t pid = ::getpid();
  // (1) acquire, pairs with (2) release below.
  if (g_offset_pid.load(std::memory_order_acquire) == pid) {
    return BoottimeOffset{g_offset_known.load(std::memory_order_relaxed),
                          g_offset_ticks.load(std::memory_order_relaxed)};
  }
  const BoottimeOffset off = compute_boottime_offset();
  g_offset_known.store(off.known, std::memory_order_relaxed);
  g_offset_ticks.store(off.ticks, std::memory_order_relaxed);
  // (2) release, pairs with (1) acquire. Threads racing here compute and
  // store the same values.
  g_offset_pid.store(pid, std::memory_order_release);
  return off;
}

TaskStat read_task_stat(const char* path) noexcept {
  TaskStat t;
  char buf[1024];
  if (!read_small(path, buf, sizeof buf)) return t;
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ' || p[2] == '\0') return t;
  t.readable = true;
  t.exited = p[2] == 'Z' || p[2] == 'X';  // field 3, the state
  int field = 3;
  std::uint64_t raw = 0;
  for (const char* q = p + 2; *q != '\0'; ++q) {
    if (*q == ' ' && ++field == 22) {
      raw = std::strtoull(q + 1, nullptr, 10);
      break;
    }
  }
  // As this reader's time namespace shows it: back to host terms (see the
  // header). The kernel computes field 22 as start + offset >= offset, so
  // raw < offset means the offset was misread: unknown.
  const BoottimeOffset off = boottime_offset_ticks();
  if (raw != 0 && off.known) {
    const auto shifted = static_cast<std::int64_t>(raw);
    if (shifted >= off.ticks && shifted - off.ticks > 0)
      t.start = static_cast<std::uint64_t>(shifted - off.ticks);
  }
  return t;
}

}  // namespace shmkit::platform
