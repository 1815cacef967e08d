/*
 * daemon.c - the kvc-peer event loop and its authenticated transport.
 *
 * Sockets: a ROUTER (CURVE server) receives everything other peers send us;
 * one DEALER (CURVE client) per known peer carries what we send them; an
 * inproc ZAP handler admits CURVE clients, records their public key as the
 * connection's User-Id and refuses revoked keys; a ROUTER on the control
 * endpoint answers the local `kvc` CLI.
 *
 * Trust: a message is accepted only if the User-Id key of its connection has
 * presented, in a Hello, a credential signed by the federation key for the
 * member id the message claims. Everything else is dropped and counted by
 * reason. This file must never log a secret nor let a malformed message do
 * more than bump a counter.
 */
#include "pb_alloc.h"
#include "daemon.h"

#include "backend_scrape.h"
#include "broker.h"
#include "clock.h"
#include "control.h"
#include "coordinator.h"
#include "core.h"
#include "credential.h"
#include "ctl_table.h"
#include "http_server.h"
#include "link_rules.h"
#include "log.h"
#include "metrics_summary.h"
#include "zap.h"
#include "nodes_ctl.h"
#include "peer_metrics.h"
#include "proxy.h"
#include "jobs_ctl.h"
#include "models_ctl.h"
#include "repmap.h"
#include "site_models.h"
#include "site_routing.h"
#include "store.h"
#include "swim.h"
#include "wire.h"
#include "control.pb-c.h"

#include <czmq.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#ifndef KVC_VERSION
#error "KVC_VERSION comes from CMake (project VERSION)"
#endif
#define MAX_LINKS 4096
#define SEND_HWM 1000
#define LEAVE_DRAIN_MS 300
#define METRICS_PUBLISH_MS 1000 /* /metrics snapshot of the membership core */
#define MAX_SLEEP_MS 60000      /* the loop wakes at least this often */
#define EVENTS_KEPT 256         /* member events held for `kvc monitor` */
#define ELECTION_HOLD_MAX_MS 30000 /* a new peer waits this long at most for its site's voters */

/* One peer we have (or had) a link with, keyed by its CURVE public key. */
typedef struct {
    uint8_t key[32];
    char key_hex[65];
    char endpoint[KVC_ENDPOINT_MAX];
    zsock_t *dealer;          /* our sending side, NULL until we know where */
    kvc_link_clock_t t;       /* handshaked, verified, acked; monotonic times */
    int is_seed;
    kvc_cred_t cred;          /* their credential (valid when verified) */
    char member_id[2 * KVC_NAME_MAX];
    char region[KVC_NAME_MAX];
    uint64_t started_ms;      /* their start time from their Hello */
    uint64_t ping_nonce;
    uint64_t ping_sent_us;
    uint64_t rtt_us;
} kvc_link_t;

struct kvc_daemon {
    kvc_config_t cfg;
    kvc_identity_t id;
    Kvc__Fed__Credential *own_cred;  /* id's credential, unpacked once for Hellos */
    uint8_t trust[32];
    char self_id[2 * KVC_NAME_MAX];
    char self_hex[65];
    char advertise[KVC_ENDPOINT_MAX];
    char listen[KVC_ENDPOINT_MAX];
    char seed[80 + KVC_ENDPOINT_MAX]; /* "KEY@ADVERTISE" for other peers' seeds */
    kvc_store_t *store;
    zsock_t *router;
    zsock_t *zap;
    zsock_t *control;
    char control_path[KVC_PATH_MAX]; /* ipc socket file, to remove at exit */
    zhashx_t *links;                 /* key_hex -> kvc_link_t* */
    zhashx_t *by_member;             /* member id -> verified kvc_link_t* (borrowed) */
    kvc_swim_t *swim;                /* the membership core */
    kvc_coord_t *coord;              /* the site coordinator election */
    kvc_broker_t *broker;            /* the join-token broker */
    kvc_repmap_t *sitemap;           /* node records, codes, audit: replicated to the site */
    kvc_kv_t site_kv;                /* ... as a kv */
    kvc_repmap_t *registry;          /* the model registry: replicated to every member */
    kvc_kv_t registry_kv;            /* ... as a kv */
    char region_buf[KVC_NAME_MAX];   /* s_region_of's answer */
    uint64_t registry_gen;           /* the registry's generation last seen */
    kvc_site_models_t *site_models;  /* what this site serves; its reconciliation */
    kvc_job_runner_t *jobs;          /* node setup and cluster creation (the coordinator's) */
    kvc_site_routing_t *routing;     /* health gossip, routes, request forwarding */
    kvc_core_set_t cores;            /* channel -> core; every core's timers */
    kvc_outbox_t out;                /* what the cores said, flushed after every call */
    kvc_proxy_t *proxy;              /* inference proxy (HTTP loop and threads) */
    kvc_peer_metrics_t *metrics;     /* /metrics, /federate, summaries */
    uint64_t summary_built_ms;       /* our summary, rebuilt every interval */
    uint64_t summary_sent_ms;        /* ... and gossiped on news or heartbeat */
    uint64_t metrics_next_ms;        /* the metrics core's deadline */
    uint64_t links_next_ms;          /* hello retries and pings */
    uint64_t hold_until_ms;          /* a held election starts by then anyway */
    int stop;                        /* set by the "leave" command */
    struct {
        uint64_t seq, at_ms;
        kvc_member_event_t ev;
    } events[EVENTS_KEPT];           /* ring of the last member events */
    uint64_t events_seq;
    uint64_t unknown_kinds;          /* messages of a body kind no core takes */
#ifdef KVC_NEXT_KIND
    struct next_core *next;          /* the test build's extra protocol */
#endif
    kvc_backend_scrape_t *scrape;    /* model servers' metrics; NULL: none */
    kvc_http_server_t *http;         /* http.listen, "" = none */
    char http_endpoint[KVC_ENDPOINT_MAX + 8]; /* host:port actually bound */
    uint64_t started_ms;             /* wall clock at start: identifies this run */
    uint64_t started_mono_ms;
    uint64_t boot_count;
    uint64_t seq;
    uint64_t rejects[KVC_REJECT__COUNT];
    uint64_t msgs_in, msgs_out, send_dropped;
};

static void s_serve_models(void *arg, const kvc_model_t *models, size_t n);

/* Protocol time: monotonic milliseconds. */
static uint64_t s_now_ms(void)
{
    return kvc_clock_mono_ms();
}

/* Counts a rejected message; logs at debug only, reasons are in status. */
static void s_reject(kvc_daemon_t *self, kvc_reject_t why, const char *key_hex)
{
    self->rejects[why]++;
    if (self->metrics)
        kvc_peer_metrics_reject(self->metrics, kvc_reject_name(why));
    kvc_debug("dropped message from key %.16s: %s", key_hex ? key_hex : "?",
              kvc_reject_name(why));
}

/* Is key on the configured revocation list? */
static int s_revoked(const kvc_daemon_t *self, const uint8_t key[32])
{
    for (size_t i = 0; i < self->cfg.n_revoked; i++)
        if (sodium_memcmp(self->cfg.revoked[i], key, 32) == 0)
            return 1;
    return 0;
}

/* --- sending ----------------------------------------------------------- */

/* Encodes env and sends it on link's DEALER without blocking. The DEALER
 * is ZMQ_IMMEDIATE: a refusal means no handshaked connection (or a full
 * queue), and the link goes back to trying its Hello (link_rules.h). */
static int s_send(kvc_daemon_t *self, kvc_link_t *link, Kvc__Fed__Envelope *env)
{
    /* Only a Hello goes out before the link is handshaked: the peer must
     * see our credential before anything else. */
    if (!link->dealer || (env->body_case != KVC__FED__ENVELOPE__BODY_HELLO && !link->t.handshaked)) {
        self->send_dropped++;
        return KVC_ESTATE;
    }
    env->sender = self->self_id;
    env->seq = ++self->seq;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = kvc_wire_encode(env, &buf, &len);
    if (rc)
        return rc;
    void *raw = zsock_resolve(link->dealer);
    if (zmq_send(raw, buf, len, ZMQ_DONTWAIT) < 0) {
        if (link->t.handshaked) /* else a Hello try (link_rules.h), not a loss */
            self->send_dropped++;
        kvc_link_refused(&link->t, s_now_ms());
        rc = KVC_EAGAIN;
    } else {
        self->msgs_out++;
    }
    kvc_free(buf);
    return rc;
}

/* Sends our Hello (credential, advertised endpoint, start time). */
static int s_send_hello(kvc_daemon_t *self, kvc_link_t *link)
{
    Kvc__Fed__Hello hello = KVC__FED__HELLO__INIT;
    hello.credential = self->own_cred;
    hello.advertise = self->advertise;
    hello.started_ms = self->started_ms;
    hello.region = self->cfg.region;
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.body_case = KVC__FED__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    int rc = s_send(self, link, &env);
    link->t.hello_sent_ms = s_now_ms();
    return rc;
}

/* Acknowledges the Hello a link sent. */
static void s_send_hello_ack(kvc_daemon_t *self, kvc_link_t *link)
{
    Kvc__Fed__HelloAck ack = KVC__FED__HELLO_ACK__INIT;
    ack.started_ms = link->started_ms;
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.body_case = KVC__FED__ENVELOPE__BODY_HELLO_ACK;
    env.hello_ack = &ack;
    s_send(self, link, &env);
}

/* Sends a Ping carrying a fresh nonce; the Pong gives the round trip. */
static void s_send_ping(kvc_daemon_t *self, kvc_link_t *link)
{
    Kvc__Fed__Ping ping = KVC__FED__PING__INIT;
    link->ping_nonce = randombytes_random() | ((uint64_t)randombytes_random() << 32);
    ping.nonce = link->ping_nonce;
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.body_case = KVC__FED__ENVELOPE__BODY_PING;
    env.ping = &ping;
    link->t.ping_sent_ms = s_now_ms();
    link->ping_sent_us = kvc_clock_mono_us();
    s_send(self, link, &env);
}

/* Tries our Hello on a link not known to be handshaked: taken means the
 * handshake has completed (the DEALER is ZMQ_IMMEDIATE), and a verified
 * peer gets our ack again too; refused, the next try waits longer. */
static void s_try_hello(kvc_daemon_t *self, kvc_link_t *link)
{
    if (s_send_hello(self, link) != 0)
        return; /* s_send backed the tries off */
    kvc_link_handshaked(&link->t);
    if (link->t.verified)
        s_send_hello_ack(self, link);
}

/* --- links --------------------------------------------------------------- */


/* Frees a link and its sockets (zhashx destructor). */
static void s_link_destroy(void **item)
{
    kvc_link_t *link = *item;
    if (!link)
        return;
    zsock_destroy(&link->dealer);
    sodium_memzero(&link->cred, sizeof link->cred);
    kvc_free(link);
    *item = NULL;
}

/* Opens the CURVE DEALER from link to endpoint; our Hello is tried until
 * the handshake lets it through. */
static int s_link_connect(kvc_daemon_t *self, kvc_link_t *link, const char *endpoint)
{
    if (kvc_strlcpy(link->endpoint, endpoint, sizeof link->endpoint))
        return KVC_ERANGE;
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    if (!dealer)
        return KVC_EIO;
    zsock_set_linger(dealer, 0);
    zsock_set_sndhwm(dealer, SEND_HWM);
    zsock_set_rcvhwm(dealer, SEND_HWM);
    zsock_set_immediate(dealer, 1);
    zsock_set_reconnect_ivl(dealer, 200);
    zsock_set_reconnect_ivl_max(dealer, 5000);
    zsock_set_curve_serverkey_bin(dealer, link->key);
    zsock_set_curve_publickey_bin(dealer, self->id.cred.curve_public);
    zsock_set_curve_secretkey_bin(dealer, self->id.curve_secret);
    if (zsock_connect(dealer, "%s", endpoint) != 0) {
        zsock_destroy(&dealer);
        return KVC_EINVAL;
    }
    link->dealer = dealer;
    kvc_link_connecting(&link->t, s_now_ms());
    if (self->links_next_ms > link->t.try_at_ms)
        self->links_next_ms = link->t.try_at_ms;
    return KVC_OK;
}

/* Closes link's DEALER (e.g. before moving to a new endpoint). */
static void s_link_disconnect(kvc_link_t *link)
{
    zsock_destroy(&link->dealer);
    kvc_link_closed(&link->t);
}

/* Finds the link of a key, or NULL. */
static kvc_link_t *s_link_find(kvc_daemon_t *self, const char *key_hex)
{
    return zhashx_lookup(self->links, key_hex);
}

/* Creates a link for key (not yet connected). */
static kvc_link_t *s_link_add(kvc_daemon_t *self, const uint8_t key[32])
{
    if (zhashx_size(self->links) >= MAX_LINKS)
        return NULL;
    kvc_link_t *link = kvc_calloc(1, sizeof *link);
    if (!link)
        return NULL;
    memcpy(link->key, key, 32);
    kvc_key_hex(key, link->key_hex);
    zhashx_insert(self->links, link->key_hex, link);
    return link;
}

/* Is this link currently usable (link_rules.h)? */
static int s_link_up(const kvc_link_t *link, uint64_t now)
{
    return kvc_link_is_up(&link->t, now);
}

/* --- membership -------------------------------------------------------- */

/* Sends one core message (channel = envelope body kind) on link. */
static void s_send_core(kvc_daemon_t *self, kvc_link_t *link, uint32_t channel,
                        const uint8_t *data, size_t len)
{
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    kvc_wire_spare_t spare = {0};
    if (kvc_wire_set_body(&env, channel, data, len, &spare) != 0) {
        self->send_dropped++;
        return;
    }
    if (s_send(self, link, &env) == 0 && channel == KVC_SWIM_CHANNEL)
        kvc_peer_metrics_gossip(self->metrics, 1, len);
    kvc_wire_spare_free(&spare);
}

/* Finds or opens the link to a member the core wants to talk to. A member
 * learned by gossip is dialled at its advertised endpoint with its gossiped
 * key; its Hello must still prove the key holds that member's credential. */
/* A verified link whose connection is down while membership has another
 * endpoint for its member (it restarted on a new port, and neither side's
 * Hello reached the other): try that endpoint. The CURVE server key is the
 * member's, so a wrong endpoint can only fail, never impersonate. */
static void s_link_follow_gossip(kvc_daemon_t *self, kvc_link_t *link, const char *id)
{
    kvc_swim_member_t m;
    if (link->t.handshaked || kvc_swim_member_get(self->swim, id, &m) != 0 || !m.has_info ||
        !m.public_key || sodium_memcmp(m.public_key, link->key, 32) != 0 ||
        strcmp(m.endpoint, link->endpoint) == 0 ||
        (strncmp(m.endpoint, "tcp://", 6) != 0 && strncmp(m.endpoint, "ipc://", 6) != 0))
        return;
    char endpoint[KVC_ENDPOINT_MAX];
    kvc_strlcpy(endpoint, m.endpoint, sizeof endpoint);
    kvc_info("peer %s: not reachable at %s; trying %s from membership", id,
             link->endpoint[0] ? link->endpoint : "-", endpoint);
    s_link_disconnect(link);
    if (s_link_connect(self, link, endpoint) != 0)
        kvc_warn("cannot connect to %s at %s", id, endpoint);
}

static kvc_link_t *s_link_for_member(kvc_daemon_t *self, const char *id)
{
    kvc_link_t *link = zhashx_lookup(self->by_member, id);
    if (link) {
        s_link_follow_gossip(self, link, id);
        return link; /* verified as id */
    }
    kvc_swim_member_t m;
    if (kvc_swim_member_get(self->swim, id, &m) != 0 || !m.has_info || !m.public_key ||
        m.is_self || (strncmp(m.endpoint, "tcp://", 6) != 0 && strncmp(m.endpoint, "ipc://", 6) != 0))
        return NULL;
    if (s_revoked(self, m.public_key))
        return NULL;
    char hex[65];
    kvc_key_hex(m.public_key, hex);
    link = s_link_find(self, hex);
    if (!link) {
        link = s_link_add(self, m.public_key);
        if (link && s_link_connect(self, link, m.endpoint) != 0)
            link = NULL;
    }
    /* Not yet verified: the send is dropped until it is. Verified as
     * someone else: the gossiped key was not id's; never send id's
     * messages there. */
    if (link && link->t.verified && strcmp(link->member_id, id) != 0)
        return NULL;
    return link;
}

/* Logs the core's events. */
static void s_log_event(const kvc_member_event_t *ev)
{
    switch (ev->type) {
    case KVC_MEMBER_EV_JOINED: kvc_info("member %s joined", ev->id); break;
    case KVC_MEMBER_EV_ALIVE:
        kvc_info("member %s is alive (incarnation %llu)", ev->id,
                 (unsigned long long)ev->incarnation);
        break;
    case KVC_MEMBER_EV_SUSPECT: kvc_info("member %s is suspect", ev->id); break;
    case KVC_MEMBER_EV_DEAD: kvc_warn("member %s is dead", ev->id); break;
    case KVC_MEMBER_EV_LEFT: kvc_info("member %s left", ev->id); break;
    case KVC_MEMBER_EV_REAPED: kvc_info("member %s forgotten", ev->id); break;
    default: break;
    }
}

/* Stores the metrics summary member id gossips, if it has one. */
static void s_summary_heard(kvc_daemon_t *self, const char *id)
{
    const uint8_t *val;
    size_t len;
    kvc_swim_member_t m;
    if (strcmp(id, self->self_id) == 0 ||
        kvc_swim_member_meta(self->swim, id, KVC_SUMMARY_META_KEY, &val, &len) != 0 ||
        kvc_swim_member_get(self->swim, id, &m) != 0)
        return;
    if (kvc_peer_metrics_heard(self->metrics, id, m.site, m.region, val, len, s_now_ms()) != 0)
        kvc_debug("ignored a malformed metrics summary from %s", id);
}

/* Keeps a member event for `kvc monitor`. */
static void s_keep_event(kvc_daemon_t *self, const kvc_member_event_t *ev)
{
    size_t i = (size_t)(self->events_seq % EVENTS_KEPT);
    self->events[i].seq = ++self->events_seq;
    self->events[i].at_ms = s_now_ms();
    self->events[i].ev = *ev;
}

/* Gossips our view of the election when it changed (term, state, leader). */
static void s_publish_election(kvc_daemon_t *self)
{
    uint8_t view[KVC_ELECTION_VIEW_MAX];
    size_t len = 0;
    if (kvc_coord_view_changed(self->coord, view, sizeof view, &len) == 1 &&
        kvc_swim_set_meta(self->swim, KVC_ELECTION_VIEW_META_KEY, view, len, s_now_ms()) != 0)
        kvc_warn("election: cannot publish our view in membership metadata");
}

/* Hands the cores' member events to every core, sends every message they
 * wrote, and logs and keeps the events. Called after every core call. */
static void s_flush(kvc_daemon_t *self)
{
    kvc_outbox_t *out = &self->out;
    kvc_core_set_deliver(&self->cores, s_now_ms(), out);
    /* the term and vote are on disk before any message that depends on them */
    int election_ok = kvc_coord_persist(self->coord) == 0;
    for (size_t i = 0; i < out->n_msgs; i++) {
        if (!election_ok && out->msgs[i].channel == KVC_ELECTION_CHANNEL) {
            self->send_dropped++;
            continue;
        }
        kvc_link_t *link = s_link_for_member(self, out->msgs[i].to);
        if (link && link->t.verified)
            s_send_core(self, link, out->msgs[i].channel, kvc_outbox_data(out, i),
                        out->msgs[i].len);
        else
            self->send_dropped++;
    }
    for (size_t i = 0; i < out->n_events; i++) {
        s_log_event(&out->events[i]);
        s_keep_event(self, &out->events[i]);
        kvc_member_event_type_t t = out->events[i].type;
        if (t == KVC_MEMBER_EV_JOINED || t == KVC_MEMBER_EV_LEFT || t == KVC_MEMBER_EV_REAPED)
            kvc_site_models_changed(self->site_models); /* the sites a model is served at */
    }
    if (out->refused)
        self->send_dropped += out->refused;
    out->refused = 0;
    kvc_outbox_reset(out);
    kvc_core_set_flushed(&self->cores);
    s_publish_election(self);
    kvc_broker_election_changed(self->broker, s_now_ms());
    uint64_t gen = kvc_repmap_generation(self->registry);
    if (gen != self->registry_gen) {
        self->registry_gen = gen;
        kvc_site_models_changed(self->site_models);
    }
}

/* Runs every core whose deadline has come. */
static void s_cores_tick(kvc_daemon_t *self, uint64_t now)
{
    if (kvc_core_set_next_deadline(&self->cores) > now)
        return;
    kvc_core_set_tick(&self->cores, now, &self->out);
    s_flush(self);
}

/* --- receiving --------------------------------------------------------- */

/* Does a verified credential hold role? */
static int s_has_role(const kvc_cred_t *cred, const char *role)
{
    for (size_t i = 0; i < cred->n_roles; i++)
        if (strcmp(cred->roles[i], role) == 0)
            return 1;
    return 0;
}

/* Maps a credential verification error to a reject reason. */
static kvc_reject_t s_cred_reject(int rc)
{
    switch (rc) {
    case KVC_EFOREIGN: return KVC_REJECT_FOREIGN;
    case KVC_EEXPIRED: return KVC_REJECT_EXPIRED;
    default: return KVC_REJECT_BAD_CREDENTIAL;
    }
}

/* Handles a Hello: verify the credential and bind it to the connection key. */
static void s_on_hello(kvc_daemon_t *self, const uint8_t key[32], const char *key_hex,
                       Kvc__Fed__Envelope *env)
{
    Kvc__Fed__Hello *hello = env->hello;
    uint8_t blob[KVC_CRED_BLOB_MAX];
    Kvc__Fed__Credential c = KVC__FED__CREDENTIAL__INIT;
    c.body = hello->credential->body;
    c.signature = hello->credential->signature;
    size_t blen = kvc__fed__credential__get_packed_size(&c);
    if (blen > sizeof blob) {
        s_reject(self, KVC_REJECT_BAD_CREDENTIAL, key_hex);
        return;
    }
    kvc__fed__credential__pack(&c, blob);
    kvc_cred_t cred;
    kvc_err_t err;
    int rc = kvc_cred_verify(blob, blen, self->trust, kvc_clock_wall_s(), &cred, &err);
    if (rc) {
        s_reject(self, s_cred_reject(rc), key_hex);
        return;
    }
    if (sodium_memcmp(cred.curve_public, key, 32) != 0) {
        s_reject(self, KVC_REJECT_KEY_MISMATCH, key_hex);
        return;
    }
    char member[2 * KVC_NAME_MAX];
    snprintf(member, sizeof member, "%s/%s", cred.site, cred.name);
    if (strcmp(member, env->sender) != 0) {
        s_reject(self, KVC_REJECT_SENDER_MISMATCH, key_hex);
        return;
    }
    if (sodium_memcmp(key, self->id.cred.curve_public, 32) == 0)
        return; /* our own Hello through a seed that points at us */
    kvc_link_t *link = s_link_find(self, key_hex);
    if (!link && !(link = s_link_add(self, key))) {
        kvc_warn("link table full; ignoring hello from %s", member);
        return;
    }
    uint64_t now = s_now_ms();
    int was_verified = link->t.verified;
    uint64_t old_start = link->started_ms;
    link->cred = cred;
    link->t.verified = 1;
    link->started_ms = hello->started_ms;
    link->t.last_seen_ms = now;
    kvc_strlcpy(link->member_id, member, sizeof link->member_id);
    kvc_strlcpy(link->region, hello->region, sizeof link->region);
    zhashx_update(self->by_member, member, link);
    if (kvc_coord_credential(self->coord, member, s_has_role(&cred, KVC_COORD_VOTER_ROLE), now) != 0)
        kvc_warn("election: cannot record %s in the voter set", member);
    if (!was_verified)
        kvc_info("peer %s linked (key %.16s…, %s)", member, key_hex, hello->advertise);
    else if (old_start != hello->started_ms)
        kvc_info("peer %s restarted; welcome back", member);
    if (hello->advertise[0] && (!link->dealer || strcmp(link->endpoint, hello->advertise))) {
        if (strncmp(hello->advertise, "tcp://", 6) != 0 &&
            strncmp(hello->advertise, "ipc://", 6) != 0) {
            kvc_warn("peer %s advertises an unusable endpoint", member);
        } else {
            if (link->dealer)
                kvc_info("peer %s moved to %s", member, hello->advertise);
            s_link_disconnect(link);
            if (s_link_connect(self, link, hello->advertise) != 0)
                kvc_warn("cannot connect to %s at %s", member, hello->advertise);
            else if (kvc_store_put(self->store, "peers", key, 32, hello->advertise,
                                   strlen(hello->advertise)) != 0)
                kvc_warn("cannot remember %s in the store", member);
        }
    }
    if (link->t.handshaked) {
        s_send_hello_ack(self, link);
        if (!link->t.acked || old_start != hello->started_ms)
            s_send_hello(self, link);
    } else if (link->dealer) {
        s_try_hello(self, link); /* they reached us: our way may work too */
    }
    /* The credential proves this key is member's: correct what gossip told us. */
    if (kvc_swim_vouch(self->swim, member, key, link->endpoint, now) == 1)
        kvc_info("peer %s: membership info corrected from its credential", member);
    /* A member we do not see alive (new, dead, or restarted) gets our digest. */
    kvc_swim_member_t m;
    if (kvc_swim_member_get(self->swim, member, &m) != 0 || m.state != KVC_SWIM_ALIVE ||
        old_start != hello->started_ms) {
        const char *ids[] = {member};
        kvc_swim_join(self->swim, ids, 1, now, &self->out);
        s_flush(self);
    }
}

/* Handles one message from the federation ROUTER. */
static int s_on_router(kvc_daemon_t *self, zsock_t *reader)
{
    zmsg_t *msg = zmsg_recv(reader);
    if (!msg)
        return 0;
    if (zmsg_size(msg) != 2) {
        s_reject(self, KVC_REJECT_MALFORMED, NULL);
        zmsg_destroy(&msg);
        return 0;
    }
    zframe_t *routing = zmsg_first(msg);
    zframe_t *body = zmsg_next(msg);
    const char *user = zframe_meta(body, "User-Id");
    uint8_t key[32];
    if (!user || strlen(user) != 64 || kvc_config_parse_key(user, key) != 0) {
        s_reject(self, KVC_REJECT_NO_KEY, NULL);
        zmsg_destroy(&msg);
        return 0;
    }
    char key_hex[65];
    kvc_key_hex(key, key_hex);
    Kvc__Fed__Envelope *env = NULL;
    kvc_reject_t why;
    int drc = kvc_wire_decode(zframe_data(body), zframe_size(body), &env, &why);
    if (drc != 0) {
        if (drc == KVC_ENOMEM)
            kvc_warn("out of memory decoding a message from %.16s…; dropped", key_hex);
        else
            s_reject(self, why, key_hex);
        zmsg_destroy(&msg);
        return 0;
    }
    self->msgs_in++;
    if (env->body_case == KVC__FED__ENVELOPE__BODY_HELLO) {
        s_on_hello(self, key, key_hex, env);
        goto done;
    }
    if (env->body_case == KVC__FED__ENVELOPE__BODY_NODE_JOIN) {
        /* a node, not a member: the CURVE key it connected with is who it is */
        if (zframe_size(routing) > KVC_BROKER_ROUTING_MAX) {
            s_reject(self, KVC_REJECT_MALFORMED, key_hex);
            goto done;
        }
        kvc_broker_node_message(self->broker, s_now_ms(), (int64_t)kvc_clock_wall_ms(), key,
                                zframe_data(routing), zframe_size(routing), env->node_join.data,
                                env->node_join.len, &self->out);
        s_flush(self);
        goto done;
    }
    kvc_link_t *link = s_link_find(self, key_hex);
    if (!link || !link->t.verified) {
        s_reject(self, KVC_REJECT_NO_CREDENTIAL, key_hex);
        goto done;
    }
    if (strcmp(env->sender, link->member_id) != 0) {
        s_reject(self, KVC_REJECT_SENDER_MISMATCH, key_hex);
        goto done;
    }
    uint64_t now = s_now_ms();
    int64_t wall = kvc_clock_wall_s();
    if (wall > link->cred.not_after || wall < link->cred.not_before) {
        link->t.verified = 0;
        s_reject(self, KVC_REJECT_EXPIRED, key_hex);
        goto done;
    }
    link->t.last_seen_ms = now;
    uint32_t kind;
    const uint8_t *data;
    size_t dlen;
    if (kvc_wire_body(env, &kind, &data, &dlen) == 0) { /* a core's message */
        if (kind == KVC_SWIM_CHANNEL)
            kvc_peer_metrics_gossip(self->metrics, 0, dlen);
        if (kvc_core_set_receive(&self->cores, kind, now, link->member_id, data, dlen,
                                 &self->out) == KVC_ENOENT) {
            self->unknown_kinds++; /* a newer peer's protocol: ignored */
            kvc_debug("ignored a message of kind %u from %s", kind, link->member_id);
        }
        s_flush(self);
        goto done;
    }
    switch (env->body_case) {
    case KVC__FED__ENVELOPE__BODY_HELLO_ACK:
        if (env->hello_ack->started_ms == self->started_ms)
            link->t.acked = 1;
        break;
    case KVC__FED__ENVELOPE__BODY_PING: {
        Kvc__Fed__Pong pong = KVC__FED__PONG__INIT;
        pong.nonce = env->ping->nonce;
        Kvc__Fed__Envelope reply = KVC__FED__ENVELOPE__INIT;
        reply.body_case = KVC__FED__ENVELOPE__BODY_PONG;
        reply.pong = &pong;
        s_send(self, link, &reply);
        break;
    }
    case KVC__FED__ENVELOPE__BODY_PONG:
        if (env->pong->nonce == link->ping_nonce && link->ping_sent_us)
            link->rtt_us = kvc_clock_mono_us() - link->ping_sent_us;
        break;
    default:
        break;
    }
done:
    kvc_wire_free(&env);
    zmsg_destroy(&msg);
    return 0;
}

/* kvc_zap_handle's view of the revocation list and of the reject counter. */
static int s_zap_revoked(void *arg, const uint8_t key[32])
{
    return s_revoked(arg, key);
}

static void s_zap_refused(void *arg, const char *key_hex)
{
    s_reject(arg, KVC_REJECT_REVOKED, key_hex);
}

/*
 * ZAP handler (RFC 27): admits CURVE clients whose key is not revoked and
 * records the key, hex-encoded, as the connection's User-Id. Credentials
 * are checked per message afterwards; ZAP only knows the key (zap.h).
 */
static int s_on_zap(kvc_daemon_t *self, zsock_t *reader)
{
    kvc_zap_handle(reader, s_zap_revoked, self, s_zap_refused, self);
    return 0;
}

/* --- the metrics core ---------------------------------------------------
 * Not a federation/ core (it drives the peer's thread-safe registry), but
 * on the same interface: it ticks to publish snapshots and gossip this
 * peer's summary, and hears member events so metrics agree with
 * membership: a summary arrives with JOINED/META, and a member declared
 * dead or gone is shown down at once, not when its summary goes stale. */

/* Gathers the model servers' figures for the next summary. */
static void s_metrics_backends(kvc_daemon_t *self)
{
    if (!self->scrape)
        return;
    /* a copy under the scraper's mutex; never waits on I/O */
    kvc_backend_figures_t figs[KVC_BACKEND_SCRAPE_MAX_TARGETS];
    kvc_summary_backend_t sb[KVC_SUMMARY_MAX_BACKENDS];
    size_t n = kvc_backend_scrape_snapshot(self->scrape, figs, KVC_BACKEND_SCRAPE_MAX_TARGETS);
    size_t k = 0;
    for (size_t i = 0; i < n && k < KVC_SUMMARY_MAX_BACKENDS; i++) {
        if (!figs[i].known)
            continue;
        kvc_strlcpy(sb[k].model, figs[i].model, sizeof sb[k].model);
        sb[k].requests = figs[i].requests;
        sb[k].latency_seconds = figs[i].latency_seconds;
        k++;
    }
    kvc_peer_metrics_backends(self->metrics, sb, k);
}

static int s_metrics_tick(void *core, uint64_t now, kvc_outbox_t *out)
{
    kvc_daemon_t *self = core;
    uint32_t up = 0;
    for (kvc_link_t *l = zhashx_first(self->links); l; l = zhashx_next(self->links))
        up += s_link_up(l, now);
    kvc_peer_metrics_publish(self->metrics, self->swim, up);
    self->metrics_next_ms = now + METRICS_PUBLISH_MS;
    size_t members = kvc_swim_member_count(self->swim);
    if (self->summary_built_ms &&
        kvc_elapsed(now, self->summary_built_ms) < kvc_summary_interval_ms(members))
        return 0;
    s_metrics_backends(self);
    self->summary_built_ms = now;
    int heartbeat = !self->summary_sent_ms ||
                    kvc_elapsed(now, self->summary_sent_ms) >= kvc_summary_heartbeat_ms(members);
    uint8_t buf[1024];
    size_t len = 0;
    int gossip = 0;
    if (kvc_peer_metrics_summary(self->metrics, now, heartbeat, buf, sizeof buf, &len, &gossip) ==
            0 &&
        gossip) {
        kvc_swim_set_meta(self->swim, KVC_SUMMARY_META_KEY, buf, len, now);
        self->summary_sent_ms = now;
    }
    kvc_peer_metrics_expire(self->metrics, now, kvc_summary_stale_ms(members),
                            kvc_summary_remove_ms(members));
    return 0;
}

static uint64_t s_metrics_deadline(const void *core)
{
    return ((const kvc_daemon_t *)core)->metrics_next_ms;
}

static void s_metrics_event(void *core, uint64_t now, const kvc_member_event_t *ev,
                            kvc_outbox_t *out)
{
    kvc_daemon_t *self = core;
    switch (ev->type) {
    case KVC_MEMBER_EV_JOINED:
    case KVC_MEMBER_EV_ALIVE:
        kvc_peer_metrics_member_down(self->metrics, ev->id, 0);
        s_summary_heard(self, ev->id);
        break;
    case KVC_MEMBER_EV_META: /* also arrives for a member already gone */
        s_summary_heard(self, ev->id);
        break;
    case KVC_MEMBER_EV_DEAD:
    case KVC_MEMBER_EV_LEFT:
    case KVC_MEMBER_EV_REAPED:
        kvc_peer_metrics_member_down(self->metrics, ev->id, 1);
        break;
    default:
        break;
    }
}

static const kvc_core_ops_t s_metrics_core = {
    .name = "metrics",
    .channel = 0, /* summaries ride on membership metadata */
    .tick = s_metrics_tick,
    .next_deadline = s_metrics_deadline,
    .member_event = s_metrics_event,
};

#ifdef KVC_NEXT_KIND
/* --- a protocol this build has and others do not ------------------------
 * Built only into kvc-peer-next (tests): a core on channel KVC_NEXT_KIND,
 * a number federation.proto does not define, that greets every member it
 * hears of each second. Older peers must count and ignore its messages;
 * two next peers must hear each other. */
struct next_core {
    char members[64][KVC_MEMBER_ID_MAX + 1];
    size_t n;
    uint64_t next_ms, sent, received;
};

static int s_next_receive(void *core, uint64_t now, const char *from, const uint8_t *msg,
                          size_t len, kvc_outbox_t *out)
{
    struct next_core *c = core;
    if (len == 5 && memcmp(msg, "hello", 5) == 0)
        c->received++;
    return 0;
}

static int s_next_tick(void *core, uint64_t now, kvc_outbox_t *out)
{
    struct next_core *c = core;
    for (size_t i = 0; i < c->n; i++)
        if (kvc_outbox_put(out, c->members[i], KVC_NEXT_KIND, "hello", 5) == 0)
            c->sent++;
    c->next_ms = now + 1000;
    return 0;
}

static uint64_t s_next_deadline(const void *core)
{
    return ((const struct next_core *)core)->next_ms;
}

static void s_next_event(void *core, uint64_t now, const kvc_member_event_t *ev,
                         kvc_outbox_t *out)
{
    struct next_core *c = core;
    size_t i = 0;
    while (i < c->n && strcmp(c->members[i], ev->id) != 0)
        i++;
    int live = ev->type == KVC_MEMBER_EV_JOINED || ev->type == KVC_MEMBER_EV_ALIVE;
    if (live && i == c->n && c->n < 64)
        kvc_strlcpy(c->members[c->n++], ev->id, sizeof c->members[0]);
    else if (!live && ev->type != KVC_MEMBER_EV_META && ev->type != KVC_MEMBER_EV_SUSPECT &&
             i < c->n)
        memcpy(c->members[i], c->members[--c->n], sizeof c->members[0]);
}

static const kvc_core_ops_t s_next_core = {
    .name = "next",
    .channel = KVC_NEXT_KIND,
    .receive = s_next_receive,
    .tick = s_next_tick,
    .next_deadline = s_next_deadline,
    .member_event = s_next_event,
};
#endif

/* Hello tries and retries and pings: every KVC_LINK_TICK_MS, sooner while
 * a link is trying its Hello (link_rules.h). */
/* A new peer's election is held until it verified the credential of every
 * member of its site that membership has alive (so it knows the voters it
 * would otherwise not count), or ELECTION_HOLD_MAX_MS passed. */
static void s_election_release_check(kvc_daemon_t *self, uint64_t now)
{
    if (!kvc_coord_held(self->coord))
        return;
    int linked = 0, all = 1;
    for (kvc_link_t *l = zhashx_first(self->links); l; l = zhashx_next(self->links))
        linked |= l->t.verified;
    size_t n = kvc_swim_member_count(self->swim);
    for (size_t i = 0; i < n && all; i++) {
        kvc_swim_member_t m;
        if (kvc_swim_member_at(self->swim, i, &m) != 0 || m.is_self ||
            strcmp(m.site, self->cfg.site) != 0 ||
            (m.state != KVC_SWIM_ALIVE && m.state != KVC_SWIM_SUSPECT))
            continue;
        kvc_link_t *l = zhashx_lookup(self->by_member, m.id);
        all = l && l->t.verified;
    }
    if (linked && n > 1 && all) {
        kvc_coord_release(self->coord, now);
    } else if (now >= self->hold_until_ms) {
        kvc_warn("election: the site's peers did not all answer within %d s; electing with "
                 "the voters known",
                 ELECTION_HOLD_MAX_MS / 1000);
        kvc_coord_release(self->coord, now);
    } else {
        return;
    }
    s_flush(self);
}

static void s_links_tick(kvc_daemon_t *self, uint64_t now)
{
    s_election_release_check(self, now);
    if (now < self->links_next_ms)
        return;
    uint64_t next = now + KVC_LINK_TICK_MS;
    for (kvc_link_t *link = zhashx_first(self->links); link; link = zhashx_next(self->links)) {
        if (kvc_link_try_due(&link->t, now))
            s_try_hello(self, link);
        else if (kvc_link_hello_due(&link->t, now))
            s_send_hello(self, link);
        if (kvc_link_ping_due(&link->t, now))
            s_send_ping(self, link);
        if (!link->t.handshaked && link->t.try_wait_ms && link->t.try_at_ms < next)
            next = link->t.try_at_ms;
    }
    self->links_next_ms = next;
}

/* --- control API -------------------------------------------------------- */

/* Fills a Status reply. Strings point into self; valid until the next loop. */
static void s_fill_status(kvc_daemon_t *self, Kvc__Ctl__Status *st, Kvc__Ctl__AuthReject *rej,
                          Kvc__Ctl__AuthReject **rejp, char **roles)
{
    uint64_t now = s_now_ms();
    st->name = self->cfg.name;
    st->site = self->cfg.site;
    st->region = self->cfg.region;
    for (size_t i = 0; i < self->cfg.n_roles; i++)
        roles[i] = self->cfg.roles[i];
    st->roles = roles;
    st->n_roles = self->cfg.n_roles;
    st->uptime_s = kvc_elapsed(now, self->started_mono_ms) / 1000;
    st->listen = self->listen;
    st->advertise = self->advertise;
    st->version = KVC_VERSION;
    st->http = self->http ? self->http_endpoint : "";
    st->public_key = self->self_hex;
    uint32_t known = 0, up = 0;
    for (kvc_link_t *l = zhashx_first(self->links); l; l = zhashx_next(self->links)) {
        if (l->t.verified)
            known++;
        if (s_link_up(l, now))
            up++;
    }
    st->seed = self->seed;
    st->peers_known = known;
    st->peers_connected = up;
    uint64_t total = 0;
    for (int i = 0; i < KVC_REJECT__COUNT; i++) {
        kvc__ctl__auth_reject__init(&rej[i]);
        rej[i].reason = (char *)kvc_reject_name((kvc_reject_t)i);
        rej[i].count = self->rejects[i];
        rejp[i] = &rej[i];
        total += self->rejects[i];
    }
    st->auth_rejects = total;
    st->auth_rejects_by_reason = rejp;
    st->n_auth_rejects_by_reason = KVC_REJECT__COUNT;
    st->incarnation = kvc_swim_self_incarnation(self->swim);
    st->membership_dropped = kvc_swim_dropped(self->swim);
    st->msgs_in = self->msgs_in;
    st->msgs_out = self->msgs_out;
    st->send_dropped = self->send_dropped;
}

/* Collects per-peer metrics rows for the control API. */
typedef struct {
    Kvc__Ctl__PeerMetrics *rows;
    size_t n, cap;
} s_metrics_rows_t;

/* One peer: rates from its last two summaries. Strings copied. */
static void s_metrics_row(void *arg, const char *site, const char *peer, const char *region,
                          int fresh, uint64_t age_ms, const void *pair)
{
    s_metrics_rows_t *rows = arg;
    if (rows->n >= rows->cap)
        return;
    const kvc_summary_t *cur = ((const kvc_summary_t *const *)pair)[0];
    const kvc_summary_t *prev = ((const kvc_summary_t *const *)pair)[1];
    Kvc__Ctl__PeerMetrics *r = &rows->rows[rows->n++];
    kvc__ctl__peer_metrics__init(r);
    r->site = kvc_strdup(site);
    r->peer = kvc_strdup(peer);
    r->region = kvc_strdup(region);
    r->fresh = fresh;
    r->age_ms = age_ms;
    r->peers_up = cur->peers_up;
    r->rss_bytes = cur->rss_bytes;
    r->requests_total = cur->proxy_requests;
    r->members_alive = cur->members_alive;
    r->requests_per_s = r->errors_per_s = r->cpu_cores = -1;
    if (prev && cur->timestamp_ms > prev->timestamp_ms) {
        double dt = (double)(cur->timestamp_ms - prev->timestamp_ms) / 1000.0;
        r->requests_per_s = (double)(cur->proxy_requests - prev->proxy_requests) / dt;
        r->errors_per_s = (double)(cur->proxy_errors - prev->proxy_errors) / dt;
        r->cpu_cores = (cur->cpu_seconds - prev->cpu_seconds) / dt;
    }
    double p50 = NAN, p99 = NAN;
    for (size_t i = 0; i < cur->n_models; i++) { /* the slowest model speaks for the peer */
        if (!isnan(cur->models[i].p50_seconds) && !(cur->models[i].p50_seconds <= p50))
            p50 = cur->models[i].p50_seconds;
        if (!isnan(cur->models[i].p99_seconds) && !(cur->models[i].p99_seconds <= p99))
            p99 = cur->models[i].p99_seconds;
    }
    r->p50_s = p50;
    r->p99_s = p99;
}

static int s_fill_coordinators(kvc_daemon_t *self, kvc_ctl_ctx_t *ctx);

static int s_cmd_status(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    Kvc__Ctl__Status *st = kvc_ctl_alloc(ctx, 1, sizeof *st);
    Kvc__Ctl__AuthReject *rej = kvc_ctl_alloc(ctx, KVC_REJECT__COUNT, sizeof *rej);
    Kvc__Ctl__AuthReject **rejp = kvc_ctl_alloc(ctx, KVC_REJECT__COUNT, sizeof *rejp);
    char **roles = kvc_ctl_alloc(ctx, KVC_MAX_ROLES, sizeof *roles);
    Kvc__Ctl__Status__MembersByStateEntry *by_state = kvc_ctl_alloc(ctx, 4, sizeof *by_state);
    Kvc__Ctl__Status__MembersByStateEntry **by_statep = kvc_ctl_alloc(ctx, 4, sizeof *by_statep);
    if (!st || !rej || !rejp || !roles || !by_state || !by_statep)
        return KVC_ENOMEM;
    kvc__ctl__status__init(st);
    s_fill_status(self, st, rej, rejp, roles);
    uint32_t counts[4] = {0};
    size_t n = kvc_swim_member_count(self->swim);
    for (size_t i = 0; i < n; i++) {
        kvc_swim_member_t m;
        if (kvc_swim_member_at(self->swim, i, &m) == 0 && (unsigned)m.state < 4)
            counts[m.state]++;
    }
    for (int i = 0; i < 4; i++) {
        kvc__ctl__status__members_by_state_entry__init(&by_state[i]);
        by_state[i].key = (char *)kvc_swim_state_name((kvc_swim_state_t)i);
        by_state[i].value = counts[i];
        by_statep[i] = &by_state[i];
    }
    st->members_by_state = by_statep;
    st->n_members_by_state = 4;
    Kvc__Ctl__Election *el = kvc_ctl_alloc(ctx, 1, sizeof *el);
    if (!el)
        return KVC_ENOMEM;
    kvc__ctl__election__init(el);
    const kvc_election_t *e = kvc_coord_election(self->coord);
    kvc_election_view_t v;
    kvc_election_view(e, &v);
    kvc_election_stats_t es;
    kvc_election_stats(e, &es);
    uint64_t now = s_now_ms();
    el->voter = v.voter;
    el->state = (char *)kvc_election_state_name(v.state);
    el->term = v.term;
    el->coordinator = kvc_ctl_strdup(ctx, v.leader);
    el->voters = (uint32_t)kvc_coord_voters(self->coord);
    el->can_act = kvc_election_can_act(e, now);
    el->lease_ms_left = el->can_act ? kvc_election_lease_end(e) - now : 0;
    el->elections = es.elections;
    el->won = es.won;
    el->step_downs = es.step_downs;
    st->election = el;
    ctx->rep.status = st;
    return s_fill_coordinators(self, ctx);
}

/* The election view member id gossiped (ours from the core); 0 if none. */
static int s_member_view(kvc_daemon_t *self, const kvc_swim_member_t *m, kvc_election_view_t *v)
{
    if (m->is_self) {
        kvc_election_view(kvc_coord_election(self->coord), v);
        return 1;
    }
    const uint8_t *val;
    size_t len;
    return kvc_swim_member_meta(self->swim, m->id, KVC_ELECTION_VIEW_META_KEY, &val, &len) == 0 &&
           kvc_election_view_decode(val, len, v) == 0;
}

/* Every site's coordinator from the members' gossiped views: at the highest
 * term an alive member of the site reports, the member claiming leadership,
 * else the leader the site's followers name (if it is alive); none while a
 * new term has no leader yet. */
static int s_fill_coordinators(kvc_daemon_t *self, kvc_ctl_ctx_t *ctx)
{
    size_t n = kvc_swim_member_count(self->swim), ns = 0;
    Kvc__Ctl__SiteCoordinator *sc = kvc_ctl_alloc(ctx, n ? n : 1, sizeof *sc);
    Kvc__Ctl__SiteCoordinator **scp = kvc_ctl_alloc(ctx, n ? n : 1, sizeof *scp);
    /* per site: the term of its best claim, and whether it was a leader's own */
    uint64_t *claim_term = kvc_ctl_alloc(ctx, n ? n : 1, sizeof *claim_term);
    int *own = kvc_ctl_alloc(ctx, n ? n : 1, sizeof *own);
    if (!sc || !scp || !claim_term || !own)
        return KVC_ENOMEM;
    for (int pass = 0; pass < 2; pass++) /* 0: leaders' own claims, 1: followers' word */
        for (size_t i = 0; i < n; i++) {
            kvc_swim_member_t m;
            kvc_election_view_t v;
            if (kvc_swim_member_at(self->swim, i, &m) != 0 || m.state != KVC_SWIM_ALIVE ||
                !s_member_view(self, &m, &v))
                continue;
            size_t k = 0;
            while (k < ns && strcmp(sc[k].site, m.site) != 0)
                k++;
            if (k == ns) {
                kvc__ctl__site_coordinator__init(&sc[k]);
                sc[k].site = kvc_ctl_strdup(ctx, m.site);
                sc[k].coordinator = "";
                claim_term[k] = 0;
                own[k] = 0;
                scp[k] = &sc[k];
                ns++;
            }
            if (pass == 0) {
                if (v.term > sc[k].term)
                    sc[k].term = v.term;
                if (v.voter)
                    sc[k].voters_alive++;
                if (v.state == KVC_ELECTION_LEADER && v.term >= claim_term[k]) {
                    sc[k].coordinator = kvc_ctl_strdup(ctx, m.id);
                    claim_term[k] = v.term;
                    own[k] = 1;
                }
            } else if (!own[k] && v.leader[0] && v.term >= claim_term[k]) {
                kvc_swim_member_t l;
                if (kvc_swim_member_get(self->swim, v.leader, &l) == 0 &&
                    l.state == KVC_SWIM_ALIVE) {
                    sc[k].coordinator = kvc_ctl_strdup(ctx, v.leader);
                    claim_term[k] = v.term;
                }
            }
        }
    for (size_t k = 0; k < ns; k++)
        if (claim_term[k] < sc[k].term || !sc[k].coordinator)
            sc[k].coordinator = ""; /* a newer term has no leader yet */
    ctx->rep.coordinators = scp;
    ctx->rep.n_coordinators = ns;
    return KVC_OK;
}

static int s_cmd_members(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    size_t n = kvc_swim_member_count(self->swim), k = 0;
    Kvc__Ctl__Member *members = kvc_ctl_alloc(ctx, n, sizeof *members);
    Kvc__Ctl__Member **memberp = kvc_ctl_alloc(ctx, n, sizeof *memberp);
    if (!members || !memberp)
        return KVC_ENOMEM;
    uint64_t now = s_now_ms();
    for (size_t i = 0; i < n; i++) {
        kvc_swim_member_t m;
        if (kvc_swim_member_at(self->swim, i, &m) != 0)
            continue;
        Kvc__Ctl__Member *cm = &members[k];
        kvc__ctl__member__init(cm);
        /* copy what the view points at: the core may change later */
        cm->id = kvc_ctl_strdup(ctx, m.id);
        cm->site = kvc_ctl_strdup(ctx, m.site);
        cm->region = kvc_ctl_strdup(ctx, m.region);
        cm->roles = kvc_ctl_strdup(ctx, m.roles);
        cm->endpoint = kvc_ctl_strdup(ctx, m.endpoint);
        cm->state = (char *)kvc_swim_state_name(m.state);
        cm->incarnation = m.incarnation;
        cm->is_self = m.is_self;
        cm->last_change_ms_ago = kvc_elapsed(now, m.last_change_ms);
        kvc_election_view_t v;
        cm->election_state = "";
        if (s_member_view(self, &m, &v)) {
            cm->voter = v.voter;
            cm->election_state = (char *)kvc_election_state_name(v.state);
            cm->term = v.term;
        }
        double rtt = -1;
        /* no round trip to a member that is not there */
        int there = m.state == KVC_SWIM_ALIVE || m.state == KVC_SWIM_SUSPECT;
        cm->rtt_ms = m.is_self ? 0
                     : (there && kvc_swim_estimate_rtt_ms(self->swim, m.id, &rtt) == 0) ? rtt
                                                                                       : -1;
        memberp[k++] = cm;
    }
    ctx->rep.members = memberp;
    ctx->rep.n_members = k;
    ctx->rep.local_health = kvc_swim_local_health(self->swim);
    return s_fill_coordinators(self, ctx);
}

static int s_cmd_metrics(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    s_metrics_rows_t mrows = {.cap = 4096};
    mrows.rows = kvc_ctl_alloc(ctx, mrows.cap, sizeof *mrows.rows);
    Kvc__Ctl__PeerMetrics **mrowp = kvc_ctl_alloc(ctx, mrows.cap, sizeof *mrowp);
    if (!mrows.rows || !mrowp)
        return KVC_ENOMEM;
    kvc_peer_metrics_each(self->metrics, s_now_ms(), s_metrics_row, &mrows);
    for (size_t i = 0; i < mrows.n; i++) {
        /* s_metrics_row strdup'ed these; hand them to the reply */
        Kvc__Ctl__PeerMetrics *r = &mrows.rows[i];
        char *site = r->site, *peer = r->peer, *region = r->region;
        r->site = kvc_ctl_strdup(ctx, site);
        r->peer = kvc_ctl_strdup(ctx, peer);
        r->region = kvc_ctl_strdup(ctx, region);
        kvc_free(site);
        kvc_free(peer);
        kvc_free(region);
        mrowp[i] = r;
    }
    ctx->rep.metrics = mrowp;
    ctx->rep.n_metrics = mrows.n;
    return 0;
}

static int s_cmd_peers(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    size_t n = zhashx_size(self->links), i = 0;
    Kvc__Ctl__PeerLink *links = kvc_ctl_alloc(ctx, n, sizeof *links);
    Kvc__Ctl__PeerLink **linkp = kvc_ctl_alloc(ctx, n, sizeof *linkp);
    char **link_roles = kvc_ctl_alloc(ctx, (n ? n : 1) * KVC_MAX_ROLES, sizeof *link_roles);
    if (!links || !linkp || !link_roles)
        return KVC_ENOMEM;
    uint64_t now = s_now_ms();
    for (kvc_link_t *l = zhashx_first(self->links); l; l = zhashx_next(self->links)) {
        if (!l->t.verified)
            continue;
        Kvc__Ctl__PeerLink *pl = &links[i];
        kvc__ctl__peer_link__init(pl);
        pl->member_id = l->member_id;
        pl->site = l->cred.site;
        pl->name = l->cred.name;
        pl->region = l->region;
        pl->endpoint = l->endpoint;
        pl->public_key = l->key_hex;
        pl->up = s_link_up(l, now);
        pl->last_seen_ms_ago = kvc_elapsed(now, l->t.last_seen_ms);
        pl->rtt_us = l->rtt_us;
        pl->not_after = l->cred.not_after;
        pl->roles = &link_roles[i * KVC_MAX_ROLES];
        for (size_t r = 0; r < l->cred.n_roles; r++)
            pl->roles[r] = l->cred.roles[r];
        pl->n_roles = l->cred.n_roles;
        linkp[i++] = pl;
    }
    ctx->rep.peers = linkp;
    ctx->rep.n_peers = i;
    return 0;
}

/* Member events after seq `since` (0: all still held), oldest first. */
static int s_cmd_events(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    const char *since_s = kvc_ctl_arg(req, "since");
    int64_t since = 0;
    if (since_s && kvc_parse_i64(since_s, 0, INT64_MAX, &since) != 0)
        return kvc_ctl_fail(ctx, KVC_EINVAL, "events: since must be a sequence number");
    uint64_t first = self->events_seq > EVENTS_KEPT ? self->events_seq - EVENTS_KEPT + 1 : 1;
    uint64_t from = (uint64_t)since + 1 > first ? (uint64_t)since + 1 : first;
    if ((uint64_t)since + 1 < first && (uint64_t)since < self->events_seq)
        ctx->rep.events_lost = first - ((uint64_t)since + 1);
    size_t n = from <= self->events_seq ? (size_t)(self->events_seq - from + 1) : 0;
    Kvc__Ctl__MemberEvent *evs = kvc_ctl_alloc(ctx, n, sizeof *evs);
    Kvc__Ctl__MemberEvent **evp = kvc_ctl_alloc(ctx, n, sizeof *evp);
    if (!evs || !evp)
        return KVC_ENOMEM;
    uint64_t now = s_now_ms();
    for (size_t i = 0; i < n; i++) {
        uint64_t seq = from + i;
        const kvc_member_event_t *ev = &self->events[(seq - 1) % EVENTS_KEPT].ev;
        kvc__ctl__member_event__init(&evs[i]);
        evs[i].seq = seq;
        evs[i].id = kvc_ctl_strdup(ctx, ev->id);
        evs[i].type = (char *)kvc_member_event_name(ev->type);
        evs[i].incarnation = ev->incarnation;
        evs[i].ms_ago = kvc_elapsed(now, self->events[(seq - 1) % EVENTS_KEPT].at_ms);
        evp[i] = &evs[i];
    }
    ctx->rep.events = evp;
    ctx->rep.n_events = n;
    ctx->rep.next_seq = self->events_seq;
    return 0;
}

/* Estimated round trip between two members, from their coordinates. */
static int s_cmd_rtt(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    const char *ids[2] = {kvc_ctl_arg(req, "a"), kvc_ctl_arg(req, "b")};
    if (!ids[1] || !ids[1][0])
        ids[1] = self->self_id;
    kvc_vivaldi_coord_t c[2];
    for (int i = 0; i < 2; i++) {
        kvc_swim_member_t m;
        if (kvc_swim_member_get(self->swim, ids[i], &m) != 0)
            return kvc_ctl_fail(ctx, KVC_ENOENT, "no such member: %.130s", ids[i]);
        if (m.state != KVC_SWIM_ALIVE && m.state != KVC_SWIM_SUSPECT)
            return kvc_ctl_fail(ctx, KVC_ENOENT, "member %.130s is %s: no round trip", ids[i],
                                kvc_swim_state_name(m.state));
        if (m.is_self) {
            c[i] = *kvc_swim_coord(self->swim);
        } else if (m.has_coord) {
            c[i] = m.coord;
        } else {
            return kvc_ctl_fail(ctx, KVC_ENOENT, "no network coordinate for %.130s yet", ids[i]);
        }
    }
    ctx->rep.rtt_ms = kvc_vivaldi_estimate_rtt(&c[0], &c[1]) * 1000.0;
    return 0;
}

/* Adds one "kvc info" line. */
#define INFO_MAX 128 /* entries of "info" */

static void s_info(kvc_ctl_ctx_t *ctx, Kvc__Ctl__InfoEntry **ents, const char *section,
                   const char *key, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void s_info(kvc_ctl_ctx_t *ctx, Kvc__Ctl__InfoEntry **ents, const char *section,
                   const char *key, const char *fmt, ...)
{
    Kvc__Ctl__InfoEntry *e = kvc_ctl_alloc(ctx, 1, sizeof *e);
    if (!e || ctx->rep.n_info >= INFO_MAX)
        return;
    char val[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    kvc__ctl__info_entry__init(e);
    e->section = (char *)section;
    e->key = (char *)key;
    e->value = kvc_ctl_strdup(ctx, val);
    ents[ctx->rep.n_info++] = e;
}

static int s_cmd_info(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    Kvc__Ctl__InfoEntry **ents = kvc_ctl_alloc(ctx, INFO_MAX, sizeof *ents);
    if (!ents)
        return KVC_ENOMEM;
    ctx->rep.info = ents;
    uint64_t now = s_now_ms();
    s_info(ctx, ents, "agent", "name", "%s", self->self_id);
    s_info(ctx, ents, "agent", "version", "%s", KVC_VERSION);
    s_info(ctx, ents, "agent", "region", "%s", self->cfg.region);
    s_info(ctx, ents, "agent", "listen", "%s", self->listen);
    s_info(ctx, ents, "agent", "advertise", "%s", self->advertise);
    s_info(ctx, ents, "agent", "http", "%s", self->http ? self->http_endpoint : "off");
    s_info(ctx, ents, "agent", "uptime_s", "%llu",
           (unsigned long long)(kvc_elapsed(now, self->started_mono_ms) / 1000));
    s_info(ctx, ents, "agent", "boot_count", "%llu", (unsigned long long)self->boot_count);
    size_t n = kvc_swim_member_count(self->swim);
    uint32_t counts[4] = {0};
    for (size_t i = 0; i < n; i++) {
        kvc_swim_member_t m;
        if (kvc_swim_member_at(self->swim, i, &m) == 0 && (unsigned)m.state < 4)
            counts[m.state]++;
    }
    kvc_swim_stats_t st;
    kvc_swim_stats(self->swim, &st);
    s_info(ctx, ents, "membership", "members", "%zu", n);
    s_info(ctx, ents, "membership", "alive", "%u", counts[KVC_SWIM_ALIVE]);
    s_info(ctx, ents, "membership", "suspect", "%u", counts[KVC_SWIM_SUSPECT]);
    s_info(ctx, ents, "membership", "dead", "%u", counts[KVC_SWIM_DEAD]);
    s_info(ctx, ents, "membership", "left", "%u", counts[KVC_SWIM_LEFT]);
    s_info(ctx, ents, "membership", "incarnation", "%llu",
           (unsigned long long)kvc_swim_self_incarnation(self->swim));
    s_info(ctx, ents, "membership", "local_health", "%u", kvc_swim_local_health(self->swim));
    s_info(ctx, ents, "membership", "probes", "%llu", (unsigned long long)st.probes);
    s_info(ctx, ents, "membership", "suspicions", "%llu", (unsigned long long)st.suspicions);
    s_info(ctx, ents, "membership", "push_pulls", "%llu", (unsigned long long)st.push_pulls);
    s_info(ctx, ents, "membership", "dropped", "%llu",
           (unsigned long long)kvc_swim_dropped(self->swim));
    uint32_t up = 0;
    for (kvc_link_t *l = zhashx_first(self->links); l; l = zhashx_next(self->links))
        up += s_link_up(l, now);
    s_info(ctx, ents, "transport", "links", "%zu", zhashx_size(self->links));
    s_info(ctx, ents, "transport", "links_up", "%u", up);
    s_info(ctx, ents, "transport", "msgs_in", "%llu", (unsigned long long)self->msgs_in);
    s_info(ctx, ents, "transport", "msgs_out", "%llu", (unsigned long long)self->msgs_out);
    s_info(ctx, ents, "transport", "send_dropped", "%llu", (unsigned long long)self->send_dropped);
    s_info(ctx, ents, "transport", "unknown_kinds", "%llu", (unsigned long long)self->unknown_kinds);
    uint64_t rej = 0;
    for (int i = 0; i < KVC_REJECT__COUNT; i++)
        rej += self->rejects[i];
    s_info(ctx, ents, "transport", "auth_rejects", "%llu", (unsigned long long)rej);
    for (size_t i = 0; i < self->cores.n; i++)
        s_info(ctx, ents, "cores", self->cores.cores[i].ops->name, "channel %u",
               self->cores.cores[i].ops->channel);
    kvc_broker_stats_t bs;
    kvc_broker_stats(self->broker, &bs);
    s_info(ctx, ents, "join", "requests", "%llu", (unsigned long long)bs.requests);
    s_info(ctx, ents, "join", "granted", "%llu", (unsigned long long)bs.granted);
    s_info(ctx, ents, "join", "refused", "%llu", (unsigned long long)bs.refused);
    s_info(ctx, ents, "join", "replays", "%llu", (unsigned long long)bs.replays);
    s_info(ctx, ents, "join", "forwarded", "%llu", (unsigned long long)bs.forwarded);
    s_info(ctx, ents, "join", "relayed", "%llu", (unsigned long long)bs.relayed);
    s_info(ctx, ents, "join", "stale_replies", "%llu", (unsigned long long)bs.stale_replies);
    s_info(ctx, ents, "join", "tokens_active", "%zu", bs.active);
    s_info(ctx, ents, "join", "tokens_deleted", "%llu", (unsigned long long)bs.deleted);
    s_info(ctx, ents, "join", "orphans_deleted", "%llu", (unsigned long long)bs.orphans_deleted);
    s_info(ctx, ents, "join", "fenced", "%llu", (unsigned long long)bs.fenced);
    s_info(ctx, ents, "join", "grant_ms_p50", "%u", bs.grant_ms_p50);
    s_info(ctx, ents, "join", "grant_ms_p99", "%u", bs.grant_ms_p99);
    s_info(ctx, ents, "join", "grant_ms_p50_without_api", "%u", bs.own_ms_p50);
    s_info(ctx, ents, "join", "grant_ms_p99_without_api", "%u", bs.own_ms_p99);
    kvc_lww_stats_t rs;
    kvc_repmap_stats(self->registry, &rs);
    s_info(ctx, ents, "registry", "entries", "%zu", kvc_repmap_count(self->registry));
    s_info(ctx, ents, "registry", "tombstones", "%llu", (unsigned long long)rs.tombstones);
    s_info(ctx, ents, "registry", "peers_in_scope", "%zu", kvc_repmap_scope_size(self->registry));
    s_info(ctx, ents, "registry", "pushes", "%llu", (unsigned long long)rs.pushes);
    s_info(ctx, ents, "registry", "anti_entropy_rounds", "%llu", (unsigned long long)rs.digests);
    s_info(ctx, ents, "registry", "entries_applied", "%llu", (unsigned long long)rs.entries_applied);
    s_info(ctx, ents, "registry", "conflicts", "%llu", (unsigned long long)rs.conflicts);
    s_info(ctx, ents, "registry", "refused_full", "%llu", (unsigned long long)rs.refused_full);
    s_info(ctx, ents, "registry", "refused_stale", "%llu", (unsigned long long)rs.stale);
    s_info(ctx, ents, "registry", "store_write_failures", "%llu",
           (unsigned long long)kvc_repmap_persist_failures(self->registry));
    s_info(ctx, ents, "registry", "store_max_bytes", "%llu",
           (unsigned long long)self->cfg.store_max_bytes);
    kvc_site_models_stats_t ms;
    kvc_site_models_stats(self->site_models, &ms);
    s_info(ctx, ents, "registry", "placed_here", "%zu", ms.placed);
    s_info(ctx, ents, "registry", "reconcile_runs", "%llu", (unsigned long long)ms.runs);
    s_info(ctx, ents, "registry", "reconcile_failed", "%llu", (unsigned long long)ms.failed_runs);
    s_info(ctx, ents, "registry", "reconcile_last_ms", "%llu", (unsigned long long)ms.last_run_ms);
    kvc_job_runner_stats_t js;
    kvc_job_runner_stats(self->jobs, &js);
    s_info(ctx, ents, "jobs", "started", "%llu", (unsigned long long)js.started);
    s_info(ctx, ents, "jobs", "ok", "%llu", (unsigned long long)js.ok);
    s_info(ctx, ents, "jobs", "failed", "%llu", (unsigned long long)js.failed);
    s_info(ctx, ents, "jobs", "interrupted", "%llu", (unsigned long long)js.interrupted);
    s_info(ctx, ents, "jobs", "cancelled", "%llu", (unsigned long long)js.cancelled);
    s_info(ctx, ents, "jobs", "running", "%s", js.running[0] ? js.running : "-");
    kvc_site_routing_stats_t rts;
    kvc_site_routing_stats(self->routing, &rts);
    kvc_proxy_route_stats_t prs = {0};
    if (self->proxy)
        kvc_proxy_route_stats(self->proxy, &prs);
    s_info(ctx, ents, "routing", "enabled", "%s", self->cfg.routing_enabled ? "true" : "false");
    s_info(ctx, ents, "routing", "forward_endpoint", "%s",
           kvc_site_routing_forward_endpoint(self->routing)[0]
               ? kvc_site_routing_forward_endpoint(self->routing)
               : "-");
    s_info(ctx, ents, "routing", "members_reporting", "%zu", rts.members_reporting);
    s_info(ctx, ents, "routing", "requests_local", "%llu", (unsigned long long)prs.local);
    s_info(ctx, ents, "routing", "requests_forwarded", "%llu", (unsigned long long)prs.forwarded);
    s_info(ctx, ents, "routing", "requests_retried", "%llu", (unsigned long long)prs.retried);
    s_info(ctx, ents, "routing", "requests_failed", "%llu", (unsigned long long)prs.failed);
    s_info(ctx, ents, "routing", "forwards_sent", "%llu", (unsigned long long)rts.forwards_sent);
    s_info(ctx, ents, "routing", "forwards_answered", "%llu",
           (unsigned long long)rts.forwards_answered);
    s_info(ctx, ents, "routing", "forwards_failed", "%llu", (unsigned long long)rts.forwards_failed);
    s_info(ctx, ents, "routing", "served", "%llu", (unsigned long long)rts.served);
    s_info(ctx, ents, "routing", "refused", "%llu", (unsigned long long)rts.refused);
    s_info(ctx, ents, "routing", "reports_sent", "%llu", (unsigned long long)rts.reports_sent);
    s_info(ctx, ents, "routing", "reports_received", "%llu",
           (unsigned long long)rts.reports_received);
    s_info(ctx, ents, "routing", "reports_dropped", "%llu", (unsigned long long)rts.reports_dropped);
#ifdef KVC_NEXT_KIND
    s_info(ctx, ents, "next", "sent", "%llu", (unsigned long long)self->next->sent);
    s_info(ctx, ents, "next", "received", "%llu", (unsigned long long)self->next->received);
#endif
    return 0;
}

static int s_cmd_leave(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    kvc_info("leave requested over the control socket");
    self->stop = 1; /* the loop answers this, then leaves gracefully */
    return 0;
}

static int s_cmd_force_leave(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    const char *id = kvc_ctl_arg(req, "name");
    int rc = kvc_swim_force_leave(self->swim, id, s_now_ms(), &self->out);
    s_flush(self);
    switch (rc) {
    case 0:
        kvc_info("member %s forced to leave by the operator", id);
        return 0;
    case KVC_ENOENT: return kvc_ctl_fail(ctx, rc, "no such member: %.130s", id);
    case KVC_ESTATE:
        return kvc_ctl_fail(ctx, rc, "member %.130s is alive; stop it or run kvc leave on it", id);
    case KVC_EINVAL: return kvc_ctl_fail(ctx, rc, "cannot force this peer itself to leave; use kvc leave");
    default: return rc;
    }
}

/* --- the model registry's commands (models_ctl.c) ------------------------ */

/* The region of a site's members ("" when membership knows none). */
static const char *s_region_of(void *arg, const char *site)
{
    kvc_daemon_t *self = arg;
    if (strcmp(site, self->cfg.site) == 0)
        return self->cfg.region;
    for (size_t i = 0, n = kvc_swim_member_count(self->swim); i < n; i++) {
        kvc_swim_member_t m;
        if (kvc_swim_member_at(self->swim, i, &m) == 0 && strcmp(m.site, site) == 0 &&
            m.region[0]) {
            kvc_strlcpy(self->region_buf, m.region, sizeof self->region_buf);
            return self->region_buf;
        }
    }
    return "";
}

/* Every site with a member that has not left, ours first. */
static size_t s_sites(void *arg, char (*out)[64], size_t cap)
{
    kvc_daemon_t *self = arg;
    size_t k = 0;
    if (cap)
        kvc_strlcpy(out[k++], self->cfg.site, sizeof out[0]);
    for (size_t i = 0, n = kvc_swim_member_count(self->swim); i < n && k < cap; i++) {
        kvc_swim_member_t m;
        if (kvc_swim_member_at(self->swim, i, &m) != 0 || m.state == KVC_SWIM_LEFT)
            continue;
        size_t j = 0;
        while (j < k && strcmp(out[j], m.site) != 0)
            j++;
        if (j == k)
            kvc_strlcpy(out[k++], m.site, sizeof out[0]);
    }
    return k;
}

static kvc_models_ctl_t s_models_ctl(kvc_daemon_t *self)
{
    return (kvc_models_ctl_t){.kv = &self->registry_kv, .self_id = self->self_id,
                              .site = self->cfg.site, .region_of = s_region_of,
                              .sites = s_sites, .arg = self};
}

static int s_cmd_models_publish(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_models_ctl_t mc = s_models_ctl(arg);
    return kvc_models_ctl_publish(&mc, req, ctx);
}

static int s_cmd_models_list(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_models_ctl_t mc = s_models_ctl(arg);
    return kvc_models_ctl_list(&mc, req, ctx);
}

static int s_cmd_models_show(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_models_ctl_t mc = s_models_ctl(arg);
    return kvc_models_ctl_show(&mc, req, ctx);
}

static int s_cmd_models_retire(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_models_ctl_t mc = s_models_ctl(arg);
    return kvc_models_ctl_retire(&mc, req, ctx);
}

static int s_cmd_models_status(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_models_ctl_t mc = s_models_ctl(arg);
    return kvc_models_ctl_status(&mc, req, ctx);
}

/* --- node setup and cluster creation jobs (jobs_ctl.c) ------------------- */

#define S_JOBS_CMD(fn, impl)                                                                      \
    static int fn(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)                    \
    {                                                                                             \
        kvc_daemon_t *self = arg;                                                                 \
        kvc_jobs_ctl_t jc = {&self->site_kv, self->cfg.site, self->self_id};                      \
        return impl(&jc, req, ctx);                                                               \
    }
S_JOBS_CMD(s_cmd_nodes_setup, kvc_jobs_ctl_setup)
S_JOBS_CMD(s_cmd_cluster_create, kvc_jobs_ctl_cluster)
S_JOBS_CMD(s_cmd_jobs_list, kvc_jobs_ctl_list)
S_JOBS_CMD(s_cmd_jobs_show, kvc_jobs_ctl_show)
S_JOBS_CMD(s_cmd_jobs_logs, kvc_jobs_ctl_logs)
S_JOBS_CMD(s_cmd_jobs_cancel, kvc_jobs_ctl_cancel)
S_JOBS_CMD(s_cmd_jobs_retry, kvc_jobs_ctl_retry)

/* "backup" path: a hot copy of the store (registry, site map, election). */
static int s_cmd_backup(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    kvc_err_t err = {0};
    uint64_t t0 = s_now_ms();
    int rc = kvc_store_backup(self->store, kvc_ctl_arg(req, "path"), &err);
    if (rc)
        return kvc_ctl_fail(ctx, rc, "%s", err.msg);
    kvc_info("store copied to %s in %llu ms", kvc_ctl_arg(req, "path"),
             (unsigned long long)(s_now_ms() - t0));
    return KVC_OK;
}

/* The site's nodes, enrollment codes and token audit (nodes_ctl.c). */
static int s_cmd_nodes(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    return kvc_nodes_ctl_list(&((kvc_daemon_t *)arg)->site_kv, req, ctx);
}

static int s_cmd_node_decide(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    return kvc_nodes_ctl_decide(&self->site_kv, self->self_id, req, ctx);
}

static int s_cmd_enroll_create(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    return kvc_nodes_ctl_enroll_create(&self->site_kv, self->cfg.site, self->self_id, req, ctx);
}

static int s_cmd_enroll_list(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    return kvc_nodes_ctl_enroll_list(&((kvc_daemon_t *)arg)->site_kv, req, ctx);
}

static int s_cmd_tokens(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    return kvc_nodes_ctl_tokens(&((kvc_daemon_t *)arg)->site_kv, req, ctx);
}

/* Where a request for a model would go now, and why (the proxy's router). */
static int s_cmd_route(void *arg, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_daemon_t *self = arg;
    const char *model = kvc_ctl_arg(req, "model");
    const char *constraint = kvc_ctl_arg(req, "constraint");
    if (!model || !model[0])
        return kvc_ctl_fail(ctx, KVC_EINVAL, "route needs a model name");
    if (!self->proxy)
        return kvc_ctl_fail(ctx, KVC_EINVAL, "this peer runs no proxy (http.listen is \"\")");
    kvc_router_choice_t *ch = kvc_ctl_alloc(ctx, 1, sizeof *ch);
    char *json = kvc_ctl_alloc(ctx, 1, 32768);
    char **lines = kvc_ctl_alloc(ctx, KVC_ROUTER_SITES_MAX + 2, sizeof *lines);
    if (!ch || !json || !lines)
        return KVC_ENOMEM;
    kvc_err_t err = {0};
    int rc = kvc_proxy_explain(self->proxy, model, constraint, ch, json, 32768, &err);
    if (rc)
        return kvc_ctl_fail(ctx, rc, "%s", err.msg);
    ctx->rep.json = json;
    ctx->rep.lines = lines;
    size_t n = 0;
    char *l = kvc_ctl_alloc(ctx, 1, 256);
    if (!l)
        return KVC_ENOMEM;
    if (ch->n_ranked)
        snprintf(l, 256, "%s: a request goes to %s%s", model, ch->cands[0].site,
                 ch->cands[0].is_local ? " (this site)" : "");
    else
        snprintf(l, 256, "%s: no site can serve it now", model);
    lines[n++] = l;
    for (size_t i = 0; i < ch->n; i++) {
        const kvc_router_cand_t *c = &ch->cands[i];
        if (!(l = kvc_ctl_alloc(ctx, 1, 256)))
            return KVC_ENOMEM;
        if (c->reason == KVC_ROUTER_ELIGIBLE)
            snprintf(l, 256, "  %zu. %-20s score %.1f ms = rtt %.1f + latency %.1f + load %.1f%s%s%s%s",
                     i + 1, c->site, c->score_ms, c->rtt_ms, c->latency_ms, c->load_ms,
                     c->is_local ? "  (this site)" : "", c->current ? "  (current)" : "",
                     c->held ? "  (held down: was not ready)" : "",
                     c->probe ? "  (probe: circuit half-open)" : "");
        else
            snprintf(l, 256, "  -  %-20s excluded: %s%s", c->site, kvc_router_reason_name(c->reason),
                     c->is_local ? "  (this site)" : "");
        lines[n++] = l;
    }
    ctx->rep.n_lines = n;
    return 0;
}

/* The command table: a command is one row. */
static const kvc_ctl_cmd_t s_commands[] = {
    {"status", s_cmd_status, {NULL}, "this peer: identity, links, membership counts"},
    {"members", s_cmd_members, {NULL}, "every member this peer knows, with its state"},
    {"metrics", s_cmd_metrics, {NULL}, "every peer's gossiped metrics summary"},
    {"peers", s_cmd_peers, {NULL}, "this peer's authenticated links"},
    {"events", s_cmd_events, {NULL}, "member events after a sequence number"},
    {"rtt", s_cmd_rtt, {"a", NULL}, "estimated round trip between two members"},
    {"info", s_cmd_info, {NULL}, "counters and settings, by section"},
    {"leave", s_cmd_leave, {NULL}, "leave the federation gracefully and stop"},
    {"force-leave", s_cmd_force_leave, {"name", NULL}, "mark a failed member as left"},
    {"nodes", s_cmd_nodes, {NULL}, "the site's node records"},
    {"node-decide", s_cmd_node_decide, {"id", "to", NULL}, "approve, reject or revoke a node"},
    {"enroll-create", s_cmd_enroll_create, {"ttl_s", "uses", NULL}, "a one-time enrollment code"},
    {"enroll-list", s_cmd_enroll_list, {NULL}, "enrollment codes still valid"},
    {"tokens", s_cmd_tokens, {NULL}, "the join-token audit log"},
    {"models-publish", s_cmd_models_publish, {NULL}, "publish a model version"},
    {"models-list", s_cmd_models_list, {NULL}, "the registry's model versions"},
    {"models-show", s_cmd_models_show, {"name", NULL}, "one model version"},
    {"models-retire", s_cmd_models_retire, {"name", "version", NULL}, "retire a model version"},
    {"models-status", s_cmd_models_status, {"name", NULL}, "a model's state at every site"},
    {"backup", s_cmd_backup, {"path", NULL}, "a hot copy of the store"},
    {"nodes-setup", s_cmd_nodes_setup, {"node", NULL}, "queue a node setup job"},
    {"cluster-create", s_cmd_cluster_create, {"node", NULL}, "queue a cluster creation job"},
    {"jobs-list", s_cmd_jobs_list, {NULL}, "the site's jobs"},
    {"jobs-show", s_cmd_jobs_show, {"id", NULL}, "one job"},
    {"jobs-logs", s_cmd_jobs_logs, {"id", NULL}, "a job's log"},
    {"jobs-cancel", s_cmd_jobs_cancel, {"id", NULL}, "cancel a job"},
    {"jobs-retry", s_cmd_jobs_retry, {"id", NULL}, "run a finished job again"},
    {"route", s_cmd_route, {"model", NULL}, "where a request for a model would go, and why"},
};

/* Answers one control request. */
static int s_on_control(kvc_daemon_t *self, zsock_t *reader)
{
    zmsg_t *msg = zmsg_recv(reader);
    if (!msg)
        return 0;
    zframe_t *routing = zmsg_pop(msg);
    zframe_t *body = zmsg_pop(msg);
    zmsg_destroy(&msg);
    if (!routing || !body || zframe_size(body) > 65536) {
        zframe_destroy(&routing);
        zframe_destroy(&body);
        return 0;
    }
    Kvc__Ctl__Request *req = kvc__ctl__request__unpack(kvc_pb_allocator(), zframe_size(body), zframe_data(body));
    kvc_ctl_ctx_t ctx;
    kvc_ctl_ctx_init(&ctx);
    if (!req)
        kvc_ctl_fail(&ctx, KVC_EPARSE, "malformed control request");
    else
        kvc_ctl_dispatch(s_commands, sizeof s_commands / sizeof s_commands[0], self, req, &ctx);
    s_flush(self); /* what a command wrote (a site map write is on disk already) goes out */
    size_t len = kvc__ctl__reply__get_packed_size(&ctx.rep);
    zframe_t *out = zframe_new(NULL, len);
    if (out) {
        kvc__ctl__reply__pack(&ctx.rep, zframe_data(out));
        zframe_send(&routing, reader, ZFRAME_MORE);
        zframe_send(&out, reader, 0);
    }
    kvc_ctl_ctx_free(&ctx);
    if (req)
        kvc__ctl__request__free_unpacked(req, kvc_pb_allocator());
    zframe_destroy(&routing);
    zframe_destroy(&body);
    return 0;
}

/* --- life cycle ------------------------------------------------------- */

/* Binds the control socket; an ipc file is created 0600 (umask) and any
 * stale file left by a killed peer is replaced. */
static int s_bind_control(kvc_daemon_t *self, kvc_err_t *err)
{
    const char *ep = self->cfg.control_endpoint;
    if (strncmp(ep, "ipc://", 6) == 0) {
        const char *path = ep + 6;
        if (strlen(path) >= 100)
            return kvc_err_set(err, KVC_ERANGE,
                               "control.endpoint: ipc path longer than 99 bytes: %s", path);
        kvc_strlcpy(self->control_path, path, sizeof self->control_path);
        /* A live peer already bound here answers; refuse to steal its socket. */
        struct stat sb;
        if (stat(path, &sb) == 0 && kvc_control_ping(ep, 300) == 0) {
            self->control_path[0] = '\0';
            return kvc_err_set(err, KVC_EEXIST,
                               "control.endpoint: another peer is running at %s", ep);
        }
        unlink(path);
    }
    self->control = zsock_new(ZMQ_ROUTER);
    if (!self->control)
        return kvc_err_set(err, KVC_EIO, "control: cannot create socket");
    zsock_set_linger(self->control, 0);
    mode_t old = umask(0077);
    int rc = zsock_bind(self->control, "%s", ep);
    umask(old);
    if (rc < 0) {
        self->control_path[0] = '\0';
        return kvc_err_set(err, KVC_EIO, "control.endpoint: cannot bind %s: %s", ep,
                           zmq_strerror(zmq_errno()));
    }
    if (self->control_path[0])
        chmod(self->control_path, 0600);
    return KVC_OK;
}

/* Binds the federation ROUTER (CURVE server) and learns the real endpoint. */
static int s_bind_router(kvc_daemon_t *self, kvc_err_t *err)
{
    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router)
        return kvc_err_set(err, KVC_EIO, "federation: cannot create socket");
    zsock_set_linger(self->router, 0);
    zsock_set_rcvhwm(self->router, 10000);
    zsock_set_router_handover(self->router, 1);
    zsock_set_curve_server(self->router, 1);
    zsock_set_curve_secretkey_bin(self->router, self->id.curve_secret);
    zsock_set_zap_domain(self->router, "kvc");
    if (zsock_bind(self->router, "%s", self->cfg.listen) < 0)
        return kvc_err_set(err, KVC_EIO, "federation.listen: cannot bind %s: %s", self->cfg.listen,
                           zmq_strerror(zmq_errno()));
    char *last = zsock_last_endpoint(self->router);
    kvc_strlcpy(self->listen, last ? last : self->cfg.listen, sizeof self->listen);
    zstr_free(&last);
    /* advertise: configured, else the bound endpoint (port 0 resolved). */
    if (self->cfg.advertise[0] && !strstr(self->cfg.advertise, ":0"))
        kvc_strlcpy(self->advertise, self->cfg.advertise, sizeof self->advertise);
    else
        kvc_strlcpy(self->advertise, self->listen, sizeof self->advertise);
    return KVC_OK;
}

/* The broker's reply to a node behind our ROUTER. */
static void s_to_node(void *arg, const uint8_t *routing, size_t rlen, const uint8_t *msg,
                      size_t len)
{
    kvc_daemon_t *self = arg;
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.sender = self->self_id;
    env.seq = ++self->seq;
    env.body_case = KVC__FED__ENVELOPE__BODY_NODE_JOIN;
    env.node_join.data = (uint8_t *)msg;
    env.node_join.len = len;
    uint8_t *buf = NULL;
    size_t n = 0;
    if (kvc_wire_encode(&env, &buf, &n) != 0)
        return;
    zmsg_t *m = zmsg_new();
    if (m && zmsg_addmem(m, routing, rlen) == 0 && zmsg_addmem(m, buf, n) == 0 &&
        zmsg_send(&m, self->router) == 0)
        self->msgs_out++;
    else
        self->send_dropped++;
    zmsg_destroy(&m);
    sodium_memzero(buf, n); /* it may hold a sealed token: no plaintext, but no copies either */
    kvc_free(buf);
}

/* Is our link to member id up (loop thread)? */
static int s_member_link_up(void *arg, const char *id)
{
    kvc_daemon_t *self = arg;
    kvc_link_t *link = zhashx_lookup(self->by_member, id);
    return link && s_link_up(link, s_now_ms());
}

static size_t s_model_where(void *arg, const char *model, char *buf, size_t cap);

/* Builds the membership core from the profile and the timing overrides. */
static int s_swim_create(kvc_daemon_t *self, kvc_err_t *err)
{
    kvc_swim_config_t sc;
    const kvc_timing_t *t = &self->cfg.timing;
    kvc_swim_config_profile(&sc, self->cfg.profile == KVC_PROFILE_WAN ? "wan" : "lan");
    if (t->probe_interval_ms) sc.probe_interval_ms = t->probe_interval_ms;
    if (t->probe_timeout_ms) sc.probe_timeout_ms = t->probe_timeout_ms;
    if (t->suspicion_mult) sc.suspicion_mult = t->suspicion_mult;
    if (t->indirect_probes) sc.indirect_probes = t->indirect_probes;
    if (t->retransmit_mult) sc.retransmit_mult = t->retransmit_mult;
    if (t->pushpull_interval_ms) sc.push_pull_interval_ms = t->pushpull_interval_ms;
    if (t->reap_after_s) sc.reap_ms = t->reap_after_s * 1000u;
    if (t->gossip_interval_ms) sc.gossip_interval_ms = t->gossip_interval_ms;
    if (t->gossip_nodes) sc.gossip_fanout = t->gossip_nodes;
    if (t->max_message_bytes) sc.max_message_bytes = t->max_message_bytes;
    if (kvc_swim_config_check(&sc, err) != 0) {
        kvc_err_prefix(err, "federation.timing: ");
        return KVC_EINVAL;
    }
    char roles[KVC_MAX_ROLES * KVC_NAME_MAX] = "";
    for (size_t i = 0; i < self->cfg.n_roles; i++) {
        if (i)
            strncat(roles, ",", sizeof roles - strlen(roles) - 1);
        strncat(roles, self->cfg.roles[i], sizeof roles - strlen(roles) - 1);
    }
    kvc_member_info_t info = {
        .site = self->cfg.site,
        .name = self->cfg.name,
        .region = self->cfg.region,
        .roles = roles,
        .endpoint = self->advertise,
    };
    memcpy(info.public_key, self->id.cred.curve_public, 32);
    uint64_t seed;
    randombytes_buf(&seed, sizeof seed);
    self->swim = kvc_swim_new(&sc, &info, seed, s_now_ms());
    kvc_outbox_init(&self->out, 0);
    if (!self->swim)
        return kvc_err_set(err, KVC_ENOMEM, "cannot create the membership core");
    kvc_election_config_t ec;
    kvc_election_config_profile(&ec, self->cfg.profile == KVC_PROFILE_WAN ? "wan" : "lan");
    randombytes_buf(&seed, sizeof seed);
    self->coord = kvc_coord_new(self->store, &ec, self->self_id,
                                s_has_role(&self->id.cred, KVC_COORD_VOTER_ROLE), seed, s_now_ms(),
                                err);
    if (!self->coord)
        return KVC_EINVAL;
    int seeds = 0;
    for (size_t i = 0; i < self->cfg.n_seeds; i++)
        seeds |= sodium_memcmp(self->cfg.seeds[i].public_key, self->id.cred.curve_public, 32) != 0;
    if (seeds && kvc_coord_hold(self->coord, s_now_ms()))
        self->hold_until_ms = s_now_ms() + ELECTION_HOLD_MAX_MS;
    self->sitemap =
        kvc_repmap_new(self->store, self->self_id, &self->out, &kvc_repmap_site_opts, err);
    if (!self->sitemap)
        return KVC_EINVAL;
    self->site_kv = kvc_repmap_kv(self->sitemap);
    self->registry =
        kvc_repmap_new(self->store, self->self_id, &self->out, &kvc_repmap_registry_opts, err);
    if (!self->registry)
        return KVC_EINVAL;
    self->registry_kv = kvc_repmap_kv(self->registry);
    static const kvc_site_models_env_t env = {.sites = s_sites, .region_of = s_region_of};
    self->site_models = kvc_site_models_new(&self->cfg, self->self_id, &self->registry_kv,
                                            kvc_coord_election(self->coord), s_serve_models, &env,
                                            self, err);
    if (!self->site_models)
        return KVC_EINVAL;
    self->jobs = kvc_job_runner_new(&self->cfg, self->self_id, &self->site_kv,
                                    kvc_coord_election(self->coord), err);
    if (!self->jobs)
        return KVC_ENOMEM;
    kvc_site_routing_env_t renv = {.cfg = &self->cfg,
                                   .self_id = self->self_id,
                                   .id = &self->id,
                                   .trust = self->trust,
                                   .advertise = self->advertise,
                                   .revoked = s_zap_revoked, /* reads only the config */
                                   .revoked_arg = self,
                                   .link_up = s_member_link_up,
                                   .link_arg = self,
                                   .where = s_model_where,
                                   .where_arg = self,
                                   .epoch = self->started_ms};
    self->routing = kvc_site_routing_new(&renv, self->swim, err);
    if (!self->routing)
        return KVC_ENOMEM;
    self->broker = kvc_broker_new(&self->cfg, self->self_id, &self->site_kv,
                                  kvc_coord_election(self->coord), s_to_node, self, err);
    if (!self->broker)
        return KVC_EINVAL;
    /* The table: every protocol is one row (channel = envelope body kind). */
    kvc_core_set_init(&self->cores);
    int rc = kvc_core_set_add(&self->cores, &kvc_swim_core_ops, self->swim);
    if (rc == 0)
        rc = kvc_core_set_add(&self->cores, &s_metrics_core, self);
    if (rc == 0)
        rc = kvc_core_set_add(&self->cores, &kvc_coord_core_ops, self->coord);
    if (rc == 0)
        rc = kvc_core_set_add(&self->cores, &kvc_broker_core_ops, self->broker);
    if (rc == 0)
        rc = kvc_core_set_add(&self->cores, kvc_repmap_core_ops(self->sitemap), self->sitemap);
    if (rc == 0)
        rc = kvc_core_set_add(&self->cores, kvc_repmap_core_ops(self->registry), self->registry);
    if (rc == 0)
        rc = kvc_core_set_add(&self->cores, &kvc_site_models_core_ops, self->site_models);
    if (rc == 0)
        rc = kvc_core_set_add(&self->cores, &kvc_job_runner_core_ops, self->jobs);
    if (rc == 0)
        rc = kvc_core_set_add(&self->cores, &kvc_site_routing_core_ops, self->routing);
#ifdef KVC_NEXT_KIND
    if (rc == 0 && !(self->next = kvc_calloc(1, sizeof *self->next)))
        rc = KVC_ENOMEM;
    if (rc == 0)
        rc = kvc_core_set_add(&self->cores, &s_next_core, self->next);
#endif
    if (rc)
        return kvc_err_set(err, rc, "cannot register the protocol cores: %s", kvc_strerror(rc));
    return KVC_OK;
}

/* Answers one HTTP request (in a fiber on the HTTP loop or on a thread of
 * its own). Everything but the peer's own endpoints goes to the proxy,
 * which is thread-safe. */
static void s_http_handle(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp)
{
    kvc_daemon_t *self = arg;
    int is_metrics = strcmp(req->path, "/metrics") == 0;
    if (is_metrics || strcmp(req->path, "/federate") == 0) {
        if (strcmp(req->method, "GET") != 0) {
            kvc_http_error(resp, 405, "method %s not allowed here; use GET", req->method);
            return;
        }
        const char *match[32];
        size_t n = is_metrics ? 0 : kvc_http_query_all(req, "match[]", match, 32);
        kvc_err_t err = {0};
        int rc = is_metrics ? kvc_peer_metrics_write(self->metrics, &resp->body)
                            : kvc_peer_metrics_federate(self->metrics, match, n, s_now_ms(),
                                                        &resp->body, &err);
        if (rc && err.msg[0]) { /* a bad match[] selector: Prometheus' message */
            kvc_http_error(resp, 400, "%s", err.msg);
        } else if (rc) {
            kvc_http_error(resp, 500, "cannot write metrics: %s", kvc_strerror(rc));
        } else {
            resp->status = 200;
            snprintf(resp->content_type, sizeof resp->content_type,
                     "text/plain; version=0.0.4; charset=utf-8");
        }
        return;
    }
    if (self->proxy)
        kvc_proxy_handle(self->proxy, req, resp);
    else
        kvc_http_error(resp, 404, "no such endpoint (no models are configured on this peer)");
}

/* Which requests may run on the HTTP loop (http_server.h): the proxy's
 * quick ones; /metrics and /federate render on threads of their own. */
static int s_http_inline(void *arg, const kvc_http_req_t *req)
{
    kvc_daemon_t *self = arg;
    if (strcmp(req->path, "/metrics") == 0 || strcmp(req->path, "/federate") == 0)
        return 0;
    return self->proxy ? kvc_proxy_inline_ok(self->proxy, req) : 1;
}

/* The proxy's log lines. */
static void s_proxy_log(void *arg, int level, const char *msg)
{
    (void)arg;
    kvc_log(level ? KVC_LOG_WARN : KVC_LOG_INFO, "proxy: %s", msg);
}

/* registry.grpc with {model} replaced by name. */
static void s_model_grpc(const char *tmpl, const char *name, char *out, size_t cap)
{
    const char *at = strstr(tmpl, "{model}");
    if (!at)
        snprintf(out, cap, "%s", tmpl);
    else
        snprintf(out, cap, "%.*s%s%s", (int)(at - tmpl), tmpl, name, at + 7);
}

/* The models placed on this site, for the proxy (site_models.c): one
 * backend per name, described by its newest version (models come sorted by
 * name, newest first). */
static void s_serve_models(void *arg, const kvc_model_t *models, size_t n)
{
    kvc_daemon_t *self = arg;
    if (!self->proxy)
        return;
    kvc_proxy_backend_t *b = kvc_calloc(n ? n : 1, sizeof *b);
    kvc_proxy_input_t *in = kvc_calloc(n ? n * KVC_MODEL_TENSORS_MAX : 1, sizeof *in);
    const char **outs = kvc_calloc(n ? n * KVC_MODEL_TENSORS_MAX : 1, sizeof *outs);
    char (*grpc)[KVC_ENDPOINT_MAX] = kvc_calloc(n ? n : 1, sizeof *grpc);
    size_t k = 0;
    for (size_t i = 0; b && in && outs && grpc && i < n; i++) {
        const kvc_model_t *m = &models[i];
        if (k && strcmp(b[k - 1].model, m->name) == 0)
            continue; /* an older version of the same model */
        kvc_proxy_input_t *mi = in + k * KVC_MODEL_TENSORS_MAX;
        const char **mo = outs + k * KVC_MODEL_TENSORS_MAX;
        for (size_t j = 0; j < m->n_inputs; j++)
            mi[j] = (kvc_proxy_input_t){.name = m->inputs[j].name, .dtype = m->inputs[j].dtype,
                                        .shape = m->inputs[j].dims, .n_dims = m->inputs[j].n_dims};
        for (size_t j = 0; j < m->n_outputs; j++)
            mo[j] = m->outputs[j].name;
        s_model_grpc(self->cfg.registry_grpc, m->name, grpc[k], sizeof grpc[k]);
        b[k] = (kvc_proxy_backend_t){
            .model = m->name, .grpc = grpc[k],
            .api = m->framework == KVC_FW_KSERVE_V2 ? "kserve" : "tfserving",
            .preprocess = m->preprocess, .image_input = m->image_input, .inputs = mi,
            .n_inputs = m->n_inputs, .signature = m->signature, .outputs = mo,
            .n_outputs = m->n_outputs};
        k++;
    }
    kvc_err_t err = {0};
    if (!b || !in || !outs || !grpc)
        kvc_error("registry: out of memory for the proxy's models");
    else if (kvc_proxy_set_models(self->proxy, b, k, &err) != 0)
        kvc_warn("registry: the proxy refused the models placed here: %s", err.msg);
    else
        kvc_info("registry: serving %zu model%s placed on site %s", k, k == 1 ? "" : "s",
                 self->cfg.site);
    kvc_free(b);
    kvc_free(in);
    kvc_free(outs);
    kvc_free(grpc);
}

/* For the proxy: where a model not placed here is served. */
static size_t s_model_where(void *arg, const char *model, char *buf, size_t cap)
{
    kvc_daemon_t *self = arg;
    return self->site_models ? kvc_site_models_where(self->site_models, model, buf, cap) : 0;
}

/* Starts the proxy and its HTTP front on http.listen. */
static int s_http_start(kvc_daemon_t *self, kvc_err_t *err)
{
    if (!self->cfg.http_listen[0])
        return KVC_OK;
    kvc_proxy_backend_t backends[KVC_MAX_BACKENDS];
    kvc_proxy_input_t inputs[KVC_MAX_BACKENDS][KVC_MAX_INPUTS];
    for (size_t i = 0; i < self->cfg.n_backends; i++) {
        const kvc_backend_t *b = &self->cfg.backends[i];
        for (size_t j = 0; j < b->n_inputs; j++)
            inputs[i][j] = (kvc_proxy_input_t){.name = b->inputs[j].name,
                                               .dtype = kvc_dtype_parse(b->inputs[j].dtype)};
        backends[i] = (kvc_proxy_backend_t){.model = b->model, .grpc = b->grpc, .api = b->api,
                                            .preprocess = b->preprocess,
                                            .image_input = b->image_input,
                                            .inputs = inputs[i],
                                            .n_inputs = b->n_inputs};
    }
    /* Always a proxy, even with no backends in the config: the models
     * placed on this site come at run time (kvc_proxy_set_models). */
    kvc_proxy_opts_t po = {
        .backends = backends,
        .n_backends = self->cfg.n_backends,
        .timeout_ms = self->cfg.proxy_timeout_ms,
        .max_message = (size_t)self->cfg.proxy_max_message,
        .image_memory = self->cfg.proxy_image_memory,
        .grpc_ca_file = self->cfg.proxy_grpc_ca_file[0] ? self->cfg.proxy_grpc_ca_file : NULL,
        .observe = kvc_peer_metrics_observe,
        .observe_arg = self->metrics,
        .log = s_proxy_log,
        .where = s_model_where,
        .where_arg = self};
    if (self->cfg.routing_enabled) {
        po.accel = (kvc_accel_t)self->cfg.routing_accel;
        po.sites = kvc_site_routing_sites;
        po.sites_arg = self->routing;
        po.remote = kvc_site_routing_remote;
        po.remote_arg = self->routing;
        po.site = self->cfg.site;
        po.region = self->cfg.region;
        po.arch = self->cfg.routing_arch;
        po.accel_count = self->cfg.routing_accelerator_count;
        po.capacity = self->cfg.routing_capacity;
        po.hedge_ms = self->cfg.routing_hedge_ms;
    }
    self->proxy = kvc_proxy_new(&po, err);
    if (!self->proxy) {
        kvc_err_prefix(err, "proxy: ");
        return KVC_EINVAL;
    }
    /* forwarding before HTTP: no request may see the routing half started */
    int rc = kvc_site_routing_start(self->routing, self->proxy, err);
    if (rc)
        return rc;
    kvc_http_opts_t ho = {.max_body = self->cfg.http_max_body,
                          .inline_ok = s_http_inline,
                          .engine = self->proxy ? kvc_proxy_engine(self->proxy) : NULL,
                          .pin = self->cfg.proxy_cpu >= 0,
                          .cpu = (int)self->cfg.proxy_cpu};
    /* the forwarding server is driven by the HTTP loop (site_routing.h) */
    ho.n_hook_fds = kvc_site_routing_http_fds(self->routing, ho.hook_fds);
    if (ho.n_hook_fds) {
        ho.hook = kvc_site_routing_http_hook;
        ho.hook_arg = self->routing;
    }
    self->http = kvc_http_server_new(self->cfg.http_listen, &ho, s_http_handle, self, err);
    if (!self->http)
        return KVC_EIO;
    /* the bound address, with port 0 resolved */
    char host[KVC_ENDPOINT_MAX];
    kvc_strlcpy(host, self->cfg.http_listen, sizeof host);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    snprintf(self->http_endpoint, sizeof self->http_endpoint, "%s:%u", host,
             kvc_http_server_port(self->http));
    kvc_site_models_set_http(self->site_models, self->http_endpoint);
    return KVC_OK;
}

/* Starts scraping the model servers that have a metrics_url, if any. */
static int s_scrape_start(kvc_daemon_t *self, kvc_err_t *err)
{
    kvc_backend_scrape_target_t t[KVC_MAX_BACKENDS];
    size_t n = 0;
    for (size_t i = 0; i < self->cfg.n_backends && n < KVC_BACKEND_SCRAPE_MAX_TARGETS; i++)
        if (self->cfg.backends[i].metrics_url[0])
            t[n++] = (kvc_backend_scrape_target_t){.model = self->cfg.backends[i].model,
                                                   .url = self->cfg.backends[i].metrics_url};
    if (n == 0)
        return KVC_OK;
    kvc_backend_scrape_opts_t o = {.targets = t, .n_targets = n,
                                   .reg = kvc_peer_metrics_registry(self->metrics)};
    self->scrape = kvc_backend_scrape_new(&o, err);
    if (!self->scrape) {
        kvc_err_prefix(err, "proxy.backends: ");
        return KVC_EINVAL;
    }
    return KVC_OK;
}

/* Reconnects to a peer remembered in the store from an earlier run. */
static int s_reconnect_known(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    kvc_daemon_t *self = arg;
    char endpoint[KVC_ENDPOINT_MAX], hex[65];
    if (klen != 32 || vlen == 0 || vlen >= sizeof endpoint)
        return 0; /* not ours; skip rather than trust it */
    memcpy(endpoint, val, vlen);
    endpoint[vlen] = '\0';
    kvc_key_hex(key, hex);
    if (s_link_find(self, hex) || s_revoked(self, key) ||
        sodium_memcmp(key, self->id.cred.curve_public, 32) == 0)
        return 0;
    kvc_link_t *link = s_link_add(self, key);
    if (link && s_link_connect(self, link, endpoint) != 0)
        kvc_warn("cannot reconnect to remembered peer at %s", endpoint);
    return 0;
}

kvc_daemon_t *kvc_daemon_new(const kvc_config_t *cfg, kvc_err_t *err)
{
    if (kvc_crypto_init() != 0) {
        kvc_err_set(err, KVC_ECRYPTO, "libsodium failed to initialise");
        return NULL;
    }
    kvc_daemon_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        return NULL;
    }
    self->cfg = *cfg;
    kvc_config_finish(&self->cfg);
    kvc_log_set_level(self->cfg.log_level);
    if (self->cfg.proxy_cpu >= 0) {
        /* Before the first socket: ZeroMQ starts its I/O thread with it.
         * The HTTP loop goes to the same CPU (s_http_start): a request then
         * passes between them without a wake-up on another CPU, which costs
         * most of a forward's time on a virtual machine. */
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n > 0 && self->cfg.proxy_cpu >= n) {
            kvc_err_set(err, KVC_EINVAL, "proxy.cpu: %d, but this machine's CPUs are 0..%ld",
                        (int)self->cfg.proxy_cpu, n - 1);
            kvc_free(self);
            return NULL;
        }
        zsys_thread_affinity_cpu_add((int)self->cfg.proxy_cpu);
    }
    kvc_config_member_id(&self->cfg, self->self_id, sizeof self->self_id);
    self->started_ms = kvc_clock_wall_ms();
    self->started_mono_ms = s_now_ms();

    if (kvc_ca_load_public(self->cfg.trust, self->trust, err) != 0)
        goto fail;
    if (kvc_identity_load(self->cfg.credential, &self->id, err) != 0)
        goto fail;
    kvc_cred_t check;
    int rc = kvc_cred_verify(self->id.cred.blob, self->id.cred.blob_len, self->trust,
                             kvc_clock_wall_s(), &check, err);
    if (rc) {
        kvc_err_prefix(err, "%s: ", self->cfg.credential);
        goto fail;
    }
    if (strcmp(check.site, self->cfg.site) != 0 || strcmp(check.name, self->cfg.name) != 0) {
        kvc_err_set(err, KVC_EINVAL, "%s: credential is for %s/%s but peer.site/name is %s",
                    self->cfg.credential, check.site, check.name, self->self_id);
        goto fail;
    }
    kvc_key_hex(self->id.cred.curve_public, self->self_hex);
    self->own_cred =
        kvc__fed__credential__unpack(kvc_pb_allocator(), self->id.cred.blob_len, self->id.cred.blob);
    if (!self->own_cred) {
        kvc_err_set(err, KVC_EPARSE, "%s: the credential cannot be read", self->cfg.credential);
        goto fail;
    }

    if (mkdir(self->cfg.data_dir, 0700) != 0 && errno != EEXIST) {
        kvc_err_set(err, KVC_EIO, "peer.data_dir: cannot create %s: %s", self->cfg.data_dir,
                    strerror(errno));
        goto fail;
    }
    char store_dir[KVC_PATH_MAX + 16];
    snprintf(store_dir, sizeof store_dir, "%s/store", self->cfg.data_dir);
    self->store = kvc_store_open(store_dir, (size_t)self->cfg.store_max_bytes, err);
    if (!self->store)
        goto fail;
    if (kvc_store_incr(self->store, "self", "boot_count", 1, &self->boot_count) != 0) {
        kvc_err_set(err, KVC_EIO, "%s: cannot write the store", store_dir);
        goto fail;
    }

    zsys_init();
    zsys_set_linger(0);
    self->by_member = zhashx_new();
    self->links = zhashx_new();
    if (!self->links || !self->by_member) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        goto fail;
    }
    zhashx_set_destructor(self->links, s_link_destroy);
    /* The ZAP handler must exist before the CURVE server accepts anyone. */
    self->zap = zsock_new(ZMQ_REP);
    if (!self->zap || zsock_bind(self->zap, "inproc://zeromq.zap.01") < 0) {
        kvc_err_set(err, KVC_EIO, "cannot bind the ZAP handler");
        goto fail;
    }
    self->metrics = kvc_peer_metrics_new(self->cfg.site, self->cfg.name, self->cfg.region,
                                         self->started_ms);
    if (!self->metrics) {
        kvc_err_set(err, KVC_ENOMEM, "cannot create the metrics registry");
        goto fail;
    }
    if (s_bind_router(self, err) != 0 || s_bind_control(self, err) != 0 ||
        s_swim_create(self, err) != 0 || s_http_start(self, err) != 0 ||
        s_scrape_start(self, err) != 0)
        goto fail;
    snprintf(self->seed, sizeof self->seed, "%s@%s", self->self_hex, self->advertise);
    kvc_job_runner_set_join(self->jobs, self->advertise, self->self_hex);

    for (size_t i = 0; i < self->cfg.n_seeds; i++) {
        const kvc_seed_t *seed = &self->cfg.seeds[i];
        if (sodium_memcmp(seed->public_key, self->id.cred.curve_public, 32) == 0)
            continue;
        char hex[65];
        kvc_key_hex(seed->public_key, hex);
        kvc_link_t *link = s_link_find(self, hex);
        if (link)
            continue;
        link = s_link_add(self, seed->public_key);
        if (!link || s_link_connect(self, link, seed->endpoint) != 0) {
            kvc_err_set(err, KVC_EINVAL, "federation.seeds: cannot connect to %s", seed->endpoint);
            goto fail;
        }
        link->is_seed = 1;
    }
    if (kvc_store_foreach(self->store, "peers", s_reconnect_known, self) != 0)
        kvc_warn("could not read the remembered peers from the store");
    kvc_info("kvc-peer %s %s started: listen %s, advertise %s, control %s, http %s, key %.16s…, "
             "boot %llu",
             KVC_VERSION, self->self_id, self->listen, self->advertise,
             self->cfg.control_endpoint, self->http ? self->http_endpoint : "off", self->self_hex,
             (unsigned long long)self->boot_count);
    return self;
fail:
    kvc_daemon_destroy(&self);
    return NULL;
}

/* Runs due timers, then sleeps until a socket is readable or the earliest
 * deadline of any core (or the link timer) comes; at most max_ms. */
static void s_loop_once(kvc_daemon_t *self, uint64_t max_ms)
{
    uint64_t now = s_now_ms();
    s_cores_tick(self, now);
    s_links_tick(self, now);
    uint64_t deadline = kvc_core_set_next_deadline(&self->cores);
    if (self->links_next_ms < deadline)
        deadline = self->links_next_ms;
    uint64_t wait = kvc_elapsed(deadline, now);
    if (wait > max_ms)
        wait = max_ms;
    /* three sockets, whatever the number of members, and two workers */
    int models_fd = kvc_site_models_fd(self->site_models);
    zmq_pollitem_t items[5] = {
        {zsock_resolve(self->zap), 0, ZMQ_POLLIN, 0},
        {zsock_resolve(self->router), 0, ZMQ_POLLIN, 0},
        {zsock_resolve(self->control), 0, ZMQ_POLLIN, 0},
        {NULL, kvc_broker_fd(self->broker), ZMQ_POLLIN, 0},
        {NULL, models_fd, ZMQ_POLLIN, 0},
    };
    int rc = zmq_poll(items, models_fd >= 0 ? 5 : 4, (long)wait);
    if (rc <= 0)
        return; /* timeout, or EINTR: the caller checks for a signal */
    if (items[0].revents & ZMQ_POLLIN)
        s_on_zap(self, self->zap);
    /* drain a burst, bounded so control and timers are not starved */
    if (items[1].revents & ZMQ_POLLIN)
        for (int k = 0; k < 64 && (zsock_events(self->router) & ZMQ_POLLIN); k++)
            s_on_router(self, self->router);
    if (items[2].revents & ZMQ_POLLIN)
        s_on_control(self, self->control);
    if (items[3].revents & ZMQ_POLLIN) { /* the worker finished a job */
        kvc_broker_core_ops.tick(self->broker, s_now_ms(), &self->out);
        s_flush(self);
    }
    if (models_fd >= 0 && (items[4].revents & ZMQ_POLLIN)) { /* a reconciliation finished */
        kvc_site_models_core_ops.tick(self->site_models, s_now_ms(), &self->out);
        s_flush(self);
    }
}

/* Tells the federation we are leaving and keeps answering for a moment so
 * the news spreads before the sockets close. */
static void s_leave(kvc_daemon_t *self)
{
    uint64_t start = s_now_ms();
    kvc_swim_leave(self->swim, start, &self->out);
    s_flush(self);
    while (kvc_elapsed(s_now_ms(), start) < LEAVE_DRAIN_MS)
        s_loop_once(self, LEAVE_DRAIN_MS - kvc_elapsed(s_now_ms(), start));
    /* let queued messages reach the wire before the DEALERs close */
    for (kvc_link_t *l = zhashx_first(self->links); l; l = zhashx_next(self->links))
        if (l->dealer)
            zsock_set_linger(l->dealer, 200);
}

int kvc_daemon_run(kvc_daemon_t *self)
{
    while (!zsys_interrupted && !self->stop)
        s_loop_once(self, MAX_SLEEP_MS);
    kvc_info("kvc-peer %s leaving", self->self_id);
    s_leave(self);
    kvc_info("kvc-peer %s stopped", self->self_id);
    return 0;
}

void kvc_daemon_destroy(kvc_daemon_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_daemon_t *self = *self_p;
    kvc_http_server_destroy(&self->http); /* stops the threads that use the proxy */
    kvc_site_routing_destroy(&self->routing); /* forwarding workers use the proxy too */
    kvc_proxy_destroy(&self->proxy);
    kvc_backend_scrape_destroy(&self->scrape); /* before the registry it reports to */
    kvc_peer_metrics_destroy(&self->metrics);
    zhashx_destroy(&self->by_member);
    zhashx_destroy(&self->links);
    kvc_broker_destroy(&self->broker);
    kvc_repmap_destroy(&self->sitemap);
    kvc_job_runner_destroy(&self->jobs);
    kvc_site_models_destroy(&self->site_models);
    kvc_repmap_destroy(&self->registry);
    kvc_coord_destroy(&self->coord);
    kvc_swim_destroy(&self->swim);
    kvc_outbox_free(&self->out);
#ifdef KVC_NEXT_KIND
    kvc_free(self->next);
#endif
    zsock_destroy(&self->router);
    zsock_destroy(&self->control);
    zsock_destroy(&self->zap);
    if (self->control_path[0])
        unlink(self->control_path);
    kvc_store_destroy(&self->store);
    if (self->own_cred)
        kvc__fed__credential__free_unpacked(self->own_cred, kvc_pb_allocator());
    kvc_identity_wipe(&self->id);
    sodium_memzero(self, sizeof *self);
    kvc_free(self);
    *self_p = NULL;
}
