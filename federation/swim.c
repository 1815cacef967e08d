/*
 * swim.c - the membership core: SWIM probing with Lifeguard, suspicion with
 * confirmations, piggybacked dissemination, push-pull anti-entropy, graceful
 * leave, reaping and reconnecting, metadata and Vivaldi coordinates.
 *
 * It is a pure state machine over (time, message) inputs. It must never read
 * a clock, call rand(), or touch a socket or file: time comes in as now_ms,
 * randomness from the seeded kvc_rng_t, and messages leave through the
 * caller's kvc_outbox_t. Every byte it decodes is hostile: lengths, ids and
 * coordinates are checked and a bad message is dropped whole.
 *
 * Wire framing: a kvc.swim.Message is packed with protobuf-c without its
 * repeated `updates` field; each piggybacked update is pre-encoded once when
 * queued and appended as a raw field-15 record, which protobuf parsers accept
 * in any order. That keeps per-message cost to memcpy and makes the
 * max_message_bytes bound exact.
 */
#include "swim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "swim.pb-c.h"

#define WIRE_VERSION 1
#define RELAY_MAX 64
#define WANT_MAX 1024
#define SUSPECT_K_MAX 16
#define UPDATE_TAG 0x7a /* field 15, wire type 2 */
#define BQ_BUCKETS 256  /* > retransmit_mult max (32) * ceil(log10(n+1)) */

enum { BQ_STATE = 0, BQ_META = 1 };

typedef struct {
    char *region;
    char *roles;
    char *endpoint;
    uint8_t key[KVC_SWIM_KEY_LEN];
    int has_key;
    uint64_t caps;
} info_t;

typedef struct {
    size_t n;
    size_t bytes;
    char *keys[KVC_SWIM_META_KEYS_MAX];
    uint8_t *vals[KVC_SWIM_META_KEYS_MAX];
    size_t lens[KVC_SWIM_META_KEYS_MAX];
} meta_t;

typedef struct {
    uint64_t start_ms, min_ms, max_ms, deadline_ms;
    uint32_t k, n;
    size_t n_accusers;
    char *accusers[SUSPECT_K_MAX + 1];
} suspicion_t;

typedef struct bcast bcast_t;

static void s_info_free(info_t *in);

typedef struct member {
    char *id;
    size_t site_len;
    size_t index;    /* position in s->all */
    size_t down_pos; /* position + 1 in s->down, 0 if absent */
    uint8_t state;
    uint8_t rtt_n, rtt_i;
    uint8_t direct_lost; /* its last probe was acked only through others */
    uint64_t incarnation;
    uint64_t last_change_ms;
    info_t *info;
    uint64_t info_inc; /* incarnation the info was learned at */
    meta_t *meta;
    uint64_t meta_version;
    kvc_vivaldi_coord_t *coord;
    float rtt[3];
    suspicion_t *susp;
    char *accuser;
    bcast_t *bq[2];
    uint32_t mark;
} member_t;

struct bcast {
    member_t *m;
    int kind;
    bcast_t *prev, *next; /* in the list of its transmit count */
    uint32_t transmits;
    uint64_t seq;
    uint8_t *data;
    size_t len;
};

typedef struct {
    uint64_t seq;
    uint64_t req_seq;
    uint64_t deadline_ms;
    char requester[KVC_SWIM_ID_MAX + 1];
} relay_t;

typedef struct {
    int active;
    member_t *target;
    uint64_t seq;
    uint64_t start_ms, sent_ms, timeout_ms, end_ms;
    int acked, direct_acked, indirect_sent, repinged;
    uint32_t expected_nacks, nacks;
} probe_t;

struct kvc_swim {
    kvc_swim_config_t cfg;
    kvc_rng_t rng;
    member_t *self;
    member_t **all;
    size_t n_all, cap_all;
    member_t **map;
    size_t map_cap;
    member_t **down;
    size_t n_down, cap_down;
    member_t **plist;
    size_t n_plist, cap_plist, plist_idx;
    member_t **sorted;
    size_t cap_sorted;
    int sorted_ok;
    /* Queued broadcasts, one list per transmit count, each newest first:
     * walking the lists in order gives least-sent, then newest, without a
     * sort per message. */
    bcast_t *bq_head[BQ_BUCKETS], *bq_tail[BQ_BUCKETS];
    size_t n_bq;
    uint64_t bseq;
    relay_t relays[RELAY_MAX];
    size_t n_relays;
    probe_t probe;
    uint64_t seq;
    uint64_t next_probe_ms, next_gossip_ms, next_pp_ms, next_reconnect_ms;
    uint32_t lhm;
    size_t n_live;
    char **seeds;
    size_t n_seeds, cap_seeds;
    uint64_t reconnect_seq;
    char reconnect_to[KVC_SWIM_ID_MAX + 1];
    kvc_vivaldi_t *viv;
    int left;
    uint64_t dropped;
    kvc_swim_stats_t stats;
    uint32_t pp_gen;
    member_t *want[WANT_MAX];
    size_t n_want;
};

/* ------------------------------------------------------------------------ */
/* protobuf-c allocator that goes through kvc_malloc so tests can fail it.   */

/* Allocation callback for protobuf-c. */
static void *s_pb_alloc(void *data, size_t n)
{
    return kvc_malloc(n);
}

/* Free callback for protobuf-c. */
static void s_pb_free(void *data, void *p)
{
    kvc_free(p);
}

static ProtobufCAllocator s_pb_allocator = {s_pb_alloc, s_pb_free, NULL};

/* ------------------------------------------------------------------------ */
/* Config                                                                    */

/* Profile presets; the reasoning is in swim.h. */
int kvc_swim_config_profile(kvc_swim_config_t *cfg, const char *profile)
{
    if (!cfg || !profile)
        return KVC_EINVAL;
    memset(cfg, 0, sizeof(*cfg));
    cfg->indirect_probes = 3;
    cfg->suspicion_max_mult = 6.0;
    cfg->suspicion_confirmations = 3;
    cfg->retransmit_mult = 6;
    cfg->max_message_bytes = 1400;
    cfg->local_health_max = 8;
    if (strcmp(profile, "lan") == 0) {
        cfg->probe_interval_ms = 400;
        cfg->probe_timeout_ms = 150;
        cfg->suspicion_mult = 1.5;
        cfg->gossip_interval_ms = 40;
        cfg->gossip_fanout = 3;
        cfg->push_pull_interval_ms = 30000;
        cfg->reconnect_interval_ms = 5000;
        cfg->reap_ms = 120000;
        return 0;
    }
    if (strcmp(profile, "memberlist") == 0) {
        /* Baseline for benchmarks only: hashicorp/memberlist's DefaultLANConfig
         * (ProbeInterval 1 s, ProbeTimeout 500 ms, SuspicionMult 4,
         * RetransmitMult 4, GossipInterval 200 ms, GossipNodes 3, PushPull 30 s). */
        cfg->probe_interval_ms = 1000;
        cfg->probe_timeout_ms = 500;
        cfg->suspicion_mult = 4.0;
        cfg->retransmit_mult = 4;
        cfg->gossip_interval_ms = 200;
        cfg->gossip_fanout = 3;
        cfg->push_pull_interval_ms = 30000;
        cfg->reconnect_interval_ms = 30000;
        cfg->reap_ms = 120000;
        return 0;
    }
    if (strcmp(profile, "wan") == 0) {
        cfg->probe_interval_ms = 1000;
        cfg->probe_timeout_ms = 500;
        cfg->suspicion_mult = 2.0;
        cfg->gossip_interval_ms = 100;
        cfg->gossip_fanout = 4;
        cfg->push_pull_interval_ms = 60000;
        cfg->reconnect_interval_ms = 10000;
        cfg->reap_ms = 600000;
        return 0;
    }
    return KVC_EINVAL;
}

/* Range checks, one message per bad field. */
int kvc_swim_config_check(const kvc_swim_config_t *c, kvc_err_t *err)
{
    if (!c)
        return kvc_err_set(err, KVC_EINVAL, "swim: no config");
    if (c->probe_interval_ms < 10 || c->probe_interval_ms > 600000)
        return kvc_err_set(err, KVC_EINVAL, "probe_interval_ms: must be 10..600000");
    if (c->probe_timeout_ms < 1 || c->probe_timeout_ms >= c->probe_interval_ms)
        return kvc_err_set(err, KVC_EINVAL, "probe_timeout_ms: must be 1..probe_interval_ms-1");
    if (c->indirect_probes > 16)
        return kvc_err_set(err, KVC_EINVAL, "indirect_probes: must be 0..16");
    if (!(c->suspicion_mult >= 0.1 && c->suspicion_mult <= 100))
        return kvc_err_set(err, KVC_EINVAL, "suspicion_mult: must be 0.1..100");
    if (!(c->suspicion_max_mult >= 1 && c->suspicion_max_mult <= 100))
        return kvc_err_set(err, KVC_EINVAL, "suspicion_max_mult: must be 1..100");
    if (c->suspicion_confirmations > SUSPECT_K_MAX)
        return kvc_err_set(err, KVC_EINVAL, "suspicion_confirmations: must be 0..%d",
                           SUSPECT_K_MAX);
    if (c->retransmit_mult < 1 || c->retransmit_mult > 32)
        return kvc_err_set(err, KVC_EINVAL, "retransmit_mult: must be 1..32");
    if (c->gossip_interval_ms < 1 || c->gossip_interval_ms > 600000)
        return kvc_err_set(err, KVC_EINVAL, "gossip_interval_ms: must be 1..600000");
    if (c->gossip_fanout < 1 || c->gossip_fanout > 64)
        return kvc_err_set(err, KVC_EINVAL, "gossip_fanout: must be 1..64");
    if (c->push_pull_interval_ms < 100)
        return kvc_err_set(err, KVC_EINVAL, "push_pull_interval_ms: must be >= 100");
    if (c->reconnect_interval_ms < 10)
        return kvc_err_set(err, KVC_EINVAL, "reconnect_interval_ms: must be >= 10");
    if (c->reap_ms < 1000)
        return kvc_err_set(err, KVC_EINVAL, "reap_ms: must be >= 1000");
    if (c->max_message_bytes < KVC_SWIM_MIN_MESSAGE_BYTES ||
        c->max_message_bytes > KVC_SWIM_WIRE_MAX)
        return kvc_err_set(err, KVC_EINVAL, "max_message_bytes: must be %d..%d",
                           KVC_SWIM_MIN_MESSAGE_BYTES, KVC_SWIM_WIRE_MAX);
    if (c->local_health_max < 1 || c->local_health_max > 64)
        return kvc_err_set(err, KVC_EINVAL, "local_health_max: must be 1..64");
    return 0;
}

/* Checks one part of an id: [a-z0-9-]{1,63}. Returns its length or 0. */
static size_t s_part_len(const char *p, char stop)
{
    size_t n = 0;
    while (p[n] && p[n] != stop) {
        char c = p[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
        if (++n > KVC_SWIM_PART_MAX)
            return 0;
    }
    return n;
}

/* "site/name" with both parts well-formed. */
int kvc_swim_id_valid(const char *id)
{
    if (!id)
        return 0;
    size_t a = s_part_len(id, '/');
    if (a == 0 || id[a] != '/')
        return 0;
    size_t b = s_part_len(id + a + 1, '\0');
    return b > 0 && id[a + 1 + b] == '\0';
}

/* Static state names for logs and JSON. */
const char *kvc_swim_state_name(kvc_swim_state_t st)
{
    switch (st) {
    case KVC_SWIM_ALIVE:
        return "alive";
    case KVC_SWIM_SUSPECT:
        return "suspect";
    case KVC_SWIM_DEAD:
        return "dead";
    case KVC_SWIM_LEFT:
        return "left";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* Outbox                                                                    */

/* Grows an array to hold at least need elements. */
static int s_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *p = kvc_realloc(*arr, nc * elem);
    if (!p)
        return KVC_ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

/* Appends one event (an event lost to OOM is not worth failing the protocol). */
static void s_event(kvc_outbox_t *out, kvc_member_event_type_t type, const member_t *m)
{
    (void)kvc_outbox_event(out, type, m->id, m->incarnation, m->meta_version);
}

/* ------------------------------------------------------------------------ */
/* Member table                                                              */

/* FNV-1a over the id. */
static uint64_t s_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *id; id++) {
        h ^= (uint8_t)*id;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Looks an id up in the open-addressing map. */
static member_t *s_find(const kvc_swim_t *s, const char *id)
{
    size_t mask = s->map_cap - 1;
    for (size_t i = s_hash(id) & mask;; i = (i + 1) & mask) {
        member_t *m = s->map[i];
        if (!m)
            return NULL;
        if (strcmp(m->id, id) == 0)
            return m;
    }
}

/* Inserts into the map (no resize). */
static void s_map_put(member_t **map, size_t cap, member_t *m)
{
    size_t mask = cap - 1;
    size_t i = s_hash(m->id) & mask;
    while (map[i])
        i = (i + 1) & mask;
    map[i] = m;
}

/* Removes from the map with backward-shift deletion. */
static void s_map_del(kvc_swim_t *s, member_t *m)
{
    size_t mask = s->map_cap - 1;
    size_t i = s_hash(m->id) & mask;
    while (s->map[i] != m)
        i = (i + 1) & mask;
    size_t j = i;
    for (;;) {
        s->map[i] = NULL;
        for (;;) {
            j = (j + 1) & mask;
            if (!s->map[j])
                return;
            size_t k = s_hash(s->map[j]->id) & mask;
            /* Move j back to i unless its home lies cyclically in (i, j]. */
            if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
                continue;
            break;
        }
        s->map[i] = s->map[j];
        i = j;
    }
}

/* Frees a member's owned memory. */
static void s_member_free(member_t *m)
{
    if (!m)
        return;
    s_info_free(m->info);
    if (m->meta) {
        for (size_t i = 0; i < m->meta->n; i++) {
            kvc_free(m->meta->keys[i]);
            kvc_free(m->meta->vals[i]);
        }
        kvc_free(m->meta);
    }
    if (m->susp) {
        for (size_t i = 0; i < m->susp->n_accusers; i++)
            kvc_free(m->susp->accusers[i]);
        kvc_free(m->susp);
    }
    kvc_free(m->coord);
    kvc_free(m->accuser);
    kvc_free(m->id);
    kvc_free(m);
}

/* Adds a member (alive at inc) to the table; NULL on OOM. */
static member_t *s_member_add(kvc_swim_t *s, const char *id, uint64_t inc, uint64_t now)
{
    if ((s->n_all + 1) * 2 > s->map_cap) {
        size_t nc = s->map_cap * 2;
        member_t **nm = kvc_calloc(nc, sizeof(*nm));
        if (!nm)
            return NULL;
        for (size_t i = 0; i < s->n_all; i++)
            s_map_put(nm, nc, s->all[i]);
        kvc_free(s->map);
        s->map = nm;
        s->map_cap = nc;
    }
    if (s_grow((void **)&s->all, &s->cap_all, s->n_all + 1, sizeof(*s->all)))
        return NULL;
    member_t *m = kvc_calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->id = kvc_strdup(id);
    if (!m->id) {
        kvc_free(m);
        return NULL;
    }
    m->site_len = (size_t)(strchr(id, '/') - id);
    m->state = KVC_SWIM_ALIVE;
    m->incarnation = inc;
    m->last_change_ms = now;
    m->index = s->n_all;
    s->all[s->n_all++] = m;
    s_map_put(s->map, s->map_cap, m);
    s->n_live++;
    s->sorted_ok = 0;
    /* Insert at a random place in the rest of this round's probe order. */
    if (s->self &&
        s_grow((void **)&s->plist, &s->cap_plist, s->n_plist + 1, sizeof(*s->plist)) == 0) {
        size_t lo = s->plist_idx <= s->n_plist ? s->plist_idx : s->n_plist;
        size_t pos = lo + (size_t)kvc_rng_below(&s->rng, s->n_plist - lo + 1);
        if (pos == s->n_plist) {
            s->plist[s->n_plist++] = m;
        } else {
            s->plist[s->n_plist++] = s->plist[pos];
            s->plist[pos] = m;
        }
    }
    return m;
}

/* Keeps s->down (members not alive, self excluded) in step with m->state. */
static void s_down_update(kvc_swim_t *s, member_t *m)
{
    int want = m->state != KVC_SWIM_ALIVE && m != s->self;
    if (want && !m->down_pos) {
        if (s_grow((void **)&s->down, &s->cap_down, s->n_down + 1, sizeof(*s->down)))
            return;
        s->down[s->n_down++] = m;
        m->down_pos = s->n_down;
    } else if (!want && m->down_pos) {
        size_t i = m->down_pos - 1;
        s->down[i] = s->down[--s->n_down];
        s->down[i]->down_pos = i + 1;
        m->down_pos = 0;
    }
}

/* Drops a member's suspicion timer. */
static void s_susp_clear(member_t *m)
{
    if (!m->susp)
        return;
    for (size_t i = 0; i < m->susp->n_accusers; i++)
        kvc_free(m->susp->accusers[i]);
    kvc_free(m->susp);
    m->susp = NULL;
}

/* Changes state and incarnation, keeping counters and lists right. */
static void s_set_state(kvc_swim_t *s, member_t *m, int st, uint64_t inc, const char *accuser,
                        uint64_t now)
{
    int was_live = m->state == KVC_SWIM_ALIVE || m->state == KVC_SWIM_SUSPECT;
    int is_live = st == KVC_SWIM_ALIVE || st == KVC_SWIM_SUSPECT;
    if (was_live && !is_live)
        s->n_live--;
    else if (!was_live && is_live)
        s->n_live++;
    if (m->state != st)
        m->last_change_ms = now;
    m->state = (uint8_t)st;
    m->incarnation = inc;
    kvc_free(m->accuser);
    m->accuser = NULL;
    if (accuser && (st == KVC_SWIM_SUSPECT || st == KVC_SWIM_DEAD))
        m->accuser = kvc_strdup(accuser);
    if (st != KVC_SWIM_SUSPECT)
        s_susp_clear(m);
    s_down_update(s, m);
}

/* Takes b out of its transmit-count list. */
static void s_bq_unlink(kvc_swim_t *s, bcast_t *b)
{
    uint32_t t = b->transmits;
    if (b->prev)
        b->prev->next = b->next;
    else
        s->bq_head[t] = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        s->bq_tail[t] = b->prev;
    b->prev = b->next = NULL;
}

/* Puts b at the head (newest) or tail of the list for its transmit count. */
static void s_bq_link(kvc_swim_t *s, bcast_t *b, int at_head)
{
    uint32_t t = b->transmits;
    if (at_head) {
        b->next = s->bq_head[t];
        if (b->next)
            b->next->prev = b;
        else
            s->bq_tail[t] = b;
        s->bq_head[t] = b;
    } else {
        b->prev = s->bq_tail[t];
        if (b->prev)
            b->prev->next = b;
        else
            s->bq_head[t] = b;
        s->bq_tail[t] = b;
    }
}

/* Removes a queued broadcast. */
static void s_bq_remove(kvc_swim_t *s, bcast_t *b)
{
    s_bq_unlink(s, b);
    s->n_bq--;
    b->m->bq[b->kind] = NULL;
    kvc_free(b->data);
    kvc_free(b);
}

/* Forgets a member entirely. */
static void s_member_remove(kvc_swim_t *s, member_t *m, kvc_outbox_t *out)
{
    s_event(out, KVC_MEMBER_EV_REAPED, m);
    for (int k = 0; k < 2; k++)
        if (m->bq[k])
            s_bq_remove(s, m->bq[k]);
    if (s->probe.target == m) {
        s->probe.target = NULL;
        s->probe.active = 0;
        s->next_probe_ms = s->probe.end_ms;
    }
    for (size_t i = 0; i < s->n_plist; i++) {
        if (s->plist[i] == m) {
            memmove(&s->plist[i], &s->plist[i + 1], (s->n_plist - i - 1) * sizeof(*s->plist));
            s->n_plist--;
            if (s->plist_idx > i)
                s->plist_idx--;
            break;
        }
    }
    if (m->state == KVC_SWIM_ALIVE || m->state == KVC_SWIM_SUSPECT)
        s->n_live--;
    m->state = KVC_SWIM_ALIVE;
    s_down_update(s, m);
    s_map_del(s, m);
    s->all[m->index] = s->all[--s->n_all];
    s->all[m->index]->index = m->index;
    s->sorted_ok = 0;
    s_member_free(m);
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                  */

/* Bytes a varint of v takes. */
static size_t s_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Writes a varint, returns its length. */
static size_t s_varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Fills a wire Coord from ours (floats are plenty for milliseconds). */
static void s_coord_to_wire(const kvc_vivaldi_coord_t *c, Kvc__Swim__Coord *w, float *vec)
{
    kvc__swim__coord__init(w);
    for (int i = 0; i < KVC_VIVALDI_DIM; i++)
        vec[i] = (float)c->vec[i];
    w->n_vec = KVC_VIVALDI_DIM;
    w->vec = vec;
    w->height = (float)c->height;
    w->error = (float)c->error;
    w->adjustment = (float)c->adjustment;
}

/* Converts and validates a wire Coord. */
static int s_coord_from_wire(const Kvc__Swim__Coord *w, kvc_vivaldi_coord_t *c)
{
    if (!w || w->n_vec != KVC_VIVALDI_DIM)
        return KVC_EPARSE;
    for (int i = 0; i < KVC_VIVALDI_DIM; i++)
        c->vec[i] = w->vec[i];
    c->height = w->height;
    c->error = w->error;
    c->adjustment = w->adjustment;
    return kvc_vivaldi_coord_valid(c) ? 0 : KVC_EPARSE;
}

/* Splits a comma-separated roles string in place into up to max pointers. */
static size_t s_split_roles(char *buf, char **roles, size_t max)
{
    size_t n = 0;
    char *p = buf;
    while (*p && n < max) {
        char *c = strchr(p, ',');
        if (c)
            *c = '\0';
        if (*p)
            roles[n++] = p;
        if (!c)
            break;
        p = c + 1;
    }
    return n;
}

/* Encodes what we know about m as one Update (malloc'ed into *data). */
static int s_encode_update(const member_t *m, int with_info, int with_meta, uint8_t **data,
                           size_t *len)
{
    Kvc__Swim__Update u;
    Kvc__Swim__Info info;
    Kvc__Swim__MetaEntry ents[KVC_SWIM_META_KEYS_MAX];
    Kvc__Swim__MetaEntry *entp[KVC_SWIM_META_KEYS_MAX];
    char roles_buf[KVC_SWIM_STR_MAX + 1];
    char *roles[KVC_SWIM_STR_MAX / 2 + 1];
    kvc__swim__update__init(&u);
    u.state = (Kvc__Swim__State)m->state;
    u.id = m->id;
    u.incarnation = m->incarnation;
    if (m->accuser && (m->state == KVC_SWIM_SUSPECT || m->state == KVC_SWIM_DEAD))
        u.accuser = m->accuser;
    if (with_info && m->info) {
        kvc__swim__info__init(&info);
        info.region = m->info->region;
        kvc_strlcpy(roles_buf, m->info->roles, sizeof(roles_buf));
        info.n_roles = s_split_roles(roles_buf, roles, sizeof(roles) / sizeof(roles[0]));
        info.roles = roles;
        info.endpoint = m->info->endpoint;
        if (m->info->has_key) {
            info.public_key.data = (uint8_t *)m->info->key;
            info.public_key.len = KVC_SWIM_KEY_LEN;
        }
        info.capabilities = m->info->caps;
        u.info = &info;
    }
    if (with_meta && m->meta_version > 0) {
        u.has_meta = 1;
        u.meta_version = m->meta_version;
        size_t n = m->meta ? m->meta->n : 0;
        for (size_t i = 0; i < n; i++) {
            kvc__swim__meta_entry__init(&ents[i]);
            ents[i].key = m->meta->keys[i];
            ents[i].value.data = m->meta->vals[i];
            ents[i].value.len = m->meta->lens[i];
            entp[i] = &ents[i];
        }
        u.n_meta = n;
        u.meta = entp;
    }
    size_t n = kvc__swim__update__get_packed_size(&u);
    uint8_t *buf = kvc_malloc(n);
    if (!buf)
        return KVC_ENOMEM;
    kvc__swim__update__pack(&u, buf);
    *data = buf;
    *len = n;
    return 0;
}

/* Queues (or replaces) a broadcast about m. */
static void s_enqueue(kvc_swim_t *s, member_t *m, int kind, int with_info)
{
    uint8_t *data;
    size_t len;
    if (s_encode_update(m, with_info, kind == BQ_META, &data, &len) != 0)
        return;
    bcast_t *b = m->bq[kind];
    if (!b) {
        if (!(b = kvc_calloc(1, sizeof(*b)))) {
            kvc_free(data);
            return;
        }
        b->m = m;
        b->kind = kind;
        s->n_bq++;
        m->bq[kind] = b;
    } else {
        s_bq_unlink(s, b);
        kvc_free(b->data);
    }
    b->data = data;
    b->len = len;
    b->transmits = 0;
    b->seq = ++s->bseq;
    s_bq_link(s, b, 1);
}

/* Each update is sent retransmit_mult * ceil(log10(n + 1)) times. */
static uint32_t s_retransmit_limit(const kvc_swim_t *s)
{
    double l = ceil(log10((double)s->n_live + 1.0));
    if (l < 1)
        l = 1;
    return s->cfg.retransmit_mult * (uint32_t)l;
}

/* Appends one update record to buf at *used if it fits under max. */
static int s_append_update(uint8_t *buf, size_t *used, size_t max, const uint8_t *u, size_t len)
{
    size_t need = 1 + s_varint_len(len) + len;
    if (*used + need > max)
        return 0;
    buf[(*used)++] = UPDATE_TAG;
    *used += s_varint_put(buf + *used, len);
    memcpy(buf + *used, u, len);
    *used += len;
    return 1;
}

/*
 * Sends msg (body only; its updates field must be empty) to `to`, then fills
 * the rest of max_message_bytes with `first` (if any) and queued broadcasts.
 */
static int s_send(kvc_swim_t *s, kvc_outbox_t *out, const char *to, Kvc__Swim__Message *msg,
                  const uint8_t *first, size_t first_len, int piggyback)
{
    size_t max = s->cfg.max_message_bytes;
    msg->version = WIRE_VERSION;
    size_t base = kvc__swim__message__get_packed_size(msg);
    if (base > max)
        return KVC_ERANGE;
    uint8_t *buf = kvc_outbox_reserve(out, max);
    if (!buf)
        return KVC_ENOMEM;
    size_t used = kvc__swim__message__pack(msg, buf);
    if (first)
        s_append_update(buf, &used, max, first, first_len);
    if (piggyback && s->n_bq > 0) {
        /* Least sent first, newest first within a count. An entry that was
         * sent moves to the tail of the next count's list; entries moved in
         * this pass are collected and linked after it, so none is sent twice
         * in one message. */
        uint32_t limit = s_retransmit_limit(s);
        bcast_t *sent = NULL;
        int misses = 0;
        for (uint32_t t = 0; t < BQ_BUCKETS && used + 8 < max && misses < 8; t++) {
            bcast_t *b = s->bq_head[t];
            while (b && used + 8 < max && misses < 8) {
                bcast_t *next = b->next;
                if (b->transmits >= limit) {
                    s_bq_remove(s, b);
                } else if (!s_append_update(buf, &used, max, b->data, b->len)) {
                    misses++;
                } else {
                    s_bq_unlink(s, b);
                    b->next = sent;
                    sent = b;
                }
                b = next;
            }
        }
        /* sent is in reverse order of sending; link oldest-sent last. */
        bcast_t *rev = NULL;
        while (sent) {
            bcast_t *n = sent->next;
            sent->next = rev;
            rev = sent;
            sent = n;
        }
        while (rev) {
            bcast_t *n = rev->next;
            rev->next = rev->prev = NULL;
            if (++rev->transmits >= limit || rev->transmits >= BQ_BUCKETS) {
                rev->m->bq[rev->kind] = NULL;
                s->n_bq--;
                kvc_free(rev->data);
                kvc_free(rev);
            } else {
                s_bq_link(s, rev, 0);
            }
            rev = n;
        }
    }
    return kvc_outbox_commit(out, to, KVC_SWIM_CHANNEL, used);
}

/* Sends a message that carries only a set of full entries, split by size. */
typedef struct {
    kvc_swim_t *s;
    kvc_outbox_t *out;
    const char *to;
    uint8_t *buf;
    size_t used;
    int rc;
} batch_t;

/* Starts an empty batch to `to`. */
static void s_batch_init(batch_t *b, kvc_swim_t *s, kvc_outbox_t *out, const char *to)
{
    b->s = s;
    b->out = out;
    b->to = to;
    b->buf = NULL;
    b->used = 0;
    b->rc = 0;
}

/* Closes the current message of the batch, if any. */
static void s_batch_flush(batch_t *b)
{
    if (b->buf && b->used > 2 && b->rc == 0)
        b->rc = kvc_outbox_commit(b->out, b->to, KVC_SWIM_CHANNEL, b->used);
    b->buf = NULL;
    b->used = 0;
}

/* Adds the full entry of m to the batch. */
static void s_batch_add(batch_t *b, const member_t *m)
{
    uint8_t *u;
    size_t len;
    if (b->rc || s_encode_update(m, 1, 1, &u, &len) != 0)
        return;
    size_t max = b->s->cfg.max_message_bytes;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!b->buf) {
            b->buf = kvc_outbox_reserve(b->out, max);
            if (!b->buf) {
                b->rc = KVC_ENOMEM;
                break;
            }
            b->buf[0] = 0x08; /* version = 1 */
            b->buf[1] = WIRE_VERSION;
            b->used = 2;
        }
        if (s_append_update(b->buf, &b->used, max, u, len))
            break;
        s_batch_flush(b);
    }
    kvc_free(u);
}

/* ------------------------------------------------------------------------ */
/* Suspicion (Lifeguard)                                                     */

/* max(min, max - (max-min) * log(C+1)/log(K+1)), in whole ms. */
static uint64_t s_susp_timeout(const suspicion_t *p)
{
    if (p->k < 1)
        return p->min_ms;
    double frac = log((double)p->n + 1.0) / log((double)p->k + 1.0);
    double raw = floor((double)p->max_ms - frac * (double)(p->max_ms - p->min_ms));
    return raw < (double)p->min_ms ? p->min_ms : (uint64_t)raw;
}

/* Starts a suspicion timer on m, first accused by `accuser`. */
static void s_susp_start(kvc_swim_t *s, member_t *m, const char *accuser, uint64_t now)
{
    s_susp_clear(m);
    suspicion_t *p = kvc_calloc(1, sizeof(*p));
    if (!p)
        return;
    double n = (double)s->n_live;
    double scale = n > 10 ? log10(n) : 1.0;
    p->min_ms = (uint64_t)(s->cfg.suspicion_mult * scale * s->cfg.probe_interval_ms);
    p->max_ms = (uint64_t)(s->cfg.suspicion_max_mult * (double)p->min_ms);
    p->k = s->cfg.suspicion_confirmations;
    if (s->n_live < (size_t)p->k + 2)
        p->k = 0;
    p->start_ms = now;
    if (accuser && (p->accusers[0] = kvc_strdup(accuser)))
        p->n_accusers = 1;
    p->deadline_ms = now + s_susp_timeout(p);
    m->susp = p;
}

/* Counts an independent confirmation; returns 1 if it was new. */
static int s_susp_confirm(suspicion_t *p, const char *accuser)
{
    if (!p || !accuser || p->n >= p->k)
        return 0;
    for (size_t i = 0; i < p->n_accusers; i++)
        if (strcmp(p->accusers[i], accuser) == 0)
            return 0;
    char *a = kvc_strdup(accuser);
    if (!a)
        return 0;
    p->accusers[p->n_accusers++] = a;
    p->n++;
    p->deadline_ms = p->start_ms + s_susp_timeout(p);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Applying updates                                                          */

/* Rank used to order states at equal incarnation. */
static int s_rank(int st)
{
    return st; /* alive < suspect < dead < left */
}

/* Raises our incarnation above `accused` and announces we are alive. */
static void s_refute(kvc_swim_t *s, uint64_t accused, int with_info)
{
    member_t *me = s->self;
    uint64_t inc = (accused > me->incarnation ? accused : me->incarnation) + 1;
    me->incarnation = inc;
    s->stats.refutations++;
    if (s->lhm + 1 < s->cfg.local_health_max)
        s->lhm++;
    s_enqueue(s, me, BQ_STATE, with_info);
}

/* Frees an info record. */
static void s_info_free(info_t *in)
{
    if (!in)
        return;
    kvc_free(in->region);
    kvc_free(in->roles);
    kvc_free(in->endpoint);
    kvc_free(in);
}

/* Same contents? */
static int s_info_equal(const info_t *a, const info_t *b)
{
    return a->has_key == b->has_key && (!a->has_key || memcmp(a->key, b->key, KVC_SWIM_KEY_LEN) == 0) &&
           a->caps == b->caps && strcmp(a->region, b->region) == 0 &&
           strcmp(a->roles, b->roles) == 0 && strcmp(a->endpoint, b->endpoint) == 0;
}

/*
 * Stores a validated wire Info for m, learned at incarnation inc. Info is
 * versioned by the member's incarnation: a newer incarnation replaces what
 * we hold (a restarted member may have a new endpoint or key), an equal or
 * older one does not, unless `own` says the member itself sent it (the
 * transport authenticated the sender), which always wins: a third party
 * cannot pin another member's key by gossiping it first. Returns 1 if the
 * info changed.
 */
static int s_info_store(member_t *m, const Kvc__Swim__Info *w, uint64_t inc, int own)
{
    if (!w || (m->info && !own && inc <= m->info_inc))
        return 0;
    info_t *in = kvc_calloc(1, sizeof(*in));
    if (!in)
        return 0;
    char roles[KVC_SWIM_STR_MAX + 1];
    size_t used = 0;
    roles[0] = '\0';
    for (size_t i = 0; i < w->n_roles; i++) {
        size_t l = strlen(w->roles[i]);
        if (used + l + 2 > sizeof(roles))
            break;
        if (used)
            roles[used++] = ',';
        memcpy(roles + used, w->roles[i], l);
        used += l;
        roles[used] = '\0';
    }
    in->region = kvc_strdup(w->region ? w->region : "");
    in->roles = kvc_strdup(roles);
    in->endpoint = kvc_strdup(w->endpoint ? w->endpoint : "");
    if (w->public_key.len == KVC_SWIM_KEY_LEN) {
        memcpy(in->key, w->public_key.data, KVC_SWIM_KEY_LEN);
        in->has_key = 1;
    }
    in->caps = w->capabilities;
    if (!in->region || !in->roles || !in->endpoint) {
        s_info_free(in);
        return 0;
    }
    if (inc > m->info_inc || !m->info)
        m->info_inc = inc;
    if (m->info && s_info_equal(m->info, in)) {
        s_info_free(in);
        return 0;
    }
    s_info_free(m->info);
    m->info = in;
    return 1;
}

/* Replaces m's metadata with the wire entries. */
static int s_meta_store(member_t *m, const Kvc__Swim__Update *u)
{
    meta_t *mt = kvc_calloc(1, sizeof(*mt));
    if (!mt)
        return KVC_ENOMEM;
    for (size_t i = 0; i < u->n_meta; i++) {
        mt->keys[i] = kvc_strdup(u->meta[i]->key);
        mt->vals[i] = kvc_malloc(u->meta[i]->value.len ? u->meta[i]->value.len : 1);
        mt->n = i + 1;
        if (!mt->keys[i] || !mt->vals[i])
            goto fail;
        if (u->meta[i]->value.len)
            memcpy(mt->vals[i], u->meta[i]->value.data, u->meta[i]->value.len);
        mt->lens[i] = u->meta[i]->value.len;
        mt->bytes += strlen(mt->keys[i]) + mt->lens[i];
    }
    if (m->meta) {
        for (size_t i = 0; i < m->meta->n; i++) {
            kvc_free(m->meta->keys[i]);
            kvc_free(m->meta->vals[i]);
        }
        kvc_free(m->meta);
    }
    m->meta = mt;
    m->meta_version = u->meta_version;
    return 0;
fail:
    for (size_t i = 0; i < mt->n; i++) {
        kvc_free(mt->keys[i]);
        kvc_free(mt->vals[i]);
    }
    kvc_free(mt);
    return KVC_ENOMEM;
}

/* Remembers to ask the sender for m's full entry. */
static void s_want(kvc_swim_t *s, member_t *m)
{
    for (size_t i = 0; i < s->n_want; i++)
        if (s->want[i] == m)
            return;
    if (s->n_want < WANT_MAX)
        s->want[s->n_want++] = m;
}

/* Suspects m (alive) on `accuser`'s word. */
static void s_make_suspect(kvc_swim_t *s, member_t *m, uint64_t inc, const char *accuser,
                           uint64_t now, kvc_outbox_t *out)
{
    s_set_state(s, m, KVC_SWIM_SUSPECT, inc, accuser, now);
    s_susp_start(s, m, accuser, now);
    s->stats.suspicions++;
    s_event(out, KVC_MEMBER_EV_SUSPECT, m);
    s_enqueue(s, m, BQ_STATE, 0);
}

/* Applies one validated update (SWIM's rules, precedence by incarnation)
 * heard from member `from`. */
static void s_apply(kvc_swim_t *s, const Kvc__Swim__Update *u, const char *from, uint64_t now,
                    kvc_outbox_t *out)
{
    int st = (int)u->state;
    const char *accuser = u->accuser && u->accuser[0] ? u->accuser : NULL;
    int own = from && strcmp(from, u->id) == 0;
    member_t *m = s_find(s, u->id);
    if (m == s->self) {
        if (s->left)
            return;
        if ((st == KVC_SWIM_ALIVE && u->incarnation > m->incarnation) ||
            (st != KVC_SWIM_ALIVE && u->incarnation >= m->incarnation))
            s_refute(s, u->incarnation, st == KVC_SWIM_DEAD || st == KVC_SWIM_LEFT);
        if (u->has_meta && u->meta_version > m->meta_version) {
            /* A previous life of ours published newer metadata: supersede it. */
            m->meta_version = u->meta_version + 1;
            s_enqueue(s, m, BQ_META, 0);
        }
        return;
    }
    if (!m) {
        if (st == KVC_SWIM_DEAD || st == KVC_SWIM_LEFT)
            return; /* no use learning about strangers that are gone */
        m = s_member_add(s, u->id, u->incarnation, now);
        if (!m)
            return;
        s_info_store(m, u->info, u->incarnation, own);
        s_event(out, KVC_MEMBER_EV_JOINED, m);
        s_enqueue(s, m, BQ_STATE, 0);
        if (!m->info)
            s_want(s, m);
        if (st == KVC_SWIM_SUSPECT)
            s_make_suspect(s, m, u->incarnation, accuser, now, out);
    } else {
        if (s_info_store(m, u->info, u->incarnation, own))
            s_enqueue(s, m, BQ_STATE, 1); /* pass the new info on */
        switch (st) {
        case KVC_SWIM_ALIVE:
            if (u->incarnation > m->incarnation) {
                s_set_state(s, m, KVC_SWIM_ALIVE, u->incarnation, NULL, now);
                s_event(out, KVC_MEMBER_EV_ALIVE, m);
                s_enqueue(s, m, BQ_STATE, 0);
            }
            break;
        case KVC_SWIM_SUSPECT:
            if (u->incarnation < m->incarnation)
                break;
            if (m->state == KVC_SWIM_ALIVE) {
                s_make_suspect(s, m, u->incarnation, accuser, now, out);
            } else if (m->state == KVC_SWIM_SUSPECT) {
                if (u->incarnation > m->incarnation)
                    m->incarnation = u->incarnation;
                if (s_susp_confirm(m->susp, accuser)) {
                    /* Pass the confirmation on under its own accuser. */
                    char *keep = m->accuser;
                    m->accuser = (char *)accuser;
                    s_enqueue(s, m, BQ_STATE, 0);
                    m->accuser = keep;
                }
            }
            break;
        case KVC_SWIM_DEAD:
            if (u->incarnation < m->incarnation || m->state == KVC_SWIM_DEAD ||
                m->state == KVC_SWIM_LEFT)
                break;
            s_set_state(s, m, KVC_SWIM_DEAD, u->incarnation, accuser, now);
            s_event(out, KVC_MEMBER_EV_DEAD, m);
            s_enqueue(s, m, BQ_STATE, 0);
            break;
        case KVC_SWIM_LEFT:
            if (u->incarnation < m->incarnation || m->state == KVC_SWIM_LEFT)
                break;
            s_set_state(s, m, KVC_SWIM_LEFT, u->incarnation, NULL, now);
            s_event(out, KVC_MEMBER_EV_LEFT, m);
            s_enqueue(s, m, BQ_STATE, 0);
            break;
        default:
            break;
        }
    }
    if (u->has_meta && u->meta_version > m->meta_version) {
        if (s_meta_store(m, u) == 0) {
            s_event(out, KVC_MEMBER_EV_META, m);
            s_enqueue(s, m, BQ_META, 0);
        }
    }
}

/* Bounded, printable-ish string check for info fields. */
static int s_str_ok(const char *p, size_t max)
{
    if (!p)
        return 1;
    size_t n = 0;
    for (; p[n]; n++)
        if ((unsigned char)p[n] < 0x20 || n >= max)
            return 0;
    return 1;
}

/* Validates one wire update; 0 if usable. */
static int s_update_valid(const Kvc__Swim__Update *u)
{
    if ((int)u->state < KVC_SWIM_ALIVE || (int)u->state > KVC_SWIM_LEFT)
        return KVC_EPARSE;
    if (!kvc_swim_id_valid(u->id))
        return KVC_EPARSE;
    if (u->accuser && u->accuser[0] && !kvc_swim_id_valid(u->accuser))
        return KVC_EPARSE;
    if (u->info) {
        const Kvc__Swim__Info *in = u->info;
        if (!s_str_ok(in->region, KVC_SWIM_PART_MAX) || !s_str_ok(in->endpoint, KVC_SWIM_STR_MAX))
            return KVC_EPARSE;
        if (in->public_key.len != 0 && in->public_key.len != KVC_SWIM_KEY_LEN)
            return KVC_EPARSE;
        if (in->n_roles > 32)
            return KVC_EPARSE;
        for (size_t i = 0; i < in->n_roles; i++)
            if (!s_str_ok(in->roles[i], KVC_SWIM_PART_MAX) || strchr(in->roles[i], ','))
                return KVC_EPARSE;
    }
    if (u->n_meta > KVC_SWIM_META_KEYS_MAX || (u->n_meta && !u->has_meta))
        return KVC_EPARSE;
    size_t bytes = 0;
    for (size_t i = 0; i < u->n_meta; i++) {
        if (!u->meta[i]->key || !u->meta[i]->key[0] ||
            !s_str_ok(u->meta[i]->key, KVC_SWIM_META_KEY_MAX))
            return KVC_EPARSE;
        bytes += strlen(u->meta[i]->key) + u->meta[i]->value.len;
    }
    if (bytes > KVC_SWIM_META_BYTES_MAX)
        return KVC_EPARSE;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Probing                                                                   */

/* Probe timeout and interval stretched by local health (Lifeguard). */
static uint64_t s_scaled(const kvc_swim_t *s, uint32_t base)
{
    return (uint64_t)base * (s->lhm + 1);
}

/* Lifeguard: nudges the local health score by delta within its range. */
static void s_lhm_add(kvc_swim_t *s, int delta)
{
    int v = (int)s->lhm + delta;
    if (v < 0)
        v = 0;
    if (v > (int)s->cfg.local_health_max - 1)
        v = (int)s->cfg.local_health_max - 1;
    s->lhm = (uint32_t)v;
}

/* Picks up to n distinct random live members other than self and `not`. */
static size_t s_random_live(kvc_swim_t *s, member_t **pick, size_t n, const member_t * not )
{
    size_t got = 0;
    size_t excl = (s->self->state <= KVC_SWIM_SUSPECT) + (not &&not ->state <= KVC_SWIM_SUSPECT);
    size_t others = s->n_live > excl ? s->n_live - excl : 0;
    if (n > others)
        n = others;
    for (size_t tries = 0; got < n && tries < 8 * n + 16; tries++) {
        member_t *m = s->all[kvc_rng_below(&s->rng, s->n_all)];
        if (m == s->self || m == not || m->state > KVC_SWIM_SUSPECT)
            continue;
        int dup = 0;
        for (size_t i = 0; i < got; i++)
            dup |= pick[i] == m;
        if (!dup)
            pick[got++] = m;
    }
    return got;
}

/* Sends a Ping for seq to m, carrying our coordinate. Tells a suspect first. */
static int s_send_ping(kvc_swim_t *s, kvc_outbox_t *out, member_t *m, const char *target,
                       uint64_t seq)
{
    Kvc__Swim__Message msg;
    Kvc__Swim__Ping ping;
    Kvc__Swim__Coord coord;
    float vec[KVC_VIVALDI_DIM];
    kvc__swim__message__init(&msg);
    kvc__swim__ping__init(&ping);
    s_coord_to_wire(kvc_vivaldi_coord(s->viv), &coord, vec);
    ping.seq = seq;
    ping.target = (char *)target;
    ping.coord = &coord;
    msg.body_case = KVC__SWIM__MESSAGE__BODY_PING;
    msg.ping = &ping;
    uint8_t *first = NULL;
    size_t first_len = 0;
    if (m && m->state == KVC_SWIM_SUSPECT)
        s_encode_update(m, 0, 0, &first, &first_len);
    int rc = s_send(s, out, target, &msg, first, first_len, 1);
    kvc_free(first);
    return rc;
}

/* Starts probing the next member in the shuffled round-robin order. */
static void s_probe_start(kvc_swim_t *s, uint64_t now, kvc_outbox_t *out)
{
    member_t *t = NULL;
    for (int pass = 0; pass < 2 && !t; pass++) {
        while (s->plist_idx < s->n_plist) {
            member_t *m = s->plist[s->plist_idx++];
            if (m != s->self && m->state <= KVC_SWIM_SUSPECT) {
                t = m;
                break;
            }
        }
        if (!t) {
            /* Reshuffle every live member into a new round (Fisher-Yates). */
            s->n_plist = 0;
            s->plist_idx = 0;
            if (s_grow((void **)&s->plist, &s->cap_plist, s->n_all, sizeof(*s->plist)))
                break;
            for (size_t i = 0; i < s->n_all; i++)
                if (s->all[i] != s->self && s->all[i]->state <= KVC_SWIM_SUSPECT)
                    s->plist[s->n_plist++] = s->all[i];
            for (size_t i = s->n_plist; i > 1; i--) {
                size_t j = (size_t)kvc_rng_below(&s->rng, i);
                member_t *x = s->plist[i - 1];
                s->plist[i - 1] = s->plist[j];
                s->plist[j] = x;
            }
        }
    }
    uint64_t period = s_scaled(s, s->cfg.probe_interval_ms);
    if (!t) {
        s->next_probe_ms = now + period;
        return;
    }
    probe_t *p = &s->probe;
    memset(p, 0, sizeof(*p));
    p->active = 1;
    p->target = t;
    p->seq = ++s->seq;
    p->start_ms = p->sent_ms = now;
    p->timeout_ms = now + s_scaled(s, s->cfg.probe_timeout_ms);
    p->end_ms = now + period;
    s->next_probe_ms = p->end_ms;
    s->stats.probes++;
    s_send_ping(s, out, t, t->id, p->seq);
}

/* No direct ack in time: ask k members to probe for us, and ping once more. */
static void s_probe_indirect(kvc_swim_t *s, uint64_t now, kvc_outbox_t *out)
{
    probe_t *p = &s->probe;
    p->indirect_sent = 1;
    s->stats.indirect_probes++;
    member_t *pick[16];
    size_t k = s_random_live(s, pick, s->cfg.indirect_probes, p->target);
    uint64_t left = p->end_ms > now ? p->end_ms - now : 1;
    for (size_t i = 0; i < k; i++) {
        Kvc__Swim__Message msg;
        Kvc__Swim__PingReq req;
        kvc__swim__message__init(&msg);
        kvc__swim__ping_req__init(&req);
        req.seq = p->seq;
        req.target = p->target->id;
        req.timeout_ms = (uint32_t)(left * 3 / 4 > 0 ? left * 3 / 4 : 1);
        msg.body_case = KVC__SWIM__MESSAGE__BODY_PING_REQ;
        msg.ping_req = &req;
        if (s_send(s, out, pick[i]->id, &msg, NULL, 0, 1) == 0)
            p->expected_nacks++;
    }
    p->repinged = 1;
    s_send_ping(s, out, p->target, p->target->id, p->seq);
}

/* Ends the probe period: adjust local health, suspect on failure. */
static void s_probe_finish(kvc_swim_t *s, uint64_t now, kvc_outbox_t *out)
{
    probe_t *p = &s->probe;
    p->active = 0;
    member_t *t = p->target;
    if (p->acked) {
        s_lhm_add(s, -1);
        if (t && !p->direct_acked) { /* alive, but our own path to it is cut */
            t->direct_lost = 1;
            s->stats.direct_lost++;
        }
        return;
    }
    s->stats.probe_failures++;
    if (p->expected_nacks > 0) {
        if (p->nacks < p->expected_nacks)
            s_lhm_add(s, (int)(p->expected_nacks - p->nacks));
    } else {
        s_lhm_add(s, 1);
    }
    if (!t)
        return;
    if (t->state == KVC_SWIM_ALIVE) {
        s_make_suspect(s, t, t->incarnation, s->self->id, now, out);
        /* Lifeguard: tell the suspect at once so it can refute. */
        Kvc__Swim__Message msg;
        uint8_t *u;
        size_t len;
        kvc__swim__message__init(&msg);
        if (s_encode_update(t, 0, 0, &u, &len) == 0) {
            s_send(s, out, t->id, &msg, u, len, 0);
            kvc_free(u);
        }
    } else if (t->state == KVC_SWIM_SUSPECT && s_susp_confirm(t->susp, s->self->id)) {
        char *keep = t->accuser;
        t->accuser = s->self->id;
        s_enqueue(s, t, BQ_STATE, 0);
        t->accuser = keep;
    }
}

/* Feeds a direct probe's round trip into the coordinate. */
static void s_rtt_sample(kvc_swim_t *s, member_t *m, uint64_t rtt_ms)
{
    float r = rtt_ms > 0 ? (float)rtt_ms : 0.5f;
    m->rtt[m->rtt_i] = r;
    m->rtt_i = (uint8_t)((m->rtt_i + 1) % 3);
    if (m->rtt_n < 3)
        m->rtt_n++;
    float med = r;
    if (m->rtt_n == 2) {
        med = (m->rtt[0] + m->rtt[1]) / 2;
    } else if (m->rtt_n == 3) {
        float a = m->rtt[0], b = m->rtt[1], c = m->rtt[2];
        med = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
    }
    if (m->coord)
        kvc_vivaldi_update(s->viv, m->coord, med / 1000.0, &s->rng);
}

/* Stores a peer's coordinate as heard on a ping or ack. */
static void s_coord_store(member_t *m, const Kvc__Swim__Coord *w)
{
    kvc_vivaldi_coord_t c;
    if (!m || s_coord_from_wire(w, &c) != 0)
        return;
    if (!m->coord && !(m->coord = kvc_malloc(sizeof(*m->coord))))
        return;
    *m->coord = c;
}

/* ------------------------------------------------------------------------ */
/* Push-pull                                                                 */

/* strcmp for qsort over member pointers. */
static int s_id_cmp(const void *a, const void *b)
{
    return strcmp((*(member_t *const *)a)->id, (*(member_t *const *)b)->id);
}

/* Members sorted by id, rebuilt only after the table changed. */
static int s_sorted(kvc_swim_t *s)
{
    if (s->sorted_ok)
        return 0;
    if (s_grow((void **)&s->sorted, &s->cap_sorted, s->n_all, sizeof(*s->sorted)))
        return KVC_ENOMEM;
    memcpy(s->sorted, s->all, s->n_all * sizeof(*s->sorted));
    qsort(s->sorted, s->n_all, sizeof(*s->sorted), s_id_cmp);
    s->sorted_ok = 1;
    return 0;
}

/* Sends our whole digest to `to`, split into id ranges that fit a message. */
static int s_push_pull(kvc_swim_t *s, const char *to, kvc_outbox_t *out)
{
    s->stats.push_pulls++;
    int rc = s_sorted(s);
    if (rc)
        return rc;
    Kvc__Swim__DigestEntry *ents = kvc_calloc(s->n_all ? s->n_all : 1, sizeof(*ents));
    Kvc__Swim__DigestEntry **ptrs = kvc_calloc(s->n_all ? s->n_all : 1, sizeof(*ptrs));
    if (!ents || !ptrs) {
        kvc_free(ents);
        kvc_free(ptrs);
        return KVC_ENOMEM;
    }
    size_t max = s->cfg.max_message_bytes;
    const char *lo = "";
    size_t i = 0;
    while (rc == 0) {
        size_t start = i, size = 16 + strlen(lo);
        for (; i < s->n_all; i++) {
            member_t *m = s->sorted[i];
            Kvc__Swim__DigestEntry *e = &ents[i];
            kvc__swim__digest_entry__init(e);
            e->id = m->id;
            e->incarnation = m->incarnation;
            e->state = (Kvc__Swim__State)m->state;
            e->meta_version = m->meta_version;
            e->has_info = m->info != NULL;
            size_t es = kvc__swim__digest_entry__get_packed_size(e);
            es += 1 + s_varint_len(es);
            /* Room for this entry and for its id as the chunk's hi bound. */
            if (size + es + strlen(m->id) + 8 > max && i > start)
                break;
            size += es;
            ptrs[i] = e;
        }
        Kvc__Swim__Message msg;
        Kvc__Swim__Digest dg;
        kvc__swim__message__init(&msg);
        kvc__swim__digest__init(&dg);
        dg.lo = (char *)lo;
        dg.hi = i < s->n_all ? s->sorted[i - 1]->id : "";
        dg.n_entries = i - start;
        dg.entries = ptrs + start;
        msg.body_case = KVC__SWIM__MESSAGE__BODY_DIGEST;
        msg.digest = &dg;
        rc = s_send(s, out, to, &msg, NULL, 0, 0);
        if (i >= s->n_all)
            break;
        lo = s->sorted[i - 1]->id;
    }
    kvc_free(ents);
    kvc_free(ptrs);
    return rc;
}

/* Is id inside the digest range (lo, hi]? */
static int s_in_range(const char *id, const char *lo, const char *hi)
{
    return strcmp(id, lo) > 0 && (!hi[0] || strcmp(id, hi) <= 0);
}

/* Answers a digest chunk: full entries for what we know better, a Want for
 * what they know better. Only differing entries cross the wire. */
static int s_on_digest(kvc_swim_t *s, const char *from, const Kvc__Swim__Digest *dg, uint64_t now,
                       kvc_outbox_t *out)
{
    const char *lo = dg->lo ? dg->lo : "";
    const char *hi = dg->hi ? dg->hi : "";
    if ((lo[0] && !kvc_swim_id_valid(lo)) || (hi[0] && !kvc_swim_id_valid(hi)))
        return KVC_EPARSE;
    for (size_t i = 0; i < dg->n_entries; i++)
        if (!kvc_swim_id_valid(dg->entries[i]->id) || (int)dg->entries[i]->state < 0 ||
            (int)dg->entries[i]->state > KVC_SWIM_LEFT)
            return KVC_EPARSE;
    int rc = s_sorted(s);
    if (rc)
        return rc;
    s->pp_gen++;
    batch_t b;
    s_batch_init(&b, s, out, from);
    size_t n_want = 0;
    char **want = kvc_calloc(dg->n_entries ? dg->n_entries : 1, sizeof(*want));
    if (!want)
        return KVC_ENOMEM;
    for (size_t i = 0; i < dg->n_entries; i++) {
        const Kvc__Swim__DigestEntry *e = dg->entries[i];
        if (!s_in_range(e->id, lo, hi))
            continue;
        member_t *m = s_find(s, e->id);
        if (m && m->mark == s->pp_gen)
            continue; /* duplicate entry */
        if (m == s->self) {
            if ((e->state == KVC__SWIM__STATE__ALIVE && e->incarnation > m->incarnation) ||
                (e->state != KVC__SWIM__STATE__ALIVE && e->incarnation >= m->incarnation))
                s_refute(s, e->incarnation,
                         e->state == KVC__SWIM__STATE__DEAD || e->state == KVC__SWIM__STATE__LEFT);
            if (e->meta_version > m->meta_version) {
                m->meta_version = e->meta_version + 1;
                s_enqueue(s, m, BQ_META, 0);
            }
        }
        if (!m) {
            if (e->state == KVC__SWIM__STATE__ALIVE || e->state == KVC__SWIM__STATE__SUSPECT)
                want[n_want++] = e->id;
            continue;
        }
        m->mark = s->pp_gen;
        int es = (int)e->state;
        int theirs = e->incarnation > m->incarnation ||
                     (e->incarnation == m->incarnation && s_rank(es) > s_rank(m->state)) ||
                     e->meta_version > m->meta_version || (e->has_info && !m->info);
        int ours = m->incarnation > e->incarnation ||
                   (e->incarnation == m->incarnation && s_rank(m->state) > s_rank(es)) ||
                   m->meta_version > e->meta_version || (m->info && !e->has_info);
        if (theirs && m != s->self)
            want[n_want++] = e->id;
        if (ours)
            s_batch_add(&b, m);
    }
    /* Members in range they did not mention at all. */
    size_t a = 0, z = s->n_all;
    while (a < z) { /* first index with id > lo */
        size_t mid = (a + z) / 2;
        if (strcmp(s->sorted[mid]->id, lo) <= 0)
            a = mid + 1;
        else
            z = mid;
    }
    for (size_t i = a; i < s->n_all && s_in_range(s->sorted[i]->id, lo, hi); i++) {
        member_t *m = s->sorted[i];
        if (m->mark != s->pp_gen && m->state <= KVC_SWIM_SUSPECT)
            s_batch_add(&b, m);
    }
    s_batch_flush(&b);
    rc = b.rc;
    /* Ask for theirs, as many Want messages as it takes. */
    size_t i = 0;
    while (rc == 0 && i < n_want) {
        size_t start = i, size = 8;
        for (; i < n_want; i++) {
            size_t l = strlen(want[i]);
            if (size + l + 2 > s->cfg.max_message_bytes)
                break;
            size += l + 2;
        }
        Kvc__Swim__Message msg;
        Kvc__Swim__Want w;
        kvc__swim__message__init(&msg);
        kvc__swim__want__init(&w);
        w.n_ids = i - start;
        w.ids = want + start;
        msg.body_case = KVC__SWIM__MESSAGE__BODY_WANT;
        msg.want = &w;
        rc = s_send(s, out, from, &msg, NULL, 0, 0);
    }
    kvc_free(want);
    (void)now;
    return rc;
}

/* Answers a Want with full entries. */
static int s_on_want(kvc_swim_t *s, const char *from, const Kvc__Swim__Want *w, kvc_outbox_t *out)
{
    batch_t b;
    s_batch_init(&b, s, out, from);
    for (size_t i = 0; i < w->n_ids && i < WANT_MAX; i++) {
        if (!kvc_swim_id_valid(w->ids[i]))
            continue;
        member_t *m = s_find(s, w->ids[i]);
        if (m)
            s_batch_add(&b, m);
    }
    s_batch_flush(&b);
    return b.rc;
}

/* memberlist's scaling: push-pull slows down above 32 members so its cost
 * per peer stays flat as the cluster grows. */
static uint64_t s_pp_interval(const kvc_swim_t *s)
{
    double n = (double)s->n_live;
    uint64_t base = s->cfg.push_pull_interval_ms;
    if (n <= 32)
        return base;
    double mult = ceil(log2(n) - log2(32.0)) + 1.0;
    return (uint64_t)(mult * (double)base);
}

/* ------------------------------------------------------------------------ */
/* Receiving                                                                 */

/* Handles a Ping: answer with an Ack carrying our coordinate. */
static int s_on_ping(kvc_swim_t *s, const char *from, const Kvc__Swim__Ping *p, kvc_outbox_t *out)
{
    if (!p->target || strcmp(p->target, s->self->id) != 0)
        return KVC_EINVAL; /* meant for someone else (a stale address) */
    s_coord_store(s_find(s, from), p->coord);
    Kvc__Swim__Message msg;
    Kvc__Swim__Ack ack;
    Kvc__Swim__Coord coord;
    float vec[KVC_VIVALDI_DIM];
    kvc__swim__message__init(&msg);
    kvc__swim__ack__init(&ack);
    s_coord_to_wire(kvc_vivaldi_coord(s->viv), &coord, vec);
    ack.seq = p->seq;
    ack.coord = &coord;
    msg.body_case = KVC__SWIM__MESSAGE__BODY_ACK;
    msg.ack = &ack;
    return s_send(s, out, from, &msg, NULL, 0, 1);
}

/* Handles a PingReq: probe the target on the requester's behalf. */
static int s_on_ping_req(kvc_swim_t *s, const char *from, const Kvc__Swim__PingReq *r, uint64_t now,
                         kvc_outbox_t *out)
{
    if (!kvc_swim_id_valid(r->target) || strcmp(r->target, s->self->id) == 0 ||
        strcmp(r->target, from) == 0)
        return KVC_EINVAL;
    if (s->n_relays >= RELAY_MAX)
        return 0; /* overloaded: the requester will count our missing nack */
    relay_t *rl = &s->relays[s->n_relays++];
    rl->seq = ++s->seq;
    rl->req_seq = r->seq;
    uint32_t t = r->timeout_ms ? r->timeout_ms : s->cfg.probe_timeout_ms;
    if (t > 60000)
        t = 60000;
    rl->deadline_ms = now + t;
    kvc_strlcpy(rl->requester, from, sizeof(rl->requester));
    return s_send_ping(s, out, s_find(s, r->target), r->target, rl->seq);
}

/* Handles an Ack: our probe, a relay we run, or a reconnect attempt. */
/* Counts one probe round trip in the RTT histogram. */
static void s_rtt_stat(kvc_swim_t *s, uint64_t rtt_ms)
{
    static const double bounds[] = KVC_SWIM_RTT_BOUNDS;
    size_t i = 0;
    while (i < sizeof bounds / sizeof bounds[0] && (double)rtt_ms > bounds[i])
        i++;
    s->stats.rtt_buckets[i]++;
    s->stats.rtt_count++;
    s->stats.rtt_sum_ms += (double)rtt_ms;
}

static int s_on_ack(kvc_swim_t *s, const char *from, const Kvc__Swim__Ack *a, uint64_t now,
                    kvc_outbox_t *out)
{
    probe_t *p = &s->probe;
    if (p->active && a->seq == p->seq && p->target) {
        if (a->relayed || strcmp(from, p->target->id) == 0) {
            if (!a->relayed && !p->acked && !p->repinged) {
                s_coord_store(p->target, a->coord);
                s_rtt_sample(s, p->target, now - p->sent_ms);
                s_rtt_stat(s, now - p->sent_ms);
            }
            if (!p->acked)
                s->stats.acks++;
            p->acked = 1;
            if (!a->relayed) {
                p->direct_acked = 1;
                p->target->direct_lost = 0;
            }
        }
        return 0;
    }
    for (size_t i = 0; i < s->n_relays; i++) {
        relay_t *rl = &s->relays[i];
        if (rl->seq != a->seq)
            continue;
        Kvc__Swim__Message msg;
        Kvc__Swim__Ack fwd;
        kvc__swim__message__init(&msg);
        kvc__swim__ack__init(&fwd);
        fwd.seq = rl->req_seq;
        fwd.relayed = 1;
        msg.body_case = KVC__SWIM__MESSAGE__BODY_ACK;
        msg.ack = &fwd;
        char to[KVC_SWIM_ID_MAX + 1];
        kvc_strlcpy(to, rl->requester, sizeof(to));
        *rl = s->relays[--s->n_relays];
        s_coord_store(s_find(s, from), a->coord);
        return s_send(s, out, to, &msg, NULL, 0, 1);
    }
    if (s->reconnect_seq && a->seq == s->reconnect_seq && strcmp(from, s->reconnect_to) == 0) {
        /* Someone we thought gone answered: merge our views. */
        s->reconnect_seq = 0;
        return s_push_pull(s, from, out);
    }
    return 0;
}

/* Decodes, validates and dispatches one message. */
int kvc_swim_receive(kvc_swim_t *s, uint64_t now_ms, const char *from_id, const uint8_t *data,
                     size_t len, kvc_outbox_t *out)
{
    if (!s || !out || !from_id || (!data && len))
        return KVC_EINVAL;
    if (len > KVC_SWIM_WIRE_MAX) {
        s->dropped++;
        return KVC_ERANGE;
    }
    if (!kvc_swim_id_valid(from_id) || strcmp(from_id, s->self->id) == 0) {
        s->dropped++;
        return KVC_EINVAL;
    }
    Kvc__Swim__Message *msg = kvc__swim__message__unpack(&s_pb_allocator, len, data);
    if (!msg) {
        s->dropped++;
        return KVC_EPARSE;
    }
    int rc = 0;
    if (msg->version != WIRE_VERSION)
        rc = KVC_EPARSE;
    for (size_t i = 0; rc == 0 && i < msg->n_updates; i++)
        rc = s_update_valid(msg->updates[i]);
    if (rc == 0 && msg->body_case == KVC__SWIM__MESSAGE__BODY_PING && msg->ping->coord &&
        s_coord_from_wire(msg->ping->coord, &(kvc_vivaldi_coord_t){0}) != 0)
        rc = KVC_EPARSE;
    if (rc != 0 || s->left) {
        kvc__swim__message__free_unpacked(msg, &s_pb_allocator);
        if (rc)
            s->dropped++;
        return rc;
    }
    s->n_want = 0;
    for (size_t i = 0; i < msg->n_updates; i++)
        s_apply(s, msg->updates[i], from_id, now_ms, out);
    switch (msg->body_case) {
    case KVC__SWIM__MESSAGE__BODY_PING:
        rc = s_on_ping(s, from_id, msg->ping, out);
        break;
    case KVC__SWIM__MESSAGE__BODY_PING_REQ:
        rc = s_on_ping_req(s, from_id, msg->ping_req, now_ms, out);
        break;
    case KVC__SWIM__MESSAGE__BODY_ACK:
        rc = s_on_ack(s, from_id, msg->ack, now_ms, out);
        break;
    case KVC__SWIM__MESSAGE__BODY_NACK:
        if (s->probe.active && msg->nack->seq == s->probe.seq)
            s->probe.nacks++;
        break;
    case KVC__SWIM__MESSAGE__BODY_DIGEST:
        rc = s_on_digest(s, from_id, msg->digest, now_ms, out);
        break;
    case KVC__SWIM__MESSAGE__BODY_WANT:
        rc = s_on_want(s, from_id, msg->want, out);
        break;
    default:
        break;
    }
    if (s->n_want > 0) {
        /* We heard of members without their info: ask whoever told us. */
        char *ids[WANT_MAX];
        for (size_t i = 0; i < s->n_want; i++)
            ids[i] = s->want[i]->id;
        Kvc__Swim__Message m2;
        Kvc__Swim__Want w;
        kvc__swim__message__init(&m2);
        kvc__swim__want__init(&w);
        size_t i = 0;
        while (i < s->n_want) {
            size_t start = i, size = 8;
            for (; i < s->n_want && size + strlen(ids[i]) + 2 <= s->cfg.max_message_bytes; i++)
                size += strlen(ids[i]) + 2;
            w.n_ids = i - start;
            w.ids = ids + start;
            m2.body_case = KVC__SWIM__MESSAGE__BODY_WANT;
            m2.want = &w;
            s_send(s, out, from_id, &m2, NULL, 0, 0);
        }
        s->n_want = 0;
    }
    kvc__swim__message__free_unpacked(msg, &s_pb_allocator);
    if (rc == KVC_EINVAL) {
        s->dropped++;
        rc = 0; /* well-formed but not for us: ignored, not an error to the caller */
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Timers                                                                    */

/* Suspicion expiry and reaping over the (usually short) list of non-alive. */
static void s_check_down(kvc_swim_t *s, uint64_t now, kvc_outbox_t *out)
{
    for (size_t i = 0; i < s->n_down;) {
        member_t *m = s->down[i];
        if (m->state == KVC_SWIM_SUSPECT && m->susp && now >= m->susp->deadline_ms) {
            s_set_state(s, m, KVC_SWIM_DEAD, m->incarnation, s->self->id, now);
            s_event(out, KVC_MEMBER_EV_DEAD, m);
            s_enqueue(s, m, BQ_STATE, 0);
            continue; /* m stays at slot i (still down) */
        }
        if ((m->state == KVC_SWIM_DEAD || m->state == KVC_SWIM_LEFT) &&
            now >= m->last_change_ms + s->cfg.reap_ms) {
            s_member_remove(s, m, out); /* the last slot moved into i */
            continue;
        }
        i++;
    }
}

/* Relays whose target never answered: send the requester a nack. */
static void s_check_relays(kvc_swim_t *s, uint64_t now, kvc_outbox_t *out)
{
    for (size_t i = 0; i < s->n_relays;) {
        relay_t *rl = &s->relays[i];
        if (now < rl->deadline_ms) {
            i++;
            continue;
        }
        Kvc__Swim__Message msg;
        Kvc__Swim__Nack nack;
        kvc__swim__message__init(&msg);
        kvc__swim__nack__init(&nack);
        nack.seq = rl->req_seq;
        msg.body_case = KVC__SWIM__MESSAGE__BODY_NACK;
        msg.nack = &nack;
        char to[KVC_SWIM_ID_MAX + 1];
        kvc_strlcpy(to, rl->requester, sizeof(to));
        *rl = s->relays[--s->n_relays];
        s_send(s, out, to, &msg, NULL, 0, 1);
    }
}

/* Pings a random dead member, or a seed we do not see alive. */
static void s_reconnect(kvc_swim_t *s, uint64_t now, kvc_outbox_t *out)
{
    const char *target = NULL;
    size_t n_dead = 0;
    for (size_t i = 0; i < s->n_down; i++)
        n_dead += s->down[i]->state == KVC_SWIM_DEAD;
    if (n_dead > 0) {
        size_t pick = (size_t)kvc_rng_below(&s->rng, n_dead);
        for (size_t i = 0; i < s->n_down; i++)
            if (s->down[i]->state == KVC_SWIM_DEAD && pick-- == 0) {
                target = s->down[i]->id;
                break;
            }
    } else if (s->n_seeds > 0) {
        size_t start = (size_t)kvc_rng_below(&s->rng, s->n_seeds);
        for (size_t j = 0; j < s->n_seeds && !target; j++) {
            const char *id = s->seeds[(start + j) % s->n_seeds];
            member_t *m = s_find(s, id);
            if (!m || m->state > KVC_SWIM_SUSPECT)
                target = id;
        }
    }
    if (!target)
        return;
    s->reconnect_seq = ++s->seq;
    kvc_strlcpy(s->reconnect_to, target, sizeof(s->reconnect_to));
    s_send_ping(s, out, NULL, target, s->reconnect_seq);
}

/* One gossip round: queued updates to gossip_fanout random live members. */
static void s_gossip(kvc_swim_t *s, kvc_outbox_t *out)
{
    member_t *pick[64];
    size_t n = s_random_live(s, pick, s->cfg.gossip_fanout, NULL);
    for (size_t i = 0; i < n && s->n_bq > 0; i++) {
        Kvc__Swim__Message msg;
        kvc__swim__message__init(&msg);
        s_send(s, out, pick[i]->id, &msg, NULL, 0, 1);
    }
}

/* Runs every timer that is due. */
int kvc_swim_tick(kvc_swim_t *s, uint64_t now, kvc_outbox_t *out)
{
    if (!s || !out)
        return KVC_EINVAL;
    if (!s->left) {
        s_check_relays(s, now, out);
        probe_t *p = &s->probe;
        if (p->active && !p->acked && !p->indirect_sent && now >= p->timeout_ms)
            s_probe_indirect(s, now, out);
        if (p->active && now >= p->end_ms)
            s_probe_finish(s, now, out);
        if (!p->active && now >= s->next_probe_ms)
            s_probe_start(s, now, out);
        s_check_down(s, now, out);
        if (now >= s->next_pp_ms) {
            s->next_pp_ms = now + s_pp_interval(s);
            member_t *pick[1];
            if (s_random_live(s, pick, 1, NULL) == 1)
                s_push_pull(s, pick[0]->id, out);
        }
        if (now >= s->next_reconnect_ms) {
            s->next_reconnect_ms = now + s->cfg.reconnect_interval_ms;
            s_reconnect(s, now, out);
        }
    }
    if (s->n_bq > 0 && now >= s->next_gossip_ms) {
        s->next_gossip_ms = now + s->cfg.gossip_interval_ms;
        s_gossip(s, out);
    }
    return 0;
}

/* Earliest pending timer. */
uint64_t kvc_swim_next_deadline(const kvc_swim_t *s)
{
    uint64_t d = UINT64_MAX;
#define KVC_MIN(x)                                                                                 \
    do {                                                                                           \
        if ((x) < d)                                                                               \
            d = (x);                                                                               \
    } while (0)
    if (s->n_bq > 0)
        KVC_MIN(s->next_gossip_ms);
    if (s->left)
        return d;
    const probe_t *p = &s->probe;
    if (p->active) {
        if (!p->acked && !p->indirect_sent)
            KVC_MIN(p->timeout_ms);
        KVC_MIN(p->end_ms);
    } else {
        KVC_MIN(s->next_probe_ms);
    }
    for (size_t i = 0; i < s->n_relays; i++)
        KVC_MIN(s->relays[i].deadline_ms);
    for (size_t i = 0; i < s->n_down; i++) {
        const member_t *m = s->down[i];
        if (m->state == KVC_SWIM_SUSPECT && m->susp)
            KVC_MIN(m->susp->deadline_ms);
        else if (m->state == KVC_SWIM_DEAD || m->state == KVC_SWIM_LEFT)
            KVC_MIN(m->last_change_ms + s->cfg.reap_ms);
    }
    KVC_MIN(s->next_pp_ms);
    KVC_MIN(s->next_reconnect_ms);
#undef KVC_MIN
    return d;
}

/* ------------------------------------------------------------------------ */
/* Lifecycle and API                                                         */

/* Copies a bounded string or "" for NULL; NULL on OOM or too long. */
static char *s_dup_bounded(const char *p, size_t max)
{
    if (!p)
        p = "";
    if (!s_str_ok(p, max))
        return NULL;
    return kvc_strdup(p);
}

/* Creates a core knowing only itself. */
kvc_swim_t *kvc_swim_new(const kvc_swim_config_t *cfg, const kvc_member_info_t *self, uint64_t seed,
                         uint64_t now_ms)
{
    if (!cfg || !self || !self->site || !self->name || kvc_swim_config_check(cfg, NULL) != 0)
        return NULL;
    char id[KVC_SWIM_ID_MAX + 2];
    size_t ls = strlen(self->site), ln = strlen(self->name);
    if (ls + ln + 1 > KVC_SWIM_ID_MAX)
        return NULL;
    memcpy(id, self->site, ls);
    id[ls] = '/';
    memcpy(id + ls + 1, self->name, ln + 1);
    if (!kvc_swim_id_valid(id))
        return NULL;
    kvc_swim_t *s = kvc_calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cfg = *cfg;
    kvc_rng_seed(&s->rng, seed);
    s->map_cap = 64;
    s->map = kvc_calloc(s->map_cap, sizeof(*s->map));
    s->viv = kvc_vivaldi_new();
    if (!s->map || !s->viv)
        goto fail;
    member_t *me = s_member_add(s, id, 0, now_ms);
    if (!me)
        goto fail;
    s->self = me;
    info_t *in = kvc_calloc(1, sizeof(*in));
    if (!in)
        goto fail;
    me->info = in;
    in->region = s_dup_bounded(self->region, KVC_SWIM_PART_MAX);
    in->roles = s_dup_bounded(self->roles, KVC_SWIM_STR_MAX);
    in->endpoint = s_dup_bounded(self->endpoint, KVC_SWIM_STR_MAX);
    if (!in->region || !in->roles || !in->endpoint)
        goto fail;
    memcpy(in->key, self->public_key, KVC_SWIM_KEY_LEN);
    in->has_key = 1;
    in->caps = self->capabilities;
    /* Spread first timers over one period so peers started together do
     * not probe in lockstep. */
    s->next_probe_ms = now_ms + kvc_rng_below(&s->rng, cfg->probe_interval_ms);
    s->next_gossip_ms = now_ms;
    s->next_pp_ms = now_ms + cfg->push_pull_interval_ms / 2 +
                    kvc_rng_below(&s->rng, cfg->push_pull_interval_ms);
    s->next_reconnect_ms = now_ms + cfg->reconnect_interval_ms / 2 +
                           kvc_rng_below(&s->rng, cfg->reconnect_interval_ms);
    s_enqueue(s, me, BQ_STATE, 1);
    return s;
fail:
    kvc_swim_destroy(&s);
    return NULL;
}

/* Frees everything. */
void kvc_swim_destroy(kvc_swim_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_swim_t *s = *self_p;
    for (int t = 0; t < BQ_BUCKETS; t++) {
        while (s->bq_head[t]) {
            bcast_t *b = s->bq_head[t];
            s->bq_head[t] = b->next;
            kvc_free(b->data);
            kvc_free(b);
        }
    }
    for (size_t i = 0; i < s->n_all; i++)
        s_member_free(s->all[i]);
    for (size_t i = 0; i < s->n_seeds; i++)
        kvc_free(s->seeds[i]);
    kvc_free(s->seeds);
    kvc_free(s->all);
    kvc_free(s->map);
    kvc_free(s->down);
    kvc_free(s->plist);
    kvc_free(s->sorted);
    kvc_vivaldi_destroy(&s->viv);
    kvc_free(s);
    *self_p = NULL;
}

/* Remembers seeds and pushes our digest to each. */
int kvc_swim_join(kvc_swim_t *s, const char *const *seed_ids, size_t n, uint64_t now_ms,
                  kvc_outbox_t *out)
{
    if (!s || !out || (n && !seed_ids))
        return KVC_EINVAL;
    size_t sent = 0;
    for (size_t i = 0; i < n; i++) {
        const char *id = seed_ids[i];
        if (!kvc_swim_id_valid(id) || strcmp(id, s->self->id) == 0)
            continue;
        int known = 0;
        for (size_t j = 0; j < s->n_seeds; j++)
            known |= strcmp(s->seeds[j], id) == 0;
        if (!known) {
            if (s_grow((void **)&s->seeds, &s->cap_seeds, s->n_seeds + 1, sizeof(*s->seeds)) != 0)
                return KVC_ENOMEM;
            char *c = kvc_strdup(id);
            if (!c)
                return KVC_ENOMEM;
            s->seeds[s->n_seeds++] = c;
        }
        int rc = s_push_pull(s, id, out);
        if (rc)
            return rc;
        sent++;
    }
    (void)now_ms;
    return sent ? 0 : KVC_EINVAL;
}

/* Graceful leave. */
int kvc_swim_leave(kvc_swim_t *s, uint64_t now_ms, kvc_outbox_t *out)
{
    if (!s || !out)
        return KVC_EINVAL;
    if (s->left)
        return KVC_ESTATE;
    member_t *me = s->self;
    member_t *pick[128];
    size_t n = s_random_live(s, pick, 2 * s->cfg.gossip_fanout, NULL);
    s_set_state(s, me, KVC_SWIM_LEFT, me->incarnation + 1, NULL, now_ms);
    s->left = 1;
    s->probe.active = 0;
    s_enqueue(s, me, BQ_STATE, 0);
    /* Tell 2 * fanout members directly, whatever the retransmit budget. */
    uint8_t *u;
    size_t len;
    int rc = s_encode_update(me, 0, 0, &u, &len);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        Kvc__Swim__Message msg;
        kvc__swim__message__init(&msg);
        rc = s_send(s, out, pick[i]->id, &msg, u, len, 0);
    }
    kvc_free(u);
    return rc;
}

/* Sets or deletes one metadata key on ourselves. */
int kvc_swim_set_meta(kvc_swim_t *s, const char *key, const uint8_t *val, size_t len,
                      uint64_t now_ms)
{
    if (!s || !key || !key[0] || !s_str_ok(key, KVC_SWIM_META_KEY_MAX) || (len && !val))
        return KVC_EINVAL;
    member_t *me = s->self;
    if (!me->meta && !(me->meta = kvc_calloc(1, sizeof(*me->meta))))
        return KVC_ENOMEM;
    meta_t *mt = me->meta;
    size_t i = 0;
    while (i < mt->n && strcmp(mt->keys[i], key) != 0)
        i++;
    size_t old = i < mt->n ? strlen(key) + mt->lens[i] : 0;
    if (!val) {
        if (i == mt->n)
            return KVC_ENOENT;
        kvc_free(mt->keys[i]);
        kvc_free(mt->vals[i]);
        mt->bytes -= old;
        mt->n--;
        mt->keys[i] = mt->keys[mt->n];
        mt->vals[i] = mt->vals[mt->n];
        mt->lens[i] = mt->lens[mt->n];
    } else {
        if (i == mt->n && mt->n >= KVC_SWIM_META_KEYS_MAX)
            return KVC_ERANGE;
        if (mt->bytes - old + strlen(key) + len > KVC_SWIM_META_BYTES_MAX)
            return KVC_ERANGE;
        uint8_t *v = kvc_malloc(len ? len : 1);
        if (!v)
            return KVC_ENOMEM;
        if (len)
            memcpy(v, val, len);
        if (i == mt->n) {
            char *k = kvc_strdup(key);
            if (!k) {
                kvc_free(v);
                return KVC_ENOMEM;
            }
            mt->keys[mt->n++] = k;
        } else {
            kvc_free(mt->vals[i]);
        }
        mt->vals[i] = v;
        mt->lens[i] = len;
        mt->bytes = mt->bytes - old + strlen(key) + len;
    }
    me->meta_version++;
    s_enqueue(s, me, BQ_META, 0);
    (void)now_ms;
    return 0;
}

/* Member count including self. */
size_t kvc_swim_member_count(const kvc_swim_t *s)
{
    return s ? s->n_all : 0;
}

/* Fills a view of m. */
static void s_view(const kvc_swim_t *s, const member_t *m, kvc_swim_member_t *v)
{
    memset(v, 0, sizeof(*v));
    v->id = m->id;
    memcpy(v->site, m->id, m->site_len);
    v->site[m->site_len] = '\0';
    v->has_info = m->info != NULL;
    v->region = m->info ? m->info->region : "";
    v->roles = m->info ? m->info->roles : "";
    v->endpoint = m->info ? m->info->endpoint : "";
    v->public_key = m->info && m->info->has_key ? m->info->key : NULL;
    v->capabilities = m->info ? m->info->caps : 0;
    v->state = (kvc_swim_state_t)m->state;
    v->incarnation = m->incarnation;
    v->last_change_ms = m->last_change_ms;
    v->direct_lost = m->direct_lost;
    v->is_self = m == s->self;
    if (v->is_self) {
        v->has_coord = 1;
        v->coord = *kvc_vivaldi_coord(s->viv);
    } else if (m->coord) {
        v->has_coord = 1;
        v->coord = *m->coord;
    }
    v->meta_version = m->meta_version;
    v->meta_count = m->meta ? m->meta->n : 0;
}

/* Member i. */
int kvc_swim_member_at(const kvc_swim_t *s, size_t i, kvc_swim_member_t *m)
{
    if (!s || !m)
        return KVC_EINVAL;
    if (i >= s->n_all)
        return KVC_ERANGE;
    s_view(s, s->all[i], m);
    return 0;
}

/* Member by id. */
int kvc_swim_member_get(const kvc_swim_t *s, const char *id, kvc_swim_member_t *m)
{
    if (!s || !id || !m)
        return KVC_EINVAL;
    const member_t *x = s_find(s, id);
    if (!x)
        return KVC_ENOENT;
    s_view(s, x, m);
    return 0;
}

/* One metadata value. */
int kvc_swim_member_meta(const kvc_swim_t *s, const char *id, const char *key, const uint8_t **val,
                         size_t *len)
{
    if (!s || !id || !key || !val || !len)
        return KVC_EINVAL;
    const member_t *m = s_find(s, id);
    if (!m || !m->meta)
        return KVC_ENOENT;
    for (size_t i = 0; i < m->meta->n; i++)
        if (strcmp(m->meta->keys[i], key) == 0) {
            *val = m->meta->vals[i];
            *len = m->meta->lens[i];
            return 0;
        }
    return KVC_ENOENT;
}

/* Accessors. */
const char *kvc_swim_self_id(const kvc_swim_t *s)
{
    return s->self->id;
}

/* Our state (alive unless we left). */
kvc_swim_state_t kvc_swim_self_state(const kvc_swim_t *s)
{
    return (kvc_swim_state_t)s->self->state;
}

/* Our incarnation. */
uint64_t kvc_swim_self_incarnation(const kvc_swim_t *s)
{
    return s->self->incarnation;
}

/* Lifeguard local health score. */
uint32_t kvc_swim_local_health(const kvc_swim_t *s)
{
    return s->lhm;
}

/* Our Vivaldi coordinate. */
const kvc_vivaldi_coord_t *kvc_swim_coord(const kvc_swim_t *s)
{
    return kvc_vivaldi_coord(s->viv);
}

/* RTT estimate from coordinates. */
int kvc_swim_estimate_rtt_ms(const kvc_swim_t *s, const char *id, double *rtt_ms)
{
    if (!s || !id || !rtt_ms)
        return KVC_EINVAL;
    const member_t *m = s_find(s, id);
    if (!m || (!m->coord && m != s->self))
        return KVC_ENOENT;
    const kvc_vivaldi_coord_t *me = kvc_vivaldi_coord(s->viv);
    *rtt_ms = 1000.0 * kvc_vivaldi_estimate_rtt(me, m == s->self ? me : m->coord);
    return 0;
}

void kvc_swim_stats(const kvc_swim_t *s, kvc_swim_stats_t *out)
{
    *out = s->stats;
}

/* Count of dropped messages. */
uint64_t kvc_swim_dropped(const kvc_swim_t *s)
{
    return s->dropped;
}

int kvc_swim_vouch(kvc_swim_t *s, const char *id, const uint8_t key[KVC_SWIM_KEY_LEN],
                   const char *endpoint, uint64_t now_ms)
{
    if (!s || !id || !key)
        return KVC_EINVAL;
    member_t *m = s_find(s, id);
    if (!m)
        return KVC_ENOENT;
    if (m == s->self)
        return 0;
    const char *ep = endpoint && endpoint[0] ? endpoint : (m->info ? m->info->endpoint : "");
    if (m->info && m->info->has_key && memcmp(m->info->key, key, KVC_SWIM_KEY_LEN) == 0 &&
        strcmp(m->info->endpoint, ep) == 0)
        return 0;
    if (!s_str_ok(ep, KVC_SWIM_STR_MAX))
        return KVC_EINVAL;
    info_t *in = kvc_calloc(1, sizeof(*in));
    if (!in)
        return KVC_ENOMEM;
    in->region = kvc_strdup(m->info ? m->info->region : "");
    in->roles = kvc_strdup(m->info ? m->info->roles : "");
    in->endpoint = kvc_strdup(ep);
    in->caps = m->info ? m->info->caps : 0;
    memcpy(in->key, key, KVC_SWIM_KEY_LEN);
    in->has_key = 1;
    if (!in->region || !in->roles || !in->endpoint) {
        s_info_free(in);
        return KVC_ENOMEM;
    }
    s_info_free(m->info);
    m->info = in;
    m->info_inc = m->incarnation;
    s_enqueue(s, m, BQ_STATE, 1);
    (void)now_ms;
    return 1;
}

int kvc_swim_force_leave(kvc_swim_t *s, const char *id, uint64_t now_ms, kvc_outbox_t *out)
{
    if (!s || !id)
        return KVC_EINVAL;
    member_t *m = s_find(s, id);
    if (!m)
        return KVC_ENOENT;
    if (m == s->self)
        return KVC_EINVAL;
    if (m->state == KVC_SWIM_ALIVE)
        return KVC_ESTATE;
    if (m->state == KVC_SWIM_LEFT)
        return 0;
    s_set_state(s, m, KVC_SWIM_LEFT, m->incarnation, NULL, now_ms);
    s_event(out, KVC_MEMBER_EV_LEFT, m);
    s_enqueue(s, m, BQ_STATE, 0);
    return 0;
}

/* --- the core.h interface ------------------------------------------------ */

static int s_core_receive(void *core, uint64_t now_ms, const char *from, const uint8_t *msg,
                          size_t len, kvc_outbox_t *out)
{
    return kvc_swim_receive(core, now_ms, from, msg, len, out);
}

static int s_core_tick(void *core, uint64_t now_ms, kvc_outbox_t *out)
{
    return kvc_swim_tick(core, now_ms, out);
}

static uint64_t s_core_deadline(const void *core)
{
    return kvc_swim_next_deadline(core);
}

const kvc_core_ops_t kvc_swim_core_ops = {
    .name = "membership",
    .channel = KVC_SWIM_CHANNEL,
    .receive = s_core_receive,
    .tick = s_core_tick,
    .next_deadline = s_core_deadline,
    .member_event = NULL, /* membership is where member events come from */
};
