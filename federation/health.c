/*
 * health.c - the health and capacity core: our own report out to every
 * known member, the latest report of every other member in, lookups for the
 * router (the protocol and its bounds are described in health.h).
 *
 * A pure state machine over (time, message, member event) inputs. It must
 * never read a clock, call rand(), or touch a socket or file: time comes in
 * as now_ms and messages leave through the caller's kvc_outbox_t. Every
 * byte it decodes is hostile: a report is decoded with the kvc allocator
 * (so tests can fail any allocation of the unpack), checked whole, and only
 * then replaces what we hold; on any error nothing changes.
 *
 * Members are kept in an array of pointers sorted by id (binary search;
 * insertion and removal move at most 8 KiB of pointers). A member's models
 * are a kvc_malloc'd array sorted by name, so a lookup costs one binary
 * search per reporting member.
 */
#include "health.h"

#include <stdlib.h>
#include <string.h>

#include "health.pb-c.h"
#include "pb_alloc.h"

#define WIRE_VERSION 1

typedef enum {
    KNOWN_NO = 0,  /* heard of only through its report: not sent to */
    KNOWN_ALIVE,   /* JOINED or ALIVE */
    KNOWN_SUSPECT, /* still sent to, its report kept */
} known_t;

typedef struct {
    char id[KVC_MEMBER_ID_MAX + 1];
    known_t known;
    int owed; /* send it our report at the next tick */
    int has_report;
    uint64_t epoch, seq;
    uint64_t received_ms;
    char site[KVC_HEALTH_NAME_MAX + 1];
    char region[KVC_HEALTH_NAME_MAX + 1];
    char arch[KVC_HEALTH_NAME_MAX + 1];
    uint32_t accel, accel_count;
    char forward[KVC_HEALTH_FORWARD_MAX + 1];
    size_t n_models;
    kvc_health_model_t *models; /* kvc_malloc'd, sorted by name; NULL if none */
} member_t;

struct kvc_health {
    kvc_health_config_t cfg;
    char self[KVC_MEMBER_ID_MAX + 1];
    char self_site[KVC_HEALTH_NAME_MAX + 1];
    uint64_t epoch, seq;
    int have_local;
    kvc_health_local_t local; /* models sorted, site filled in */
    int have_sent;
    kvc_health_local_t sent;    /* what the last round carried */
    kvc_health_local_t scratch; /* set_local builds here first */
    int dirty;                  /* a significant change since the last round */
    int any_round;
    uint64_t last_round_ms;
    size_t n_owed;
    uint64_t next_expiry; /* <= the earliest received_ms + ttl_ms */
    size_t n;
    member_t *m[KVC_HEALTH_MEMBERS_MAX]; /* sorted by id */
    uint8_t wire[KVC_HEALTH_WIRE_MAX];
    kvc_health_stats_t stats;
};

/* --- names and checks ---------------------------------------------------- */

static int s_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/* 1 if s[0..) is [a-z0-9._-]{1,max}. */
static int s_name_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || !s_name_char((unsigned char)s[n]))
            return 0;
    return n > 0;
}

/* 1 if s is "" or a name of at most max bytes. */
static int s_opt_name_ok(const char *s, size_t max)
{
    return s[0] == '\0' || s_name_ok(s, max);
}

/* 1 if s is "" or printable ASCII without spaces, at most max bytes. */
static int s_endpoint_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || (unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
            return 0;
    return 1;
}

/* 1 if the fixed array a of size n holds its NUL. */
#define S_TERMINATED(a) (memchr((a), '\0', sizeof(a)) != NULL)

static int s_model_cmp(const void *a, const void *b)
{
    return strcmp(((const kvc_health_model_t *)a)->name, ((const kvc_health_model_t *)b)->name);
}

/* Checks a report body. want_site: the site must be present. */
static int s_body_check(const kvc_health_local_t *b, int want_site)
{
    if (b->n_models > KVC_HEALTH_MODELS_MAX)
        return KVC_ERANGE;
    if (!S_TERMINATED(b->site) || !S_TERMINATED(b->region) || !S_TERMINATED(b->arch) ||
        !S_TERMINATED(b->forward))
        return KVC_EINVAL;
    if ((want_site || b->site[0]) && !s_name_ok(b->site, KVC_HEALTH_NAME_MAX))
        return KVC_EINVAL;
    if (!s_opt_name_ok(b->region, KVC_HEALTH_NAME_MAX) ||
        !s_opt_name_ok(b->arch, KVC_HEALTH_NAME_MAX) ||
        !s_endpoint_ok(b->forward, KVC_HEALTH_FORWARD_MAX) || b->accel > KVC_ACCEL_NPU)
        return KVC_EINVAL;
    for (size_t i = 0; i < b->n_models; i++) {
        const kvc_health_model_t *m = &b->models[i];
        if (!S_TERMINATED(m->name) || !s_name_ok(m->name, KVC_ROUTER_MODEL_MAX))
            return KVC_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->name, b->models[j].name) == 0)
                return KVC_EINVAL;
    }
    return KVC_OK;
}

/* Latencies: any negative value means unknown and is kept as -1. */
static int64_t s_lat(int64_t v)
{
    return v < 0 ? -1 : v;
}

/* --- encoding ------------------------------------------------------------ */

/* Packs body as a Report into buf[0..cap) (cap may be 0 to size only);
 * *len the size. KVC_ERANGE over cap or KVC_HEALTH_WIRE_MAX. The body must
 * have been checked. */
static int s_pack(const kvc_health_local_t *b, uint64_t epoch, uint64_t seq, uint8_t *buf,
                  size_t cap, size_t *len)
{
    Kvc__Health__ModelHealth mh[KVC_HEALTH_MODELS_MAX];
    Kvc__Health__ModelHealth *mp[KVC_HEALTH_MODELS_MAX];
    Kvc__Health__Report r = KVC__HEALTH__REPORT__INIT;
    r.version = WIRE_VERSION;
    r.epoch = epoch;
    r.seq = seq;
    r.site = (char *)b->site;
    r.region = (char *)b->region;
    r.arch = (char *)b->arch;
    r.accel = b->accel;
    r.accel_count = b->accel_count;
    r.forward = (char *)b->forward;
    for (size_t i = 0; i < b->n_models; i++) {
        kvc__health__model_health__init(&mh[i]);
        mh[i].name = (char *)b->models[i].name;
        mh[i].ready = b->models[i].ready != 0;
        mh[i].in_flight = b->models[i].in_flight;
        mh[i].capacity = b->models[i].capacity;
        mh[i].p50_us = s_lat(b->models[i].p50_us);
        mh[i].p99_us = s_lat(b->models[i].p99_us);
        mp[i] = &mh[i];
    }
    r.n_models = b->n_models;
    r.models = b->n_models ? mp : NULL;
    size_t n = kvc__health__report__get_packed_size(&r);
    *len = n;
    if (n > KVC_HEALTH_WIRE_MAX || (buf && n > cap))
        return KVC_ERANGE;
    if (buf)
        kvc__health__report__pack(&r, buf);
    return KVC_OK;
}

int kvc_health_encode(const kvc_health_local_t *body, uint64_t epoch, uint64_t seq, uint8_t *buf,
                      size_t cap, size_t *len)
{
    if (!body || !buf || !len)
        return KVC_EINVAL;
    int rc = s_body_check(body, 1);
    if (rc != 0)
        return rc;
    return s_pack(body, epoch, seq, buf, cap, len);
}

/* --- decoding ------------------------------------------------------------ */

/* Decodes and checks a Report into *out (models sorted). */
static int s_decode(const uint8_t *data, size_t len, kvc_health_report_t *out)
{
    if (len > KVC_HEALTH_WIRE_MAX)
        return KVC_EPARSE;
    kvc_pb_alloc_t alloc;
    Kvc__Health__Report *r = kvc__health__report__unpack(kvc_pb_alloc_init(&alloc), len, data);
    if (!r)
        return kvc_pb_alloc_error(&alloc);
    int rc = KVC_EPARSE;
    if (r->version != WIRE_VERSION || r->n_models > KVC_HEALTH_MODELS_MAX ||
        !s_name_ok(r->site, KVC_HEALTH_NAME_MAX) ||
        !s_opt_name_ok(r->region, KVC_HEALTH_NAME_MAX) ||
        !s_opt_name_ok(r->arch, KVC_HEALTH_NAME_MAX) ||
        !s_endpoint_ok(r->forward, KVC_HEALTH_FORWARD_MAX) || r->accel > KVC_ACCEL_NPU)
        goto done;
    memset(out, 0, offsetof(kvc_health_report_t, body.models));
    out->epoch = r->epoch;
    out->seq = r->seq;
    kvc_health_local_t *b = &out->body;
    kvc_strlcpy(b->site, r->site, sizeof b->site);
    kvc_strlcpy(b->region, r->region, sizeof b->region);
    kvc_strlcpy(b->arch, r->arch, sizeof b->arch);
    kvc_strlcpy(b->forward, r->forward, sizeof b->forward);
    b->accel = r->accel;
    b->accel_count = r->accel_count;
    b->n_models = r->n_models;
    for (size_t i = 0; i < r->n_models; i++) {
        const Kvc__Health__ModelHealth *m = r->models[i];
        if (!m || !s_name_ok(m->name, KVC_ROUTER_MODEL_MAX))
            goto done;
        kvc_health_model_t *d = &b->models[i];
        memset(d, 0, sizeof *d);
        kvc_strlcpy(d->name, m->name, sizeof d->name);
        d->ready = m->ready != 0;
        d->in_flight = m->in_flight;
        d->capacity = m->capacity;
        d->p50_us = s_lat(m->p50_us);
        d->p99_us = s_lat(m->p99_us);
    }
    if (b->n_models > 1)
        qsort(b->models, b->n_models, sizeof b->models[0], s_model_cmp);
    for (size_t i = 1; i < b->n_models; i++)
        if (strcmp(b->models[i - 1].name, b->models[i].name) == 0)
            goto done;
    rc = KVC_OK;
done:
    kvc__health__report__free_unpacked(r, kvc_pb_allocator());
    return rc;
}

int kvc_health_decode(const uint8_t *data, size_t len, kvc_health_report_t *out)
{
    if (!out || (!data && len))
        return KVC_EINVAL;
    return s_decode(data, len, out);
}

/* --- the member table ---------------------------------------------------- */

/* The index of id, or -1 with *pos where it would go. */
static long s_find(const kvc_health_t *h, const char *id, size_t *pos)
{
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(h->m[mid]->id, id);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos)
        *pos = lo;
    return -1;
}

/* Adds a member at pos (the table has room); NULL on allocation failure. */
static member_t *s_insert(kvc_health_t *h, size_t pos, const char *id)
{
    member_t *m = kvc_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    kvc_strlcpy(m->id, id, sizeof m->id);
    memmove(&h->m[pos + 1], &h->m[pos], (h->n - pos) * sizeof h->m[0]);
    h->m[pos] = m;
    h->n++;
    return m;
}

static void s_drop_report(member_t *m)
{
    kvc_free(m->models);
    m->models = NULL;
    m->n_models = 0;
    m->has_report = 0;
}

/* Removes and frees member i. */
static void s_remove(kvc_health_t *h, size_t i)
{
    member_t *m = h->m[i];
    if (m->owed)
        h->n_owed--;
    s_drop_report(m);
    kvc_free(m);
    memmove(&h->m[i], &h->m[i + 1], (h->n - i - 1) * sizeof h->m[0]);
    h->n--;
}

static int s_fresh(const kvc_health_t *h, const member_t *m, uint64_t now_ms)
{
    return m->has_report && now_ms < m->received_ms + h->cfg.ttl_ms;
}

/* --- the core ------------------------------------------------------------ */

void kvc_health_config_default(kvc_health_config_t *cfg)
{
    if (cfg)
        *cfg = (kvc_health_config_t){200, 2000, 6000};
}

int kvc_health_config_check(const kvc_health_config_t *c, kvc_err_t *err)
{
    if (!c)
        return kvc_err_set(err, KVC_EINVAL, "health: no config");
    if (c->heartbeat_ms < 1 || c->heartbeat_ms > 600000)
        return kvc_err_set(err, KVC_EINVAL, "health.heartbeat_ms: must be 1..600000");
    if (c->min_interval_ms > c->heartbeat_ms)
        return kvc_err_set(err, KVC_EINVAL, "health.min_interval_ms: must be <= heartbeat_ms");
    if (c->ttl_ms <= c->heartbeat_ms || c->ttl_ms > 3600000)
        return kvc_err_set(err, KVC_EINVAL,
                           "health.ttl_ms: must be above heartbeat_ms and <= 3600000");
    return KVC_OK;
}

kvc_health_t *kvc_health_new(const char *self_id, const kvc_health_config_t *cfg, uint64_t epoch)
{
    kvc_health_config_t def;
    if (!cfg) {
        kvc_health_config_default(&def);
        cfg = &def;
    }
    if (!self_id || kvc_health_config_check(cfg, NULL) != 0 || strlen(self_id) > KVC_MEMBER_ID_MAX)
        return NULL;
    const char *slash = strchr(self_id, '/');
    if (!slash || slash == self_id || (size_t)(slash - self_id) > KVC_HEALTH_NAME_MAX ||
        !slash[1] || strchr(slash + 1, '/'))
        return NULL;
    kvc_health_t *h = kvc_calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->cfg = *cfg;
    kvc_strlcpy(h->self, self_id, sizeof h->self);
    memcpy(h->self_site, self_id, (size_t)(slash - self_id));
    h->self_site[slash - self_id] = '\0';
    if (!s_name_ok(h->self_site, KVC_HEALTH_NAME_MAX)) {
        kvc_free(h);
        return NULL;
    }
    h->epoch = epoch;
    h->next_expiry = KVC_DEADLINE_NONE;
    return h;
}

void kvc_health_destroy(kvc_health_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_health_t *h = *self_p;
    for (size_t i = 0; i < h->n; i++) {
        s_drop_report(h->m[i]);
        kvc_free(h->m[i]);
    }
    kvc_free(h);
    *self_p = NULL;
}

/* 1 if a latency moved enough to announce: known <-> unknown, or by more
 * than 25% of the value last sent. */
static int s_lat_moved(int64_t was, int64_t now)
{
    if ((was < 0) != (now < 0))
        return 1;
    if (was < 0)
        return 0;
    int64_t d = now > was ? now - was : was - now;
    return d > was / 4;
}

static int s_saturated(const kvc_health_model_t *m)
{
    return m->capacity > 0 && m->in_flight >= m->capacity;
}

/* 1 if b differs from a (both sorted) in a way the router must hear now. */
static int s_significant(const kvc_health_local_t *a, const kvc_health_local_t *b)
{
    if (strcmp(a->site, b->site) || strcmp(a->region, b->region) || strcmp(a->arch, b->arch) ||
        strcmp(a->forward, b->forward) || a->accel != b->accel ||
        a->accel_count != b->accel_count || a->n_models != b->n_models)
        return 1;
    for (size_t i = 0; i < a->n_models; i++) {
        const kvc_health_model_t *x = &a->models[i], *y = &b->models[i];
        if (strcmp(x->name, y->name) || !x->ready != !y->ready || x->capacity != y->capacity ||
            s_saturated(x) != s_saturated(y) || s_lat_moved(x->p50_us, y->p50_us) ||
            s_lat_moved(x->p99_us, y->p99_us))
            return 1;
    }
    return 0;
}

int kvc_health_set_local(kvc_health_t *h, uint64_t now_ms, const kvc_health_local_t *local)
{
    (void)now_ms;
    if (!h || !local)
        return KVC_EINVAL;
    int rc = s_body_check(local, 0);
    if (rc != 0)
        return rc;
    if (local->site[0] && strcmp(local->site, h->self_site) != 0)
        return KVC_EINVAL;
    /* Built aside, so an error leaves the report as it was. Copied field by
     * field: only n_models entries of the array matter. */
    kvc_health_local_t *d = &h->scratch;
    kvc_strlcpy(d->site, h->self_site, sizeof d->site);
    kvc_strlcpy(d->region, local->region, sizeof d->region);
    kvc_strlcpy(d->arch, local->arch, sizeof d->arch);
    kvc_strlcpy(d->forward, local->forward, sizeof d->forward);
    d->accel = local->accel;
    d->accel_count = local->accel_count;
    d->n_models = local->n_models;
    for (size_t i = 0; i < local->n_models; i++) {
        kvc_health_model_t *m = &d->models[i];
        memset(m, 0, sizeof *m);
        kvc_strlcpy(m->name, local->models[i].name, sizeof m->name);
        m->ready = local->models[i].ready != 0;
        m->in_flight = local->models[i].in_flight;
        m->capacity = local->models[i].capacity;
        m->p50_us = s_lat(local->models[i].p50_us);
        m->p99_us = s_lat(local->models[i].p99_us);
    }
    if (d->n_models > 1)
        qsort(d->models, d->n_models, sizeof d->models[0], s_model_cmp);
    /* It must fit at the largest epoch and seq, so no later send fails. */
    size_t n;
    rc = s_pack(d, UINT64_MAX, UINT64_MAX, NULL, 0, &n);
    if (rc != 0)
        return rc;
    h->local = *d;
    h->have_local = 1;
    /* Against what the last round carried: a change undone before it went
     * out is nothing to announce. */
    h->dirty = !h->have_sent || s_significant(&h->sent, d);
    return KVC_OK;
}

/* Puts wire[0..len) in the outbox for `to`, counting. */
static void s_send(kvc_health_t *h, kvc_outbox_t *out, const char *to, size_t len)
{
    if (kvc_outbox_put(out, to, KVC_HEALTH_CHANNEL, h->wire, len) != 0) {
        h->stats.send_refused++;
        return;
    }
    h->stats.sent++;
    h->stats.bytes_sent += len;
}

/* Encodes our report at the next seq into h->wire; 0 if it could not. */
static size_t s_encode_local(kvc_health_t *h)
{
    size_t len = 0;
    if (h->seq == UINT64_MAX)
        return 0; /* not in this universe; never wrap */
    if (s_pack(&h->local, h->epoch, h->seq + 1, h->wire, sizeof h->wire, &len) != 0)
        return 0;
    h->seq++;
    return len;
}

/* Frees reports past their ttl and members we know only through them. */
static void s_expire(kvc_health_t *h, uint64_t now_ms)
{
    uint64_t next = KVC_DEADLINE_NONE;
    for (size_t i = h->n; i-- > 0;) {
        member_t *m = h->m[i];
        if (!m->has_report)
            continue;
        if (!s_fresh(h, m, now_ms)) {
            h->stats.expired++;
            if (m->known == KNOWN_NO)
                s_remove(h, i);
            else
                s_drop_report(m);
            continue;
        }
        uint64_t until = m->received_ms + h->cfg.ttl_ms;
        if (until < next)
            next = until;
    }
    h->next_expiry = next;
}

int kvc_health_tick(kvc_health_t *h, uint64_t now_ms, kvc_outbox_t *out)
{
    if (!h || !out)
        return KVC_EINVAL;
    if (now_ms >= h->next_expiry)
        s_expire(h, now_ms);
    if (!h->have_local)
        return KVC_OK;
    int round = !h->any_round || now_ms >= h->last_round_ms + h->cfg.heartbeat_ms ||
                (h->dirty && now_ms >= h->last_round_ms + h->cfg.min_interval_ms);
    if (!round && h->n_owed == 0)
        return KVC_OK;
    size_t len = s_encode_local(h);
    if (len == 0)
        return KVC_OK;
    for (size_t i = 0; i < h->n; i++) {
        member_t *m = h->m[i];
        if (m->known == KNOWN_NO || (!round && !m->owed))
            continue;
        s_send(h, out, m->id, len);
        m->owed = 0;
    }
    h->n_owed = 0;
    if (round) {
        h->stats.rounds++;
        h->any_round = 1;
        h->last_round_ms = now_ms;
        h->dirty = 0;
        h->sent = h->local;
        h->have_sent = 1;
    }
    return KVC_OK;
}

uint64_t kvc_health_next_deadline(const kvc_health_t *h)
{
    if (!h)
        return KVC_DEADLINE_NONE;
    uint64_t next = h->next_expiry;
    if (h->have_local) {
        uint64_t at;
        if (!h->any_round || h->n_owed)
            at = 0;
        else if (h->dirty)
            at = h->last_round_ms + h->cfg.min_interval_ms;
        else
            at = h->last_round_ms + h->cfg.heartbeat_ms;
        if (at < next)
            next = at;
    }
    return next;
}

void kvc_health_member_event(kvc_health_t *h, uint64_t now_ms, const kvc_member_event_t *ev,
                             kvc_outbox_t *out)
{
    (void)now_ms;
    (void)out;
    if (!h || !ev || !memchr(ev->id, '\0', sizeof ev->id) || !ev->id[0] ||
        strcmp(ev->id, h->self) == 0)
        return;
    size_t pos = 0;
    long i = s_find(h, ev->id, &pos);
    switch (ev->type) {
    case KVC_MEMBER_EV_JOINED:
    case KVC_MEMBER_EV_ALIVE:
    case KVC_MEMBER_EV_SUSPECT: {
        member_t *m = i >= 0 ? h->m[i] : NULL;
        if (!m) {
            if (h->n >= KVC_HEALTH_MEMBERS_MAX) {
                h->stats.members_refused++;
                return;
            }
            m = s_insert(h, pos, ev->id);
            if (!m) {
                h->stats.members_refused++;
                return;
            }
        }
        /* A suspect we already knew is not owed anything new; one we hear
         * of first as a suspect, or any (re)joined member, is. */
        int owe = ev->type != KVC_MEMBER_EV_SUSPECT || m->known == KNOWN_NO;
        m->known = ev->type == KVC_MEMBER_EV_SUSPECT ? KNOWN_SUSPECT : KNOWN_ALIVE;
        if (owe && !m->owed) {
            m->owed = 1;
            h->n_owed++;
        }
        break;
    }
    case KVC_MEMBER_EV_DEAD:
    case KVC_MEMBER_EV_LEFT:
    case KVC_MEMBER_EV_REAPED:
        if (i >= 0)
            s_remove(h, (size_t)i);
        break;
    default:
        break;
    }
}

/* The member's site: the part of from before '/'. 1 if it equals site. */
static int s_from_site(const char *from, const char *site)
{
    const char *slash = strchr(from, '/');
    size_t n = strlen(site);
    return slash && (size_t)(slash - from) == n && memcmp(from, site, n) == 0;
}

int kvc_health_receive(kvc_health_t *h, uint64_t now_ms, const char *from, const uint8_t *msg,
                       size_t len, kvc_outbox_t *out)
{
    (void)out;
    if (!h || !from || !from[0] || strlen(from) > KVC_MEMBER_ID_MAX || (!msg && len))
        return KVC_EINVAL;
    kvc_health_report_t *r = kvc_malloc(sizeof *r);
    if (!r)
        return KVC_ENOMEM;
    int rc = s_decode(msg, len, r);
    if (rc != 0) {
        if (rc == KVC_EPARSE)
            h->stats.dropped_malformed++;
        goto done;
    }
    if (strcmp(from, h->self) == 0)
        goto done; /* our own, looped back: nothing to learn */
    if (!s_from_site(from, r->body.site)) {
        h->stats.dropped_site++;
        rc = KVC_EPARSE;
        goto done;
    }
    size_t pos = 0;
    long i = s_find(h, from, &pos);
    member_t *m = i >= 0 ? h->m[i] : NULL;
    if (m && s_fresh(h, m, now_ms) &&
        (r->epoch < m->epoch || (r->epoch == m->epoch && r->seq <= m->seq))) {
        h->stats.dropped_stale++;
        goto done;
    }
    kvc_health_model_t *models = NULL;
    if (r->body.n_models) {
        models = kvc_malloc(r->body.n_models * sizeof *models);
        if (!models) {
            rc = KVC_ENOMEM;
            goto done;
        }
        memcpy(models, r->body.models, r->body.n_models * sizeof *models);
    }
    if (!m) {
        if (h->n >= KVC_HEALTH_MEMBERS_MAX) {
            kvc_free(models);
            h->stats.dropped_full++;
            goto done;
        }
        m = s_insert(h, pos, from);
        if (!m) {
            kvc_free(models);
            rc = KVC_ENOMEM;
            goto done;
        }
    }
    s_drop_report(m);
    m->has_report = 1;
    m->epoch = r->epoch;
    m->seq = r->seq;
    m->received_ms = now_ms;
    kvc_strlcpy(m->site, r->body.site, sizeof m->site);
    kvc_strlcpy(m->region, r->body.region, sizeof m->region);
    kvc_strlcpy(m->arch, r->body.arch, sizeof m->arch);
    kvc_strlcpy(m->forward, r->body.forward, sizeof m->forward);
    m->accel = r->body.accel;
    m->accel_count = r->body.accel_count;
    m->n_models = r->body.n_models;
    m->models = models;
    if (now_ms + h->cfg.ttl_ms < h->next_expiry)
        h->next_expiry = now_ms + h->cfg.ttl_ms;
    h->stats.received++;
done:
    kvc_free(r);
    return rc;
}

/* --- queries ------------------------------------------------------------- */

/* The entry of model in m's sorted models, or NULL. */
static const kvc_health_model_t *s_model(const member_t *m, const char *model)
{
    size_t lo = 0, hi = m->n_models;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->models[mid].name, model);
        if (c == 0)
            return &m->models[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static uint64_t s_age(const member_t *m, uint64_t now_ms)
{
    return now_ms > m->received_ms ? now_ms - m->received_ms : 0;
}

size_t kvc_health_lookup(const kvc_health_t *h, uint64_t now_ms, const char *model,
                         kvc_health_view_t *out, size_t cap)
{
    if (!h || !model || (!out && cap))
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < h->n && k < cap; i++) {
        const member_t *m = h->m[i];
        if (!s_fresh(h, m, now_ms))
            continue;
        const kvc_health_model_t *e = s_model(m, model);
        if (!e)
            continue;
        kvc_health_view_t *v = &out[k++];
        memset(v, 0, sizeof *v);
        kvc_strlcpy(v->member, m->id, sizeof v->member);
        kvc_strlcpy(v->site, m->site, sizeof v->site);
        kvc_strlcpy(v->region, m->region, sizeof v->region);
        kvc_strlcpy(v->arch, m->arch, sizeof v->arch);
        kvc_strlcpy(v->forward, m->forward, sizeof v->forward);
        v->accel = m->accel;
        v->accel_count = m->accel_count;
        v->age_ms = s_age(m, now_ms);
        v->model = *e;
    }
    return k;
}

int kvc_health_member(const kvc_health_t *h, uint64_t now_ms, const char *id,
                      kvc_health_report_t *out)
{
    if (!h || !id || !out)
        return KVC_EINVAL;
    kvc_health_local_t *b = &out->body;
    if (strcmp(id, h->self) == 0) {
        if (!h->have_local)
            return KVC_ENOENT;
        memset(out, 0, offsetof(kvc_health_report_t, body.models));
        kvc_strlcpy(out->member, h->self, sizeof out->member);
        out->epoch = h->epoch;
        out->seq = h->seq;
        *b = h->local;
        return KVC_OK;
    }
    long i = s_find(h, id, NULL);
    if (i < 0 || !s_fresh(h, h->m[i], now_ms))
        return KVC_ENOENT;
    const member_t *m = h->m[i];
    memset(out, 0, offsetof(kvc_health_report_t, body.models));
    kvc_strlcpy(out->member, m->id, sizeof out->member);
    out->epoch = m->epoch;
    out->seq = m->seq;
    out->age_ms = s_age(m, now_ms);
    kvc_strlcpy(b->site, m->site, sizeof b->site);
    kvc_strlcpy(b->region, m->region, sizeof b->region);
    kvc_strlcpy(b->arch, m->arch, sizeof b->arch);
    kvc_strlcpy(b->forward, m->forward, sizeof b->forward);
    b->accel = m->accel;
    b->accel_count = m->accel_count;
    b->n_models = m->n_models;
    if (m->n_models)
        memcpy(b->models, m->models, m->n_models * sizeof b->models[0]);
    return KVC_OK;
}

size_t kvc_health_ids(const kvc_health_t *h, uint64_t now_ms, char (*ids)[KVC_MEMBER_ID_MAX + 1],
                      size_t cap)
{
    if (!h || (!ids && cap))
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < h->n && k < cap; i++)
        if (s_fresh(h, h->m[i], now_ms))
            kvc_strlcpy(ids[k++], h->m[i]->id, KVC_MEMBER_ID_MAX + 1);
    return k;
}

void kvc_health_stats(const kvc_health_t *h, kvc_health_stats_t *out)
{
    if (!h || !out)
        return;
    *out = h->stats;
    out->held = out->members = 0;
    for (size_t i = 0; i < h->n; i++) {
        out->held += h->m[i]->has_report != 0;
        out->members += h->m[i]->known != KNOWN_NO;
    }
}

/* --- the core.h interface ------------------------------------------------ */

static int s_core_receive(void *core, uint64_t now_ms, const char *from, const uint8_t *msg,
                          size_t len, kvc_outbox_t *out)
{
    return kvc_health_receive(core, now_ms, from, msg, len, out);
}

static int s_core_tick(void *core, uint64_t now_ms, kvc_outbox_t *out)
{
    return kvc_health_tick(core, now_ms, out);
}

static uint64_t s_core_deadline(const void *core)
{
    return kvc_health_next_deadline(core);
}

static void s_core_event(void *core, uint64_t now_ms, const kvc_member_event_t *ev,
                         kvc_outbox_t *out)
{
    kvc_health_member_event(core, now_ms, ev, out);
}

static const kvc_core_ops_t s_ops = {
    .name = "health",
    .channel = KVC_HEALTH_CHANNEL,
    .receive = s_core_receive,
    .tick = s_core_tick,
    .next_deadline = s_core_deadline,
    .member_event = s_core_event,
};

const kvc_core_ops_t *kvc_health_core_ops(void)
{
    return &s_ops;
}
