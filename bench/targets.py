"""The comparisons bench/compare.py reports: candidate and baseline are
Google Benchmark run names from the same binary and run.

metric: "ns" (the default) compares real time per iteration; another metric
names a user counter. Every metric has a direction in METRICS.
goal "at_most": the candidate's cost relative to the baseline's (its time, or
the inverse of its rate) must be <= target.
goal "at_least": how many times better the candidate is (the inverse of that
cost ratio) must be >= target.
The goal chooses how the ratio is shown, never the metric's direction.
target None: the ratio is reported, no target is set.
group: the table (component) the row belongs to in reports.
"""

# Each metric's direction: True when higher is better (rates), False when
# lower is better (time per operation, memory, lag).
METRICS = {
    "ns": False,
    "Mops/s": True,
    "bytes_per_second": True,
    "delivered_Mitems/s": True,
    "reader_ok_Mreads/s": True,
    "lag_p50": False,
    "PSS_MiB": False,
    "table_PSS_MiB": False,
}

# The Python Queue rows' baselines: (run side, label, how the title names it).
_MP_QUEUE = ("cpython_mp_queue", "CPython multiprocessing.Queue", "multiprocessing.Queue")
_RING = ("mutex_condvar_ring", "mutex+condvar shared-memory byte ring (bench model)", "a mutex+condvar byte ring")


def _pyqueue(workload, row, baseline, target):
    """A Python Queue row: shmkit.Queue against `baseline` on python/<row>/."""
    side, label, named = baseline
    return dict(group='Python Queue', title=f"{workload}: shmkit.Queue vs {named}",
                candidate=f"python/{row}/shmkit_queue", baseline=f"python/{row}/{side}",
                baseline_label=label, goal="at_least", target=target)


COMPARISONS = [
    # SharedMemory
    dict(group='SharedMemory', title="create+close+unlink 4 KiB (reserve on)", candidate="BM_Shmkit_CreateCycle/real_time",
         baseline="BM_Raw_CreateCycle/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    # What the reserve-on guarantees cost by themselves, in raw syscalls
    # (bench/notes/shared-memory-create.md): fallocate for ftruncate, then
    # also the statx that reads the mode (umask check) and the inode.
    dict(group='SharedMemory', title="raw create cycle 4 KiB: fallocate instead of ftruncate", candidate="BM_Raw_CreateCycleReserved/real_time",
         baseline="BM_Raw_CreateCycle/real_time", baseline_label="raw syscalls", goal="at_most", target=None),
    dict(group='SharedMemory', title="create+close+unlink 4 KiB (reserve on) vs raw with the same guarantees", candidate="BM_Shmkit_CreateCycle/real_time",
         baseline="BM_Raw_CreateCycleReservedStat/real_time", baseline_label="raw syscalls + fallocate + statx", goal="at_most", target=1.05),
    dict(group='SharedMemory', title="create+close+unlink 4 KiB (reserve off)", candidate="BM_Shmkit_CreateCycleNoReserve/real_time",
         baseline="BM_Raw_CreateCycle/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    dict(group='SharedMemory', title="create+first write+close+unlink 4 KiB", candidate="BM_Shmkit_CreateWriteCycle/real_time",
         baseline="BM_Raw_CreateWriteCycle/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    dict(group='SharedMemory', title="attach+close 4 KiB", candidate="BM_Shmkit_Attach/real_time",
         baseline="BM_Raw_Attach/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    # Against CPython, like with like: both register with their trackers
    # (CPython always does before 3.13), or neither does (3.13's track=False,
    # timed with SHMKIT_BENCH_PYTHON_TRACK_FALSE, pyenv's 3.13 by default;
    # missing from a run without one, so those rows carry no target).
    dict(group='SharedMemory', title="create+close+unlink 4 KiB vs CPython, both tracked",
         candidate="BM_Shmkit_CreateCycleRandomNameTracked/real_time",
         baseline="BM_CPython/CreateCycle/iterations:1/manual_time", baseline_label="CPython SharedMemory (tracked)",
         goal="at_least", target=2.0),
    dict(group='SharedMemory', title="attach+close 4 KiB vs CPython, both tracked", candidate="BM_Shmkit_AttachTracked/real_time",
         baseline="BM_CPython/Attach/iterations:1/manual_time", baseline_label="CPython SharedMemory (tracked)",
         goal="at_least", target=2.0),
    dict(group='SharedMemory', title="create+close+unlink 4 KiB vs CPython, both untracked",
         candidate="BM_Shmkit_CreateCycleRandomName/real_time",
         baseline="BM_CPython/CreateCycleUntracked/iterations:1/manual_time",
         baseline_label="CPython SharedMemory, track=False (3.13+)", goal="at_least", target=None),
    dict(group='SharedMemory', title="attach+close 4 KiB vs CPython, both untracked", candidate="BM_Shmkit_Attach/real_time",
         baseline="BM_CPython/AttachUntracked/iterations:1/manual_time",
         baseline_label="CPython SharedMemory, track=False (3.13+)", goal="at_least", target=None),
    # sharedctypes
    dict(group='sharedctypes', title="Value<int64> locked increment (RecursiveMutex)", candidate="value_inc/RecursiveMutex",
         baseline="bare_inc/RecursiveMutex", baseline_label="bare lock+increment", goal="at_most", target=1.1),
    dict(group='sharedctypes', title="Value<int64> locked increment (Mutex)", candidate="value_inc/Mutex",
         baseline="bare_inc/Mutex", baseline_label="bare lock+increment", goal="at_most", target=1.1),
    dict(group='sharedctypes', title="Value<int64> locked increment (RobustMutex)", candidate="value_inc/RobustMutex",
         baseline="bare_inc/RobustMutex", baseline_label="bare lock+increment", goal="at_most", target=1.1),
    dict(group='sharedctypes', title="AtomicValue fetch_add, 1 process", candidate="atomic_value/fetch_add",
         baseline="std_atomic/fetch_add", baseline_label="std::atomic on shm", goal="at_most", target=1.05),
    dict(group='sharedctypes', title="AtomicValue fetch_add, 2 processes", metric="Mops/s",
         candidate="atomic_value_2p/fetch_add/iterations:1/manual_time",
         baseline="std_atomic_2p/fetch_add/iterations:1/manual_time", baseline_label="std::atomic on shm",
         goal="at_most", target=1.05),
    dict(group='sharedctypes', title="Value locked increment, 2 processes", metric="Mops/s",
         candidate="value_inc_2p/RecursiveMutex/iterations:1/manual_time",
         baseline="cpython/value_get_lock_idiom_2p/iterations:1/manual_time",
         baseline_label="CPython with v.get_lock(): v.value += 1", goal="at_least", target=15),
    dict(group='sharedctypes', title="get_lock() + value()/set_value(), 2 processes", metric="Mops/s",
         candidate="value_get_lock_idiom_2p/RecursiveMutex/iterations:1/manual_time",
         baseline="cpython/value_get_lock_idiom_2p/iterations:1/manual_time",
         baseline_label="CPython with v.get_lock(): v.value += 1", goal="at_least", target=15),
    dict(group='sharedctypes', title="Array<double> copy_to, 8 MiB", metric="bytes_per_second", candidate="array_copy_to/8MiB",
         baseline="memcpy/8MiB", baseline_label="memcpy", goal="at_least", target=0.9),
    dict(group='sharedctypes', title="Array<double> copy_to vs CPython's locked copy of the bytes, 8 MiB", metric="bytes_per_second",
         candidate="array_copy_to/8MiB", baseline="cpython/array_locked_bytes_copy/8MiB/iterations:1/manual_time",
         baseline_label="CPython: with a.get_lock(): bytes(memoryview(a.get_obj()))", goal="at_least", target=None),
    dict(group='sharedctypes', title="Array<double> copy_to vs CPython a[:] (information: a[:] builds a list of floats), 8 MiB",
         metric="bytes_per_second", candidate="array_copy_to/8MiB",
         baseline="cpython/array_slice_list/8MiB/iterations:1/manual_time",
         baseline_label="CPython Array('d')[:]", goal="at_least", target=None),
    dict(group='sharedctypes', title="Value created in a Heap (+destroy)", candidate="heap_value_create_destroy",
         baseline="named_value_create_unlink", baseline_label="Value in its own named block",
         goal="at_least", target=None),
    # ShareableList (CPython timing its own loop, same run)
    dict(group='ShareableList', title="ShareableList get int", candidate="BM_GetInt/real_time",
         baseline="BM_CPython/GetInt/iterations:1/manual_time", baseline_label="CPython ShareableList",
         goal="at_least", target=20),
    dict(group='ShareableList', title="ShareableList set int", candidate="BM_SetInt/real_time",
         baseline="BM_CPython/SetInt/iterations:1/manual_time", baseline_label="CPython ShareableList",
         goal="at_least", target=20),
    dict(group='ShareableList', title="ShareableList get 16-byte str (new std::string)", candidate="BM_GetStr16/real_time",
         baseline="BM_CPython/GetStr16/iterations:1/manual_time", baseline_label="CPython ShareableList",
         goal="at_least", target=20),
    dict(group='ShareableList', title="ShareableList get 16-byte str (reused Item)", candidate="BM_GetStr16Into/real_time",
         baseline="BM_CPython/GetStr16/iterations:1/manual_time", baseline_label="CPython ShareableList",
         goal="at_least", target=20),
    dict(group='ShareableList', title="ShareableList set 16-byte str", candidate="BM_SetStr16/real_time",
         baseline="BM_CPython/SetStr16/iterations:1/manual_time", baseline_label="CPython ShareableList",
         goal="at_least", target=20),
    # lock-free structures (bench_lockfree; real_time = ns per item or per round trip).
    # SpscQueue's targets: the spsc/ rows of bench_lockfree, measured in
    # rounds (every contender once per round, same two pinned CPUs; the k-th
    # repetitions of all rows come from round k) and placed (the note names
    # the CPUs and whether they share L2/L3). The peers are the rings of
    # bench/spsc_rings.hpp, written for the suite from their published
    # designs, and Boost's spsc_queue, all in shared memory between two
    # processes; "the best of" takes, per round, whichever was fastest.
    dict(group='Lock-free structures', title="SpscQueue throughput vs the best of 4 SPSC rings, 2 pinned processes, cap 1024 (the consumer sums every item)",
         candidate="spsc/tput/shmkit_spsc/1024/iterations:1/manual_time",
         baseline=["spsc/tput/plain_ring/1024/iterations:1/manual_time",
                   "spsc/tput/rigtorp_style/1024/iterations:1/manual_time",
                   "spsc/tput/rwq_style/1024/iterations:1/manual_time",
                   "spsc/tput/boost_spsc/1024/iterations:1/manual_time"],
         baseline_label="best of plain, rigtorp-style, moodycamel-RWQ-style rings and boost::lockfree::spsc_queue",
         goal="at_least", target=1.0),
    dict(group='Lock-free structures', title="SpscQueue round trip, 2 pinned processes, cap 1024 (the initiator checks each item)",
         candidate="spsc/rtt/shmkit_spsc/1024/iterations:1/manual_time",
         baseline="spsc/rtt/spin_pingpong/iterations:1/manual_time", baseline_label="spin ping-pong (two atomics)",
         goal="at_most", target=1.1),
    dict(group='Lock-free structures', title="SpscQueue round trip vs the best of 4 SPSC rings, 2 pinned processes, cap 1024",
         candidate="spsc/rtt/shmkit_spsc/1024/iterations:1/manual_time",
         baseline=["spsc/rtt/plain_ring/1024/iterations:1/manual_time",
                   "spsc/rtt/rigtorp_style/1024/iterations:1/manual_time",
                   "spsc/rtt/rwq_style/1024/iterations:1/manual_time",
                   "spsc/rtt/boost_spsc/1024/iterations:1/manual_time"],
         baseline_label="best of plain, rigtorp-style, moodycamel-RWQ-style rings and boost::lockfree::spsc_queue",
         goal="at_least", target=None),
    dict(group='Lock-free structures', title="SpscQueue throughput with a busy consumer (16 dependent multiply-adds per item: the ring runs full) vs the best of 4 SPSC rings, 2 pinned processes, cap 1024",
         candidate="spsc/tput_busy/shmkit_spsc/1024/iterations:1/manual_time",
         baseline=["spsc/tput_busy/plain_ring/1024/iterations:1/manual_time",
                   "spsc/tput_busy/rigtorp_style/1024/iterations:1/manual_time",
                   "spsc/tput_busy/rwq_style/1024/iterations:1/manual_time",
                   "spsc/tput_busy/boost_spsc/1024/iterations:1/manual_time"],
         baseline_label="best of the 4 SPSC rings, same consumer", goal="at_least", target=None),
    dict(group='Lock-free structures', title="SpscQueue push+pop code path, 1 process (what counts when both sides share a core)",
         candidate="spsc/solo/shmkit_spsc/1024/iterations:1/manual_time",
         baseline=["spsc/solo/plain_ring/1024/iterations:1/manual_time",
                   "spsc/solo/rigtorp_style/1024/iterations:1/manual_time",
                   "spsc/solo/rwq_style/1024/iterations:1/manual_time",
                   "spsc/solo/boost_spsc/1024/iterations:1/manual_time"],
         baseline_label="best of the 4 SPSC rings", goal="at_least", target=None),
    dict(group='Lock-free structures', title="SpscQueue batch (32 per call, information: not the same work as 1 per call) throughput vs the best SPSC ring (1 per call), 2 pinned processes, cap 1024",
         candidate="spsc/tput/shmkit_spsc_batch32/1024/iterations:1/manual_time",
         baseline=["spsc/tput/plain_ring/1024/iterations:1/manual_time",
                   "spsc/tput/rigtorp_style/1024/iterations:1/manual_time",
                   "spsc/tput/rwq_style/1024/iterations:1/manual_time",
                   "spsc/tput/boost_spsc/1024/iterations:1/manual_time"],
         baseline_label="best of the 4 SPSC rings (1 per call)", goal="at_least", target=None),
] + [
    dict(group='Lock-free structures', title=f"SpscQueue throughput vs {label}, 2 pinned processes, cap 1024 (the consumer sums every item)",
         candidate="spsc/tput/shmkit_spsc/1024/iterations:1/manual_time",
         baseline=f"spsc/tput/{peer}/1024/iterations:1/manual_time", baseline_label=label,
         goal="at_least", target=None)
    for peer, label in (("plain_ring", "the plain cached-index ring"), ("rigtorp_style", "a rigtorp-style ring"),
                        ("rwq_style", "a moodycamel-RWQ-style ring"), ("boost_spsc", "boost::lockfree::spsc_queue"))
] + [
    dict(group='Lock-free structures', title=f"{label} round trip, 2 pinned processes, cap 1024",
         candidate=f"spsc/rtt/{peer}/1024/iterations:1/manual_time",
         baseline="spsc/rtt/spin_pingpong/iterations:1/manual_time", baseline_label="spin ping-pong (two atomics)",
         goal="at_most", target=None)
    for peer, label in (("plain_ring", "The plain ring"), ("rigtorp_style", "A rigtorp-style ring"),
                        ("rwq_style", "A moodycamel-RWQ-style ring"), ("boost_spsc", "boost::lockfree::spsc_queue"))
] + [
    # The older SpscQueue rows of bench_lockfree (not in rounds: Google
    # Benchmark's random interleaving pairs them loosely): information.
    dict(group='Lock-free structures', title="SpscQueue round trip, 2 processes, cap 65536 (bench_lockfree)", candidate="rtt/shmkit_spsc/65536/procs/iterations:1/manual_time",
         baseline="rtt/spin_pingpong/procs/iterations:1/manual_time", baseline_label="raw spin ping-pong",
         goal="at_most", target=None),
    dict(group='Lock-free structures', title="SpscQueue throughput vs Boost, 2 processes, cap 65536", candidate="tput/shmkit_spsc/65536/procs/iterations:1/manual_time",
         baseline="tput/boost_spsc/65536/procs/iterations:1/manual_time", baseline_label="boost::lockfree::spsc_queue",
         goal="at_least", target=None),
    dict(group='Lock-free structures', title="SpscQueue throughput, threads, cap 1024", candidate="tput/shmkit_spsc/1024/threads/iterations:1/manual_time",
         baseline="tput/moodycamel_rwq/1024/threads/iterations:1/manual_time", baseline_label="moodycamel::ReaderWriterQueue",
         goal="at_least", target=None),
    dict(group='Lock-free structures', title="SpscQueue throughput vs Boost.Interprocess message_queue, cap 1024", candidate="tput/shmkit_spsc/1024/procs/iterations:1/manual_time",
         baseline="tput/boost_ipc_message_queue/1024/procs/iterations:1/manual_time", baseline_label="boost::interprocess::message_queue",
         goal="at_least", target=None),
    dict(group='Lock-free structures', title="SpscQueue throughput vs a pipe", candidate="tput/shmkit_spsc/65536/procs/iterations:1/manual_time",
         baseline="tput/pipe/procs/iterations:1/manual_time", baseline_label="pipe (8-byte writes)",
         goal="at_least", target=None),
    dict(group='Lock-free structures', title="SpscQueue round trip vs a pipe", candidate="rtt/shmkit_spsc/1024/procs/iterations:1/manual_time",
         baseline="rtt/pipe/procs/iterations:1/manual_time", baseline_label="two pipes",
         goal="at_least", target=None),
    # ByteQueue (what shmkit.Queue runs on) with 8-byte messages, against
    # the fixed-size MpmcQueue and a pipe: what variable length costs.
    dict(group='Lock-free structures', title="ByteQueue 8-byte messages vs MpmcQueue<uint64_t>, 2 processes", candidate="tput/shmkit_byte_queue/4MiB/procs/iterations:1/manual_time",
         baseline="tput/shmkit_mpmc/65536/procs/iterations:1/manual_time", baseline_label="MpmcQueue, cap 65536",
         goal="at_least", target=None),
    dict(group='Lock-free structures', title="ByteQueue 8-byte messages vs a pipe, 2 processes", candidate="tput/shmkit_byte_queue/4MiB/procs/iterations:1/manual_time",
         baseline="tput/pipe/procs/iterations:1/manual_time", baseline_label="pipe (8-byte writes)",
         goal="at_least", target=None),
    dict(group='Lock-free structures', title="ByteQueue round trip, 8-byte messages, 2 processes", candidate="rtt/shmkit_byte_queue/4MiB/procs/iterations:1/manual_time",
         baseline="rtt/spin_pingpong/procs/iterations:1/manual_time", baseline_label="raw spin ping-pong",
         goal="at_most", target=None),
    dict(group='Lock-free structures', title="MpmcQueue 1P1C throughput, threads, cap 1024", candidate="tput/shmkit_mpmc/1024/threads/iterations:1/manual_time",
         baseline="tput/tbb_bounded/1024/threads/iterations:1/manual_time", baseline_label="tbb::concurrent_bounded_queue",
         goal="at_least", target=5),
    dict(group='Lock-free structures', title="MpmcQueue 1P1C throughput, threads, cap 65536", candidate="tput/shmkit_mpmc/65536/threads/iterations:1/manual_time",
         baseline="tput/tbb_bounded/65536/threads/iterations:1/manual_time", baseline_label="tbb::concurrent_bounded_queue",
         goal="at_least", target=5),
    dict(group='Lock-free structures', title="MpmcQueue 1P1C throughput, 2 processes, cap 1024", candidate="tput/shmkit_mpmc/1024/procs/iterations:1/manual_time",
         baseline="tput/boost_queue/1024/procs/iterations:1/manual_time", baseline_label="boost::lockfree::queue",
         goal="at_least", target=None),
    # A Vyukov bounded queue written in the bench from the published design
    # (no claimant record, no crash recovery), in shared memory, driven the
    # same way: packed 16-byte cells as Vyukov wrote it, and one cell per
    # cache line as rigtorp/MPMCQueue lays it out.
    dict(group='Lock-free structures', title="MpmcQueue 1P1C throughput vs a Vyukov bounded queue, 2 processes, cap 1024", candidate="tput/shmkit_mpmc/1024/procs/iterations:1/manual_time",
         baseline="tput/vyukov_bounded/1024/procs/iterations:1/manual_time", baseline_label="Vyukov bounded MPMC (bench)",
         goal="at_least", target=1.0),
    dict(group='Lock-free structures', title="MpmcQueue 1P1C throughput vs a Vyukov bounded queue, threads, cap 1024", candidate="tput/shmkit_mpmc/1024/threads/iterations:1/manual_time",
         baseline="tput/vyukov_bounded/1024/threads/iterations:1/manual_time", baseline_label="Vyukov bounded MPMC (bench)",
         goal="at_least", target=1.0),
    dict(group='Lock-free structures', title="MpmcQueue 1P1C throughput vs a Vyukov bounded queue, 2 processes, cap 65536", candidate="tput/shmkit_mpmc/65536/procs/iterations:1/manual_time",
         baseline="tput/vyukov_bounded/65536/procs/iterations:1/manual_time", baseline_label="Vyukov bounded MPMC (bench)",
         goal="at_least", target=1.0),
    dict(group='Lock-free structures', title="MpmcQueue 1P1C throughput vs a Vyukov bounded queue with cache-line cells (rigtorp's layout), 2 processes, cap 1024", candidate="tput/shmkit_mpmc/1024/procs/iterations:1/manual_time",
         baseline="tput/vyukov_bounded_padded/1024/procs/iterations:1/manual_time", baseline_label="Vyukov bounded MPMC, 64-byte cells (bench)",
         goal="at_least", target=None),
    dict(group='Lock-free structures', title="MpmcQueue 1P1C throughput vs moodycamel ConcurrentQueue, threads", candidate="tput/shmkit_mpmc/1024/threads/iterations:1/manual_time",
         baseline="tput/moodycamel_cq/1024/threads/iterations:1/manual_time", baseline_label="moodycamel::ConcurrentQueue",
         goal="at_least", target=None),
    dict(group='Lock-free structures', title="MpmcQueue 4 processes on 2 CPUs vs 2 (no collapse)", candidate="mpmc_scaling/shmkit_mpmc/4/iterations:1/manual_time",
         baseline="mpmc_scaling/shmkit_mpmc/2/iterations:1/manual_time", baseline_label="2 processes",
         goal="at_least", target=0.5),
    dict(group='Lock-free structures', title="MpmcQueue 8 processes on 2 CPUs vs 2 (no collapse)", candidate="mpmc_scaling/shmkit_mpmc/8/iterations:1/manual_time",
         baseline="mpmc_scaling/shmkit_mpmc/2/iterations:1/manual_time", baseline_label="2 processes",
         goal="at_least", target=0.5),
    dict(group='Lock-free structures', title="SeqLock read of an unchanged 64-byte value (SeqLockReader, local snapshot: never re-reads an unchanged payload, information)",
         candidate="seqlock_read/64B/shmkit_reader", baseline="seqlock_read/64B/plain_copy",
         baseline_label="plain 64-byte copy", goal="at_most", target=None),
    dict(group='Lock-free structures', title="SeqLock read of an unchanged 64-byte value (SeqLock::try_read, word copy)",
         candidate="seqlock_read/64B/shmkit", baseline="seqlock_read/64B/plain_copy",
         baseline_label="plain 64-byte copy", goal="at_most", target=None),
    # one writer, reader processes (bench_fanout). The writer has
    # CPU 0 to itself; all readers share the other CPUs (on 2 CPUs: one).
    # Publish rows: real_time = ns per item published. The lossy queue
    # fan-out drops an item for a subscriber whose queue is full, as the ring
    # never waits: like for like. The ring writes each item once whatever the
    # number of subscribers, the queues once per subscriber, so from 2
    # subscribers on the ring should publish at least as fast; with 1 the two
    # do comparable work and no target is set. Trust these rows only when the
    # runs' runq_wait is near what the placement implies (0 for the writer,
    # 1 - 1/n for n readers sharing a CPU): on busy CPUs the writer and the
    # readers take turns and the cost of their shared lines disappears.
    dict(group='Fan-out and SeqLock readers', title="BroadcastRing publish, 1 subscriber process",
         candidate="fanout/broadcast_ring/1subs/iterations:1/manual_time",
         baseline="fanout/spsc_per_sub/1subs/iterations:1/manual_time",
         baseline_label="one SpscQueue per subscriber, drop when full", goal="at_least", target=None),
    dict(group='Fan-out and SeqLock readers', title="BroadcastRing publish, 2 subscriber processes (information: the baseline writes once per subscriber by design)",
         candidate="fanout/broadcast_ring/2subs/iterations:1/manual_time",
         baseline="fanout/spsc_per_sub/2subs/iterations:1/manual_time",
         baseline_label="one SpscQueue per subscriber, drop when full", goal="at_least", target=None),
    dict(group='Fan-out and SeqLock readers', title="BroadcastRing publish, 4 subscriber processes (information: the baseline writes once per subscriber by design)",
         candidate="fanout/broadcast_ring/4subs/iterations:1/manual_time",
         baseline="fanout/spsc_per_sub/4subs/iterations:1/manual_time",
         baseline_label="one SpscQueue per subscriber, drop when full", goal="at_least", target=None),
    # The lossless fan-out waits for the slowest subscriber: information only.
    dict(group='Fan-out and SeqLock readers', title="BroadcastRing publish vs lossless queue fan-out, 2 subscribers",
         candidate="fanout/broadcast_ring/2subs/iterations:1/manual_time",
         baseline="fanout/spsc_per_sub_lossless/2subs/iterations:1/manual_time",
         baseline_label="one SpscQueue per subscriber, wait for room", goal="at_least", target=None),
    dict(group='Fan-out and SeqLock readers', title="BroadcastRing publish vs lossless queue fan-out, 4 subscribers",
         candidate="fanout/broadcast_ring/4subs/iterations:1/manual_time",
         baseline="fanout/spsc_per_sub_lossless/4subs/iterations:1/manual_time",
         baseline_label="one SpscQueue per subscriber, wait for room", goal="at_least", target=None),
    # What each subscriber gets (M items/s, mean over subscribers) and its lag
    # (median backlog in items when it consumes; ratio = ring / queues, lower
    # is better): information only.
    dict(group='Fan-out and SeqLock readers', title="Items delivered per subscriber, 1 subscriber", metric="delivered_Mitems/s",
         candidate="fanout/broadcast_ring/1subs/iterations:1/manual_time",
         baseline="fanout/spsc_per_sub/1subs/iterations:1/manual_time",
         baseline_label="one SpscQueue per subscriber, drop when full", goal="at_least", target=None),
    dict(group='Fan-out and SeqLock readers', title="Items delivered per subscriber, 2 subscribers", metric="delivered_Mitems/s",
         candidate="fanout/broadcast_ring/2subs/iterations:1/manual_time",
         baseline="fanout/spsc_per_sub/2subs/iterations:1/manual_time",
         baseline_label="one SpscQueue per subscriber, drop when full", goal="at_least", target=None),
    dict(group='Fan-out and SeqLock readers', title="Items delivered per subscriber, 4 subscribers", metric="delivered_Mitems/s",
         candidate="fanout/broadcast_ring/4subs/iterations:1/manual_time",
         baseline="fanout/spsc_per_sub/4subs/iterations:1/manual_time",
         baseline_label="one SpscQueue per subscriber, drop when full", goal="at_least", target=None),
    dict(group='Fan-out and SeqLock readers', title="Subscriber lag p50 (items), 1 subscriber, ring/queues", metric="lag_p50",
         candidate="fanout/broadcast_ring/1subs/iterations:1/manual_time",
         baseline="fanout/spsc_per_sub/1subs/iterations:1/manual_time",
         baseline_label="one SpscQueue per subscriber, drop when full", goal="at_most", target=None),
    dict(group='Fan-out and SeqLock readers', title="Subscriber lag p50 (items), 2 subscribers, ring/queues", metric="lag_p50",
         candidate="fanout/broadcast_ring/2subs/iterations:1/manual_time",
         baseline="fanout/spsc_per_sub/2subs/iterations:1/manual_time",
         baseline_label="one SpscQueue per subscriber, drop when full", goal="at_most", target=None),
    dict(group='Fan-out and SeqLock readers', title="Subscriber lag p50 (items), 4 subscribers, ring/queues", metric="lag_p50",
         candidate="fanout/broadcast_ring/4subs/iterations:1/manual_time",
         baseline="fanout/spsc_per_sub/4subs/iterations:1/manual_time",
         baseline_label="one SpscQueue per subscriber, drop when full", goal="at_most", target=None),
    # SeqLock: what reader processes cost the writer (ratio = share of its
    # throughput alone that it keeps); real_time = ns per store of 64 bytes.
    # No target: every read pulls the writer's lines, nothing sets a bound.
    dict(group='Fan-out and SeqLock readers', title="SeqLock writer, 64 B, with 1 reader process (try_read) vs alone",
         candidate="seqlock_writer/64B/1readers/try_read/iterations:1/manual_time",
         baseline="seqlock_writer/64B/0readers/try_read/iterations:1/manual_time",
         baseline_label="the writer alone", goal="at_least", target=None),
    dict(group='Fan-out and SeqLock readers', title="SeqLock writer, 64 B, with 2 reader processes (try_read) vs alone",
         candidate="seqlock_writer/64B/2readers/try_read/iterations:1/manual_time",
         baseline="seqlock_writer/64B/0readers/try_read/iterations:1/manual_time",
         baseline_label="the writer alone", goal="at_least", target=None),
    dict(group='Fan-out and SeqLock readers', title="SeqLock consistent reads per reader, SeqLockReader vs try_read, writer storing", metric="reader_ok_Mreads/s",
         candidate="seqlock_writer/64B/1readers/reader/iterations:1/manual_time",
         baseline="seqlock_writer/64B/1readers/try_read/iterations:1/manual_time",
         baseline_label="SeqLock::try_read", goal="at_least", target=None),
    # locks and atomics (Mops/s counted while every process runs)
    dict(group='Locks and atomics', title='Mutex lock+unlock, uncontended', candidate='uncontended/shmkit::Mutex/min_time:0.200', baseline='uncontended/pthread_pshared/min_time:0.200', baseline_label='pthread process-shared', goal='at_most', target=1.0),
    dict(group='Locks and atomics', title='Mutex, 2 processes contended', metric='Mops/s', candidate='contended/shmkit::Mutex/procs/2/iterations:1/manual_time', baseline='contended/pthread_pshared/procs/2/iterations:1/manual_time', baseline_label='pthread process-shared', goal='at_least', target=1.0),
    dict(group='Locks and atomics', title='RecursiveMutex lock+unlock, uncontended', candidate='uncontended/shmkit::RecursiveMutex/min_time:0.200', baseline='uncontended/pthread_pshared/min_time:0.200', baseline_label='pthread process-shared', goal='at_most', target=None),
    dict(group='Locks and atomics', title='RobustMutex lock+unlock, uncontended', candidate='uncontended/shmkit::RobustMutex/min_time:0.200', baseline='uncontended/pthread_robust_pshared/min_time:0.200', baseline_label='glibc robust pthread', goal='at_most', target=1.05),
    dict(group='Locks and atomics', title='RobustMutex, 2 processes contended', metric='Mops/s', candidate='contended/shmkit::RobustMutex/procs/2/iterations:1/manual_time', baseline='contended/pthread_robust_pshared/procs/2/iterations:1/manual_time', baseline_label='glibc robust pthread', goal='at_most', target=1.05),
    dict(group='Locks and atomics', title="Mutex vs sem_t (CPython's Lock), 2 processes", metric='Mops/s', candidate='contended/shmkit::Mutex/procs/2/iterations:1/manual_time', baseline='contended/sem_t/procs/2/iterations:1/manual_time', baseline_label='POSIX sem_t', goal='at_least', target=None),
    dict(group='Locks and atomics', title='Mutex, 8 processes on 2 CPUs', metric='Mops/s', candidate='contended/shmkit::Mutex/procs/8/iterations:1/manual_time', baseline='contended/pthread_pshared/procs/8/iterations:1/manual_time', baseline_label='pthread process-shared, 8 processes', goal='at_least', target=1.0),
    dict(group='Locks and atomics', title='RecursiveMutex, 8 processes on 2 CPUs', metric='Mops/s', candidate='contended/shmkit::RecursiveMutex/procs/8/iterations:1/manual_time', baseline='contended/pthread_pshared/procs/8/iterations:1/manual_time', baseline_label='pthread process-shared, 8 processes', goal='at_least', target=None),
    dict(group='Locks and atomics', title='RobustMutex, 8 processes on 2 CPUs', metric='Mops/s', candidate='contended/shmkit::RobustMutex/procs/8/iterations:1/manual_time', baseline='contended/pthread_robust_pshared/procs/8/iterations:1/manual_time', baseline_label='glibc robust pthread, 8 processes', goal='at_least', target=1.0),
    dict(group='Locks and atomics', title='pthread_pshared: 8 processes on 2 CPUs vs 2 processes', metric='Mops/s', candidate='contended/pthread_pshared/procs/8/iterations:1/manual_time', baseline='contended/pthread_pshared/procs/2/iterations:1/manual_time', baseline_label='pthread_pshared, 2 processes', goal='at_least', target=None),
    dict(group='Locks and atomics', title='pthread_robust_pshared: 8 processes on 2 CPUs vs 2 processes', metric='Mops/s', candidate='contended/pthread_robust_pshared/procs/8/iterations:1/manual_time', baseline='contended/pthread_robust_pshared/procs/2/iterations:1/manual_time', baseline_label='pthread_robust_pshared, 2 processes', goal='at_least', target=None),
    dict(group='Locks and atomics', title='boost_interprocess_mutex: 8 processes on 2 CPUs vs 2 processes', metric='Mops/s', candidate='contended/boost_interprocess_mutex/procs/8/iterations:1/manual_time', baseline='contended/boost_interprocess_mutex/procs/2/iterations:1/manual_time', baseline_label='boost_interprocess_mutex, 2 processes', goal='at_least', target=None),
    dict(group='Locks and atomics', title='sem_t: 8 processes on 2 CPUs vs 2 processes', metric='Mops/s', candidate='contended/sem_t/procs/8/iterations:1/manual_time', baseline='contended/sem_t/procs/2/iterations:1/manual_time', baseline_label='sem_t, 2 processes', goal='at_least', target=None),
    dict(group='Locks and atomics', title='Atomic fetch_add, uncontended', candidate='uncontended/shmkit::Atomic/min_time:0.200', baseline='uncontended/std::atomic/min_time:0.200', baseline_label='std::atomic on shm', goal='at_most', target=1.05),
    dict(group='Locks and atomics', title='Atomic fetch_add, 2 processes', metric='Mops/s', candidate='contended/shmkit::Atomic/procs/2/iterations:1/manual_time', baseline='contended/std::atomic/procs/2/iterations:1/manual_time', baseline_label='std::atomic on shm', goal='at_most', target=1.05),
    # CPython's multiprocessing.Queue, what a Python user would pick
    dict(group='Lock-free structures', title="SpscQueue throughput vs CPython multiprocessing.Queue",
         candidate="tput/shmkit_spsc/1024/procs/iterations:1/manual_time",
         baseline="tput/cpython_mp_queue/procs/iterations:1/manual_time",
         baseline_label="CPython multiprocessing.Queue", goal="at_least", target=None),
    dict(group='Lock-free structures', title="SpscQueue round trip vs CPython multiprocessing.Queue",
         candidate="rtt/shmkit_spsc/1024/procs/iterations:1/manual_time",
         baseline="rtt/cpython_mp_queue/procs/iterations:1/manual_time",
         baseline_label="CPython multiprocessing.Queue", goal="at_least", target=None),
    # shmkit::mpi against MPI on one node (bench_mpi: 2 ranks bound to
    # 2 cores by mpirun; the memory rows from a 4-rank probe). No targets yet:
    # the ratios are reported.
    dict(group='MPI node-local layer', title="8-byte round trip between two ranks: SpscQueue vs MPI_Send/MPI_Recv",
         candidate="mpi_rtt/shmkit_spsc/real_time", baseline="mpi_rtt/mpi_send_recv/real_time",
         baseline_label="MPI_Send/MPI_Recv (Open MPI vader)", goal="at_least", target=None),
    dict(group='MPI node-local layer', title="node-local sum of one double per rank (2 ranks): shmkit slots vs MPI_Allreduce",
         candidate="mpi_node_sum/shmkit_slots/real_time", baseline="mpi_node_sum/mpi_allreduce/real_time",
         baseline_label="MPI_Allreduce on the node communicator", goal="at_least", target=None),
    # PSS is lower-is-better (METRICS): with goal at_least the ratio is how
    # many times less memory the node uses with one copy.
    dict(group='MPI node-local layer', title="node memory (PSS), 4 ranks sharing a 256 MiB table: one copy vs one per rank",
         metric="PSS_MiB", candidate="mpi_memory/one_copy_per_node/iterations:1",
         baseline="mpi_memory/one_copy_per_rank/iterations:1", baseline_label="a private copy per rank",
         goal="at_least", target=None),
    dict(group='MPI node-local layer', title="table's share of node PSS, 4 ranks: one copy vs one per rank",
         metric="table_PSS_MiB", candidate="mpi_memory/one_copy_per_node/iterations:1",
         baseline="mpi_memory/one_copy_per_rank/iterations:1", baseline_label="a private copy per rank",
         goal="at_least", target=None),
    # the order book of examples/order_book.hpp (bench_order_book;
    # writer on CPU 0, readers on the others; trust the rows with 4 readers
    # only as far as their runq_wait says the CPUs allowed).
    dict(group='Order book (examples/order_book)', title="Top-of-book read while the writer applies orders: SeqLock vs taking the RobustMutex",
         candidate="order_book/top_read/seqlock/iterations:1/manual_time",
         baseline="order_book/top_read/robust_mutex/iterations:1/manual_time",
         baseline_label="RobustMutex + the same TopOfBook", goal="at_least", target=None),
    dict(group='Order book (examples/order_book)', title="Writer's order rate, 1 reader process polling the top of book",
         candidate="order_book/writer/1readers/iterations:1/manual_time",
         baseline="order_book/writer/0readers/iterations:1/manual_time",
         baseline_label="no reader", goal="at_most", target=None),
    dict(group='Order book (examples/order_book)', title="Writer's order rate, 4 reader processes polling the top of book",
         candidate="order_book/writer/4readers/iterations:1/manual_time",
         baseline="order_book/writer/0readers/iterations:1/manual_time",
         baseline_label="no reader", goal="at_most", target=None),
    # the Python package against CPython, same run (bench_python =
    # python/bench/gbench.py under the main interpreter).
    dict(group='Python package', title="Lock acquire+release, uncontended", candidate="python/lock/shmkit",
         baseline="python/lock/cpython", baseline_label="CPython multiprocessing.Lock", goal="at_most", target=1.0),
    dict(group='Python package', title="Lock, 2 processes contended (pinned)", metric="Mops/s",
         candidate="python/lock_2p/shmkit", baseline="python/lock_2p/cpython",
         baseline_label="CPython multiprocessing.Lock", goal="at_least", target=2.0),
    dict(group='Python package', title="Value.fetch_add vs `with v.get_lock(): v.value += 1`",
         candidate="python/fetch_add/shmkit", baseline="python/fetch_add/cpython_locked_inc",
         baseline_label="CPython Value, locked +=", goal="at_least", target=10.0),
    dict(group='Python package', title="8-byte items streamed between 2 pinned processes (SpscQueue)",
         candidate="python/queue_8b_stream/shmkit_spsc", baseline="python/queue_8b_stream/cpython_mp_queue",
         baseline_label="CPython multiprocessing.Queue, same layout", goal="at_least", target=50.0),
    dict(group='Python package', title="8-byte round trip between 2 pinned processes (SpscQueue)",
         candidate="python/queue_8b_rtt/shmkit_spsc", baseline="python/queue_8b_rtt/cpython_mp_queue",
         baseline_label="CPython multiprocessing.Queue, same layout", goal="at_least", target=None),
    dict(group='Python package', title="ShareableList get int", candidate="python/shareable_list_get/shmkit",
         baseline="python/shareable_list_get/cpython", baseline_label="CPython ShareableList",
         goal="at_least", target=1.5),
    dict(group='Python package', title="ShareableList set int", candidate="python/shareable_list_set/shmkit",
         baseline="python/shareable_list_set/cpython", baseline_label="CPython ShareableList",
         goal="at_least", target=1.5),
    dict(group='Python package', title="one call into the extension (METH_FASTCALL) vs a Python function call",
         candidate="python/call/c_api_noop", baseline="python/call/python_function",
         baseline_label="a Python function doing nothing", goal="at_least", target=None),
    # Python objects between processes (bench_python, bench_pyqueue.py): the
    # same forked processes, placement and ForkingPickler on both sides; the
    # mutex+condvar ring is bench/python/mutex_condvar_ring.cpp, the design of
    # today's shared-memory drop-ins for multiprocessing.Queue.
    _pyqueue("1 producer, 1 consumer, a small dict", "pyqueue_dict_1p1c", _MP_QUEUE, 5.0),
    _pyqueue("1 producer, 1 consumer, a small dict", "pyqueue_dict_1p1c", _RING, 3.0),
    _pyqueue("1 producer, 1 consumer, 8-byte bytes", "pyqueue_bytes8_1p1c", _MP_QUEUE, 50.0),
    _pyqueue("1 producer, 1 consumer, 8-byte bytes", "pyqueue_bytes8_1p1c", _RING, None),
    _pyqueue("2 producers, 2 consumers, a small dict", "pyqueue_dict_2p2c", _MP_QUEUE, 5.0),
    _pyqueue("2 producers, 2 consumers, a small dict", "pyqueue_dict_2p2c", _RING, None),
    _pyqueue("a 16 MiB numpy array put, then got in another process", "pyqueue_numpy16m", _MP_QUEUE, 10.0),
    dict(group='Python Queue', title="the baseline itself (information): mutex+condvar ring vs multiprocessing.Queue, 1P1C small dict",
         candidate="python/pyqueue_dict_1p1c/mutex_condvar_ring", baseline="python/pyqueue_dict_1p1c/cpython_mp_queue",
         baseline_label="CPython multiprocessing.Queue", goal="at_least", target=None),
    dict(group='Python Pool', title="Pool(2).map(f, range(N), chunksize=1), trivial f, per task: shmkit context's Pool vs stdlib",
         candidate="python/pypool_map/shmkit_pool", baseline="python/pypool_map/cpython_pool",
         baseline_label="CPython multiprocessing.Pool (fork)", goal="at_least", target=2.0),
    dict(group='Python Pool', title="Pool(2).apply round trip: shmkit context's Pool vs stdlib",
         candidate="python/pypool_apply/shmkit_pool", baseline="python/pypool_apply/cpython_pool",
         baseline_label="CPython multiprocessing.Pool (fork)", goal="at_least", target=5.0),
    dict(group='Python Pool', title="Pool(2).apply round trip with apply_spin=0 (information): shmkit context's Pool vs stdlib",
         candidate="python/pypool_apply/shmkit_pool_no_spin", baseline="python/pypool_apply/cpython_pool",
         baseline_label="CPython multiprocessing.Pool (fork)", goal="at_least", target=None),
]
