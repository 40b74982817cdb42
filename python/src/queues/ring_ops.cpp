// python/src/queues/ring_ops.cpp — the instantiations of SpscQueue and
// MpmcQueue over Blob<N> for every supported item size, behind one table of
// Ops (queues.hpp). Contract: module.cpp.
#include <array>
#include <string>
#include <utility>

#include "queues/queues.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"

namespace shmkit::python::queues {
namespace {

template <std::size_t N>
struct Blob {
  unsigned char bytes[N];
};

template <std::size_t N>
struct Impl {
  using T = Blob<N>;
  using Spsc = shmkit::SpscQueue<T>;
  using Mpmc = shmkit::MpmcQueue<T>;
  using MSlot = shmkit::MpmcSlot<T>;

  static shmkit::BlockSpec spec(bool mpmc, std::string_view name, std::uint64_t capacity,
                                const shmkit::TypeFingerprint& f) {
    if (!mpmc) {
      shmkit::BlockSpec s = Spsc::region_spec(capacity, name);  // checks the capacity
      s.type = f;
      return s;
    }
    const std::uint64_t slot = sizeof(MSlot);
    if (capacity < 2 || (capacity & (capacity - 1)) != 0 || capacity > (std::uint64_t{1} << 40) / slot) {
      throw std::invalid_argument("shmkit: cannot create block \"" + std::string(name) + "\": capacity " +
                                  std::to_string(capacity) +
                                  " is not a power of two in [2, 2^40 / slot size] (MpmcQueue)");
    }
    shmkit::BlockSpec s;
    s.kind = shmkit::BlockKind::mpmc_queue;
    s.type = f;
    s.count = capacity;
    s.prefix_size = sizeof(shmkit::MpmcControl);
    s.payload_size = capacity * slot;
    s.param[0] = slot;
    s.param[1] = shmkit::kMpmcLayout;
    return s;
  }

  static void* create(bool mpmc, std::string_view name, std::uint64_t capacity,
                      const shmkit::TypeFingerprint& f, bool track) {
    shmkit::SharedMemory::Options options;
    options.track = track;
    const shmkit::BlockSpec s = spec(mpmc, name, capacity, f);
    if (mpmc) {
      shmkit::TypedBlock b = shmkit::create_typed_block(
          name, s,
          [capacity](std::span<std::byte> prefix, std::span<std::byte> payload) {
            new (prefix.data()) shmkit::MpmcControl();
            auto* slots = reinterpret_cast<MSlot*>(payload.data());
            for (std::uint64_t i = 0; i < capacity; ++i) {
              // relaxed: published by create_typed_block's release of kReady.
              slots[i].seq.store(i, std::memory_order_relaxed);
            }
          },
          options);
      return new Mpmc(Mpmc::from_block(std::move(b)));
    }
    shmkit::TypedBlock b = shmkit::create_typed_block(name, s, Spsc::init_region, options);
    return new Spsc(Spsc::from_block(std::move(b)));
  }

  static void* attach(bool mpmc, std::string_view name, const shmkit::TypeFingerprint& f) {
    shmkit::TypedBlock b = shmkit::attach_typed_block(
        name, mpmc ? shmkit::BlockKind::mpmc_queue : shmkit::BlockKind::spsc_queue, f);
    if (mpmc) return new Mpmc(Mpmc::from_block(std::move(b)));
    return new Spsc(Spsc::from_block(std::move(b)));
  }

  static void destroy(bool mpmc, void* q) {
    if (mpmc)
      delete static_cast<Mpmc*>(q);
    else
      delete static_cast<Spsc*>(q);
  }
  static std::size_t try_push(bool mpmc, void* q, const void* items, std::size_t n) {
    const T* p = static_cast<const T*>(items);
    if (n == 1) {
      return mpmc ? static_cast<Mpmc*>(q)->try_push(*p) : static_cast<Spsc*>(q)->try_push(*p);
    }
    std::span<const T> s(p, n);
    return mpmc ? static_cast<Mpmc*>(q)->try_push(s) : static_cast<Spsc*>(q)->try_push(s);
  }
  static std::size_t try_pop(bool mpmc, void* q, void* out, std::size_t n) {
    T* p = static_cast<T*>(out);
    if (n == 1) return mpmc ? static_cast<Mpmc*>(q)->try_pop(*p) : static_cast<Spsc*>(q)->try_pop(*p);
    std::span<T> s(p, n);
    return mpmc ? static_cast<Mpmc*>(q)->try_pop(s) : static_cast<Spsc*>(q)->try_pop(s);
  }
  static bool push_until(bool mpmc, void* q, const void* item, Clock::time_point d) {
    const T& v = *static_cast<const T*>(item);
    return mpmc ? static_cast<Mpmc*>(q)->push_until(v, d) : static_cast<Spsc*>(q)->push_until(v, d);
  }
  static bool pop_until(bool mpmc, void* q, void* out, Clock::time_point d) {
    T& v = *static_cast<T*>(out);
    return mpmc ? static_cast<Mpmc*>(q)->pop_until(v, d) : static_cast<Spsc*>(q)->pop_until(v, d);
  }
  static std::uint64_t size(bool mpmc, void* q) {
    if (mpmc) {
      auto* m = static_cast<Mpmc*>(q);
      return m->size();
    }
    return static_cast<Spsc*>(q)->size();
  }
  static std::uint64_t capacity(bool mpmc, void* q) {
    return mpmc ? static_cast<Mpmc*>(q)->capacity() : static_cast<Spsc*>(q)->capacity();
  }
  static const std::string& name(bool mpmc, void* q) {
    return mpmc ? static_cast<Mpmc*>(q)->name() : static_cast<Spsc*>(q)->name();
  }
  static void unlink(bool mpmc, void* q) {
    if (mpmc)
      static_cast<Mpmc*>(q)->unlink();
    else
      static_cast<Spsc*>(q)->unlink();
  }

  static const void* peek(void* q, std::size_t max, std::size_t* n) {
    const std::span<const T> s = static_cast<Spsc*>(q)->peek(max);
    *n = s.size();
    return s.data();
  }
  static void consume(void* q, std::size_t n) { static_cast<Spsc*>(q)->consume(n); }

  static constexpr Ops ops{N,         create, attach,   destroy, try_push, try_pop, push_until,
                           pop_until, size,   capacity, name,    unlink,   peek,    consume};
};

// The element sizes instantiated.
template <std::size_t... I>
constexpr auto make_table(std::index_sequence<I...>) {
  return std::array<const Ops*, sizeof...(I)>{&Impl<(I < 16    ? I + 1
                                                     : I < 46  ? 16 + 8 * (I - 15)
                                                     : I < 58  ? 256 + 64 * (I - 45)
                                                     : I == 58 ? 2048
                                                               : 4096)>::ops...};
}
constexpr auto kTable = make_table(std::make_index_sequence<60>());

}  // namespace

const Ops* find_ops(std::size_t n) {
  for (const Ops* o : kTable) {
    if (o->item_size == n) return o;
  }
  return nullptr;
}

PyObject* supported_sizes() {
  PyObject* l = PyList_New(0);
  if (l == nullptr) return nullptr;
  for (const Ops* o : kTable) {
    PyObject* v = PyLong_FromSize_t(o->item_size);
    if (v == nullptr || PyList_Append(l, v) < 0) {
      Py_XDECREF(v);
      Py_DECREF(l);
      return nullptr;
    }
    Py_DECREF(v);
  }
  return l;
}

}  // namespace shmkit::python::queues
