"""The comparisons bench/compare.py reports: candidate and baseline are
Google Benchmark run names from the same binary and run.

goal "at_most": candidate time / baseline time must be <= target.
goal "at_least": baseline time / candidate time (a speed-up) >= target.
metric "ns" (default) compares real time per iteration; another metric names
a user counter (higher is better), e.g. "items_per_second".
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
