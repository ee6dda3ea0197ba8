# Fails when a module includes what its place in the dependency order forbids:
#   core    includes only the standard library, <coraft/...> and core's own headers;
#   storage and net never include each other, and neither includes node;
#   sessions includes only the standard library, <coraft/...> and its own headers.
# Run as: cmake -DSRC=<repo>/src -P module_boundaries.cmake
set(bad "")
function(check module pattern why)
  file(GLOB files ${SRC}/${module}/*.hpp ${SRC}/${module}/*.cpp)
  foreach(f ${files})
    file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include")
    foreach(line ${lines})
      if(line MATCHES "${pattern}")
        get_filename_component(name ${f} NAME)
        set(bad "${bad}\n  ${module}/${name}: ${line} (${why})" PARENT_SCOPE)
      endif()
    endforeach()
  endforeach()
endfunction()

# core: a quoted include outside core/, or an angle include with a path that is not <coraft/...>
# (standard headers have no directory and no extension).
check(core "#[ \t]*include[ \t]*\"([^c]|c[^o]|co[^r]|cor[^e]|core[^/])" "core includes only core/")
check(core "#[ \t]*include[ \t]*<([^c>][^>]*/|c[^o>][^>]*/|co[^r>][^>]*/|cor[^a>][^>]*/|cora[^f>][^>]*/|coraf[^t>][^>]*/|coraft[^/>])" "core includes only <coraft/...> and the standard library")
check(core "#[ \t]*include[ \t]*<[^>/]*\\.h" "core includes no C or system headers")
check(sessions "#[ \t]*include[ \t]*\"([^s]|s[^e]|se[^s]|ses[^s]|sess[^i]|sessi[^o]|sessio[^n]|session[^s]|sessions[^/])" "sessions includes only sessions/")
check(sessions "#[ \t]*include[ \t]*<([^c>][^>]*/|c[^o>][^>]*/|co[^r>][^>]*/|cor[^a>][^>]*/|cora[^f>][^>]*/|coraf[^t>][^>]*/|coraft[^/>])" "sessions includes only <coraft/...> and the standard library")
check(sessions "#[ \t]*include[ \t]*<[^>/]*\\.h" "sessions includes no C or system headers")
check(storage "#[ \t]*include[ \t]*\"(net|node)/" "storage never includes net or node")
check(net "#[ \t]*include[ \t]*\"(storage|node)/" "net never includes storage or node")
if(bad)
  message(FATAL_ERROR "module boundaries broken:${bad}")
endif()
message(STATUS "module boundaries hold")
