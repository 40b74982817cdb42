// examples/numpy_array.cpp — a C++ Array that Python reads with numpy.
//
// The C++ process creates Array<double> in a named block, fills it, and runs
// examples/numpy_array.py, which finds the elements through the block's
// header (count at byte 48, payload_offset at byte 56), views them with
// numpy.ndarray(buffer=..., offset=...), prints them and scales them by 10.
// Back in C++ we print what Python wrote.
//
//   numpy_array [PYTHON] [SCRIPT]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include <shmkit/array.hpp>

int main(int argc, char** argv) {
  const char* python = argc > 1 ? argv[1] : "/usr/bin/python3";
  const std::string script = argc > 2 ? argv[2] : "examples/numpy_array.py";

  auto a = shmkit::Array<double>::create("", {1.5, 2.5, 3.5, 4.5});
  std::printf("C++:    block %s, %zu doubles at offset %zu\n", a.name().c_str(), a.size(),
              a.payload_offset());

  pid_t pid = fork();
  if (pid == 0) {
    execl(python, python, script.c_str(), a.name().c_str(), nullptr);
    std::perror("exec python");
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::printf("C++:    after Python:");
  for (double x : a.to_vector()) std::printf(" %g", x);
  std::printf("\n");
  a.unlink();
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
