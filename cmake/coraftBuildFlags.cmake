# Warning and sanitizer flags for coraft's own targets (never forced on consumers).
include_guard(GLOBAL)

add_library(coraft_build_flags INTERFACE)
target_compile_options(coraft_build_flags INTERFACE -Wall -Wextra -Wpedantic)
if(CORAFT_WARNINGS_AS_ERRORS)
  target_compile_options(coraft_build_flags INTERFACE -Werror)
endif()

if(CORAFT_SANITIZE)
  set(_san -fsanitize=${CORAFT_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang" AND CORAFT_SANITIZE MATCHES "undefined")
    # clang 14's function sanitizer cannot handle coroutine frames.
    list(APPEND _san -fno-sanitize=function)
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CORAFT_SANITIZE MATCHES "thread")
    # Asio's atomic_thread_fence draws a compile-time note under GCC's TSan; it is harmless.
    list(APPEND _san -Wno-tsan)
  endif()
  # On coraft's own targets only (they all link coraft_build_flags); the library passes the
  # link flag on to in-tree executables that link it.
  target_compile_options(coraft_build_flags INTERFACE ${_san})
  target_link_options(coraft_build_flags INTERFACE -fsanitize=${CORAFT_SANITIZE})
endif()

# Executables built here link mimalloc unless sanitizers are on.
function(coraft_link_allocator target)
  target_link_libraries(${target} PRIVATE coraft::dep_mimalloc)
endfunction()
