"""The Python half of a Python/C++ pair (see python_pair_worker.cpp).

    python_pair.py WORKER_BINARY

CPython creates a ShareableList of parameters and a numpy array in a
SharedMemory block, runs the C++ worker with their names, and prints what
the worker wrote back into both.
"""
import subprocess
import sys
from typing import Any

import numpy as np
from numpy.typing import NDArray
from multiprocessing import shared_memory

worker = sys.argv[1]
items: list[Any] = ["params", 0.5, 8, 0.0, " " * 16, 0]  # (typeshed: one item type)
params = shared_memory.ShareableList(items)
block = shared_memory.SharedMemory(create=True, size=8 * 8)
try:
    a: NDArray[np.float64] = np.ndarray((8,), dtype=np.float64, buffer=block.buf)
    a[:] = np.arange(1, 9)
    print("Python: before", a.tolist())
    subprocess.run([worker, params.shm.name, block.name], check=True)
    print("Python: after ", a.tolist())
    print("Python: total", params[3], "|", params[4], "| worker pid", params[5])
    del a
finally:
    block.close()
    block.unlink()
    params.shm.close()
    params.shm.unlink()
