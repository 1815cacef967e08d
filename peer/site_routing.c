/*
 * site_routing.c - the daemon's side of cross-site routing (see
 * site_routing.h): health reports in and out, the routes snapshot, and the
 * forwarding server and client.
 *
 * Threads: the core's callbacks run on the daemon's loop; the snapshot is
 * routes.c's (its own mutex); the proxy calls kvc_site_routing_sites and
 * _remote from HTTP threads and fibers; the forwarding server calls
 * s_serve from its workers. The counters are atomics.
 */
#include "site_routing.h"

#include "fwd.h"
#include "health.h"
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kvc_site_routing {
    kvc_site_routing_env_t env;
    kvc_config_t cfg; /* a copy: env->cfg is the daemon's */
    kvc_swim_t *swim;
    kvc_health_t *health;
    kvc_routes_t *routes;
    kvc_proxy_t *proxy; /* set by start */
    kvc_fwd_server_t *server;
    kvc_fwd_client_t *client;
    char forward[KVC_ENDPOINT_MAX]; /* what others reach our server at */
    uint64_t refresh_next_ms, rebuild_next_ms;
    atomic_uint_fast64_t sent, answered, failed, served;
    size_t reporting;
};

/* ---- the forwarding link ------------------------------------------------ */

/* A request another peer forwarded: runs on this site's backend. */
static void s_serve(void *arg, const char *member_id, const kvc_fwd_req_t *req,
                    kvc_fwd_resp_t *resp)
{
    kvc_site_routing_t *self = arg;
    (void)member_id;
    /* kvc_http_req_t promises a NUL after the body. */
    uint8_t *body = kvc_malloc(req->body_len + 1);
    if (!body) {
        resp->code = KVC_FWD_OK;
        resp->status = 503;
        snprintf(resp->content_type, sizeof resp->content_type, "application/json");
        static const char oom[] = "{\"error\": \"out of memory\"}";
        resp->body = kvc_malloc(sizeof oom - 1);
        if (resp->body) {
            memcpy(resp->body, oom, sizeof oom - 1);
            resp->body_len = sizeof oom - 1;
        }
        return;
    }
    if (req->body_len)
        memcpy(body, req->body, req->body_len);
    body[req->body_len] = '\0';
    kvc_http_req_t hr = {.method = req->method ? req->method : "",
                         .path = req->path ? req->path : "",
                         .content_type = req->content_type && req->content_type[0]
                                             ? req->content_type
                                             : NULL,
                         .accept = req->accept && req->accept[0] ? req->accept : NULL,
                         .inference_header_length =
                             req->inference_header_length && req->inference_header_length[0]
                                 ? req->inference_header_length
                                 : NULL,
                         .body = body,
                         .body_len = req->body_len,
                         .conn = NULL};
    kvc_http_resp_t r;
    memset(&r, 0, sizeof r);
    kvc_buf_init(&r.body, (size_t)self->cfg.proxy_max_message + 4096);
    int cls = KVC_CALL_FAIL;
    kvc_proxy_handle_forwarded(self->proxy, &hr, req->constraint, &r, &cls);
    atomic_fetch_add(&self->served, 1);
    resp->code = KVC_FWD_OK;
    resp->status = r.status;
    resp->call_class = cls;
    kvc_strlcpy(resp->content_type, r.content_type, sizeof resp->content_type);
    kvc_strlcpy(resp->header_name, r.header_name, sizeof resp->header_name);
    kvc_strlcpy(resp->header_value, r.header_value, sizeof resp->header_value);
    kvc_strlcpy(resp->served_by, r.served_by[0] ? r.served_by : self->cfg.site,
                sizeof resp->served_by);
    size_t len = 0;
    resp->body = (uint8_t *)kvc_buf_detach(&r.body, &len);
    resp->body_len = resp->body ? len : 0;
    kvc_buf_free(&r.body);
    kvc_free(body);
}

/* A forwarded request the HTTP loop answers in a fiber. */
typedef struct {
    kvc_site_routing_t *self;
    kvc_fwd_job_t *job;
    const kvc_fwd_req_t *req;
} s_task_t;

static void s_task(void *arg)
{
    s_task_t t = *(s_task_t *)arg;
    kvc_free(arg);
    kvc_fwd_resp_t r;
    memset(&r, 0, sizeof r);
    s_serve(t.self, NULL, t.req, &r);
    kvc_fwd_server_answer(t.self->server, t.job, &r);
}

/* The forwarding server's dispatcher (HTTP loop thread): a request the HTTP
 * front would answer inline (small JSON, signatures known) runs in a fiber
 * on the loop; images and big bodies go to the server's workers. */
static int s_dispatch(void *arg, kvc_fwd_job_t *job, const char *member_id,
                      const kvc_fwd_req_t *req)
{
    kvc_site_routing_t *self = arg;
    (void)member_id;
    kvc_http_req_t hr = {.method = req->method ? req->method : "",
                         .path = req->path ? req->path : "",
                         .content_type = req->content_type,
                         .body_len = req->body_len};
    if (!kvc_proxy_inline_ok(self->proxy, &hr))
        return 0;
    s_task_t *t = kvc_malloc(sizeof *t);
    if (!t)
        return 0;
    *t = (s_task_t){self, job, req};
    if (kvc_http_loop_spawn(s_task, t) != KVC_OK) {
        kvc_free(t);
        return 0;
    }
    return 1;
}

int kvc_site_routing_http_hook(void *arg)
{
    kvc_site_routing_t *self = arg;
    int wait = -1;
    if (self->server && kvc_fwd_server_pump(self->server))
        wait = 0;
    if (self->client) {
        int w = kvc_fwd_client_pump(self->client);
        if (w >= 0 && (wait < 0 || w < wait))
            wait = w;
    }
    return wait;
}

int kvc_site_routing_http_fds(const kvc_site_routing_t *self, int fds[4])
{
    if (!self || !self->server || !self->client)
        return 0;
    kvc_fwd_server_fds(self->server, fds);
    kvc_fwd_client_fds(self->client, fds + 2);
    return 4;
}

typedef struct {
    kvc_site_routing_t *self;
    kvc_proxy_remote_resp_t *resp;
    void (*done)(void *);
    void *done_arg;
} s_pending_t;

/* The forward's answer, on the client's I/O thread. */
static void s_forwarded(void *arg, kvc_fwd_resp_t *fr)
{
    s_pending_t *p = arg;
    kvc_proxy_remote_resp_t *r = p->resp;
    if (fr->code == KVC_FWD_OK) {
        r->answered = 1;
        r->status = fr->status;
        r->call_class = fr->call_class;
        kvc_strlcpy(r->content_type, fr->content_type, sizeof r->content_type);
        kvc_strlcpy(r->header_name, fr->header_name, sizeof r->header_name);
        kvc_strlcpy(r->header_value, fr->header_value, sizeof r->header_value);
        kvc_strlcpy(r->served_by, fr->served_by, sizeof r->served_by);
        r->body = fr->body; /* taken */
        r->body_len = fr->body_len;
        fr->body = NULL;
        fr->body_len = 0;
        atomic_fetch_add(&p->self->answered, 1);
    } else {
        r->answered = 0;
        r->timed_out = fr->code == KVC_FWD_TIMEOUT;
        snprintf(r->error, sizeof r->error, "%s", fr->error[0] ? fr->error : "no answer");
        atomic_fetch_add(&p->self->failed, 1);
    }
    void (*done)(void *) = p->done;
    void *done_arg = p->done_arg;
    kvc_free(p);
    done(done_arg);
}

int kvc_site_routing_remote(void *arg, const char *site, const kvc_proxy_remote_req_t *req,
                            kvc_proxy_remote_resp_t *resp, void (*done)(void *done_arg),
                            void *done_arg)
{
    kvc_site_routing_t *self = arg;
    if (!self->client) {
        snprintf(resp->error, sizeof resp->error, "forwarding is not running on this peer");
        return KVC_EUNAVAIL;
    }
    kvc_routes_peer_t peer;
    if (kvc_routes_pick(self->routes, site, req->model ? req->model : "", &peer) != 0) {
        snprintf(resp->error, sizeof resp->error, "no peer of site %s is reachable", site);
        return KVC_ENOENT;
    }
    s_pending_t *p = kvc_malloc(sizeof *p);
    if (!p) {
        snprintf(resp->error, sizeof resp->error, "out of memory");
        return KVC_ENOMEM;
    }
    *p = (s_pending_t){self, resp, done, done_arg};
    kvc_fwd_req_t fr = {.method = req->method,
                        .path = req->path,
                        .content_type = req->content_type,
                        .accept = req->accept,
                        .inference_header_length = req->inference_header_length,
                        .constraint = req->constraint,
                        .body = req->body,
                        .body_len = req->body_len,
                        .timeout_ms = req->timeout_ms,
                        .hops = 1};
    uint32_t timeout = req->timeout_ms ? req->timeout_ms : 1;
    if (timeout > KVC_FWD_TIMEOUT_MAX_MS)
        timeout = KVC_FWD_TIMEOUT_MAX_MS;
    fr.timeout_ms = timeout;
    atomic_fetch_add(&self->sent, 1);
    int rc = kvc_fwd_client_submit(self->client, peer.endpoint, peer.curve_key, &fr, timeout,
                                   s_forwarded, p);
    if (rc != 0) {
        kvc_free(p);
        atomic_fetch_add(&self->failed, 1);
        snprintf(resp->error, sizeof resp->error, "cannot forward to %s: %s", peer.member,
                 kvc_strerror(rc));
        return rc;
    }
    return 0;
}

size_t kvc_site_routing_sites(void *arg, const char *model, kvc_proxy_site_t *out, size_t cap)
{
    kvc_site_routing_t *self = arg;
    return kvc_routes_sites(self->routes, model, out, cap);
}

/* The forwarding server's endpoint from the federation's: the same host,
 * a port of its own (0: the kernel's), or the ipc path with ".fwd". */
static void s_derive(const char *ep, char *out, size_t cap)
{
    if (strncmp(ep, "tcp://", 6) == 0) {
        const char *colon = strrchr(ep, ':');
        if (colon && colon > ep + 6) {
            snprintf(out, cap, "%.*s:0", (int)(colon - ep), ep);
            return;
        }
    }
    snprintf(out, cap, "%s.fwd", ep);
}

int kvc_site_routing_start(kvc_site_routing_t *self, kvc_proxy_t *proxy, kvc_err_t *err)
{
    self->proxy = proxy;
    if (!proxy || !self->cfg.routing_enabled)
        return KVC_OK;
    char listen[KVC_ENDPOINT_MAX];
    if (self->cfg.routing_forward_listen[0])
        kvc_strlcpy(listen, self->cfg.routing_forward_listen, sizeof listen);
    else
        s_derive(self->cfg.listen, listen, sizeof listen);
    kvc_fwd_server_opts_t so = {.bind = listen,
                                .revoked = self->env.revoked,
                                .revoked_arg = self->env.revoked_arg,
                                .handle = s_serve,
                                .handle_arg = self,
                                .driven = 1,
                                .dispatch = s_dispatch,
                                .max_request_bytes = (size_t)self->cfg.http_max_body};
    memcpy(so.trust, self->env.trust, 32);
    memcpy(so.public_key, self->env.id->cred.curve_public, 32);
    memcpy(so.secret_key, self->env.id->curve_secret, 32);
    self->server = kvc_fwd_server_new(&so, err);
    if (!self->server) {
        kvc_err_prefix(err, "routing.forward_listen %s: ", listen);
        return KVC_EIO;
    }
    const char *bound = kvc_fwd_server_endpoint(self->server);
    if (self->cfg.routing_forward_advertise[0]) {
        kvc_strlcpy(self->forward, self->cfg.routing_forward_advertise, sizeof self->forward);
    } else if (strncmp(bound, "tcp://", 6) == 0) {
        /* the advertised federation host, the bound port */
        const char *port = strrchr(bound, ':');
        const char *adv = self->env.advertise;
        const char *acolon = strrchr(adv, ':');
        if (strncmp(adv, "tcp://", 6) == 0 && acolon && port)
            snprintf(self->forward, sizeof self->forward, "%.*s%s", (int)(acolon - adv), adv,
                     port);
        else
            kvc_strlcpy(self->forward, bound, sizeof self->forward);
    } else {
        kvc_strlcpy(self->forward, bound, sizeof self->forward);
    }
    kvc_fwd_client_opts_t co = {.credential = self->env.id->cred.blob,
                                .credential_len = self->env.id->cred.blob_len,
                                .driven = 1};
    memcpy(co.public_key, self->env.id->cred.curve_public, 32);
    memcpy(co.secret_key, self->env.id->curve_secret, 32);
    self->client = kvc_fwd_client_new(&co, err);
    if (!self->client)
        return KVC_EIO;
    kvc_info("routing: forwarding server at %s (advertised %s)", bound, self->forward);
    return KVC_OK;
}

const char *kvc_site_routing_forward_endpoint(const kvc_site_routing_t *self)
{
    return self->forward;
}

/* ---- health reports and the snapshot ------------------------------------ */

/* Our report: the proxy's figures per model, and the site's capabilities. */
static void s_publish(kvc_site_routing_t *self, uint64_t now)
{
    kvc_health_local_t *l = kvc_calloc(1, sizeof *l);
    if (!l)
        return;
    kvc_strlcpy(l->site, self->cfg.site, sizeof l->site);
    kvc_strlcpy(l->region, self->cfg.region, sizeof l->region);
    kvc_strlcpy(l->arch, self->cfg.routing_arch, sizeof l->arch);
    l->accel = self->cfg.routing_accel;
    l->accel_count = self->cfg.routing_accelerator_count;
    kvc_strlcpy(l->forward, self->forward, sizeof l->forward);
    if (self->proxy && self->client) {
        kvc_proxy_model_health_t h[KVC_HEALTH_MODELS_MAX];
        size_t n = kvc_proxy_local_health(self->proxy, h, KVC_HEALTH_MODELS_MAX);
        for (size_t i = 0; i < n; i++) {
            kvc_health_model_t *m = &l->models[l->n_models++];
            kvc_strlcpy(m->name, h[i].model, sizeof m->name);
            m->ready = h[i].ready;
            m->in_flight = h[i].in_flight;
            m->capacity = h[i].capacity;
            m->p50_us = h[i].p50_us;
            m->p99_us = h[i].p99_us;
        }
    }
    if (kvc_health_set_local(self->health, now, l) != 0)
        kvc_debug("routing: our health report was refused");
    kvc_free(l);
}

/* Rebuilds the snapshot from the reports and membership: one entry per
 * member with a fresh report (kvc_health_ids), with what membership says of
 * it now (alive, link up, Vivaldi RTT). */
static void s_rebuild(kvc_site_routing_t *self, uint64_t now)
{
    size_t cap = kvc_swim_member_count(self->swim) + 1;
    char(*ids)[KVC_MEMBER_ID_MAX + 1] = kvc_calloc(cap, sizeof *ids);
    size_t n = ids ? kvc_health_ids(self->health, now, ids, cap) : 0;
    kvc_routes_member_t *mb = kvc_calloc(n ? n : 1, sizeof *mb);
    kvc_health_report_t *rep = kvc_calloc(n ? n : 1, sizeof *rep);
    kvc_routes_model_t *models = kvc_calloc(n ? n * KVC_HEALTH_MODELS_MAX : 1, sizeof *models);
    uint8_t(*keys)[32] = kvc_calloc(n ? n : 1, 32);
    if (!ids || !mb || !rep || !models || !keys) {
        kvc_warn("routing: out of memory for the routes snapshot; keeping the last one");
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        kvc_swim_member_t m;
        if (kvc_swim_member_get(self->swim, ids[i], &m) != 0 || m.is_self || !m.public_key)
            continue; /* a report from a member membership does not know (yet) */
        kvc_health_report_t *r = &rep[k];
        if (kvc_health_member(self->health, now, ids[i], r) != 0)
            continue;
        kvc_routes_model_t *rm = models + k * KVC_HEALTH_MODELS_MAX;
        for (size_t j = 0; j < r->body.n_models; j++) {
            const kvc_health_model_t *hm = &r->body.models[j];
            rm[j] = (kvc_routes_model_t){.name = hm->name,
                                         .ready = hm->ready,
                                         .in_flight = hm->in_flight,
                                         .capacity = hm->capacity,
                                         .p50_us = hm->p50_us,
                                         .p99_us = hm->p99_us};
        }
        memcpy(keys[k], m.public_key, 32);
        double rtt_ms = -1;
        int64_t rtt_us = kvc_swim_estimate_rtt_ms(self->swim, ids[i], &rtt_ms) == 0 && rtt_ms >= 0
                             ? (int64_t)(rtt_ms * 1000.0)
                             : -1;
        /* alive by membership, our own path to it not cut (its last probe
         * acked directly), and the link up */
        int reachable = m.state == KVC_SWIM_ALIVE && !m.direct_lost &&
                        (!self->env.link_up || self->env.link_up(self->env.link_arg, ids[i]));
        mb[k] = (kvc_routes_member_t){.id = r->member,
                                      .site = r->body.site,
                                      .region = r->body.region,
                                      .arch = r->body.arch,
                                      .accel = r->body.accel,
                                      .accel_count = r->body.accel_count,
                                      .forward = r->body.forward,
                                      .curve_key = keys[k],
                                      .reachable = reachable,
                                      .rtt_us = rtt_us,
                                      .models = rm,
                                      .n_models = r->body.n_models};
        k++;
    }
    self->reporting = k;
    if (kvc_routes_update(self->routes, mb, k) != 0)
        kvc_warn("routing: out of memory for the routes snapshot; keeping the last one");
done:
    kvc_free(ids);
    kvc_free(mb);
    kvc_free(rep);
    kvc_free(models);
    kvc_free(keys);
}

static int s_receive(void *core, uint64_t now, const char *from, const uint8_t *msg, size_t len,
                     kvc_outbox_t *out)
{
    kvc_site_routing_t *self = core;
    int rc = kvc_health_core_ops()->receive(self->health, now, from, msg, len, out);
    if (rc == 0 && self->rebuild_next_ms > now + KVC_SITE_ROUTING_NEWS_MS)
        self->rebuild_next_ms = now + KVC_SITE_ROUTING_NEWS_MS; /* news: into the snapshot soon */
    return rc;
}

/* Publishes our figures every KVC_SITE_ROUTING_REFRESH_MS (the health core
 * decides what is worth sending); rebuilds the snapshot soon after news (a
 * report, a member event) and at least every KVC_SITE_ROUTING_REBUILD_MS
 * (links and RTT estimates change without news). */
static int s_tick(void *core, uint64_t now, kvc_outbox_t *out)
{
    kvc_site_routing_t *self = core;
    if (now >= self->refresh_next_ms) {
        s_publish(self, now);
        self->refresh_next_ms = now + KVC_SITE_ROUTING_REFRESH_MS;
    }
    const kvc_core_ops_t *h = kvc_health_core_ops();
    if (h->next_deadline(self->health) <= now)
        h->tick(self->health, now, out);
    if (now >= self->rebuild_next_ms) {
        s_rebuild(self, now);
        self->rebuild_next_ms = now + KVC_SITE_ROUTING_REBUILD_MS;
    }
    return 0;
}

static uint64_t s_deadline(const void *core)
{
    const kvc_site_routing_t *self = core;
    uint64_t d = kvc_health_core_ops()->next_deadline(self->health);
    if (self->refresh_next_ms < d)
        d = self->refresh_next_ms;
    return self->rebuild_next_ms < d ? self->rebuild_next_ms : d;
}

static void s_event(void *core, uint64_t now, const kvc_member_event_t *ev, kvc_outbox_t *out)
{
    kvc_site_routing_t *self = core;
    kvc_health_core_ops()->member_event(self->health, now, ev, out);
    if (ev->type != KVC_MEMBER_EV_META && self->rebuild_next_ms > now)
        self->rebuild_next_ms = now; /* a member came or went: rebuild at once */
}

const kvc_core_ops_t kvc_site_routing_core_ops = {
    .name = "health",
    .channel = KVC_HEALTH_CHANNEL,
    .receive = s_receive,
    .tick = s_tick,
    .next_deadline = s_deadline,
    .member_event = s_event,
};

kvc_site_routing_t *kvc_site_routing_new(const kvc_site_routing_env_t *env, kvc_swim_t *swim,
                                         kvc_err_t *err)
{
    kvc_site_routing_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        return NULL;
    }
    self->env = *env;
    self->cfg = *env->cfg;
    self->swim = swim;
    self->health = kvc_health_new(env->self_id, NULL, env->epoch);
    self->routes = kvc_routes_new(self->cfg.site, env->where, env->where_arg);
    if (!self->health || !self->routes) {
        kvc_err_set(err, KVC_ENOMEM, "cannot create the health core");
        kvc_site_routing_destroy(&self);
        return NULL;
    }
    return self;
}

void kvc_site_routing_destroy(kvc_site_routing_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_site_routing_t *self = *self_p;
    kvc_fwd_server_destroy(&self->server); /* its workers use the proxy */
    kvc_fwd_client_destroy(&self->client); /* pending forwards end, done called */
    kvc_routes_destroy(&self->routes);
    kvc_health_destroy(&self->health);
    kvc_free(self);
    *self_p = NULL;
}

void kvc_site_routing_stats(kvc_site_routing_t *self, kvc_site_routing_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->forwards_sent = atomic_load(&self->sent);
    out->forwards_answered = atomic_load(&self->answered);
    out->forwards_failed = atomic_load(&self->failed);
    out->served = atomic_load(&self->served);
    if (self->server) {
        kvc_fwd_server_stats_t st;
        kvc_fwd_server_stats(self->server, &st);
        out->refused = st.unauthenticated;
    }
    kvc_health_stats_t hs;
    kvc_health_stats(self->health, &hs);
    out->reports_sent = hs.sent;
    out->reports_received = hs.received;
    out->reports_dropped = hs.dropped_malformed + hs.dropped_stale + hs.dropped_site +
                           hs.dropped_full;
    out->members_reporting = self->reporting;
}
