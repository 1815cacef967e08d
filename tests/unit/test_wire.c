/* Unit tests of peer/wire.c: the federation envelope codec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "wire.h"

/* Packs an envelope with the given sender and a Ping body. */
static uint8_t *s_ping(const char *sender, uint64_t nonce, size_t *len)
{
    Kvc__Fed__Ping ping = KVC__FED__PING__INIT;
    ping.nonce = nonce;
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.sender = (char *)sender;
    env.seq = 7;
    env.body_case = KVC__FED__ENVELOPE__BODY_PING;
    env.ping = &ping;
    uint8_t *buf = NULL;
    assert_int_equal(kvc_wire_encode(&env, &buf, len), KVC_OK);
    return buf;
}

static void test_round_trip(void **state)
{
    size_t len;
    uint8_t *buf = s_ping("site-a/p1", 0x1122334455667788ull, &len);
    Kvc__Fed__Envelope *env = NULL;
    kvc_reject_t why = KVC_REJECT__COUNT;
    assert_int_equal(kvc_wire_decode(buf, len, &env, &why), KVC_OK);
    assert_non_null(env);
    assert_int_equal(env->version, KVC_WIRE_VERSION);
    assert_string_equal(env->sender, "site-a/p1");
    assert_int_equal(env->seq, 7);
    assert_int_equal(env->body_case, KVC__FED__ENVELOPE__BODY_PING);
    assert_true(env->ping->nonce == 0x1122334455667788ull);
    assert_int_equal(why, KVC_REJECT__COUNT); /* untouched on success */
    kvc_wire_free(&env);
    assert_null(env);
    kvc_free(buf);
}

/* Every allocation of a decode can fail: each failure is KVC_ENOMEM with
 * no reject reason (the sender did nothing wrong) and no leak (ASan), and
 * with enough memory the same bytes decode. */
static void test_decode_allocation_failures(void **state)
{
    size_t len;
    uint8_t *buf = s_ping("site-a/p1", 42, &len);
    int failures = 0, n;
    for (n = 0; n < 1000; n++) {
        Kvc__Fed__Envelope *env = NULL;
        kvc_reject_t why = KVC_REJECT__COUNT;
        kvc_alloc_fail_after(n);
        int rc = kvc_wire_decode(buf, len, &env, &why);
        kvc_alloc_fail_after(-1);
        if (rc == KVC_OK) {
            assert_non_null(env);
            assert_true(env->ping->nonce == 42);
            kvc_wire_free(&env);
            break;
        }
        assert_int_equal(rc, KVC_ENOMEM);
        assert_null(env);
        assert_int_equal(why, KVC_REJECT__COUNT);
        failures++;
    }
    assert_true(n < 1000);
    assert_int_equal(failures, n);
    assert_true(failures >= 2); /* the envelope and its ping body at least */
    kvc_free(buf);
}

static void test_rejects_bad_sender(void **state)
{
    const char *bad[] = {"", "nosite", "/p1", "a/", "A/p1", "a/p_1", "-a/p1", "a/p1-", "a/b/c"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len;
        uint8_t *buf = s_ping(bad[i], 1, &len);
        Kvc__Fed__Envelope *env = NULL;
        kvc_reject_t why = KVC_REJECT__COUNT;
        assert_int_equal(kvc_wire_decode(buf, len, &env, &why), KVC_EPARSE);
        assert_null(env);
        assert_int_equal(why, KVC_REJECT_BAD_SENDER);
        kvc_free(buf);
    }
}

static void test_rejects_other_version(void **state)
{
    Kvc__Fed__Ping ping = KVC__FED__PING__INIT;
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.version = 2;
    env.sender = "a/p1";
    env.body_case = KVC__FED__ENVELOPE__BODY_PING;
    env.ping = &ping;
    uint8_t buf[64];
    size_t len = kvc__fed__envelope__pack(&env, buf);
    Kvc__Fed__Envelope *out = NULL;
    kvc_reject_t why;
    assert_int_equal(kvc_wire_decode(buf, len, &out, &why), KVC_ERANGE);
    assert_int_equal(why, KVC_REJECT_VERSION);
}

static void test_rejects_garbage_and_empty_body(void **state)
{
    Kvc__Fed__Envelope *out = NULL;
    kvc_reject_t why;
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(kvc_wire_decode(junk, sizeof junk, &out, &why), KVC_EPARSE);
    assert_int_equal(why, KVC_REJECT_MALFORMED);
    /* a valid envelope with no body at all */
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.version = 1;
    env.sender = "a/p1";
    uint8_t buf[32];
    size_t len = kvc__fed__envelope__pack(&env, buf);
    assert_int_equal(kvc_wire_decode(buf, len, &out, &why), KVC_EPARSE);
    assert_int_equal(why, KVC_REJECT_MALFORMED);
    assert_null(out);
}

static void test_rejects_field_number_zero(void **state)
{
    /* found by fuzz_envelope: tag varint 0x81 0x00 is field 0, wire type 1 */
    const uint8_t in[] = {0x08, 0x01, 0x12, 0x04, 'j', '/', 'j', '1', 0x81, 0x00,
                          'j',  0,    'j',  0,    'j', 0,   'j', 0,   0x6a, 0x00};
    Kvc__Fed__Envelope *out = NULL;
    kvc_reject_t why;
    assert_int_equal(kvc_wire_decode(in, sizeof in, &out, &why), KVC_EPARSE);
    assert_int_equal(why, KVC_REJECT_MALFORMED);
    assert_null(out);
}

/* The same inside a body message: protobuf-c keeps it there too and would
 * write it back as bytes it then refuses (found by fuzz_envelope). Unknown
 * fields with real numbers, a newer peer's additions, still pass. */
static void test_rejects_field_number_zero_nested(void **state)
{
    const uint8_t in[] = {0x08, 0x01, 0x12, 0x04, 'a', '/', 'p', '1', 0x6a, 0x0a,
                          0x81, 0x00, 1,    2,    3,   4,   5,   6,   7,    8};
    Kvc__Fed__Envelope *out = NULL;
    kvc_reject_t why;
    assert_int_equal(kvc_wire_decode(in, sizeof in, &out, &why), KVC_EPARSE);
    assert_int_equal(why, KVC_REJECT_MALFORMED);
    assert_null(out);

    const uint8_t later[] = {0x08, 0x01, 0x12, 0x04, 'a', '/', 'p', '1', 0x6a, 0x02, 0x78, 0x05};
    assert_int_equal(kvc_wire_decode(later, sizeof later, &out, &why), KVC_OK);
    assert_int_equal(out->body_case, KVC__FED__ENVELOPE__BODY_PONG);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(kvc_wire_encode(out, &buf, &len), KVC_OK);
    Kvc__Fed__Envelope *again = NULL;
    assert_int_equal(kvc_wire_decode(buf, len, &again, &why), KVC_OK);
    assert_int_equal(again->body_case, KVC__FED__ENVELOPE__BODY_PONG);
    kvc_wire_free(&again);
    kvc_wire_free(&out);
    kvc_free(buf);
}

static void test_rejects_oversize(void **state)
{
    static uint8_t big[KVC_WIRE_MAX + 1];
    Kvc__Fed__Envelope *out = NULL;
    kvc_reject_t why;
    assert_int_equal(kvc_wire_decode(big, sizeof big, &out, &why), KVC_EPARSE);
    assert_int_equal(why, KVC_REJECT_OVERSIZE);
}

static void test_rejects_hello_without_valid_credential_sizes(void **state)
{
    uint8_t sig[63] = {0};
    Kvc__Fed__Credential cred = KVC__FED__CREDENTIAL__INIT;
    cred.signature.data = sig;
    cred.signature.len = sizeof sig; /* Ed25519 signatures are 64 bytes */
    Kvc__Fed__Hello hello = KVC__FED__HELLO__INIT;
    hello.credential = &cred;
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.sender = "a/p1";
    env.body_case = KVC__FED__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    uint8_t *buf;
    size_t len;
    assert_int_equal(kvc_wire_encode(&env, &buf, &len), KVC_OK);
    Kvc__Fed__Envelope *out = NULL;
    kvc_reject_t why;
    assert_int_equal(kvc_wire_decode(buf, len, &out, &why), KVC_EPARSE);
    assert_int_equal(why, KVC_REJECT_MALFORMED);
    kvc_free(buf);
    /* and a Hello with no credential at all */
    hello.credential = NULL;
    assert_int_equal(kvc_wire_encode(&env, &buf, &len), KVC_OK);
    assert_int_equal(kvc_wire_decode(buf, len, &out, &why), KVC_EPARSE);
    kvc_free(buf);
}

static void test_every_truncation_is_safe(void **state)
{
    size_t len;
    uint8_t *buf = s_ping("site-a/p1", 99, &len);
    for (size_t n = 0; n < len; n++) {
        Kvc__Fed__Envelope *out = NULL;
        kvc_reject_t why;
        int rc = kvc_wire_decode(buf, n, &out, &why);
        if (rc == KVC_OK) /* a prefix may still be a valid message */
            kvc_wire_free(&out);
        else
            assert_null(out);
    }
    kvc_free(buf);
}

/* A core's body goes out and comes back by kind: kinds the proto has
 * (membership, 20; election, 40) as their fields, a kind it lacks (98: a newer peer's) as an
 * unknown field that decodes, is found by kvc_wire_body and is not a
 * reject. */
static void test_core_bodies_by_kind(void **state)
{
    const uint32_t kinds[] = {20, 40, 98};
    const Kvc__Fed__Envelope__BodyCase cases[] = {KVC__FED__ENVELOPE__BODY_MEMBERSHIP,
                                                  KVC__FED__ENVELOPE__BODY_ELECTION,
                                                  KVC__FED__ENVELOPE__BODY__NOT_SET};
    for (size_t k = 0; k < 3; k++) {
        Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
        kvc_wire_spare_t spare = {0};
        env.sender = "site-a/p1";
        assert_int_equal(kvc_wire_set_body(&env, kinds[k], (const uint8_t *)"abc", 3, &spare), 0);
        uint8_t *buf = NULL;
        size_t len;
        assert_int_equal(kvc_wire_encode(&env, &buf, &len), KVC_OK);
        Kvc__Fed__Envelope *got = NULL;
        kvc_reject_t why = KVC_REJECT__COUNT;
        assert_int_equal(kvc_wire_decode(buf, len, &got, &why), KVC_OK);
        uint32_t kind = 0;
        const uint8_t *data = NULL;
        size_t dlen = 0;
        assert_int_equal(kvc_wire_body(got, &kind, &data, &dlen), KVC_OK);
        assert_int_equal(kind, kinds[k]);
        assert_int_equal(dlen, 3);
        assert_memory_equal(data, "abc", 3);
        assert_int_equal(got->body_case, cases[k]);
        kvc_wire_free(&got);
        kvc_free(buf);
        kvc_wire_spare_free(&spare);
    }
    /* A link message is no core's body. */
    size_t len;
    uint8_t *buf = s_ping("site-a/p1", 1, &len);
    Kvc__Fed__Envelope *got = NULL;
    assert_int_equal(kvc_wire_decode(buf, len, &got, NULL), KVC_OK);
    uint32_t kind;
    const uint8_t *data;
    size_t dlen;
    assert_int_equal(kvc_wire_body(got, &kind, &data, &dlen), KVC_ENOENT);
    kvc_wire_free(&got);
    kvc_free(buf);
    /* Kinds that are not bytes fields, or out of range, cannot be set. */
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    kvc_wire_spare_t spare = {0};
    assert_int_equal(kvc_wire_set_body(&env, 12, (const uint8_t *)"x", 1, &spare), KVC_EINVAL);
    assert_int_equal(kvc_wire_set_body(&env, 2, (const uint8_t *)"x", 1, &spare), KVC_EINVAL);
    assert_int_equal(kvc_wire_set_body(&env, 98, (const uint8_t *)"x", 1, NULL), KVC_EINVAL);
}

/* An envelope with neither a known body nor an unknown length-delimited
 * field is still malformed; an unknown varint field is not a body. */
static void test_unknown_kind_needs_a_body(void **state)
{
    /* version=1 (08 01), sender "a/b" (12 03 ...), field 98 as a varint:
     * tag (98<<3)|0 = 784 = 0x90 0x06, value 1. */
    const uint8_t varint[] = {0x08, 0x01, 0x12, 0x03, 'a', '/', 'b', 0x90, 0x06, 0x01};
    Kvc__Fed__Envelope *got = NULL;
    kvc_reject_t why = KVC_REJECT__COUNT;
    assert_int_equal(kvc_wire_decode(varint, sizeof varint, &got, &why), KVC_EPARSE);
    assert_int_equal(why, KVC_REJECT_MALFORMED);
    /* the same as a length-delimited field (wire type 2: 0x92 0x06) decodes */
    const uint8_t bytes[] = {0x08, 0x01, 0x12, 0x03, 'a', '/', 'b', 0x92, 0x06, 0x01, 'z'};
    assert_int_equal(kvc_wire_decode(bytes, sizeof bytes, &got, &why), KVC_OK);
    uint32_t kind;
    const uint8_t *data;
    size_t dlen;
    assert_int_equal(kvc_wire_body(got, &kind, &data, &dlen), KVC_OK);
    assert_int_equal(kind, 98);
    assert_int_equal(dlen, 1);
    kvc_wire_free(&got);
}

static void test_reject_names(void **state)
{
    assert_string_equal(kvc_reject_name(KVC_REJECT_FOREIGN), "foreign_federation");
    assert_string_equal(kvc_reject_name(KVC_REJECT_REVOKED), "revoked");
    assert_string_equal(kvc_reject_name(KVC_REJECT__COUNT), "unknown");
    for (int i = 0; i < KVC_REJECT__COUNT; i++)
        assert_string_not_equal(kvc_reject_name((kvc_reject_t)i), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_decode_allocation_failures),
        cmocka_unit_test(test_rejects_bad_sender),
        cmocka_unit_test(test_rejects_other_version),
        cmocka_unit_test(test_rejects_garbage_and_empty_body),
        cmocka_unit_test(test_rejects_field_number_zero),
        cmocka_unit_test(test_rejects_field_number_zero_nested),
        cmocka_unit_test(test_rejects_oversize),
        cmocka_unit_test(test_rejects_hello_without_valid_credential_sizes),
        cmocka_unit_test(test_every_truncation_is_safe),
        cmocka_unit_test(test_reject_names),
        cmocka_unit_test(test_core_bodies_by_kind),
        cmocka_unit_test(test_unknown_kind_needs_a_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
