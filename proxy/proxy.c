/*
 * proxy.c - the inference proxy's request handler: routes a request, turns
 * TF Serving REST JSON, KServe v2 JSON (with binary tensors) or a raw image
 * into tensors, calls the model's backend over gRPC (TF Serving Predict or
 * KServe ModelInfer), and answers in the client's format.
 *
 * Requests run concurrently, in fibers on the HTTP loop or on threads of
 * their own (http_server.h); the proxy's own state is read-only after
 * kvc_proxy_new except the signature cache (locked inside) and the gRPC
 * client (thread-safe). Nothing here blocks a fiber but kvc_grpc_call.
 * Every failure becomes an HTTP status with {"error": "..."}; nothing here
 * may crash or leak on any body or any backend answer, and nothing is
 * allocated that a limit does not bound.
 */
#include "proxy.h"

#include "fiber.h"
#include "grpc_client.h"
#include "image.h"
#include "json_tensor.h"
#include "infer_reply.h"
#include "kserve_json.h"
#include "pb_decode.h"
#include "preprocess.h"
#include "proxy_json.h"
#include "route.h"
#include "signature.h"
#include "tensor_pb.h"

#include "google/protobuf/wrappers.pb-c.h"
#include "kserve/grpc_predict_v2.pb-c.h"
#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"
#include "tensorflow_serving/apis/get_model_status.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define S_PATH_PREDICT "/tensorflow.serving.PredictionService/Predict"
#define S_PATH_METADATA "/tensorflow.serving.PredictionService/GetModelMetadata"
#define S_PATH_STATUS "/tensorflow.serving.ModelService/GetModelStatus"
#define S_PATH_INFER "/inference.GRPCInferenceService/ModelInfer"
#define S_PATH_V2_META "/inference.GRPCInferenceService/ModelMetadata"
#define S_PATH_V2_READY "/inference.GRPCInferenceService/ModelReady"
#define S_PATH_V2_SREADY "/inference.GRPCInferenceService/ServerReady"

/* Signature fetches: their own short deadline, and a pause after a
 * definitive failure (a server without metadata). A transient failure is
 * not remembered: the next request fetches again. */
#define S_SIG_TIMEOUT_MS 5000u
#define S_SIG_RETRY_MS 5000u
/* How long past the fetch's own deadline a request waits for another
 * request's fetch of the same signatures before giving up. */
#define S_SIG_WAIT_SLACK_MS 2000u
/* /v2/health/ready asks each backend with this deadline. */
#define S_READY_TIMEOUT_MS 1000u
/* Longest base URL kept for a backend. */
#define S_URL_MAX 512

typedef enum { S_API_TFS = 1, S_API_KSERVE = 2 } s_api_t;

/* One backend's signature fetches: at most one in flight; requests that
 * need the signatures meanwhile wait for its outcome. Guarded by the
 * proxy's sig_lock. */
typedef struct {
    int busy;      /* a fetch is in flight */
    uint64_t done; /* fetches finished, so a waiter sees its one end */
    int status;    /* HTTP status the last fetch failed with; 0: set or definitive */
    int grpc_status;
    char error[KVC_GRPC_MSG_MAX + 160]; /* its message */
} s_sigfetch_t;

typedef struct {
    char *model;
    char *url; /* http://host:port or https://host:port */
    s_api_t api;
    int has_spec;
    kvc_preprocess_t spec;
    char *image_input; /* "" = the signature's only input */
} s_backend_t;

struct kvc_proxy {
    s_backend_t *backends;
    size_t n;
    uint32_t timeout_ms;
    size_t max_message;
    kvc_tensor_limits_t limits;
    kvc_proxy_observe_fn observe;
    void *observe_arg;
    kvc_grpc_client_t *grpc;
    int sig_sync; /* sig_lock and sig_done are initialised */
    pthread_mutex_t sig_lock;
    pthread_cond_t sig_done; /* on CLOCK_MONOTONIC */
    s_sigfetch_t *fetches;   /* one per backend */
    kvc_signature_cache_t *sigs;
    kvc_image_budget_t *images; /* shared by every image decode */
};

/* One request's working state. */
typedef struct {
    kvc_proxy_t *p;
    const kvc_http_req_t *req;
    kvc_http_resp_t *resp;
    kvc_route_t route;
    const s_backend_t *be;
    size_t be_index;
    char version[KVC_VERSION_MAX + 1];       /* the version the backend answered with, "" if none */
    char last_error[KVC_GRPC_MSG_MAX + 160]; /* message of the last s_fail answer */
    kvc_proxy_observation_t obs;
} s_ctx_t;

int kvc_proxy_http_status(int grpc_code)
{
    switch (grpc_code) {
    case KVC_GRPC_OK:
        return 200;
    case KVC_GRPC_CANCELLED:
        return 499;
    case KVC_GRPC_INVALID_ARGUMENT:
    case KVC_GRPC_FAILED_PRECONDITION:
    case KVC_GRPC_OUT_OF_RANGE:
        return 400;
    case KVC_GRPC_DEADLINE_EXCEEDED:
        return 504;
    case KVC_GRPC_NOT_FOUND:
        return 404;
    case KVC_GRPC_ALREADY_EXISTS:
    case KVC_GRPC_ABORTED:
        return 409;
    case KVC_GRPC_PERMISSION_DENIED:
        return 403;
    case KVC_GRPC_RESOURCE_EXHAUSTED:
        return 429;
    case KVC_GRPC_UNIMPLEMENTED:
        return 501;
    case KVC_GRPC_UNAVAILABLE:
        return 503;
    case KVC_GRPC_UNAUTHENTICATED:
        return 401;
    case KVC_GRPC_UNKNOWN:
    case KVC_GRPC_INTERNAL:
    case KVC_GRPC_DATA_LOSS:
    default:
        return 500;
    }
}

/* Monotonic milliseconds. */
static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Monotonic seconds as a double. */
static double s_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Frees one backend's strings. */
static void s_backend_free(s_backend_t *b)
{
    kvc_free(b->model);
    kvc_free(b->url);
    kvc_free(b->image_input);
}

/* Copies and checks backend i of opts into b. */
static int s_backend_init(s_backend_t *b, const kvc_proxy_backend_t *o, size_t i, kvc_err_t *err)
{
    if (!o->model || !o->model[0] || strlen(o->model) > KVC_MODEL_NAME_MAX)
        return kvc_err_set(err, KVC_EINVAL, "proxy.backends[%zu].model: must be 1..%d bytes", i,
                           KVC_MODEL_NAME_MAX);
    if (!o->grpc || !o->grpc[0] || strlen(o->grpc) > S_URL_MAX - 8)
        return kvc_err_set(err, KVC_EINVAL, "proxy.backends[%zu].grpc: must be HOST:PORT", i);
    if (!o->api || (strcmp(o->api, "tfserving") != 0 && strcmp(o->api, "kserve") != 0))
        return kvc_err_set(err, KVC_EINVAL,
                           "proxy.backends[%zu].api: must be \"tfserving\" or \"kserve\"", i);
    b->api = strcmp(o->api, "kserve") == 0 ? S_API_KSERVE : S_API_TFS;
    if (o->preprocess && o->preprocess[0]) {
        if (kvc_preprocess_parse(o->preprocess, &b->spec, err) != 0) {
            kvc_err_prefix(err, "proxy.backends[%zu].", i);
            return err ? err->code : KVC_EINVAL;
        }
        b->has_spec = 1;
    }
    char url[S_URL_MAX];
    int has_scheme = strncmp(o->grpc, "http://", 7) == 0 || strncmp(o->grpc, "https://", 8) == 0;
    snprintf(url, sizeof url, "%s%s", has_scheme ? "" : "http://", o->grpc);
    b->model = kvc_strdup(o->model);
    b->url = kvc_strdup(url);
    b->image_input = kvc_strdup(o->image_input ? o->image_input : "");
    if (!b->model || !b->url || !b->image_input)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    return KVC_OK;
}

/* Sets up the signature fetches' lock, condition (on the monotonic clock,
 * so waits are deadlines) and per-backend state. */
static int s_sig_sync_init(kvc_proxy_t *self)
{
    self->fetches = kvc_calloc(self->n ? self->n : 1, sizeof *self->fetches);
    if (!self->fetches)
        return KVC_ENOMEM;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return KVC_ENOMEM;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&self->sig_done, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return KVC_ENOMEM;
    if (pthread_mutex_init(&self->sig_lock, NULL) != 0) {
        pthread_cond_destroy(&self->sig_done);
        return KVC_ENOMEM;
    }
    self->sig_sync = 1;
    return KVC_OK;
}

kvc_proxy_t *kvc_proxy_new(const kvc_proxy_opts_t *opts, kvc_err_t *err)
{
    if (!opts || (opts->n_backends && !opts->backends)) {
        kvc_err_set(err, KVC_EINVAL, "proxy: no options");
        return NULL;
    }
    kvc_proxy_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        return NULL;
    }
    self->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 30000;
    self->max_message = opts->max_message ? opts->max_message : KVC_GRPC_DEFAULT_MAX_MESSAGE;
    self->limits = opts->limits;
    if (!self->limits.max_elements)
        self->limits.max_elements = (uint64_t)256 << 20;
    if (!self->limits.max_bytes)
        self->limits.max_bytes = (uint64_t)1 << 30;
    self->observe = opts->observe;
    self->observe_arg = opts->observe_arg;
    if (opts->n_backends) {
        self->backends = kvc_calloc(opts->n_backends, sizeof *self->backends);
        if (!self->backends) {
            kvc_err_set(err, KVC_ENOMEM, "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i < opts->n_backends; i++) {
        self->n++;
        if (s_backend_init(&self->backends[i], &opts->backends[i], i, err) != 0)
            goto fail;
        for (size_t j = 0; j < i; j++)
            if (strcmp(self->backends[j].model, self->backends[i].model) == 0) {
                kvc_err_set(err, KVC_EEXIST, "proxy.backends[%zu].model: \"%s\" is listed twice", i,
                            self->backends[i].model);
                goto fail;
            }
    }
    if (s_sig_sync_init(self) != 0) {
        kvc_err_set(err, KVC_ENOMEM, "proxy: cannot set up the signature fetches");
        goto fail;
    }
    /* Every call the proxy makes (predict, infer, metadata, status) only
     * reads: one cut off with its connection may be made again. */
    kvc_grpc_opts_t gopts = {
        .max_message_size = self->max_message, .ca_file = opts->grpc_ca_file, .retry_lost = 1};
    self->grpc = kvc_grpc_client_new(&gopts);
    self->sigs = kvc_signature_cache_new(self->n, S_SIG_RETRY_MS);
    self->images =
        kvc_image_budget_new(opts->image_memory ? opts->image_memory : (uint64_t)256 << 20);
    if (!self->grpc || !self->sigs || !self->images) {
        kvc_err_set(err, KVC_ENOMEM, "proxy: cannot start the gRPC client");
        goto fail;
    }
    return self;
fail:
    kvc_proxy_destroy(&self);
    return NULL;
}

void kvc_proxy_destroy(kvc_proxy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_proxy_t *self = *self_p;
    kvc_grpc_client_destroy(&self->grpc);
    kvc_signature_cache_destroy(&self->sigs);
    if (self->sig_sync) {
        pthread_cond_destroy(&self->sig_done);
        pthread_mutex_destroy(&self->sig_lock);
    }
    kvc_free(self->fetches);
    kvc_image_budget_destroy(&self->images);
    for (size_t i = 0; i < self->n; i++)
        s_backend_free(&self->backends[i]);
    kvc_free(self->backends);
    kvc_free(self);
    *self_p = NULL;
}

/* ---- Backend calls ------------------------------------------------------ */

/* Answers an error and keeps its message in c->last_error, for requests
 * that share this request's outcome. */
static void s_fail(s_ctx_t *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_fail(s_ctx_t *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_error, sizeof c->last_error, fmt, ap);
    va_end(ap);
    kvc_http_error(c->resp, status, "%s", c->last_error);
}

/*
 * Packs msg, calls path on the request's backend and fills res. Returns 0
 * when the call succeeded; otherwise answers the HTTP error (TF Serving's
 * mapping, the backend's message) and returns a negative code.
 */
static int s_call(s_ctx_t *c, const char *url, const char *path, const ProtobufCMessage *msg,
                  uint32_t timeout_ms, kvc_grpc_result_t *res)
{
    memset(res, 0, sizeof *res);
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len > c->p->max_message) {
        s_fail(c, 413, "request to the model server is %zu bytes, over the limit of %zu", len,
               c->p->max_message);
        return KVC_ERANGE;
    }
    uint8_t *buf = kvc_malloc(len ? len : 1);
    if (!buf) {
        s_fail(c, 500, "out of memory");
        return KVC_ENOMEM;
    }
    protobuf_c_message_pack(msg, buf);
    c->obs.backend_request_bytes += len;
    int rc = kvc_grpc_call(c->p->grpc, url, path, buf, len, timeout_ms, res);
    kvc_free(buf);
    c->obs.grpc_status = res->code;
    if (rc == 0 && res->code == KVC_GRPC_OK) {
        c->obs.backend_response_bytes += res->len;
        return KVC_OK;
    }
    const char *msgtext = res->message[0] ? res->message : kvc_grpc_status_name(res->code);
    s_fail(c, kvc_proxy_http_status(res->code), "%s", msgtext);
    return rc ? rc : KVC_EIO;
}

/* Decodes a backend reply with the proxy's allocator (pb_decode.h); on
 * failure answers 502 (bad bytes) or 500 (out of memory) and returns NULL
 * with *rc set. Free the message with kvc_pb_allocator(). */
static ProtobufCMessage *s_decode(s_ctx_t *c, const ProtobufCMessageDescriptor *desc,
                                  const kvc_grpc_result_t *res, const char *what, int *rc)
{
    kvc_err_t err = {0, ""};
    ProtobufCMessage *m = NULL;
    *rc = kvc_pb_unpack(desc, res->data, res->len, what, &m, &err);
    if (*rc)
        s_fail(c, *rc == KVC_ENOMEM ? 500 : 502, "%s", err.msg);
    return m;
}

/* Fills a TF Serving ModelSpec from the route (ver must outlive spec). */
static void s_model_spec(const s_ctx_t *c, Tensorflow__Serving__ModelSpec *spec,
                         Google__Protobuf__Int64Value *ver, const char *signature)
{
    tensorflow__serving__model_spec__init(spec);
    google__protobuf__int64_value__init(ver);
    spec->name = (char *)c->route.model;
    spec->signature_name = (char *)(signature ? signature : "");
    if (c->route.version >= 0) {
        ver->value = c->route.version;
        spec->version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
        spec->version = ver;
    } else if (c->route.label[0]) {
        spec->version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL;
        spec->version_label = (char *)c->route.label;
    }
}

/* The KServe version string of the route into buf ("" = latest): the path's
 * version as given, since KServe v2 versions are strings. A label cannot be
 * expressed to a KServe backend: 400. */
static int s_kserve_version(s_ctx_t *c, char *buf, size_t size)
{
    buf[0] = '\0';
    if (c->route.label[0]) {
        kvc_http_error(c->resp, 400, "version labels are not supported for KServe backends");
        return KVC_EINVAL;
    }
    snprintf(buf, size, "%s", c->route.version_name);
    return KVC_OK;
}

/* Calls TF Serving GetModelMetadata(signature_def); *out is the decoded
 * reply (free with ..._free_unpacked). Answers the error itself. */
static int s_tfs_metadata(s_ctx_t *c, uint32_t timeout_ms, int latest,
                          Tensorflow__Serving__GetModelMetadataResponse **out)
{
    Tensorflow__Serving__GetModelMetadataRequest r =
        TENSORFLOW__SERVING__GET_MODEL_METADATA_REQUEST__INIT;
    Tensorflow__Serving__ModelSpec spec;
    Google__Protobuf__Int64Value ver;
    s_model_spec(c, &spec, &ver, NULL);
    if (latest)
        spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE__NOT_SET;
    char *field = "signature_def";
    r.model_spec = &spec;
    r.n_metadata_field = 1;
    r.metadata_field = &field;
    kvc_grpc_result_t res;
    int rc = s_call(c, c->be->url, S_PATH_METADATA, &r.base, timeout_ms, &res);
    if (rc == 0) {
        *out = (Tensorflow__Serving__GetModelMetadataResponse *)s_decode(
            c, &tensorflow__serving__get_model_metadata_response__descriptor, &res,
            "GetModelMetadataResponse", &rc);
    }
    kvc_grpc_result_free(&res);
    return rc;
}

/* Calls KServe ModelMetadata for the route's model and version. */
static int s_kserve_metadata(s_ctx_t *c, uint32_t timeout_ms, int latest,
                             Inference__ModelMetadataResponse **out)
{
    char version[KVC_VERSION_MAX + 1];
    int rc = latest ? (version[0] = '\0', 0) : s_kserve_version(c, version, sizeof version);
    if (rc)
        return rc;
    Inference__ModelMetadataRequest r = INFERENCE__MODEL_METADATA_REQUEST__INIT;
    r.name = (char *)c->route.model;
    r.version = version;
    kvc_grpc_result_t res;
    rc = s_call(c, c->be->url, S_PATH_V2_META, &r.base, timeout_ms, &res);
    if (rc == 0) {
        *out = (Inference__ModelMetadataResponse *)s_decode(
            c, &inference__model_metadata_response__descriptor, &res, "ModelMetadataResponse", &rc);
    }
    kvc_grpc_result_free(&res);
    return rc;
}

/* Tells whether a failed gRPC call may well succeed if simply repeated:
 * the server was unreachable, overloaded, too slow or restarting. */
static int s_transient(int grpc_code)
{
    return grpc_code == KVC_GRPC_UNAVAILABLE || grpc_code == KVC_GRPC_DEADLINE_EXCEEDED ||
           grpc_code == KVC_GRPC_CANCELLED || grpc_code == KVC_GRPC_ABORTED ||
           grpc_code == KVC_GRPC_RESOURCE_EXHAUSTED;
}

/*
 * Fetches the model's signatures from its backend with one metadata call.
 * Returns the fresh set (caller owns it), or NULL and then either
 * *definitive = 1 (the server has no metadata for us: UNIMPLEMENTED, or an
 * answer without usable signatures; worth remembering for a while) or
 * *definitive = 0 with the error answered in c->resp (503 with the reason
 * for a transient failure, else the server's own status and message).
 */
static kvc_signature_set_t *s_fetch_signatures(s_ctx_t *c, int *definitive)
{
    uint32_t t = c->p->timeout_ms < S_SIG_TIMEOUT_MS ? c->p->timeout_ms : S_SIG_TIMEOUT_MS;
    kvc_err_t err = {0};
    kvc_signature_set_t *fresh = NULL;
    int grpc_status = c->obs.grpc_status;
    c->obs.grpc_status = -1;
    if (c->be->api == S_API_TFS) {
        Tensorflow__Serving__GetModelMetadataResponse *r = NULL;
        if (s_tfs_metadata(c, t, 1, &r) == 0) {
            fresh = kvc_signature_set_from_tfs(r, &err);
            tensorflow__serving__get_model_metadata_response__free_unpacked(r, kvc_pb_allocator());
        }
    } else {
        Inference__ModelMetadataResponse *r = NULL;
        if (s_kserve_metadata(c, t, 1, &r) == 0) {
            fresh = kvc_signature_set_from_kserve(r, &err);
            inference__model_metadata_response__free_unpacked(r, kvc_pb_allocator());
        }
    }
    int code = c->obs.grpc_status;
    *definitive = !fresh && (code == KVC_GRPC_OK || code == KVC_GRPC_UNIMPLEMENTED);
    if (fresh || *definitive) {
        /* The metadata call is not the request: forget its status and answer. */
        c->obs.grpc_status = grpc_status;
        c->resp->status = 0;
        c->resp->header_name[0] = '\0';
        kvc_buf_reset(&c->resp->body);
    } else if (s_transient(code)) {
        char why[sizeof c->last_error];
        memcpy(why, c->last_error, sizeof why);
        s_fail(c, 503, "cannot fetch the signatures of model %s from its model server (%s): %.*s",
               c->be->model, kvc_grpc_status_name(code), KVC_GRPC_MSG_MAX, why);
    }
    return fresh;
}

/* Remembers how this request's fetch ended for the requests waiting on it
 * (lock held). */
static void s_fetch_record(s_ctx_t *c, s_sigfetch_t *f, int failed)
{
    f->busy = 0;
    f->done++;
    f->status = failed ? c->resp->status : 0;
    f->grpc_status = c->obs.grpc_status;
    snprintf(f->error, sizeof f->error, "%s", failed ? c->last_error : "");
    pthread_cond_broadcast(&c->p->sig_done);
}

/*
 * The model's input signatures, for parsing JSON into the model's dtypes.
 * On 0, *out is the set, or NULL when the server has none to give (dtypes
 * are then inferred from the JSON). A fetch that failed for a reason that
 * may pass (server down, overloaded, restarting) is never remembered and
 * never guessed around: the request is answered 503 with the reason, and
 * the next request fetches again. At most one fetch per backend is in
 * flight; requests arriving meanwhile wait for it and share its outcome.
 * Returns a negative code when the error has been answered.
 */
static int s_signatures_get(s_ctx_t *c, const kvc_signature_set_t **out)
{
    kvc_proxy_t *p = c->p;
    s_sigfetch_t *f = &p->fetches[c->be_index];
    *out = NULL;
    c->last_error[0] = '\0';
    for (int round = 0; round < 4; round++) {
        int fetch = 0;
        const kvc_signature_set_t *set =
            kvc_signature_cache_get(p->sigs, c->be_index, s_now_ms(), &fetch);
        if (set || !fetch) {
            *out = set;
            return KVC_OK;
        }
        pthread_mutex_lock(&p->sig_lock);
        /* A fiber must not block the HTTP loop (the fetch it would wait for
         * may be another fiber's): it fetches for itself, without sharing
         * the outcome. Rare: kvc_proxy_inline_ok sends requests of models
         * without signatures yet to threads. */
        if (f->busy && !kvc_fiber_current()) {
            uint64_t seen = f->done;
            uint32_t t = p->timeout_ms < S_SIG_TIMEOUT_MS ? p->timeout_ms : S_SIG_TIMEOUT_MS;
            uint64_t until = s_now_ms() + t + S_SIG_WAIT_SLACK_MS;
            struct timespec ts = {.tv_sec = (time_t)(until / 1000),
                                  .tv_nsec = (long)(until % 1000) * 1000000L};
            int rc = 0;
            while (f->done == seen && rc == 0)
                rc = pthread_cond_timedwait(&p->sig_done, &p->sig_lock, &ts);
            if (f->done == seen) {
                pthread_mutex_unlock(&p->sig_lock);
                kvc_http_error(c->resp, 503,
                               "the signatures of model %s are still being fetched from its "
                               "model server",
                               c->be->model);
                return KVC_ETIMEDOUT;
            }
            if (f->status) {
                int status = f->status;
                c->obs.grpc_status = f->grpc_status;
                char error[sizeof f->error];
                memcpy(error, f->error, sizeof error);
                pthread_mutex_unlock(&p->sig_lock);
                s_fail(c, status, "%s", error);
                return KVC_EUNAVAIL;
            }
            pthread_mutex_unlock(&p->sig_lock);
            continue; /* it got them, or learnt there are none: the cache says */
        }
        int shared = !f->busy; /* the fetch others wait for */
        f->busy = 1;
        pthread_mutex_unlock(&p->sig_lock);
        int definitive = 0;
        /* Cached and shared with the requests waiting for it: one client
         * hanging up (the caller's cancel flag) must not end the fetch. */
        const atomic_int *flag = kvc_grpc_cancel_flag_set(NULL);
        kvc_signature_set_t *fresh = s_fetch_signatures(c, &definitive);
        kvc_grpc_cancel_flag_set(flag);
        if (fresh)
            *out = kvc_signature_cache_put(p->sigs, c->be_index, &fresh);
        else if (definitive)
            kvc_signature_cache_fail(p->sigs, c->be_index, s_now_ms());
        if (shared) {
            pthread_mutex_lock(&p->sig_lock);
            s_fetch_record(c, f, !*out && !definitive);
            pthread_mutex_unlock(&p->sig_lock);
        }
        return *out || definitive ? KVC_OK : KVC_EUNAVAIL;
    }
    kvc_http_error(c->resp, 503, "the signatures of model %s could not be settled", c->be->model);
    return KVC_EUNAVAIL;
}

/* The model's signatures for code that cannot answer a fetch failure
 * itself (its callers fetch first with s_signatures_get): NULL when
 * unknown, with the response left empty. */
static const kvc_signature_set_t *s_signatures(s_ctx_t *c)
{
    const kvc_signature_set_t *set = NULL;
    if (s_signatures_get(c, &set) != 0) {
        c->resp->status = 0;
        c->resp->header_name[0] = '\0';
        kvc_buf_reset(&c->resp->body);
    }
    return set;
}

/* ---- Inference ------------------------------------------------------------ */

/* Sets the response to the backend's protobuf bytes as they came, labelled
 * with the media type the client asked for. */
static int s_answer_protobuf(s_ctx_t *c, const kvc_grpc_result_t *res, const char *type)
{
    kvc_buf_reset(&c->resp->body);
    if (kvc_buf_append(&c->resp->body, res->data ? (const char *)res->data : "", res->len) != 0) {
        kvc_http_error(c->resp, 500, "response exceeds the limit of %zu bytes", c->resp->body.max);
        return KVC_ERANGE;
    }
    c->resp->status = 200;
    snprintf(c->resp->content_type, sizeof c->resp->content_type, "%s", type);
    return KVC_OK;
}

/* ---- Media types (RFC 9110 sections 5.6, 8.3, 12.5.1) ------------------ */

/* 1 if c is a tchar, a byte a token may hold. */
static int s_tchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Skips optional whitespace. */
static const char *s_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Length of the token at p (0 if none). */
static size_t s_token(const char *p)
{
    size_t n = 0;
    while (s_tchar((unsigned char)p[n]))
        n++;
    return n;
}

/* 1 if [p, p+n) equals the lower-case word w, ignoring ASCII case. */
static int s_caseeq(const char *p, size_t n, const char *w)
{
    if (strlen(w) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char a = p[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != w[i])
            return 0;
    }
    return 1;
}

/* Reads a qvalue ("0", "0.5", "1.000") at [p, p+n) as 0..1000; -1 if it
 * is not one. */
static int s_qvalue(const char *p, size_t n)
{
    if (n == 0 || (p[0] != '0' && p[0] != '1') || (n > 1 && p[1] != '.') || n > 5)
        return -1;
    int q = (p[0] - '0') * 1000, scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        q += (p[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

/* One parsed media range of an Accept header. */
typedef struct {
    const char *type, *sub; /* not NUL-terminated */
    size_t type_len, sub_len;
    int q;          /* 0..1000 */
    int not_binary; /* an encoding parameter other than "binary" */
} s_range_t;

/*
 * Parses the media range at *pp (up to the next ',' outside a quoted
 * string, which is consumed). Returns 1 with r filled, 0 for an empty list
 * element, -1 for a malformed one (skipped by the caller).
 */
static int s_range(const char **pp, s_range_t *r)
{
    const char *p = s_ows(*pp);
    int ok = 1;
    memset(r, 0, sizeof *r);
    r->q = 1000;
    r->type = p;
    r->type_len = s_token(p);
    p += r->type_len;
    if (r->type_len == 0 || *p != '/')
        ok = 0;
    else {
        r->sub = ++p;
        r->sub_len = s_token(p);
        p += r->sub_len;
        ok = r->sub_len > 0;
    }
    while (ok) {
        p = s_ows(p);
        if (*p != ';')
            break;
        p = s_ows(p + 1);
        size_t nn = s_token(p);
        if (nn == 0)
            continue; /* "type/sub;" and ";;" are allowed */
        const char *name = p, *val = NULL;
        size_t vn = 0;
        p += nn;
        if (*p != '=') {
            ok = 0;
            break;
        }
        p++;
        if (*p == '"') {
            val = ++p;
            while (*p && *p != '"')
                p += p[0] == '\\' && p[1] ? 2 : 1;
            if (*p != '"') {
                ok = 0;
                break;
            }
            vn = (size_t)(p++ - val);
        } else {
            val = p;
            vn = s_token(p);
            p += vn;
            if (vn == 0)
                ok = 0;
        }
        if (ok && s_caseeq(name, nn, "q")) {
            r->q = s_qvalue(val, vn);
            ok = r->q >= 0;
        } else if (ok && s_caseeq(name, nn, "encoding")) {
            r->not_binary = !s_caseeq(val, vn, "binary");
        }
    }
    if (ok) {
        p = s_ows(p);
        ok = *p == ',' || *p == '\0';
    }
    /* Skip to the element's end, stepping over quoted strings. */
    while (*p && *p != ',') {
        if (*p == '"') {
            p++;
            while (*p && *p != '"')
                p += p[0] == '\\' && p[1] ? 2 : 1;
        }
        if (*p)
            p++;
    }
    int empty = r->type_len == 0 && s_ows(r->type) == p;
    *pp = *p == ',' ? p + 1 : p;
    return empty ? 0 : ok ? 1 : -1;
}

const char *kvc_proxy_accept_protobuf(const char *accept)
{
    static const char *const names[] = {"application/protobuf", "application/x-protobuf",
                                        "application/x-protobuffer"};
    if (!accept)
        return NULL;
    const char *best = NULL;
    int best_q = 0, json_q = 0, json_rank = 0;
    const char *p = accept;
    while (*p) {
        s_range_t r;
        if (s_range(&p, &r) != 1)
            continue;
        int app = s_caseeq(r.type, r.type_len, "application");
        int star = s_caseeq(r.type, r.type_len, "*") && s_caseeq(r.sub, r.sub_len, "*");
        /* How application/json fares: its most specific range decides. */
        int rank = app && s_caseeq(r.sub, r.sub_len, "json") ? 3
                   : app && s_caseeq(r.sub, r.sub_len, "*")  ? 2
                   : star                                    ? 1
                                                             : 0;
        if (rank > json_rank || (rank && rank == json_rank && r.q > json_q)) {
            json_rank = rank;
            json_q = r.q;
        }
        for (size_t i = 0; app && !r.not_binary && i < sizeof names / sizeof names[0]; i++)
            if (s_caseeq(r.sub, r.sub_len, names[i] + 12) && r.q > best_q) {
                best = names[i];
                best_q = r.q;
            }
    }
    /* Named explicitly and at least as welcome as JSON. */
    return best && best_q >= json_q ? best : NULL;
}

int kvc_proxy_is_image_type(const char *content_type)
{
    if (!content_type)
        return 0;
    const char *p = s_ows(content_type);
    size_t n = s_token(p);
    if (!s_caseeq(p, n, "image") || p[n] != '/')
        return 0;
    p += n + 1;
    n = s_token(p);
    if (n == 0)
        return 0;
    p = s_ows(p + n);
    return *p == '\0' || *p == ';';
}

/* The protobuf media type the client wants its answer in, or NULL for JSON. */
static const char *s_wants_protobuf(const kvc_http_req_t *req)
{
    return kvc_proxy_accept_protobuf(req->accept);
}

/* Runs Predict on a TF Serving backend; *outputs gets the result tensors
 * (NULL with 0 when the protobuf answer was sent as is). */
static int s_infer_tfs(s_ctx_t *c, kvc_tensor_list_t *inputs, const char *signature, char **filter,
                       size_t n_filter, kvc_tensor_list_t **outputs)
{
    size_t n = kvc_tensor_list_size(inputs);
    Tensorflow__Serving__PredictRequest r = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    Tensorflow__Serving__ModelSpec spec;
    Google__Protobuf__Int64Value ver;
    s_model_spec(c, &spec, &ver, signature);
    kvc_tfproto_view_t *views = kvc_calloc(n ? n : 1, sizeof *views);
    Tensorflow__Serving__PredictRequest__InputsEntry *entries =
        kvc_calloc(n ? n : 1, sizeof *entries);
    Tensorflow__Serving__PredictRequest__InputsEntry **ptrs = kvc_calloc(n ? n : 1, sizeof *ptrs);
    size_t n_views = 0;
    kvc_grpc_result_t res = {0};
    const char *pb_type = NULL;
    int rc = KVC_OK;
    if (!views || !entries || !ptrs) {
        kvc_http_error(c->resp, 500, "out of memory");
        rc = KVC_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const kvc_tensor_t *t = kvc_tensor_list_at(inputs, i);
        rc = kvc_tfproto_view_init(&views[i], t);
        n_views++;
        if (rc) {
            kvc_http_error(c->resp, rc == KVC_ENOMEM ? 500 : 400, "input %s: cannot be sent",
                           kvc_tensor_name(t));
            goto done;
        }
        tensorflow__serving__predict_request__inputs_entry__init(&entries[i]);
        entries[i].key = (char *)kvc_tensor_name(t);
        entries[i].value = &views[i].proto;
        ptrs[i] = &entries[i];
    }
    r.model_spec = &spec;
    r.n_inputs = n;
    r.inputs = ptrs;
    r.n_output_filter = n_filter;
    r.output_filter = filter;
    rc = s_call(c, c->be->url, S_PATH_PREDICT, &r.base, c->p->timeout_ms, &res);
    if (rc)
        goto done;
    if ((pb_type = s_wants_protobuf(c->req)) != NULL) {
        rc = s_answer_protobuf(c, &res, pb_type);
        goto done;
    }
    kvc_err_t err = {0, ""};
    rc = kvc_infer_reply_tfs(res.data, res.len, &c->p->limits, outputs, c->version,
                             sizeof c->version, &err);
    if (rc)
        s_fail(c, rc == KVC_ENOMEM ? 500 : 502, "%s", err.msg);
done:
    kvc_grpc_result_free(&res);
    for (size_t i = 0; i < n_views; i++)
        kvc_tfproto_view_clear(&views[i]);
    kvc_free(views);
    kvc_free(entries);
    kvc_free(ptrs);
    if (rc)
        kvc_tensor_list_destroy(outputs);
    return rc;
}

/* Runs ModelInfer on a KServe backend; like s_infer_tfs. */
static int s_infer_kserve(s_ctx_t *c, kvc_tensor_list_t *inputs, const char *id, char **filter,
                          size_t n_filter, kvc_tensor_list_t **outputs)
{
    char version[KVC_VERSION_MAX + 1];
    int rc = s_kserve_version(c, version, sizeof version);
    if (rc)
        return rc;
    size_t n = kvc_tensor_list_size(inputs);
    Inference__ModelInferRequest r = INFERENCE__MODEL_INFER_REQUEST__INIT;
    kvc_kserve_input_view_t *views = kvc_calloc(n ? n : 1, sizeof *views);
    Inference__ModelInferRequest__InferInputTensor **ptrs = kvc_calloc(n ? n : 1, sizeof *ptrs);
    ProtobufCBinaryData *raws = kvc_calloc(n ? n : 1, sizeof *raws);
    Inference__ModelInferRequest__InferRequestedOutputTensor *outs =
        kvc_calloc(n_filter ? n_filter : 1, sizeof *outs);
    Inference__ModelInferRequest__InferRequestedOutputTensor **outp =
        kvc_calloc(n_filter ? n_filter : 1, sizeof *outp);
    size_t n_views = 0;
    kvc_grpc_result_t res = {0};
    const char *pb_type = NULL;
    if (!views || !ptrs || !raws || !outs || !outp) {
        kvc_http_error(c->resp, 500, "out of memory");
        rc = KVC_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const kvc_tensor_t *t = kvc_tensor_list_at(inputs, i);
        rc = kvc_kserve_input_view_init(&views[i], t);
        n_views++;
        if (rc) {
            kvc_http_error(c->resp, rc == KVC_ENOMEM ? 500 : 400, "input %s: cannot be sent",
                           kvc_tensor_name(t));
            goto done;
        }
        ptrs[i] = &views[i].input;
        raws[i] = views[i].raw;
    }
    for (size_t i = 0; i < n_filter; i++) {
        inference__model_infer_request__infer_requested_output_tensor__init(&outs[i]);
        outs[i].name = filter[i];
        outp[i] = &outs[i];
    }
    r.model_name = (char *)c->route.model;
    r.model_version = version;
    r.id = (char *)(id ? id : "");
    r.n_inputs = n;
    r.inputs = ptrs;
    r.n_raw_input_contents = n;
    r.raw_input_contents = raws;
    r.n_outputs = n_filter;
    r.outputs = outp;
    rc = s_call(c, c->be->url, S_PATH_INFER, &r.base, c->p->timeout_ms, &res);
    if (rc)
        goto done;
    if ((pb_type = s_wants_protobuf(c->req)) != NULL) {
        rc = s_answer_protobuf(c, &res, pb_type);
        goto done;
    }
    kvc_err_t err = {0, ""};
    rc = kvc_infer_reply_kserve(res.data, res.len, &c->p->limits, outputs, c->version,
                                sizeof c->version, &err);
    if (rc)
        s_fail(c, rc == KVC_ENOMEM ? 500 : 502, "%s", err.msg);
done:
    kvc_grpc_result_free(&res);
    for (size_t i = 0; i < n_views; i++)
        kvc_kserve_input_view_clear(&views[i]);
    kvc_free(views);
    kvc_free(ptrs);
    kvc_free(raws);
    kvc_free(outs);
    kvc_free(outp);
    if (rc)
        kvc_tensor_list_destroy(outputs);
    return rc;
}

/* Runs inputs through the request's backend, whatever its API. A KServe
 * model has one unnamed signature, so a request naming another one cannot
 * be served as asked. An OK answer without outputs is the model server's
 * fault (502), never the client's. */
static int s_infer(s_ctx_t *c, kvc_tensor_list_t *inputs, const char *signature, const char *id,
                   char **filter, size_t n_filter, kvc_tensor_list_t **outputs)
{
    *outputs = NULL;
    int rc;
    if (c->be->api == S_API_TFS) {
        rc = s_infer_tfs(c, inputs, signature, filter, n_filter, outputs);
    } else if (signature && signature[0] && strcmp(signature, KVC_SIGNATURE_DEFAULT) != 0) {
        kvc_http_error(c->resp, 400,
                       "the KServe backend of model %s has no signature named \"%s\" (KServe "
                       "models have only \"" KVC_SIGNATURE_DEFAULT "\")",
                       c->be->model, signature);
        return KVC_EINVAL;
    } else {
        rc = s_infer_kserve(c, inputs, id, filter, n_filter, outputs);
    }
    if (rc == 0 && *outputs && kvc_tensor_list_size(*outputs) == 0) {
        kvc_tensor_list_destroy(outputs);
        kvc_http_error(c->resp, 502, "model server answered with no outputs");
        return KVC_EPARSE;
    }
    return rc;
}

/* Answers a codec failure: 400 for bad input, 413 past limits. */
static int s_codec_error(s_ctx_t *c, int rc, const kvc_err_t *err)
{
    if (rc == KVC_ERANGE)
        kvc_http_error(c->resp, 413, "%s", err->msg);
    else if (rc == KVC_EAGAIN) /* out of a shared budget for now: RESOURCE_EXHAUSTED */
        kvc_http_error(c->resp, 429, "%s", err->msg);
    else if (rc == KVC_ENOMEM)
        kvc_http_error(c->resp, 500, "out of memory");
    else
        kvc_http_error(c->resp, 400, "%s", err->msg[0] ? err->msg : kvc_strerror(rc));
    return rc;
}

/* Tells whether the request body is an image by its Content-Type. */
static int s_is_image(const kvc_http_req_t *req)
{
    return kvc_proxy_is_image_type(req->content_type);
}

/* Decodes an image body into a one-tensor input list by the backend's
 * preprocessing spec. */
static int s_image_inputs(s_ctx_t *c, kvc_tensor_list_t **inputs)
{
    const s_backend_t *be = c->be;
    if (!be->has_spec) {
        kvc_http_error(c->resp, 400,
                       "model %s has no image preprocessing spec configured; send JSON tensors",
                       be->model);
        return KVC_EINVAL;
    }
    const char *name = be->image_input;
    if (!name[0]) {
        const kvc_json_tensor_spec_t *specs = NULL;
        size_t n = 0;
        const kvc_signature_set_t *set = s_signatures(c);
        if (kvc_signature_set_inputs(set, NULL, &specs, &n) != 0 || n != 1) {
            kvc_http_error(c->resp, 400,
                           "model %s: no image_input configured and its signature does not "
                           "name exactly one input",
                           be->model);
            return KVC_EINVAL;
        }
        name = specs[0].name;
    }
    uint8_t *pix = NULL;
    size_t len = 0;
    int64_t shape[4];
    kvc_err_t err = {0};
    kvc_image_limits_t il = {.budget = c->p->images};
    int rc = kvc_image_to_tensor(c->req->body, c->req->body_len, c->req->content_type, &be->spec,
                                 &il, &pix, &len, shape, &err);
    if (rc)
        return s_codec_error(c, rc, &err);
    kvc_dtype_t dt = be->spec.dtype == KVC_PP_UINT8 ? KVC_DT_UINT8 : KVC_DT_FLOAT;
    kvc_tensor_t *t = kvc_tensor_new(name, dt, &c->p->limits);
    *inputs = kvc_tensor_list_new();
    rc = t && *inputs ? 0 : KVC_ENOMEM;
    rc = rc ? rc : kvc_tensor_append(t, pix, len / kvc_dtype_size(dt));
    rc = rc ? rc : kvc_tensor_set_shape(t, shape, 4);
    kvc_free(pix);
    if (rc == 0)
        rc = kvc_tensor_list_add(*inputs, &t);
    if (rc) {
        kvc_tensor_destroy(&t);
        kvc_tensor_list_destroy(inputs);
        if (rc == KVC_ERANGE)
            kvc_http_error(c->resp, 413, "image tensor exceeds the request limits");
        else
            kvc_http_error(c->resp, 500, "out of memory");
    }
    return rc;
}

/* Fetches the signatures an image request needs (to find the model's only
 * input) before s_image_inputs reads them, so that a fetch failure is
 * answered as such and not as a model without one input. */
static int s_image_signatures(s_ctx_t *c)
{
    const kvc_signature_set_t *set = NULL;
    if (!c->be->has_spec || c->be->image_input[0])
        return KVC_OK;
    return s_signatures_get(c, &set);
}

/* Sets a JSON 200 answer's headers (the body is already in place). */
static void s_json_ok(s_ctx_t *c)
{
    c->resp->status = 200;
    snprintf(c->resp->content_type, sizeof c->resp->content_type, "application/json");
}

/* Answers a failure to render a backend's answer into the response
 * buffer. Whatever the renderer could not express is the model server's
 * doing (502); callers answer the cases a client can change themselves. */
static void s_write_error(s_ctx_t *c, int rc, const kvc_err_t *err)
{
    if (rc == KVC_ERANGE)
        kvc_http_error(c->resp, 500, "response exceeds the limit of %zu bytes", c->resp->body.max);
    else if (rc == KVC_ENOMEM)
        kvc_http_error(c->resp, 500, "out of memory");
    else
        kvc_http_error(c->resp, 502, "model server answer cannot be written as JSON: %s",
                       err && err->msg[0] ? err->msg : kvc_strerror(rc));
}

/* POST ...:predict (TF Serving REST). */
static void s_tfs_predict(s_ctx_t *c)
{
    kvc_json_tensor_request_t jr = {0};
    kvc_tensor_list_t *inputs = NULL, *outputs = NULL;
    kvc_json_tensor_format_t format = KVC_JSON_TENSOR_ROW;
    const char *signature = NULL;
    if (s_is_image(c->req)) {
        if (s_image_signatures(c) != 0 || s_image_inputs(c, &inputs) != 0)
            return;
    } else {
        const kvc_signature_set_t *set = NULL;
        if (s_signatures_get(c, &set) != 0)
            return;
        kvc_json_tensor_opts_t o = {.limits = c->p->limits};
        kvc_signature_set_inputs(set, NULL, &o.specs, &o.n_specs);
        kvc_err_t err = {0};
        int rc = kvc_json_tensor_parse_request((const char *)c->req->body, c->req->body_len, &o,
                                               &jr, &err);
        if (rc == 0 && jr.signature_name && jr.signature_name[0]) {
            /* Another signature than the default: parse again with its dtypes. */
            kvc_json_tensor_opts_t o2 = {.limits = c->p->limits};
            if (kvc_signature_set_inputs(set, jr.signature_name, &o2.specs, &o2.n_specs) == 0 &&
                o2.specs != o.specs) {
                kvc_json_tensor_request_clear(&jr);
                rc = kvc_json_tensor_parse_request((const char *)c->req->body, c->req->body_len,
                                                   &o2, &jr, &err);
            }
        }
        if (rc) {
            s_codec_error(c, rc, &err);
            return;
        }
        /* The parser refuses an unnamed value for a multi-input signature
         * only when the request names none (it cannot know the named one's
         * inputs); this covers a named signature. */
        const kvc_json_tensor_spec_t *sp = NULL;
        size_t ns = 0;
        if (jr.signature_name && jr.signature_name[0] &&
            kvc_signature_set_inputs(set, jr.signature_name, &sp, &ns) == 0 && ns > 1 &&
            kvc_tensor_list_find(jr.inputs, "")) {
            kvc_http_error(
                c->resp, 400, "%s: the signature \"%s\" has %zu inputs, so %s keyed by input name",
                jr.format == KVC_JSON_TENSOR_COLUMNAR ? "inputs" : "instances", jr.signature_name,
                ns,
                jr.format == KVC_JSON_TENSOR_COLUMNAR ? "'inputs' must be an object"
                                                      : "each instance must be an object");
            kvc_json_tensor_request_clear(&jr);
            return;
        }
        inputs = jr.inputs;
        format = jr.format;
        signature = jr.signature_name;
    }
    if (s_infer(c, inputs, signature, NULL, NULL, 0, &outputs) == 0 && outputs) {
        kvc_err_t err = {0};
        kvc_buf_reset(&c->resp->body);
        int rc = kvc_json_tensor_write_response(outputs, format, &c->resp->body, &err);
        if (rc == KVC_EINVAL && format == KVC_JSON_TENSOR_ROW)
            /* Outputs without one common batch size (as TF Serving, 400):
             * the columnar format ("inputs") can carry them. */
            kvc_http_error(c->resp, 400, "%s; send \"inputs\" for the columnar format", err.msg);
        else if (rc)
            s_write_error(c, rc, &err);
        else
            s_json_ok(c);
    }
    kvc_tensor_list_destroy(&outputs);
    if (jr.inputs)
        kvc_json_tensor_request_clear(&jr);
    else
        kvc_tensor_list_destroy(&inputs);
}

/* POST /v2/models/NAME[/versions/V]/infer (KServe v2). */
static void s_v2_infer(s_ctx_t *c)
{
    kvc_kserve_request_t kr = {0};
    kvc_tensor_list_t *inputs = NULL, *outputs = NULL;
    char **filter = NULL;
    size_t n_filter = 0;
    if (s_is_image(c->req)) {
        if (s_image_signatures(c) != 0 || s_image_inputs(c, &inputs) != 0)
            return;
    } else {
        size_t header_len = c->req->body_len;
        if (c->req->inference_header_length) {
            int64_t v = 0;
            if (kvc_parse_i64(c->req->inference_header_length, 0, (int64_t)c->req->body_len, &v) !=
                0) {
                kvc_http_error(c->resp, 400,
                               "Inference-Header-Content-Length: \"%.40s\" is not a length "
                               "within the %zu-byte body",
                               c->req->inference_header_length, c->req->body_len);
                return;
            }
            header_len = (size_t)v;
        }
        kvc_err_t err = {0};
        int rc = kvc_kserve_json_parse_request((const char *)c->req->body, c->req->body_len,
                                               header_len, &c->p->limits, &kr, &err);
        if (rc) {
            s_codec_error(c, rc, &err);
            return;
        }
        inputs = kr.inputs;
        if (kr.n_outputs) {
            filter = kvc_calloc(kr.n_outputs, sizeof *filter);
            if (!filter) {
                kvc_http_error(c->resp, 500, "out of memory");
                kvc_kserve_json_request_clear(&kr);
                return;
            }
            for (size_t i = 0; i < kr.n_outputs; i++)
                filter[i] = kr.outputs[i].name;
            n_filter = kr.n_outputs;
        }
    }
    if (s_infer(c, inputs, NULL, kr.id, filter, n_filter, &outputs) == 0 && outputs) {
        char version[KVC_VERSION_MAX + 1];
        if (c->version[0])
            snprintf(version, sizeof version, "%s", c->version);
        else
            snprintf(version, sizeof version, "%s", c->route.version_name);
        kvc_kserve_response_meta_t meta = {
            .model_name = c->route.model,
            .model_version = version[0] ? version : NULL,
            .id = kr.id,
        };
        kvc_err_t err = {0};
        size_t hlen = 0;
        kvc_buf_reset(&c->resp->body);
        int rc = kvc_kserve_json_write_response(&meta, outputs, kr.inputs ? &kr : NULL,
                                                &c->resp->body, &hlen, &err);
        if (rc == KVC_EINVAL) {
            /* Bytes that JSON cannot hold: the client can ask for binary_data. */
            kvc_http_error(c->resp, 400, "%s", err.msg);
        } else if (rc) {
            s_write_error(c, rc, &err);
        } else if (hlen) {
            c->resp->status = 200;
            snprintf(c->resp->content_type, sizeof c->resp->content_type,
                     "application/octet-stream");
            snprintf(c->resp->header_name, sizeof c->resp->header_name,
                     "Inference-Header-Content-Length");
            snprintf(c->resp->header_value, sizeof c->resp->header_value, "%zu", hlen);
        } else {
            s_json_ok(c);
        }
    }
    kvc_tensor_list_destroy(&outputs);
    kvc_free(filter);
    if (kr.inputs)
        kvc_kserve_json_request_clear(&kr);
    else
        kvc_tensor_list_destroy(&inputs);
}

/* ---- Status, metadata, health -------------------------------------------- */

/* Calls TF Serving GetModelStatus for model (route's version unless
 * latest). */
static int s_tfs_status(s_ctx_t *c, const char *url, const char *model, int latest,
                        uint32_t timeout_ms, Tensorflow__Serving__GetModelStatusResponse **out)
{
    Tensorflow__Serving__GetModelStatusRequest r =
        TENSORFLOW__SERVING__GET_MODEL_STATUS_REQUEST__INIT;
    Tensorflow__Serving__ModelSpec spec;
    Google__Protobuf__Int64Value ver;
    s_model_spec(c, &spec, &ver, NULL);
    spec.name = (char *)model;
    if (latest)
        spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE__NOT_SET;
    r.model_spec = &spec;
    kvc_grpc_result_t res;
    int rc = s_call(c, url, S_PATH_STATUS, &r.base, timeout_ms, &res);
    if (rc == 0) {
        *out = (Tensorflow__Serving__GetModelStatusResponse *)s_decode(
            c, &tensorflow__serving__get_model_status_response__descriptor, &res,
            "GetModelStatusResponse", &rc);
    }
    kvc_grpc_result_free(&res);
    return rc;
}

/* Tells whether a status reply has a version AVAILABLE. */
static int s_any_available(const Tensorflow__Serving__GetModelStatusResponse *r)
{
    for (size_t i = 0; i < r->n_model_version_status; i++)
        if (r->model_version_status[i]->state ==
            TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__AVAILABLE)
            return 1;
    return 0;
}

/* Calls KServe ModelReady for the route's model and version. */
static int s_kserve_ready(s_ctx_t *c, const char *version, int *ready)
{
    Inference__ModelReadyRequest r = INFERENCE__MODEL_READY_REQUEST__INIT;
    r.name = (char *)c->route.model;
    r.version = (char *)version;
    kvc_grpc_result_t res;
    int rc = s_call(c, c->be->url, S_PATH_V2_READY, &r.base, c->p->timeout_ms, &res);
    if (rc == 0) {
        Inference__ModelReadyResponse *m = (Inference__ModelReadyResponse *)s_decode(
            c, &inference__model_ready_response__descriptor, &res, "ModelReadyResponse", &rc);
        if (m) {
            *ready = m->ready;
            inference__model_ready_response__free_unpacked(m, kvc_pb_allocator());
        }
    }
    kvc_grpc_result_free(&res);
    return rc;
}

/* GET /v1/models/NAME[...] (TF Serving model status). */
static void s_tfs_status_answer(s_ctx_t *c)
{
    int rc;
    kvc_buf_reset(&c->resp->body);
    if (c->be->api == S_API_TFS) {
        Tensorflow__Serving__GetModelStatusResponse *r = NULL;
        if (s_tfs_status(c, c->be->url, c->route.model, 0, c->p->timeout_ms, &r) != 0)
            return;
        rc = kvc_proxy_status_json(r, &c->resp->body);
        tensorflow__serving__get_model_status_response__free_unpacked(r, kvc_pb_allocator());
    } else {
        /* ModelMetadata names the version (and says NOT_FOUND); then ModelReady. */
        Inference__ModelMetadataResponse *m = NULL;
        if (s_kserve_metadata(c, c->p->timeout_ms, 0, &m) != 0)
            return;
        char version[KVC_VERSION_MAX + 1];
        if (c->route.version_name[0])
            snprintf(version, sizeof version, "%s", c->route.version_name);
        else
            snprintf(version, sizeof version, "%.20s",
                     m->n_versions && m->versions[0] ? m->versions[0] : "");
        inference__model_metadata_response__free_unpacked(m, kvc_pb_allocator());
        int ready = 0;
        if (s_kserve_ready(c, c->route.version_name[0] ? version : "", &ready) != 0)
            return;
        rc = kvc_proxy_status_json_ready(version, ready, &c->resp->body);
    }
    if (rc)
        s_write_error(c, rc, NULL);
    else
        s_json_ok(c);
}

/* GET /v1/models/NAME[...]/metadata and GET /v2/models/NAME[...]. */
static void s_metadata_answer(s_ctx_t *c, int v2)
{
    int rc;
    kvc_err_t err = {0};
    kvc_buf_reset(&c->resp->body);
    if (c->be->api == S_API_TFS) {
        Tensorflow__Serving__GetModelMetadataResponse *r = NULL;
        if (s_tfs_metadata(c, c->p->timeout_ms, 0, &r) != 0)
            return;
        rc = v2 ? kvc_proxy_v2_metadata_json_tfs(r, NULL, &c->resp->body, &err)
                : kvc_proxy_metadata_json(r, &c->resp->body, &err);
        tensorflow__serving__get_model_metadata_response__free_unpacked(r, kvc_pb_allocator());
    } else {
        Inference__ModelMetadataResponse *m = NULL;
        if (s_kserve_metadata(c, c->p->timeout_ms, 0, &m) != 0)
            return;
        rc = v2 ? kvc_proxy_v2_metadata_json(m, &c->resp->body)
                : kvc_proxy_metadata_json_kserve(m, &c->resp->body, &err);
        inference__model_metadata_response__free_unpacked(m, kvc_pb_allocator());
    }
    if (rc)
        s_write_error(c, rc, &err);
    else
        s_json_ok(c);
}

/* GET /v2/models/NAME[/versions/V]/ready. */
static void s_v2_model_ready(s_ctx_t *c)
{
    int ready = 0;
    if (c->be->api == S_API_TFS) {
        Tensorflow__Serving__GetModelStatusResponse *r = NULL;
        if (s_tfs_status(c, c->be->url, c->route.model, 0, c->p->timeout_ms, &r) != 0)
            return;
        ready = s_any_available(r);
        tensorflow__serving__get_model_status_response__free_unpacked(r, kvc_pb_allocator());
    } else {
        char version[KVC_VERSION_MAX + 1];
        if (s_kserve_version(c, version, sizeof version) != 0 ||
            s_kserve_ready(c, version, &ready) != 0)
            return;
    }
    kvc_buf_reset(&c->resp->body);
    int rc = kvc_buf_append(&c->resp->body, "{\"name\": ", 9);
    rc = rc ? rc : kvc_json_append_str(&c->resp->body, c->route.model, strlen(c->route.model));
    rc = rc ? rc : kvc_buf_printf(&c->resp->body, ", \"ready\": %s}", ready ? "true" : "false");
    if (rc) {
        s_write_error(c, rc, NULL);
        return;
    }
    s_json_ok(c);
    c->resp->status = ready ? 200 : 400;
}

/* Asks one backend whether it can serve, with a short deadline. */
static int s_backend_ready(s_ctx_t *c, const s_backend_t *be)
{
    kvc_grpc_result_t res;
    int ok = 0;
    if (be->api == S_API_KSERVE) {
        Inference__ServerReadyRequest r = INFERENCE__SERVER_READY_REQUEST__INIT;
        if (s_call(c, be->url, S_PATH_V2_SREADY, &r.base, S_READY_TIMEOUT_MS, &res) == 0) {
            int rc = 0;
            Inference__ServerReadyResponse *m = (Inference__ServerReadyResponse *)s_decode(
                c, &inference__server_ready_response__descriptor, &res, "ServerReadyResponse", &rc);
            ok = m && m->ready;
            if (m)
                inference__server_ready_response__free_unpacked(m, kvc_pb_allocator());
        }
        kvc_grpc_result_free(&res);
    } else {
        Tensorflow__Serving__GetModelStatusResponse *r = NULL;
        if (s_tfs_status(c, be->url, be->model, 1, S_READY_TIMEOUT_MS, &r) == 0) {
            ok = s_any_available(r);
            tensorflow__serving__get_model_status_response__free_unpacked(r, kvc_pb_allocator());
        }
    }
    return ok;
}

/* GET /v2/health/ready: every backend answers (KServe servers once each). */
static void s_v2_ready(s_ctx_t *c)
{
    int all = 1;
    for (size_t i = 0; all && i < c->p->n; i++) {
        const s_backend_t *be = &c->p->backends[i];
        int seen = 0;
        for (size_t j = 0; be->api == S_API_KSERVE && j < i; j++)
            seen |= c->p->backends[j].api == S_API_KSERVE &&
                    strcmp(c->p->backends[j].url, be->url) == 0;
        if (!seen)
            all = s_backend_ready(c, be);
    }
    kvc_buf_reset(&c->resp->body);
    const char *body = all ? "{\"ready\": true}" : "{\"ready\": false}";
    if (kvc_buf_append(&c->resp->body, body, strlen(body)) != 0) {
        s_write_error(c, KVC_ERANGE, NULL);
        return;
    }
    s_json_ok(c);
    c->resp->status = all ? 200 : 503;
}

/* Sets a fixed JSON body. */
static void s_fixed(s_ctx_t *c, int status, const char *body)
{
    kvc_buf_reset(&c->resp->body);
    if (kvc_buf_append(&c->resp->body, body, strlen(body)) != 0) {
        s_write_error(c, KVC_ERANGE, NULL);
        return;
    }
    s_json_ok(c);
    c->resp->status = status;
}

/* Finds the backend serving the route's model, or answers 404 as TF
 * Serving does. */
static int s_find_backend(s_ctx_t *c)
{
    for (size_t i = 0; i < c->p->n; i++)
        if (strcmp(c->p->backends[i].model, c->route.model) == 0) {
            c->be = &c->p->backends[i];
            c->be_index = i;
            return KVC_OK;
        }
    if (c->route.version_name[0])
        kvc_http_error(c->resp, 404, "Servable not found for request: Specific(%s, %s)",
                       c->route.model, c->route.version_name);
    else
        kvc_http_error(c->resp, 404, "Servable not found for request: Latest(%s)", c->route.model);
    return KVC_ENOENT;
}

/* TF Serving numbers its versions: a /v2 version that is not a number
 * cannot name one (KServe backends take any string). */
static int s_check_version(s_ctx_t *c)
{
    if (c->be->api != S_API_TFS || !c->route.version_name[0] || c->route.version >= 0)
        return KVC_OK;
    kvc_http_error(c->resp, 404,
                   "invalid model version in the path: the TF Serving backend of model %s "
                   "has numeric versions only, not \"%s\"",
                   c->be->model, c->route.version_name);
    return KVC_ENOENT;
}

/* Routes one request to its endpoint. */
static void s_dispatch(s_ctx_t *c)
{
    char msg[256];
    int rc = kvc_route_parse(c->req->method, c->req->path, &c->route, msg, sizeof msg);
    if (rc != 0) {
        kvc_http_error(c->resp, rc == 405 || rc == 400 ? rc : 404, "%s", msg);
        return;
    }
    c->obs.model = c->route.model;
    c->obs.endpoint = kvc_route_name(c->route.kind);
    switch (c->route.kind) {
    case KVC_ROUTE_V2_LIVE:
        s_fixed(c, 200, "{\"live\": true}");
        return;
    case KVC_ROUTE_V2_READY:
        s_v2_ready(c);
        return;
    case KVC_ROUTE_V2_SERVER:
        s_fixed(c, 200,
                "{\"name\": \"kvc\", \"version\": \"0.1.0\", \"extensions\": "
                "[\"binary_tensor_data\"]}");
        return;
    case KVC_ROUTE_METRICS:
    case KVC_ROUTE_FEDERATE:
        kvc_http_error(c->resp, 404, "metrics are not enabled");
        return;
    case KVC_ROUTE_TFS_CLASSIFY:
        kvc_http_error(c->resp, 400, "classify is not supported by this proxy");
        return;
    case KVC_ROUTE_TFS_REGRESS:
        kvc_http_error(c->resp, 400, "regress is not supported by this proxy");
        return;
    default:
        break;
    }
    if (s_find_backend(c) != 0 || s_check_version(c) != 0)
        return;
    switch (c->route.kind) {
    case KVC_ROUTE_TFS_PREDICT:
        s_tfs_predict(c);
        break;
    case KVC_ROUTE_TFS_STATUS:
        s_tfs_status_answer(c);
        break;
    case KVC_ROUTE_TFS_METADATA:
        s_metadata_answer(c, 0);
        break;
    case KVC_ROUTE_V2_MODEL:
        s_metadata_answer(c, 1);
        break;
    case KVC_ROUTE_V2_MODEL_READY:
        s_v2_model_ready(c);
        break;
    case KVC_ROUTE_V2_INFER:
        s_v2_infer(c);
        break;
    default:
        kvc_http_error(c->resp, 404, "no such endpoint");
        break;
    }
}

int kvc_proxy_inline_ok(void *arg, const kvc_http_req_t *req)
{
    kvc_proxy_t *p = arg;
    if (req->body_len > KVC_PROXY_INLINE_MAX || kvc_proxy_is_image_type(req->content_type))
        return 0;
    kvc_route_t route;
    char msg[64];
    if (kvc_route_parse(req->method, req->path, &route, msg, sizeof msg) != 0)
        return 1; /* answered at once */
    if (route.kind != KVC_ROUTE_TFS_PREDICT && route.kind != KVC_ROUTE_V2_INFER)
        return 1;
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->backends[i].model, route.model) != 0)
            continue;
        int fetch = 0;
        return kvc_signature_cache_get(p->sigs, i, s_now_ms(), &fetch) != NULL || !fetch;
    }
    return 1; /* no such model: 404 at once */
}

struct kvc_grpc_client *kvc_proxy_engine(kvc_proxy_t *self)
{
    return self->grpc;
}

void kvc_proxy_handle(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp)
{
    s_ctx_t c;
    memset(&c, 0, sizeof c);
    c.p = arg;
    c.req = req;
    c.resp = resp;
    c.obs.model = "";
    c.obs.endpoint = "none";
    c.obs.route = "local";
    c.obs.grpc_status = -1;
    c.obs.request_bytes = req->body_len;
    double t0 = s_now_s();
    s_dispatch(&c);
    if (resp->status < 100 || resp->status > 599)
        kvc_http_error(resp, 500, "internal error: no answer");
    if (c.p->observe) {
        c.obs.http_status = resp->status;
        c.obs.response_bytes = resp->body.len;
        c.obs.seconds = s_now_s() - t0;
        c.p->observe(c.p->observe_arg, &c.obs);
    }
}
