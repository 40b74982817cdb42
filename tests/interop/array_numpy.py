"""CPython + numpy peer for the Array interop test.

    array_numpy.py NAME DTYPE      attach the C++ Array block NAME, read its
                                   header (count at byte 48, payload_offset at
                                   byte 56), view the elements with numpy,
                                   print them, then double them in place.
"""
import struct
import sys

import numpy as np
from multiprocessing import resource_tracker, shared_memory

name, dtype = sys.argv[1], np.dtype(sys.argv[2])
shm = shared_memory.SharedMemory(name=name)
resource_tracker.unregister(shm._name, "shared_memory")  # C++ owns the block
magic, = struct.unpack_from("Q", shm.buf, 0)
count, offset = struct.unpack_from("QQ", shm.buf, 48)
a = np.ndarray((count,), dtype=dtype, buffer=shm.buf, offset=offset)
print("magic=%016x count=%d offset=%d" % (magic, count, offset))
print("values=" + ",".join(repr(x.item()) for x in a))
a *= 2
del a
shm.close()
