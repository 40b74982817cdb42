# ctest driver: install the build tree into a scratch prefix, then compile
# tests/consumer/main.cpp outside CMake with `pkg-config --cflags --libs
# shmkit` (the relocatable shmkit.pc), check it links libshmkit.so, and run it.
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
file(GLOB_RECURSE pc ${WORK_DIR}/prefix/*/shmkit.pc)
if(NOT pc)
  message(FATAL_ERROR "no shmkit.pc installed under ${WORK_DIR}/prefix")
endif()
get_filename_component(pcdir ${pc} DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pcdir})
execute_process(COMMAND pkg-config --cflags --libs shmkit OUTPUT_VARIABLE flags
                RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(rc)
  message(FATAL_ERROR "pkg-config --cflags --libs shmkit failed: ${rc}")
endif()
execute_process(COMMAND pkg-config --variable=libexecdir shmkit OUTPUT_VARIABLE libexecdir
                OUTPUT_STRIP_TRAILING_WHITESPACE)
execute_process(COMMAND pkg-config --variable=libdir shmkit OUTPUT_VARIABLE libdir
                OUTPUT_STRIP_TRAILING_WHITESPACE)
message(STATUS "pkg-config: ${flags}")
separate_arguments(flags UNIX_COMMAND "${flags}")
set(san "")
if(SANITIZE)
  set(san "-fsanitize=${SANITIZE}")
endif()
execute_process(COMMAND ${CXX} -std=c++20 ${san} ${SOURCE_DIR}/tests/consumer/main.cpp ${flags}
                "-DSHMKIT_CONSUMER_WATCHER=\"${libexecdir}/shmkit-watcher\"" -o ${WORK_DIR}/consumer
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "compiling the consumer with pkg-config's flags failed: ${rc}")
endif()
execute_process(COMMAND readelf -d ${WORK_DIR}/consumer OUTPUT_VARIABLE dyn)
if(NOT dyn MATCHES "libshmkit\\.so")
  message(FATAL_ERROR "the consumer does not link libshmkit.so:\n${dyn}")
endif()
set(ENV{LD_LIBRARY_PATH} ${libdir})
# EMULATOR: a cross build runs it as ctest runs the tests (qemu-user).
execute_process(COMMAND ${EMULATOR} ${WORK_DIR}/consumer RESULT_VARIABLE rc OUTPUT_VARIABLE out)
message(STATUS "${out}")
if(rc OR NOT out MATCHES "consumer: ok")
  message(FATAL_ERROR "the pkg-config consumer failed: ${rc} ${out}")
endif()
