// bench/python_baseline.hpp — runs a CPython baseline script from
// bench/python/ and reads the ns-per-op figures it prints as one flat JSON
// object, so CPython's numbers land in the same Google Benchmark run (and
// the same interleaving) as the C++ candidates.
#pragma once

#include <cstdio>
#include <map>
#include <regex>
#include <stdexcept>
#include <string>

namespace shmkit::bench {

// `python`: the interpreter that runs it (the build's own by default).
inline std::map<std::string, double> run_python_baseline(const std::string& script, const std::string& args,
                                                         const std::string& python = SHMKIT_BENCH_PYTHON) {
  std::string cmd = python + " " + SHMKIT_BENCH_PYDIR + "/" + script + " " + args;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) throw std::runtime_error("popen failed: " + cmd);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  if (::pclose(p) != 0) throw std::runtime_error("python baseline failed: " + cmd);
  std::map<std::string, double> figures;
  std::regex kv(R"re("([A-Za-z0-9_]+)"\s*:\s*([-+0-9.eE]+))re");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), kv); it != std::sregex_iterator(); ++it) {
    figures[(*it)[1]] = std::stod((*it)[2]);
  }
  return figures;
}

}  // namespace shmkit::bench
