/*
 * coordinator.c - the election core's durable state and voter set in LMDB,
 * and the view the peer gossips. See coordinator.h.
 *
 * Store layout: db "election", key "durable" = term (8 bytes, little
 * endian) followed by the vote ("" for none); db "voters", one key per
 * voter id (value "1").
 */
#include "coordinator.h"

#include "log.h"

#include <string.h>

#define DB_ELECTION "election"
#define DB_VOTERS "voters"
#define KEY_DURABLE "durable"

struct kvc_coord {
    kvc_store_t *store;
    kvc_election_t *e;
    char self[KVC_MEMBER_ID_MAX + 1];
    char site[KVC_MEMBER_ID_MAX + 1];
    int self_voter;
    int held; /* no campaign until the site's voters are known */
    char voters[KVC_ELECTION_VOTERS_MAX][KVC_MEMBER_ID_MAX + 1];
    size_t n_voters;
    int have_view;
    kvc_election_view_t view; /* the last one published */
};

/* Hands the current voter set to the core (none while held). */
static int s_apply_voters(kvc_coord_t *c, uint64_t now_ms)
{
    if (c->held)
        return kvc_election_set_voters(c->e, NULL, 0, now_ms);
    const char *ids[KVC_ELECTION_VOTERS_MAX];
    for (size_t i = 0; i < c->n_voters; i++)
        ids[i] = c->voters[i];
    return kvc_election_set_voters(c->e, ids, c->n_voters, now_ms);
}

static long s_find(const kvc_coord_t *c, const char *id)
{
    for (size_t i = 0; i < c->n_voters; i++)
        if (strcmp(c->voters[i], id) == 0)
            return (long)i;
    return -1;
}

/* Adds id to the set in memory (no store). */
static int s_add(kvc_coord_t *c, const char *id)
{
    if (s_find(c, id) >= 0)
        return KVC_OK;
    if (c->n_voters >= KVC_ELECTION_VOTERS_MAX)
        return KVC_ERANGE;
    kvc_strlcpy(c->voters[c->n_voters++], id, sizeof c->voters[0]);
    return KVC_OK;
}

/* A voter id of our own site? */
static int s_ours(const kvc_coord_t *c, const char *id)
{
    return kvc_member_in_site(id, c->site);
}

typedef struct {
    kvc_coord_t *c;
    int rc;
} s_load_t;

static int s_load_voter(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_load_t *l = arg;
    char id[KVC_MEMBER_ID_MAX + 1];
    if (klen == 0 || klen >= sizeof id)
        return 0; /* not ours to read: skip */
    memcpy(id, key, klen);
    id[klen] = '\0';
    if (memchr(id, '\0', klen) || !s_ours(l->c, id))
        return 0;
    if ((l->rc = s_add(l->c, id)) != 0)
        return 1;
    return 0;
}

kvc_coord_t *kvc_coord_new(kvc_store_t *store, const kvc_election_config_t *cfg,
                           const char *self_id, int self_voter, uint64_t seed, uint64_t now_ms,
                           kvc_err_t *err)
{
    if (!store || !cfg || !self_id || strlen(self_id) > KVC_MEMBER_ID_MAX ||
        !strchr(self_id, '/')) {
        kvc_err_set(err, KVC_EINVAL, "election: bad arguments");
        return NULL;
    }
    kvc_coord_t *c = kvc_calloc(1, sizeof *c);
    if (!c) {
        kvc_err_set(err, KVC_ENOMEM, "election: out of memory");
        return NULL;
    }
    c->store = store;
    c->self_voter = self_voter;
    kvc_strlcpy(c->self, self_id, sizeof c->self);
    kvc_strlcpy(c->site, self_id, sizeof c->site);
    *strchr(c->site, '/') = '\0';

    uint8_t rec[8 + KVC_MEMBER_ID_MAX + 1];
    size_t len = 0;
    uint64_t term = 0;
    char vote[KVC_MEMBER_ID_MAX + 1] = "";
    int rc = kvc_store_get(store, DB_ELECTION, KEY_DURABLE, strlen(KEY_DURABLE), rec, sizeof rec,
                           &len);
    if (rc == 0) {
        if (len < 8 || len - 8 > KVC_MEMBER_ID_MAX || memchr(rec + 8, '\0', len - 8)) {
            kvc_err_set(err, KVC_EPARSE, "election: the stored term and vote are damaged");
            goto fail;
        }
        for (int i = 7; i >= 0; i--)
            term = term << 8 | rec[i];
        memcpy(vote, rec + 8, len - 8);
        vote[len - 8] = '\0';
    } else if (rc != KVC_ENOENT) {
        kvc_err_set(err, rc, "election: cannot read the stored term and vote: %s",
                    kvc_strerror(rc));
        goto fail;
    }
    c->e = kvc_election_new(cfg, self_id, term, vote, seed, now_ms);
    if (!c->e) {
        kvc_err_set(err, KVC_EINVAL, "election: the stored vote '%s' is not a member id", vote);
        goto fail;
    }
    s_load_t l = {c, 0};
    rc = kvc_store_foreach(store, DB_VOTERS, s_load_voter, &l);
    if (rc == 0)
        rc = l.rc;
    if (rc == 0 && self_voter)
        rc = s_add(c, self_id);
    if (rc == 0)
        rc = s_apply_voters(c, now_ms);
    if (rc) {
        kvc_err_set(err, rc, "election: cannot restore the voter set: %s", kvc_strerror(rc));
        goto fail;
    }
    if (term)
        kvc_info("election: restored term %llu%s%s, %zu voter(s) known",
                 (unsigned long long)term, vote[0] ? ", voted for " : "", vote, c->n_voters);
    return c;
fail:
    kvc_coord_destroy(&c);
    return NULL;
}

void kvc_coord_destroy(kvc_coord_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_election_destroy(&(*self_p)->e);
    kvc_free(*self_p);
    *self_p = NULL;
}

int kvc_coord_hold(kvc_coord_t *c, uint64_t now_ms)
{
    if (!c || c->n_voters > (size_t)c->self_voter)
        return 0; /* it knows other voters: it cannot win alone */
    c->held = 1;
    s_apply_voters(c, now_ms);
    return 1;
}

int kvc_coord_held(const kvc_coord_t *c)
{
    return c && c->held;
}

void kvc_coord_release(kvc_coord_t *c, uint64_t now_ms)
{
    if (!c || !c->held)
        return;
    c->held = 0;
    kvc_info("election: %zu voter(s) of site %s known; elections may start", c->n_voters,
             c->site);
    s_apply_voters(c, now_ms);
}

kvc_election_t *kvc_coord_election(kvc_coord_t *c)
{
    return c ? c->e : NULL;
}

size_t kvc_coord_voters(const kvc_coord_t *c)
{
    return c ? c->n_voters : 0;
}

int kvc_coord_credential(kvc_coord_t *c, const char *id, int voter, uint64_t now_ms)
{
    if (!c || !id || strlen(id) > KVC_MEMBER_ID_MAX)
        return KVC_EINVAL;
    if (!s_ours(c, id) || strcmp(id, c->self) == 0)
        return KVC_OK; /* other sites elect their own; our own role is fixed at start */
    long i = s_find(c, id);
    if (voter && i < 0) {
        if (c->n_voters >= KVC_ELECTION_VOTERS_MAX)
            return KVC_ERANGE;
        if (kvc_store_put(c->store, DB_VOTERS, id, strlen(id), "1", 1) != 0)
            return KVC_EIO;
        s_add(c, id);
        kvc_info("election: %s is a voter of site %s (%zu voters)", id, c->site, c->n_voters);
        return s_apply_voters(c, now_ms);
    }
    if (!voter && i >= 0) {
        int rc = kvc_store_del(c->store, DB_VOTERS, id, strlen(id));
        if (rc != 0 && rc != KVC_ENOENT)
            return KVC_EIO;
        memcpy(c->voters[i], c->voters[--c->n_voters], sizeof c->voters[0]);
        kvc_info("election: %s is no longer a voter (%zu voters)", id, c->n_voters);
        return s_apply_voters(c, now_ms);
    }
    return KVC_OK;
}

int kvc_coord_persist(kvc_coord_t *c)
{
    if (!c || !kvc_election_needs_persist(c->e))
        return KVC_OK;
    uint64_t term;
    char vote[KVC_MEMBER_ID_MAX + 1];
    kvc_election_durable(c->e, &term, vote);
    uint8_t rec[8 + KVC_MEMBER_ID_MAX + 1];
    for (int i = 0; i < 8; i++)
        rec[i] = (uint8_t)(term >> (8 * i));
    size_t n = strlen(vote);
    memcpy(rec + 8, vote, n);
    if (kvc_store_put(c->store, DB_ELECTION, KEY_DURABLE, strlen(KEY_DURABLE), rec, 8 + n) != 0) {
        kvc_error("election: cannot store term %llu; its messages are dropped",
                  (unsigned long long)term);
        return KVC_EIO;
    }
    kvc_election_persisted(c->e);
    return KVC_OK;
}

int kvc_coord_view_changed(kvc_coord_t *c, uint8_t *buf, size_t cap, size_t *len)
{
    if (!c || !buf || !len)
        return KVC_EINVAL;
    kvc_election_view_t v;
    kvc_election_view(c->e, &v);
    if (c->have_view && v.term == c->view.term && v.state == c->view.state &&
        v.voter == c->view.voter && strcmp(v.leader, c->view.leader) == 0)
        return 0;
    int rc = kvc_election_view_encode(&v, buf, cap, len);
    if (rc)
        return rc;
    int was_leader = c->have_view && c->view.state == KVC_ELECTION_LEADER;
    if (v.state == KVC_ELECTION_LEADER && !was_leader)
        kvc_info("election: this peer is the coordinator of site %s (term %llu, %zu voters)",
                 c->site, (unsigned long long)v.term, c->n_voters);
    else if (was_leader && v.state != KVC_ELECTION_LEADER)
        kvc_info("election: this peer stepped down as coordinator of site %s (term %llu)",
                 c->site, (unsigned long long)v.term);
    else if (v.leader[0] && strcmp(v.leader, c->view.leader) != 0 && strcmp(v.leader, c->self))
        kvc_info("election: the coordinator of site %s is %s (term %llu)", c->site, v.leader,
                 (unsigned long long)v.term);
    c->view = v;
    c->have_view = 1;
    return 1;
}

/* --- the core.h interface ------------------------------------------------ */

static int s_receive(void *core, uint64_t now_ms, const char *from, const uint8_t *msg,
                     size_t len, kvc_outbox_t *out)
{
    return kvc_election_receive(((kvc_coord_t *)core)->e, now_ms, from, msg, len, out);
}

static int s_tick(void *core, uint64_t now_ms, kvc_outbox_t *out)
{
    return kvc_election_tick(((kvc_coord_t *)core)->e, now_ms, out);
}

static uint64_t s_deadline(const void *core)
{
    return kvc_election_next_deadline(((const kvc_coord_t *)core)->e);
}

static void s_event(void *core, uint64_t now_ms, const kvc_member_event_t *ev, kvc_outbox_t *out)
{
    kvc_coord_t *c = core;
    if (ev->type == KVC_MEMBER_EV_LEFT && s_find(c, ev->id) >= 0 && strcmp(ev->id, c->self) != 0)
        (void)kvc_coord_credential(c, ev->id, 0, now_ms);
    kvc_election_member_event(c->e, now_ms, ev, out);
}

const kvc_core_ops_t kvc_coord_core_ops = {
    .name = "election",
    .channel = KVC_ELECTION_CHANNEL,
    .receive = s_receive,
    .tick = s_tick,
    .next_deadline = s_deadline,
    .member_event = s_event,
};
