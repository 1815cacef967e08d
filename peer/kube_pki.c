/*
 * kube_pki.c - the small pieces of PKI the join broker hands to a node:
 * kubeadm's CA pin (SHA-256 of the CA's SubjectPublicKeyInfo), k3s's K10
 * token, and the check of cluster-info's bootstrap JWS.
 *
 * The PEM and DER here come from a kubeconfig or the API server, so they
 * are hostile: the DER walker reads only the few outer elements it needs,
 * checks every length against what remains before it steps, and never
 * recurses. No OpenSSL: libsodium has SHA-256 and HMAC-SHA256.
 */
#include "kube.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define S_PEM_BEGIN "-----BEGIN CERTIFICATE-----"
#define S_PEM_END "-----END CERTIFICATE-----"

/* Finds needle in hay[0..n). */
static const unsigned char *s_find(const unsigned char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

/* One DER element: tag, where its content starts and how long it is. */
typedef struct {
    unsigned tag;
    const unsigned char *start; /* the tag byte */
    const unsigned char *content;
    size_t len;  /* of the content */
    size_t full; /* tag + length + content */
} s_der_t;

/* Reads the element at *p (before end) into e and moves *p past it. */
static int s_der_next(const unsigned char **p, const unsigned char *end, s_der_t *e)
{
    const unsigned char *q = *p;
    if (end - q < 2)
        return KVC_EPARSE;
    e->start = q;
    e->tag = *q++;
    if ((e->tag & 0x1f) == 0x1f)
        return KVC_EPARSE; /* high tag numbers: never in the elements we read */
    size_t len = *q++;
    if (len & 0x80) {
        size_t nb = len & 0x7f;
        if (nb == 0 || nb > 4 || (size_t)(end - q) < nb)
            return KVC_EPARSE;
        len = 0;
        for (size_t i = 0; i < nb; i++)
            len = (len << 8) | *q++;
        if (len < 0x80)
            return KVC_EPARSE; /* not minimal: DER forbids it */
    }
    if ((size_t)(end - q) < len)
        return KVC_EPARSE;
    e->content = q;
    e->len = len;
    e->full = (size_t)(q - e->start) + len;
    *p = q + len;
    return KVC_OK;
}

/* Decodes the first CERTIFICATE block of a PEM bundle into a fresh DER buffer. */
static int s_pem_der(const unsigned char *pem, size_t len, unsigned char **der, size_t *der_len)
{
    const unsigned char *b = s_find(pem, len, S_PEM_BEGIN);
    if (!b)
        return KVC_EPARSE;
    b += strlen(S_PEM_BEGIN);
    const unsigned char *e = s_find(b, len - (size_t)(b - pem), S_PEM_END);
    if (!e)
        return KVC_EPARSE;
    size_t n = (size_t)(e - b);
    if (n > KVC_KUBE_BLOB_MAX * 2)
        return KVC_ERANGE;
    unsigned char *buf = kvc_malloc(n / 4 * 3 + 4);
    if (!buf)
        return KVC_ENOMEM;
    size_t bin = 0;
    const char *stop = NULL;
    if (sodium_base642bin(buf, n / 4 * 3 + 3, (const char *)b, n, " \t\r\n", &bin, &stop,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        stop != (const char *)e || bin == 0) {
        kvc_free(buf);
        return KVC_EPARSE;
    }
    *der = buf;
    *der_len = bin;
    return KVC_OK;
}

/* Finds the SubjectPublicKeyInfo element of a DER certificate. */
static int s_spki(const unsigned char *der, size_t len, s_der_t *spki)
{
    const unsigned char *p = der, *end = der + len;
    s_der_t cert, tbs, e;
    if (s_der_next(&p, end, &cert) || cert.tag != 0x30)
        return KVC_EPARSE;
    p = cert.content;
    end = cert.content + cert.len;
    if (s_der_next(&p, end, &tbs) || tbs.tag != 0x30)
        return KVC_EPARSE;
    p = tbs.content;
    end = tbs.content + tbs.len;
    if (s_der_next(&p, end, &e))
        return KVC_EPARSE;
    if (e.tag == 0xa0 && s_der_next(&p, end, &e)) /* [0] version, then serial */
        return KVC_EPARSE;
    if (e.tag != 0x02)
        return KVC_EPARSE;
    /* signature algorithm, issuer, validity, subject, then the key */
    for (int i = 0; i < 4; i++)
        if (s_der_next(&p, end, &e) || e.tag != 0x30)
            return KVC_EPARSE;
    if (s_der_next(&p, end, spki) || spki->tag != 0x30)
        return KVC_EPARSE;
    /* SPKI = SEQUENCE { AlgorithmIdentifier SEQUENCE, BIT STRING } */
    const unsigned char *q = spki->content, *qe = spki->content + spki->len;
    if (s_der_next(&q, qe, &e) || e.tag != 0x30 || s_der_next(&q, qe, &e) || e.tag != 0x03 ||
        q != qe)
        return KVC_EPARSE;
    return KVC_OK;
}

/* Writes the 64 lowercase hex digits of a SHA-256 into out (65 bytes). */
static void s_hex(const unsigned char h[32], char *out)
{
    sodium_bin2hex(out, 65, h, 32);
}

int kvc_kube_ca_pin(const unsigned char *pem, size_t len, char out[KVC_KUBE_PIN_LEN])
{
    unsigned char *der = NULL;
    size_t der_len = 0;
    int rc = s_pem_der(pem, len, &der, &der_len);
    if (rc)
        return rc;
    s_der_t spki;
    rc = s_spki(der, der_len, &spki);
    if (rc == KVC_OK) {
        unsigned char h[32];
        crypto_hash_sha256(h, spki.start, spki.full);
        memcpy(out, "sha256:", 7);
        s_hex(h, out + 7);
    }
    kvc_free(der);
    return rc;
}

/* Tells whether s is exactly n characters of [a-z0-9]. */
static int s_token_part(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

int kvc_kube_k3s_token(const unsigned char *ca_pem, size_t len, const char *id, const char *secret,
                       char out[KVC_KUBE_K3S_TOKEN_LEN])
{
    if (!ca_pem || len == 0 || !s_token_part(id, 6) || !s_token_part(secret, 16))
        return KVC_EINVAL;
    unsigned char h[32];
    char hex[65];
    crypto_hash_sha256(h, ca_pem, len);
    s_hex(h, hex);
    snprintf(out, KVC_KUBE_K3S_TOKEN_LEN, "K10%s::%s.%s", hex, id, secret);
    return KVC_OK;
}

int kvc_kube_jws_verify(const char *jws, const char *payload, size_t payload_len, const char *id,
                        const char *secret)
{
    if (!jws || !s_token_part(id, 6) || !s_token_part(secret, 16))
        return KVC_EINVAL;
    const char *d1 = strchr(jws, '.');
    if (!d1 || d1[1] != '.')
        return KVC_EPARSE; /* not a detached-payload compact JWS */
    const char *sig = d1 + 2;
    size_t hlen = (size_t)(d1 - jws), slen = strlen(sig);
    if (hlen == 0 || hlen > 1024 || slen != 43 || strchr(sig, '.'))
        return KVC_EPARSE;
    if (payload_len > KVC_KUBE_RESPONSE_MAX)
        return KVC_ERANGE;

    /* The protected header must say HS256 and name this token. */
    unsigned char header[800];
    size_t header_len = 0;
    if (sodium_base642bin(header, sizeof header - 1, jws, hlen, NULL, &header_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return KVC_EPARSE;
    header[header_len] = '\0';
    static const char *const alg_path[] = {"alg"}, *const kid_path[] = {"kid"};
    char *alg = NULL, *kid = NULL;
    int ra = kvc_kube_json_string((const char *)header, header_len, alg_path, 1, &alg, NULL);
    int rk = kvc_kube_json_string((const char *)header, header_len, kid_path, 1, &kid, NULL);
    int ok = ra == 1 && rk == 1 && strcmp(alg, "HS256") == 0 && strcmp(kid, id) == 0;
    kvc_free(alg);
    kvc_free(kid);
    if (ra < 0 || rk < 0)
        return KVC_EPARSE;
    if (!ok)
        return KVC_ECRYPTO;

    unsigned char want[32], got[33];
    size_t got_len = 0;
    if (sodium_base642bin(got, sizeof got, sig, slen, NULL, &got_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        got_len != 32)
        return KVC_EPARSE;

    size_t b64_len =
        sodium_base64_ENCODED_LEN(payload_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *b64 = kvc_malloc(b64_len);
    if (!b64)
        return KVC_ENOMEM;
    sodium_bin2base64(b64, b64_len, (const unsigned char *)payload, payload_len,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);

    char key[24];
    snprintf(key, sizeof key, "%s.%s", id, secret);
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, strlen(key));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)jws, hlen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)b64, strlen(b64));
    crypto_auth_hmacsha256_final(&st, want);
    sodium_memzero(key, sizeof key);
    sodium_memzero(&st, sizeof st);
    kvc_free(b64);
    return sodium_memcmp(want, got, 32) == 0 ? KVC_OK : KVC_ECRYPTO;
}
