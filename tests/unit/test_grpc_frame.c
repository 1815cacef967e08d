/*
 * Unit tests of the pure parts of proxy/grpc_client.c: message framing and
 * de-framing, header/trailer parsing, percent-decoding, grpc-timeout
 * formatting and the HTTP-to-gRPC status mapping. No sockets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"
#include "grpc_client.h"

/* Feeds a whole line (NUL-terminated) to the header parser. */
static void s_feed(kvc_grpc_headers_t *h, const char *line)
{
    kvc_grpc_headers_feed(h, line, strlen(line));
}

static void test_prefix_is_big_endian(void **state)
{
    uint8_t p[5];
    assert_int_equal(kvc_grpc_frame_prefix(p, 0), KVC_OK);
    assert_memory_equal(p, "\x00\x00\x00\x00\x00", 5);
    assert_int_equal(kvc_grpc_frame_prefix(p, 0x01020304u), KVC_OK);
    assert_memory_equal(p, "\x00\x01\x02\x03\x04", 5);
    assert_int_equal(kvc_grpc_frame_prefix(p, 300), KVC_OK);
    assert_memory_equal(p, "\x00\x00\x00\x01\x2c", 5);
    assert_int_equal(kvc_grpc_frame_prefix(p, UINT32_MAX), KVC_OK);
    assert_memory_equal(p, "\x00\xff\xff\xff\xff", 5);
#if SIZE_MAX > UINT32_MAX
    assert_int_equal(kvc_grpc_frame_prefix(p, (size_t)UINT32_MAX + 1), KVC_ERANGE);
#endif
}

static void test_deframe_whole_message(void **state)
{
    kvc_grpc_deframer_t d;
    kvc_grpc_deframer_init(&d, 100);
    const uint8_t in[] = {0, 0, 0, 0, 3, 'a', 'b', 'c'};
    assert_int_equal(kvc_grpc_deframer_feed(&d, in, sizeof in), KVC_OK);
    uint8_t *msg = NULL;
    size_t len = 0;
    assert_int_equal(kvc_grpc_deframer_take(&d, &msg, &len), KVC_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(msg, "abc", 3);
    kvc_free(msg);
    kvc_grpc_deframer_free(&d);
}

static void test_deframe_byte_by_byte(void **state)
{
    kvc_grpc_deframer_t d;
    kvc_grpc_deframer_init(&d, 100);
    const uint8_t in[] = {0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    for (size_t i = 0; i < sizeof in; i++) {
        assert_int_equal(kvc_grpc_deframer_feed(&d, in + i, 1), KVC_OK);
        uint8_t *msg = NULL;
        size_t len = 9;
        if (i + 1 < sizeof in) {
            /* Before the last byte the body is incomplete. */
            assert_int_equal(kvc_grpc_deframer_take(&d, &msg, &len), KVC_EPARSE);
            assert_null(msg);
            assert_int_equal(len, 0);
        }
    }
    uint8_t *msg = NULL;
    size_t len = 0;
    assert_int_equal(kvc_grpc_deframer_take(&d, &msg, &len), KVC_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(msg, "hello", 5);
    kvc_free(msg);
    kvc_grpc_deframer_free(&d);
}

static void test_deframe_empty_message(void **state)
{
    kvc_grpc_deframer_t d;
    kvc_grpc_deframer_init(&d, 0);
    const uint8_t in[] = {0, 0, 0, 0, 0};
    assert_int_equal(kvc_grpc_deframer_feed(&d, in, sizeof in), KVC_OK);
    uint8_t *msg = NULL;
    size_t len = 7;
    assert_int_equal(kvc_grpc_deframer_take(&d, &msg, &len), KVC_OK);
    assert_non_null(msg);
    assert_int_equal(len, 0);
    kvc_free(msg);
    kvc_grpc_deframer_free(&d);
}

static void test_deframe_no_body(void **state)
{
    kvc_grpc_deframer_t d;
    kvc_grpc_deframer_init(&d, 10);
    uint8_t *msg = (uint8_t *)"x";
    size_t len = 1;
    assert_int_equal(kvc_grpc_deframer_take(&d, &msg, &len), KVC_ENOENT);
    assert_null(msg);
    /* A partial prefix is a truncated body, not an absent one. */
    const uint8_t in[] = {0, 0};
    assert_int_equal(kvc_grpc_deframer_feed(&d, in, sizeof in), KVC_OK);
    assert_int_equal(kvc_grpc_deframer_take(&d, &msg, &len), KVC_EPARSE);
    kvc_grpc_deframer_free(&d);
}

static void test_deframe_bound(void **state)
{
    kvc_grpc_deframer_t d;
    kvc_grpc_deframer_init(&d, 4);
    /* Exactly the bound is fine. */
    const uint8_t ok[] = {0, 0, 0, 0, 4, 1, 2, 3, 4};
    assert_int_equal(kvc_grpc_deframer_feed(&d, ok, sizeof ok), KVC_OK);
    kvc_grpc_deframer_free(&d);
    /* One over is refused as soon as the prefix is complete. */
    kvc_grpc_deframer_init(&d, 4);
    const uint8_t big[] = {0, 0, 0, 0, 5};
    assert_int_equal(kvc_grpc_deframer_feed(&d, big, sizeof big), KVC_ERANGE);
    assert_null(d.msg);
    kvc_grpc_deframer_free(&d);
    /* A hostile 4 GiB announcement allocates nothing. */
    kvc_grpc_deframer_init(&d, KVC_GRPC_DEFAULT_MAX_MESSAGE);
    const uint8_t huge[] = {0, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(kvc_grpc_deframer_feed(&d, huge, sizeof huge), KVC_ERANGE);
    assert_null(d.msg);
    kvc_grpc_deframer_free(&d);
}

static void test_deframe_rejects_compressed_and_second(void **state)
{
    kvc_grpc_deframer_t d;
    kvc_grpc_deframer_init(&d, 100);
    const uint8_t comp[] = {1, 0, 0, 0, 1, 'x'};
    assert_int_equal(kvc_grpc_deframer_feed(&d, comp, sizeof comp), KVC_EPARSE);
    kvc_grpc_deframer_free(&d);

    kvc_grpc_deframer_init(&d, 100);
    const uint8_t flag[] = {7, 0, 0, 0, 0};
    assert_int_equal(kvc_grpc_deframer_feed(&d, flag, sizeof flag), KVC_EPARSE);
    kvc_grpc_deframer_free(&d);

    kvc_grpc_deframer_init(&d, 100);
    const uint8_t two[] = {0, 0, 0, 0, 1, 'a', 0, 0, 0, 0, 1, 'b'};
    assert_int_equal(kvc_grpc_deframer_feed(&d, two, sizeof two), KVC_EPARSE);
    kvc_grpc_deframer_free(&d);
}

static void test_deframe_alloc_failure(void **state)
{
    kvc_grpc_deframer_t d;
    kvc_grpc_deframer_init(&d, 100);
    const uint8_t in[] = {0, 0, 0, 0, 2, 'o', 'k'};
    kvc_alloc_fail_after(0);
    assert_int_equal(kvc_grpc_deframer_feed(&d, in, sizeof in), KVC_ENOMEM);
    kvc_alloc_fail_after(-1);
    kvc_grpc_deframer_free(&d);
}

static void test_headers_trailers(void **state)
{
    kvc_grpc_headers_t h;
    kvc_grpc_headers_init(&h);
    assert_int_equal(h.grpc_status, -1);
    assert_int_equal(h.http_status, 0);
    s_feed(&h, "HTTP/2 200 \r\n");
    s_feed(&h, "content-type: application/grpc\r\n");
    s_feed(&h, "grpc-accept-encoding: identity,deflate,gzip\r\n");
    s_feed(&h, "\r\n");
    assert_int_equal(h.http_status, 200);
    assert_int_equal(h.content_type_grpc, 1);
    assert_int_equal(h.grpc_status, -1);
    /* Trailers arrive through the same callback. */
    s_feed(&h, "grpc-status: 0\r\n");
    s_feed(&h, "grpc-message: \r\n");
    assert_int_equal(h.grpc_status, 0);
    assert_string_equal(h.grpc_message, "");
}

static void test_headers_trailers_only(void **state)
{
    kvc_grpc_headers_t h;
    kvc_grpc_headers_init(&h);
    s_feed(&h, "HTTP/2 200\r\n");
    s_feed(&h, "Content-Type: application/grpc+proto\r\n");
    s_feed(&h, "Grpc-Status:   5  \r\n");
    s_feed(&h, "grpc-message: Model mobilenet%20not%20found%3A%20%E2%9C%93\r\n");
    assert_int_equal(h.http_status, 200);
    assert_int_equal(h.content_type_grpc, 1);
    assert_int_equal(h.grpc_status, KVC_GRPC_NOT_FOUND);
    assert_string_equal(h.grpc_message, "Model mobilenet not found: \xe2\x9c\x93");
}

static void test_headers_malformed_status(void **state)
{
    kvc_grpc_headers_t h;
    const char *bad[] = {"grpc-status: x\r\n",    "grpc-status: 17\r\n", "grpc-status: -1\r\n",
                         "grpc-status: 1000\r\n", "grpc-status:\r\n",    "grpc-status: 1 2\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kvc_grpc_headers_init(&h);
        s_feed(&h, bad[i]);
        assert_int_equal(h.grpc_status, KVC_GRPC_UNKNOWN);
    }
    kvc_grpc_headers_init(&h);
    s_feed(&h, "grpc-status: 16");
    assert_int_equal(h.grpc_status, KVC_GRPC_UNAUTHENTICATED);
    /* Names must match exactly, not by prefix. */
    kvc_grpc_headers_init(&h);
    s_feed(&h, "grpc-statusx: 3\r\n");
    s_feed(&h, "x-grpc-status: 3\r\n");
    s_feed(&h, "no colon here\r\n");
    s_feed(&h, ": empty name\r\n");
    assert_int_equal(h.grpc_status, -1);
    /* Content types that only look similar are not gRPC. */
    s_feed(&h, "content-type: application/grpcx\r\n");
    assert_int_equal(h.content_type_grpc, 0);
    s_feed(&h, "content-type: text/html\r\n");
    assert_int_equal(h.content_type_grpc, 0);
    /* Status lines. */
    s_feed(&h, "HTTP/1.1 503 Service Unavailable\r\n");
    assert_int_equal(h.http_status, 503);
    s_feed(&h, "HTTP/2 20\r\n");
    assert_int_equal(h.http_status, 503);
}

static void test_percent_decode(void **state)
{
    char out[16];
    assert_int_equal(kvc_grpc_percent_decode("a%20b", 5, out, sizeof out), 3);
    assert_string_equal(out, "a b");
    /* Malformed escapes stay literal. */
    assert_int_equal(kvc_grpc_percent_decode("%zz%4", 5, out, sizeof out), 5);
    assert_string_equal(out, "%zz%4");
    assert_int_equal(kvc_grpc_percent_decode("%", 1, out, sizeof out), 1);
    assert_string_equal(out, "%");
    assert_int_equal(kvc_grpc_percent_decode("%4a%4A", 6, out, sizeof out), 2);
    assert_string_equal(out, "JJ");
    /* Only n bytes are read, even without a NUL. */
    assert_int_equal(kvc_grpc_percent_decode("%41%42", 3, out, sizeof out), 1);
    assert_string_equal(out, "A");
    /* Output is cut at cap - 1 and always terminated. */
    char small[4];
    assert_int_equal(kvc_grpc_percent_decode("abcdef", 6, small, sizeof small), 3);
    assert_string_equal(small, "abc");
}

static void test_timeout_format(void **state)
{
    char out[16];
    assert_int_equal(kvc_grpc_timeout_format(1, out, sizeof out), KVC_OK);
    assert_string_equal(out, "1m");
    assert_int_equal(kvc_grpc_timeout_format(250, out, sizeof out), KVC_OK);
    assert_string_equal(out, "250m");
    assert_int_equal(kvc_grpc_timeout_format(99999999u, out, sizeof out), KVC_OK);
    assert_string_equal(out, "99999999m");
    assert_int_equal(kvc_grpc_timeout_format(100000000u, out, sizeof out), KVC_OK);
    assert_string_equal(out, "100000S");
    assert_int_equal(kvc_grpc_timeout_format(100000001u, out, sizeof out), KVC_OK);
    assert_string_equal(out, "100001S");
    assert_int_equal(kvc_grpc_timeout_format(UINT32_MAX, out, sizeof out), KVC_OK);
    assert_string_equal(out, "4294968S");
    char tiny[4];
    assert_int_equal(kvc_grpc_timeout_format(1000, tiny, sizeof tiny), KVC_ERANGE);
}

static void test_http_mapping_and_names(void **state)
{
    assert_int_equal(kvc_grpc_code_from_http(400), KVC_GRPC_INTERNAL);
    assert_int_equal(kvc_grpc_code_from_http(401), KVC_GRPC_UNAUTHENTICATED);
    assert_int_equal(kvc_grpc_code_from_http(403), KVC_GRPC_PERMISSION_DENIED);
    assert_int_equal(kvc_grpc_code_from_http(404), KVC_GRPC_UNIMPLEMENTED);
    assert_int_equal(kvc_grpc_code_from_http(429), KVC_GRPC_UNAVAILABLE);
    assert_int_equal(kvc_grpc_code_from_http(502), KVC_GRPC_UNAVAILABLE);
    assert_int_equal(kvc_grpc_code_from_http(503), KVC_GRPC_UNAVAILABLE);
    assert_int_equal(kvc_grpc_code_from_http(504), KVC_GRPC_UNAVAILABLE);
    assert_int_equal(kvc_grpc_code_from_http(500), KVC_GRPC_UNKNOWN);
    assert_string_equal(kvc_grpc_status_name(KVC_GRPC_OK), "OK");
    assert_string_equal(kvc_grpc_status_name(KVC_GRPC_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    assert_string_equal(kvc_grpc_status_name(KVC_GRPC_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(kvc_grpc_status_name(17), "UNKNOWN_CODE");
    assert_string_equal(kvc_grpc_status_name(-1), "UNKNOWN_CODE");
    assert_int_equal(kvc_grpc_code_to_err(KVC_GRPC_OK), KVC_OK);
    assert_int_equal(kvc_grpc_code_to_err(KVC_GRPC_NOT_FOUND), KVC_ENOENT);
    assert_int_equal(kvc_grpc_code_to_err(KVC_GRPC_UNAVAILABLE), KVC_EUNAVAIL);
    assert_int_equal(kvc_grpc_code_to_err(KVC_GRPC_DEADLINE_EXCEEDED), KVC_ETIMEDOUT);
    assert_int_equal(kvc_grpc_code_to_err(KVC_GRPC_RESOURCE_EXHAUSTED), KVC_ERANGE);
    assert_int_equal(kvc_grpc_code_to_err(KVC_GRPC_INTERNAL), KVC_EIO);
}

static void test_call_rejects_bad_arguments(void **state)
{
    kvc_grpc_client_t *c = kvc_grpc_client_new(NULL);
    assert_non_null(c);
    kvc_grpc_result_t res;
    const uint8_t b[1] = {0};
    const char *bad_urls[] = {"ftp://x:1", "http://", "http://h:1/path", "http://h :1",
                              "localhost:1"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        assert_int_equal(kvc_grpc_call(c, bad_urls[i], "/a.B/C", b, 1, 100, &res), KVC_EINVAL);
        assert_int_equal(res.code, KVC_GRPC_INVALID_ARGUMENT);
        kvc_grpc_result_free(&res);
    }
    assert_int_equal(kvc_grpc_call(c, "http://h:1", "a.B/C", b, 1, 100, &res), KVC_EINVAL);
    assert_int_equal(kvc_grpc_call(c, "http://h:1", "/a B", b, 1, 100, &res), KVC_EINVAL);
    assert_int_equal(kvc_grpc_call(c, "http://h:1", "/a.B/C", b, 1, 0, &res), KVC_EINVAL);
    assert_int_equal(kvc_grpc_call(c, "http://h:1", "/a.B/C", NULL, 1, 100, &res), KVC_EINVAL);
    kvc_grpc_stats_t st;
    kvc_grpc_client_stats(c, &st);
    assert_int_equal(st.calls, 0);
    kvc_grpc_client_destroy(&c);
    assert_null(c);
    kvc_grpc_client_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_is_big_endian),
        cmocka_unit_test(test_deframe_whole_message),
        cmocka_unit_test(test_deframe_byte_by_byte),
        cmocka_unit_test(test_deframe_empty_message),
        cmocka_unit_test(test_deframe_no_body),
        cmocka_unit_test(test_deframe_bound),
        cmocka_unit_test(test_deframe_rejects_compressed_and_second),
        cmocka_unit_test(test_deframe_alloc_failure),
        cmocka_unit_test(test_headers_trailers),
        cmocka_unit_test(test_headers_trailers_only),
        cmocka_unit_test(test_headers_malformed_status),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_timeout_format),
        cmocka_unit_test(test_http_mapping_and_names),
        cmocka_unit_test(test_call_rejects_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
