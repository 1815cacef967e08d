/*
 * zap.c - the ZAP handler shared by every CURVE server of the process.
 *
 * It decides on the client key alone and must never block: a slow answer
 * stalls every handshake of every CURVE server in the process. It never
 * logs (a refused key is reported to the caller, who counts it).
 */
#include "zap.h"

#include "credential.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

int kvc_zap_handle(zsock_t *rep, kvc_zap_revoked_fn revoked, void *arg,
                   kvc_zap_refused_fn on_revoked, void *arg2)
{
    zmsg_t *req = zmsg_recv(rep);
    if (!req)
        return KVC_EAGAIN;
    char *version = zmsg_popstr(req);
    char *request_id = zmsg_popstr(req);
    char *domain = zmsg_popstr(req);
    char *address = zmsg_popstr(req);
    char *identity = zmsg_popstr(req);
    char *mechanism = zmsg_popstr(req);
    zframe_t *client_key = zmsg_pop(req);
    const char *status = "200", *text = "OK";
    char user[65] = "";
    if (!version || strcmp(version, "1.0") != 0 || !mechanism) {
        status = "500";
        text = "bad ZAP request";
    } else if (strcmp(mechanism, "CURVE") == 0) {
        if (!client_key || zframe_size(client_key) != 32) {
            status = "400";
            text = "bad key";
        } else if (revoked && revoked(arg, zframe_data(client_key))) {
            status = "400";
            text = "revoked";
            if (on_revoked) {
                kvc_key_hex(zframe_data(client_key), user);
                on_revoked(arg2, user);
            }
            user[0] = '\0';
        } else {
            kvc_key_hex(zframe_data(client_key), user);
        }
    }
    zmsg_t *reply = zmsg_new();
    zmsg_addstr(reply, "1.0");
    zmsg_addstr(reply, request_id ? request_id : "");
    zmsg_addstr(reply, status);
    zmsg_addstr(reply, text);
    zmsg_addstr(reply, user);
    zmsg_addmem(reply, "", 0);
    zmsg_send(&reply, rep);
    zstr_free(&version);
    zstr_free(&request_id);
    zstr_free(&domain);
    zstr_free(&address);
    zstr_free(&identity);
    zstr_free(&mechanism);
    zframe_destroy(&client_key);
    zmsg_destroy(&req);
    return 0;
}

struct kvc_zap_thread {
    zsock_t *rep;
    zsock_t *stop_tx, *stop_rx; /* inproc PAIR: stop_tx is the caller's */
    pthread_t thread;
    kvc_zap_revoked_fn revoked;
    void *arg;
    kvc_zap_refused_fn on_revoked;
    void *arg2;
    atomic_uint_fast64_t refused;
};

/* Counts a refusal, then tells the caller's callback. */
static void s_refused(void *arg, const char *key_hex)
{
    kvc_zap_thread_t *self = arg;
    atomic_fetch_add(&self->refused, 1);
    if (self->on_revoked)
        self->on_revoked(self->arg2, key_hex);
}

/* The thread: serve ZAP until the stop pipe speaks. */
static void *s_run(void *arg)
{
    kvc_zap_thread_t *self = arg;
    zmq_pollitem_t items[] = {
        {zsock_resolve(self->stop_rx), 0, ZMQ_POLLIN, 0},
        {zsock_resolve(self->rep), 0, ZMQ_POLLIN, 0},
    };
    for (;;) {
        if (zmq_poll(items, 2, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            break;
        if (items[1].revents & ZMQ_POLLIN)
            kvc_zap_handle(self->rep, self->revoked, self->arg, s_refused, self);
    }
    return NULL;
}

kvc_zap_thread_t *kvc_zap_thread_start(kvc_zap_revoked_fn revoked, void *arg,
                                       kvc_zap_refused_fn on_revoked, void *arg2, kvc_err_t *err)
{
    kvc_zap_thread_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "zap: out of memory");
        return NULL;
    }
    self->revoked = revoked;
    self->arg = arg;
    self->on_revoked = on_revoked;
    self->arg2 = arg2;
    atomic_init(&self->refused, 0);
    char pipe[64];
    static atomic_uint_fast64_t serial; /* not the address: see fwd_server.c */
    snprintf(pipe, sizeof pipe, "inproc://kvc-zap-stop-%llu",
             (unsigned long long)atomic_fetch_add(&serial, 1));
    self->rep = zsock_new(ZMQ_REP);
    self->stop_rx = zsock_new(ZMQ_PAIR);
    self->stop_tx = zsock_new(ZMQ_PAIR);
    if (!self->rep || !self->stop_rx || !self->stop_tx) {
        kvc_err_set(err, KVC_ENOMEM, "zap: cannot create sockets");
        goto fail;
    }
    if (zsock_bind(self->rep, KVC_ZAP_ENDPOINT) < 0) {
        kvc_err_set(err, KVC_EEXIST, "zap: cannot bind %s: %s", KVC_ZAP_ENDPOINT,
                    zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zsock_bind(self->stop_rx, "%s", pipe) < 0 || zsock_connect(self->stop_tx, "%s", pipe) < 0) {
        kvc_err_set(err, KVC_EIO, "zap: cannot make the stop pipe");
        goto fail;
    }
    if (pthread_create(&self->thread, NULL, s_run, self) != 0) {
        kvc_err_set(err, KVC_ENOMEM, "zap: cannot start a thread");
        goto fail;
    }
    return self;
fail:
    zsock_destroy(&self->rep);
    zsock_destroy(&self->stop_rx);
    zsock_destroy(&self->stop_tx);
    kvc_free(self);
    return NULL;
}

uint64_t kvc_zap_thread_refused(kvc_zap_thread_t *self)
{
    return self ? (uint64_t)atomic_load(&self->refused) : 0;
}

void kvc_zap_thread_stop(kvc_zap_thread_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_zap_thread_t *self = *self_p;
    zstr_send(self->stop_tx, "$TERM");
    pthread_join(self->thread, NULL);
    zsock_destroy(&self->rep);
    zsock_destroy(&self->stop_rx);
    zsock_destroy(&self->stop_tx);
    kvc_free(self);
    *self_p = NULL;
}
