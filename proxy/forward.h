/*
 * forward.h - the proxy's forwarding layer: which backend serves a model,
 * what it knows of the model's inputs (its signatures, fetched once and
 * cached), and the gRPC calls that carry a request there and bring the
 * answer back decoded.
 *
 * Internal to proxy/: proxy.c (the HTTP routes) is its only user. It knows
 * nothing of HTTP requests or response bodies; a failed operation leaves
 * the HTTP status and message its caller should answer with in the call
 * (kvc_fwd_call_t.status / .error). Thread-safe: the backends are an
 * immutable, refcounted table that kvc_forward_set replaces whole; a call
 * takes a reference to the table current when it first needs one and keeps
 * it until kvc_forward_end, so it finishes with the backends it started
 * with. Each backend's signature cache is locked inside, the gRPC client is
 * thread-safe.
 */
#ifndef KVC_FORWARD_H
#define KVC_FORWARD_H

#include "base.h"
#include "grpc_client.h"
#include "preprocess.h"
#include "proxy.h"
#include "route.h"
#include "signature.h"
#include "tensor.h"

#include "kserve/grpc_predict_v2.pb-c.h"
#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"
#include "tensorflow_serving/apis/get_model_status.pb-c.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { KVC_FWD_TFS = 1, KVC_FWD_KSERVE = 2 } kvc_fwd_api_t;

/* Most dimensions a declared input shape may have. */
#define KVC_FWD_DIMS_MAX KVC_TENSOR_MAX_DIMS

/* One declared input, with its shape when one was given. */
typedef struct {
    char *name;
    kvc_dtype_t dtype;
    int has_shape;
    size_t n_dims;
    int64_t dims[KVC_FWD_DIMS_MAX]; /* -1 = any size */
} kvc_fwd_input_t;

/* One backend, as kvc_forward_new or kvc_forward_set checked and copied
 * it. Immutable once in a table. */
typedef struct {
    char *model;
    char *url; /* http://host:port or https://host:port */
    kvc_fwd_api_t api;
    char *preprocess; /* the spec's text, "" = none */
    int has_spec;
    kvc_preprocess_t spec;
    char *image_input; /* "" = the signature's only input */
    char *signature;   /* default signature, "" = serving_default */
    /* The declared inputs (n_inputs of them), and the same as a
     * one-signature set named signature (or serving_default); NULL when
     * none. The set stands in only while the model server gives no
     * metadata; declared shapes are always checked. */
    kvc_fwd_input_t *inputs;
    size_t n_inputs;
    kvc_signature_set_t *declared;
    char **outputs; /* declared output names; kept, not used (proxy.h) */
    size_t n_outputs;
    int runtime; /* from kvc_forward_set, not from the config */
} kvc_fwd_backend_t;

typedef struct kvc_forward kvc_forward_t;
typedef struct kvc_fwd_table kvc_fwd_table_t;
typedef struct kvc_fwd_entry kvc_fwd_entry_t;

/* Longest error message an operation leaves for its caller. */
#define KVC_FWD_ERROR_MAX (KVC_GRPC_MSG_MAX + 160)

/*
 * One request's dealings with its backend. The caller zeroes it and sets
 * fw, route (borrowed for the call) and pb_type; kvc_forward_find sets the
 * backend. Operations fill the rest. The caller ends it with
 * kvc_forward_end, which drops the table it holds.
 */
typedef struct {
    kvc_forward_t *fw;
    const kvc_route_t *route;
    const char *pb_type; /* non-NULL: the client wants the model server's protobuf as is */
    const kvc_fwd_backend_t *be;
    kvc_fwd_table_t *table; /* held from the first lookup until kvc_forward_end */
    kvc_fwd_entry_t *entry; /* be's entry in table */
    /* After a failed operation: the HTTP status and message to answer. */
    int status;
    char error[KVC_FWD_ERROR_MAX];
    /* For metrics: the last call's gRPC status (-1: none) and the bytes. */
    int grpc_status;
    size_t request_bytes;
    size_t response_bytes;
    char version[KVC_VERSION_MAX + 1]; /* the version the backend answered with, "" if none */
    /* Set by kvc_forward_signatures: the server gives no metadata, and
     * (declared) the set handed out is the config's declared inputs. */
    int no_metadata;
    int declared;
} kvc_fwd_call_t;

/* Checks and copies the backends of opts (there may be none) and starts
 * the gRPC client. NULL with err set on a bad option or no memory. */
kvc_forward_t *kvc_forward_new(const kvc_proxy_opts_t *opts, kvc_err_t *err);

/*
 * Replaces the run-time backends with models (n of them, copied; see
 * kvc_proxy_set_models). Every entry is checked first; on any error
 * (KVC_EINVAL, KVC_EEXIST for a name given twice, KVC_ERANGE, KVC_ENOMEM)
 * err says which and nothing changes. Thread-safe.
 */
int kvc_forward_set(kvc_forward_t *self, const kvc_proxy_backend_t *models, size_t n,
                    kvc_err_t *err);

/* Drops the table the call holds, if any. The call's backend pointers are
 * invalid afterwards. */
void kvc_forward_end(kvc_fwd_call_t *call);

/* Stops the gRPC client (its calls end CANCELLED) and frees everything;
 * nulls *self_p. */
void kvc_forward_destroy(kvc_forward_t **self_p);

/* The gRPC client, for an event loop to drive (kvc_grpc_client_own). */
kvc_grpc_client_t *kvc_forward_engine(kvc_forward_t *self);

/* The request limits every decode is held to. */
const kvc_tensor_limits_t *kvc_forward_limits(const kvc_forward_t *self);

/* Number of backends in the call's table (taking it if the call holds
 * none yet) and backend i of it (i < that number; valid until
 * kvc_forward_end). */
size_t kvc_forward_size(kvc_fwd_call_t *call);
const kvc_fwd_backend_t *kvc_forward_backend(kvc_fwd_call_t *call, size_t i);

/*
 * Picks the backend of the call's route's model. Returns 0, or KVC_ENOENT
 * with 404: for a model this proxy does not have, as the opts' where
 * callback tells (see kvc_proxy_opts_t) or, without one, as TF Serving
 * says it ("Servable not found for request: ..."); or for a /v2 version a
 * TF Serving backend cannot number.
 */
int kvc_forward_find(kvc_fwd_call_t *call);

/* 1 when this proxy has a backend for model (config or run time). */
int kvc_forward_has(kvc_forward_t *self, const char *model);

/* Tells whether the signatures of model's backend are settled (known, or
 * known to be unavailable for now), so that a request needs no fetch; 1
 * too when there is no such model (its 404 is quick). */
int kvc_forward_signatures_settled(kvc_forward_t *self, const char *model);

/*
 * The model's input signatures. On 0, *out is the set; when the server
 * has none to give (call->no_metadata), the config's declared inputs
 * (call->declared) or NULL when it declares none. That a server gives no
 * metadata is logged once (and again if it starts to). A fetch that failed for a reason that may pass
 * is answered 503 with the reason and never remembered. At most one fetch
 * per backend is in flight; requests arriving meanwhile wait for it and
 * share its outcome (a fiber never waits: it fetches for itself).
 */
int kvc_forward_signatures(kvc_fwd_call_t *call, const kvc_signature_set_t **out);

/*
 * Checks inputs against the shapes the backend declares (inputs without a
 * declared shape, or not declared, pass; an unnamed input stands for the
 * only declared one). Returns 0, or KVC_EINVAL with 400 naming the input
 * and both shapes.
 */
int kvc_forward_check_shapes(kvc_fwd_call_t *call, const kvc_tensor_list_t *inputs);

/*
 * Runs inputs (borrowed) through the backend: TF Serving Predict (with
 * signature) or KServe ModelInfer (with id), asking for the outputs named
 * in filter only when n_filter > 0. On 0 either *outputs holds the decoded
 * tensors (the caller destroys them) or, when call->pb_type is set, *raw /
 * *raw_len hold the reply's bytes as they came (free with kvc_free).
 */
int kvc_forward_infer(kvc_fwd_call_t *call, kvc_tensor_list_t *inputs, const char *signature,
                      const char *id, char **filter, size_t n_filter, kvc_tensor_list_t **outputs,
                      uint8_t **raw, size_t *raw_len);

/* TF Serving GetModelMetadata for the route (its version unless latest).
 * Free *out with kvc_pb_allocator(). */
int kvc_forward_tfs_metadata(kvc_fwd_call_t *call, int latest,
                             Tensorflow__Serving__GetModelMetadataResponse **out);

/* KServe ModelMetadata for the route (its version unless latest). */
int kvc_forward_kserve_metadata(kvc_fwd_call_t *call, int latest,
                                Inference__ModelMetadataResponse **out);

/* TF Serving GetModelStatus for the route's model and version. */
int kvc_forward_tfs_status(kvc_fwd_call_t *call, Tensorflow__Serving__GetModelStatusResponse **out);

/* KServe ModelReady for the route's model and version ("" = latest). */
int kvc_forward_kserve_ready(kvc_fwd_call_t *call, const char *version, int *ready);

/* The KServe version string of the route ("" = latest); a label cannot be
 * expressed to a KServe backend: 400. */
int kvc_forward_kserve_version(kvc_fwd_call_t *call, char *buf, size_t size);

/* Tells whether a status reply has a version AVAILABLE. */
int kvc_forward_any_available(const Tensorflow__Serving__GetModelStatusResponse *r);

/* One backend's answer to /v2/health/ready. */
typedef struct {
    int ready;
    char reason[KVC_FWD_ERROR_MAX]; /* why not, "" when ready */
} kvc_fwd_ready_t;

/* /v2/health/ready: asks every backend (each KServe server once) whether
 * it can serve, with a short deadline, and fills out[i] for backend i
 * (kvc_forward_size entries). 1 when all can. */
int kvc_forward_ready(kvc_fwd_call_t *call, kvc_fwd_ready_t *out);

#endif
