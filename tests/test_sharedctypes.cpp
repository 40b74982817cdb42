// Value / Array / AtomicValue across real processes: CPython's
// sharedctypes examples, attach by name from forked and exec'd processes,
// exact totals under contention, type and layout checks, numpy interop.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <fcntl.h>
#include <mutex>
#include <regex>
#include <sys/mman.h>
#include <unistd.h>

#include "shmkit/array.hpp"
#include "shmkit/value.hpp"
#include "test_support.hpp"

namespace shmkit::test {
namespace {

struct Point {
  double x, y;
};

template <class E, class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected exception not thrown";
  return {};
}

// A lock that lives in its own anonymous block, shared with forked children
// (CPython's `lock = Lock()` passed to several objects).
template <class L>
struct SharedLock {
  SharedMemory shm = SharedMemory::anonymous(sizeof(L));
  L* lock = ::new (shm.data()) L();
};

// ------------------------------------------------------------ CPython's docs

// multiprocessing docs, "Sharing state between processes".
TEST(SharedctypesDocs, ValueAndArrayWithAChild) {
  auto num = Value<double>::anonymous(0.0);
  std::vector<std::int32_t> init(10);
  for (int i = 0; i < 10; ++i) init[i] = i;
  auto arr = Array<std::int32_t>::anonymous(std::span<const std::int32_t>(init));
  auto st = run_child([&] {
    num.set_value(3.1415927);
    for (std::size_t i = 0; i < arr.size(); ++i) arr.set(static_cast<std::ptrdiff_t>(i), -arr.get(i));
    return 0;
  });
  ASSERT_TRUE(st.ok()) << st.describe();
  EXPECT_DOUBLE_EQ(num.value(), 3.1415927);
  EXPECT_EQ(arr.to_vector(), (std::vector<std::int32_t>{0, -1, -2, -3, -4, -5, -6, -7, -8, -9}));
}

// multiprocessing.sharedctypes docs: Value('i'), Value(c_double, lock=False),
// Array('c', lock=lock), Array(Point, lock=lock), modified by a child.
TEST(SharedctypesDocs, StructArrayCharArrayAndSharedLock) {
  SharedLock<Mutex> lock;
  auto n = Value<std::int32_t>::anonymous(7);
  auto x = RawValue<double>::anonymous(1.0 / 3.0);
  const std::string hello = "hello world";
  auto s = Array<char, ExternalLock<Mutex>>::anonymous(std::span<const char>(hello.data(), hello.size()),
                                                       lock.lock);
  const Point pts[] = {{1.875, -6.25}, {-5.75, 2.0}, {2.375, 9.5}};
  auto A = Array<Point, ExternalLock<Mutex>>::anonymous(std::span<const Point>(pts), lock.lock);

  auto st = run_child([&] {
    n.update([](std::int32_t& v) { v = v * v; });
    x.set_value(x.value() * x.value());
    std::string up = s.value();
    for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    s.set_value(up);
    A.update([](std::span<Point> a) {
      for (auto& p : a) {
        p.x *= p.x;
        p.y *= p.y;
      }
    });
    return 0;
  });
  ASSERT_TRUE(st.ok()) << st.describe();
  EXPECT_EQ(n.value(), 49);
  EXPECT_DOUBLE_EQ(x.value(), 0.1111111111111111);
  EXPECT_EQ(s.value(), "HELLO WORLD");
  auto got = A.to_vector();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].x, 3.515625);
  EXPECT_EQ(got[0].y, 39.0625);
  EXPECT_EQ(got[1].x, 33.0625);
  EXPECT_EQ(got[1].y, 4.0);
  EXPECT_EQ(got[2].x, 5.640625);
  EXPECT_EQ(got[2].y, 90.25);
  // The two arrays really share the caller's lock.
  EXPECT_EQ(&s.get_lock().native(), lock.lock);
  EXPECT_EQ(&A.get_lock().native(), lock.lock);
}

// ------------------------------------------------------------ by name

TEST(Sharedctypes, UnrelatedProcessesAttachByName) {
  auto name = unique_name("arr");
  auto arr = Array<std::int32_t>::create(name, {1, -2, 3});
  auto r = run_process({peer_path(), "array-negate", name});
  ASSERT_TRUE(r.status.ok()) << r.status.describe() << r.err;
  EXPECT_EQ(arr.to_vector(), (std::vector<std::int32_t>{-1, 2, -3}));

  auto vname = unique_name("val");
  auto v = Value<double>::create(vname, 0.5);
  r = run_process({peer_path(), "value-set", vname, "2.25"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_EQ(v.value(), 2.25);
  auto again = Value<double>::attach(vname);
  EXPECT_EQ(again.value(), 2.25);
  arr.unlink();
  v.unlink();
}

TEST(Sharedctypes, MismatchesAreClearErrors) {
  auto name = unique_name("typed");
  auto a = Array<double>::create(name, 8);
  std::string e = error_of<std::invalid_argument>([&] { Array<std::int32_t>::attach(name); });
  EXPECT_NE(e.find("typecode 'd'"), std::string::npos) << e;
  EXPECT_NE(e.find(name), std::string::npos) << e;
  e = error_of<std::invalid_argument>([&] { Value<double>::attach(name); });
  EXPECT_NE(e.find("not a value"), std::string::npos) << e;
  e = error_of<std::invalid_argument>([&] { Array<double, Mutex>::attach(name); });
  EXPECT_NE(e.find("lock 'RecursiveMutex', not 'Mutex'"), std::string::npos) << e;
  e = error_of<std::invalid_argument>([&] { RawArray<double>::attach(name); });
  EXPECT_NE(e.find("not 'none'"), std::string::npos) << e;
  e = error_of<std::invalid_argument>([&] { Array<Point>::attach(name); });
  EXPECT_NE(e.find("struct"), std::string::npos) << e;
  a.unlink();
}

TEST(Sharedctypes, ShareableListBlockIsNotAnArray) {
  auto name = unique_name("sl");
  // A short CPython list is smaller than a header; a longer one has no magic.
  for (const char* items : {"3", "40"}) {
    auto r = run_python("sharedctypes_peer.py", {"make-shareable-list", name, items});
    ASSERT_TRUE(r.status.ok()) << r.err;
    std::string e = error_of<std::invalid_argument>([&] { Array<std::int64_t>::attach(name); });
    EXPECT_TRUE(e.find("not a shmkit typed block") != std::string::npos ||
                e.find("smaller than a shmkit header") != std::string::npos)
        << e;
    EXPECT_NE(e.find(name), std::string::npos) << e;
    if (std::string(items) == "40") {
      EXPECT_NE(e.find("bad magic"), std::string::npos) << e;
    }
    SharedMemory::unlink(name);
  }
}

TEST(Sharedctypes, TruncatedAndLyingBlocksAreRejected) {
  auto name = unique_name("trunc");
  auto a = Array<std::int64_t>::create(name, 1000);
  // Another process shrinks the block: attach sees the payload does not fit.
  int fd = ::shm_open(("/" + name).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 1024), 0);
  ::close(fd);
  std::string e = error_of<std::invalid_argument>([&] { Array<std::int64_t>::attach(name); });
  EXPECT_NE(e.find("does not fit"), std::string::npos) << e;
  a.unlink();

  auto b = Array<std::int64_t>::create(name, 16);
  auto* h = const_cast<BlockHeader*>(static_cast<const BlockHeader*>(b.shm().data()));
  h->count = 1ull << 40;  // a lying count
  e = error_of<std::invalid_argument>([&] { Array<std::int64_t>::attach(name); });
  EXPECT_NE(e.find("do not fill"), std::string::npos) << e;
  h->count = 16;
  h->param[1] = 4096;  // a lying lock size
  e = error_of<std::invalid_argument>([&] { Array<std::int64_t>::attach(name); });
  EXPECT_NE(e.find("lock size"), std::string::npos) << e;
  b.unlink();
}

// ------------------------------------------------------------ semantics

TEST(Sharedctypes, IndexingAndSlicesFollowPython) {
  auto a = RawArray<std::int32_t>::anonymous(
      std::span<const std::int32_t>(std::vector<std::int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(a.get(-1), 4);
  EXPECT_EQ(a.get(-5), 0);
  EXPECT_THROW(a.get(5), std::out_of_range);
  EXPECT_THROW(a.get(-6), std::out_of_range);
  EXPECT_EQ(a.slice(1, 3), (std::vector<std::int32_t>{1, 2}));
  EXPECT_EQ(a.slice(-2, 100), (std::vector<std::int32_t>{3, 4}));
  EXPECT_TRUE(a.slice(3, 1).empty());
  const std::int32_t two[] = {9, 8};
  a.assign(1, 3, two);
  EXPECT_EQ(a.to_vector(), (std::vector<std::int32_t>{0, 9, 8, 3, 4}));
  EXPECT_THROW(a.assign(0, 3, two), std::invalid_argument);
  std::vector<std::int32_t> out(5);
  a.copy_to(out);
  EXPECT_EQ(out, a.to_vector());
  EXPECT_THROW(a.copy_to(std::span<std::int32_t>(out.data(), 4)), std::invalid_argument);
}

TEST(Sharedctypes, CharArraysHaveValueAndRaw) {
  auto s = Array<char>::anonymous(8);
  s.set_value("abc");
  EXPECT_EQ(s.value(), "abc");
  EXPECT_EQ(s.raw(), std::string("abc\0\0\0\0\0", 8));
  s.set_raw("xy");
  EXPECT_EQ(s.value(), "xyc");
  s.set_value("12345678");  // exactly full: no room for a NUL
  EXPECT_EQ(s.value(), "12345678");
  EXPECT_THROW(s.set_value("123456789"), std::invalid_argument);
}

// CPython's Array('i', []) / RawArray('d', 0) / Array('c', b''): an empty
// array is a real object (its header, and its lock when it has one), every
// index is out of range, slices are empty; a forked child attaches it.
TEST(Sharedctypes, ZeroLengthArraysAreEmpty) {
  auto name = unique_name("empty");
  auto a = Array<std::int32_t>::create(name, 0);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_TRUE(a.to_vector().empty());
  EXPECT_TRUE(a.slice(-5, 5).empty());
  EXPECT_THROW(a.get(0), std::out_of_range);
  EXPECT_THROW(a.get(-1), std::out_of_range);
  EXPECT_THROW(a.set(0, 1), std::out_of_range);
  a.assign(0, 3, std::span<const std::int32_t>());  // an empty slice takes nothing
  const std::int32_t one[] = {1};
  EXPECT_THROW(a.assign(0, 1, one), std::invalid_argument);
  std::vector<std::int32_t> none;
  a.copy_to(none);
  a.copy_from(none);
  EXPECT_EQ(a.update([](std::span<std::int32_t> s) { return s.size(); }), 0u);
  {
    std::scoped_lock g(a.get_lock());  // the lock is there
  }
  EXPECT_GE(a.payload_offset(), BlockHeader::kSize);
  auto st = run_child([&] {
    auto b = Array<std::int32_t>::attach(name);
    if (b.size() != 0) return 1;
    try {
      b.get(0);
      return 2;
    } catch (const std::out_of_range&) {
    }
    return b.get_lock().try_lock_for(std::chrono::seconds(5)) ? (b.get_lock().unlock(), 0) : 3;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
  // A Value of the same type is not an array, and count 0 never makes a Value.
  EXPECT_THROW(Value<std::int32_t>::attach(name), std::invalid_argument);
  a.unlink();

  auto rname = unique_name("empty-raw");
  auto r = RawArray<double>::create(rname, std::span<const double>());
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(RawArray<double>::attach(rname).size(), 0u);
  EXPECT_THROW(Array<double>::attach(rname), std::invalid_argument);  // made without a lock
  r.unlink();
  EXPECT_EQ(RawArray<double>::anonymous(0).size(), 0u);

  auto c = Array<char>::anonymous(0);
  EXPECT_EQ(c.value(), "");
  EXPECT_EQ(c.raw(), "");
  c.set_value("");
  c.set_raw("");
  EXPECT_THROW(c.set_value("x"), std::invalid_argument);
  EXPECT_EQ(copy(c).size(), 0u);
}

TEST(Sharedctypes, CopyAndSynchronized) {
  auto v = Value<std::int64_t>::anonymous(41);
  auto c = copy(v);
  c.set_value(c.value() + 1);
  EXPECT_EQ(c.value(), 42);
  EXPECT_EQ(v.value(), 41);  // a copy, not a view

  SharedLock<RecursiveMutex> lock;
  auto raw = RawValue<std::int64_t>::anonymous(0);
  auto sync = synchronized(raw, *lock.lock);
  sync.fetch_add(5);
  EXPECT_EQ(raw.value(), 5);  // same bytes
  EXPECT_EQ(&sync.get_lock().native(), lock.lock);

  const std::int32_t init[] = {1, 2, 3};
  auto arr = Array<std::int32_t>::anonymous(std::span<const std::int32_t>(init));
  auto arr_copy = copy(arr);
  arr_copy.set(0, 100);
  EXPECT_EQ(arr.get(0), 1);
  EXPECT_EQ(arr_copy.to_vector(), (std::vector<std::int32_t>{100, 2, 3}));
  auto raw_arr = RawArray<std::int32_t>::anonymous(3);
  auto sync_arr = synchronized(raw_arr, *lock.lock);
  sync_arr.fetch_add(2, 7);
  EXPECT_EQ(raw_arr.get(2), 7);
  EXPECT_EQ(&sync_arr.get_lock().native(), lock.lock);
}

// get_lock() then the locking accessors, in one thread: no self-deadlock
// with any lock (the watchdog fails the test if it hangs).
template <class L>
void no_self_deadlock() {
  auto v = Value<std::int64_t, L>::anonymous(1);
  {
    std::scoped_lock g(v.get_lock());
    v.set_value(v.value() + 1);
    v.fetch_add(1);
  }
  // And the lock really is released afterwards: a child can take it.
  auto st = run_child([&] {
    if (!v.get_lock().try_lock_for(std::chrono::seconds(5))) return 1;
    v.get_lock().unlock();
    return 0;
  });
  EXPECT_TRUE(st.ok()) << st.describe();
  EXPECT_EQ(v.value(), 3);
}
TEST(Sharedctypes, GetLockThenAccessorsNeverSelfDeadlock) {
  no_self_deadlock<Mutex>();
  no_self_deadlock<RecursiveMutex>();
  no_self_deadlock<RobustMutex>();
  SharedLock<Mutex> ext;
  auto v = Value<int, ExternalLock<Mutex>>::anonymous(0, ext.lock);
  std::scoped_lock g(v.get_lock());
  v.set_value(v.value() + 1);
  EXPECT_EQ(v.value(), 1);
}

// ------------------------------------------------------------ contention

template <class V>
void exact_total(V& v, int procs, int iters, auto&& increment) {
  std::vector<pid_t> kids;
  for (int p = 0; p < procs; ++p) {
    kids.push_back(fork_child([&] {
      for (int i = 0; i < iters; ++i) increment(v);
      return 0;
    }));
  }
  for (pid_t k : kids) {
    auto st = wait_child(k, std::chrono::seconds(120));
    ASSERT_TRUE(st.ok()) << st.describe();
  }
  EXPECT_EQ(v.value(), static_cast<std::int64_t>(procs) * iters);
}

TEST(SharedctypesContention, ExactTotalsWithEveryLockAndAtomics) {
  constexpr int kIters = 20000;
  for (int procs : {2, 8}) {
    SCOPED_TRACE(procs);
    {
      auto v = Value<std::int64_t>::create(unique_name("rm"), 0);
      exact_total(v, procs, kIters, [](auto& x) { x.fetch_add(1); });
      v.unlink();
    }
    {
      auto v = Value<std::int64_t, Mutex>::anonymous(0);
      exact_total(v, procs, kIters, [](auto& x) { x.update([](std::int64_t& n) { ++n; }); });
    }
    {
      auto v = Value<std::int64_t, RobustMutex>::anonymous(0);
      exact_total(v, procs, kIters, [](auto& x) { x.fetch_add(1); });
    }
    {
      // CPython's correct idiom: with v.get_lock(): v.value += 1
      auto v = Value<std::int64_t, Mutex>::anonymous(0);
      exact_total(v, procs, kIters, [](auto& x) {
        std::scoped_lock g(x.get_lock());
        x.set_value(x.value() + 1);
      });
    }
    {
      auto v = AtomicValue<std::int64_t>::create(unique_name("atomic"), 0);
      exact_total(v, procs, kIters, [](auto& x) { x.fetch_add(1); });
      v.unlink();
    }
    {
      auto a = Array<std::int64_t>::anonymous(4);
      std::vector<pid_t> kids;
      for (int p = 0; p < procs; ++p) {
        kids.push_back(fork_child([&] {
          for (int i = 0; i < kIters; ++i) a.fetch_add(i % 4, 1);
          return 0;
        }));
      }
      for (pid_t k : kids) ASSERT_TRUE(wait_child(k, std::chrono::seconds(120)).ok());
      std::int64_t sum = 0;
      for (auto x : a.to_vector()) sum += x;
      EXPECT_EQ(sum, static_cast<std::int64_t>(procs) * kIters);
    }
  }
}

// A holder of a RobustMutex-guarded Value is killed: the next accessor is
// told once (OwnerDiedError), later ones work.
TEST(SharedctypesContention, RobustValueReportsAKilledHolder) {
  auto v = Value<std::int64_t, RobustMutex>::anonymous(10);
  pid_t pid = fork_child([&] {
    (void)v.get_lock().lock();
    v.set_value(11);
    ::raise(SIGKILL);
    return 0;
  });
  ASSERT_EQ(wait_child(pid).signal, SIGKILL);
  std::string e = error_of<OwnerDiedError>([&] { (void)v.value(); });
  EXPECT_NE(e.find("died"), std::string::npos) << e;
  EXPECT_EQ(v.value(), 11);
  v.fetch_add(1);
  EXPECT_EQ(v.value(), 12);
}

TEST(SharedctypesAtomic, WaitNotifyAcrossProcesses) {
  auto flag = AtomicValue<std::int32_t>::anonymous(0);
  auto big = AtomicValue<std::uint64_t>::anonymous(0);
  pid_t pid = fork_child([&] {
    if (flag.wait(0) != 1) return 1;
    big.store(1ull << 40);
    big.notify_all();
    return 0;
  });
  flag.store(1);
  flag.notify_all();
  EXPECT_TRUE(big.wait_for(0, std::chrono::seconds(10)));
  EXPECT_EQ(big.load(), 1ull << 40);
  EXPECT_TRUE(wait_child(pid).ok());
  EXPECT_FALSE(flag.wait_for(1, std::chrono::milliseconds(20)));  // times out cleanly
}

// ------------------------------------------------------------ numpy

TEST(SharedctypesInterop, NumpyReadsAndWritesACppArray) {
  auto name = unique_name("np");
  auto a = Array<std::int32_t>::create(name, {3, 1, 4, 1, 5, 9, 2, 6});
  auto r = run_python("array_numpy.py", {name, "int32"});
  if (r.err.find("No module named 'numpy'") != std::string::npos) {
    a.unlink();
    GTEST_SKIP() << "python3-numpy is not installed for " << python_path();
  }
  ASSERT_TRUE(r.status.ok()) << r.status.describe() << r.err;
  EXPECT_NE(r.out.find("count=8 offset=" + std::to_string(a.payload_offset())), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("values=3,1,4,1,5,9,2,6"), std::string::npos) << r.out;
  EXPECT_EQ(a.to_vector(), (std::vector<std::int32_t>{6, 2, 8, 2, 10, 18, 4, 12}));
  a.unlink();

  auto d = Array<double>::create(name, {0.5, -1.25});
  r = run_python("array_numpy.py", {name, "float64"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_NE(r.out.find("values=0.5,-1.25"), std::string::npos) << r.out;
  EXPECT_EQ(d.to_vector(), (std::vector<double>{1.0, -2.5}));
  d.unlink();
}

}  // namespace
}  // namespace shmkit::test
