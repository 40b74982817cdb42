"""The comparisons bench/compare.py reports: candidate and baseline are
Google Benchmark run names from the same binary and run.

goal "at_most": candidate time / baseline time must be <= target.
goal "at_least": baseline time / candidate time (a speed-up) >= target.
metric "ns" (default) compares real time per iteration; another metric names
a user counter (higher is better), e.g. "items_per_second".
target None: the ratio is reported, no target is set.
group: the table (component) the row belongs to in reports.
"""

COMPARISONS = [
    # issue 2: SharedMemory
    dict(group='SharedMemory', title="create+close+unlink 4 KiB (reserve on)", candidate="BM_Shmkit_CreateCycle/real_time",
         baseline="BM_Raw_CreateCycle/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    dict(group='SharedMemory', title="create+close+unlink 4 KiB (reserve off)", candidate="BM_Shmkit_CreateCycleNoReserve/real_time",
         baseline="BM_Raw_CreateCycle/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    dict(group='SharedMemory', title="create+first write+close+unlink 4 KiB", candidate="BM_Shmkit_CreateWriteCycle/real_time",
         baseline="BM_Raw_CreateWriteCycle/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    dict(group='SharedMemory', title="attach+close 4 KiB", candidate="BM_Shmkit_Attach/real_time",
         baseline="BM_Raw_Attach/real_time", baseline_label="raw syscalls", goal="at_most", target=1.2),
    dict(group='SharedMemory', title="create+close+unlink 4 KiB vs CPython", candidate="BM_Shmkit_CreateCycleRandomName/real_time",
         baseline="BM_CPython/CreateCycle/iterations:1/manual_time", baseline_label="CPython SharedMemory",
         goal="at_least", target=2.0),
    dict(group='SharedMemory', title="attach+close 4 KiB vs CPython", candidate="BM_Shmkit_Attach/real_time",
         baseline="BM_CPython/Attach/iterations:1/manual_time", baseline_label="CPython SharedMemory",
         goal="at_least", target=2.0),
    # issue 5: sharedctypes
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
    dict(group='sharedctypes', title="Array<double> copy_to vs CPython a[:], 8 MiB", metric="bytes_per_second",
         candidate="array_copy_to/8MiB", baseline="cpython/value_get_lock_idiom_2p/iterations:1/manual_time",
         baseline_label="CPython Array('d')[:]", goal="at_least", target=None),
    dict(group='sharedctypes', title="Value created in a Heap (+destroy)", candidate="heap_value_create_destroy",
         baseline="named_value_create_unlink", baseline_label="Value in its own named block",
         goal="at_least", target=None),
    # issue 3: ShareableList (CPython timing its own loop, same run)
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
    # issue 4: locks and atomics (Mops/s counted while every process runs)
    dict(group='Locks and atomics', title='Mutex lock+unlock, uncontended', candidate='uncontended/shmkit::Mutex/min_time:0.200', baseline='uncontended/pthread_pshared/min_time:0.200', baseline_label='pthread process-shared', goal='at_most', target=1.0),
    dict(group='Locks and atomics', title='Mutex, 2 processes contended', metric='Mops/s', candidate='contended/shmkit::Mutex/procs/2/iterations:1/manual_time', baseline='contended/pthread_pshared/procs/2/iterations:1/manual_time', baseline_label='pthread process-shared', goal='at_least', target=1.0),
    dict(group='Locks and atomics', title='RecursiveMutex lock+unlock, uncontended', candidate='uncontended/shmkit::RecursiveMutex/min_time:0.200', baseline='uncontended/pthread_pshared/min_time:0.200', baseline_label='pthread process-shared', goal='at_most', target=None),
    dict(group='Locks and atomics', title='RobustMutex lock+unlock, uncontended', candidate='uncontended/shmkit::RobustMutex/min_time:0.200', baseline='uncontended/pthread_robust_pshared/min_time:0.200', baseline_label='glibc robust pthread', goal='at_most', target=1.05),
    dict(group='Locks and atomics', title='RobustMutex, 2 processes contended', metric='Mops/s', candidate='contended/shmkit::RobustMutex/procs/2/iterations:1/manual_time', baseline='contended/pthread_robust_pshared/procs/2/iterations:1/manual_time', baseline_label='glibc robust pthread', goal='at_most', target=1.05),
    dict(group='Locks and atomics', title="Mutex vs sem_t (CPython's Lock), 2 processes", metric='Mops/s', candidate='contended/shmkit::Mutex/procs/2/iterations:1/manual_time', baseline='contended/sem_t/procs/2/iterations:1/manual_time', baseline_label='POSIX sem_t', goal='at_least', target=None),
    dict(group='Locks and atomics', title='shmkit::Mutex: 8 processes on 2 CPUs vs 2 processes', metric='Mops/s', candidate='contended/shmkit::Mutex/procs/8/iterations:1/manual_time', baseline='contended/shmkit::Mutex/procs/2/iterations:1/manual_time', baseline_label='shmkit::Mutex, 2 processes', goal='at_least', target=0.5),
    dict(group='Locks and atomics', title='shmkit::RecursiveMutex: 8 processes on 2 CPUs vs 2 processes', metric='Mops/s', candidate='contended/shmkit::RecursiveMutex/procs/8/iterations:1/manual_time', baseline='contended/shmkit::RecursiveMutex/procs/2/iterations:1/manual_time', baseline_label='shmkit::RecursiveMutex, 2 processes', goal='at_least', target=0.5),
    dict(group='Locks and atomics', title='shmkit::RobustMutex: 8 processes on 2 CPUs vs 2 processes', metric='Mops/s', candidate='contended/shmkit::RobustMutex/procs/8/iterations:1/manual_time', baseline='contended/shmkit::RobustMutex/procs/2/iterations:1/manual_time', baseline_label='shmkit::RobustMutex, 2 processes', goal='at_least', target=0.5),
    dict(group='Locks and atomics', title='pthread_pshared: 8 processes on 2 CPUs vs 2 processes', metric='Mops/s', candidate='contended/pthread_pshared/procs/8/iterations:1/manual_time', baseline='contended/pthread_pshared/procs/2/iterations:1/manual_time', baseline_label='pthread_pshared, 2 processes', goal='at_least', target=None),
    dict(group='Locks and atomics', title='pthread_robust_pshared: 8 processes on 2 CPUs vs 2 processes', metric='Mops/s', candidate='contended/pthread_robust_pshared/procs/8/iterations:1/manual_time', baseline='contended/pthread_robust_pshared/procs/2/iterations:1/manual_time', baseline_label='pthread_robust_pshared, 2 processes', goal='at_least', target=None),
    dict(group='Locks and atomics', title='boost_interprocess_mutex: 8 processes on 2 CPUs vs 2 processes', metric='Mops/s', candidate='contended/boost_interprocess_mutex/procs/8/iterations:1/manual_time', baseline='contended/boost_interprocess_mutex/procs/2/iterations:1/manual_time', baseline_label='boost_interprocess_mutex, 2 processes', goal='at_least', target=None),
    dict(group='Locks and atomics', title='sem_t: 8 processes on 2 CPUs vs 2 processes', metric='Mops/s', candidate='contended/sem_t/procs/8/iterations:1/manual_time', baseline='contended/sem_t/procs/2/iterations:1/manual_time', baseline_label='sem_t, 2 processes', goal='at_least', target=None),
    dict(group='Locks and atomics', title='Atomic fetch_add, uncontended', candidate='uncontended/shmkit::Atomic/min_time:0.200', baseline='uncontended/std::atomic/min_time:0.200', baseline_label='std::atomic on shm', goal='at_most', target=1.05),
    dict(group='Locks and atomics', title='Atomic fetch_add, 2 processes', metric='Mops/s', candidate='contended/shmkit::Atomic/procs/2/iterations:1/manual_time', baseline='contended/std::atomic/procs/2/iterations:1/manual_time', baseline_label='std::atomic on shm', goal='at_most', target=1.05),
]
