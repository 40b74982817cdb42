// src/mpi/directory.cpp — reading an MPI job's node table (directory.hpp).
#include "mpi/directory.hpp"

#include <cstring>

#include "shmkit/tracker.hpp"

namespace shmkit::mpi_directory {

std::optional<std::string> directory_of(std::string_view block) {
  if (block.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  // shmkit.mpi.<job>.n<node>[.<seq>.<label> | .ranks]
  const std::size_t job_end = block.find('.', kPrefix.size());
  if (job_end == std::string_view::npos || job_end + 2 >= block.size() || block[job_end + 1] != 'n') {
    return std::nullopt;
  }
  std::size_t node_end = block.find('.', job_end + 2);
  if (node_end == std::string_view::npos) node_end = block.size();
  if (node_end == job_end + 2) return std::nullopt;
  for (std::size_t i = job_end + 2; i < node_end; ++i) {
    if (block[i] < '0' || block[i] > '9') return std::nullopt;
  }
  return std::string(block.substr(0, node_end)) + std::string(kSuffix);
}

std::optional<int> rank_of(std::string_view block, pid_t pid) noexcept {
  try {
    const auto dir = directory_of(block);
    if (!dir) return std::nullopt;
    AttachOptions options;
    options.shm.read_only = true;
    options.init_timeout = std::chrono::milliseconds(0);
    TypedBlock table = attach_typed_block(*dir, BlockKind::array, TypeFingerprint::of<RankEntry>(), options);
    // Untrusted: count from the header, bounded by the payload's size.
    const std::uint64_t n = table.header.count;
    if (table.header.elem_size != sizeof(RankEntry) || n > table.payload.size() / sizeof(RankEntry)) {
      return std::nullopt;
    }
    const std::uint64_t start = tracker::process_start_time(pid);
    for (std::uint64_t i = 0; i < n; ++i) {
      RankEntry e;
      std::memcpy(&e, table.payload.data() + i * sizeof(RankEntry), sizeof e);
      if (e.pid == pid && start != 0 && e.start_time == start) return e.rank;
    }
  } catch (...) {
  }
  return std::nullopt;
}

}  // namespace shmkit::mpi_directory
