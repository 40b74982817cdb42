// The SharedMemoryManager wire format: see protocol.hpp.
#include "manager/protocol.hpp"

#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>

namespace shmkit::detail::proto {
namespace {

// ---------------------------------------------------------------- writer

class Writer {
 public:
  explicit Writer(Op op) {
    buf_.resize(kLengthSize);
    u8(static_cast<std::uint8_t>(op));
  }
  void u8(std::uint8_t v) { buf_.push_back(v); }
  void u16(std::uint16_t v) { le(v); }
  void u32(std::uint32_t v) { le(v); }
  void u64(std::uint64_t v) { le(v); }
  void bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  // u16 or u32 length, then the bytes.
  void str16(std::string_view s) {
    u16(static_cast<std::uint16_t>(s.size()));
    bytes(s.data(), s.size());
  }
  void str32(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }
  std::vector<std::uint8_t> finish() && {
    const auto n = static_cast<std::uint32_t>(buf_.size() - kLengthSize);
    for (std::size_t i = 0; i < kLengthSize; ++i) buf_[i] = static_cast<std::uint8_t>(n >> (8 * i));
    return std::move(buf_);
  }

 private:
  template <class U>
  void le(U v) {
    for (std::size_t i = 0; i < sizeof(U); ++i) buf_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  std::vector<std::uint8_t> buf_;
};

// ---------------------------------------------------------------- reader

// Reads fields from a body; any read past the end sets failed and yields 0.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> body) noexcept : p_(body) {}
  bool failed() const noexcept { return failed_; }
  // True when every byte was consumed and no read failed.
  bool done() const noexcept { return !failed_ && pos_ == p_.size(); }
  std::size_t left() const noexcept { return failed_ ? 0 : p_.size() - pos_; }

  std::uint8_t u8() noexcept { return le<std::uint8_t>(); }
  std::uint16_t u16() noexcept { return le<std::uint16_t>(); }
  std::uint32_t u32() noexcept { return le<std::uint32_t>(); }
  std::uint64_t u64() noexcept { return le<std::uint64_t>(); }
  template <std::size_t N>
  std::array<std::uint8_t, N> array() noexcept {
    std::array<std::uint8_t, N> a{};
    if (take(N)) std::memcpy(a.data(), p_.data() + pos_ - N, N);
    return a;
  }
  // `n` bytes as a string (checked against what is left before allocating).
  std::string bytes(std::size_t n) {
    if (!take(n)) return {};
    return std::string(reinterpret_cast<const char*>(p_.data() + pos_ - n), n);
  }
  std::string str16() { return bytes(u16()); }
  std::string str32() { return bytes(u32()); }

 private:
  bool take(std::size_t n) noexcept {
    if (failed_ || n > p_.size() - pos_) {
      failed_ = true;
      return false;
    }
    pos_ += n;
    return true;
  }
  template <class U>
  U le() noexcept {
    if (!take(sizeof(U))) return 0;
    U v = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) {
      v = static_cast<U>(v | (static_cast<U>(p_[pos_ - sizeof(U) + i]) << (8 * i)));
    }
    return v;
  }

  std::span<const std::uint8_t> p_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

enum ItemTag : std::uint8_t { kNone = 0, kBool = 1, kInt = 2, kFloat = 3, kStr = 4, kBytes = 5 };

void put_item(Writer& w, const Item& item) {
  switch (item.index()) {
    case 0:
      w.u8(kNone);
      break;
    case 1:
      w.u8(kBool);
      w.u8(std::get<bool>(item) ? 1 : 0);
      break;
    case 2:
      w.u8(kInt);
      w.u64(static_cast<std::uint64_t>(std::get<std::int64_t>(item)));
      break;
    case 3:
      w.u8(kFloat);
      w.u64(std::bit_cast<std::uint64_t>(std::get<double>(item)));
      break;
    case 4:
      w.u8(kStr);
      w.str32(std::get<std::string>(item));
      break;
    default:
      w.u8(kBytes);
      w.str32(std::get<Bytes>(item).view());
      break;
  }
}

std::optional<Item> get_item(Reader& r) {
  switch (r.u8()) {
    case kNone:
      return Item{std::monostate{}};
    case kBool: {
      std::uint8_t b = r.u8();
      if (b > 1) return std::nullopt;
      return Item{b == 1};
    }
    case kInt:
      return Item{static_cast<std::int64_t>(r.u64())};
    case kFloat:
      return Item{std::bit_cast<double>(r.u64())};
    case kStr:
      return Item{r.str32()};
    case kBytes:
      return Item{Bytes(r.str32())};
    default:
      return std::nullopt;
  }
}

bool is(const Frame& f, Op op) noexcept { return f.op == static_cast<std::uint8_t>(op); }

}  // namespace

// ---------------------------------------------------------------- framing

FrameHead peek_frame(std::span<const std::uint8_t> buf, std::size_t max_length) noexcept {
  if (buf.size() < kLengthSize) return {};
  std::uint32_t n = 0;
  for (std::size_t i = 0; i < kLengthSize; ++i) n |= static_cast<std::uint32_t>(buf[i]) << (8 * i);
  if (n == 0) return {FrameStatus::empty, 0};
  if (n > max_length) return {FrameStatus::too_large, 0};
  const std::size_t total = kLengthSize + static_cast<std::size_t>(n);
  if (buf.size() < total) return {FrameStatus::incomplete, total};
  return {FrameStatus::ready, total};
}

Frame frame_at(std::span<const std::uint8_t> buf, std::size_t total) noexcept {
  return {buf[kLengthSize], buf.subspan(kLengthSize + 1, total - kLengthSize - 1)};
}

// ---------------------------------------------------------------- encoders

std::vector<std::uint8_t> encode(const Hello& m) {
  Writer w(Op::hello);
  w.u32(m.magic);
  w.u16(m.version);
  w.u16(0);
  w.bytes(m.nonce.data(), m.nonce.size());
  return std::move(w).finish();
}

std::vector<std::uint8_t> encode(const Auth& m) {
  Writer w(Op::auth);
  w.u32(m.magic);
  w.u16(m.version);
  w.u16(0);
  w.bytes(m.nonce.data(), m.nonce.size());
  w.bytes(m.mac.data(), m.mac.size());
  return std::move(w).finish();
}

std::vector<std::uint8_t> encode(const AuthOk& m) {
  Writer w(Op::auth_ok);
  w.bytes(m.mac.data(), m.mac.size());
  return std::move(w).finish();
}

std::vector<std::uint8_t> encode(const AuthFail& m) {
  Writer w(Op::auth_fail);
  w.u32(m.reason);
  return std::move(w).finish();
}

std::vector<std::uint8_t> encode(const Request& m) {
  return std::visit(
      [](const auto& r) -> std::vector<std::uint8_t> {
        using R = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<R, CreateShm>) {
          Writer w(Op::create_shm);
          w.u64(r.size);
          return std::move(w).finish();
        } else if constexpr (std::is_same_v<R, CreateList>) {
          Writer w(Op::create_list);
          w.u32(static_cast<std::uint32_t>(r.items.size()));
          for (const Item& item : r.items) put_item(w, item);
          return std::move(w).finish();
        } else if constexpr (std::is_same_v<R, CreateValue>) {
          Writer w(Op::create_value);
          w.u8(static_cast<std::uint8_t>(r.typecode));
          w.str32(r.initial);
          return std::move(w).finish();
        } else if constexpr (std::is_same_v<R, CreateArray>) {
          Writer w(Op::create_array);
          w.u8(static_cast<std::uint8_t>(r.typecode));
          w.u64(r.length);
          w.str32(r.initial);
          return std::move(w).finish();
        } else if constexpr (std::is_same_v<R, ListBlocks>) {
          return Writer(Op::list).finish();
        } else if constexpr (std::is_same_v<R, Release>) {
          Writer w(Op::release);
          w.str16(r.name);
          return std::move(w).finish();
        } else {
          static_assert(std::is_same_v<R, Shutdown>);
          return Writer(Op::shutdown).finish();
        }
      },
      m);
}

std::vector<std::uint8_t> encode(const Reply& m) {
  return std::visit(
      [](const auto& r) -> std::vector<std::uint8_t> {
        using R = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<R, NameReply>) {
          Writer w(Op::reply_name);
          w.str16(r.name);
          return std::move(w).finish();
        } else if constexpr (std::is_same_v<R, BlocksReply>) {
          Writer w(Op::reply_blocks);
          w.u32(static_cast<std::uint32_t>(r.blocks.size()));
          for (const ManagedBlock& b : r.blocks) {
            w.u8(static_cast<std::uint8_t>(b.kind));
            w.u8(static_cast<std::uint8_t>(b.typecode));
            w.u64(b.size);
            w.str16(b.name);
          }
          return std::move(w).finish();
        } else if constexpr (std::is_same_v<R, DoneReply>) {
          return Writer(Op::reply_done).finish();
        } else {
          static_assert(std::is_same_v<R, ErrorReply>);
          Writer w(Op::reply_error);
          w.u8(static_cast<std::uint8_t>(r.category));
          w.u32(static_cast<std::uint32_t>(r.err));
          w.str16(std::string_view(r.message).substr(0, kMaxMessage));
          return std::move(w).finish();
        }
      },
      m);
}

// ---------------------------------------------------------------- decoders

std::optional<Hello> decode_hello(const Frame& f) {
  if (!is(f, Op::hello)) return std::nullopt;
  Reader r(f.body);
  Hello m;
  m.magic = r.u32();
  m.version = r.u16();
  (void)r.u16();  // reserved: ignored, for later versions
  m.nonce = r.array<kNonceSize>();
  if (!r.done()) return std::nullopt;
  return m;
}

std::optional<Auth> decode_auth(const Frame& f) {
  if (!is(f, Op::auth)) return std::nullopt;
  Reader r(f.body);
  Auth m;
  m.magic = r.u32();
  m.version = r.u16();
  (void)r.u16();
  m.nonce = r.array<kNonceSize>();
  m.mac = r.array<kMacSize>();
  if (!r.done()) return std::nullopt;
  return m;
}

std::optional<AuthOk> decode_auth_ok(const Frame& f) {
  if (!is(f, Op::auth_ok)) return std::nullopt;
  Reader r(f.body);
  AuthOk m;
  m.mac = r.array<kMacSize>();
  if (!r.done()) return std::nullopt;
  return m;
}

std::optional<AuthFail> decode_auth_fail(const Frame& f) {
  if (!is(f, Op::auth_fail)) return std::nullopt;
  Reader r(f.body);
  AuthFail m;
  m.reason = r.u32();
  if (!r.done()) return std::nullopt;
  return m;
}

std::optional<Request> decode_request(const Frame& f) {
  Reader r(f.body);
  Request out;
  switch (static_cast<Op>(f.op)) {
    case Op::create_shm:
      out = CreateShm{r.u64()};
      break;
    case Op::create_list: {
      const std::uint32_t count = r.u32();
      // Every item takes at least its tag byte: a count beyond the bytes
      // left is malformed, and nothing is reserved before this check.
      if (r.failed() || count > r.left() || count > kMaxListItems) return std::nullopt;
      CreateList m;
      m.items.reserve(count);
      for (std::uint32_t i = 0; i < count; ++i) {
        auto item = get_item(r);
        if (!item || r.failed()) return std::nullopt;
        m.items.push_back(std::move(*item));
      }
      out = std::move(m);
      break;
    }
    case Op::create_value: {
      CreateValue m;
      m.typecode = static_cast<char>(r.u8());
      m.initial = r.str32();
      out = std::move(m);
      break;
    }
    case Op::create_array: {
      CreateArray m;
      m.typecode = static_cast<char>(r.u8());
      m.length = r.u64();
      m.initial = r.str32();
      out = std::move(m);
      break;
    }
    case Op::list:
      out = ListBlocks{};
      break;
    case Op::release: {
      Release m;
      m.name = r.str16();
      if (!valid_name(m.name)) return std::nullopt;
      out = std::move(m);
      break;
    }
    case Op::shutdown:
      out = Shutdown{};
      break;
    default:
      return std::nullopt;
  }
  if (!r.done()) return std::nullopt;
  return out;
}

std::optional<Reply> decode_reply(const Frame& f) {
  Reader r(f.body);
  Reply out;
  switch (static_cast<Op>(f.op)) {
    case Op::reply_name: {
      NameReply m;
      m.name = r.str16();
      if (!valid_name(m.name)) return std::nullopt;
      out = std::move(m);
      break;
    }
    case Op::reply_blocks: {
      const std::uint32_t count = r.u32();
      // Each entry is at least 13 bytes (kind, typecode, size, name length).
      if (r.failed() || count > r.left() / 13) return std::nullopt;
      BlocksReply m;
      m.blocks.reserve(count);
      for (std::uint32_t i = 0; i < count; ++i) {
        ManagedBlock b;
        const std::uint8_t kind = r.u8();
        if (kind < 1 || kind > 4) return std::nullopt;
        b.kind = static_cast<ManagedKind>(kind);
        b.typecode = static_cast<char>(r.u8());
        b.size = r.u64();
        b.name = r.str16();
        if (r.failed() || !valid_name(b.name)) return std::nullopt;
        const bool typed = b.kind == ManagedKind::value || b.kind == ManagedKind::array;
        if (typed ? !valid_typecode(b.typecode) : b.typecode != 0) return std::nullopt;
        m.blocks.push_back(std::move(b));
      }
      out = std::move(m);
      break;
    }
    case Op::reply_done:
      out = DoneReply{};
      break;
    case Op::reply_error: {
      ErrorReply m;
      const std::uint8_t cat = r.u8();
      if (cat != 1 && cat != 2) return std::nullopt;
      m.category = static_cast<ErrorCategory>(cat);
      m.err = static_cast<std::int32_t>(r.u32());
      m.message = r.str16();
      if (m.message.size() > kMaxMessage) return std::nullopt;
      out = std::move(m);
      break;
    }
    default:
      return std::nullopt;
  }
  if (!r.done()) return std::nullopt;
  return out;
}

// ---------------------------------------------------------------- helpers

std::size_t typecode_size(char typecode) noexcept {
  switch (typecode) {
    case 'c':
    case 'b':
    case 'B':
      return 1;
    case 'h':
    case 'H':
      return 2;
    case 'i':
    case 'I':
    case 'f':
      return 4;
    case 'l':
    case 'L':
    case 'q':
    case 'Q':
    case 'd':
      return 8;
    default:
      return 0;
  }
}

bool valid_typecode(char typecode) noexcept { return typecode_size(typecode) != 0; }

bool valid_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= kMaxNameLength &&
         name.find_first_of(std::string_view("/\0", 2)) == std::string_view::npos;
}

std::vector<std::uint8_t> mac_input(bool server_side, const Nonce& ns, const Nonce& nc) {
  const std::string_view label =
      server_side ? std::string_view("shmkit-manager/1 server") : std::string_view("shmkit-manager/1 client");
  std::vector<std::uint8_t> v(label.begin(), label.end());
  v.insert(v.end(), ns.begin(), ns.end());
  v.insert(v.end(), nc.begin(), nc.end());
  return v;
}

}  // namespace shmkit::detail::proto
