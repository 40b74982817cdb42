// libFuzzer target for the lock-free structures' attach path on plain bytes:
// the typed header check (open_typed_region), the ring checks (from_block:
// capacity, slot size, payload size, prefix size), then a few non-blocking
// operations on whatever indices and sequence numbers the image holds.
// Only std::invalid_argument may come out of attaching; the operations must
// stay inside the image (held in a buffer of exactly its size, so ASan
// reports any access outside it) and must return (no unbounded loop on a
// forged sequence number).
//
// Input: one mode byte, then a block image.
//   mode & 3:  0 SpscQueue<uint64_t>, 1 MpmcQueue<uint64_t>,
//              2 BroadcastRing<uint64_t>, 3 SpscQueue<uint32_t>
//   mode & 4:  overwrite magic/version/state/kind/type with valid values, so
//              that the fuzzer spends its time on counts, offsets and indices.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>

#include "shmkit/lockfree/broadcast_ring.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"

namespace {

struct AlignedBuffer {
  explicit AlignedBuffer(std::size_t n)
      : size(n), p(static_cast<std::byte*>(::operator new (n, std::align_val_t{4096}))) {}
  ~AlignedBuffer() { ::operator delete (p, std::align_val_t{4096}); }
  std::size_t size;
  std::byte* p;
};

template <class Q>
shmkit::TypedBlock open(std::span<std::byte> image) {
  shmkit::TypedBlock b;  // closed SharedMemory: the views point into `image`
  static_cast<shmkit::TypedRegion&>(b) = shmkit::open_typed_region(
      image, Q::kKind, shmkit::TypeFingerprint::of<typename Q::value_type>(), "fuzz");
  return b;
}

template <class Q>
void queue_ops(std::span<std::byte> image) {
  Q q = Q::from_block(open<Q>(image));
  typename Q::value_type v{};
  typename Q::value_type many[40] = {};
  for (int i = 0; i < 4; ++i) (void)q.try_push(v);
  for (int i = 0; i < 4; ++i) (void)q.try_pop(v);
  (void)q.try_push(std::span<const typename Q::value_type>(many, 40));
  (void)q.try_pop(std::span<typename Q::value_type>(many, 40));
  (void)q.size();
  if constexpr (Q::kKind == shmkit::BlockKind::mpmc_queue) {
    // Reads forged claim records (a pid to look up), CASes only in the ring.
    for (int i = 0; i < 3; ++i) (void)q.unblock();
    (void)q.losses();
  }
}

void broadcast_ops(std::span<std::byte> image) {
  using R = shmkit::BroadcastRing<std::uint64_t>;
  R r = R::from_block(open<R>(image));
  std::uint64_t v = 0;
  for (std::uint64_t start : {std::uint64_t{0}, r.write_index(), ~std::uint64_t{0}}) {
    auto rd = r.reader_at(start);
    for (int i = 0; i < 6; ++i) (void)rd.try_read(v);
  }
  auto oldest = r.reader_oldest();
  for (int i = 0; i < 6; ++i) (void)oldest.try_read(v);
  r.push(42);
}

template <class Q>
void fix_header(std::span<std::byte> image) {
  if (image.size() < sizeof(shmkit::BlockHeader)) return;
  auto* h = reinterpret_cast<shmkit::BlockHeader*>(image.data());
  const auto t = shmkit::TypeFingerprint::of<typename Q::value_type>();
  h->magic = shmkit::BlockHeader::kMagic;
  h->layout_version = shmkit::BlockHeader::kLayoutVersion;
  h->kind = static_cast<std::uint32_t>(Q::kKind);
  h->state = shmkit::BlockHeader::kReady;
  h->header_size = shmkit::BlockHeader::kSize;
  h->typecode = t.typecode;
  h->elem_size = t.size;
  h->elem_align = t.align;
  h->type_hash = t.name_hash;
  if constexpr (Q::kKind == shmkit::BlockKind::mpmc_queue) h->param[1] = shmkit::kMpmcLayout;
}

template <class Q, class Ops>
void run(std::span<std::byte> image, bool fix, Ops ops) {
  if (fix) fix_header<Q>(image);
  try {
    ops(image);
  } catch (const std::invalid_argument&) {
    // a clear rejection: fine
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t mode = data[0];
  AlignedBuffer buf(size - 1 == 0 ? 1 : size - 1);
  std::memcpy(buf.p, data + 1, size - 1);
  std::span<std::byte> image(buf.p, size - 1);
  const bool fix = (mode & 4) != 0;
  switch (mode & 3) {
    case 0:
      run<shmkit::SpscQueue<std::uint64_t>>(image, fix, queue_ops<shmkit::SpscQueue<std::uint64_t>>);
      break;
    case 1:
      run<shmkit::MpmcQueue<std::uint64_t>>(image, fix, queue_ops<shmkit::MpmcQueue<std::uint64_t>>);
      break;
    case 2:
      run<shmkit::BroadcastRing<std::uint64_t>>(image, fix, broadcast_ops);
      break;
    default:
      run<shmkit::SpscQueue<std::uint32_t>>(image, fix, queue_ops<shmkit::SpscQueue<std::uint32_t>>);
      break;
  }
  return 0;
}
