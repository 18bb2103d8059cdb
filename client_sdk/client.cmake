# The SDK's data paths: tokenmem::Client / tokenmem::Pool over the agent's
# data socket and the pools' shared memory (src/local/), or over the remote
# data protocol (UCX, tokenmem_transport) when the agent is on another node
# (src/remote/); and the C ABI over them (include/tokenmem/tokenmem.h).
# Included at the end of client_sdk/CMakeLists.txt, in its directory scope.

# Compiled once, position-independent with hidden visibility: the objects go
# into libtokenmem.so (which exports only tm_*) and into tokenmem_sdk.
add_library(tokenmem_client_local_objects OBJECT
  src/local/session.cc
  src/local/pool_map.cc
  src/local/pool.cc
  src/local/client.cc
  src/local/c_api.cc
  src/remote/remote_pool.cc)
target_include_directories(tokenmem_client_local_objects
  PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
  PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_link_libraries(tokenmem_client_local_objects
  PUBLIC tokenmem_common tokenmem_layout tokenmem_transport)
set_target_properties(tokenmem_client_local_objects PROPERTIES
  POSITION_INDEPENDENT_CODE ON
  CXX_VISIBILITY_PRESET hidden
  VISIBILITY_INLINES_HIDDEN ON)

target_sources(tokenmem_client PRIVATE $<TARGET_OBJECTS:tokenmem_client_local_objects>)
target_link_libraries(tokenmem_client PRIVATE tokenmem_layout tokenmem_transport)

# Static, for C++ engines and this repository's C++ tests: the C++ API, the
# C ABI and the token keys.
add_library(tokenmem_sdk STATIC $<TARGET_OBJECTS:tokenmem_client_local_objects>)
target_include_directories(tokenmem_sdk PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
target_link_libraries(tokenmem_sdk
  PUBLIC tokenmem_keys tokenmem_common tokenmem_layout tokenmem_transport)
set_target_properties(tokenmem_sdk PROPERTIES POSITION_INDEPENDENT_CODE ON LINKER_LANGUAGE CXX)

if(NOT TOKENMEM_BUILD_TESTS)
  return()
endif()

# A stand-in for the agent's data server (tests/fake_agent.h), as a library
# for the C++ tests and as a process for the C and Python tests.
add_library(tokenmem_fake_agent_lib STATIC tests/fake_agent.cc)
target_include_directories(tokenmem_fake_agent_lib PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/tests)
target_link_libraries(tokenmem_fake_agent_lib PUBLIC tokenmem_common tokenmem_layout)
add_executable(tokenmem_fake_agent tests/fake_agent_main.cc)
target_link_libraries(tokenmem_fake_agent PRIVATE tokenmem_fake_agent_lib)

tokenmem_add_test(client_sdk_client_test
  SOURCES tests/client_test.cc
  LIBS tokenmem_sdk tokenmem_fake_agent_lib)
target_include_directories(client_sdk_client_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)

if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/tests/c_client_test.c)
  # The client C ABI as a C program sees it: compiled as C, linked to
  # libtokenmem.so, against the fake agent run as a child process.
  add_executable(client_sdk_c_client_test tests/c_client_test.c)
  target_link_libraries(client_sdk_c_client_test PRIVATE tokenmem_client)
  set_target_properties(client_sdk_c_client_test PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
  add_dependencies(client_sdk_c_client_test tokenmem_fake_agent)
  add_test(NAME client_sdk_c_client
    COMMAND client_sdk_c_client_test $<TARGET_FILE:tokenmem_fake_agent>)
  set_tests_properties(client_sdk_c_client PROPERTIES TIMEOUT 60)
endif()

# The Python client over the C ABI, with Debian's interpreter (numpy from
# python3-numpy; the numpy cases are skipped without it).
if(EXISTS ${TOKENMEM_PYTHON} AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/tests/test_client.py)
  add_test(NAME client_sdk_python_client
    COMMAND ${TOKENMEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/tests/test_client.py -v)
  set_tests_properties(client_sdk_python_client PROPERTIES
    TIMEOUT 60
    ENVIRONMENT "TOKENMEM_LIBRARY=$<TARGET_FILE:tokenmem_client>;TOKENMEM_FAKE_AGENT=$<TARGET_FILE:tokenmem_fake_agent>;PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR}/python;PYTHONDONTWRITEBYTECODE=1")
endif()

# The remote path against the agent's remote server, run in the test process.
if(EXISTS ${PROJECT_SOURCE_DIR}/agent/remote/remote_server.h)
  # tokenmem_remote (agent/remote) is defined after this file is read.
  tokenmem_add_test(client_sdk_remote_client_test
    SOURCES tests/remote_client_test.cc
    LIBS tokenmem_sdk tokenmem_remote tokenmem_fake_agent_lib)

  # The same server as a process, for the Python test of the remote path.
  add_executable(tokenmem_remote_test_server tests/remote_server_main.cc)
  target_link_libraries(tokenmem_remote_test_server PRIVATE tokenmem_remote)
  if(EXISTS ${TOKENMEM_PYTHON} AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/tests/test_remote_client.py)
    add_test(NAME client_sdk_python_remote_client
      COMMAND ${TOKENMEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/tests/test_remote_client.py -v)
    set_tests_properties(client_sdk_python_remote_client PROPERTIES
      TIMEOUT 60
      ENVIRONMENT "TOKENMEM_LIBRARY=$<TARGET_FILE:tokenmem_client>;TOKENMEM_REMOTE_SERVER=$<TARGET_FILE:tokenmem_remote_test_server>;PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR}/python;PYTHONDONTWRITEBYTECODE=1")
  endif()
endif()

# Against the real agent, once it serves the local data path (agent/local/).
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/tests/agent_integration_test.cc
   AND EXISTS ${PROJECT_SOURCE_DIR}/agent/local/local_server.h
   AND EXISTS ${PROJECT_SOURCE_DIR}/tests/integration/agent_fixture.h)
  # tokenmem_agent_fixture (tests/integration) is defined after this file
  # is read; targets are resolved when the build is generated.
  tokenmem_add_test(client_sdk_agent_integration_test
    SOURCES tests/agent_integration_test.cc
    LIBS tokenmem_sdk tokenmem_agent_fixture)
  target_include_directories(client_sdk_agent_integration_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
endif()
