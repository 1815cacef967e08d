/*
 * control.c - one request, one reply over a DEALER to the peer's control
 * ROUTER. Bounded wait, bounded reply size; never blocks forever.
 */
#include "control.h"

#include <czmq.h>
#include <string.h>
#include <sys/stat.h>

#define KVC_CONTROL_REPLY_MAX (16u << 20)

int kvc_control_call(const char *endpoint, const char *command, const char *const *args,
                     size_t n_args, int timeout_ms, Kvc__Ctl__Reply **out, kvc_err_t *err)
{
    *out = NULL;
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        struct stat sb;
        if (stat(endpoint + 6, &sb) != 0)
            return kvc_err_set(err, KVC_EUNAVAIL, "no peer is running at %s (no socket file)",
                               endpoint);
    }
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    if (!sock)
        return kvc_err_set(err, KVC_EIO, "cannot create a socket");
    zsock_set_linger(sock, 0);
    if (zsock_connect(sock, "%s", endpoint) != 0) {
        zsock_destroy(&sock);
        return kvc_err_set(err, KVC_EINVAL, "invalid control endpoint %s", endpoint);
    }
    Kvc__Ctl__Request req = KVC__CTL__REQUEST__INIT;
    req.version = 1;
    req.command = (char *)command;
    Kvc__Ctl__Request__ArgsEntry entries[16];
    Kvc__Ctl__Request__ArgsEntry *entp[16];
    if (n_args > 16)
        n_args = 16;
    for (size_t i = 0; i < n_args; i++) {
        kvc__ctl__request__args_entry__init(&entries[i]);
        entries[i].key = (char *)args[2 * i];
        entries[i].value = (char *)args[2 * i + 1];
        entp[i] = &entries[i];
    }
    req.args = entp;
    req.n_args = n_args;
    size_t len = kvc__ctl__request__get_packed_size(&req);
    zframe_t *frame = zframe_new(NULL, len);
    int rc = KVC_ENOMEM;
    if (frame) {
        kvc__ctl__request__pack(&req, zframe_data(frame));
        rc = zframe_send(&frame, sock, 0) == 0 ? KVC_OK : KVC_EIO;
    }
    if (rc) {
        zsock_destroy(&sock);
        return kvc_err_set(err, rc, "cannot send to %s", endpoint);
    }
    zpoller_t *poller = zpoller_new(sock, NULL);
    void *ready = poller ? zpoller_wait(poller, timeout_ms) : NULL;
    zpoller_destroy(&poller);
    if (!ready) {
        zsock_destroy(&sock);
        return kvc_err_set(err, KVC_ETIMEDOUT, "no answer from the peer at %s within %d ms",
                           endpoint, timeout_ms);
    }
    zframe_t *reply = zframe_recv(sock);
    zsock_destroy(&sock);
    if (!reply || zframe_size(reply) > KVC_CONTROL_REPLY_MAX) {
        zframe_destroy(&reply);
        return kvc_err_set(err, KVC_EPARSE, "bad reply from %s", endpoint);
    }
    *out = kvc__ctl__reply__unpack(NULL, zframe_size(reply), zframe_data(reply));
    zframe_destroy(&reply);
    if (!*out)
        return kvc_err_set(err, KVC_EPARSE, "malformed reply from %s", endpoint);
    if ((*out)->code != 0) {
        rc = kvc_err_set(err, (*out)->code, "%s", (*out)->error);
        kvc__ctl__reply__free_unpacked(*out, NULL);
        *out = NULL;
        return rc;
    }
    return KVC_OK;
}

int kvc_control_ping(const char *endpoint, int timeout_ms)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = kvc_control_call(endpoint, "status", NULL, 0, timeout_ms, &rep, NULL);
    if (rep)
        kvc__ctl__reply__free_unpacked(rep, NULL);
    return rc;
}
