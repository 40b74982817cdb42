"""The comparisons bench/compare.py reports: candidate and baseline are
Google Benchmark run names from the same binary and run.

goal "at_most": candidate time / baseline time must be <= target.
goal "at_least": baseline time / candidate time (a speed-up) >= target.
metric "ns" (default) compares real time per iteration; another metric names
a user counter (higher is better), e.g. "items_per_second".
target None: the ratio is reported, no target is set.
"""

COMPARISONS = [
    # issue 2: SharedMemory
    dict(title="create+close+unlink 4 KiB (reserve on)", candidate="BM_Shmkit_CreateCycle/real_time",
         baseline="BM_Raw_CreateCycle/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    dict(title="create+close+unlink 4 KiB (reserve off)", candidate="BM_Shmkit_CreateCycleNoReserve/real_time",
         baseline="BM_Raw_CreateCycle/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    dict(title="create+first write+close+unlink 4 KiB", candidate="BM_Shmkit_CreateWriteCycle/real_time",
         baseline="BM_Raw_CreateWriteCycle/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    dict(title="attach+close 4 KiB", candidate="BM_Shmkit_Attach/real_time",
         baseline="BM_Raw_Attach/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    dict(title="create+close+unlink 4 KiB vs CPython", candidate="BM_Shmkit_CreateCycleRandomName/real_time",
         baseline="BM_CPython/CreateCycle/iterations:1/manual_time", baseline_label="CPython SharedMemory",
         goal="at_least", target=2.0),
    dict(title="attach+close 4 KiB vs CPython", candidate="BM_Shmkit_Attach/real_time",
         baseline="BM_CPython/Attach/iterations:1/manual_time", baseline_label="CPython SharedMemory",
         goal="at_least", target=2.0),
    # issue 5: sharedctypes
    dict(title="Value<int64> locked increment (RecursiveMutex)", candidate="value_inc/RecursiveMutex",
         baseline="bare_inc/RecursiveMutex", baseline_label="bare lock+increment", goal="at_most", target=1.1),
    dict(title="Value<int64> locked increment (Mutex)", candidate="value_inc/Mutex",
         baseline="bare_inc/Mutex", baseline_label="bare lock+increment", goal="at_most", target=1.1),
    dict(title="Value<int64> locked increment (RobustMutex)", candidate="value_inc/RobustMutex",
         baseline="bare_inc/RobustMutex", baseline_label="bare lock+increment", goal="at_most", target=1.1),
    dict(title="AtomicValue fetch_add, 1 process", candidate="atomic_value/fetch_add",
         baseline="std_atomic/fetch_add", baseline_label="std::atomic on shm", goal="at_most", target=1.05),
    dict(title="AtomicValue fetch_add, 2 processes", metric="Mops/s",
         candidate="atomic_value_2p/fetch_add/iterations:1/manual_time",
         baseline="std_atomic_2p/fetch_add/iterations:1/manual_time", baseline_label="std::atomic on shm",
         goal="at_most", target=1.05),
    dict(title="Value locked increment, 2 processes", metric="Mops/s",
         candidate="value_inc_2p/RecursiveMutex/iterations:1/manual_time",
         baseline="cpython/value_get_lock_idiom_2p/iterations:1/manual_time",
         baseline_label="CPython with v.get_lock(): v.value += 1", goal="at_least", target=15),
    dict(title="get_lock() + value()/set_value(), 2 processes", metric="Mops/s",
         candidate="value_get_lock_idiom_2p/RecursiveMutex/iterations:1/manual_time",
         baseline="cpython/value_get_lock_idiom_2p/iterations:1/manual_time",
         baseline_label="CPython with v.get_lock(): v.value += 1", goal="at_least", target=15),
    dict(title="Array<double> copy_to, 8 MiB", metric="bytes_per_second", candidate="array_copy_to/8MiB",
         baseline="memcpy/8MiB", baseline_label="memcpy", goal="at_least", target=0.9),
    dict(title="Array<double> copy_to vs CPython a[:], 8 MiB", metric="bytes_per_second",
         candidate="array_copy_to/8MiB", baseline="cpython/value_get_lock_idiom_2p/iterations:1/manual_time",
         baseline_label="CPython Array('d')[:]", goal="at_least", target=None),
    dict(title="Value created in a Heap (+destroy)", candidate="heap_value_create_destroy",
         baseline="named_value_create_unlink", baseline_label="Value in its own named block",
         goal="at_least", target=None),
    # issue 3: ShareableList (CPython timing its own loop, same run)
    dict(title="ShareableList get int", candidate="BM_GetInt/real_time",
         baseline="BM_CPython/GetInt/iterations:1/manual_time", baseline_label="CPython ShareableList",
         goal="at_least", target=20),
    dict(title="ShareableList set int", candidate="BM_SetInt/real_time",
         baseline="BM_CPython/SetInt/iterations:1/manual_time", baseline_label="CPython ShareableList",
         goal="at_least", target=20),
    dict(title="ShareableList get 16-byte str (new std::string)", candidate="BM_GetStr16/real_time",
         baseline="BM_CPython/GetStr16/iterations:1/manual_time", baseline_label="CPython ShareableList",
         goal="at_least", target=20),
    dict(title="ShareableList get 16-byte str (reused Item)", candidate="BM_GetStr16Into/real_time",
         baseline="BM_CPython/GetStr16/iterations:1/manual_time", baseline_label="CPython ShareableList",
         goal="at_least", target=20),
    dict(title="ShareableList set 16-byte str", candidate="BM_SetStr16/real_time",
         baseline="BM_CPython/SetStr16/iterations:1/manual_time", baseline_label="CPython ShareableList",
         goal="at_least", target=20),
]
