// Tests for shmkit::ShareableList: CPython's documentation examples, real
// processes, interop with the machine's python3 in both directions (peer:
// tests/interop/shareable_list_peer.py), and corrupted blocks.
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <ranges>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include "shmkit/shareable_list.hpp"
#include "shmkit/shared_memory.hpp"
#include "test_support.hpp"

namespace shmkit::test {
namespace {

using namespace shmkit::literals;

static_assert(std::forward_iterator<ShareableList::const_iterator>);
static_assert(std::ranges::forward_range<const ShareableList>);
static_assert(!std::is_copy_constructible_v<ShareableList>);
static_assert(std::is_nothrow_move_constructible_v<ShareableList>);

// Unlinks a block at scope exit (the leak check fails the run otherwise).
struct Unlinker {
  std::string name;
  ~Unlinker() {
    try {
      if (!name.empty()) SharedMemory::unlink(name);
    } catch (...) {
    }
  }
};

// ------------------------------------------------------------ the corpus
// Keep in step with corpus()/big()/largest() in shareable_list_peer.py.

std::vector<Item> corpus() {
  return {
      std::string(""),
      Bytes(""),
      std::string("hello, world"),
      std::string("h\u00e9llo w\u00f6rld \u2014 \u00e7a va?"),
      std::string("\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8"),
      std::string("emoji \U0001F600\U0001F389 done"),
      "a\0b\0c"_b,
      "abc\0\0"_b,
      std::string("tail\0", 5),
      "\0"_b,
      std::numeric_limits<std::int64_t>::min(),
      std::numeric_limits<std::int64_t>::max(),
      std::int64_t{0},
      std::int64_t{-1},
      std::numeric_limits<double>::quiet_NaN(),
      std::numeric_limits<double>::infinity(),
      -std::numeric_limits<double>::infinity(),
      -0.0,
      -273.154,
      true,
      false,
      None,
  };
}

std::vector<Item> big() {
  std::vector<Item> out;
  for (std::int64_t i = 0; i < 10'000; ++i) {
    switch (i % 6) {
      case 0:
        out.emplace_back(i * 7919 - 3);
        break;
      case 1:
        out.emplace_back(static_cast<double>(i) / 3.0);
        break;
      case 2:
        out.emplace_back("s" + std::to_string(i) + "\u00e9");
        break;
      case 3:
        out.emplace_back(Bytes("b" + std::to_string(i) + std::string("\0x", 2)));
        break;
      case 4:
        out.emplace_back(i % 4 == 0);
        break;
      default:
        out.emplace_back(None);
        break;
    }
  }
  return out;
}

constexpr std::size_t kLargest = 9'999'991;

std::vector<Item> largest() {
  std::string s(kLargest, '\0');
  for (std::size_t i = 0; i < kLargest; ++i) s[i] = static_cast<char>('a' + i % 26);
  return {std::move(s)};
}

std::vector<Item> build(const std::string& kind) {
  if (kind == "corpus") return corpus();
  if (kind == "big") return big();
  if (kind == "largest") return largest();
  return {};
}

// What CPython reads back: str/bytes without trailing NULs.
Item stripped(const Item& v) {
  auto strip = [](std::string s) {
    while (!s.empty() && s.back() == '\0') s.pop_back();
    return s;
  };
  if (const auto* s = std::get_if<std::string>(&v)) return strip(*s);
  if (const auto* b = std::get_if<Bytes>(&v)) return Bytes(strip(b->str()));
  return v;
}

std::string fixed_format(const Item& v) {
  switch (v.index()) {
    case 0:
      return "xxxxxx?x";
    case 1:
      return "xxxxxxx?";
    case 2:
      return "q";
    case 3:
      return "d";
    default:
      return "";
  }
}
std::string_view bytes_of(const Item& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return std::get<Bytes>(v).view();
}
// CPython's format for a new item (slots sized by bytes, as shmkit does).
std::string cpython_format(const Item& v) {
  if (v.index() < 4) return fixed_format(v);
  return std::to_string(8 * (bytes_of(v).size() / 8 + 1)) + "s";
}
// shmkit's: CPython's, except values ending in NUL ("<len>s<pad>x") and a
// str whose UTF-8 bytes do not fit its character-sized slot.
std::string shmkit_format(const Item& v) {
  if (v.index() < 4) return fixed_format(v);
  auto b = bytes_of(v);
  std::size_t slot = 8 * (b.size() / 8 + 1);
  if (v.index() == 4) {
    std::size_t chars = 0;
    for (char c : b) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    if (b.size() <= 8 * (chars / 8 + 1)) slot = 8 * (chars / 8 + 1);
  }
  if (!b.empty() && b.back() == '\0') {
    for (std::size_t pad : {slot - b.size(), std::size_t{0}}) {
      auto f = std::to_string(b.size()) + "s" + std::to_string(pad) + "x";
      if (f.size() <= 8) return f;
    }
  }
  return std::to_string(slot) + "s";
}
template <class F>
std::string joined(const std::vector<Item>& items, F f) {
  std::string s;
  for (const auto& v : items) s += f(v);
  return s;
}

// Same type and value; NaN equals NaN, -0.0 differs from 0.0.
bool same(const Item& a, const Item& b) {
  if (a.index() != b.index()) return false;
  if (const auto* x = std::get_if<double>(&a)) {
    double y = std::get<double>(b);
    if (std::isnan(*x) || std::isnan(y)) return std::isnan(*x) && std::isnan(y);
    return *x == y && std::signbit(*x) == std::signbit(y);
  }
  return a == b;
}

std::string show(const Item& v) {
  auto r = python_repr(v);
  return r.size() < 100 ? r : r.substr(0, 60) + "...(" + std::to_string(r.size()) + " chars)";
}

void expect_items(const ShareableList& sl, const std::vector<Item>& expected) {
  ASSERT_EQ(sl.size(), expected.size());
  std::size_t failures = 0;
  for (std::size_t i = 0; i < expected.size() && failures < 10; ++i) {
    Item got = sl.get(static_cast<std::ptrdiff_t>(i));
    if (!same(got, expected[i])) {
      ++failures;
      ADD_FAILURE() << "item " << i << ": got " << show(got) << ", expected " << show(expected[i]);
    }
  }
}

// The value of the line "key value" in the peer's output.
std::string line_value(const std::string& out, const std::string& key) {
  std::size_t pos = 0;
  while (pos < out.size()) {
    std::size_t end = out.find('\n', pos);
    if (end == std::string::npos) end = out.size();
    std::string_view line(out.data() + pos, end - pos);
    if (line.substr(0, key.size() + 1) == key + " ") return std::string(line.substr(key.size() + 1));
    pos = end + 1;
  }
  return "(no line '" + key + "')";
}

std::string describe(const ProcessResult& r) {
  return r.status.describe() + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

template <class E, class F>
std::string message_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

// ------------------------------------------------------------ CPython's documentation

TEST(ShareableList, DocExampleTypesAssignmentIndexCount) {
  Unlinker u{unique_name("doc")};
  auto a = ShareableList::create(u.name, {"howdy", "HoWdY"_b, -273.154, 100, None, true, 42});
  // [type(entry) for entry in a]: str, bytes, float, int, NoneType, bool, int
  std::vector<std::size_t> types;
  for (const Item& entry : a) types.push_back(entry.index());
  EXPECT_EQ(types, (std::vector<std::size_t>{4, 5, 3, 2, 0, 1, 2}));
  EXPECT_EQ(a.format(), "8s8sdqxxxxxx?xxxxxxxx?q");  // CPython 3.11's, for the same list
  EXPECT_EQ(a.shm().size(), 191u);                   // CPython's requested_size
  EXPECT_TRUE(same(a[2], -273.154));
  a.set(2, -78.5);
  EXPECT_TRUE(same(a[2], -78.5));
  a.set(2, "dry ice");  // changing data types is supported as well
  EXPECT_TRUE(same(a[2], std::string("dry ice")));
  EXPECT_EQ(a.format(), "8s8s8sqxxxxxx?xxxxxxxx?q");
  auto msg =
      message_of<std::invalid_argument>([&] { a.set(2, "larger than previously allocated storage space"); });
  EXPECT_NE(msg.find("exceeds available storage"), std::string::npos) << msg;
  EXPECT_NE(msg.find(u.name), std::string::npos) << msg;
  EXPECT_TRUE(same(a[2], std::string("dry ice")));
  EXPECT_EQ(a.size(), 7u);
  EXPECT_EQ(a.index(42), 6u);
  EXPECT_EQ(a.count("howdy"_b), 0u);
  EXPECT_EQ(a.count("HoWdY"_b), 1u);

  // The same block as CPython 3.11 leaves it after the same steps.
  const std::string cpython_hex =
      "070000000000000000000000000000000800000000000000100000000000000018000000000000002000000000"
      "000000280000000000000030000000000000003800000000000000686f776479000000486f5764590000006472"
      "7920696365006400000000000000000000000000000000000000000000012a0000000000000038730000000000"
      "003873000000000000387300000000000071000000000000007878787878783f78787878787878783f71000000"
      "0000000001020100030000";
  EXPECT_EQ(to_hex(a.shm().data(), a.shm().size()), cpython_hex);

  // And CPython reads it the same way.
  auto r = run_python("shareable_list_peer.py", {"dump", u.name});
  ASSERT_TRUE(r.status.ok()) << describe(r);
  EXPECT_EQ(line_value(r.out, "format"), "8s8s8sqxxxxxx?xxxxxxxx?q");
  EXPECT_EQ(line_value(r.out, "item0"), "'howdy'");
  EXPECT_EQ(line_value(r.out, "item1"), "b'HoWdY'");
  EXPECT_EQ(line_value(r.out, "item2"), "'dry ice'");
  EXPECT_EQ(line_value(r.out, "item4"), "None");
  EXPECT_EQ(line_value(r.out, "item5"), "True");
}

TEST(ShareableList, DocExampleRangeSeenFromSecondProcess) {
  // b = ShareableList(range(5)); c = ShareableList(name=b.shm.name) in a
  // second process; c[-1] = -999; b[-1] == -999.
  std::vector<Item> items;
  for (std::int64_t i = 0; i < 5; ++i) items.emplace_back(i);
  auto b = ShareableList::create(std::move(items));
  Unlinker u{b.name()};
  EXPECT_EQ(b.name().rfind("psm_", 0), 0u) << b.name();
  auto st = run_child([name = b.name()] {
    auto c = ShareableList::attach(name);
    if (c.size() != 5) return 1;
    for (std::int64_t i = 0; i < 5; ++i) {
      if (!same(c[i], i)) return 2;
    }
    c.set(-1, -999);
    return 0;
  });
  ASSERT_TRUE(st.ok()) << st.describe();
  EXPECT_TRUE(same(b[-1], std::int64_t{-999}));
  EXPECT_EQ(b.format(), "qqqqq");
}

// ------------------------------------------------------------ API behaviour

TEST(ShareableList, IndicesAndErrors) {
  Unlinker u{unique_name("idx")};
  auto sl = ShareableList::create(u.name, {1, 2.5, "three"});
  EXPECT_TRUE(same(sl[-1], std::string("three")));
  EXPECT_TRUE(same(sl[-3], std::int64_t{1}));
  EXPECT_THROW((void)sl[3], std::out_of_range);
  EXPECT_THROW((void)sl[-4], std::out_of_range);
  EXPECT_THROW(sl.set(3, 1), std::out_of_range);
  EXPECT_THROW(sl.set(-4, 1), std::out_of_range);
  EXPECT_THROW((void)sl.format(7), std::out_of_range);
  EXPECT_EQ(sl.format(-1), "8s");
  auto msg = message_of<std::invalid_argument>([&] { (void)sl.index("absent"); });
  EXPECT_NE(msg.find("'absent' not in this container"), std::string::npos) << msg;
  // An 8-byte value fills an 8-byte slot exactly (CPython allows it).
  sl.set(2, "12345678");
  EXPECT_TRUE(same(sl[2], std::string("12345678")));
  EXPECT_THROW(sl.set(2, "123456789"), std::invalid_argument);
  EXPECT_TRUE(same(sl[2], std::string("12345678")));
  // Type changes: str slot takes an int, then bytes again.
  sl.set(2, std::int64_t{7});
  EXPECT_EQ(sl.format(2), "q");
  sl.set(2, "ab"_b);
  EXPECT_EQ(sl.format(2), "8s");
  EXPECT_TRUE(same(sl[2], "ab"_b));
  // A fixed slot takes a str up to 8 bytes.
  sl.set(0, "xyz");
  EXPECT_EQ(sl.format(0), "8s");
  EXPECT_TRUE(same(sl[0], std::string("xyz")));
  sl.set(1, None);
  EXPECT_EQ(sl.format(), "8sxxxxxx?x8s");
  // Strings must be UTF-8.
  EXPECT_THROW(sl.set(0, std::string("\xff")), std::invalid_argument);
  EXPECT_THROW(sl.set(0, std::string("\xed\xa0\x80")), std::invalid_argument);  // a surrogate
  EXPECT_TRUE(same(sl[0], std::string("xyz")));
  EXPECT_THROW(ShareableList::create(unique_name("bad"), {std::string("\xc0\x80")}), std::invalid_argument);
  auto v = sl.to_vector();
  ASSERT_EQ(v.size(), 3u);
  EXPECT_TRUE(same(v[1], None));
  // get(index, out) reuses out's string, and leaves it alone on error.
  Item out = std::string(64, 'q');
  const char* storage = std::get<std::string>(out).data();
  sl.get(0, out);
  EXPECT_TRUE(same(out, std::string("xyz")));
  EXPECT_EQ(std::get<std::string>(out).data(), storage);
  EXPECT_THROW(sl.get(5, out), std::out_of_range);
  EXPECT_TRUE(same(out, std::string("xyz")));
  sl.get(1, out);
  EXPECT_TRUE(same(out, None));
  sl.get(2, out);
  EXPECT_TRUE(same(out, "ab"_b));
}

TEST(ShareableList, ReadOnlyAttachAndMove) {
  Unlinker u{unique_name("ro")};
  auto sl = ShareableList::create(u.name, {1, "two"});
  SharedMemory::Options ro;
  ro.read_only = true;
  auto reader = ShareableList::attach(SharedMemory::attach(u.name, ro));
  EXPECT_TRUE(same(reader[1], std::string("two")));
  EXPECT_THROW(reader.set(0, 5), std::logic_error);
  sl.set(0, 5);
  EXPECT_TRUE(same(reader[0], std::int64_t{5}));  // same bytes
  ShareableList moved = std::move(reader);
  EXPECT_EQ(moved.size(), 2u);
  EXPECT_EQ(moved.name(), u.name);
  ShareableList closed;
  EXPECT_EQ(closed.size(), 0u);
  EXPECT_THROW((void)closed[0], std::out_of_range);
  EXPECT_THROW((void)ShareableList::attach(SharedMemory{}), std::invalid_argument);
}

TEST(ShareableList, PythonEqualityInCountAndIndex) {
  Unlinker u{unique_name("eq")};
  auto sl =
      ShareableList::create(u.name, {true, 1, 1.0, "1", "1"_b, None, std::numeric_limits<double>::quiet_NaN(),
                                     std::int64_t{9007199254740993}, 9007199254740992.0});
  EXPECT_EQ(sl.count(1), 3u);  // True == 1 == 1.0
  EXPECT_EQ(sl.count(true), 3u);
  EXPECT_EQ(sl.index(1.0), 0u);
  EXPECT_EQ(sl.count("1"), 1u);  // str is not bytes
  EXPECT_EQ(sl.count("1"_b), 1u);
  EXPECT_EQ(sl.count(None), 1u);
  EXPECT_EQ(sl.count(std::numeric_limits<double>::quiet_NaN()), 0u);  // nan != nan
  // 2**53 + 1 == 2.0**53 is False in Python: no rounding through double.
  EXPECT_EQ(sl.count(std::int64_t{9007199254740993}), 1u);
  EXPECT_EQ(sl.count(9007199254740992.0), 1u);
  EXPECT_FALSE(python_equal(std::int64_t{std::numeric_limits<std::int64_t>::max()}, 9223372036854775808.0));
  EXPECT_EQ(python_repr(-273.154), "-273.154");
  EXPECT_EQ(python_repr(100.0), "100.0");
  EXPECT_EQ(python_repr(1e16), "1e+16");
  EXPECT_EQ(python_repr(1.5e-5), "1.5e-05");
  EXPECT_EQ(python_repr("a\0'"_b), "b\"a\\x00'\"");
}

TEST(ShareableList, EmptyList) {
  Unlinker u{unique_name("empty")};
  auto sl = ShareableList::create(u.name, {});
  EXPECT_EQ(sl.size(), 0u);
  EXPECT_EQ(sl.format(), "");
  EXPECT_EQ(sl.shm().size(), 16u);
  EXPECT_EQ(sl.begin(), sl.end());
  EXPECT_THROW((void)sl[0], std::out_of_range);
  EXPECT_THROW((void)sl[-1], std::out_of_range);
  EXPECT_THROW((void)sl.index(1), std::invalid_argument);
}

TEST(ShareableList, TooLongValueIsRefusedBeforeCreating) {
  auto name = unique_name("toolong");
  EXPECT_THROW(ShareableList::create(name, {Bytes(std::string(kLargest + 1, 'a'))}), std::invalid_argument);
  EXPECT_TRUE(list_blocks(name).empty());
  Unlinker u{unique_name("exists")};
  auto first = ShareableList::create(u.name, {1});
  try {
    (void)ShareableList::create(u.name, {2});
    ADD_FAILURE() << "no error for an existing name";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EEXIST);
  }
  EXPECT_THROW((void)ShareableList::attach(unique_name("absent")), std::system_error);
}

TEST(ShareableList, TrailingNulsExactInShmkitStrippedInCPython) {
  Unlinker u{unique_name("nul")};
  auto items = corpus();
  auto sl = ShareableList::create(u.name, items);
  expect_items(sl, items);  // exact, trailing NULs included
  EXPECT_EQ(sl.format(7), "5s3x");
  EXPECT_EQ(sl.format(9), "1s7x");
  // A set with trailing NULs is exact too; without, the format is CPython's.
  sl.set(1, "\0\0"_b);
  EXPECT_EQ(sl.format(1), "2s6x");
  EXPECT_TRUE(same(sl[1], "\0\0"_b));
  sl.set(1, ""_b);
  EXPECT_EQ(sl.format(1), "8s");
  // Bigger slots: pad falls back to 0 when slot - len does not fit.
  Unlinker u2{unique_name("nulbig")};
  std::string big_value(1'000'000, 'z');
  auto sl2 = ShareableList::create(u2.name, {big_value});
  sl2.set(0, Bytes(std::string("ab\0", 3)));
  EXPECT_EQ(sl2.format(0), "3s0x");
  EXPECT_TRUE(same(sl2[0], Bytes(std::string("ab\0", 3))));
  // 100,000 bytes or more ending in NUL: CPython's format, NULs lost.
  std::string nul_tail(200'000, 'y');
  nul_tail.back() = '\0';
  sl2.set(0, Bytes(nul_tail));
  EXPECT_EQ(sl2.format(0), "1000008s");
  EXPECT_TRUE(same(sl2[0], stripped(Bytes(nul_tail))));
}

TEST(ShareableList, UnsynchronisedWriterNeverMakesAReaderCrash) {
  // No locking, as in CPython: a reader racing a writer in another process
  // may see a torn item, which must come out as a value or as
  // std::invalid_argument, never as a crash or an out-of-slot read (ASan).
  Unlinker u{unique_name("race")};
  auto sl = ShareableList::create(u.name, {"abcdefghijklmno", 1, "tail"});
  pid_t writer = fork_child([name = u.name] {
    auto w = ShareableList::attach(name);
    const Item values[] = {
        Item("abcdefghijklmno"), Item(42),  Item(None),
        Item("\x01\x02"_b),      Item(2.5), Item(std::string("\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"))};
    for (int round = 0; round < 300'000; ++round) w.set(0, values[round % 6]);
    w.set(2, "done");
    return 0;
  });
  std::size_t values = 0, torn = 0;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!same(sl[2], std::string("done")) && std::chrono::steady_clock::now() < deadline) {
    for (int k = 0; k < 1000; ++k) {
      try {
        (void)sl[0];
        ++values;
      } catch (const std::invalid_argument&) {
        ++torn;
      }
    }
  }
  auto st = wait_child(writer);
  ASSERT_TRUE(st.ok()) << st.describe();
  EXPECT_GT(values, 0u);
  EXPECT_TRUE(same(sl[1], std::int64_t{1}));  // the neighbours are untouched
  EXPECT_TRUE(same(sl[2], std::string("done")));
  std::printf("reads: %zu values, %zu torn (std::invalid_argument)\n", values, torn);
}

// ------------------------------------------------------------ interop: shmkit -> CPython

class CppToPython : public testing::TestWithParam<std::string> {};

TEST_P(CppToPython, CPythonReadsEveryValueAndFormat) {
  const std::string kind = GetParam();
  Unlinker u{unique_name("c2p")};
  auto items = build(kind);
  auto sl = ShareableList::create(u.name, items);
  EXPECT_EQ(sl.format(), joined(items, shmkit_format));
  auto r = run_python("shareable_list_peer.py", {"check", u.name, kind}, 120s);
  ASSERT_TRUE(r.status.ok()) << describe(r);
  EXPECT_EQ(line_value(r.out, "checked"), std::to_string(items.size()));
  expect_items(sl, items);  // CPython's reading changed nothing
}

INSTANTIATE_TEST_SUITE_P(ShareableList, CppToPython, testing::Values("corpus", "empty", "big", "largest"));

TEST(ShareableList, CPythonOverwritesShmkitSlots) {
  Unlinker u{unique_name("over")};
  auto sl = ShareableList::create(u.name, corpus());
  auto r = run_python("shareable_list_peer.py", {"overwrite", u.name});
  ASSERT_TRUE(r.status.ok()) << describe(r);
  // CPython rewrote the "<len>s<pad>x" slots as "<slot>s" and changed types.
  EXPECT_TRUE(same(sl[7], "xy"_b));
  EXPECT_EQ(sl.format(7), "8s");
  EXPECT_TRUE(same(sl[8], std::string("\u00e9t\u00e9")));
  EXPECT_EQ(sl.format(8), "8s");
  EXPECT_TRUE(same(sl[9], std::int64_t{12345}));
  EXPECT_EQ(sl.format(9), "q");
  EXPECT_TRUE(same(sl[0], None));
  EXPECT_TRUE(same(sl[10], std::string("min")));
  EXPECT_TRUE(same(sl[19], 2.5));
  EXPECT_EQ(line_value(r.out, "format"), sl.format());
  // Untouched items are intact.
  auto items = corpus();
  for (std::size_t i : {2u, 3u, 4u, 5u, 6u, 11u, 14u, 17u, 21u}) {
    EXPECT_TRUE(same(sl[static_cast<std::ptrdiff_t>(i)], items[i])) << "item " << i;
  }
}

// ------------------------------------------------------------ interop: CPython -> shmkit

class PythonToCpp : public testing::TestWithParam<std::string> {};

TEST_P(PythonToCpp, ShmkitReadsEveryValueAndFormat) {
  const std::string kind = GetParam();
  Unlinker u{unique_name("p2c")};
  auto r = run_python("shareable_list_peer.py", {"create", u.name, kind}, 120s);
  ASSERT_TRUE(r.status.ok()) << describe(r);
  auto items = build(kind);
  std::vector<Item> expected;
  for (const auto& v : items) expected.push_back(stripped(v));
  auto sl = ShareableList::attach(u.name);
  expect_items(sl, expected);
  const std::string format = joined(items, cpython_format);
  EXPECT_EQ(sl.format(), format);
  if (format.size() < 2000) {
    EXPECT_EQ(line_value(r.out, "format"), format);
  }
  EXPECT_EQ(line_value(r.out, "size"), std::to_string(sl.shm().size()));
  // Iteration and to_vector agree with get.
  std::size_t n = 0;
  for (const Item& v : sl) {
    if (!same(v, expected[n])) ADD_FAILURE() << "iteration differs at " << n;
    ++n;
  }
  EXPECT_EQ(n, expected.size());
  // shmkit can write into a CPython-made list, and CPython reads it back.
  if (!expected.empty() && kind != "largest") {
    sl.set(-1, "ok");
    auto d = run_python("shareable_list_peer.py", {"dump", u.name}, 120s);
    ASSERT_TRUE(d.status.ok()) << describe(d);
    EXPECT_EQ(line_value(d.out, "item" + std::to_string(expected.size() - 1)), "'ok'");
  }
}

INSTANTIATE_TEST_SUITE_P(ShareableList, PythonToCpp, testing::Values("corpus", "empty", "big", "largest"));

TEST(ShareableList, CPython311CharacterSizedSlotsAreReadAsCPythonReadsThem) {
  // gh-88336: CPython 3.11 gives 'ééééé' (10 bytes) an 8-byte slot.
  Unlinker u{unique_name("gh88336")};
  auto r = run_python("shareable_list_peer.py", {"gh88336", u.name});
  ASSERT_TRUE(r.status.ok()) << describe(r);
  auto sl = ShareableList::attach(u.name);
  ASSERT_EQ(sl.size(), 3u);
  EXPECT_EQ(sl.format(), line_value(r.out, "format"));
  for (int i = 0; i < 3; ++i) {
    const std::string py = line_value(r.out, "item" + std::to_string(i));
    if (py == "error") {
      auto msg = message_of<std::invalid_argument>([&] { (void)sl[i]; });
      EXPECT_NE(msg.find("UTF-8"), std::string::npos) << msg;
    } else {
      ASSERT_EQ(py.rfind("ok ", 0), 0u) << py;
      Item got = sl[i];
      ASSERT_TRUE(std::holds_alternative<std::string>(got));
      EXPECT_EQ(to_hex(std::get<std::string>(got).data(), std::get<std::string>(got).size()), py.substr(3))
          << "item " << i;
    }
  }
  // shmkit sizes by bytes: the same strings fit, and CPython reads them.
  Unlinker u2{unique_name("gh88336b")};
  std::vector<Item> items{std::string("\u00e9\u00e9\u00e9\u00e9\u00e9"),
                          std::string("a\u00e9\u00e9\u00e9\u00e9"), std::string("ok")};
  auto mine = ShareableList::create(u2.name, items);
  EXPECT_EQ(mine.format(), "16s16s8s");
  auto d = run_python("shareable_list_peer.py", {"dump", u2.name});
  ASSERT_TRUE(d.status.ok()) << describe(d);
  EXPECT_EQ(line_value(d.out, "item0"), "'\u00e9\u00e9\u00e9\u00e9\u00e9'");
  EXPECT_EQ(line_value(d.out, "item1"), "'a\u00e9\u00e9\u00e9\u00e9'");
}

// ------------------------------------------------------------ corrupted blocks

// The bytes of a valid list of `items`.
std::vector<std::byte> image_of(const std::vector<Item>& items) {
  Unlinker u{unique_name("img")};
  auto sl = ShareableList::create(u.name, items);
  auto b = sl.shm().buf();
  return {b.begin(), b.end()};
}

// Puts `bytes` into a fresh block and attaches; then reads every item,
// every format, and tries a few assignments. Returns "" if attach worked,
// else the invalid_argument message. Any other exception fails the test.
std::string attach_image(const std::vector<std::byte>& bytes, bool exercise = true) {
  Unlinker u{unique_name("bad")};
  {
    auto raw = SharedMemory::create(u.name, bytes.empty() ? 1 : bytes.size());
    if (!bytes.empty()) std::memcpy(raw.data(), bytes.data(), bytes.size());
  }
  std::string msg;
  try {
    auto sl = ShareableList::attach(u.name);
    // Items are checked when read: the first item error is the message.
    for (std::size_t i = 0; i < sl.size() && msg.empty(); ++i) {
      try {
        (void)sl[static_cast<std::ptrdiff_t>(i)];
      } catch (const std::invalid_argument& e) {
        msg = e.what();
      }
    }
    if (exercise) {
      for (std::size_t i = 0; i < sl.size(); ++i) {
        auto idx = static_cast<std::ptrdiff_t>(i);
        try {
          (void)sl[idx];
          (void)sl.format(idx);
        } catch (const std::invalid_argument&) {
        }
        for (const Item& v : {Item(std::int64_t{5}), Item("abcdefghijkl"), Item("x"_b), Item(None)}) {
          try {
            sl.set(idx, v);
            if (!same(sl[idx], v)) ADD_FAILURE() << "item " << i << " does not read back";
          } catch (const std::invalid_argument&) {
          }
        }
      }
    }
  } catch (const std::invalid_argument& e) {
    msg = e.what();
    if (msg.find(u.name) == std::string::npos) ADD_FAILURE() << "message lacks the name: " << msg;
  }
  return msg;
}

void put_i64(std::vector<std::byte>& img, std::size_t at, std::int64_t v) {
  std::memcpy(img.data() + at, &v, 8);
}
void put_field(std::vector<std::byte>& img, std::size_t at, std::string_view f) {
  std::memset(img.data() + at, 0, 8);
  std::memcpy(img.data() + at, f.data(), f.size());
}

TEST(ShareableList, CorruptedBlocksLyingFields) {
  // [1, "hello", b"b"]: data start 40, slots 8/8/8, formats at 64, codes at 88.
  const std::vector<Item> items{1, "hello", "b"_b};
  const auto good = image_of(items);
  ASSERT_EQ(good.size(), 91u);
  ASSERT_EQ(attach_image(good), "");
  struct Case {
    const char* what;
    std::function<void(std::vector<std::byte>&)> corrupt;
    const char* expect;  // part of the message
  };
  const std::vector<Case> cases{
      {"negative count", [](auto& b) { put_i64(b, 0, -1); }, "item count -1 is negative"},
      {"huge count", [](auto& b) { put_i64(b, 0, std::numeric_limits<std::int64_t>::max()); },
       "does not fit a block of 91 bytes"},
      {"count one too many", [](auto& b) { put_i64(b, 0, 5); }, "does not fit"},
      {"negative offset", [](auto& b) { put_i64(b, 16, -8); }, "offset of item 1 is negative"},
      {"decreasing offsets", [](auto& b) { put_i64(b, 24, 4); }, "is below the previous offset"},
      {"end offset beyond", [](auto& b) { put_i64(b, 32, 1000); }, "end offset"},
      {"end offset huge", [](auto& b) { put_i64(b, 32, std::numeric_limits<std::int64_t>::max()); },
       "beyond the data area"},
      {"unknown format", [](auto& b) { put_field(b, 64, "zz"); }, "format of item 0 ('zz')"},
      {"format bigger than slot", [](auto& b) { put_field(b, 72, "9999992s"); }, "needs 9999992 bytes"},
      {"format with inner NUL", [](auto& b) { put_field(b, 72, std::string_view("8\0s", 3)); },
       "format of item 1"},
      {"format with pad past slot", [](auto& b) { put_field(b, 72, "5s4x"); }, "needs 9 bytes"},
      {"empty format", [](auto& b) { put_field(b, 80, ""); }, "format of item 2 ('')"},
      {"code out of range", [](auto& b) { b[88] = std::byte{7}; }, "back-transform code of item 0 (7)"},
      {"negative code", [](auto& b) { b[89] = std::byte{0xff}; }, "(255)"},
      {"code does not match", [](auto& b) { b[90] = std::byte{0}; }, "does not go with its format '8s'"},
      {"None code on int", [](auto& b) { b[88] = std::byte{3}; }, "does not go with its format 'q'"},
  };
  for (const auto& c : cases) {
    auto img = good;
    c.corrupt(img);
    auto msg = attach_image(img);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.what << ": " << msg;
  }
  // Zero-size slots: offsets all equal; formats "0s" are then fine, but a
  // fixed value cannot be stored in them and nothing spills over.
  {
    auto img = good;
    put_i64(img, 16, 0);
    put_i64(img, 24, 0);
    put_i64(img, 32, 0);  // formats and codes now start at 40
    for (int i = 0; i < 3; ++i) put_field(img, 40 + 8 * static_cast<std::size_t>(i), "0s");
    img[64] = std::byte{2};
    img[65] = std::byte{1};
    img[66] = std::byte{2};
    auto msg = attach_image(img);
    EXPECT_EQ(msg, "");
  }
}

TEST(ShareableList, CorruptedBlocksTruncated) {
  const auto good = image_of(corpus());
  std::size_t accepted = 0;
  for (std::size_t n = 1; n < good.size(); ++n) {
    std::vector<std::byte> img(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    if (attach_image(img, false).empty()) ++accepted;
  }
  EXPECT_EQ(accepted, 0u) << "a truncated block was accepted";
}

TEST(ShareableList, CorruptedBlocksRandomBytesAndMutations) {
  std::mt19937_64 rng(20260);
  const auto good = image_of(corpus());
  std::size_t accepted = 0;
  for (int round = 0; round < 300; ++round) {
    std::vector<std::byte> img;
    if (round % 3 == 0) {
      img.resize(rng() % 300);
      for (auto& b : img) b = static_cast<std::byte>(rng());
      if (img.size() >= 8 && round % 2 == 0) put_i64(img, 0, static_cast<std::int64_t>(rng() % 8));
    } else {
      img = good;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) img[rng() % img.size()] = static_cast<std::byte>(rng());
    }
    if (attach_image(img).empty()) ++accepted;
  }
  // Some mutations only touch values, so some blocks are still lists.
  EXPECT_GT(accepted, 0u);
}

TEST(ShareableList, FormatRewrittenAfterAttachIsCheckedOnEveryAccess) {
  Unlinker u{unique_name("late")};
  auto sl = ShareableList::create(u.name, {1, "abc"});
  auto raw = SharedMemory::attach(u.name);
  // Formats start at 8 * (2 + 2) + 16 = 48.
  std::memcpy(static_cast<char*>(raw.data()) + 56, "4096s\0\0\0", 8);
  auto msg = message_of<std::invalid_argument>([&] { (void)sl[1]; });
  EXPECT_NE(msg.find("needs 4096 bytes but its slot has 8"), std::string::npos) << msg;
  EXPECT_THROW((void)sl.format(), std::invalid_argument);
  sl.set(1, "fixed");  // assignment rewrites format and code
  EXPECT_TRUE(same(sl[1], std::string("fixed")));
}

}  // namespace
}  // namespace shmkit::test
