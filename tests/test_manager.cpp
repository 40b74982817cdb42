// SharedMemoryManager with real processes: lifecycle, remote clients with
// the right and a wrong key, an impostor server, hostile raw-socket clients
// (garbage, oversized, truncated, stalled), 50 concurrent clients, SIGKILL of
// the starting process and of the server, a stopped server.
//
// Every test gives the manager a name_prefix under unique_name(), so the
// leak check of test_main.cpp sees any block a manager leaves behind; the
// tests also check /dev/shm themselves after each shutdown or kill.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <grp.h>
#include <poll.h>
#include <span>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

#include "manager/internal.hpp"  // the wire format, for raw clients
#include "shmkit/manager.hpp"
#include "test_support.hpp"

namespace shmkit::test {
namespace {

// ---------------------------------------------------------------- exec'd client
// When this binary is exec'd with SHMKIT_MGR_CLIENT_ADDRESS set, it is not a
// test run but a client of that manager: it connects with the key in
// SHMKIT_MGR_CLIENT_KEY (hex), creates a block, lists, prints the block's
// name (or "EACCES" if refused) and exits before GoogleTest starts.
std::string from_hex(const char* h) {
  std::string out;
  for (std::size_t i = 0; h[i] != '\0' && h[i + 1] != '\0'; i += 2) {
    out += static_cast<char>(std::stoi(std::string(h + i, 2), nullptr, 16));
  }
  return out;
}

int exec_client_if_asked() {
  const char* address = std::getenv("SHMKIT_MGR_CLIENT_ADDRESS");
  const char* key = std::getenv("SHMKIT_MGR_CLIENT_KEY");
  if (address == nullptr || key == nullptr) return 0;
  int rc = 1;
  try {
    auto client = SharedMemoryManager::connect(address, from_hex(key));
    const std::string name = client.create_shared_memory(128);
    bool listed = false;
    for (const auto& b : client.list()) listed |= b.name == name;
    std::printf("%s\n", name.c_str());
    rc = listed ? 0 : 2;
  } catch (const std::system_error& e) {
    if (e.code().value() == EACCES) {
      std::printf("EACCES\n");
      rc = 0;
    } else {
      std::fprintf(stderr, "exec'd client: %s\n", e.what());
      rc = 3;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exec'd client: %s\n", e.what());
    rc = 4;
  }
  std::fflush(nullptr);
  ::_exit(rc);
}
[[maybe_unused]] const int kExecClient = exec_client_if_asked();

namespace proto = detail::proto;
using Clock = std::chrono::steady_clock;
using Options = SharedMemoryManager::Options;

const std::string kKey = std::string("test-key\0with-nul", 17);

Options test_options() {
  Options o;
  o.name_prefix = unique_name("mgr") + "_";
  o.timeout = 10s;
  // Generous: 50 clients of an ASan build on a loaded machine must finish
  // their handshakes; the tests that measure drops set their own.
  o.server_io_timeout = 3s;
  return o;
}

std::string abstract_address() { return "@" + unique_name("sock"); }

// In a forked child of this (root) test: become uid/gid 65534, as a second
// local user would be.
constexpr uid_t kNobody = 65534;
bool become_nobody() {
  return ::setgroups(0, nullptr) == 0 && ::setresgid(kNobody, kNobody, kNobody) == 0 &&
         ::setresuid(kNobody, kNobody, kNobody) == 0;
}
bool is_root() { return ::geteuid() == 0; }

std::string dir_of(const std::string& path) { return path.substr(0, path.rfind('/')); }

int pidfd_of(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// True once the process behind `pidfd` has exited (within `timeout`).
bool wait_exit(int pidfd, std::chrono::milliseconds timeout) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

long ms_since(Clock::time_point t0) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

template <class F>
int errno_of(F&& fn) {
  try {
    fn();
  } catch (const std::system_error& e) {
    return e.code().value();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something else: " << e.what();
    return -2;
  }
  ADD_FAILURE() << "did not throw";
  return -1;
}

// ---------------------------------------------------------------- raw clients

int raw_connect(const std::string& address) {
  const auto sa = detail::mgr::socket_address(address);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa.addr), sa.length) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_bytes(int fd, const void* p, std::size_t n) { (void)::send(fd, p, n, MSG_NOSIGNAL); }
void send_bytes(int fd, const std::vector<std::uint8_t>& v) { send_bytes(fd, v.data(), v.size()); }

// Reads (and discards) until the server closes the connection; false if it
// is still open after `timeout`.
bool dropped_within(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return true;
  }
}

// Reads one frame with a deadline.
std::vector<std::uint8_t> read_frame(int fd, std::chrono::milliseconds timeout) {
  std::vector<std::uint8_t> buf;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto head = proto::peek_frame(buf, proto::kMaxFrame);
    if (head.status == proto::FrameStatus::ready) return buf;
    if (head.status != proto::FrameStatus::incomplete) return {};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
    std::uint8_t b[4096];
    const std::size_t want = head.total != 0 ? head.total - buf.size() : 4 - buf.size();
    const ssize_t n = ::recv(fd, b, std::min(want, sizeof b), 0);
    if (n <= 0) return {};
    buf.insert(buf.end(), b, b + n);
  }
}

// A raw connection that has completed the handshake with `key`.
int raw_authenticated(const std::string& address, const std::string& key) {
  const int fd = raw_connect(address);
  if (fd < 0) return -1;
  auto hello_frame = read_frame(fd, 2s);
  auto hello = proto::decode_hello(proto::frame_at(hello_frame, hello_frame.size()));
  if (!hello) {
    ::close(fd);
    return -1;
  }
  proto::Auth auth;
  auth.nonce.fill(7);
  auth.mac = detail::mgr::hmac(key, proto::mac_input(false, hello->nonce, auth.nonce));
  send_bytes(fd, proto::encode(auth));
  auto reply = read_frame(fd, 2s);
  if (reply.empty() || !proto::decode_auth_ok(proto::frame_at(reply, reply.size()))) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::vector<std::uint8_t> le32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v >> 16),
          static_cast<std::uint8_t>(v >> 24)};
}

// ---------------------------------------------------------------- lifecycle

TEST(Manager, LifecycleCreatesEachKindOthersAttachShutdownUnlinksAll) {
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  EXPECT_FALSE(mgr.started());
  mgr.start();
  ASSERT_TRUE(mgr.started());
  const pid_t server = mgr.server_pid();
  ASSERT_GT(server, 0);
  const int server_fd = pidfd_of(server);

  SharedMemory shm = mgr.shared_memory(100);
  EXPECT_GE(shm.size(), 100u);
  std::memcpy(shm.data(), "hello", 5);
  using namespace shmkit::literals;
  ShareableList sl = mgr.shareable_list(
      {Item{std::int64_t{42}}, Item{std::string("str")}, Item{"b\0y"_b}, Item{3.5}, Item{true}, None});
  Value<std::int32_t> v = mgr.value<std::int32_t>(7);
  const std::vector<double> doubles{1.5, 2.5, 3.5};
  Array<double> a = mgr.array<double>(std::span<const double>(doubles));
  Array<std::uint16_t> zeros = mgr.array<std::uint16_t>(4);
  const long l = -123;
  const std::string name_l = mgr.create_value('l', std::as_bytes(std::span<const long>(&l, 1)));
  const std::string name_c = mgr.create_array('c', 5, std::as_bytes(std::span<const char>("abcde", 5)));

  const std::vector<ManagedBlock> blocks = mgr.list();
  ASSERT_EQ(blocks.size(), 7u);
  const std::string& prefix = mgr.options().name_prefix;
  for (const ManagedBlock& b : blocks) {
    EXPECT_TRUE(b.name.starts_with(prefix)) << b.name;
    EXPECT_EQ(b.name.size(), prefix.size() + 8);
    EXPECT_TRUE(block_exists(b.name)) << b.name;
    EXPECT_GT(b.size, 0u);
  }
  EXPECT_EQ(blocks[0], (ManagedBlock{shm.name(), ManagedKind::shared_memory, 0, shm.size()}));
  EXPECT_EQ(blocks[1].kind, ManagedKind::shareable_list);
  EXPECT_EQ(blocks[1].name, sl.shm().name());
  EXPECT_EQ(blocks[2].kind, ManagedKind::value);
  EXPECT_EQ(blocks[2].typecode, 'i');
  EXPECT_EQ(blocks[3].kind, ManagedKind::array);
  EXPECT_EQ(blocks[3].typecode, 'd');
  EXPECT_EQ(blocks[4].typecode, 'H');
  EXPECT_EQ(blocks[5], (ManagedBlock{name_l, ManagedKind::value, 'l', blocks[5].size}));
  EXPECT_EQ(blocks[6].typecode, 'c');
  EXPECT_STREQ(managed_kind_name(blocks[1].kind), "ShareableList");

  // Another process attaches every block by name and sees the contents.
  const std::string shm_name = shm.name(), sl_name = sl.shm().name(), v_name = v.name(), a_name = a.name(),
                    z_name = zeros.name();
  ExitStatus st = run_child([&] {
    SharedMemory s = SharedMemory::attach(shm_name);
    if (std::memcmp(s.data(), "hello", 5) != 0) return 1;
    ShareableList list = ShareableList::attach(sl_name);
    if (list.size() != 6 || list.get(0) != Item{std::int64_t{42}} ||
        list.get(1) != Item{std::string("str")} || list.get(2) != Item{"b\0y"_b} ||
        list.get(3) != Item{3.5} || list.get(4) != Item{true} || list.get(5) != Item{None}) {
      return 2;
    }
    auto value = Value<std::int32_t>::attach(v_name);
    if (value.value() != 7) return 3;
    value.set_value(8);
    if (Array<double>::attach(a_name).to_vector() != std::vector<double>{1.5, 2.5, 3.5}) return 4;
    if (Array<std::uint16_t>::attach(z_name).to_vector() != std::vector<std::uint16_t>(4, 0)) return 5;
    if (Value<long>::attach(name_l).value() != -123) return 6;
    if (Array<char>::attach(name_c).raw() != "abcde") return 7;
    return 0;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
  EXPECT_EQ(v.value(), 8);

  mgr.shutdown();
  EXPECT_FALSE(mgr.started());
  for (const ManagedBlock& b : blocks) EXPECT_FALSE(block_exists(b.name)) << b.name;
  EXPECT_TRUE(list_blocks(prefix).empty());
  EXPECT_TRUE(wait_exit(server_fd, 0ms)) << "the server process is still there";
  ::close(server_fd);
  EXPECT_NO_THROW(mgr.shutdown());  // idempotent
  // Our mappings outlive the names, as with CPython.
  EXPECT_EQ(std::memcmp(shm.data(), "hello", 5), 0);
  EXPECT_THROW(mgr.start(), std::logic_error);
}

TEST(Manager, DefaultsAreAPrivateSocketAndARandomKeyAndTheDestructorShutsDown) {
  std::string name, address;
  {
    SharedMemoryManager mgr;
    EXPECT_EQ(mgr.address(), "");  // made by start()
    EXPECT_EQ(mgr.authkey().size(), 32u);
    SharedMemoryManager other;
    EXPECT_NE(mgr.authkey(), other.authkey());
    EXPECT_EQ(errno_of([&] { other.list(); }), ENOTCONN);  // not started: no address
    mgr.start();
    other.start();
    address = mgr.address();
    EXPECT_NE(address, other.address());
    name = mgr.create_shared_memory(10);
    EXPECT_TRUE(name.starts_with("psm_")) << name;
    EXPECT_TRUE(block_exists(name));
  }  // ~SharedMemoryManager: CPython's `with SharedMemoryManager() as smm:`
  EXPECT_FALSE(block_exists(name));
  EXPECT_NE(::access(address.c_str(), F_OK), 0) << "socket left behind";
  EXPECT_NE(::access(dir_of(address).c_str(), F_OK), 0) << "socket directory left behind";
}

// A regression: the default address was an abstract socket ("@shmkit-...",
// listed in /proc/net/unix) that every local user could connect to. It is
// now a socket in a fresh 0700 directory, as CPython's is.
TEST(Manager, TheDefaultAddressIsInA0700DirectoryAnotherUserCannotConnectTo) {
  Options o = test_options();
  SharedMemoryManager mgr(o);
  mgr.start();
  const std::string address = mgr.address();
  ASSERT_FALSE(address.starts_with("@")) << address;
  EXPECT_TRUE(address.ends_with("/listener")) << address;
  const std::string dir = dir_of(address);
  EXPECT_NE(dir.find("/shmkit-"), std::string::npos) << dir;
  struct stat st {};
  ASSERT_EQ(::lstat(dir.c_str(), &st), 0) << dir;
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  ASSERT_EQ(::lstat(address.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  // Our own user connects.
  ExitStatus mine = run_child([&] {
    auto client = SharedMemoryManager::connect(address, mgr.authkey(), test_options());
    return client.create_shared_memory(8).empty() ? 1 : 0;
  });
  EXPECT_TRUE(mine.ok()) << mine.describe();
  if (is_root()) {
    // Another user cannot reach the socket at all, key or not.
    ExitStatus other = run_child([&] {
      if (!become_nobody()) return 10;
      if (raw_connect(address) >= 0) return 11;
      auto client = SharedMemoryManager::connect(address, mgr.authkey(), test_options());
      const int err = errno_of([&] { client.list(); });
      return err == EACCES ? 0 : 12;
    });
    EXPECT_TRUE(other.ok()) << other.describe();
  }
  EXPECT_EQ(mgr.list().size(), 1u);
  mgr.shutdown();
  EXPECT_NE(::access(dir.c_str(), F_OK), 0) << "socket directory left behind";
  EXPECT_TRUE(list_blocks(o.name_prefix).empty());
}

// The server cannot remove its socket when it is SIGKILLed: the starting
// handle does, once it has reaped it. And when the starter is SIGKILLed,
// the server removes it as it exits.
TEST(Manager, TheDefaultSocketDirectoryGoesWhenTheServerOrTheStarterIsKilled) {
  {
    SharedMemoryManager mgr(test_options());
    mgr.start();
    const std::string dir = dir_of(mgr.address());
    ASSERT_EQ(::kill(mgr.server_pid(), SIGKILL), 0);
    EXPECT_THROW(mgr.shutdown(), std::system_error);
    EXPECT_NE(::access(dir.c_str(), F_OK), 0) << "socket directory left behind";
  }
  const Options o = test_options();
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  const pid_t starter = fork_child([&]() -> int {
    ::close(report[0]);
    SharedMemoryManager mgr(o);
    mgr.start();
    char buf[256] = {};
    const pid_t server = mgr.server_pid();
    std::memcpy(buf, &server, sizeof server);
    std::snprintf(buf + sizeof server, sizeof buf - sizeof server, "%s", mgr.address().c_str());
    (void)!::write(report[1], buf, sizeof buf);
    for (;;) ::pause();  // until SIGKILL
  });
  ::close(report[1]);
  char buf[256] = {};
  const ssize_t got = ::read(report[0], buf, sizeof buf);
  ::close(report[0]);
  pid_t server = -1;
  std::string dir;
  if (got == static_cast<ssize_t>(sizeof buf)) {
    std::memcpy(&server, buf, sizeof server);
    dir = dir_of(buf + sizeof server);
  }
  const int server_fd = server > 0 ? pidfd_of(server) : -1;
  const bool was_there = !dir.empty() && ::access(dir.c_str(), F_OK) == 0;
  // The kill first: a failed check below must not leave the starter behind.
  ASSERT_EQ(::kill(starter, SIGKILL), 0);
  EXPECT_EQ(wait_child(starter, 5s).signal, SIGKILL);
  ASSERT_GE(server_fd, 0);
  ASSERT_TRUE(was_there) << "no socket directory: " << dir;
  EXPECT_TRUE(wait_exit(server_fd, 5s)) << "the server outlived its starting process";
  ::close(server_fd);
  EXPECT_NE(::access(dir.c_str(), F_OK), 0) << "socket directory left behind";
}

TEST(Manager, FilesystemSocketIsMode0600AndRemovedAtShutdown) {
  const std::string path = "/tmp/" + unique_name("sock");
  SharedMemoryManager mgr(path, kKey, test_options());
  const mode_t old = ::umask(0);  // the mode must not depend on the umask
  mgr.start();
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  ExitStatus child = run_child([&] {
    auto client = SharedMemoryManager::connect(path, kKey, test_options());
    return client.create_shared_memory(64).empty() ? 1 : 0;
  });
  EXPECT_TRUE(child.ok()) << child.describe();
  EXPECT_EQ(mgr.list().size(), 1u);

  // A second manager on the same address: EADDRINUSE, naming it.
  SharedMemoryManager twin(path, kKey, test_options());
  try {
    twin.start();
    ADD_FAILURE() << "started twice on one address";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EADDRINUSE);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_FALSE(twin.started());

  mgr.shutdown();
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << "socket file left behind";
  EXPECT_TRUE(list_blocks(mgr.options().name_prefix).empty());
}

TEST(Manager, BadArgumentsAreRefusedBeforeAnythingStarts) {
  EXPECT_THROW(SharedMemoryManager("", kKey), std::invalid_argument);
  EXPECT_THROW(SharedMemoryManager("@" + std::string(200, 'x'), kKey), std::invalid_argument);
  EXPECT_THROW(SharedMemoryManager("@ok", ""), std::invalid_argument);
  Options o;
  o.name_prefix = "a/b";
  EXPECT_THROW(SharedMemoryManager("@ok", kKey, o), std::invalid_argument);
  o = Options{};
  o.max_handshakes = 0;
  EXPECT_THROW(SharedMemoryManager("@ok", kKey, o), std::invalid_argument);
  EXPECT_THROW(SharedMemoryManager{o}, std::invalid_argument);
  o = Options{};
  o.handshake_timeout = 0ms;
  EXPECT_THROW(SharedMemoryManager("@ok", kKey, o), std::invalid_argument);
  auto client = SharedMemoryManager::connect("@ok", kKey);
  EXPECT_THROW(client.start(), std::logic_error);
}

// ---------------------------------------------------------------- clients

TEST(Manager, RemoteClientWithTheRightKeyFromAForkedProcess) {
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  mgr.start();
  ExitStatus st = run_child([&] {
    auto client = SharedMemoryManager::connect(mgr.address(), kKey, test_options());
    const std::string a = client.create_shared_memory(64);
    auto v = client.value<double>(2.5);
    const auto blocks = client.list();
    if (blocks.size() != 2 || blocks[0].name != a || blocks[1].name != v.name()) return 1;
    if (v.value() != 2.5) return 2;
    return 0;
  });  // the connected handle's destructor must not stop the server
  EXPECT_TRUE(st.ok()) << st.describe();
  EXPECT_EQ(mgr.list().size(), 2u);
  mgr.shutdown();
  EXPECT_TRUE(list_blocks(mgr.options().name_prefix).empty());
}

TEST(Manager, WrongKeyIsRefusedWithEaccesAndTheServerIsUnaffected) {
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  mgr.start();
  mgr.create_shared_memory(16);
  auto intruder = SharedMemoryManager::connect(mgr.address(), "not the key", test_options());
  EXPECT_EQ(errno_of([&] { intruder.list(); }), EACCES);
  // The same key but one byte shorter (the NUL inside the key counts).
  auto cut = SharedMemoryManager::connect(mgr.address(), kKey.substr(0, 8), test_options());
  EXPECT_EQ(errno_of([&] { cut.create_shared_memory(1); }), EACCES);

  ExitStatus st = run_child([&] {
    auto client = SharedMemoryManager::connect(mgr.address(), "wrong", test_options());
    try {
      client.list();
    } catch (const std::system_error& e) {
      return e.code().value() == EACCES ? 0 : 1;
    }
    return 2;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
  EXPECT_EQ(mgr.list().size(), 1u);  // nothing created by the intruders
  mgr.shutdown();
}

TEST(Manager, AnImpostorServerThatDoesNotKnowTheKeyIsRejectedWithEperm) {
  const std::string address = abstract_address();
  const auto sa = detail::mgr::socket_address(address);
  const int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<const sockaddr*>(&sa.addr), sa.length), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  std::thread impostor([lfd] {
    const int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) return;
    proto::Hello hello;
    hello.nonce.fill(1);
    send_bytes(fd, proto::encode(hello));
    (void)read_frame(fd, 2s);                        // the client's proof
    send_bytes(fd, proto::encode(proto::AuthOk{}));  // a MAC of zeros
    (void)dropped_within(fd, 2s);
    ::close(fd);
  });
  auto client = SharedMemoryManager::connect(address, kKey, test_options());
  EXPECT_EQ(errno_of([&] { client.list(); }), EPERM);
  impostor.join();
  ::close(lfd);
}

TEST(Manager, RefusedRequestsAreInvalidArgumentAndChangeNothing) {
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  mgr.start();
  EXPECT_THROW(mgr.create_shared_memory(0), std::invalid_argument);
  EXPECT_THROW(mgr.create_value('x'), std::invalid_argument);
  EXPECT_THROW(mgr.create_value('?'), std::invalid_argument);
  const char three[3] = {};
  EXPECT_THROW(mgr.create_value('i', std::as_bytes(std::span<const char>(three))), std::invalid_argument);
  EXPECT_THROW(mgr.create_array('d', 2, std::as_bytes(std::span<const char>(three))), std::invalid_argument);
  EXPECT_THROW(mgr.create_shareable_list({Item{std::string("\xff\xfe")}}), std::invalid_argument);
  EXPECT_THROW(mgr.release("no_such_block"), std::invalid_argument);
  EXPECT_THROW(mgr.release("a/b"), std::invalid_argument);
  EXPECT_THROW(mgr.create_shareable_list(std::vector<Item>(proto::kMaxListItems + 1)), std::invalid_argument);
  // An OS failure in the server comes back as std::system_error with its errno.
  try {
    mgr.create_shared_memory(std::size_t{1} << 50);  // 1 PiB: more than /dev/shm holds
    ADD_FAILURE() << "a 1 PiB block was created";
  } catch (const std::system_error& e) {
    EXPECT_TRUE(e.code().value() == ENOSPC || e.code().value() == EFBIG) << e.what();
    EXPECT_NE(std::string(e.what()).find(mgr.address()), std::string::npos) << e.what();
  }
  EXPECT_TRUE(mgr.list().empty());

  const std::string kept = mgr.create_shared_memory(8);
  const std::string gone = mgr.create_shared_memory(8);
  mgr.release(gone);
  EXPECT_FALSE(block_exists(gone));
  const auto blocks = mgr.list();
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].name, kept);
  mgr.shutdown();
  EXPECT_FALSE(block_exists(kept));
}

TEST(Manager, OneHandleServesSeveralThreads) {
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  mgr.start();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        try {
          const std::string name = mgr.create_shared_memory(16);
          bool found = false;
          for (const auto& b : mgr.list()) found |= b.name == name;
          if (!found) ++failures;
        } catch (const std::exception&) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mgr.list().size(), 80u);
  mgr.shutdown();
  EXPECT_TRUE(list_blocks(mgr.options().name_prefix).empty());
}

TEST(Manager, AConnectedHandleMayShutTheServerDown) {
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  mgr.start();
  const std::string name = mgr.create_shared_memory(8);
  const int server_fd = pidfd_of(mgr.server_pid());
  ExitStatus st = run_child([&] {
    auto client = SharedMemoryManager::connect(mgr.address(), kKey, test_options());
    client.shutdown();
    return 0;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
  EXPECT_TRUE(wait_exit(server_fd, 5s));
  ::close(server_fd);
  EXPECT_FALSE(block_exists(name));
  EXPECT_NO_THROW(mgr.shutdown());  // the server exited cleanly
  EXPECT_FALSE(mgr.started());
}

TEST(Manager, AForkedCopyOfTheStartingHandleNeverStopsTheServer) {
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  mgr.start();
  mgr.create_shared_memory(8);
  ExitStatus st = run_child([&] {
    // The child's copy of the handle: usable (its own connection) ...
    if (mgr.list().size() != 1) return 1;
    // ... and its destructor does not shut the server down.
    SharedMemoryManager moved = std::move(mgr);
    return 0;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
  EXPECT_EQ(mgr.list().size(), 1u);
  mgr.shutdown();
}

TEST(Manager, RemoteClientsInAnExecdProcessWithTheRightAndAWrongKey) {
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  mgr.start();
  auto run_client = [&](const std::string& key) {
    ::setenv("SHMKIT_MGR_CLIENT_ADDRESS", mgr.address().c_str(), 1);
    ::setenv("SHMKIT_MGR_CLIENT_KEY", to_hex(key.data(), key.size()).c_str(), 1);
    ProcessResult r = run_process({"/proc/self/exe"}, 30s);
    ::unsetenv("SHMKIT_MGR_CLIENT_ADDRESS");
    ::unsetenv("SHMKIT_MGR_CLIENT_KEY");
    EXPECT_TRUE(r.status.ok()) << r.status.describe() << "\n" << r.err;
    return r.out;
  };
  const std::string name = run_client(kKey);
  const auto blocks = mgr.list();
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].name + "\n", name);
  EXPECT_EQ(run_client("guess"), "EACCES\n");
  EXPECT_EQ(mgr.list().size(), 1u);
  mgr.shutdown();
  EXPECT_TRUE(list_blocks(mgr.options().name_prefix).empty());
}

TEST(Manager, LargeRequestsAndRepliesCrossManyReadsAndWrites) {
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  mgr.start();
  std::vector<double> big(1 << 20);  // 8 MiB of initial data in one frame
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) * 0.5;
  Array<double> a = mgr.array<double>(std::span<const double>(big));
  EXPECT_EQ(a.to_vector(), big);
  const std::string long_str(9'000'000, 'x');
  ShareableList sl = mgr.shareable_list({Item{long_str}, Item{std::int64_t{1}}});
  EXPECT_EQ(sl.get(0), Item{long_str});
  // Over the 32 MiB frame cap: refused before anything is sent.
  std::vector<std::uint8_t> huge((32u << 20) + 1);
  EXPECT_THROW(mgr.array<std::uint8_t>(std::span<const std::uint8_t>(huge)), std::invalid_argument);
  // Many blocks: a long list reply.
  for (int i = 0; i < 300; ++i) mgr.create_shared_memory(1);
  EXPECT_EQ(mgr.list().size(), 302u);
  mgr.shutdown();
  EXPECT_TRUE(list_blocks(mgr.options().name_prefix).empty());
}

TEST(Manager, PythonReadsAShareableListTheManagerCreated) {
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  mgr.start();
  using namespace shmkit::literals;
  const std::string list_name = mgr.create_shareable_list(
      {Item{std::int64_t{-5}}, Item{2.25}, Item{std::string("py")}, Item{"\x01"_b}, Item{false}, None});
  const std::string script =
      "import sys\n"
      "from multiprocessing import shared_memory, resource_tracker\n"
      "sl = shared_memory.ShareableList(name=sys.argv[1])\n"
      "print(list(sl))\n"
      "resource_tracker.unregister(sl.shm._name, 'shared_memory')\n"  // 3.11 would unlink it
      "sl.shm.close()\n";
  ProcessResult r = run_process({python_path(), "-c", script, list_name}, 60s);
  EXPECT_TRUE(r.status.ok()) << r.status.describe() << r.err;
  EXPECT_EQ(r.out, "[-5, 2.25, 'py', b'\\x01', False, None]\n");
  EXPECT_TRUE(block_exists(list_name));
  mgr.shutdown();
  EXPECT_FALSE(block_exists(list_name));
}

// ---------------------------------------------------------------- hostile clients

// True once the peer has closed the connection, without reading from it.
bool hung_up_within(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 &&
         (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0;
}

TEST(Manager, AClientThatNeverReadsItsRepliesIsDroppedAlone) {
  Options o = test_options();
  o.server_io_timeout = 1s;  // well above the 800 ms bound below, even on a loaded machine
  SharedMemoryManager mgr(abstract_address(), kKey, o);
  mgr.start();
  mgr.create_shared_memory(8);
  const int fd = raw_authenticated(mgr.address(), kKey);
  ASSERT_GE(fd, 0);
  // 20,000 list requests in a row (100 KB), never reading a reply: the
  // replies (~1 MB) fill the socket, the server stops reading from this
  // client and drops it when its reply deadline passes.
  std::vector<std::uint8_t> burst;
  const auto one = proto::encode(proto::Request{proto::ListBlocks{}});
  for (int i = 0; i < 20000; ++i) burst.insert(burst.end(), one.begin(), one.end());
  std::size_t off = 0;
  while (off < burst.size()) {
    const ssize_t n = ::send(fd, burst.data() + off, burst.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  const auto t0 = Clock::now();
  EXPECT_EQ(mgr.list().size(), 1u);
  EXPECT_LT(ms_since(t0), 800) << "the server waited for a client that does not read";
  EXPECT_TRUE(hung_up_within(fd, o.server_io_timeout + 2s));
  ::close(fd);
  EXPECT_EQ(mgr.list().size(), 1u);
  mgr.shutdown();
}

TEST(Manager, ConnectionsBeyondTheCapAreClosedAndTheOthersServed) {
  Options o = test_options();
  o.max_connections = 3;
  SharedMemoryManager mgr(abstract_address(), kKey, o);
  mgr.start();
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(raw_authenticated(mgr.address(), kKey));
    ASSERT_GE(held.back(), 0);
  }
  const int extra = raw_connect(mgr.address());
  ASSERT_GE(extra, 0);
  EXPECT_TRUE(dropped_within(extra, 2s));
  ::close(extra);
  EXPECT_EQ(errno_of([&] { mgr.list(); }), ECONNRESET);  // the cap applies to us too
  ::close(held.back());
  held.pop_back();
  // The server notices the close on its next turn; retry briefly.
  bool served = false;
  for (int i = 0; i < 500 && !served; ++i) {
    try {
      served = mgr.list().empty();
    } catch (const std::system_error&) {
      std::this_thread::sleep_for(10ms);
    }
  }
  EXPECT_TRUE(served);
  for (int fd : held) ::close(fd);
  mgr.shutdown();
}

// ---------------------------------------------------------------- admission

// An explicit abstract address stays reachable by any local user (that is
// what abstract means), but the server checks SO_PEERCRED: another uid is
// closed at accept, even with the right key, unless allowed_uids names it.
TEST(Manager, AnotherUserIsClosedAtAcceptEvenWithTheKeyUnlessAllowed) {
  if (!is_root()) GTEST_SKIP() << "needs root to act as a second user";
  for (const bool allow : {false, true}) {
    Options o = test_options();
    if (allow) o.allowed_uids = {kNobody};
    SharedMemoryManager mgr(abstract_address(), kKey, o);
    mgr.start();
    ExitStatus st = run_child([&] {
      if (!become_nobody()) return 10;
      auto client = SharedMemoryManager::connect(mgr.address(), kKey, test_options());
      if (allow) return client.list().empty() ? 0 : 11;
      const int err = errno_of([&] { client.list(); });
      return err == ECONNRESET ? 0 : 12;
    });
    EXPECT_TRUE(st.ok()) << (allow ? "allowed: " : "not allowed: ") << st.describe();
    mgr.shutdown();
  }
}

// The attack as reproduced: uid 65534 held 16 connections to the manager's
// (then abstract, default) address and the right key was refused, because
// unauthenticated connections counted against max_connections.
TEST(Manager, ConnectionsHeldByAnotherUserNeverLockOutAClientWithTheKey) {
  if (!is_root()) GTEST_SKIP() << "needs root to act as a second user";
  Options o = test_options();
  o.max_connections = 4;
  SharedMemoryManager mgr(abstract_address(), kKey, o);
  mgr.start();
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  const pid_t holder = fork_child([&] {
    ::close(ready[0]);
    ::close(release[1]);
    if (!become_nobody()) return 10;
    std::vector<int> held;
    for (int i = 0; i < 16; ++i) held.push_back(raw_connect(mgr.address()));
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    (void)!::read(release[0], &c, 1);  // hold them until told
    int dropped = 0;                   // the server closed every one of them
    for (int fd : held) dropped += fd >= 0 && dropped_within(fd, 5s) ? 1 : 0;
    return dropped == 16 ? 0 : 11;
  });
  ::close(ready[1]);
  ::close(release[0]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  // The 16 are open (or were refused): a client with the key works, from
  // this process and from another. (No throw escapes before the holder is
  // released.)
  EXPECT_NO_THROW(EXPECT_TRUE(mgr.list().empty()));
  ExitStatus client = run_child([&] {
    auto other = SharedMemoryManager::connect(mgr.address(), kKey, test_options());
    return other.create_shared_memory(8).empty() ? 1 : 0;
  });
  EXPECT_TRUE(client.ok()) << client.describe();
  c = 1;
  (void)!::write(release[1], &c, 1);
  ExitStatus h = wait_child(holder, 30s);
  EXPECT_TRUE(h.ok()) << h.describe();
  ::close(ready[0]);
  ::close(release[1]);
  EXPECT_EQ(mgr.list().size(), 1u);
  mgr.shutdown();
}

// Our own user's connections that never authenticate (a stuck or hostile
// peer of the same uid): they take at most max_handshakes slots, each for
// at most handshake_timeout, and never count against max_connections, so a
// client with the key is delayed, never refused.
TEST(Manager, StalledHandshakesDelayButNeverRefuseAClientWithTheKey) {
  Options o = test_options();
  o.max_connections = 2;
  o.max_handshakes = 4;
  o.handshake_timeout = 300ms;
  SharedMemoryManager mgr(abstract_address(), kKey, o);
  mgr.start();
  std::vector<int> held;
  for (int i = 0; i < 16; ++i) {
    held.push_back(raw_connect(mgr.address()));
    ASSERT_GE(held.back(), 0);
  }
  // Behind 16 stalled peers (4 at a time, 300 ms each): served within the
  // client's 10 s timeout.
  EXPECT_NO_THROW(EXPECT_TRUE(mgr.list().empty()));
  ExitStatus client = run_child([&] {
    auto other = SharedMemoryManager::connect(mgr.address(), kKey, test_options());
    return other.list().empty() ? 0 : 1;
  });
  EXPECT_TRUE(client.ok()) << client.describe();
  for (int fd : held) {
    EXPECT_TRUE(dropped_within(fd, 10s));
    ::close(fd);
  }
  mgr.shutdown();
}

// A connection that stalls in the handshake is dropped by handshake_timeout,
// not by the (long) I/O timeout that authenticated clients get.
TEST(Manager, AStalledHandshakeIsDroppedWithinTheHandshakeTimeout) {
  Options o = test_options();
  o.server_io_timeout = 60s;
  o.handshake_timeout = 500ms;
  SharedMemoryManager mgr(abstract_address(), kKey, o);
  mgr.start();
  const int fd = raw_connect(mgr.address());
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(read_frame(fd, 5s).empty()) << "no hello";
  EXPECT_TRUE(dropped_within(fd, 10s)) << "a stalled handshake was kept past 10 s";
  ::close(fd);
  EXPECT_TRUE(mgr.list().empty());
  mgr.shutdown();
}

// ---------------------------------------------------------------- hostile clients (frames)

TEST(Manager, MalformedOversizedTruncatedAndStalledClientsAreDroppedAlone) {
  Options o = test_options();
  o.server_io_timeout = 1s;  // well above the 800 ms bound below, even on a loaded machine
  SharedMemoryManager mgr(abstract_address(), kKey, o);
  mgr.start();
  const std::string kept = mgr.create_shared_memory(8);
  const auto limit = o.server_io_timeout + 1500ms;

  // Before authentication.
  {
    const int fd = raw_connect(mgr.address());
    std::vector<std::uint8_t> garbage(64, 0xAB);
    send_bytes(fd, garbage);
    EXPECT_TRUE(dropped_within(fd, limit)) << "garbage";
    ::close(fd);
  }
  {
    const int fd = raw_connect(mgr.address());
    send_bytes(fd, le32(1000));  // over the 128-byte handshake cap
    EXPECT_TRUE(dropped_within(fd, limit)) << "oversized before auth";
    ::close(fd);
  }
  {
    const int fd = raw_connect(mgr.address());
    send_bytes(fd, le32(0));  // a frame without an op
    EXPECT_TRUE(dropped_within(fd, limit)) << "empty frame";
    ::close(fd);
  }
  {
    const int fd = raw_connect(mgr.address());
    send_bytes(fd, proto::encode(proto::Request{proto::ListBlocks{}}));  // skipping auth
    EXPECT_TRUE(dropped_within(fd, limit)) << "request before auth";
    ::close(fd);
  }
  {
    const int fd = raw_connect(mgr.address());
    auto auth = proto::encode(proto::Auth{});
    auth[0] = static_cast<std::uint8_t>(auth[0] - 1);  // one byte short of its fields
    auth.pop_back();
    send_bytes(fd, auth);
    EXPECT_TRUE(dropped_within(fd, limit)) << "short auth";
    ::close(fd);
  }
  {
    const int fd = raw_connect(mgr.address());
    send_bytes(fd, le32(73).data(), 3);  // truncated, then gone
    ::close(fd);
  }

  // A client that sends half a frame and sits: dropped by its deadline, and
  // meanwhile everybody else is served at once.
  const int stalled = raw_connect(mgr.address());
  auto half = proto::encode(proto::Auth{});
  send_bytes(stalled, half.data(), half.size() / 2);
  const int stalled_authed = raw_authenticated(mgr.address(), kKey);
  ASSERT_GE(stalled_authed, 0);
  auto request = proto::encode(proto::Request{proto::CreateShm{16}});
  send_bytes(stalled_authed, request.data(), request.size() - 3);
  const auto t0 = Clock::now();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(mgr.list().size(), 1u);
  EXPECT_LT(ms_since(t0), 800) << "the server waited for a stalled client";
  EXPECT_TRUE(dropped_within(stalled, limit)) << "stalled in the handshake";
  EXPECT_TRUE(dropped_within(stalled_authed, limit)) << "stalled after auth";
  ::close(stalled);
  ::close(stalled_authed);

  // After authentication: malformed bodies, unknown ops, oversized lengths.
  std::vector<std::vector<std::uint8_t>> bad;
  {
    std::vector<std::uint8_t> f = le32(5);  // create_list claiming 10^6 items, none there
    f.push_back(static_cast<std::uint8_t>(proto::Op::create_list));
    for (auto b : le32(1'000'000)) f.push_back(b);
    bad.push_back(f);
  }
  {
    // More items than the cap, every one of them present (None tags).
    const auto n = static_cast<std::uint32_t>(proto::kMaxListItems + 1);
    std::vector<std::uint8_t> f = le32(5 + n);
    f.push_back(static_cast<std::uint8_t>(proto::Op::create_list));
    for (auto b : le32(n)) f.push_back(b);
    f.resize(f.size() + n, 0);
    bad.push_back(f);
  }
  {
    std::vector<std::uint8_t> f = le32(1);  // unknown op
    f.push_back(0x7F);
    bad.push_back(f);
  }
  bad.push_back(le32(static_cast<std::uint32_t>(proto::kMaxFrame + 1)));  // over the cap
  bad.push_back(le32(0xFFFFFFFFu));
  {
    auto f = proto::encode(proto::Request{proto::CreateShm{16}});  // trailing byte
    f.push_back(0);
    f[0] = static_cast<std::uint8_t>(f[0] + 1);
    bad.push_back(f);
  }
  {
    auto f = proto::encode(proto::Request{proto::CreateList{{Item{true}}}});
    f.back() = 2;  // a bool that is neither 0 nor 1
    bad.push_back(f);
  }
  {
    auto f = proto::encode(proto::Request{proto::CreateValue{'i', "abcd"}});
    f[9] = 0xFF;  // the initial bytes' length now runs past the frame
    bad.push_back(f);
  }
  for (std::size_t i = 0; i < bad.size(); ++i) {
    const int fd = raw_authenticated(mgr.address(), kKey);
    ASSERT_GE(fd, 0);
    send_bytes(fd, bad[i]);
    EXPECT_TRUE(dropped_within(fd, limit)) << "malformed request #" << i;
    ::close(fd);
  }

  // The server is fine, owns exactly what it did, and others still connect.
  const auto blocks = mgr.list();
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].name, kept);
  ExitStatus st = run_child([&] {
    auto client = SharedMemoryManager::connect(mgr.address(), kKey, test_options());
    return client.list().size() == 1 ? 0 : 1;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
  mgr.shutdown();
  EXPECT_TRUE(list_blocks(o.name_prefix).empty());
}

TEST(Manager, FiftyConcurrentClientsEachCreateAndList) {
  constexpr int kClients = 50;
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  mgr.start();
  int gate[2];
  ASSERT_EQ(::pipe(gate), 0);
  std::vector<pid_t> pids;
  for (int i = 0; i < kClients; ++i) {
    pids.push_back(fork_child([&, i] {
      ::close(gate[1]);
      char c;
      (void)!::read(gate[0], &c, 1);  // all start together when the gate closes
      auto client = SharedMemoryManager::connect(mgr.address(), kKey, test_options());
      const std::string a = client.create_shared_memory(64 + static_cast<std::size_t>(i));
      auto v = client.value<std::int64_t>(i);
      const auto blocks = client.list();
      bool saw_a = false, saw_v = false;
      for (const auto& b : blocks) {
        saw_a |= b.name == a;
        saw_v |= b.name == v.name();
      }
      if (!saw_a || !saw_v) return 1;
      return v.value() == i ? 0 : 2;
    }));
  }
  ::close(gate[0]);
  ::close(gate[1]);
  for (pid_t pid : pids) {
    ExitStatus st = wait_child(pid, 30s);
    EXPECT_TRUE(st.ok()) << st.describe();
  }
  EXPECT_EQ(mgr.list().size(), static_cast<std::size_t>(2 * kClients));
  EXPECT_EQ(list_blocks(mgr.options().name_prefix).size(), static_cast<std::size_t>(2 * kClients));
  mgr.shutdown();
  EXPECT_TRUE(list_blocks(mgr.options().name_prefix).empty());
}

// ---------------------------------------------------------------- kills

TEST(Manager, SigkillOfTheStartingProcessMakesTheServerUnlinkEverythingAndExit) {
  const Options o = test_options();
  const std::string path = "/tmp/" + unique_name("sock");
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  const pid_t starter = fork_child([&]() -> int {
    ::close(report[0]);
    SharedMemoryManager mgr(path, kKey, o);
    mgr.start();
    mgr.create_shared_memory(4096);
    mgr.shareable_list({Item{std::int64_t{1}}});
    mgr.array<float>(16);
    const pid_t server = mgr.server_pid();
    (void)!::write(report[1], &server, sizeof server);
    for (;;) ::pause();  // until SIGKILL
  });
  ::close(report[1]);
  pid_t server = -1;
  ASSERT_EQ(::read(report[0], &server, sizeof server), static_cast<ssize_t>(sizeof server));
  ::close(report[0]);
  const int server_fd = pidfd_of(server);
  ASSERT_GE(server_fd, 0);
  EXPECT_EQ(list_blocks(o.name_prefix).size(), 3u);

  ASSERT_EQ(::kill(starter, SIGKILL), 0);
  ExitStatus st = wait_child(starter, 5s);
  EXPECT_EQ(st.signal, SIGKILL);
  EXPECT_TRUE(wait_exit(server_fd, 5s)) << "the server outlived its starting process";
  ::close(server_fd);
  EXPECT_TRUE(list_blocks(o.name_prefix).empty());
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << "socket file left behind";
}

TEST(Manager, SigkillOfTheServerMakesClientCallsFailWithinTheirTimeout) {
  Options o = test_options();
  o.timeout = 2s;
  SharedMemoryManager mgr(abstract_address(), kKey, o);
  mgr.start();
  const std::string name = mgr.create_shared_memory(32);
  auto client = SharedMemoryManager::connect(mgr.address(), kKey, o);
  ASSERT_EQ(client.list().size(), 1u);  // connected

  const int server_fd = pidfd_of(mgr.server_pid());
  ASSERT_EQ(::kill(mgr.server_pid(), SIGKILL), 0);
  ASSERT_TRUE(wait_exit(server_fd, 5s));
  ::close(server_fd);

  auto t0 = Clock::now();
  try {
    client.list();
    ADD_FAILURE() << "a call to a dead server succeeded";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find(mgr.address()), std::string::npos) << e.what();
  }
  EXPECT_LT(ms_since(t0), 2500);
  t0 = Clock::now();
  EXPECT_EQ(errno_of([&] { client.create_shared_memory(1); }), ECONNREFUSED);  // reconnects
  EXPECT_THROW(mgr.list(), std::system_error);
  EXPECT_LT(ms_since(t0), 2500);

  // shutdown() reports that the server died, and reaps the process.
  EXPECT_THROW(mgr.shutdown(), std::system_error);
  EXPECT_FALSE(mgr.started());
  // The server's tracker watcher unlinks what the server made.
  EXPECT_TRUE(eventually([&] { return !block_exists(name); }, 10s, 10ms)) << "a killed server left " << name;
}

TEST(Manager, AStoppedServerMakesCallsTimeOutNotHang) {
  Options o = test_options();
  SharedMemoryManager mgr(abstract_address(), kKey, o);
  mgr.start();
  // The block comes through the owner's connection (its default timeout):
  // the server's first tracked create starts its watcher program, which
  // can take longer than 300 ms where programs start slowly (under
  // qemu-user each is emulated). Only list() is timed here.
  mgr.create_shared_memory(8);
  o.timeout = 300ms;  // the client's
  auto client = SharedMemoryManager::connect(mgr.address(), kKey, o);
  ASSERT_EQ(::kill(mgr.server_pid(), SIGSTOP), 0);
  const auto t0 = Clock::now();
  EXPECT_EQ(errno_of([&] { client.list(); }), ETIMEDOUT);
  const long took = ms_since(t0);
  EXPECT_GE(took, 250);
  EXPECT_LT(took, 1500);
  ASSERT_EQ(::kill(mgr.server_pid(), SIGCONT), 0);
  EXPECT_EQ(client.list().size(), 1u);  // a fresh connection
  mgr.shutdown();
  EXPECT_TRUE(list_blocks(o.name_prefix).empty());
}

TEST(Manager, SigtermToTheServerUnlinksEverything) {
  SharedMemoryManager mgr(abstract_address(), kKey, test_options());
  mgr.start();
  mgr.create_shared_memory(8);
  mgr.value<float>(1.0f);
  const int server_fd = pidfd_of(mgr.server_pid());
  ASSERT_EQ(::kill(mgr.server_pid(), SIGTERM), 0);
  EXPECT_TRUE(wait_exit(server_fd, 5s));
  ::close(server_fd);
  EXPECT_TRUE(list_blocks(mgr.options().name_prefix).empty());
  EXPECT_NO_THROW(mgr.shutdown());  // it exited cleanly: nothing was left behind
}

}  // namespace
}  // namespace shmkit::test
