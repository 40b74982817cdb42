// src/mpi/directory.hpp — the per-node table of an MPI job's ranks
// ("shmkit.mpi.<job>.n<node>.ranks", a RawArray<RankEntry> of node_size
// entries, one written by each rank at its slot). shmkit::mpi writes it;
// `shmkit ls` reads it to show which ranks use a job's blocks. No MPI here:
// the CLI builds without MPI.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

#include "shmkit/typed_block.hpp"

namespace shmkit::mpi_directory {

struct RankEntry {
  std::int32_t rank = -1;  // in the NodeView's communicator
  std::int32_t node_rank = -1;
  std::int32_t node_index = -1;
  std::int32_t pid = 0;
  std::uint64_t start_time = 0;  // tracker::process_start_time(pid): a reused pid is not this rank
};

constexpr std::string_view kPrefix = "shmkit.mpi.";
constexpr std::string_view kSuffix = ".ranks";

// "shmkit.mpi.<job>.n<node>.ranks" for a block "shmkit.mpi.<job>.n<node>[...]";
// nullopt for a block that is not an MPI job's.
std::optional<std::string> directory_of(std::string_view block);

// The rank (in the job's NodeView communicator) of process `pid` among the
// users of `block`, from the block's node table; nullopt if the table is
// missing, invalid, or does not list that very process. Never throws.
std::optional<int> rank_of(std::string_view block, pid_t pid) noexcept;

}  // namespace shmkit::mpi_directory

template <>
struct shmkit::TypeName<shmkit::mpi_directory::RankEntry> {
  static constexpr std::string_view value = "shmkit.mpi.RankEntry/v1";
};
