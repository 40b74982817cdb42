"""Views a shmkit Array<double> block with numpy (see numpy_array.cpp)."""
import struct
import sys

import numpy as np
from numpy.typing import NDArray
from multiprocessing import resource_tracker, shared_memory

shm = shared_memory.SharedMemory(name=sys.argv[1])
# The C++ side owns it (shm._name: "/" + name; CPython < 3.13 has no track=False).
resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
count, offset = struct.unpack_from("QQ", shm.buf, 48)    # BlockHeader fields
a: NDArray[np.float64] = np.ndarray((count,), dtype=np.float64, buffer=shm.buf, offset=offset)
print("Python: numpy sees", a.tolist(), "sum", a.sum())
a *= 10
del a
shm.close()
