/*
 * broker.c - the join-token broker. See broker.h.
 *
 * Threads: everything here runs on the event loop except s_worker, which
 * owns the Kubernetes client and runs one job at a time. Jobs and results
 * pass through two bounded rings under one mutex; an eventfd wakes the loop
 * when a result is ready. The worker reads the fence (term, lease end) from
 * atomics the loop updates after every election flush.
 */
#include "pb_alloc.h"
#include "broker.h"

#include "clock.h"
#include "credential.h"
#include "kube.h"
#include "log.h"
#include "nodes.h"
#include "join.pb-c.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define WIRE_VERSION 1
#define NONCES_MAX 4096   /* nonces remembered (per coordinator) */
#define RELAYS_MAX 256    /* requests forwarded and not answered yet */
#define RELAY_TTL_MS 30000
#define JOINS_MAX 64      /* tokens alive at once */
#define JOBS_MAX 64
#define JWS_WAIT_MS 10000 /* cluster-info must sign a token this fast */
#define CHECK_EVERY_MS 2000 /* how often a live token's Node is looked for */
#define SEALED_MAX 1024
#define ADDR_MAX 64

/* Where a reply goes: a node on our ROUTER, or a relay peer's handle. */
typedef struct {
    int remote;
    char relay[KVC_MEMBER_ID_MAX + 1];
    uint64_t relay_id;
    uint8_t routing[KVC_BROKER_ROUTING_MAX];
    size_t rlen;
} s_addr_t;

typedef enum { JOB_MINT, JOB_EXTEND, JOB_DELETE, JOB_CHECK, JOB_SWEEP } s_job_type_t;

typedef struct {
    s_job_type_t type;
    uint64_t term;
    s_addr_t addr;
    uint8_t key[32];
    uint8_t nonce[KVC_BROKER_NONCE_LEN];
    char node[KVC_NODE_NAME_MAX + 1];
    char token_id[8];
    char why[24]; /* delete: the audit outcome */
    uint64_t queued_ms; /* when it was handed to the worker */
} s_job_t;

typedef struct {
    s_job_t job;
    int rc;
    char err[200];
    int64_t expires_unix;
    int exists;        /* check: the Node is there */
    uint64_t api_ms;   /* time spent in Kubernetes API calls */
    size_t n_deleted;  /* sweep */
    uint8_t sealed[SEALED_MAX];
    size_t sealed_len;
} s_result_t;

typedef struct {
    int used;
    uint8_t key[32];
    uint8_t nonce[KVC_BROKER_NONCE_LEN];
    char node[KVC_NODE_NAME_MAX + 1];
    char token_id[8];
    int64_t expires_unix;
    uint64_t last_progress_ms, last_check_ms;
    int minting;  /* the mint job is queued or running */
    int closing;  /* a delete is queued */
    int pending;  /* a job for it is in flight */
    uint64_t term;
    uint64_t asked_ms; /* when the request arrived (monotonic) */
} s_join_t;

#define TIMED_MAX 128 /* grants whose timing is kept */

struct kvc_broker {
    char self[KVC_MEMBER_ID_MAX + 1];
    char site[64];
    kvc_kv_t kv; /* the site map */
    const kvc_election_t *e;
    kvc_broker_to_node_fn to_node;
    void *arg;
    /* settings */
    char kind[16];
    char groups[256];
    char api_server[KVC_ENDPOINT_MAX];
    int ttl_s;
    int64_t window_ms;
    uint64_t progress_timeout_ms;
    kvc_kube_t *kube; /* NULL: this peer mints nothing */
    unsigned char *ca_pem;
    size_t ca_len;
    /* loop state */
    struct {
        uint8_t nonce[KVC_BROKER_NONCE_LEN];
        int64_t wall_ms;
    } nonces[NONCES_MAX];
    size_t n_nonces, nonce_next;
    struct {
        uint64_t id, until_ms;
        uint8_t routing[KVC_BROKER_ROUTING_MAX];
        size_t rlen;
    } relays[RELAYS_MAX];
    uint64_t relay_seq;
    s_join_t joins[JOINS_MAX];
    struct {
        uint32_t grant_ms, api_ms;
    } timed[TIMED_MAX];
    size_t n_timed, timed_next;
    int leading;       /* we were coordinator at the last election change */
    uint64_t led_term;
    kvc_broker_stats_t stats;
    /* worker */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    s_job_t jobs[JOBS_MAX];
    size_t job_head, job_n;
    s_result_t results[JOBS_MAX];
    size_t res_head, res_n;
    int efd;
    _Atomic uint64_t fence_term;
    _Atomic uint64_t fence_until_ms;
};

/* --- small helpers ------------------------------------------------------ */

static void s_key_id(const uint8_t key[32], char out[13])
{
    char hex[65];
    kvc_key_hex(key, hex);
    memcpy(out, hex, 12);
    out[12] = '\0';
}

static void s_audit(kvc_broker_t *b, const uint8_t key[32], const char *node, const char *token_id,
                    const char *outcome, const char *detail, uint64_t term)
{
    kvc_audit_t a;
    memset(&a, 0, sizeof a);
    a.at_unix_ms = kvc_clock_wall_ms();
    if (key)
        memcpy(a.node_key, key, 32);
    kvc_strlcpy(a.node, node ? node : "", sizeof a.node);
    kvc_strlcpy(a.token_id, token_id ? token_id : "", sizeof a.token_id);
    kvc_strlcpy(a.outcome, outcome, sizeof a.outcome);
    kvc_strlcpy(a.detail, detail ? detail : "", sizeof a.detail);
    a.term = term;
    kvc_strlcpy(a.coordinator, b->self, sizeof a.coordinator);
    if (kvc_audit_append(&b->kv, &a, 0) != 0)
        kvc_warn("join: cannot write the token audit log");
}

/* Packs a NodeMessage carrying reply r and sends it to addr. */
static void s_reply(kvc_broker_t *b, const s_addr_t *addr, Kvc__Join__Reply *r, uint64_t term,
                    kvc_outbox_t *out)
{
    Kvc__Join__NodeMessage nm = KVC__JOIN__NODE_MESSAGE__INIT;
    nm.version = WIRE_VERSION;
    nm.body_case = KVC__JOIN__NODE_MESSAGE__BODY_REPLY;
    nm.reply = r;
    if (!addr->remote) {
        uint8_t buf[KVC_BROKER_MSG_MAX];
        size_t n = kvc__join__node_message__get_packed_size(&nm);
        if (n > sizeof buf)
            return;
        kvc__join__node_message__pack(&nm, buf);
        b->to_node(b->arg, addr->routing, addr->rlen, buf, n);
        sodium_memzero(buf, n);
        return;
    }
    Kvc__Join__PeerMessage pm = KVC__JOIN__PEER_MESSAGE__INIT;
    pm.version = WIRE_VERSION;
    pm.id = addr->relay_id;
    pm.term = term;
    pm.body_case = KVC__JOIN__PEER_MESSAGE__BODY_REPLY;
    pm.reply = r;
    size_t n = kvc__join__peer_message__get_packed_size(&pm);
    if (n > KVC_BROKER_MSG_MAX)
        return;
    uint8_t *buf = kvc_outbox_reserve(out, n);
    if (!buf)
        return;
    kvc__join__peer_message__pack(&pm, buf);
    (void)kvc_outbox_commit(out, addr->relay, KVC_BROKER_CHANNEL, n);
}

static void s_refuse(kvc_broker_t *b, const s_addr_t *addr, const uint8_t *nonce, size_t nlen,
                     const char *reason, int retryable, kvc_outbox_t *out)
{
    Kvc__Join__Refused ref = KVC__JOIN__REFUSED__INIT;
    ref.reason = (char *)reason;
    ref.retryable = retryable;
    Kvc__Join__Reply r = KVC__JOIN__REPLY__INIT;
    r.nonce.data = (uint8_t *)nonce;
    r.nonce.len = nlen;
    r.body_case = KVC__JOIN__REPLY__BODY_REFUSED;
    r.refused = &ref;
    b->stats.refused++;
    s_reply(b, addr, &r, kvc_election_term(b->e), out);
}

static void s_ack(kvc_broker_t *b, const s_addr_t *addr, const uint8_t *nonce, int64_t expires,
                  int done, kvc_outbox_t *out)
{
    Kvc__Join__Ack ack = KVC__JOIN__ACK__INIT;
    ack.expires_unix = expires;
    ack.done = done;
    Kvc__Join__Reply r = KVC__JOIN__REPLY__INIT;
    r.nonce.data = (uint8_t *)nonce;
    r.nonce.len = KVC_BROKER_NONCE_LEN;
    r.body_case = KVC__JOIN__REPLY__BODY_ACK;
    r.ack = &ack;
    s_reply(b, addr, &r, kvc_election_term(b->e), out);
}

/* --- the worker ---------------------------------------------------------- */

/* Still the coordinator of term, within the lease? (any thread) */
static int s_fenced_ok(kvc_broker_t *b, uint64_t term)
{
    return atomic_load(&b->fence_term) == term &&
           kvc_clock_mono_ms() < atomic_load(&b->fence_until_ms);
}

static int s_push_job(kvc_broker_t *b, const s_job_t *j)
{
    pthread_mutex_lock(&b->mu);
    int ok = b->job_n < JOBS_MAX;
    if (ok) {
        s_job_t *slot = &b->jobs[(b->job_head + b->job_n++) % JOBS_MAX];
        *slot = *j;
        slot->queued_ms = kvc_clock_mono_ms();
        pthread_cond_signal(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return ok ? KVC_OK : KVC_EAGAIN;
}

/* Seals the Secret for the node; wipes the plaintext. */
static int s_seal(kvc_broker_t *b, const kvc_kube_token_t *tok, const uint8_t key[32],
                  s_result_t *res)
{
    char token[KVC_KUBE_K3S_TOKEN_LEN + 32], pin[KVC_KUBE_PIN_LEN] = "";
    int rc = KVC_OK;
    if (strcmp(b->kind, "k3s") == 0)
        rc = kvc_kube_k3s_token(b->ca_pem, b->ca_len, tok->id, tok->secret, token);
    else {
        snprintf(token, sizeof token, "%s.%s", tok->id, tok->secret);
        rc = kvc_kube_ca_pin(b->ca_pem, b->ca_len, pin);
    }
    if (rc) {
        sodium_memzero(token, sizeof token);
        snprintf(res->err, sizeof res->err, "the kubeconfig's CA cannot be read for the pin");
        return rc;
    }
    Kvc__Join__Secret s = KVC__JOIN__SECRET__INIT;
    s.kind = b->kind;
    s.api_server = b->api_server;
    s.token = token;
    s.ca_cert_hash = pin;
    uint8_t plain[SEALED_MAX - crypto_box_SEALBYTES];
    size_t n = kvc__join__secret__get_packed_size(&s);
    if (n > sizeof plain) {
        sodium_memzero(token, sizeof token);
        return KVC_ERANGE;
    }
    kvc__join__secret__pack(&s, plain);
    rc = crypto_box_seal(res->sealed, plain, n, key) == 0 ? KVC_OK : KVC_ECRYPTO;
    res->sealed_len = n + crypto_box_SEALBYTES;
    sodium_memzero(plain, sizeof plain);
    sodium_memzero(token, sizeof token);
    return rc;
}

/* A label value: [a-z0-9.-], at most 63. */
static int s_label_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '.'))
            return 0;
    return 1;
}

typedef struct {
    kvc_broker_t *b;
    uint64_t term;
    size_t deleted;
    int rc;
} s_sweep_t;

static int s_sweep_one(const char *name, void *arg)
{
    s_sweep_t *s = arg;
    const char *prefix = "bootstrap-token-";
    if (strncmp(name, prefix, strlen(prefix)) != 0 || strlen(name) != strlen(prefix) + 6)
        return 0;
    if (!s_fenced_ok(s->b, s->term))
        return KVC_ESTATE;
    kvc_err_t err = {0};
    if (kvc_kube_bootstrap_token_delete(s->b->kube, name + strlen(prefix), &err) == 0)
        s->deleted++;
    return 0;
}

static void s_run_job(kvc_broker_t *b, s_result_t *res)
{
    s_job_t *j = &res->job;
    kvc_err_t err = {0};
    if (!s_fenced_ok(b, j->term)) {
        res->rc = KVC_ESTATE;
        snprintf(res->err, sizeof res->err, "this peer is no longer the coordinator of term %llu",
                 (unsigned long long)j->term);
        return;
    }
    switch (j->type) {
    case JOB_MINT: {
        uint64_t t0 = j->queued_ms; /* waiting for earlier API calls counts as API time */
        kvc_kube_token_opts_t o = {
            .ttl_s = b->ttl_s,
            .groups = b->groups[0] ? b->groups : NULL,
            .site = s_label_ok(b->site) ? b->site : NULL,
            .term = j->term,
            .node = s_label_ok(j->node) ? j->node : NULL,
        };
        kvc_kube_token_t *tok = NULL;
        res->rc = kvc_kube_bootstrap_token_create(b->kube, &o, &tok, &err);
        if (res->rc)
            break;
        kvc_strlcpy(res->job.token_id, tok->id, sizeof res->job.token_id);
        res->expires_unix = tok->expires;
        if (strcmp(b->kind, "kubeadm") == 0)
            res->rc = kvc_kube_wait_jws(b->kube, tok->id,
                                        (int64_t)kvc_clock_mono_ms() + JWS_WAIT_MS, &err);
        res->api_ms = kvc_clock_mono_ms() - t0;
        if (res->rc == 0 && !s_fenced_ok(b, j->term)) {
            res->rc = KVC_ESTATE;
            snprintf(err.msg, sizeof err.msg, "this peer stopped being the coordinator");
        }
        if (res->rc == 0)
            res->rc = s_seal(b, tok, j->key, res);
        if (res->rc) { /* nothing half-made stays behind */
            kvc_err_t e2 = {0};
            (void)kvc_kube_bootstrap_token_delete(b->kube, tok->id, &e2);
        }
        kvc_kube_token_destroy(&tok);
        break;
    }
    case JOB_EXTEND:
        res->rc = kvc_kube_bootstrap_token_extend(b->kube, j->token_id, b->ttl_s, &err);
        res->expires_unix = kvc_clock_wall_s() + b->ttl_s;
        break;
    case JOB_DELETE:
        res->rc = kvc_kube_bootstrap_token_delete(b->kube, j->token_id, &err);
        break;
    case JOB_CHECK: {
        int rc = kvc_kube_node_exists(b->kube, j->node, &err);
        res->rc = rc < 0 ? rc : 0;
        res->exists = rc == 1;
        break;
    }
    case JOB_SWEEP: {
        char sel[160];
        snprintf(sel, sizeof sel, "app.kubernetes.io/managed-by=kvc%s%s",
                 s_label_ok(b->site) ? ",kvc.io/site=" : "", s_label_ok(b->site) ? b->site : "");
        s_sweep_t s = {b, j->term, 0, 0};
        res->rc = kvc_kube_bootstrap_token_list_orphans(b->kube, sel, s_sweep_one, &s, &err);
        res->n_deleted = s.deleted;
        break;
    }
    }
    if (res->rc && !res->err[0])
        snprintf(res->err, sizeof res->err, "%s", err.msg[0] ? err.msg : kvc_strerror(res->rc));
}

static void *s_worker(void *arg)
{
    kvc_broker_t *b = arg;
    s_result_t *res = kvc_calloc(1, sizeof *res);
    if (!res)
        return NULL;
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        if (b->job_n == 0) {
            pthread_cond_wait(&b->cv, &b->mu);
            continue;
        }
        memset(res, 0, sizeof *res);
        res->job = b->jobs[b->job_head];
        b->job_head = (b->job_head + 1) % JOBS_MAX;
        b->job_n--;
        pthread_mutex_unlock(&b->mu);
        s_run_job(b, res);
        pthread_mutex_lock(&b->mu);
        if (b->res_n < JOBS_MAX) /* as many results as jobs: never full */
            b->results[(b->res_head + b->res_n++) % JOBS_MAX] = *res;
        sodium_memzero(res, sizeof *res);
        uint64_t one = 1;
        ssize_t w = write(b->efd, &one, sizeof one);
        (void)w;
    }
    pthread_mutex_unlock(&b->mu);
    kvc_free(res);
    return NULL;
}

/* --- checks -------------------------------------------------------------- */

const char *kvc_broker_check_request(const Kvc__Join__Request *r, const char *site,
                                     int64_t wall_ms, int64_t window_ms, char *buf, size_t cap)
{
    if (strcmp(r->site, site) != 0) {
        snprintf(buf, cap, "this is site %s, not %.63s", site, r->site);
        return buf;
    }
    if (!kvc_node_name_ok(r->node))
        return "the node name must be a DNS label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63";
    if (strcmp(r->arch, "amd64") != 0 && strcmp(r->arch, "arm64") != 0 &&
        strcmp(r->arch, "arm") != 0)
        return "the architecture must be amd64, arm64 or arm";
    if (strcmp(r->kind, "kubeadm") != 0 && strcmp(r->kind, "k3s") != 0)
        return "the kind must be kubeadm or k3s";
    if (r->nonce.len != KVC_BROKER_NONCE_LEN)
        return "the nonce must be 16 bytes";
    if (r->n_addresses > KVC_NODE_ADDRS_MAX)
        return "at most 8 addresses";
    for (size_t i = 0; i < r->n_addresses; i++) {
        size_t n = strlen(r->addresses[i]);
        if (n == 0 || n > KVC_NODE_ADDR_MAX)
            return "an address is empty or longer than 63 characters";
        for (size_t k = 0; k < n; k++)
            if ((unsigned char)r->addresses[i][k] <= 0x20 || r->addresses[i][k] == 0x7f)
                return "an address holds a space or control character";
    }
    if (strlen(r->enroll_code) > 64)
        return "the enrollment code is too long";
    if (r->timestamp_ms > wall_ms + window_ms || r->timestamp_ms < wall_ms - window_ms) {
        double d = ((double)r->timestamp_ms - (double)wall_ms) / 1000.0; /* no overflow */
        snprintf(buf, cap,
                 "the request's timestamp is %.0f s off this site's clock (more than %lld s): "
                 "check the node's time, or it is a replay",
                 d, (long long)(window_ms / 1000));
        return buf;
    }
    return "";
}

/* 1 if nonce was seen within the window (a replay); else remembers it. */
static int s_replayed(kvc_broker_t *b, const uint8_t *nonce, int64_t wall_ms)
{
    for (size_t i = 0; i < b->n_nonces; i++)
        if (sodium_memcmp(b->nonces[i].nonce, nonce, KVC_BROKER_NONCE_LEN) == 0 &&
            wall_ms - b->nonces[i].wall_ms <= 2 * b->window_ms)
            return 1;
    /* a ring: the oldest goes first; older than 2 windows is refused by the clock check anyway */
    size_t i = b->n_nonces < NONCES_MAX ? b->n_nonces++ : b->nonce_next;
    b->nonce_next = (i + 1) % NONCES_MAX;
    memcpy(b->nonces[i].nonce, nonce, KVC_BROKER_NONCE_LEN);
    b->nonces[i].wall_ms = wall_ms;
    return 0;
}

static s_join_t *s_join_find(kvc_broker_t *b, const uint8_t key[32])
{
    for (size_t i = 0; i < JOINS_MAX; i++)
        if (b->joins[i].used && sodium_memcmp(b->joins[i].key, key, 32) == 0)
            return &b->joins[i];
    return NULL;
}

/* --- the coordinator's side ---------------------------------------------- */

static int s_can_act(kvc_broker_t *b, uint64_t now_ms)
{
    return kvc_election_can_act(b->e, now_ms);
}

static void s_close(kvc_broker_t *b, s_join_t *j, const char *why);

static void s_on_request(kvc_broker_t *b, uint64_t now_ms, int64_t wall_ms, const uint8_t key[32],
                         const s_addr_t *addr, const Kvc__Join__Request *r, kvc_outbox_t *out)
{
    b->stats.requests++;
    char buf[200], id[13];
    s_key_id(key, id);
    const char *why = kvc_broker_check_request(r, b->site, wall_ms, b->window_ms, buf, sizeof buf);
    const uint8_t *nonce = r->nonce.data;
    size_t nlen = r->nonce.len <= KVC_BROKER_NONCE_LEN ? r->nonce.len : 0;
    if (why[0]) {
        s_refuse(b, addr, nonce, nlen, why, 0, out);
        return;
    }
    if (strcmp(r->kind, b->kind) != 0) {
        snprintf(buf, sizeof buf, "site %s joins nodes with %s, not %s: use --kind %s", b->site,
                 b->kind, r->kind, b->kind);
        s_refuse(b, addr, nonce, nlen, buf, 0, out);
        return;
    }
    if (s_replayed(b, nonce, wall_ms)) {
        b->stats.replays++;
        kvc_warn("join: refused a replayed request from node %s", id);
        s_refuse(b, addr, nonce, nlen, "this request was seen before (a replay); start a new join",
                 0, out);
        return;
    }
    kvc_node_t n;
    int rc = kvc_nodes_get(&b->kv, key, &n);
    if (rc == KVC_ENOENT) {
        memset(&n, 0, sizeof n);
        memcpy(n.key, key, 32);
        kvc_strlcpy(n.site, b->site, sizeof n.site);
        n.state = KVC_NODE_PENDING;
        n.first_seen_unix = wall_ms / 1000;
        rc = 0;
    } else if (rc) {
        s_refuse(b, addr, nonce, nlen, "the coordinator cannot read its node records", 1, out);
        return;
    }
    if (n.state != KVC_NODE_APPROVED || !n.name[0]) { /* what the node says, for the operator */
        kvc_strlcpy(n.name, r->node, sizeof n.name);
        kvc_strlcpy(n.arch, r->arch, sizeof n.arch);
        n.n_addresses = r->n_addresses;
        for (size_t i = 0; i < r->n_addresses; i++)
            kvc_strlcpy(n.addresses[i], r->addresses[i], sizeof n.addresses[i]);
    }
    if (n.state == KVC_NODE_REJECTED || n.state == KVC_NODE_REVOKED) {
        snprintf(buf, sizeof buf, "node %s is %s on site %s", id, kvc_node_state_name(n.state),
                 b->site);
        s_audit(b, key, r->node, NULL, "refused", kvc_node_state_name(n.state),
                kvc_election_term(b->e));
        s_refuse(b, addr, nonce, nlen, buf, 0, out);
        return;
    }
    int enrolled = 0;
    if (n.state == KVC_NODE_PENDING && r->enroll_code[0]) {
        kvc_enroll_t en;
        rc = kvc_enroll_use(&b->kv, r->enroll_code, b->site, wall_ms / 1000, &en);
        if (rc == 0) {
            n.state = KVC_NODE_APPROVED;
            enrolled = 1;
            n.updated_unix = wall_ms / 1000;
            snprintf(n.updated_by, sizeof n.updated_by, "enroll:%s", en.id);
            kvc_info("join: node %s (%s) enrolled with code %s", id, r->node, en.id);
        } else {
            const char *what = rc == KVC_EEXPIRED ? "has expired"
                               : rc == KVC_ERANGE ? "has no uses left"
                                                  : "is not valid for this site";
            snprintf(buf, sizeof buf, "the enrollment code %s", what);
            n.updated_unix = wall_ms / 1000; /* still pending, for an operator to decide */
            (void)kvc_nodes_put(&b->kv, &n);
            s_audit(b, key, r->node, NULL, "refused", buf, kvc_election_term(b->e));
            s_refuse(b, addr, nonce, nlen, buf, 0, out);
            return;
        }
    }
    if (n.state == KVC_NODE_PENDING) {
        n.updated_unix = wall_ms / 1000;
        if (kvc_nodes_put(&b->kv, &n) != 0) {
            s_refuse(b, addr, nonce, nlen, "the coordinator cannot store the request", 1, out);
            return;
        }
        snprintf(buf, sizeof buf,
                 "node %s (%s) is not approved yet: run 'kvc nodes approve %s' on a peer of site "
                 "%s, or join with --enroll CODE",
                 id, r->node, id, b->site);
        s_refuse(b, addr, nonce, nlen, buf, 1, out);
        return;
    }
    if (strcmp(n.name, r->node) != 0) {
        snprintf(buf, sizeof buf, "node %s was approved as %s, not %s", id, n.name, r->node);
        s_refuse(b, addr, nonce, nlen, buf, 0, out);
        return;
    }
    if (enrolled && kvc_nodes_put(&b->kv, &n) != 0) { /* unchanged records are not rewritten */
        s_refuse(b, addr, nonce, nlen, "the coordinator cannot store the node record", 1, out);
        return;
    }
    if (!b->kube) {
        snprintf(buf, sizeof buf,
                 "the coordinator of site %s (%s) has no kubernetes.kubeconfig to mint tokens with",
                 b->site, b->self);
        s_refuse(b, addr, nonce, nlen, buf, 0, out);
        return;
    }
    s_join_t *old = s_join_find(b, key);
    if (old && (old->minting || old->pending)) {
        s_refuse(b, addr, nonce, nlen, "a join of this node is already in progress; retry", 1,
                 out);
        return;
    }
    if (old) { /* a new attempt supersedes the last: its token goes */
        s_close(b, old, "superseded");
        memset(old->key, 0, sizeof old->key); /* the slot stays until the delete is done */
    }
    s_join_t *j = NULL;
    for (size_t i = 0; i < JOINS_MAX && !j; i++)
        if (!b->joins[i].used)
            j = &b->joins[i];
    if (!j) {
        s_refuse(b, addr, nonce, nlen, "the coordinator is busy with other joins; retry", 1, out);
        return;
    }
    s_job_t job;
    memset(&job, 0, sizeof job);
    job.type = JOB_MINT;
    job.term = kvc_election_term(b->e);
    job.addr = *addr;
    memcpy(job.key, key, 32);
    memcpy(job.nonce, nonce, KVC_BROKER_NONCE_LEN);
    kvc_strlcpy(job.node, r->node, sizeof job.node);
    if (s_push_job(b, &job) != 0) {
        s_refuse(b, addr, nonce, nlen, "the coordinator is busy; retry", 1, out);
        return;
    }
    memset(j, 0, sizeof *j);
    j->used = 1;
    j->minting = j->pending = 1;
    memcpy(j->key, key, 32);
    memcpy(j->nonce, nonce, KVC_BROKER_NONCE_LEN);
    kvc_strlcpy(j->node, r->node, sizeof j->node);
    j->last_progress_ms = j->last_check_ms = now_ms;
    j->asked_ms = now_ms;
    j->term = job.term;
}

/* A job of type about join j, answered to addr (NULL: nobody waits). */
static s_job_t s_join_job(const s_join_t *j, s_job_type_t type, const s_addr_t *addr)
{
    s_job_t job;
    memset(&job, 0, sizeof job);
    job.type = type;
    job.term = j->term;
    if (addr)
        job.addr = *addr;
    memcpy(job.key, j->key, 32);
    memcpy(job.nonce, j->nonce, KVC_BROKER_NONCE_LEN);
    kvc_strlcpy(job.node, j->node, sizeof job.node);
    kvc_strlcpy(job.token_id, j->token_id, sizeof job.token_id);
    return job;
}

static void s_close(kvc_broker_t *b, s_join_t *j, const char *why)
{
    if (j->closing || j->minting)
        return;
    s_job_t job = s_join_job(j, JOB_DELETE, NULL);
    kvc_strlcpy(job.why, why, sizeof job.why);
    if (s_push_job(b, &job) == 0)
        j->closing = j->pending = 1;
}

static void s_on_progress(kvc_broker_t *b, uint64_t now_ms, const uint8_t key[32],
                          const s_addr_t *addr, const Kvc__Join__Progress *p, kvc_outbox_t *out)
{
    s_join_t *j = s_join_find(b, key);
    if (!j || p->nonce.len != KVC_BROKER_NONCE_LEN ||
        sodium_memcmp(j->nonce, p->nonce.data, KVC_BROKER_NONCE_LEN) != 0 || j->minting) {
        s_refuse(b, addr, p->nonce.data, p->nonce.len <= 16 ? p->nonce.len : 0,
                 "the coordinator knows no join in progress for this node; start again", 0, out);
        return;
    }
    j->last_progress_ms = now_ms;
    char id[13];
    s_key_id(key, id);
    if (strcmp(p->phase, "failed") == 0) {
        kvc_info("join: node %s (%s) reports failure; deleting its token", id, j->node);
        s_close(b, j, "failed");
        s_ack(b, addr, j->nonce, 0, 1, out);
        return;
    }
    if (strcmp(p->phase, "registered") == 0 && !j->pending) {
        s_job_t job = s_join_job(j, JOB_CHECK, addr);
        if (s_push_job(b, &job) == 0) {
            j->pending = 1;
            j->last_check_ms = now_ms;
            return; /* answered when the check is done */
        }
    }
    /* still going: keep the token alive in short steps */
    int64_t wall = kvc_clock_wall_s();
    if (!j->pending && !j->closing && j->expires_unix - wall < b->ttl_s / 2) {
        s_job_t job = s_join_job(j, JOB_EXTEND, addr);
        if (s_push_job(b, &job) == 0) {
            j->pending = 1;
            return;
        }
    }
    s_ack(b, addr, j->nonce, j->closing ? 0 : j->expires_unix, j->closing, out);
}

/* A node message decided here (we are the coordinator). */
static void s_decide(kvc_broker_t *b, uint64_t now_ms, int64_t wall_ms, const uint8_t key[32],
                     const s_addr_t *addr, const Kvc__Join__NodeMessage *m, kvc_outbox_t *out)
{
    if (m->body_case == KVC__JOIN__NODE_MESSAGE__BODY_REQUEST)
        s_on_request(b, now_ms, wall_ms, key, addr, m->request, out);
    else if (m->body_case == KVC__JOIN__NODE_MESSAGE__BODY_PROGRESS)
        s_on_progress(b, now_ms, key, addr, m->progress, out);
}

/* Results of the worker's jobs. */
static void s_on_result(kvc_broker_t *b, uint64_t now_ms, s_result_t *res, kvc_outbox_t *out)
{
    s_job_t *job = &res->job;
    s_join_t *j = s_join_find(b, job->key);
    char id[13];
    s_key_id(job->key, id);
    switch (job->type) {
    case JOB_MINT:
        if (!j)
            break;
        j->minting = j->pending = 0;
        if (res->rc) {
            b->stats.failed++;
            kvc_warn("join: cannot mint a token for node %s (%s): %s", id, job->node, res->err);
            s_audit(b, job->key, job->node, job->token_id, "failed", res->err, job->term);
            char why[260];
            snprintf(why, sizeof why, "the coordinator could not mint a token: %s", res->err);
            s_refuse(b, &job->addr, job->nonce, KVC_BROKER_NONCE_LEN, why, 1, out);
            memset(j, 0, sizeof *j);
            break;
        }
        kvc_strlcpy(j->token_id, job->token_id, sizeof j->token_id);
        j->expires_unix = res->expires_unix;
        j->last_progress_ms = now_ms;
        b->stats.minted++;
        {
            size_t t = b->n_timed < TIMED_MAX ? b->n_timed++ : b->timed_next;
            b->timed_next = (t + 1) % TIMED_MAX;
            b->timed[t].grant_ms = (uint32_t)(now_ms - j->asked_ms);
            b->timed[t].api_ms = (uint32_t)res->api_ms;
        }
        b->stats.granted++;
        kvc_info("join: token %s minted for node %s (%s), term %llu, expires in %lld s",
                 j->token_id, id, j->node, (unsigned long long)job->term,
                 (long long)(res->expires_unix - kvc_clock_wall_s()));
        {
            Kvc__Join__Granted g = KVC__JOIN__GRANTED__INIT;
            g.sealed.data = res->sealed;
            g.sealed.len = res->sealed_len;
            g.term = job->term;
            g.token_id = j->token_id;
            g.expires_unix = j->expires_unix;
            g.coordinator = b->self;
            Kvc__Join__Reply r = KVC__JOIN__REPLY__INIT;
            r.nonce.data = job->nonce;
            r.nonce.len = KVC_BROKER_NONCE_LEN;
            r.body_case = KVC__JOIN__REPLY__BODY_GRANTED;
            r.granted = &g;
            s_reply(b, &job->addr, &r, job->term, out);
        }
        /* after the answer: the audit's synced write is not the node's wait */
        s_audit(b, job->key, job->node, j->token_id, "minted", "", job->term);
        break;
    case JOB_EXTEND:
        if (!j)
            break;
        j->pending = 0;
        if (res->rc == 0) {
            j->expires_unix = res->expires_unix;
            b->stats.extended++;
            s_audit(b, job->key, job->node, job->token_id, "extended", "", job->term);
        } else {
            kvc_warn("join: cannot extend token %s: %s", job->token_id, res->err);
        }
        s_ack(b, &job->addr, job->nonce, j->expires_unix, 0, out);
        break;
    case JOB_CHECK:
        if (!j)
            break;
        j->pending = 0;
        if (res->rc == 0 && res->exists) {
            kvc_info("join: node %s (%s) is registered; deleting token %s", id, j->node,
                     j->token_id);
            kvc_node_t n;
            if (kvc_nodes_get(&b->kv, j->key, &n) == 0) {
                n.joined_unix = kvc_clock_wall_s();
                (void)kvc_nodes_put(&b->kv, &n);
            }
            b->stats.joined++;
            s_close(b, j, "joined");
            if (job->addr.rlen || job->addr.remote)
                s_ack(b, &job->addr, job->nonce, 0, 1, out);
        } else if (job->addr.rlen || job->addr.remote) {
            s_ack(b, &job->addr, job->nonce, j->expires_unix, 0, out);
        }
        break;
    case JOB_DELETE:
        if (res->rc == 0) {
            b->stats.deleted++;
            s_audit(b, job->key, job->node, job->token_id, job->why, "", job->term);
        } else {
            kvc_warn("join: cannot delete token %s: %s (it expires by itself)", job->token_id,
                     res->err);
            s_audit(b, job->key, job->node, job->token_id, "delete-failed", res->err, job->term);
        }
        for (size_t i = 0; i < JOINS_MAX; i++)
            if (b->joins[i].used && b->joins[i].closing &&
                strcmp(b->joins[i].token_id, job->token_id) == 0)
                memset(&b->joins[i], 0, sizeof b->joins[i]);
        if (strcmp(job->why, "failed") == 0)
            b->stats.failed++;
        break;
    case JOB_SWEEP:
        if (res->rc == 0 && res->n_deleted) {
            b->stats.orphans_deleted += res->n_deleted;
            kvc_info("join: deleted %zu token(s) an earlier coordinator left behind",
                     res->n_deleted);
            s_audit(b, NULL, "", "", "orphan-deleted", "", job->term);
        } else if (res->rc && res->rc != KVC_ESTATE) {
            kvc_warn("join: cannot look for orphaned tokens: %s", res->err);
        }
        break;
    }
    if (res->rc == KVC_ESTATE)
        b->stats.fenced++;
}

/* --- the relay's side ---------------------------------------------------- */

static void s_forward(kvc_broker_t *b, uint64_t now_ms, const uint8_t key[32],
                      const uint8_t *routing, size_t rlen, Kvc__Join__NodeMessage *m,
                      kvc_outbox_t *out)
{
    const char *leader = kvc_election_leader(b->e);
    const uint8_t *nonce = NULL;
    size_t nlen = 0;
    if (m->body_case == KVC__JOIN__NODE_MESSAGE__BODY_REQUEST) {
        nonce = m->request->nonce.data;
        nlen = m->request->nonce.len;
    } else if (m->body_case == KVC__JOIN__NODE_MESSAGE__BODY_PROGRESS) {
        nonce = m->progress->nonce.data;
        nlen = m->progress->nonce.len;
    }
    if (nlen > KVC_BROKER_NONCE_LEN)
        nlen = 0;
    s_addr_t local = {0};
    memcpy(local.routing, routing, rlen);
    local.rlen = rlen;
    if (!leader || strcmp(leader, b->self) == 0) {
        s_refuse(b, &local, nonce, nlen,
                 "the site has no coordinator right now (an election is under way); retry", 1,
                 out);
        return;
    }
    /* a slot: a free one, or the oldest expired */
    size_t slot = RELAYS_MAX;
    for (size_t i = 0; i < RELAYS_MAX && slot == RELAYS_MAX; i++)
        if (b->relays[i].id == 0 || b->relays[i].until_ms <= now_ms)
            slot = i;
    if (slot == RELAYS_MAX) {
        s_refuse(b, &local, nonce, nlen, "this peer is relaying too many joins; retry", 1, out);
        return;
    }
    Kvc__Join__Forward f = KVC__JOIN__FORWARD__INIT;
    f.node_key.data = (uint8_t *)key;
    f.node_key.len = 32;
    f.message = m;
    Kvc__Join__PeerMessage pm = KVC__JOIN__PEER_MESSAGE__INIT;
    pm.version = WIRE_VERSION;
    pm.id = ++b->relay_seq;
    pm.body_case = KVC__JOIN__PEER_MESSAGE__BODY_FORWARD;
    pm.forward = &f;
    size_t n = kvc__join__peer_message__get_packed_size(&pm);
    uint8_t *buf = n <= KVC_BROKER_MSG_MAX ? kvc_outbox_reserve(out, n) : NULL;
    if (!buf) {
        s_refuse(b, &local, nonce, nlen, "this peer cannot forward the request now; retry", 1, out);
        return;
    }
    kvc__join__peer_message__pack(&pm, buf);
    if (kvc_outbox_commit(out, leader, KVC_BROKER_CHANNEL, n) != 0)
        return;
    b->relays[slot].id = pm.id;
    b->relays[slot].until_ms = now_ms + RELAY_TTL_MS;
    memcpy(b->relays[slot].routing, routing, rlen);
    b->relays[slot].rlen = rlen;
    b->stats.forwarded++;
}

void kvc_broker_node_message(kvc_broker_t *b, uint64_t now_ms, int64_t wall_ms,
                             const uint8_t key[32], const uint8_t *routing, size_t rlen,
                             const uint8_t *msg, size_t len, kvc_outbox_t *out)
{
    if (!b || !key || !routing || rlen == 0 || rlen > KVC_BROKER_ROUTING_MAX ||
        len > KVC_BROKER_MSG_MAX)
        return;
    kvc_pb_alloc_t alloc;
    Kvc__Join__NodeMessage *m =
        kvc__join__node_message__unpack(kvc_pb_alloc_init(&alloc), len, msg);
    if (!m)
        return;
    int ok = m->version == WIRE_VERSION &&
             (m->body_case == KVC__JOIN__NODE_MESSAGE__BODY_REQUEST ||
              m->body_case == KVC__JOIN__NODE_MESSAGE__BODY_PROGRESS);
    if (ok) {
        if (s_can_act(b, now_ms)) {
            s_addr_t addr = {0};
            memcpy(addr.routing, routing, rlen);
            addr.rlen = rlen;
            s_decide(b, now_ms, wall_ms, key, &addr, m, out);
        } else {
            s_forward(b, now_ms, key, routing, rlen, m, out);
        }
    }
    kvc__join__node_message__free_unpacked(m, kvc_pb_allocator());
}

/* A PeerMessage: a forward (we are the coordinator) or a reply (we relay). */
static int s_core_receive(void *core, uint64_t now_ms, const char *from, const uint8_t *msg,
                          size_t len, kvc_outbox_t *out)
{
    kvc_broker_t *b = core;
    if (len > KVC_BROKER_MSG_MAX)
        return KVC_ERANGE;
    kvc_pb_alloc_t alloc;
    Kvc__Join__PeerMessage *m =
        kvc__join__peer_message__unpack(kvc_pb_alloc_init(&alloc), len, msg);
    if (!m)
        return KVC_EPARSE;
    int rc = KVC_OK;
    if (m->version != WIRE_VERSION) {
        rc = KVC_EPARSE;
    } else if (m->body_case == KVC__JOIN__PEER_MESSAGE__BODY_FORWARD) {
        const Kvc__Join__Forward *f = m->forward;
        /* only a peer of our own site relays for it */
        if (!f->message || f->node_key.len != 32 || !kvc_member_in_site(from, b->site) ||
            f->message->version != WIRE_VERSION ||
            strlen(from) > KVC_MEMBER_ID_MAX) {
            rc = KVC_EPARSE;
        } else {
            s_addr_t addr = {0};
            addr.remote = 1;
            kvc_strlcpy(addr.relay, from, sizeof addr.relay);
            addr.relay_id = m->id;
            if (s_can_act(b, now_ms))
                s_decide(b, now_ms, kvc_clock_wall_ms(), f->node_key.data, &addr, f->message,
                         out);
            else
                s_refuse(b, &addr, NULL, 0,
                         "the peer asked is no longer the coordinator; retry", 1, out);
        }
    } else if (m->body_case == KVC__JOIN__PEER_MESSAGE__BODY_REPLY) {
        size_t i = 0;
        while (i < RELAYS_MAX && (b->relays[i].id != m->id || m->id == 0))
            i++;
        if (i == RELAYS_MAX || b->relays[i].until_ms <= now_ms) {
            rc = KVC_ENOENT;
        } else if (!kvc_election_fence_ok(b->e, m->term)) {
            b->stats.stale_replies++; /* an old coordinator's word: not passed on */
            rc = KVC_ESTATE;
        } else {
            Kvc__Join__NodeMessage nm = KVC__JOIN__NODE_MESSAGE__INIT;
            nm.version = WIRE_VERSION;
            nm.body_case = KVC__JOIN__NODE_MESSAGE__BODY_REPLY;
            nm.reply = m->reply;
            uint8_t buf[KVC_BROKER_MSG_MAX];
            size_t n = kvc__join__node_message__get_packed_size(&nm);
            if (n <= sizeof buf) {
                kvc__join__node_message__pack(&nm, buf);
                b->to_node(b->arg, b->relays[i].routing, b->relays[i].rlen, buf, n);
                sodium_memzero(buf, n);
                b->stats.relayed++;
            }
            /* a progress exchange reuses the relay: keep it a while */
            b->relays[i].until_ms = now_ms + RELAY_TTL_MS;
        }
    } else {
        rc = KVC_EPARSE;
    }
    kvc__join__peer_message__free_unpacked(m, kvc_pb_allocator());
    return rc;
}

/* Drains the worker's results and runs the token timers. */
static int s_core_tick(void *core, uint64_t now_ms, kvc_outbox_t *out)
{
    kvc_broker_t *b = core;
    uint64_t v;
    ssize_t r = read(b->efd, &v, sizeof v); /* non-blocking: EAGAIN when none */
    (void)r;
    s_result_t *res = kvc_calloc(1, sizeof *res);
    for (;;) {
        if (!res)
            break;
        pthread_mutex_lock(&b->mu);
        int have = b->res_n > 0;
        if (have) {
            *res = b->results[b->res_head];
            sodium_memzero(&b->results[b->res_head], sizeof b->results[0]);
            b->res_head = (b->res_head + 1) % JOBS_MAX;
            b->res_n--;
        }
        pthread_mutex_unlock(&b->mu);
        if (!have)
            break;
        s_on_result(b, now_ms, res, out);
        sodium_memzero(res, sizeof *res);
    }
    kvc_free(res);
    if (!s_can_act(b, now_ms))
        return 0; /* a coordinator that stepped down leaves its tokens to expire or the sweep */
    for (size_t i = 0; i < JOINS_MAX; i++) {
        s_join_t *j = &b->joins[i];
        if (!j->used || j->minting || j->closing)
            continue;
        if (now_ms - j->last_progress_ms > b->progress_timeout_ms) {
            kvc_info("join: node %s stopped reporting progress; deleting token %s", j->node,
                     j->token_id);
            s_close(b, j, "stalled");
        } else if (!j->pending && now_ms - j->last_check_ms >= CHECK_EVERY_MS) {
            s_job_t job = s_join_job(j, JOB_CHECK, NULL);
            if (s_push_job(b, &job) == 0)
                j->pending = 1;
            j->last_check_ms = now_ms;
        }
    }
    return 0;
}

static uint64_t s_core_deadline(const void *core)
{
    const kvc_broker_t *b = core;
    uint64_t d = KVC_DEADLINE_NONE;
    for (size_t i = 0; i < JOINS_MAX; i++) {
        const s_join_t *j = &b->joins[i];
        if (!j->used || j->minting || j->closing)
            continue;
        uint64_t t = j->last_progress_ms + b->progress_timeout_ms + 1;
        if (!j->pending && j->last_check_ms + CHECK_EVERY_MS < t)
            t = j->last_check_ms + CHECK_EVERY_MS;
        if (t < d)
            d = t;
    }
    return d;
}

const kvc_core_ops_t kvc_broker_core_ops = {
    .name = "join",
    .channel = KVC_BROKER_CHANNEL,
    .receive = s_core_receive,
    .tick = s_core_tick,
    .next_deadline = s_core_deadline,
};

void kvc_broker_election_changed(kvc_broker_t *b, uint64_t now_ms)
{
    if (!b)
        return;
    int acting = s_can_act(b, now_ms);
    uint64_t term = kvc_election_term(b->e);
    atomic_store(&b->fence_term, acting ? term : 0);
    atomic_store(&b->fence_until_ms, acting ? kvc_election_lease_end(b->e) : 0);
    if (acting && (!b->leading || b->led_term != term) && b->kube) {
        s_job_t job;
        memset(&job, 0, sizeof job);
        job.type = JOB_SWEEP;
        job.term = term;
        (void)s_push_job(b, &job);
    }
    if (!acting && b->leading) /* the nonces and joins were this term's */
        b->n_nonces = b->nonce_next = 0;
    b->leading = acting;
    b->led_term = term;
}

/* --- life ---------------------------------------------------------------- */

kvc_broker_t *kvc_broker_new(const kvc_config_t *cfg, const char *self_id, const kvc_kv_t *kv,
                             const kvc_election_t *election, kvc_broker_to_node_fn to_node,
                             void *arg, kvc_err_t *err)
{
    kvc_broker_t *b = kvc_calloc(1, sizeof *b);
    if (!b) {
        kvc_err_set(err, KVC_ENOMEM, "join broker: out of memory");
        return NULL;
    }
    b->efd = -1;
    kvc_strlcpy(b->self, self_id, sizeof b->self);
    kvc_strlcpy(b->site, cfg->site, sizeof b->site);
    b->kv = *kv;
    b->e = election;
    b->to_node = to_node;
    b->arg = arg;
    kvc_strlcpy(b->kind, cfg->kube_kind[0] ? cfg->kube_kind : "kubeadm", sizeof b->kind);
    kvc_strlcpy(b->groups, cfg->kube_groups, sizeof b->groups);
    if (!b->groups[0] && strcmp(b->kind, "k3s") == 0)
        kvc_strlcpy(b->groups, "system:bootstrappers:k3s:default-node-token", sizeof b->groups);
    b->ttl_s = cfg->kube_token_ttl_s ? (int)cfg->kube_token_ttl_s : KVC_KUBE_TOKEN_TTL_DEFAULT;
    b->window_ms = (int64_t)(cfg->join_window_s ? cfg->join_window_s : 120) * 1000;
    b->progress_timeout_ms =
        (uint64_t)(cfg->join_progress_timeout_s ? cfg->join_progress_timeout_s : 20) * 1000;
    if (pthread_mutex_init(&b->mu, NULL) != 0 || pthread_cond_init(&b->cv, NULL) != 0) {
        kvc_free(b);
        kvc_err_set(err, KVC_ENOMEM, "join broker: cannot create its lock");
        return NULL;
    }
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->efd < 0) {
        kvc_err_set(err, KVC_EIO, "join broker: eventfd: %s", strerror(errno));
        goto fail;
    }
    if (cfg->kube_kubeconfig[0]) {
        kvc_kubeconfig_t kc;
        if (kvc_kubeconfig_load(cfg->kube_kubeconfig, &kc, err) != 0) {
            kvc_err_prefix(err, "kubernetes.kubeconfig: %s: ", cfg->kube_kubeconfig);
            goto fail;
        }
        b->kube = kvc_kube_new(&kc, NULL, err);
        if (kc.ca && kc.ca_len) {
            b->ca_pem = kvc_malloc(kc.ca_len);
            if (b->ca_pem) {
                memcpy(b->ca_pem, kc.ca, kc.ca_len);
                b->ca_len = kc.ca_len;
            }
        }
        /* what nodes join: the setting, else the kubeconfig's server host:port */
        if (cfg->kube_api_server[0])
            kvc_strlcpy(b->api_server, cfg->kube_api_server, sizeof b->api_server);
        else
            kvc_strlcpy(b->api_server,
                        strncmp(kc.server, "https://", 8) == 0 ? kc.server + 8 : kc.server,
                        sizeof b->api_server);
        kvc_kubeconfig_free(&kc);
        if (!b->kube)
            goto fail;
        if (!b->ca_pem) {
            kvc_err_set(err, KVC_EINVAL,
                        "kubernetes.kubeconfig: %s: no certificate-authority-data, which nodes "
                        "need to pin the cluster",
                        cfg->kube_kubeconfig);
            goto fail;
        }
    }
    if (pthread_create(&b->thread, NULL, s_worker, b) != 0) {
        kvc_err_set(err, KVC_ENOMEM, "join broker: cannot start its worker thread");
        goto fail;
    }
    b->thread_started = 1;
    return b;
fail:
    kvc_broker_destroy(&b);
    return NULL;
}

void kvc_broker_destroy(kvc_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_broker_t *b = *self_p;
    if (b->thread_started) {
        pthread_mutex_lock(&b->mu);
        b->stop = 1;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
    }
    kvc_kube_destroy(&b->kube);
    if (b->ca_pem)
        kvc_free(b->ca_pem);
    if (b->efd >= 0)
        close(b->efd);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    sodium_memzero(b, sizeof *b);
    kvc_free(b);
    *self_p = NULL;
}

int kvc_broker_fd(const kvc_broker_t *b)
{
    return b ? b->efd : -1;
}

static int s_u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

void kvc_broker_stats(const kvc_broker_t *b, kvc_broker_stats_t *out)
{
    *out = b->stats;
    out->active = 0;
    for (size_t i = 0; i < JOINS_MAX; i++)
        out->active += b->joins[i].used;
    uint32_t grant[TIMED_MAX], own[TIMED_MAX];
    for (size_t i = 0; i < b->n_timed; i++) {
        grant[i] = b->timed[i].grant_ms;
        own[i] = grant[i] > b->timed[i].api_ms ? grant[i] - b->timed[i].api_ms : 0;
    }
    out->timed = b->n_timed;
    if (b->n_timed) {
        qsort(grant, b->n_timed, sizeof grant[0], s_u32_cmp);
        qsort(own, b->n_timed, sizeof own[0], s_u32_cmp);
        out->grant_ms_p50 = grant[b->n_timed / 2];
        out->grant_ms_p99 = grant[(b->n_timed * 99) / 100];
        out->own_ms_p50 = own[b->n_timed / 2];
        out->own_ms_p99 = own[(b->n_timed * 99) / 100];
    }
}
