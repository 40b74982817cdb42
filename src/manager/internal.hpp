// src/manager/internal.hpp — what the SharedMemoryManager client
// (client.cpp) and server (server.cpp) share: socket addresses,
// HMAC, and the server's entry point. Internal.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "manager/protocol.hpp"
#include "shmkit/manager.hpp"

namespace shmkit::detail::mgr {

struct SocketAddress {
  sockaddr_un addr{};
  socklen_t length = 0;
  bool abstract = false;
};
// "@name" -> abstract (no trailing NUL, as CPython), else a path.
// std::invalid_argument if empty or longer than sun_path allows.
SocketAddress socket_address(std::string_view address);

// HMAC-SHA256(key, data) (OpenSSL). Aborts only if OpenSSL cannot compute it.
proto::Mac hmac(std::string_view key, std::span<const std::uint8_t> data);
// Constant-time comparison (CRYPTO_memcmp).
bool mac_equal(const proto::Mac& a, const proto::Mac& b) noexcept;

// "shmkit: manager at '<address>': "
std::string prefix(std::string_view address);

// The default address's directory: mkdtemp("$TMPDIR/shmkit-XXXXXX") (/tmp
// if TMPDIR is unset, relative, or too long for the socket path), mode 0700.
// Returns the directory; the socket is socket_in(dir). std::system_error.
std::string make_socket_dir();
std::string socket_in(std::string_view dir);  // "<dir>/listener"
// Removes socket_in(dir) and dir; what is already gone is no error.
void remove_socket_dir(const std::string& dir) noexcept;

struct ServerConfig {
  std::string address;
  std::string authkey;
  SharedMemoryManager::Options options;
  std::string socket_dir;  // the default address's directory (removed at exit), or empty
  int ready_fd = -1;       // write end of the readiness pipe
  int parent_pidfd = -1;   // pidfd of the starting process, or -1
  pid_t parent_pid = -1;
};

// The server process: sets itself up, reports readiness (or the error) on
// ready_fd, runs the event loop, and _exit()s. Never returns.
[[noreturn]] void run_server(const ServerConfig& config) noexcept;

// Readiness record written on ready_fd: i32 errno (0 = listening), then, on
// error, the message bytes until EOF.

}  // namespace shmkit::detail::mgr
