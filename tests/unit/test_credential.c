/*
 * Unit tests of peer/credential.c: issuing and verifying credentials
 * (round trip, every flipped byte, foreign keys, validity window and its
 * not_before and not_after boundaries, hostile blobs signed by the right key), key and identity
 * files (modes, refusal to overwrite, round trips, exact error messages), allocation failures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "credential.h"
#include "federation.pb-c.h"

#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NOW INT64_C(1700000000) /* 2023-11-14T22:13:20Z */

/* ---- helpers ------------------------------------------------------------ */

/* Removes a directory tree made by a test (two levels are enough). */
static void s_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            s_rmtree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Per-test temporary directory. */
static int s_setup(void **state)
{
    char *dir = malloc(64);
    snprintf(dir, 64, "/tmp/kvc-cred-XXXXXX");
    if (!mkdtemp(dir)) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

/* Removes the temporary directory. */
static int s_teardown(void **state)
{
    s_rmtree(*state);
    free(*state);
    return 0;
}

/* Returns the permission bits of path. */
static unsigned s_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (unsigned)(st.st_mode & 0777);
}

/* Reads a small file into a malloc'd NUL-terminated string. */
static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Writes text to path (replacing it). */
static void s_spit(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

/* Returns a malloc'd copy of text with line `line` (1-based) replaced by
 * repl (which includes its own '\n', or is "" to delete the line). */
static char *s_replace_line(const char *text, int line, const char *repl)
{
    const char *p = text;
    for (int i = 1; i < line; i++) {
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    const char *end = strchr(p, '\n');
    end = end ? end + 1 : p + strlen(p);
    size_t n = (size_t)(p - text) + strlen(repl) + strlen(end) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(p - text), text, repl, end);
    return out;
}

/* Issues a standard credential: site edge-1, name gw-a, two roles, 30 days. */
static void s_issue(const kvc_ca_t *ca, kvc_identity_t *id)
{
    const char *roles[] = {"gateway", "coordinator"};
    kvc_err_t err = {0};
    assert_int_equal(kvc_cred_issue(ca, "edge-1", "gw-a", roles, 2, NOW, 30, id, &err), KVC_OK);
}

/* Builds and signs a credential with arbitrary (possibly invalid) fields. */
typedef struct {
    uint32_t version;
    const char *site;
    const char *name;
    size_t n_roles;
    size_t curve_len;
    size_t ca_len;
    size_t sig_len;
    int64_t not_before; /* unix seconds */
    int64_t not_after;
} s_craft_t;

/* Packs a crafted credential signed by ca into blob; returns its length. */
static size_t s_craft(const kvc_ca_t *ca, const s_craft_t *c, uint8_t *blob, size_t cap)
{
    static char role_buf[16][8];
    char *roles[16];
    uint8_t curve[40] = {7}, ca_pub[40] = {0};
    memcpy(ca_pub, ca->public_key, 32);
    for (size_t i = 0; i < c->n_roles && i < 16; i++) {
        snprintf(role_buf[i], sizeof role_buf[i], "r%zu", i);
        roles[i] = role_buf[i];
    }
    Kvc__Fed__CredentialBody b = KVC__FED__CREDENTIAL_BODY__INIT;
    b.version = c->version;
    b.site = (char *)c->site;
    b.name = (char *)c->name;
    b.n_roles = c->n_roles;
    b.roles = roles;
    b.curve_public.data = curve;
    b.curve_public.len = c->curve_len;
    b.ca_public.data = ca_pub;
    b.ca_public.len = c->ca_len;
    b.not_before = c->not_before;
    b.not_after = c->not_after;
    uint8_t msg[4096];
    memcpy(msg, "kvc-credential-v1", 17);
    size_t blen = kvc__fed__credential_body__pack(&b, msg + 17);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, msg, 17 + blen, ca->secret_key);
    Kvc__Fed__Credential cr = KVC__FED__CREDENTIAL__INIT;
    cr.body.data = msg + 17;
    cr.body.len = blen;
    cr.signature.data = sig;
    cr.signature.len = c->sig_len;
    assert_true(kvc__fed__credential__get_packed_size(&cr) <= cap);
    return kvc__fed__credential__pack(&cr, blob);
}

static const s_craft_t s_good = {1, "edge-1", "gw-a", 1, 32, 32, 64, NOW, NOW + 1000};

/* ---- credentials -------------------------------------------------------- */

static void test_issue_verify_round_trip(void **state)
{
    kvc_ca_t ca;
    kvc_identity_t id;
    kvc_cred_t got;
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    s_issue(&ca, &id);
    assert_true(id.cred.blob_len > 0 && id.cred.blob_len <= KVC_CRED_BLOB_MAX);
    assert_int_equal(
        kvc_cred_verify(id.cred.blob, id.cred.blob_len, ca.public_key, NOW + 10, &got, &err),
        KVC_OK);
    assert_string_equal(got.site, "edge-1");
    assert_string_equal(got.name, "gw-a");
    assert_int_equal(got.n_roles, 2);
    assert_string_equal(got.roles[0], "gateway");
    assert_string_equal(got.roles[1], "coordinator");
    assert_memory_equal(got.curve_public, id.cred.curve_public, 32);
    assert_memory_equal(got.ca_public, ca.public_key, 32);
    assert_int_equal(got.not_before, NOW);
    assert_int_equal(got.not_after, NOW + 30 * 86400);
    assert_int_equal(got.blob_len, id.cred.blob_len);
    assert_memory_equal(got.blob, id.cred.blob, got.blob_len);
    /* The secret belongs to the certified public key. */
    uint8_t pk[32];
    assert_int_equal(crypto_scalarmult_base(pk, id.curve_secret), 0);
    assert_memory_equal(pk, id.cred.curve_public, 32);
    /* No roles is fine too. */
    kvc_identity_t bare;
    assert_int_equal(kvc_cred_issue(&ca, "s", "n", NULL, 0, NOW, 1, &bare, &err), KVC_OK);
    assert_int_equal(
        kvc_cred_verify(bare.cred.blob, bare.cred.blob_len, ca.public_key, NOW, &got, &err),
        KVC_OK);
    assert_int_equal(got.n_roles, 0);
    kvc_identity_wipe(&id);
    uint8_t zero[32] = {0};
    assert_memory_equal(id.curve_secret, zero, 32);
}

static void test_every_flipped_byte_is_rejected(void **state)
{
    kvc_ca_t ca;
    kvc_identity_t id;
    kvc_cred_t got;
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    s_issue(&ca, &id);
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    size_t tried = 0;
    for (size_t i = 0; i < id.cred.blob_len; i++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            uint8_t copy[KVC_CRED_BLOB_MAX];
            memcpy(copy, id.cred.blob, id.cred.blob_len);
            copy[i] ^= masks[m];
            int rc = kvc_cred_verify(copy, id.cred.blob_len, ca.public_key, NOW, &got, &err);
            if (!(rc == KVC_EPARSE || rc == KVC_ECRYPTO || rc == KVC_EFOREIGN || rc == KVC_EINVAL))
                fail_msg("byte %zu ^ 0x%02x: rc %d (%s)", i, masks[m], rc, err.msg);
            assert_int_equal(err.code, rc);
            tried++;
        }
    }
    assert_int_equal(tried, id.cred.blob_len * 3);
}

static void test_foreign_ca(void **state)
{
    kvc_ca_t ca, other;
    kvc_identity_t id;
    kvc_cred_t got;
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    assert_int_equal(kvc_ca_generate(&other), KVC_OK);
    s_issue(&ca, &id);
    assert_int_equal(
        kvc_cred_verify(id.cred.blob, id.cred.blob_len, other.public_key, NOW, &got, &err),
        KVC_EFOREIGN);
    char a[65], b[65], want[200];
    kvc_key_hex(ca.public_key, a);
    kvc_key_hex(other.public_key, b);
    snprintf(want, sizeof want,
             "credential: signed by a different federation key (%.8s\u2026), expected "
             "%.8s\u2026",
             a, b);
    assert_string_equal(err.msg, want);
    assert_int_equal(err.code, KVC_EFOREIGN);
    /* Nothing is left in out after a failure. */
    assert_int_equal(got.blob_len, 0);
    assert_string_equal(got.site, "");
}

static void test_validity_window(void **state)
{
    kvc_ca_t ca;
    kvc_identity_t id;
    kvc_cred_t got;
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    s_issue(&ca, &id);
    const uint8_t *b = id.cred.blob;
    size_t n = id.cred.blob_len;
    assert_int_equal(kvc_cred_verify(b, n, ca.public_key, NOW, &got, &err), KVC_OK);
    assert_int_equal(kvc_cred_verify(b, n, ca.public_key, NOW + 30 * 86400, &got, &err), KVC_OK);
    assert_int_equal(kvc_cred_verify(b, n, ca.public_key, NOW + 30 * 86400 + 1, &got, &err),
                     KVC_EEXPIRED);
    assert_string_equal(err.msg, "credential: expired at 2023-12-14T22:13:20Z");
    assert_int_equal(kvc_cred_verify(b, n, ca.public_key, NOW - 1, &got, &err), KVC_EEXPIRED);
    assert_string_equal(err.msg, "credential: not valid before 2023-11-14T22:13:20Z");
}

/* A credential whose validity starts later than now (issued ahead, or a
 * clock behind): refused until not_before with a message naming that time,
 * accepted from not_before itself through not_after, refused after. */
static void test_not_before(void **state)
{
    kvc_ca_t ca;
    kvc_cred_t got;
    kvc_err_t err = {0};
    uint8_t blob[4096];
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    s_craft_t c = s_good;
    c.not_before = NOW + 3600; /* 2023-11-14T23:13:20Z */
    c.not_after = NOW + 7200;  /* 2023-11-15T00:13:20Z */
    size_t n = s_craft(&ca, &c, blob, sizeof blob);

    const int64_t early[] = {INT64_MIN, 0, NOW, NOW + 3599};
    for (size_t i = 0; i < sizeof early / sizeof early[0]; i++) {
        memset(&err, 0, sizeof err);
        memset(&got, 0x5a, sizeof got);
        assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, early[i], &got, &err),
                         KVC_EEXPIRED);
        assert_int_equal(err.code, KVC_EEXPIRED);
        assert_string_equal(err.msg, "credential: not valid before 2023-11-14T23:13:20Z");
        /* Nothing of a refused credential is handed out. */
        assert_string_equal(got.site, "");
        assert_int_equal(got.not_before, 0);
        assert_int_equal(got.blob_len, 0);
    }
    const int64_t valid[] = {NOW + 3600, NOW + 3601, NOW + 7199, NOW + 7200};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, valid[i], &got, &err), KVC_OK);
        assert_string_equal(got.site, "edge-1");
        assert_int_equal(got.not_before, NOW + 3600);
        assert_int_equal(got.not_after, NOW + 7200);
    }
    const int64_t late[] = {NOW + 7201, INT64_MAX};
    for (size_t i = 0; i < sizeof late / sizeof late[0]; i++) {
        assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, late[i], &got, &err),
                         KVC_EEXPIRED);
        assert_string_equal(err.msg, "credential: expired at 2023-11-15T00:13:20Z");
    }

    /* Time is judged only on a verified body: a not-yet-valid credential
     * with a broken signature is a bad signature, whatever the time. */
    uint8_t bad[4096];
    memcpy(bad, blob, n);
    bad[n - 1] ^= 0x01; /* the signature is the last field */
    assert_int_equal(kvc_cred_verify(bad, n, ca.public_key, NOW, &got, &err), KVC_ECRYPTO);
    assert_string_equal(err.msg, "credential: bad signature (tampered or corrupt)");

    /* not_before past the range the time printer knows is shown in seconds. */
    c.not_before = c.not_after = INT64_MAX;
    n = s_craft(&ca, &c, blob, sizeof blob);
    assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, NOW, &got, &err), KVC_EEXPIRED);
    assert_string_equal(err.msg, "credential: not valid before @9223372036854775807");
    assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, INT64_MAX, &got, &err), KVC_OK);
}

/* A window that ends before it starts admits no time at all: before
 * not_before it is "not valid before", from there on "expired". */
static void test_inverted_window_never_valid(void **state)
{
    kvc_ca_t ca;
    kvc_cred_t got;
    kvc_err_t err = {0};
    uint8_t blob[4096];
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    s_craft_t c = s_good;
    c.not_before = NOW + 10;
    c.not_after = NOW;
    size_t n = s_craft(&ca, &c, blob, sizeof blob);
    for (int64_t t = NOW - 2; t <= NOW + 12; t++) {
        assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, t, &got, &err), KVC_EEXPIRED);
        assert_string_equal(err.msg, t < NOW + 10
                                         ? "credential: not valid before 2023-11-14T22:13:30Z"
                                         : "credential: expired at 2023-11-14T22:13:20Z");
    }
}

static void test_truncated_and_oversize_blobs(void **state)
{
    kvc_ca_t ca;
    kvc_identity_t id;
    kvc_cred_t got;
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    s_issue(&ca, &id);
    for (size_t len = 0; len < id.cred.blob_len; len++) {
        int rc = kvc_cred_verify(id.cred.blob, len, ca.public_key, NOW, &got, &err);
        if (rc == KVC_OK)
            fail_msg("truncated to %zu bytes was accepted", len);
    }
    assert_int_equal(kvc_cred_verify(id.cred.blob, 0, ca.public_key, NOW, &got, &err), KVC_EPARSE);
    assert_string_equal(err.msg, "credential: empty");
    assert_int_equal(kvc_cred_verify(NULL, 10, ca.public_key, NOW, &got, &err), KVC_EPARSE);
    /* A valid credential followed by padding up to one byte over the limit. */
    static uint8_t big[KVC_CRED_BLOB_MAX + 1];
    memcpy(big, id.cred.blob, id.cred.blob_len);
    assert_int_equal(kvc_cred_verify(big, sizeof big, ca.public_key, NOW, &got, &err), KVC_EPARSE);
    assert_string_equal(err.msg, "credential: 2049 bytes, more than the 2048 allowed");
    /* Trailing garbage after a valid credential is a parse error, not ignored. */
    big[id.cred.blob_len] = 0xff;
    assert_int_not_equal(kvc_cred_verify(big, id.cred.blob_len + 1, ca.public_key, NOW, &got, &err),
                         KVC_OK);
}

static void test_hostile_contents_signed_by_the_right_key(void **state)
{
    kvc_ca_t ca, other;
    kvc_cred_t got;
    kvc_err_t err = {0};
    uint8_t blob[4096];
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    assert_int_equal(kvc_ca_generate(&other), KVC_OK);

    size_t n = s_craft(&ca, &s_good, blob, sizeof blob);
    assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, NOW, &got, &err), KVC_OK);
    assert_string_equal(got.roles[0], "r0");

    s_craft_t c = s_good;
    c.version = 2;
    n = s_craft(&ca, &c, blob, sizeof blob);
    assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, NOW, &got, &err), KVC_EPARSE);
    assert_string_equal(err.msg, "credential: unsupported version 2 (this build reads version 1)");

    c = s_good;
    c.site = "Edge_1";
    n = s_craft(&ca, &c, blob, sizeof blob);
    assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, NOW, &got, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "credential: site 'Edge_1' must match [a-z0-9-]{1,63} and not "
                                 "start or end with '-'");

    c = s_good;
    c.name = "";
    n = s_craft(&ca, &c, blob, sizeof blob);
    assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, NOW, &got, &err), KVC_EINVAL);

    c = s_good;
    c.n_roles = KVC_MAX_ROLES + 1;
    n = s_craft(&ca, &c, blob, sizeof blob);
    assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, NOW, &got, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "credential: 9 roles, at most 8 allowed");

    c = s_good;
    c.curve_len = 31;
    n = s_craft(&ca, &c, blob, sizeof blob);
    assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, NOW, &got, &err), KVC_ECRYPTO);
    assert_string_equal(err.msg, "credential: peer key is 31 bytes, expected 32");

    c = s_good;
    c.ca_len = 33;
    n = s_craft(&ca, &c, blob, sizeof blob);
    assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, NOW, &got, &err), KVC_ECRYPTO);
    assert_string_equal(err.msg, "credential: federation key is 33 bytes, expected 32");

    c = s_good;
    c.sig_len = 63;
    n = s_craft(&ca, &c, blob, sizeof blob);
    assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, NOW, &got, &err), KVC_ECRYPTO);
    assert_string_equal(err.msg, "credential: signature is 63 bytes, expected 64");

    /* Claims our federation key but is signed by another one. */
    kvc_ca_t forger = other;
    memcpy(forger.public_key, ca.public_key, 32);
    n = s_craft(&forger, &s_good, blob, sizeof blob);
    assert_int_equal(kvc_cred_verify(blob, n, ca.public_key, NOW, &got, &err), KVC_ECRYPTO);
    assert_string_equal(err.msg, "credential: bad signature (tampered or corrupt)");
}

static void test_issue_rejects_bad_arguments(void **state)
{
    kvc_ca_t ca, empty;
    kvc_identity_t id;
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    assert_int_equal(kvc_cred_issue(&ca, "Edge", "gw", NULL, 0, NOW, 1, &id, &err), KVC_EINVAL);
    assert_string_equal(
        err.msg,
        "credential: site 'Edge' must match [a-z0-9-]{1,63} and not start or end with '-'");
    assert_int_equal(kvc_cred_issue(&ca, "edge", "-gw", NULL, 0, NOW, 1, &id, &err), KVC_EINVAL);
    assert_int_equal(kvc_cred_issue(&ca, "edge", "gw\nx", NULL, 0, NOW, 1, &id, &err), KVC_EINVAL);
    assert_string_equal(
        err.msg,
        "credential: name 'gw?x' must match [a-z0-9-]{1,63} and not start or end with '-'");
    const char *nine[9] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    assert_int_equal(kvc_cred_issue(&ca, "edge", "gw", nine, 9, NOW, 1, &id, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "credential: 9 roles, at most 8 allowed");
    assert_int_equal(kvc_cred_issue(&ca, "edge", "gw", nine, 8, NOW, 1, &id, &err), KVC_OK);
    assert_int_equal(kvc_cred_issue(&ca, "edge", "gw", NULL, 0, NOW, 0, &id, &err), KVC_ERANGE);
    assert_string_equal(err.msg, "credential: validity of 0 days is outside 1..3650");
    assert_int_equal(kvc_cred_issue(&ca, "edge", "gw", NULL, 0, NOW, 3651, &id, &err), KVC_ERANGE);
    assert_int_equal(kvc_cred_issue(&ca, "edge", "gw", NULL, 0, INT64_MAX, 1, &id, &err),
                     KVC_ERANGE);
    memset(&empty, 0, sizeof empty);
    memcpy(empty.public_key, ca.public_key, 32);
    assert_int_equal(kvc_cred_issue(&empty, "edge", "gw", NULL, 0, NOW, 1, &id, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "credential: the federation secret key is not loaded");
}

static void test_roles_and_time_helpers(void **state)
{
    char roles[KVC_MAX_ROLES][KVC_NAME_MAX];
    size_t n = 99;
    kvc_err_t err = {0};
    assert_int_equal(kvc_cred_parse_roles("", roles, &n, &err), KVC_OK);
    assert_int_equal(n, 0);
    assert_int_equal(kvc_cred_parse_roles("gateway,coordinator", roles, &n, &err), KVC_OK);
    assert_int_equal(n, 2);
    assert_string_equal(roles[1], "coordinator");
    assert_int_equal(kvc_cred_parse_roles("a,,b", roles, &n, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "roles: empty role in 'a,,b'");
    assert_int_equal(kvc_cred_parse_roles("a,", roles, &n, &err), KVC_EINVAL);
    assert_int_equal(kvc_cred_parse_roles("a,b,c,d,e,f,g,h,i", roles, &n, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "roles: more than 8");
    assert_int_equal(kvc_cred_parse_roles("Gate", roles, &n, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "roles: 'Gate' must match [a-z0-9-]{1,63} and not start or end "
                                 "with '-'");
    char long_role[100];
    memset(long_role, 'a', 64);
    long_role[64] = '\0';
    assert_int_equal(kvc_cred_parse_roles(long_role, roles, &n, &err), KVC_EINVAL);
    long_role[63] = '\0';
    assert_int_equal(kvc_cred_parse_roles(long_role, roles, &n, &err), KVC_OK);

    char buf[32];
    assert_string_equal(kvc_cred_time_str(0, buf, sizeof buf), "1970-01-01T00:00:00Z");
    assert_string_equal(kvc_cred_time_str(NOW, buf, sizeof buf), "2023-11-14T22:13:20Z");
    assert_string_equal(kvc_cred_time_str(-1, buf, sizeof buf), "@-1");
    assert_string_equal(kvc_cred_time_str(INT64_MAX, buf, sizeof buf), "@9223372036854775807");
}

static void test_verify_survives_allocation_failures(void **state)
{
    kvc_ca_t ca;
    kvc_identity_t id;
    kvc_cred_t got;
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    s_issue(&ca, &id);
    int failures = 0;
    for (long n = 0; n < 100; n++) {
        kvc_alloc_fail_after(n);
        int rc = kvc_cred_verify(id.cred.blob, id.cred.blob_len, ca.public_key, NOW, &got, &err);
        kvc_alloc_fail_after(-1);
        if (rc == KVC_OK)
            break;
        assert_int_equal(rc, KVC_EPARSE);
        failures++;
    }
    /* At least the two unpacks allocate, and verify succeeds once they may. */
    assert_true(failures >= 2);
    assert_true(failures < 100);
}

/* ---- federation key files ----------------------------------------------- */

static void test_ca_files(void **state)
{
    const char *tmp = *state;
    char dir[256], key[300], pub[300];
    snprintf(dir, sizeof dir, "%s/fed", tmp);
    snprintf(key, sizeof key, "%s/federation.key", dir);
    snprintf(pub, sizeof pub, "%s/federation.pub", dir);
    kvc_ca_t ca, loaded;
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_init(dir, &ca, &err), KVC_OK);
    assert_int_equal(s_mode(dir), 0700);
    assert_int_equal(s_mode(key), 0600);
    assert_int_equal(s_mode(pub), 0644);

    assert_int_equal(kvc_ca_load(dir, &loaded, &err), KVC_OK);
    assert_memory_equal(&loaded, &ca, sizeof ca);
    assert_int_equal(kvc_ca_load(key, &loaded, &err), KVC_OK);
    assert_memory_equal(&loaded, &ca, sizeof ca);
    uint8_t pk[32];
    assert_int_equal(kvc_ca_load_public(pub, pk, &err), KVC_OK);
    assert_memory_equal(pk, ca.public_key, 32);

    char *text = s_slurp(pub);
    char hex[65], want[512];
    kvc_key_hex(ca.public_key, hex);
    snprintf(want, sizeof want, "kvc-federation-public-v1\npublic: %s\n", hex);
    assert_string_equal(text, want);
    free(text);

    /* A second init refuses and leaves the key alone. */
    kvc_ca_t again;
    assert_int_equal(kvc_ca_init(dir, &again, &err), KVC_EEXIST);
    snprintf(want, sizeof want, "%s: already exists; refusing to overwrite it", key);
    assert_string_equal(err.msg, want);
    assert_int_equal(kvc_ca_load(dir, &loaded, &err), KVC_OK);
    assert_memory_equal(&loaded, &ca, sizeof ca);
    /* Also when only the public half is there. */
    unlink(key);
    assert_int_equal(kvc_ca_init(dir, &again, &err), KVC_EEXIST);
    snprintf(want, sizeof want, "%s: already exists; refusing to overwrite it", pub);
    assert_string_equal(err.msg, want);
    assert_int_equal(access(key, F_OK), -1);
}

static void test_ca_key_file_errors(void **state)
{
    const char *tmp = *state;
    char dir[256], key[300], want[400];
    snprintf(dir, sizeof dir, "%s/fed", tmp);
    snprintf(key, sizeof key, "%s/federation.key", dir);
    kvc_ca_t ca, other, loaded;
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_init(dir, &ca, &err), KVC_OK);
    assert_int_equal(kvc_ca_generate(&other), KVC_OK);
    char *text = s_slurp(key);

    char sec[129], line[200];
    sodium_bin2hex(sec, sizeof sec, other.secret_key, 64);
    snprintf(line, sizeof line, "secret: %s\n", sec);
    char *bad = s_replace_line(text, 3, line);
    unlink(key);
    s_spit(key, bad, strlen(bad));
    assert_int_equal(kvc_ca_load(dir, &loaded, &err), KVC_ECRYPTO);
    snprintf(want, sizeof want, "%s:3: secret: does not match the public key", key);
    assert_string_equal(err.msg, want);
    free(bad);

    bad = s_replace_line(text, 3, "secret: 00\n");
    s_spit(key, bad, strlen(bad));
    assert_int_equal(kvc_ca_load(dir, &loaded, &err), KVC_EPARSE);
    snprintf(want, sizeof want, "%s:3: secret: must be 128 hex characters", key);
    assert_string_equal(err.msg, want);
    free(bad);

    s_spit(key, "kvc-federation-public-v1\n", 25);
    assert_int_equal(kvc_ca_load(key, &loaded, &err), KVC_EPARSE);
    snprintf(want, sizeof want,
             "%s:1: not a federation key file (first line must be 'kvc-federation-key-v1')", key);
    assert_string_equal(err.msg, want);

    snprintf(want, sizeof want, "%s/nope", tmp);
    assert_int_equal(kvc_ca_load_public(want, loaded.public_key, &err), KVC_ENOENT);
    char msg[512];
    snprintf(msg, sizeof msg, "%s: cannot open: No such file or directory", want);
    assert_string_equal(err.msg, msg);
    free(text);
}

/* ---- identity files ----------------------------------------------------- */

static void test_identity_round_trip(void **state)
{
    const char *tmp = *state;
    char path[300], want[600];
    snprintf(path, sizeof path, "%s/gw-a.id", tmp);
    kvc_ca_t ca;
    kvc_identity_t id, loaded;
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    s_issue(&ca, &id);
    assert_int_equal(kvc_identity_save(&id, path, &err), KVC_OK);
    assert_int_equal(s_mode(path), 0600);
    assert_int_equal(kvc_identity_load(path, &loaded, &err), KVC_OK);
    assert_memory_equal(&loaded, &id, sizeof id);

    char *text = s_slurp(path);
    char pub[65];
    kvc_key_hex(id.cred.curve_public, pub);
    snprintf(want, sizeof want,
             "kvc-identity-v1\nsite: edge-1\nname: gw-a\nroles: gateway,coordinator\n"
             "public: %s\nsecret: ",
             pub);
    assert_memory_equal(text, want, strlen(want));
    assert_non_null(strstr(text, "\nnot_after: 2023-12-14T22:13:20Z\ncredential: "));
    free(text);

    /* Saving again refuses and keeps the file. */
    kvc_identity_t other;
    s_issue(&ca, &other);
    assert_int_equal(kvc_identity_save(&other, path, &err), KVC_EEXIST);
    snprintf(want, sizeof want, "%s: already exists; refusing to overwrite it", path);
    assert_string_equal(err.msg, want);
    assert_int_equal(kvc_identity_load(path, &loaded, &err), KVC_OK);
    assert_memory_equal(loaded.curve_secret, id.curve_secret, 32);

    /* No roles: the line is "roles:" with nothing after it. */
    kvc_identity_t bare;
    snprintf(path, sizeof path, "%s/bare.id", tmp);
    assert_int_equal(kvc_cred_issue(&ca, "s", "n", NULL, 0, NOW, 1, &bare, &err), KVC_OK);
    assert_int_equal(kvc_identity_save(&bare, path, &err), KVC_OK);
    text = s_slurp(path);
    assert_non_null(strstr(text, "\nroles:\npublic: "));
    free(text);
    assert_int_equal(kvc_identity_load(path, &loaded, &err), KVC_OK);
    assert_memory_equal(&loaded, &bare, sizeof bare);
}

/* Checks that parsing text fails with code and exactly msg. */
static void s_expect_parse(const char *text, size_t len, int code, const char *msg)
{
    kvc_identity_t id;
    kvc_err_t err = {0};
    int rc = kvc_identity_parse(text, len, "id.txt", &id, &err);
    if (rc != code || strcmp(err.msg, msg) != 0)
        fail_msg("rc %d (want %d), msg '%s' (want '%s')", rc, code, err.msg, msg);
    uint8_t zero[32] = {0};
    assert_memory_equal(id.curve_secret, zero, 32);
}

static void test_identity_malformed(void **state)
{
    const char *tmp = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/gw-a.id", tmp);
    kvc_ca_t ca;
    kvc_identity_t id, parsed;
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_generate(&ca), KVC_OK);
    s_issue(&ca, &id);
    assert_int_equal(kvc_identity_save(&id, path, &err), KVC_OK);
    char *good = s_slurp(path);
    size_t glen = strlen(good);
    assert_int_equal(kvc_identity_parse(good, glen, "id.txt", &parsed, &err), KVC_OK);
    /* The final newline is optional. */
    assert_int_equal(kvc_identity_parse(good, glen - 1, "id.txt", &parsed, &err), KVC_OK);

    const char *rule = "must match [a-z0-9-]{1,63} and not start or end with '-'";
    char msg[300];
    s_expect_parse("", 0, KVC_EPARSE, "id.txt: empty file, expected a kvc identity file");
    s_expect_parse("kvc-identity-v2\n", 16, KVC_EPARSE,
                   "id.txt:1: not a kvc identity file (first line must be 'kvc-identity-v1')");
    s_expect_parse("kvc-identity-v1\n", 16, KVC_EPARSE, "id.txt:2: missing 'site:' line");
    s_expect_parse("kvc-identity-v1\nsite=edge\n", 26, KVC_EPARSE,
                   "id.txt:2: expected 'site: ...'");
    s_expect_parse("kvc-identity-v1\nsite:edge\n", 26, KVC_EPARSE,
                   "id.txt:2: expected 'site: ...'");
    s_expect_parse("kvc-identity-v1\nsite: edge\r\n", 28, KVC_EPARSE,
                   "id.txt:2: unexpected byte 0x0d");
    s_expect_parse("kvc-identity-v1\nsite: ed\0ge\n", 27, KVC_EPARSE,
                   "id.txt:2: unexpected byte 0x00");
    snprintf(msg, sizeof msg, "id.txt:2: site: 'Edge' %s", rule);
    s_expect_parse("kvc-identity-v1\nsite: Edge\n", 27, KVC_EPARSE, msg);

    struct {
        int line;
        const char *repl;
        int code;
        const char *msg;
    } cases[] = {
        {2, "site: other\n", KVC_EPARSE,
         "id.txt:2: site: 'other' differs from the credential's 'edge-1'"},
        {3, "name: gw-b\n", KVC_EPARSE,
         "id.txt:3: name: 'gw-b' differs from the credential's 'gw-a'"},
        {4, "roles: gateway\n", KVC_EPARSE,
         "id.txt:4: roles: 'gateway' differs from the credential's 'gateway,coordinator'"},
        {4, "roles: gateway,,x\n", KVC_EPARSE, "id.txt:4: roles: empty role in 'gateway,,x'"},
        {5, "public: 1234\n", KVC_EPARSE, "id.txt:5: public: must be 64 hex characters"},
        {6, "secret: zz\n", KVC_EPARSE, "id.txt:6: secret: must be 64 hex characters"},
        {7, "not_after: 2030-01-01T00:00:00Z\n", KVC_EPARSE,
         "id.txt:7: not_after: '2030-01-01T00:00:00Z' differs from the credential's "
         "'2023-12-14T22:13:20Z'"},
        {8, "credential: !!!!\n", KVC_EPARSE, "id.txt:8: credential: not valid base64"},
        {8, "credential: AAAA\n", KVC_EPARSE,
         "id.txt:8: credential: not a valid Credential message"},
        {8, "", KVC_EPARSE, "id.txt:8: missing 'credential:' line"},
        {2, "", KVC_EPARSE, "id.txt:2: expected 'site: ...'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *bad = s_replace_line(good, cases[i].line, cases[i].repl);
        s_expect_parse(bad, strlen(bad), cases[i].code, cases[i].msg);
        free(bad);
    }

    /* Anything after the last field. */
    char *extra = malloc(glen + 2);
    memcpy(extra, good, glen);
    extra[glen] = '\n';
    s_expect_parse(extra, glen + 1, KVC_EPARSE, "id.txt:9: unexpected line after the last field");
    free(extra);

    /* A valid public key that does not match the secret. */
    kvc_identity_t other;
    s_issue(&ca, &other);
    char hex[65], line[100];
    kvc_key_hex(other.curve_secret, hex);
    snprintf(line, sizeof line, "secret: %s\n", hex);
    char *bad = s_replace_line(good, 6, line);
    s_expect_parse(bad, strlen(bad), KVC_ECRYPTO,
                   "id.txt:6: secret: does not match the public key");
    free(bad);
    /* A credential for another key (public and secret agree with each other). */
    char *b64 = strstr(good, "\ncredential: ") + 13;
    char *swap = s_slurp(path);
    snprintf(path, sizeof path, "%s/other.id", tmp);
    assert_int_equal(kvc_identity_save(&other, path, &err), KVC_OK);
    char *otext = s_slurp(path);
    char *ob64 = strstr(otext, "\ncredential: ") + 13;
    size_t prefix = (size_t)(b64 - good);
    char *mixed = malloc(prefix + strlen(ob64) + 1);
    memcpy(mixed, good, prefix);
    memcpy(mixed + prefix, ob64, strlen(ob64) + 1);
    s_expect_parse(mixed, strlen(mixed), KVC_EPARSE,
                   "id.txt:5: public: differs from the credential's key");
    free(mixed);
    free(otext);
    free(swap);
    free(good);
}

static void test_identity_file_limits(void **state)
{
    const char *tmp = *state;
    char path[300], want[400];
    kvc_identity_t id;
    kvc_err_t err = {0};
    snprintf(path, sizeof path, "%s/big.id", tmp);
    char *big = malloc(KVC_CRED_FILE_MAX + 1);
    memset(big, 'a', KVC_CRED_FILE_MAX + 1);
    s_spit(path, big, KVC_CRED_FILE_MAX + 1);
    free(big);
    assert_int_equal(kvc_identity_load(path, &id, &err), KVC_ERANGE);
    snprintf(want, sizeof want, "%s: larger than 16384 bytes", path);
    assert_string_equal(err.msg, want);
    assert_int_equal(kvc_identity_load(tmp, &id, &err), KVC_EIO);
    snprintf(want, sizeof want, "%s: not a regular file", tmp);
    assert_string_equal(err.msg, want);
    /* Blobs over the limit, as well-formed base64, with a matching keypair. */
    uint8_t pk[32], sk[32];
    char pk_hex[65], sk_hex[65], b64[4096], msg[200];
    crypto_box_keypair(pk, sk);
    kvc_key_hex(pk, pk_hex);
    kvc_key_hex(sk, sk_hex);
    static uint8_t blob[KVC_CRED_BLOB_MAX + 2];
    char *text = malloc(8192);
    struct {
        size_t len;
        const char *msg;
    } cases[] = {
        {KVC_CRED_BLOB_MAX + 1, "id.txt:8: credential: 2049 bytes, more than the 2048 allowed"},
        {KVC_CRED_BLOB_MAX + 2, "id.txt:8: credential: value too long (at most 2732 characters)"},
    };
    for (size_t i = 0; i < 2; i++) {
        sodium_bin2base64(b64, sizeof b64, blob, cases[i].len, sodium_base64_VARIANT_ORIGINAL);
        int n = snprintf(text, 8192,
                         "kvc-identity-v1\nsite: a\nname: b\nroles:\npublic: %s\nsecret: %s\n"
                         "not_after: x\ncredential: %s\n",
                         pk_hex, sk_hex, b64);
        snprintf(msg, sizeof msg, "%s", cases[i].msg);
        s_expect_parse(text, (size_t)n, KVC_EPARSE, msg);
    }
    free(text);
}

/* ---- node keys ---------------------------------------------------------- */

static void test_nodekey(void **state)
{
    const char *tmp = *state;
    char path[300], pub[310], want[400];
    snprintf(path, sizeof path, "%s/node.key", tmp);
    snprintf(pub, sizeof pub, "%s.pub", path);
    kvc_nodekey_t key, loaded;
    kvc_err_t err = {0};
    assert_int_equal(kvc_nodekey_generate(path, &key, &err), KVC_OK);
    assert_int_equal(s_mode(path), 0600);
    assert_int_equal(s_mode(pub), 0644);
    uint8_t pk[32];
    assert_int_equal(crypto_scalarmult_base(pk, key.secret_key), 0);
    assert_memory_equal(pk, key.public_key, 32);
    assert_int_equal(kvc_nodekey_load(path, &loaded, &err), KVC_OK);
    assert_memory_equal(&loaded, &key, sizeof key);
    assert_int_equal(kvc_nodekey_load_public(pub, pk, &err), KVC_OK);
    assert_memory_equal(pk, key.public_key, 32);

    /* Overwrite refused, for either half. */
    kvc_nodekey_t again;
    assert_int_equal(kvc_nodekey_generate(path, &again, &err), KVC_EEXIST);
    snprintf(want, sizeof want, "%s: already exists; refusing to overwrite it", path);
    assert_string_equal(err.msg, want);
    char *text = s_slurp(path);
    unlink(path);
    assert_int_equal(kvc_nodekey_generate(path, &again, &err), KVC_EEXIST);
    snprintf(want, sizeof want, "%s: already exists; refusing to overwrite it", pub);
    assert_string_equal(err.msg, want);
    assert_int_equal(access(path, F_OK), -1);

    /* A secret from another key. */
    uint8_t other_pk[32], other_sk[32];
    crypto_box_keypair(other_pk, other_sk);
    char hex[65], line[100];
    kvc_key_hex(other_sk, hex);
    snprintf(line, sizeof line, "secret: %s\n", hex);
    char *bad = s_replace_line(text, 3, line);
    s_spit(path, bad, strlen(bad));
    assert_int_equal(kvc_nodekey_load(path, &loaded, &err), KVC_ECRYPTO);
    snprintf(want, sizeof want, "%s:3: secret: does not match the public key", path);
    assert_string_equal(err.msg, want);
    uint8_t zero[32] = {0};
    assert_memory_equal(loaded.secret_key, zero, 32);
    free(bad);
    free(text);

    /* The public file is not a secret file and vice versa. */
    assert_int_equal(kvc_nodekey_load(pub, &loaded, &err), KVC_EPARSE);
    snprintf(want, sizeof want, "%s:1: not a node key file (first line must be 'kvc-node-key-v1')",
             pub);
    assert_string_equal(err.msg, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_verify_round_trip),
        cmocka_unit_test(test_every_flipped_byte_is_rejected),
        cmocka_unit_test(test_foreign_ca),
        cmocka_unit_test(test_validity_window),
        cmocka_unit_test(test_not_before),
        cmocka_unit_test(test_inverted_window_never_valid),
        cmocka_unit_test(test_truncated_and_oversize_blobs),
        cmocka_unit_test(test_hostile_contents_signed_by_the_right_key),
        cmocka_unit_test(test_issue_rejects_bad_arguments),
        cmocka_unit_test(test_roles_and_time_helpers),
        cmocka_unit_test(test_verify_survives_allocation_failures),
        cmocka_unit_test_setup_teardown(test_ca_files, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_ca_key_file_errors, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_identity_round_trip, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_identity_malformed, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_identity_file_limits, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_nodekey, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
