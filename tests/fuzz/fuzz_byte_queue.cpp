// libFuzzer target for ByteQueue on plain bytes: the typed header check,
// the ring checks (from_block: cell count, cell size, payload and prefix
// sizes), then pushes, pops, size(), has_message() and unblock() over
// whatever cell words and record headers the image holds. Only
// std::invalid_argument may come out of adopting (and std::length_error out
// of a push longer than the header's threshold); the operations must stay
// inside the image (held in a buffer of exactly its size, so ASan reports
// any access outside it) and must return (no unbounded scan on forged
// words). The queue has no name: no doorbell, no out-of-line block is ever
// mapped or unlinked.
//
// Input: one mode byte, then a block image.
//   mode & 1: overwrite magic/version/state/kind/type with valid values, so
//             that the fuzzer spends its time on counts, words and headers.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <string>

#include "shmkit/lockfree/byte_queue.hpp"

namespace {

struct AlignedBuffer {
  explicit AlignedBuffer(std::size_t n)
      : size(n), p(static_cast<std::byte*>(::operator new (n, std::align_val_t{4096}))) {}
  ~AlignedBuffer() { ::operator delete (p, std::align_val_t{4096}); }
  std::size_t size;
  std::byte* p;
};

class CountingSink final : public shmkit::ByteSink {
 public:
  std::byte* reserve(std::size_t n) noexcept override {
    if (n > buf_.size()) return nullptr;  // a forged length: "out of memory", the message stays
    return reinterpret_cast<std::byte*>(buf_.data());
  }
  void adopt(shmkit::OutOfLineBlock&&) noexcept override { __builtin_trap(); }  // never for a nameless queue

 private:
  std::string buf_ = std::string(1 << 20, '\0');
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t mode = data[0];
  AlignedBuffer buf(size - 1);
  std::memcpy(buf.p, data + 1, size - 1);
  std::span<std::byte> image(buf.p, buf.size);
  if ((mode & 1) && image.size() >= sizeof(shmkit::BlockHeader)) {
    auto* h = reinterpret_cast<shmkit::BlockHeader*>(image.data());
    h->magic = shmkit::BlockHeader::kMagic;
    h->layout_version = shmkit::BlockHeader::kLayoutVersion;
    h->state = shmkit::BlockHeader::kReady;
    h->kind = static_cast<std::uint32_t>(shmkit::BlockKind::byte_queue);
    const auto t = shmkit::TypeFingerprint::of<std::byte>();
    h->type_hash = t.name_hash;
    h->elem_size = t.size;
    h->elem_align = t.align;
  }
  try {
    shmkit::TypedBlock b;
    static_cast<shmkit::TypedRegion&>(b) = shmkit::open_typed_region(
        image, shmkit::BlockKind::byte_queue, shmkit::TypeFingerprint::of<std::byte>(), "fuzz");
    shmkit::ByteQueue q = shmkit::ByteQueue::from_block(std::move(b));
    CountingSink sink;
    const std::string small(40, 'x'), medium(300, 'y');
    // A forged out-of-line threshold makes these longer than a nameless
    // queue carries: std::length_error, as documented.
    auto push = [&q](const std::string& m) {
      try {
        (void)q.try_push(m);
      } catch (const std::length_error&) {
      }
    };
    for (int i = 0; i < 4; ++i) {
      push(small);
      push(medium);
    }
    for (int i = 0; i < 10; ++i) (void)q.try_pop(sink);
    (void)q.size();
    (void)q.has_message();
    for (int i = 0; i < 3; ++i) (void)q.unblock();
    (void)q.losses();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
