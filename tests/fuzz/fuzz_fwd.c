/*
 * fuzz_fwd.c - the forwarding transport's decoders on arbitrary bytes
 * (peer/fwd.h): what a server does with a ForwardRequest before its handler
 * could see it (decode, bounds, then the credential check with the auth
 * cache), and what a client does with a ForwardReply.
 *
 * Input: one mode byte, then
 *   mode even: a 32-byte CURVE key (the connection's User-Id) + a request
 *   mode odd:  a reply
 * The trust key is derived from the fixed seed 1..32, as in fuzz_credential,
 * so seeds signed with it (tests/fuzz/seeds/fuzz_fwd/) reach the cache. The
 * cache persists across inputs and is small, so eviction runs too. Any
 * crash, leak or broken invariant below is a bug.
 */
#include "credential.h"
#include "fwd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NOW INT64_C(1700000000)
#define FUZZ_MAX_BODY 65536

/* Traps when an invariant does not hold. */
static void s_check(int ok)
{
    if (!ok)
        __builtin_trap();
}

/* Is s NULL or a non-empty string without control characters? */
static int s_clean(const char *s)
{
    if (!s)
        return 1;
    if (!s[0])
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static int s_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Revokes keys whose first byte is 0xee. */
static int s_revoked(void *arg, const uint8_t key[32])
{
    (void)arg;
    return key[0] == 0xee;
}

static void s_request(kvc_fwd_auth_t *auth, const uint8_t key[32], const uint8_t *data, size_t size)
{
    kvc_fwd_decoded_t d;
    int known = -1;
    int rc = kvc_fwd_request_decode(data, size, FUZZ_MAX_BODY, &d, &known);
    if (rc != KVC_OK) {
        s_check(rc == KVC_EPARSE || rc == KVC_EINVAL || rc == KVC_ENOMEM);
        s_check(known == (rc == KVC_EINVAL));
        s_check(d.pb == NULL && d.credential == NULL && d.req.body == NULL);
        return;
    }
    const kvc_fwd_req_t *r = &d.req;
    s_check(r->body_len <= FUZZ_MAX_BODY && (r->body_len == 0) == (r->body == NULL));
    s_check(d.credential_len <= KVC_CRED_BLOB_MAX);
    s_check(s_clean(r->method) && s_clean(r->path) && s_clean(r->content_type) &&
            s_clean(r->accept) && s_clean(r->inference_header_length) && s_clean(r->constraint));
    s_check(r->timeout_ms <= KVC_FWD_TIMEOUT_MAX_MS);
    /* What decodes re-encodes, and decodes to the same request. */
    uint8_t *buf;
    size_t len;
    s_check(kvc_fwd_request_encode(d.credential, d.credential_len, d.id, r, FUZZ_MAX_BODY, &buf,
                                   &len) == KVC_OK);
    kvc_fwd_decoded_t e;
    s_check(kvc_fwd_request_decode(buf, len, FUZZ_MAX_BODY, &e, &known) == KVC_OK);
    s_check(e.id == d.id && s_same(e.req.method, r->method) && s_same(e.req.path, r->path) &&
            s_same(e.req.content_type, r->content_type) && s_same(e.req.accept, r->accept) &&
            s_same(e.req.inference_header_length, r->inference_header_length) &&
            s_same(e.req.constraint, r->constraint) && e.req.hops == r->hops &&
            e.req.timeout_ms == r->timeout_ms && e.req.body_len == r->body_len &&
            (r->body_len == 0 || memcmp(e.req.body, r->body, r->body_len) == 0) &&
            e.credential_len == d.credential_len);
    kvc_fwd_decoded_free(&e);
    kvc_free(buf);
    /* The server's check: twice, so the second is answered by the cache. */
    char member[KVC_FWD_MEMBER_MAX], again[KVC_FWD_MEMBER_MAX];
    kvc_reject_t why = KVC_REJECT__COUNT, why2 = KVC_REJECT__COUNT;
    int a = kvc_fwd_auth_check(auth, key, d.credential, d.credential_len, FUZZ_NOW, s_revoked, NULL,
                               member, &why);
    uint64_t v = kvc_fwd_auth_verifies(auth);
    int b = kvc_fwd_auth_check(auth, key, d.credential, d.credential_len, FUZZ_NOW, s_revoked, NULL,
                               again, &why2);
    s_check(a == b);
    if (a == KVC_OK) {
        s_check(strchr(member, '/') != NULL && strcmp(member, again) == 0);
        s_check(kvc_fwd_auth_verifies(auth) == v); /* a hit costs no verify */
        s_check(key[0] != 0xee);
    } else {
        s_check(a == KVC_EPERM && why < KVC_REJECT__COUNT && why == why2 && member[0] == '\0');
    }
    kvc_fwd_decoded_free(&d);
}

static void s_reply(const uint8_t *data, size_t size)
{
    kvc_fwd_resp_t out;
    uint64_t id;
    int rc = kvc_fwd_reply_decode(data, size, FUZZ_MAX_BODY, &id, &out);
    if (rc != KVC_OK) {
        s_check(rc == KVC_EPARSE || rc == KVC_EINVAL || rc == KVC_ENOMEM);
        s_check(out.body == NULL && out.body_len == 0);
        return;
    }
    s_check(out.code >= KVC_FWD_OK && out.code <= KVC_FWD_SHUTDOWN);
    s_check(out.status >= 0 && out.status <= 999 && out.body_len <= FUZZ_MAX_BODY);
    s_check(memchr(out.content_type, 0, sizeof out.content_type) != NULL);
    s_check(memchr(out.header_name, 0, sizeof out.header_name) != NULL);
    s_check(memchr(out.header_value, 0, sizeof out.header_value) != NULL);
    s_check(memchr(out.error, 0, sizeof out.error) != NULL);
    /* What decodes re-encodes to something that decodes the same. */
    uint8_t *buf;
    size_t len;
    s_check(kvc_fwd_reply_encode(id, &out, FUZZ_MAX_BODY, &buf, &len) == KVC_OK);
    kvc_fwd_resp_t back;
    uint64_t id2;
    s_check(kvc_fwd_reply_decode(buf, len, FUZZ_MAX_BODY, &id2, &back) == KVC_OK);
    s_check(id2 == id && back.code == out.code && back.status == out.status &&
            back.body_len == out.body_len &&
            (out.body_len == 0 || memcmp(back.body, out.body, out.body_len) == 0) &&
            strcmp(back.content_type, out.content_type) == 0 && strcmp(back.error, out.error) == 0);
    kvc_free(buf);
    kvc_fwd_resp_clear(&back);
    kvc_fwd_resp_clear(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kvc_fwd_auth_t *auth;
    if (!auth) {
        kvc_ca_t ca;
        uint8_t seed[32];
        for (int i = 0; i < 32; i++)
            seed[i] = (uint8_t)(i + 1);
        if (kvc_crypto_init() != KVC_OK || kvc_ca_from_seed(seed, &ca) != KVC_OK)
            abort();
        auth = kvc_fwd_auth_new(ca.public_key, 8);
        if (!auth)
            abort();
    }
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        s_reply(data + 1, size - 1);
    } else if (size >= 33) {
        s_request(auth, data + 1, data + 33, size - 33);
    }
    return 0;
}
