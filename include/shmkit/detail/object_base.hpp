// shmkit/detail/object_base.hpp — the common part of Value<T, Lock> and
// Array<T, Lock>: where the object lives, its lock, and the locking helper.
#pragma once

#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "shmkit/detail/fault.hpp"
#include "shmkit/detail/shared_object.hpp"

namespace shmkit::detail {

// acquire() with the object's name built only on the error path.
template <class L>
void acquire(L& lock, const ObjectPlace& place, const char* noun) {
  if constexpr (std::is_same_v<L, RobustMutex>) {
    const LockResult r = lock.lock();
    if (r == LockResult::acquired) [[likely]]
      return;
    if (r == LockResult::owner_died) {
      lock.make_consistent();
      lock.unlock();
      throw_owner_died(place.what(noun));
    }
    throw_lock_failed(place.what(noun), r);
  } else {
    lock.lock();
  }
}

template <class T, class Lock, BlockKind Kind>
class ObjectBase {
  static_assert(std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>,
                "a shared Value/Array element must be trivially copyable and standard layout "
                "(no pointers, virtual functions or std::string: it is read by other processes)");

 protected:
  using Traits = LockTraits<Lock>;
  static constexpr bool kHasLock = !std::is_same_v<Lock, NoLock>;
  static constexpr bool kExternal = Traits::kind == LockKind::external;

 public:
  using value_type = T;
  using lock_type = typename Traits::lock_type;
  // The lock argument of create/attach: a pointer to the caller's lock for
  // ExternalLock<L>, else nothing to pass.
  using LockArg = std::conditional_t<kExternal, lock_type*, std::nullptr_t>;

  ObjectBase(ObjectBase&&) noexcept = default;
  ObjectBase& operator=(ObjectBase&&) noexcept = default;

  // The lock (CPython's get_lock()). Taking it and then calling this
  // object's locking accessors in the same thread does not deadlock: the
  // accessors see the lock is held by this thread and do not take it again.
  LockRef<lock_type>& get_lock() const noexcept requires kHasLock { return *lock_ref_; }

  // The block's name ("" for heap and anonymous objects).
  const std::string& name() const noexcept { return place_.name; }
  // A heap object's handle (pass to_string() to another process).
  const std::optional<HeapHandle>& handle() const noexcept { return place_.handle; }
  // Offset of the elements from the start of their block (for numpy:
  // np.ndarray(shape, dtype, buffer=SharedMemory(name).buf, offset=...)).
  std::size_t payload_offset() const noexcept {
    return static_cast<std::size_t>(reinterpret_cast<const std::byte*>(data_) -
                                    static_cast<const std::byte*>(place_.mapping->data()));
  }
  const SharedMemory& shm() const noexcept { return *place_.mapping; }
  // Where the object lives (for synchronized() and tools).
  const ObjectPlace& place() const noexcept { return place_; }

  // Removes a named object's block (others keep their mappings).
  void unlink() { place_.mapping->unlink(); }
  // Frees a heap object. The handle (here and in other processes) is
  // invalid afterwards; using the object afterwards is a bug.
  void destroy() {
    if (!place_.heap || !place_.handle) {
      throw std::logic_error("shmkit: destroy() is for heap objects; unlink() a named one");
    }
    place_.heap->deallocate(*place_.handle);
  }

 protected:
  ObjectBase(ObjectPlace place, LockArg lock)
      : place_(std::move(place)), data_(reinterpret_cast<T*>(place_.region.payload.data())) {
    if constexpr (Traits::in_block) {
      lock_ = reinterpret_cast<lock_type*>(place_.region.prefix.data());
    } else if constexpr (kExternal) {
      if (lock == nullptr) throw std::invalid_argument("shmkit: this object needs its external lock");
      lock_ = lock;
    }
    if constexpr (kHasLock) lock_ref_ = std::make_unique<LockRef<lock_type>>(lock_);
  }

  static constexpr const char* noun() noexcept { return Kind == BlockKind::value ? "value" : "array"; }

  // Constructs the in-block lock (if any) in the prefix.
  static void init_lock(std::span<std::byte> prefix) {
    if constexpr (Traits::in_block) ::new (static_cast<void*>(prefix.data())) lock_type();
  }

  // Runs fn under the lock, unless this thread already holds it through
  // get_lock(), or there is no lock.
  //
  // The lock pointer is read from the handle before the lock is taken and
  // kept in a local: the handle's address has escaped, so a member read
  // after the acquire (a compiler barrier, and on x86 a locked instruction
  // that later loads wait for) would be reloaded from memory on the critical
  // path between lock and unlock. Callers read data_ before calling, for the
  // same reason (see Value's accessors).
  template <class F>
  decltype(auto) locked(F&& fn) const {
    if constexpr (!kHasLock) {
      return fn();
    } else {
      lock_type* const lock = lock_;
      if (held_by_this_thread(lock)) return fn();
      acquire(*lock, place_, noun());
      struct Release {
        lock_type* l;
        ~Release() {
          SHMKIT_FAULT_POINT(object_written);
          release(*l);
        }
      } release_on_exit{lock};
      SHMKIT_FAULT_POINT(object_locked);
      return fn();
    }
  }

  static BlockSpec spec(std::uint64_t count, std::uint64_t elem_bytes, LockKind kind) {
    return object_spec(Kind, TypeFingerprint::of<T>(), count, elem_bytes, kind, lock_size<Lock>());
  }

  ObjectPlace place_;
  T* data_ = nullptr;
  std::conditional_t<kHasLock, lock_type*, std::nullptr_t> lock_{};
  std::conditional_t<kHasLock, std::unique_ptr<LockRef<lock_type>>, std::nullptr_t> lock_ref_{};
};

}  // namespace shmkit::detail
