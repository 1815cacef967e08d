/*
 * kube.c - the Kubernetes API client of the join-token broker (libcurl
 * easy, HTTPS only): bootstrap-token Secrets, cluster-info, nodes.
 *
 * Credentials stay in memory: the CA, client certificate and key go to
 * libcurl as blobs, a bearer token through CURLOPT_XOAUTH2_BEARER, never
 * through a file or a log. Request bodies that hold a token secret are
 * wiped after the call. Response bodies are bounded and never logged.
 *
 * Idempotent calls (GET, DELETE, the expiration PATCH) retry on transport
 * failures and 429/5xx with bounded exponential backoff; a create (POST)
 * never retries blindly, because the server may have applied it: only a
 * connection that was never made is tried again.
 */
#include "kube.h"
#include "clock.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define S_NS_TOKENS "kube-system"
#define S_SECRETS_PATH "/api/v1/namespaces/" S_NS_TOKENS "/secrets"
#define S_CLUSTER_INFO_PATH "/api/v1/namespaces/kube-public/configmaps/cluster-info"
#define S_TOKEN_PREFIX "bootstrap-token-"
#define S_CREATE_TRIES 5

struct kvc_kube {
    kvc_kubeconfig_t cfg;
    kvc_kube_opts_t opts;
    CURL *curl;
    kvc_kube_id_fn id_fn;
    void *id_arg;
    long last_status;
    char last_reason[64];
};

static pthread_once_t s_global_once = PTHREAD_ONCE_INIT;
static int s_global_ok;

/* Initialises libcurl and libsodium once per process. */
static void s_global_init(void)
{
    s_global_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK && sodium_init() >= 0;
}

/* Copies n bytes into a fresh buffer (plus a NUL); NULL src gives NULL. */
static int s_dup_blob(const void *src, size_t n, void **out)
{
    *out = NULL;
    if (!src)
        return KVC_OK;
    unsigned char *p = kvc_malloc(n + 1);
    if (!p)
        return KVC_ENOMEM;
    memcpy(p, src, n);
    p[n] = '\0';
    *out = p;
    return KVC_OK;
}

kvc_kube_t *kvc_kube_new(const kvc_kubeconfig_t *cfg, const kvc_kube_opts_t *opts, kvc_err_t *err)
{
    pthread_once(&s_global_once, s_global_init);
    if (!s_global_ok) {
        kvc_err_set(err, KVC_EIO, "kube: libcurl or libsodium failed to initialise");
        return NULL;
    }
    if (!cfg || strncmp(cfg->server, "https://", 8) != 0) {
        kvc_err_set(err, KVC_EINVAL, "kube: the server must be an https:// URL");
        return NULL;
    }
    kvc_kube_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "kube: out of memory");
        return NULL;
    }
    self->opts = (kvc_kube_opts_t){3000, 10000, 4, 100, 2000};
    if (opts) {
        if (opts->connect_timeout_ms > 0)
            self->opts.connect_timeout_ms = opts->connect_timeout_ms;
        if (opts->timeout_ms > 0)
            self->opts.timeout_ms = opts->timeout_ms;
        if (opts->max_attempts > 0)
            self->opts.max_attempts = opts->max_attempts > 10 ? 10 : opts->max_attempts;
        if (opts->backoff_ms > 0)
            self->opts.backoff_ms = opts->backoff_ms;
        if (opts->backoff_max_ms > 0)
            self->opts.backoff_max_ms = opts->backoff_max_ms;
    }
    kvc_strlcpy(self->cfg.server, cfg->server, sizeof self->cfg.server);
    self->cfg.ca_len = cfg->ca_len;
    self->cfg.cert_len = cfg->cert_len;
    self->cfg.key_len = cfg->key_len;
    self->cfg.token_len = cfg->token_len;
    if (s_dup_blob(cfg->ca, cfg->ca_len, (void **)&self->cfg.ca) ||
        s_dup_blob(cfg->cert, cfg->cert_len, (void **)&self->cfg.cert) ||
        s_dup_blob(cfg->key, cfg->key_len, (void **)&self->cfg.key) ||
        s_dup_blob(cfg->token, cfg->token_len, (void **)&self->cfg.token) ||
        !(self->curl = curl_easy_init())) {
        kvc_err_set(err, KVC_ENOMEM, "kube: out of memory");
        kvc_kube_destroy(&self);
        return NULL;
    }
    return self;
}

void kvc_kube_destroy(kvc_kube_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_kube_t *self = *self_p;
    if (self->curl)
        curl_easy_cleanup(self->curl);
    kvc_kubeconfig_free(&self->cfg);
    kvc_free(self);
    *self_p = NULL;
}

void kvc_kube_set_id_source(kvc_kube_t *self, kvc_kube_id_fn fn, void *arg)
{
    self->id_fn = fn;
    self->id_arg = arg;
}

long kvc_kube_last_http_status(const kvc_kube_t *self)
{
    return self->last_status;
}

const char *kvc_kube_last_reason(const kvc_kube_t *self)
{
    return self->last_reason;
}

/* --- requests ------------------------------------------------------------ */

/* The bounded sink of a response body. */
typedef struct {
    kvc_buf_t *buf;
    int overflow;
} s_sink_t;

/*
 * Appends to a response buffer like kvc_buf_append, but grows it by copying
 * and wiping instead of realloc: a response may carry a token secret (a
 * created Secret is echoed back, a list holds every token's data), and a
 * realloc would leave copies of it in freed memory.
 */
static int s_resp_append(kvc_buf_t *b, const char *data, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return KVC_ERANGE;
    size_t need = b->len + n + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need)
            cap *= 2;
        if (cap > b->max + 1)
            cap = b->max + 1;
        char *p = kvc_malloc(cap);
        if (!p)
            return KVC_ENOMEM;
        if (b->data) {
            memcpy(p, b->data, b->len);
            sodium_memzero(b->data, b->cap);
            kvc_free(b->data);
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return KVC_OK;
}

/* Wipes and frees a response buffer. */
static void s_resp_free(kvc_buf_t *b)
{
    if (b->data)
        sodium_memzero(b->data, b->cap);
    kvc_buf_free(b);
}

/* libcurl write callback: appends to the bounded buffer or stops the transfer. */
static size_t s_write(char *data, size_t size, size_t n, void *arg)
{
    s_sink_t *sink = arg;
    if (s_resp_append(sink->buf, data, size * n) != 0) {
        sink->overflow = 1;
        return 0;
    }
    return size * n;
}

/* Maps an API answer to a kvc code; *retry says whether trying again may help. */
static int s_map_status(long http, const char *reason, int *retry)
{
    *retry = 0;
    switch (http) {
    case 400:
    case 422:
        return KVC_EINVAL;
    case 401:
        return KVC_ECRYPTO;
    case 403:
        return KVC_EPERM;
    case 404:
        return KVC_ENOENT;
    case 409:
        return strcmp(reason, "AlreadyExists") == 0 ? KVC_EEXIST : KVC_KUBE_ECONFLICT;
    case 410:
        return KVC_KUBE_EGONE;
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
        *retry = 1;
        return KVC_EUNAVAIL;
    default:
        return KVC_EIO;
    }
}

/* What a 4xx/5xx status means in a message when the body says nothing. */
static const char *s_http_word(long http)
{
    switch (http) {
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "NotFound";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 429:
        return "TooManyRequests";
    default:
        return http >= 500 ? "ServerError" : "Error";
    }
}

/* Maps a libcurl failure; *retry for the ones a later attempt may not see. */
static int s_map_curl(CURLcode cc, int *retry)
{
    *retry = 0;
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        *retry = 1;
        return KVC_ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        *retry = 1;
        return KVC_EUNAVAIL;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return KVC_ECRYPTO;
    case CURLE_SSL_CONNECT_ERROR:
        /* Also what a server that refuses our certificate looks like. */
        *retry = 1;
        return KVC_EUNAVAIL;
    default:
        return KVC_EIO;
    }
}

/* One request with the retry policy; the body read goes to resp. */
typedef struct {
    const char *method;
    const char *path; /* from the server root, with any query */
    const char *content_type;
    const char *body;
    size_t body_len;
    int idempotent;
} s_req_t;

/* Sets the options one attempt needs; 0 or a libcurl error. */
static CURLcode s_setup(kvc_kube_t *self, const s_req_t *rq, const char *url,
                        struct curl_slist *hdrs, s_sink_t *sink, char *errbuf)
{
    CURL *c = self->curl;
    CURLcode cc = CURLE_OK;
#define S_SET(opt, val)                                                                            \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    curl_easy_reset(c);
    S_SET(CURLOPT_URL, url);
    S_SET(CURLOPT_PROTOCOLS_STR, "https");
    S_SET(CURLOPT_NOSIGNAL, 1L);
    S_SET(CURLOPT_CONNECTTIMEOUT_MS, self->opts.connect_timeout_ms);
    S_SET(CURLOPT_TIMEOUT_MS, self->opts.timeout_ms);
    S_SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)KVC_KUBE_RESPONSE_MAX);
    S_SET(CURLOPT_ERRORBUFFER, errbuf);
    S_SET(CURLOPT_WRITEFUNCTION, s_write);
    S_SET(CURLOPT_WRITEDATA, sink);
    S_SET(CURLOPT_HTTPHEADER, hdrs);
    S_SET(CURLOPT_CUSTOMREQUEST, rq->method);
    S_SET(CURLOPT_SSL_VERIFYPEER, 1L);
    S_SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (strcmp(rq->method, "GET") == 0)
        S_SET(CURLOPT_HTTPGET, 1L);
    if (rq->body) {
        S_SET(CURLOPT_POSTFIELDS, rq->body);
        S_SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
    }
    if (self->cfg.ca) {
        struct curl_blob b = {self->cfg.ca, self->cfg.ca_len, CURL_BLOB_COPY};
        S_SET(CURLOPT_CAINFO_BLOB, &b);
    }
    if (self->cfg.cert && self->cfg.key) {
        struct curl_blob cb = {self->cfg.cert, self->cfg.cert_len, CURL_BLOB_COPY};
        struct curl_blob kb = {self->cfg.key, self->cfg.key_len, CURL_BLOB_COPY};
        S_SET(CURLOPT_SSLCERT_BLOB, &cb);
        S_SET(CURLOPT_SSLCERTTYPE, "PEM");
        S_SET(CURLOPT_SSLKEY_BLOB, &kb);
        S_SET(CURLOPT_SSLKEYTYPE, "PEM");
    } else if (self->cfg.token) {
        S_SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        S_SET(CURLOPT_XOAUTH2_BEARER, self->cfg.token);
    }
#undef S_SET
    return cc;
}

/*
 * Runs a request; 0 for a 2xx answer (body in resp), else a negative code
 * with err "kube: METHOD PATH: ..." and self->last_status/last_reason set.
 */
static int s_request(kvc_kube_t *self, const s_req_t *rq, kvc_buf_t *resp, kvc_err_t *err)
{
    char url[KVC_KUBE_SERVER_MAX + 1024];
    if ((size_t)snprintf(url, sizeof url, "%s%s", self->cfg.server, rq->path) >= sizeof url)
        return kvc_err_set(err, KVC_ERANGE, "kube: request path too long");
    /* The path without its query, for messages: selectors are not secret,
     * but they are long. */
    int plen = (int)strcspn(rq->path, "?");

    struct curl_slist *hdrs = NULL, *h;
    char ct[96];
    h = curl_slist_append(hdrs, "Accept: application/json");
    if (h) {
        hdrs = h;
        h = curl_slist_append(hdrs, "Expect:");
    }
    if (h && rq->content_type) {
        hdrs = h;
        snprintf(ct, sizeof ct, "Content-Type: %s", rq->content_type);
        h = curl_slist_append(hdrs, ct);
    }
    if (!h) {
        curl_slist_free_all(hdrs);
        return kvc_err_set(err, KVC_ENOMEM, "kube: out of memory");
    }
    hdrs = h;

    int attempts = self->opts.max_attempts;
    long delay = self->opts.backoff_ms;
    int rc = KVC_EIO;
    for (int attempt = 1;; attempt++) {
        char errbuf[CURL_ERROR_SIZE] = "";
        s_sink_t sink = {resp, 0};
        if (resp->data)
            sodium_memzero(resp->data, resp->cap);
        kvc_buf_reset(resp);
        self->last_status = 0;
        self->last_reason[0] = '\0';
        int retry = 0;
        CURLcode cc = s_setup(self, rq, url, hdrs, &sink, errbuf);
        if (cc == CURLE_OK)
            cc = curl_easy_perform(self->curl);
        if (sink.overflow || cc == CURLE_FILESIZE_EXCEEDED) {
            rc = kvc_err_set(err, KVC_ERANGE, "kube: %s %.*s: response longer than %d bytes",
                             rq->method, plen, rq->path, KVC_KUBE_RESPONSE_MAX);
        } else if (cc != CURLE_OK) {
            rc = s_map_curl(cc, &retry);
            kvc_err_set(err, rc, "kube: %s %.*s: %s%s: %s", rq->method, plen, rq->path,
                        retry ? "API server unreachable (retryable)" : "request failed",
                        rc == KVC_ETIMEDOUT ? ", timed out" : "",
                        errbuf[0] ? errbuf : curl_easy_strerror(cc));
        } else {
            long http = 0;
            curl_easy_getinfo(self->curl, CURLINFO_RESPONSE_CODE, &http);
            self->last_status = http;
            if (http >= 200 && http < 300) {
                rc = KVC_OK;
            } else {
                kvc_kube_status_t st;
                if (kvc_kube_status_parse(resp->data ? resp->data : "", resp->len, &st) != 0) {
                    memset(&st, 0, sizeof st);
                    kvc_strlcpy(st.reason, s_http_word(http), sizeof st.reason);
                }
                kvc_strlcpy(self->last_reason, st.reason, sizeof self->last_reason);
                rc = s_map_status(http, st.reason, &retry);
                kvc_err_set(err, rc, "kube: %s %.*s: %ld %s%s%s", rq->method, plen, rq->path, http,
                            st.reason[0] ? st.reason : s_http_word(http), st.message[0] ? ": " : "",
                            st.message);
            }
        }
        /* A call that is not idempotent is tried again only when the
         * connection was never made: then the server cannot have seen it. */
        if (!rq->idempotent && cc != CURLE_COULDNT_CONNECT && cc != CURLE_COULDNT_RESOLVE_HOST)
            retry = 0;
        if (rc == KVC_OK || !retry || attempt >= attempts)
            break;
        /* Backoff between attempts of an idempotent call, bounded by
         * max_attempts and backoff_max_ms: not a wait for a test. */
        struct timespec ts = {delay / 1000, (delay % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        delay = delay * 2 > self->opts.backoff_max_ms ? self->opts.backoff_max_ms : delay * 2;
    }
    curl_slist_free_all(hdrs);
    if (rc == KVC_OK && err)
        memset(err, 0, sizeof *err); /* no message left from a failed attempt */
    /* Nothing of the call stays in the handle: no body pointer, no header list. */
    curl_easy_reset(self->curl);
    return rc;
}

/* --- bootstrap tokens ------------------------------------------------------ */

static const char s_alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";

/* Fills n characters of [a-z0-9] from libsodium's uniform generator. */
static void s_random_chars(char *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = s_alphabet[randombytes_uniform(sizeof s_alphabet - 1)];
}

/* Tells whether s is a label value we write: [a-z0-9.-]{1,63}, alnum at the ends. */
static int s_label_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > KVC_KUBE_LABEL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && ((c != '-' && c != '.') || i == 0 || i == n - 1))
            return 0;
    }
    return 1;
}

/* Tells whether groups is a comma list of system:bootstrappers:[a-z0-9:-]*. */
static int s_groups_ok(const char *g)
{
    static const char pre[] = "system:bootstrappers:";
    size_t n = strlen(g);
    if (n == 0 || n > 1024)
        return 0;
    const char *p = g;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (len <= sizeof pre - 1 || strncmp(p, pre, sizeof pre - 1) != 0)
            return 0;
        for (size_t i = 0; i < len; i++) {
            char c = p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ':' || c == '-'))
                return 0;
        }
        if (p[len - 1] == ':' || p[len - 1] == '-')
            return 0;
        if (p[len] == '\0')
            return 1;
        p += len + 1;
    }
}

/* Tells whether id is a token id: [a-z0-9]{6}. */
static int s_id_ok(const char *id)
{
    if (!id || strlen(id) != 6)
        return 0;
    for (int i = 0; i < 6; i++)
        if (!strchr(s_alphabet, id[i]) || id[i] == '\0')
            return 0;
    return 1;
}

/* Writes now + ttl as RFC 3339 UTC ("2026-12-07T12:00:00Z"); returns the time. */
static int64_t s_expiration(int ttl_s, char out[32])
{
    time_t t = (time_t)(kvc_clock_wall_s() + ttl_s);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return (int64_t)t;
}

void kvc_kube_token_destroy(kvc_kube_token_t **tok_p)
{
    if (!tok_p || !*tok_p)
        return;
    sodium_memzero(*tok_p, sizeof **tok_p);
    kvc_free(*tok_p);
    *tok_p = NULL;
}

int kvc_kube_bootstrap_token_create(kvc_kube_t *self, const kvc_kube_token_opts_t *opts,
                                    kvc_kube_token_t **tok_p, kvc_err_t *err)
{
    *tok_p = NULL;
    kvc_kube_token_opts_t o = {0};
    if (opts)
        o = *opts;
    if (o.ttl_s == 0)
        o.ttl_s = KVC_KUBE_TOKEN_TTL_DEFAULT;
    if (o.ttl_s < 1 || o.ttl_s > KVC_KUBE_TOKEN_TTL_MAX)
        return kvc_err_set(err, KVC_EINVAL, "kube: token ttl %d s: must be 1..%d", o.ttl_s,
                           KVC_KUBE_TOKEN_TTL_MAX);
    if (!o.groups)
        o.groups = KVC_KUBE_DEFAULT_GROUPS;
    if (!s_groups_ok(o.groups))
        return kvc_err_set(err, KVC_EINVAL,
                           "kube: token groups: must be system:bootstrappers:[a-z0-9:-]+, "
                           "comma separated");
    if ((o.site && !s_label_ok(o.site)) || (o.node && !s_label_ok(o.node)))
        return kvc_err_set(err, KVC_EINVAL, "kube: token %s label: must match [a-z0-9.-]{1,63}",
                           o.site && !s_label_ok(o.site) ? "site" : "node");

    kvc_kube_token_t *tok = kvc_calloc(1, sizeof *tok);
    if (!tok)
        return kvc_err_set(err, KVC_ENOMEM, "kube: out of memory");
    /* A fixed buffer, not a growing one: a realloc would leave copies of
     * the secret behind in freed memory. */
    char body[4096];
    kvc_buf_t resp;
    kvc_buf_init(&resp, KVC_KUBE_RESPONSE_MAX);
    int rc = KVC_EEXIST;
    for (int attempt = 0; attempt < S_CREATE_TRIES; attempt++) {
        if (!self->id_fn || self->id_fn(tok->id, self->id_arg) != 0 || !s_id_ok(tok->id))
            s_random_chars(tok->id, 6);
        tok->id[6] = '\0';
        s_random_chars(tok->secret, 16);
        tok->secret[16] = '\0';
        snprintf(tok->name, sizeof tok->name, S_TOKEN_PREFIX "%s", tok->id);
        char exp[32], term[24];
        tok->expires = s_expiration(o.ttl_s, exp);
        snprintf(term, sizeof term, "%llu", (unsigned long long)o.term);
        int n = snprintf(
            body, sizeof body,
            "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"%s\","
            "\"namespace\":\"" S_NS_TOKENS "\",\"labels\":{\"app.kubernetes.io/managed-by\":"
            "\"kvc\",\"kvc.io/term\":\"%s\"%s%s%s%s%s%s}},"
            "\"type\":\"bootstrap.kubernetes.io/token\",\"stringData\":{"
            "\"description\":\"kvc join token\",\"token-id\":\"%s\",\"token-secret\":\"%s\","
            "\"expiration\":\"%s\",\"usage-bootstrap-authentication\":\"true\","
            "\"usage-bootstrap-signing\":\"true\",\"auth-extra-groups\":\"%s\"}}",
            tok->name, term, o.site ? ",\"kvc.io/site\":\"" : "", o.site ? o.site : "",
            o.site ? "\"" : "", o.node ? ",\"kvc.io/node\":\"" : "", o.node ? o.node : "",
            o.node ? "\"" : "", tok->id, tok->secret, exp, o.groups);
        if (n < 0 || (size_t)n >= sizeof body) {
            rc = kvc_err_set(err, KVC_ERANGE, "kube: token request too long");
            break;
        }
        s_req_t rq = {"POST", S_SECRETS_PATH, "application/json", body, (size_t)n, 0};
        rc = s_request(self, &rq, &resp, err);
        if (rc != KVC_EEXIST)
            break;
        /* The random id is taken (by a live token or a leftover): draw again. */
    }
    sodium_memzero(body, sizeof body);
    s_resp_free(&resp);
    if (rc == KVC_EEXIST)
        kvc_err_prefix(err, "kube: %d token ids in a row were taken: ", S_CREATE_TRIES);
    if (rc != KVC_OK) {
        kvc_kube_token_destroy(&tok);
        return rc;
    }
    *tok_p = tok;
    return KVC_OK;
}

int kvc_kube_bootstrap_token_extend(kvc_kube_t *self, const char *id, int ttl_s, kvc_err_t *err)
{
    if (!s_id_ok(id))
        return kvc_err_set(err, KVC_EINVAL, "kube: token id must match [a-z0-9]{6}");
    if (ttl_s < 1 || ttl_s > KVC_KUBE_TOKEN_TTL_MAX)
        return kvc_err_set(err, KVC_EINVAL, "kube: token ttl %d s: must be 1..%d", ttl_s,
                           KVC_KUBE_TOKEN_TTL_MAX);
    char exp[32], exp64[64], path[128], body[160];
    s_expiration(ttl_s, exp);
    sodium_bin2base64(exp64, sizeof exp64, (const unsigned char *)exp, strlen(exp),
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(path, sizeof path, S_SECRETS_PATH "/" S_TOKEN_PREFIX "%s", id);
    int n = snprintf(body, sizeof body, "{\"data\":{\"expiration\":\"%s\"}}", exp64);
    kvc_buf_t resp;
    kvc_buf_init(&resp, KVC_KUBE_RESPONSE_MAX);
    /* Setting an absolute time is idempotent: a retry writes the same bytes. */
    s_req_t rq = {"PATCH", path, "application/merge-patch+json", body, (size_t)n, 1};
    int rc = s_request(self, &rq, &resp, err);
    s_resp_free(&resp);
    return rc;
}

int kvc_kube_bootstrap_token_delete(kvc_kube_t *self, const char *id, kvc_err_t *err)
{
    if (!s_id_ok(id))
        return kvc_err_set(err, KVC_EINVAL, "kube: token id must match [a-z0-9]{6}");
    char path[128];
    snprintf(path, sizeof path, S_SECRETS_PATH "/" S_TOKEN_PREFIX "%s", id);
    kvc_buf_t resp;
    kvc_buf_init(&resp, KVC_KUBE_RESPONSE_MAX);
    s_req_t rq = {"DELETE", path, NULL, NULL, 0, 1};
    int rc = s_request(self, &rq, &resp, err);
    s_resp_free(&resp);
    if (rc == KVC_ENOENT) {
        /* Gone already (swept, or an earlier attempt of ours went through). */
        if (err)
            memset(err, 0, sizeof *err);
        rc = KVC_OK;
    }
    return rc;
}

int kvc_kube_bootstrap_token_list_orphans(kvc_kube_t *self, const char *selector,
                                          kvc_kube_name_fn fn, void *arg, kvc_err_t *err)
{
    if (!selector || strlen(selector) > 1024)
        return kvc_err_set(err, KVC_EINVAL, "kube: label selector missing or too long");
    char *q = curl_easy_escape(self->curl, selector, 0);
    if (!q)
        return kvc_err_set(err, KVC_ENOMEM, "kube: out of memory");
    char path[4096];
    snprintf(path, sizeof path, S_SECRETS_PATH "?labelSelector=%s", q);
    curl_free(q);
    kvc_buf_t resp;
    kvc_buf_init(&resp, KVC_KUBE_RESPONSE_MAX);
    s_req_t rq = {"GET", path, NULL, NULL, 0, 1};
    int rc = s_request(self, &rq, &resp, err);
    if (rc == KVC_OK) {
        rc = kvc_kube_list_names(resp.data ? resp.data : "", resp.len, fn, arg);
        if (rc == KVC_EPARSE)
            kvc_err_set(err, rc, "kube: GET " S_SECRETS_PATH ": not a Secret list");
    }
    s_resp_free(&resp);
    return rc;
}

int kvc_kube_cluster_info_has_jws(kvc_kube_t *self, const char *id, char **jws_p,
                                  char **kubeconfig_p, kvc_err_t *err)
{
    if (jws_p)
        *jws_p = NULL;
    if (kubeconfig_p)
        *kubeconfig_p = NULL;
    if (!s_id_ok(id))
        return kvc_err_set(err, KVC_EINVAL, "kube: token id must match [a-z0-9]{6}");
    char *resp = NULL;
    size_t resp_len = 0;
    int rc = kvc_kube_get(self, S_CLUSTER_INFO_PATH, &resp, &resp_len, err);
    if (rc <= 0)
        return rc; /* 0: no cluster-info yet, so no signature either */
    char key[40];
    snprintf(key, sizeof key, "jws-kubeconfig-%s", id);
    const char *const jws_path[] = {"data", key};
    static const char *const kc_path[] = {"data", "kubeconfig"};
    char *jws = NULL, *kc = NULL;
    const char *body = resp ? resp : "";
    rc = kvc_kube_json_string(body, resp_len, jws_path, 2, &jws, NULL);
    if (rc == 1 && kubeconfig_p) {
        int r2 = kvc_kube_json_string(body, resp_len, kc_path, 2, &kc, NULL);
        if (r2 != 1) {
            kvc_free(jws);
            jws = NULL;
            rc = r2 < 0 ? r2 : KVC_EPARSE;
        }
    }
    kvc_free(resp);
    if (rc < 0)
        return kvc_err_set(err, rc, "kube: GET " S_CLUSTER_INFO_PATH ": %s",
                           rc == KVC_ENOMEM ? "out of memory"
                                            : "not a ConfigMap with a kubeconfig");
    if (rc == 1) {
        if (jws_p)
            *jws_p = jws;
        else
            kvc_free(jws);
        if (kubeconfig_p)
            *kubeconfig_p = kc;
    }
    return rc;
}

int kvc_kube_wait_jws(kvc_kube_t *self, const char *id, int64_t deadline_ms, kvc_err_t *err)
{
    for (;;) {
        int rc = kvc_kube_cluster_info_has_jws(self, id, NULL, NULL, err);
        if (rc == 1)
            return KVC_OK;
        if (rc < 0)
            return rc;
        if ((int64_t)kvc_clock_mono_ms() >= deadline_ms)
            return kvc_err_set(err, KVC_ETIMEDOUT,
                               "kube: cluster-info has no signature for token %s in time", id);
        /* Polling the API server, bounded by the caller's deadline. */
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int kvc_kube_node_exists(kvc_kube_t *self, const char *name, kvc_err_t *err)
{
    size_t n = name ? strlen(name) : 0;
    int ok = n > 0 && n <= 253;
    for (size_t i = 0; ok && i < n; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
             name[i] == '-' || name[i] == '.';
    if (!ok)
        return kvc_err_set(err, KVC_EINVAL, "kube: node name must match [a-z0-9.-]{1,253}");
    char path[300];
    snprintf(path, sizeof path, "/api/v1/nodes/%s", name);
    kvc_buf_t resp;
    kvc_buf_init(&resp, KVC_KUBE_RESPONSE_MAX);
    s_req_t rq = {"GET", path, NULL, NULL, 0, 1};
    int rc = s_request(self, &rq, &resp, err);
    s_resp_free(&resp);
    if (rc == KVC_ENOENT) {
        if (err)
            memset(err, 0, sizeof *err);
        return 0;
    }
    return rc == KVC_OK ? 1 : rc;
}

/* --- any object (the model reconciler) ---------------------------------------- */

/* Tells whether path is an API path these calls take (see kube.h). */
static int s_path_ok(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    if (n < 2 || n > KVC_KUBE_PATH_MAX || path[0] != '/' || strstr(path, "//") ||
        strstr(path, "/../") || strstr(path, "/./"))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = path[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '.' || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Hands the response body to the caller, or frees it when they want none. */
static int s_give_body(kvc_buf_t *resp, char **body_p, size_t *len_p, kvc_err_t *err)
{
    if (!body_p) {
        s_resp_free(resp);
        return KVC_OK;
    }
    size_t n = 0;
    char *p = kvc_buf_detach(resp, &n);
    if (!p)
        return kvc_err_set(err, KVC_ENOMEM, "kube: out of memory");
    *body_p = p;
    if (len_p)
        *len_p = n;
    return KVC_OK;
}

int kvc_kube_get(kvc_kube_t *self, const char *path, char **body_p, size_t *len_p, kvc_err_t *err)
{
    *body_p = NULL;
    if (len_p)
        *len_p = 0;
    if (!s_path_ok(path))
        return kvc_err_set(err, KVC_EINVAL, "kube: GET: not an API path");
    kvc_buf_t resp;
    kvc_buf_init(&resp, KVC_KUBE_RESPONSE_MAX);
    s_req_t rq = {"GET", path, NULL, NULL, 0, 1};
    int rc = s_request(self, &rq, &resp, err);
    if (rc == KVC_ENOENT) {
        s_resp_free(&resp);
        if (err)
            memset(err, 0, sizeof *err);
        return 0;
    }
    if (rc != KVC_OK) {
        s_resp_free(&resp);
        return rc;
    }
    rc = s_give_body(&resp, body_p, len_p, err);
    return rc == KVC_OK ? 1 : rc;
}

int kvc_kube_apply(kvc_kube_t *self, const char *path, const char *body, size_t len, char **resp_p,
                   size_t *resp_len, kvc_err_t *err)
{
    if (resp_p)
        *resp_p = NULL;
    if (resp_len)
        *resp_len = 0;
    if (!s_path_ok(path) || !body)
        return kvc_err_set(err, KVC_EINVAL, "kube: apply: not an API path, or no body");
    char full[KVC_KUBE_PATH_MAX + 64];
    snprintf(full, sizeof full, "%s?fieldManager=" KVC_KUBE_FIELD_MANAGER "&force=true", path);
    kvc_buf_t resp;
    kvc_buf_init(&resp, KVC_KUBE_RESPONSE_MAX);
    /* An apply of the same object is idempotent: a retry sends the same intent. */
    s_req_t rq = {"PATCH", full, "application/apply-patch+yaml", body, len, 1};
    int rc = s_request(self, &rq, &resp, err);
    if (rc != KVC_OK) {
        s_resp_free(&resp);
        return rc;
    }
    return s_give_body(&resp, resp_p, resp_len, err);
}

int kvc_kube_create(kvc_kube_t *self, const char *collection, const char *body, size_t len,
                    kvc_err_t *err)
{
    if (!s_path_ok(collection) || !body)
        return kvc_err_set(err, KVC_EINVAL, "kube: create: not an API path, or no body");
    kvc_buf_t resp;
    kvc_buf_init(&resp, KVC_KUBE_RESPONSE_MAX);
    s_req_t rq = {"POST", collection, "application/json", body, len, 0};
    int rc = s_request(self, &rq, &resp, err);
    s_resp_free(&resp);
    return rc;
}

int kvc_kube_delete(kvc_kube_t *self, const char *path, kvc_err_t *err)
{
    if (!s_path_ok(path))
        return kvc_err_set(err, KVC_EINVAL, "kube: DELETE: not an API path");
    kvc_buf_t resp;
    kvc_buf_init(&resp, KVC_KUBE_RESPONSE_MAX);
    s_req_t rq = {"DELETE", path, NULL, NULL, 0, 1};
    int rc = s_request(self, &rq, &resp, err);
    s_resp_free(&resp);
    if (rc == KVC_ENOENT) {
        if (err)
            memset(err, 0, sizeof *err);
        rc = KVC_OK; /* gone already: what we wanted */
    }
    return rc;
}

int kvc_kube_list(kvc_kube_t *self, const char *collection, const char *selector,
                  kvc_kube_name_fn fn, void *arg, kvc_err_t *err)
{
    if (!s_path_ok(collection))
        return kvc_err_set(err, KVC_EINVAL, "kube: list: not an API path");
    if (selector && strlen(selector) > 1024)
        return kvc_err_set(err, KVC_EINVAL, "kube: label selector too long");
    char path[KVC_KUBE_PATH_MAX + 4096];
    if (selector && selector[0]) {
        char *q = curl_easy_escape(self->curl, selector, 0);
        if (!q)
            return kvc_err_set(err, KVC_ENOMEM, "kube: out of memory");
        snprintf(path, sizeof path, "%s?labelSelector=%s", collection, q);
        curl_free(q);
    } else {
        snprintf(path, sizeof path, "%s", collection);
    }
    kvc_buf_t resp;
    kvc_buf_init(&resp, KVC_KUBE_RESPONSE_MAX);
    s_req_t rq = {"GET", path, NULL, NULL, 0, 1};
    int rc = s_request(self, &rq, &resp, err);
    if (rc == KVC_OK) {
        rc = kvc_kube_list_names(resp.data ? resp.data : "", resp.len, fn, arg);
        if (rc == KVC_EPARSE)
            kvc_err_set(err, rc, "kube: GET %s: not a list", collection);
    }
    s_resp_free(&resp);
    return rc;
}
