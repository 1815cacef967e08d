/*
 * daemon.h - kvc-peer: one process per site gateway.
 *
 * Owns the ZeroMQ sockets (one ROUTER bound on federation.listen, one
 * DEALER per known peer, all CurveZMQ; a ZAP handler; the local control
 * socket), the peer's identity, the store, and the event loop that drives
 * the protocol cores. Every message from the network is checked here: the
 * connection's CURVE key must hold a valid credential for the member id the
 * message claims, or the message is dropped and counted.
 */
#ifndef KVC_DAEMON_H
#define KVC_DAEMON_H

#include "base.h"
#include "config.h"

typedef struct kvc_daemon kvc_daemon_t;

/*
 * Loads the identity and trust key named by cfg, opens the store, binds the
 * sockets. cfg is copied. NULL on failure with a one-line reason in err.
 */
kvc_daemon_t *kvc_daemon_new(const kvc_config_t *cfg, kvc_err_t *err);

/* Runs the event loop until SIGINT/SIGTERM; returns 0 on a clean stop. */
int kvc_daemon_run(kvc_daemon_t *self);

/* Closes every socket and the store; nulls *self_p. */
void kvc_daemon_destroy(kvc_daemon_t **self_p);

#endif
