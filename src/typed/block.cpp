#include "shmkit/typed_block.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <thread>

#include "platform/platform.hpp"
#include "shmkit/detail/fault.hpp"
#include "shmkit/detail/sync_common.hpp"

namespace shmkit {
namespace {

std::atomic_ref<std::uint32_t> state_of(BlockHeader& h) { return std::atomic_ref(h.state); }

[[noreturn]] void bad(std::string_view what, const std::string& why) {
  throw std::invalid_argument("shmkit: " + std::string(what) + ": " + why);
}

std::string block_what(std::string_view name) { return "block " + platform::quoted(name); }

std::string describe_type(const TypeFingerprint& t) {
  std::string s;
  if (t.typecode != 0) {
    s = "typecode '";
    s += t.typecode;
    s += "'";
  } else {
    s = "struct";
  }
  s += " (size " + std::to_string(t.size) + ", align " + std::to_string(t.align) + ")";
  return s;
}

constexpr std::uint64_t kMaxPayload = std::uint64_t{1} << 48;

// Checks the header snapshot against kind/type and cuts the views.
TypedRegion views(std::span<std::byte> region, const BlockHeader& copy, BlockKind kind,
                  const TypeFingerprint& type, std::string_view what) {
  validate_block_header(copy, region.size(), what);
  if (copy.kind != static_cast<std::uint32_t>(kind)) {
    bad(what, "holds a " + block_kind_name(copy.kind) + ", not a " +
                  block_kind_name(static_cast<std::uint32_t>(kind)));
  }
  const TypeFingerprint got = copy.fingerprint();
  if (got != type) {
    const char* field = got.typecode != type.typecode ? "typecode"
                        : got.size != type.size       ? "elem_size"
                        : got.align != type.align     ? "elem_align"
                                                      : "type_hash";
    bad(what, "holds elements of " + describe_type(got) + ", not " + describe_type(type) + " (" + field +
                  " differs)");
  }
  // Offsets are relative to the region; the accessors need absolute
  // alignment (a Heap region is only 64-byte aligned).
  const auto base = reinterpret_cast<std::uintptr_t>(region.data());
  if (base % BlockHeader::kPayloadAlignment != 0 || (base + copy.payload_offset) % type.align != 0) {
    bad(what, "payload at payload_offset " + std::to_string(copy.payload_offset) +
                  " is not aligned to elem_align " + std::to_string(type.align) + " in this mapping");
  }
  TypedRegion r;
  r.header = copy;
  r.live = reinterpret_cast<BlockHeader*>(region.data());
  r.prefix = region.subspan(BlockHeader::kSize, copy.prefix_size);
  r.payload = region.subspan(copy.payload_offset, copy.payload_size);
  return r;
}

}  // namespace

std::string block_kind_name(std::uint32_t kind) {
  switch (static_cast<BlockKind>(kind)) {
    case BlockKind::value:
      return "value";
    case BlockKind::array:
      return "array";
    case BlockKind::heap:
      return "heap";
    case BlockKind::spsc_queue:
      return "spsc_queue";
    case BlockKind::mpmc_queue:
      return "mpmc_queue";
    case BlockKind::seqlock:
      return "seqlock";
    case BlockKind::broadcast_ring:
      return "broadcast_ring";
    case BlockKind::registry:
      return "tracker_registry";
    case BlockKind::sync:
      return "sync";
    case BlockKind::byte_queue:
      return "byte_queue";
    default:
      break;
  }
  if (kind >= static_cast<std::uint32_t>(BlockKind::user)) {
    return "user+" + std::to_string(kind - static_cast<std::uint32_t>(BlockKind::user));
  }
  return "unknown(" + std::to_string(kind) + ")";
}

std::uint64_t payload_offset_for(const BlockSpec& spec) noexcept {
  std::uint64_t align = std::max<std::uint64_t>(BlockHeader::kPayloadAlignment, spec.type.align);
  std::uint64_t end = BlockHeader::kSize + spec.prefix_size;
  return (end + align - 1) / align * align;
}

std::uint64_t typed_region_size(const BlockSpec& spec) {
  // An empty payload is allowed (an empty Array: header and prefix only).
  if (spec.payload_size > kMaxPayload) {
    throw std::invalid_argument("shmkit: typed region payload of " + std::to_string(spec.payload_size) +
                                " bytes is too large");
  }
  return payload_offset_for(spec) + spec.payload_size;
}

void validate_block_header(const BlockHeader& h, std::size_t block_size, std::string_view what) {
  if (block_size < BlockHeader::kSize) {
    bad(what, "is " + std::to_string(block_size) + " bytes, smaller than a shmkit header (" +
                  std::to_string(BlockHeader::kSize) + ")");
  }
  if (h.magic != BlockHeader::kMagic) bad(what, "is not a shmkit typed block (bad magic)");
  if (h.layout_version != BlockHeader::kLayoutVersion) {
    bad(what, "has layout version " + std::to_string(h.layout_version) + ", this shmkit reads " +
                  std::to_string(BlockHeader::kLayoutVersion));
  }
  if (h.header_size != BlockHeader::kSize) {
    bad(what, "header_size is " + std::to_string(h.header_size));
  }
  const std::uint64_t align = h.elem_align;
  if (align == 0 || (align & (align - 1)) != 0 || align > 4096) {
    bad(what, "elem_align " + std::to_string(align) + " is not a power of two <= 4096");
  }
  if (h.elem_size == 0 || h.elem_size % align != 0) {
    bad(what, "elem_size " + std::to_string(h.elem_size) + " is not a positive multiple of elem_align");
  }
  if (h.payload_offset < BlockHeader::kSize + std::uint64_t{h.prefix_size} || h.payload_offset % align != 0 ||
      h.payload_offset % BlockHeader::kPayloadAlignment != 0) {
    bad(what, "payload_offset " + std::to_string(h.payload_offset) + " is misplaced (prefix_size " +
                  std::to_string(h.prefix_size) + " bytes, elem_align " + std::to_string(align) + ")");
  }
  // Overflow-safe: payload_offset <= block_size checked first.
  if (h.payload_offset > block_size || h.payload_size > block_size - h.payload_offset) {
    bad(what, "payload (offset " + std::to_string(h.payload_offset) + ", size " +
                  std::to_string(h.payload_size) + ") does not fit its " + std::to_string(block_size) +
                  " bytes");
  }
}

TypedRegion init_typed_region(std::span<std::byte> region, const BlockSpec& spec, const RegionInit& init) {
  const std::uint64_t offset = payload_offset_for(spec);
  if (region.size() < typed_region_size(spec)) {
    throw std::invalid_argument("shmkit: typed region of " + std::to_string(region.size()) +
                                " bytes is too small for its spec");
  }
  const auto base = reinterpret_cast<std::uintptr_t>(region.data());
  if (base % BlockHeader::kPayloadAlignment != 0 || (base + offset) % spec.type.align != 0) {
    throw std::invalid_argument("shmkit: typed region is not aligned for its elements (align " +
                                std::to_string(spec.type.align) + ")");
  }
  auto* h = reinterpret_cast<BlockHeader*>(region.data());
  // (1) relaxed: nobody may rely on the fields before (2) publishes them;
  // the magic only tells an early attacher "a shmkit block, wait for it".
  std::atomic_ref(h->magic).store(BlockHeader::kMagic, std::memory_order_relaxed);
  state_of(*h).store(BlockHeader::kInitialising, std::memory_order_relaxed);
  h->layout_version = BlockHeader::kLayoutVersion;
  h->kind = static_cast<std::uint32_t>(spec.kind);
  h->header_size = BlockHeader::kSize;
  h->typecode = spec.type.typecode;
  h->elem_size = spec.type.size;
  h->elem_align = spec.type.align;
  h->prefix_size = spec.prefix_size;
  h->type_hash = spec.type.name_hash;
  h->count = spec.count;
  h->payload_offset = offset;
  h->payload_size = spec.payload_size;
  for (int i = 0; i < 4; ++i) h->param[i] = spec.param[i];
  std::memset(h->type_name, 0, sizeof h->type_name);
  if (!spec.type_name.empty()) {  // (an empty view's data() may be null)
    std::memcpy(h->type_name, spec.type_name.data(), std::min(spec.type_name.size(), sizeof h->type_name));
  }
  TypedRegion r;
  r.live = h;
  r.prefix = region.subspan(BlockHeader::kSize, spec.prefix_size);
  r.payload = region.subspan(offset, spec.payload_size);
  init(r.prefix, r.payload);
  std::memcpy(&r.header, h, sizeof r.header);
  r.header.state = BlockHeader::kReady;
  SHMKIT_FAULT_POINT(typed_initialising);
  // (2) release: pairs with the acquire loads (3); everything written above,
  // header, prefix and payload, is visible to whoever reads kReady.
  state_of(*h).store(BlockHeader::kReady, std::memory_order_release);
  return r;
}

TypedRegion open_typed_region(std::span<std::byte> region, BlockKind kind, const TypeFingerprint& type,
                              std::string_view what) {
  if (region.size() < BlockHeader::kSize) {
    bad(what, "is " + std::to_string(region.size()) + " bytes, smaller than a shmkit header");
  }
  auto* h = reinterpret_cast<BlockHeader*>(region.data());
  // (3) acquire: pairs with the release store (2) of the creator.
  std::uint32_t state = state_of(*h).load(std::memory_order_acquire);
  if (state != BlockHeader::kReady) {
    if (h->magic != BlockHeader::kMagic) bad(what, "is not a shmkit typed block (bad magic)");
    bad(what, "is not initialised (state " + std::to_string(state) +
                  "): its creator is still writing it or died while doing so");
  }
  // Copy the header once: another process may scribble on it while we check.
  BlockHeader copy;
  std::memcpy(&copy, h, sizeof copy);
  return views(region, copy, kind, type, what);
}

TypedBlock create_typed_block(std::string_view name, const BlockSpec& spec, const RegionInit& init,
                              const SharedMemory::Options& options) {
  std::uint64_t total;
  try {
    total = typed_region_size(spec);
  } catch (const std::invalid_argument& e) {
    bad("cannot create typed " + block_what(name), e.what());
  }
  TypedBlock b;
  b.shm = name.empty() ? SharedMemory::create(static_cast<std::size_t>(total), options)
                       : SharedMemory::create(name, static_cast<std::size_t>(total), options);
  try {
    static_cast<TypedRegion&>(b) = init_typed_region(b.shm.buf(), spec, init);
  } catch (...) {
    b.shm.unlink();
    throw;
  }
  return b;
}

TypedBlock attach_typed_block(std::string_view name, BlockKind kind, const TypeFingerprint& type,
                              const AttachOptions& options) {
  TypedBlock b;
  const std::string what = block_what(name);
  const auto deadline = detail::deadline_after(options.init_timeout);  // saturating
  // A creator makes the name visible (shm_open O_CREAT|O_EXCL) before it
  // sizes the block, so a 0-byte block may be one being created: wait while
  // it is 0 bytes, like for a creator that has not published yet, then
  // attach. (Sizing is one call, fallocate or ftruncate: a size between 0
  // and the full size is never seen, and it does not go back to 0.)
  SharedMemory::validate_name(name);
  const std::string path = platform::dev_shm_path(name);
  for (struct stat st{}; ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0 &&
                         std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  b.shm = SharedMemory::attach(name, options.shm);
  if (b.shm.size() < BlockHeader::kSize) {
    bad(what, "is " + std::to_string(b.shm.size()) + " bytes, smaller than a shmkit header (" +
                  std::to_string(BlockHeader::kSize) + ")");
  }
  auto* h = static_cast<BlockHeader*>(b.shm.data());
  // A fresh block is all zeros until its creator writes the magic; any other
  // magic is a foreign block (a ShareableList, raw bytes): refuse at once.
  for (;;) {
    // (3) acquire: pairs with the release store (2) of the creator.
    std::uint32_t state = state_of(*h).load(std::memory_order_acquire);
    if (state == BlockHeader::kReady) break;
    std::uint64_t magic = std::atomic_ref(h->magic).load(std::memory_order_relaxed);
    if (magic != 0 && magic != BlockHeader::kMagic) bad(what, "is not a shmkit typed block (bad magic)");
    if (state > BlockHeader::kReady) bad(what, "has an invalid init state " + std::to_string(state));
    if (std::chrono::steady_clock::now() >= deadline) {
      bad(what, "is not initialised (state " + std::to_string(state) +
                    "): its creator is still writing it or died while doing so");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  BlockHeader copy;
  std::memcpy(&copy, h, sizeof copy);
  static_cast<TypedRegion&>(b) = views(b.shm.buf(), copy, kind, type, what);
  return b;
}

}  // namespace shmkit
