// src/manager/protocol.hpp — the SharedMemoryManager wire format: a small,
// versioned, length-prefixed binary protocol over a Unix stream socket.
// Internal (src/ only); pure functions over byte spans, no system calls, so
// the libFuzzer target tests/fuzz/fuzz_manager_frames.cpp drives it directly.
//
// Framing. Every message in both directions is one frame:
//     u32 length    bytes that follow (the op byte + the body), 1..cap
//     u8  op        what the frame is (Op below)
//     body          op-specific fields, all integers little-endian
// The reader caps `length` before buffering anything: kMaxHandshakeFrame
// until the peer has authenticated, kMaxFrame after. A frame whose body does
// not decode to exactly its fields (short, trailing bytes, a bad tag, a bool
// that is not 0/1, a name that is not a valid block name, ...) is malformed:
// the server drops the connection, the client throws. Nothing is
// deserialised beyond plain integers and byte strings; every length is
// checked against the bytes that are actually there before anything is
// allocated.
//
// Handshake (mutual HMAC-SHA256 challenge-response; K = the authkey):
//   S->C hello     u32 magic "SHMK", u16 version, u16 reserved(0), ns[32]
//   C->S auth      u32 magic, u16 version, u16 reserved(0), nc[32],
//                  mac_c[32] = HMAC(K, "shmkit-manager/1 client" || ns || nc)
//   S->C auth_ok   mac_s[32] = HMAC(K, "shmkit-manager/1 server" || ns || nc)
//     or auth_fail u32 reason (1 bad key, 2 unsupported version)
// ns and nc are fresh 32-byte random nonces; the two MACs use different
// labels so one side's proof can never be replayed as the other's. Both
// sides compare MACs in constant time (CRYPTO_memcmp).
//
// Requests (client -> server, after auth_ok), one reply each:
//   create_shm    u64 size                                  -> name
//   create_list   u32 count (<= kMaxListItems), count x item -> name
//                 item: u8 tag; 0 None | 1 bool u8(0/1) | 2 int i64 |
//                       3 float f64 bits u64 | 4 str u32 len, bytes |
//                       5 bytes u32 len, bytes
//   create_value  u8 typecode, u32 n, n bytes (0: zero, else sizeof(T))
//   create_array  u8 typecode, u64 length, u32 n, n bytes
//                 (0: zero-filled, else length * sizeof(T))
//   list          (empty)                                   -> blocks
//   release       u16 n, name                               -> done
//   shutdown      (empty)                                   -> done
// Replies:
//   name          u16 n, name
//   blocks        u32 count, count x (u8 kind, u8 typecode, u64 size,
//                 u16 n, name)
//   done          (empty)
//   error         u8 category (1 invalid_argument, 2 system_error),
//                 i32 errno, u16 n, message (at most kMaxMessage bytes)
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "shmkit/manager.hpp"
#include "shmkit/shareable_list.hpp"

namespace shmkit::detail::proto {

inline constexpr std::uint32_t kMagic = 0x4B4D4853;  // "SHMK" as little-endian bytes
inline constexpr std::uint16_t kVersion = 1;
inline constexpr std::size_t kNonceSize = 32;
inline constexpr std::size_t kMacSize = 32;
inline constexpr std::size_t kLengthSize = 4;
// Largest frame (after the length field) before authentication: the auth
// frame is 73 bytes.
inline constexpr std::size_t kMaxHandshakeFrame = 128;
// Largest frame after authentication, either direction: room for a
// ShareableList with a CPython-maximal str item (9,999,991 bytes) or an
// Array's initial bytes up to 32 MiB.
inline constexpr std::size_t kMaxFrame = std::size_t{32} << 20;
inline constexpr std::size_t kMaxMessage = 1024;
// Most items in one create_list: a decoded Item takes ~40 bytes for a 1-byte
// tag on the wire, so the count is capped to keep that amplification bounded
// (1 Mi items: ~40 MiB decoded, a ~25 MiB block).
inline constexpr std::size_t kMaxListItems = std::size_t{1} << 20;
inline constexpr std::size_t kMaxNameLength = 255;

enum class Op : std::uint8_t {
  hello = 0x01,
  auth = 0x02,
  auth_ok = 0x03,
  auth_fail = 0x04,
  create_shm = 0x10,
  create_list = 0x11,
  create_value = 0x12,
  create_array = 0x13,
  list = 0x14,
  release = 0x15,
  shutdown = 0x16,
  reply_name = 0x80,
  reply_blocks = 0x81,
  reply_done = 0x82,
  reply_error = 0x8F,
};

enum class AuthFailReason : std::uint32_t { bad_key = 1, bad_version = 2 };
enum class ErrorCategory : std::uint8_t { invalid_argument = 1, system_error = 2 };

using Nonce = std::array<std::uint8_t, kNonceSize>;
using Mac = std::array<std::uint8_t, kMacSize>;

// ---------------------------------------------------------------- framing

enum class FrameStatus {
  incomplete,  // fewer bytes than the frame needs: read more
  ready,       // a whole frame is at the front of the buffer
  too_large,   // the length field exceeds the cap: drop the peer
  empty,       // the length field is 0 (no op byte): drop the peer
};
struct FrameHead {
  FrameStatus status = FrameStatus::incomplete;
  std::size_t total = 0;  // bytes of the whole frame, length field included (when ready)
};
// Looks at the front of `buf` (bytes received so far). Never reads past it.
FrameHead peek_frame(std::span<const std::uint8_t> buf, std::size_t max_length) noexcept;

struct Frame {
  std::uint8_t op = 0;
  std::span<const std::uint8_t> body;
};
// The op and body of a frame peek_frame() reported ready (total bytes).
Frame frame_at(std::span<const std::uint8_t> buf, std::size_t total) noexcept;

// ---------------------------------------------------------------- messages

struct Hello {
  std::uint32_t magic = kMagic;
  std::uint16_t version = kVersion;
  Nonce nonce{};
};
struct Auth {
  std::uint32_t magic = kMagic;
  std::uint16_t version = kVersion;
  Nonce nonce{};
  Mac mac{};
};
struct AuthOk {
  Mac mac{};
};
struct AuthFail {
  std::uint32_t reason = 0;
};

struct CreateShm {
  std::uint64_t size = 0;
};
struct CreateList {
  std::vector<Item> items;
};
struct CreateValue {
  char typecode = 0;
  std::string initial;  // raw bytes of one T, or empty
};
struct CreateArray {
  char typecode = 0;
  std::uint64_t length = 0;
  std::string initial;  // raw bytes of length T's, or empty
};
struct ListBlocks {};
struct Release {
  std::string name;
};
struct Shutdown {};
using Request = std::variant<CreateShm, CreateList, CreateValue, CreateArray, ListBlocks, Release, Shutdown>;

struct NameReply {
  std::string name;
};
struct BlocksReply {
  std::vector<ManagedBlock> blocks;
};
struct DoneReply {};
struct ErrorReply {
  ErrorCategory category = ErrorCategory::invalid_argument;
  std::int32_t err = 0;
  std::string message;
};
using Reply = std::variant<NameReply, BlocksReply, DoneReply, ErrorReply>;

// Whole frames (length field included), ready to send. Encoding never
// fails for values the decoder would accept; the caller checks sizes that
// could exceed kMaxFrame (encoded_size() below) before sending.
std::vector<std::uint8_t> encode(const Hello& m);
std::vector<std::uint8_t> encode(const Auth& m);
std::vector<std::uint8_t> encode(const AuthOk& m);
std::vector<std::uint8_t> encode(const AuthFail& m);
std::vector<std::uint8_t> encode(const Request& m);
std::vector<std::uint8_t> encode(const Reply& m);

// Decoders: std::nullopt when the op does not match or the body is
// malformed (see the top of this file). Never throw except std::bad_alloc,
// and allocate at most what the body's own bytes justify.
std::optional<Hello> decode_hello(const Frame& f);
std::optional<Auth> decode_auth(const Frame& f);
std::optional<AuthOk> decode_auth_ok(const Frame& f);
std::optional<AuthFail> decode_auth_fail(const Frame& f);
std::optional<Request> decode_request(const Frame& f);
std::optional<Reply> decode_reply(const Frame& f);

// True for the typecodes the manager serves: c b B h H i I l L q Q f d.
bool valid_typecode(char typecode) noexcept;
// sizeof the C++ type for a valid typecode, else 0.
std::size_t typecode_size(char typecode) noexcept;
// A block name as SharedMemory accepts it: 1..255 bytes, no '/', no NUL.
bool valid_name(std::string_view name) noexcept;

// The bytes that are MACed: label || ns || nc.
std::vector<std::uint8_t> mac_input(bool server_side, const Nonce& ns, const Nonce& nc);

}  // namespace shmkit::detail::proto
