/* Unit tests of proxy/route.c: every endpoint, every rejection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "route.h"

static kvc_route_t r;
static char msg[128];

static void test_tf_serving_paths(void **state)
{
    assert_int_equal(kvc_route_parse("POST", "/v1/models/mobilenet:predict", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_TFS_PREDICT);
    assert_string_equal(r.model, "mobilenet");
    assert_int_equal(r.version, -1);
    assert_string_equal(r.label, "");

    assert_int_equal(kvc_route_parse("POST", "/v1/models/m_1.v2/versions/42:predict", &r, msg, sizeof msg), 0);
    assert_string_equal(r.model, "m_1.v2");
    assert_int_equal(r.version, 42);

    assert_int_equal(kvc_route_parse("POST", "/v1/models/bert/labels/stable:predict", &r, msg, sizeof msg), 0);
    assert_string_equal(r.label, "stable");
    assert_int_equal(r.version, -1);

    assert_int_equal(kvc_route_parse("GET", "/v1/models/bert", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_TFS_STATUS);
    assert_int_equal(kvc_route_parse("GET", "/v1/models/bert/versions/3", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_TFS_STATUS);
    assert_int_equal(r.version, 3);
    assert_int_equal(kvc_route_parse("GET", "/v1/models/bert/versions/3/metadata", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_TFS_METADATA);
    assert_int_equal(kvc_route_parse("POST", "/v1/models/bert:classify", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_TFS_CLASSIFY);
}

static void test_kserve_paths(void **state)
{
    assert_int_equal(kvc_route_parse("GET", "/v2/health/live", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_V2_LIVE);
    assert_int_equal(kvc_route_parse("GET", "/v2/health/ready", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_V2_READY);
    assert_int_equal(kvc_route_parse("GET", "/v2", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_V2_SERVER);
    assert_int_equal(kvc_route_parse("GET", "/v2/models/yolov5", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_V2_MODEL);
    assert_int_equal(kvc_route_parse("GET", "/v2/models/yolov5/versions/7/ready", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_V2_MODEL_READY);
    assert_int_equal(r.version, 7);
    assert_int_equal(kvc_route_parse("POST", "/v2/models/yolov5/infer", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_V2_INFER);
    assert_string_equal(r.model, "yolov5");
    assert_int_equal(kvc_route_parse("GET", "/metrics", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_METRICS);
}

static void test_rejections(void **state)
{
    const char *not_found[] = {
        "/", "/v1", "/v1/models/", "/v1/models/a b:predict", "/v1/models/..:predict",
        "/v1/models/m/versions/0:predict", "/v1/models/m/versions/01:predict",
        "/v1/models/m/versions/x:predict", "/v1/models/m/versions/1234567890123456789:predict",
        "/v1/models/m:explain", "/v1/models/m/other", "/v1/models/m/labels/:predict",
        "/v2/models//infer", "/v2/models/m/infer/x", "/v2/health", "/metrics/x",
        "/v1/models/m%20:predict",
    };
    for (size_t i = 0; i < sizeof not_found / sizeof not_found[0]; i++) {
        assert_int_equal(kvc_route_parse("POST", not_found[i], &r, msg, sizeof msg), 404);
        assert_true(msg[0] != '\0');
    }
    char longname[200] = "/v1/models/";
    memset(longname + 11, 'a', 129);
    memcpy(longname + 11 + 129, ":predict", 9);
    assert_int_equal(kvc_route_parse("POST", longname, &r, msg, sizeof msg), 404);
    longname[11 + 128] = ':';
    memcpy(longname + 11 + 128, ":predict", 9);
    assert_int_equal(kvc_route_parse("POST", longname, &r, msg, sizeof msg), 0);
    assert_int_equal(strlen(r.model), 128);
}

static void test_wrong_method_is_405(void **state)
{
    assert_int_equal(kvc_route_parse("GET", "/v1/models/m:predict", &r, msg, sizeof msg), 405);
    assert_string_equal(msg, "method GET not allowed here; use POST");
    assert_int_equal(kvc_route_parse("POST", "/v2/health/live", &r, msg, sizeof msg), 405);
    assert_string_equal(msg, "method POST not allowed here; use GET");
    assert_int_equal(kvc_route_parse("DELETE", "/v2/models/m/infer", &r, msg, sizeof msg), 405);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tf_serving_paths),
        cmocka_unit_test(test_kserve_paths),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_wrong_method_is_405),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
