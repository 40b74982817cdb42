// shmkit/array.hpp — Array<T, Lock> and RawArray<T>: a fixed-length typed
// array in shared memory, the C++ twin of CPython's
// multiprocessing.sharedctypes.Array / RawArray.
//
// Contract
//   * Placement, element types, lock policies, the self-deadlock rule and
//     crash behaviour are Value's (shmkit/value.hpp).
//   * Element access takes the lock for one read or one write (CPython's
//     a[i], with negative indices; out of range -> std::out_of_range).
//     Slices a[i:j] (Python's clamping rules) are read and written under one
//     acquisition; assigning a slice of another length is
//     std::invalid_argument, as CPython's ValueError. copy_to/copy_from move
//     the whole array under one acquisition at memcpy speed.
//   * An array may have 0 elements (CPython's Array('i', []), RawArray('d',
//     0)): the block still has its header and its lock; every index is out
//     of range, every slice is empty, and size 0 attaches as any Array.
//   * Array<char> also has CPython's SynchronizedString accessors: value()
//     (bytes up to the first NUL) and raw() (all bytes), set_value() (copies
//     and NUL-terminates when there is room) and set_raw().
//   * Layout, for other languages: the block starts with the 128-byte
//     BlockHeader; the elements start at the header's payload_offset (u64 at
//     byte 56), a multiple of 64, densely packed in native byte order, `count`
//     (u64 at byte 48) of them. From Python:
//       shm = SharedMemory(name); off = struct.unpack_from("Q", shm.buf, 56)[0]
//       n = struct.unpack_from("Q", shm.buf, 48)[0]
//       a = numpy.ndarray((n,), dtype=numpy.int32, buffer=shm.buf, offset=off)
//     (payload_offset() returns the same number in C++.) Python writes are
//     not synchronised with the C++ lock.
#pragma once

#include <algorithm>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "shmkit/detail/object_base.hpp"

namespace shmkit {

template <class T, class Lock = RecursiveMutex>
class Array : public detail::ObjectBase<T, Lock, BlockKind::array> {
  using Base = detail::ObjectBase<T, Lock, BlockKind::array>;
  using Base::data_;
  using Base::locked;

 public:
  using typename Base::lock_type;
  using typename Base::LockArg;

  // `size` zero-filled elements in a new block `name` (random if empty).
  static Array create(std::string_view name, std::size_t size, LockArg lock = {}) {
    return Array(detail::create_named_object(name, spec(size), init_zero()), lock);
  }
  // A copy of `initial` in a new block.
  static Array create(std::string_view name, std::span<const T> initial, LockArg lock = {}) {
    return Array(detail::create_named_object(name, spec(initial.size()), init_with(initial)), lock);
  }
  static Array create(std::string_view name, std::initializer_list<T> initial, LockArg lock = {}) {
    return create(name, std::span<const T>(initial.begin(), initial.size()), lock);
  }
  static Array create(const Heap& heap, std::size_t size, LockArg lock = {}) {
    return Array(detail::create_heap_object(heap, spec(size), init_zero()), lock);
  }
  static Array create(const Heap& heap, std::span<const T> initial, LockArg lock = {}) {
    return Array(detail::create_heap_object(heap, spec(initial.size()), init_with(initial)), lock);
  }
  static Array anonymous(std::size_t size, LockArg lock = {}) {
    return Array(detail::create_anonymous_object(spec(size), init_zero()), lock);
  }
  static Array anonymous(std::span<const T> initial, LockArg lock = {}) {
    return Array(detail::create_anonymous_object(spec(initial.size()), init_with(initial)), lock);
  }
  static Array attach(std::string_view name, LockArg lock = {}) {
    return Array(detail::attach_named_object(name, BlockKind::array, TypeFingerprint::of<T>(),
                                             detail::object_layout<T, Lock>(0)),
                 lock);
  }
  static Array attach(const Heap& heap, const HeapHandle& handle, LockArg lock = {}) {
    return Array(detail::attach_heap_object(heap, handle, BlockKind::array, TypeFingerprint::of<T>(),
                                            detail::object_layout<T, Lock>(0)),
                 lock);
  }
  static Array attach(const HeapHandle& handle, LockArg lock = {}) {
    return attach(Heap::attach(handle.heap), handle, lock);
  }

  std::size_t size() const noexcept { return size_; }

  // a[i] (negative i counts from the end).
  T get(std::ptrdiff_t i) const {
    std::size_t k = index(i);
    return locked([&] { return data_[k]; });
  }
  void set(std::ptrdiff_t i, const T& v) {
    std::size_t k = index(i);
    locked([&] { data_[k] = v; });
  }
  // a[i] += delta under the lock; returns the old value.
  T fetch_add(std::ptrdiff_t i, const T& delta) requires std::is_arithmetic_v<T> {
    std::size_t k = index(i);
    return locked([&] {
      T old = data_[k];
      data_[k] = static_cast<T>(old + delta);
      return old;
    });
  }
  // fn(std::span<T>) on the whole array under one acquisition.
  template <class F>
  decltype(auto) update(F&& fn) {
    return locked(
        [&]() -> decltype(auto) { return std::invoke(std::forward<F>(fn), std::span<T>(data_, size_)); });
  }

  // a[i:j] with Python's clamping.
  std::vector<T> slice(std::ptrdiff_t i, std::ptrdiff_t j) const {
    // Plain variables, not a structured binding: clang < 16 cannot capture one.
    const auto range = clamp(i, j);
    const std::size_t b = range.first, e = range.second;
    return locked([&] { return std::vector<T>(data_ + b, data_ + e); });
  }
  // a[i:j] = values; values.size() must equal the slice's length.
  void assign(std::ptrdiff_t i, std::ptrdiff_t j, std::span<const T> values) {
    // Plain variables, not a structured binding: clang < 16 cannot capture one.
    const auto range = clamp(i, j);
    const std::size_t b = range.first, e = range.second;
    if (values.size() != e - b) {
      throw std::invalid_argument("shmkit: can only assign a sequence of the same size (slice of " +
                                  std::to_string(e - b) + ", got " + std::to_string(values.size()) + ")");
    }
    locked([&] { std::copy(values.begin(), values.end(), data_ + b); });
  }
  // The whole array into out (out.size() == size()), one acquisition.
  void copy_to(std::span<T> out) const {
    check_whole(out.size());
    if (size_ != 0) locked([&] { std::memcpy(out.data(), data_, size_ * sizeof(T)); });
  }
  void copy_from(std::span<const T> in) {
    check_whole(in.size());
    if (size_ != 0) locked([&] { std::memcpy(data_, in.data(), size_ * sizeof(T)); });
  }
  std::vector<T> to_vector() const { return slice(0, static_cast<std::ptrdiff_t>(size_)); }

  // SynchronizedString (Array<char>): bytes up to the first NUL.
  std::string value() const requires std::is_same_v<T, char> {
    return locked([&] { return std::string(data_, ::strnlen(data_, size_)); });
  }
  std::string raw() const requires std::is_same_v<T, char> {
    return locked([&] { return std::string(data_, size_); });
  }
  // Copies s and, when it is shorter than the array, a NUL after it.
  void set_value(std::string_view s) requires std::is_same_v<T, char> {
    check_fits(s.size());
    locked([&] {
      if (!s.empty()) std::memcpy(data_, s.data(), s.size());
      if (s.size() < size_) data_[s.size()] = '\0';
    });
  }
  void set_raw(std::string_view s) requires std::is_same_v<T, char> {
    check_fits(s.size());
    locked([&] {
      if (!s.empty()) std::memcpy(data_, s.data(), s.size());
    });
  }

  // The raw elements (CPython's get_obj()): no locking.
  std::span<T> get_obj() const noexcept { return {data_, size_}; }

 private:
  static BlockSpec spec(std::size_t n) { return Base::spec(n, sizeof(T), Base::Traits::kind); }
  static RegionInit init_zero() {
    return [](std::span<std::byte> prefix, std::span<std::byte>) { Base::init_lock(prefix); };
  }
  static RegionInit init_with(std::span<const T> initial) {
    return [initial](std::span<std::byte> prefix, std::span<std::byte> payload) {
      Base::init_lock(prefix);
      if (!initial.empty()) std::memcpy(payload.data(), initial.data(), initial.size_bytes());
    };
  }
  Array(detail::ObjectPlace place, LockArg lock)
      : Base(std::move(place), lock), size_(static_cast<std::size_t>(this->place_.region.header.count)) {}

  std::size_t index(std::ptrdiff_t i) const {
    const auto n = static_cast<std::ptrdiff_t>(size_);
    std::ptrdiff_t k = i < 0 ? i + n : i;
    if (k < 0 || k >= n) {
      throw std::out_of_range("shmkit: " + this->place_.what("array") + ": index " + std::to_string(i) +
                              " out of range for length " + std::to_string(n));
    }
    return static_cast<std::size_t>(k);
  }
  std::pair<std::size_t, std::size_t> clamp(std::ptrdiff_t i, std::ptrdiff_t j) const {
    const auto n = static_cast<std::ptrdiff_t>(size_);
    auto fix = [n](std::ptrdiff_t x) { return std::clamp(x < 0 ? x + n : x, std::ptrdiff_t{0}, n); };
    std::ptrdiff_t b = fix(i), e = fix(j);
    if (e < b) e = b;
    return {static_cast<std::size_t>(b), static_cast<std::size_t>(e)};
  }
  void check_whole(std::size_t n) const {
    if (n != size_) {
      throw std::invalid_argument("shmkit: " + this->place_.what("array") + " has " + std::to_string(size_) +
                                  " elements, the buffer " + std::to_string(n));
    }
  }
  void check_fits(std::size_t n) const {
    if (n > size_) {
      throw std::invalid_argument("shmkit: " + this->place_.what("array") + ": " + std::to_string(n) +
                                  " bytes do not fit " + std::to_string(size_));
    }
  }

  std::size_t size_;

  template <class U, class L>
  friend Array<U, ExternalLock<L>> synchronized(const Array<U, NoLock>& raw, L& lock);
};

template <class T>
using RawArray = Array<T, NoLock>;

// CPython's copy(obj): a new RawArray (anonymous block) with obj's elements.
template <class T, class L>
RawArray<T> copy(const Array<T, L>& a) {
  std::vector<T> elems = a.to_vector();
  return RawArray<T>::anonymous(std::span<const T>(elems));
}

// CPython's synchronized(obj, lock): the same shared elements guarded by
// `lock` (kept alive by the caller). A process-local view.
template <class T, class L>
Array<T, ExternalLock<L>> synchronized(const Array<T, NoLock>& raw, L& lock) {
  return Array<T, ExternalLock<L>>(raw.place(), &lock);
}

}  // namespace shmkit
