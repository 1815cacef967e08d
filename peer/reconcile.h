/*
 * reconcile.h - the site reconciler of the model registry: from the model
 * versions placed on this site to the Kubernetes objects that serve them,
 * applied with server-side apply, and the pruning of what a retired model
 * left behind.
 *
 * Per model NAME (all versions of one name share one server):
 *   - PersistentVolume + PersistentVolumeClaim "kvc-nfs-<12 hex>" per
 *     distinct storage URL: NFS, read-only, ReadOnlyMany, Retain, bound by
 *     name. The hex is SHA-256 over site, namespace and URL, so the same
 *     export served by two sites of one cluster gets two PVs (a PV binds
 *     one claim).
 *   - ConfigMap "kvc-NAME": the server's model config, listing exactly the
 *     registry's versions (TF Serving models.config + monitoring.config).
 *   - Deployment "kvc-NAME": the model server, the claim mounted read-only
 *     at /models/NAME, the ConfigMap at /etc/kvc-model.
 *   - Service "kvc-NAME": grpc, rest (or http) and metrics ports.
 * The pod template depends on the name, framework, image, storage and
 * options, never on the set of versions: a new version changes only the
 * ConfigMap, which the kubelet refreshes in the mounted folder and the
 * server polls, so no pod restarts.
 *
 * kvc_reconcile_build is pure (no IO, no clock): it can be tested on fixed
 * models. kvc_reconcile_apply talks to the API server through kube.h; it
 * never touches an object without the label app.kubernetes.io/managed-by=kvc
 * and prunes only objects with that label and this site's kvc.io/site.
 */
#ifndef KVC_RECONCILE_H
#define KVC_RECONCILE_H

#include "base.h"
#include "kube.h"
#include "model.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_RECONCILE_NS_DEFAULT "kvc-models"
#define KVC_RECONCILE_TFSERVING_IMAGE "tensorflow/serving:2.14.1"
#define KVC_RECONCILE_KSERVE_IMAGE "nvcr.io/nvidia/tritonserver:24.01-py3"
#define KVC_RECONCILE_POLL_DEFAULT 30
#define KVC_RECONCILE_POLL_MAX 86400
#define KVC_RECONCILE_NAME_MAX 59      /* "kvc-" + name must be a 63-byte DNS label */
#define KVC_RECONCILE_OBJECTS_MAX 4096 /* objects of one plan, and names one prune deletes */
#define KVC_RECONCILE_BODY_MAX (256 * 1024)

/* What the reconciler is told. Strings are borrowed for the call (the plan
 * copies what it keeps); NULL or 0 means the default. */
typedef struct {
    const char *ns;              /* namespace, default "kvc-models" */
    const char *site;            /* this site's name: the kvc.io/site label (required) */
    const char *tfserving_image; /* default KVC_RECONCILE_TFSERVING_IMAGE */
    const char *kserve_image;    /* default KVC_RECONCILE_KSERVE_IMAGE */
    unsigned poll_s;             /* config and file-system poll, default 30 */
} kvc_reconcile_opts_t;

typedef enum {
    KVC_RECONCILE_NAMESPACE = 0,
    KVC_RECONCILE_PV,
    KVC_RECONCILE_PVC,
    KVC_RECONCILE_CONFIGMAP,
    KVC_RECONCILE_DEPLOYMENT,
    KVC_RECONCILE_SERVICE,
    KVC_RECONCILE_KINDS
} kvc_reconcile_kind_t;

/*
 * One desired object. body is the JSON the apply sends, or NULL for an
 * object that is only kept (not applied, not pruned): what a model whose
 * entries are in error still owns, so a bad publish does not take down
 * what serves. Owned by the plan, valid until it is destroyed.
 */
typedef struct {
    kvc_reconcile_kind_t kind;
    char name[64];
    char path[256]; /* API path of the object, from the server root */
    char *body;
    size_t body_len;
} kvc_reconcile_obj_t;

typedef struct kvc_reconcile_plan kvc_reconcile_plan_t;

/*
 * Builds the desired objects for models[0..n) (already those placed on
 * this site, not retired; any order, versions of one name together or
 * not). Pure: no IO. On success *plan is the caller's
 * (kvc_reconcile_plan_destroy).
 *
 * A model whose entries cannot be served - a name longer than
 * KVC_RECONCILE_NAME_MAX or not [a-z0-9-], a storage URL that does not
 * parse or is not nfs://, versions of one name that disagree on framework,
 * storage or image - is not an error of the build: the plan holds an error
 * for it (kvc_reconcile_plan_error), applies nothing for it and keeps what
 * it has. KVC_EINVAL (err says which) for bad opts: a site or namespace
 * that is not a DNS label, an image with a quote or control character, a
 * poll over KVC_RECONCILE_POLL_MAX. KVC_ERANGE over
 * KVC_RECONCILE_OBJECTS_MAX objects or a body over KVC_RECONCILE_BODY_MAX,
 * KVC_ENOMEM.
 */
int kvc_reconcile_build(const kvc_reconcile_opts_t *o, const kvc_model_t *models, size_t n,
                        kvc_reconcile_plan_t **plan, kvc_err_t *err);

/* Frees the plan and nulls *plan_p; NULL is fine. */
void kvc_reconcile_plan_destroy(kvc_reconcile_plan_t **plan_p);

/* The plan's objects, in apply order (namespace, PVs, PVCs, ConfigMaps,
 * Deployments, Services), then the kept-only ones (body NULL) of models in
 * error; i < kvc_reconcile_plan_count, else NULL. */
size_t kvc_reconcile_plan_count(const kvc_reconcile_plan_t *plan);
const kvc_reconcile_obj_t *kvc_reconcile_plan_object(const kvc_reconcile_plan_t *plan, size_t i);
/* The object of that kind and name, or NULL. */
const kvc_reconcile_obj_t *kvc_reconcile_plan_find(const kvc_reconcile_plan_t *plan,
                                                   kvc_reconcile_kind_t kind, const char *name);
/* Why model name is not applied (valid while the plan lives), or NULL. */
const char *kvc_reconcile_plan_error(const kvc_reconcile_plan_t *plan, const char *name);
/* "Namespace", "PersistentVolume", ... */
const char *kvc_reconcile_kind_name(kvc_reconcile_kind_t kind);

/*
 * Applies the plan: creates the namespace if it is missing (an existing
 * one is used, whoever made it); for each object, GETs it and, if it
 * exists without app.kubernetes.io/managed-by=kvc, leaves it alone and
 * fails its models ("deployment kvc-x exists and is not managed by kvc");
 * else applies it (PATCH ?fieldManager=kvc&force=true, apply-patch+yaml).
 * Once one of a model's objects failed, its later ones (Deployment,
 * Service after the volume and config) are not applied. Then prunes: lists each kind with
 * labelSelector app.kubernetes.io/managed-by=kvc,kvc.io/site=SITE and deletes what the plan neither
 * applies nor keeps.
 *
 * st[0..*n_st) gets one status per model version of the build's input, in
 * its order: site, model, version, applied (every object of its name
 * accepted), desired_replicas, ready_replicas (the Deployment's
 * status.readyReplicas as the apply answered, 0 if absent) and error
 * ("" or why; bounded, API messages only, never credentials). updated_ms,
 * server_version and coordinator are left zero for the caller.
 *
 * Returns 0 when every model was applied and the prune finished; else the
 * code of the first failure, with err saying how many models failed and
 * the first reason; st is filled either way (except for KVC_EINVAL and
 * KVC_ERANGE: cap smaller than the build's input, *n_st 0).
 */
int kvc_reconcile_apply(kvc_kube_t *kube, const kvc_reconcile_plan_t *plan, kvc_model_status_t *st,
                        size_t cap, size_t *n_st, kvc_err_t *err);

#endif
