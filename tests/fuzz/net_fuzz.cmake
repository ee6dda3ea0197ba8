# The libFuzzer targets for the peer protocol, and their bounded CTest runs:
# - net_frame_fuzzer (net_fuzz_smoke): the frame reader and the codec, on byte streams;
# - net_transport_fuzzer (net_transport_fuzz_smoke): a listening transport, plaintext and TLS,
#   fed each input on a fresh loopback connection: TLS's first bytes, the peer handshake, frames.
# libFuzzer needs clang; the rest of the build may use another compiler, so the targets are
# built by separate clang commands. Without clang they are left out, with a note at configure
# time. -max_len lets inputs reach the frame limits the targets set (64 KiB frames).
#
# Longer runs, from the build directory (corpus additions land in the build tree):
#   tests/fuzz/net_frame_fuzzer -max_len=70000 -max_total_time=3600 -rss_limit_mb=2048 tests/fuzz/net_corpus ../../tests/fuzz/corpus/net
#   tests/fuzz/net_transport_fuzzer -max_len=70000 -max_total_time=3600 -rss_limit_mb=2048 tests/fuzz/net_transport_corpus ../../tests/fuzz/corpus/net ../../tests/fuzz/corpus/net_tls
include_guard(GLOBAL)

find_program(CORAFT_FUZZ_CLANGXX NAMES clang++-14 clang++)
if(NOT CORAFT_FUZZ_CLANGXX)
  message(STATUS "coraft: clang++ not found, so the net fuzz target is not built")
  return()
endif()

set(_fuzz_dir ${CMAKE_BINARY_DIR}/tests/fuzz)
file(MAKE_DIRECTORY ${_fuzz_dir}/net_corpus)
set(_fuzz_bin ${_fuzz_dir}/net_frame_fuzzer)
set(_fuzz_sources
  ${PROJECT_SOURCE_DIR}/tests/fuzz/net_frame_fuzz.cpp
  ${PROJECT_SOURCE_DIR}/src/net/codec.cpp
  ${PROJECT_SOURCE_DIR}/src/net/codec_decode.cpp
  ${PROJECT_SOURCE_DIR}/src/net/frame_reader.cpp
  ${PROJECT_SOURCE_DIR}/src/common/assert.cpp
  ${PROJECT_SOURCE_DIR}/src/common/bytes.cpp
  ${PROJECT_SOURCE_DIR}/src/common/error.cpp
  ${PROJECT_SOURCE_DIR}/src/common/log.cpp
  ${PROJECT_SOURCE_DIR}/src/common/membership.cpp
  ${PROJECT_SOURCE_DIR}/src/common/text.cpp
  ${CMAKE_BINARY_DIR}/generated/schema/raft.capnp.c++)
if(TARGET CapnProto::capnp AND TARGET CapnProto::kj)
  set(_fuzz_libs $<TARGET_LINKER_FILE:CapnProto::capnp> $<TARGET_LINKER_FILE:CapnProto::kj>)
else()
  set(_fuzz_libs -lcapnp -lkj)
endif()
file(GLOB _fuzz_headers ${PROJECT_SOURCE_DIR}/src/net/*.hpp ${PROJECT_SOURCE_DIR}/include/coraft/*.hpp)

add_custom_command(
  OUTPUT ${_fuzz_bin}
  COMMAND ${CORAFT_FUZZ_CLANGXX} -std=c++20 -O1 -g -fno-omit-frame-pointer
          -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
          -DASIO_STANDALONE -I${PROJECT_SOURCE_DIR}/include -I${PROJECT_SOURCE_DIR}/src
          -I${CMAKE_BINARY_DIR}/generated ${_fuzz_sources} ${_fuzz_libs} -lpthread -o ${_fuzz_bin}
  DEPENDS ${_fuzz_sources} ${_fuzz_headers} coraft_net_schema
  COMMENT "Building net_frame_fuzzer with clang and libFuzzer"
  VERBATIM)
add_custom_target(net_frame_fuzzer ALL DEPENDS ${_fuzz_bin})

# A bounded smoke run over the seed corpus; new inputs go to the build tree, never the source.
add_test(NAME net_fuzz_smoke
  COMMAND ${_fuzz_bin} -max_len=70000 -max_total_time=20 -rss_limit_mb=2048 -timeout=10
          -print_final_stats=1 ${_fuzz_dir}/net_corpus ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/net)
set_tests_properties(net_fuzz_smoke PROPERTIES LABELS net TIMEOUT 120)

# The transport target: all of src/net, OpenSSL and Asio's coroutines (which clang 14 compiles
# only with ASIO_HAS_CO_AWAIT, and with UBSan only without -fsanitize=function).
file(MAKE_DIRECTORY ${_fuzz_dir}/net_transport_corpus)
set(_transport_fuzz_bin ${_fuzz_dir}/net_transport_fuzzer)
set(_transport_fuzz_sources
  ${PROJECT_SOURCE_DIR}/tests/fuzz/net_transport_fuzz.cpp
  ${PROJECT_SOURCE_DIR}/src/net/log_guard.cpp
  ${PROJECT_SOURCE_DIR}/src/net/stream.cpp
  ${PROJECT_SOURCE_DIR}/src/net/transport.cpp
  ${PROJECT_SOURCE_DIR}/src/net/transport_dial.cpp
  ${_fuzz_sources})
list(REMOVE_ITEM _transport_fuzz_sources ${PROJECT_SOURCE_DIR}/tests/fuzz/net_frame_fuzz.cpp)
add_custom_command(
  OUTPUT ${_transport_fuzz_bin}
  COMMAND ${CORAFT_FUZZ_CLANGXX} -std=c++20 -O1 -g -fno-omit-frame-pointer
          -fsanitize=fuzzer,address,undefined -fno-sanitize=function -fno-sanitize-recover=undefined
          -DASIO_STANDALONE -DASIO_HAS_CO_AWAIT=1 -DASIO_DISABLE_STD_ALIGNED_ALLOC
          -I${PROJECT_SOURCE_DIR}/include -I${PROJECT_SOURCE_DIR}/src -I${CMAKE_BINARY_DIR}/generated
          ${_transport_fuzz_sources} ${_fuzz_libs} -lssl -lcrypto -lpthread -o ${_transport_fuzz_bin}
  DEPENDS ${_transport_fuzz_sources} ${_fuzz_headers} coraft_net_schema
  COMMENT "Building net_transport_fuzzer with clang and libFuzzer"
  VERBATIM)
add_custom_target(net_transport_fuzzer ALL DEPENDS ${_transport_fuzz_bin})

add_test(NAME net_transport_fuzz_smoke
  COMMAND ${_transport_fuzz_bin} -max_len=70000 -max_total_time=15 -rss_limit_mb=2048 -timeout=10
          -print_final_stats=1 ${_fuzz_dir}/net_transport_corpus
          ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/net ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/net_tls)
set_tests_properties(net_transport_fuzz_smoke PROPERTIES LABELS net TIMEOUT 120)
