// tests/support/fault_support.hpp — for the tests that link the fault
// points (shmkit_test_support_fault): a point's name, as SHMKIT_FAULT
// spells it, for messages and test names.
#pragma once

#include <string>

#include "shmkit/detail/fault.hpp"

namespace shmkit::test {

inline std::string point_name(fault::Point p) {
  for (const auto& info : fault::points()) {
    if (info.point == p) return std::string(info.name);
  }
  return "point " + std::to_string(static_cast<int>(p));
}

}  // namespace shmkit::test
