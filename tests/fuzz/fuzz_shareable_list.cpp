// libFuzzer target for ShareableList's attach-and-read path, on plain bytes
// (no system calls): src/list/shareable_list_view.hpp.
//
// Input: one mode byte, then
//   even mode: a block image. It is parsed as an attached block would be;
//              if accepted, every item is read and its format taken, then a
//              few values are assigned and must read back exactly. Only
//              std::invalid_argument may come out; ASan catches any access
//              outside the image (held in a buffer of exactly its size).
//   odd mode:  a list of items (tag byte, then payload) that is planned,
//              written and parsed back; every item must round-trip exactly
//              and the block must be exactly the planned size.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "list/shareable_list_view.hpp"

namespace {

using shmkit::Bytes;
using shmkit::Item;
using shmkit::detail::ShareableListView;

bool same(const Item& a, const Item& b) {
  if (a.index() != b.index()) return false;
  if (const auto* x = std::get_if<double>(&a)) {
    const double y = std::get<double>(b);
    if (std::isnan(*x) || std::isnan(y)) return std::isnan(*x) && std::isnan(y);
    return std::memcmp(x, &y, sizeof y) == 0 || *x == y;
  }
  return a == b;
}

[[noreturn]] void die(const char* what, std::size_t i) {
  std::fprintf(stderr, "fuzz_shareable_list: %s (item %zu)\n", what, i);
  std::abort();
}

void parse_image(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> image(size);
  if (size != 0) std::memcpy(image.data(), data, size);
  try {
    ShareableListView view(image, "fuzz");
    for (std::size_t i = 0; i < view.size(); ++i) {
      try {
        (void)view.get(i);
        (void)view.format(i);
      } catch (const std::invalid_argument&) {
        // A str that is not UTF-8: the only per-item failure after attach.
      }
    }
    const Item values[] = {Item(std::int64_t{-5}),
                           Item(2.5),
                           Item(true),
                           Item(shmkit::None),
                           Item(std::string("abc")),
                           Item(Bytes(std::string("z\0", 2)))};
    const std::size_t n = view.size();
    for (std::size_t i = 0; i < n && i < 8; ++i) {
      for (const Item& v : values) {
        const std::vector<std::byte> before = image;
        try {
          view.set(i, v);
        } catch (const std::invalid_argument&) {
          if (before != image) die("a refused assignment changed the block", i);
          continue;  // slot too small for it
        }
        Item back;
        try {
          back = view.get(i);
        } catch (const std::invalid_argument&) {
          die("an assigned value cannot be read", i);
        }
        if (!same(back, v)) die("assigned value does not read back", i);
        // Only item i's slot, format and code may have changed.
        std::uint64_t lo, hi;
        std::memcpy(&lo, image.data() + 8 * (i + 1), 8);
        std::memcpy(&hi, image.data() + 8 * (i + 2), 8);
        std::uint64_t end;
        std::memcpy(&end, image.data() + 8 * (n + 1), 8);
        const std::size_t data = 8 * (n + 2);
        const std::size_t format = data + end + 8 * i;
        const std::size_t code = data + end + 8 * n + i;
        for (std::size_t k = 0; k < image.size(); ++k) {
          const bool own = (k >= data + lo && k < data + hi) || (k >= format && k < format + 8) || k == code;
          if (!own && image[k] != before[k]) die("an assignment wrote outside its item", i);
        }
      }
    }
  } catch (const std::invalid_argument&) {
  }
}

void round_trip(const std::uint8_t* data, std::size_t size) {
  std::vector<Item> items;
  std::size_t pos = 0;
  auto take = [&](void* out, std::size_t n) {
    const std::size_t k = std::min(n, size - pos);
    std::memset(out, 0, n);
    std::memcpy(out, data + pos, k);
    pos += k;
  };
  while (pos < size && items.size() < 256) {
    const std::uint8_t tag = data[pos++];
    switch (tag % 6) {
      case 0:
        items.emplace_back(shmkit::None);
        break;
      case 1:
        items.emplace_back((tag & 0x80) != 0);
        break;
      case 2: {
        std::int64_t v;
        take(&v, sizeof v);
        items.emplace_back(v);
        break;
      }
      case 3: {
        double v;
        take(&v, sizeof v);
        items.emplace_back(v);
        break;
      }
      default: {
        std::uint8_t n = 0;
        take(&n, 1);
        std::string s(n, '\0');
        take(s.data(), n);
        if (tag % 6 == 4) {
          items.emplace_back(std::move(s));
        } else {
          items.emplace_back(Bytes(std::move(s)));
        }
        break;
      }
    }
  }
  bool all_utf8 = true;
  for (const auto& v : items) {
    if (const auto* s = std::get_if<std::string>(&v)) all_utf8 = all_utf8 && shmkit::detail::valid_utf8(*s);
  }
  shmkit::detail::ListPlan plan;
  try {
    plan = shmkit::detail::plan_list(items, "fuzz");
  } catch (const std::invalid_argument&) {
    if (all_utf8) die("plan refused valid items", 0);
    return;
  }
  if (!all_utf8) die("plan accepted a str that is not UTF-8", 0);
  std::vector<std::byte> image(plan.block_size);
  shmkit::detail::write_list(image, items, plan);
  ShareableListView view(image, "fuzz");  // must not throw
  if (view.size() != items.size()) die("size differs", 0);
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!same(view.get(i), items[i])) die("item does not round-trip", i);
    const std::string f = view.format(i);
    if (f.empty() || f.size() > 8) die("bad format length", i);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  if ((data[0] & 1) == 0) {
    parse_image(data + 1, size - 1);
  } else {
    round_trip(data + 1, size - 1);
  }
  return 0;
}
