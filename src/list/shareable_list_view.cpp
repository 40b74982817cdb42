// src/list/shareable_list_view.cpp — the CPython ShareableList byte layout
// (shareable_list_view.hpp): formats, planning and writing a new list, and
// the checked view of an existing one that ShareableList and the fuzz target
// tests/fuzz/fuzz_shareable_list.cpp drive. No system calls.
#include "list/shareable_list_view.hpp"

#include <bit>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "platform/platform.hpp"
#include "shmkit/detail/fault.hpp"
#include "shmkit/shareable_list.hpp"

namespace shmkit {
namespace detail {
namespace {

// An 8-byte format field as one integer, for a fast compare on the hot path
// (both sides are memcpy'd bytes, so byte order does not matter).
constexpr std::uint64_t pack_field(std::string_view s) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[i]))
         << (std::endian::native == std::endian::little ? 8 * i : 8 * (7 - i));
  }
  return v;
}
constexpr std::uint64_t kFieldInt = pack_field("q");
constexpr std::uint64_t kFieldFloat = pack_field("d");
constexpr std::uint64_t kFieldBool = pack_field("xxxxxxx?");
constexpr std::uint64_t kFieldNone = pack_field("xxxxxx?x");

template <class T>
T load(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void store(std::byte* p, T v) noexcept {
  std::memcpy(p, &v, sizeof v);
}

// The format field as text for a message: printable ASCII kept, the rest
// escaped, trailing NULs dropped.
std::string field_text(const std::byte* field) {
  std::size_t n = kFormatField;
  while (n > 0 && field[n - 1] == std::byte{0}) --n;
  std::string s = "'";
  for (std::size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(field[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      s += static_cast<char>(c);
    } else {
      s += "\\x" + platform::hex(&c, 1);
    }
  }
  s += '\'';
  return s;
}

std::string_view value_bytes(const Item& v) noexcept {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* b = std::get_if<Bytes>(&v)) return b->view();
  return {};
}
bool is_sequence(const Item& v) noexcept {
  return std::holds_alternative<std::string>(v) || std::holds_alternative<Bytes>(v);
}

// Appends `n` in decimal to out[pos...], returning the new position or
// kFormatField + 1 if it would not fit 8 characters.
std::size_t put_number(char (&out)[kFormatField], std::size_t pos, std::size_t n) noexcept {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, n);
  auto len = static_cast<std::size_t>(r.ptr - buf);
  if (pos + len > kFormatField) return kFormatField + 1;
  std::memcpy(out + pos, buf, len);
  return pos + len;
}
// Writes "<a>s" or "<a>s<b>x" into out (NUL padded); false if over 8 chars.
bool make_s_format(char (&out)[kFormatField], std::size_t a, const std::size_t* pad) noexcept {
  std::memset(out, 0, kFormatField);
  std::size_t pos = put_number(out, 0, a);
  if (pos >= kFormatField) return false;
  out[pos++] = 's';
  if (pad == nullptr) return true;
  pos = put_number(out, pos, *pad);
  if (pos >= kFormatField) return false;
  out[pos++] = 'x';
  return true;
}

void fixed_format(const Item& v, char (&out)[kFormatField], Code& code) noexcept {
  std::memset(out, 0, kFormatField);
  const char* f = "q";
  code = Code::kPlain;
  switch (v.index()) {
    case 0:
      f = "xxxxxx?x";
      code = Code::kNone;
      break;
    case 1:
      f = "xxxxxxx?";
      break;
    case 2:
      f = "q";
      break;
    case 3:
      f = "d";
      break;
    default:
      break;
  }
  std::memcpy(out, f, std::strlen(f));
}

// Writes a fixed-size value's 8 bytes at `p` as struct.pack_into does.
void store_fixed(std::byte* p, const Item& v) noexcept {
  switch (v.index()) {
    case 0:
      store<std::uint64_t>(p, 0);
      break;  // "xxxxxx?x" packing False
    case 1:
      store<std::uint64_t>(p, 0);
      p[7] = std::get<bool>(v) ? std::byte{1} : std::byte{0};
      break;
    case 2:
      store(p, std::get<std::int64_t>(v));
      break;
    case 3:
      store(p, std::get<double>(v));
      break;
    default:
      break;
  }
}

std::string block_prefix(std::string_view name) {
  return "shmkit: ShareableList " + platform::quoted(name) + ": ";
}

}  // namespace

inline std::optional<SlotFormat> parse_format_inline(const std::byte* field) noexcept {
  std::uint64_t word = load<std::uint64_t>(field);
  if (word == kFieldInt) return SlotFormat{SlotKind::kInt, 8, 8};
  if (word == kFieldFloat) return SlotFormat{SlotKind::kFloat, 8, 8};
  if (word == kFieldBool) return SlotFormat{SlotKind::kBool, 8, 8};
  if (word == kFieldNone) return SlotFormat{SlotKind::kNone, 8, 8};
  std::size_t n = kFormatField;
  while (n > 0 && field[n - 1] == std::byte{0}) --n;
  auto at = [&](std::size_t i) { return static_cast<char>(field[i]); };
  auto digit = [&](std::size_t i) { return at(i) >= '0' && at(i) <= '9'; };
  std::size_t pos = 0;
  std::size_t length = 0;
  if (pos >= n || !digit(pos)) return std::nullopt;
  while (pos < n && digit(pos)) length = length * 10 + static_cast<std::size_t>(at(pos++) - '0');
  if (pos >= n || at(pos) != 's') return std::nullopt;
  ++pos;
  const auto length32 = static_cast<std::uint32_t>(length);
  if (pos == n) return SlotFormat{SlotKind::kStr, length32, length32};
  std::size_t pad = 1;  // "x" without a count is one pad byte, as in struct
  if (digit(pos)) {
    pad = 0;
    while (pos < n && digit(pos)) pad = pad * 10 + static_cast<std::size_t>(at(pos++) - '0');
  }
  if (pos + 1 != n || at(pos) != 'x') return std::nullopt;
  return SlotFormat{SlotKind::kStrExact, length32, static_cast<std::uint32_t>(length + pad)};
}

std::optional<SlotFormat> parse_format(const std::byte* field) noexcept { return parse_format_inline(field); }

bool valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    // Skip ASCII 8 bytes at a time.
    if (end - p >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        p += 8;
        continue;
      }
    }
    unsigned c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    std::size_t need;
    unsigned lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c == 0xe0) lo = 0xa0;  // no overlongs
      if (c == 0xed) hi = 0x9f;  // no surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c == 0xf0) lo = 0x90;  // no overlongs
      if (c == 0xf4) hi = 0x8f;  // nothing above U+10FFFF
    } else {
      return false;
    }
    if (static_cast<std::size_t>(end - p) <= need) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (std::size_t k = 2; k <= need; ++k) {
      if ((p[k] & 0xc0) != 0x80) return false;
    }
    p += need + 1;
  }
  return true;
}

bool str_format(std::string_view value, std::size_t slot, char (&out)[kFormatField]) noexcept {
  if (!value.empty() && value.back() == '\0') {
    std::size_t pad = slot - value.size();
    if (make_s_format(out, value.size(), &pad)) return true;
    pad = 0;
    if (make_s_format(out, value.size(), &pad)) return true;
    // Does not fit 8 characters: stored as CPython stores it (lossy).
  }
  return make_s_format(out, slot, nullptr);
}

ListPlan plan_list(const std::vector<Item>& items, std::string_view block_name) {
  ListPlan plan;
  plan.entries.resize(items.size());
  std::size_t data = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    auto& e = plan.entries[i];
    const Item& v = items[i];
    if (is_sequence(v)) {
      std::string_view bytes = value_bytes(v);
      const bool is_str = std::holds_alternative<std::string>(v);
      if (bytes.size() > kMaxValueBytes) {
        throw std::invalid_argument(block_prefix(block_name) + "item " + std::to_string(i) + ": a " +
                                    (is_str ? "str" : "bytes") + " of " + std::to_string(bytes.size()) +
                                    " bytes needs a format longer than 8 characters (at most " +
                                    std::to_string(kMaxValueBytes) + " bytes, format \"9999992s\")");
      }
      if (is_str && !valid_utf8(bytes)) {
        throw std::invalid_argument(block_prefix(block_name) + "item " + std::to_string(i) +
                                    ": str is not valid UTF-8");
      }
      e.slot = kAlignment * (bytes.size() / kAlignment + 1);
      if (is_str) {
        // CPython sizes a str slot by characters (len(item)). Where the UTF-8
        // bytes fit that slot, take it, so the block is CPython's byte for
        // byte; only where they do not (gh-88336: CPython would truncate)
        // is the slot sized by bytes.
        std::size_t chars = 0;
        for (char c : bytes) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
        const std::size_t cpython_slot = kAlignment * (chars / kAlignment + 1);
        if (bytes.size() <= cpython_slot) e.slot = cpython_slot;
      }
      e.code = is_str ? Code::kStr : Code::kBytes;
      (void)str_format(bytes, e.slot, e.format);  // always fits: slot <= 9999992
    } else {
      e.slot = kAlignment;
      fixed_format(v, e.format, e.code);
    }
    data += e.slot;
  }
  const std::size_t n = items.size();
  plan.block_size = 8 + 8 * (n + 1) + data + kFormatField * n + n;
  return plan;
}

void write_list(std::span<std::byte> block, const std::vector<Item>& items, const ListPlan& plan) {
  const std::size_t n = items.size();
  std::byte* base = block.data();
  store<std::int64_t>(base, static_cast<std::int64_t>(n));
  const std::size_t data_start = 8 * (n + 2);
  std::size_t offset = 0;
  store<std::int64_t>(base + 8, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& e = plan.entries[i];
    std::byte* p = base + data_start + offset;
    if (is_sequence(items[i])) {
      std::string_view bytes = value_bytes(items[i]);
      if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());
      std::memset(p + bytes.size(), 0, e.slot - bytes.size());
    } else {
      store_fixed(p, items[i]);
    }
    offset += e.slot;
    store<std::int64_t>(base + 8 * (i + 2), static_cast<std::int64_t>(offset));
  }
  std::byte* formats = base + data_start + offset;
  std::byte* codes = formats + kFormatField * n;
  for (std::size_t i = 0; i < n; ++i) {
    std::memcpy(formats + kFormatField * i, plan.entries[i].format, kFormatField);
    codes[i] = static_cast<std::byte>(plan.entries[i].code);
  }
}

ShareableListView::ShareableListView(std::span<std::byte> block, std::string name)
    : base_(block.data()), block_size_(block.size()), name_(std::move(name)) {
  if (block_size_ < 16) {
    fail("the block has " + std::to_string(block_size_) +
         " bytes, fewer than the 16 of an empty list (item count and one offset)");
  }
  const auto n = load<std::int64_t>(base_);
  if (n < 0) fail("item count " + std::to_string(n) + " is negative");
  // 16 bytes of header, then 8 (offset) + 8 (format) + 1 (code) per item.
  const std::size_t max_items = (block_size_ - 16) / 17;
  if (static_cast<std::uint64_t>(n) > max_items) {
    fail("item count " + std::to_string(n) + " does not fit a block of " + std::to_string(block_size_) +
         " bytes (at most " + std::to_string(max_items) + ")");
  }
  count_ = static_cast<std::size_t>(n);
  data_start_ = 8 * (count_ + 2);
  const std::size_t data_max = block_size_ - data_start_ - 9 * count_;
  offsets_.resize(count_ + 1);
  std::uint64_t previous = 0;
  for (std::size_t k = 0; k <= count_; ++k) {
    const auto o = load<std::int64_t>(base_ + 8 * (k + 1));
    const std::string field = k < count_
                                  ? "offset of item " + std::to_string(k)
                                  : std::string("end offset (offsets[") + std::to_string(count_) + "])";
    if (o < 0) fail(field + " is negative (" + std::to_string(o) + ")");
    const auto u = static_cast<std::uint64_t>(o);
    if (u < previous) {
      fail(field + " (" + std::to_string(u) + ") is below the previous offset (" + std::to_string(previous) +
           ")");
    }
    if (u > data_max) {
      fail(field + " (" + std::to_string(u) + ") is beyond the data area, which can hold " +
           std::to_string(data_max) + " bytes in a block of " + std::to_string(block_size_));
    }
    offsets_[k] = u;
    previous = u;
  }
  formats_start_ = data_start_ + offsets_[count_];
  codes_start_ = formats_start_ + kFormatField * count_;
  // Items' formats and codes are not checked here but on every access: one
  // torn item (a writer killed inside set()) must not make the whole list
  // unattachable; its get() fails and a set() rewrites it.
}

void ShareableListView::fail(const std::string& what) const {
  throw std::invalid_argument(block_prefix(name_) + what);
}

// The error paths of check_item, out of line so that the check itself stays
// a few instructions.
[[gnu::cold, gnu::noinline]] void ShareableListView::fail_item(std::size_t i, int what) const {
  const std::byte* field = base_ + formats_start_ + kFormatField * i;
  const auto c = static_cast<std::uint8_t>(base_[codes_start_ + i]);
  if (what == 0) {
    fail("format of item " + std::to_string(i) + " (" + field_text(field) +
         ") is not one a ShareableList writes");
  }
  if (what == 1) {
    fail("back-transform code of item " + std::to_string(i) + " (" + std::to_string(c) +
         ") does not go with its format " + field_text(field) +
         " (0: int/float/bool, 1: str, 2: bytes, 3: None)");
  }
  const auto f = parse_format(field);
  fail("format of item " + std::to_string(i) + " (" + field_text(field) + ") needs " +
       std::to_string(f ? f->footprint : 0) + " bytes but its slot has " + std::to_string(slot_size(i)));
}

inline SlotFormat ShareableListView::check_item(std::size_t i, Code* code) const {
  const auto f = parse_format_inline(base_ + formats_start_ + kFormatField * i);
  if (!f) fail_item(i, 0);
  const auto c = static_cast<std::uint8_t>(base_[codes_start_ + i]);
  bool match = false;
  switch (f->kind) {
    case SlotKind::kInt:
    case SlotKind::kFloat:
    case SlotKind::kBool:
      match = c == 0;
      break;
    case SlotKind::kNone:
      match = c == 3;
      break;
    case SlotKind::kStr:
    case SlotKind::kStrExact:
      match = c == 1 || c == 2;
      break;
  }
  if (!match) fail_item(i, 1);
  if (f->footprint > slot_size(i)) fail_item(i, 2);
  *code = static_cast<Code>(c);
  return *f;
}

Item ShareableListView::get(std::size_t i) const {
  Item out;
  read(i, out);
  return out;
}

void ShareableListView::read(std::size_t i, Item& out) const {
  Code code;
  const SlotFormat f = check_item(i, &code);
  const std::byte* p = base_ + data_start_ + offsets_[i];
  switch (f.kind) {
    case SlotKind::kInt:
      out.emplace<std::int64_t>(load<std::int64_t>(p));
      return;
    case SlotKind::kFloat:
      out.emplace<double>(load<double>(p));
      return;
    case SlotKind::kBool:
      out.emplace<bool>(p[7] != std::byte{0});
      return;
    case SlotKind::kNone:
      out.emplace<std::monostate>();
      return;
    case SlotKind::kStr:
    case SlotKind::kStrExact:
      break;
  }
  std::size_t len = f.length;
  if (f.kind == SlotKind::kStr) {
    while (len > 0 && p[len - 1] == std::byte{0}) --len;  // CPython's rstrip(b"\0")
  }
  std::string_view bytes(reinterpret_cast<const char*>(p), len);
  if (code == Code::kBytes) {
    if (auto* b = std::get_if<Bytes>(&out)) {
      b->assign(bytes);  // reuses the capacity
    } else {
      out.emplace<Bytes>(bytes);
    }
    return;
  }
  if (!valid_utf8(bytes)) {
    fail("item " + std::to_string(i) + " is a str whose " + std::to_string(len) +
         " bytes are not valid UTF-8 (CPython raises UnicodeDecodeError; gh-88336 truncation?)");
  }
  if (auto* s = std::get_if<std::string>(&out)) {
    s->assign(bytes);  // reuses the capacity
  } else {
    out.emplace<std::string>(bytes);
  }
}

void ShareableListView::set(std::size_t i, const Item& value) {
  const std::size_t slot = slot_size(i);
  std::byte* p = base_ + data_start_ + offsets_[i];
  char format[kFormatField];
  Code code;
  if (is_sequence(value)) {
    std::string_view bytes = value_bytes(value);
    const bool is_str = std::holds_alternative<std::string>(value);
    if (bytes.size() > slot) {
      fail(std::string("item ") + std::to_string(i) + ": bytes/str item exceeds available storage (" +
           (is_str ? "a str" : "a bytes") + " of " + std::to_string(bytes.size()) + " bytes, the slot has " +
           std::to_string(slot) + ")");
    }
    if (is_str && !valid_utf8(bytes)) fail("item " + std::to_string(i) + ": str is not valid UTF-8");
    if (!str_format(bytes, slot, format)) {
      fail("item " + std::to_string(i) + ": its slot of " + std::to_string(slot) +
           " bytes cannot be described by a format of 8 characters");
    }
    code = is_str ? Code::kStr : Code::kBytes;
    if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());
    std::memset(p + bytes.size(), 0, slot - bytes.size());
  } else {
    if (slot < kAlignment) {
      fail("item " + std::to_string(i) + ": its slot of " + std::to_string(slot) +
           " bytes cannot hold an 8-byte value");
    }
    fixed_format(value, format, code);
    store_fixed(p, value);
  }
  SHMKIT_FAULT_POINT(list_set_data);
  std::memcpy(base_ + formats_start_ + kFormatField * i, format, kFormatField);
  SHMKIT_FAULT_POINT(list_set_format);
  base_[codes_start_ + i] = static_cast<std::byte>(code);
}

std::string ShareableListView::format(std::size_t i) const {
  Code code;
  (void)check_item(i, &code);
  const auto* field = reinterpret_cast<const char*>(base_ + formats_start_ + kFormatField * i);
  std::size_t n = kFormatField;
  while (n > 0 && field[n - 1] == '\0') --n;
  return std::string(field, n);
}

}  // namespace detail
}  // namespace shmkit
