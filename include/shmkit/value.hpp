// shmkit/value.hpp — Value<T, Lock>, RawValue<T> and AtomicValue<T>: one
// typed value in shared memory, the C++ twin of CPython's
// multiprocessing.sharedctypes.Value / RawValue.
//
// Contract
//   * Where it lives: its own named block (create(name, ...) / attach(name)
//     from any process), one object in a shared Heap (create(heap, ...),
//     passed on as a HeapHandle string), or an anonymous block shared with
//     forked children only (anonymous(...)). In each case the bytes start
//     with a BlockHeader (shmkit/typed_block.hpp): attaching with another T,
//     another lock policy, to an Array, a ShareableList or a half-initialised
//     block is a clear std::invalid_argument, never undefined behaviour. The
//     header is untrusted: every layout field (element size and stride,
//     count, lock kind and size, prefix size, payload offset and alignment)
//     must be what this type would have created, so a forged header can
//     never make an accessor touch memory outside the block's payload.
//   * T: trivially copyable, standard layout (static_assert). CPython's
//     typecodes map to fixed types, as in the array module on Linux LP64:
//       'c' char          'b' std::int8_t    'B' std::uint8_t
//       'h' std::int16_t  'H' std::uint16_t  'i' std::int32_t
//       'I' std::uint32_t 'l' long (64-bit)  'L' unsigned long (64-bit)
//       'q' std::int64_t  'Q' std::uint64_t  'f' float   'd' double
//     A struct plays the role of a ctypes Structure (give it a stable name
//     with shmkit::TypeName, see typed_block.hpp).
//   * Lock: RecursiveMutex (CPython's default, a new RLock), Mutex,
//     RobustMutex (survives a killed holder: accessors then throw
//     OwnerDiedError once, see shmkit/detail/shared_object.hpp), NoLock
//     (CPython's lock=False; RawValue<T> is Value<T, NoLock>), or
//     ExternalLock<L>: a lock the caller supplies (by pointer, in every
//     process) and may share among several objects, as Value('i',
//     lock=some_lock).
//   * Footguns fixed. In CPython `v.value += 1` is a locked read then a
//     locked write, not atomic: two processes lose about half their updates.
//     Here update(fn), fetch_add, exchange and compare_exchange do the
//     read-modify-write under one acquisition. And `with v.get_lock():
//     v.value = ...` deadlocks in CPython with a plain Lock; here the
//     accessors know (per thread) that get_lock() is held and do not take it
//     again, whatever the lock.
//   * AtomicValue<T> (integral or pointer-free trivially copyable T whose
//     atomic is lock-free): no lock at all, Boost.Atomic ipc_atomic
//     operations, plus wait/notify across processes.
//   * Handles are move-only and process-local; what they point at is shared.
//     Crash behaviour: a killed process leaves the last value it stored;
//     with Mutex/RecursiveMutex a holder killed inside an accessor leaves the
//     lock held forever (use RobustMutex or AtomicValue where that matters).
#pragma once

#include <cstring>
#include <functional>
#include <type_traits>

#include "shmkit/atomic.hpp"
#include "shmkit/detail/object_base.hpp"

namespace shmkit {

template <class T, class Lock = RecursiveMutex>
class Value : public detail::ObjectBase<T, Lock, BlockKind::value> {
  using Base = detail::ObjectBase<T, Lock, BlockKind::value>;
  using Base::data_;
  using Base::kExternal;
  using Base::locked;

 public:
  using typename Base::lock_type;
  using typename Base::LockArg;

  // A new block `name` (a random psm_ name if empty) holding `initial`.
  static Value create(std::string_view name, const T& initial = T{}, LockArg lock = {}) {
    return Value(detail::create_named_object(name, spec(), init_with(initial)), lock);
  }
  // A new object in `heap`.
  static Value create(const Heap& heap, const T& initial = T{}, LockArg lock = {}) {
    return Value(detail::create_heap_object(heap, spec(), init_with(initial)), lock);
  }
  // A new object in its own anonymous block (forked children share it).
  static Value anonymous(const T& initial = T{}, LockArg lock = {}) {
    return Value(detail::create_anonymous_object(spec(), init_with(initial)), lock);
  }
  static Value attach(std::string_view name, LockArg lock = {}) {
    return Value(detail::attach_named_object(name, BlockKind::value, TypeFingerprint::of<T>(),
                                             detail::object_layout<T, Lock>(1)),
                 lock);
  }
  static Value attach(const Heap& heap, const HeapHandle& handle, LockArg lock = {}) {
    return Value(detail::attach_heap_object(heap, handle, BlockKind::value, TypeFingerprint::of<T>(),
                                            detail::object_layout<T, Lock>(1)),
                 lock);
  }
  // Attaches the handle's heap by name, then the object.
  static Value attach(const HeapHandle& handle, LockArg lock = {}) {
    return attach(Heap::attach(handle.heap), handle, lock);
  }

  // CPython's `.value`: one locked read.
  // Each accessor reads data_ (a field of this handle) into a local before
  // locked(): read inside, it would be reloaded after the acquire, a
  // dependent load added between lock and unlock (object_base.hpp).
  T value() const {
    const T* const p = data_;
    return locked([&] { return *p; });
  }
  // CPython's `.value = v`: one locked write.
  void set_value(const T& v) {
    T* const p = data_;
    locked([&] { *p = v; });
  }
  // Read-modify-write under one acquisition: fn(T&) changes the value in
  // place; returns the new value.
  template <class F>
  T update(F&& fn) {
    T* const p = data_;
    return locked([&] {
      T v = *p;
      std::invoke(std::forward<F>(fn), v);
      *p = v;
      return v;
    });
  }
  // Returns the old value.
  T fetch_add(const T& delta) requires std::is_arithmetic_v<T> {
    T* const p = data_;
    return locked([&] {
      T old = *p;
      *p = static_cast<T>(old + delta);
      return old;
    });
  }
  T exchange(const T& v) {
    T* const p = data_;
    return locked([&] {
      T old = *p;
      *p = v;
      return old;
    });
  }
  // Bytewise comparison (T may be a struct); on failure `expected` gets the
  // current value.
  bool compare_exchange(T& expected, const T& desired) {
    T* const p = data_;
    return locked([&] {
      if (std::memcmp(p, &expected, sizeof(T)) == 0) {
        *p = desired;
        return true;
      }
      expected = *p;
      return false;
    });
  }

  // The raw object (CPython's get_obj()): no locking.
  T& get_obj() const noexcept { return *data_; }

 private:
  static BlockSpec spec() { return Base::spec(1, sizeof(T), Base::Traits::kind); }
  static RegionInit init_with(const T& initial) {
    return [initial](std::span<std::byte> prefix, std::span<std::byte> payload) {
      Base::init_lock(prefix);
      std::memcpy(payload.data(), &initial, sizeof(T));
    };
  }
  Value(detail::ObjectPlace place, LockArg lock) : Base(std::move(place), lock) {}

  template <class U, class L>
  friend Value<U, ExternalLock<L>> synchronized(const Value<U, NoLock>& raw, L& lock);
};

template <class T>
using RawValue = Value<T, NoLock>;

// CPython's copy(obj): a new RawValue (anonymous block) holding obj's value.
template <class T, class L>
RawValue<T> copy(const Value<T, L>& v) {
  return RawValue<T>::anonymous(v.value());
}

// CPython's synchronized(obj, lock): the same shared bytes, guarded by `lock`
// (which the caller keeps alive). A process-local view: other processes
// attach the raw object and wrap it themselves.
template <class T, class L>
Value<T, ExternalLock<L>> synchronized(const Value<T, NoLock>& raw, L& lock) {
  return Value<T, ExternalLock<L>>(raw.place(), &lock);
}

// A lock-free value for integral (and other always-lock-free) T: Boost.Atomic
// ipc_atomic operations on shared memory, wait/notify across processes.
template <class T>
class AtomicValue : public detail::ObjectBase<T, NoLock, BlockKind::value> {
  using Base = detail::ObjectBase<T, NoLock, BlockKind::value>;
  using Cell = WaitableAtomic<T>;
  static_assert(std::is_standard_layout_v<Cell>, "the atomic cell lives in shared memory");

 public:
  static AtomicValue create(std::string_view name, T initial = T{}) {
    return AtomicValue(detail::create_named_object(name, spec(), init_with(initial)));
  }
  static AtomicValue create(const Heap& heap, T initial = T{}) {
    return AtomicValue(detail::create_heap_object(heap, spec(), init_with(initial)));
  }
  static AtomicValue anonymous(T initial = T{}) {
    return AtomicValue(detail::create_anonymous_object(spec(), init_with(initial)));
  }
  static AtomicValue attach(std::string_view name) {
    return AtomicValue(
        detail::attach_named_object(name, BlockKind::value, TypeFingerprint::of<T>(), layout()));
  }
  static AtomicValue attach(const Heap& heap, const HeapHandle& handle) {
    return AtomicValue(
        detail::attach_heap_object(heap, handle, BlockKind::value, TypeFingerprint::of<T>(), layout()));
  }

  // All operations are Boost.Atomic's, lock-free, inlined, noexcept.
  T load(memory_order o = memory_order::seq_cst) const noexcept { return atom().load(o); }
  void store(T v, memory_order o = memory_order::seq_cst) noexcept { atom().store(v, o); }
  T value() const noexcept { return load(); }
  void set_value(T v) noexcept { store(v); }
  T exchange(T v, memory_order o = memory_order::seq_cst) noexcept { return atom().exchange(v, o); }
  bool compare_exchange(T& expected, T desired, memory_order o = memory_order::seq_cst) noexcept {
    return atom().compare_exchange_strong(expected, desired, o);
  }
  T fetch_add(T d, memory_order o = memory_order::seq_cst) noexcept requires std::is_integral_v<T> {
    return atom().fetch_add(d, o);
  }
  T fetch_sub(T d, memory_order o = memory_order::seq_cst) noexcept requires std::is_integral_v<T> {
    return atom().fetch_sub(d, o);
  }
  // Blocks until the value differs from `old` (spurious-wakeup safe).
  T wait(T old) const noexcept { return cell().wait(old); }
  template <class Rep, class Period>
  bool wait_for(T old, std::chrono::duration<Rep, Period> timeout) const noexcept {
    return cell().wait_for(old, timeout);
  }
  // Wake waiters; call after the store that changed the value.
  void notify_one() noexcept { cell().notify_one(); }
  void notify_all() noexcept { cell().notify_all(); }

  Atomic<T>& atomic() const noexcept { return atom(); }

 private:
  Cell& cell() const noexcept { return *reinterpret_cast<Cell*>(this->data_); }
  Atomic<T>& atom() const noexcept { return cell().value(); }
  static constexpr detail::ObjectLayout layout() {
    return detail::ObjectLayout{detail::LockKind::atomic, 0, sizeof(Cell), 1};
  }
  static BlockSpec spec() {
    return detail::object_spec(BlockKind::value, TypeFingerprint::of<T>(), 1, sizeof(Cell),
                               detail::LockKind::atomic, 0);
  }
  static RegionInit init_with(T initial) {
    return [initial](std::span<std::byte>, std::span<std::byte> payload) {
      ::new (static_cast<void*>(payload.data())) Cell(initial);
    };
  }
  explicit AtomicValue(detail::ObjectPlace place) : Base(std::move(place), nullptr) {}
};

}  // namespace shmkit
