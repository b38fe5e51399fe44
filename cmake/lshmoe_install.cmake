# What `cmake --install` puts under the prefix, by component:
#   runtime  liblshmoe.so.0, the NCCL net plugin, the LD_PRELOAD shim (and its
#            device back end), lshmoe_info, lshmoe_eval, lshmoe_alltoall_perf
#   dev      the public header, the liblshmoe.so link, the CMake package
#            (find_package(lshmoe CONFIG) -> lshmoe::lshmoe) and lshmoe.pc
#   python   the PyTorch binding, in lib/python3/dist-packages
# The prefix is relocatable: executables find the library as
# $ORIGIN/../<libdir>, the CMake package and lshmoe.pc locate themselves.
if(LSHMOE_FUZZ)
  return()  # an instrumented build is not installed
endif()
include(CMakePackageConfigHelpers)

set(LSHMOE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/lshmoe)
# Libraries outside the build tree that the targets link (CUDA's, when the
# toolkit is not on the loader's path) stay reachable from the installed files.
set(CMAKE_INSTALL_RPATH_USE_LINK_PATH ON)
file(RELATIVE_PATH lshmoe_bin_to_lib ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_FULL_LIBDIR})

# The targets of a list that this configuration builds.
function(lshmoe_built_targets out)
  set(built)
  foreach(target IN LISTS ARGN)
    if(TARGET ${target})
      list(APPEND built ${target})
    endif()
  endforeach()
  set(${out} ${built} PARENT_SCOPE)
endfunction()

lshmoe_built_targets(lshmoe_runtime_libraries lshmoe nccl_net_lshmoe lshmoe_preload
                     lshmoe_preload_cuda)
set_target_properties(${lshmoe_runtime_libraries} PROPERTIES INSTALL_RPATH "$ORIGIN")

lshmoe_built_targets(lshmoe_tools lshmoe_info lshmoe_eval lshmoe_alltoall_perf)
set_target_properties(${lshmoe_tools} PROPERTIES INSTALL_RPATH "$ORIGIN/${lshmoe_bin_to_lib}")

install(TARGETS lshmoe EXPORT lshmoeTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev)
list(REMOVE_ITEM lshmoe_runtime_libraries lshmoe)
install(TARGETS ${lshmoe_runtime_libraries} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        COMPONENT runtime NAMELINK_SKIP)
install(TARGETS ${lshmoe_tools} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/include/lshmoe/lshmoe.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/lshmoe COMPONENT dev)

install(EXPORT lshmoeTargets NAMESPACE lshmoe:: DESTINATION ${LSHMOE_CMAKE_DIR} COMPONENT dev)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/lshmoeConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/lshmoeConfig.cmake
                              INSTALL_DESTINATION ${LSHMOE_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/lshmoeConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/lshmoeConfig.cmake ${PROJECT_BINARY_DIR}/lshmoeConfigVersion.cmake
        DESTINATION ${LSHMOE_CMAKE_DIR} COMPONENT dev)

# pkg-config: the prefix from the file's own place, so a moved prefix works.
file(RELATIVE_PATH lshmoe_pc_to_prefix ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig
     ${CMAKE_INSTALL_PREFIX})
configure_file(${PROJECT_SOURCE_DIR}/cmake/lshmoe.pc.in ${PROJECT_BINARY_DIR}/lshmoe.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/lshmoe.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT dev)

# The binding is pure Python; it finds liblshmoe.so.0 in ../../../ (the
# prefix's lib) or on the loader's path.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/python/lshmoe DESTINATION lib/python3/dist-packages
        COMPONENT python PATTERN __pycache__ EXCLUDE)
