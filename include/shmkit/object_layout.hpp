// shmkit/object_layout.hpp — the block layout of Value and Array objects,
// public for bindings that make or attach them without the C++ templates
// (the Python package: a ctypes type is known only at run time).
//
// Contract
//   * A Value/Array block is a typed block (shmkit/typed_block.hpp) of kind
//     BlockKind::value or BlockKind::array whose kind-specific fields are:
//       count          elements (a Value: 1; an Array: 0 or more)
//       prefix_size    bytes of the in-block lock at byte 128 (0: none)
//       payload_size   count * elem_bytes
//       param[0]       the lock kind (ObjectLockKind below)
//       param[1]       the lock's size (sizeof(Mutex/RecursiveMutex/RobustMutex))
//       param[2]       bytes per element (sizeof(T), or the atomic cell's)
//   * object_spec() writes exactly that spec; open_object_region() validates
//     a region against it (every field, as Value<T, L>::attach does) and
//     throws std::invalid_argument naming the block and the field.
//   * A binding that makes an object constructs the lock in the prefix (a
//     default-constructed Mutex, RecursiveMutex or RobustMutex) and the
//     elements in the payload from its RegionInit, as Value::create does;
//     C++ then attaches it as Value<T, L> / Array<T, L> and the other way
//     round.
// These are the names Value and Array use (shmkit/detail/shared_object.hpp),
// made public here; their meaning is fixed by the layout version.
#pragma once

#include "shmkit/detail/shared_object.hpp"

namespace shmkit {

// none 0, mutex 1, recursive_mutex 2, robust_mutex 3, external 4, atomic 5.
using ObjectLockKind = detail::LockKind;
// What attach requires beyond kind and type: lock kind and size, bytes per
// element, and the exact count (0: any, for an Array).
using ObjectLayout = detail::ObjectLayout;
// The spec Value/Array create: object_spec(kind, type, count, elem_bytes,
// lock_kind, lock_size). std::invalid_argument for too many elements, or a
// Value of count 0 (an Array of 0 elements is allowed: CPython's Array('i', [])).
using detail::object_spec;
// Validates region (a typed region of kind/type) against layout.
using detail::open_object_region;
// "none", "mutex", "recursive_mutex", ... for a param[0] value.
using detail::lock_kind_name;

}  // namespace shmkit
