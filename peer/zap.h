/*
 * zap.h - the process's ZAP handler (ZeroMQ RFC 27) for CurveZMQ servers.
 *
 * Every CURVE server socket with ZAP domain "kvc" (the daemon's federation
 * ROUTER, the forwarding server of fwd.h) asks the one handler bound at
 * inproc://zeromq.zap.01 whether to admit a client. The handler admits any
 * CURVE client whose key is not revoked and records the key, as 64
 * lower-case hex characters, as the connection's User-Id; credentials are
 * checked per message afterwards, ZAP only knows the key.
 *
 * kvc_zap_handle serves one request on a socket the caller polls (the
 * daemon's loop); kvc_zap_thread_* runs a handler on its own thread, for
 * tests and tools that have no loop. Nothing here logs.
 */
#ifndef KVC_ZAP_H
#define KVC_ZAP_H

#include "base.h"

#include <czmq.h>
#include <stdint.h>

#define KVC_ZAP_ENDPOINT "inproc://zeromq.zap.01"

/* Is key revoked? 1 yes, 0 no. */
typedef int (*kvc_zap_revoked_fn)(void *arg, const uint8_t key[32]);
/* Told the hex key of each client refused as revoked. */
typedef void (*kvc_zap_refused_fn)(void *arg, const char *key_hex);

/*
 * Receives one ZAP request from rep (a bound REP socket) and answers it:
 * "200" with the key as User-Id for a CURVE client that revoked (may be
 * NULL) does not reject, "400 revoked" (on_revoked, may be NULL, is told)
 * or "400 bad key", "500 bad ZAP request" for a malformed request; other
 * mechanisms get "200" with an empty User-Id. Returns 0, or KVC_EAGAIN when
 * nothing could be received.
 */
int kvc_zap_handle(zsock_t *rep, kvc_zap_revoked_fn revoked, void *arg,
                   kvc_zap_refused_fn on_revoked, void *arg2);

typedef struct kvc_zap_thread kvc_zap_thread_t;

/*
 * Binds KVC_ZAP_ENDPOINT (in CZMQ's process context) and serves it on a new
 * thread with kvc_zap_handle. revoked and on_revoked (both may be NULL) run
 * on that thread and must be thread-safe. NULL with err set when the
 * endpoint is taken (one handler per process) or a resource ran out.
 */
kvc_zap_thread_t *kvc_zap_thread_start(kvc_zap_revoked_fn revoked, void *arg,
                                       kvc_zap_refused_fn on_revoked, void *arg2, kvc_err_t *err);

/* Clients refused as revoked so far (thread-safe). */
uint64_t kvc_zap_thread_refused(kvc_zap_thread_t *self);

/* Stops the thread, unbinds and frees; nulls *self_p. NULL is fine. */
void kvc_zap_thread_stop(kvc_zap_thread_t **self_p);

#endif
