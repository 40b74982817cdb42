"""The PEP 517 build backend of the shmkit Python package (``backend-path``
in python/pyproject.toml): ``pip install ./python --no-build-isolation`` and
``python3 -m build --wheel --no-isolation python`` use it, offline, with
Debian's packages only (cmake, ninja, g++ and the interpreter's -dev files;
scripts/install-deps.sh installs them). No setuptools is needed.

How it builds:

1. The C++ core (the static, position-independent libshmkit.a, the tracker's
   watcher program and the ``shmkit`` command) is configured, built and
   installed once into a cache shared by every interpreter,
   ``$SHMKIT_BUILD_CACHE`` or ``~/.cache/shmkit/<checkout>``; a second
   interpreter, or a rebuild with unchanged sources, reuses it (ninja finds
   nothing to do). Nothing is written into the source checkout.
2. The extension modules are built for the interpreter running the backend,
   with python/CMakeLists.txt as a project of its own over that installed
   core (``find_package(shmkit)``), in the same cache.
3. The wheel holds the package, its extension modules, ``shmkit-watcher``
   and ``shmkit-cli`` (the ``shmkit`` command, run by ``python -m shmkit``
   and the ``shmkit`` console script: the same program, not a second
   implementation), the type stubs and ``py.typed``.

Builds of several interpreters at once are serialised by a lock file in the
cache. ``SHMKIT_BUILD_JOBS`` sets the parallelism (default: the CPU count).
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _root() -> Path:
    """The source tree: the first directory above this file holding the
    top-level CMakeLists.txt and include/shmkit (the checkout, or an sdist)."""
    for d in HERE.parents:
        if (d / "CMakeLists.txt").is_file() and (d / "include" / "shmkit").is_dir():
            return d
    raise RuntimeError("shmkit backend: cannot find the shmkit source tree above " + str(HERE))


ROOT = _root()
PYDIR = ROOT / "python"


def _metadata() -> dict:
    """[project] of python/pyproject.toml: the simple keys this backend uses."""
    text = (PYDIR / "pyproject.toml").read_text()
    try:
        import tomllib  # Python 3.11+
        return tomllib.loads(text)["project"]
    except ImportError:
        pass
    # Python 3.8-3.10: the few `key = "value"` lines of [project] and its
    # scripts table are all this backend reads.
    project, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if "=" not in line or section not in ("project", "project.scripts", "project.urls"):
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        if section == "project":
            project[key.strip()] = value
        else:
            project.setdefault(section.split(".")[1], {})[key.strip().strip('"')] = value
    return project


def _name_version():
    m = _metadata()
    return m["name"], m["version"]


def _cache() -> Path:
    base = os.environ.get("SHMKIT_BUILD_CACHE")
    if base:
        path = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(xdg) / "shmkit" / ("build-" + hashlib.sha1(str(ROOT).encode()).hexdigest()[:12])
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(cmd, **kw):
    sys.stderr.write("shmkit backend: " + " ".join(str(c) for c in cmd) + "\n")
    subprocess.run([str(c) for c in cmd], check=True, stdout=sys.stderr, **kw)


def _jobs() -> str:
    return os.environ.get("SHMKIT_BUILD_JOBS") or str(os.cpu_count() or 2)


def _generator(build_dir: Path):
    if (build_dir / "CMakeCache.txt").exists() or not shutil.which("ninja"):
        return []
    return ["-G", "Ninja"]


def _build_core(cache: Path) -> Path:
    """Configures, builds and installs the C++ core once; returns its prefix."""
    build, prefix = cache / "core", cache / "core-prefix"
    _run(["cmake", "-S", ROOT, "-B", build, *_generator(build), "-DCMAKE_BUILD_TYPE=Release",
          "-DSHMKIT_BUILD_TESTS=OFF", "-DSHMKIT_BUILD_BENCH=OFF", "-DSHMKIT_BUILD_EXAMPLES=OFF",
          "-DSHMKIT_BUILD_TOOLS=ON", "-DSHMKIT_BUILD_SHARED=OFF", "-DSHMKIT_BUILD_PYTHON=OFF",
          "-DCMAKE_INSTALL_PREFIX=" + str(prefix)])
    _run(["cmake", "--build", build, "-j", _jobs()])
    _run(["cmake", "--install", build])
    return prefix


def _build_extension(cache: Path, prefix: Path) -> Path:
    """Builds the package for this interpreter; returns its shmkit/ directory."""
    tag = "%s-%s" % (sys.implementation.cache_tag,
                     hashlib.sha1(sys.executable.encode()).hexdigest()[:8])
    build = cache / ("py-" + tag)
    _run(["cmake", "-S", PYDIR, "-B", build, *_generator(build), "-DCMAKE_BUILD_TYPE=Release",
          "-DCMAKE_PREFIX_PATH=" + str(prefix), "-DPython3_EXECUTABLE=" + sys.executable,
          "-DSHMKIT_PYTHON_EXTRA="])
    _run(["cmake", "--build", build, "-j", _jobs(), "--target", "shmkit_python_main"])
    package = build / "site-main" / "shmkit"
    if not (package / "__init__.py").is_file():
        raise RuntimeError("shmkit backend: the build made no package in %s (are the development "
                           "files of %s installed?)" % (package, sys.executable))
    return package


class _Lock:
    """An exclusive lock on the cache, so concurrent builds take turns."""

    def __init__(self, cache: Path):
        self.f = open(cache / ".lock", "w")

    def __enter__(self):
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _wheel_tag() -> str:
    v = "cp%d%d" % sys.version_info[:2]
    abi = v + getattr(sys, "abiflags", "")
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return "%s-%s-%s" % (v, abi, plat)


def _metadata_text() -> str:
    m = _metadata()
    lines = ["Metadata-Version: 2.1", "Name: " + m["name"], "Version: " + m["version"],
             "Summary: " + m.get("description", "")]
    if m.get("requires-python"):
        lines.append("Requires-Python: " + m["requires-python"])
    lic = m.get("license")
    if isinstance(lic, dict) and lic.get("text"):
        lines.append("License: " + lic["text"])
    for label, url in (m.get("urls") or {}).items():
        lines.append("Project-URL: %s, %s" % (label, url))
    for c in m.get("classifiers", []) if isinstance(m.get("classifiers"), list) else []:
        lines.append("Classifier: " + c)
    readme = PYDIR / "README.md"
    body = readme.read_text() if readme.exists() else ""
    if body:
        lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + body


def _entry_points() -> str:
    scripts = _metadata().get("scripts") or {}
    if not scripts:
        return ""
    return "[console_scripts]\n" + "".join("%s = %s\n" % kv for kv in scripts.items())


def _dist_info_files() -> dict:
    name, version = _name_version()
    files = {"METADATA": _metadata_text(),
             "WHEEL": "Wheel-Version: 1.0\nGenerator: shmkit_backend\nRoot-Is-Purelib: false\n"
                      "Tag: %s\n" % _wheel_tag()}
    ep = _entry_points()
    if ep:
        files["entry_points.txt"] = ep
    return files


def _dist_info_name() -> str:
    name, version = _name_version()
    return "%s-%s.dist-info" % (name.replace("-", "_"), version)


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (arcname, digest, len(data))


def _package_files(package: Path, prefix: Path):
    """(arcname, bytes, mode) of every file the wheel carries."""
    out = []
    for path in sorted(package.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        rel = path.relative_to(package.parent).as_posix()
        out.append((rel, path.read_bytes(), path.stat().st_mode))
    cli = prefix / "bin" / "shmkit"
    if cli.exists():
        out.append(("shmkit/shmkit-cli", cli.read_bytes(), 0o755 | 0o100000))
    return out


# ------------------------------------------------------------- PEP 517 hooks

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    d = Path(metadata_directory) / _dist_info_name()
    d.mkdir(parents=True, exist_ok=True)
    for fname, text in _dist_info_files().items():
        (d / fname).write_text(text)
    return d.name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    cache = _cache()
    with _Lock(cache):
        prefix = _build_core(cache)
        package = _build_extension(cache, prefix)
        files = _package_files(package, prefix)
    name, version = _name_version()
    wheel_name = "%s-%s-%s.whl" % (name.replace("-", "_"), version, _wheel_tag())
    info = _dist_info_name()
    record = []
    path = Path(wheel_directory) / wheel_name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        def add(arcname, data, mode=0o644 | 0o100000):
            zi = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = (mode & 0xFFFF) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
            record.append(_record_line(arcname, data))
        for arcname, data, mode in files:
            add(arcname, data, mode)
        for fname, text in _dist_info_files().items():
            add(info + "/" + fname, text.encode())
        record.append(info + "/RECORD,,")
        z.writestr(zipfile.ZipInfo(info + "/RECORD", date_time=(2020, 1, 1, 0, 0, 0)),
                   "\n".join(record) + "\n")
    return wheel_name


# What an sdist carries: the C++ sources the extension is built over, and the
# package; the sdist's own pyproject.toml points its backend-path at
# python/_build.
_SDIST_PARTS = ["CMakeLists.txt", "CMakePresets.json", "cmake", "include", "src", "python",
                "README.md", "docs"]


def build_sdist(sdist_directory, config_settings=None):
    name, version = _name_version()
    base = "%s-%s" % (name, version)
    path = Path(sdist_directory) / (base + ".tar.gz")
    pyproject = (PYDIR / "pyproject.toml").read_text().replace(
        'backend-path = ["_build"]', 'backend-path = ["python/_build"]')
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as t:
        def add_bytes(arcname, data):
            ti = tarfile.TarInfo(arcname)
            ti.size = len(data)
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
        for part in _SDIST_PARTS:
            p = ROOT / part
            if p.exists():
                t.add(p, arcname=base + "/" + part,
                      filter=lambda ti: None if "__pycache__" in ti.name or ti.name.endswith(".pyc") else ti)
        add_bytes(base + "/pyproject.toml", pyproject.encode())
        add_bytes(base + "/PKG-INFO", _metadata_text().encode())
    return path.name
