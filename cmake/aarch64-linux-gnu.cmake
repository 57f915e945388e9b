# Cross-compile for 64-bit Arm Linux with Debian's cross toolchain and run
# the tests under qemu-user (no binfmt needed: qemu is invoked explicitly).
#
#   apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#   cmake --build build-aarch64 -j2
#   WEFT_TIMEOUT_SCALE=10 ctest --test-dir build-aarch64 --output-on-failure
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(WEFT_CROSS_TRIPLE aarch64-linux-gnu)
set(WEFT_CROSS_SYSROOT /usr/${WEFT_CROSS_TRIPLE})

set(CMAKE_C_COMPILER ${WEFT_CROSS_TRIPLE}-gcc)
set(CMAKE_ASM_COMPILER ${WEFT_CROSS_TRIPLE}-gcc)

set(CMAKE_FIND_ROOT_PATH ${WEFT_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# -L is QEMU_LD_PREFIX: where qemu finds the aarch64 dynamic loader and libc.
find_program(WEFT_QEMU_AARCH64 qemu-aarch64)
if(WEFT_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${WEFT_QEMU_AARCH64} -L ${WEFT_CROSS_SYSROOT})
endif()
