// shmkit/shared_memory.hpp — SharedMemory: a move-only RAII handle to a POSIX
// shared memory block, the C++ twin of CPython's
// multiprocessing.shared_memory.SharedMemory.
//
// Contract
//   * Same blocks as CPython: the block named "foo" is shm_open("/foo"), i.e.
//     /dev/shm/foo; random names are "psm_" + 8 lowercase hex digits; create
//     is O_CREAT|O_EXCL|O_RDWR; attach takes the size from fstat; the mapping
//     is MAP_SHARED over the whole block. Either side may create, the other
//     attach (tests/interop checks this against the machine's python3).
//   * Creating and attaching throw; accessors and close() never do:
//       std::invalid_argument  bad name, size 0, block smaller than required
//                              or empty (CPython's ValueError)
//       std::system_error      any OS failure, errno kept: ENOENT
//                              (FileNotFoundError), EEXIST (FileExistsError),
//                              EACCES, ENOSPC, ...; EINVAL when the name
//                              is not a regular file (a FIFO, directory or
//                              device planted there: the message says which)
//     Every message names the block.
//   * Attach never blocks on what it finds at the name: it opens
//     non-blocking (a FIFO opened for reading would wait for a writer
//     forever), checks the type on the descriptor, and refuses anything but
//     a regular file before mapping it. A socket fails in the open (ENXIO),
//     a directory opened for writing too (EINVAL, glibc's shm_open).
//   * Beyond CPython: the mode is exactly 0600 (or Options::mode) whatever the
//     umask; the memory is reserved at create (fallocate), so a full /dev/shm
//     fails at create() with ENOSPC instead of killing a later writer with
//     SIGBUS; a create that fails half-way unlinks what it made.
//   * Thread safety: a handle is not synchronised; distinct handles may be
//     used from distinct threads. The bytes of the block are shared with
//     every process that maps it: synchronising access to them is the
//     caller's business (see shmkit/sync/).
//   * Races with a creator: create() makes the name visible before it sizes
//     the block, so attach() in that instant finds an empty block and
//     throws std::invalid_argument, as CPython's mmap does. Typed objects
//     (shmkit/typed_block.hpp) wait for their creator instead.
//   * Crash behaviour: a block outlives every process that maps it until it
//     is unlinked. The destructor unmaps and closes but never unlinks, as in
//     CPython. If a process dies, its mappings vanish and the block stays.
//     Another process may shrink a named block under you (ftruncate); a
//     later access beyond the new end raises SIGBUS. Objects built on top
//     (ShareableList, Value, queues) check sizes on attach; see their headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace shmkit {

class SharedMemory {
 public:
  // Longest name accepted: a file name in /dev/shm (NAME_MAX bytes).
  static constexpr std::size_t kMaxNameLength = 255;
  // Prefix of the names create(size) draws, as CPython's _SHM_NAME_PREFIX.
  static constexpr std::string_view kRandomNamePrefix = "psm_";

  struct Options {
    // Permission bits of a created block. Applied with fchmod after the
    // exclusive create, so the umask cannot widen or narrow them.
    mode_t mode = 0600;
    // Attach only: map PROT_READ over an O_RDONLY descriptor. A write
    // through buf() then faults (SIGSEGV).
    bool read_only = false;
    // Attach only: the block must be at least this many bytes, else
    // std::invalid_argument. 0 accepts any non-empty block.
    std::size_t min_size = 0;
    // Attach only: refuse a block that is not private to this user (owner
    // is not the effective uid, or group/other permission bits are set),
    // with std::system_error(EPERM). Defends against a block planted under
    // a predictable name by another user.
    bool require_private = false;
    // MAP_POPULATE: fault every page in at map time.
    bool prefault = false;
    // mlock the mapping (RLIMIT_MEMLOCK applies; failure throws).
    bool mlock = false;
    // Create only: reserve the memory now (fallocate), so a full /dev/shm is
    // ENOSPC here rather than SIGBUS on first touch. CPython does not (it
    // only ftruncates); turn this off for huge sparse blocks.
    bool reserve = true;
    // CPython 3.13's `track` (create and attach): register the block with
    // shmkit's resource tracker (shmkit/tracker.hpp), which unlinks a block
    // a shmkit process created once every process that registered it has
    // died, and, unlike CPython (gh-82300), never while a registered process
    // is alive. A tracked attach registers use, never ownership: a block
    // that no shmkit process created tracked is never unlinked by the
    // tracker. unlink() on a tracked handle removes the block's
    // registrations. Off by default:
    // shmkit blocks live until unlink() or until the SharedMemoryManager
    // that owns them shuts down. Registering starts this process's watcher
    // program once (see tracker.hpp).
    bool track = false;
  };

  // Creates a block with a fresh random name (psm_ + 8 hex digits from
  // getrandom), retrying on EEXIST as CPython does.
  static SharedMemory create(std::size_t size);
  static SharedMemory create(std::size_t size, const Options& options);
  // Creates the block `name` (without a leading slash). EEXIST if it exists.
  static SharedMemory create(std::string_view name, std::size_t size);
  static SharedMemory create(std::string_view name, std::size_t size, const Options& options);
  // Creates the block `name` unnamed (O_TMPFILE in /dev/shm), sizes it,
  // maps it, lets `fill` write its bytes, registers it if options.track,
  // and only then gives it its name (linkat; EEXIST if the name exists).
  // No other process ever sees it half made, and a process killed before
  // the name is given leaves nothing behind. Tracked creates always take
  // this path. One more system call (the link) than create().
  using Fill = std::function<void(std::span<std::byte>)>;
  static SharedMemory create_filled(std::string_view name, std::size_t size, const Options& options,
                                    const Fill& fill);
  // Attaches to the existing block `name`; the size is the block's (fstat).
  static SharedMemory attach(std::string_view name);
  static SharedMemory attach(std::string_view name, const Options& options);

  // An anonymous block (memfd_create): no name in /dev/shm, freed when the
  // last descriptor and mapping go. Sealed against shrinking (F_SEAL_SHRINK),
  // so no holder can SIGBUS the others. Inherited across fork(); passed to an
  // unrelated process with send_fd()/receive_fd() over a Unix socket.
  static SharedMemory anonymous(std::size_t size);
  static SharedMemory anonymous(std::size_t size, const Options& options);
  // Sends this anonymous block's descriptor over the connected Unix socket
  // `socket` (SCM_RIGHTS). Throws std::system_error on failure and
  // std::logic_error if the block is named or closed (send the name instead).
  void send_fd(int socket) const;
  // Receives a descriptor sent by send_fd() and maps it. The descriptor must
  // be a memfd sealed against shrinking, else std::invalid_argument: an
  // unsealed block could be truncated under us.
  static SharedMemory receive_fd(int socket);
  static SharedMemory receive_fd(int socket, const Options& options);

  SharedMemory() noexcept = default;  // a closed handle
  SharedMemory(SharedMemory&& other) noexcept;
  SharedMemory& operator=(SharedMemory&& other) noexcept;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  ~SharedMemory();  // close(), never unlink()

  // The name without the leading slash, as CPython's .name; empty for an
  // anonymous block or a default-constructed handle.
  const std::string& name() const noexcept { return name_; }
  // Bytes mapped: the block's size at create/attach (fstat), which may be
  // larger than requested. 0 after close().
  std::size_t size() const noexcept { return size_; }
  std::span<std::byte> buf() const noexcept { return {static_cast<std::byte*>(data_), size_}; }
  void* data() const noexcept { return data_; }
  // The open descriptor, or -1 after close().
  int fd() const noexcept { return fd_; }
  // The block's inode number (fstat of the descriptor at create/attach), kept
  // after close(): the tracker registers and forgets that very file, not
  // whatever is under the name later. 0 for a default-constructed handle.
  std::uint64_t inode() const noexcept { return inode_; }
  // True if this handle created the block (create/anonymous).
  bool created() const noexcept { return created_; }
  bool anonymous() const noexcept { return anonymous_; }
  bool read_only() const noexcept { return read_only_; }
  bool tracked() const noexcept { return tracked_; }
  bool closed() const noexcept { return data_ == nullptr; }

  // Unmaps and closes the descriptor. Idempotent, never throws. The name is
  // kept, so unlink() may follow, as in CPython.
  void close() noexcept;
  // Removes the name from /dev/shm; mappings stay valid until closed.
  // Throws std::system_error (ENOENT if already unlinked, as CPython's
  // FileNotFoundError). A no-op for an anonymous block.
  void unlink();

  // Removes the block `name` without mapping it (shm_unlink). Throws as
  // unlink().
  static void unlink(std::string_view name);

  // Throws std::invalid_argument unless `name` is a valid block name:
  // 1..255 bytes, no '/', no NUL.
  static void validate_name(std::string_view name);

 private:
  // `inode`: the file's, from the fstat the caller made (0: unknown).
  SharedMemory(std::string name, int fd, std::uint64_t inode, void* data, std::size_t size, bool created,
               bool anonymous, bool read_only, bool tracked) noexcept;

  std::string name_;
  int fd_ = -1;
  std::uint64_t inode_ = 0;
  void* data_ = nullptr;
  std::size_t size_ = 0;
  bool created_ = false;
  bool anonymous_ = false;
  bool read_only_ = false;
  bool tracked_ = false;
};

}  // namespace shmkit
