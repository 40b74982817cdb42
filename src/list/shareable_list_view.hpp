// src/list/shareable_list_view.hpp — the CPython ShareableList layout over a plain
// byte span: planning and writing a new list, and parsing/validating/
// accessing an existing one. Internal (ShareableList and the fuzz target
// use it); no system calls, so the fuzzer can drive it on arbitrary bytes.
//
// Every count, offset, format and code read from the span is untrusted:
// the constructor checks the count and all offsets against the span's size
// and every item's format and code; get/set/format re-check the item they
// touch. A violation throws std::invalid_argument naming the block and the
// field. No access leaves [span.begin, span.end), and reads and writes of
// an item stay inside that item's slot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shmkit/shareable_list.hpp"

namespace shmkit::detail {

// Back-transform codes, as CPython's _back_transforms_mapping.
enum class Code : std::uint8_t { kPlain = 0, kStr = 1, kBytes = 2, kNone = 3 };

enum class SlotKind : std::uint8_t {
  kInt,       // "q"
  kFloat,     // "d"
  kBool,      // "xxxxxxx?": the value is byte 7
  kNone,      // "xxxxxx?x"
  kStr,       // "<n>s": n bytes, trailing NULs stripped on reading (CPython)
  kStrExact,  // "<n>s<p>x": n bytes exactly, then p pad bytes (shmkit)
};

// 12 bytes, so that it comes back from parse_format in registers. Counts
// have at most 7 digits (8 characters in all), so 32 bits hold them.
struct SlotFormat {
  SlotKind kind;
  std::uint32_t length;     // bytes of value for kStr/kStrExact, else 8
  std::uint32_t footprint;  // struct.calcsize of the format
};

inline constexpr std::size_t kFormatField = 8;  // bytes per format string
inline constexpr std::size_t kAlignment = 8;    // CPython's _alignment
// The longest str/bytes whose "<n>s" fits 8 characters: n = 9999992.
inline constexpr std::size_t kMaxValueBytes = 9'999'991;

// Parses one 8-byte format field (NUL padded, as CPython's "8s"). Accepts
// exactly the formats CPython and shmkit write: "q", "d", "xxxxxxx?",
// "xxxxxx?x", "<n>s", "<n>s<p>x" (decimal counts, no signs or spaces).
std::optional<SlotFormat> parse_format(const std::byte* field) noexcept;

// True if `s` is strict UTF-8 as CPython's decoder accepts it (no
// overlongs, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view s) noexcept;

// The format shmkit writes for a str/bytes of `length` bytes in a slot of
// `slot` bytes: "<slot>s", or "<length>s<pad>x" when the value ends in NUL
// (see the header). Returns false if no format fits 8 characters.
bool str_format(std::string_view value, std::size_t slot, char (&out)[kFormatField]) noexcept;

// What create() writes, computed (and every item checked) before any block
// exists.
struct ListPlan {
  struct Entry {
    char format[kFormatField];
    Code code;
    std::size_t slot;  // bytes of the item's slot
  };
  std::vector<Entry> entries;
  std::size_t block_size = 0;  // bytes needed (CPython's requested_size)
};
// Throws std::invalid_argument (naming `block_name`) for a value CPython's
// layout cannot hold: a str/bytes over kMaxValueBytes, a str not UTF-8.
ListPlan plan_list(const std::vector<Item>& items, std::string_view block_name);
// Writes the whole list into `block` (at least plan.block_size bytes).
void write_list(std::span<std::byte> block, const std::vector<Item>& items, const ListPlan& plan);

class ShareableListView {
 public:
  ShareableListView() = default;
  // Validates the layout in `block` (see the file comment); `name` is used
  // in messages only.
  ShareableListView(std::span<std::byte> block, std::string name);

  std::size_t size() const noexcept { return count_; }
  const std::string& name() const noexcept { return name_; }
  std::size_t slot_size(std::size_t i) const noexcept { return offsets_[i + 1] - offsets_[i]; }

  // i < size() (the caller normalises and range-checks indices).
  Item get(std::size_t i) const;
  // As get(), into `out`, reusing its string's capacity if it holds the
  // same type. `out` is unchanged if this throws std::invalid_argument.
  void read(std::size_t i, Item& out) const;
  void set(std::size_t i, const Item& value);
  std::string format(std::size_t i) const;

 private:
  SlotFormat check_item(std::size_t i, Code* code) const;
  [[noreturn]] void fail(const std::string& what) const;
  // what: 0 unknown format, 1 code does not match, 2 format exceeds slot.
  [[noreturn]] void fail_item(std::size_t i, int what) const;

  std::byte* base_ = nullptr;
  std::size_t block_size_ = 0;
  std::size_t count_ = 0;
  std::size_t data_start_ = 0;          // 8 * (count + 2)
  std::size_t formats_start_ = 0;       // data_start + offsets[count]
  std::size_t codes_start_ = 0;         // formats_start + 8 * count
  std::vector<std::uint64_t> offsets_;  // count + 1, validated, cached
  std::string name_;
};

}  // namespace shmkit::detail
