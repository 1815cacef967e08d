/*
 * control.c - one request, one reply over a DEALER to the peer's control
 * ROUTER. Bounded wait, bounded reply size; never blocks forever.
 */
#include "pb_alloc.h"
#include "control.h"

#include "config.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define KVC_CONTROL_REPLY_MAX (16u << 20)
#define KVC_CONTROL_HOST_MAX 256

/*
 * ZeroMQ reconnects silently to a TCP endpoint nobody listens on, so the
 * caller would wait its whole timeout to learn nothing. One plain TCP
 * connect first tells a refused or unroutable address at once, with the
 * address in the message. Anything else (a listener that does not speak
 * ZMTP) still ends in the reply timeout.
 */
static int s_tcp_reachable(const char *endpoint, int timeout_ms, kvc_err_t *err)
{
    const char *hp = endpoint + 6; /* after "tcp://" */
    const char *colon = strrchr(hp, ':');
    char host[KVC_CONTROL_HOST_MAX];
    if (!colon || colon == hp || (size_t)(colon - hp) >= sizeof host || !colon[1])
        return kvc_err_set(err, KVC_EINVAL, "invalid control endpoint %s (want tcp://HOST:PORT)",
                           endpoint);
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = 0;
    if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1] */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(host, colon + 1, &hints, &res);
    if (gai != 0)
        return kvc_err_set(err, KVC_EUNAVAIL, "cannot reach the peer at %s: %s", endpoint,
                           gai_strerror(gai));
    int rc = KVC_EUNAVAIL, why = 0;
    for (struct addrinfo *ai = res; ai && rc; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            why = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            rc = KVC_OK;
        } else if (errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int n = poll(&pfd, 1, timeout_ms);
            int soerr = 0;
            socklen_t len = sizeof soerr;
            if (n == 0)
                why = ETIMEDOUT;
            else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
                why = errno;
            else if (soerr)
                why = soerr;
            else
                rc = KVC_OK;
        } else {
            why = errno;
        }
        close(fd);
    }
    freeaddrinfo(res);
    if (rc == KVC_OK)
        return KVC_OK;
    if (why == ETIMEDOUT)
        return kvc_err_set(err, KVC_ETIMEDOUT, "no answer from the peer at %s within %d ms",
                           endpoint, timeout_ms);
    return kvc_err_set(err, KVC_EUNAVAIL, "cannot reach the peer at %s: %s", endpoint,
                       strerror(why));
}

int kvc_control_call(const char *endpoint, const char *command, const char *const *args,
                     size_t n_args, int timeout_ms, Kvc__Ctl__Reply **out, kvc_err_t *err)
{
    return kvc_control_call_payload(endpoint, command, args, n_args, NULL, 0, timeout_ms, out,
                                    err);
}

int kvc_control_call_payload(const char *endpoint, const char *command, const char *const *args,
                             size_t n_args, const uint8_t *payload, size_t payload_len,
                             int timeout_ms, Kvc__Ctl__Reply **out, kvc_err_t *err)
{
    *out = NULL;
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        struct stat sb;
        if (stat(endpoint + 6, &sb) != 0)
            return kvc_err_set(err, KVC_EUNAVAIL, "no peer is running at %s (no socket file)",
                               endpoint);
    } else if (strncmp(endpoint, "tcp://", 6) == 0) {
        int rc = s_tcp_reachable(endpoint, timeout_ms, err);
        if (rc)
            return rc;
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
    req.payload.data = (uint8_t *)payload;
    req.payload.len = payload ? payload_len : 0;
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
    *out = kvc__ctl__reply__unpack(kvc_pb_allocator(), zframe_size(reply), zframe_data(reply));
    zframe_destroy(&reply);
    if (!*out)
        return kvc_err_set(err, KVC_EPARSE, "malformed reply from %s", endpoint);
    if ((*out)->code != 0) {
        rc = kvc_err_set(err, (*out)->code, "%s", (*out)->error);
        kvc__ctl__reply__free_unpacked(*out, kvc_pb_allocator());
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
        kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return rc;
}

int kvc_control_endpoint(const char *config, const char *control, char *out, size_t size,
                         kvc_err_t *err)
{
    if (control && control[0])
        return kvc_strlcpy(out, control, size)
                   ? kvc_err_set(err, KVC_EINVAL, "%.200s: endpoint too long", control)
                   : KVC_OK;
    if (config && config[0]) {
        kvc_config_t *cfg = kvc_malloc(sizeof *cfg);
        if (!cfg)
            return kvc_err_set(err, KVC_ENOMEM, "out of memory");
        kvc_config_defaults(cfg);
        int rc = kvc_config_load(cfg, config, err);
        if (rc == 0) {
            kvc_config_finish(cfg);
            kvc_strlcpy(out, cfg->control_endpoint, size);
        }
        kvc_free(cfg);
        return rc;
    }
    const char *env = getenv("KVC_CONTROL");
    if (env && *env)
        return kvc_strlcpy(out, env, size)
                   ? kvc_err_set(err, KVC_EINVAL, "KVC_CONTROL: endpoint too long")
                   : KVC_OK;
    return kvc_err_set(err, KVC_EINVAL,
                       "no peer to talk to: use --config FILE, --control ENDPOINT or set "
                       "KVC_CONTROL");
}
