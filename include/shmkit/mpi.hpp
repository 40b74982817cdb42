// shmkit/mpi.hpp — the node-local layer of MPI jobs (optional component
// shmkit::mpi, built only when CMake finds MPI; the core never includes it).
//
// Contract
//   * NodeView splits a communicator by node: node_comm() (MPI_Comm_split_type
//     with MPI_COMM_TYPE_SHARED), leaders_comm() (node rank 0 of each node,
//     ordered by rank in the parent; MPI_COMM_NULL elsewhere), node_index(),
//     node_count(), node_rank(), node_size(). A testing mode splits each host
//     into K virtual nodes of consecutive node ranks (constructor argument, or
//     $SHMKIT_MPI_VIRTUAL_NODES when the argument is kVirtualFromEnvironment),
//     so multi-node code paths run on one machine. The constructor is collective
//     over the communicator; the destructor frees the communicators it made and
//     must run before MPI_Finalize.
//   * create<Obj>(label, args...) is collective over node_comm(): the leader
//     (node rank 0) runs Obj::create(name, args...), every other rank of the node
//     Obj::attach(name) once the leader has published it. Works for Array, Value,
//     AtomicValue, the queues, SeqLock, BroadcastRing, Heap and any user class with
//     static create(name, ...)/attach(name); create_with() takes two callables,
//     create_block() a BlockSpec (a block of the user's own type).
//   * Names are job-scoped and agreed through the node communicator:
//     "shmkit.mpi.<job>.n<node>.<seq>.<label>", where <job> is drawn at
//     construction by rank 0 of the communicator (8 random hex digits, prefixed
//     by "$SHMKIT_MPI_JOB-" if set) and <seq> counts this view's collective
//     creates. Every node also holds "shmkit.mpi.<job>.n<node>.ranks", the
//     pid -> rank table `shmkit ls` reads.
//   * Errors: a failure of the leader's create (ENOSPC, a squatted name: EEXIST,
//     a bad argument) or of any rank's attach is caught, broadcast over the node
//     communicator, and thrown on every rank of that node as the same exception
//     (std::system_error with the same errno, std::invalid_argument,
//     std::out_of_range, else std::runtime_error; same what()). No rank is left
//     waiting: every rank takes part in the same two node-collective steps
//     whatever happened. Nothing the failed call made is left behind. Other
//     nodes are not involved (the call is node-collective).
//   * Lifetime: every rank registers the block with shmkit's tracker
//     (shmkit/tracker.hpp) before the call returns, the leader before the block
//     has its name (a reservation). NodeShared's destructor (not collective)
//     drops this rank's registration and unlinks the block if no live process
//     still registers it, so a normal exit leaves nothing; a rank killed by
//     SIGKILL or MPI_Abort leaves its registration to its watcher, which unlinks
//     the block once every rank that registered it is dead (also when mpirun,
//     the reader of the ranks' stderr that the watchers inherit, has exited
//     first).
//   * Thread safety: a NodeView is used by one thread at a time (as an MPI
//     communicator is); NodeShared handles are independent.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "shmkit/typed_block.hpp"

namespace shmkit::mpi {

namespace detail {
// One rank's outcome of a step, as it travels over the node communicator.
struct Outcome {
  std::int32_t failed = 0;  // 0: ok
  std::int32_t type = 0;    // 1 system_error, 2 invalid_argument, 3 out_of_range, 4 other
  std::int32_t code = 0;    // errno of a system_error
  char what[500] = {};
};
Outcome capture(std::exception_ptr e) noexcept;
[[noreturn]] void rethrow(const Outcome& o);
// Leader: reserve the name with the tracker before the block exists.
void reserve(const std::string& name);
// Registers the block under `name` for this process.
void track(const std::string& name);
// Drops this process's registrations of `name`, then unlinks the block:
// if_unused (no live process registers it any more), always (it is ours and
// the call failed), never (it may be another's: a squatted name).
enum class Unlink { if_unused, always, never };
void untrack(const std::string& name, Unlink unlink) noexcept;
}  // namespace detail

// A shmkit object shared by the ranks of one node; move-only. Destroying it
// (or release()) unmaps it, drops this rank's tracker registration and, if no
// live process registers the block any more, unlinks it. Not collective.
template <class Obj>
class NodeShared {
 public:
  NodeShared(Obj obj, std::string name) : obj_(std::move(obj)), name_(std::move(name)) {}
  NodeShared(NodeShared&& o) noexcept : obj_(std::move(o.obj_)), name_(std::move(o.name_)) {
    o.obj_.reset();
    o.name_.clear();
  }
  NodeShared& operator=(NodeShared&& o) noexcept {
    if (this != &o) {
      release();
      obj_ = std::move(o.obj_);
      name_ = std::move(o.name_);
      o.obj_.reset();
      o.name_.clear();
    }
    return *this;
  }
  NodeShared(const NodeShared&) = delete;
  NodeShared& operator=(const NodeShared&) = delete;
  ~NodeShared() { release(); }

  Obj& get() noexcept { return *obj_; }
  const Obj& get() const noexcept { return *obj_; }
  Obj& operator*() noexcept { return *obj_; }
  Obj* operator->() noexcept { return &*obj_; }
  const Obj* operator->() const noexcept { return &*obj_; }
  // The block's name in /dev/shm (what a Python process or a later job step
  // attaches).
  const std::string& name() const noexcept { return name_; }

  void release() noexcept {
    if (name_.empty()) return;
    obj_.reset();
    detail::untrack(name_, detail::Unlink::if_unused);
    name_.clear();
  }

 private:
  std::optional<Obj> obj_;
  std::string name_;
};

class NodeView {
 public:
  static constexpr int kVirtualFromEnvironment = -1;

  // Collective over `comm` (which is duplicated). virtual_nodes > 0 splits each
  // host into that many virtual nodes; 0 uses the physical nodes;
  // kVirtualFromEnvironment reads $SHMKIT_MPI_VIRTUAL_NODES (unset: 0).
  explicit NodeView(MPI_Comm comm = MPI_COMM_WORLD, int virtual_nodes = kVirtualFromEnvironment);
  ~NodeView();
  NodeView(NodeView&&) noexcept;
  NodeView& operator=(NodeView&&) = delete;
  NodeView(const NodeView&) = delete;
  NodeView& operator=(const NodeView&) = delete;

  MPI_Comm comm() const noexcept { return comm_; }
  MPI_Comm node_comm() const noexcept { return node_comm_; }
  MPI_Comm leaders_comm() const noexcept { return leaders_comm_; }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  int node_index() const noexcept { return node_index_; }
  int node_count() const noexcept { return node_count_; }
  int node_rank() const noexcept { return node_rank_; }
  int node_size() const noexcept { return node_size_; }
  bool is_leader() const noexcept { return node_rank_ == 0; }
  int virtual_nodes() const noexcept { return virtual_nodes_; }
  const std::string& job() const noexcept { return job_; }

  // The name the next create*(label) on this view will use (same on every
  // rank of the node). Labels: 1-64 of [A-Za-z0-9_-]; every rank of the node
  // passes the same one (the leader's is used).
  std::string next_name(std::string_view label) const;
  // Prefix of every block of this job ("shmkit.mpi.<job>.").
  std::string prefix() const { return "shmkit.mpi." + job_ + "."; }

  template <class Obj, class... Args>
  NodeShared<Obj> create(std::string_view label, Args&&... args) {
    return create_with<Obj>(
        label, [&](const std::string& n) { return Obj::create(n, std::forward<Args>(args)...); },
        [](const std::string& n) { return Obj::attach(n); });
  }

  // create(name) -> Obj on the leader, attach(name) -> Obj on the others.
  template <class Obj, class Create, class Attach>
  NodeShared<Obj> create_with(std::string_view label, Create&& create, Attach&& attach) {
    ensure_directory();
    std::string name = agree_name(label);
    ++seq_;
    return collective<Obj>(name, create, attach);
  }

  // A typed block of the caller's own kind and type (typed_block.hpp): the
  // leader create_typed_block(name, spec, init), the others
  // attach_typed_block(name, spec.kind, spec.type).
  NodeShared<TypedBlock> create_block(std::string_view label, const BlockSpec& spec, const RegionInit& init);

  // MPI_Barrier on the node communicator.
  void node_barrier() const;

 private:
  template <class Obj, class Create, class Attach>
  NodeShared<Obj> collective(const std::string& name, Create& create, Attach& attach) {
    std::optional<Obj> obj;
    detail::Outcome mine;
    bool created = false;
    if (is_leader()) {
      try {
        detail::reserve(name);
        obj.emplace(create(name));
        created = true;
        detail::track(name);
      } catch (...) {
        mine = detail::capture(std::current_exception());
      }
    }
    // Step 1: the leader's outcome reaches every rank of the node.
    detail::Outcome leader = broadcast_outcome(mine, 0);
    if (leader.failed) {
      obj.reset();
      if (is_leader()) detail::untrack(name, created ? detail::Unlink::always : detail::Unlink::never);
      detail::rethrow(leader);
    }
    if (!is_leader()) {
      try {
        obj.emplace(attach(name));
        detail::track(name);
      } catch (...) {
        mine = detail::capture(std::current_exception());
      }
    }
    // Step 2: any attach failure reaches every rank; the block goes.
    const int bad = first_failure(mine);
    if (bad >= 0) {
      detail::Outcome o = broadcast_outcome(mine, bad);
      obj.reset();
      detail::untrack(name, is_leader() ? detail::Unlink::always : detail::Unlink::never);
      detail::rethrow(o);
    }
    return NodeShared<Obj>(std::move(*obj), name);
  }

  // The leader's next_name(label) (or `label` itself when it is a full
  // name), on every rank of the node; an invalid label on the leader throws
  // on every rank. Only the leader's label counts.
  std::string agree_name(std::string_view label, bool full_name = false) const;
  detail::Outcome broadcast_outcome(const detail::Outcome& mine, int root) const;
  int first_failure(const detail::Outcome& mine) const;  // lowest failing node rank, -1 if none
  void ensure_directory();

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm node_comm_ = MPI_COMM_NULL;
  MPI_Comm leaders_comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 0;
  int node_index_ = 0, node_count_ = 0, node_rank_ = 0, node_size_ = 0;
  int virtual_nodes_ = 0;
  std::string job_;
  std::uint64_t seq_ = 0;
  struct Directory;
  Directory* directory_ = nullptr;  // the ranks table, once made
};

}  // namespace shmkit::mpi
