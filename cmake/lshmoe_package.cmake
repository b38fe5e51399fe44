# `cpack -G DEB` in the build tree: lshmoe (runtime: the library, the NCCL
# net plugin, the LD_PRELOAD shim, the tools), lshmoe-dev (header, CMake
# package, lshmoe.pc) and python3-lshmoe (the binding), installed under /usr.
# Dependencies are Debian's package names; CUDA, cuBLAS and NCCL come from
# NVIDIA's toolkit (no Debian package), which the GPU paths load at run time.
if(LSHMOE_FUZZ)
  return()
endif()
set(CPACK_PACKAGE_NAME lshmoe)
set(CPACK_PACKAGE_VENDOR "lshmoe maintainers")
set(CPACK_PACKAGE_CONTACT "lshmoe maintainers <maintainers@lshmoe.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "LSH-compressed all-to-all for Mixture-of-Experts training (NCCL-compatible)")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_COMPONENTS_ALL runtime dev python)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME lshmoe)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "libucx0, libhwloc15, libc6, libstdc++6")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME lshmoe-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "lshmoe (= ${PROJECT_VERSION})")
set(CPACK_DEBIAN_PYTHON_PACKAGE_NAME python3-lshmoe)
set(CPACK_DEBIAN_PYTHON_PACKAGE_SECTION python)
set(CPACK_DEBIAN_PYTHON_PACKAGE_ARCHITECTURE all)
set(CPACK_DEBIAN_PYTHON_PACKAGE_DEPENDS "lshmoe (= ${PROJECT_VERSION}), python3, python3-torch")
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
    "liblshmoe.so, libnccl-net-lshmoe.so, liblshmoe_preload.so and the tools")
set(CPACK_COMPONENT_DEV_DESCRIPTION "lshmoe.h, the CMake package and lshmoe.pc")
set(CPACK_COMPONENT_PYTHON_DESCRIPTION "The PyTorch binding (import lshmoe)")
include(CPack)
