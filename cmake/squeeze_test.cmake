# squeeze_test(NAME SOURCES a.cc b.cc LIBS lib... [LABELS label...])
# One gtest binary registered as one ctest test. Tests live beside the code
# they test; cross-process tests live in tests/ and carry the label
# "integration"; GPU tests carry "gpu" and skip themselves without a device.
function(squeeze_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gmock GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES
    ENVIRONMENT "SQUEEZE_BUILD_DIR=${CMAKE_BINARY_DIR};SQUEEZE_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
    TIMEOUT 600)
  if(ARG_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()
