// libFuzzer target: the typed block header (shmkit/typed_block.hpp) parsed
// from arbitrary bytes, as attach does with a block another process wrote.
// Accepted headers must describe views inside the buffer; rejections must be
// std::invalid_argument.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "shmkit/typed_block.hpp"

namespace {

void check_inside(const shmkit::TypedRegion& r, const std::byte* base, std::size_t size) {
  auto inside = [&](std::span<std::byte> s) {
    return s.data() >= base && s.data() + s.size() <= base + size;
  };
  if (!inside(r.prefix) || !inside(r.payload)) std::abort();
  if (r.header.payload_offset < shmkit::BlockHeader::kSize + r.header.prefix_size) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A 64-byte aligned copy, as a mapping would be.
  std::vector<std::byte> buf(size + 64);
  auto* base = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(buf.data()) + 63) & ~std::uintptr_t{63});
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
  return 0;
}
