/*
 * proxy.c - the inference proxy's HTTP routes: the route table, request
 * parsing (TF Serving REST JSON, KServe v2 JSON with binary tensors, raw
 * images, Accept and Content-Type) and the answers, in the client's
 * format. Which backend serves a model, what its inputs are and the gRPC
 * calls to it are the forwarding layer's (forward.h).
 *
 * Requests run concurrently, in fibers on the HTTP loop or on threads of
 * their own (http_server.h); the proxy's own state is read-only after
 * kvc_proxy_new, but for the model table, which kvc_proxy_set_models
 * swaps whole and each request holds (forward.h) until it ends. Every
 * failure becomes an HTTP status with {"error": "..."}; nothing here may
 * crash or leak on any body or any backend answer, and nothing is
 * allocated that a limit does not bound.
 */
#include "proxy.h"

#include "forward.h"
#include "image.h"
#include "json_tensor.h"
#include "kserve_json.h"
#include "pb_decode.h"
#include "proxy_json.h"
#include "route.h"
#include "routing.h"
#include "signature.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct kvc_proxy {
    kvc_forward_t *fw;
    kvc_image_budget_t *images; /* shared by every image decode */
    kvc_proxy_observe_fn observe;
    void *observe_arg;
    kvc_routing_t *rt; /* NULL: no routing, every request is served here */
    uint32_t timeout_ms;
};

/* One request's working state. */
typedef struct {
    kvc_proxy_t *p;
    const kvc_http_req_t *req;
    kvc_http_resp_t *resp;
    kvc_route_t route;
    kvc_fwd_call_t call; /* its dealings with the backend */
    kvc_proxy_observation_t obs;
} s_ctx_t;

/* Monotonic seconds as a double. */
static double s_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
    self->observe = opts->observe;
    self->observe_arg = opts->observe_arg;
    self->fw = kvc_forward_new(opts, err);
    if (!self->fw)
        goto fail;
    self->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 30000;
    if (opts->sites) {
        self->rt = kvc_routing_new(opts, kvc_forward_engine(self->fw), err);
        if (!self->rt)
            goto fail;
    }
    self->images =
        kvc_image_budget_new(opts->image_memory ? opts->image_memory : (uint64_t)256 << 20);
    if (!self->images) {
        kvc_err_set(err, KVC_ENOMEM, "proxy: cannot set up the image memory budget");
        goto fail;
    }
    return self;
fail:
    kvc_proxy_destroy(&self);
    return NULL;
}

int kvc_proxy_set_models(kvc_proxy_t *p, const kvc_proxy_backend_t *models, size_t n,
                         kvc_err_t *err)
{
    if (!p)
        return kvc_err_set(err, KVC_EINVAL, "proxy: none");
    return kvc_forward_set(p->fw, models, n, err);
}

void kvc_proxy_destroy(kvc_proxy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_proxy_t *self = *self_p;
    kvc_forward_destroy(&self->fw);
    kvc_routing_destroy(&self->rt);
    kvc_image_budget_destroy(&self->images);
    kvc_free(self);
    *self_p = NULL;
}

/* Answers the failure a forwarding operation left in the call, when rc
 * says it failed; returns rc. */
static int s_fwd(s_ctx_t *c, int rc)
{
    if (rc)
        kvc_http_error(c->resp, c->call.status ? c->call.status : 500, "%s",
                       c->call.error[0] ? c->call.error : kvc_strerror(rc));
    return rc;
}

/* The signature a request that names none is parsed with: the backend's
 * default (TF Serving only; KServe models have one), or NULL for
 * serving_default. */
static const char *s_default_signature(const s_ctx_t *c)
{
    const kvc_fwd_backend_t *be = c->call.be;
    return be->api == KVC_FWD_TFS && be->signature[0] ? be->signature : NULL;
}

/* The model's signatures for code that cannot answer a fetch failure
 * itself (its callers fetch first with kvc_forward_signatures): NULL when
 * unknown. */
static const kvc_signature_set_t *s_signatures(s_ctx_t *c)
{
    const kvc_signature_set_t *set = NULL;
    kvc_forward_signatures(&c->call, &set);
    return set;
}

/* Sets the response to the backend's protobuf bytes as they came (taking
 * them), labelled with the media type the client asked for. */
static int s_answer_protobuf(s_ctx_t *c, uint8_t *raw, size_t len)
{
    kvc_buf_reset(&c->resp->body);
    int rc = kvc_buf_append(&c->resp->body, (const char *)raw, len);
    kvc_free(raw);
    if (rc != 0) {
        kvc_http_error(c->resp, 500, "response exceeds the limit of %zu bytes", c->resp->body.max);
        return KVC_ERANGE;
    }
    c->resp->status = 200;
    snprintf(c->resp->content_type, sizeof c->resp->content_type, "%s", c->call.pb_type);
    return KVC_OK;
}

/* Runs inputs through the request's backend. Returns 0 with *outputs set
 * to answer, or nonzero when the answer is already made (an error, or
 * the backend's protobuf as is). */
static int s_infer(s_ctx_t *c, kvc_tensor_list_t *inputs, const char *signature, const char *id,
                   char **filter, size_t n_filter, kvc_tensor_list_t **outputs)
{
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    int rc = s_fwd(c, kvc_forward_check_shapes(&c->call, inputs));
    if (rc != 0)
        return rc;
    rc = kvc_forward_infer(&c->call, inputs, signature, id, filter, n_filter, outputs, &raw,
                           &raw_len);
    if (s_fwd(c, rc) != 0)
        return rc;
    if (raw) {
        s_answer_protobuf(c, raw, raw_len);
        return KVC_EEXIST; /* answered */
    }
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

/* ---- Endpoints ------------------------------------------------------------- */

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
    const kvc_fwd_backend_t *be = c->call.be;
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
        if (!set && c->call.no_metadata) {
            kvc_http_error(c->resp, 503,
                           "model %s: its model server gives no metadata, so the input images "
                           "go to must be configured (proxy.backends[].image_input)",
                           be->model);
            return KVC_EUNAVAIL;
        }
        if (kvc_signature_set_inputs(set, s_default_signature(c), &specs, &n) != 0 || n != 1) {
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
    kvc_tensor_t *t = kvc_tensor_new(name, dt, kvc_forward_limits(c->p->fw));
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
    if (!c->call.be->has_spec || c->call.be->image_input[0])
        return KVC_OK;
    return s_fwd(c, kvc_forward_signatures(&c->call, &set));
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
        if (s_fwd(c, kvc_forward_signatures(&c->call, &set)) != 0)
            return;
        if (!set) {
            /* TF Serving's REST JSON carries no dtypes: without the model's
             * metadata or a declaration, any dtype would be a guess. */
            kvc_http_error(c->resp, 503,
                           "model %s: its model server gives no metadata and the proxy's "
                           "config declares no inputs for it (proxy.backends[].inputs), so the "
                           "input dtypes are unknown",
                           c->call.be->model);
            return;
        }
        kvc_json_tensor_opts_t o = {.limits = *kvc_forward_limits(c->p->fw),
                                    .strict = c->call.declared};
        kvc_signature_set_inputs(set, s_default_signature(c), &o.specs, &o.n_specs);
        kvc_err_t err = {0};
        int rc = kvc_json_tensor_parse_request((const char *)c->req->body, c->req->body_len, &o,
                                               &jr, &err);
        if (rc == 0 && jr.signature_name && jr.signature_name[0]) {
            /* Another signature than the default: parse again with its dtypes. */
            kvc_json_tensor_opts_t o2 = {.limits = *kvc_forward_limits(c->p->fw),
                                         .strict = c->call.declared};
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
    if (s_infer(c, inputs, signature, NULL, NULL, 0, &outputs) == 0) {
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

/*
 * A KServe v2 request names each input's datatype, so none is guessed; but
 * when the model server gives no metadata and the config declares the
 * inputs, only those are served, with their dtypes. Answers and returns
 * nonzero when an input is not one of them.
 */
static int s_v2_declared_check(s_ctx_t *c, const kvc_tensor_list_t *inputs)
{
    const kvc_signature_set_t *set = NULL;
    if (!c->call.be->declared)
        return KVC_OK;
    if (s_fwd(c, kvc_forward_signatures(&c->call, &set)) != 0)
        return KVC_EUNAVAIL;
    if (!c->call.declared)
        return KVC_OK; /* the server's metadata rules; it checks the inputs itself */
    const kvc_json_tensor_spec_t *specs = NULL;
    size_t n = 0;
    kvc_signature_set_inputs(set, NULL, &specs, &n);
    for (size_t i = 0; i < kvc_tensor_list_size(inputs); i++) {
        const kvc_tensor_t *t = kvc_tensor_list_at(inputs, i);
        size_t j = 0;
        while (j < n && strcmp(specs[j].name, kvc_tensor_name(t)) != 0)
            j++;
        if (j == n) {
            kvc_http_error(c->resp, 400, "inputs[%zu]: '%.128s' is not an input of model %s", i,
                           kvc_tensor_name(t), c->call.be->model);
            return KVC_EINVAL;
        }
        if (specs[j].dtype != kvc_tensor_dtype(t)) {
            kvc_http_error(c->resp, 400, "inputs[%zu]: '%s' has datatype %s, but model %s takes %s",
                           i, specs[j].name, kvc_dtype_kserve_name(kvc_tensor_dtype(t)),
                           c->call.be->model, kvc_dtype_kserve_name(specs[j].dtype));
            return KVC_EINVAL;
        }
    }
    return KVC_OK;
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
                                               header_len, kvc_forward_limits(c->p->fw), &kr, &err);
        if (rc) {
            s_codec_error(c, rc, &err);
            return;
        }
        inputs = kr.inputs;
        /* Declared shapes need no metadata: checked before any is fetched
         * (and again, harmlessly, before the call). */
        if (s_fwd(c, kvc_forward_check_shapes(&c->call, inputs)) != 0 ||
            s_v2_declared_check(c, inputs) != 0) {
            kvc_kserve_json_request_clear(&kr);
            return;
        }
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
    if (s_infer(c, inputs, NULL, kr.id, filter, n_filter, &outputs) == 0) {
        char version[KVC_VERSION_MAX + 1];
        if (c->call.version[0])
            snprintf(version, sizeof version, "%s", c->call.version);
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

/* GET /v1/models/NAME[...] (TF Serving model status). */
static void s_tfs_status_answer(s_ctx_t *c)
{
    int rc;
    kvc_buf_reset(&c->resp->body);
    if (c->call.be->api == KVC_FWD_TFS) {
        Tensorflow__Serving__GetModelStatusResponse *r = NULL;
        if (s_fwd(c, kvc_forward_tfs_status(&c->call, &r)) != 0)
            return;
        rc = kvc_proxy_status_json(r, &c->resp->body);
        tensorflow__serving__get_model_status_response__free_unpacked(r, kvc_pb_allocator());
    } else {
        /* ModelMetadata names the version (and says NOT_FOUND); then ModelReady. */
        Inference__ModelMetadataResponse *m = NULL;
        if (s_fwd(c, kvc_forward_kserve_metadata(&c->call, 0, &m)) != 0)
            return;
        char version[KVC_VERSION_MAX + 1];
        if (c->route.version_name[0])
            snprintf(version, sizeof version, "%s", c->route.version_name);
        else
            snprintf(version, sizeof version, "%.20s",
                     m->n_versions && m->versions[0] ? m->versions[0] : "");
        inference__model_metadata_response__free_unpacked(m, kvc_pb_allocator());
        int ready = 0;
        if (s_fwd(c, kvc_forward_kserve_ready(&c->call, c->route.version_name[0] ? version : "",
                                              &ready)) != 0)
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
    if (c->call.be->api == KVC_FWD_TFS) {
        Tensorflow__Serving__GetModelMetadataResponse *r = NULL;
        if (s_fwd(c, kvc_forward_tfs_metadata(&c->call, 0, &r)) != 0)
            return;
        rc = v2 ? kvc_proxy_v2_metadata_json_tfs(r, NULL, &c->resp->body, &err)
                : kvc_proxy_metadata_json(r, &c->resp->body, &err);
        tensorflow__serving__get_model_metadata_response__free_unpacked(r, kvc_pb_allocator());
    } else {
        Inference__ModelMetadataResponse *m = NULL;
        if (s_fwd(c, kvc_forward_kserve_metadata(&c->call, 0, &m)) != 0)
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
    if (c->call.be->api == KVC_FWD_TFS) {
        Tensorflow__Serving__GetModelStatusResponse *r = NULL;
        if (s_fwd(c, kvc_forward_tfs_status(&c->call, &r)) != 0)
            return;
        ready = kvc_forward_any_available(r);
        tensorflow__serving__get_model_status_response__free_unpacked(r, kvc_pb_allocator());
    } else {
        char version[KVC_VERSION_MAX + 1];
        if (s_fwd(c, kvc_forward_kserve_version(&c->call, version, sizeof version)) != 0 ||
            s_fwd(c, kvc_forward_kserve_ready(&c->call, version, &ready)) != 0)
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

/* GET /v2/health/ready: every backend answers (KServe servers once each).
 * {"ready": B, "models": [{"model": M, "ready": B[, "reason": R]}...]},
 * so a probe's log says which model server is not ready and why. */
static void s_v2_ready(s_ctx_t *c)
{
    size_t n = kvc_forward_size(&c->call);
    kvc_fwd_ready_t *each = kvc_calloc(n ? n : 1, sizeof *each);
    if (!each) {
        kvc_http_error(c->resp, 500, "out of memory");
        return;
    }
    int all = kvc_forward_ready(&c->call, each);
    kvc_buf_t *b = &c->resp->body;
    kvc_buf_reset(b);
    int rc = kvc_buf_printf(b, "{\"ready\": %s, \"models\": [", all ? "true" : "false");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *model = kvc_forward_backend(&c->call, i)->model;
        rc = kvc_buf_printf(b, "%s{\"model\": ", i ? ", " : "");
        rc = rc ? rc : kvc_json_append_str(b, model, strlen(model));
        rc = rc ? rc : kvc_buf_printf(b, ", \"ready\": %s", each[i].ready ? "true" : "false");
        if (rc == 0 && !each[i].ready) {
            rc = kvc_buf_printf(b, ", \"reason\": ");
            rc = rc ? rc : kvc_json_append_str(b, each[i].reason, strlen(each[i].reason));
        }
        rc = rc ? rc : kvc_buf_printf(b, "}");
    }
    rc = rc ? rc : kvc_buf_printf(b, "]}");
    kvc_free(each);
    if (rc != 0) {
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

/* GET /v2/health/live. */
static void s_v2_live(s_ctx_t *c)
{
    s_fixed(c, 200, "{\"live\": true}");
}

/* GET /v2 (KServe server metadata). */
static void s_v2_server(s_ctx_t *c)
{
    s_fixed(c, 200,
            "{\"name\": \"kvc\", \"version\": \"0.1.0\", \"extensions\": "
            "[\"binary_tensor_data\"]}");
}

/* /metrics and /federate, which the daemon serves when metrics are on. */
static void s_no_metrics(s_ctx_t *c)
{
    kvc_http_error(c->resp, 404, "metrics are not enabled");
}

/* POST ...:classify. */
static void s_tfs_classify(s_ctx_t *c)
{
    kvc_http_error(c->resp, 400, "classify is not supported by this proxy");
}

/* POST ...:regress. */
static void s_tfs_regress(s_ctx_t *c)
{
    kvc_http_error(c->resp, 400, "regress is not supported by this proxy");
}

/* GET /v1/models/NAME[...]/metadata. */
static void s_tfs_metadata_answer(s_ctx_t *c)
{
    s_metadata_answer(c, 0);
}

/* GET /v2/models/NAME[/versions/V]. */
static void s_v2_metadata_answer(s_ctx_t *c)
{
    s_metadata_answer(c, 1);
}

/* The route table: every endpoint, and whether it is about one model
 * (then its backend is found first, or 404). */
static const struct {
    kvc_route_kind_t kind;
    int per_model;
    void (*handle)(s_ctx_t *c);
} s_routes[] = {
    {KVC_ROUTE_V2_LIVE, 0, s_v2_live},
    {KVC_ROUTE_V2_READY, 0, s_v2_ready},
    {KVC_ROUTE_V2_SERVER, 0, s_v2_server},
    {KVC_ROUTE_METRICS, 0, s_no_metrics},
    {KVC_ROUTE_FEDERATE, 0, s_no_metrics},
    {KVC_ROUTE_TFS_CLASSIFY, 0, s_tfs_classify},
    {KVC_ROUTE_TFS_REGRESS, 0, s_tfs_regress},
    {KVC_ROUTE_TFS_PREDICT, 1, s_tfs_predict},
    {KVC_ROUTE_TFS_STATUS, 1, s_tfs_status_answer},
    {KVC_ROUTE_TFS_METADATA, 1, s_tfs_metadata_answer},
    {KVC_ROUTE_V2_MODEL, 1, s_v2_metadata_answer},
    {KVC_ROUTE_V2_MODEL_READY, 1, s_v2_model_ready},
    {KVC_ROUTE_V2_INFER, 1, s_v2_infer},
};

/* The route table's entry for a kind, or -1. */
static int s_route_index(kvc_route_kind_t kind)
{
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes[0]; i++)
        if (s_routes[i].kind == kind)
            return (int)i;
    return -1;
}

/* Serves the parsed request on this site's backend. */
static void s_run_local(s_ctx_t *c, int i)
{
    if (s_routes[i].per_model && s_fwd(c, kvc_forward_find(&c->call)) != 0)
        return;
    s_routes[i].handle(c);
}

/* How a request served here ended, as router.h classifies a call. */
static kvc_call_class_t s_local_class(const s_ctx_t *c)
{
    if (c->call.grpc_status >= 0)
        return kvc_breaker_classify(KVC_CALL_E_NONE, c->call.grpc_status, 0);
    if (!c->call.be && c->resp->status == 404)
        return KVC_CALL_RETRY; /* not served here: another site may */
    if (c->resp->status >= 400 && c->resp->status < 500)
        return KVC_CALL_REJECT;
    if (c->resp->status >= 500)
        return KVC_CALL_FAIL;
    return KVC_CALL_SUCCESS;
}

/* Resets what a failed attempt left, for the next one. */
static void s_attempt_reset(s_ctx_t *c)
{
    kvc_forward_end(&c->call);
    const char *pb_type = c->call.pb_type;
    memset(&c->call, 0, sizeof c->call);
    c->call.fw = c->p->fw;
    c->call.route = &c->route;
    c->call.pb_type = pb_type;
    c->call.grpc_status = -1;
    c->resp->status = 0;
    c->resp->content_type[0] = c->resp->header_name[0] = '\0';
    kvc_buf_reset(&c->resp->body);
}

/* One attempt at this site, timed and counted in the local figures. */
static kvc_call_class_t s_attempt_local(s_ctx_t *c, int i)
{
    kvc_routing_t *rt = c->p->rt;
    kvc_routing_local_begin(rt, c->route.model);
    double t0 = s_now_s();
    s_run_local(c, i);
    kvc_call_class_t cls = s_local_class(c);
    kvc_routing_local_end(rt, c->route.model, (int64_t)((s_now_s() - t0) * 1e6),
                          cls == KVC_CALL_SUCCESS || cls == KVC_CALL_REJECT);
    kvc_strlcpy(c->resp->served_by, kvc_routing_site(rt), sizeof c->resp->served_by);
    return cls;
}

/* One attempt at another site: the whole HTTP request goes to a peer
 * there, whose proxy runs it on its backend. */
static kvc_call_class_t s_attempt_remote(s_ctx_t *c, const char *site, const char *constraint,
                                         uint32_t timeout_ms)
{
    const kvc_http_req_t *req = c->req;
    kvc_proxy_remote_req_t rr = {
        .model = c->route.model,
        .method = req->method,
        .path = req->path,
        .content_type = req->content_type,
        .accept = req->accept,
        .inference_header_length = req->inference_header_length,
        .constraint = constraint,
        .body = req->body,
        .body_len = req->body_len,
        .timeout_ms = timeout_ms,
    };
    kvc_proxy_remote_resp_t r;
    int rc = kvc_routing_forward(c->p->rt, site, &rr, &r);
    kvc_call_class_t cls;
    if (rc != 0 || !r.answered) {
        cls = kvc_breaker_classify(r.timed_out ? KVC_CALL_E_TIMEOUT : KVC_CALL_E_CONNECT, 0, 0);
        kvc_http_error(c->resp, r.timed_out ? 504 : 502, "site %s: %s", site,
                       r.error[0] ? r.error : "no answer");
    } else {
        cls = (r.call_class >= KVC_CALL_SUCCESS && r.call_class <= KVC_CALL_ABANDON)
                  ? (kvc_call_class_t)r.call_class
                  : KVC_CALL_FAIL;
        kvc_buf_reset(&c->resp->body);
        if (kvc_buf_append(&c->resp->body, r.body, r.body_len) != 0) {
            kvc_http_error(c->resp, 502, "site %s: the answer is larger than this proxy sends",
                           site);
            cls = KVC_CALL_FAIL;
        } else {
            c->resp->status = r.status >= 100 && r.status <= 599 ? r.status : 502;
            kvc_strlcpy(c->resp->content_type, r.content_type, sizeof c->resp->content_type);
            kvc_strlcpy(c->resp->header_name, r.header_name, sizeof c->resp->header_name);
            kvc_strlcpy(c->resp->header_value, r.header_value, sizeof c->resp->header_value);
        }
    }
    kvc_free(r.body);
    kvc_strlcpy(c->resp->served_by, r.served_by[0] ? r.served_by : site,
                sizeof c->resp->served_by);
    return cls;
}

/* The client's deadline in ms from Kvc-Timeout-Ms, 0 when none; -1 bad. */
static int64_t s_deadline(const kvc_http_req_t *req)
{
    const char *v = kvc_http_header(req, KVC_PROXY_DEADLINE_HEADER);
    if (!v)
        return 0;
    char *end;
    long long ms = strtoll(v, &end, 10);
    if (end == v || *end || ms < 1 || ms > 3600000)
        return -1;
    return ms;
}

/*
 * A per-model request with routing: the router's candidates in order, the
 * first the breaker lets through, and on a retryable failure once more at
 * the next one when the client's deadline leaves room for it.
 */
static void s_routed(s_ctx_t *c, int i)
{
    kvc_routing_t *rt = c->p->rt;
    const char *ctext = kvc_http_header(c->req, KVC_PROXY_CONSTRAINT_HEADER);
    kvc_router_constraint_t cons;
    kvc_err_t err = {0};
    if (kvc_router_constraint_parse(ctext ? ctext : "", ctext ? strlen(ctext) : 0, &cons, &err) !=
        0) {
        kvc_http_error(c->resp, 400, "%s: %s", KVC_PROXY_CONSTRAINT_HEADER, err.msg);
        return;
    }
    int64_t budget = s_deadline(c->req);
    if (budget < 0) {
        kvc_http_error(c->resp, 400, "%s must be a whole number of milliseconds, 1 to 3600000",
                       KVC_PROXY_DEADLINE_HEADER);
        return;
    }
    int local_has = kvc_forward_has(c->p->fw, c->route.model);
    kvc_router_choice_t *choice = kvc_malloc(sizeof *choice);
    if (!choice) {
        kvc_http_error(c->resp, 503, "out of memory");
        return;
    }
    int rc = kvc_routing_choose(rt, c->route.model, local_has, ctext ? &cons : NULL, choice, &err);
    if (rc != 0) {
        if (choice->n <= 1 && !local_has && !ctext) {
            /* Known nowhere else either: this site's own 404 says why. */
            s_run_local(c, i);
        } else {
            kvc_http_error(c->resp, 503, "%s", err.msg);
            c->obs.site = "_none"; /* counted as failed, at no site */
        }
        kvc_routing_count(rt, 0, 0, 0, 1, 1);
        kvc_free(choice);
        return;
    }
    double t0 = s_now_s();
    int64_t default_budget = c->p->timeout_ms;
    int attempts = 0, retried = 0;
    kvc_call_class_t cls = KVC_CALL_FAIL;
    for (size_t k = 0; k < choice->n_ranked && attempts < 2; k++) {
        const kvc_router_cand_t *cand = &choice->cands[k];
        int64_t elapsed = (int64_t)((s_now_s() - t0) * 1000);
        if (attempts > 0 && !kvc_breaker_retry_fits(budget, default_budget, elapsed,
                                                    kvc_router_cand_cost_ms(cand), 5))
            break;
        if (!kvc_routing_begin(rt, cand->site))
            continue;
        if (attempts > 0) {
            s_attempt_reset(c);
            retried = 1;
        }
        attempts++;
        if (cand->is_local) {
            cls = s_attempt_local(c, i);
        } else {
            int64_t left = (budget > 0 ? budget : default_budget) - elapsed;
            /* With a site left to retry at, this attempt gets a share of
             * the deadline sized to what it is expected to cost, so an
             * unreachable site costs a fraction of the budget, not all of
             * it: 20x its expected cost, 250 ms at least, half of what is
             * left at most. */
            int64_t t = left;
            if (attempts < 2 && k + 1 < choice->n_ranked) {
                double share = 20.0 * kvc_router_cand_cost_ms(cand);
                t = share < 250.0 ? 250 : (int64_t)share;
                if (t > left / 2)
                    t = left / 2;
            }
            cls = s_attempt_remote(c, cand->site, ctext, (uint32_t)(t > 1 ? t : 1));
        }
        kvc_routing_report(rt, cand->site, cls);
        c->obs.site = c->resp->served_by;
        c->obs.route = cand->is_local ? "local" : "forwarded";
        if (cls != KVC_CALL_RETRY)
            break;
    }
    if (attempts == 0) {
        kvc_http_error(c->resp, 503, "no site can serve %s now: every candidate's circuit is open",
                       c->route.model);
        c->obs.site = "_none";
        kvc_routing_count(rt, 0, 0, 0, 1, 1);
        kvc_free(choice);
        return;
    }
    c->obs.retried = retried;
    snprintf(c->resp->route, sizeof c->resp->route, "%s",
             retried ? "retried" : (strcmp(c->obs.route, "local") == 0 ? "local" : "forwarded"));
    int failed = cls == KVC_CALL_RETRY || cls == KVC_CALL_FAIL;
    kvc_routing_count(rt, strcmp(c->obs.route, "local") == 0, strcmp(c->obs.route, "forwarded") == 0,
                      retried, failed, 0);
    kvc_free(choice);
}

/* Routes one request to its endpoint: per-model requests through the
 * router when there is one (local_only: a request another peer forwarded,
 * served here or not at all). */
static void s_dispatch(s_ctx_t *c, int local_only)
{
    char msg[256];
    int rc = kvc_route_parse(c->req->method, c->req->path, &c->route, msg, sizeof msg);
    if (rc != 0) {
        kvc_http_error(c->resp, rc == 405 || rc == 400 ? rc : 404, "%s", msg);
        return;
    }
    c->obs.model = c->route.model;
    c->obs.endpoint = kvc_route_name(c->route.kind);
    int i = s_route_index(c->route.kind);
    if (i < 0) {
        kvc_http_error(c->resp, 404, "no such endpoint");
        return;
    }
    if (s_routes[i].per_model && c->p->rt && !local_only)
        s_routed(c, i);
    else if (s_routes[i].per_model && c->p->rt)
        s_attempt_local(c, i);
    else
        s_run_local(c, i);
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
    return kvc_forward_signatures_settled(p->fw, route.model); /* no such model: 404 at once */
}

struct kvc_grpc_client *kvc_proxy_engine(kvc_proxy_t *self)
{
    return kvc_forward_engine(self->fw);
}

/* Runs one request: routed (kind 0), or forwarded here by another peer
 * (kind 1; *call_class gets how it ended). */
static void s_handle(kvc_proxy_t *p, const kvc_http_req_t *req, kvc_http_resp_t *resp,
                     int forwarded, const char *constraint, int *call_class)
{
    s_ctx_t c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.req = req;
    c.resp = resp;
    c.call.fw = c.p->fw;
    c.call.route = &c.route;
    c.call.pb_type = kvc_proxy_accept_protobuf(req->accept);
    c.call.grpc_status = -1;
    c.obs.model = "";
    c.obs.endpoint = "none";
    c.obs.route = forwarded ? "served" : "local";
    c.obs.site = "";
    c.obs.request_bytes = req->body_len;
    double t0 = s_now_s();
    int refused = 0;
    if (forwarded && p->rt && constraint && constraint[0]) {
        kvc_router_constraint_t cons;
        kvc_err_t err = {0};
        if (kvc_router_constraint_parse(constraint, strlen(constraint), &cons, &err) != 0) {
            kvc_http_error(resp, 400, "%s: %s", KVC_PROXY_CONSTRAINT_HEADER, err.msg);
            refused = 1;
            if (call_class)
                *call_class = KVC_CALL_REJECT;
        } else if (!kvc_routing_local_meets(p->rt, &cons)) {
            kvc_http_error(resp, 503, "site %s does not meet the constraint \"%s\"",
                           kvc_routing_site(p->rt), constraint);
            refused = 1;
            if (call_class)
                *call_class = KVC_CALL_RETRY;
        }
    }
    if (!refused) {
        s_dispatch(&c, forwarded);
        if (call_class)
            *call_class = s_local_class(&c);
        if (forwarded)
            c.obs.site = resp->served_by;
    }
    if (resp->status < 100 || resp->status > 599)
        kvc_http_error(resp, 500, "internal error: no answer");
    if (c.p->observe) {
        c.obs.grpc_status = c.call.grpc_status;
        c.obs.backend_request_bytes = c.call.request_bytes;
        c.obs.backend_response_bytes = c.call.response_bytes;
        c.obs.http_status = resp->status;
        c.obs.response_bytes = resp->body.len;
        c.obs.seconds = s_now_s() - t0;
        c.p->observe(c.p->observe_arg, &c.obs);
    }
    kvc_forward_end(&c.call); /* the table it used may go now */
}

void kvc_proxy_handle(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp)
{
    s_handle(arg, req, resp, 0, NULL, NULL);
}

void kvc_proxy_handle_forwarded(kvc_proxy_t *p, const kvc_http_req_t *req, const char *constraint,
                                kvc_http_resp_t *resp, int *call_class)
{
    int cls = KVC_CALL_FAIL;
    s_handle(p, req, resp, 1, constraint, &cls);
    if (call_class)
        *call_class = cls;
}

size_t kvc_proxy_local_health(kvc_proxy_t *p, kvc_proxy_model_health_t *out, size_t cap)
{
    if (!p->rt)
        return 0;
    kvc_fwd_call_t call;
    memset(&call, 0, sizeof call);
    call.fw = p->fw;
    size_t n = kvc_forward_size(&call), k = 0;
    for (size_t i = 0; i < n && k < cap; i++) {
        const kvc_fwd_backend_t *be = kvc_forward_backend(&call, i);
        kvc_routing_local_health(p->rt, be->model, &out[k++]);
    }
    kvc_forward_end(&call);
    return k;
}

int kvc_proxy_explain(kvc_proxy_t *p, const char *model, const char *constraint,
                      kvc_router_choice_t *choice_out, char *buf, size_t size, kvc_err_t *err)
{
    if (!p->rt)
        return kvc_err_set(err, KVC_EINVAL, "this peer's proxy does not route (no sites)");
    kvc_router_constraint_t cons;
    if (constraint && constraint[0] &&
        kvc_router_constraint_parse(constraint, strlen(constraint), &cons, err) != 0)
        return KVC_EPARSE;
    kvc_router_choice_t *choice = kvc_malloc(sizeof *choice);
    if (!choice)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    kvc_err_t cerr = {0};
    int rc = kvc_routing_choose(p->rt, model, kvc_forward_has(p->fw, model),
                                constraint && constraint[0] ? &cons : NULL, choice, &cerr);
    if (rc != 0 && rc != KVC_EUNAVAIL) {
        kvc_free(choice);
        if (err)
            *err = cerr;
        return rc;
    }
    rc = kvc_router_explain_json(choice, buf, size, NULL);
    if (choice_out)
        *choice_out = *choice;
    kvc_free(choice);
    if (rc != 0)
        return kvc_err_set(err, rc, "the explanation does not fit in %zu bytes", size);
    return 0;
}

void kvc_proxy_route_stats(kvc_proxy_t *p, kvc_proxy_route_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (p->rt)
        kvc_routing_stats(p->rt, out);
}
