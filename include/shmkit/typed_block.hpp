// shmkit/typed_block.hpp — the header every typed shmkit object carries at
// the start of its block, and "create or attach this T in a named block".
// Public so that users build their own structures (an order book, a
// histogram) the way shmkit builds Value, Array and the queues, with the same
// checks.
//
// Contract
//   * Layout (native byte order, 128 bytes, documented field by field below;
//     `shmkit show` and Python read it): magic, layout version, kind, init
//     state, element type fingerprint (typecode, size, alignment, name hash),
//     element count, prefix size, payload offset and size, and the element
//     type's name for tools (BlockSpec::type_name). A kind-specific
//     prefix (a Value's lock, a queue's indices) follows the header at byte
//     128; the payload starts at payload_offset, a multiple of 64 and of the
//     element alignment, after the prefix.
//   * A typed *region* is the same thing at any 64-byte aligned place: a
//     named block holds one region at offset 0; a Heap holds many.
//   * create_typed_block() makes the block (SharedMemory::create), fills the
//     header, lets the caller construct the payload, and only then publishes
//     state = ready with a release store. attach_typed_block() validates
//     everything it reads: a block written by another process is untrusted.
//     Any mismatch (not a shmkit block, other kind, other type, other
//     version, offsets or sizes that do not fit the block, a payload not
//     aligned for the element type at the address it is mapped) throws
//     std::invalid_argument naming the block and the field. The kind-specific
//     fields (count, prefix, param[]) are the kind's to check: Value/Array
//     (detail::open_object_region) and the rings check every one of them.
//   * Half-initialised blocks: an attacher that finds state != ready, or a
//     block still 0 bytes long (its creator is between shm_open and sizing
//     it), waits up to AttachOptions::init_timeout for the creator, then
//     throws std::invalid_argument ("not initialised ... its creator may
//     have died" / "the block is empty"). A creator killed mid-create
//     therefore never hangs an attacher.
//   * Shrinking: a block truncated by another process after attach raises
//     SIGBUS on access beyond the new end; attach checks the size it maps.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string_view>
#include <type_traits>

#include "shmkit/shared_memory.hpp"

namespace shmkit {

// What a typed block holds. Values < 1024 are shmkit's; pick yours from
// BlockKind::user upwards.
enum class BlockKind : std::uint32_t {
  value = 1,
  array = 2,
  heap = 3,
  spsc_queue = 4,
  mpmc_queue = 5,
  seqlock = 6,
  broadcast_ring = 7,
  registry = 8,     // the resource tracker's (shmkit/tracker.hpp)
  sync = 9,         // one sync primitive alone (Python's shmkit.synchronize; shmkit/sync/standalone.hpp)
  byte_queue = 10,  // messages of any length (shmkit/lockfree/byte_queue.hpp)
  user = 1024,
};

// Human-readable name of a kind ("value", "array", ..., "user+N").
std::string block_kind_name(std::uint32_t kind);

// ------------------------------------------------------------ fingerprints

// Names a type stably across processes (and compilers). Arithmetic types get
// CPython's typecodes where one exists; specialise TypeName for your own
// structs (`template <> struct shmkit::TypeName<Quote> { static constexpr
// std::string_view value = "Quote/v1"; };`), else the compiler's spelling of
// the type is used, which is stable for one compiler but may differ between
// GCC and clang.
namespace detail {
template <class T>
constexpr std::string_view pretty_type_name() noexcept {
  return __PRETTY_FUNCTION__;  // spells T; stable for one compiler
}
}  // namespace detail

template <class T>
struct TypeName {
  static constexpr std::string_view value = detail::pretty_type_name<T>();
};

// CPython's array/ctypes typecodes for the fixed-size types (Linux x86-64 /
// aarch64 LP64 sizes): 'c' char, 'b' int8, 'B' uint8, 'h' int16, 'H'
// uint16, 'i' int32, 'I' uint32, 'q' int64, 'Q' uint64, 'f' float,
// 'd' double. ('l'/'L' are 64-bit on LP64 and so share 'q'/'Q'.) Anything
// else (a struct) has typecode 0 and is told apart by TypeName<T>.
template <class T>
constexpr char python_typecode() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, char>)
    return 'c';
  else if constexpr (std::is_same_v<U, std::int8_t> || std::is_same_v<U, signed char>)
    return 'b';
  else if constexpr (std::is_same_v<U, std::uint8_t>)
    return 'B';
  else if constexpr (std::is_same_v<U, std::int16_t>)
    return 'h';
  else if constexpr (std::is_same_v<U, std::uint16_t>)
    return 'H';
  else if constexpr (std::is_same_v<U, std::int32_t>)
    return 'i';
  else if constexpr (std::is_same_v<U, std::uint32_t>)
    return 'I';
  else if constexpr (std::is_integral_v<U> && std::is_signed_v<U> && sizeof(U) == 8)
    return 'q';
  else if constexpr (std::is_integral_v<U> && std::is_unsigned_v<U> && sizeof(U) == 8)
    return 'Q';
  else if constexpr (std::is_same_v<U, float>)
    return 'f';
  else if constexpr (std::is_same_v<U, double>)
    return 'd';
  else if constexpr (std::is_same_v<U, bool>)
    return '?';
  else
    return 0;
}

// 64-bit FNV-1a, for type-name hashes.
constexpr std::uint64_t fnv1a(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

struct TypeFingerprint {
  char typecode = 0;            // python_typecode<T>(), 0 for a struct
  std::uint32_t size = 0;       // sizeof(T)
  std::uint32_t align = 0;      // alignof(T)
  std::uint64_t name_hash = 0;  // fnv1a(typecode or TypeName<T>)

  template <class T>
  static constexpr TypeFingerprint of() noexcept {
    TypeFingerprint f;
    f.typecode = python_typecode<T>();
    f.size = sizeof(T);
    f.align = alignof(T);
    f.name_hash = f.typecode != 0 ? fnv1a(std::string_view(&f.typecode, 1)) : fnv1a(TypeName<T>::value);
    return f;
  }
  friend constexpr bool operator==(const TypeFingerprint&, const TypeFingerprint&) = default;
};

// ------------------------------------------------------------ the header

// Offset 0 of every typed block. Standard layout, no pointers: it reads the
// same in every process at any address.
struct BlockHeader {
  static constexpr std::uint64_t kMagic = 0x01'00'54'49'4b'4d'48'53ull;  // "SHMKIT\0\1" LE
  static constexpr std::uint32_t kLayoutVersion = 1;
  static constexpr std::size_t kSize = 128;
  static constexpr std::size_t kPayloadAlignment = 64;  // a cache line

  // Initialisation states (the `state` word).
  static constexpr std::uint32_t kEmpty = 0;         // fresh zero-filled block
  static constexpr std::uint32_t kInitialising = 1;  // creator is writing
  static constexpr std::uint32_t kReady = 2;         // published; immutable fields below fixed

  std::uint64_t magic;           //  0
  std::uint32_t layout_version;  //  8
  std::uint32_t kind;            // 12  BlockKind
  std::uint32_t state;           // 16  accessed with std::atomic_ref only
  std::uint32_t header_size;     // 20  kSize
  char typecode;                 // 24  TypeFingerprint::typecode
  char reserved0[3];             // 25
  std::uint32_t elem_size;       // 28
  std::uint32_t elem_align;      // 32
  std::uint32_t prefix_size;     // 36  bytes from 128 reserved for the kind
  std::uint64_t type_hash;       // 40
  std::uint64_t count;           // 48  elements (Array), capacity (queues), 1 (Value)
  std::uint64_t payload_offset;  // 56  from the block's start
  std::uint64_t payload_size;    // 64  bytes
  std::uint64_t param[4];        // 72  kind-specific (e.g. the lock kind of a Value)
  // 104  the element type's name for tools (`shmkit show`): BlockSpec::type_name,
  // its first 24 bytes, NUL-padded (no NUL when exactly 24). Informational
  // only: attach checks type_hash, never this. All zero when the creator gave
  // none (shmkit's own kinds, blocks made before this field was named).
  char type_name[24];

  TypeFingerprint fingerprint() const noexcept {
    TypeFingerprint f;
    f.typecode = typecode;
    f.size = elem_size;
    f.align = elem_align;
    f.name_hash = type_hash;
    return f;
  }
};
static_assert(sizeof(BlockHeader) == BlockHeader::kSize);
static_assert(std::is_standard_layout_v<BlockHeader> && std::is_trivially_copyable_v<BlockHeader>);
static_assert(offsetof(BlockHeader, payload_offset) == 56);
static_assert(offsetof(BlockHeader, type_name) == 104);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free &&
              std::atomic_ref<std::uint64_t>::is_always_lock_free);

// What a block should hold.
struct BlockSpec {
  BlockKind kind = BlockKind::user;
  TypeFingerprint type;
  std::uint64_t count = 0;         // recorded as is
  std::uint32_t prefix_size = 0;   // kind-specific bytes after the header
  std::uint64_t payload_size = 0;  // bytes of payload (0: an empty Array)
  std::uint64_t param[4] = {};     // recorded as is
  // Recorded (first 24 bytes) in BlockHeader::type_name for `shmkit show` and
  // `ls`. Give your TypeName<T>::value here, short enough to fit (the tools
  // check fnv1a(name) against type_hash when it does). Empty: none recorded.
  std::string_view type_name;
};

// A typed region's validated views.
struct TypedRegion {
  // A snapshot of the header taken and validated at create/attach. Read
  // fields from here, not from the block: another process could change the
  // block's copy after validation.
  BlockHeader header{};
  BlockHeader* live = nullptr;   // the header in shared memory (state word)
  std::span<std::byte> prefix;   // header.prefix_size bytes at offset 128
  std::span<std::byte> payload;  // header.payload_size bytes at payload_offset
};

using RegionInit = std::function<void(std::span<std::byte> prefix, std::span<std::byte> payload)>;

struct AttachOptions {
  SharedMemory::Options shm;  // read_only, require_private, prefault, ...
  // How long attach waits for a creator that has not published yet.
  std::chrono::milliseconds init_timeout{1000};
};

// A mapped typed block: the SharedMemory handle plus its region's views.
struct TypedBlock : TypedRegion {
  SharedMemory shm;
};

// Payload offset for a spec: the header and prefix, rounded up to 64 and to
// the element alignment.
std::uint64_t payload_offset_for(const BlockSpec& spec) noexcept;
// Bytes a region holding `spec` needs (payload offset + payload size).
std::uint64_t typed_region_size(const BlockSpec& spec);

// Writes a header for `spec` at region.data() (64-byte aligned, zero-filled,
// typed_region_size(spec) bytes at least), calls init(prefix, payload), then
// publishes state = ready (release).
TypedRegion init_typed_region(std::span<std::byte> region, const BlockSpec& spec, const RegionInit& init);
// Validates the region's header (ready, kind, type, every offset and size
// against region.size()) and returns its views. Does not wait: a region not
// yet ready is an error. `what` names it in messages.
TypedRegion open_typed_region(std::span<std::byte> region, BlockKind kind, const TypeFingerprint& type,
                              std::string_view what);

// Creates the block `name` (random psm_ name when empty) holding spec, calls
// init(prefix, payload) on the zero-filled block, then publishes state =
// ready. If init throws, the block is unlinked and the exception propagates.
TypedBlock create_typed_block(std::string_view name, const BlockSpec& spec, const RegionInit& init,
                              const SharedMemory::Options& options = SharedMemory::Options());

// Attaches to `name` and checks it holds `kind` of `type` (count is read
// from the header; the caller checks it against what it needs).
TypedBlock attach_typed_block(std::string_view name, BlockKind kind, const TypeFingerprint& type,
                              const AttachOptions& options = AttachOptions());

// Validates a header read from a block of `block_size` bytes, without
// expectations about kind or type: magic, version, state, offsets, sizes.
// Throws std::invalid_argument naming `name` and the field. Used by attach,
// by `shmkit show` and by the fuzz targets.
void validate_block_header(const BlockHeader& header, std::size_t block_size, std::string_view name);

}  // namespace shmkit
