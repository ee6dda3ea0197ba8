# Dependencies of coraft's own executables only (tests, benchmarks, apps): never of the library.
include_guard(GLOBAL)

if(NOT TARGET coraft::dep_doctest)
  find_package(doctest CONFIG QUIET)
  if(TARGET doctest::doctest)
    add_library(coraft::dep_doctest INTERFACE IMPORTED)
    set_target_properties(coraft::dep_doctest PROPERTIES INTERFACE_LINK_LIBRARIES doctest::doctest)
  else()
    _coraft_missing("doctest" doctest-dev)
  endif()
  # doctest_discover_tests() comes from the script installed beside doctest's config.
  if(DEFINED doctest_DIR AND EXISTS ${doctest_DIR}/doctest.cmake)
    include(${doctest_DIR}/doctest.cmake)
  else()
    include(doctest OPTIONAL RESULT_VARIABLE _coraft_doctest_script)
    if(NOT _coraft_doctest_script)
      _coraft_missing("doctest's CMake script doctest.cmake" doctest-dev)
    endif()
  endif()
endif()

# mimalloc is linked by apps and benchmarks only, and never into sanitizer builds.
if(NOT TARGET coraft::dep_mimalloc)
  add_library(coraft::dep_mimalloc INTERFACE IMPORTED)
  if(NOT CORAFT_SANITIZE)
    find_package(mimalloc CONFIG QUIET)
    if(TARGET mimalloc)
      set_target_properties(coraft::dep_mimalloc PROPERTIES INTERFACE_LINK_LIBRARIES mimalloc)
    elseif(TARGET mimalloc::mimalloc)
      set_target_properties(coraft::dep_mimalloc PROPERTIES INTERFACE_LINK_LIBRARIES mimalloc::mimalloc)
    else()
      _coraft_missing("mimalloc" libmimalloc-dev)
    endif()
  endif()
endif()

# Finds a package's CMake config and maps its target onto coraft::dep_NAME, or stops configure
# naming the Debian package to install.
function(_coraft_config_dependency name package target what debian)
  if(TARGET coraft::dep_${name})
    return()
  endif()
  find_package(${package} CONFIG QUIET)
  if(NOT TARGET ${target})
    _coraft_missing("${what}" ${debian})
  endif()
  add_library(coraft::dep_${name} INTERFACE IMPORTED GLOBAL)
  set_target_properties(coraft::dep_${name} PROPERTIES INTERFACE_LINK_LIBRARIES ${target})
endfunction()

# Header-only, for coraft-bench and the apps: CLI11 parses their command lines, nlohmann-json
# writes their JSON.
_coraft_config_dependency(cli11 CLI11 CLI11::CLI11 "CLI11" libcli11-dev)
_coraft_config_dependency(json nlohmann_json nlohmann_json::nlohmann_json "nlohmann-json"
                          nlohmann-json3-dev)
