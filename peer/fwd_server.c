/*
 * fwd_server.c - the forwarding server: a CURVE ROUTER that authenticates
 * each forwarded request and runs it on a pool of worker threads.
 *
 * Threads: the server thread owns the ROUTER and a PULL socket; it decodes
 * and authenticates (the auth cache is its alone, so it needs no lock) and
 * queues accepted requests. Workers take requests from the queue (mutex +
 * condvar), run the handler, encode the reply and push [routing id, reply]
 * through their own inproc PUSH to the server thread, which sends it: only
 * the server thread ever touches the ROUTER.
 *
 * Driven mode (opts.driven): no server thread; the HTTP loop owns the
 * ROUTER and the PULL and pumps them each turn, and a request the
 * dispatcher takes runs in a fiber on that loop and is answered from it:
 * one thread switch less each way than a worker, and the model server
 * call it makes is the loop's own (no hand-off to the loop and back).
 *
 * It must never let an unauthenticated request reach the handler, never log
 * a credential or a body, and answer (or count and drop) every bad request.
 */
#include "fwd.h"

#include "clock.h"
#include "config.h"
#include "credential.h"

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define S_ROUTING_MAX 256   /* a ROUTER routing id is 5 bytes; anything longer is dropped */
#define S_EXTRA_BYTES 65536 /* room for the fields other than the body */

/* One accepted request waiting for (or held by) a worker. */
typedef struct s_job {
    struct s_job *next;
    uint8_t routing[S_ROUTING_MAX];
    size_t rlen;
    kvc_fwd_decoded_t d;
    char member[KVC_FWD_MEMBER_MAX];
    uint64_t received_ms;
} s_job_t;

struct kvc_fwd_server {
    kvc_fwd_server_opts_t o;
    char bind[KVC_FWD_ENDPOINT_MAX];
    char endpoint[KVC_FWD_ENDPOINT_MAX];
    char reply_ep[64];
    zsock_t *router; /* server thread only */
    zsock_t *pull;   /* server thread only: workers' replies and the stop marker */
    zsock_t *ctl;    /* destroy's PUSH to pull: a zero-length frame means stop */
    kvc_fwd_auth_t *auth;
    pthread_t thread;
    int thread_started;
    pthread_t *workers;
    int n_workers;
    /* the queue */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    s_job_t *head, *tail;
    size_t queued;
    int stopping;
    /* counters */
    pthread_mutex_t stats_mu;
    kvc_fwd_server_stats_t stats;
};

/* zmq_msg_init_data's destructor for kvc_malloc'd buffers. */
static void s_zfree(void *data, void *hint)
{
    (void)hint;
    kvc_free(data);
}

/* Adds n to one counter under the stats lock. */
static void s_count(kvc_fwd_server_t *self, uint64_t *counter, uint64_t n)
{
    pthread_mutex_lock(&self->stats_mu);
    *counter += n;
    pthread_mutex_unlock(&self->stats_mu);
}

/* Sends a two-part [routing, buffer] message on s, taking buf. Returns 0 or -1. */
static int s_send_pair(void *s, const uint8_t *routing, size_t rlen, uint8_t *buf, size_t len,
                       int flags)
{
    zmq_msg_t m;
    if (zmq_send(s, routing, rlen, ZMQ_SNDMORE | flags) < 0) {
        kvc_free(buf);
        return -1;
    }
    if (zmq_msg_init_data(&m, buf, len, s_zfree, NULL) != 0) {
        kvc_free(buf);
        return -1;
    }
    if (zmq_msg_send(&m, s, flags) < 0) {
        zmq_msg_close(&m);
        return -1;
    }
    return 0;
}

/* Answers a request without the handler (refusal, overload, shutdown), from
 * the server thread. */
static void s_reply_now(kvc_fwd_server_t *self, const uint8_t *routing, size_t rlen, uint64_t id,
                        int code, const char *error)
{
    kvc_fwd_resp_t r;
    memset(&r, 0, sizeof r);
    r.code = code;
    kvc_strlcpy(r.error, error, sizeof r.error);
    uint8_t *buf;
    size_t len;
    if (kvc_fwd_reply_encode(id, &r, 0, &buf, &len) != 0 ||
        s_send_pair(zsock_resolve(self->router), routing, rlen, buf, len, ZMQ_DONTWAIT) != 0)
        s_count(self, &self->stats.send_failed, 1);
}

/* Handles one request frame that arrived on the ROUTER. */
static void s_on_request(kvc_fwd_server_t *self, const uint8_t *routing, size_t rlen,
                         zmq_msg_t *body)
{
    s_count(self, &self->stats.requests, 1);
    kvc_fwd_decoded_t d;
    int id_known;
    int rc = kvc_fwd_request_decode(zmq_msg_data(body), zmq_msg_size(body),
                                    self->o.max_request_bytes, &d, &id_known);
    if (rc != KVC_OK) {
        s_count(self, &self->stats.malformed, 1);
        if (rc == KVC_EINVAL && id_known)
            s_reply_now(self, routing, rlen, d.id, KVC_FWD_MALFORMED, "malformed request");
        return;
    }
    const char *user = zmq_msg_gets(body, "User-Id");
    uint8_t key[32];
    char member[KVC_FWD_MEMBER_MAX];
    kvc_reject_t why = KVC_REJECT_NO_KEY;
    uint64_t before = kvc_fwd_auth_verifies(self->auth);
    if (!user || strlen(user) != 64 || kvc_config_parse_key(user, key) != 0)
        rc = KVC_EPERM;
    else
        rc = kvc_fwd_auth_check(self->auth, key, d.credential, d.credential_len, kvc_clock_wall_s(),
                                self->o.revoked, self->o.revoked_arg, member, &why);
    uint64_t verifies = kvc_fwd_auth_verifies(self->auth) - before;
    if (verifies)
        s_count(self, &self->stats.verifies, verifies);
    if (rc != KVC_OK) {
        pthread_mutex_lock(&self->stats_mu);
        self->stats.refused[why]++;
        self->stats.unauthenticated++;
        pthread_mutex_unlock(&self->stats_mu);
        s_reply_now(self, routing, rlen, d.id, KVC_FWD_UNAUTHENTICATED, kvc_reject_name(why));
        kvc_fwd_decoded_free(&d);
        return;
    }
    s_job_t *job = kvc_malloc(sizeof *job);
    if (!job) {
        s_reply_now(self, routing, rlen, d.id, KVC_FWD_OVERLOADED, "out of memory");
        s_count(self, &self->stats.overloaded, 1);
        kvc_fwd_decoded_free(&d);
        return;
    }
    job->next = NULL;
    memcpy(job->routing, routing, rlen);
    job->rlen = rlen;
    job->d = d;
    memcpy(job->member, member, sizeof member);
    job->received_ms = kvc_clock_mono_ms();
    if (self->o.driven && self->o.dispatch &&
        self->o.dispatch(self->o.handle_arg, job, job->member, &job->d.req))
        return; /* answered on this thread, kvc_fwd_server_answer */
    int code = KVC_FWD_OK;
    pthread_mutex_lock(&self->mu);
    if (self->stopping)
        code = KVC_FWD_SHUTDOWN;
    else if (self->queued >= self->o.max_queued)
        code = KVC_FWD_OVERLOADED;
    else {
        if (self->tail)
            self->tail->next = job;
        else
            self->head = job;
        self->tail = job;
        self->queued++;
        pthread_cond_signal(&self->cv);
    }
    pthread_mutex_unlock(&self->mu);
    if (code == KVC_FWD_OK)
        return;
    s_count(self, code == KVC_FWD_SHUTDOWN ? &self->stats.shutdown : &self->stats.overloaded, 1);
    s_reply_now(self, routing, rlen, d.id, code,
                code == KVC_FWD_SHUTDOWN ? "server shutting down" : "server queue full");
    kvc_fwd_decoded_free(&job->d);
    kvc_free(job);
}

/* Receives one message from the ROUTER (non-blocking). 0 if none was there. */
static int s_recv_router(kvc_fwd_server_t *self)
{
    void *s = zsock_resolve(self->router);
    zmq_msg_t routing, body;
    zmq_msg_init(&routing);
    if (zmq_msg_recv(&routing, s, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&routing);
        return 0;
    }
    int parts = 1, ok = 0;
    zmq_msg_init(&body);
    if (zmq_msg_more(&routing) && zmq_msg_recv(&body, s, 0) >= 0) {
        parts = 2;
        ok = !zmq_msg_more(&body);
        while (zmq_msg_more(&body)) { /* a DEALER sends one frame: drain the rest */
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            int more = zmq_msg_recv(&extra, s, 0) >= 0 && zmq_msg_more(&extra);
            zmq_msg_close(&extra);
            parts++;
            if (!more)
                break;
        }
    }
    if (ok && zmq_msg_size(&routing) <= S_ROUTING_MAX)
        s_on_request(self, zmq_msg_data(&routing), zmq_msg_size(&routing), &body);
    else {
        s_count(self, &self->stats.requests, 1);
        s_count(self, &self->stats.malformed, 1);
    }
    (void)parts;
    zmq_msg_close(&body);
    zmq_msg_close(&routing);
    return 1;
}

/* Moves one message from the PULL to the ROUTER (non-blocking). Returns 0 if
 * none was there, 1 for a reply, 2 for the stop marker. */
static int s_recv_pull(kvc_fwd_server_t *self)
{
    void *pull = zsock_resolve(self->pull);
    zmq_msg_t a, b;
    zmq_msg_init(&a);
    if (zmq_msg_recv(&a, pull, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&a);
        return 0;
    }
    if (!zmq_msg_more(&a)) {
        zmq_msg_close(&a);
        return 2;
    }
    zmq_msg_init(&b);
    zmq_msg_recv(&b, pull, 0); /* inproc: the second part is already there */
    void *router = zsock_resolve(self->router);
    if (zmq_msg_send(&a, router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&b, router, ZMQ_DONTWAIT) < 0)
        s_count(self, &self->stats.send_failed, 1);
    zmq_msg_close(&a);
    zmq_msg_close(&b);
    return 1;
}

/* The server thread. */
static void *s_server_run(void *arg)
{
    kvc_fwd_server_t *self = arg;
    zmq_pollitem_t items[] = {
        {zsock_resolve(self->pull), 0, ZMQ_POLLIN, 0},
        {zsock_resolve(self->router), 0, ZMQ_POLLIN, 0},
    };
    int stop = 0;
    while (!stop) {
        if (zmq_poll(items, 2, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        /* Replies first: they finish work already done. Bounded batches keep
         * one side from starving the other. */
        for (int i = 0; i < 256; i++) {
            int r = s_recv_pull(self);
            if (r == 0)
                break;
            if (r == 2)
                stop = 1;
        }
        if (!stop)
            for (int i = 0; i < 256 && s_recv_router(self); i++)
                ;
    }
    /* Every worker has exited before the stop marker was sent: what they
     * pushed is already in the pipe. */
    while (s_recv_pull(self) != 0)
        ;
    return NULL;
}

/* Takes the next job; NULL when stopping and the queue is empty. *stopping
 * says whether the server was stopping when it was taken. */
static s_job_t *s_take(kvc_fwd_server_t *self, int *stopping)
{
    pthread_mutex_lock(&self->mu);
    while (!self->head && !self->stopping)
        pthread_cond_wait(&self->cv, &self->mu);
    s_job_t *job = self->head;
    if (job) {
        self->head = job->next;
        if (!self->head)
            self->tail = NULL;
        self->queued--;
    }
    *stopping = self->stopping;
    pthread_mutex_unlock(&self->mu);
    return job;
}

/* Encodes the reply to job from r (clearing r); a reply that does not
 * encode becomes MALFORMED. */
static int s_encode_reply(kvc_fwd_server_t *self, const s_job_t *job, kvc_fwd_resp_t *r,
                          uint8_t **buf, size_t *len)
{
    int rc = kvc_fwd_reply_encode(job->d.id, r, self->o.max_request_bytes, buf, len);
    if (rc != KVC_OK) {
        kvc_fwd_resp_clear(r);
        r->code = KVC_FWD_MALFORMED;
        kvc_strlcpy(r->error, rc == KVC_ERANGE ? "reply too large" : "handler gave a bad reply",
                    sizeof r->error);
        rc = kvc_fwd_reply_encode(job->d.id, r, 0, buf, len);
    }
    kvc_fwd_resp_clear(r);
    return rc;
}

void kvc_fwd_server_answer(kvc_fwd_server_t *self, kvc_fwd_job_t *job, kvc_fwd_resp_t *resp)
{
    s_count(self, &self->stats.answered, 1);
    uint8_t *buf;
    size_t len;
    if (s_encode_reply(self, job, resp, &buf, &len) != KVC_OK ||
        s_send_pair(zsock_resolve(self->router), job->routing, job->rlen, buf, len,
                    ZMQ_DONTWAIT) != 0)
        s_count(self, &self->stats.send_failed, 1);
    kvc_fwd_decoded_free(&job->d);
    kvc_free(job);
}

void kvc_fwd_server_fds(const kvc_fwd_server_t *self, int fds[2])
{
    fds[0] = self->o.driven ? zsock_fd(self->router) : -1; /* poll skips -1 */
    fds[1] = self->o.driven ? zsock_fd(self->pull) : -1;
}

int kvc_fwd_server_pump(kvc_fwd_server_t *self)
{
    if (!self->o.driven)
        return 0; /* its server thread does this */
    int more = 0, i;
    for (i = 0; i < 256 && s_recv_pull(self) == 1; i++)
        ;
    more |= i == 256;
    for (i = 0; i < 256 && s_recv_router(self); i++)
        ;
    more |= i == 256;
    return more;
}

/* A worker thread: run the handler for each job and push the reply. */
static void *s_worker_run(void *arg)
{
    kvc_fwd_server_t *self = arg;
    zsock_t *push = zsock_new(ZMQ_PUSH);
    if (push) {
        zsock_set_sndhwm(push, 0);
        zsock_set_linger(push, -1);
        if (zsock_connect(push, "%s", self->reply_ep) != 0)
            zsock_destroy(&push);
    }
    int stopping;
    s_job_t *job;
    while ((job = s_take(self, &stopping)) != NULL) {
        kvc_fwd_resp_t r;
        memset(&r, 0, sizeof r);
        uint32_t t = job->d.req.timeout_ms;
        if (stopping) {
            r.code = KVC_FWD_SHUTDOWN;
            kvc_strlcpy(r.error, "server shutting down", sizeof r.error);
            s_count(self, &self->stats.shutdown, 1);
        } else if (t && kvc_elapsed(kvc_clock_mono_ms(), job->received_ms) > t) {
            r.code = KVC_FWD_TIMEOUT; /* the client has given up: do not run it */
            snprintf(r.error, sizeof r.error, "waited over %u ms in the server's queue", t);
            s_count(self, &self->stats.expired, 1);
        } else {
            self->o.handle(self->o.handle_arg, job->member, &job->d.req, &r);
            s_count(self, &self->stats.answered, 1);
        }
        uint8_t *buf;
        size_t len;
        int rc = s_encode_reply(self, job, &r, &buf, &len);
        if (rc != KVC_OK || !push ||
            s_send_pair(zsock_resolve(push), job->routing, job->rlen, buf, len, 0) != 0) {
            if (rc == KVC_OK && !push)
                kvc_free(buf);
            s_count(self, &self->stats.send_failed, 1);
        }
        kvc_fwd_decoded_free(&job->d);
        kvc_free(job);
    }
    zsock_destroy(&push);
    return NULL;
}

/* Frees what new made; threads must be stopped already. */
static void s_free(kvc_fwd_server_t *self)
{
    zsock_destroy(&self->router);
    zsock_destroy(&self->pull);
    zsock_destroy(&self->ctl);
    kvc_fwd_auth_destroy(&self->auth);
    while (self->head) {
        s_job_t *j = self->head;
        self->head = j->next;
        kvc_fwd_decoded_free(&j->d);
        kvc_free(j);
    }
    kvc_free(self->workers);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->stats_mu);
    kvc_free(self);
}

/* Stops the workers (queued jobs are answered SHUTDOWN), then the thread. */
static void s_stop(kvc_fwd_server_t *self)
{
    pthread_mutex_lock(&self->mu);
    self->stopping = 1;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    for (int i = 0; i < self->n_workers; i++)
        pthread_join(self->workers[i], NULL);
    self->n_workers = 0;
    if (self->thread_started) {
        zmq_send(zsock_resolve(self->ctl), "", 0, 0);
        pthread_join(self->thread, NULL);
        self->thread_started = 0;
    } else if (self->o.driven && self->router && self->pull) {
        /* The driver has stopped: the last workers' replies go out from here. */
        while (s_recv_pull(self) == 1)
            ;
    }
}

kvc_fwd_server_t *kvc_fwd_server_new(const kvc_fwd_server_opts_t *o, kvc_err_t *err)
{
    if (!o || !o->bind || !o->handle || strlen(o->bind) >= KVC_FWD_ENDPOINT_MAX) {
        kvc_err_set(err, KVC_EINVAL, "forward server: bind endpoint and handler are required");
        return NULL;
    }
    if (o->workers < 0 || o->workers > 256 || o->max_queued > 1000000 ||
        o->max_request_bytes > (1u << 30)) {
        kvc_err_set(err, KVC_EINVAL,
                    "forward server: workers, max_queued or max_request_bytes out of range");
        return NULL;
    }
    kvc_fwd_server_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "forward server: out of memory");
        return NULL;
    }
    self->o = *o;
    kvc_strlcpy(self->bind, o->bind, sizeof self->bind);
    self->o.bind = self->bind;
    if (!self->o.workers)
        self->o.workers = 4;
    if (!self->o.max_request_bytes)
        self->o.max_request_bytes = KVC_FWD_MAX_BODY_DEFAULT;
    if (!self->o.max_queued)
        self->o.max_queued = 256;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    pthread_mutex_init(&self->stats_mu, NULL);
    self->auth = kvc_fwd_auth_new(o->trust, o->auth_cache);
    self->workers = kvc_calloc((size_t)self->o.workers, sizeof *self->workers);
    self->router = zsock_new(ZMQ_ROUTER);
    self->pull = zsock_new(ZMQ_PULL);
    self->ctl = zsock_new(ZMQ_PUSH);
    if (!self->auth || !self->workers || !self->router || !self->pull || !self->ctl) {
        kvc_err_set(err, KVC_ENOMEM, "forward server: out of memory");
        s_free(self);
        return NULL;
    }
    void *r = zsock_resolve(self->router);
    int hwm = (int)(self->o.max_queued * 4 < 1000 ? 1000 : self->o.max_queued * 4);
    int64_t maxmsg = (int64_t)(self->o.max_request_bytes + S_EXTRA_BYTES);
    int one = 1, linger = 200;
    zmq_setsockopt(r, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(r, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(r, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(r, ZMQ_CURVE_SECRETKEY, self->o.secret_key, 32);
    zsock_set_zap_domain(self->router, "kvc");
    if (zsock_bind(self->router, "%s", self->bind) < 0) {
        kvc_err_set(err, KVC_EIO, "forward server: cannot bind %s: %s", self->bind,
                    zmq_strerror(zmq_errno()));
        s_free(self);
        return NULL;
    }
    char *last = zsock_last_endpoint(self->router);
    kvc_strlcpy(self->endpoint, last ? last : self->bind, sizeof self->endpoint);
    zstr_free(&last);
    /* A counter, not the address: a destroyed server's inproc endpoint stays
     * bound until ZeroMQ reaps its socket, and malloc may hand the next
     * server the same address. */
    static atomic_uint_fast64_t serial;
    snprintf(self->reply_ep, sizeof self->reply_ep, "inproc://kvc-fwd-replies-%llu",
             (unsigned long long)atomic_fetch_add(&serial, 1));
    zsock_set_rcvhwm(self->pull, 0);
    zsock_set_linger(self->ctl, 0);
    if (zsock_bind(self->pull, "%s", self->reply_ep) < 0 ||
        zsock_connect(self->ctl, "%s", self->reply_ep) < 0) {
        kvc_err_set(err, KVC_EIO, "forward server: cannot make the reply pipe");
        s_free(self);
        return NULL;
    }
    if (!self->o.driven) {
        if (pthread_create(&self->thread, NULL, s_server_run, self) != 0) {
            kvc_err_set(err, KVC_ENOMEM, "forward server: cannot start a thread");
            s_free(self);
            return NULL;
        }
        self->thread_started = 1;
    }
    for (int i = 0; i < self->o.workers; i++) {
        if (pthread_create(&self->workers[i], NULL, s_worker_run, self) != 0) {
            kvc_err_set(err, KVC_ENOMEM, "forward server: cannot start worker %d", i);
            s_stop(self);
            s_free(self);
            return NULL;
        }
        self->n_workers++;
    }
    return self;
}

const char *kvc_fwd_server_endpoint(const kvc_fwd_server_t *self)
{
    return self->endpoint;
}

void kvc_fwd_server_stats(kvc_fwd_server_t *self, kvc_fwd_server_stats_t *out)
{
    pthread_mutex_lock(&self->stats_mu);
    *out = self->stats;
    pthread_mutex_unlock(&self->stats_mu);
}

void kvc_fwd_server_destroy(kvc_fwd_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_stop(*self_p);
    s_free(*self_p);
    *self_p = NULL;
}
