# Install rules and the files that let another project use an installed
# para: paraConfig.cmake (find_package(para 0.2 REQUIRED) -> para::para),
# paraConfigVersion.cmake and para.pc (pkg-config). Included from the
# top-level CMakeLists.txt after the para target is defined.
include(CMakePackageConfigHelpers)

set(PARA_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/para CACHE STRING
    "Where paraConfig.cmake is installed (relative to the prefix)")

install(TARGETS para EXPORT paraTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES include/para.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PARA_PUBLIC_HEADERS}
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/para)
install(EXPORT paraTargets NAMESPACE para:: FILE paraTargets.cmake
        DESTINATION ${PARA_INSTALL_CMAKEDIR})

# paraConfig.cmake: what the caller must find before paraTargets.cmake can
# be loaded. A shared libpara needs nothing (its dependencies are private);
# a static one needs every library it was linked with.
set(PARA_CONFIG_SHARED ${PARA_SHARED})
set(PARA_CONFIG_OPENCL ${PARA_WITH_OPENCL})
configure_package_config_file(cmake/paraConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/paraConfig.cmake
  INSTALL_DESTINATION ${PARA_INSTALL_CMAKEDIR})
# 0.x: a minor release may break the API, so 0.2 accepts 0.2.x only.
write_basic_package_version_file(
  ${CMAKE_CURRENT_BINARY_DIR}/paraConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/paraConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/paraConfigVersion.cmake
        DESTINATION ${PARA_INSTALL_CMAKEDIR})

# para.pc. Relocatable by default: the prefix is found from where the file
# lies (${pcfiledir}), so a tree installed with --prefix P, or copied
# elsewhere, works. Not for /usr (the .deb): pkg-config would print
# -I/usr/lib/<arch>/pkgconfig/../../../include instead of dropping the
# system directories, and such a -L would come before the caller's own.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(_para_pc_reloc OFF)
else()
  set(_para_pc_reloc ON)
endif()
option(PARA_PC_RELOCATABLE "para.pc finds its prefix from \${pcfiledir}"
       ${_para_pc_reloc})
if(PARA_PC_RELOCATABLE)
  file(RELATIVE_PATH PARA_PC_TO_PREFIX
       ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
  string(REGEX REPLACE "/$" "" PARA_PC_TO_PREFIX "${PARA_PC_TO_PREFIX}")
  set(PARA_PC_PREFIX "\${pcfiledir}/${PARA_PC_TO_PREFIX}")
else()
  set(PARA_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
endif()
file(RELATIVE_PATH PARA_PC_LIBDIR ${CMAKE_INSTALL_PREFIX}
     ${CMAKE_INSTALL_FULL_LIBDIR})
file(RELATIVE_PATH PARA_PC_INCLUDEDIR ${CMAKE_INSTALL_PREFIX}
     ${CMAKE_INSTALL_FULL_INCLUDEDIR})
# No Requires.private: no public header includes hwloc or OpenCL, and
# hwloc.pc's own Libs.private (-ludev, ...) would then be demanded by
# `pkg-config --static` although libpara links hwloc's shared library. The
# libraries libpara.a needs are named directly.
set(PARA_PC_DEPS "-lhwloc")
if(PARA_WITH_OPENCL)
  string(APPEND PARA_PC_DEPS " -lOpenCL")
endif()
string(APPEND PARA_PC_DEPS " -lm -lpthread")
if(PARA_SHARED)
  # libpara.so carries its own NEEDED entries: programs link -lpara only.
  # No libpara.a is installed, so `pkg-config --static` links libpara.so
  # too and needs nothing more (in particular not hwloc's or OpenCL's -dev
  # packages for their unversioned libhwloc.so and libOpenCL.so).
  set(PARA_PC_LIBS "-L\${libdir} -lpara")
else()
  # Only libpara.a is installed: every program needs its dependencies,
  # with or without --static (so Libs, not Libs.private).
  set(PARA_PC_LIBS "-L\${libdir} -lpara ${PARA_PC_DEPS}")
endif()
configure_file(para.pc.in para.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/para.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
