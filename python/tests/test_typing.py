"""The package's typing: the stubs of the extension modules name what the
modules have (and nothing they lack), they ship with py.typed next to the
modules, and the typed usage file (type-checked by ctest python_mypy)
runs. mypy itself runs in ctest python_mypy, not here."""
import ast
import importlib
import inspect
import os

import pytest

import shmkit

PACKAGE = os.path.dirname(shmkit.__file__)
EXTENSIONS = ["_core", "_sync", "_queues"]
# In the stubs for typing only (documented there): a base class the
# primitives share, and the type get_view() returns (not in the module).
STUB_ONLY = {"_sync": {"_Bound"}, "_queues": {"BatchView"}}
# Buffer-protocol methods the stubs declare (PEP 688) for type checkers; a
# C type exports them as slots, visible as attributes from Python 3.12.
BUFFER_METHODS = {"__buffer__", "__release_buffer__"}


def stub_tree(name):
    path = os.path.join(PACKAGE, name + ".pyi")
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def stub_names(tree):
    """{top-level name: set of member names (classes) or None}."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            out[node.name] = members
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = None
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = None
    return out


def runtime_members(cls):
    """The names a C type defines itself (methods, getsets, constants)."""
    return {n for n in vars(cls) if not (n.startswith("__") and n.endswith("__"))
            or n in ("__enter__", "__exit__", "__len__")}


def test_py_typed_and_stubs_ship_with_the_package():
    assert os.path.isfile(os.path.join(PACKAGE, "py.typed"))
    for ext in EXTENSIONS:
        assert os.path.isfile(os.path.join(PACKAGE, ext + ".pyi")), ext


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_stubs_name_everything_the_module_has(ext):
    mod = importlib.import_module("shmkit." + ext)
    stubs = stub_names(stub_tree(ext))
    stub_only = STUB_ONLY.get(ext, set())
    public = {n for n in vars(mod) if not (n.startswith("__") and n.endswith("__"))}
    private_aliases = {n for n in stubs if n.startswith("_") and n[1:2].isupper()
                       and n not in public and n not in stub_only}  # _Item, _ObjectResult, _Q ...
    assert sorted(public - set(stubs)) == [], "in shmkit.%s, missing from %s.pyi" % (ext, ext)
    assert sorted(set(stubs) - public - stub_only - private_aliases) == [], \
        "in %s.pyi, not in shmkit.%s" % (ext, ext)
    for name, members in stubs.items():
        if members is None or name in stub_only or name not in public:
            continue
        cls = getattr(mod, name)
        if issubclass(cls, BaseException):
            continue
        have = set()
        for klass in cls.__mro__:
            if klass is object:
                break
            have |= runtime_members(klass)
        declared = set(members) - BUFFER_METHODS - {"__new__"}
        # Members the stubs' typing-only base gives every primitive view.
        if ext == "_sync" and "_Bound" in stubs and any(
                isinstance(b, ast.Name) and b.id == "_Bound"
                for node in stub_tree(ext).body if isinstance(node, ast.ClassDef) and node.name == name
                for b in node.bases):
            declared |= {"TYPE_NAME", "SIZE", "ALIGN", "_over", "_address", "_buffer"}
        assert sorted(declared - have) == [], "%s.%s: in the stub, not at run time" % (ext, name)
        assert sorted(runtime_members(cls) - declared) == [], \
            "%s.%s: at run time, missing from the stub" % (ext, name)


def test_stub_parameters_match_text_signatures():
    """Where a C method has a __text_signature__, its parameter names are the
    stub's (once core.cpp & co. give them: see the report of python/src)."""
    for ext in EXTENSIONS:
        mod = importlib.import_module("shmkit." + ext)
        tree = stub_tree(ext)
        for node in tree.body:
            if not isinstance(node, ast.ClassDef) or not hasattr(mod, node.name):
                continue
            cls = getattr(mod, node.name)
            for item in node.body:
                if not isinstance(item, ast.FunctionDef) or item.name.startswith("__"):
                    continue
                member = getattr(cls, item.name, None)
                if member is None or getattr(member, "__text_signature__", None) is None:
                    continue
                try:
                    sig = inspect.signature(member)
                except ValueError:
                    continue
                names = [p.name for p in sig.parameters.values() if p.name not in ("self", "cls")]
                stub = [a.arg for a in item.args.posonlyargs + item.args.args + item.args.kwonlyargs
                        if a.arg not in ("self", "cls")]
                assert names == stub, "%s.%s.%s: %s vs the stub's %s" % (
                    ext, node.name, item.name, names, stub)


def test_typed_usage_runs():
    import typing_usage
    typing_usage.main()
