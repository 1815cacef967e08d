/*
 * broker.h - the join-token broker: how a new node gets a short-lived
 * Kubernetes bootstrap token from its site's coordinator.
 *
 * A node (kvc join) talks CurveZMQ to any peer of its site with its node key
 * as the CURVE client key, so the peer knows the key from the handshake.
 * The peer that hears it (the relay) hands the message to the broker:
 *  - if this peer is the coordinator (within its lease), the broker decides
 *    here;
 *  - else it forwards it to the coordinator it knows (kvc.join.PeerMessage on
 *    channel KVC_BROKER_CHANNEL) and relays the coordinator's reply back to
 *    the node, refusing a reply fenced by a term older than it knows.
 *
 * The coordinator refuses malformed requests, timestamps outside
 * kubernetes.join_window_s, nonces it saw (replays), unapproved, rejected and
 * revoked keys (an unknown key becomes a pending record an operator
 * approves), and expired or used-up enrollment codes, each with one line the
 * node prints. For an approved node it mints a bootstrap token through the
 * Kubernetes API (peer/kube.h) on a worker thread: the event loop never
 * blocks on the API. For kubeadm it waits for the token's jws-kubeconfig-<id>
 * in cluster-info, then seals {token, CA pin, API server} to the node key
 * (crypto_box_seal) and wipes its copy. While the node reports progress the
 * token's expiration is pushed forward in short steps; it is deleted when
 * the Node is registered, the node reports failure, or progress stops for
 * kubernetes.progress_timeout_s. A peer that becomes coordinator deletes
 * every token of its site it did not mint (an old coordinator's orphans).
 *
 * Fencing: every API call the worker makes carries the coordinator's term,
 * and the worker checks, right before each call, that the peer is still
 * the coordinator of that term within its lease; the token Secret is
 * labelled with the term. The audit log (peer/nodes.h) records each step,
 * never the secret.
 */
#ifndef KVC_BROKER_H
#define KVC_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "config.h"
#include "core.h"
#include "election.h"
#include "kv.h"

#define KVC_BROKER_CHANNEL 42      /* kvc.fed.Envelope.join */
#define KVC_BROKER_NODE_KIND 43    /* kvc.fed.Envelope.node_join */
#define KVC_BROKER_MSG_MAX 4096    /* a node or peer join message, never decode more */
#define KVC_BROKER_ROUTING_MAX 256 /* a ROUTER routing id */
#define KVC_BROKER_NONCE_LEN 16

typedef struct kvc_broker kvc_broker_t;

/* Sends msg (a packed kvc.join.NodeMessage) to the node behind ROUTER
 * routing id `routing`. */
typedef void (*kvc_broker_to_node_fn)(void *arg, const uint8_t *routing, size_t rlen,
                                      const uint8_t *msg, size_t len);

/* Creates the broker of member self_id. cfg's kubernetes.* settings are
 * read now (the kubeconfig too, if set: an unreadable one is an error); kv
 * (the site map, copied) and election are borrowed and outlive the broker. Starts the worker
 * thread. NULL with err set on failure. */
kvc_broker_t *kvc_broker_new(const kvc_config_t *cfg, const char *self_id, const kvc_kv_t *kv,
                             const kvc_election_t *election, kvc_broker_to_node_fn to_node,
                             void *arg, kvc_err_t *err);
/* Stops the worker (an API call in flight finishes first), wipes and frees. */
void kvc_broker_destroy(kvc_broker_t **self_p);

/* A file descriptor that is readable when the worker finished a job: poll
 * it and call kvc_broker_tick. */
int kvc_broker_fd(const kvc_broker_t *b);

/* A message from a node: key is its CURVE public key (from ZAP), routing
 * its ROUTER routing id. Replies go to to_node, forwards to out. */
void kvc_broker_node_message(kvc_broker_t *b, uint64_t now_ms, int64_t wall_ms,
                             const uint8_t key[32], const uint8_t *routing, size_t rlen,
                             const uint8_t *msg, size_t len, kvc_outbox_t *out);

/* Must be called after every flush of the election: keeps the worker's
 * fence (term, lease end) current and, on becoming coordinator, starts the
 * sweep of orphaned tokens. */
void kvc_broker_election_changed(kvc_broker_t *b, uint64_t now_ms);

typedef struct {
    uint64_t requests, granted, refused, forwarded, relayed, replays, stale_replies;
    uint64_t minted, extended, deleted, joined, failed, orphans_deleted, fenced;
    size_t active; /* tokens alive now */
    /* over the last (up to 128) grants: request to grant at the coordinator,
     * and that minus the time the worker spent on Kubernetes API calls for
     * it, waiting behind earlier calls included (the broker's own time) */
    size_t timed;
    uint32_t grant_ms_p50, grant_ms_p99, own_ms_p50, own_ms_p99;
} kvc_broker_stats_t;
void kvc_broker_stats(const kvc_broker_t *b, kvc_broker_stats_t *out);

/* The broker on the core.h interface (channel KVC_BROKER_CHANNEL): peer
 * messages, the worker's results and the token timers. state: a
 * kvc_broker_t. Its tick must also run when kvc_broker_fd is readable. */
extern const kvc_core_ops_t kvc_broker_core_ops;

/* --- pure checks, exposed for the unit tests ----------------------------- */

/* Checks a request's fields for site at wall_ms: "" if acceptable, else the
 * reason (static or in buf). */
struct Kvc__Join__Request;
const char *kvc_broker_check_request(const struct Kvc__Join__Request *r, const char *site,
                                     int64_t wall_ms, int64_t window_ms, char *buf, size_t cap);

#endif
