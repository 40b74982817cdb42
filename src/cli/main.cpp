// shmkit — the command-line tool.
//   shmkit ls [--json]          every block in /dev/shm: size, owner, mode, age,
//                               kind (from its header), live tracked users
//                               (and those of other PID namespaces, unjudged;
//                               an MPI job's users with their ranks)
//   shmkit show NAME [--json]   decode a block (ShareableList, Value/Array, heap,
//                               queue headers; hex for anything else)
//   shmkit rm NAME...           unlink blocks
//   shmkit gc [--yes]           remove blocks whose every tracked user is dead
//                               (a dry run unless --yes)
//   shmkit bench [--full ...]   run the benchmark suite (bench/suite.py) from
//                               the build tree this binary was built in
//   shmkit demo                 create a block, start a second (exec'd) process
//                               that attaches by name and answers
// Exit status: 0 success, 1 a block could not be read/removed, 2 usage.
// Names and header fields are untrusted (any local user can create a name
// in /dev/shm; any process that maps a block can write its header): text
// output escapes control and invisible characters and bytes that are not
// UTF-8 (inspect.hpp: text()), and --json is always valid JSON in UTF-8
// (json_escape(): such bytes become \udcNN, Python's surrogateescape).
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <pwd.h>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "cli/inspect.hpp"
#include "mpi/directory.hpp"
#include "shmkit/shared_memory.hpp"
#include "shmkit/tracker.hpp"

namespace {

constexpr std::size_t kBlockSize = 4096;
// The demo's message layout: two NUL-terminated text slots in one block.
constexpr std::size_t kQuestionAt = 0;
constexpr std::size_t kAnswerAt = 2048;
constexpr std::size_t kSlot = 2048;

std::string read_slot(const shmkit::SharedMemory& shm, std::size_t at) {
  auto bytes = shm.buf().subspan(at, kSlot);
  const char* p = reinterpret_cast<const char*>(bytes.data());
  return std::string(p, strnlen(p, bytes.size()));
}

void write_slot(const shmkit::SharedMemory& shm, std::size_t at, const std::string& text) {
  auto bytes = shm.buf().subspan(at, kSlot);
  std::size_t n = std::min(text.size(), bytes.size() - 1);
  std::memcpy(bytes.data(), text.data(), n);
  bytes[n] = std::byte{0};
}

int demo_peer(std::string_view name) {
  auto shm = shmkit::SharedMemory::attach(name);
  std::printf("[peer   pid %d] attached '%s' (%zu bytes), read: \"%s\"\n", getpid(), shm.name().c_str(),
              shm.size(), read_slot(shm, kQuestionAt).c_str());
  std::string answer = "pong from pid " + std::to_string(getpid()) + ": 6*7 = 42";
  write_slot(shm, kAnswerAt, answer);
  std::printf("[peer   pid %d] wrote: \"%s\"\n", getpid(), answer.c_str());
  std::fflush(stdout);
  return 0;
}

int demo() {
  auto shm = shmkit::SharedMemory::create(kBlockSize);
  std::printf("[parent pid %d] created block '%s' (%zu bytes, /dev/shm/%s)\n", getpid(), shm.name().c_str(),
              shm.size(), shm.name().c_str());
  std::string question = "ping from pid " + std::to_string(getpid()) + ": what is 6*7?";
  write_slot(shm, kQuestionAt, question);
  std::printf("[parent pid %d] wrote: \"%s\"\n", getpid(), question.c_str());
  std::fflush(stdout);

  // An unrelated process: exec this binary again; it finds the block by name.
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    shm.unlink();
    return 1;
  }
  if (pid == 0) {
    execl("/proc/self/exe", "shmkit", "demo", "--peer", shm.name().c_str(), nullptr);
    std::perror("exec");
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  int rc = 0;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    std::printf("[parent pid %d] read back: \"%s\"\n", getpid(), read_slot(shm, kAnswerAt).c_str());
  } else {
    std::fprintf(stderr, "[parent] peer failed (status %d)\n", status);
    rc = 1;
  }
  shm.close();
  shm.unlink();
  std::printf("[parent pid %d] closed and unlinked '%s'\n", getpid(), shm.name().c_str());
  return rc;
}

void usage(std::FILE* out) {
  std::fputs(
      "usage: shmkit <command> [args]      (shmkit <command> --help for more)\n"
      "\n"
      "commands:\n"
      "  ls [--json]          list the blocks in /dev/shm with their kind and users\n"
      "  show NAME [--json]   decode one block\n"
      "  rm NAME...           unlink blocks\n"
      "  gc [--yes]           remove blocks whose every tracked user has died (dry run without --yes)\n"
      "  bench [--full]       run the benchmark suite (quick mode by default)\n"
      "  demo                 create a block, let a second process attach by name and answer\n"
      "  help                 this text\n",
      out);
}

bool wants_help(int argc, char** argv) {
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") return true;
  }
  return false;
}

std::string mode_string(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m));
  return buf;
}

std::string age_string(double s) {
  char buf[32];
  if (s < 120)
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 7200)
    std::snprintf(buf, sizeof buf, "%.0fm", s / 60);
  else if (s < 172800)
    std::snprintf(buf, sizeof buf, "%.0fh", s / 3600);
  else
    std::snprintf(buf, sizeof buf, "%.0fd", s / 86400);
  return buf;
}

std::string owner_string(uid_t uid) {
  if (passwd* pw = ::getpwuid(uid)) return pw->pw_name;
  return std::to_string(uid);
}

int cmd_ls(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::puts(
        "usage: shmkit ls [--json]\n\nLists every block in /dev/shm (POSIX semaphores excepted): name, "
        "size,\n"
        "owner, mode, age (since its last status change), the kind read from its\n"
        "header (ShareableList, value, array, heap, queue..., unknown) and the live\n"
        "processes the shmkit tracker has registered for it (a shmkit::mpi job's\n"
        "block: each with its MPI rank, from the node's table).");
    return 0;
  }
  bool json = argc > 2 && std::string_view(argv[2]) == "--json";
  if (argc > (json ? 3 : 2)) {
    std::fputs("usage: shmkit ls [--json]\n", stderr);
    return 2;
  }
  auto blocks = shmkit::cli::list_blocks();
  if (json) {
    std::printf("[");
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      const auto& b = blocks[i];
      std::printf(
          "%s\n  {\"name\": \"%s\", \"size\": %llu, \"owner\": \"%s\", \"mode\": \"%s\", "
          "\"age_seconds\": %.0f, \"kind\": \"%s\", \"problem\": \"%s\", ",
          i ? "," : "", shmkit::cli::json_escape(b.name).c_str(), static_cast<unsigned long long>(b.size),
          shmkit::cli::json_escape(owner_string(b.uid)).c_str(), mode_string(b.mode).c_str(), b.age_seconds,
          b.kind.c_str(), shmkit::cli::json_escape(b.problem).c_str());
      // A typed block's header fields (what a user kind is known by).
      if (b.kind_number >= 0) {
        std::printf("\"kind_number\": %lld, \"type_name\": \"%s\", \"count\": %llu, \"state\": \"%s\", ",
                    static_cast<long long>(b.kind_number), shmkit::cli::json_escape(b.type_name).c_str(),
                    static_cast<unsigned long long>(b.count), b.state.c_str());
      }
      std::printf("\"users\": [");
      for (std::size_t k = 0; k < b.users.size(); ++k) std::printf("%s%d", k ? ", " : "", b.users[k]);
      std::printf("], \"mpi_ranks\": [");  // parallel to users; -1: not a rank of an MPI job
      for (std::size_t k = 0; k < b.users.size(); ++k) {
        std::printf("%s%d", k ? ", " : "", shmkit::mpi_directory::rank_of(b.name, b.users[k]).value_or(-1));
      }
      std::printf("], \"other_namespace_users\": [");
      for (std::size_t k = 0; k < b.other_namespace_users.size(); ++k) {
        std::printf("%s%d", k ? ", " : "", b.other_namespace_users[k]);
      }
      std::printf("]}");
    }
    std::printf("\n]\n");
    return 0;
  }
  std::printf("%-32s %12s %-10s %-5s %6s %-16s %s\n", "NAME", "SIZE", "OWNER", "MODE", "AGE", "KIND",
              "USERS");
  for (const auto& b : blocks) {
    std::string users;
    for (pid_t p : b.users) {
      users += (users.empty() ? "" : ",") + std::to_string(p);
      // A shmkit::mpi job's block: the rank each user is, from the node's table.
      if (auto rank = shmkit::mpi_directory::rank_of(b.name, p))
        users += "(rank " + std::to_string(*rank) + ")";
    }
    // Pids of another PID namespace, liveness unknown here.
    for (pid_t p : b.other_namespace_users)
      users += (users.empty() ? "" : ",") + std::to_string(p) + "(other-ns)";
    std::string kind = b.problem.empty() ? b.kind : b.kind + " (invalid)";
    // A user kind: its number, type name, count and state ("user+1" alone says little).
    if (b.kind_number >= 1024) {
      kind += "=" + std::to_string(b.kind_number) + " \"" + shmkit::cli::text(b.type_name) + "\" x" +
              std::to_string(b.count) + " " + b.state;
    }
    std::printf("%-32s %12llu %-10s %-5s %6s %-16s %s\n", shmkit::cli::text(b.name).c_str(),
                static_cast<unsigned long long>(b.size), shmkit::cli::text(owner_string(b.uid)).c_str(),
                mode_string(b.mode).c_str(), age_string(b.age_seconds).c_str(), kind.c_str(),
                users.empty() ? "-" : users.c_str());
  }
  return 0;
}

int cmd_show(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::puts(
        "usage: shmkit show NAME [--json]\n\nDecodes one block: a ShareableList prints as CPython's repr() "
        "plus its\n"
        "format; a Value/Array its typecode, length, lock and first values; other\n"
        "shmkit blocks their header; anything else a hex dump of its first bytes.\n"
        "Exit status 1 if the block is missing, unreadable or does not validate.");
    return 0;
  }
  std::string name;
  bool json = false;
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--json")
      json = true;
    else if (name.empty())
      name = a;
    else
      name = "\x01";  // two names
  }
  if (name.empty() || name == "\x01") {
    std::fputs("usage: shmkit show NAME [--json]\n", stderr);
    return 2;
  }
  std::string out;
  bool ok = shmkit::cli::describe(name, json, out);  // escaped by describe
  std::fputs(out.c_str(), ok ? stdout : stderr);
  return ok ? 0 : 1;
}

int cmd_rm(int argc, char** argv) {
  if (wants_help(argc, argv) || argc < 3) {
    std::fputs(
        "usage: shmkit rm NAME...\n\nUnlinks each block (processes that map it keep their mappings).\n"
        "Exit status 1 if any could not be removed.\n",
        argc < 3 ? stderr : stdout);
    return argc < 3 ? 2 : 0;
  }
  int rc = 0;
  for (int i = 2; i < argc; ++i) {
    try {
      // The registrations of the file removed, not of one created under
      // the name since.
      shmkit::SharedMemory::validate_name(argv[i]);
      struct stat st {};
      const bool known = ::stat(("/dev/shm/" + std::string(argv[i])).c_str(), &st) == 0;
      shmkit::SharedMemory::unlink(argv[i]);
      if (known) shmkit::tracker::forget_block(argv[i], static_cast<std::uint64_t>(st.st_ino));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "shmkit rm: %s\n", shmkit::cli::text(e.what()).c_str());
      rc = 1;
    }
  }
  return rc;
}

// The suite lives in the source tree (bench/suite.py) and runs the bench
// binaries of the build tree this tool was built in.
int cmd_bench(int argc, char** argv) {
  const std::string script = std::string(SHMKIT_SOURCE_DIR) + "/bench/suite.py";
  if (::access(script.c_str(), R_OK) != 0 || ::access(SHMKIT_BUILD_DIR "/bench", X_OK) != 0) {
    std::fprintf(stderr,
                 "shmkit bench: runs from a build tree: %s or %s/bench is missing "
                 "(build the release preset of the source tree)\n",
                 script.c_str(), SHMKIT_BUILD_DIR);
    return 1;
  }
  std::vector<std::string> args{SHMKIT_PYTHON, script, "--build-dir", SHMKIT_BUILD_DIR};
  for (int i = 2; i < argc; ++i) args.emplace_back(argv[i]);
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  std::fflush(nullptr);
  ::execv(cargs[0], cargs.data());
  std::fprintf(stderr, "shmkit bench: cannot run %s: %s\n", cargs[0], std::strerror(errno));
  return 1;
}

int cmd_gc(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::puts(
        "usage: shmkit gc [--yes]\n\nDrops tracker registrations of dead processes and lists the blocks a\n"
        "shmkit process created that are left with no live registrant; with --yes,\n"
        "unlinks them. Blocks nobody tracked, and blocks shmkit processes only\n"
        "attached (CPython or another program created them), are never touched,\n"
        "nor are registrations made in another PID namespace (another container\n"
        "sharing /dev/shm): they are listed as not judged.");
    return 0;
  }
  bool yes = argc == 3 && std::string_view(argv[2]) == "--yes";
  if (argc > 3 || (argc == 3 && !yes)) {
    std::fputs("usage: shmkit gc [--yes]\n", stderr);
    return 2;
  }
  auto report = shmkit::tracker::collect_garbage(!yes);
  for (const auto& d : report.dropped) {
    // A registration of use (an attach) never has its block removed.
    std::printf("%s %s registration of '%s' by dead process %d\n", yes ? "dropped" : "would drop",
                d.created ? "creating" : "use", shmkit::cli::text(d.block).c_str(), d.pid);
  }
  // A pid means nothing outside its PID namespace (another container).
  for (const auto& n : report.not_judged) {
    std::printf("kept registration of '%s' by pid %d of pid namespace %llu: other namespace, not judged\n",
                shmkit::cli::text(n.block).c_str(), n.pid,
                static_cast<unsigned long long>(n.pid_namespace.inode));
  }
  for (const auto& b : report.unlinked) {
    std::printf("%s %s\n", yes ? "removed" : "would remove", shmkit::cli::text(b).c_str());
  }
  if (report.dropped.empty() && report.unlinked.empty())
    std::puts("nothing to collect");
  else if (!yes)
    std::puts("(dry run: run 'shmkit gc --yes' to do it)");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string_view cmd = argc > 1 ? argv[1] : "help";
    if (cmd == "demo") {
      if (argc == 4 && std::string_view(argv[2]) == "--peer") return demo_peer(argv[3]);
      if (argc == 2) return demo();
      std::fputs("usage: shmkit demo\n", stderr);
      return 2;
    }
    if (cmd == "ls") return cmd_ls(argc, argv);
    if (cmd == "show") return cmd_show(argc, argv);
    if (cmd == "rm") return cmd_rm(argc, argv);
    if (cmd == "gc") return cmd_gc(argc, argv);
    if (cmd == "bench") return cmd_bench(argc, argv);
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      usage(stdout);
      return 0;
    }
    std::fprintf(stderr, "shmkit: unknown command '%s'\n", shmkit::cli::text(std::string(cmd)).c_str());
    usage(stderr);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", shmkit::cli::text(e.what()).c_str());  // messages quote block names
    return 1;
  }
}
