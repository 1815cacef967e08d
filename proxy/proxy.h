/*
 * proxy.h - the inference proxy's request handler: TF Serving REST and
 * KServe v2 (JSON, binary tensors, raw JPEG/PNG) in, tensor protobuf over
 * gRPC to the model server, JSON (or protobuf) out.
 *
 * kvc_proxy_handle is a kvc_http_handler_fn: the daemon passes it to
 * kvc_http_server_new with the proxy as its argument. It runs on many HTTP
 * threads at once and must never crash or leak on any request or any
 * backend answer; every failure is an HTTP status with {"error": "..."}.
 */
#ifndef KVC_PROXY_H
#define KVC_PROXY_H

#include "base.h"
#include "http_server.h"
#include "router.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

/*
 * An input a config (or the model registry) declares. Its name and dtype
 * stand in for metadata the model server does not give. Its shape, when
 * given (shape non-NULL; n_dims 0 then declares a scalar), is checked on
 * every request: an input of another rank or size is refused with 400
 * before the model server is asked. shape NULL (the zero default): any.
 */
typedef struct {
    const char *name;
    kvc_dtype_t dtype;
    const int64_t *shape; /* n_dims sizes, -1 = any size; at most KVC_TENSOR_MAX_DIMS */
    size_t n_dims;
} kvc_proxy_input_t;

/* One model server this proxy sends a model's requests to. Strings and
 * arrays are copied by kvc_proxy_new and kvc_proxy_set_models; every field
 * after n_inputs may be left zero. */
typedef struct {
    const char *model;       /* model name as clients use it */
    const char *grpc;        /* "host:port" (h2c) or "https://host:port" */
    const char *api;         /* "tfserving" or "kserve" */
    const char *preprocess;  /* image spec (proxy/preprocess.h), "" = no images */
    const char *image_input; /* input tensor for images; "" = the only input */
    /* Used only when the model server gives no metadata: then these are
     * every input there is (TF Serving REST parses them as these dtypes and
     * refuses any other; KServe v2 inputs must be named here with these
     * datatypes). None declared: such a server's TF Serving REST requests
     * are refused with 503, as no dtype is ever guessed. */
    const kvc_proxy_input_t *inputs;
    size_t n_inputs;
    /* The default signature (NULL or "" = serving_default): TF Serving
     * requests that name none are sent with it, and it is the signature
     * whose inputs JSON is parsed with; the declared inputs are that
     * signature's. Ignored for KServe models, which have one unnamed
     * signature. */
    const char *signature;
    /* Output names the registry declares (may be none). Checked (non-empty,
     * unique) and kept, but not used: the model server's answer names its
     * outputs, and filtering to these by default would hide outputs a
     * client may want; clients filter with output_filter / outputs. */
    const char *const *outputs;
    size_t n_outputs;
} kvc_proxy_backend_t;

/* A line for the peer's log (level: 0 info, 1 warning). */
typedef void (*kvc_proxy_log_fn)(void *arg, int level, const char *msg);

/* What one request did, for metrics (issue 5) and logs. */
typedef struct {
    const char *model;    /* "" when the path named none */
    const char *endpoint; /* kvc_route_name(): "predict", "infer", ... */
    const char *route;    /* "local", "forwarded" (answered at another site),
                             "served" (answered here for another peer) */
    const char *site;     /* the site that answered ("" when none did) */
    int retried;          /* a second site was tried after a retryable failure */
    int http_status;
    int grpc_status;               /* -1 when no backend call was made */
    double seconds;                /* handler time */
    size_t request_bytes;          /* HTTP body in */
    size_t response_bytes;         /* HTTP body out */
    size_t backend_request_bytes;  /* protobuf sent to the model server */
    size_t backend_response_bytes; /* protobuf received */
} kvc_proxy_observation_t;

typedef void (*kvc_proxy_observe_fn)(void *arg, const kvc_proxy_observation_t *obs);

/*
 * Where a model this site does not serve is served: writes a
 * comma-separated list of site names (", " between them) into buf (cap
 * bytes, NUL-terminated; a longer list may be cut) and returns how many
 * sites serve model (0: the model is not in the registry). Called from any
 * HTTP thread, and from fibers on the HTTP loop, so it must be thread-safe
 * and quick (no network).
 */
typedef size_t (*kvc_proxy_where_fn)(void *arg, const char *model, char *buf, size_t cap);

/*
 * Routing across sites (issue 18). A proxy given a sites callback routes
 * every per-model request with federation/router.h: it serves locally
 * while its own backend for the model is healthy and not saturated, else
 * forwards to the best other site that serves the model, and retries a
 * call that failed retryably once at the next site within the client's
 * deadline. The proxy keeps the router (breakers, hysteresis) and the
 * local figures (in flight, latency window); the caller supplies the other
 * sites and the transport.
 */

/* One other site serving a model, as the caller knows it now: s's numeric
 * fields are the caller's to fill; its string pointers are set by the
 * proxy to the arrays here. */
typedef struct {
    char site[KVC_ROUTER_NAME_MAX + 1];
    char region[KVC_ROUTER_NAME_MAX + 1];
    char arch[KVC_ROUTER_NAME_MAX + 1];
    kvc_router_site_t s;
} kvc_proxy_site_t;

/* Fills out[0..cap) with the other sites (never this one) that may serve
 * model; returns how many. Called on HTTP threads and fibers: thread-safe
 * and quick (no network). */
typedef size_t (*kvc_proxy_sites_fn)(void *arg, const char *model, kvc_proxy_site_t *out,
                                     size_t cap);

/* A request to run at another site's peer. Borrowed until done is called. */
typedef struct {
    const char *model; /* the route's model, to pick the site's peer */
    const char *method, *path, *content_type, *accept, *inference_header_length;
    const char *constraint; /* the client's, passed on; NULL = none */
    const uint8_t *body;
    size_t body_len;
    uint32_t timeout_ms; /* what is left of the client's deadline */
} kvc_proxy_remote_req_t;

/* Its answer, filled by the transport before done. */
typedef struct {
    int answered;  /* 0: no answer came (unreachable, timed out, refused) */
    int timed_out; /* with answered 0: the deadline passed (else: could not reach) */
    int status;    /* the remote proxy's HTTP status */
    char content_type[96];
    uint8_t *body; /* kvc_malloc'd; the proxy takes it */
    size_t body_len;
    char header_name[64], header_value[64];
    int call_class; /* the remote's own kvc_call_class_t for its backend call */
    char served_by[64];
    char error[256]; /* why there is no answer */
} kvc_proxy_remote_resp_t;

/* Sends req to a peer of site. Returns 0 when sent: done(done_arg) is then
 * called exactly once, from any thread, after resp is filled. Nonzero: no
 * peer of the site can be reached now (resp->error says why; done is not
 * called). */
typedef int (*kvc_proxy_remote_fn)(void *arg, const char *site, const kvc_proxy_remote_req_t *req,
                                   kvc_proxy_remote_resp_t *resp, void (*done)(void *done_arg),
                                   void *done_arg);

/* The header a client names a constraint in (router.h's syntax), and the
 * one it may give its deadline in, in milliseconds. */
#define KVC_PROXY_CONSTRAINT_HEADER "Kvc-Constraint"
#define KVC_PROXY_DEADLINE_HEADER "Kvc-Timeout-Ms"

typedef struct {
    const kvc_proxy_backend_t *backends; /* the config's; may be none */
    size_t n_backends;
    uint32_t timeout_ms;          /* per backend call; 0 -> 30000 */
    size_t max_message;           /* gRPC message bound; 0 -> 64 MiB */
    uint64_t image_memory;        /* bytes all image decodes may hold at once; 0 -> 256 MiB */
    kvc_tensor_limits_t limits;   /* per request; 0 -> 256 Mi elements, 1 GiB */
    const char *grpc_ca_file;     /* https:// backends: CA bundle (PEM); NULL -> the
                                     system store. Copied by kvc_proxy_new. */
    kvc_proxy_observe_fn observe; /* may be NULL; called once per request */
    void *observe_arg;
    kvc_proxy_log_fn log;         /* may be NULL; events worth one line, each said once */
    void *log_arg;
    /* May be NULL: then a model the proxy does not have is TF Serving's
     * 404 "Servable not found for request: ...". Else 404 with
     * "model \"M\" is not served at this site; it is served at: A, B" or
     * "model \"M\" is not in the registry". */
    kvc_proxy_where_fn where;
    void *where_arg;
    /* Routing; sites NULL = no routing (everything local, as before). */
    kvc_proxy_sites_fn sites;
    void *sites_arg;
    kvc_proxy_remote_fn remote;
    void *remote_arg;
    const char *site;   /* this site's name (required with sites) */
    const char *region; /* may be NULL */
    const char *arch;   /* NULL: uname's machine */
    kvc_accel_t accel;
    uint32_t accel_count;
    uint32_t capacity; /* in-flight requests per model that saturate the local
                          backend; 0 = unknown (never saturated) */
    const kvc_router_config_t *router; /* NULL: defaults */
} kvc_proxy_opts_t;

typedef struct kvc_proxy kvc_proxy_t;

/* Creates the proxy (copies opts, parses preprocess specs, starts the gRPC
 * client). It may have no backends yet (kvc_proxy_set_models gives it
 * some later). NULL with err set on a bad option. */
kvc_proxy_t *kvc_proxy_new(const kvc_proxy_opts_t *opts, kvc_err_t *err);

/*
 * Replaces the run-time model table (the models placed on this site, from
 * the model registry) with models[0..n) (copied; n may be 0). The config's
 * backends (opts.backends) stay and win over a run-time model of the same
 * name, which is then left out. Every entry is checked as kvc_proxy_new
 * checks a backend, named "models[I]" in err: model, grpc, api
 * ("tfserving" or "kserve"), preprocess spec, image_input, inputs and
 * shapes, signature, outputs; two entries of one name are KVC_EEXIST. On
 * any error nothing changes.
 *
 * The swap is atomic and thread-safe: a request uses the table that was
 * current when it looked its model up until it ends, so in-flight requests
 * finish with the models they started with, and a table is freed when the
 * last request using it ends. An entry identical to one in the current
 * table (every field equal) keeps its state: the model's signatures already
 * fetched from its server; a changed entry fetches them again. gRPC
 * connections are the client's, by address, and are kept whatever changes.
 * Calls to this function are serialised; it never waits on a request.
 */
int kvc_proxy_set_models(kvc_proxy_t *p, const kvc_proxy_backend_t *models, size_t n,
                         kvc_err_t *err);

/*
 * Serves a request another peer forwarded, on this site's backend only (it
 * is never forwarded again). req->conn is NULL; constraint is the client's
 * (checked again here: a site that does not meet it answers 503). Fills
 * resp as kvc_proxy_handle does and *call_class with how the backend call
 * ended (kvc_call_class_t), so the sender can tell a retryable failure.
 */
void kvc_proxy_handle_forwarded(kvc_proxy_t *p, const kvc_http_req_t *req, const char *constraint,
                                kvc_http_resp_t *resp, int *call_class);

/* This site's figures per model it serves, for the health gossip: fills
 * out[0..cap) and returns how many (models of the local table). */
typedef struct {
    char model[KVC_ROUTER_MODEL_MAX + 1];
    int ready;        /* a backend is configured and its breaker is not open */
    uint32_t in_flight;
    uint32_t capacity;
    int64_t p50_us, p99_us; /* -1: no request in the window */
} kvc_proxy_model_health_t;
size_t kvc_proxy_local_health(kvc_proxy_t *p, kvc_proxy_model_health_t *out, size_t cap);

/* Explains the route a request for model (with constraint text, may be
 * NULL) would take now: the choice into *choice (may be NULL) and as
 * router.h's JSON into buf. It is a real choice (the router's hysteresis
 * state moves as for a request). Returns 0 (also when no site qualifies:
 * the choice says why), or an error with err (bad constraint: KVC_EPARSE). */
int kvc_proxy_explain(kvc_proxy_t *p, const char *model, const char *constraint,
                      kvc_router_choice_t *choice, char *buf, size_t size, kvc_err_t *err);

/* Counters of routed requests (totals; per model and site go to observe). */
typedef struct {
    uint64_t local, forwarded, retried, failed, no_route;
} kvc_proxy_route_stats_t;
void kvc_proxy_route_stats(kvc_proxy_t *p, kvc_proxy_route_stats_t *out);

/* Stops the gRPC client and frees everything; nulls *self_p. */
void kvc_proxy_destroy(kvc_proxy_t **self_p);

/* The HTTP handler; arg is the kvc_proxy_t. Thread-safe. */
void kvc_proxy_handle(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp);

/* Bodies up to this size may be answered on the HTTP loop (inline). */
#define KVC_PROXY_INLINE_MAX (256u * 1024u)

/*
 * For kvc_http_opts_t.inline_ok: 1 when req can be answered in a fiber on
 * the HTTP loop without holding it up: a JSON body of at most
 * KVC_PROXY_INLINE_MAX bytes (not an image, whose decoding takes
 * milliseconds), for a model whose signatures are already known (a fetch
 * may wait on another request's). Everything else gets a thread.
 */
int kvc_proxy_inline_ok(void *arg, const kvc_http_req_t *req);

/* The proxy's gRPC client, for kvc_http_opts_t.engine. */
struct kvc_grpc_client *kvc_proxy_engine(kvc_proxy_t *self);

/* TF Serving's mapping of a gRPC status code to an HTTP status. */
int kvc_proxy_http_status(int grpc_code);

/*
 * Content negotiation of a protobuf answer from an Accept header (RFC 9110
 * 12.5.1; NULL when absent): comma-separated media ranges with parameters,
 * types compared without regard to case. Protobuf is chosen only when the
 * client names it: application/protobuf (IANA's registration) or its
 * deprecated aliases application/x-protobuf and application/x-protobuffer,
 * with q > 0, no "encoding" parameter other than "binary", and a q at least
 * that of application/json (whose q is that of its most specific range:
 * "application/json", "application/<any>", then "<any>/<any>", written with
 * '*'). Malformed ranges are ignored. Returns the named type (a static
 * lower-case string, sent back as the Content-Type), or NULL for JSON.
 */
const char *kvc_proxy_accept_protobuf(const char *accept);

/* Whether a Content-Type (NULL when absent) is an image: type "image",
 * any case, a subtype token, then nothing but parameters. */
int kvc_proxy_is_image_type(const char *content_type);

#endif
