#include "platform.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/socket.h>
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
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int))) {
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

TaskStat read_task_stat(const char* path) noexcept {
  TaskStat t;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return t;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return t;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ' || p[2] == '\0') return t;
  t.readable = true;
  t.exited = p[2] == 'Z' || p[2] == 'X';  // field 3, the state
  int field = 3;
  for (const char* q = p + 2; *q != '\0'; ++q) {
    if (*q == ' ' && ++field == 22) {
      t.start = std::strtoull(q + 1, nullptr, 10);
      break;
    }
  }
  return t;
}

}  // namespace shmkit::platform
