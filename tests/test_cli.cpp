// The `shmkit` command on blocks made by C++ and by CPython: golden output,
// exit codes, and blocks that do not validate (reported, never a crash).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <sys/stat.h>

#include "forge_registration.hpp"
#include "shmkit/array.hpp"
#include "shmkit/lockfree/mpmc_queue.hpp"
#include "shmkit/lockfree/spsc_queue.hpp"
#include "shmkit/shareable_list.hpp"
#include "shmkit/tracker.hpp"
#include "shmkit/typed_block.hpp"
#include "shmkit/value.hpp"
#include "test_support.hpp"

namespace shmkit::test {
namespace {

ProcessResult cli(std::vector<std::string> args) {
  args.insert(args.begin(), SHMKIT_TEST_CLI);
  return run_process(args);
}

TEST(Cli, ShowsCppValuesAndArrays) {
  auto an = unique_name("arr"), vn = unique_name("val");
  auto a = Array<std::int32_t>::create(an, {1, -2, 3});
  auto v = Value<double, RobustMutex>::create(vn, 2.5);
  auto r = cli({"show", an});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_EQ(r.out, an + ": shmkit array, 3 x typecode 'i', element 4 bytes, payload 12 bytes at offset " +
                       std::to_string(a.payload_offset()) + "\nlock: RecursiveMutex\nvalues: 1, -2, 3\n");
  r = cli({"show", vn, "--json"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_NE(r.out.find("\"kind\": \"value\", \"typecode\": \"d\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"lock\": \"RobustMutex\", \"values\": [\"2.5\"]"), std::string::npos) << r.out;
  a.unlink();
  v.unlink();
}

// What CPython prints for its own list is what `shmkit show` prints.
TEST(Cli, ShowsACPythonShareableListAsPythonPrintsIt) {
  auto name = unique_name("pylist");
  auto py = run_python("sharedctypes_peer.py", {"make-doc-list", name});
  ASSERT_TRUE(py.status.ok()) << py.err;
  auto r = cli({"show", name});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find('\n') + 1), py.out);
  EXPECT_NE(r.out.find("format: 8s8sdqxxxxxx?xxxxxxxx?q\n"), std::string::npos) << r.out;
  r = cli({"show", name, "--json"});
  EXPECT_NE(
      r.out.find("\"items\": [\"howdy\", {\"bytes_hex\": \"486f576459\"}, -273.154, 100, null, true, 42]"),
      std::string::npos)
      << r.out;
  SharedMemory::unlink(name);
}

TEST(Cli, ShowsAQueuesCapacityAndDepth) {
  auto name = unique_name("q");
  auto q = SpscQueue<std::int64_t>::create(name, 1024);
  for (std::int64_t i = 0; i < 5; ++i) ASSERT_TRUE(q.try_push(i));
  std::int64_t x;
  ASSERT_TRUE(q.try_pop(x));
  auto r = cli({"show", name});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_NE(r.out.find(name + ": shmkit spsc_queue, 1024 slots (capacity), element 8 bytes"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("depth 4, pushed 5, popped 1\n"), std::string::npos) << r.out;
  r = cli({"ls"});
  EXPECT_NE(r.out.find(" spsc_queue "), std::string::npos) << r.out;
  q.unlink();
}

// MpmcQueue's loss counters (what survivors stepped over after a claimant
// died) are part of `show`, in text and JSON.
TEST(Cli, ShowsAnMpmcQueuesLossCounters) {
  auto name = unique_name("mq");
  auto q = MpmcQueue<std::int64_t>::create(name, 16);
  ASSERT_TRUE(q.try_push(1));
  auto r = cli({"show", name});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_NE(r.out.find("depth 1, pushed 1, popped 0, lost_producer_claims 0, released_consumer_claims 0\n"),
            std::string::npos)
      << r.out;
  {
    // As a survivor would record them (the counters live in the control block).
    auto raw = SharedMemory::attach(name);
    auto* c = reinterpret_cast<MpmcControl*>(static_cast<std::byte*>(raw.data()) + BlockHeader::kSize);
    c->producer_claims_skipped.store(3);
    c->consumer_claims_released.store(2);
  }
  EXPECT_EQ(q.losses().producer_claims_skipped, 3u);
  r = cli({"show", name, "--json"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_NE(r.out.find("\"lost_producer_claims\": 3, \"released_consumer_claims\": 2"), std::string::npos)
      << r.out;
  q.unlink();
}

TEST(Cli, LsShowsKindsAndRmRemoves) {
  auto an = unique_name("lsarr"), rn = unique_name("lsraw");
  auto a = Array<double>::create(an, 4);
  auto raw = SharedMemory::create(rn, 100);
  std::memcpy(raw.data(), "raw bytes, not a list", 21);  // (all zeros would read as CPython's empty list)
  auto r = cli({"ls"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  auto line_of = [&](const std::string& n) {
    auto at = r.out.find(n + " ");
    return at == std::string::npos ? std::string() : r.out.substr(at, r.out.find('\n', at) - at);
  };
  EXPECT_NE(line_of(an).find(" array "), std::string::npos) << r.out;
  EXPECT_NE(line_of(rn).find(" unknown "), std::string::npos) << r.out;
  EXPECT_NE(line_of(rn).find(" 0600 "), std::string::npos) << r.out;
  r = cli({"ls", "--json"});
  EXPECT_NE(r.out.find("{\"name\": \"" + an + "\", \"size\": "), std::string::npos) << r.out;

  r = cli({"rm", an, rn});
  EXPECT_TRUE(r.status.ok()) << r.err;
  EXPECT_TRUE(list_blocks(an).empty());
  EXPECT_TRUE(list_blocks(rn).empty());
  r = cli({"rm", an});
  EXPECT_EQ(r.status.code, 1);
  EXPECT_NE(r.err.find("No such file"), std::string::npos) << r.err;
}

TEST(Cli, InvalidBlocksAreReportedNeverCrash) {
  auto name = unique_name("bad");
  auto shm = SharedMemory::create(name, 4096);
  std::uint64_t magic = BlockHeader::kMagic;
  std::memcpy(shm.data(), &magic, sizeof magic);  // a shmkit magic over garbage
  std::memset(static_cast<char*>(shm.data()) + 8, 0xff, 200);
  auto r = cli({"show", name});
  EXPECT_TRUE(r.status.exited) << r.status.describe();
  EXPECT_EQ(r.status.code, 1);
  EXPECT_NE(r.err.find("does not validate"), std::string::npos) << r.err;
  r = cli({"ls"});
  EXPECT_TRUE(r.status.ok());
  EXPECT_NE(r.out.find("(invalid)"), std::string::npos) << r.out;
  // Random bytes, truncated lists: show decodes or hex-dumps, exit 0 or 1.
  for (unsigned seed = 1; seed < 20; ++seed) {
    std::srand(seed);
    for (std::size_t i = 0; i < shm.size(); ++i)
      static_cast<char*>(shm.data())[i] = static_cast<char>(std::rand());
    if (seed % 2) std::memset(shm.data(), 0, 8);
    r = cli({"show", name});
    EXPECT_TRUE(r.status.exited && r.status.code <= 1) << r.status.describe() << r.err;
  }
  shm.unlink();
}

// A FIFO planted at /dev/shm/NAME: `shmkit show` used to hang
// in open(); now it reports what the file is, and `ls` lists it.
TEST(Cli, ShowOnAFifoFailsAtOnce) {
  auto name = unique_name("fifo");
  const std::string path = "/dev/shm/" + name;
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  auto r = run_process({SHMKIT_TEST_CLI, "show", name}, 10s);
  EXPECT_TRUE(r.status.exited) << r.status.describe();
  EXPECT_EQ(r.status.code, 1);
  EXPECT_NE(r.err.find("FIFO"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
  r = run_process({SHMKIT_TEST_CLI, "ls"}, 10s);
  EXPECT_TRUE(r.status.ok()) << r.status.describe();
  EXPECT_NE(r.out.find(name), std::string::npos) << r.out;
  ::unlink(path.c_str());
}

TEST(Cli, GcIsADryRunUnlessYes) {
  const std::string registry = unique_name("registry");
  ::setenv("SHMKIT_TRACKER_REGISTRY", registry.c_str(), 1);  // the CLI inherits it
  auto anchor = SharedMemory::create(unique_name("anchor"), 64, [] {
    SharedMemory::Options o;
    o.track = true;  // creates the registry
    return o;
  }());
  auto name = unique_name("gc");
  auto block = SharedMemory::create(name, 64);
  // A registrant that is gone (its pid now names another process: us).
  forge_registration(name, ::getpid(), tracker::process_start_time(::getpid()) + 7);
  auto r = cli({"gc"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_NE(r.out.find("would remove " + name + "\n"), std::string::npos) << r.out;
  EXPECT_FALSE(list_blocks(name).empty());
  r = cli({"gc", "--yes"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_NE(r.out.find("removed " + name + "\n"), std::string::npos) << r.out;
  EXPECT_TRUE(list_blocks(name).empty());
  r = cli({"gc"});
  EXPECT_NE(r.out.find("nothing to collect"), std::string::npos) << r.out;
  anchor.unlink();
  ::shm_unlink(("/" + registry).c_str());
}

// A registration made in another PID namespace (another
// container sharing /dev/shm) is kept and reported, never judged.
TEST(Cli, GcDoesNotJudgeAnotherPidNamespace) {
  const std::string registry = unique_name("registry");
  ::setenv("SHMKIT_TRACKER_REGISTRY", registry.c_str(), 1);  // the CLI inherits it
  auto name = unique_name("gc_ns");
  auto block = SharedMemory::create(name, 64);
  make_registry(registry);
  tracker::PidNamespace other = tracker::current_pid_namespace();
  other.inode += 1;
  forge_registration(name, ::getpid(), tracker::process_start_time(::getpid()) + 7, other);
  auto r = cli({"ls"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_NE(r.out.find(std::to_string(::getpid()) + "(other-ns)"), std::string::npos) << r.out;
  r = cli({"gc", "--yes"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_NE(r.out.find("'" + name + "' by pid " + std::to_string(::getpid())), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("other namespace, not judged"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("removed " + name), std::string::npos) << r.out;
  EXPECT_FALSE(list_blocks(name).empty());
  block.unlink();
  ::shm_unlink(("/" + registry).c_str());
}

// A tracker registry of layout version 1 (before the PID namespace was
// recorded) is refused with a message that says what to do, never read as
// version 2.
TEST(Cli, RegistryOfAnotherVersionIsRefused) {
  const std::string registry = unique_name("registry_v1");
  BlockSpec spec;  // what shmkit's tracker made before layout version 2
  spec.kind = BlockKind::registry;
  spec.type.size = 280;
  spec.type.align = 8;
  spec.type.name_hash = fnv1a("shmkit::tracker::Entry/v1");
  spec.count = tracker::kMaxEntries;
  spec.prefix_size = 64;
  spec.payload_size = tracker::kMaxEntries * 280;
  (void)create_typed_block(registry, spec, [](std::span<std::byte>, std::span<std::byte>) {});
  ::setenv("SHMKIT_TRACKER_REGISTRY", registry.c_str(), 1);  // the CLI inherits it
  auto r = cli({"gc"});
  EXPECT_TRUE(r.status.exited && r.status.code == 1) << r.status.describe();
  EXPECT_NE(r.err.find("layout version 1, this shmkit needs version 3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("shmkit rm " + registry), std::string::npos) << r.err;
  ::shm_unlink(("/" + registry).c_str());
}

TEST(Cli, HelpAndUsage) {
  for (const char* c : {"ls", "show", "rm", "gc"}) {
    auto r = cli({c, "--help"});
    EXPECT_TRUE(r.status.ok()) << c;
    EXPECT_NE(r.out.find("usage: shmkit " + std::string(c)), std::string::npos) << r.out;
  }
  auto r = cli({"frobnicate"});
  EXPECT_EQ(r.status.code, 2);
  r = cli({"show"});
  EXPECT_EQ(r.status.code, 2);
  r = cli({"gc", "--nope"});
  EXPECT_EQ(r.status.code, 2);
}

// A user kind (BlockKind::user and up, examples/order_book): shmkit cannot
// decode its payload, so `show` prints the header fields a user knows it by
// (kind number, type name checked against the hash, count, state) and the
// payload in hex; `ls` prints them on its line; both also in --json.
struct CliUserThing {
  std::uint64_t a, b;
};
TEST(Cli, ShowsAUserKindsHeaderAndPayload) {
  auto name = unique_name("user");
  BlockSpec spec;
  spec.kind = static_cast<BlockKind>(static_cast<std::uint32_t>(BlockKind::user) + 3);
  spec.type = TypeFingerprint::of<CliUserThing>();
  spec.type.name_hash = fnv1a("test.Thing/v1");  // as TypeName<CliUserThing> = "test.Thing/v1" would
  spec.type_name = "test.Thing/v1";
  spec.count = 2;
  spec.prefix_size = 8;
  spec.payload_size = 2 * sizeof(CliUserThing);
  spec.param[0] = 77;
  auto made = create_typed_block(name, spec, [](auto, std::span<std::byte> payload) {
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::byte>(0xa0 + i);
  });
  const std::string offset = std::to_string(made.header.payload_offset);
  auto r = cli({"show", name});
  ASSERT_TRUE(r.status.ok()) << r.err;
  char hash[24];
  std::snprintf(hash, sizeof hash, "0x%016llx", static_cast<unsigned long long>(fnv1a("test.Thing/v1")));
  EXPECT_EQ(r.out, name + ": shmkit user+3 (kind 1027), type \"test.Thing/v1\" (matches the type hash, " +
                       hash +
                       "), struct element 16 bytes (align 8), count 2, state ready\n"
                       "prefix 8 bytes at offset 128, payload 32 bytes at offset " +
                       offset +
                       ", params 77 0 0 0\n"
                       "payload:\n"
                       "00000000  a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af  |................|\n"
                       "00000010  b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf  |................|\n");
  r = cli({"show", name, "--json"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_NE(r.out.find("\"kind\": \"user+3\", \"kind_number\": 1027, \"type_name\": \"test.Thing/v1\", "
                       "\"type_name_matches_hash\": true"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("\"count\": 2, \"state\": \"ready\", \"prefix_size\": 8"), std::string::npos) << r.out;
  EXPECT_NE(
      r.out.find("\"payload_hex\": \"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\""),
      std::string::npos)
      << r.out;
  r = cli({"ls"});
  EXPECT_NE(r.out.find(" user+3=1027 \"test.Thing/v1\" x2 ready "), std::string::npos) << r.out;
  r = cli({"ls", "--json"});
  EXPECT_NE(r.out.find("\"name\": \"" + name + "\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"kind\": \"user+3\", \"problem\": \"\", \"kind_number\": 1027, \"type_name\": "
                       "\"test.Thing/v1\", \"count\": 2, \"state\": \"ready\""),
            std::string::npos)
      << r.out;

  // A name that does not hash to the type hash is flagged, never trusted.
  auto liar = unique_name("userliar");
  spec.type_name = "other.Thing/v1";
  auto lie = create_typed_block(liar, spec, [](auto, auto) {});
  r = cli({"show", liar});
  EXPECT_NE(r.out.find("type \"other.Thing/v1\" (does NOT match the type hash"), std::string::npos) << r.out;
  r = cli({"show", liar, "--json"});
  EXPECT_NE(r.out.find("\"type_name_matches_hash\": false"), std::string::npos) << r.out;
  made.shm.unlink();
  lie.shm.unlink();
}

// ------------------------------------------------------------ untrusted names and headers

// Any local user can create a name in /dev/shm, and any process that maps a
// block can write its header. What the tool prints of them: in text, no
// control byte (C0, DEL, or a C1 control in UTF-8) and valid UTF-8; in JSON,
// a document python3's json module reads, giving back the raw bytes through
// os.fsencode() (surrogateescape).
std::string problems_in_text(const std::string& out) {
  std::string found;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto c = static_cast<unsigned char>(out[i]);
    if ((c < 0x20 && c != '\n') || c == 0x7f) found += "control byte " + std::to_string(c) + "; ";
    if (c == 0xc2 && i + 1 < out.size() && static_cast<unsigned char>(out[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(out[i + 1]) <= 0x9f) {
      found += "C1 control; ";
    }
  }
  // Valid UTF-8, as python3 judges it.
  const std::string path = "/dev/shm/" + unique_name("text_check");
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(out.data(), 1, out.size(), f);
    std::fclose(f);
  }
  auto py =
      run_process({python_path(), "-c", "import sys; open(sys.argv[1], 'rb').read().decode('utf-8')", path});
  ::unlink(path.c_str());
  if (!py.status.ok()) found += "not UTF-8: " + py.err;
  return found;
}

// Runs `check` (Python, with `d` the parsed document and `want` the raw
// bytes given as hex) over the JSON `out`; "" if it parsed and check held.
std::string json_problems(const std::string& out, const std::string& check, const std::string& want) {
  const std::string path = "/dev/shm/" + unique_name("json_check");
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(out.data(), 1, out.size(), f);
    std::fclose(f);
  }
  const std::string code =
      "import json, os, sys\n"
      "d = json.loads(open(sys.argv[1], 'rb').read().decode('utf-8'))\n"
      "want = bytes.fromhex(sys.argv[2])\n"
      "assert " +
      check + ", repr(d)\n";
  auto py = run_process({python_path(), "-c", code, path, want});
  ::unlink(path.c_str());
  return py.status.ok() ? std::string() : py.err + py.status.describe();
}

// A name that clears the screen, sets the window title, uses a C1 CSI and
// holds a byte that is not UTF-8; a user kind whose header has typecode
// byte 0xff and a type name with an ESC and a 0xff.
TEST(Cli, HostileNamesAndHeaderBytesAreEscaped) {
  const std::string evil = unique_name("esc") + "\x1b[2J\x1b]0;owned\x07" + "\xc2\x9b" + "31m\xff\x7f\\";
  const std::string evil_hex = to_hex(evil.data(), evil.size());
  BlockSpec spec;
  spec.kind = static_cast<BlockKind>(static_cast<std::uint32_t>(BlockKind::user) + 5);
  spec.type.typecode = static_cast<char>(0xff);
  spec.type.size = 8;
  spec.type.align = 8;
  spec.type.name_hash = 1;
  spec.type_name = "t\x1b[31m\xff";
  spec.count = 1;
  spec.payload_size = 8;
  auto block = create_typed_block(evil, spec, [](auto, auto) {});
  // A ShareableList under an escaping name too (its repr names it).
  const std::string evil_list = unique_name("esc_list") + "\x1b[0m\xff";
  auto list = ShareableList::create(evil_list, {Item(std::int64_t{1}), Item(std::string("a\xc2\x9b"
                                                                                        "b"))});

  for (const std::string& name : {evil, evil_list}) {
    auto r = cli({"show", name});
    EXPECT_TRUE(r.status.ok()) << r.status.describe() << r.err;
    EXPECT_EQ(problems_in_text(r.out), "") << r.out;
    r = cli({"show", name, "--json"});
    EXPECT_TRUE(r.status.ok()) << r.status.describe() << r.err;
    EXPECT_EQ(json_problems(r.out, "os.fsencode(d['name']) == want", to_hex(name.data(), name.size())), "")
        << r.out;
  }
  auto r = cli({"show", evil, "--json"});
  EXPECT_EQ(json_problems(r.out,
                          "os.fsencode(d['typecode']) == b'\\xff' and "
                          "os.fsencode(d['type_name']) == b't\\x1b[31m\\xff'",
                          evil_hex),
            "")
      << r.out;
  r = cli({"show", evil});
  EXPECT_NE(r.out.find("\\x1b[2J\\x1b]0;owned\\x07\\u009b31m\\xff\\x7f\\\\: shmkit user+5"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("type \"t\\x1b[31m\\xff\""), std::string::npos) << r.out;
  r = cli({"show", evil_list});
  // Python's repr of the name os.fsdecode() gives, and of the item.
  EXPECT_NE(r.out.find("ShareableList([1, 'a\\x9bb'], name='" + evil_list.substr(0, evil_list.size() - 5) +
                       "\\x1b[0m\\udcff')"),
            std::string::npos)
      << r.out;

  r = cli({"ls"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_EQ(problems_in_text(r.out), "") << r.out;
  EXPECT_NE(r.out.find(" user+5=1029 \"t\\x1b[31m\\xff\" x1 ready "), std::string::npos) << r.out;
  r = cli({"ls", "--json"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_EQ(json_problems(r.out, "any(os.fsencode(b['name']) == want for b in d)", evil_hex), "") << r.out;

  // A shell's `shmkit rm` of a name that is gone: the error names it escaped.
  const std::string gone = unique_name("gone") + "\x1b[2J";
  r = cli({"rm", gone});
  EXPECT_EQ(r.status.code, 1);
  EXPECT_EQ(problems_in_text(r.err), "") << r.err;
  block.shm.unlink();
  list.shm().unlink();
}

// Python's repr of a str, whatever bytes it holds (a /dev/shm name): what
// Python prints for it, decoded with os.fsdecode().
TEST(Cli, PythonReprEscapesWhatPythonDoes) {
  EXPECT_EQ(python_repr(Item(std::string("a\x1b[0m\xff"))), "'a\\x1b[0m\\udcff'");
  EXPECT_EQ(python_repr(Item(std::string("\xc2\x9b\xc2\xa0\xe2\x80\xae"
                                         "x"))),
            "'\\x9b\\xa0\\u202ex'");
  EXPECT_EQ(python_repr(Item(std::string("h\xc3\xa9llo \xe2\x80\x94"))), "'h\xc3\xa9llo \xe2\x80\x94'");
  const auto py = run_process({python_path(), "-c",
                               "import os; print(repr(os.fsdecode(b'a\\x1b[0m\\xff')), "
                               "repr('\\x9b\\xa0\\u202ex'))"});
  ASSERT_TRUE(py.status.ok()) << py.err;
  EXPECT_EQ(py.out, "'a\\x1b[0m\\udcff' '\\x9b\\xa0\\u202ex'\n");
}

// `shmkit gc` follows the tracker's rule: a dead process that only attached
// a block (use) has its registration dropped, and the block stays.
TEST(Cli, GcDropsADeadUsersRegistrationAndKeepsTheBlock) {
  const std::string registry = unique_name("registry");
  ::setenv("SHMKIT_TRACKER_REGISTRY", registry.c_str(), 1);  // the CLI inherits it
  auto name = unique_name("gc_use");
  auto block = SharedMemory::create(name, 64);
  make_registry(registry);
  forge_registration(name, ::getpid(), tracker::process_start_time(::getpid()) + 7,
                     tracker::current_pid_namespace(), /*created=*/false);
  auto r = cli({"gc", "--yes"});
  ASSERT_TRUE(r.status.ok()) << r.err;
  EXPECT_NE(r.out.find("dropped use registration of '" + name + "'"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("removed " + name), std::string::npos) << r.out;
  EXPECT_FALSE(list_blocks(name).empty()) << "gc removed a block no shmkit process created";
  block.unlink();
  ::shm_unlink(("/" + registry).c_str());
}

}  // namespace
}  // namespace shmkit::test
