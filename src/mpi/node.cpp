// src/mpi/node.cpp — shmkit::mpi (shmkit/mpi.hpp): node views of a communicator,
// node-collective create-or-attach, error transport, tracker bookkeeping.
#include "shmkit/mpi.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "mpi/directory.hpp"
#include "shmkit/array.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/tracker.hpp"

namespace shmkit::mpi {

namespace detail {

Outcome capture(std::exception_ptr e) noexcept {
  Outcome o;
  o.failed = 1;
  std::string what;
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& x) {
    o.type = 1;
    o.code = x.code().value();
    what = x.what();
    // std::system_error appends ": <message>" to its argument; keep the
    // argument so the rebuilt exception's what() is the same.
    const std::string tail = ": " + x.code().message();
    if (what.size() >= tail.size() && what.compare(what.size() - tail.size(), tail.size(), tail) == 0) {
      what.resize(what.size() - tail.size());
    }
  } catch (const std::invalid_argument& x) {
    o.type = 2;
    what = x.what();
  } catch (const std::out_of_range& x) {
    o.type = 3;
    what = x.what();
  } catch (const std::exception& x) {
    o.type = 4;
    what = x.what();
  } catch (...) {
    o.type = 4;
    what = "shmkit: mpi: unknown exception";
  }
  std::snprintf(o.what, sizeof o.what, "%s", what.c_str());
  return o;
}

void rethrow(const Outcome& o) {
  switch (o.type) {
    case 1:
      throw std::system_error(o.code, std::system_category(), o.what);
    case 2:
      throw std::invalid_argument(o.what);
    case 3:
      throw std::out_of_range(o.what);
    default:
      throw std::runtime_error(o.what);
  }
}

void reserve(const std::string& name) { tracker::reserve_block(name); }

void track(const std::string& name) {
  tracker::register_block(name);
  // The leader's reservation (inode 0, "whatever file is under the name")
  // has done its job: the registration of the very file replaces it.
  tracker::unregister_block(name, 0);
}

void untrack(const std::string& name, Unlink unlink) noexcept {
  try {
    tracker::unregister_block(name);
    if (unlink == Unlink::never) return;
    bool used = false;
    if (unlink == Unlink::if_unused) {
      for (const auto& r : tracker::registrations()) {
        if (r.block == name && (r.alive || !r.judged)) used = true;
      }
    }
    // Two ranks releasing at once may both find it unused: one unlink wins.
    if (!used) {
      try {
        SharedMemory::unlink(name);
      } catch (const std::system_error&) {
      }
    }
  } catch (...) {
    // Never throws (a destructor's path): the watcher or `shmkit gc` remains.
  }
}

}  // namespace detail

namespace {

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string("shmkit: mpi: ") + what + " failed: " + std::string(msg, len));
  }
}

bool label_ok(std::string_view label) {
  if (label.empty() || label.size() > 64) return false;
  for (char c : label) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

std::string draw_job() {
  unsigned char r[4];
  if (::getrandom(r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) {
    throw std::system_error(errno, std::system_category(), "shmkit: mpi: getrandom failed");
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
  std::string job = hex;
  if (const char* tag = std::getenv("SHMKIT_MPI_JOB"); tag != nullptr && *tag != '\0') {
    if (!label_ok(tag) || std::strlen(tag) > 32) {
      throw std::invalid_argument(std::string("shmkit: mpi: $SHMKIT_MPI_JOB \"") + tag +
                                  "\" is not 1-32 of [A-Za-z0-9_-]");
    }
    job = std::string(tag) + "-" + job;
  }
  return job;
}

int virtual_from_env() {
  const char* v = std::getenv("SHMKIT_MPI_VIRTUAL_NODES");
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  errno = 0;
  const long k = std::strtol(v, &end, 10);
  if (errno != 0 || *end != '\0' || k < 0 || k > 1 << 20) {
    throw std::invalid_argument(std::string("shmkit: mpi: $SHMKIT_MPI_VIRTUAL_NODES \"") + v +
                                "\" is not a count of virtual nodes (0 or more)");
  }
  return static_cast<int>(k);
}

}  // namespace

struct NodeView::Directory {
  NodeShared<RawArray<mpi_directory::RankEntry>> table;
};

NodeView::NodeView(MPI_Comm comm, int virtual_nodes) {
  virtual_nodes_ = virtual_nodes == kVirtualFromEnvironment ? virtual_from_env() : virtual_nodes;
  if (virtual_nodes_ < 0) throw std::invalid_argument("shmkit: mpi: virtual_nodes must be >= 0");
  check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  MPI_Comm host = MPI_COMM_NULL;
  check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &host),
        "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
  if (virtual_nodes_ > 0) {
    int hr = 0, hs = 0;
    MPI_Comm_rank(host, &hr);
    MPI_Comm_size(host, &hs);
    // Consecutive host ranks form each virtual node (K > host size: one rank each).
    const int color = static_cast<int>(static_cast<long long>(hr) * virtual_nodes_ / hs);
    check(MPI_Comm_split(host, color, hr, &node_comm_), "MPI_Comm_split (virtual nodes)");
    MPI_Comm_free(&host);
  } else {
    node_comm_ = host;
  }
  MPI_Comm_rank(node_comm_, &node_rank_);
  MPI_Comm_size(node_comm_, &node_size_);
  check(MPI_Comm_split(comm_, node_rank_ == 0 ? 0 : MPI_UNDEFINED, rank_, &leaders_comm_),
        "MPI_Comm_split (leaders)");
  int ids[2] = {0, 0};
  if (leaders_comm_ != MPI_COMM_NULL) {
    MPI_Comm_rank(leaders_comm_, &ids[0]);
    MPI_Comm_size(leaders_comm_, &ids[1]);
  }
  check(MPI_Bcast(ids, 2, MPI_INT, 0, node_comm_), "MPI_Bcast (node index)");
  node_index_ = ids[0];
  node_count_ = ids[1];
  // The job id: drawn by rank 0, the same everywhere. A failure to draw it
  // travels as an outcome, so no rank waits.
  detail::Outcome o;
  char job[64] = {};
  if (rank_ == 0) {
    try {
      std::snprintf(job, sizeof job, "%s", draw_job().c_str());
    } catch (...) {
      o = detail::capture(std::current_exception());
    }
  }
  check(MPI_Bcast(&o, sizeof o, MPI_BYTE, 0, comm_), "MPI_Bcast (job)");
  if (o.failed) detail::rethrow(o);
  check(MPI_Bcast(job, sizeof job, MPI_CHAR, 0, comm_), "MPI_Bcast (job)");
  job[sizeof job - 1] = '\0';
  job_ = job;
}

NodeView::NodeView(NodeView&& o) noexcept
    : comm_(o.comm_),
      node_comm_(o.node_comm_),
      leaders_comm_(o.leaders_comm_),
      rank_(o.rank_),
      size_(o.size_),
      node_index_(o.node_index_),
      node_count_(o.node_count_),
      node_rank_(o.node_rank_),
      node_size_(o.node_size_),
      virtual_nodes_(o.virtual_nodes_),
      job_(std::move(o.job_)),
      seq_(o.seq_),
      directory_(o.directory_) {
  o.comm_ = o.node_comm_ = o.leaders_comm_ = MPI_COMM_NULL;
  o.directory_ = nullptr;
}

NodeView::~NodeView() {
  delete directory_;
  if (leaders_comm_ != MPI_COMM_NULL) MPI_Comm_free(&leaders_comm_);
  if (node_comm_ != MPI_COMM_NULL) MPI_Comm_free(&node_comm_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::string NodeView::next_name(std::string_view label) const {
  if (!label_ok(label)) {
    throw std::invalid_argument("shmkit: mpi: label \"" + std::string(label) +
                                "\" is not 1-64 of [A-Za-z0-9_-]");
  }
  return prefix() + "n" + std::to_string(node_index_) + "." + std::to_string(seq_) + "." + std::string(label);
}

std::string NodeView::agree_name(std::string_view label, bool full_name) const {
  char buf[SharedMemory::kMaxNameLength + 1] = {};
  detail::Outcome o;
  if (is_leader()) {
    try {
      const std::string name = full_name ? std::string(label) : next_name(label);
      std::snprintf(buf, sizeof buf, "%s", name.c_str());
    } catch (...) {
      o = detail::capture(std::current_exception());
    }
  }
  o = broadcast_outcome(o, 0);
  if (o.failed) detail::rethrow(o);
  check(MPI_Bcast(buf, sizeof buf, MPI_CHAR, 0, node_comm_), "MPI_Bcast (name)");
  buf[sizeof buf - 1] = '\0';
  return buf;
}

detail::Outcome NodeView::broadcast_outcome(const detail::Outcome& mine, int root) const {
  detail::Outcome o = mine;
  check(MPI_Bcast(&o, sizeof o, MPI_BYTE, root, node_comm_), "MPI_Bcast (outcome)");
  return o;
}

int NodeView::first_failure(const detail::Outcome& mine) const {
  int me = mine.failed ? node_rank_ : node_size_;
  int first = node_size_;
  check(MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, node_comm_), "MPI_Allreduce (outcome)");
  return first < node_size_ ? first : -1;
}

void NodeView::ensure_directory() {
  if (directory_ != nullptr) return;
  using Table = RawArray<mpi_directory::RankEntry>;
  const std::string name =
      agree_name(prefix() + "n" + std::to_string(node_index_) + std::string(mpi_directory::kSuffix), true);
  const auto size = static_cast<std::size_t>(node_size_);
  auto create = [size](const std::string& n) { return Table::create(n, size); };
  auto attach = [](const std::string& n) { return Table::attach(n); };
  auto table = collective<Table>(name, create, attach);
  mpi_directory::RankEntry e;
  e.rank = rank_;
  e.node_rank = node_rank_;
  e.node_index = node_index_;
  e.pid = static_cast<std::int32_t>(::getpid());
  e.start_time = tracker::process_start_time(::getpid());
  table->set(node_rank_, e);
  directory_ = new Directory{std::move(table)};
}

NodeShared<TypedBlock> NodeView::create_block(std::string_view label, const BlockSpec& spec,
                                              const RegionInit& init) {
  return create_with<TypedBlock>(
      label, [&](const std::string& n) { return create_typed_block(n, spec, init); },
      [&](const std::string& n) { return attach_typed_block(n, spec.kind, spec.type); });
}

void NodeView::node_barrier() const { check(MPI_Barrier(node_comm_), "MPI_Barrier (node)"); }

}  // namespace shmkit::mpi
