# Interop tests of the inference proxy (proxy/proxy.c) through the real HTTP
# server against the real Python gRPC model server (model_server.py).
# Included from tests/interop/CMakeLists.txt; if that file's own glob of
# test_*.c has already made the target, this only adds what it lacks.
if(NOT DEFINED KVC_INTEROP_PYTHON)
  set(KVC_INTEROP_PYTHON /usr/bin/python3 CACHE FILEPATH "python3 with grpcio, grpc_tools and numpy")
endif()
if(NOT TARGET interop_test_proxy_http)
  add_executable(interop_test_proxy_http ${CMAKE_CURRENT_LIST_DIR}/test_proxy_http.c)
  target_link_libraries(interop_test_proxy_http PRIVATE kvc_peer PkgConfig::CMOCKA PkgConfig::CURL
                        Threads::Threads)
  target_compile_options(interop_test_proxy_http PRIVATE ${KVC_WARN})
  target_compile_definitions(interop_test_proxy_http PRIVATE
    KVC_SOURCE_DIR="${CMAKE_SOURCE_DIR}" KVC_PYTHON="${KVC_INTEROP_PYTHON}")
  add_test(NAME interop/test_proxy_http COMMAND interop_test_proxy_http)
  set_tests_properties(interop/test_proxy_http PROPERTIES LABELS interop TIMEOUT 300
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()
