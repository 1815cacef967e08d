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

/* Most run-time models one kvc_forward_set may give. */
#define S_MODELS_MAX 4096
/* Longest signature or output name kept. */
#define S_NAME_MAX 256

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

/* One backend and what is learnt of it, shared by every table that lists
 * it (a kvc_forward_set that leaves it unchanged keeps it); freed with
 * the last table. be is immutable; the rest is locked or atomic. */
struct kvc_fwd_entry {
    atomic_size_t refs;
    kvc_fwd_backend_t be;
    kvc_signature_cache_t *sigs; /* one slot */
    s_sigfetch_t fetch;          /* under the forwarder's sig_lock */
    atomic_int said_no_metadata; /* the log said so */
};

/* An immutable snapshot of the backends: the config's, then the run-time
 * models the config does not name. Freed when its last holder drops it. */
struct kvc_fwd_table {
    atomic_size_t refs;
    size_t n;
    kvc_fwd_entry_t **e;
};

struct kvc_forward {
    uint32_t timeout_ms;
    size_t max_message;
    kvc_tensor_limits_t limits;
    kvc_grpc_client_t *grpc;
    int sig_sync; /* sig_lock and sig_done are initialised */
    pthread_mutex_t sig_lock;
    pthread_cond_t sig_done; /* on CLOCK_MONOTONIC */
    kvc_proxy_log_fn log;
    void *log_arg;
    kvc_proxy_where_fn where;
    void *where_arg;
    kvc_fwd_entry_t **config; /* the config's backends, in every table */
    size_t n_config;
    int table_sync;             /* table_lock and set_lock are initialised */
    pthread_mutex_t table_lock; /* guards table (the pointer), held briefly */
    pthread_mutex_t set_lock;   /* serialises kvc_forward_set */
    kvc_fwd_table_t *table;     /* current; one reference is the forwarder's */
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
    kvc_free(b->preprocess);
    kvc_free(b->image_input);
    kvc_free(b->signature);
    for (size_t i = 0; b->inputs && i < b->n_inputs; i++)
        kvc_free(b->inputs[i].name);
    kvc_free(b->inputs);
    for (size_t i = 0; b->outputs && i < b->n_outputs; i++)
        kvc_free(b->outputs[i]);
    kvc_free(b->outputs);
    kvc_signature_set_destroy(&b->declared);
}

/* With declared inputs and images: the input images go to must be one of
 * them, of the dtype the preprocessing writes. */
static int s_check_image_input(const kvc_fwd_backend_t *b, const kvc_json_tensor_spec_t *specs,
                               size_t n, const char *what, size_t i, kvc_err_t *err)
{
    kvc_dtype_t want = b->spec.dtype == KVC_PP_UINT8 ? KVC_DT_UINT8 : KVC_DT_FLOAT;
    if (!b->image_input[0] && n != 1)
        return kvc_err_set(err, KVC_EINVAL,
                           "%s[%zu]: %zu inputs are declared, so image_input must "
                           "name the one images go to",
                           what, i, n);
    for (size_t j = 0; j < n; j++) {
        if (b->image_input[0] && strcmp(specs[j].name, b->image_input) != 0)
            continue;
        if (specs[j].dtype != want)
            return kvc_err_set(
                err, KVC_EINVAL, "%s[%zu]: images become %s, but input %s is declared %s", what, i,
                kvc_dtype_plain_name(want), specs[j].name, kvc_dtype_plain_name(specs[j].dtype));
        return KVC_OK;
    }
    return kvc_err_set(err, KVC_EINVAL, "%s[%zu].image_input: %s is not among the declared inputs",
                       what, i, b->image_input);
}

/* Copies and checks the declared inputs (names, dtypes, shapes) of o into
 * b, and b->declared from them. */
static int s_inputs_init(kvc_fwd_backend_t *b, const kvc_proxy_backend_t *o, const char *what,
                         size_t i, kvc_err_t *err)
{
    kvc_json_tensor_spec_t specs[S_DECLARED_MAX];
    if (o->n_inputs > S_DECLARED_MAX)
        return kvc_err_set(err, KVC_ERANGE, "%s[%zu].inputs: %zu inputs (at most %d)", what, i,
                           o->n_inputs, S_DECLARED_MAX);
    if (!o->inputs)
        return kvc_err_set(err, KVC_EINVAL, "%s[%zu].inputs: %zu inputs but no array", what, i,
                           o->n_inputs);
    b->inputs = kvc_calloc(o->n_inputs, sizeof *b->inputs);
    if (!b->inputs)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    for (size_t j = 0; j < o->n_inputs; j++) {
        const kvc_proxy_input_t *in = &o->inputs[j];
        kvc_fwd_input_t *d = &b->inputs[j];
        b->n_inputs++;
        for (size_t k = 0; in->name && k < j; k++)
            if (strcmp(b->inputs[k].name, in->name) == 0)
                return kvc_err_set(err, KVC_EEXIST, "%s[%zu].inputs[%zu]: \"%s\" is declared twice",
                                   what, i, j, in->name);
        d->name = kvc_strdup(in->name ? in->name : "");
        if (!d->name)
            return kvc_err_set(err, KVC_ENOMEM, "out of memory");
        d->dtype = in->dtype;
        if (in->shape) {
            if (in->n_dims > KVC_FWD_DIMS_MAX)
                return kvc_err_set(err, KVC_ERANGE,
                                   "%s[%zu].inputs[%zu].shape: %zu dimensions (at most %d)", what,
                                   i, j, in->n_dims, KVC_FWD_DIMS_MAX);
            for (size_t k = 0; k < in->n_dims; k++)
                if (in->shape[k] < -1)
                    return kvc_err_set(err, KVC_EINVAL,
                                       "%s[%zu].inputs[%zu].shape[%zu]: %lld is not a size "
                                       "(>= 0, or -1 for any)",
                                       what, i, j, k, (long long)in->shape[k]);
            d->has_shape = 1;
            d->n_dims = in->n_dims;
            if (in->n_dims)
                memcpy(d->dims, in->shape, in->n_dims * sizeof d->dims[0]);
        }
        specs[j] = (kvc_json_tensor_spec_t){d->name, d->dtype};
    }
    const char *sig = b->api == KVC_FWD_TFS && b->signature[0] ? b->signature : NULL;
    b->declared = kvc_signature_set_declared_as(sig, specs, o->n_inputs, err);
    if (!b->declared) {
        kvc_err_prefix(err, "%s[%zu].inputs: ", what, i);
        return err ? err->code : KVC_EINVAL;
    }
    if (b->has_spec)
        return s_check_image_input(b, specs, o->n_inputs, what, i, err);
    return KVC_OK;
}

/* Copies and checks the declared output names of o into b. */
static int s_outputs_init(kvc_fwd_backend_t *b, const kvc_proxy_backend_t *o, const char *what,
                          size_t i, kvc_err_t *err)
{
    if (o->n_outputs > S_DECLARED_MAX)
        return kvc_err_set(err, KVC_ERANGE, "%s[%zu].outputs: %zu outputs (at most %d)", what, i,
                           o->n_outputs, S_DECLARED_MAX);
    if (!o->outputs)
        return kvc_err_set(err, KVC_EINVAL, "%s[%zu].outputs: %zu outputs but no array", what, i,
                           o->n_outputs);
    b->outputs = kvc_calloc(o->n_outputs, sizeof *b->outputs);
    if (!b->outputs)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    for (size_t j = 0; j < o->n_outputs; j++) {
        const char *name = o->outputs[j];
        if (!name || !name[0] || strlen(name) > S_NAME_MAX)
            return kvc_err_set(err, KVC_EINVAL, "%s[%zu].outputs[%zu]: must be 1..%d bytes", what,
                               i, j, S_NAME_MAX);
        for (size_t k = 0; k < j; k++)
            if (strcmp(b->outputs[k], name) == 0)
                return kvc_err_set(err, KVC_EEXIST,
                                   "%s[%zu].outputs[%zu]: \"%s\" is declared twice", what, i, j,
                                   name);
        b->outputs[j] = kvc_strdup(name);
        if (!b->outputs[j])
            return kvc_err_set(err, KVC_ENOMEM, "out of memory");
        b->n_outputs++;
    }
    return KVC_OK;
}

/* Copies and checks backend i of a list (what: "proxy.backends" for the
 * config's, "models" for kvc_forward_set's) into b. */
static int s_backend_init(kvc_fwd_backend_t *b, const kvc_proxy_backend_t *o, const char *what,
                          size_t i, kvc_err_t *err)
{
    if (!o->model || !o->model[0] || strlen(o->model) > KVC_MODEL_NAME_MAX)
        return kvc_err_set(err, KVC_EINVAL, "%s[%zu].model: must be 1..%d bytes", what, i,
                           KVC_MODEL_NAME_MAX);
    if (!o->grpc || !o->grpc[0] || strlen(o->grpc) > S_URL_MAX - 8)
        return kvc_err_set(err, KVC_EINVAL, "%s[%zu].grpc: must be HOST:PORT", what, i);
    if (!o->api || (strcmp(o->api, "tfserving") != 0 && strcmp(o->api, "kserve") != 0))
        return kvc_err_set(err, KVC_EINVAL, "%s[%zu].api: must be \"tfserving\" or \"kserve\"",
                           what, i);
    if (o->signature && strlen(o->signature) > S_NAME_MAX)
        return kvc_err_set(err, KVC_EINVAL, "%s[%zu].signature: longer than %d bytes", what, i,
                           S_NAME_MAX);
    b->api = strcmp(o->api, "kserve") == 0 ? KVC_FWD_KSERVE : KVC_FWD_TFS;
    if (o->preprocess && o->preprocess[0]) {
        if (kvc_preprocess_parse(o->preprocess, &b->spec, err) != 0) {
            kvc_err_prefix(err, "%s[%zu].", what, i);
            return err ? err->code : KVC_EINVAL;
        }
        b->has_spec = 1;
    }
    char url[S_URL_MAX];
    int has_scheme = strncmp(o->grpc, "http://", 7) == 0 || strncmp(o->grpc, "https://", 8) == 0;
    snprintf(url, sizeof url, "%s%s", has_scheme ? "" : "http://", o->grpc);
    b->model = kvc_strdup(o->model);
    b->url = kvc_strdup(url);
    b->preprocess = kvc_strdup(o->preprocess ? o->preprocess : "");
    b->image_input = kvc_strdup(o->image_input ? o->image_input : "");
    b->signature = kvc_strdup(o->signature ? o->signature : "");
    if (!b->model || !b->url || !b->preprocess || !b->image_input || !b->signature)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    if (o->n_inputs && s_inputs_init(b, o, what, i, err) != 0)
        return err ? err->code : KVC_EINVAL;
    if (o->n_outputs && s_outputs_init(b, o, what, i, err) != 0)
        return err ? err->code : KVC_EINVAL;
    return KVC_OK;
}

/* 1 when two checked backends are the same in every field. */
static int s_backend_equal(const kvc_fwd_backend_t *a, const kvc_fwd_backend_t *b)
{
    if (strcmp(a->model, b->model) != 0 || strcmp(a->url, b->url) != 0 || a->api != b->api ||
        strcmp(a->preprocess, b->preprocess) != 0 || strcmp(a->image_input, b->image_input) != 0 ||
        strcmp(a->signature, b->signature) != 0 || a->n_inputs != b->n_inputs ||
        a->n_outputs != b->n_outputs)
        return 0;
    for (size_t i = 0; i < a->n_inputs; i++) {
        const kvc_fwd_input_t *x = &a->inputs[i], *y = &b->inputs[i];
        if (strcmp(x->name, y->name) != 0 || x->dtype != y->dtype || x->has_shape != y->has_shape ||
            x->n_dims != y->n_dims ||
            (x->n_dims && memcmp(x->dims, y->dims, x->n_dims * sizeof x->dims[0]) != 0))
            return 0;
    }
    for (size_t i = 0; i < a->n_outputs; i++)
        if (strcmp(a->outputs[i], b->outputs[i]) != 0)
            return 0;
    return 1;
}

/* ---- Entries and tables ----------------------------------------------------- */

/* Drops a reference to e; the last one frees it. */
static void s_entry_drop(kvc_fwd_entry_t *e)
{
    if (!e || atomic_fetch_sub(&e->refs, 1) != 1)
        return;
    s_backend_free(&e->be);
    kvc_signature_cache_destroy(&e->sigs);
    kvc_free(e);
}

/* Checks and copies backend o into a new entry with one reference. NULL
 * with err set. */
static kvc_fwd_entry_t *s_entry_new(const kvc_proxy_backend_t *o, const char *what, size_t i,
                                    int runtime, kvc_err_t *err)
{
    kvc_fwd_entry_t *e = kvc_calloc(1, sizeof *e);
    if (!e) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        return NULL;
    }
    atomic_init(&e->refs, 1);
    atomic_init(&e->said_no_metadata, 0);
    e->be.runtime = runtime;
    if (s_backend_init(&e->be, o, what, i, err) != 0) {
        s_entry_drop(e);
        return NULL;
    }
    e->sigs = kvc_signature_cache_new(1, S_SIG_RETRY_MS);
    if (!e->sigs) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        s_entry_drop(e);
        return NULL;
    }
    return e;
}

/* Drops a reference to t; the last one frees it and drops its entries. */
static void s_table_drop(kvc_fwd_table_t *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    for (size_t i = 0; i < t->n; i++)
        s_entry_drop(t->e[i]);
    kvc_free(t->e);
    kvc_free(t);
}

/* A new table with one reference and room for n entries (none yet). */
static kvc_fwd_table_t *s_table_new(size_t n)
{
    kvc_fwd_table_t *t = kvc_calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->e = kvc_calloc(n ? n : 1, sizeof *t->e);
    if (!t->e) {
        kvc_free(t);
        return NULL;
    }
    atomic_init(&t->refs, 1);
    return t;
}

/* A reference to the current table (the caller drops it). */
static kvc_fwd_table_t *s_table_get(kvc_forward_t *self)
{
    pthread_mutex_lock(&self->table_lock);
    kvc_fwd_table_t *t = self->table;
    atomic_fetch_add(&t->refs, 1);
    pthread_mutex_unlock(&self->table_lock);
    return t;
}

/* Makes t (whose reference the forwarder takes) the current table and
 * drops the forwarder's reference to the old one. */
static void s_table_put(kvc_forward_t *self, kvc_fwd_table_t *t)
{
    pthread_mutex_lock(&self->table_lock);
    kvc_fwd_table_t *old = self->table;
    self->table = t;
    pthread_mutex_unlock(&self->table_lock);
    s_table_drop(old);
}

/* The call's table, taken at its first use. */
static kvc_fwd_table_t *s_hold(kvc_fwd_call_t *c)
{
    if (!c->table)
        c->table = s_table_get(c->fw);
    return c->table;
}

void kvc_forward_end(kvc_fwd_call_t *c)
{
    s_table_drop(c->table);
    c->table = NULL;
    c->entry = NULL;
    c->be = NULL;
}

/* Finds model in t; NULL if absent. */
static kvc_fwd_entry_t *s_table_find(const kvc_fwd_table_t *t, const char *model)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->e[i]->be.model, model) == 0)
            return t->e[i];
    return NULL;
}

/* 1 when a config backend is named model. */
static int s_is_config(const kvc_forward_t *self, const char *model)
{
    for (size_t i = 0; i < self->n_config; i++)
        if (strcmp(self->config[i]->be.model, model) == 0)
            return 1;
    return 0;
}

int kvc_forward_set(kvc_forward_t *self, const kvc_proxy_backend_t *models, size_t n,
                    kvc_err_t *err)
{
    if (n && !models)
        return kvc_err_set(err, KVC_EINVAL, "models: %zu models but no array", n);
    if (n > S_MODELS_MAX)
        return kvc_err_set(err, KVC_ERANGE, "models: %zu models (at most %d)", n, S_MODELS_MAX);
    kvc_fwd_entry_t **fresh = kvc_calloc(n ? n : 1, sizeof *fresh);
    if (!fresh)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    int rc = KVC_OK;
    pthread_mutex_lock(&self->set_lock);
    kvc_fwd_table_t *cur = s_table_get(self), *t = NULL;
    /* Check every entry before anything changes. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        fresh[i] = s_entry_new(&models[i], "models", i, 1, err);
        if (!fresh[i]) {
            rc = err ? err->code : KVC_EINVAL;
            break;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(fresh[j]->be.model, fresh[i]->be.model) == 0) {
                rc = kvc_err_set(err, KVC_EEXIST, "models[%zu].model: \"%s\" is listed twice", i,
                                 fresh[i]->be.model);
                break;
            }
    }
    if (rc == 0 && !(t = s_table_new(self->n_config + n)))
        rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
    if (rc == 0) {
        for (size_t i = 0; i < self->n_config; i++) {
            atomic_fetch_add(&self->config[i]->refs, 1);
            t->e[t->n++] = self->config[i];
        }
        for (size_t i = 0; i < n; i++) {
            if (s_is_config(self, fresh[i]->be.model))
                continue; /* the config's backend wins */
            /* Unchanged: keep the entry and what it learnt. */
            kvc_fwd_entry_t *old = s_table_find(cur, fresh[i]->be.model);
            if (old && old->be.runtime && s_backend_equal(&old->be, &fresh[i]->be)) {
                atomic_fetch_add(&old->refs, 1);
                t->e[t->n++] = old;
            } else {
                t->e[t->n++] = fresh[i];
                fresh[i] = NULL;
            }
        }
        s_table_put(self, t);
    }
    s_table_drop(cur);
    pthread_mutex_unlock(&self->set_lock);
    for (size_t i = 0; i < n; i++)
        s_entry_drop(fresh[i]);
    kvc_free(fresh);
    return rc;
}

/* Sets up the signature fetches' lock and condition (on the monotonic
 * clock, so waits are deadlines). */
static int s_sig_sync_init(kvc_forward_t *self)
{
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
    self->where = opts->where;
    self->where_arg = opts->where_arg;
    self->config = kvc_calloc(opts->n_backends ? opts->n_backends : 1, sizeof *self->config);
    if (!self->config) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < opts->n_backends; i++) {
        self->config[i] = s_entry_new(&opts->backends[i], "proxy.backends", i, 0, err);
        if (!self->config[i])
            goto fail;
        self->n_config++;
        for (size_t j = 0; j < i; j++)
            if (strcmp(self->config[j]->be.model, self->config[i]->be.model) == 0) {
                kvc_err_set(err, KVC_EEXIST, "proxy.backends[%zu].model: \"%s\" is listed twice", i,
                            self->config[i]->be.model);
                goto fail;
            }
    }
    if (s_sig_sync_init(self) != 0) {
        kvc_err_set(err, KVC_ENOMEM, "proxy: cannot set up the signature fetches");
        goto fail;
    }
    if (pthread_mutex_init(&self->table_lock, NULL) != 0) {
        kvc_err_set(err, KVC_ENOMEM, "proxy: cannot set up the model table");
        goto fail;
    }
    if (pthread_mutex_init(&self->set_lock, NULL) != 0) {
        pthread_mutex_destroy(&self->table_lock);
        kvc_err_set(err, KVC_ENOMEM, "proxy: cannot set up the model table");
        goto fail;
    }
    self->table_sync = 1;
    self->table = s_table_new(self->n_config);
    if (!self->table) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < self->n_config; i++) {
        atomic_fetch_add(&self->config[i]->refs, 1);
        self->table->e[self->table->n++] = self->config[i];
    }
    /* Every call the proxy makes (predict, infer, metadata, status) only
     * reads: one cut off with its connection may be made again. */
    kvc_grpc_opts_t gopts = {
        .max_message_size = self->max_message, .ca_file = opts->grpc_ca_file, .retry_lost = 1};
    self->grpc = kvc_grpc_client_new(&gopts);
    if (!self->grpc) {
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
    s_table_drop(self->table);
    for (size_t i = 0; i < self->n_config; i++)
        s_entry_drop(self->config[i]);
    kvc_free(self->config);
    if (self->table_sync) {
        pthread_mutex_destroy(&self->table_lock);
        pthread_mutex_destroy(&self->set_lock);
    }
    if (self->sig_sync) {
        pthread_cond_destroy(&self->sig_done);
        pthread_mutex_destroy(&self->sig_lock);
    }
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

size_t kvc_forward_size(kvc_fwd_call_t *c)
{
    return s_hold(c)->n;
}

const kvc_fwd_backend_t *kvc_forward_backend(kvc_fwd_call_t *c, size_t i)
{
    return &s_hold(c)->e[i]->be;
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

/* Leaves the 404 for a model this site does not serve, saying where it is
 * served as the where callback tells. */
static void s_not_here(kvc_fwd_call_t *c)
{
    kvc_forward_t *fw = c->fw;
    char sites[KVC_FWD_ERROR_MAX / 2];
    sites[0] = '\0';
    size_t n = fw->where(fw->where_arg, c->route->model, sites, sizeof sites);
    sites[sizeof sites - 1] = '\0';
    if (n == 0)
        s_fail(c, 404, "model \"%s\" is not in the registry", c->route->model);
    else
        s_fail(c, 404, "model \"%s\" is not served at this site; it is served at: %s",
               c->route->model, sites);
}

int kvc_forward_find(kvc_fwd_call_t *c)
{
    const kvc_route_t *r = c->route;
    kvc_fwd_entry_t *e = s_table_find(s_hold(c), r->model);
    c->entry = e;
    c->be = e ? &e->be : NULL;
    if (!c->be) {
        if (c->fw->where)
            s_not_here(c);
        else if (r->version_name[0])
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
    if (atomic_exchange(&c->entry->said_no_metadata, 1) || !fw->log)
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
    if (!atomic_exchange(&c->entry->said_no_metadata, 0) || !fw->log)
        return;
    char msg[256];
    snprintf(msg, sizeof msg, "model %s: its model server gives metadata now; serving its inputs",
             c->be->model);
    fw->log(fw->log_arg, 0, msg);
}

int kvc_forward_has(kvc_forward_t *self, const char *model)
{
    kvc_fwd_table_t *t = s_table_get(self);
    int has = s_table_find(t, model) != NULL;
    s_table_drop(t);
    return has;
}

int kvc_forward_signatures_settled(kvc_forward_t *self, const char *model)
{
    int fetch = 0, settled = 1;
    kvc_fwd_table_t *t = s_table_get(self);
    kvc_fwd_entry_t *e = s_table_find(t, model);
    if (e)
        settled = kvc_signature_cache_get(e->sigs, 0, s_now_ms(), &fetch) != NULL || !fetch;
    s_table_drop(t);
    return settled;
}

int kvc_forward_signatures(kvc_fwd_call_t *c, const kvc_signature_set_t **out)
{
    kvc_forward_t *p = c->fw;
    s_sigfetch_t *f = &c->entry->fetch;
    *out = NULL;
    s_clear(c);
    for (int round = 0; round < 4; round++) {
        int fetch = 0;
        const kvc_signature_set_t *set =
            kvc_signature_cache_get(c->entry->sigs, 0, s_now_ms(), &fetch);
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
            *out = kvc_signature_cache_put(c->entry->sigs, 0, &fresh);
            s_say_metadata(c);
        } else if (definitive) {
            kvc_signature_cache_fail(c->entry->sigs, 0, s_now_ms());
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

/* Writes a shape as "[1, -1, 3]" ("[]" for a scalar) into out. */
static void s_shape_text(const int64_t *dims, size_t n, char *out, size_t size)
{
    size_t len = (size_t)snprintf(out, size, "[");
    for (size_t i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (len < size)
        snprintf(out + len, size - len, "]");
}

int kvc_forward_check_shapes(kvc_fwd_call_t *c, const kvc_tensor_list_t *inputs)
{
    const kvc_fwd_backend_t *be = c->be;
    for (size_t i = 0; be->n_inputs && i < kvc_tensor_list_size(inputs); i++) {
        const kvc_tensor_t *t = kvc_tensor_list_at(inputs, i);
        const char *name = kvc_tensor_name(t);
        const kvc_fwd_input_t *d = NULL;
        if (!name[0] && be->n_inputs == 1)
            d = &be->inputs[0];
        for (size_t j = 0; !d && j < be->n_inputs; j++)
            if (strcmp(be->inputs[j].name, name) == 0)
                d = &be->inputs[j];
        if (!d || !d->has_shape)
            continue;
        size_t n = (size_t)kvc_tensor_ndim(t);
        const int64_t *dims = kvc_tensor_shape(t);
        int ok = n == d->n_dims;
        for (size_t k = 0; ok && k < n; k++)
            ok = d->dims[k] < 0 || d->dims[k] == dims[k];
        if (!ok) {
            char got[KVC_FWD_DIMS_MAX * 22 + 4], want[KVC_FWD_DIMS_MAX * 22 + 4];
            s_shape_text(dims, n, got, sizeof got);
            s_shape_text(d->dims, d->n_dims, want, sizeof want);
            s_fail(c, 400, "input %s has shape %s, but model %s takes %s (-1: any size)", d->name,
                   got, be->model, want);
            return KVC_EINVAL;
        }
    }
    return KVC_OK;
}

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
    s_model_spec(c, &spec, &ver, signature && signature[0] ? signature : c->be->signature);
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
    kvc_fwd_table_t *t = s_hold(c);
    for (size_t i = 0; i < t->n; i++) {
        const kvc_fwd_backend_t *be = &t->e[i]->be;
        size_t same = i;
        for (size_t j = 0; be->api == KVC_FWD_KSERVE && j < i && same == i; j++)
            if (t->e[j]->be.api == KVC_FWD_KSERVE && strcmp(t->e[j]->be.url, be->url) == 0)
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
