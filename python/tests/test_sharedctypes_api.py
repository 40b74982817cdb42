"""shmkit.sharedctypes as CPython's multiprocessing.sharedctypes looks from
Python: repr() of every kind of object, empty arrays, an unknown typecode,
and inspect.signature of the public callables, each against CPython's own
module in this same interpreter."""
import ctypes
import importlib
import inspect
import multiprocessing.sharedctypes as cpython
import os
import pickle
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import block_exists
from sc_types import Point
from shmkit import _core
from shmkit import sharedctypes as sc


def normalised(text):
    """repr text with addresses and the module's own name made comparable
    (CPython's array types are made in multiprocessing.sharedctypes, ours
    in shmkit.sharedctypes)."""
    text = re.sub(r"0x[0-9a-fA-F]+", "0x?", text)
    return text.replace("multiprocessing.sharedctypes.", "shmkit.sharedctypes.")


# (function name, positional args, keyword args): each built by both modules.
REPR_CASES = [
    ("Value", ("i", 3), {}),
    ("Value", ("d", 1.5), {}),
    ("Value", ("d", 1.5), {"lock": False}),
    ("Value", ("c", b"a"), {}),
    ("Value", ("u", "x"), {}),
    ("Value", (ctypes.c_bool, True), {}),
    ("Value", (ctypes.c_uint16, 65535), {}),
    ("Value", ("q", -(2 ** 40)), {}),
    ("Value", (Point, 1, 2.0), {}),
    ("RawValue", ("d", 1.5), {}),
    ("RawValue", ("i",), {}),
    ("RawValue", (ctypes.c_float, 0.25), {}),
    ("RawValue", (Point, 1, 2.0), {}),
    ("Array", ("i", [1, 2]), {}),
    ("Array", ("c", b"ab"), {}),
    ("Array", ("d", 3), {"lock": False}),
    ("Array", (Point, 2), {}),
    ("Array", ("i", []), {}),
    ("Array", ("c", b""), {}),
    ("RawArray", ("d", 2), {}),
    ("RawArray", ("d", 0), {}),
    ("RawArray", ("b", [1, -1]), {}),
]


@pytest.mark.parametrize("fn,args,kwargs", REPR_CASES,
                         ids=["%s%r%s" % (c[0], c[1], c[2] or "") for c in REPR_CASES])
def test_repr_is_cpythons(fn, args, kwargs):
    ours = getattr(sc, fn)(*args, **kwargs)
    theirs = getattr(cpython, fn)(*args, **kwargs)
    assert normalised(repr(ours)) == normalised(repr(theirs))
    if hasattr(theirs, "get_obj"):
        assert normalised(repr(ours.get_obj())) == normalised(repr(theirs.get_obj()))
    if not isinstance(theirs, ctypes.Array) and not hasattr(theirs, "get_obj"):
        # copy() and synchronized() of a raw object print as CPython's too.
        assert normalised(repr(sc.copy(ours))) == normalised(repr(cpython.copy(theirs)))
        assert (normalised(repr(sc.synchronized(sc.copy(ours))))
                == normalised(repr(cpython.synchronized(cpython.copy(theirs)))))


def test_repr_of_simple_values_reads_their_value():
    assert repr(sc.Value("i", 3)) == "<Synchronized wrapper for c_int(3)>"
    assert repr(sc.RawValue("d", 1.5)) == "c_double(1.5)"
    v = sc.RawValue("l", 1)
    v.value = 42  # the repr reads the shared bytes now, not a cached value
    assert repr(v) == "c_long(42)" and repr(pickle.loads(pickle.dumps(v))) == "c_long(42)"
    assert repr(sc.Value("i", 3, lock="robust")) == "<Synchronized wrapper for c_int(3)>"


# ------------------------------------------------------------ empty arrays

EMPTY_CASES = [("i", []), ("d", 0), ("c", b""), ("q", ()), (Point, 0)]
LOCKS = [True, False, "mutex", "robust"]


@pytest.mark.parametrize("lock", LOCKS, ids=[str(k) for k in LOCKS])
@pytest.mark.parametrize("code,init", EMPTY_CASES, ids=[str(c[0]) for c in EMPTY_CASES])
def test_empty_arrays_are_cpythons(code, init, lock):
    ours = sc.Array(code, init, lock=lock)
    theirs = cpython.Array(code, init, lock=lock is not False)
    assert len(ours) == len(theirs) == 0
    assert ours[:] == theirs[:] and ours[0:10] == theirs[0:10] and ours[::-1] == theirs[::-1]
    assert list(ours) == list(theirs) == []
    for i in (0, -1, 5):
        with pytest.raises(IndexError):
            ours[i]
        with pytest.raises(IndexError):
            theirs[i]
        with pytest.raises(IndexError):
            ours[i] = theirs._type_() if hasattr(theirs, "_type_") else 0
    if code == "c":
        assert ours.value == theirs.value == b"" and ours.raw == theirs.raw == b""
    if lock is not False:
        with ours.get_lock():
            pass
    ours[0:0] = []
    assert len(sc.copy(ours)) == 0


def test_empty_raw_arrays():
    for code in ("i", "d", "c", "B"):
        assert len(sc.RawArray(code, 0)) == len(cpython.RawArray(code, 0)) == 0
        assert sc.RawArray(code, [] if code != "c" else b"")[:] == cpython.RawArray(code, 0)[:]


def test_empty_array_pickles_to_another_interpreter(names):
    for name, make in ((None, lambda n: sc.Array("i", [])),
                       (names("empty"), lambda n: sc.Array("d", 0, name=n)),
                       (names("empty_raw"), lambda n: sc.RawArray("c", b"", name=n))):
        arr = make(name)
        child = subprocess.run(
            [sys.executable, "-c", textwrap.dedent("""
                import pickle, sys
                a = pickle.loads(sys.stdin.buffer.read())
                try:
                    a[0]
                except IndexError:
                    pass
                else:
                    sys.exit("a[0] of an empty array did not raise IndexError")
                if hasattr(a, "get_lock"):
                    with a.get_lock():
                        pass
                print(len(a), a[:])
            """)],
            input=pickle.dumps(arr), capture_output=True, env=os.environ.copy(), timeout=120)
        assert child.returncode == 0, child.stderr.decode()
        assert child.stdout.decode().split() in (["0", "[]"], ["0", "b''"])
        if name is not None:
            again = (sc.Array("d", name=name, create=False) if "raw" not in name
                     else sc.RawArray("c", name=name, create=False))
            assert len(again) == 0
            arr.unlink() if hasattr(arr, "unlink") else arr._shmkit_place.mapping.unlink()


def test_unnamed_empty_array_leaves_nothing():
    arr = sc.Array("i", [])
    name = arr.name
    assert block_exists(name)
    assert [r for r in _core._registrations() if r[0] == name] != []  # tracked, as any unnamed one
    del arr
    assert not block_exists(name)
    assert [r for r in _core._registrations() if r[0] == name] == []


def test_empty_named_array_takes_its_name_once(names):
    name = names("taken")
    arr = sc.Array("i", 0, name=name)
    with pytest.raises(FileExistsError):
        sc.Array("i", 0, name=name)
    with pytest.raises(ValueError):  # a Value of the same type is not an array
        sc.Value("i", name=name, create=False)
    arr.unlink()


def test_empty_array_numpy_view():
    np = pytest.importorskip("numpy")
    assert np.asarray(sc.Array("d", 0)).shape == (0,)
    assert np.asarray(sc.RawArray("i", [])).shape == (0,)


# ------------------------------------------------------------ typecodes

@pytest.mark.parametrize("fn", ["Value", "RawValue", "Array", "RawArray"])
@pytest.mark.parametrize("code", ["x", "z", "", "ii"])
def test_unknown_typecode_is_named(fn, code):
    with pytest.raises(TypeError):  # CPython's type for it ("this type has no size")
        getattr(cpython, fn)(code, 1)
    with pytest.raises(TypeError) as e:
        getattr(sc, fn)(code, 1)
    assert repr(code) in str(e.value) and "typecode" in str(e.value)


# ------------------------------------------------------------ signatures

MODULES = {
    "shared_memory": "multiprocessing.shared_memory",
    "sharedctypes": "multiprocessing.sharedctypes",
    "synchronize": "multiprocessing.synchronize",
    "queues": None,
}


def public_python_callables():
    """(qualified name, callable, CPython's counterpart or None) for every
    public callable defined in Python in the four modules (C methods are
    the extension's: see test_typing.py)."""
    out = []
    for mod_name, cpy_name in MODULES.items():
        mod = importlib.import_module("shmkit." + mod_name)
        cpy = importlib.import_module(cpy_name) if cpy_name else None
        for name in mod.__all__:
            obj = getattr(mod, name)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                continue  # exceptions: as CPython's, no signature to give
            if not callable(obj) or not (inspect.isfunction(obj) or isinstance(obj, type)):
                continue
            theirs = getattr(cpy, name, None) if cpy else None
            if isinstance(obj, type) and obj.__module__.startswith("shmkit._"):
                continue  # an extension type re-exported (BroadcastReader)
            out.append(("%s.%s" % (mod_name, name), obj, theirs))
            if isinstance(obj, type):
                for attr, member in vars(obj).items():
                    if (attr.startswith("_") and attr not in ("__init__", "__new__")) \
                            or not inspect.isfunction(member):
                        continue
                    out.append(("%s.%s.%s" % (mod_name, name, attr), getattr(obj, attr),
                                getattr(theirs, attr, None) if theirs else None))
    return out


CALLABLES = public_python_callables()


@pytest.mark.parametrize("qualname,obj,theirs", CALLABLES, ids=[c[0] for c in CALLABLES])
def test_signature_works_and_extends_cpythons(qualname, obj, theirs):
    sig = inspect.signature(obj)
    if theirs is None or not callable(theirs):
        return
    try:
        cpy_sig = inspect.signature(theirs)
    except (TypeError, ValueError):
        return
    # CPython's parameters come first, in its order, of the same kinds;
    # shmkit's extra ones (name=, track=, ...) follow.
    ours = list(sig.parameters.values())
    cpy = list(cpy_sig.parameters.values())
    if cpy and cpy[0].name == "self" and (not ours or ours[0].name != "self"):
        cpy = cpy[1:]
    # CPython's ctx is keyword-only with no default in synchronize; ours defaults it.
    assert [(p.name, p.kind) for p in ours[:len(cpy)]] == [(p.name, p.kind) for p in cpy], \
        "%s%s vs CPython's %s" % (qualname, sig, cpy_sig)
