# Install rules: headers, library, CMake package and pkg-config file.
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(CORAFT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/coraft)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/coraft
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.hpp")
install(TARGETS coraft EXPORT coraftTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT coraftTargets NAMESPACE coraft:: DESTINATION ${CORAFT_CMAKE_DIR})

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/coraftConfig.cmake.in
  ${PROJECT_BINARY_DIR}/coraftConfig.cmake
  INSTALL_DESTINATION ${CORAFT_CMAKE_DIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/coraftConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/coraftConfig.cmake
  ${PROJECT_BINARY_DIR}/coraftConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/coraftDependencies.cmake
  DESTINATION ${CORAFT_CMAKE_DIR})

# pkg-config: the private requirements let `pkg-config --static --libs coraft` link everything.
if(BUILD_SHARED_LIBS)
  set(CORAFT_PC_LIBS_PRIVATE "")
else()
  set(CORAFT_PC_LIBS_PRIVATE "-lpthread")
endif()
# The prefix is found relative to the .pc file, so the installed tree may be moved.
file(RELATIVE_PATH CORAFT_PC_UP ${PROJECT_BINARY_DIR}/${CMAKE_INSTALL_LIBDIR}/pkgconfig
     ${PROJECT_BINARY_DIR})
configure_file(${PROJECT_SOURCE_DIR}/cmake/coraft.pc.in ${PROJECT_BINARY_DIR}/coraft.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/coraft.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
