// shmkit/manager.hpp — SharedMemoryManager: a server process that creates
// shared blocks on request and unlinks every one of them when it shuts down,
// the C++ twin of CPython's multiprocessing.managers.SharedMemoryManager.
//
// Contract
//   * start() forks a server process (fork, not exec: the server needs only
//     shmkit itself, runs no user code, and a fork needs no installed
//     binary). The child closes every descriptor it inherited except
//     stdin/stdout/stderr, listens on the Unix socket `address`, and start()
//     returns once it listens. An address is a filesystem path (the socket is
//     created with mode 0600 whatever the umask, and removed at shutdown) or
//     a Linux abstract address spelled with a leading '@'. Call start() from
//     a process whose other threads are not inside shmkit or OpenSSL (the
//     usual rule for fork in a threaded program).
//   * The default address (as CPython's): start() makes a fresh directory
//     "$TMPDIR/shmkit-XXXXXX" (or /tmp/..., mode 0700, mkdtemp) and listens
//     on "<dir>/listener" in it, so only our user (and root) can even
//     connect. The socket and the directory are removed at shutdown, by the
//     server when it exits on its own (SIGTERM, its starter's death), and by
//     the starting handle after it reaps a server that was killed; only if
//     the starter and the server are both SIGKILLed does the empty-but-for-
//     the-socket directory stay (as CPython's pymp-* directories do). An
//     explicit abstract address ("@name") is listed in /proc/net/unix and any
//     local user can connect to it: use one only where that is acceptable.
//   * Who may connect: the server checks each connection's peer credentials
//     (SO_PEERCRED) at accept and closes, before sending a byte, any whose
//     effective uid is neither the server's own nor in Options::allowed_uids
//     (its calls fail with ECONNRESET). This holds for every address kind.
//   * Admission: at most Options::max_handshakes connections are in the
//     handshake at once; while that many are, the server accepts no more
//     (later ones wait in the listen backlog, first come first served) and
//     each must finish within Options::handshake_timeout of its accept or is
//     dropped. Options::max_connections counts authenticated connections
//     only, so connections that never authenticate can delay a client (by at
//     most a few handshake timeouts) but never make the server refuse it.
//   * Clients authenticate with the authkey by a mutual HMAC-SHA256
//     challenge-response over fresh random nonces (the server proves that it
//     knows the key too); MACs are compared in constant time. The wire format
//     is shmkit's own versioned, length-prefixed binary protocol, documented
//     in src/manager/protocol.hpp. The server is one poll() event loop that
//     never blocks on a client: frames are capped (128 bytes before auth,
//     32 MiB after), a handshake must complete within
//     Options::handshake_timeout and every started frame within
//     Options::server_io_timeout, and a peer that sends a wrong key, an
//     oversized or malformed frame, or stalls is dropped alone.
//   * Ownership: every block the server creates is unlinked by shutdown(),
//     by the destructor of the manager that started it (CPython's `with
//     SharedMemoryManager() as smm:`), by SIGTERM/SIGHUP to the server, and
//     when the starting process dies for any reason, SIGKILL included (the
//     server holds a pidfd of it in its poll set). Blocks that clients
//     attached stay mapped in them until they close; only the names go.
//   * Clients: the manager that started the server is one; any process may
//     make another with SharedMemoryManager::connect(address, authkey), the
//     same class (a connected handle never owns the server: its destructor
//     only closes its connection; its shutdown() asks the server to stop).
//     A handle copied into a forked child by fork() acts there as a
//     connected handle (it opens its own connection, and its destructor
//     never stops the server).
//   * Errors mirror Python's: a request the server refuses (size 0, unknown
//     typecode, a list item CPython cannot store) -> std::invalid_argument
//     with the server's message; an OS failure in the server (ENOSPC, ...)
//     -> std::system_error with the server's errno; no server, a dropped
//     connection or no reply within Options::timeout -> std::system_error
//     (ECONNREFUSED, ENOENT, ECONNRESET, ETIMEDOUT, ...) naming the address;
//     the server refused our key -> std::system_error(EACCES); the server
//     could not prove that it knows the key -> std::system_error(EPERM).
//     A call never waits longer than Options::timeout (the starting
//     handle's shutdown() at most twice that: the request, then reaping the
//     process, SIGKILLing it if it does not exit), so a killed or stopped
//     server is an error, never a hang.
//   * Not wire-compatible with CPython's manager (which pickles): a Python
//     process cannot be a client. The blocks are ordinary named blocks that
//     Python attaches by name: a ShareableList in CPython's own layout, a
//     Value/Array in the layout documented in shmkit/array.hpp.
//   * Thread safety: one handle may be used from several threads (calls are
//     serialised on its connection). Not async-signal-safe. A moved-from
//     handle may only be assigned to or destroyed.
//   * Crash behaviour: the server registers each block with the resource
//     tracker (shmkit/tracker.hpp) before it creates it, so if the server
//     itself is killed (SIGKILL, at any instruction) its tracker watcher
//     unlinks every block it made, unlike CPython's, whose blocks stay
//     until the starting process exits. Processes that mapped them keep
//     their mappings; shutdown() then throws std::system_error saying the
//     server died.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <type_traits>
#include <vector>

#include "shmkit/array.hpp"
#include "shmkit/shareable_list.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/value.hpp"

namespace shmkit {

// What a manager's block holds.
enum class ManagedKind : std::uint8_t {
  shared_memory = 1,   // raw bytes (SharedMemory)
  shareable_list = 2,  // ShareableList
  value = 3,           // Value<T> with the default lock (RecursiveMutex)
  array = 4,           // Array<T> with the default lock
};
const char* managed_kind_name(ManagedKind kind) noexcept;

// One block a manager owns, as list() reports it.
struct ManagedBlock {
  std::string name;  // as SharedMemory::attach takes it
  ManagedKind kind = ManagedKind::shared_memory;
  char typecode = 0;       // Value/Array: CPython's typecode, else 0
  std::uint64_t size = 0;  // bytes of the block
  friend bool operator==(const ManagedBlock&, const ManagedBlock&) = default;
};

// SharedMemoryManager::Options.
struct ManagerOptions {
  // Client side: the most one call (connect + handshake + request + reply)
  // may take; start(): the most the server may take to get ready.
  std::chrono::milliseconds timeout{10000};
  // Server side: a client must finish the handshake, and each frame it
  // starts sending, within this time; a reply it does not read within
  // this time drops it.
  std::chrono::milliseconds server_io_timeout{5000};
  // Names of created blocks: name_prefix + 8 random lowercase hex digits
  // (CPython's "psm_" by default). At most 200 bytes, no '/'.
  std::string name_prefix = "psm_";
  // Server side: authenticated connections beyond this are closed (at
  // accept, or when a handshake completes with the cap reached).
  // Connections still in the handshake do not count (max_handshakes does).
  std::size_t max_connections = 1024;
  // Server side: connections in the handshake at once (>= 1); while this
  // many are, further connections wait in the listen backlog.
  std::size_t max_handshakes = 4;
  // Server side: a connection must finish the handshake within this time
  // of its accept (and within server_io_timeout), else it is dropped.
  std::chrono::milliseconds handshake_timeout{2000};
  // Server side: effective uids allowed to connect besides the server's own
  // (SO_PEERCRED); connections of any other uid are closed at accept. Root
  // is not implied: list 0 to let root in to a non-root server. Only useful
  // with an address the other user can reach: an abstract one, or a path in
  // a directory they may enter (the default directory is 0700).
  std::vector<uid_t> allowed_uids;
};

class SharedMemoryManager {
 public:
  // (Defined outside the class so that `Options options = {}` works as a
  // default argument here.)
  using Options = ManagerOptions;

  // The default address (a socket in a fresh 0700 directory, made by
  // start(): address() is empty until then) and a random 32-byte authkey
  // (getrandom), like CPython's defaults.
  SharedMemoryManager();
  explicit SharedMemoryManager(Options options);
  // `address`: "@name" (abstract: any local user can connect, see the
  // contract) or a filesystem path, at most 107 bytes; `authkey`: any
  // non-empty byte string. std::invalid_argument otherwise (also for
  // max_handshakes 0 or a handshake_timeout <= 0).
  SharedMemoryManager(std::string address, std::string authkey, Options options = {});
  // A handle on a manager that another process started. Connects lazily on
  // the first call (so this never throws for an unreachable server).
  static SharedMemoryManager connect(std::string address, std::string authkey, Options options = {});

  SharedMemoryManager(SharedMemoryManager&&) noexcept;
  SharedMemoryManager& operator=(SharedMemoryManager&&) noexcept;
  SharedMemoryManager(const SharedMemoryManager&) = delete;
  SharedMemoryManager& operator=(const SharedMemoryManager&) = delete;
  // A started manager (in the process that started it) shuts down; errors
  // are swallowed (call shutdown() to see them). A connected handle closes
  // its connection.
  ~SharedMemoryManager();

  // Forks the server; returns when it listens. std::logic_error if already
  // started or shut down, or if this is a connected handle;
  // std::system_error (EADDRINUSE, EACCES, ENAMETOOLONG, ...) from the
  // server's bind/listen, naming the address, or from making the default
  // address's directory.
  void start();
  // Unlinks every block the server created, stops it and (for the starting
  // handle) reaps the process. Idempotent. std::system_error if the server
  // cannot be reached or had died: its blocks may then be left behind.
  void shutdown();

  // Empty for a default manager until start() has made its directory.
  const std::string& address() const noexcept;
  // The key as raw bytes (may hold any byte value).
  const std::string& authkey() const noexcept;
  const Options& options() const noexcept;
  // True between a successful start() and shutdown(), in the starting process.
  bool started() const noexcept;
  // The server's pid (started handles), else -1.
  pid_t server_pid() const noexcept;

  // ---- requests: each creates a block in the server and returns its name.
  std::string create_shared_memory(std::size_t size);
  // At most 1,048,576 items and a 32 MiB request (else std::invalid_argument).
  std::string create_shareable_list(const std::vector<Item>& items);
  // typecode: one of c b B h H i I l L q Q f d. `initial`: empty (zero) or
  // exactly the bytes of one element / of `length` elements.
  std::string create_value(char typecode, std::span<const std::byte> initial = {});
  std::string create_array(char typecode, std::size_t length, std::span<const std::byte> initial = {});
  // Every block the server owns, oldest first.
  std::vector<ManagedBlock> list();
  // Unlinks one block the server owns and forgets it (CPython's
  // release_segment). std::invalid_argument if it owns no such block.
  void release(std::string_view name);

  // ---- CPython's smm.SharedMemory(size) / smm.ShareableList(seq): create
  // in the server, then attach here.
  shmkit::SharedMemory shared_memory(std::size_t size) {
    return shmkit::SharedMemory::attach(create_shared_memory(size));
  }
  ShareableList shareable_list(const std::vector<Item>& items) {
    return ShareableList::attach(create_shareable_list(items));
  }
  // A Value<T> / Array<T> (default lock) of one of the typecode types.
  template <class T>
  Value<T> value(const T& initial = T{}) {
    return Value<T>::attach(create_value(typecode_of<T>(), bytes_of(&initial, 1)));
  }
  template <class T>
  Array<T> array(std::size_t length) {
    return Array<T>::attach(create_array(typecode_of<T>(), length));
  }
  template <class T>
  Array<T> array(std::span<const T> initial) {
    return Array<T>::attach(
        create_array(typecode_of<T>(), initial.size(), bytes_of(initial.data(), initial.size())));
  }

 private:
  template <class T>
  static constexpr char typecode_of() {
    constexpr char c = python_typecode<T>();
    static_assert(c != 0 && c != '?', "the manager serves the typecodes c b B h H i I l L q Q f d only");
    return c;
  }
  template <class T>
  static std::span<const std::byte> bytes_of(const T* p, std::size_t n) noexcept {
    return {reinterpret_cast<const std::byte*>(p), n * sizeof(T)};
  }

  struct Impl;
  explicit SharedMemoryManager(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shmkit
