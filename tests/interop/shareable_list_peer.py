"""CPython peer for tests/test_shareable_list.cpp.

    shareable_list_peer.py create    NAME KIND   CPython creates list KIND in block NAME
    shareable_list_peer.py check     NAME KIND   CPython attaches to a shmkit list and checks it
    shareable_list_peer.py overwrite NAME        CPython assigns into the corpus list (see below)
    shareable_list_peer.py gh88336   NAME        CPython 3.11's char-sized str slots
    shareable_list_peer.py dump      NAME        prints len, format and repr of every item

KIND is corpus | empty | big | largest; the C++ test builds the same lists
(keep corpus() and big() in step with the C++ side). Output lines are
"key value" pairs; the exit status is 0 when every check passed, and each
failure is printed as "FAIL ...".

On 3.11, attaching registers the block with Python's resource tracker, which
unlinks it when this process exits (gh-82300); every path below unregisters,
so the C++ test owns the block's lifetime.
"""

import math
import string
import sys
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import ShareableList

LARGEST = 9_999_991


def corpus():
    return [
        "", b"", "hello, world", "h\u00e9llo w\u00f6rld \u2014 \u00e7a va?",
        "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "emoji \U0001F600\U0001F389 done",
        b"a\x00b\x00c", b"abc\x00\x00", "tail\x00", b"\x00",
        -2**63, 2**63 - 1, 0, -1,
        float("nan"), float("inf"), float("-inf"), -0.0, -273.154,
        True, False, None,
    ]


def big():
    out = []
    for i in range(10_000):
        k = i % 6
        if k == 0:
            out.append(i * 7919 - 3)
        elif k == 1:
            out.append(i / 3.0)
        elif k == 2:
            out.append("s%d\u00e9" % i)
        elif k == 3:
            out.append(b"b%d\x00x" % i)
        elif k == 4:
            out.append(i % 4 == 0)
        else:
            out.append(None)
    return out


def largest():
    return [(string.ascii_lowercase * (LARGEST // 26 + 1))[:LARGEST]]


def build(kind):
    return {"corpus": corpus, "empty": list, "big": big, "largest": largest}[kind]()


def stripped(v):
    """What CPython reads back for a value it or shmkit wrote."""
    if isinstance(v, bytes):
        return v.rstrip(b"\x00")
    if isinstance(v, str):
        return v.encode().rstrip(b"\x00").decode()
    return v


def encoded_len(v):
    return len(v.encode() if isinstance(v, str) else v)


def shmkit_format(v):
    """The format shmkit writes for a new item (see shareable_list.hpp)."""
    if isinstance(v, bool):
        return "xxxxxxx?"
    if v is None:
        return "xxxxxx?x"
    if isinstance(v, int):
        return "q"
    if isinstance(v, float):
        return "d"
    n = encoded_len(v)
    slot = 8 * (n // 8 + 1)
    if isinstance(v, str) and n <= 8 * (len(v) // 8 + 1):
        slot = 8 * (len(v) // 8 + 1)  # CPython's character-sized slot fits
    ends_nul = (v.encode() if isinstance(v, str) else v).endswith(b"\x00")
    if ends_nul:
        for pad in (slot - n, 0):
            f = "%ds%dx" % (n, pad)
            if len(f) <= 8:
                return f
    return "%ds" % slot


def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def attach(name):
    sl = ShareableList(name=name)
    resource_tracker.unregister(sl.shm._name, "shared_memory")
    return sl


def short(v):
    r = repr(v)
    return r if len(r) < 80 else r[:60] + "...(%d chars)" % len(r)


def cmd_create(name, kind):
    values = build(kind)
    # CPython 3.11 sizes a str slot by characters (gh-88336) and truncates a
    # longer UTF-8 encoding: create with same-byte-length ASCII, then assign
    # the real strings (assignment checks the encoded length against the
    # slot). Harmless where CPython is fixed.
    placeholders = ["x" * len(v.encode()) if isinstance(v, str) else v for v in values]
    sl = ShareableList(placeholders, name=name)
    resource_tracker.unregister(sl.shm._name, "shared_memory")
    for i, v in enumerate(values):
        if isinstance(v, str):
            sl[i] = v
    failures = 0
    for i, v in enumerate(values):
        if not same(sl[i], stripped(v)):
            print("FAIL item %d: CPython reads back %s, expected %s" % (i, short(sl[i]), short(stripped(v))))
            failures += 1
    print("format", sl.format if len(sl.format) < 2000 else "(long)")
    print("size", sl.shm.size)
    sl.shm.close()
    return 1 if failures else 0


def cmd_check(name, kind):
    values = build(kind)
    sl = attach(name)
    failures = 0
    if len(sl) != len(values):
        print("FAIL len %d, expected %d" % (len(sl), len(values)))
        sl.shm.close()
        return 1
    for i, v in enumerate(values):
        got = sl[i]
        if not same(got, stripped(v)):
            print("FAIL item %d: CPython reads %s, expected %s" % (i, short(got), short(stripped(v))))
            failures += 1
    expected_format = "".join(shmkit_format(v) for v in values)
    if sl.format != expected_format:
        print("FAIL format %s, expected %s" % (short(sl.format), short(expected_format)))
        failures += 1
    print("format", sl.format if len(sl.format) < 2000 else "(long)")
    print("checked", len(values))
    sl.shm.close()
    return 1 if failures else 0


# The corpus indices CPython overwrites, and with what: every slot shmkit
# described as "<len>s<pad>x" (trailing NULs) gets a new str/bytes, and a
# few others change type.
OVERWRITES = [
    (7, b"xy"),          # b"abc\0\0" slot ("5s3x") -> "8s"
    (8, "\u00e9t\u00e9"),  # "tail\0" slot ("5s3x") -> "8s"
    (9, 12345),          # b"\0" slot ("1s7x") -> "q"
    (0, None),           # "" -> None
    (10, "min"),         # int slot -> "8s"
    (19, 2.5),           # bool slot -> "d"
]


def cmd_overwrite(name):
    sl = attach(name)
    failures = 0
    for i, v in OVERWRITES:
        sl[i] = v
        if not same(sl[i], v):
            print("FAIL item %d: after assignment CPython reads %s" % (i, short(sl[i])))
            failures += 1
    try:
        sl[1] = b"123456789"  # slot of 8 bytes
        print("FAIL no ValueError for a too-long bytes")
        failures += 1
    except ValueError:
        pass
    print("format", sl.format)
    sl.shm.close()
    return 1 if failures else 0


def cmd_gh88336(name):
    # 'ééééé': 5 characters, 10 bytes: 3.11 gives it "8s" and truncates to
    # 'éééé'. 'aéééé': 9 bytes in "8s" cut mid-character: cannot be decoded.
    sl = ShareableList(["\u00e9" * 5, "a" + "\u00e9" * 4, "ok"], name=name)
    resource_tracker.unregister(sl.shm._name, "shared_memory")
    print("format", sl.format)
    for i in range(len(sl)):
        try:
            print("item%d ok %s" % (i, sl[i].encode().hex()))
        except UnicodeDecodeError:
            print("item%d error" % i)
    sl.shm.close()
    return 0


def cmd_dump(name):
    sl = attach(name)
    print("len", len(sl))
    print("format", sl.format)
    for i in range(len(sl)):
        print("item%d %s" % (i, repr(sl[i])))
    sl.shm.close()
    return 0


def main(argv):
    cmd, name = argv[1], argv[2]
    if cmd == "create":
        return cmd_create(name, argv[3])
    if cmd == "check":
        return cmd_check(name, argv[3])
    if cmd == "overwrite":
        return cmd_overwrite(name)
    if cmd == "gh88336":
        return cmd_gh88336(name)
    if cmd == "dump":
        return cmd_dump(name)
    print("unknown command", cmd)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
