# Compiles Cap'n Proto schemas with the capnp tool into the build tree.
include_guard(GLOBAL)

find_program(CORAFT_CAPNP_TOOL capnp HINTS ${CAPNP_EXECUTABLE})
find_program(CORAFT_CAPNPC_CXX capnpc-c++ HINTS ${CAPNPC_CXX_EXECUTABLE})
if(NOT CORAFT_CAPNP_TOOL OR NOT CORAFT_CAPNPC_CXX)
  _coraft_missing("the Cap'n Proto schema compiler (capnp, capnpc-c++)" capnproto)
endif()

# coraft_capnp_compile(<out-var> schema.capnp...): generated sources land in
# ${CMAKE_BINARY_DIR}/generated/schema/, included as "schema/NAME.capnp.h".
function(coraft_capnp_compile out_var)
  set(out_dir ${CMAKE_BINARY_DIR}/generated/schema)
  file(MAKE_DIRECTORY ${out_dir})
  set(outputs)
  foreach(schema IN LISTS ARGN)
    get_filename_component(abs ${schema} ABSOLUTE)
    get_filename_component(name ${schema} NAME)
    set(gen ${out_dir}/${name}.c++ ${out_dir}/${name}.h)
    add_custom_command(
      OUTPUT ${gen}
      COMMAND ${CORAFT_CAPNP_TOOL} compile -o${CORAFT_CAPNPC_CXX}:${out_dir}
              --src-prefix=${PROJECT_SOURCE_DIR}/schema ${abs}
      DEPENDS ${abs}
      COMMENT "Compiling Cap'n Proto schema ${name}"
      VERBATIM)
    list(APPEND outputs ${gen})
  endforeach()
  set(${out_var} ${outputs} PARENT_SCOPE)
endfunction()
