/*
 * kube.h - the peer's Kubernetes API client, for the join-token broker:
 * bootstrap-token Secrets (create, extend, delete, find orphans), the
 * cluster-info JWS that proves a token is live, node lookups, and the
 * discovery pins (kubeadm's CA hash, k3s's K10 token) a joining node needs.
 *
 * Everything read from a kubeconfig, from the API server or from a PEM is
 * hostile input: sizes are bounded, decoders check before they read, and
 * errors name what was wrong. Token secrets and key material are wiped
 * (sodium_memzero) when their owner is freed and are never logged.
 *
 * The client is blocking (libcurl easy): the broker calls it off the event
 * loop. Only the coordinator calls the mutating operations, under its term.
 */
#ifndef KVC_KUBE_H
#define KVC_KUBE_H

#include "base.h"

#include <stddef.h>
#include <stdint.h>

/* Bounds on what we read. */
#define KVC_KUBECONFIG_MAX (1024 * 1024)        /* whole kubeconfig file */
#define KVC_KUBE_BLOB_MAX (64 * 1024)           /* one decoded cert, key, CA or token */
#define KVC_KUBE_SERVER_MAX 512                 /* server URL */
#define KVC_KUBE_RESPONSE_MAX (4 * 1024 * 1024) /* one API response body */

/* Kubernetes answered 409 Conflict (not AlreadyExists): retry on a fresh read. */
#define KVC_KUBE_ECONFLICT KVC_ESTATE
/* 410 Gone: a watch or list continue token expired. */
#define KVC_KUBE_EGONE KVC_EEXPIRED

/*
 * What a kubeconfig's current context says: the server, the CA to trust,
 * and either a client certificate and key or a bearer token. The blobs are
 * owned by the struct (kvc_malloc); kvc_kubeconfig_free wipes and frees.
 */
typedef struct {
    char server[KVC_KUBE_SERVER_MAX]; /* https://host:port, no trailing slash */
    unsigned char *ca;                /* PEM bytes of the CA bundle, or NULL */
    size_t ca_len;
    unsigned char *cert; /* client certificate PEM, or NULL */
    size_t cert_len;
    unsigned char *key; /* client key PEM, or NULL (wiped on free) */
    size_t key_len;
    char *token; /* bearer token, or NULL (wiped on free) */
    size_t token_len;
} kvc_kubeconfig_t;

/*
 * Reads the kubeconfig at path (at most KVC_KUBECONFIG_MAX bytes) into *cfg
 * (which this zeroes first). Relative file paths in it are taken from the
 * kubeconfig's folder, as kubectl does. On failure *cfg holds nothing and
 * err says "kubeconfig: <field>: what" (KVC_EIO, KVC_EPARSE, KVC_ERANGE,
 * KVC_ENOENT for a missing context/cluster/user, KVC_ENOMEM).
 */
int kvc_kubeconfig_load(const char *path, kvc_kubeconfig_t *cfg, kvc_err_t *err);

/*
 * Parses kubeconfig text (len bytes, need not be NUL-terminated); dir is
 * the folder relative file names are read from, or NULL to refuse file
 * forms (what the fuzzer uses). Same results as kvc_kubeconfig_load.
 */
int kvc_kubeconfig_parse(const char *text, size_t len, const char *dir, kvc_kubeconfig_t *cfg,
                         kvc_err_t *err);

/* Wipes the key and token, frees every blob and zeroes *cfg. */
void kvc_kubeconfig_free(kvc_kubeconfig_t *cfg);

/* How a client talks: timeouts and the retry of idempotent calls. */
typedef struct {
    long connect_timeout_ms; /* default 3000 */
    long timeout_ms;         /* whole request, default 10000 */
    int max_attempts;        /* idempotent calls; default 4 (1 = never retry) */
    long backoff_ms;         /* first retry delay, doubled each time, default 100 */
    long backoff_max_ms;     /* cap of one delay, default 2000 */
} kvc_kube_opts_t;

typedef struct kvc_kube kvc_kube_t;

/*
 * Makes a client for cfg, which it copies (the caller may free cfg at
 * once). opts may be NULL for the defaults. NULL on failure, err set.
 * A client holds one libcurl handle: one thread uses it at a time.
 */
kvc_kube_t *kvc_kube_new(const kvc_kubeconfig_t *cfg, const kvc_kube_opts_t *opts, kvc_err_t *err);

/* Frees the client (wiping its key material) and nulls *self_p; NULL is fine. */
void kvc_kube_destroy(kvc_kube_t **self_p);

/*
 * Test hook: the next token ids come from fn (which writes 6 characters of
 * [a-z0-9] into id and returns 0) instead of randombytes_uniform; a
 * non-zero return falls back to random ids. NULL restores random ids.
 */
typedef int (*kvc_kube_id_fn)(char id[6], void *arg);
void kvc_kube_set_id_source(kvc_kube_t *self, kvc_kube_id_fn fn, void *arg);

/*
 * What the last failed call's API server said (HTTP status and Status
 * reason), for tests and logs; 0 and "" after a transport failure.
 */
long kvc_kube_last_http_status(const kvc_kube_t *self);
const char *kvc_kube_last_reason(const kvc_kube_t *self);

/* --- bootstrap tokens --------------------------------------------------- */

#define KVC_KUBE_TOKEN_TTL_DEFAULT 50
#define KVC_KUBE_TOKEN_TTL_MAX 59 /* a token lives under a minute */
#define KVC_KUBE_DEFAULT_GROUPS "system:bootstrappers:kubeadm:default-node-token"
#define KVC_KUBE_LABEL_MAX 63

/* What to put on a new token. Strings are borrowed for the call. */
typedef struct {
    int ttl_s;          /* 1..KVC_KUBE_TOKEN_TTL_MAX; 0 means the default 50 */
    const char *groups; /* auth-extra-groups, comma separated; NULL = default */
    const char *site;   /* kvc.io/site label, [a-z0-9.-]{1,63}, or NULL */
    uint64_t term;      /* kvc.io/term label: the coordinator's fencing term */
    const char *node;   /* kvc.io/node label, [a-z0-9.-]{1,63}, or NULL */
} kvc_kube_token_opts_t;

/* A minted token. kvc_kube_token_destroy wipes the secret. */
typedef struct {
    char id[7];      /* [a-z0-9]{6} */
    char secret[17]; /* [a-z0-9]{16} */
    char name[32];   /* bootstrap-token-<id> */
    int64_t expires; /* Unix seconds of the expiration written */
} kvc_kube_token_t;

/*
 * Creates Secret kube-system/bootstrap-token-<id> (type
 * bootstrap.kubernetes.io/token, usable for authentication and signing)
 * expiring ttl seconds from now, labelled app.kubernetes.io/managed-by=kvc
 * plus the site, term and node of opts. An AlreadyExists answer means the
 * random id was taken: a new id is drawn, up to 5 times. A failed create is
 * not retried otherwise (it may have been applied), except when no
 * connection could be made at all. On success *tok_p is the
 * caller's (kvc_kube_token_destroy). KVC_EINVAL for bad opts, KVC_EEXIST
 * after 5 collisions, else the API error (see kvc_kube_request).
 */
int kvc_kube_bootstrap_token_create(kvc_kube_t *self, const kvc_kube_token_opts_t *opts,
                                    kvc_kube_token_t **tok_p, kvc_err_t *err);

/* Wipes and frees the token and nulls *tok_p; NULL is fine. */
void kvc_kube_token_destroy(kvc_kube_token_t **tok_p);

/* Moves the token's expiration to ttl_s (1..59) seconds from now (merge patch). */
int kvc_kube_bootstrap_token_extend(kvc_kube_t *self, const char *id, int ttl_s, kvc_err_t *err);

/* Deletes the token's Secret; one already gone counts as deleted. */
int kvc_kube_bootstrap_token_delete(kvc_kube_t *self, const char *id, kvc_err_t *err);

/*
 * Calls fn with the name of every kube-system Secret that matches the label
 * selector (e.g. "app.kubernetes.io/managed-by=kvc,kvc.io/site=s1"); name
 * is valid during the call. A non-zero return from fn stops the walk and is
 * returned. For a new coordinator to delete what an old one left behind.
 */
typedef int (*kvc_kube_name_fn)(const char *name, void *arg);
int kvc_kube_bootstrap_token_list_orphans(kvc_kube_t *self, const char *selector,
                                          kvc_kube_name_fn fn, void *arg, kvc_err_t *err);

/*
 * Reads ConfigMap kube-public/cluster-info: 1 if it holds
 * jws-kubeconfig-<id>, 0 if not, or a negative code. If jws_p / kubeconfig_p
 * are not NULL they get copies of the signature and of the kubeconfig value
 * (the caller frees them with kvc_free) when the answer is 1.
 */
int kvc_kube_cluster_info_has_jws(kvc_kube_t *self, const char *id, char **jws_p,
                                  char **kubeconfig_p, kvc_err_t *err);

/* Polls kvc_kube_cluster_info_has_jws every 50 ms until it answers 1
 * (returns 0) or deadline_ms (monotonic) passes (KVC_ETIMEDOUT). */
int kvc_kube_wait_jws(kvc_kube_t *self, const char *id, int64_t deadline_ms, kvc_err_t *err);

/*
 * Verifies a bootstrapsigner JWS: compact, detached payload
 * ("<b64url header>..<b64url sig>"), header alg HS256 and kid id, HMAC-SHA256
 * with key "<id>.<secret>" over "<b64url header>.<b64url payload>".
 * 0 if it verifies, KVC_EPARSE for a malformed JWS, KVC_ECRYPTO for a wrong one.
 */
int kvc_kube_jws_verify(const char *jws, const char *payload, size_t payload_len, const char *id,
                        const char *secret);

/* 1 if Node name exists, 0 if not, or a negative code. */
int kvc_kube_node_exists(kvc_kube_t *self, const char *name, kvc_err_t *err);

/* --- any object (the model reconciler) -------------------------------------- */

/* The field manager of kvc's server-side applies. */
#define KVC_KUBE_FIELD_MANAGER "kvc"
/* Longest API path these calls take (from the server root, no query). */
#define KVC_KUBE_PATH_MAX 1024

/*
 * The calls below take an API path from the server root without a query,
 * e.g. "/apis/apps/v1/namespaces/kvc-models/deployments/kvc-resnet" for an
 * object or ".../deployments" for a collection: at most KVC_KUBE_PATH_MAX
 * bytes of [A-Za-z0-9/._-] starting with '/' (KVC_EINVAL otherwise). Bodies
 * are borrowed for the call. Returned bodies are the caller's (kvc_free),
 * NUL-terminated, at most KVC_KUBE_RESPONSE_MAX bytes; hostile input for
 * the decoders below. Errors as for the token calls: KVC_ENOENT for 404,
 * KVC_EINVAL for 400/422 (err holds the API's message), KVC_EPERM,
 * KVC_KUBE_ECONFLICT, KVC_EUNAVAIL/KVC_ETIMEDOUT for transport failures.
 */

/* GETs an object: 1 and *body_p (*len_p bytes; len_p may be NULL) when it
 * exists, 0 and *body_p NULL when the API answers 404, or a negative code. */
int kvc_kube_get(kvc_kube_t *self, const char *path, char **body_p, size_t *len_p, kvc_err_t *err);

/*
 * Server-side apply of a JSON object (JSON is YAML): PATCH
 * path?fieldManager=kvc&force=true, Content-Type application/apply-patch+yaml.
 * Forced, so fields another manager holds move to kvc (the caller checks
 * that the object is kvc's before). Idempotent, so retried. resp_p may be
 * NULL; else it gets the object as the server now has it (with status).
 */
int kvc_kube_apply(kvc_kube_t *self, const char *path, const char *body, size_t len, char **resp_p,
                   size_t *resp_len, kvc_err_t *err);

/* POSTs a new object to a collection; KVC_EEXIST when the name is taken.
 * Not retried unless no connection was ever made. */
int kvc_kube_create(kvc_kube_t *self, const char *collection, const char *body, size_t len,
                    kvc_err_t *err);

/* DELETEs an object; one already gone (404) counts as deleted. */
int kvc_kube_delete(kvc_kube_t *self, const char *path, kvc_err_t *err);

/* Lists a collection with a label selector (NULL = all, at most 1024
 * bytes) and calls fn with each items[].metadata.name, valid during the
 * call; a non-zero return from fn stops the walk and is returned. */
int kvc_kube_list(kvc_kube_t *self, const char *collection, const char *selector,
                  kvc_kube_name_fn fn, void *arg, kvc_err_t *err);

/* --- discovery pins ----------------------------------------------------- */

/* "sha256:" + 64 hex + NUL */
#define KVC_KUBE_PIN_LEN (7 + 64 + 1)

/*
 * kubeadm's --discovery-token-ca-cert-hash of the first certificate of a
 * PEM bundle: "sha256:<hex of SHA-256 over its SubjectPublicKeyInfo DER>".
 * KVC_EPARSE for a PEM or DER that is not a certificate.
 */
int kvc_kube_ca_pin(const unsigned char *pem, size_t len, char out[KVC_KUBE_PIN_LEN]);

/* "K10" + 64 hex + "::" + 6 + "." + 16 + NUL */
#define KVC_KUBE_K3S_TOKEN_LEN (3 + 64 + 2 + 6 + 1 + 16 + 1)

/* k3s's join token: K10<hex SHA-256 of the CA PEM bytes>::<id>.<secret>. */
int kvc_kube_k3s_token(const unsigned char *ca_pem, size_t len, const char *id, const char *secret,
                       char out[KVC_KUBE_K3S_TOKEN_LEN]);

/* --- response decoding (exposed for the fuzzers) ------------------------ */

/* A Kubernetes Status body: reason and message (bounded, printable). */
typedef struct {
    long code;
    char reason[64];
    char message[256];
} kvc_kube_status_t;

/* Reads a Status object; KVC_EPARSE if body is not one. */
int kvc_kube_status_parse(const char *body, size_t len, kvc_kube_status_t *st);

/*
 * Finds the string at a path of object keys (e.g. {"data", "kubeconfig"})
 * and copies it, unescaped, into *out (kvc_malloc, NUL-terminated).
 * 1 found, 0 absent (or not a string), KVC_EPARSE for bad JSON.
 */
int kvc_kube_json_string(const char *body, size_t len, const char *const *path, size_t depth,
                         char **out, size_t *out_len);

/*
 * Reads the non-negative integer at a path of object keys (e.g. {"status",
 * "readyReplicas"}) into *out. 1 found, 0 absent (or not a number),
 * KVC_EPARSE for bad JSON or a number that is not an integer in 0..2^63-1.
 */
int kvc_kube_json_u64(const char *body, size_t len, const char *const *path, size_t depth,
                      uint64_t *out);

/* Calls fn with items[].metadata.name of a list body; as kvc_kube_bootstrap_token_list_orphans. */
int kvc_kube_list_names(const char *body, size_t len, kvc_kube_name_fn fn, void *arg);

#endif
