"""Views a shmkit Array<double> block with numpy (see numpy_array.cpp)."""
import struct
import sys

import numpy as np
from multiprocessing import resource_tracker, shared_memory

shm = shared_memory.SharedMemory(name=sys.argv[1])
resource_tracker.unregister(shm._name, "shared_memory")  # the C++ side owns it
count, offset = struct.unpack_from("QQ", shm.buf, 48)    # BlockHeader fields
a = np.ndarray((count,), dtype=np.float64, buffer=shm.buf, offset=offset)
print("Python: numpy sees", a.tolist(), "sum", a.sum())
a *= 10
del a
shm.close()
