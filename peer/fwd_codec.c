/*
 * fwd_codec.c - the forwarding transport's pure parts: the ForwardRequest /
 * ForwardReply codec (proto/forward.proto) and the cache of verified
 * credentials.
 *
 * Decoding is the first thing that touches a forwarded request, so it bounds
 * every field the proxy later puts into an HTTP request (and refuses control
 * characters, which would let a peer inject headers). No sockets, threads,
 * clocks or logging here: the fuzzer drives all of it.
 */
#include "fwd.h"

#include "breaker.h"
#include "credential.h"
#include "forward.pb-c.h"
#include "pb_alloc.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

/* Longest accepted value of each request string (bytes, without NUL). */
#define S_METHOD_MAX 16
#define S_PATH_MAX 8192
#define S_CTYPE_MAX 255
#define S_ACCEPT_MAX 1024
#define S_IHL_MAX 20
#define S_CONSTRAINT_MAX 1024

const char *kvc_fwd_code_name(int code)
{
    switch (code) {
    case KVC_FWD_OK:
        return "ok";
    case KVC_FWD_UNAUTHENTICATED:
        return "unauthenticated";
    case KVC_FWD_MALFORMED:
        return "malformed";
    case KVC_FWD_OVERLOADED:
        return "overloaded";
    case KVC_FWD_TIMEOUT:
        return "timeout";
    case KVC_FWD_SHUTDOWN:
        return "shutdown";
    case KVC_FWD_UNREACHABLE:
        return "unreachable";
    default:
        return "unknown";
    }
}

void kvc_fwd_resp_clear(kvc_fwd_resp_t *resp)
{
    if (!resp)
        return;
    kvc_free(resp->body);
    memset(resp, 0, sizeof *resp);
}

/* 1 if s (NULL = absent) is at most max bytes without control characters. */
static int s_str_ok(const char *s, size_t max)
{
    if (!s)
        return 1;
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= max || c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Absent and "" are the same on the wire; decoded "" becomes NULL. */
static const char *s_opt(const char *s)
{
    return s && s[0] ? s : NULL;
}

/* The strings of a request, checked the same way on both ends. */
static int s_req_strings_ok(const kvc_fwd_req_t *r)
{
    return s_str_ok(r->method, S_METHOD_MAX) && s_str_ok(r->path, S_PATH_MAX) &&
           s_str_ok(r->content_type, S_CTYPE_MAX) && s_str_ok(r->accept, S_ACCEPT_MAX) &&
           s_str_ok(r->inference_header_length, S_IHL_MAX) &&
           s_str_ok(r->constraint, S_CONSTRAINT_MAX);
}

int kvc_fwd_request_encode(const uint8_t *cred, size_t cred_len, uint64_t id,
                           const kvc_fwd_req_t *req, size_t max_body, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!req || cred_len > KVC_CRED_BLOB_MAX || (cred_len && !cred) || !s_req_strings_ok(req) ||
        req->timeout_ms > KVC_FWD_TIMEOUT_MAX_MS || (req->body_len && !req->body))
        return KVC_EINVAL;
    if (req->body_len > max_body)
        return KVC_ERANGE;
    Kvc__Fwd__ForwardRequest m = KVC__FWD__FORWARD_REQUEST__INIT;
    m.version = KVC_FWD_VERSION;
    m.credential.data = (uint8_t *)cred;
    m.credential.len = cred_len;
    m.id = id;
    m.method = (char *)(req->method ? req->method : "");
    m.path = (char *)(req->path ? req->path : "");
    m.content_type = (char *)(req->content_type ? req->content_type : "");
    m.accept = (char *)(req->accept ? req->accept : "");
    m.inference_header_length =
        (char *)(req->inference_header_length ? req->inference_header_length : "");
    m.constraint = (char *)(req->constraint ? req->constraint : "");
    m.timeout_ms = req->timeout_ms;
    m.body.data = (uint8_t *)req->body;
    m.body.len = req->body_len;
    m.hops = req->hops;
    size_t n = kvc__fwd__forward_request__get_packed_size(&m);
    uint8_t *buf = kvc_malloc(n ? n : 1);
    if (!buf)
        return KVC_ENOMEM;
    kvc__fwd__forward_request__pack(&m, buf);
    *out = buf;
    *len = n;
    return KVC_OK;
}

int kvc_fwd_request_decode(const uint8_t *data, size_t len, size_t max_body, kvc_fwd_decoded_t *out,
                           int *id_known)
{
    memset(out, 0, sizeof *out);
    *id_known = 0;
    /* Bound the input before unpacking: the body plus generous room for the
     * rest (every other field is capped far below 64 KiB). */
    if (len > max_body + 65536)
        return KVC_EPARSE;
    kvc_pb_alloc_t t;
    Kvc__Fwd__ForwardRequest *m =
        kvc__fwd__forward_request__unpack(kvc_pb_alloc_init(&t), len, data);
    if (!m)
        return kvc_pb_alloc_error(&t);
    *id_known = 1;
    out->id = m->id;
    kvc_fwd_req_t r = {
        .method = s_opt(m->method),
        .path = s_opt(m->path),
        .content_type = s_opt(m->content_type),
        .accept = s_opt(m->accept),
        .inference_header_length = s_opt(m->inference_header_length),
        .constraint = s_opt(m->constraint),
        .body = m->body.len ? m->body.data : NULL,
        .body_len = m->body.len,
        .timeout_ms = m->timeout_ms,
        .hops = m->hops,
    };
    if (m->version != KVC_FWD_VERSION || m->credential.len > KVC_CRED_BLOB_MAX ||
        m->body.len > max_body || m->timeout_ms > KVC_FWD_TIMEOUT_MAX_MS || !s_req_strings_ok(&r)) {
        kvc__fwd__forward_request__free_unpacked(m, kvc_pb_allocator());
        uint64_t id = out->id;
        memset(out, 0, sizeof *out);
        out->id = id;
        return KVC_EINVAL;
    }
    out->req = r;
    out->credential = m->credential.len ? m->credential.data : NULL;
    out->credential_len = m->credential.len;
    out->pb = m;
    return KVC_OK;
}

void kvc_fwd_decoded_free(kvc_fwd_decoded_t *d)
{
    if (!d)
        return;
    if (d->pb)
        kvc__fwd__forward_request__free_unpacked(d->pb, kvc_pb_allocator());
    memset(d, 0, sizeof *d);
}

int kvc_fwd_reply_encode(uint64_t id, const kvc_fwd_resp_t *resp, size_t max_body, uint8_t **out,
                         size_t *len)
{
    *out = NULL;
    *len = 0;
    if (resp->code < KVC_FWD_OK || resp->code > KVC_FWD_SHUTDOWN || (resp->body_len && !resp->body))
        return KVC_EINVAL;
    if (resp->body_len > max_body)
        return KVC_ERANGE;
    Kvc__Fwd__ForwardReply m = KVC__FWD__FORWARD_REPLY__INIT;
    /* The fixed fields may lack a NUL if a handler filled them carelessly. */
    char ctype[sizeof resp->content_type], hname[sizeof resp->header_name],
        hvalue[sizeof resp->header_value], error[sizeof resp->error],
        served[sizeof resp->served_by];
    if (resp->call_class < 0 || resp->call_class > KVC_CALL_ABANDON)
        return KVC_EINVAL;
    snprintf(served, sizeof served, "%.*s", (int)sizeof served - 1, resp->served_by);
    snprintf(ctype, sizeof ctype, "%.*s", (int)sizeof ctype - 1, resp->content_type);
    snprintf(hname, sizeof hname, "%.*s", (int)sizeof hname - 1, resp->header_name);
    snprintf(hvalue, sizeof hvalue, "%.*s", (int)sizeof hvalue - 1, resp->header_value);
    snprintf(error, sizeof error, "%.*s", (int)sizeof error - 1, resp->error);
    m.id = id;
    m.code = (uint32_t)resp->code;
    m.status = resp->status;
    m.content_type = ctype;
    m.body.data = resp->body;
    m.body.len = resp->body_len;
    m.header_name = hname;
    m.header_value = hvalue;
    m.error = error;
    m.call_class = (uint32_t)resp->call_class;
    m.served_by = served;
    size_t n = kvc__fwd__forward_reply__get_packed_size(&m);
    uint8_t *buf = kvc_malloc(n ? n : 1);
    if (!buf)
        return KVC_ENOMEM;
    kvc__fwd__forward_reply__pack(&m, buf);
    *out = buf;
    *len = n;
    return KVC_OK;
}

/* Copies src into a fixed field of size `size` if it fits, else 0. */
static int s_field(char *dst, size_t size, const char *src)
{
    if (!src)
        src = "";
    if (!s_str_ok(src, size - 1))
        return 0;
    kvc_strlcpy(dst, src, size);
    return 1;
}

int kvc_fwd_reply_decode(const uint8_t *data, size_t len, size_t max_body, uint64_t *id,
                         kvc_fwd_resp_t *out)
{
    memset(out, 0, sizeof *out);
    *id = 0;
    if (len > max_body + 65536)
        return KVC_EPARSE;
    kvc_pb_alloc_t t;
    Kvc__Fwd__ForwardReply *m = kvc__fwd__forward_reply__unpack(kvc_pb_alloc_init(&t), len, data);
    if (!m)
        return kvc_pb_alloc_error(&t);
    int rc = KVC_EINVAL;
    *id = m->id;
    if (m->code > KVC_FWD_SHUTDOWN || m->status < 0 || m->status > 999 ||
        m->body.len > max_body || m->call_class > KVC_CALL_ABANDON)
        goto done;
    if (!s_field(out->content_type, sizeof out->content_type, m->content_type) ||
        !s_field(out->header_name, sizeof out->header_name, m->header_name) ||
        !s_field(out->header_value, sizeof out->header_value, m->header_value) ||
        !s_field(out->served_by, sizeof out->served_by, m->served_by))
        goto done;
    /* The error is only shown: cut it, and blank control characters. */
    snprintf(out->error, sizeof out->error, "%s", m->error ? m->error : "");
    for (char *p = out->error; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    if (m->body.len) {
        out->body = kvc_malloc(m->body.len);
        if (!out->body) {
            rc = KVC_ENOMEM;
            goto done;
        }
        memcpy(out->body, m->body.data, m->body.len);
        out->body_len = m->body.len;
    }
    out->code = (int)m->code;
    out->status = m->status;
    out->call_class = (int)m->call_class;
    rc = KVC_OK;
done:
    if (rc != KVC_OK) {
        kvc_free(out->body);
        memset(out, 0, sizeof *out);
    }
    kvc__fwd__forward_reply__free_unpacked(m, kvc_pb_allocator());
    return rc;
}

/* --- the cache of verified credentials -------------------------------------
 * Set-associative: an entry lives in the set its hash names, 4 ways per set,
 * and a new entry evicts the set's oldest. The hash is BLAKE2b over the key
 * and the credential bytes, so a hit proves both are the ones verified.
 * Deterministic refusals (foreign, bad signature, key mismatch) are cached
 * too; expiry depends on the time, so it is checked on every request. */

#define S_WAYS 4

typedef struct {
    uint8_t hash[32]; /* BLAKE2b(key || credential) */
    uint64_t age;     /* insertion order; 0 = empty */
    int ok;           /* verified, or the cached refusal below */
    kvc_reject_t why;
    int64_t not_before, not_after;
    char member[KVC_FWD_MEMBER_MAX];
} s_entry_t;

struct kvc_fwd_auth {
    uint8_t trust[32];
    s_entry_t *entries;
    size_t n_sets;
    uint64_t next_age;
    uint64_t verifies;
};

kvc_fwd_auth_t *kvc_fwd_auth_new(const uint8_t trust[32], size_t capacity)
{
    if (capacity == 0)
        capacity = 1024;
    if (capacity > (1u << 20))
        capacity = 1u << 20;
    kvc_fwd_auth_t *self = kvc_calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->n_sets = (capacity + S_WAYS - 1) / S_WAYS;
    self->entries = kvc_calloc(self->n_sets * S_WAYS, sizeof *self->entries);
    if (!self->entries) {
        kvc_free(self);
        return NULL;
    }
    memcpy(self->trust, trust, 32);
    self->next_age = 1;
    return self;
}

void kvc_fwd_auth_destroy(kvc_fwd_auth_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_free((*self_p)->entries);
    kvc_free(*self_p);
    *self_p = NULL;
}

uint64_t kvc_fwd_auth_verifies(const kvc_fwd_auth_t *self)
{
    return self->verifies;
}

/* Maps a kvc_cred_verify error to a reject reason. */
static kvc_reject_t s_cred_reject(int rc)
{
    switch (rc) {
    case KVC_EFOREIGN:
        return KVC_REJECT_FOREIGN;
    case KVC_EEXPIRED:
        return KVC_REJECT_EXPIRED;
    default:
        return KVC_REJECT_BAD_CREDENTIAL;
    }
}

int kvc_fwd_auth_check(kvc_fwd_auth_t *self, const uint8_t key[32], const uint8_t *cred,
                       size_t cred_len, int64_t now_s,
                       int (*revoked)(void *arg, const uint8_t key[32]), void *arg,
                       char member[KVC_FWD_MEMBER_MAX], kvc_reject_t *why)
{
    member[0] = '\0';
    if (!cred || cred_len == 0) {
        *why = KVC_REJECT_NO_CREDENTIAL;
        return KVC_EPERM;
    }
    if (cred_len > KVC_CRED_BLOB_MAX) {
        *why = KVC_REJECT_BAD_CREDENTIAL;
        return KVC_EPERM;
    }
    uint8_t h[32];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, key, 32);
    crypto_generichash_update(&st, cred, cred_len);
    crypto_generichash_final(&st, h, sizeof h);
    uint32_t set_ix =
        ((uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24) %
        (uint32_t)self->n_sets;
    s_entry_t *set = &self->entries[(size_t)set_ix * S_WAYS];
    s_entry_t *e = NULL;
    for (int i = 0; i < S_WAYS; i++)
        if (set[i].age && memcmp(set[i].hash, h, 32) == 0) {
            e = &set[i];
            break;
        }
    if (!e) {
        kvc_cred_t c;
        kvc_err_t err;
        self->verifies++;
        int rc = kvc_cred_verify(cred, cred_len, self->trust, now_s, &c, &err);
        if (rc == KVC_EEXPIRED) {
            *why = KVC_REJECT_EXPIRED; /* depends on the time: not cached */
            sodium_memzero(&c, sizeof c);
            return KVC_EPERM;
        }
        /* Evict the oldest (or an empty) way of the set. */
        e = &set[0];
        for (int i = 1; i < S_WAYS; i++)
            if (set[i].age < e->age)
                e = &set[i];
        memset(e, 0, sizeof *e);
        memcpy(e->hash, h, 32);
        e->age = self->next_age++;
        if (rc != KVC_OK) {
            e->why = s_cred_reject(rc);
        } else if (sodium_memcmp(c.curve_public, key, 32) != 0) {
            e->why = KVC_REJECT_KEY_MISMATCH;
        } else {
            e->ok = 1;
            e->not_before = c.not_before;
            e->not_after = c.not_after;
            snprintf(e->member, sizeof e->member, "%s/%s", c.site, c.name);
        }
    }
    if (!e->ok) {
        *why = e->why;
        return KVC_EPERM;
    }
    if (now_s < e->not_before || now_s > e->not_after) {
        *why = KVC_REJECT_EXPIRED;
        return KVC_EPERM;
    }
    if (revoked && revoked(arg, key)) {
        *why = KVC_REJECT_REVOKED;
        return KVC_EPERM;
    }
    memcpy(member, e->member, sizeof e->member);
    return KVC_OK;
}
