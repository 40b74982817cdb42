#include <gtest/gtest.h>

#include "shmkit/shared_memory.hpp"
#include "test_support.hpp"

namespace shmkit::test {
namespace {

TEST(SharedMemory, CreateAttachUnlink) {
  auto name = unique_name("basic");
  auto a = SharedMemory::create(name, 4096);
  auto b = SharedMemory::attach(name);
  EXPECT_EQ(b.size(), 4096u);
  a.unlink();
}

}  // namespace
}  // namespace shmkit::test
