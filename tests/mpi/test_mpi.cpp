// tests/mpi/test_mpi.cpp — shmkit::mpi under mpirun: each test runs
// mpi_worker (one scenario) with mpirun, bounded by a timeout, and checks
// what rank 0 printed, how the job ended, and that no block of the job is
// left in /dev/shm. The job's blocks are found by their name: each run gets
// its own $SHMKIT_MPI_JOB tag, so names start "shmkit.mpi.<tag>-".
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "shmkit/tracker.hpp"
#include "test_support.hpp"

namespace {

using namespace shmkit::test;

struct Job {
  std::string tag;
  ProcessResult result;
  std::string prefix() const { return "shmkit.mpi." + tag + "-"; }
};

// mpirun -np N [flags] mpi_worker args..., with a fresh job tag. As root
// Open MPI needs --allow-run-as-root; on a 2-CPU machine 4 ranks need
// --oversubscribe.
Job run_job(int np, const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  static int counter = 0;
  Job job;
  job.tag = "t" + std::to_string(::getpid()) + "x" + std::to_string(++counter);
  ::setenv("SHMKIT_MPI_JOB", job.tag.c_str(), 1);
  // Open MPI's own allocations are not ours to report (ASan builds).
  ::setenv("ASAN_OPTIONS", "detect_leaks=0", 0);
  std::vector<std::string> argv = {SHMKIT_TEST_MPIEXEC, "-np", std::to_string(np), "--oversubscribe"};
  if (::geteuid() == 0) argv.push_back("--allow-run-as-root");
  for (const char* v : {"SHMKIT_MPI_JOB", "SHMKIT_TRACKER_REGISTRY", "ASAN_OPTIONS"}) {
    argv.insert(argv.end(), {"-x", v});
  }
  for (const auto& e : env) argv.insert(argv.end(), {"-x", e});
  argv.push_back(SHMKIT_TEST_MPI_WORKER);
  argv.insert(argv.end(), args.begin(), args.end());
  job.result = run_process(argv, std::chrono::seconds(120));
  return job;
}

std::string report(const Job& job) {
  return job.result.status.describe() + "\nstdout:\n" + job.result.out + "\nstderr:\n" + job.result.err;
}

void expect_exact(int np, const std::vector<std::string>& args, const std::string& layout,
                  const std::vector<std::string>& env = {}) {
  Job job = run_job(np, args, env);
  ASSERT_TRUE(job.result.status.ok()) << report(job);
  EXPECT_NE(job.result.out.find("[" + layout + "]"), std::string::npos) << report(job);
  EXPECT_NE(job.result.out.find(": OK on " + std::to_string(np) + " ranks"), std::string::npos)
      << report(job);
  // A normal exit unlinks every block at once (the last rank to release it).
  EXPECT_EQ(list_blocks(job.prefix()), std::vector<std::string>{}) << report(job);
}

TEST(Mpi, ExactResultOneRank) { expect_exact(1, {"exact", "0"}, "0:0.0/1"); }

TEST(Mpi, ExactResultTwoRanks) { expect_exact(2, {"exact", "0"}, "0:0.0/2 1:0.1/2"); }

TEST(Mpi, ExactResultFourRanksOneNode) { expect_exact(4, {"exact", "0"}, "0:0.0/4 1:0.1/4 2:0.2/4 3:0.3/4"); }

TEST(Mpi, ExactResultFourRanksTwoVirtualNodes) {
  expect_exact(4, {"exact", "2"}, "0:0.0/2 1:0.1/2 2:1.0/2 3:1.1/2");
}

TEST(Mpi, VirtualNodesFromTheEnvironment) {
  ::setenv("SHMKIT_MPI_VIRTUAL_NODES", "4", 1);
  expect_exact(4, {"exact", "-1"}, "0:0.0/1 1:1.0/1 2:2.0/1 3:3.0/1", {"SHMKIT_MPI_VIRTUAL_NODES"});
  ::unsetenv("SHMKIT_MPI_VIRTUAL_NODES");
}

// The blocks rank 0 named ("created A B ...").
std::vector<std::string> named_blocks(const Job& job) {
  std::vector<std::string> names;
  const std::string& out = job.result.out;
  for (std::size_t at = 0; (at = out.find("shmkit.mpi.", at)) != std::string::npos;) {
    const std::size_t end = out.find_first_of(" \n", at);
    names.push_back(out.substr(at, end - at));
    at = end;
  }
  return names;
}

// Runs `args` on 4 ranks: the job ends non-zero within the bound.
Job run_killed_job(const std::vector<std::string>& args) {
  Job job = run_job(4, args);
  EXPECT_FALSE(job.result.status.timed_out) << report(job);
  EXPECT_FALSE(job.result.status.ok()) << report(job);
  return job;
}

// The watchers of the dead ranks unlink every block of the job: each of the
// 7 rank 0 named (table, chunks, 4 extra, the rank table), and anything else
// under the job's prefix. A block they left is removed here once the failure
// is reported (nothing else would remove it).
void expect_blocks_gone(const Job& job) {
  const auto named = named_blocks(job);
  EXPECT_EQ(named.size(), 7u) << report(job);
  const bool gone = eventually([&] { return list_blocks(job.prefix()).empty(); }, 20s, 50ms);
  const auto left = list_blocks(job.prefix());
  EXPECT_TRUE(gone) << "left: " << left.size() << " block(s)\n" << report(job);
  for (const auto& name : named) EXPECT_FALSE(block_exists(name)) << name << " left\n" << report(job);
  for (const auto& name : left) ::shm_unlink(("/" + name).c_str());
}

// ... and drop every registration of them (the registry is not left locked:
// this reads it).
void expect_no_registrations(const Job& job) {
  const auto registered = [&] {
    std::vector<std::string> names;
    for (const auto& r : shmkit::tracker::registrations()) {
      if (r.block.rfind(job.prefix(), 0) == 0) names.push_back(r.block + " pid " + std::to_string(r.pid));
    }
    return names;
  };
  EXPECT_TRUE(eventually([&] { return registered().empty(); }, 20s, 50ms))
      << "still registered: " << testing::PrintToString(registered()) << "\n"
      << report(job);
}

void expect_killed_job_cleaned(const std::vector<std::string>& args) {
  Job job = run_killed_job(args);
  expect_blocks_gone(job);
  expect_no_registrations(job);
}

TEST(Mpi, SigkilledRankEndsTheJobAndLeavesNoBlock) { expect_killed_job_cleaned({"kill"}); }

TEST(Mpi, MpiAbortEndsTheJobAndLeavesNoBlock) { expect_killed_job_cleaned({"abort"}); }

// A watcher reports each block it unlinks on the stderr it inherited from
// its rank. By the time the last rank has died, that stderr's reader
// (mpirun, a pipe to `head`) may have exited: the write must not kill the
// watcher (SIGPIPE) between two unlinks, which left the rest of the job's
// blocks with their registrations dropped and nothing to remove them (the
// flaky failure of SigkilledRankEndsTheJobAndLeavesNoBlock under ASan,
// where mpirun often exited first). Here every rank's stderr is a pipe with
// no reader, so every write fails: with 7 blocks and 4 watchers, a watcher
// that dies at its first report cannot have removed them all.
TEST(Mpi, SigkilledRankLeavesNoBlockWhenStderrHasNoReader) { expect_killed_job_cleaned({"kill", "broken"}); }

// ... nor block it, registry lock held, on a reader that never reads (that
// left every other sweep waiting for the lock): every rank's stderr is this
// test's pipe, full, whose read end stays open until the blocks are checked.
TEST(Mpi, SigkilledRankLeavesNoBlockWhenStderrIsFull) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  char fill[4096] = {};
  while (::write(p[1], fill, sizeof fill) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);
  // Opened by each rank through /proc: a blocking descriptor of this pipe.
  Job job = run_killed_job({"kill", "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(p[1])});
  expect_blocks_gone(job);
  ::close(p[0]);  // a watcher still blocked writing gets EPIPE (or SIGPIPE) now
  ::close(p[1]);
  expect_no_registrations(job);
}

void expect_leader_failure(const std::string& scenario, int err) {
  Job job = run_job(4, {scenario, "2"});
  ASSERT_TRUE(job.result.status.ok()) << report(job);
  const std::string& out = job.result.out;
  EXPECT_NE(out.find("leader failure reached 2 rank(s) of node 1 identically; 2 rank(s) of other nodes ok; "
                     "squatted block untouched"),
            std::string::npos)
      << report(job);
  EXPECT_NE(out.find("rank 2 (failing node 1): system_error " + std::to_string(err) + " "), std::string::npos)
      << report(job);
  EXPECT_NE(out.find("rank 3 (failing node 1): system_error " + std::to_string(err) + " "), std::string::npos)
      << report(job);
  EXPECT_EQ(list_blocks(job.prefix()), std::vector<std::string>{}) << report(job);
}

TEST(Mpi, SquattedNameReachesEveryRankOfTheNode) { expect_leader_failure("squat", EEXIST); }

TEST(Mpi, NoSpaceReachesEveryRankOfTheNode) { expect_leader_failure("enospc", ENOSPC); }

TEST(Mpi, LeadersInvalidLabelReachesEveryRank) {
  Job job = run_job(4, {"badlabel", "2"});
  ASSERT_TRUE(job.result.status.ok()) << report(job);
  EXPECT_NE(job.result.out.find("bad label: 4 of 4 ranks threw the same: invalid_argument shmkit: mpi: label "
                                "\"no/slash\""),
            std::string::npos)
      << report(job);
  EXPECT_EQ(list_blocks(job.prefix()), std::vector<std::string>{}) << report(job);
}

#ifdef SHMKIT_TEST_CLI
TEST(Mpi, LsShowsTheJobsBlocksAndRanks) {
  Job job = run_job(4, {"ls", "2", SHMKIT_TEST_CLI});
  ASSERT_TRUE(job.result.status.ok()) << report(job);
  // Rank 0 ran `shmkit ls` while every rank held the job's blocks: the
  // table of node 1 lists ranks 2 and 3 as its users.
  const std::string& out = job.result.out;
  bool saw0 = false, saw1 = false;
  for (std::size_t at = 0; (at = out.find("shmkit.mpi." + job.tag + "-", at)) != std::string::npos; ++at) {
    const std::string line = out.substr(at, out.find('\n', at) - at);
    if (line.find(".n0.0.table ") != std::string::npos) {
      saw0 = line.find("(rank 0)") != std::string::npos && line.find("(rank 1)") != std::string::npos;
    }
    if (line.find(".n1.0.table ") != std::string::npos) {
      saw1 = line.find("(rank 2)") != std::string::npos && line.find("(rank 3)") != std::string::npos;
    }
  }
  EXPECT_TRUE(saw0 && saw1) << report(job);
  EXPECT_EQ(list_blocks(job.prefix()), std::vector<std::string>{}) << report(job);
}
#endif

}  // namespace
