/* Unit tests of peer/model.c: validation of every field with its error,
 * tensor specs and storage URLs, placement, keys, the protobuf records
 * (round trip, hostile bytes) and the YAML form (map preprocessing, bad
 * keys, size bound). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model.h"

static void s_valid(kvc_model_t *m)
{
    kvc_model_init(m);
    strcpy(m->name, "resnet-50");
    m->version = 3;
    strcpy(m->storage, "nfs://nas.lan/exports/models/resnet");
    kvc_err_t err = {0};
    assert_int_equal(kvc_model_tensor_parse("input_1:float32:-1,224,224,3", &m->inputs[0], &err),
                     0);
    m->n_inputs = 1;
    assert_int_equal(kvc_model_tensor_parse("probs:FP32:-1,1000", &m->outputs[0], &err), 0);
    m->n_outputs = 1;
    strcpy(m->preprocess, "224x224 rgb scale=1/255");
}

/* kvc_model_check must fail on m with a message containing want. */
static void s_refused(const kvc_model_t *m, const char *want)
{
    kvc_err_t err = {0};
    assert_int_equal(kvc_model_check(m, &err), KVC_EINVAL);
    if (!strstr(err.msg, want))
        fail_msg("error \"%s\" does not say \"%s\"", err.msg, want);
}

static void test_check_fields(void **state)
{
    (void)state;
    kvc_model_t m;
    s_valid(&m);
    kvc_err_t err = {0};
    assert_int_equal(kvc_model_check(&m, &err), 0);

    s_valid(&m), strcpy(m.name, "ResNet"), s_refused(&m, "name");
    s_valid(&m), strcpy(m.name, "-a"), s_refused(&m, "name");
    s_valid(&m), memset(m.name, 'a', 63), m.name[63] = 0;
    assert_int_equal(kvc_model_check(&m, NULL), 0); /* 63 is the limit */
    s_valid(&m), m.version = 0, s_refused(&m, "version");
    s_valid(&m), m.version = KVC_MODEL_VERSION_MAX + 1, s_refused(&m, "version");
    s_valid(&m), m.framework = 7, s_refused(&m, "framework");
    s_valid(&m), m.inputs[0].dtype = 8, s_refused(&m, "dtype");
    s_valid(&m), m.inputs[1] = m.inputs[0], m.n_inputs = 2, s_refused(&m, "given twice");
    s_valid(&m), m.inputs[1] = m.inputs[0], strcpy(m.inputs[1].name, "mask"), m.n_inputs = 2,
        s_refused(&m, "image_input");
    s_valid(&m), m.outputs[1] = m.outputs[0], m.n_outputs = 2, s_refused(&m, "given twice");
    s_valid(&m), strcpy(m.preprocess, "224x rgb"), s_refused(&m, "preprocess");
    s_valid(&m), strcpy(m.image_input, "nope"), s_refused(&m, "image_input");
    s_valid(&m), strcpy(m.storage, "s3://bucket/x"), s_refused(&m, "storage");
    s_valid(&m), strcpy(m.storage, "nfs://nas/a/../b"), s_refused(&m, "..");
    s_valid(&m), strcpy(m.storage, "nfs://nas"), s_refused(&m, "no path");
    s_valid(&m), strcpy(m.storage, "nfs:///x"), s_refused(&m, "server");
    s_valid(&m), strcpy(m.storage, "nfs://na$s/x"), s_refused(&m, "server");
    s_valid(&m), strcpy(m.sha256, "abc"), s_refused(&m, "sha256");
    s_valid(&m), strcpy(m.placement[0], "region:EU"), m.n_placement = 1,
        s_refused(&m, "placement");
    s_valid(&m), strcpy(m.labels[0], "a b"), m.n_labels = 1, s_refused(&m, "label");
    s_valid(&m), m.replicas = 0, s_refused(&m, "replicas");
    s_valid(&m), m.replicas = KVC_MODEL_REPLICAS_MAX + 1, s_refused(&m, "replicas");
    s_valid(&m), strcpy(m.image, "bad image"), s_refused(&m, "image");
    /* what is accepted */
    s_valid(&m);
    strcpy(m.storage, "iscsi://10.0.0.9:3260/iqn.2024-01.lan.nas:models/0");
    strcpy(m.sha256, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    strcpy(m.placement[0], "all"), strcpy(m.placement[1], "region:eu"),
        strcpy(m.placement[2], "site:lisbon"), m.n_placement = 3;
    assert_int_equal(kvc_model_check(&m, &err), 0);
    strcpy(m.storage, "iscsi://10.0.0.9/models/0");
    s_refused(&m, "iqn");
}

static void test_tensor_parse(void **state)
{
    (void)state;
    kvc_model_tensor_t t;
    kvc_err_t err = {0};
    assert_int_equal(kvc_model_tensor_parse("x:DT_INT64:2,-1", &t, &err), 0);
    assert_string_equal(t.name, "x");
    assert_int_equal(t.dtype, KVC_DT_INT64);
    assert_int_equal(t.n_dims, 2);
    assert_int_equal(t.dims[0], 2);
    assert_int_equal(t.dims[1], -1);
    assert_int_equal(kvc_model_tensor_parse("s:uint8:", &t, &err), 0);
    assert_int_equal(t.n_dims, 0); /* a scalar */
    const char *bad[] = {"x", "x:float32", ":float32:1", "x:float128:1", "x:float32:1,,2",
                         "x:float32:1,", "x:float32:-2", "x:float32:1,2,3,4,5,6,7,8,9",
                         "x:float32:1x2", "x:float32:99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        if (kvc_model_tensor_parse(bad[i], &t, &err) != KVC_EINVAL || !err.msg[0])
            fail_msg("\"%s\" was accepted", bad[i]);
    }
}

static void test_storage_parse(void **state)
{
    (void)state;
    kvc_model_storage_t st;
    assert_int_equal(kvc_model_storage_parse("nfs://[fd00::5]/srv/m", &st, NULL), 0);
    assert_string_equal(st.scheme, "nfs");
    assert_string_equal(st.server, "[fd00::5]");
    assert_string_equal(st.path, "/srv/m");
    assert_int_equal(kvc_model_storage_parse("nfs://nas.lan/srv/m/", &st, NULL), 0);
    assert_int_equal(kvc_model_storage_parse("nfs://nas.lan//srv", &st, NULL), KVC_EINVAL);
    assert_int_equal(kvc_model_storage_parse("nfs://nas.lan/srv/./m", &st, NULL), KVC_EINVAL);
    assert_int_equal(kvc_model_storage_parse("nfs://nas lan/srv", &st, NULL), KVC_EINVAL);
    assert_int_equal(kvc_model_storage_parse("NFS://nas/srv", &st, NULL), KVC_EINVAL);
    assert_int_equal(kvc_model_storage_parse("iscsi://nas:99999/iqn.x/1", &st, NULL), KVC_EINVAL);
    char longurl[700];
    snprintf(longurl, sizeof longurl, "nfs://nas/%0600d", 0);
    assert_int_equal(kvc_model_storage_parse(longurl, &st, NULL), KVC_EINVAL);
}

static void test_placement(void **state)
{
    (void)state;
    kvc_model_t m;
    s_valid(&m);
    assert_true(kvc_model_placed(&m, "lisbon", "eu")); /* none: everywhere */
    strcpy(m.placement[0], "region:eu");
    strcpy(m.placement[1], "site:osaka");
    strcpy(m.placement[2], "quito");
    m.n_placement = 3;
    assert_true(kvc_model_placed(&m, "lisbon", "eu"));
    assert_true(kvc_model_placed(&m, "osaka", "ap"));
    assert_true(kvc_model_placed(&m, "quito", ""));
    assert_false(kvc_model_placed(&m, "lima", "sa"));
    assert_false(kvc_model_placed(&m, "lima", ""));
    assert_false(kvc_model_placed(&m, "eu", "us")); /* a region is not a site */
}

static void test_keys(void **state)
{
    (void)state;
    uint8_t k[KVC_MODEL_KEY_MAX + 64];
    size_t n = kvc_model_key("resnet", 258, k, sizeof k);
    assert_int_equal(n, 6 + 1 + 8);
    assert_memory_equal(k, "resnet\0\0\0\0\0\0\0\1\2", n);
    char name[KVC_MODEL_NAME_MAX];
    uint64_t v = 0;
    assert_int_equal(kvc_model_key_parse(k, n, name, sizeof name, &v), 0);
    assert_string_equal(name, "resnet");
    assert_int_equal(v, 258);
    /* keys of different versions order by version within a name */
    uint8_t k2[KVC_MODEL_KEY_MAX];
    assert_int_equal(kvc_model_key("resnet", 259, k2, sizeof k2), n);
    assert_true(memcmp(k, k2, n) < 0);
    assert_int_equal(kvc_model_key("Bad", 1, k, sizeof k), 0);
    assert_int_equal(kvc_model_key("resnet", 1, k, 10), 0);
    assert_int_equal(kvc_model_key_parse(k2, n - 1, name, sizeof name, &v), KVC_EPARSE);
    /* a NUL inside the name */
    assert_int_equal(kvc_model_key_parse((const uint8_t *)"a\0b\0\0\0\0\0\0\0\0\1", 12, name,
                                         sizeof name, &v),
                     KVC_EPARSE);
    n = kvc_model_status_key("lisbon", "resnet", 1, k, sizeof k);
    assert_int_equal(n, 7 + 7 + 8);
    assert_int_equal(kvc_model_status_key("lisbon", "resnet", 1, k, 12), 0);
}

static void test_record_round_trip(void **state)
{
    (void)state;
    kvc_model_t m, back;
    s_valid(&m);
    strcpy(m.labels[0], "stable"), m.n_labels = 1;
    strcpy(m.placement[0], "region:eu"), m.n_placement = 1;
    strcpy(m.published_by, "lisbon/gw-1");
    m.published_ms = 1765000000123ull;
    m.replicas = 3;
    m.framework = KVC_FW_KSERVE_V2;
    uint8_t buf[KVC_MODEL_RECORD_MAX];
    size_t len = 0;
    assert_int_equal(kvc_model_encode(&m, buf, sizeof buf, &len), 0);
    kvc_err_t err = {0};
    assert_int_equal(kvc_model_decode(buf, len, &back, &err), 0);
    assert_memory_equal(&back, &m, sizeof m); /* both zero-filled past every string */
    assert_int_equal(kvc_model_encode(&m, buf, 10, &len), KVC_ERANGE);
    /* an invalid entry is not encoded */
    m.version = 0;
    assert_int_equal(kvc_model_encode(&m, buf, sizeof buf, &len), KVC_EINVAL);

    kvc_model_status_t s = {.version = 2, .applied = 1, .desired_replicas = 3,
                            .ready_replicas = 1, .updated_ms = 99};
    strcpy(s.site, "lisbon"), strcpy(s.model, "resnet"), strcpy(s.error, "1 of 3 ready");
    strcpy(s.coordinator, "lisbon/gw-2");
    kvc_model_status_t sb;
    assert_int_equal(kvc_model_status_encode(&s, buf, sizeof buf, &len), 0);
    assert_int_equal(kvc_model_status_decode(buf, len, &sb, &err), 0);
    assert_memory_equal(&sb, &s, sizeof s);
}

static void test_record_hostile(void **state)
{
    (void)state;
    kvc_model_t m, back;
    s_valid(&m);
    uint8_t buf[KVC_MODEL_RECORD_MAX + 16];
    size_t len = 0;
    assert_int_equal(kvc_model_encode(&m, buf, sizeof buf, &len), 0);
    kvc_err_t err = {0};
    /* every truncation is refused or decodes to a valid entry; never a crash */
    for (size_t cut = 0; cut < len; cut++) {
        int rc = kvc_model_decode(buf, cut, &back, &err);
        if (rc == 0)
            assert_int_equal(kvc_model_check(&back, NULL), 0);
        else
            assert_int_equal(rc, KVC_EPARSE);
    }
    /* field 1 (name) as a 70-byte string: over the bound */
    uint8_t big[80] = {0x0a, 70};
    memset(big + 2, 'a', 70);
    assert_int_equal(kvc_model_decode(big, 72, &back, &err), KVC_EPARSE);
    assert_int_equal(kvc_model_decode(buf, KVC_MODEL_RECORD_MAX + 1, &back, &err), KVC_EPARSE);
    uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
    assert_int_equal(kvc_model_decode(junk, sizeof junk, &back, &err), KVC_EPARSE);
    /* a status with a site that is no name */
    uint8_t st[] = {0x0a, 2, 'A', '!', 0x12, 1, 'm'};
    kvc_model_status_t s;
    assert_int_equal(kvc_model_status_decode(st, sizeof st, &s, &err), KVC_EPARSE);
}

static void test_yaml(void **state)
{
    (void)state;
    const char *y = "name: mobilenet\n"
                    "version: 4\n"
                    "framework: kserve-v2\n"
                    "storage: nfs://nas/exports/mobilenet\n"
                    "inputs:\n"
                    "  - {name: image, dtype: FP32, shape: [1, 3, 224, 224]}\n"
                    "  - {name: scale, dtype: float32, shape: []}\n"
                    "outputs:\n"
                    "  - name: logits\n"
                    "    dtype: DT_FLOAT\n"
                    "    shape: [1, -1]\n"
                    "image_input: image\n"
                    "preprocess:\n"
                    "  size: [224, 224]\n"
                    "  layout: NCHW\n"
                    "  channels: bgr\n"
                    "  scale: [0, 1]\n"
                    "  mean: [0.485, 0.456, 0.406]\n"
                    "  std: [0.229, 0.224, 0.225]\n"
                    "placement: [region:eu, site:osaka]\n"
                    "labels: canary\n"
                    "replicas: 2\n";
    kvc_model_t m;
    kvc_err_t err = {0};
    assert_int_equal(kvc_model_load_yaml_text(y, strlen(y), &m, &err), 0);
    assert_int_equal(kvc_model_check(&m, &err), 0);
    assert_string_equal(m.name, "mobilenet");
    assert_int_equal(m.version, 4);
    assert_int_equal(m.framework, KVC_FW_KSERVE_V2);
    assert_int_equal(m.n_inputs, 2);
    assert_int_equal(m.inputs[0].n_dims, 4);
    assert_int_equal(m.inputs[0].dims[1], 3);
    assert_int_equal(m.inputs[1].n_dims, 0);
    assert_int_equal(m.outputs[0].dims[1], -1);
    assert_string_equal(m.preprocess, "224x224 nchw bgr scale=1/255 mean=0.485,0.456,0.406 "
                                      "std=0.229,0.224,0.225");
    assert_int_equal(m.n_placement, 2);
    assert_string_equal(m.placement[1], "site:osaka");
    assert_int_equal(m.n_labels, 1);
    assert_int_equal(m.replicas, 2);

    const char *pm = "name: a\nversion: 1\nstorage: nfs://n/p\npreprocess: {size: 8x8, scale: "
                     "[-1, 1]}\n";
    assert_int_equal(kvc_model_load_yaml_text(pm, strlen(pm), &m, &err), 0);
    assert_string_equal(m.preprocess, "8x8 scale=1/127.5 mean=1");
    assert_int_equal(kvc_model_check(&m, &err), 0);

    struct {
        const char *text, *want;
    } bad[] = {
        {"name: a\nflavour: x\n", "unknown key"},
        {"- a\n- b\n", "map of model fields"},
        {"name: [a]\n", "name"},
        {"version: -1\n", "version"},
        {"version: 1x\n", "version"},
        {"replicas: 65\n", "replicas"},
        {"inputs: {name: x}\n", "inputs"},
        {"inputs: [{name: x, dtype: float99}]\n", "dtype"},
        {"inputs: [{name: x, shape: [a]}]\n", "shape"},
        {"inputs: [{name: x, colour: red}]\n", "unknown key"},
        {"preprocess: {size: 8x8, scale: [0, 2]}\n", "scale"},
        {"preprocess: {size: 8x8, scale: [-1, 1], mean: [1]}\n", "already sets"},
        {"name: a\n  b: : :\n", "line"},
        {"", "empty"},
        {"name: &x [*x]\n", "name"}, /* a self-referencing alias is not followed */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        int rc = kvc_model_load_yaml_text(bad[i].text, strlen(bad[i].text), &m, &err);
        if (rc == 0 || !strstr(err.msg, bad[i].want))
            fail_msg("case %zu: rc %d, error \"%s\" does not say \"%s\"", i, rc, err.msg,
                     bad[i].want);
    }
    static char huge[70 * 1024];
    memset(huge, '#', sizeof huge);
    assert_int_equal(kvc_model_load_yaml_text(huge, sizeof huge, &m, &err), KVC_ERANGE);
    assert_int_equal(kvc_model_load_yaml("/nonexistent/model.yaml", &m, &err), KVC_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/model.yaml"));
}

static void test_served_version(void **state)
{
    (void)state;
    uint64_t v = 0;
    kvc_err_t err = {0};
    const char *tfs = "{\"model_version_status\": [{\"version\": \"3\", \"state\": \"AVAILABLE\","
                      " \"status\": {\"error_code\": \"OK\", \"error_message\": \"\"}},"
                      " {\"version\": \"4\", \"state\": \"LOADING\"},"
                      " {\"version\": 2, \"state\": \"AVAILABLE\"}]}";
    assert_int_equal(kvc_model_served_version_parse(tfs, strlen(tfs), &v, &err), 0);
    assert_int_equal(v, 3); /* 4 is still loading */
    const char *ks = "{\"name\": \"m\", \"versions\": [\"1\", \"7\"], \"platform\": \"x\"}";
    assert_int_equal(kvc_model_served_version_parse(ks, strlen(ks), &v, &err), 0);
    assert_int_equal(v, 7);
    const char *none = "{\"model_version_status\": [{\"version\": \"4\", \"state\": \"END\"}]}";
    assert_int_equal(kvc_model_served_version_parse(none, strlen(none), &v, &err), KVC_ENOENT);
    const char *bad[] = {"", "[]", "{\"versions\": [\"-1\"]}", "{\"versions\": [\"x\"]}",
                         "{\"versions\": [1]} x", "{\"model_version_status\": [3]}",
                         "{\"versions\": [\"99999999999999999999999\"]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (kvc_model_served_version_parse(bad[i], strlen(bad[i]), &v, &err) == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_fields),     cmocka_unit_test(test_tensor_parse),
        cmocka_unit_test(test_storage_parse),    cmocka_unit_test(test_placement),
        cmocka_unit_test(test_keys),             cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_record_hostile),   cmocka_unit_test(test_yaml),
        cmocka_unit_test(test_served_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
