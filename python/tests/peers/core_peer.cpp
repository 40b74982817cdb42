// core_peer — the C++ side of python/tests/test_cross_language.py: an
// unrelated process that makes or reads the objects a Python test reads or
// made, with the C++ library only.
//   core_peer shm-create NAME SIZE TEXT    a block with TEXT at 0 (left for the test)
//   core_peer shm-read NAME LEN            prints LEN bytes at 0
//   core_peer list-create NAME             ShareableList [42, -1.5, True, None, "héllo", b"a\0b\0"]
//   core_peer list-dump NAME               prints each item's python_repr, one a line
//   core_peer value-create NAME X          Value<int64_t> (RecursiveMutex) = X
//   core_peer value-add NAME N             Value<int64_t>::attach, fetch_add(N); prints the new value
//   core_peer robust-value-add NAME N      Value<int64_t, RobustMutex>::attach, fetch_add(N)
//   core_peer array-create NAME            Array<double> {0.5, 1.5, 2.5}
//   core_peer array-negate NAME            Array<int32_t>::attach, negates every element
//   core_peer quote-create NAME            Value<Quote> {7, 101.25} (TypeName "Quote/v1")
//   core_peer quote-read NAME              prints "id px"
//   core_peer chars-read NAME              Array<char>::attach, prints value()
// Exit 0 on success, 1 with the exception's message on stderr otherwise.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>

#include "shmkit/array.hpp"
#include "shmkit/shareable_list.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/value.hpp"

struct Quote {
  std::int64_t id;
  double px;
};
template <>
struct shmkit::TypeName<Quote> {
  static constexpr std::string_view value = "Quote/v1";
};

namespace {

using namespace shmkit::literals;

int run(int argc, char** argv) {
  const std::string_view cmd = argc > 1 ? argv[1] : "";
  if (cmd == "shm-create" && argc == 5) {
    auto shm = shmkit::SharedMemory::create(argv[2], std::strtoull(argv[3], nullptr, 10));
    const std::string_view text = argv[4];
    if (text.size() > shm.size()) throw std::out_of_range("text longer than the block");
    std::memcpy(shm.data(), text.data(), text.size());
    return 0;
  }
  if (cmd == "shm-read" && argc == 4) {
    auto shm = shmkit::SharedMemory::attach(argv[2]);
    const std::size_t n = std::strtoull(argv[3], nullptr, 10);
    if (n > shm.size()) throw std::out_of_range("read past the end");
    std::fwrite(shm.data(), 1, n, stdout);
    return 0;
  }
  if (cmd == "list-create" && argc == 3) {
    (void)shmkit::ShareableList::create(
        argv[2], {shmkit::Item(std::int64_t{42}), shmkit::Item(-1.5), shmkit::Item(true), shmkit::None,
                  shmkit::Item(std::string("h\u00e9llo")), shmkit::Item("a\0b\0"_b)});
    return 0;
  }
  if (cmd == "list-dump" && argc == 3) {
    auto sl = shmkit::ShareableList::attach(argv[2]);
    for (const auto& item : sl) std::printf("%s\n", shmkit::python_repr(item).c_str());
    return 0;
  }
  if (cmd == "value-create" && argc == 4) {
    (void)shmkit::Value<std::int64_t>::create(argv[2], std::strtoll(argv[3], nullptr, 10));
    return 0;
  }
  if (cmd == "value-add" && argc == 4) {
    auto v = shmkit::Value<std::int64_t>::attach(argv[2]);
    const auto n = std::strtoll(argv[3], nullptr, 10);
    std::printf("%lld\n", static_cast<long long>(v.fetch_add(n) + n));
    return 0;
  }
  if (cmd == "robust-value-add" && argc == 4) {
    auto v = shmkit::Value<std::int64_t, shmkit::RobustMutex>::attach(argv[2]);
    v.fetch_add(std::strtoll(argv[3], nullptr, 10));
    return 0;
  }
  if (cmd == "array-create" && argc == 3) {
    (void)shmkit::Array<double>::create(argv[2], {0.5, 1.5, 2.5});
    return 0;
  }
  if (cmd == "array-negate" && argc == 3) {
    auto a = shmkit::Array<std::int32_t>::attach(argv[2]);
    for (std::size_t i = 0; i < a.size(); ++i) {
      const auto at = static_cast<std::ptrdiff_t>(i);
      a.set(at, -a.get(at));
    }
    return 0;
  }
  if (cmd == "quote-create" && argc == 3) {
    (void)shmkit::Value<Quote>::create(argv[2], Quote{7, 101.25});
    return 0;
  }
  if (cmd == "quote-read" && argc == 3) {
    const Quote q = shmkit::Value<Quote>::attach(argv[2]).value();
    std::printf("%lld %.2f\n", static_cast<long long>(q.id), q.px);
    return 0;
  }
  if (cmd == "chars-read" && argc == 3) {
    auto a = shmkit::Array<char>::attach(argv[2]);
    std::printf("%s\n", a.value().c_str());
    return 0;
  }
  std::fprintf(stderr, "core_peer: bad arguments\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "core_peer: %s\n", e.what());
    return 1;
  }
}
