"""shmkit.shared_memory.SharedMemoryManager has CPython's BaseManager API
where it makes sense for a node-local server: tuple addresses, CPython's
default authkey, start(initializer, initargs), join, connect, get_server,
register (refused, loudly), and CPython's errors for a second start.

Every test uses real processes: the forked C++ server, the initializer's
Python process, a starter that is SIGKILLed."""
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

from shmkit import shared_memory as sm

from conftest import block_exists, eventually

S = sm.SharedMemoryManager


def _port():
    # A "port" no other run of this suite uses at the same time (the pid).
    return 20000 + os.getpid() % 40000


def _children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(c) for c in f.read().split()]


def chdir_initializer(path, marker):
    """Runs in the server's Python process (picklable: module level)."""
    os.chdir(path)
    with open(os.path.join(path, marker), "w") as f:
        f.write(str(os.getpid()))


def test_tuple_address_port_zero_is_the_private_socket():
    with S(("127.0.0.1", 0)) as smm:
        assert isinstance(smm.address, str) and smm.address.endswith("/listener")
        assert oct(os.stat(os.path.dirname(smm.address)).st_mode & 0o777) == "0o700"
        b = smm.SharedMemory(64)
        name = b.name
        b.close()
        assert smm.authkey == bytes(multiprocessing.current_process().authkey)
    assert not block_exists(name)
    assert not os.path.exists(os.path.dirname(smm.address))


def test_tuple_address_with_a_port_is_shared_by_its_clients():
    addr = ("localhost", _port())
    with S(addr, b"key") as smm:
        assert smm.address == addr
        client = S(("127.0.0.1", _port()), b"key")
        client.connect()
        b = client.SharedMemory(16)
        name = b.name
        b.close()
        assert [n for n, _, _ in smm.list_blocks()] == [name]
        # A wrong key is refused at connect().
        with pytest.raises(OSError):
            S(addr, b"other").connect()
    assert not block_exists(name)


def test_tuple_address_errors():
    with pytest.raises(ValueError, match="node-local"):
        S(("192.0.2.1", 5000), b"k")
    with pytest.raises(ValueError):
        S(("127.0.0.1", 70000), b"k")
    with pytest.raises(TypeError):
        S(("127.0.0.1", "80"), b"k")
    with pytest.raises(ValueError):
        S(("127.0.0.1", 0), b"k", connect=True)  # port 0 names no server


def test_default_authkey_is_the_process_authkey():
    smm = S("@pyt_mgr_key_%d" % os.getpid())
    assert smm.authkey == bytes(multiprocessing.current_process().authkey)


def test_bad_serializer():
    with pytest.raises(ValueError):
        S(serializer="json")
    S(serializer="xmlrpclib")  # CPython's other name: accepted


def test_connect_to_nothing_and_twice():
    nowhere = S("/tmp/pyt_no_such_dir_%d/s" % os.getpid(), b"k")
    with pytest.raises(OSError):
        nowhere.connect()
    with S() as smm:
        with pytest.raises(multiprocessing.ProcessError):
            smm.connect()


def test_second_start_and_enter_after_shutdown():
    smm = S()
    smm.start()
    with pytest.raises(multiprocessing.ProcessError):
        smm.start()
    smm.shutdown()
    smm.shutdown()  # idempotent
    with pytest.raises(multiprocessing.ProcessError):
        smm.start()
    with pytest.raises(multiprocessing.ProcessError):
        with smm:
            pass


def test_register_is_refused():
    with pytest.raises(NotImplementedError, match="BaseManager"):
        S.register("Thing", dict)


def test_join_waits_for_the_server_to_stop():
    smm = S()
    smm.start()
    pid = smm._process.pid
    smm.join(0.05)  # returns with the server still running
    assert smm._process.is_alive()
    b = smm.SharedMemory(8)
    name = b.name
    b.close()
    # Another client stops it (CPython's connected managers cannot).
    S(smm.address, smm.authkey, connect=True).shutdown()
    smm.join(30)
    assert not smm._process.is_alive() and smm._process.exitcode == 0
    assert not block_exists(name)
    smm.shutdown()  # reaps it; no error
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_join_on_a_connected_handle_returns():
    with S() as smm:
        c = S(smm.address, smm.authkey, connect=True)
        c.join()
        c.join(0.01)


def test_get_server_serves_until_a_client_stops_it():
    smm = S()
    server = smm.get_server()
    assert server.address == smm.address
    b = smm.SharedMemory(8)
    name = b.name
    b.close()
    stopper = threading.Timer(0.2, S(server.address, smm.authkey, connect=True).shutdown)
    stopper.start()
    server.serve_forever()
    stopper.join()
    assert not block_exists(name)
    assert not smm._process.is_alive()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_start_initializer_runs_where_the_server_is_forked(method):
    ctx = multiprocessing.get_context(method)
    with tempfile.TemporaryDirectory() as d:
        smm = S(ctx=ctx)
        with pytest.raises(TypeError):
            smm.start(initializer=42)
        smm.start(chdir_initializer, (d, "ran"))
        try:
            proc = smm._process
            with open(os.path.join(d, "ran")) as f:
                assert int(f.read()) == proc.pid
            # The C++ server is forked from that process, after the
            # initializer: it has its working directory.
            servers = _children(proc.pid)
            assert len(servers) == 1
            assert os.readlink("/proc/%d/cwd" % servers[0]) == os.path.realpath(d)
            sl = smm.ShareableList(range(4))
            name = sl.shm.name
            # The Python process ignores SIGINT, as CPython's server does.
            os.kill(proc.pid, signal.SIGINT)
            sl2 = smm.ShareableList(range(3))
            assert list(sl) == [0, 1, 2, 3] and len(sl2) == 3
            sl.shm.close()
            sl2.shm.close()
        finally:
            smm.shutdown()
        assert proc.exitcode == 0
        assert not block_exists(name) and not block_exists(sl2.shm.name)
        assert not os.path.exists("/proc/%d" % servers[0]) or eventually(
            lambda: not os.path.exists("/proc/%d" % servers[0]))


def test_initializer_that_raises_fails_start():
    smm = S(ctx=multiprocessing.get_context("fork"))
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        smm.start(lambda: 1 / 0)


STARTER = textwrap.dedent("""
    import multiprocessing, os, sys, time
    from shmkit import shared_memory as sm
    def init():
        os.environ["X"] = "1"
    if __name__ == "__main__":
        smm = sm.SharedMemoryManager(ctx=multiprocessing.get_context("fork"))
        smm.start(init)
        b = smm.SharedMemory(32)
        print(b.name, smm._process.pid, flush=True)
        time.sleep(600)
""")


def test_initializer_server_stops_when_the_starter_is_killed():
    with tempfile.TemporaryDirectory() as d:
        script = os.path.join(d, "starter.py")
        with open(script, "w") as f:
            f.write(STARTER)
        p = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, text=True)
        try:
            name, pypid = p.stdout.readline().split()
            assert block_exists(name)
        finally:
            p.kill()
            p.wait()
        # The lifeline closes: the initializer's process unlinks the blocks
        # and exits.
        assert eventually(lambda: not block_exists(name), timeout=30), name
        assert eventually(lambda: not os.path.exists("/proc/%s" % pypid) or
                          open("/proc/%s/stat" % pypid).read().split()[2] == "Z", timeout=30)
