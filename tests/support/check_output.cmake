# Runs a program and passes only if it exited 0 AND its output (stdout and
# stderr together) matches EXPECT (and, if given, does not match FAIL).
# ctest's PASS_REGULAR_EXPRESSION alone ignores the exit status, so a program
# that printed its OK line and then exited 1, or 23 from LeakSanitizer,
# would pass; tests registered with shmkit_add_output_test run through this.
#
#   cmake -DEXPECT=<regex> [-DFAIL=<regex>] -P check_output.cmake -- PROGRAM ARGS...
#
# The output is echoed as it comes (ctest shows it on failure).
if(NOT DEFINED EXPECT)
  message(FATAL_ERROR "check_output: -DEXPECT=<regex> is required")
endif()
set(cmd "")
set(seen_dashes FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE 1 ${last})
  if(seen_dashes)
    # An argument's own semicolons must not split it into several.
    string(REPLACE ";" "\\;" arg "${CMAKE_ARGV${i}}")
    list(APPEND cmd "${arg}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(seen_dashes TRUE)
  endif()
endforeach()
if(NOT cmd)
  message(FATAL_ERROR "check_output: no program given after --")
endif()
execute_process(COMMAND ${cmd}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out ERROR_VARIABLE out
  ECHO_OUTPUT_VARIABLE ECHO_ERROR_VARIABLE)
set(bad "")
if(NOT rc STREQUAL "0")
  string(APPEND bad "exit status: ${rc} (expected 0)\n")
endif()
if(NOT out MATCHES "${EXPECT}")
  string(APPEND bad "output does not match the expected regex: ${EXPECT}\n")
endif()
if(DEFINED FAIL AND NOT FAIL STREQUAL "" AND out MATCHES "${FAIL}")
  string(APPEND bad "output matches the failure regex: ${FAIL}\n")
endif()
if(bad)
  message(FATAL_ERROR "check_output: ${cmd}\n${bad}")
endif()
message(STATUS "check_output: exit 0, output matched")
