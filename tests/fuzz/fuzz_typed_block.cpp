// libFuzzer target: the typed block header (shmkit/typed_block.hpp) parsed
// from arbitrary bytes, as attach does with a block another process wrote.
// Accepted headers must describe views inside the buffer; rejections must be
// std::invalid_argument. The object layer (Value/Array attach: element
// stride, count, lock, prefix) is driven too, for element types wider than a
// byte: an accepted object's count * sizeof(T) elements must lie inside its
// payload, whatever the header claims.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "shmkit/detail/shared_object.hpp"
#include "shmkit/typed_block.hpp"

namespace {

void check_inside(const shmkit::TypedRegion& r, const std::byte* base, std::size_t size) {
  auto inside = [&](std::span<std::byte> s) {
    return s.data() >= base && s.data() + s.size() <= base + size;
  };
  if (!inside(r.prefix) || !inside(r.payload)) std::abort();
  if (r.header.payload_offset < shmkit::BlockHeader::kSize + r.header.prefix_size) std::abort();
}

// Attach as Value<T, Policy> (count 1) or Array<T, Policy> (any count) would.
template <class T, class Policy>
void try_object(std::span<std::byte> region, shmkit::BlockKind kind, const std::byte* base,
                std::size_t size) {
  using namespace shmkit;
  const std::uint64_t count = kind == BlockKind::value ? 1 : 0;
  try {
    TypedRegion r = detail::open_object_region(region, kind, TypeFingerprint::of<T>(),
                                               detail::object_layout<T, Policy>(count), "fuzz");
    check_inside(r, base, size);
    // What the accessors will touch: header.count elements of sizeof(T)
    // bytes from the payload, the lock in the prefix.
    // An Array may be empty (CPython's Array('i', [])); a Value holds one.
    if (r.header.count == 0 && kind != BlockKind::array) std::abort();
    if (r.header.count > r.payload.size() / sizeof(T)) std::abort();
    if (count != 0 && r.header.count != count) std::abort();
    if (r.prefix.size() < detail::lock_size<Policy>()) std::abort();
    if (reinterpret_cast<std::uintptr_t>(r.payload.data()) % alignof(T) != 0) std::abort();
  } catch (const std::invalid_argument&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A 64-byte aligned copy, as a mapping would be.
  std::vector<std::byte> buf(size + 64);
  auto* base =
      reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(buf.data()) + 63) & ~std::uintptr_t{63});
  std::memcpy(base, data, size);
  std::span<std::byte> region(base, size);

  if (size >= sizeof(shmkit::BlockHeader)) {
    shmkit::BlockHeader h;
    std::memcpy(&h, base, sizeof h);
    try {
      shmkit::validate_block_header(h, size, "fuzz");
      if (h.payload_offset > size || h.payload_size > size - h.payload_offset) std::abort();
    } catch (const std::invalid_argument&) {
    }
  }
  const shmkit::TypeFingerprint types[] = {shmkit::TypeFingerprint::of<std::int32_t>(),
                                           shmkit::TypeFingerprint::of<double>(),
                                           shmkit::TypeFingerprint::of<char>()};
  const shmkit::BlockKind kinds[] = {shmkit::BlockKind::value, shmkit::BlockKind::array,
                                     shmkit::BlockKind::heap};
  for (auto k : kinds) {
    for (const auto& t : types) {
      try {
        check_inside(shmkit::open_typed_region(region, k, t, "fuzz"), base, size);
      } catch (const std::invalid_argument&) {
      }
    }
  }
  using shmkit::BlockKind;
  try_object<std::int64_t, shmkit::RecursiveMutex>(region, BlockKind::array, base, size);
  try_object<std::int64_t, shmkit::NoLock>(region, BlockKind::array, base, size);
  try_object<std::int32_t, shmkit::Mutex>(region, BlockKind::array, base, size);
  try_object<double, shmkit::NoLock>(region, BlockKind::array, base, size);
  try_object<double, shmkit::RecursiveMutex>(region, BlockKind::value, base, size);
  try_object<std::int32_t, shmkit::RobustMutex>(region, BlockKind::value, base, size);
  try_object<char, shmkit::NoLock>(region, BlockKind::array, base, size);
  return 0;
}
