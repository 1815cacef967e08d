/*
 * site_models.h - what this site serves, from the registry (registry.h):
 *   - on every peer, the model versions placed on its site are handed to
 *     the proxy (a serve callback) whenever that set changes;
 *   - on the site's coordinator, the same set is reconciled to the site's
 *     Kubernetes objects (reconcile.h) on a worker thread, when it changes
 *     and every registry.reconcile_interval_s, and each version's status
 *     (applied, desired and ready replicas, error) is written back into the
 *     registry, so `kvc models status` is federation-wide.
 *
 * A core on the core.h interface (no channel: timers only). The worker's
 * results arrive through an eventfd the daemon polls (kvc_site_models_fd);
 * then tick. Fencing: a reconciliation starts only while the election lets
 * this peer act and its statuses are written only if it still may, at the
 * same term. Two coordinators briefly applying the same registry apply the
 * same objects (server-side apply is idempotent), so an overlap at a
 * handover does no harm.
 */
#ifndef KVC_SITE_MODELS_H
#define KVC_SITE_MODELS_H

#include "config.h"
#include "core.h"
#include "election.h"
#include "kv.h"
#include "model.h"

typedef struct kvc_site_models kvc_site_models_t;

/* The models placed on this site (a snapshot, valid during the call). */
typedef void (*kvc_site_models_serve_fn)(void *arg, const kvc_model_t *models, size_t n);

/* What membership knows, for kvc_site_models_where (loop thread). */
typedef struct {
    /* every site with a member that has not left, into out[0..cap) */
    size_t (*sites)(void *arg, char (*out)[64], size_t cap);
    /* the region of a site's members, "" when unknown */
    const char *(*region_of)(void *arg, const char *site);
} kvc_site_models_env_t;

/* registry (a kv over the replicated registry) and election are borrowed.
 * cfg is read now. Starts the worker when kubernetes.kubeconfig is set
 * (an unreadable kubeconfig is an error then). serve and env may be NULL;
 * both get arg. */
kvc_site_models_t *kvc_site_models_new(const kvc_config_t *cfg, const char *self_id,
                                       const kvc_kv_t *registry, const kvc_election_t *election,
                                       kvc_site_models_serve_fn serve,
                                       const kvc_site_models_env_t *env, void *arg,
                                       kvc_err_t *err);

/* Where model is served, for a model not placed on this site: the known
 * sites any of its versions is placed on, ", " between them, into buf;
 * returns how many (0: not in the registry, or placed nowhere known).
 * Thread-safe (the proxy's HTTP threads call it); as of the last scan. */
size_t kvc_site_models_where(kvc_site_models_t *sm, const char *model, char *buf, size_t cap);
void kvc_site_models_destroy(kvc_site_models_t **self_p);

/* This peer's proxy ("host:port"), through which the coordinator asks each
 * model server which version it serves (the status's server_version). */
void kvc_site_models_set_http(kvc_site_models_t *sm, const char *host_port);

/* Readable when the worker finished; -1 without a worker. */
int kvc_site_models_fd(const kvc_site_models_t *sm);

/* The registry changed (a local write or a remote entry), or the sites
 * membership knows did: look again soon. */
void kvc_site_models_changed(kvc_site_models_t *sm);

typedef struct {
    uint64_t runs, failed_runs, statuses_written;
    size_t placed;         /* versions placed on this site now */
    uint64_t last_run_ms;  /* duration of the last reconciliation */
    char last_error[256];  /* "" when the last run applied everything */
} kvc_site_models_stats_t;
void kvc_site_models_stats(const kvc_site_models_t *sm, kvc_site_models_stats_t *out);

extern const kvc_core_ops_t kvc_site_models_core_ops;

#endif
