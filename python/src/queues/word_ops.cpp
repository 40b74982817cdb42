// python/src/queues/word_ops.cpp — the instantiations of SeqLock and
// BroadcastRing over Words<W> for every supported item size, behind one
// table of WordOps (queues.hpp). Contract: module.cpp.
#include <array>
#include <string>
#include <utility>

#include "queues/queues.hpp"
#include "shmkit/lockfree/broadcast_ring.hpp"
#include "shmkit/lockfree/seqlock.hpp"

namespace shmkit::python::queues {
namespace {

template <std::size_t W>
struct Words {
  std::uint64_t w[W];
};

template <std::size_t W>
struct WordImpl {
  using T = Words<W>;
  using Seq = shmkit::SeqLock<T>;
  using Ring = shmkit::BroadcastRing<T>;
  using Reader = shmkit::BroadcastReader<T>;

  static void* create(std::string_view name, const shmkit::TypeFingerprint& f, const void* initial,
                      bool track) {
    shmkit::BlockSpec spec;
    spec.kind = shmkit::BlockKind::seqlock;
    spec.type = f;
    spec.count = 1;
    spec.prefix_size = sizeof(shmkit::SeqLockControl);
    spec.payload_size = sizeof(T);
    spec.param[0] = sizeof(T);
    shmkit::SharedMemory::Options o;
    o.track = track;
    shmkit::TypedBlock b = shmkit::create_typed_block(
        name, spec,
        [initial](std::span<std::byte> prefix, std::span<std::byte> payload) {
          new (prefix.data()) shmkit::SeqLockControl();
          // No reader can see the block before it is published.
          std::memcpy(payload.data(), initial, sizeof(T));
        },
        o);
    return new Seq(Seq::from_block(std::move(b)));
  }
  static void* attach(std::string_view name, const shmkit::TypeFingerprint& f) {
    return new Seq(Seq::from_block(shmkit::attach_typed_block(name, shmkit::BlockKind::seqlock, f)));
  }
  static void destroy(void* p) { delete static_cast<Seq*>(p); }
  static void store(void* p, const void* v) { static_cast<Seq*>(p)->store(*static_cast<const T*>(v)); }
  static bool try_read(void* p, void* out) { return static_cast<Seq*>(p)->try_read(*static_cast<T*>(out)); }
  static bool read_until(void* p, void* out, Clock::time_point d) {
    const auto now = Clock::now();
    auto r = static_cast<Seq*>(p)->read_for(d > now ? d - now : Clock::duration::zero());
    if (!r) return false;
    *static_cast<T*>(out) = *r;
    return true;
  }
  static std::uint64_t version(void* p) { return static_cast<Seq*>(p)->version(); }
  static const std::string& name(void* p) { return static_cast<Seq*>(p)->name(); }
  static void unlink(void* p) { static_cast<Seq*>(p)->unlink(); }

  static void* bcreate(std::string_view name, std::uint64_t capacity, const shmkit::TypeFingerprint& f,
                       bool track) {
    constexpr std::uint64_t slot = 8 * (1 + W);
    if (capacity == 0 || (capacity & (capacity - 1)) != 0 || capacity > (std::uint64_t{1} << 40) / slot) {
      throw std::invalid_argument("shmkit: cannot create block \"" + std::string(name) + "\": capacity " +
                                  std::to_string(capacity) +
                                  " is not a power of two in [1, 2^40 / slot size]");
    }
    shmkit::BlockSpec spec;
    spec.kind = shmkit::BlockKind::broadcast_ring;
    spec.type = f;
    spec.count = capacity;
    spec.prefix_size = sizeof(shmkit::BroadcastControl);
    spec.payload_size = capacity * slot;
    spec.param[0] = slot;
    shmkit::SharedMemory::Options o;
    o.track = track;
    shmkit::TypedBlock b = shmkit::create_typed_block(
        name, spec,
        [](std::span<std::byte> prefix, std::span<std::byte>) {
          new (prefix.data()) shmkit::BroadcastControl();
        },
        o);
    return new Ring(Ring::from_block(std::move(b)));
  }
  static void* battach(std::string_view name, const shmkit::TypeFingerprint& f) {
    return new Ring(Ring::from_block(shmkit::attach_typed_block(name, shmkit::BlockKind::broadcast_ring, f)));
  }
  static void bdestroy(void* p) { delete static_cast<Ring*>(p); }
  static void push(void* p, const void* v) { static_cast<Ring*>(p)->push(*static_cast<const T*>(v)); }
  static std::uint64_t write_index(void* p) { return static_cast<Ring*>(p)->write_index(); }
  static std::uint64_t capacity(void* p) { return static_cast<Ring*>(p)->capacity(); }
  static const std::string& bname(void* p) { return static_cast<Ring*>(p)->name(); }
  static void bunlink(void* p) { static_cast<Ring*>(p)->unlink(); }
  static void* reader_at(void* p, std::uint64_t cursor) {
    return new Reader(static_cast<Ring*>(p)->reader_at(cursor));
  }
  static void reader_destroy(void* r) { delete static_cast<Reader*>(r); }
  static int read(void* r, void* out, std::uint64_t* lost, Clock::time_point d) {
    const auto now = Clock::now();
    const shmkit::BroadcastResult res =
        static_cast<Reader*>(r)->read_for(*static_cast<T*>(out), d > now ? d - now : Clock::duration::zero());
    *lost = res.lost;
    return res.status == shmkit::BroadcastStatus::ok      ? 0
           : res.status == shmkit::BroadcastStatus::empty ? 1
                                                          : 2;
  }
  static std::uint64_t cursor(void* r) { return static_cast<Reader*>(r)->cursor(); }
  static std::uint64_t backlog(void* r) { return static_cast<Reader*>(r)->backlog(); }

  static constexpr WordOps ops{W,          create,         attach,      destroy,  store,   try_read,
                               read_until, version,        name,        unlink,   bcreate, battach,
                               bdestroy,   push,           write_index, capacity, bname,   bunlink,
                               reader_at,  reader_destroy, read,        cursor,   backlog};
};

// 1-32 words (8-256 bytes), then 48, 64, 128, 256 and 512 words.
template <std::size_t... I>
constexpr auto make_word_table(std::index_sequence<I...>) {
  return std::array<const WordOps*, sizeof...(I)>{&WordImpl<(I < 32    ? I + 1
                                                             : I == 32 ? 48
                                                             : I == 33 ? 64
                                                             : I == 34 ? 128
                                                             : I == 35 ? 256
                                                                       : 512)>::ops...};
}
constexpr auto kWordTable = make_word_table(std::make_index_sequence<37>());

}  // namespace

const WordOps* find_word_ops(Py_ssize_t item) {
  const std::size_t w = (static_cast<std::size_t>(item) + 7) / 8;
  for (const WordOps* o : kWordTable) {
    if (o->words == w) return o;
  }
  return nullptr;
}

}  // namespace shmkit::python::queues
