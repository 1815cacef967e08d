/*
 * forward.c - the proxy's forwarding layer: backends, their signatures,
 * and the gRPC calls to them (TF Serving Predict / GetModelMetadata /
 * GetModelStatus, KServe ModelInfer / ModelMetadata / ModelReady /
 * ServerReady).
 *
 * A call packs its request, makes one unary call through grpc_client.c,
 * maps a failure to TF Serving's HTTP status with the server's message,
 * and decodes the reply with the proxy's allocator (pb_decode.h). Nothing
 * here blocks a fiber but kvc_grpc_call, and a fiber never waits on a lock
 * another request holds across a call. It must never trust a reply it has
 * not decoded and checked, never answer an HTTP request itself, and never
 * remember a failure that may pass.
 */
#include "forward.h"

#include "fiber.h"
#include "infer_reply.h"
#include "pb_decode.h"
#include "tensor_pb.h"

#include "google/protobuf/wrappers.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

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
/* Most inputs a config may declare for one backend. */
#define S_DECLARED_MAX 64
/* Longest base URL kept for a backend. */
#define S_URL_MAX 512

/* One backend's signature fetches: at most one in flight; requests that
 * need the signatures meanwhile wait for its outcome. Guarded by the
 * forwarder's sig_lock. */
typedef struct {
    int busy;      /* a fetch is in flight */
    uint64_t done; /* fetches finished, so a waiter sees its one end */
    int status;    /* HTTP status the last fetch failed with; 0: set or definitive */
    int grpc_status;
    char error[KVC_FWD_ERROR_MAX]; /* its message */
} s_sigfetch_t;

struct kvc_forward {
    kvc_fwd_backend_t *backends;
    size_t n;
    uint32_t timeout_ms;
    size_t max_message;
    kvc_tensor_limits_t limits;
    kvc_grpc_client_t *grpc;
    int sig_sync; /* sig_lock and sig_done are initialised */
    pthread_mutex_t sig_lock;
    pthread_cond_t sig_done; /* on CLOCK_MONOTONIC */
    s_sigfetch_t *fetches;   /* one per backend */
    kvc_signature_cache_t *sigs;
    kvc_proxy_log_fn log;
    void *log_arg;
    atomic_int *said_no_metadata; /* one per backend: the log said so */
};

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

/* ---- Backends ------------------------------------------------------------- */

/* Frees one backend's strings. */
static void s_backend_free(kvc_fwd_backend_t *b)
{
    kvc_free(b->model);
    kvc_free(b->url);
    kvc_free(b->image_input);
    kvc_signature_set_destroy(&b->declared);
}

/* With declared inputs and images: the input images go to must be one of
 * them, of the dtype the preprocessing writes. */
static int s_check_image_input(const kvc_fwd_backend_t *b, const kvc_json_tensor_spec_t *specs,
                               size_t n, size_t i, kvc_err_t *err)
{
    kvc_dtype_t want = b->spec.dtype == KVC_PP_UINT8 ? KVC_DT_UINT8 : KVC_DT_FLOAT;
    if (!b->image_input[0] && n != 1)
        return kvc_err_set(err, KVC_EINVAL,
                           "proxy.backends[%zu]: %zu inputs are declared, so image_input must "
                           "name the one images go to",
                           i, n);
    for (size_t j = 0; j < n; j++) {
        if (b->image_input[0] && strcmp(specs[j].name, b->image_input) != 0)
            continue;
        if (specs[j].dtype != want)
            return kvc_err_set(err, KVC_EINVAL,
                               "proxy.backends[%zu]: images become %s, but input %s is declared %s",
                               i, kvc_dtype_plain_name(want), specs[j].name,
                               kvc_dtype_plain_name(specs[j].dtype));
        return KVC_OK;
    }
    return kvc_err_set(err, KVC_EINVAL,
                       "proxy.backends[%zu].image_input: %s is not among the declared inputs", i,
                       b->image_input);
}

/* Copies and checks backend i of opts into b. */
static int s_backend_init(kvc_fwd_backend_t *b, const kvc_proxy_backend_t *o, size_t i,
                          kvc_err_t *err)
{
    if (!o->model || !o->model[0] || strlen(o->model) > KVC_MODEL_NAME_MAX)
        return kvc_err_set(err, KVC_EINVAL, "proxy.backends[%zu].model: must be 1..%d bytes", i,
                           KVC_MODEL_NAME_MAX);
    if (!o->grpc || !o->grpc[0] || strlen(o->grpc) > S_URL_MAX - 8)
        return kvc_err_set(err, KVC_EINVAL, "proxy.backends[%zu].grpc: must be HOST:PORT", i);
    if (!o->api || (strcmp(o->api, "tfserving") != 0 && strcmp(o->api, "kserve") != 0))
        return kvc_err_set(err, KVC_EINVAL,
                           "proxy.backends[%zu].api: must be \"tfserving\" or \"kserve\"", i);
    b->api = strcmp(o->api, "kserve") == 0 ? KVC_FWD_KSERVE : KVC_FWD_TFS;
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
    if (o->n_inputs) {
        kvc_json_tensor_spec_t specs[S_DECLARED_MAX];
        if (o->n_inputs > S_DECLARED_MAX)
            return kvc_err_set(err, KVC_ERANGE,
                               "proxy.backends[%zu].inputs: %zu inputs (at most %d)", i,
                               o->n_inputs, S_DECLARED_MAX);
        for (size_t j = 0; j < o->n_inputs; j++)
            specs[j] = (kvc_json_tensor_spec_t){o->inputs[j].name, o->inputs[j].dtype};
        b->declared = kvc_signature_set_declared(specs, o->n_inputs, err);
        if (!b->declared) {
            kvc_err_prefix(err, "proxy.backends[%zu].inputs: ", i);
            return err ? err->code : KVC_EINVAL;
        }
        if (b->has_spec)
            return s_check_image_input(b, specs, o->n_inputs, i, err);
    }
    return KVC_OK;
}

/* Sets up the signature fetches' lock, condition (on the monotonic clock,
 * so waits are deadlines) and per-backend state. */
static int s_sig_sync_init(kvc_forward_t *self)
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

kvc_forward_t *kvc_forward_new(const kvc_proxy_opts_t *opts, kvc_err_t *err)
{
    kvc_forward_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        return NULL;
    }
    self->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 30000;
    self->log = opts->log;
    self->log_arg = opts->log_arg;
    self->max_message = opts->max_message ? opts->max_message : KVC_GRPC_DEFAULT_MAX_MESSAGE;
    self->limits = opts->limits;
    if (!self->limits.max_elements)
        self->limits.max_elements = (uint64_t)256 << 20;
    if (!self->limits.max_bytes)
        self->limits.max_bytes = (uint64_t)1 << 30;
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
    self->said_no_metadata = kvc_calloc(self->n ? self->n : 1, sizeof *self->said_no_metadata);
    if (!self->said_no_metadata || s_sig_sync_init(self) != 0) {
        kvc_err_set(err, KVC_ENOMEM, "proxy: cannot set up the signature fetches");
        goto fail;
    }
    /* Every call the proxy makes (predict, infer, metadata, status) only
     * reads: one cut off with its connection may be made again. */
    kvc_grpc_opts_t gopts = {
        .max_message_size = self->max_message, .ca_file = opts->grpc_ca_file, .retry_lost = 1};
    self->grpc = kvc_grpc_client_new(&gopts);
    self->sigs = kvc_signature_cache_new(self->n, S_SIG_RETRY_MS);
    if (!self->grpc || !self->sigs) {
        kvc_err_set(err, KVC_ENOMEM, "proxy: cannot start the gRPC client");
        goto fail;
    }
    return self;
fail:
    kvc_forward_destroy(&self);
    return NULL;
}

void kvc_forward_destroy(kvc_forward_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_forward_t *self = *self_p;
    kvc_grpc_client_destroy(&self->grpc);
    kvc_signature_cache_destroy(&self->sigs);
    if (self->sig_sync) {
        pthread_cond_destroy(&self->sig_done);
        pthread_mutex_destroy(&self->sig_lock);
    }
    kvc_free(self->fetches);
    kvc_free(self->said_no_metadata);
    for (size_t i = 0; i < self->n; i++)
        s_backend_free(&self->backends[i]);
    kvc_free(self->backends);
    kvc_free(self);
    *self_p = NULL;
}

kvc_grpc_client_t *kvc_forward_engine(kvc_forward_t *self)
{
    return self->grpc;
}

const kvc_tensor_limits_t *kvc_forward_limits(const kvc_forward_t *self)
{
    return &self->limits;
}

size_t kvc_forward_size(const kvc_forward_t *self)
{
    return self->n;
}

const kvc_fwd_backend_t *kvc_forward_backend(const kvc_forward_t *self, size_t i)
{
    return &self->backends[i];
}

/* Leaves status and message for the caller to answer with; keeps the
 * message, for requests that share this one's outcome. */
static void s_fail(kvc_fwd_call_t *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_fail(kvc_fwd_call_t *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    c->status = status;
}

/* Forgets a failure that the operation went on past. */
static void s_clear(kvc_fwd_call_t *c)
{
    c->status = 0;
    c->error[0] = '\0';
}

int kvc_forward_find(kvc_fwd_call_t *c)
{
    const kvc_route_t *r = c->route;
    kvc_forward_t *fw = c->fw;
    c->be = NULL;
    for (size_t i = 0; i < fw->n && !c->be; i++)
        if (strcmp(fw->backends[i].model, r->model) == 0) {
            c->be = &fw->backends[i];
            c->be_index = i;
        }
    if (!c->be) {
        if (r->version_name[0])
            s_fail(c, 404, "Servable not found for request: Specific(%s, %s)", r->model,
                   r->version_name);
        else
            s_fail(c, 404, "Servable not found for request: Latest(%s)", r->model);
        return KVC_ENOENT;
    }
    /* TF Serving numbers its versions: a /v2 version that is not a number
     * cannot name one (KServe backends take any string). */
    if (c->be->api == KVC_FWD_TFS && r->version_name[0] && r->version < 0) {
        s_fail(c, 404,
               "invalid model version in the path: the TF Serving backend of model %s "
               "has numeric versions only, not \"%s\"",
               c->be->model, r->version_name);
        return KVC_ENOENT;
    }
    return KVC_OK;
}

/* ---- Calls -------------------------------------------------------------- */

/*
 * Packs msg, calls path on url and fills res. Returns 0 when the call
 * succeeded; otherwise leaves TF Serving's mapping of the gRPC status and
 * the backend's message in c and returns a negative code.
 */
static int s_call(kvc_fwd_call_t *c, const char *url, const char *path, const ProtobufCMessage *msg,
                  uint32_t timeout_ms, kvc_grpc_result_t *res)
{
    memset(res, 0, sizeof *res);
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len > c->fw->max_message) {
        s_fail(c, 413, "request to the model server is %zu bytes, over the limit of %zu", len,
               c->fw->max_message);
        return KVC_ERANGE;
    }
    uint8_t *buf = kvc_malloc(len ? len : 1);
    if (!buf) {
        s_fail(c, 500, "out of memory");
        return KVC_ENOMEM;
    }
    protobuf_c_message_pack(msg, buf);
    c->request_bytes += len;
    int rc = kvc_grpc_call(c->fw->grpc, url, path, buf, len, timeout_ms, res);
    kvc_free(buf);
    c->grpc_status = res->code;
    if (rc == 0 && res->code == KVC_GRPC_OK) {
        c->response_bytes += res->len;
        return KVC_OK;
    }
    const char *msgtext = res->message[0] ? res->message : kvc_grpc_status_name(res->code);
    s_fail(c, kvc_proxy_http_status(res->code), "%s", msgtext);
    return rc ? rc : KVC_EIO;
}

/* Decodes a reply with the proxy's allocator; on failure leaves 502 (bad
 * bytes) or 500 (out of memory) and returns NULL with *rc set. */
static ProtobufCMessage *s_decode(kvc_fwd_call_t *c, const ProtobufCMessageDescriptor *desc,
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
static void s_model_spec(const kvc_fwd_call_t *c, Tensorflow__Serving__ModelSpec *spec,
                         Google__Protobuf__Int64Value *ver, const char *signature)
{
    tensorflow__serving__model_spec__init(spec);
    google__protobuf__int64_value__init(ver);
    spec->name = (char *)c->route->model;
    spec->signature_name = (char *)(signature ? signature : "");
    if (c->route->version >= 0) {
        ver->value = c->route->version;
        spec->version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
        spec->version = ver;
    } else if (c->route->label[0]) {
        spec->version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL;
        spec->version_label = (char *)c->route->label;
    }
}

int kvc_forward_kserve_version(kvc_fwd_call_t *c, char *buf, size_t size)
{
    buf[0] = '\0';
    if (c->route->label[0]) {
        s_fail(c, 400, "version labels are not supported for KServe backends");
        return KVC_EINVAL;
    }
    snprintf(buf, size, "%s", c->route->version_name);
    return KVC_OK;
}

/* GetModelMetadata(signature_def) with a deadline of timeout_ms. */
static int s_tfs_metadata(kvc_fwd_call_t *c, uint32_t timeout_ms, int latest,
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
    *out = NULL;
    int rc = s_call(c, c->be->url, S_PATH_METADATA, &r.base, timeout_ms, &res);
    if (rc == 0)
        *out = (Tensorflow__Serving__GetModelMetadataResponse *)s_decode(
            c, &tensorflow__serving__get_model_metadata_response__descriptor, &res,
            "GetModelMetadataResponse", &rc);
    kvc_grpc_result_free(&res);
    return rc;
}

/* ModelMetadata with a deadline of timeout_ms. */
static int s_kserve_metadata(kvc_fwd_call_t *c, uint32_t timeout_ms, int latest,
                             Inference__ModelMetadataResponse **out)
{
    char version[KVC_VERSION_MAX + 1];
    int rc =
        latest ? (version[0] = '\0', 0) : kvc_forward_kserve_version(c, version, sizeof version);
    *out = NULL;
    if (rc)
        return rc;
    Inference__ModelMetadataRequest r = INFERENCE__MODEL_METADATA_REQUEST__INIT;
    r.name = (char *)c->route->model;
    r.version = version;
    kvc_grpc_result_t res;
    rc = s_call(c, c->be->url, S_PATH_V2_META, &r.base, timeout_ms, &res);
    if (rc == 0)
        *out = (Inference__ModelMetadataResponse *)s_decode(
            c, &inference__model_metadata_response__descriptor, &res, "ModelMetadataResponse", &rc);
    kvc_grpc_result_free(&res);
    return rc;
}

int kvc_forward_tfs_metadata(kvc_fwd_call_t *c, int latest,
                             Tensorflow__Serving__GetModelMetadataResponse **out)
{
    return s_tfs_metadata(c, c->fw->timeout_ms, latest, out);
}

int kvc_forward_kserve_metadata(kvc_fwd_call_t *c, int latest,
                                Inference__ModelMetadataResponse **out)
{
    return s_kserve_metadata(c, c->fw->timeout_ms, latest, out);
}

/* GetModelStatus for model on url (the route's version unless latest). */
static int s_tfs_status(kvc_fwd_call_t *c, const char *url, const char *model, int latest,
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
    *out = NULL;
    int rc = s_call(c, url, S_PATH_STATUS, &r.base, timeout_ms, &res);
    if (rc == 0)
        *out = (Tensorflow__Serving__GetModelStatusResponse *)s_decode(
            c, &tensorflow__serving__get_model_status_response__descriptor, &res,
            "GetModelStatusResponse", &rc);
    kvc_grpc_result_free(&res);
    return rc;
}

int kvc_forward_tfs_status(kvc_fwd_call_t *c, Tensorflow__Serving__GetModelStatusResponse **out)
{
    return s_tfs_status(c, c->be->url, c->route->model, 0, c->fw->timeout_ms, out);
}

int kvc_forward_any_available(const Tensorflow__Serving__GetModelStatusResponse *r)
{
    for (size_t i = 0; i < r->n_model_version_status; i++)
        if (r->model_version_status[i]->state ==
            TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__AVAILABLE)
            return 1;
    return 0;
}

int kvc_forward_kserve_ready(kvc_fwd_call_t *c, const char *version, int *ready)
{
    Inference__ModelReadyRequest r = INFERENCE__MODEL_READY_REQUEST__INIT;
    r.name = (char *)c->route->model;
    r.version = (char *)version;
    kvc_grpc_result_t res;
    int rc = s_call(c, c->be->url, S_PATH_V2_READY, &r.base, c->fw->timeout_ms, &res);
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

/* ---- Signatures ------------------------------------------------------------ */

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
 * *definitive = 0 with the failure left in c (503 with the reason for a
 * transient failure, else the server's own status and message).
 */
static kvc_signature_set_t *s_fetch_signatures(kvc_fwd_call_t *c, int *definitive, char *why,
                                               size_t why_size)
{
    uint32_t t = c->fw->timeout_ms < S_SIG_TIMEOUT_MS ? c->fw->timeout_ms : S_SIG_TIMEOUT_MS;
    kvc_err_t err = {0};
    kvc_signature_set_t *fresh = NULL;
    int grpc_status = c->grpc_status;
    c->grpc_status = -1;
    if (c->be->api == KVC_FWD_TFS) {
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
    int code = c->grpc_status;
    *definitive = !fresh && (code == KVC_GRPC_OK || code == KVC_GRPC_UNIMPLEMENTED);
    if (*definitive) {
        if (code == KVC_GRPC_OK)
            snprintf(why, why_size, "its metadata has no usable signature: %s",
                     err.msg[0] ? err.msg : "no inputs");
        else
            snprintf(why, why_size, "UNIMPLEMENTED: %.*s", KVC_GRPC_MSG_MAX, c->error);
    }
    if (fresh || *definitive) {
        /* The metadata call is not the request: forget its status and failure. */
        c->grpc_status = grpc_status;
        s_clear(c);
    } else if (s_transient(code)) {
        char cause[sizeof c->error];
        memcpy(cause, c->error, sizeof cause);
        s_fail(c, 503, "cannot fetch the signatures of model %s from its model server (%s): %.*s",
               c->be->model, kvc_grpc_status_name(code), KVC_GRPC_MSG_MAX, cause);
    }
    return fresh;
}

/* Remembers how this request's fetch ended for the requests waiting on it
 * (lock held). */
static void s_fetch_record(kvc_fwd_call_t *c, s_sigfetch_t *f, int failed)
{
    f->busy = 0;
    f->done++;
    f->status = failed ? c->status : 0;
    f->grpc_status = c->grpc_status;
    snprintf(f->error, sizeof f->error, "%s", failed ? c->error : "");
    pthread_cond_broadcast(&c->fw->sig_done);
}

/* The server gives no metadata: the declared inputs stand in, if any. */
static void s_no_metadata(kvc_fwd_call_t *c, const kvc_signature_set_t **out)
{
    c->no_metadata = 1;
    c->declared = c->be->declared != NULL;
    *out = c->be->declared;
}

/* Says, once per backend until it changes, that its server gives no
 * metadata and what is served instead. */
static void s_say_no_metadata(kvc_fwd_call_t *c, const char *why)
{
    kvc_forward_t *fw = c->fw;
    if (atomic_exchange(&fw->said_no_metadata[c->be_index], 1) || !fw->log)
        return;
    const kvc_json_tensor_spec_t *specs = NULL;
    size_t n = 0;
    char msg[KVC_FWD_ERROR_MAX + 512];
    size_t len = (size_t)snprintf(msg, sizeof msg, "model %s: its model server gives no metadata (%s); ",
                                  c->be->model, why);
    if (kvc_signature_set_inputs(c->be->declared, NULL, &specs, &n) != 0 || n == 0) {
        snprintf(msg + len, sizeof msg - len,
                 "the config declares no inputs (proxy.backends[].inputs), so its TF Serving "
                 "REST requests are refused rather than guessed at");
    } else {
        len += (size_t)snprintf(msg + len, sizeof msg - len,
                                "serving only the %zu inputs the config declares:", n);
        for (size_t i = 0; i < n && len < sizeof msg; i++)
            len += (size_t)snprintf(msg + len, sizeof msg - len, " %s:%s", specs[i].name,
                                    kvc_dtype_plain_name(specs[i].dtype));
    }
    fw->log(fw->log_arg, 1, msg);
}

/* Says that a server said to give no metadata gives it now. */
static void s_say_metadata(kvc_fwd_call_t *c)
{
    kvc_forward_t *fw = c->fw;
    if (!atomic_exchange(&fw->said_no_metadata[c->be_index], 0) || !fw->log)
        return;
    char msg[256];
    snprintf(msg, sizeof msg, "model %s: its model server gives metadata now; serving its inputs",
             c->be->model);
    fw->log(fw->log_arg, 0, msg);
}

int kvc_forward_signatures_settled(kvc_forward_t *self, size_t i)
{
    int fetch = 0;
    return kvc_signature_cache_get(self->sigs, i, s_now_ms(), &fetch) != NULL || !fetch;
}

int kvc_forward_signatures(kvc_fwd_call_t *c, const kvc_signature_set_t **out)
{
    kvc_forward_t *p = c->fw;
    s_sigfetch_t *f = &p->fetches[c->be_index];
    *out = NULL;
    s_clear(c);
    for (int round = 0; round < 4; round++) {
        int fetch = 0;
        const kvc_signature_set_t *set =
            kvc_signature_cache_get(p->sigs, c->be_index, s_now_ms(), &fetch);
        if (set || !fetch) {
            *out = set;
            if (!set)
                s_no_metadata(c, out);
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
                s_fail(c, 503,
                       "the signatures of model %s are still being fetched from its model server",
                       c->be->model);
                return KVC_ETIMEDOUT;
            }
            if (f->status) {
                int status = f->status;
                c->grpc_status = f->grpc_status;
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
        char why[KVC_FWD_ERROR_MAX];
        why[0] = '\0';
        /* Cached and shared with the requests waiting for it: one client
         * hanging up (the caller's cancel flag) must not end the fetch. */
        const atomic_int *flag = kvc_grpc_cancel_flag_set(NULL);
        kvc_signature_set_t *fresh = s_fetch_signatures(c, &definitive, why, sizeof why);
        kvc_grpc_cancel_flag_set(flag);
        if (fresh) {
            *out = kvc_signature_cache_put(p->sigs, c->be_index, &fresh);
            s_say_metadata(c);
        } else if (definitive) {
            kvc_signature_cache_fail(p->sigs, c->be_index, s_now_ms());
            s_say_no_metadata(c, why);
        }
        if (shared) {
            pthread_mutex_lock(&p->sig_lock);
            s_fetch_record(c, f, !*out && !definitive);
            pthread_mutex_unlock(&p->sig_lock);
        }
        if (!*out && definitive)
            s_no_metadata(c, out);
        return *out || definitive ? KVC_OK : KVC_EUNAVAIL;
    }
    s_fail(c, 503, "the signatures of model %s could not be settled", c->be->model);
    return KVC_EUNAVAIL;
}

/* ---- Inference -------------------------------------------------------------- */

/* Hands the reply's bytes to the caller, as they came. */
static void s_take_raw(kvc_grpc_result_t *res, uint8_t **raw, size_t *raw_len)
{
    *raw = res->data ? res->data : kvc_malloc(1);
    *raw_len = res->data ? res->len : 0;
    res->data = NULL;
    res->len = 0;
}

/* Decodes an inference reply into the server's own API's tensors. */
typedef int (*s_reply_fn)(const uint8_t *data, size_t len, const kvc_tensor_limits_t *lim,
                          kvc_tensor_list_t **outputs, char *version, size_t version_size,
                          kvc_err_t *err);

/* Hands an OK inference reply over: its bytes as they came when the
 * client wants protobuf, else its outputs decoded by decode. */
static int s_reply(kvc_fwd_call_t *c, kvc_grpc_result_t *res, s_reply_fn decode,
                   kvc_tensor_list_t **outputs, uint8_t **raw, size_t *raw_len)
{
    if (c->pb_type) {
        s_take_raw(res, raw, raw_len);
        if (*raw)
            return KVC_OK;
        s_fail(c, 500, "out of memory");
        return KVC_ENOMEM;
    }
    kvc_err_t err = {0, ""};
    int rc = decode(res->data, res->len, &c->fw->limits, outputs, c->version, sizeof c->version,
                    &err);
    if (rc)
        s_fail(c, rc == KVC_ENOMEM ? 500 : 502, "%s", err.msg);
    return rc;
}

/* Runs Predict on a TF Serving backend. */
static int s_infer_tfs(kvc_fwd_call_t *c, kvc_tensor_list_t *inputs, const char *signature,
                       char **filter, size_t n_filter, kvc_tensor_list_t **outputs, uint8_t **raw,
                       size_t *raw_len)
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
    int rc = KVC_OK;
    if (!views || !entries || !ptrs) {
        s_fail(c, 500, "out of memory");
        rc = KVC_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const kvc_tensor_t *t = kvc_tensor_list_at(inputs, i);
        rc = kvc_tfproto_view_init(&views[i], t);
        n_views++;
        if (rc) {
            s_fail(c, rc == KVC_ENOMEM ? 500 : 400, "input %s: cannot be sent", kvc_tensor_name(t));
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
    rc = s_call(c, c->be->url, S_PATH_PREDICT, &r.base, c->fw->timeout_ms, &res);
    if (rc == 0)
        rc = s_reply(c, &res, kvc_infer_reply_tfs, outputs, raw, raw_len);
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
static int s_infer_kserve(kvc_fwd_call_t *c, kvc_tensor_list_t *inputs, const char *id,
                          char **filter, size_t n_filter, kvc_tensor_list_t **outputs,
                          uint8_t **raw, size_t *raw_len)
{
    char version[KVC_VERSION_MAX + 1];
    int rc = kvc_forward_kserve_version(c, version, sizeof version);
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
    if (!views || !ptrs || !raws || !outs || !outp) {
        s_fail(c, 500, "out of memory");
        rc = KVC_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const kvc_tensor_t *t = kvc_tensor_list_at(inputs, i);
        rc = kvc_kserve_input_view_init(&views[i], t);
        n_views++;
        if (rc) {
            s_fail(c, rc == KVC_ENOMEM ? 500 : 400, "input %s: cannot be sent", kvc_tensor_name(t));
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
    r.model_name = (char *)c->route->model;
    r.model_version = version;
    r.id = (char *)(id ? id : "");
    r.n_inputs = n;
    r.inputs = ptrs;
    r.n_raw_input_contents = n;
    r.raw_input_contents = raws;
    r.n_outputs = n_filter;
    r.outputs = outp;
    rc = s_call(c, c->be->url, S_PATH_INFER, &r.base, c->fw->timeout_ms, &res);
    if (rc == 0)
        rc = s_reply(c, &res, kvc_infer_reply_kserve, outputs, raw, raw_len);
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

int kvc_forward_infer(kvc_fwd_call_t *c, kvc_tensor_list_t *inputs, const char *signature,
                      const char *id, char **filter, size_t n_filter, kvc_tensor_list_t **outputs,
                      uint8_t **raw, size_t *raw_len)
{
    *outputs = NULL;
    *raw = NULL;
    *raw_len = 0;
    int rc;
    if (c->be->api == KVC_FWD_TFS) {
        rc = s_infer_tfs(c, inputs, signature, filter, n_filter, outputs, raw, raw_len);
    } else if (signature && signature[0] && strcmp(signature, KVC_SIGNATURE_DEFAULT) != 0) {
        /* A KServe model has one unnamed signature: another cannot be served. */
        s_fail(c, 400,
               "the KServe backend of model %s has no signature named \"%s\" (KServe "
               "models have only \"" KVC_SIGNATURE_DEFAULT "\")",
               c->be->model, signature);
        return KVC_EINVAL;
    } else {
        rc = s_infer_kserve(c, inputs, id, filter, n_filter, outputs, raw, raw_len);
    }
    /* An OK answer without outputs is the model server's fault, never the
     * client's. */
    if (rc == 0 && *outputs && kvc_tensor_list_size(*outputs) == 0) {
        kvc_tensor_list_destroy(outputs);
        s_fail(c, 502, "model server answered with no outputs");
        return KVC_EPARSE;
    }
    return rc;
}

/* ---- Health ------------------------------------------------------------------ */

/* Writes why a TF Serving model has no version AVAILABLE, naming the
 * states of the first few versions. */
static void s_unavailable_reason(const Tensorflow__Serving__GetModelStatusResponse *r,
                                 const char *model, char *out, size_t size)
{
    size_t len = (size_t)snprintf(out, size, "no version of model %s is AVAILABLE", model);
    if (r->n_model_version_status == 0) {
        snprintf(out + len, size - len, " (the server reports none)");
        return;
    }
    for (size_t i = 0; i < r->n_model_version_status && i < 4 && len < size; i++) {
        const Tensorflow__Serving__ModelVersionStatus *v = r->model_version_status[i];
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
            &tensorflow__serving__model_version_status__state__descriptor, v->state);
        len += (size_t)snprintf(out + len, size - len, "%sversion %lld: %s", i ? ", " : " (",
                                (long long)v->version, ev ? ev->name : "UNKNOWN");
    }
    if (len < size)
        snprintf(out + len, size - len, "%s)", r->n_model_version_status > 4 ? ", ..." : "");
}

/* Asks one backend whether it can serve, with a short deadline; says why
 * not in out. */
static void s_backend_ready(kvc_fwd_call_t *c, const kvc_fwd_backend_t *be, kvc_fwd_ready_t *out)
{
    kvc_grpc_result_t res;
    out->ready = 0;
    out->reason[0] = '\0';
    s_clear(c);
    if (be->api == KVC_FWD_KSERVE) {
        Inference__ServerReadyRequest r = INFERENCE__SERVER_READY_REQUEST__INIT;
        if (s_call(c, be->url, S_PATH_V2_SREADY, &r.base, S_READY_TIMEOUT_MS, &res) == 0) {
            int rc = 0;
            Inference__ServerReadyResponse *m = (Inference__ServerReadyResponse *)s_decode(
                c, &inference__server_ready_response__descriptor, &res, "ServerReadyResponse", &rc);
            out->ready = m && m->ready;
            if (m && !m->ready)
                snprintf(out->reason, sizeof out->reason,
                         "the model server answers ServerReady with ready=false");
            if (m)
                inference__server_ready_response__free_unpacked(m, kvc_pb_allocator());
        }
        kvc_grpc_result_free(&res);
    } else {
        Tensorflow__Serving__GetModelStatusResponse *r = NULL;
        if (s_tfs_status(c, be->url, be->model, 1, S_READY_TIMEOUT_MS, &r) == 0) {
            out->ready = kvc_forward_any_available(r);
            if (!out->ready)
                s_unavailable_reason(r, be->model, out->reason, sizeof out->reason);
            tensorflow__serving__get_model_status_response__free_unpacked(r, kvc_pb_allocator());
        }
    }
    if (!out->ready && !out->reason[0]) {
        /* The call failed: its status and message. */
        int code = c->grpc_status;
        snprintf(out->reason, sizeof out->reason, "%s%s%.*s",
                 code > 0 ? kvc_grpc_status_name(code) : "",
                 code > 0 && c->error[0] ? ": " : "", KVC_GRPC_MSG_MAX,
                 c->error[0] ? c->error : (code > 0 ? "" : "no answer"));
    }
}

int kvc_forward_ready(kvc_fwd_call_t *c, kvc_fwd_ready_t *out)
{
    int all = 1;
    kvc_forward_t *fw = c->fw;
    for (size_t i = 0; i < fw->n; i++) {
        const kvc_fwd_backend_t *be = &fw->backends[i];
        size_t same = i;
        for (size_t j = 0; be->api == KVC_FWD_KSERVE && j < i && same == i; j++)
            if (fw->backends[j].api == KVC_FWD_KSERVE && strcmp(fw->backends[j].url, be->url) == 0)
                same = j;
        if (same != i)
            out[i] = out[same]; /* one KServe server answers for all its models */
        else
            s_backend_ready(c, be, &out[i]);
        all = all && out[i].ready;
    }
    s_clear(c);
    return all;
}
