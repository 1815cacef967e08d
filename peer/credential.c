/*
 * credential.c - the federation key, peer credentials, identity files and
 * node keys (DESIGN.md, "Trust").
 *
 * A credential is a serialised kvc.fed.CredentialBody signed (Ed25519,
 * detached) over "kvc-credential-v1" || body, wrapped with its signature in
 * a kvc.fed.Credential. Everything read here, blob or file, is hostile:
 * every length is bounded before it is read, files are at most
 * KVC_CRED_FILE_MAX bytes and parsed strictly line by line.
 *
 * This module must never log, never print a secret into an error message,
 * never overwrite an existing key file, and never leave a secret in a stack
 * buffer it is done with (sodium_memzero).
 */
#include "credential.h"

#include "federation.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_DOMAIN "kvc-credential-v1"
#define S_DOMAIN_LEN (sizeof S_DOMAIN - 1)
#define S_NAME_RULE "must match [a-z0-9-]{1,63} and not start or end with '-'"
#define S_B64_VARIANT sodium_base64_VARIANT_ORIGINAL
#define S_B64_MAX sodium_base64_ENCODED_LEN(KVC_CRED_BLOB_MAX, S_B64_VARIANT)
#define S_TEXT_MAX 8192 /* what we write: an identity file is under 4 KiB */
#define S_MAX_DAYS 3650

#define S_HDR_CA_KEY "kvc-federation-key-v1"
#define S_HDR_CA_PUB "kvc-federation-public-v1"
#define S_HDR_IDENTITY "kvc-identity-v1"
#define S_HDR_NODE_KEY "kvc-node-key-v1"
#define S_HDR_NODE_PUB "kvc-node-public-v1"

/* ---- protobuf-c through the kvc allocator (so tests can fail it) -------- */

/* Allocates for protobuf-c. */
static void *s_pb_alloc(void *data, size_t size)
{
    (void)data;
    return kvc_malloc(size);
}

/* Frees for protobuf-c. */
static void s_pb_free(void *data, void *ptr)
{
    (void)data;
    kvc_free(ptr);
}

static ProtobufCAllocator s_pb_allocator = {s_pb_alloc, s_pb_free, NULL};

/* ---- small helpers ------------------------------------------------------ */

/* Initialises libsodium once; later calls are cheap. */
int kvc_crypto_init(void)
{
    return sodium_init() < 0 ? KVC_ECRYPTO : KVC_OK;
}

/* Copies at most 40 characters of untrusted s into out for an error
 * message, replacing anything unprintable so the message stays one line. */
static const char *s_printable(const char *s, char out[48])
{
    size_t i = 0;
    for (; s[i] && i < 40; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i] && i == 40) {
        out[i++] = '.';
        out[i++] = '.';
        out[i++] = '.';
    }
    out[i] = '\0';
    return out;
}

/* Writes lowercase hex of key into hex (65 bytes). */
void kvc_key_hex(const uint8_t key[32], char hex[65])
{
    sodium_bin2hex(hex, 65, key, 32);
}

/* Decodes exactly 2*n hex digits (either case) into out. */
static int s_parse_hex(const char *hex, uint8_t *out, size_t n)
{
    if (strlen(hex) != 2 * n)
        return KVC_EPARSE;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = hex[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return KVC_EPARSE;
    }
    size_t got = 0;
    if (sodium_hex2bin(out, n, hex, 2 * n, NULL, &got, NULL) != 0 || got != n)
        return KVC_EPARSE;
    return KVC_OK;
}

/* Formats unix seconds as ISO-8601 UTC, or "@SECONDS" outside years 1970-9999. */
const char *kvc_cred_time_str(int64_t unix_s, char *buf, size_t size)
{
    struct tm tm;
    time_t t = (time_t)unix_s;
    if (unix_s < 0 || unix_s > INT64_C(253402300799) || !gmtime_r(&t, &tm))
        snprintf(buf, size, "@%" PRId64, unix_s);
    else {
        char tmp[80]; /* room for any int in every field, so no truncation */
        snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        kvc_strlcpy(buf, tmp, size);
    }
    return buf;
}

/* Splits "a,b,c" into roles; "" means none. */
int kvc_cred_parse_roles(const char *list, char roles[KVC_MAX_ROLES][KVC_NAME_MAX], size_t *n_roles,
                         kvc_err_t *err)
{
    char shown[48];
    *n_roles = 0;
    if (!list || !*list)
        return KVC_OK;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (*n_roles == KVC_MAX_ROLES)
            return kvc_err_set(err, KVC_EINVAL, "roles: more than %d", KVC_MAX_ROLES);
        if (n == 0)
            return kvc_err_set(err, KVC_EINVAL, "roles: empty role in '%s'",
                               s_printable(list, shown));
        char role[KVC_NAME_MAX + 1];
        size_t keep = n < KVC_NAME_MAX ? n : KVC_NAME_MAX;
        memcpy(role, p, keep);
        role[keep] = '\0';
        if (n >= KVC_NAME_MAX || !kvc_config_valid_name(role))
            return kvc_err_set(err, KVC_EINVAL, "roles: '%s' " S_NAME_RULE,
                               s_printable(role, shown));
        memcpy(roles[*n_roles], role, keep + 1);
        (*n_roles)++;
        if (!comma)
            return KVC_OK;
        p = comma + 1;
    }
}

/* ---- federation key in memory ------------------------------------------- */

/* Makes a random federation keypair. */
int kvc_ca_generate(kvc_ca_t *out)
{
    if (kvc_crypto_init() != KVC_OK)
        return KVC_ECRYPTO;
    return crypto_sign_keypair(out->public_key, out->secret_key) == 0 ? KVC_OK : KVC_ECRYPTO;
}

/* Derives a federation keypair from seed (tests and fuzzing only). */
int kvc_ca_from_seed(const uint8_t seed[32], kvc_ca_t *out)
{
    if (kvc_crypto_init() != KVC_OK)
        return KVC_ECRYPTO;
    return crypto_sign_seed_keypair(out->public_key, out->secret_key, seed) == 0 ? KVC_OK
                                                                                 : KVC_ECRYPTO;
}

/* ---- credentials -------------------------------------------------------- */

/* Signs "kvc-credential-v1" || body into sig (64 bytes). */
static int s_sign(const uint8_t *body, size_t len, const uint8_t secret[64], uint8_t sig[64])
{
    uint8_t msg[S_DOMAIN_LEN + KVC_CRED_BLOB_MAX];
    if (len > KVC_CRED_BLOB_MAX)
        return KVC_ERANGE;
    memcpy(msg, S_DOMAIN, S_DOMAIN_LEN);
    memcpy(msg + S_DOMAIN_LEN, body, len);
    return crypto_sign_detached(sig, NULL, msg, S_DOMAIN_LEN + len, secret) == 0 ? KVC_OK
                                                                                 : KVC_ECRYPTO;
}

/* Checks sig over "kvc-credential-v1" || body with the Ed25519 key pk. */
static int s_check_sig(const uint8_t *body, size_t len, const uint8_t sig[64], const uint8_t pk[32])
{
    uint8_t msg[S_DOMAIN_LEN + KVC_CRED_BLOB_MAX];
    if (len > KVC_CRED_BLOB_MAX)
        return KVC_ERANGE;
    memcpy(msg, S_DOMAIN, S_DOMAIN_LEN);
    memcpy(msg + S_DOMAIN_LEN, body, len);
    return crypto_sign_verify_detached(sig, msg, S_DOMAIN_LEN + len, pk) == 0 ? KVC_OK
                                                                              : KVC_ECRYPTO;
}

/* Issues a credential and a fresh Curve25519 keypair. */
int kvc_cred_issue(const kvc_ca_t *ca, const char *site, const char *name, const char *const *roles,
                   size_t n_roles, int64_t now_s, int days, kvc_identity_t *out, kvc_err_t *err)
{
    char shown[48];
    memset(out, 0, sizeof *out);
    if (kvc_crypto_init() != KVC_OK)
        return kvc_err_set(err, KVC_ECRYPTO, "credential: libsodium failed to initialise");
    if (!ca || sodium_is_zero(ca->secret_key, sizeof ca->secret_key))
        return kvc_err_set(err, KVC_EINVAL, "credential: the federation secret key is not loaded");
    uint8_t pk_of_sk[32];
    crypto_sign_ed25519_sk_to_pk(pk_of_sk, ca->secret_key);
    if (memcmp(pk_of_sk, ca->public_key, 32) != 0)
        return kvc_err_set(err, KVC_ECRYPTO,
                           "credential: federation secret key does not match its public key");
    if (!site || !kvc_config_valid_name(site))
        return kvc_err_set(err, KVC_EINVAL, "credential: site '%s' " S_NAME_RULE,
                           s_printable(site ? site : "", shown));
    if (!name || !kvc_config_valid_name(name))
        return kvc_err_set(err, KVC_EINVAL, "credential: name '%s' " S_NAME_RULE,
                           s_printable(name ? name : "", shown));
    if (n_roles > KVC_MAX_ROLES)
        return kvc_err_set(err, KVC_EINVAL, "credential: %zu roles, at most %d allowed", n_roles,
                           KVC_MAX_ROLES);
    for (size_t i = 0; i < n_roles; i++)
        if (!roles[i] || !kvc_config_valid_name(roles[i]))
            return kvc_err_set(err, KVC_EINVAL, "credential: role '%s' " S_NAME_RULE,
                               s_printable(roles[i] ? roles[i] : "", shown));
    if (days < 1 || days > S_MAX_DAYS)
        return kvc_err_set(err, KVC_ERANGE, "credential: validity of %d days is outside 1..%d",
                           days, S_MAX_DAYS);
    if (now_s < 0 || now_s > INT64_MAX - (int64_t)S_MAX_DAYS * 86400)
        return kvc_err_set(err, KVC_ERANGE, "credential: start time %" PRId64 " out of range",
                           now_s);

    kvc_cred_t *c = &out->cred;
    kvc_strlcpy(c->site, site, sizeof c->site);
    kvc_strlcpy(c->name, name, sizeof c->name);
    char *role_ptrs[KVC_MAX_ROLES];
    for (size_t i = 0; i < n_roles; i++) {
        kvc_strlcpy(c->roles[i], roles[i], sizeof c->roles[i]);
        role_ptrs[i] = c->roles[i];
    }
    c->n_roles = n_roles;
    c->not_before = now_s;
    c->not_after = now_s + (int64_t)days * 86400;
    memcpy(c->ca_public, ca->public_key, 32);
    if (crypto_box_keypair(c->curve_public, out->curve_secret) != 0)
        return kvc_err_set(err, KVC_ECRYPTO, "credential: cannot make a Curve25519 keypair");

    Kvc__Fed__CredentialBody body = KVC__FED__CREDENTIAL_BODY__INIT;
    body.version = 1;
    body.site = c->site;
    body.name = c->name;
    body.n_roles = n_roles;
    body.roles = n_roles ? role_ptrs : NULL;
    body.curve_public.data = c->curve_public;
    body.curve_public.len = 32;
    body.not_before = c->not_before;
    body.not_after = c->not_after;
    body.ca_public.data = c->ca_public;
    body.ca_public.len = 32;

    uint8_t body_bytes[KVC_CRED_BLOB_MAX];
    size_t body_len = kvc__fed__credential_body__get_packed_size(&body);
    if (body_len > KVC_CRED_BLOB_MAX - 80) {
        kvc_identity_wipe(out);
        return kvc_err_set(err, KVC_ERANGE, "credential: body of %zu bytes is too large", body_len);
    }
    kvc__fed__credential_body__pack(&body, body_bytes);
    uint8_t sig[64];
    if (s_sign(body_bytes, body_len, ca->secret_key, sig) != KVC_OK) {
        kvc_identity_wipe(out);
        return kvc_err_set(err, KVC_ECRYPTO, "credential: signing failed");
    }
    Kvc__Fed__Credential cred = KVC__FED__CREDENTIAL__INIT;
    cred.body.data = body_bytes;
    cred.body.len = body_len;
    cred.signature.data = sig;
    cred.signature.len = sizeof sig;
    size_t blob_len = kvc__fed__credential__get_packed_size(&cred);
    if (blob_len > KVC_CRED_BLOB_MAX) {
        kvc_identity_wipe(out);
        return kvc_err_set(err, KVC_ERANGE, "credential: %zu bytes is too large", blob_len);
    }
    kvc__fed__credential__pack(&cred, c->blob);
    c->blob_len = blob_len;
    return KVC_OK;
}

/*
 * First half of reading a blob, shared by verify and identity load: bounds,
 * both unpacks and the version. On success *outer and *body are owned by
 * the caller (free with s_unpacked_free).
 */
static int s_unpack(const uint8_t *blob, size_t len, Kvc__Fed__Credential **outer,
                    Kvc__Fed__CredentialBody **body, kvc_err_t *err)
{
    *outer = NULL;
    *body = NULL;
    if (!blob || len == 0)
        return kvc_err_set(err, KVC_EPARSE, "credential: empty");
    if (len > KVC_CRED_BLOB_MAX)
        return kvc_err_set(err, KVC_EPARSE, "credential: %zu bytes, more than the %d allowed", len,
                           KVC_CRED_BLOB_MAX);
    *outer = kvc__fed__credential__unpack(&s_pb_allocator, len, blob);
    if (!*outer)
        return kvc_err_set(err, KVC_EPARSE, "credential: not a valid Credential message");
    if ((*outer)->body.len == 0)
        return kvc_err_set(err, KVC_EPARSE, "credential: body is missing");
    if ((*outer)->signature.len != crypto_sign_BYTES)
        return kvc_err_set(err, KVC_ECRYPTO, "credential: signature is %zu bytes, expected %d",
                           (*outer)->signature.len, crypto_sign_BYTES);
    *body =
        kvc__fed__credential_body__unpack(&s_pb_allocator, (*outer)->body.len, (*outer)->body.data);
    if (!*body)
        return kvc_err_set(err, KVC_EPARSE, "credential: body is not a valid CredentialBody");
    if ((*body)->version != 1)
        return kvc_err_set(err, KVC_EPARSE,
                           "credential: unsupported version %" PRIu32
                           " (this build reads version 1)",
                           (*body)->version);
    if ((*body)->ca_public.len != 32)
        return kvc_err_set(err, KVC_ECRYPTO, "credential: federation key is %zu bytes, expected 32",
                           (*body)->ca_public.len);
    return KVC_OK;
}

/* Frees what s_unpack made. */
static void s_unpacked_free(Kvc__Fed__Credential *outer, Kvc__Fed__CredentialBody *body)
{
    if (body)
        kvc__fed__credential_body__free_unpacked(body, &s_pb_allocator);
    if (outer)
        kvc__fed__credential__free_unpacked(outer, &s_pb_allocator);
}

/* Second half: checks the contents and copies them (and the blob) to out. */
static int s_fill(const Kvc__Fed__CredentialBody *b, const uint8_t *blob, size_t len,
                  kvc_cred_t *out, kvc_err_t *err)
{
    char shown[48];
    if (b->curve_public.len != 32)
        return kvc_err_set(err, KVC_ECRYPTO, "credential: peer key is %zu bytes, expected 32",
                           b->curve_public.len);
    if (!kvc_config_valid_name(b->site))
        return kvc_err_set(err, KVC_EINVAL, "credential: site '%s' " S_NAME_RULE,
                           s_printable(b->site, shown));
    if (!kvc_config_valid_name(b->name))
        return kvc_err_set(err, KVC_EINVAL, "credential: name '%s' " S_NAME_RULE,
                           s_printable(b->name, shown));
    if (b->n_roles > KVC_MAX_ROLES)
        return kvc_err_set(err, KVC_EINVAL, "credential: %zu roles, at most %d allowed", b->n_roles,
                           KVC_MAX_ROLES);
    for (size_t i = 0; i < b->n_roles; i++)
        if (!kvc_config_valid_name(b->roles[i]))
            return kvc_err_set(err, KVC_EINVAL, "credential: role '%s' " S_NAME_RULE,
                               s_printable(b->roles[i], shown));
    kvc_strlcpy(out->site, b->site, sizeof out->site);
    kvc_strlcpy(out->name, b->name, sizeof out->name);
    for (size_t i = 0; i < b->n_roles; i++)
        kvc_strlcpy(out->roles[i], b->roles[i], sizeof out->roles[i]);
    out->n_roles = b->n_roles;
    memcpy(out->curve_public, b->curve_public.data, 32);
    memcpy(out->ca_public, b->ca_public.data, 32);
    out->not_before = b->not_before;
    out->not_after = b->not_after;
    memcpy(out->blob, blob, len);
    out->blob_len = len;
    return KVC_OK;
}

/* Verifies a credential blob against trust at now_s. */
int kvc_cred_verify(const uint8_t *blob, size_t len, const uint8_t trust[32], int64_t now_s,
                    kvc_cred_t *out, kvc_err_t *err)
{
    Kvc__Fed__Credential *outer = NULL;
    Kvc__Fed__CredentialBody *body = NULL;
    memset(out, 0, sizeof *out);
    if (kvc_crypto_init() != KVC_OK)
        return kvc_err_set(err, KVC_ECRYPTO, "credential: libsodium failed to initialise");
    int rc = s_unpack(blob, len, &outer, &body, err);
    if (rc != KVC_OK)
        goto done;
    if (memcmp(body->ca_public.data, trust, 32) != 0) {
        char got[65], want[65];
        kvc_key_hex(body->ca_public.data, got);
        kvc_key_hex(trust, want);
        rc = kvc_err_set(err, KVC_EFOREIGN,
                         "credential: signed by a different federation key (%.8s\u2026), "
                         "expected %.8s\u2026",
                         got, want);
        goto done;
    }
    if (s_check_sig(outer->body.data, outer->body.len, outer->signature.data, trust) != KVC_OK) {
        rc = kvc_err_set(err, KVC_ECRYPTO, "credential: bad signature (tampered or corrupt)");
        goto done;
    }
    rc = s_fill(body, blob, len, out, err);
    if (rc != KVC_OK)
        goto done;
    char when[32];
    if (now_s < out->not_before)
        rc = kvc_err_set(err, KVC_EEXPIRED, "credential: not valid before %s",
                         kvc_cred_time_str(out->not_before, when, sizeof when));
    else if (now_s > out->not_after)
        rc = kvc_err_set(err, KVC_EEXPIRED, "credential: expired at %s",
                         kvc_cred_time_str(out->not_after, when, sizeof when));
done:
    s_unpacked_free(outer, body);
    if (rc != KVC_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

/* Wipes the secret half of an identity. */
void kvc_identity_wipe(kvc_identity_t *id)
{
    if (id)
        sodium_memzero(id->curve_secret, sizeof id->curve_secret);
}

/* ---- files: reading ----------------------------------------------------- */

/* Reads a whole regular file of at most KVC_CRED_FILE_MAX bytes into buf
 * (size KVC_CRED_FILE_MAX + 1); the caller wipes buf. */
static int s_read_file(const char *path, char *buf, size_t *len, kvc_err_t *err)
{
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kvc_err_set(err, errno == ENOENT ? KVC_ENOENT : KVC_EIO, "%s: cannot open: %s", path,
                           strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kvc_err_set(err, KVC_EIO, "%s: not a regular file", path);
    }
    if (st.st_size > KVC_CRED_FILE_MAX) {
        close(fd);
        return kvc_err_set(err, KVC_ERANGE, "%s: larger than %d bytes", path, KVC_CRED_FILE_MAX);
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, KVC_CRED_FILE_MAX + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return kvc_err_set(err, KVC_EIO, "%s: cannot read: %s", path, strerror(e));
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > KVC_CRED_FILE_MAX) {
            close(fd);
            return kvc_err_set(err, KVC_ERANGE, "%s: larger than %d bytes", path,
                               KVC_CRED_FILE_MAX);
        }
    }
    close(fd);
    *len = got;
    return KVC_OK;
}

/* A strict line reader over untrusted text. */
typedef struct {
    const char *p;
    const char *end;
    int line; /* number of the line last returned */
    const char *name;
} s_reader_t;

/* Starts reading len bytes of text named name. */
static void s_reader_init(s_reader_t *r, const char *text, size_t len, const char *name)
{
    r->p = text;
    r->end = text + len;
    r->line = 0;
    r->name = name;
}

/* Returns the next line (without '\n') in *line and *n, 0 at the end, or a
 * negative code if the line holds a byte that no kvc file has. */
static int s_next_line(s_reader_t *r, const char **line, size_t *n, kvc_err_t *err)
{
    if (r->p >= r->end)
        return 0;
    const char *start = r->p;
    const char *nl = memchr(start, '\n', (size_t)(r->end - start));
    const char *stop = nl ? nl : r->end;
    r->p = nl ? nl + 1 : r->end;
    r->line++;
    for (const char *q = start; q < stop; q++) {
        unsigned char c = (unsigned char)*q;
        if (c < 0x20 || c >= 0x7f)
            return kvc_err_set(err, KVC_EPARSE, "%s:%d: unexpected byte 0x%02x", r->name, r->line,
                               c);
    }
    *line = start;
    *n = (size_t)(stop - start);
    return 1;
}

/* Expects the first line to be exactly header. */
static int s_expect_header(s_reader_t *r, const char *header, const char *what, kvc_err_t *err)
{
    const char *line = NULL;
    size_t n = 0;
    int rc = s_next_line(r, &line, &n, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return kvc_err_set(err, KVC_EPARSE, "%s: empty file, expected a %s", r->name, what);
    if (n != strlen(header) || memcmp(line, header, n) != 0)
        return kvc_err_set(err, KVC_EPARSE, "%s:1: not a %s (first line must be '%s')", r->name,
                           what, header);
    return KVC_OK;
}

/* Expects the next line to be "KEY: VALUE" (or "KEY:" for an empty value)
 * and copies VALUE into val (size valsize). *line_no gets its line. */
static int s_expect_field(s_reader_t *r, const char *key, char *val, size_t valsize, int *line_no,
                          kvc_err_t *err)
{
    const char *line = NULL;
    size_t n = 0;
    int rc = s_next_line(r, &line, &n, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return kvc_err_set(err, KVC_EPARSE, "%s:%d: missing '%s:' line", r->name, r->line + 1, key);
    *line_no = r->line;
    size_t klen = strlen(key);
    if (n < klen + 1 || memcmp(line, key, klen) != 0 || line[klen] != ':' ||
        (n > klen + 1 && line[klen + 1] != ' '))
        return kvc_err_set(err, KVC_EPARSE, "%s:%d: expected '%s: ...'", r->name, r->line, key);
    size_t off = n > klen + 1 ? klen + 2 : klen + 1;
    size_t vlen = n - off;
    if (vlen >= valsize)
        return kvc_err_set(err, KVC_EPARSE, "%s:%d: %s: value too long (at most %zu characters)",
                           r->name, r->line, key, valsize - 1);
    memcpy(val, line + off, vlen);
    val[vlen] = '\0';
    return KVC_OK;
}

/* Expects nothing after the last field. */
static int s_expect_end(s_reader_t *r, kvc_err_t *err)
{
    const char *line = NULL;
    size_t n = 0;
    int rc = s_next_line(r, &line, &n, err);
    if (rc < 0)
        return rc;
    if (rc > 0)
        return kvc_err_set(err, KVC_EPARSE, "%s:%d: unexpected line after the last field", r->name,
                           r->line);
    return KVC_OK;
}

/* Reads a "KEY: HEX" line holding n bytes. */
static int s_expect_hex(s_reader_t *r, const char *key, uint8_t *out, size_t n, int *line_no,
                        kvc_err_t *err)
{
    char val[2 * 64 + 2];
    int rc = s_expect_field(r, key, val, sizeof val, line_no, err);
    if (rc == KVC_OK && s_parse_hex(val, out, n) != KVC_OK)
        rc = kvc_err_set(err, KVC_EPARSE, "%s:%d: %s: must be %zu hex characters", r->name,
                         *line_no, key, 2 * n);
    sodium_memzero(val, sizeof val);
    return rc;
}

/* Parses federation.key text. */
static int s_parse_ca_key(const char *text, size_t len, const char *name, kvc_ca_t *out,
                          kvc_err_t *err)
{
    s_reader_t r;
    int line = 0;
    s_reader_init(&r, text, len, name);
    int rc = s_expect_header(&r, S_HDR_CA_KEY, "federation key file", err);
    if (rc == KVC_OK)
        rc = s_expect_hex(&r, "public", out->public_key, 32, &line, err);
    if (rc == KVC_OK)
        rc = s_expect_hex(&r, "secret", out->secret_key, 64, &line, err);
    if (rc == KVC_OK)
        rc = s_expect_end(&r, err);
    if (rc == KVC_OK) {
        uint8_t pk[32], sk[64];
        crypto_sign_seed_keypair(pk, sk, out->secret_key);
        if (memcmp(pk, out->public_key, 32) != 0 || sodium_memcmp(sk, out->secret_key, 64) != 0)
            rc = kvc_err_set(err, KVC_ECRYPTO, "%s:%d: secret: does not match the public key", name,
                             line);
        sodium_memzero(sk, sizeof sk);
    }
    if (rc != KVC_OK)
        sodium_memzero(out, sizeof *out);
    return rc;
}

/* Parses a public-key file: header, then "public: HEX". */
static int s_parse_public(const char *text, size_t len, const char *name, const char *header,
                          const char *what, uint8_t pk[32], kvc_err_t *err)
{
    s_reader_t r;
    int line = 0;
    s_reader_init(&r, text, len, name);
    int rc = s_expect_header(&r, header, what, err);
    if (rc == KVC_OK)
        rc = s_expect_hex(&r, "public", pk, 32, &line, err);
    if (rc == KVC_OK)
        rc = s_expect_end(&r, err);
    return rc;
}

/* Parses a node key file and checks the secret against the public key. */
static int s_parse_nodekey(const char *text, size_t len, const char *name, kvc_nodekey_t *out,
                           kvc_err_t *err)
{
    s_reader_t r;
    int line = 0;
    s_reader_init(&r, text, len, name);
    int rc = s_expect_header(&r, S_HDR_NODE_KEY, "node key file", err);
    if (rc == KVC_OK)
        rc = s_expect_hex(&r, "public", out->public_key, 32, &line, err);
    if (rc == KVC_OK)
        rc = s_expect_hex(&r, "secret", out->secret_key, 32, &line, err);
    if (rc == KVC_OK)
        rc = s_expect_end(&r, err);
    if (rc == KVC_OK) {
        uint8_t pk[32];
        if (crypto_scalarmult_base(pk, out->secret_key) != 0 ||
            memcmp(pk, out->public_key, 32) != 0)
            rc = kvc_err_set(err, KVC_ECRYPTO, "%s:%d: secret: does not match the public key", name,
                             line);
    }
    if (rc != KVC_OK)
        sodium_memzero(out, sizeof *out);
    return rc;
}

/* Joins a credential's roles with commas into buf. */
static void s_join_roles(const kvc_cred_t *c, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < c->n_roles && i < KVC_MAX_ROLES && off < size; i++) {
        int w = snprintf(buf + off, size - off, "%s%s", i ? "," : "", c->roles[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

/* Parses identity file text; see credential.h. */
int kvc_identity_parse(const char *text, size_t len, const char *name, kvc_identity_t *out,
                       kvc_err_t *err)
{
    char site[KVC_NAME_MAX + 1], pname[KVC_NAME_MAX + 1], roles_s[KVC_MAX_ROLES * KVC_NAME_MAX];
    char not_after[40], b64[S_B64_MAX], shown[48];
    char roles[KVC_MAX_ROLES][KVC_NAME_MAX];
    size_t n_roles = 0;
    uint8_t pk[32];
    int l_site = 0, l_name = 0, l_roles = 0, l_pub = 0, l_sec = 0, l_after = 0, l_cred = 0;
    s_reader_t r;
    Kvc__Fed__Credential *outer = NULL;
    Kvc__Fed__CredentialBody *body = NULL;

    memset(out, 0, sizeof *out);
    if (kvc_crypto_init() != KVC_OK)
        return kvc_err_set(err, KVC_ECRYPTO, "%s: libsodium failed to initialise", name);
    s_reader_init(&r, text, len, name);
    int rc = s_expect_header(&r, S_HDR_IDENTITY, "kvc identity file", err);
    if (rc == KVC_OK)
        rc = s_expect_field(&r, "site", site, sizeof site, &l_site, err);
    if (rc == KVC_OK && !kvc_config_valid_name(site))
        rc = kvc_err_set(err, KVC_EPARSE, "%s:%d: site: '%s' " S_NAME_RULE, name, l_site,
                         s_printable(site, shown));
    if (rc == KVC_OK)
        rc = s_expect_field(&r, "name", pname, sizeof pname, &l_name, err);
    if (rc == KVC_OK && !kvc_config_valid_name(pname))
        rc = kvc_err_set(err, KVC_EPARSE, "%s:%d: name: '%s' " S_NAME_RULE, name, l_name,
                         s_printable(pname, shown));
    if (rc == KVC_OK)
        rc = s_expect_field(&r, "roles", roles_s, sizeof roles_s, &l_roles, err);
    if (rc == KVC_OK && kvc_cred_parse_roles(roles_s, roles, &n_roles, err) != KVC_OK) {
        kvc_err_prefix(err, "%s:%d: ", name, l_roles);
        rc = KVC_EPARSE;
        if (err)
            err->code = rc;
    }
    if (rc == KVC_OK)
        rc = s_expect_hex(&r, "public", pk, 32, &l_pub, err);
    if (rc == KVC_OK)
        rc = s_expect_hex(&r, "secret", out->curve_secret, 32, &l_sec, err);
    if (rc == KVC_OK)
        rc = s_expect_field(&r, "not_after", not_after, sizeof not_after, &l_after, err);
    if (rc == KVC_OK)
        rc = s_expect_field(&r, "credential", b64, sizeof b64, &l_cred, err);
    if (rc == KVC_OK)
        rc = s_expect_end(&r, err);
    if (rc != KVC_OK)
        goto done;

    uint8_t derived[32];
    if (crypto_scalarmult_base(derived, out->curve_secret) != 0 || memcmp(derived, pk, 32) != 0) {
        rc = kvc_err_set(err, KVC_ECRYPTO, "%s:%d: secret: does not match the public key", name,
                         l_sec);
        goto done;
    }
    /* Room for a little more than the limit so s_unpack reports the size. */
    uint8_t blob[KVC_CRED_BLOB_MAX + 3];
    size_t blob_len = 0;
    const char *b64_end = NULL;
    if (sodium_base642bin(blob, sizeof blob, b64, strlen(b64), NULL, &blob_len, &b64_end,
                          S_B64_VARIANT) != 0 ||
        b64_end != b64 + strlen(b64)) {
        rc = kvc_err_set(err, KVC_EPARSE, "%s:%d: credential: not valid base64", name, l_cred);
        goto done;
    }
    rc = s_unpack(blob, blob_len, &outer, &body, err);
    if (rc == KVC_OK)
        rc = s_fill(body, blob, blob_len, &out->cred, err);
    if (rc != KVC_OK) {
        kvc_err_prefix(err, "%s:%d: ", name, l_cred);
        goto done;
    }
    /* The human-readable lines must say what the signed credential says. */
    const kvc_cred_t *c = &out->cred;
    char want[KVC_MAX_ROLES * KVC_NAME_MAX];
    if (strcmp(site, c->site) != 0) {
        rc = kvc_err_set(err, KVC_EPARSE, "%s:%d: site: '%s' differs from the credential's '%s'",
                         name, l_site, site, c->site);
        goto done;
    }
    if (strcmp(pname, c->name) != 0) {
        rc = kvc_err_set(err, KVC_EPARSE, "%s:%d: name: '%s' differs from the credential's '%s'",
                         name, l_name, pname, c->name);
        goto done;
    }
    s_join_roles(c, want, sizeof want);
    if (strcmp(roles_s, want) != 0) {
        rc = kvc_err_set(err, KVC_EPARSE,
                         "%s:%d: roles: '%.200s' differs from the credential's '%.200s'", name,
                         l_roles, roles_s, want);
        goto done;
    }
    if (memcmp(pk, c->curve_public, 32) != 0) {
        rc = kvc_err_set(err, KVC_EPARSE, "%s:%d: public: differs from the credential's key", name,
                         l_pub);
        goto done;
    }
    char when[32];
    kvc_cred_time_str(c->not_after, when, sizeof when);
    if (strcmp(not_after, when) != 0) {
        rc = kvc_err_set(err, KVC_EPARSE,
                         "%s:%d: not_after: '%s' differs from the credential's '%s'", name, l_after,
                         s_printable(not_after, shown), when);
        goto done;
    }
done:
    s_unpacked_free(outer, body);
    sodium_memzero(b64, sizeof b64);
    if (rc != KVC_OK)
        sodium_memzero(out, sizeof *out);
    return rc;
}

/* ---- files: writing ----------------------------------------------------- */

/* fsyncs the directory holding path so a new file survives a crash. */
static void s_sync_dir(const char *path)
{
    char copy[KVC_PATH_MAX + 64];
    if (kvc_strlcpy(copy, path, sizeof copy) != KVC_OK)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Creates path (never overwriting) with exactly mode, writes data fully and
 * fsyncs it. A partly written file is removed. */
static int s_write_new(const char *path, mode_t mode, const char *data, size_t len, kvc_err_t *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        if (errno == EEXIST)
            return kvc_err_set(err, KVC_EEXIST, "%s: already exists; refusing to overwrite it",
                               path);
        return kvc_err_set(err, errno == ENOENT ? KVC_ENOENT : KVC_EIO, "%s: cannot create: %s",
                           path, strerror(errno));
    }
    int e = 0;
    if (fchmod(fd, mode) != 0)
        e = errno;
    size_t off = 0;
    while (!e && off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            e = errno;
        else
            off += (size_t)n;
    }
    if (!e && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (e) {
        unlink(path);
        return kvc_err_set(err, KVC_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    s_sync_dir(path);
    return KVC_OK;
}

/* Fails with KVC_EEXIST if path exists (checked before making keys). */
static int s_refuse_existing(const char *path, kvc_err_t *err)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return kvc_err_set(err, KVC_EEXIST, "%s: already exists; refusing to overwrite it", path);
    return KVC_OK;
}

/* Joins dir and file into out, KVC_ERANGE if too long. */
static int s_join(char *out, size_t size, const char *dir, const char *file, kvc_err_t *err)
{
    size_t dl = strlen(dir);
    int w = snprintf(out, size, "%s%s%s", dir, (dl && dir[dl - 1] == '/') ? "" : "/", file);
    if (w < 0 || (size_t)w >= size)
        return kvc_err_set(err, KVC_ERANGE, "%s: path too long", dir);
    return KVC_OK;
}

/* Makes dir/federation.key and dir/federation.pub. */
int kvc_ca_init(const char *dir, kvc_ca_t *out, kvc_err_t *err)
{
    char key_path[KVC_PATH_MAX], pub_path[KVC_PATH_MAX];
    memset(out, 0, sizeof *out);
    if (kvc_crypto_init() != KVC_OK)
        return kvc_err_set(err, KVC_ECRYPTO, "libsodium failed to initialise");
    int rc = s_join(key_path, sizeof key_path, dir, "federation.key", err);
    if (rc == KVC_OK)
        rc = s_join(pub_path, sizeof pub_path, dir, "federation.pub", err);
    if (rc != KVC_OK)
        return rc;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return kvc_err_set(err, KVC_EIO, "%s: cannot create directory: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return kvc_err_set(err, KVC_EIO, "%s: not a directory", dir);
    if ((rc = s_refuse_existing(key_path, err)) != KVC_OK ||
        (rc = s_refuse_existing(pub_path, err)) != KVC_OK)
        return rc;
    if (kvc_ca_generate(out) != KVC_OK)
        return kvc_err_set(err, KVC_ECRYPTO, "cannot make a federation keypair");

    char pub_hex[65], sec_hex[129], text[512];
    kvc_key_hex(out->public_key, pub_hex);
    sodium_bin2hex(sec_hex, sizeof sec_hex, out->secret_key, 64);
    int n =
        snprintf(text, sizeof text, S_HDR_CA_KEY "\npublic: %s\nsecret: %s\n", pub_hex, sec_hex);
    rc = s_write_new(key_path, 0600, text, (size_t)n, err);
    sodium_memzero(sec_hex, sizeof sec_hex);
    sodium_memzero(text, sizeof text);
    if (rc == KVC_OK) {
        n = snprintf(text, sizeof text, S_HDR_CA_PUB "\npublic: %s\n", pub_hex);
        rc = s_write_new(pub_path, 0644, text, (size_t)n, err);
        if (rc != KVC_OK)
            unlink(key_path);
    }
    if (rc != KVC_OK)
        sodium_memzero(out, sizeof *out);
    return rc;
}

/* Loads the federation secret key from a directory or a key file path. */
int kvc_ca_load(const char *dir_or_key, kvc_ca_t *out, kvc_err_t *err)
{
    char path[KVC_PATH_MAX];
    char buf[KVC_CRED_FILE_MAX + 1];
    size_t len = 0;
    memset(out, 0, sizeof *out);
    if (kvc_crypto_init() != KVC_OK)
        return kvc_err_set(err, KVC_ECRYPTO, "libsodium failed to initialise");
    struct stat st;
    int rc;
    if (stat(dir_or_key, &st) == 0 && S_ISDIR(st.st_mode))
        rc = s_join(path, sizeof path, dir_or_key, "federation.key", err);
    else
        rc = kvc_strlcpy(path, dir_or_key, sizeof path) == KVC_OK
                 ? KVC_OK
                 : kvc_err_set(err, KVC_ERANGE, "%s: path too long", dir_or_key);
    if (rc == KVC_OK)
        rc = s_read_file(path, buf, &len, err);
    if (rc == KVC_OK)
        rc = s_parse_ca_key(buf, len, path, out, err);
    sodium_memzero(buf, sizeof buf);
    return rc;
}

/* Loads federation.pub. */
int kvc_ca_load_public(const char *path, uint8_t public_key[32], kvc_err_t *err)
{
    char buf[KVC_CRED_FILE_MAX + 1];
    size_t len = 0;
    int rc = s_read_file(path, buf, &len, err);
    if (rc == KVC_OK)
        rc = s_parse_public(buf, len, path, S_HDR_CA_PUB, "federation public key file", public_key,
                            err);
    return rc;
}

/* Writes an identity file, 0600, never overwriting. */
int kvc_identity_save(const kvc_identity_t *id, const char *path, kvc_err_t *err)
{
    const kvc_cred_t *c = &id->cred;
    if (c->blob_len == 0 || c->blob_len > KVC_CRED_BLOB_MAX)
        return kvc_err_set(err, KVC_EINVAL, "%s: identity has no credential", path);
    char roles[KVC_MAX_ROLES * KVC_NAME_MAX], pub_hex[65], sec_hex[65], when[32];
    char b64[S_B64_MAX];
    char text[S_TEXT_MAX];
    s_join_roles(c, roles, sizeof roles);
    kvc_key_hex(c->curve_public, pub_hex);
    kvc_key_hex(id->curve_secret, sec_hex);
    sodium_bin2base64(b64, sizeof b64, c->blob, c->blob_len, S_B64_VARIANT);
    int n = snprintf(text, sizeof text,
                     S_HDR_IDENTITY "\nsite: %s\nname: %s\nroles:%s%s\npublic: %s\nsecret: %s\n"
                                    "not_after: %s\ncredential: %s\n",
                     c->site, c->name, c->n_roles ? " " : "", roles, pub_hex, sec_hex,
                     kvc_cred_time_str(c->not_after, when, sizeof when), b64);
    int rc;
    if (n < 0 || (size_t)n >= sizeof text)
        rc = kvc_err_set(err, KVC_ERANGE, "%s: identity too large", path);
    else
        rc = s_write_new(path, 0600, text, (size_t)n, err);
    sodium_memzero(sec_hex, sizeof sec_hex);
    sodium_memzero(text, sizeof text);
    return rc;
}

/* Reads and checks an identity file. */
int kvc_identity_load(const char *path, kvc_identity_t *out, kvc_err_t *err)
{
    char buf[KVC_CRED_FILE_MAX + 1];
    size_t len = 0;
    memset(out, 0, sizeof *out);
    int rc = s_read_file(path, buf, &len, err);
    if (rc == KVC_OK)
        rc = kvc_identity_parse(buf, len, path, out, err);
    sodium_memzero(buf, sizeof buf);
    return rc;
}

/* Makes a node keypair in path (0600) and path.pub (0644). */
int kvc_nodekey_generate(const char *path, kvc_nodekey_t *out, kvc_err_t *err)
{
    char pub_path[KVC_PATH_MAX + 8];
    memset(out, 0, sizeof *out);
    if (kvc_crypto_init() != KVC_OK)
        return kvc_err_set(err, KVC_ECRYPTO, "libsodium failed to initialise");
    int w = snprintf(pub_path, sizeof pub_path, "%s.pub", path);
    if (w < 0 || (size_t)w >= sizeof pub_path || strlen(path) >= KVC_PATH_MAX)
        return kvc_err_set(err, KVC_ERANGE, "%s: path too long", path);
    int rc;
    if ((rc = s_refuse_existing(path, err)) != KVC_OK ||
        (rc = s_refuse_existing(pub_path, err)) != KVC_OK)
        return rc;
    if (crypto_box_keypair(out->public_key, out->secret_key) != 0)
        return kvc_err_set(err, KVC_ECRYPTO, "cannot make a node keypair");
    char pub_hex[65], sec_hex[65], text[256];
    kvc_key_hex(out->public_key, pub_hex);
    kvc_key_hex(out->secret_key, sec_hex);
    int n =
        snprintf(text, sizeof text, S_HDR_NODE_KEY "\npublic: %s\nsecret: %s\n", pub_hex, sec_hex);
    rc = s_write_new(path, 0600, text, (size_t)n, err);
    sodium_memzero(sec_hex, sizeof sec_hex);
    sodium_memzero(text, sizeof text);
    if (rc == KVC_OK) {
        n = snprintf(text, sizeof text, S_HDR_NODE_PUB "\npublic: %s\n", pub_hex);
        rc = s_write_new(pub_path, 0644, text, (size_t)n, err);
        if (rc != KVC_OK)
            unlink(path);
    }
    if (rc != KVC_OK)
        sodium_memzero(out, sizeof *out);
    return rc;
}

/* Reads a node key file. */
int kvc_nodekey_load(const char *path, kvc_nodekey_t *out, kvc_err_t *err)
{
    char buf[KVC_CRED_FILE_MAX + 1];
    size_t len = 0;
    memset(out, 0, sizeof *out);
    if (kvc_crypto_init() != KVC_OK)
        return kvc_err_set(err, KVC_ECRYPTO, "libsodium failed to initialise");
    int rc = s_read_file(path, buf, &len, err);
    if (rc == KVC_OK)
        rc = s_parse_nodekey(buf, len, path, out, err);
    sodium_memzero(buf, sizeof buf);
    return rc;
}

/* Reads a node public key file. */
int kvc_nodekey_load_public(const char *path, uint8_t public_key[32], kvc_err_t *err)
{
    char buf[KVC_CRED_FILE_MAX + 1];
    size_t len = 0;
    int rc = s_read_file(path, buf, &len, err);
    if (rc == KVC_OK)
        rc =
            s_parse_public(buf, len, path, S_HDR_NODE_PUB, "node public key file", public_key, err);
    return rc;
}
