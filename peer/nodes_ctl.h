/*
 * nodes_ctl.h - control commands over the node records, enrollment codes
 * and the token audit log of this peer's store (see nodes.h). Each fills
 * ctx's reply; the daemon's command table calls them.
 */
#ifndef KVC_NODES_CTL_H
#define KVC_NODES_CTL_H

#include "ctl_table.h"
#include "nodes.h"

#include <sodium.h>

/* "nodes" [state]: every record (or those in state), in key order. */
int kvc_nodes_ctl_list(const kvc_kv_t *kv, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx);
/* "node-decide" id, to (approve, reject, revoke), decided by member `by`. */
int kvc_nodes_ctl_decide(const kvc_kv_t *kv, const char *by, const Kvc__Ctl__Request *req,
                         kvc_ctl_ctx_t *ctx);
/* "enroll-create" [site] ttl_s uses: a code for our site; the reply's
 * secret holds it (once). */
int kvc_nodes_ctl_enroll_create(const kvc_kv_t *kv, const char *site, const char *by,
                                const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx);
/* "enroll-list": the codes still valid (ids, never the codes). */
int kvc_nodes_ctl_enroll_list(const kvc_kv_t *kv, const Kvc__Ctl__Request *req,
                              kvc_ctl_ctx_t *ctx);
/* "tokens": the audit log, oldest first. */
int kvc_nodes_ctl_tokens(const kvc_kv_t *kv, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx);

#endif
