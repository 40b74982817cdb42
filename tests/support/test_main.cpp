// main() for every shmkit test binary: GoogleTest plus a per-test watchdog
// and a final check that no block under this process's prefix is left in
// /dev/shm.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

#include "test_support.hpp"

namespace {

char g_current_test[512] = "(between tests)";
unsigned g_timeout_seconds = 120;

void on_alarm(int) {
  // Only async-signal-safe calls here.
  const char head[] = "\n*** watchdog: test ";
  const char tail[] = " did not finish in time (SHMKIT_TEST_TIMEOUT); failing instead of hanging\n";
  (void)!::write(2, head, sizeof head - 1);
  (void)!::write(2, g_current_test, std::strlen(g_current_test));
  (void)!::write(2, tail, sizeof tail - 1);
  ::_exit(124);
}

class Watchdog : public testing::EmptyTestEventListener {
  void OnTestStart(const testing::TestInfo& info) override {
    std::snprintf(g_current_test, sizeof g_current_test, "%s.%s", info.test_suite_name(), info.name());
    ::alarm(g_timeout_seconds);
  }
  void OnTestEnd(const testing::TestInfo&) override { ::alarm(0); }
};

class LeakCheck : public testing::Environment {
 public:
  void TearDown() override {
    // The private tracker registry set up in main() is expected, not a leak.
    if (const char* reg = std::getenv("SHMKIT_TRACKER_REGISTRY"))
      ::shm_unlink(("/" + std::string(reg)).c_str());
    auto left = shmkit::test::list_blocks(shmkit::test::name_prefix());
    for (const auto& name : left) {
      ADD_FAILURE() << "test suite left block /dev/shm/" << name << " behind (removed it now)";
      ::shm_unlink(("/" + name).c_str());
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (const char* t = std::getenv("SHMKIT_TEST_TIMEOUT")) {
    g_timeout_seconds = static_cast<unsigned>(std::strtoul(t, nullptr, 10));
  }
  struct sigaction sa {};
  sa.sa_handler = on_alarm;
  ::sigaction(SIGALRM, &sa, nullptr);
  testing::UnitTest::GetInstance()->listeners().Append(new Watchdog);
  testing::AddGlobalTestEnvironment(new LeakCheck);
  (void)shmkit::test::name_prefix();  // fix the prefix to this process's pid
  // Tests never touch the user's real tracker registry (tracker.hpp): each
  // test process registers in a private one, removed by LeakCheck.
  const std::string registry = shmkit::test::name_prefix() + "registry";
  ::setenv("SHMKIT_TRACKER_REGISTRY", registry.c_str(), 0);
  return RUN_ALL_TESTS();
}
