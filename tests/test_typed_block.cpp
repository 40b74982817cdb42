// The typed block header: create/attach round trips across processes, and
// every field a hostile or broken writer could get wrong.
#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "shmkit/lockfree/broadcast_ring.hpp"
#include "shmkit/lockfree/seqlock.hpp"
#include "shmkit/typed_block.hpp"
#include "test_support.hpp"

namespace shmkit::test {
namespace {

struct Point {
  double x, y;
};
struct OtherPoint {
  double x, y;
};

BlockSpec array_spec_of_int32(std::uint64_t n) {
  BlockSpec spec;
  spec.kind = BlockKind::array;
  spec.type = TypeFingerprint::of<std::int32_t>();
  spec.count = n;
  spec.payload_size = n * sizeof(std::int32_t);
  return spec;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "no std::invalid_argument";
  return {};
}

TEST(TypedBlock, FingerprintsUseCPythonTypecodes) {
  EXPECT_EQ(TypeFingerprint::of<std::int32_t>().typecode, 'i');
  EXPECT_EQ(TypeFingerprint::of<double>().typecode, 'd');
  EXPECT_EQ(TypeFingerprint::of<std::uint64_t>().typecode, 'Q');
  EXPECT_EQ(TypeFingerprint::of<long>().typecode, 'q');
  EXPECT_EQ(TypeFingerprint::of<char>().typecode, 'c');
  EXPECT_EQ(TypeFingerprint::of<Point>().typecode, 0);
  EXPECT_NE(TypeFingerprint::of<float>(), TypeFingerprint::of<std::int32_t>());
  EXPECT_NE(TypeFingerprint::of<Point>(), TypeFingerprint::of<OtherPoint>());
  EXPECT_EQ(TypeFingerprint::of<Point>(), TypeFingerprint::of<Point>());
}

TEST(TypedBlock, CreateAttachAcrossProcesses) {
  auto name = unique_name("typed");
  auto made = create_typed_block(name, array_spec_of_int32(100), [](auto, std::span<std::byte> p) {
    auto* v = reinterpret_cast<std::int32_t*>(p.data());
    for (int i = 0; i < 100; ++i) v[i] = i * i;
  });
  EXPECT_EQ(made.header.payload_offset % 64, 0u);
  EXPECT_EQ(made.payload.size(), 400u);
  auto st = run_child([&] {
    auto b = attach_typed_block(name, BlockKind::array, TypeFingerprint::of<std::int32_t>());
    auto* v = reinterpret_cast<std::int32_t*>(b.payload.data());
    if (b.header.count != 100 || v[99] != 99 * 99) return 1;
    v[0] = -7;
    return 0;
  });
  ASSERT_TRUE(st.ok()) << st.describe();
  EXPECT_EQ(reinterpret_cast<std::int32_t*>(made.payload.data())[0], -7);
  made.shm.unlink();
}

TEST(TypedBlock, WrongKindOrTypeIsAClearError) {
  auto name = unique_name("mismatch");
  auto made = create_typed_block(name, array_spec_of_int32(4), [](auto, auto) {});
  std::string e =
      error_of([&] { attach_typed_block(name, BlockKind::array, TypeFingerprint::of<double>()); });
  EXPECT_NE(e.find(name), std::string::npos) << e;
  EXPECT_NE(e.find("typecode 'i'"), std::string::npos) << e;
  EXPECT_NE(e.find("typecode 'd'"), std::string::npos) << e;
  e = error_of([&] { attach_typed_block(name, BlockKind::value, TypeFingerprint::of<std::int32_t>()); });
  EXPECT_NE(e.find("holds a array, not a value"), std::string::npos) << e;
  made.shm.unlink();
}

TEST(TypedBlock, ForeignAndTinyBlocksAreRefused) {
  auto name = unique_name("foreign");
  auto raw = SharedMemory::create(name, 4096);
  std::memset(raw.data(), 0x5a, raw.size());
  std::string e = error_of([&] { attach_typed_block(name, BlockKind::array, TypeFingerprint::of<int>()); });
  EXPECT_NE(e.find("bad magic"), std::string::npos) << e;
  raw.unlink();

  auto tiny = SharedMemory::create(name, 16);
  e = error_of([&] { attach_typed_block(name, BlockKind::array, TypeFingerprint::of<int>()); });
  EXPECT_NE(e.find("smaller than a shmkit header"), std::string::npos) << e;
  tiny.unlink();
}

// A creator killed after it started but before it published: attachers get
// an error within the init timeout, never a hang.
TEST(TypedBlock, HalfInitialisedBlockTimesOut) {
  auto name = unique_name("half");
  pid_t pid = fork_child([&] {
    create_typed_block(name, array_spec_of_int32(4), [](auto, auto) {
      ::raise(SIGKILL);  // die inside init, before state = ready
    });
    return 1;
  });
  auto st = wait_child(pid);
  ASSERT_EQ(st.signal, SIGKILL) << st.describe();
  AttachOptions opt;
  opt.init_timeout = std::chrono::milliseconds(100);
  auto t0 = std::chrono::steady_clock::now();
  std::string e =
      error_of([&] { attach_typed_block(name, BlockKind::array, TypeFingerprint::of<std::int32_t>(), opt); });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_NE(e.find("not initialised"), std::string::npos) << e;
  SharedMemory::unlink(name);
}

// An attacher that arrives while the creator is still writing waits for it.
TEST(TypedBlock, AttachWaitsForAnInitialisingCreator) {
  auto name = unique_name("slowinit");
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t creator = fork_child([&] {
    create_typed_block(name, array_spec_of_int32(1), [&](auto, std::span<std::byte> p) {
      char c;
      if (::read(go[0], &c, 1) != 1) std::abort();  // hold init until told
      reinterpret_cast<std::int32_t*>(p.data())[0] = 4242;
    });
    return 0;
  });
  // Wait until the name exists, then release the creator shortly after the
  // attach below has started waiting.
  while (list_blocks(name).empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  pid_t releaser = fork_child([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return ::write(go[1], "g", 1) == 1 ? 0 : 1;
  });
  AttachOptions opt;
  opt.init_timeout = std::chrono::seconds(10);
  auto b = attach_typed_block(name, BlockKind::array, TypeFingerprint::of<std::int32_t>(), opt);
  EXPECT_EQ(reinterpret_cast<std::int32_t*>(b.payload.data())[0], 4242);
  EXPECT_TRUE(wait_child(releaser).ok());
  EXPECT_TRUE(wait_child(creator).ok());
  b.shm.unlink();
}

// A 0-byte block is a creator between shm_open and sizing: attach waits the
// init timeout for it, then says the block is empty. A block of a few bytes
// cannot be one being created (sizing is one call): refused at once.
TEST(TypedBlock, EmptyBlockIsWaitedForTinyOneRefusedAtOnce) {
  auto name = unique_name("zero");
  int fd = ::shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  AttachOptions opt;
  opt.init_timeout = std::chrono::milliseconds(150);
  auto t0 = std::chrono::steady_clock::now();
  std::string e =
      error_of([&] { attach_typed_block(name, BlockKind::array, TypeFingerprint::of<int>(), opt); });
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_NE(e.find("empty"), std::string::npos) << e;
  EXPECT_GE(waited, std::chrono::milliseconds(150));
  ASSERT_EQ(::ftruncate(fd, 16), 0);
  t0 = std::chrono::steady_clock::now();
  e = error_of([&] { attach_typed_block(name, BlockKind::array, TypeFingerprint::of<int>(), opt); });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
  EXPECT_NE(e.find("smaller than a shmkit header"), std::string::npos) << e;
  ::close(fd);
  SharedMemory::unlink(name);
}

// Lying headers: every field, checked one at a time.
TEST(TypedBlock, LyingHeaderFieldsAreRejected) {
  auto name = unique_name("liar");
  auto made = create_typed_block(name, array_spec_of_int32(16), [](auto, auto) {});
  auto* h = static_cast<BlockHeader*>(made.shm.data());
  const BlockHeader good = *h;
  auto expect_rejected = [&](const char* field, auto mutate) {
    *h = good;
    mutate(*h);
    std::string e =
        error_of([&] { attach_typed_block(name, BlockKind::array, TypeFingerprint::of<std::int32_t>()); });
    EXPECT_NE(e.find(name), std::string::npos) << field << ": " << e;
  };
  expect_rejected("version", [](BlockHeader& x) { x.layout_version = 99; });
  expect_rejected("header_size", [](BlockHeader& x) { x.header_size = 64; });
  expect_rejected("state", [](BlockHeader& x) { x.state = 77; });
  expect_rejected("elem_align", [](BlockHeader& x) { x.elem_align = 3; });
  expect_rejected("elem_size", [](BlockHeader& x) { x.elem_size = 0; });
  expect_rejected("offset", [](BlockHeader& x) { x.payload_offset = 8; });
  expect_rejected("offset past end", [](BlockHeader& x) { x.payload_offset = 1ull << 62; });
  expect_rejected("size past end", [](BlockHeader& x) { x.payload_size = ~0ull; });
  expect_rejected("size past end 2", [](BlockHeader& x) { x.payload_size = 4096; });
  expect_rejected("typecode", [](BlockHeader& x) { x.typecode = 'd'; });
  *h = good;
  EXPECT_NO_THROW(attach_typed_block(name, BlockKind::array, TypeFingerprint::of<std::int32_t>()));
  made.shm.unlink();
}

TEST(TypedBlock, RandomHeadersNeverPassSilently) {
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 2000; ++i) {
    BlockHeader h;
    auto* bytes = reinterpret_cast<unsigned char*>(&h);
    for (std::size_t k = 0; k < sizeof h; ++k) bytes[k] = static_cast<unsigned char>(rng());
    if (i % 2 == 0) {  // keep the magic and version so deeper checks run
      h.magic = BlockHeader::kMagic;
      h.layout_version = BlockHeader::kLayoutVersion;
      h.header_size = BlockHeader::kSize;
      h.elem_align = 1u << (rng() % 13);
      h.elem_size = h.elem_align * static_cast<std::uint32_t>(1 + rng() % 4);
      h.payload_offset = 64 * (rng() % 200);
    }
    std::size_t block = 4096;
    try {
      validate_block_header(h, block, "fuzz");
      // Accepted: then it must really fit.
      EXPECT_GE(h.payload_offset, BlockHeader::kSize);
      EXPECT_LE(h.payload_offset + h.payload_size, block);
    } catch (const std::invalid_argument&) {
    }
  }
}

TEST(TypedBlock, KindNames) {
  EXPECT_EQ(block_kind_name(static_cast<std::uint32_t>(BlockKind::spsc_queue)), "spsc_queue");
  EXPECT_EQ(block_kind_name(static_cast<std::uint32_t>(BlockKind::user) + 5), "user+5");
  EXPECT_EQ(block_kind_name(999), "unknown(999)");
}

// BlockSpec::type_name lands in the header for tools, cut to 24 bytes;
// attach checks the hash, never the name.
TEST(TypedBlock, TypeNameIsRecordedForTools) {
  auto name = unique_name("tname");
  BlockSpec spec;
  spec.kind = static_cast<BlockKind>(static_cast<std::uint32_t>(BlockKind::user) + 7);
  spec.type = TypeFingerprint::of<Point>();
  spec.type_name = "Point/v1";
  spec.count = 1;
  spec.payload_size = sizeof(Point);
  auto made = create_typed_block(name, spec, [](auto, auto) {});
  EXPECT_EQ(std::string(made.header.type_name), "Point/v1");
  auto st = run_child([&] {
    auto b = attach_typed_block(name, spec.kind, TypeFingerprint::of<Point>());
    return std::string_view(b.live->type_name) == "Point/v1" ? 0 : 1;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
  made.shm.unlink();

  auto longer = unique_name("tname_long");
  spec.type_name = "a.type.name.longer.than.24.bytes";
  auto cut = create_typed_block(longer, spec, [](auto, auto) {});
  EXPECT_EQ(std::string(cut.header.type_name, sizeof cut.header.type_name), "a.type.name.longer.than.");
  cut.shm.unlink();

  auto none = unique_name("tname_none");
  spec.type_name = {};
  auto unnamed = create_typed_block(none, spec, [](auto, auto) {});
  EXPECT_EQ(std::string(unnamed.header.type_name, sizeof unnamed.header.type_name), std::string(24, '\0'));
  unnamed.shm.unlink();
}

// A structure of one's own holding a SeqLock and a BroadcastRing as typed
// regions inside its payload (examples/order_book.hpp does this): created
// with region_spec()/init_region(), opened in another process through
// open_typed_region() and from_block() over a second mapping.
TEST(TypedBlock, SeqLockAndRingNestInARegionOfYourOwn) {
  auto name = unique_name("nested");
  const BlockSpec top_spec = SeqLock<Point>::region_spec();
  const BlockSpec ring_spec = BroadcastRing<Point>::region_spec(8, name);
  // The ring's region must sit 128-byte aligned in the mapping (its control
  // words are); the outer payload starts at 128 + 0 prefix = 128.
  const std::uint64_t top_at = 0, top_size = (typed_region_size(top_spec) + 127) / 128 * 128;
  BlockSpec spec;
  spec.kind = static_cast<BlockKind>(static_cast<std::uint32_t>(BlockKind::user) + 8);
  spec.type = TypeFingerprint::of<Point>();
  spec.count = 1;
  spec.payload_size = top_size + typed_region_size(ring_spec);
  auto outer = create_typed_block(name, spec, [&](auto, std::span<std::byte> payload) {
    init_typed_region(payload.subspan(top_at, top_size), top_spec, [](auto prefix, auto words) {
      SeqLock<Point>::init_region(prefix, words, Point{1, 2});
    });
    init_typed_region(payload.subspan(top_size), ring_spec, BroadcastRing<Point>::init_region);
  });
  auto open = [&](std::uint64_t at, std::uint64_t size, BlockKind kind) {
    TypedBlock b;
    b.shm = SharedMemory::attach(name);
    const std::uint64_t base = outer.header.payload_offset + at;
    static_cast<TypedRegion&>(b) =
        open_typed_region(b.shm.buf().subspan(base, size), kind, TypeFingerprint::of<Point>(), "nested");
    return b;
  };
  ASSERT_EQ(outer.header.payload_offset % 128, 0u);
  auto top = SeqLock<Point>::from_block(open(top_at, top_size, BlockKind::seqlock));
  EXPECT_EQ(top.read().y, 2.0);
  auto ring = BroadcastRing<Point>::from_block(
      open(top_size, typed_region_size(ring_spec), BlockKind::broadcast_ring));
  auto reader = ring.reader_at(0);
  auto st = run_child([&] {
    auto t = SeqLock<Point>::from_block(open(top_at, top_size, BlockKind::seqlock));
    auto r = BroadcastRing<Point>::from_block(
        open(top_size, typed_region_size(ring_spec), BlockKind::broadcast_ring));
    t.store(Point{3, 4});
    r.push(Point{5, 6});
    return 0;
  });
  ASSERT_TRUE(st.ok()) << st.describe();
  EXPECT_EQ(top.read().x, 3.0);
  Point p{};
  ASSERT_TRUE(reader.try_read(p));
  EXPECT_EQ(p.y, 6.0);
  // The ring's region is not a SeqLock's: from_block checks its own fields.
  TypedBlock wrong = open(top_size, typed_region_size(ring_spec), BlockKind::broadcast_ring);
  wrong.header.count = 2;
  EXPECT_THROW((void)SeqLock<Point>::from_block(std::move(wrong)), std::invalid_argument);
  // A ring region 64 bytes off its alignment is refused, not used misaligned.
  TypedBlock off;
  off.shm = SharedMemory::attach(name);
  static_cast<TypedRegion&>(off) =
      open_typed_region(off.shm.buf().subspan(outer.header.payload_offset + top_size),
                        BlockKind::broadcast_ring, TypeFingerprint::of<Point>(), "nested");
  off.prefix =
      std::span<std::byte>(off.shm.buf().data() + 64, 0);  // where a misplaced region's prefix would be
  EXPECT_THROW((void)BroadcastRing<Point>::from_block(std::move(off)), std::invalid_argument);
  outer.shm.unlink();
}

}  // namespace
}  // namespace shmkit::test
