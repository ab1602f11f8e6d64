# CPack: `cpack -G DEB` in a build directory makes para_<version>_<arch>.deb
# with the library, headers, CMake and pkg-config files, para-info and
# para-trace. Configure with -DCMAKE_INSTALL_PREFIX=/usr so that the
# library goes to Debian's multiarch directory (scripts/make-deb.sh does).
set(CPACK_PACKAGE_NAME para)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_CONTACT "para maintainers <para@localhost>")
set(CPACK_PACKAGE_VENDOR "para")
set(CPACK_RESOURCE_FILE_README ${PROJECT_SOURCE_DIR}/README.md)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_GENERATOR DEB)
set(CPACK_SOURCE_GENERATOR TGZ)
set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build[^/]*/")

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # para_0.2.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
# The control file's long description (CPack indents it; the summary line
# comes from CPACK_PACKAGE_DESCRIPTION_SUMMARY).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
"A C11 runtime: sources, maps, filters and sinks connected into a graph run
on work-stealing workers placed with hwloc, and kernel nodes on an OpenCL
device. This package holds libpara, its headers, the CMake and pkg-config
files, para-info and para-trace.")
# Dependencies: dpkg-shlibdeps reads them (with versions) from the NEEDED
# entries of libpara.so and the tools: libc6, libhwloc15 and, with OpenCL,
# ocl-icd-libopencl1 | libopencl1 on Debian 12 (libpng is used by an example
# only, not packaged). Without dpkg-shlibdeps the same list is declared by
# hand.
find_program(PARA_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(PARA_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  set(_deps "libc6 (>= 2.34), libhwloc15")
  if(PARA_WITH_OPENCL)
    string(APPEND _deps ", ocl-icd-libopencl1 | libopencl1")
  endif()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "${_deps}")
endif()
if(PARA_WITH_OPENCL)
  # An OpenCL driver (ICD); without one para runs on the CPU only.
  set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "pocl-opencl-icd | opencl-icd")
endif()
# A shlibs file and the ldconfig trigger for libpara.so.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
include(CPack)
