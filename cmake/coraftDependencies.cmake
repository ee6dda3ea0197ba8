# Finds coraft's dependencies and maps them onto one set of targets, coraft::dep_*.
#
# The same file runs in coraft's own build and, installed beside coraftConfig.cmake, in every
# consumer's build, so that the installed library's link interface resolves there too.
# Debian's packages and Conan's CMakeDeps name their targets differently; both are accepted.
include_guard(GLOBAL)
include(CMakeFindDependencyMacro)

set(_coraft_apt "sudo apt-get install")

function(_coraft_missing what package)
  message(FATAL_ERROR
    "coraft: ${what} was not found. On Debian or Ubuntu: ${_coraft_apt} ${package}")
endfunction()

# Creates coraft::dep_NAME as an interface target forwarding to the first existing target.
function(_coraft_alias name)
  if(TARGET coraft::dep_${name})
    return()
  endif()
  foreach(candidate IN LISTS ARGN)
    if(TARGET ${candidate})
      add_library(coraft::dep_${name} INTERFACE IMPORTED)
      set_target_properties(coraft::dep_${name} PROPERTIES INTERFACE_LINK_LIBRARIES ${candidate})
      return()
    endif()
  endforeach()
endfunction()

find_package(Threads REQUIRED)

# --- Asio (standalone): headers only, no CMake config or .pc file on Debian.
if(NOT TARGET coraft::dep_asio)
  find_package(asio CONFIG QUIET)  # Conan's CMakeDeps provides asio::asio
  if(TARGET asio::asio)
    _coraft_alias(asio asio::asio)
  else()
    find_path(CORAFT_ASIO_INCLUDE_DIR asio.hpp)
    if(NOT CORAFT_ASIO_INCLUDE_DIR)
      _coraft_missing("Asio (standalone)" libasio-dev)
    endif()
    add_library(coraft::dep_asio INTERFACE IMPORTED)
    set_target_properties(coraft::dep_asio PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES ${CORAFT_ASIO_INCLUDE_DIR})
  endif()
  set_property(TARGET coraft::dep_asio APPEND PROPERTY INTERFACE_LINK_LIBRARIES Threads::Threads)
  # clang 14 with libstdc++ does not detect coroutine support on its own.
  set_property(TARGET coraft::dep_asio APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS
    ASIO_STANDALONE ASIO_NO_DEPRECATED $<$<CXX_COMPILER_ID:Clang>:ASIO_HAS_CO_AWAIT=1>)
  # Asio 1.22 decides between aligned_alloc and operator new by whether libstdc++'s config was
  # included before it, so translation units disagree and memory allocated by one is freed by
  # the other (ASan: alloc-dealloc-mismatch). Fixing the choice keeps every unit consistent.
  set_property(TARGET coraft::dep_asio APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS
    ASIO_DISABLE_STD_ALIGNED_ALLOC)
endif()

# --- OpenSSL, for TLS between peers. Found before Cap'n Proto, whose own config needs it.
if(NOT TARGET coraft::dep_ssl)
  find_package(OpenSSL QUIET)
  if(NOT TARGET OpenSSL::SSL)
    _coraft_missing("OpenSSL" libssl-dev)
  endif()
  add_library(coraft::dep_ssl INTERFACE IMPORTED)
  set_target_properties(coraft::dep_ssl PROPERTIES
    INTERFACE_LINK_LIBRARIES "OpenSSL::SSL;OpenSSL::Crypto")
endif()

# --- Cap'n Proto: Debian's config gives CapnProto::capnp, Conan's capnproto::capnproto.
if(NOT TARGET coraft::dep_capnp)
  find_package(CapnProto CONFIG QUIET)
  if(NOT TARGET CapnProto::capnp AND NOT TARGET capnproto::capnproto)
    find_package(capnproto CONFIG QUIET)
  endif()
  _coraft_alias(capnp CapnProto::capnp capnproto::capnp capnproto::capnproto)
  if(NOT TARGET coraft::dep_capnp)
    _coraft_missing("Cap'n Proto" "libcapnp-dev capnproto pkg-config")
  endif()
endif()

# --- liburing: pkg-config on Debian, liburing::liburing from Conan.
if(NOT TARGET coraft::dep_uring)
  find_package(liburing CONFIG QUIET)
  if(TARGET liburing::liburing)
    _coraft_alias(uring liburing::liburing)
  else()
    find_package(PkgConfig QUIET)
    if(PkgConfig_FOUND)
      pkg_check_modules(CORAFT_URING QUIET IMPORTED_TARGET GLOBAL liburing>=2.1)
    endif()
    if(NOT TARGET PkgConfig::CORAFT_URING)
      _coraft_missing("liburing (>= 2.1, found with pkg-config)" "liburing-dev pkg-config")
    endif()
    _coraft_alias(uring PkgConfig::CORAFT_URING)
  endif()
endif()
