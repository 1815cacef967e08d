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
    const char *route;    /* "local" (later: "remote") */
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
