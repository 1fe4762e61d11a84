# vigil_add_library(NAME x SRCS ... DEPS ...): the library vigil_x, aliased vigil::x.
function(vigil_add_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS;PUBLIC_DEPS" ${ARGN})
  add_library(vigil_${ARG_NAME} ${ARG_SRCS})
  add_library(vigil::${ARG_NAME} ALIAS vigil_${ARG_NAME})
  target_include_directories(vigil_${ARG_NAME} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(vigil_${ARG_NAME} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_DEPS})
endfunction()

# vigil_add_test(NAME x SRCS ... DEPS ... LABELS ... [TIMEOUT seconds] [RESOURCE_LOCK name]):
# a doctest binary; each TEST_CASE is its own ctest entry carrying LABELS. Entries that hold
# the same RESOURCE_LOCK never run at the same time.
function(vigil_add_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT;RESOURCE_LOCK" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  set(lock "")
  if(ARG_RESOURCE_LOCK)
    set(lock RESOURCE_LOCK ${ARG_RESOURCE_LOCK})
  endif()
  add_executable(${ARG_NAME} ${ARG_SRCS} ${PROJECT_SOURCE_DIR}/tests/support/doctest_main.cc)
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} doctest::doctest)
  target_compile_definitions(${ARG_NAME} PRIVATE VIGIL_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                                                 VIGIL_BINARY_DIR="${PROJECT_BINARY_DIR}")
  # A hung test fails after two minutes (unless said otherwise) instead of holding CI.
  doctest_discover_tests(${ARG_NAME} ADD_LABELS 1 PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT} ${lock})
endfunction()
