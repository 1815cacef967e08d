/*
 * fwd_client.c - the forwarding client: callers on any thread submit
 * requests; one I/O thread owns a CURVE DEALER per destination, sends them,
 * matches replies to requests by id and enforces each request's timeout.
 *
 * Path of a request: the caller encodes it (so the I/O thread only moves
 * bytes), takes a slot and queues it under the client's mutex, and wakes the
 * I/O thread through an eventfd polled together with the DEALERs; there are
 * no sleeps or polling intervals. The id carries the slot number, so a reply
 * finds its request without a table lookup, and a reply is accepted only
 * from the destination the request went to.
 *
 * It must never call a done callback twice or with the mutex held, never
 * trust a reply's lengths or id, and never log a credential or a body.
 */
#include "fwd.h"

#include "clock.h"
#include "credential.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define S_SLOT_BITS 16
#define S_NO_SLOT UINT32_MAX

/* One open DEALER. */
typedef struct {
    char name[KVC_FWD_ENDPOINT_MAX + 72]; /* "KEYHEX|ENDPOINT": the table's key */
    char endpoint[KVC_FWD_ENDPOINT_MAX];
    zsock_t *dealer;
    size_t pending;
    uint64_t last_used_ms;
    int ep; /* driven mode: the epoll set its ZMQ_FD is in, else -1 */
} s_dest_t;

enum { S_FREE, S_RESERVED, S_QUEUED, S_ACTIVE };

/* One request between submit and done. */
typedef struct {
    int state;     /* under mu: FREE/RESERVED (caller's), QUEUED, ACTIVE (I/O thread's) */
    uint32_t next; /* free list or submission queue link */
    uint64_t id;
    uint8_t *buf; /* the encoded request until it is sent */
    size_t len;
    char endpoint[KVC_FWD_ENDPOINT_MAX];
    uint8_t server_key[32];
    uint32_t timeout_ms;
    kvc_fwd_done_fn done;
    void *arg;
    /* I/O thread only */
    uint64_t deadline_ms;
    s_dest_t *dest;
    size_t heap_ix;
} s_slot_t;

struct kvc_fwd_client {
    kvc_fwd_client_opts_t o;
    uint8_t cred[KVC_CRED_BLOB_MAX];
    size_t cred_len;
    int wake_fd;
    pthread_t thread;
    s_slot_t *slots;
    size_t n_slots;
    /* under mu */
    pthread_mutex_t mu;
    uint32_t free_head;
    uint32_t q_head, q_tail;
    uint64_t gen;
    int closed;
    kvc_fwd_client_stats_t stats;
    /* I/O thread only */
    uint64_t *active_id; /* per slot: id of the ACTIVE request, 0 = none */
    uint32_t *heap;      /* slots by deadline */
    size_t heap_len;
    zhashx_t *dests; /* name -> s_dest_t */
    zmq_pollitem_t *items;
    s_dest_t **item_dest;
    int dirty;
    uint64_t next_idle; /* next idle sweep (I/O thread, or the driver) */
    int ep;             /* driven mode: epoll set of the DEALERs' ZMQ_FDs */
};

/* zmq_msg_init_data's destructor for kvc_malloc'd buffers. */
static void s_zfree(void *data, void *hint)
{
    (void)hint;
    kvc_free(data);
}

/* --- the deadline heap (I/O thread) ----------------------------------- */

/* Does slot a come due before slot b? */
static int s_before(kvc_fwd_client_t *self, uint32_t a, uint32_t b)
{
    const s_slot_t *x = &self->slots[a], *y = &self->slots[b];
    return x->deadline_ms < y->deadline_ms || (x->deadline_ms == y->deadline_ms && x->id < y->id);
}

/* Puts heap entry i in place j. */
static void s_heap_set(kvc_fwd_client_t *self, size_t j, uint32_t slot)
{
    self->heap[j] = slot;
    self->slots[slot].heap_ix = j;
}

/* Restores the heap order around position i. */
static void s_heap_fix(kvc_fwd_client_t *self, size_t i)
{
    uint32_t s = self->heap[i];
    while (i > 0 && s_before(self, s, self->heap[(i - 1) / 2])) {
        s_heap_set(self, i, self->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        uint32_t best = s;
        if (l < self->heap_len && s_before(self, self->heap[l], best))
            m = l, best = self->heap[l];
        if (r < self->heap_len && s_before(self, self->heap[r], best))
            m = r, best = self->heap[r];
        if (m == i)
            break;
        s_heap_set(self, i, best);
        i = m;
    }
    s_heap_set(self, i, s);
}

static void s_heap_push(kvc_fwd_client_t *self, uint32_t slot)
{
    s_heap_set(self, self->heap_len++, slot);
    s_heap_fix(self, self->heap_len - 1);
}

static void s_heap_remove(kvc_fwd_client_t *self, uint32_t slot)
{
    size_t i = self->slots[slot].heap_ix;
    self->heap_len--;
    if (i != self->heap_len) {
        s_heap_set(self, i, self->heap[self->heap_len]);
        s_heap_fix(self, i);
    }
}

/* --- slots --------------------------------------------------------------- */

/* Returns a slot to the free list (takes mu). */
static void s_slot_release(kvc_fwd_client_t *self, uint32_t ix)
{
    pthread_mutex_lock(&self->mu);
    s_slot_t *s = &self->slots[ix];
    s->state = S_FREE;
    s->id = 0;
    s->next = self->free_head;
    self->free_head = ix;
    pthread_mutex_unlock(&self->mu);
}

/* Finishes slot ix (I/O thread): frees it, then tells its caller *resp. */
static void s_complete(kvc_fwd_client_t *self, uint32_t ix, kvc_fwd_resp_t *resp)
{
    s_slot_t *s = &self->slots[ix];
    if (s->state == S_ACTIVE) {
        s_heap_remove(self, ix);
        self->active_id[ix] = 0;
        if (s->dest) {
            s->dest->pending--;
            s->dest = NULL;
        }
    }
    kvc_free(s->buf);
    s->buf = NULL;
    kvc_fwd_done_fn done = s->done;
    void *arg = s->arg;
    pthread_mutex_lock(&self->mu);
    switch (resp->code) {
    case KVC_FWD_TIMEOUT:
        self->stats.timeouts++;
        break;
    case KVC_FWD_UNREACHABLE:
        self->stats.unreachable++;
        break;
    case KVC_FWD_SHUTDOWN:
        self->stats.shutdown++;
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&self->mu);
    s_slot_release(self, ix);
    done(arg, resp);
    kvc_fwd_resp_clear(resp);
}

/* Finishes slot ix with a code of the client's own and a message. */
static void s_fail(kvc_fwd_client_t *self, uint32_t ix, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_fail(kvc_fwd_client_t *self, uint32_t ix, int code, const char *fmt, ...)
{
    kvc_fwd_resp_t r;
    memset(&r, 0, sizeof r);
    r.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r.error, sizeof r.error, fmt, ap);
    va_end(ap);
    s_complete(self, ix, &r);
}

/* --- destinations (I/O thread) ------------------------------------------- */

/* zhashx destructor of a destination. */
static void s_dest_destroy(void **item)
{
    s_dest_t *d = *item;
    if (!d)
        return;
    if (d->ep >= 0 && d->dealer) /* before the socket (and its fd) go */
        epoll_ctl(d->ep, EPOLL_CTL_DEL, zsock_fd(d->dealer), NULL);
    zsock_destroy(&d->dealer);
    kvc_free(d);
    *item = NULL;
}

/* Opens a DEALER to endpoint for server_key, or NULL with a reason. */
static s_dest_t *s_dest_open(kvc_fwd_client_t *self, const char *name, const char *endpoint,
                             const uint8_t server_key[32], char *why, size_t why_size)
{
    s_dest_t *d = kvc_calloc(1, sizeof *d);
    if (!d) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    kvc_strlcpy(d->name, name, sizeof d->name);
    kvc_strlcpy(d->endpoint, endpoint, sizeof d->endpoint);
    d->ep = -1;
    d->dealer = zsock_new(ZMQ_DEALER);
    if (!d->dealer) {
        snprintf(why, why_size, "cannot create a socket");
        kvc_free(d);
        return NULL;
    }
    void *s = zsock_resolve(d->dealer);
    int hwm = (int)self->n_slots, zero = 0;
    int64_t maxmsg = (int64_t)(self->o.max_reply_bytes + 65536);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_key, 32);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, self->o.public_key, 32);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, self->o.secret_key, 32);
    if (zmq_connect(s, endpoint) != 0) {
        snprintf(why, why_size, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zsock_destroy(&d->dealer);
        kvc_free(d);
        return NULL;
    }
    if (self->o.driven) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = d};
        if (epoll_ctl(self->ep, EPOLL_CTL_ADD, zsock_fd(d->dealer), &ev) != 0) {
            snprintf(why, why_size, "cannot watch a socket: %s", strerror(errno));
            zsock_destroy(&d->dealer);
            kvc_free(d);
            return NULL;
        }
        d->ep = self->ep;
    }
    return d;
}

/* Closes the least recently used idle destination; 0 if there was none. */
static int s_evict_idle(kvc_fwd_client_t *self)
{
    s_dest_t *victim = NULL;
    for (s_dest_t *d = zhashx_first(self->dests); d; d = zhashx_next(self->dests))
        if (d->pending == 0 && (!victim || d->last_used_ms < victim->last_used_ms))
            victim = d;
    if (!victim)
        return 0;
    zhashx_delete(self->dests, victim->name);
    self->dirty = 1;
    return 1;
}

/* Closes destinations idle for idle_ms. */
static void s_close_idle(kvc_fwd_client_t *self, uint64_t now)
{
    zlistx_t *names = NULL;
    for (s_dest_t *d = zhashx_first(self->dests); d; d = zhashx_next(self->dests)) {
        if (d->pending == 0 && kvc_elapsed(now, d->last_used_ms) >= self->o.idle_ms) {
            if (!names)
                names = zlistx_new();
            if (names)
                zlistx_add_end(names, d->name);
        }
    }
    if (!names)
        return;
    for (char *n = zlistx_first(names); n; n = zlistx_next(names))
        zhashx_delete(self->dests, n);
    zlistx_destroy(&names);
    self->dirty = 1;
}

/* Sends a queued slot on its destination's DEALER (I/O thread). */
static void s_send(kvc_fwd_client_t *self, uint32_t ix, uint64_t now)
{
    s_slot_t *s = &self->slots[ix];
    char name[sizeof((s_dest_t *)0)->name];
    char hex[65];
    kvc_key_hex(s->server_key, hex);
    snprintf(name, sizeof name, "%s|%s", hex, s->endpoint);
    s_dest_t *d = zhashx_lookup(self->dests, name);
    if (!d) {
        if (zhashx_size(self->dests) >= self->o.max_destinations && !s_evict_idle(self)) {
            s_fail(self, ix, KVC_FWD_UNREACHABLE, "too many destinations with requests pending");
            return;
        }
        char why[KVC_FWD_ENDPOINT_MAX + 96];
        d = s_dest_open(self, name, s->endpoint, s->server_key, why, sizeof why);
        if (!d) {
            s_fail(self, ix, KVC_FWD_UNREACHABLE, "%s", why);
            return;
        }
        zhashx_insert(self->dests, name, d);
        self->dirty = 1;
    }
    zmq_msg_t m;
    if (zmq_msg_init_data(&m, s->buf, s->len, s_zfree, NULL) != 0) {
        s_fail(self, ix, KVC_FWD_UNREACHABLE, "out of memory");
        return;
    }
    s->buf = NULL; /* the message owns it now */
    if (zmq_msg_send(&m, zsock_resolve(d->dealer), ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        s_fail(self, ix, KVC_FWD_UNREACHABLE, "queue to %s is full", s->endpoint);
        return;
    }
    s->state = S_ACTIVE; /* the I/O thread's now; callers never read it */
    s->dest = d;
    s->deadline_ms = now + s->timeout_ms;
    d->pending++;
    d->last_used_ms = now;
    self->active_id[ix] = s->id;
    s_heap_push(self, ix);
}

/* Reads the replies waiting on one DEALER (I/O thread). Returns 1 when it
 * stopped at its batch bound with more perhaps waiting, else 0. */
static int s_on_dest(kvc_fwd_client_t *self, s_dest_t *d)
{
    void *sock = zsock_resolve(d->dealer);
    for (int n = 0; n < 256; n++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return 0;
        }
        int extra = 0;
        while (zmq_msg_more(&m)) { /* a reply is one frame */
            extra = 1;
            zmq_msg_close(&m);
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sock, 0) < 0)
                break;
        }
        kvc_fwd_resp_t r;
        memset(&r, 0, sizeof r);
        uint64_t id = 0;
        int rc = extra ? KVC_EPARSE
                       : kvc_fwd_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m),
                                              self->o.max_reply_bytes, &id, &r);
        zmq_msg_close(&m);
        uint32_t ix = (uint32_t)(id & ((1u << S_SLOT_BITS) - 1));
        int mine = rc != KVC_EPARSE && ix < self->n_slots && id != 0 && self->active_id[ix] == id &&
                   self->slots[ix].dest == d;
        if (!mine) {
            pthread_mutex_lock(&self->mu);
            if (rc == KVC_OK)
                self->stats.late++; /* timed out already, or an id we never sent here */
            else
                self->stats.bad_reply++;
            pthread_mutex_unlock(&self->mu);
            kvc_fwd_resp_clear(&r);
            continue;
        }
        pthread_mutex_lock(&self->mu);
        if (rc == KVC_OK)
            self->stats.answered++;
        else
            self->stats.bad_reply++;
        pthread_mutex_unlock(&self->mu);
        if (rc != KVC_OK) {
            s_fail(self, ix, KVC_FWD_MALFORMED, "bad reply from %s", d->endpoint);
            continue;
        }
        d->last_used_ms = kvc_clock_mono_ms();
        s_complete(self, ix, &r);
    }
    return 1;
}

/* Rebuilds the poll set: the wake fd, then one item per DEALER. */
static int s_rebuild(kvc_fwd_client_t *self)
{
    size_t n = 1 + zhashx_size(self->dests);
    zmq_pollitem_t *items = kvc_realloc(self->items, n * sizeof *items);
    if (!items)
        return -1;
    self->items = items;
    s_dest_t **map = kvc_realloc(self->item_dest, n * sizeof *map);
    if (!map)
        return -1;
    self->item_dest = map;
    memset(items, 0, n * sizeof *items);
    items[0].fd = self->wake_fd;
    items[0].events = ZMQ_POLLIN;
    map[0] = NULL;
    size_t i = 1;
    for (s_dest_t *d = zhashx_first(self->dests); d; d = zhashx_next(self->dests), i++) {
        items[i].socket = zsock_resolve(d->dealer);
        items[i].events = ZMQ_POLLIN;
        map[i] = d;
    }
    self->dirty = 0;
    return (int)n;
}

/* Ends every request still here with SHUTDOWN (the I/O thread as it
 * exits, or destroy in driven mode) and refuses new ones. */
static void s_shutdown(kvc_fwd_client_t *self)
{
    while (self->heap_len)
        s_fail(self, self->heap[0], KVC_FWD_SHUTDOWN, "client shutting down");
    pthread_mutex_lock(&self->mu);
    self->closed = 1;
    uint32_t q = self->q_head;
    self->q_head = self->q_tail = S_NO_SLOT;
    pthread_mutex_unlock(&self->mu);
    while (q != S_NO_SLOT) {
        uint32_t ix = q;
        q = self->slots[ix].next;
        s_fail(self, ix, KVC_FWD_SHUTDOWN, "client shutting down");
    }
}

/* Sends what callers queued (or fails it, once the client is closed).
 * Returns whether it is closed. */
static int s_send_queued(kvc_fwd_client_t *self)
{
    pthread_mutex_lock(&self->mu);
    uint32_t q = self->q_head;
    self->q_head = self->q_tail = S_NO_SLOT;
    int closed = self->closed;
    pthread_mutex_unlock(&self->mu);
    uint64_t now = kvc_clock_mono_ms();
    while (q != S_NO_SLOT) {
        uint32_t ix = q;
        q = self->slots[ix].next;
        if (closed)
            s_fail(self, ix, KVC_FWD_SHUTDOWN, "client shutting down");
        else
            s_send(self, ix, now);
    }
    return closed;
}

/* Ends the requests past their deadline and, when due, closes idle
 * destinations. */
static void s_expire(kvc_fwd_client_t *self, uint64_t now)
{
    while (self->heap_len && self->slots[self->heap[0]].deadline_ms <= now) {
        uint32_t ix = self->heap[0];
        s_slot_t *s = &self->slots[ix];
        s_fail(self, ix, KVC_FWD_TIMEOUT, "no answer from %s in %u ms", s->endpoint,
               s->timeout_ms);
    }
    if (now >= self->next_idle) {
        s_close_idle(self, now);
        self->next_idle = now + (self->o.idle_ms > 1000 ? self->o.idle_ms / 4 : self->o.idle_ms);
    }
}

/* How long until the next deadline or idle sweep, in ms; -1: none. */
static long s_wait_ms(const kvc_fwd_client_t *self, uint64_t now)
{
    long wait = -1;
    if (self->heap_len) {
        uint64_t due = self->slots[self->heap[0]].deadline_ms;
        wait = (long)(due > now ? due - now : 0);
    }
    if (zhashx_size(self->dests)) {
        long idle = (long)(self->next_idle > now ? self->next_idle - now : 0);
        if (wait < 0 || idle < wait)
            wait = idle;
    }
    return wait;
}

/* The I/O thread. */
static void *s_run(void *arg)
{
    kvc_fwd_client_t *self = arg;
    int n_items = 1;
    for (;;) {
        if (self->dirty || !self->items) {
            int n = s_rebuild(self);
            if (n > 0)
                n_items = n;
        }
        if (zmq_poll(self->items, n_items, s_wait_ms(self, kvc_clock_mono_ms())) < 0 &&
            zmq_errno() != EINTR)
            break;
        /* Replies, from the DEALERs this poll saw (the table may change below). */
        for (int i = 1; i < n_items; i++)
            if (self->items[i].revents & ZMQ_POLLIN)
                s_on_dest(self, self->item_dest[i]);
        if (self->items[0].revents & ZMQ_POLLIN) {
            uint64_t v;
            if (read(self->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
                break;
        }
        if (s_send_queued(self))
            break;
        s_expire(self, kvc_clock_mono_ms());
    }
    s_shutdown(self);
    return NULL;
}

/* Driven mode, on the driver's thread (see fwd.h). */
int kvc_fwd_client_pump(kvc_fwd_client_t *self)
{
    if (!self->o.driven)
        return -1; /* its I/O thread does this */
    int more = 0;
    struct epoll_event ev[64];
    int n = epoll_wait(self->ep, ev, 64, 0);
    for (int i = 0; i < n; i++)
        more |= s_on_dest(self, ev[i].data.ptr);
    uint64_t v;
    if (read(self->wake_fd, &v, sizeof v) < 0) {
        /* EAGAIN: no wake-up pending */
    }
    s_send_queued(self);
    /* A send can take the signal of its socket's ZMQ_FD: read every DEALER
     * that is owed replies, whatever epoll said. */
    for (s_dest_t *d = zhashx_first(self->dests); d; d = zhashx_next(self->dests))
        if (d->pending)
            more |= s_on_dest(self, d);
    uint64_t now = kvc_clock_mono_ms();
    s_expire(self, now);
    if (more)
        return 0;
    long wait = s_wait_ms(self, now);
    return wait > INT32_MAX ? INT32_MAX : (int)wait;
}

void kvc_fwd_client_fds(const kvc_fwd_client_t *self, int fds[2])
{
    fds[0] = self->o.driven ? self->wake_fd : -1; /* poll skips -1 */
    fds[1] = self->ep;
}

/* --- the public side ------------------------------------------------------ */

/* Frees what new made; the thread must not run. */
static void s_free(kvc_fwd_client_t *self)
{
    zhashx_destroy(&self->dests);
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    if (self->ep >= 0)
        close(self->ep);
    if (self->slots)
        for (size_t i = 0; i < self->n_slots; i++)
            kvc_free(self->slots[i].buf);
    kvc_free(self->slots);
    kvc_free(self->active_id);
    kvc_free(self->heap);
    kvc_free(self->items);
    kvc_free(self->item_dest);
    pthread_mutex_destroy(&self->mu);
    sodium_memzero(self->o.secret_key, sizeof self->o.secret_key);
    kvc_free(self);
}

kvc_fwd_client_t *kvc_fwd_client_new(const kvc_fwd_client_opts_t *o, kvc_err_t *err)
{
    if (!o || o->credential_len > KVC_CRED_BLOB_MAX || (o->credential_len && !o->credential) ||
        o->max_inflight > (1u << S_SLOT_BITS) || o->max_reply_bytes > (1u << 30) ||
        o->max_destinations > 65536) {
        kvc_err_set(err, KVC_EINVAL, "forward client: bad options");
        return NULL;
    }
    kvc_fwd_client_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "forward client: out of memory");
        return NULL;
    }
    self->o = *o;
    self->o.credential = NULL;
    if (o->credential_len)
        memcpy(self->cred, o->credential, o->credential_len);
    self->cred_len = o->credential_len;
    if (!self->o.max_inflight)
        self->o.max_inflight = 1024;
    if (!self->o.max_reply_bytes)
        self->o.max_reply_bytes = KVC_FWD_MAX_BODY_DEFAULT;
    if (!self->o.max_destinations)
        self->o.max_destinations = 256;
    if (!self->o.idle_ms)
        self->o.idle_ms = 60000;
    pthread_mutex_init(&self->mu, NULL);
    self->n_slots = self->o.max_inflight;
    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->ep = self->o.driven ? epoll_create1(EPOLL_CLOEXEC) : -1;
    self->next_idle = kvc_clock_mono_ms() + self->o.idle_ms;
    self->slots = kvc_calloc(self->n_slots, sizeof *self->slots);
    self->active_id = kvc_calloc(self->n_slots, sizeof *self->active_id);
    self->heap = kvc_calloc(self->n_slots, sizeof *self->heap);
    self->dests = zhashx_new();
    self->q_head = self->q_tail = S_NO_SLOT;
    if (self->wake_fd < 0 || (self->o.driven && self->ep < 0) || !self->slots || !self->active_id || !self->heap || !self->dests) {
        kvc_err_set(err, KVC_ENOMEM, "forward client: out of memory");
        s_free(self);
        return NULL;
    }
    zhashx_set_destructor(self->dests, s_dest_destroy);
    self->free_head = S_NO_SLOT;
    for (size_t i = self->n_slots; i-- > 0;) {
        self->slots[i].next = self->free_head;
        self->free_head = (uint32_t)i;
    }
    if (!self->o.driven && pthread_create(&self->thread, NULL, s_run, self) != 0) {
        kvc_err_set(err, KVC_ENOMEM, "forward client: cannot start a thread");
        s_free(self);
        return NULL;
    }
    return self;
}

/* Is endpoint something a DEALER can connect to? */
static int s_endpoint_ok(const char *ep)
{
    if (!ep || strlen(ep) >= KVC_FWD_ENDPOINT_MAX || strlen(ep) < 7)
        return 0;
    return strncmp(ep, "tcp://", 6) == 0 || strncmp(ep, "ipc://", 6) == 0 ||
           strncmp(ep, "inproc://", 9) == 0;
}

int kvc_fwd_client_submit(kvc_fwd_client_t *self, const char *endpoint,
                          const uint8_t server_key[32], const kvc_fwd_req_t *req,
                          uint32_t timeout_ms, kvc_fwd_done_fn done, void *arg)
{
    if (!self || !s_endpoint_ok(endpoint) || !server_key || !req || !done || timeout_ms == 0 ||
        timeout_ms > KVC_FWD_TIMEOUT_MAX_MS)
        return KVC_EINVAL;
    pthread_mutex_lock(&self->mu);
    if (self->closed) {
        pthread_mutex_unlock(&self->mu);
        return KVC_ESTATE;
    }
    uint32_t ix = self->free_head;
    if (ix == S_NO_SLOT) {
        pthread_mutex_unlock(&self->mu);
        return KVC_EAGAIN;
    }
    s_slot_t *s = &self->slots[ix];
    self->free_head = s->next;
    s->state = S_RESERVED;
    s->id = (++self->gen << S_SLOT_BITS) | ix;
    pthread_mutex_unlock(&self->mu);

    kvc_fwd_req_t r = *req;
    r.timeout_ms = timeout_ms;
    int rc = kvc_fwd_request_encode(self->cred, self->cred_len, s->id, &r, KVC_FWD_MAX_BODY_DEFAULT,
                                    &s->buf, &s->len);
    if (rc != KVC_OK) {
        s_slot_release(self, ix);
        return rc;
    }
    kvc_strlcpy(s->endpoint, endpoint, sizeof s->endpoint);
    memcpy(s->server_key, server_key, 32);
    s->timeout_ms = timeout_ms;
    s->done = done;
    s->arg = arg;
    s->dest = NULL;
    s->next = S_NO_SLOT;

    pthread_mutex_lock(&self->mu);
    if (self->closed) {
        pthread_mutex_unlock(&self->mu);
        kvc_free(s->buf);
        s->buf = NULL;
        s_slot_release(self, ix);
        return KVC_ESTATE;
    }
    s->state = S_QUEUED;
    int was_empty = self->q_head == S_NO_SLOT;
    if (was_empty)
        self->q_head = ix;
    else
        self->slots[self->q_tail].next = ix;
    self->q_tail = ix;
    self->stats.submitted++;
    pthread_mutex_unlock(&self->mu);
    if (was_empty) {
        uint64_t one = 1;
        if (write(self->wake_fd, &one, sizeof one) < 0) {
            /* EAGAIN: the counter is already non-zero, a wake-up is pending */
        }
    }
    return KVC_OK;
}

/* What kvc_fwd_client_call waits on. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    kvc_fwd_resp_t *out;
} s_call_t;

/* The done callback of kvc_fwd_client_call: move the outcome, wake the caller. */
static void s_call_done(void *arg, kvc_fwd_resp_t *resp)
{
    s_call_t *c = arg;
    pthread_mutex_lock(&c->mu);
    *c->out = *resp;
    resp->body = NULL; /* taken */
    c->done = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

int kvc_fwd_client_call(kvc_fwd_client_t *self, const char *endpoint, const uint8_t server_key[32],
                        const kvc_fwd_req_t *req, uint32_t timeout_ms, kvc_fwd_resp_t *out)
{
    memset(out, 0, sizeof *out);
    s_call_t c = {.done = 0, .out = out};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    int rc = kvc_fwd_client_submit(self, endpoint, server_key, req, timeout_ms, s_call_done, &c);
    if (rc == KVC_OK) {
        pthread_mutex_lock(&c.mu);
        while (!c.done)
            pthread_cond_wait(&c.cv, &c.mu);
        pthread_mutex_unlock(&c.mu);
    } else {
        out->code = KVC_FWD_UNREACHABLE;
        snprintf(out->error, sizeof out->error, "cannot submit: %s", kvc_strerror(rc));
    }
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
    return rc;
}

void kvc_fwd_client_stats(kvc_fwd_client_t *self, kvc_fwd_client_stats_t *out)
{
    pthread_mutex_lock(&self->mu);
    *out = self->stats;
    pthread_mutex_unlock(&self->mu);
}

void kvc_fwd_client_destroy(kvc_fwd_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_fwd_client_t *self = *self_p;
    pthread_mutex_lock(&self->mu);
    self->closed = 1;
    pthread_mutex_unlock(&self->mu);
    if (self->o.driven) {
        s_shutdown(self); /* the driver has stopped: the rest end here */
    } else {
        uint64_t one = 1;
        if (write(self->wake_fd, &one, sizeof one) < 0) {
            /* a wake-up is already pending */
        }
        pthread_join(self->thread, NULL);
    }
    s_free(self);
    *self_p = NULL;
}
