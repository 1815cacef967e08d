/*
 * nodes.h - what a site knows about the machines that join it: node records
 * (pending, approved, rejected, revoked), one-time enrollment codes, and the
 * token audit log. All of it is kept through a kv (kv.h): in kvc-peer the
 * site map, replicated to every peer of the site and in LMDB before a call
 * returns, so nothing acknowledged is lost.
 *
 * A node is known by its public key (`kvc keygen`, 32 bytes). Its ID for
 * operators is the key in hex; any unique prefix of 8 or more hex digits,
 * or the node's name, finds it (kvc_nodes_find).
 *
 * Enrollment codes are secrets: only their hash (BLAKE2b) is stored, under
 * which the code is found again; the code itself is shown once, to whoever
 * created it. A code has an expiry and a number of uses.
 */
#ifndef KVC_NODES_H
#define KVC_NODES_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "kv.h"

#define KVC_NODE_NAME_MAX 63
#define KVC_NODE_ADDRS_MAX 8
#define KVC_NODE_ADDR_MAX 63
#define KVC_NODE_RECORD_MAX 2048   /* encoded bytes, never decode more */
#define KVC_ENROLL_CODE_LEN 32     /* "kvce-" + 27 base32 characters */
#define KVC_ENROLL_TTL_MAX_S (7 * 86400)
#define KVC_ENROLL_USES_MAX 1000
#define KVC_AUDIT_MAX 4096         /* entries kept; the oldest go first */

typedef enum {
    KVC_NODE_PENDING = 0,
    KVC_NODE_APPROVED = 1,
    KVC_NODE_REJECTED = 2,
    KVC_NODE_REVOKED = 3
} kvc_node_state_t;

typedef struct {
    uint8_t key[32];
    char site[64];
    kvc_node_state_t state;
    char name[KVC_NODE_NAME_MAX + 1];
    char arch[16];
    char addresses[KVC_NODE_ADDRS_MAX][KVC_NODE_ADDR_MAX + 1];
    size_t n_addresses;
    int64_t first_seen_unix, updated_unix, joined_unix;
    char updated_by[128];
} kvc_node_t;

typedef struct {
    char id[17]; /* hex of the first 8 bytes of the code's hash */
    char site[64];
    int64_t expires_unix, created_unix;
    uint32_t uses_left;
    char created_by[128];
} kvc_enroll_t;

typedef struct {
    int64_t at_unix_ms;
    uint8_t node_key[32];
    char node[KVC_NODE_NAME_MAX + 1];
    char token_id[8];
    char outcome[24];
    char detail[160];
    uint64_t term;
    char coordinator[128];
} kvc_audit_t;

/* Returns "pending", "approved", "rejected" or "revoked". */
const char *kvc_node_state_name(kvc_node_state_t st);
/* A Kubernetes node name: a DNS-1123 label, [a-z0-9]([-a-z0-9]*[a-z0-9])?, <= 63. */
int kvc_node_name_ok(const char *name);

/* Record codecs (proto kvc.join.NodeRecord). decode checks every field of
 * hostile bytes: KVC_EPARSE, KVC_ERANGE (over KVC_NODE_RECORD_MAX); *out
 * untouched on error. */
int kvc_node_encode(const kvc_node_t *n, uint8_t *out, size_t cap, size_t *len);
int kvc_node_decode(const uint8_t *data, size_t len, kvc_node_t *out);

/* The record of key; KVC_ENOENT if none. */
int kvc_nodes_get(const kvc_kv_t *kv, const uint8_t key[32], kvc_node_t *out);
/* Writes (creates or replaces) n's record. */
int kvc_nodes_put(const kvc_kv_t *kv, const kvc_node_t *n);
/* Finds a node by hex prefix (>= 8 digits) or name. KVC_ENOENT with err
 * "no node ...", KVC_EEXIST with err when the prefix names several. */
int kvc_nodes_find(const kvc_kv_t *kv, const char *id, kvc_node_t *out, kvc_err_t *err);
/* Calls fn for every record (in key order); a non-zero return stops. */
typedef int (*kvc_nodes_each_fn)(const kvc_node_t *n, void *arg);
int kvc_nodes_each(const kvc_kv_t *kv, kvc_nodes_each_fn fn, void *arg);
/* An operator's decision on node id: approve (from pending, rejected or
 * revoked), reject (from pending), revoke (from approved). KVC_EINVAL with
 * err for a transition that makes no sense ("node X is already approved"). */
int kvc_nodes_decide(const kvc_kv_t *kv, const char *id, kvc_node_state_t to, const char *by,
                     int64_t now_unix, kvc_node_t *out, kvc_err_t *err);

/* Creates a code for site valid ttl_s seconds (1..KVC_ENROLL_TTL_MAX_S)
 * for uses uses (1..KVC_ENROLL_USES_MAX). code gets the secret
 * (KVC_ENROLL_CODE_LEN + 1 bytes), shown once. */
int kvc_enroll_create(const kvc_kv_t *kv, const char *site, int64_t ttl_s, uint32_t uses,
                      const char *by, int64_t now_unix, char code[KVC_ENROLL_CODE_LEN + 1],
                      kvc_enroll_t *out, kvc_err_t *err);
/* Spends one use of code for site: KVC_OK (out filled), KVC_ENOENT (no such
 * code, or another site's), KVC_EEXPIRED, KVC_ERANGE (no uses left). A code
 * with no uses left is deleted. */
int kvc_enroll_use(const kvc_kv_t *kv, const char *code, const char *site, int64_t now_unix,
                   kvc_enroll_t *out);
/* Calls fn for every code still stored. */
typedef int (*kvc_enroll_each_fn)(const kvc_enroll_t *e, void *arg);
int kvc_enroll_each(const kvc_kv_t *kv, kvc_enroll_each_fn fn, void *arg);

/* Appends an entry to the audit log, dropping the oldest past keep entries
 * (0: KVC_AUDIT_MAX). */
int kvc_audit_append(const kvc_kv_t *kv, const kvc_audit_t *a, uint64_t keep);
/* Calls fn for every entry, oldest first. */
typedef int (*kvc_audit_each_fn)(const kvc_audit_t *a, void *arg);
int kvc_audit_each(const kvc_kv_t *kv, kvc_audit_each_fn fn, void *arg);

#endif
