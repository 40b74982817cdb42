"""CPython peer for the sharedctypes tests.

    sharedctypes_peer.py make-shareable-list NAME N   a CPython ShareableList
                                                      [0, 1, ..., N-1] under
                                                      NAME, left for the test
    sharedctypes_peer.py make-doc-list NAME           the docs' list
                                                      ['howdy', b'HoWdY', -273.154,
                                                      100, None, True, 42]; prints
                                                      repr() of it
"""
import sys
from multiprocessing import resource_tracker, shared_memory

if sys.argv[1] == "make-shareable-list":
    sl = shared_memory.ShareableList(list(range(int(sys.argv[3]))), name=sys.argv[2])
    resource_tracker.unregister(sl.shm._name, "shared_memory")  # C++ unlinks it
    sl.shm.close()
elif sys.argv[1] == "make-doc-list":
    sl = shared_memory.ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42], name=sys.argv[2])
    resource_tracker.unregister(sl.shm._name, "shared_memory")
    print(repr(sl))
    sl.shm.close()
else:
    sys.exit("unknown command " + sys.argv[1])
