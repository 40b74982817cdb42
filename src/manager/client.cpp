// SharedMemoryManager: the handle (start, shutdown) and the client side of
// the protocol. The server is server.cpp; the wire format is
// protocol.hpp.
#include "shmkit/manager.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <stdexcept>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <unistd.h>

#include "manager/internal.hpp"
#include "platform/platform.hpp"
#include "shmkit/detail/sync_common.hpp"

namespace shmkit {

const char* managed_kind_name(ManagedKind kind) noexcept {
  switch (kind) {
    case ManagedKind::shared_memory:
      return "SharedMemory";
    case ManagedKind::shareable_list:
      return "ShareableList";
    case ManagedKind::value:
      return "Value";
    case ManagedKind::array:
      return "Array";
  }
  return "unknown";
}

namespace detail::mgr {

SocketAddress socket_address(std::string_view address) {
  SocketAddress sa;
  sa.addr.sun_family = AF_UNIX;
  const std::size_t room = sizeof(sa.addr.sun_path) - 1;  // 107
  if (address.empty() || address == "@") {
    throw std::invalid_argument("shmkit: manager: empty address");
  }
  if (address.size() > room) {
    throw std::invalid_argument("shmkit: manager: address " + platform::quoted(address) + " is " +
                                std::to_string(address.size()) + " bytes, at most " + std::to_string(room) +
                                " fit a Unix socket address");
  }
  if (address.find('\0') != std::string_view::npos) {
    throw std::invalid_argument("shmkit: manager: address " + platform::quoted(address) +
                                " contains a NUL byte");
  }
  if (address.front() == '@') {
    sa.abstract = true;
    sa.addr.sun_path[0] = '\0';
    std::memcpy(sa.addr.sun_path + 1, address.data() + 1, address.size() - 1);
    sa.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
  } else {
    std::memcpy(sa.addr.sun_path, address.data(), address.size());
    sa.addr.sun_path[address.size()] = '\0';
    sa.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size() + 1);
  }
  return sa;
}

proto::Mac hmac(std::string_view key, std::span<const std::uint8_t> data) {
  proto::Mac mac{};
  unsigned int len = 0;
  if (::HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), mac.data(),
             &len) == nullptr ||
      len != mac.size()) {
    throw std::runtime_error("shmkit: manager: HMAC-SHA256 failed (OpenSSL)");
  }
  return mac;
}

bool mac_equal(const proto::Mac& a, const proto::Mac& b) noexcept {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string prefix(std::string_view address) {
  return "shmkit: manager at " + platform::quoted(address) + ": ";
}

std::string socket_in(std::string_view dir) { return std::string(dir) + "/listener"; }

std::string make_socket_dir() {
  // "<base>/shmkit-XXXXXX/listener" must fit sun_path (107 bytes and a NUL).
  constexpr std::size_t kRoom = sizeof(sockaddr_un::sun_path) - 1;
  constexpr std::size_t kTail = std::string_view("/shmkit-XXXXXX/listener").size();
  std::string base = "/tmp";
  if (const char* t = std::getenv("TMPDIR"); t != nullptr && t[0] == '/') {
    std::string_view v(t);
    while (v.size() > 1 && v.back() == '/') v.remove_suffix(1);
    if (v.size() + kTail <= kRoom) base = std::string(v);
  }
  std::string templ = base + "/shmkit-XXXXXX";
  // mkdtemp: mode 0700 (less if the umask says so, never more).
  if (::mkdtemp(templ.data()) == nullptr) {
    platform::throw_errno(
        errno, "shmkit: manager: cannot make a socket directory " + platform::quoted(templ) + " (mkdtemp)");
  }
  return templ;
}

void remove_socket_dir(const std::string& dir) noexcept {
  if (dir.empty()) return;
  (void)::unlink(socket_in(dir).c_str());
  (void)::rmdir(dir.c_str());
}

}  // namespace detail::mgr

namespace {

namespace proto = detail::proto;
namespace mgr = detail::mgr;
using Clock = std::chrono::steady_clock;

// A std::system_error's what() made in the server already ends in
// ": <strerror>"; the client's rethrow appends it again unless removed.
std::string without_errno_suffix(std::string message, int err) {
  const std::string suffix = ": " + std::generic_category().message(err);
  if (message.size() >= suffix.size() &&
      message.compare(message.size() - suffix.size(), suffix.size(), suffix) == 0) {
    message.resize(message.size() - suffix.size());
  }
  return message;
}

void validate_options(const ManagerOptions& o) {
  const std::string& p = o.name_prefix;
  if (p.size() > 200 || p.find('/') != std::string::npos || p.find('\0') != std::string::npos) {
    throw std::invalid_argument("shmkit: manager: name_prefix " + platform::quoted(p) +
                                " must be at most 200 bytes without '/' or NUL");
  }
  if (o.max_handshakes == 0) {
    throw std::invalid_argument("shmkit: manager: max_handshakes must be at least 1");
  }
  if (o.handshake_timeout.count() <= 0) {
    throw std::invalid_argument("shmkit: manager: handshake_timeout must be positive");
  }
}

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1'000'000));
}

}  // namespace

struct SharedMemoryManager::Impl {
  std::string address;
  std::string authkey;
  Options options;
  std::mutex mutex;  // serialises calls on the connection
  // The server this handle started (in owner_pid only).
  pid_t server_pid = -1;
  pid_t owner_pid = -1;
  bool shut_down = false;
  bool connected_handle = false;  // made by connect()
  // The default address: made by start() (then `address` is in it),
  // removed after the server is reaped. Used by the starting process only.
  bool default_address = false;
  std::string socket_dir;
  // The connection, valid only in the process that opened it.
  int fd = -1;
  pid_t fd_pid = -1;

  std::string where() const { return mgr::prefix(address); }
  bool owner() const noexcept { return server_pid > 0 && owner_pid == ::getpid(); }

  void disconnect() noexcept {
    // A connection inherited across fork() belongs to the parent: drop our
    // copy of the descriptor without touching the stream.
    if (fd >= 0) ::close(fd);
    fd = -1;
    fd_pid = -1;
  }

  [[noreturn]] void fail(int err, const std::string& what) {
    disconnect();
    throw std::system_error(err, std::generic_category(), where() + what);
  }

  void send_all(const std::vector<std::uint8_t>& frame, Clock::time_point deadline) {
    std::size_t off = 0;
    while (off < frame.size()) {
      const ssize_t n = ::send(fd, frame.data() + off, frame.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{fd, POLLOUT, 0};
        const int left = ms_left(deadline);
        if (left == 0) fail(ETIMEDOUT, "the server did not take the request within the timeout");
        if (::poll(&p, 1, left) < 0 && errno != EINTR) fail(errno, "poll");
        continue;
      }
      fail(errno, "send");
    }
  }

  // Reads one whole frame (at most `cap` bytes after the length field).
  // `closed`: what an orderly close before the frame means.
  std::vector<std::uint8_t> recv_frame(
      std::size_t cap, Clock::time_point deadline,
      const char* closed = "the server closed the connection (did it stop or die?)") {
    std::vector<std::uint8_t> buf;
    std::size_t want = proto::kLengthSize;
    for (;;) {
      const proto::FrameHead head = proto::peek_frame(buf, cap);
      if (head.status == proto::FrameStatus::ready) return buf;
      if (head.status == proto::FrameStatus::too_large || head.status == proto::FrameStatus::empty) {
        fail(EPROTO, "the server sent a malformed frame (length field)");
      }
      want = head.total != 0 ? head.total : proto::kLengthSize;
      const std::size_t have = buf.size();
      buf.resize(want);
      const ssize_t n = ::recv(fd, buf.data() + have, want - have, MSG_DONTWAIT);
      if (n > 0) {
        buf.resize(have + static_cast<std::size_t>(n));
        continue;
      }
      buf.resize(have);
      if (n == 0) fail(ECONNRESET, closed);
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) fail(errno, "recv");
      const int left = ms_left(deadline);
      if (left == 0) {
        fail(ETIMEDOUT, "no reply within " + std::to_string(options.timeout.count()) + " ms");
      }
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, left) < 0 && errno != EINTR) fail(errno, "poll");
    }
  }

  void connect_socket(Clock::time_point deadline) {
    if (address.empty()) {
      fail(ENOTCONN, "no address yet (a default manager gets one from start())");
    }
    const mgr::SocketAddress sa = mgr::socket_address(address);
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail(errno, "socket");
    fd_pid = ::getpid();
    for (;;) {
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa.addr), sa.length) == 0) return;
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN) {
        // The listen backlog is full: the server is busy. Retry until the
        // deadline (a Unix socket has no connect-in-progress to poll).
        if (ms_left(deadline) == 0) fail(ETIMEDOUT, "connect: the server's backlog stayed full");
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      if (err == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        const int r = ::poll(&p, 1, ms_left(deadline));
        if (r == 0) fail(ETIMEDOUT, "connect timed out");
        int so = 0;
        socklen_t len = sizeof so;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len);
        if (so != 0) fail(so, "connect");
        return;
      }
      fail(err, "connect (is the manager running?)");
    }
  }

  void handshake(Clock::time_point deadline) {
    const std::vector<std::uint8_t> hello_frame =
        recv_frame(proto::kMaxHandshakeFrame, deadline,
                   "the server closed the connection before its hello (it refuses other users than its own "
                   "and ManagerOptions::allowed_uids, and connections beyond max_connections; or it "
                   "stopped or died)");
    const auto hello = proto::decode_hello(proto::frame_at(hello_frame, hello_frame.size()));
    if (!hello || hello->magic != proto::kMagic) {
      fail(EPROTO, "not a shmkit manager (bad hello)");
    }
    if (hello->version != proto::kVersion) {
      fail(EPROTONOSUPPORT, "protocol version " + std::to_string(hello->version) +
                                " is not supported (this client speaks " + std::to_string(proto::kVersion) +
                                ")");
    }
    proto::Auth auth;
    platform::random_bytes(auth.nonce.data(), auth.nonce.size());
    auth.mac = mgr::hmac(authkey, proto::mac_input(false, hello->nonce, auth.nonce));
    send_all(proto::encode(auth), deadline);
    // A refused key is answered with auth_fail; a server that just closes
    // dropped us for another reason (our handshake took longer than its
    // server_io_timeout, or it is shutting down): ECONNRESET from recv_frame.
    const std::vector<std::uint8_t> reply = recv_frame(proto::kMaxHandshakeFrame, deadline);
    const proto::Frame f = proto::frame_at(reply, reply.size());
    if (auto fail_msg = proto::decode_auth_fail(f)) {
      if (fail_msg->reason == static_cast<std::uint32_t>(proto::AuthFailReason::bad_version)) {
        fail(EPROTONOSUPPORT,
             "the server does not speak protocol version " + std::to_string(proto::kVersion));
      }
      fail(EACCES, "authentication failed: the server refused the authkey");
    }
    const auto ok = proto::decode_auth_ok(f);
    if (!ok) fail(EPROTO, "malformed reply to authentication");
    const proto::Mac expected = mgr::hmac(authkey, proto::mac_input(true, hello->nonce, auth.nonce));
    if (!mgr::mac_equal(expected, ok->mac)) {
      fail(EPERM, "authentication failed: the server could not prove that it knows the authkey");
    }
  }

  void ensure_connected(Clock::time_point deadline) {
    if (fd >= 0 && fd_pid == ::getpid()) return;
    disconnect();
    connect_socket(deadline);
    handshake(deadline);
  }

  proto::Reply call(const proto::Request& request) {
    std::vector<std::uint8_t> frame = proto::encode(request);
    if (frame.size() - proto::kLengthSize > proto::kMaxFrame) {
      throw std::invalid_argument(where() + "request of " + std::to_string(frame.size()) +
                                  " bytes exceeds the protocol's " + std::to_string(proto::kMaxFrame) +
                                  "-byte frame limit");
    }
    std::lock_guard lock(mutex);
    const auto deadline = detail::deadline_after(options.timeout);
    ensure_connected(deadline);
    send_all(frame, deadline);
    const std::vector<std::uint8_t> in = recv_frame(proto::kMaxFrame, deadline);
    std::optional<proto::Reply> reply = proto::decode_reply(proto::frame_at(in, in.size()));
    if (!reply) fail(EPROTO, "malformed reply");
    if (const auto* e = std::get_if<proto::ErrorReply>(&*reply)) {
      if (e->category == proto::ErrorCategory::invalid_argument) throw std::invalid_argument(e->message);
      // The server's message already says what failed; keep its errno.
      throw std::system_error(
          e->err, std::generic_category(),
          where() + without_errno_suffix(
                        e->message.starts_with("shmkit: ") ? e->message.substr(8) : e->message, e->err));
    }
    return std::move(*reply);
  }

  std::string call_name(const proto::Request& request) {
    proto::Reply reply = call(request);
    if (auto* n = std::get_if<proto::NameReply>(&reply)) return std::move(n->name);
    fail(EPROTO, "unexpected reply (expected a block name)");
  }

  void call_done(const proto::Request& request) {
    proto::Reply reply = call(request);
    if (!std::holds_alternative<proto::DoneReply>(reply)) fail(EPROTO, "unexpected reply");
  }

  // Waits up to `timeout` for the server process to exit; SIGKILLs it after
  // that. Returns its wait status.
  int reap(std::chrono::milliseconds timeout) noexcept {
    const auto deadline = detail::deadline_after(timeout);
    int status = 0;
    for (;;) {
      const pid_t r = ::waitpid(server_pid, &status, WNOHANG);
      if (r == server_pid) break;
      if (r < 0 && errno != EINTR) {
        status = -1;  // not our child (any more): unknown
        break;
      }
      if (Clock::now() >= deadline) {
        ::kill(server_pid, SIGKILL);
        while (::waitpid(server_pid, &status, 0) < 0 && errno == EINTR) {
        }
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    server_pid = -1;
    return status;
  }
};

SharedMemoryManager::SharedMemoryManager() : SharedMemoryManager(Options{}) {}

SharedMemoryManager::SharedMemoryManager(Options options) : impl_(std::make_unique<Impl>()) {
  validate_options(options);
  impl_->default_address = true;  // start() makes it
  impl_->authkey.resize(32);
  platform::random_bytes(impl_->authkey.data(), impl_->authkey.size());
  impl_->options = std::move(options);
}

SharedMemoryManager::SharedMemoryManager(std::string address, std::string authkey, Options options)
    : impl_(std::make_unique<Impl>()) {
  (void)mgr::socket_address(address);  // validates
  if (authkey.empty()) throw std::invalid_argument("shmkit: manager: the authkey must not be empty");
  validate_options(options);
  impl_->address = std::move(address);
  impl_->authkey = std::move(authkey);
  impl_->options = std::move(options);
}

SharedMemoryManager::SharedMemoryManager(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

SharedMemoryManager SharedMemoryManager::connect(std::string address, std::string authkey, Options options) {
  SharedMemoryManager m(std::move(address), std::move(authkey), std::move(options));
  m.impl_->connected_handle = true;
  return m;
}

SharedMemoryManager::SharedMemoryManager(SharedMemoryManager&&) noexcept = default;

SharedMemoryManager& SharedMemoryManager::operator=(SharedMemoryManager&& other) noexcept {
  if (this != &other) {
    SharedMemoryManager old(std::move(*this));  // shuts down what we held
    impl_ = std::move(other.impl_);
  }
  return *this;
}

SharedMemoryManager::~SharedMemoryManager() {
  if (!impl_) return;
  if (impl_->owner()) {
    try {
      shutdown();
    } catch (...) {
      // The destructor must not throw; shutdown() reaped the server anyway.
    }
  }
  impl_->disconnect();
}

void SharedMemoryManager::start() {
  Impl& m = *impl_;
  if (m.connected_handle) {
    throw std::logic_error(m.where() + "start() on a handle made by connect()");
  }
  if (m.server_pid > 0 || m.shut_down) {
    throw std::logic_error(m.where() + (m.shut_down ? "already shut down" : "already started"));
  }
  if (m.default_address) {
    m.socket_dir = mgr::make_socket_dir();
    m.address = mgr::socket_in(m.socket_dir);
  }
  // Until the server is up, a failure removes the directory again.
  struct DirGuard {
    Impl& m;
    bool keep = false;
    ~DirGuard() {
      if (!keep && m.default_address) {
        mgr::remove_socket_dir(m.socket_dir);
        m.socket_dir.clear();
        m.address.clear();
      }
    }
  } dir_guard{m};
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) platform::throw_errno(errno, m.where() + "pipe2");
  const pid_t self = ::getpid();
  // A pidfd of this process: the server polls it and cleans up when we die,
  // whichever thread called start() (PR_SET_PDEATHSIG would follow the
  // thread, and is kept as the fallback for kernels without pidfd_open).
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, self, 0));
  mgr::ServerConfig config{m.address, m.authkey, m.options, m.socket_dir, pipefd[1], pidfd, self};
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    if (pidfd >= 0) ::close(pidfd);
    platform::throw_errno(err, m.where() + "fork");
  }
  if (pid == 0) {
    ::close(pipefd[0]);
    mgr::run_server(config);  // never returns
  }
  ::close(pipefd[1]);
  if (pidfd >= 0) ::close(pidfd);
  m.server_pid = pid;
  m.owner_pid = self;

  // Wait for "listening" (i32 0) or an error (i32 errno + message).
  std::string record;
  bool timed_out = false;
  const auto deadline = detail::deadline_after(m.options.timeout);
  for (;;) {
    pollfd p{pipefd[0], POLLIN, 0};
    const int r = ::poll(&p, 1, ms_left(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      timed_out = r == 0;
      break;
    }
    char buf[512];
    const ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    record.append(buf, static_cast<std::size_t>(n));
    if (record.size() == sizeof(std::int32_t)) {
      std::int32_t code;
      std::memcpy(&code, record.data(), sizeof code);
      if (code == 0) break;
    }
  }
  ::close(pipefd[0]);
  std::int32_t code = -1;
  if (record.size() >= sizeof code) std::memcpy(&code, record.data(), sizeof code);
  if (code == 0) {
    dir_guard.keep = true;
    return;
  }

  (void)m.reap(std::chrono::milliseconds(1000));
  m.owner_pid = -1;
  if (code > 0) {
    const std::string what = record.substr(sizeof code);
    if (code == EINVAL) throw std::invalid_argument(what);
    // The server's message is "...: bind: <strerror>"; rebuild with errno.
    throw std::system_error(code, std::generic_category(), without_errno_suffix(what, code));
  }
  if (timed_out) {
    throw std::system_error(ETIMEDOUT, std::generic_category(),
                            m.where() + "the server did not start within the timeout");
  }
  throw std::system_error(ECHILD, std::generic_category(),
                          m.where() + "the server process exited before listening");
}

void SharedMemoryManager::shutdown() {
  Impl& m = *impl_;
  if (m.connected_handle || (m.server_pid > 0 && m.owner_pid != ::getpid())) {
    // A connected handle (or a copy inherited by a forked child): ask.
    m.call_done(proto::Shutdown{});
    m.disconnect();
    return;
  }
  if (m.server_pid <= 0) return;  // never started, or already shut down
  std::exception_ptr error;
  try {
    m.call_done(proto::Shutdown{});
  } catch (...) {
    error = std::current_exception();
  }
  m.disconnect();
  const int status = m.reap(error ? std::chrono::milliseconds(0) + m.options.timeout / 4 : m.options.timeout);
  m.shut_down = true;
  // A server that exited removed its socket and directory; one that was
  // killed could not.
  mgr::remove_socket_dir(m.socket_dir);
  // A server that exited 0 on its own (SIGTERM, SIGHUP) unlinked its blocks.
  if (error && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    std::string how = "the server could not be asked to shut down";
    if (WIFSIGNALED(status)) {
      how = std::string("the server process had died (") + ::strsignal(WTERMSIG(status)) + ")";
    }
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      throw std::system_error(ESRCH, std::generic_category(),
                              m.where() + how + "; blocks it created may be left behind (" + e.what() + ")");
    }
  }
}

const std::string& SharedMemoryManager::address() const noexcept { return impl_->address; }
const std::string& SharedMemoryManager::authkey() const noexcept { return impl_->authkey; }
const SharedMemoryManager::Options& SharedMemoryManager::options() const noexcept { return impl_->options; }
bool SharedMemoryManager::started() const noexcept { return impl_->owner(); }
pid_t SharedMemoryManager::server_pid() const noexcept { return impl_->server_pid; }

std::string SharedMemoryManager::create_shared_memory(std::size_t size) {
  return impl_->call_name(proto::CreateShm{size});
}

std::string SharedMemoryManager::create_shareable_list(const std::vector<Item>& items) {
  if (items.size() > proto::kMaxListItems) {
    throw std::invalid_argument(impl_->where() + "a list of " + std::to_string(items.size()) +
                                " items exceeds the protocol's limit of " +
                                std::to_string(proto::kMaxListItems));
  }
  return impl_->call_name(proto::CreateList{items});
}

std::string SharedMemoryManager::create_value(char typecode, std::span<const std::byte> initial) {
  return impl_->call_name(proto::CreateValue{
      typecode, std::string(reinterpret_cast<const char*>(initial.data()), initial.size())});
}

std::string SharedMemoryManager::create_array(char typecode, std::size_t length,
                                              std::span<const std::byte> initial) {
  return impl_->call_name(proto::CreateArray{
      typecode, length, std::string(reinterpret_cast<const char*>(initial.data()), initial.size())});
}

std::vector<ManagedBlock> SharedMemoryManager::list() {
  proto::Reply reply = impl_->call(proto::ListBlocks{});
  if (auto* b = std::get_if<proto::BlocksReply>(&reply)) return std::move(b->blocks);
  impl_->fail(EPROTO, "unexpected reply (expected a list of blocks)");
}

void SharedMemoryManager::release(std::string_view name) {
  SharedMemory::validate_name(name);
  impl_->call_done(proto::Release{std::string(name)});
}

}  // namespace shmkit
