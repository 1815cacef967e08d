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
    assert_int_equal(kvc_route_parse("POST", "/v1/models/mobilenet:predict", &r, msg, sizeof msg),
                     0);
    assert_int_equal(r.kind, KVC_ROUTE_TFS_PREDICT);
    assert_string_equal(r.model, "mobilenet");
    assert_int_equal(r.version, -1);
    assert_string_equal(r.label, "");

    assert_int_equal(
        kvc_route_parse("POST", "/v1/models/m_1.v2/versions/42:predict", &r, msg, sizeof msg), 0);
    assert_string_equal(r.model, "m_1.v2");
    assert_int_equal(r.version, 42);

    assert_int_equal(
        kvc_route_parse("POST", "/v1/models/bert/labels/stable:predict", &r, msg, sizeof msg), 0);
    assert_string_equal(r.label, "stable");
    assert_int_equal(r.version, -1);

    assert_int_equal(kvc_route_parse("GET", "/v1/models/bert", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_TFS_STATUS);
    assert_int_equal(kvc_route_parse("GET", "/v1/models/bert/versions/3", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_TFS_STATUS);
    assert_int_equal(r.version, 3);
    assert_int_equal(
        kvc_route_parse("GET", "/v1/models/bert/versions/3/metadata", &r, msg, sizeof msg), 0);
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
    assert_int_equal(
        kvc_route_parse("GET", "/v2/models/yolov5/versions/7/ready", &r, msg, sizeof msg), 0);
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
        "/",
        "/v1",
        "/v1/models/",
        "/v1/models/a b:predict",
        "/v1/models/..:predict",
        "/v1/models/m/versions/x:predict",
        "/v1/models/m/versions/v1:predict",
        "/v1/models/m/versions/-1:predict",
        "/v1/models/m/versions/+1:predict",
        "/v1/models/m/versions/:predict",
        "/v2/models/m/versions//infer",
        "/v2/models/m/versions/a%20b/infer",
        "/v2/models/m/versions/../infer",
        "/v1/models/m:explain",
        "/v1/models/m/other",
        "/v1/models/m/labels/:predict",
        "/v2/models//infer",
        "/v2/models/m/infer/x",
        "/v2/health",
        "/metrics/x",
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

/* /v1 versions are read as TF Serving reads them: any decimal that fits an
 * int64 (the model server says whether it has it), written back shortest. */
static void test_v1_versions_are_int64(void **state)
{
    assert_int_equal(
        kvc_route_parse("POST", "/v1/models/bert/versions/0:predict", &r, msg, sizeof msg), 0);
    assert_int_equal(r.version, 0);
    assert_string_equal(r.version_name, "0");
    assert_int_equal(kvc_route_parse("GET", "/v1/models/bert/versions/007", &r, msg, sizeof msg),
                     0);
    assert_int_equal(r.version, 7);
    assert_string_equal(r.version_name, "7");
    assert_int_equal(kvc_route_parse("POST", "/v1/models/m/versions/9223372036854775807:predict",
                                     &r, msg, sizeof msg),
                     0);
    assert_true(r.version == INT64_MAX);
    assert_string_equal(r.version_name, "9223372036854775807");
    assert_int_equal(kvc_route_parse("POST", "/v1/models/m/versions/0009223372036854775807:predict",
                                     &r, msg, sizeof msg),
                     0);
    assert_true(r.version == INT64_MAX);
    /* One past int64: TF Serving's own answer, 400. */
    assert_int_equal(kvc_route_parse("POST", "/v1/models/m/versions/9223372036854775808:predict",
                                     &r, msg, sizeof msg),
                     400);
    assert_string_equal(msg, "Failed to convert version: 9223372036854775808 to numeric.");
    assert_int_equal(kvc_route_parse("GET", "/v1/models/m/versions/99999999999999999999999", &r,
                                     msg, sizeof msg),
                     400);
    assert_string_equal(msg, "Failed to convert version: 99999999999999999999999 to numeric.");
    /* Not a number at all is no path of TF Serving's. */
    assert_int_equal(
        kvc_route_parse("GET", "/v1/models/m/versions/99999999999999999999x", &r, msg, sizeof msg),
        404);
    assert_string_equal(msg, "invalid model version in the path");
    /* No version: empty name, -1. */
    assert_int_equal(kvc_route_parse("POST", "/v1/models/m:predict", &r, msg, sizeof msg), 0);
    assert_string_equal(r.version_name, "");
    assert_int_equal(r.version, -1);
}

/* /v2 versions are strings (KServe v2), kept as given; numeric ones also
 * carry their number for TF Serving backends. */
static void test_v2_versions_are_strings(void **state)
{
    assert_int_equal(
        kvc_route_parse("POST", "/v2/models/bert/versions/v1/infer", &r, msg, sizeof msg), 0);
    assert_int_equal(r.kind, KVC_ROUTE_V2_INFER);
    assert_string_equal(r.version_name, "v1");
    assert_int_equal(r.version, -1);
    assert_int_equal(
        kvc_route_parse("GET", "/v2/models/bert/versions/2024-01.rc_1/ready", &r, msg, sizeof msg),
        0);
    assert_int_equal(r.kind, KVC_ROUTE_V2_MODEL_READY);
    assert_string_equal(r.version_name, "2024-01.rc_1");
    assert_int_equal(r.version, -1);
    assert_int_equal(kvc_route_parse("GET", "/v2/models/bert/versions/007", &r, msg, sizeof msg),
                     0);
    assert_string_equal(r.version_name, "007");
    assert_int_equal(r.version, 7);
    assert_int_equal(kvc_route_parse("GET", "/v2/models/bert/versions/0", &r, msg, sizeof msg), 0);
    assert_string_equal(r.version_name, "0");
    assert_int_equal(r.version, 0);
    /* Decimal past int64: a string only. */
    assert_int_equal(kvc_route_parse("GET", "/v2/models/bert/versions/99999999999999999999", &r,
                                     msg, sizeof msg),
                     0);
    assert_string_equal(r.version_name, "99999999999999999999");
    assert_int_equal(r.version, -1);
    /* 64 bytes at most. */
    char path[160] = "/v2/models/m/versions/";
    size_t at = strlen(path);
    memset(path + at, 'v', 64);
    memcpy(path + at + 64, "/infer", 7);
    assert_int_equal(kvc_route_parse("POST", path, &r, msg, sizeof msg), 0);
    assert_int_equal(strlen(r.version_name), 64);
    memset(path + at, 'v', 65);
    memcpy(path + at + 65, "/infer", 7);
    assert_int_equal(kvc_route_parse("POST", path, &r, msg, sizeof msg), 404);
    assert_string_equal(msg, "invalid model version in the path");
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
        cmocka_unit_test(test_v1_versions_are_int64),
        cmocka_unit_test(test_v2_versions_are_strings),
        cmocka_unit_test(test_wrong_method_is_405),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
