# Cross build for 64-bit Arm Linux with Debian's cross toolchain
# (g++-aarch64-linux-gnu) and arm64 multiarch packages for the libraries
# (libboost-atomic-dev:arm64, libssl-dev:arm64, libgtest-dev:arm64, ...;
# scripts/install-deps.sh installs them). The test programs
# run under qemu-user (qemu-user-static): ctest prefixes each with
# CMAKE_CROSSCOMPILING_EMULATOR, and the programs a test starts itself
# (the watcher, the exec'd peer) reach qemu through binfmt_misc
# (scripts/cross-aarch64.sh registers it).
#
# This checks that shmkit builds and behaves on a second architecture: its
# syscall numbers, struct layouts, type sizes and intrinsics. It does NOT
# check weak-memory behaviour: qemu-user on x86-64 runs aarch64's loads and
# stores with x86's stronger (TSO) ordering, so a missing acquire or release
# cannot show here.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(SHMKIT_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${SHMKIT_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${SHMKIT_CROSS_TRIPLE}-g++)

# Debian's cross compiler already searches the multiarch directories
# (/usr/lib/aarch64-linux-gnu, /usr/include/aarch64-linux-gnu); find_package
# must look there for the target's libraries and never take the host's.
set(CMAKE_LIBRARY_ARCHITECTURE ${SHMKIT_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH /usr/${SHMKIT_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# pkg-config (FindOpenSSL asks it first) must read the target's .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${SHMKIT_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig)

# qemu-user: Debian 12 names it qemu-aarch64-static (qemu-user-static) or
# qemu-aarch64 (qemu-user). The target's loader and libraries are the arm64
# multiarch packages under / (libc6:arm64, libstdc++6:arm64, ...), the same
# ones the programs a test execs get through binfmt_misc. No
# `-L /usr/aarch64-linux-gnu`: with the cross toolchain's own libc
# (libc6-arm64-cross 2.36-8cross1) as the prefix, Debian 12's qemu 7.2 left
# every fork child spinning in user space before its first system call.
find_program(SHMKIT_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(SHMKIT_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${SHMKIT_QEMU_AARCH64})
endif()
