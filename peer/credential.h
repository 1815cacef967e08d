/*
 * credential.h - the federation's trust model (DESIGN.md, "Trust").
 *
 * One Ed25519 federation key signs each peer's credential: its Curve25519
 * public key (the key CurveZMQ authenticates), site, name, roles and
 * validity. A receiver trusts a member id only when the sender's CURVE key
 * holds a credential for it that verifies against the federation key.
 *
 * Secrets are wiped with sodium_memzero after use and written only to files
 * created 0600. Nothing here logs.
 */
#ifndef KVC_CREDENTIAL_H
#define KVC_CREDENTIAL_H

#include "base.h"
#include "config.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_CRED_BLOB_MAX 2048 /* a serialised kvc.fed.Credential */

/* The federation signing key. */
typedef struct {
    uint8_t public_key[32];  /* Ed25519 */
    uint8_t secret_key[64];  /* Ed25519 (libsodium layout); zero when unknown */
} kvc_ca_t;

/* A verified (or freshly issued) credential's contents. */
typedef struct {
    char site[KVC_NAME_MAX];
    char name[KVC_NAME_MAX];
    char roles[KVC_MAX_ROLES][KVC_NAME_MAX];
    size_t n_roles;
    uint8_t curve_public[32];
    int64_t not_before;   /* unix seconds */
    int64_t not_after;    /* unix seconds */
    uint8_t ca_public[32];
    uint8_t blob[KVC_CRED_BLOB_MAX]; /* serialised Credential, sent in Hello */
    size_t blob_len;
} kvc_cred_t;

/* A peer's identity: its credential plus the matching Curve25519 secret. */
typedef struct {
    kvc_cred_t cred;
    uint8_t curve_secret[32];
} kvc_identity_t;

/* A node's own keypair (`kvc keygen`), used to receive sealed join tokens. */
typedef struct {
    uint8_t public_key[32]; /* X25519 (crypto_box) */
    uint8_t secret_key[32];
} kvc_nodekey_t;

/* Initialises libsodium; safe to call many times. KVC_ECRYPTO on failure. */
int kvc_crypto_init(void);

/* Makes a new federation key in dir: dir/federation.key (secret, 0600) and
 * dir/federation.pub (public). Refuses (KVC_EEXIST) to overwrite either. */
int kvc_ca_init(const char *dir, kvc_ca_t *out, kvc_err_t *err);

/* Loads the secret key from dir (or from a path to federation.key). */
int kvc_ca_load(const char *dir_or_key, kvc_ca_t *out, kvc_err_t *err);

/* Loads a federation public key file (federation.pub). */
int kvc_ca_load_public(const char *path, uint8_t public_key[32], kvc_err_t *err);

/*
 * Issues a credential: makes a Curve25519 keypair and signs site, name,
 * roles and validity [now_s, now_s + days*86400] with ca. site and name must
 * be valid names (kvc_config_valid_name); at most KVC_MAX_ROLES roles.
 */
int kvc_cred_issue(const kvc_ca_t *ca, const char *site, const char *name,
                   const char *const *roles, size_t n_roles, int64_t now_s, int days,
                   kvc_identity_t *out, kvc_err_t *err);

/*
 * Verifies a serialised Credential against the federation key `trust` at
 * time now_s and fills out. Errors: KVC_EPARSE (malformed), KVC_EFOREIGN
 * (signed by another key), KVC_ECRYPTO (bad signature, tampered body, bad
 * key length), KVC_EEXPIRED (now outside [not_before, not_after]),
 * KVC_EINVAL (invalid site/name). Never trusts any length in the input.
 */
int kvc_cred_verify(const uint8_t *blob, size_t len, const uint8_t trust[32], int64_t now_s,
                    kvc_cred_t *out, kvc_err_t *err);

/* Writes an identity file (0600, refuses to overwrite: KVC_EEXIST). */
int kvc_identity_save(const kvc_identity_t *id, const char *path, kvc_err_t *err);

/* Reads an identity file. Checks the secret matches the public key; does
 * not verify the signature (use kvc_cred_verify with the trust key). */
int kvc_identity_load(const char *path, kvc_identity_t *out, kvc_err_t *err);

/* Makes a node keypair and writes it to path (0600, refuses overwrite). The
 * public half is also written to path + ".pub". */
int kvc_nodekey_generate(const char *path, kvc_nodekey_t *out, kvc_err_t *err);

/* Reads a node key file. */
int kvc_nodekey_load(const char *path, kvc_nodekey_t *out, kvc_err_t *err);

/* Writes 64 lowercase hex characters + NUL into hex (size >= 65). */
void kvc_key_hex(const uint8_t key[32], char hex[65]);

/* Wipes an identity's secret. */
void kvc_identity_wipe(kvc_identity_t *id);

/* ---- Additions (beyond the first draft of this header) ---------------- */

#define KVC_CRED_FILE_MAX 16384 /* every key/identity file is at most this */

/* Makes a federation keypair in memory only (tests, `kvc-peer --dev`). */
int kvc_ca_generate(kvc_ca_t *out);

/* Derives a federation keypair from a 32-byte seed: deterministic, for
 * fuzzing and reproducible tests only. */
int kvc_ca_from_seed(const uint8_t seed[32], kvc_ca_t *out);

/*
 * Parses the text of an identity file (len bytes, need not be
 * NUL-terminated, may hold any bytes) named `name` in messages
 * ("NAME:LINE: what is wrong"). Same checks as kvc_identity_load. On error
 * out is wiped. Exposed for the fuzzer and tests.
 */
int kvc_identity_parse(const char *text, size_t len, const char *name, kvc_identity_t *out,
                       kvc_err_t *err);

/* Reads a node's public key file (path written by kvc_nodekey_generate
 * with ".pub" appended), e.g. for `kvc nodes approve`. */
int kvc_nodekey_load_public(const char *path, uint8_t public_key[32], kvc_err_t *err);

/* Formats unix seconds as ISO-8601 UTC ("2026-11-01T00:00:00Z") into buf
 * (size >= 32; out-of-range times print as "@SECONDS"). Returns buf. */
const char *kvc_cred_time_str(int64_t unix_s, char *buf, size_t size);

/* Parses a comma-separated role list ("gateway,coordinator"; "" = none)
 * into roles; each must be a valid name, at most KVC_MAX_ROLES. KVC_EINVAL
 * with a message like "roles: 'X' must match [a-z0-9-]{1,63}". */
int kvc_cred_parse_roles(const char *list, char roles[KVC_MAX_ROLES][KVC_NAME_MAX],
                         size_t *n_roles, kvc_err_t *err);

#endif
