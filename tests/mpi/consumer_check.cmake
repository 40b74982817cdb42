# ctest driver: install the build tree into a scratch prefix, then configure
# and build tests/mpi/consumer against it with find_package(shmkit
# COMPONENTS mpi), and run it under mpirun (MPIEXEC, FLAGS).
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
if(NOT EXISTS ${WORK_DIR}/prefix/include/shmkit/mpi.hpp)
  message(FATAL_ERROR "shmkit/mpi.hpp was not installed")
endif()
set(flags "")
if(SANITIZE)
  set(flags "-fsanitize=${SANITIZE}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/mpi/consumer -B ${WORK_DIR}/build
                -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_CXX_COMPILER=${CXX}
                -DCMAKE_CXX_FLAGS=${flags} -DCMAKE_EXE_LINKER_FLAGS=${flags}
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer failed: ${rc}")
endif()
separate_arguments(flag_list UNIX_COMMAND "${FLAGS}")
execute_process(COMMAND ${MPIEXEC} ${flag_list} -np 2 ${WORK_DIR}/build/mpi_consumer
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
message(STATUS "${out}${err}")
if(rc OR NOT out MATCHES "mpi consumer: ok \\(2 ranks\\)")
  message(FATAL_ERROR "the consumer failed: ${rc} ${out} ${err}")
endif()
