// shmkit/shareable_list.hpp — ShareableList: a fixed-length list of None,
// bool, int64, float, str and bytes values packed into one shared block; the
// C++ twin of CPython's multiprocessing.shared_memory.ShareableList.
//
// Contract
//   * Same bytes as CPython 3.11–3.14: a list created here can be attached
//     by name from Python and vice versa (tests/interop checks this against
//     the machine's python3). Layout, all native byte order:
//       [0, 8)            item count N (int64)
//       [8, 8(N+2))       N+1 offsets (int64) of the slots, relative to the
//                         data area; slot i is [off[i], off[i+1])
//       data area         slots, 8 bytes for int "q", float "d", bool
//                         "xxxxxxx?" (value in byte 7), None "xxxxxx?x";
//                         str/bytes "<n>s" with n = 8 * (len / 8 + 1)
//       N * 8 bytes       each item's struct format, NUL padded
//       N bytes           each item's back-transform code: 0 int/float/bool,
//                         1 str (UTF-8), 2 bytes, 3 None
//     A format must fit 8 characters, so the longest str/bytes is 9,999,991
//     bytes ("9999992s"); longer → std::invalid_argument (CPython asserts).
//   * Who calls what: any process may create a list or attach to one (by
//     name, or by adopting a SharedMemory, e.g. a memfd received over a
//     socket); every handle may get and set; set() on a read-only mapping
//     throws std::logic_error. Unlinking is the owner's job:
//     shm().unlink(), as CPython's sl.shm.unlink().
//   * Errors mirror Python's: ValueError → std::invalid_argument (also for
//     every malformed block), IndexError → std::out_of_range; OS failures
//     come from SharedMemory as std::system_error. Messages name the block.
//     A failed set() leaves the old value intact.
//   * Untrusted blocks: attach() checks the count and every offset against
//     the block's size, and get()/format() check the item's format and code
//     on every call (another process may rewrite them); set() rewrites both
//     without reading them, so it also mends a torn item. Anything
//     that does not fit → std::invalid_argument naming the block and the
//     field. Reading or writing an item's value never leaves that item's
//     slot, nothing is ever accessed outside the mapping, and allocation is
//     bounded by the block's size. Offsets and count are read
//     once at attach (CPython caches them too; neither side rewrites them).
//   * No locking, exactly like CPython's ShareableList: concurrent set() and
//     get() of the same item from two processes (or threads) may observe a
//     torn value, which the checks above turn into an error or a mix of old
//     and new bytes, never an out-of-bounds access. Synchronise with a lock
//     from shmkit/sync/ if items are written while others read them. A
//     handle itself is not synchronised; const members may be called from
//     several threads at once.
//   * Crash behaviour: the list is its SharedMemory block; it outlives every
//     process until someone calls shm().unlink(). The destructor unmaps and
//     never unlinks (as CPython). A process killed in the middle of set()
//     may leave that one item torn (new bytes under the old format, or a
//     new format under the old code): reading it gives a mix or a clear
//     std::invalid_argument naming the item, the rest of the list reads and
//     attaches as before, and the next set() of the item repairs it
//     (tests/test_fault_injection.cpp kills a writer at each step).
//
// CPython bugs, handled on purpose
//   * gh-106939 / gh-96779: CPython strips trailing NULs from every str and
//     bytes it reads ("Ns" then rstrip(b"\0")). By default shmkit reads what
//     CPython reads. Beyond CPython, a value that ends in NUL written by
//     shmkit is described by the format "<len>s<pad>x" (pad = slot - len, or
//     0 when that does not fit 8 characters; e.g. b"ab\0" in an 8-byte slot
//     is "3s5x"): struct reads exactly `len` bytes and skips the pad, so
//     CPython still reads the value without its trailing NULs (what it
//     always would), shmkit readers get it back exactly, and a CPython
//     assignment to such a slot rewrites it the usual way (a format that
//     does not end in "s" makes CPython recompute "<slot>s"). A value of
//     100,000 bytes or more that ends in NUL cannot be described in 8
//     characters; it is stored as CPython stores it, and its trailing NULs
//     are lost on reading, as in CPython.
//   * gh-88336 / gh-145261: CPython 3.11 sizes a str slot by characters, not
//     UTF-8 bytes, and silently truncates a longer encoding (which may then
//     not decode). shmkit gives a str CPython's character-sized slot when
//     its UTF-8 bytes fit it (so the block is CPython's byte for byte) and
//     sizes the slot by bytes only when they do not, so CPython can read
//     whatever shmkit writes. Reading a CPython-written list never touches bytes
//     outside an item's slot; a str whose stored bytes are not valid UTF-8
//     raises std::invalid_argument, as CPython raises UnicodeDecodeError.
//   * So format() equals what CPython writes for the same list except for
//     values ending in NUL (above) and for a str whose UTF-8 bytes do not
//     fit the slot its character count gives (where CPython truncates).
//   * Strings are UTF-8: set()/create() refuse a std::string that is not
//     valid UTF-8 (CPython could not read it back).
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "shmkit/shared_memory.hpp"

namespace shmkit {

// Python's bytes: a byte string distinct from str (std::string), so that
// Item can tell them apart. Embedded NULs are kept; "..."_b builds one from
// a literal, NULs included.
class Bytes {
 public:
  Bytes() = default;
  explicit Bytes(std::string_view bytes) : data_(bytes) {}
  explicit Bytes(std::string bytes) noexcept : data_(std::move(bytes)) {}
  explicit Bytes(const char* bytes) : data_(bytes) {}
  Bytes(const void* data, std::size_t size) : data_(static_cast<const char*>(data), size) {}
  explicit Bytes(std::span<const std::byte> bytes)
      : data_(reinterpret_cast<const char*>(bytes.data()), bytes.size()) {}

  std::size_t size() const noexcept { return data_.size(); }
  bool empty() const noexcept { return data_.empty(); }
  const char* data() const noexcept { return data_.data(); }
  std::string_view view() const noexcept { return data_; }
  const std::string& str() const noexcept { return data_; }
  void assign(std::string_view bytes) { data_.assign(bytes); }
  std::span<const std::byte> span() const noexcept {
    return {reinterpret_cast<const std::byte*>(data_.data()), data_.size()};
  }

  friend bool operator==(const Bytes&, const Bytes&) = default;
  friend std::strong_ordering operator<=>(const Bytes& a, const Bytes& b) noexcept {
    return a.data_.compare(b.data_) <=> 0;
  }

 private:
  std::string data_;
};

namespace literals {
inline Bytes operator""_b(const char* s, std::size_t n) { return Bytes(s, n); }
}  // namespace literals

// One value of a ShareableList: None, bool, int, float, str (UTF-8), bytes.
// Item(42) is an int, Item(4.2) a float, Item("x") a str, Item(true) a bool.
using Item = std::variant<std::monostate, bool, std::int64_t, double, std::string, Bytes>;
inline constexpr std::monostate None{};

// Python's `a == b` for two items: numbers compare by value across bool, int
// and float (True == 1 == 1.0, exactly, never through rounding), NaN equals
// nothing, str equals only str and bytes only bytes, None only None. This is
// what count() and index() use, as CPython's do.
bool python_equal(const Item& a, const Item& b) noexcept;
// Python's repr() of an item (for messages): None, True, 42, 1.5, 'x', b'\x00'.
std::string python_repr(const Item& item);

namespace detail {
class ShareableListView;  // the parser and accessor over a byte span (src/)
}

class ShareableList {
 public:
  // Creates a list of `items` in a new block with a random name (psm_...).
  // std::invalid_argument if an item does not fit CPython's format (a str or
  // bytes of more than 9,999,991 bytes) or a str is not valid UTF-8;
  // std::system_error from SharedMemory::create.
  static ShareableList create(std::vector<Item> items);
  // Creates the list in a new block `name`; EEXIST if it exists.
  static ShareableList create(std::string_view name, std::vector<Item> items);
  // Attaches to the list in block `name`, checking its layout (see above).
  static ShareableList attach(std::string_view name);
  // Adopts an already attached block (e.g. one received with receive_fd).
  static ShareableList attach(SharedMemory block);

  ShareableList() noexcept;  // an empty, closed handle
  ShareableList(ShareableList&&) noexcept;
  ShareableList& operator=(ShareableList&&) noexcept;
  ShareableList(const ShareableList&) = delete;
  ShareableList& operator=(const ShareableList&) = delete;
  ~ShareableList();  // closes the block, never unlinks it

  // Number of items (fixed for the list's lifetime).
  std::size_t size() const noexcept;
  bool empty() const noexcept { return size() == 0; }

  // Python indexing: -1 is the last item. std::out_of_range outside
  // [-size, size); std::invalid_argument if the item is malformed.
  Item get(std::ptrdiff_t index) const;
  Item operator[](std::ptrdiff_t index) const { return get(index); }
  // As get(), into `out`: a str/bytes reuses the capacity of the string
  // `out` already holds, so a loop reading strings need not allocate. `out`
  // is unchanged if this throws std::out_of_range or std::invalid_argument.
  void get(std::ptrdiff_t index, Item& out) const;
  // CPython's assignment: the item's type may change; a str/bytes longer
  // than the item's slot → std::invalid_argument ("exceeds available
  // storage") and the old value stays.
  void set(std::ptrdiff_t index, const Item& value);

  // How many items are python_equal to `value`.
  std::size_t count(const Item& value) const;
  // The first index whose item is python_equal to `value`;
  // std::invalid_argument if there is none (Python's ValueError).
  std::size_t index(const Item& value) const;

  // The concatenated struct formats of all items: CPython's `.format`.
  std::string format() const;
  // The struct format of one item (Python indexing).
  std::string format(std::ptrdiff_t index) const;
  // All items, in order.
  std::vector<Item> to_vector() const;

  SharedMemory& shm() noexcept { return shm_; }
  const SharedMemory& shm() const noexcept { return shm_; }
  const std::string& name() const noexcept { return shm_.name(); }

  // Input iteration by value: *it reads the item when dereferenced (so it
  // sees other processes' writes and may throw like get()).
  class const_iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using iterator_concept = std::forward_iterator_tag;
    using value_type = Item;
    using difference_type = std::ptrdiff_t;
    using reference = Item;
    using pointer = void;

    const_iterator() = default;
    Item operator*() const { return list_->get(static_cast<std::ptrdiff_t>(pos_)); }
    const_iterator& operator++() noexcept {
      ++pos_;
      return *this;
    }
    const_iterator operator++(int) noexcept {
      auto old = *this;
      ++pos_;
      return old;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) noexcept {
      return a.pos_ == b.pos_;
    }

   private:
    friend class ShareableList;
    const_iterator(const ShareableList* list, std::size_t pos) noexcept : list_(list), pos_(pos) {}
    const ShareableList* list_ = nullptr;
    std::size_t pos_ = 0;
  };
  const_iterator begin() const noexcept { return {this, 0}; }
  const_iterator end() const noexcept { return {this, size()}; }

 private:
  ShareableList(SharedMemory shm, std::unique_ptr<detail::ShareableListView> view) noexcept;
  std::size_t normalize(std::ptrdiff_t index, const char* what) const;

  SharedMemory shm_;
  std::unique_ptr<detail::ShareableListView> view_;
};

}  // namespace shmkit
