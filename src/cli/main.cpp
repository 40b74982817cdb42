// shmkit — the command-line tool. Subcommands so far:
//   shmkit demo    create a block, start a second (exec'd) process that
//                  attaches by name and answers, print the exchange.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>

#include "shmkit/shared_memory.hpp"

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
  std::printf("[peer   pid %d] attached '%s' (%zu bytes), read: \"%s\"\n", getpid(),
              shm.name().c_str(), shm.size(), read_slot(shm, kQuestionAt).c_str());
  std::string answer = "pong from pid " + std::to_string(getpid()) + ": 6*7 = 42";
  write_slot(shm, kAnswerAt, answer);
  std::printf("[peer   pid %d] wrote: \"%s\"\n", getpid(), answer.c_str());
  std::fflush(stdout);
  return 0;
}

int demo() {
  auto shm = shmkit::SharedMemory::create(kBlockSize);
  std::printf("[parent pid %d] created block '%s' (%zu bytes, /dev/shm/%s)\n", getpid(),
              shm.name().c_str(), shm.size(), shm.name().c_str());
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
      "usage: shmkit <command> [args]\n"
      "\n"
      "commands:\n"
      "  demo     create a block, let a second process attach by name and answer\n"
      "  help     this text\n",
      out);
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
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      usage(stdout);
      return 0;
    }
    std::fprintf(stderr, "shmkit: unknown command '%s'\n", std::string(cmd).c_str());
    usage(stderr);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
