// The SharedMemoryManager server process: one poll() event loop over the
// listening socket, a signalfd (SIGTERM/SIGHUP), a pidfd of the starting
// process and every connection. Each connection is a small state machine
// (await auth -> ready) with its own buffers and deadline, so a slow,
// stalled or hostile client costs the others nothing. Admission: a peer of
// another uid is closed at accept (SO_PEERCRED); at most max_handshakes
// connections are in the handshake at once (the listener is not polled
// while that many are, so the rest wait in the kernel's backlog, in order);
// max_connections counts authenticated connections only. See
// include/shmkit/manager.hpp for the contract, protocol.hpp for the
// wire format.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <list>
#include <poll.h>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <vector>

#include "manager/internal.hpp"
#include "platform/platform.hpp"
#include "shmkit/detail/fault.hpp"
#include "shmkit/detail/sync_common.hpp"
#include "shmkit/tracker.hpp"

namespace shmkit::detail::mgr {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kNever = Clock::time_point::max();
constexpr std::size_t kReadChunk = 64 * 1024;

struct Conn {
  int fd = -1;
  bool authed = false;
  bool closing = false;  // flush `out`, then drop (after auth_fail)
  bool dead = false;
  proto::Nonce nonce{};
  std::vector<std::uint8_t> in;
  std::vector<std::uint8_t> out;
  std::size_t out_off = 0;
  Clock::time_point deadline = kNever;
  bool has_output() const noexcept { return out_off < out.size(); }
};

// Calls f.template operator()<T>() for the C++ type of a typecode.
template <class F>
void with_type(char typecode, F&& f) {
  switch (typecode) {
    case 'c':
      f.template operator()<char>();
      break;
    case 'b':
      f.template operator()<std::int8_t>();
      break;
    case 'B':
      f.template operator()<std::uint8_t>();
      break;
    case 'h':
      f.template operator()<std::int16_t>();
      break;
    case 'H':
      f.template operator()<std::uint16_t>();
      break;
    case 'i':
      f.template operator()<std::int32_t>();
      break;
    case 'I':
      f.template operator()<std::uint32_t>();
      break;
    case 'l':
      f.template operator()<long>();
      break;
    case 'L':
      f.template operator()<unsigned long>();
      break;
    case 'q':
      f.template operator()<std::int64_t>();
      break;
    case 'Q':
      f.template operator()<std::uint64_t>();
      break;
    case 'f':
      f.template operator()<float>();
      break;
    case 'd':
      f.template operator()<double>();
      break;
    default:
      throw std::invalid_argument("shmkit: manager: unsupported typecode '" + std::string(1, typecode) +
                                  "' (expected one of c b B h H i I l L q Q f d)");
  }
}

class Server {
 public:
  explicit Server(const ServerConfig& cfg) : cfg_(cfg) {}

  // Everything up to listen(); throws std::system_error on failure.
  void setup();
  [[noreturn]] void run();

 private:
  [[noreturn]] void finish(int code) noexcept;
  void cleanup() noexcept;
  void accept_all(Clock::time_point now);
  void on_readable(Conn& c, Clock::time_point now);
  bool flush(Conn& c) noexcept;
  void process(Conn& c, Clock::time_point now);
  void handle_auth(Conn& c, const proto::Frame& f);
  proto::Reply handle(const proto::Request& r);
  proto::Reply handle_one(const proto::Request& r);
  std::string fresh_name();
  template <class Make>
  std::string create_block(ManagedKind kind, char typecode, Make&& make);
  void queue(Conn& c, std::vector<std::uint8_t> frame, Clock::time_point now);
  void drop(Conn& c) noexcept;
  bool peer_allowed(int fd) const noexcept;
  [[noreturn]] void shutdown_from(Conn& c);
  void close_inherited_descriptors() noexcept;

  ServerConfig cfg_;
  int listen_fd_ = -1;
  int signal_fd_ = -1;
  Clock::time_point accept_paused_until_{};
  bool path_bound_ = false;
  struct stat path_stat_ {};
  uid_t uid_ = 0;                // ours: the peers we accept (and allowed_uids)
  std::size_t handshaking_ = 0;  // live connections not yet authenticated
  std::size_t authed_ = 0;       // live authenticated connections
  std::list<Conn> conns_;
  std::vector<ManagedBlock> owned_;
};

void Server::close_inherited_descriptors() noexcept {
  // Keep stdin/stdout/stderr and our two; close every other inherited
  // descriptor so the server does not hold the parent's pipes and sockets.
  std::vector<unsigned> keep{0, 1, 2};
  if (cfg_.ready_fd >= 0) keep.push_back(static_cast<unsigned>(cfg_.ready_fd));
  if (cfg_.parent_pidfd >= 0) keep.push_back(static_cast<unsigned>(cfg_.parent_pidfd));
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  unsigned from = 0;
  for (unsigned k : keep) {
    if (k > from) ::close_range(from, k - 1, 0);
    from = k + 1;
  }
  ::close_range(from, ~0U, 0);
}

void Server::setup() {
  close_inherited_descriptors();
  ::prctl(PR_SET_NAME, "shmkit-manager", 0, 0, 0);

  // Ctrl-C in a terminal reaches the whole process group; the starting
  // process decides when to stop us (as CPython's manager ignores SIGINT).
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  // An inherited SIG_IGN would keep these from ever reaching the signalfd.
  ::signal(SIGTERM, SIG_DFL);
  ::signal(SIGHUP, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) platform::throw_errno(errno, "sigprocmask");
  signal_fd_ = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) platform::throw_errno(errno, "signalfd");
  if (cfg_.parent_pidfd < 0) {
    // No pidfd (kernel < 5.3): the parent's death sends SIGTERM, and a
    // parent that died before prctl is caught by the getppid() check.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
    if (::getppid() != cfg_.parent_pid) finish(0);
  }

  uid_ = ::geteuid();
  const SocketAddress sa = socket_address(cfg_.address);
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) platform::throw_errno(errno, prefix(cfg_.address) + "socket");
  // The socket file gets mode 0600 from the start: umask is per process and
  // this process has one thread.
  const mode_t old_mask = ::umask(0077);
  const int rc = ::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&sa.addr), sa.length);
  const int bind_errno = errno;
  ::umask(old_mask);
  if (rc != 0) platform::throw_errno(bind_errno, prefix(cfg_.address) + "bind");
  if (!sa.abstract) {
    path_bound_ = true;
    ::chmod(cfg_.address.c_str(), 0600);
    ::lstat(cfg_.address.c_str(), &path_stat_);
  }
  if (::listen(listen_fd_, 512) != 0) platform::throw_errno(errno, prefix(cfg_.address) + "listen");
}

void Server::cleanup() noexcept {
  for (const ManagedBlock& b : owned_) {
    try {
      SharedMemory::unlink(b.name);
    } catch (...) {
      // Already gone (a client unlinked it): nothing to do.
    }
  }
  owned_.clear();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
  if (path_bound_) {
    // Remove the socket file only if it is still ours.
    struct stat st {};
    if (::lstat(cfg_.address.c_str(), &st) == 0 && st.st_ino == path_stat_.st_ino &&
        st.st_dev == path_stat_.st_dev) {
      ::unlink(cfg_.address.c_str());
    }
    path_bound_ = false;
    // The default address's directory (made by the starter for us): empty
    // now, unless someone else put something there.
    if (!cfg_.socket_dir.empty()) ::rmdir(cfg_.socket_dir.c_str());
  }
}

void Server::finish(int code) noexcept {
  cleanup();
  for (Conn& c : conns_) ::close(c.fd);
  // _exit: the forked image must not run the parent's atexit handlers or
  // static destructors (test frameworks, user objects).
  ::_exit(code);
}

std::string Server::fresh_name() { return platform::random_hex_name(cfg_.options.name_prefix, 4); }

// Creates a block under a fresh name (retrying on EEXIST, as CPython),
// records it as owned and returns its name. make(name) returns its size.
//
// The fresh name is reserved with the tracker before the block exists
// (tracker.hpp): the server's watcher then unlinks it if the server dies at
// any point, SIGKILL included, so a killed server leaves nothing in
// /dev/shm. (A reservation covers any file under the name; the name is
// random and the create is O_EXCL, and on EEXIST the reservation is dropped
// at once.)
template <class Make>
std::string Server::create_block(ManagedKind kind, char typecode, Make&& make) {
  for (int attempt = 0;; ++attempt) {
    std::string name = fresh_name();
    tracker::reserve_block(name);
    try {
      const std::uint64_t size = make(name);
      SHMKIT_FAULT_POINT(manager_created);
      owned_.push_back(ManagedBlock{name, kind, typecode, size});
      SHMKIT_FAULT_POINT(manager_recorded);
      return name;
    } catch (const std::system_error& e) {
      tracker::unregister_block(name);
      if (e.code().value() != EEXIST || attempt >= 64) throw;
    } catch (...) {
      tracker::unregister_block(name);
      throw;
    }
  }
}

proto::Reply Server::handle_one(const proto::Request& request) {
  using namespace proto;
  if (const auto* r = std::get_if<CreateShm>(&request)) {
    return NameReply{create_block(ManagedKind::shared_memory, 0, [&](const std::string& name) {
      return static_cast<std::uint64_t>(SharedMemory::create(name, r->size).size());
    })};
  }
  if (const auto* r = std::get_if<CreateList>(&request)) {
    return NameReply{create_block(ManagedKind::shareable_list, 0, [&](const std::string& name) {
      return static_cast<std::uint64_t>(ShareableList::create(name, r->items).shm().size());
    })};
  }
  if (const auto* r = std::get_if<CreateValue>(&request)) {
    std::string result;
    with_type(r->typecode, [&]<class T>() {
      if (!r->initial.empty() && r->initial.size() != sizeof(T)) {
        throw std::invalid_argument("shmkit: manager: a value of typecode '" + std::string(1, r->typecode) +
                                    "' takes " + std::to_string(sizeof(T)) + " initial bytes, got " +
                                    std::to_string(r->initial.size()));
      }
      T initial{};
      if (!r->initial.empty()) std::memcpy(&initial, r->initial.data(), sizeof(T));
      result = create_block(ManagedKind::value, r->typecode, [&](const std::string& name) {
        return static_cast<std::uint64_t>(Value<T>::create(name, initial).shm().size());
      });
    });
    return NameReply{std::move(result)};
  }
  if (const auto* r = std::get_if<CreateArray>(&request)) {
    std::string result;
    with_type(r->typecode, [&]<class T>() {
      if (r->length > (std::uint64_t{1} << 40) / sizeof(T)) {  // 1 TiB: also no overflow below
        throw std::invalid_argument("shmkit: manager: array length " + std::to_string(r->length) +
                                    " is too large");
      }
      if (!r->initial.empty() && r->initial.size() != r->length * sizeof(T)) {
        throw std::invalid_argument("shmkit: manager: an array of " + std::to_string(r->length) +
                                    " elements of typecode '" + std::string(1, r->typecode) + "' takes " +
                                    std::to_string(r->length * sizeof(T)) + " initial bytes, got " +
                                    std::to_string(r->initial.size()));
      }
      std::vector<T> initial;
      if (!r->initial.empty()) {
        initial.resize(r->length);
        std::memcpy(initial.data(), r->initial.data(), r->initial.size());
      }
      result = create_block(ManagedKind::array, r->typecode, [&](const std::string& name) {
        auto a = initial.empty() ? Array<T>::create(name, static_cast<std::size_t>(r->length))
                                 : Array<T>::create(name, std::span<const T>(initial.data(), initial.size()));
        return static_cast<std::uint64_t>(a.shm().size());
      });
    });
    return NameReply{std::move(result)};
  }
  if (std::holds_alternative<ListBlocks>(request)) {
    std::size_t bytes = 5 + 4;
    for (const ManagedBlock& b : owned_) bytes += 13 + b.name.size();
    if (bytes > kMaxFrame) {
      return ErrorReply{ErrorCategory::system_error, EMSGSIZE,
                        "shmkit: manager: " + std::to_string(owned_.size()) + " blocks do not fit one reply"};
    }
    return BlocksReply{owned_};
  }
  if (const auto* r = std::get_if<Release>(&request)) {
    auto it =
        std::find_if(owned_.begin(), owned_.end(), [&](const ManagedBlock& b) { return b.name == r->name; });
    if (it == owned_.end()) {
      throw std::invalid_argument("shmkit: manager: owns no block " + platform::quoted(r->name));
    }
    try {
      SharedMemory::unlink(r->name);
    } catch (const std::system_error& e) {
      if (e.code().value() != ENOENT) throw;
    }
    tracker::unregister_block(r->name);
    owned_.erase(it);
    return DoneReply{};
  }
  return DoneReply{};  // Shutdown is handled by the caller
}

proto::Reply Server::handle(const proto::Request& request) {
  using proto::ErrorCategory;
  using proto::ErrorReply;
  try {
    return handle_one(request);
  } catch (const std::invalid_argument& e) {
    return ErrorReply{ErrorCategory::invalid_argument, EINVAL, e.what()};
  } catch (const std::out_of_range& e) {
    return ErrorReply{ErrorCategory::invalid_argument, ERANGE, e.what()};
  } catch (const std::system_error& e) {
    return ErrorReply{ErrorCategory::system_error, e.code().value(), e.what()};
  } catch (const std::bad_alloc&) {
    return ErrorReply{ErrorCategory::system_error, ENOMEM, "shmkit: manager: out of memory"};
  } catch (const std::exception& e) {
    return ErrorReply{ErrorCategory::system_error, EIO, e.what()};
  }
}

void Server::drop(Conn& c) noexcept {
  if (c.dead) return;
  ::close(c.fd);
  c.dead = true;
  (c.authed ? authed_ : handshaking_) -= 1;
}

// The peer's effective uid when it connected: ours, or one the options allow.
bool Server::peer_allowed(int fd) const noexcept {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) {
    return false;
  }
  if (cred.uid == uid_) return true;
  const auto& allowed = cfg_.options.allowed_uids;
  return std::find(allowed.begin(), allowed.end(), cred.uid) != allowed.end();
}

void Server::queue(Conn& c, std::vector<std::uint8_t> frame, Clock::time_point now) {
  if (!c.has_output()) {
    c.out = std::move(frame);
    c.out_off = 0;
  } else {
    c.out.insert(c.out.end(), frame.begin(), frame.end());
  }
  // The reply must be taken within the I/O timeout (the handshake keeps its
  // own, earlier deadline).
  if (c.authed) c.deadline = detail::deadline_after(now, cfg_.options.server_io_timeout);
}

// Sends what it can without blocking; true when nothing is left to send.
bool Server::flush(Conn& c) noexcept {
  while (!c.dead && c.has_output()) {
    const ssize_t n =
        ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.out_off += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return false;  // poll for POLLOUT
    } else {
      drop(c);
      return false;
    }
  }
  if (c.dead) return false;
  c.out.clear();
  c.out_off = 0;
  if (c.closing) {
    drop(c);
    return false;
  }
  if (c.authed) c.deadline = kNever;
  return true;
}

void Server::on_readable(Conn& c, Clock::time_point now) {
  std::uint8_t chunk[kReadChunk];
  const ssize_t n = ::recv(c.fd, chunk, sizeof chunk, MSG_DONTWAIT);
  if (n == 0) {
    drop(c);
    return;
  }
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) drop(c);
    return;
  }
  c.in.insert(c.in.end(), chunk, chunk + n);
  process(c, now);
}

void Server::process(Conn& c, Clock::time_point now) {
  // One frame at a time: the next is looked at only once the reply to this
  // one has been sent, so a client that does not read cannot make us buffer
  // (and we stop reading from it: poll asks for POLLOUT only). Consumed
  // frames are removed from `in` once, at the end.
  std::size_t pos = 0;
  for (;;) {
    if (c.dead || c.closing) return;
    if (c.has_output() && !flush(c)) break;
    const std::size_t cap = c.authed ? proto::kMaxFrame : proto::kMaxHandshakeFrame;
    const std::span<const std::uint8_t> rest(c.in.data() + pos, c.in.size() - pos);
    const proto::FrameHead head = proto::peek_frame(rest, cap);
    if (head.status == proto::FrameStatus::too_large || head.status == proto::FrameStatus::empty) {
      drop(c);
      return;
    }
    if (head.status == proto::FrameStatus::incomplete) break;
    const proto::Frame frame = proto::frame_at(rest, head.total);
    if (!c.authed) {
      handle_auth(c, frame);
      if (c.dead) return;
      if (c.closing) {
        flush(c);  // auth_fail, then drop (now or once it is sent)
        return;
      }
    } else {
      std::optional<proto::Request> request = proto::decode_request(frame);
      if (!request) {
        drop(c);  // malformed: the protocol is broken, nothing to answer
        return;
      }
      if (std::holds_alternative<proto::Shutdown>(*request)) shutdown_from(c);
      queue(c, proto::encode(handle(*request)), now);
    }
    pos += head.total;
  }
  c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(pos));
  // A frame has started: it must be complete within the I/O timeout. (The
  // handshake deadline set at accept covers unauthenticated peers.)
  if (c.authed && !c.has_output()) {
    if (c.in.empty()) {
      c.deadline = kNever;
    } else if (c.deadline == kNever) {
      c.deadline = detail::deadline_after(now, cfg_.options.server_io_timeout);
    }
  }
}

void Server::handle_auth(Conn& c, const proto::Frame& f) {
  const std::optional<proto::Auth> auth = proto::decode_auth(f);
  if (!auth || auth->magic != proto::kMagic) {
    drop(c);
    return;
  }
  c.closing = true;  // unless the key is right, below
  if (auth->version != proto::kVersion) {
    c.out = proto::encode(proto::AuthFail{static_cast<std::uint32_t>(proto::AuthFailReason::bad_version)});
    return;
  }
  const proto::Mac expected = hmac(cfg_.authkey, proto::mac_input(false, c.nonce, auth->nonce));
  if (!mac_equal(expected, auth->mac)) {
    c.out = proto::encode(proto::AuthFail{static_cast<std::uint32_t>(proto::AuthFailReason::bad_key)});
    return;
  }
  if (authed_ >= cfg_.options.max_connections) {
    // Others authenticated first: the cap is reached. Nothing to say that
    // the peer could act on; it sees the close.
    drop(c);
    return;
  }
  c.closing = false;
  c.authed = true;
  handshaking_ -= 1;
  authed_ += 1;
  c.deadline = kNever;
  c.out = proto::encode(proto::AuthOk{hmac(cfg_.authkey, proto::mac_input(true, c.nonce, auth->nonce))});
}

void Server::shutdown_from(Conn& c) {
  cleanup();  // unlink first: the reply means "done"
  std::vector<std::uint8_t> done = proto::encode(proto::Reply{proto::DoneReply{}});
  const auto deadline = detail::deadline_after(cfg_.options.server_io_timeout);
  std::size_t off = 0;
  while (off < done.size() && Clock::now() < deadline) {
    const ssize_t n = ::send(c.fd, done.data() + off, done.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd p{c.fd, POLLOUT, 0};
      ::poll(&p, 1, 10);
    } else {
      break;
    }
  }
  finish(0);
}

void Server::accept_all(Clock::time_point now) {
  // Only while a handshake slot is free: the rest stay in the backlog.
  while (handshaking_ < cfg_.options.max_handshakes) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      // Out of descriptors: the pending connection stays readable, so stop
      // polling the listener for a moment instead of spinning.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        accept_paused_until_ = now + std::chrono::milliseconds(100);
      }
      return;  // EAGAIN: all taken
    }
    // Another user (not allowed), or the cap of authenticated connections
    // reached: closed before a byte is sent, without taking a slot.
    if (!peer_allowed(fd) || authed_ >= cfg_.options.max_connections) {
      ::close(fd);
      continue;
    }
    Conn& c = conns_.emplace_back();
    c.fd = fd;
    handshaking_ += 1;
    // The whole handshake.
    c.deadline =
        detail::deadline_after(now, std::min(cfg_.options.handshake_timeout, cfg_.options.server_io_timeout));
    try {
      platform::random_bytes(c.nonce.data(), c.nonce.size());
      queue(c, proto::encode(proto::Hello{proto::kMagic, proto::kVersion, c.nonce}), now);
      flush(c);
    } catch (...) {
      drop(c);
    }
  }
}

void Server::run() {
  std::vector<pollfd> fds;
  std::vector<Conn*> order;
  for (;;) {
    fds.clear();
    order.clear();
    const bool accepting = Clock::now() >= accept_paused_until_ && handshaking_ < cfg_.options.max_handshakes;
    fds.push_back({accepting ? listen_fd_ : -1, POLLIN, 0});
    fds.push_back({signal_fd_, POLLIN, 0});
    fds.push_back({cfg_.parent_pidfd, POLLIN, 0});  // ignored by poll when -1
    Clock::time_point next = kNever;
    if (Clock::now() < accept_paused_until_) next = accept_paused_until_;
    for (Conn& c : conns_) {
      short events = c.has_output() ? POLLOUT : POLLIN;
      fds.push_back({c.fd, events, 0});
      order.push_back(&c);
      next = std::min(next, c.deadline);
    }
    int timeout_ms = -1;
    if (cfg_.parent_pidfd < 0) timeout_ms = 1000;  // getppid() check below
    if (next != kNever) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count();
      const int l = static_cast<int>(std::clamp<long long>(left, 0, 60'000));
      timeout_ms = timeout_ms < 0 ? l : std::min(timeout_ms, l);
    }
    const int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) finish(1);
    const Clock::time_point now = Clock::now();

    if (fds[2].revents != 0) finish(0);  // the starting process is gone
    if (cfg_.parent_pidfd < 0 && ::getppid() != cfg_.parent_pid) finish(0);
    if (fds[1].revents != 0) finish(0);  // SIGTERM / SIGHUP
    if (n > 0) {
      for (std::size_t i = 0; i < order.size(); ++i) {
        Conn& c = *order[i];
        const short re = fds[3 + i].revents;
        if (re == 0 || c.dead) continue;
        try {
          if (c.has_output() && (re & (POLLOUT | POLLERR | POLLHUP))) {
            if (flush(c)) process(c, now);  // frames that waited for the reply
          } else if (re & (POLLIN | POLLERR | POLLHUP)) {
            on_readable(c, now);
          }
        } catch (...) {
          drop(c);  // bad_alloc on a buffer: this client only
        }
      }
      if (fds[0].revents & POLLIN) accept_all(now);
    }
    for (Conn& c : conns_) {
      if (!c.dead && c.deadline <= now) drop(c);  // stalled
    }
    conns_.remove_if([](const Conn& c) { return c.dead; });
  }
}

}  // namespace

void run_server(const ServerConfig& config) noexcept {
  Server server(config);
  try {
    server.setup();
  } catch (const std::exception& e) {
    int err = EIO;
    if (const auto* se = dynamic_cast<const std::system_error*>(&e)) err = se->code().value();
    if (dynamic_cast<const std::invalid_argument*>(&e) != nullptr) err = EINVAL;
    std::int32_t code = err;
    (void)!::write(config.ready_fd, &code, sizeof code);
    (void)!::write(config.ready_fd, e.what(), std::strlen(e.what()));
    ::_exit(1);
  } catch (...) {
    ::_exit(1);
  }
  const std::int32_t ok = 0;
  (void)!::write(config.ready_fd, &ok, sizeof ok);
  ::close(config.ready_fd);
  server.run();
}

}  // namespace shmkit::detail::mgr
