/*
 * nodes.c - node records, enrollment codes and the token audit log in LMDB.
 * See nodes.h.
 *
 * Layout in the kv (kv.h): namespace 'n': key = node key (32 bytes) ->
 * kvc.join.NodeRecord; 'e': key = BLAKE2b-256 of the code ->
 * kvc.join.EnrollCode; 'a': key = time (8 bytes, big endian ms) and 8
 * random bytes (coordinators never collide) -> kvc.join.TokenAudit.
 */
#include "pb_alloc.h"
#include "nodes.h"

#include "credential.h"
#include "join.pb-c.h"

#include <stdlib.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define NS_NODES 'n'
#define NS_ENROLL 'e'
#define NS_AUDIT 'a'
#define ENROLL_PREFIX "kvce-"
#define ENROLL_RECORD_MAX 512
#define AUDIT_RECORD_MAX 1024

static const char *s_state_names[] = {"pending", "approved", "rejected", "revoked"};

const char *kvc_node_state_name(kvc_node_state_t st)
{
    return (unsigned)st < 4 ? s_state_names[st] : "?";
}

static int s_state_parse(const char *s, kvc_node_state_t *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, s_state_names[i]) == 0) {
            *out = (kvc_node_state_t)i;
            return 1;
        }
    return 0;
}

int kvc_node_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > KVC_NODE_NAME_MAX || name[0] == '-' || name[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '-'))
            return 0;
    return 1;
}

/* Printable, bounded text without control characters. */
static int s_text_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f || n >= max)
            return 0;
    return 1;
}

/* --- node records -------------------------------------------------------- */

int kvc_node_encode(const kvc_node_t *n, uint8_t *out, size_t cap, size_t *len)
{
    if (!n || !out || !len || (unsigned)n->state > KVC_NODE_REVOKED ||
        n->n_addresses > KVC_NODE_ADDRS_MAX)
        return KVC_EINVAL;
    Kvc__Join__NodeRecord r = KVC__JOIN__NODE_RECORD__INIT;
    char *addrs[KVC_NODE_ADDRS_MAX];
    r.key.data = (uint8_t *)n->key;
    r.key.len = 32;
    r.site = (char *)n->site;
    r.state = (char *)kvc_node_state_name(n->state);
    r.name = (char *)n->name;
    r.arch = (char *)n->arch;
    for (size_t i = 0; i < n->n_addresses; i++)
        addrs[i] = (char *)n->addresses[i];
    r.addresses = addrs;
    r.n_addresses = n->n_addresses;
    r.first_seen_unix = n->first_seen_unix;
    r.updated_unix = n->updated_unix;
    r.updated_by = (char *)n->updated_by;
    r.joined_unix = n->joined_unix;
    size_t need = kvc__join__node_record__get_packed_size(&r);
    if (need > cap || need > KVC_NODE_RECORD_MAX)
        return KVC_ERANGE;
    *len = kvc__join__node_record__pack(&r, out);
    return KVC_OK;
}

int kvc_node_decode(const uint8_t *data, size_t len, kvc_node_t *out)
{
    if (!out || (!data && len))
        return KVC_EINVAL;
    if (len > KVC_NODE_RECORD_MAX)
        return KVC_ERANGE;
    kvc_pb_alloc_t alloc;
    Kvc__Join__NodeRecord *r =
        kvc__join__node_record__unpack(kvc_pb_alloc_init(&alloc), len, data);
    if (!r) {
        int rc = kvc_pb_alloc_error(&alloc);
        return rc == KVC_ENOMEM ? rc : KVC_EPARSE;
    }
    kvc_node_t n;
    memset(&n, 0, sizeof n);
    int ok = r->key.len == 32 && s_state_parse(r->state, &n.state) &&
             strlen(r->site) < sizeof n.site && s_text_ok(r->site, sizeof n.site) &&
             (!r->name[0] || kvc_node_name_ok(r->name)) && strlen(r->arch) < sizeof n.arch &&
             s_text_ok(r->arch, sizeof n.arch) && strlen(r->updated_by) < sizeof n.updated_by &&
             s_text_ok(r->updated_by, sizeof n.updated_by) &&
             r->n_addresses <= KVC_NODE_ADDRS_MAX;
    for (size_t i = 0; ok && i < r->n_addresses; i++)
        ok = strlen(r->addresses[i]) <= KVC_NODE_ADDR_MAX &&
             s_text_ok(r->addresses[i], KVC_NODE_ADDR_MAX + 1);
    if (ok) {
        memcpy(n.key, r->key.data, 32);
        kvc_strlcpy(n.site, r->site, sizeof n.site);
        kvc_strlcpy(n.name, r->name, sizeof n.name);
        kvc_strlcpy(n.arch, r->arch, sizeof n.arch);
        for (size_t i = 0; i < r->n_addresses; i++)
            kvc_strlcpy(n.addresses[i], r->addresses[i], sizeof n.addresses[i]);
        n.n_addresses = r->n_addresses;
        n.first_seen_unix = r->first_seen_unix;
        n.updated_unix = r->updated_unix;
        n.joined_unix = r->joined_unix;
        kvc_strlcpy(n.updated_by, r->updated_by, sizeof n.updated_by);
        *out = n;
    }
    kvc__join__node_record__free_unpacked(r, kvc_pb_allocator());
    return ok ? KVC_OK : KVC_EPARSE;
}

int kvc_nodes_get(const kvc_kv_t *kv, const uint8_t key[32], kvc_node_t *out)
{
    uint8_t buf[KVC_NODE_RECORD_MAX];
    size_t len = 0;
    int rc = kv->get(kv->self, NS_NODES, key, 32, buf, sizeof buf, &len);
    if (rc)
        return rc;
    return kvc_node_decode(buf, len, out);
}

int kvc_nodes_put(const kvc_kv_t *kv, const kvc_node_t *n)
{
    uint8_t buf[KVC_NODE_RECORD_MAX];
    size_t len = 0;
    int rc = kvc_node_encode(n, buf, sizeof buf, &len);
    if (rc)
        return rc;
    return kv->put(kv->self, NS_NODES, n->key, 32, buf, len);
}

typedef struct {
    kvc_nodes_each_fn fn;
    void *arg;
} s_each_t;

static int s_each_node(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_each_t *e = arg;
    kvc_node_t n;
    if (klen != 32 || kvc_node_decode(val, vlen, &n) != 0)
        return 0; /* a damaged record is skipped, never fatal */
    return e->fn(&n, e->arg);
}

int kvc_nodes_each(const kvc_kv_t *kv, kvc_nodes_each_fn fn, void *arg)
{
    s_each_t e = {fn, arg};
    return kv->each(kv->self, NS_NODES, s_each_node, &e);
}

typedef struct {
    const char *id;
    int by_prefix;
    kvc_node_t found;
    int n;
} s_find_t;

static int s_find_one(const kvc_node_t *n, void *arg)
{
    s_find_t *f = arg;
    char hex[65];
    kvc_key_hex(n->key, hex);
    int hit = f->by_prefix ? strncmp(hex, f->id, strlen(f->id)) == 0 : strcmp(n->name, f->id) == 0;
    if (hit && f->n++ == 0)
        f->found = *n;
    return 0;
}

int kvc_nodes_find(const kvc_kv_t *kv, const char *id, kvc_node_t *out, kvc_err_t *err)
{
    if (!id || !id[0] || strlen(id) > 64)
        return kvc_err_set(err, KVC_EINVAL, "a node ID is 8 to 64 hex digits or a node name");
    size_t n = strlen(id);
    int hex = n >= 8;
    for (size_t i = 0; hex && i < n; i++)
        hex = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f');
    s_find_t f = {.id = id, .by_prefix = hex};
    int rc = kvc_nodes_each(kv, s_find_one, &f);
    if (rc == 0 && f.n == 0 && hex) { /* a name that looks like hex */
        f.by_prefix = 0;
        rc = kvc_nodes_each(kv, s_find_one, &f);
    }
    if (rc)
        return kvc_err_set(err, rc, "cannot read the node records: %s", kvc_strerror(rc));
    if (f.n == 0)
        return kvc_err_set(err, KVC_ENOENT, "no node %s (see 'kvc nodes list')", id);
    if (f.n > 1)
        return kvc_err_set(err, KVC_EEXIST, "%s names %d nodes; give more of the ID", id, f.n);
    *out = f.found;
    return KVC_OK;
}

int kvc_nodes_decide(const kvc_kv_t *kv, const char *id, kvc_node_state_t to, const char *by,
                     int64_t now_unix, kvc_node_t *out, kvc_err_t *err)
{
    kvc_node_t n;
    int rc = kvc_nodes_find(kv, id, &n, err);
    if (rc)
        return rc;
    char hex[65];
    kvc_key_hex(n.key, hex);
    int ok = (to == KVC_NODE_APPROVED && n.state != KVC_NODE_APPROVED) ||
             (to == KVC_NODE_REJECTED && n.state == KVC_NODE_PENDING) ||
             (to == KVC_NODE_REVOKED && n.state == KVC_NODE_APPROVED);
    if (!ok)
        return kvc_err_set(err, KVC_ESTATE, "node %.12s (%s) is %s; it cannot be %s", hex,
                           n.name[0] ? n.name : "unnamed", kvc_node_state_name(n.state),
                           kvc_node_state_name(to));
    n.state = to;
    n.updated_unix = now_unix;
    kvc_strlcpy(n.updated_by, by ? by : "", sizeof n.updated_by);
    if ((rc = kvc_nodes_put(kv, &n)) != 0)
        return kvc_err_set(err, rc, "cannot store the decision: %s", kvc_strerror(rc));
    if (out)
        *out = n;
    return KVC_OK;
}

/* --- enrollment codes ---------------------------------------------------- */

static void s_code_hash(const char *code, uint8_t h[32])
{
    crypto_generichash(h, 32, (const uint8_t *)code, strlen(code), NULL, 0);
}

static int s_enroll_encode(const kvc_enroll_t *e, uint8_t *out, size_t cap, size_t *len)
{
    Kvc__Join__EnrollCode r = KVC__JOIN__ENROLL_CODE__INIT;
    r.id = (char *)e->id;
    r.site = (char *)e->site;
    r.expires_unix = e->expires_unix;
    r.uses_left = e->uses_left;
    r.created_by = (char *)e->created_by;
    r.created_unix = e->created_unix;
    size_t need = kvc__join__enroll_code__get_packed_size(&r);
    if (need > cap)
        return KVC_ERANGE;
    *len = kvc__join__enroll_code__pack(&r, out);
    return KVC_OK;
}

static int s_enroll_decode(const uint8_t *data, size_t len, kvc_enroll_t *out)
{
    if (len > ENROLL_RECORD_MAX)
        return KVC_ERANGE;
    kvc_pb_alloc_t alloc;
    Kvc__Join__EnrollCode *r =
        kvc__join__enroll_code__unpack(kvc_pb_alloc_init(&alloc), len, data);
    if (!r)
        return KVC_EPARSE;
    int ok = strlen(r->id) < sizeof out->id && strlen(r->site) < sizeof out->site &&
             strlen(r->created_by) < sizeof out->created_by;
    if (ok) {
        memset(out, 0, sizeof *out);
        kvc_strlcpy(out->id, r->id, sizeof out->id);
        kvc_strlcpy(out->site, r->site, sizeof out->site);
        kvc_strlcpy(out->created_by, r->created_by, sizeof out->created_by);
        out->expires_unix = r->expires_unix;
        out->created_unix = r->created_unix;
        out->uses_left = r->uses_left;
    }
    kvc__join__enroll_code__free_unpacked(r, kvc_pb_allocator());
    return ok ? KVC_OK : KVC_EPARSE;
}

int kvc_enroll_create(const kvc_kv_t *kv, const char *site, int64_t ttl_s, uint32_t uses,
                      const char *by, int64_t now_unix, char code[KVC_ENROLL_CODE_LEN + 1],
                      kvc_enroll_t *out, kvc_err_t *err)
{
    if (!site || !site[0] || strlen(site) >= sizeof out->site)
        return kvc_err_set(err, KVC_EINVAL, "enroll: --site is required");
    if (ttl_s < 1 || ttl_s > KVC_ENROLL_TTL_MAX_S)
        return kvc_err_set(err, KVC_ERANGE, "enroll: --ttl must be 1s to 7d");
    if (uses < 1 || uses > KVC_ENROLL_USES_MAX)
        return kvc_err_set(err, KVC_ERANGE, "enroll: --uses must be 1 to %d", KVC_ENROLL_USES_MAX);
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    size_t p = strlen(ENROLL_PREFIX);
    memcpy(code, ENROLL_PREFIX, p);
    for (; p < KVC_ENROLL_CODE_LEN; p++)
        code[p] = b32[randombytes_uniform(32)];
    code[p] = '\0';
    uint8_t h[32];
    s_code_hash(code, h);
    kvc_enroll_t e;
    memset(&e, 0, sizeof e);
    for (int i = 0; i < 8; i++)
        snprintf(e.id + 2 * i, 3, "%02x", h[i]);
    kvc_strlcpy(e.site, site, sizeof e.site);
    kvc_strlcpy(e.created_by, by ? by : "", sizeof e.created_by);
    e.created_unix = now_unix;
    e.expires_unix = now_unix + ttl_s;
    e.uses_left = uses;
    uint8_t buf[ENROLL_RECORD_MAX];
    size_t len = 0;
    int rc = s_enroll_encode(&e, buf, sizeof buf, &len);
    if (rc == 0)
        rc = kv->put(kv->self, NS_ENROLL, h, 32, buf, len);
    if (rc) {
        sodium_memzero(code, KVC_ENROLL_CODE_LEN + 1);
        return kvc_err_set(err, rc, "enroll: cannot store the code: %s", kvc_strerror(rc));
    }
    if (out)
        *out = e;
    return KVC_OK;
}

int kvc_enroll_use(const kvc_kv_t *kv, const char *code, const char *site, int64_t now_unix,
                   kvc_enroll_t *out)
{
    if (!code || strlen(code) != KVC_ENROLL_CODE_LEN ||
        strncmp(code, ENROLL_PREFIX, strlen(ENROLL_PREFIX)) != 0)
        return KVC_ENOENT;
    uint8_t h[32], buf[ENROLL_RECORD_MAX];
    size_t len = 0;
    s_code_hash(code, h);
    int rc = kv->get(kv->self, NS_ENROLL, h, 32, buf, sizeof buf, &len);
    if (rc)
        return rc == KVC_ERANGE ? KVC_EPARSE : rc;
    kvc_enroll_t e;
    if ((rc = s_enroll_decode(buf, len, &e)) != 0)
        return rc;
    if (strcmp(e.site, site) != 0)
        return KVC_ENOENT;
    if (now_unix >= e.expires_unix) {
        (void)kv->del(kv->self, NS_ENROLL, h, 32);
        return KVC_EEXPIRED;
    }
    if (e.uses_left == 0)
        return KVC_ERANGE;
    e.uses_left--;
    if (e.uses_left == 0)
        rc = kv->del(kv->self, NS_ENROLL, h, 32);
    else if ((rc = s_enroll_encode(&e, buf, sizeof buf, &len)) == 0)
        rc = kv->put(kv->self, NS_ENROLL, h, 32, buf, len);
    if (rc)
        return rc;
    if (out)
        *out = e;
    return KVC_OK;
}

typedef struct {
    kvc_enroll_each_fn fn;
    void *arg;
} s_enroll_each_t;

static int s_each_enroll(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_enroll_each_t *e = arg;
    kvc_enroll_t r;
    if (klen != 32 || s_enroll_decode(val, vlen, &r) != 0)
        return 0;
    return e->fn(&r, e->arg);
}

int kvc_enroll_each(const kvc_kv_t *kv, kvc_enroll_each_fn fn, void *arg)
{
    s_enroll_each_t e = {fn, arg};
    return kv->each(kv->self, NS_ENROLL, s_each_enroll, &e);
}

/* --- the token audit log ------------------------------------------------- */

typedef struct {
    uint8_t key[16];
} s_akey_t;

typedef struct {
    s_akey_t *keys;
    size_t n, cap;
    kvc_audit_t *all;
    int fail;
} s_audit_walk_t;

static int s_akey_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(s_akey_t));
}

static int s_collect_key(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_audit_walk_t *w = arg;
    if (klen != 16 || w->n >= w->cap)
        return 0;
    memcpy(w->keys[w->n++].key, key, 16);
    return 0;
}

int kvc_audit_append(const kvc_kv_t *kv, const kvc_audit_t *a, uint64_t keep)
{
    if (!keep)
        keep = KVC_AUDIT_MAX;
    Kvc__Join__TokenAudit r = KVC__JOIN__TOKEN_AUDIT__INIT;
    r.at_unix_ms = a->at_unix_ms;
    r.node_key.data = (uint8_t *)a->node_key;
    r.node_key.len = 32;
    r.node = (char *)a->node;
    r.token_id = (char *)a->token_id;
    r.outcome = (char *)a->outcome;
    r.detail = (char *)a->detail;
    r.term = a->term;
    r.coordinator = (char *)a->coordinator;
    uint8_t buf[AUDIT_RECORD_MAX], key[16];
    size_t need = kvc__join__token_audit__get_packed_size(&r);
    if (need > sizeof buf)
        return KVC_ERANGE;
    size_t len = kvc__join__token_audit__pack(&r, buf);
    uint64_t ms = a->at_unix_ms > 0 ? (uint64_t)a->at_unix_ms : 0;
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(ms >> (56 - 8 * i));
    randombytes_buf(key + 8, 8);
    int rc = kv->put(kv->self, NS_AUDIT, key, 16, buf, len);
    if (rc)
        return rc;
    /* keep the newest `keep`: drop the oldest keys beyond */
    s_audit_walk_t w = {0};
    w.cap = (size_t)keep + 64;
    w.keys = kvc_calloc(w.cap, sizeof *w.keys);
    if (!w.keys)
        return KVC_OK; /* written; pruned next time */
    if (kv->each(kv->self, NS_AUDIT, s_collect_key, &w) == 0 && w.n > keep) {
        qsort(w.keys, w.n, sizeof *w.keys, s_akey_cmp);
        for (size_t i = 0; i < w.n - keep; i++)
            (void)kv->del(kv->self, NS_AUDIT, w.keys[i].key, 16);
    }
    kvc_free(w.keys);
    return KVC_OK;
}

typedef struct {
    kvc_audit_t *all;
    size_t n, cap;
} s_audit_all_t;

static int s_collect_audit(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_audit_all_t *l = arg;
    if (klen != 16 || vlen > AUDIT_RECORD_MAX || l->n >= l->cap)
        return 0;
    kvc_pb_alloc_t alloc;
    Kvc__Join__TokenAudit *r =
        kvc__join__token_audit__unpack(kvc_pb_alloc_init(&alloc), vlen, val);
    if (!r)
        return 0;
    kvc_audit_t *a = &l->all[l->n++];
    memset(a, 0, sizeof *a);
    a->at_unix_ms = r->at_unix_ms;
    if (r->node_key.len == 32)
        memcpy(a->node_key, r->node_key.data, 32);
    kvc_strlcpy(a->node, r->node, sizeof a->node);
    kvc_strlcpy(a->token_id, r->token_id, sizeof a->token_id);
    kvc_strlcpy(a->outcome, r->outcome, sizeof a->outcome);
    kvc_strlcpy(a->detail, r->detail, sizeof a->detail);
    a->term = r->term;
    kvc_strlcpy(a->coordinator, r->coordinator, sizeof a->coordinator);
    kvc__join__token_audit__free_unpacked(r, kvc_pb_allocator());
    return 0;
}

static int s_audit_cmp(const void *a, const void *b)
{
    int64_t x = ((const kvc_audit_t *)a)->at_unix_ms, y = ((const kvc_audit_t *)b)->at_unix_ms;
    return x < y ? -1 : x > y;
}

int kvc_audit_each(const kvc_kv_t *kv, kvc_audit_each_fn fn, void *arg)
{
    s_audit_all_t l = {0};
    l.cap = KVC_AUDIT_MAX + 64;
    l.all = kvc_calloc(l.cap, sizeof *l.all);
    if (!l.all)
        return KVC_ENOMEM;
    int rc = kv->each(kv->self, NS_AUDIT, s_collect_audit, &l);
    if (rc == 0) {
        qsort(l.all, l.n, sizeof *l.all, s_audit_cmp); /* stable enough: ms apart */
        for (size_t i = 0; i < l.n && rc == 0; i++)
            rc = fn(&l.all[i], arg);
    }
    kvc_free(l.all);
    return rc;
}
