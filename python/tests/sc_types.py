"""ctypes types the sharedctypes tests share with processes they start
(which import this module by name to unpickle; it needs nothing else)."""
import ctypes


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double)]
