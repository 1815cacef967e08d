/*
 * Interop tests of peer/kube.c (the join-token broker's Kubernetes client)
 * against tests/kube/kube_api_standin.py, a Kubernetes API server stand-in
 * (a test double with the API's documented semantics, plus what the
 * tokencleaner and bootstrapsigner controllers do).
 *
 * Setup makes a throwaway PKI with the openssl CLI (kube_pki.sh) in a
 * mktemp folder, starts the stand-in on port 0 and writes kubeconfigs for
 * it. What our client wrote is read back with plain libcurl requests that
 * use the PEM files directly, so a bug in the client cannot hide in its own
 * reader. Expected pins are computed by the openssl CLI in the test, never
 * written down. Nothing sleeps to wait: every wait polls with a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "clock.h"
#include "json_cursor.h"
#include "kube.h"
#include "kube_standin_proc.h"
#include "model_server_proc.h"

typedef struct {
    char dir[64];
    kvc_standin_t standin;
    kvc_kubeconfig_t cfg;
    kvc_kube_t *kube;
    char base[64]; /* https://127.0.0.1:PORT */
} s_env_t;

static s_env_t g;

/* Runs a shell command line; its exit status. */
static int s_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int s_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Reads the first line printed by a shell command into out. */
static void s_sh_line(char *out, size_t size, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    out[0] = '\0';
    if (!fgets(out, (int)size, p))
        out[0] = '\0';
    pclose(p);
    out[strcspn(out, "\r\n")] = '\0';
}

/* --- raw requests, independent of the client under test ------------------ */

/* libcurl write callback of the raw requests. */
static size_t s_raw_write(char *d, size_t s, size_t n, void *arg)
{
    return kvc_buf_append(arg, d, s * n) == 0 ? s * n : 0;
}

/* One request with the PEM files of the test PKI; returns the HTTP status. */
static long s_raw(const char *method, const char *path, const char *ctype, const char *body,
                  kvc_buf_t *resp)
{
    char url[512], ca[128], cert[128], key[128], hdr[128];
    snprintf(url, sizeof url, "%s%s", g.base, path);
    snprintf(ca, sizeof ca, "%s/ca.pem", g.dir);
    snprintf(cert, sizeof cert, "%s/client.pem", g.dir);
    snprintf(key, sizeof key, "%s/client.key", g.dir);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = NULL;
    if (ctype) {
        snprintf(hdr, sizeof hdr, "Content-Type: %s", ctype);
        h = curl_slist_append(h, hdr);
    }
    kvc_buf_reset(resp);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, key);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_raw_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode cc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    assert_int_equal(cc, CURLE_OK);
    return code;
}

/* The string at a path of the JSON body, or NULL (caller frees). */
static char *s_str(const kvc_buf_t *b, const char *k1, const char *k2, const char *k3)
{
    const char *path[3] = {k1, k2, k3};
    size_t depth = k3 ? 3 : k2 ? 2 : 1;
    char *out = NULL;
    if (kvc_kube_json_string(b->data, b->len, path, depth, &out, NULL) != 1)
        return NULL;
    return out;
}

/* A Secret's data[key], base64-decoded (caller frees), or NULL. */
static char *s_secret_data(const kvc_buf_t *b, const char *key)
{
    char *v = s_str(b, "data", key, NULL);
    if (!v)
        return NULL;
    size_t n = strlen(v), bin = 0;
    char *out = kvc_calloc(1, n + 1);
    assert_non_null(out);
    assert_int_equal(sodium_base642bin((unsigned char *)out, n, v, n, NULL, &bin, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    kvc_free(v);
    return out;
}

/* Tells whether s is exactly n characters of [a-z0-9]. */
static int s_is_token_part(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

/* Parses RFC 3339 "YYYY-MM-DDTHH:MM:SSZ" into Unix seconds; -1 if not that. */
static int64_t s_rfc3339(const char *s)
{
    struct tm tm = {0};
    char z = 0, extra = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &z, &extra) != 7 ||
        z != 'Z' || strlen(s) != 20)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* GETs kube-system/secrets/NAME; the HTTP status. */
static long s_get_secret(const char *name, kvc_buf_t *b)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/namespaces/kube-system/secrets/%s", name);
    return s_raw("GET", path, NULL, NULL, b);
}

/* --- setup ------------------------------------------------------------------ */

/* Makes the PKI, starts the stand-in, loads the kubeconfig, makes the client. */
static int s_setup(void **state)
{
    memset(&g, 0, sizeof g);
    g.standin.in_fd = -1;
    kvc_strlcpy(g.dir, "/tmp/kvc-kube-XXXXXX", sizeof g.dir);
    if (!mkdtemp(g.dir))
        return -1;
    if (s_sh(KVC_KUBE_DIR "/kube_pki.sh pki %s", g.dir) != 0)
        return -1;
    static const char *const extra[] = {"--enable-bootstrap-token-auth", NULL};
    if (kvc_standin_start(&g.standin, KVC_KUBE_DIR "/kube_api_standin.py", KVC_PYTHON, g.dir,
                          extra) != 0)
        return -1;
    snprintf(g.base, sizeof g.base, "https://127.0.0.1:%d", g.standin.port);
    if (s_sh(KVC_KUBE_DIR "/kube_pki.sh kubeconfig %s %d", g.dir, g.standin.port) != 0)
        return -1;
    char path[128];
    snprintf(path, sizeof path, "%s/kubeconfig", g.dir);
    kvc_err_t err = {0};
    if (kvc_kubeconfig_load(path, &g.cfg, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    g.kube = kvc_kube_new(&g.cfg, NULL, &err);
    return g.kube ? 0 : -1;
}

/* Frees the client, stops the stand-in and removes the folder with its keys. */
static int s_teardown(void **state)
{
    kvc_kube_destroy(&g.kube);
    kvc_kubeconfig_free(&g.cfg);
    /* The stand-in must go when its stdin closes, cleanly. */
    int rc = kvc_standin_stop(&g.standin);
    if (rc != 0)
        fprintf(stderr, "teardown: the stand-in did not exit 0 when its stdin closed\n");
    if (g.dir[0] && strncmp(g.dir, "/tmp/kvc-kube-", 14) == 0)
        s_sh("rm -rf %s", g.dir);
    return rc;
}

/* --- kubeconfig ----------------------------------------------------------- */

/* Both the embedded (-data) and the file forms load the same material. */
static void test_kubeconfig_forms(void **state)
{
    char path[128];
    snprintf(path, sizeof path, "%s/kubeconfig-files", g.dir);
    kvc_kubeconfig_t f;
    kvc_err_t err = {0};
    assert_int_equal(kvc_kubeconfig_load(path, &f, &err), 0);
    assert_string_equal(f.server, g.base); /* trailing '/' gone */
    assert_string_equal(g.cfg.server, g.base);
    assert_int_equal(f.ca_len, g.cfg.ca_len);
    assert_memory_equal(f.ca, g.cfg.ca, f.ca_len);
    assert_int_equal(f.cert_len, g.cfg.cert_len);
    assert_memory_equal(f.cert, g.cfg.cert, f.cert_len);
    assert_int_equal(f.key_len, g.cfg.key_len);
    assert_memory_equal(f.key, g.cfg.key, f.key_len);
    assert_null(f.token);
    assert_non_null(strstr((const char *)f.key, "PRIVATE KEY"));
    kvc_kubeconfig_free(&f);
    assert_null(f.key);
    /* A client from the file form works as well. */
    kvc_kubeconfig_t f2;
    assert_int_equal(kvc_kubeconfig_load(path, &f2, &err), 0);
    kvc_kube_t *k = kvc_kube_new(&f2, NULL, &err);
    kvc_kubeconfig_free(&f2);
    assert_non_null(k);
    assert_int_equal(kvc_kube_node_exists(k, "no-such-node", &err), 0);
    kvc_kube_destroy(&k);
    assert_null(k);
}

#define KC_HEAD                                                                                    \
    "apiVersion: v1\nkind: Config\ncurrent-context: c\n"                                           \
    "contexts:\n- name: c\n  context: {cluster: k, user: u}\n"
#define KC_CLUSTER "clusters:\n- name: k\n  cluster: {server: 'https://127.0.0.1:1'}\n"

/* Each broken kubeconfig fails with its code and a message naming the field. */
static void test_kubeconfig_errors(void **state)
{
    static const struct {
        const char *text;
        int code;
        const char *msg;
    } cases[] = {
        {KC_HEAD KC_CLUSTER "users:\n- name: u\n  user: {client-certificate-data: QUJD, "
                            "client-key-data: 'not*base64!'}\n",
         KVC_EPARSE, "kubeconfig: users[0].user.client-key-data: not base64"},
        {KC_HEAD KC_CLUSTER "users:\n- name: other\n  user: {token: x}\n- name: u\n"
                            "  user: {client-certificate-data: QUJD, client-key-data: '%%%'}\n",
         KVC_EPARSE, "kubeconfig: users[1].user.client-key-data: not base64"},
        {"apiVersion: v1\nclusters: []\n", KVC_ENOENT, "kubeconfig: current-context: missing"},
        {KC_HEAD KC_CLUSTER "users:\n- name: someone-else\n  user: {token: abc}\n", KVC_ENOENT,
         "kubeconfig: users: no entry named by the current context"},
        {KC_HEAD "clusters:\n- name: k\n  cluster: {server: 'http://127.0.0.1:1'}\n"
                 "users:\n- name: u\n  user: {token: abc}\n",
         KVC_EPARSE, "kubeconfig: clusters[0].cluster.server: must be an https:// URL"},
        {KC_HEAD KC_CLUSTER "users:\n- name: u\n  user: {token: \"a\\r\\nX-Evil: 1\"}\n",
         KVC_EPARSE, "kubeconfig: users[0].user.token: holds a byte a header cannot carry"},
        {KC_HEAD KC_CLUSTER "users:\n- name: u\n  user: {client-certificate-data: QUJD}\n",
         KVC_EINVAL, "client-certificate and client-key go together"},
        {KC_HEAD KC_CLUSTER "users:\n- name: u\n  user: {}\n", KVC_ENOENT,
         "kubeconfig: users[0].user: neither a client certificate nor a token"},
        {KC_HEAD KC_CLUSTER "users:\n- name: u\n  user: {token: abc, client-certificate: c.pem, "
                            "client-key: k.pem}\n",
         KVC_EPERM, "kubeconfig: users[0].user.client-certificate: file references not allowed"},
        {KC_HEAD KC_CLUSTER "users: {u: 1}\n", KVC_EPARSE, "kubeconfig: users: must be a list"},
        {"a: [1, 2\n", KVC_EPARSE, "kubeconfig:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kvc_kubeconfig_t cfg;
        kvc_err_t err = {0};
        int rc = kvc_kubeconfig_parse(cases[i].text, strlen(cases[i].text), NULL, &cfg, &err);
        if (rc != cases[i].code || !strstr(err.msg, cases[i].msg))
            fail_msg("case %zu: rc %d (want %d), message \"%s\" (want \"%s\")", i, rc,
                     cases[i].code, err.msg, cases[i].msg);
        assert_null(cfg.cert);
        assert_null(cfg.token);
    }
    /* A blob file past the bound, and a missing one, named by field. */
    char text[1024], big[256];
    snprintf(big, sizeof big, "%s/big.pem", g.dir);
    assert_int_equal(s_sh("head -c 70000 /dev/zero > %s", big), 0);
    snprintf(text, sizeof text,
             KC_HEAD KC_CLUSTER "users:\n- name: u\n  user: {client-certificate: big.pem, "
                                "client-key: missing.key}\n");
    kvc_kubeconfig_t cfg;
    kvc_err_t err = {0};
    assert_int_equal(kvc_kubeconfig_parse(text, strlen(text), g.dir, &cfg, &err), KVC_ERANGE);
    assert_non_null(strstr(err.msg, "users[0].user.client-certificate: file longer than 65536"));
    snprintf(text, sizeof text,
             KC_HEAD KC_CLUSTER "users:\n- name: u\n  user: {client-certificate: client.pem, "
                                "client-key: missing.key}\n");
    assert_int_equal(kvc_kubeconfig_parse(text, strlen(text), g.dir, &cfg, &err), KVC_ENOENT);
    assert_non_null(strstr(err.msg, "users[0].user.client-key: cannot read"));
    /* The file itself missing. */
    assert_int_equal(kvc_kubeconfig_load("/nonexistent/kubeconfig", &cfg, &err), KVC_ENOENT);
}

/* --- tokens ------------------------------------------------------------------ */

/* A token as the broker mints it: names, type, usages, groups, labels, expiry. */
static void test_token_create(void **state)
{
    kvc_kube_token_opts_t o = {.site = "edge-a", .term = 7, .node = "node-1.edge"};
    kvc_kube_token_t *tok = NULL;
    kvc_err_t err = {0};
    int64_t before = kvc_clock_wall_s();
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, &o, &tok, &err), 0);
    int64_t after = kvc_clock_wall_s();
    assert_non_null(tok);
    assert_true(s_is_token_part(tok->id, 6));
    assert_true(s_is_token_part(tok->secret, 16));
    char name[40];
    snprintf(name, sizeof name, "bootstrap-token-%s", tok->id);
    assert_string_equal(tok->name, name);

    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    assert_int_equal(s_get_secret(tok->name, &b), 200);
    char *s;
    assert_non_null(s = s_str(&b, "type", NULL, NULL));
    assert_string_equal(s, "bootstrap.kubernetes.io/token");
    kvc_free(s);
    assert_non_null(s = s_str(&b, "metadata", "namespace", NULL));
    assert_string_equal(s, "kube-system");
    kvc_free(s);
    static const struct {
        const char *k, *v;
    } labels[] = {{"app.kubernetes.io/managed-by", "kvc"},
                  {"kvc.io/site", "edge-a"},
                  {"kvc.io/term", "7"},
                  {"kvc.io/node", "node-1.edge"}};
    for (size_t i = 0; i < 4; i++) {
        s = s_str(&b, "metadata", "labels", labels[i].k);
        assert_non_null(s);
        assert_string_equal(s, labels[i].v);
        kvc_free(s);
    }
    struct {
        const char *k, *v;
    } data[] = {{"token-id", tok->id},
                {"token-secret", tok->secret},
                {"usage-bootstrap-authentication", "true"},
                {"usage-bootstrap-signing", "true"},
                {"auth-extra-groups", "system:bootstrappers:kubeadm:default-node-token"}};
    for (size_t i = 0; i < 5; i++) {
        s = s_secret_data(&b, data[i].k);
        assert_non_null(s);
        assert_string_equal(s, data[i].v);
        kvc_free(s);
    }
    /* Default TTL 50 s, under a minute from now. */
    s = s_secret_data(&b, "expiration");
    assert_non_null(s);
    int64_t exp = s_rfc3339(s);
    kvc_free(s);
    assert_int_equal(exp, tok->expires);
    assert_true(exp >= before + 50 && exp <= after + 50);
    assert_true(exp - kvc_clock_wall_s() < 60);
    /* The server's own metadata. */
    assert_non_null(s = s_str(&b, "metadata", "uid", NULL));
    kvc_free(s);
    assert_non_null(s = s_str(&b, "metadata", "resourceVersion", NULL));
    kvc_free(s);

    /* An explicit TTL and groups; out-of-range TTLs and bad labels are refused. */
    kvc_kube_token_t *t2 = NULL;
    kvc_kube_token_opts_t o2 = {.ttl_s = 59, .groups = "system:bootstrappers:kvc:edge-a"};
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, &o2, &t2, &err), 0);
    assert_int_equal(s_get_secret(t2->name, &b), 200);
    s = s_secret_data(&b, "auth-extra-groups");
    assert_string_equal(s, "system:bootstrappers:kvc:edge-a");
    kvc_free(s);
    s = s_secret_data(&b, "expiration");
    assert_true(s_rfc3339(s) - kvc_clock_wall_s() <= 59);
    kvc_free(s);
    assert_int_equal(kvc_kube_bootstrap_token_delete(g.kube, t2->id, &err), 0);
    kvc_kube_token_destroy(&t2);
    assert_null(t2);
    kvc_kube_token_opts_t bad[] = {{.ttl_s = 60},
                                   {.ttl_s = -1},
                                   {.groups = "system:masters"},
                                   {.site = "Edge_A"},
                                   {.node = "x\"y"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, &bad[i], &t2, &err), KVC_EINVAL);
        assert_null(t2);
    }

    assert_int_equal(kvc_kube_bootstrap_token_delete(g.kube, tok->id, &err), 0);
    kvc_buf_free(&b);
    kvc_kube_token_destroy(&tok);
}

/* Hands out the ids of a list, then falls back to random ones. */
typedef struct {
    const char *ids[8];
    int next, calls;
} s_ids_t;

/* kvc_kube_id_fn over an s_ids_t. */
static int s_next_id(char id[6], void *arg)
{
    s_ids_t *s = arg;
    s->calls++;
    if (!s->ids[s->next])
        return -1;
    memcpy(id, s->ids[s->next++], 6);
    return 0;
}

/* A taken id (a real AlreadyExists from the server) makes the client draw again. */
static void test_token_collision(void **state)
{
    kvc_err_t err = {0};
    kvc_kube_token_t *t1 = NULL, *t2 = NULL;
    s_ids_t ids = {{"aaaaaa", "aaaaaa", "cccccc", NULL}, 0, 0};
    kvc_kube_set_id_source(g.kube, s_next_id, &ids);
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, NULL, &t1, &err), 0);
    assert_string_equal(t1->id, "aaaaaa");
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, NULL, &t2, &err), 0);
    assert_string_equal(t2->id, "cccccc");
    assert_int_equal(ids.calls, 3); /* aaaaaa, aaaaaa (409 AlreadyExists), cccccc */
    assert_string_not_equal(t1->secret, t2->secret);

    /* Always the same taken id: bounded tries, then KVC_EEXIST. */
    s_ids_t stuck = {{"aaaaaa", "aaaaaa", "aaaaaa", "aaaaaa", "aaaaaa", "aaaaaa", NULL}, 0, 0};
    kvc_kube_token_t *t3 = NULL;
    kvc_kube_set_id_source(g.kube, s_next_id, &stuck);
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, NULL, &t3, &err), KVC_EEXIST);
    assert_null(t3);
    assert_int_equal(stuck.calls, 5);
    assert_non_null(strstr(err.msg, "409 AlreadyExists"));
    assert_int_equal(kvc_kube_last_http_status(g.kube), 409);
    assert_string_equal(kvc_kube_last_reason(g.kube), "AlreadyExists");
    kvc_kube_set_id_source(g.kube, NULL, NULL);

    assert_int_equal(kvc_kube_bootstrap_token_delete(g.kube, "aaaaaa", &err), 0);
    assert_int_equal(kvc_kube_bootstrap_token_delete(g.kube, "cccccc", &err), 0);
    kvc_kube_token_destroy(&t1);
    kvc_kube_token_destroy(&t2);
}

/* Extend moves the expiration forward, still under a minute. */
static void test_token_extend(void **state)
{
    kvc_err_t err = {0};
    kvc_kube_token_t *tok = NULL;
    kvc_kube_token_opts_t o = {.ttl_s = 5};
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, &o, &tok, &err), 0);
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    int64_t before = kvc_clock_wall_s();
    assert_int_equal(kvc_kube_bootstrap_token_extend(g.kube, tok->id, 45, &err), 0);
    int64_t after = kvc_clock_wall_s();
    assert_int_equal(s_get_secret(tok->name, &b), 200);
    char *s = s_secret_data(&b, "expiration");
    int64_t exp = s_rfc3339(s);
    kvc_free(s);
    assert_true(exp >= before + 45 && exp <= after + 45);
    /* The rest of the token is untouched by the merge patch. */
    s = s_secret_data(&b, "token-secret");
    assert_string_equal(s, tok->secret);
    kvc_free(s);
    assert_int_equal(kvc_kube_bootstrap_token_extend(g.kube, tok->id, 60, &err), KVC_EINVAL);
    assert_int_equal(kvc_kube_bootstrap_token_extend(g.kube, "zzzzz9", 30, &err), KVC_ENOENT);
    assert_non_null(strstr(err.msg, "404 NotFound"));
    assert_int_equal(kvc_kube_bootstrap_token_delete(g.kube, tok->id, &err), 0);
    kvc_buf_free(&b);
    kvc_kube_token_destroy(&tok);
}

/* cluster-info gets a JWS for the token that verifies with its secret only,
 * and loses it when the token is deleted. */
static void test_token_jws(void **state)
{
    kvc_err_t err = {0};
    kvc_kube_token_t *tok = NULL;
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, NULL, &tok, &err), 0);
    assert_int_equal(kvc_kube_wait_jws(g.kube, tok->id, (int64_t)kvc_clock_mono_ms() + 10000, &err),
                     0);
    char *jws = NULL, *kc = NULL;
    assert_int_equal(kvc_kube_cluster_info_has_jws(g.kube, tok->id, &jws, &kc, &err), 1);
    assert_non_null(strstr(jws, ".."));
    assert_non_null(strstr(kc, "certificate-authority-data"));
    assert_int_equal(kvc_kube_jws_verify(jws, kc, strlen(kc), tok->id, tok->secret), 0);
    char wrong[17];
    memcpy(wrong, tok->secret, 17);
    wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
    assert_int_equal(kvc_kube_jws_verify(jws, kc, strlen(kc), tok->id, wrong), KVC_ECRYPTO);
    assert_int_equal(kvc_kube_jws_verify(jws, kc, strlen(kc) - 1, tok->id, tok->secret),
                     KVC_ECRYPTO);
    assert_int_equal(kvc_kube_jws_verify(jws, kc, strlen(kc), "zzzzzz", tok->secret),
                     KVC_ECRYPTO); /* kid names another token */
    assert_int_equal(kvc_kube_jws_verify("abc.def.ghi", kc, strlen(kc), tok->id, tok->secret),
                     KVC_EPARSE);
    kvc_free(jws);
    kvc_free(kc);

    assert_int_equal(kvc_kube_bootstrap_token_delete(g.kube, tok->id, &err), 0);
    long long deadline = kvc_standin_now_ms() + 10000;
    int rc;
    while ((rc = kvc_kube_cluster_info_has_jws(g.kube, tok->id, NULL, NULL, &err)) == 1 &&
           kvc_standin_now_ms() < deadline) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL); /* polling, bounded by the deadline */
    }
    assert_int_equal(rc, 0);
    /* Waiting for a JWS that never comes ends at the deadline. */
    assert_int_equal(kvc_kube_wait_jws(g.kube, tok->id, (int64_t)kvc_clock_mono_ms() + 300, &err),
                     KVC_ETIMEDOUT);
    kvc_kube_token_destroy(&tok);
}

/* Collects names into a comma list. */
static int s_collect(const char *name, void *arg)
{
    kvc_buf_t *b = arg;
    return kvc_buf_printf(b, "%s%s,", b->len ? "" : ",", name);
}

/* Orphans of one site are found by label, those of another are not. */
static void test_token_list_orphans(void **state)
{
    kvc_err_t err = {0};
    kvc_kube_token_t *a = NULL, *b = NULL, *c = NULL;
    kvc_kube_token_opts_t oa = {.site = "orphan-site", .term = 3, .node = "n1"};
    kvc_kube_token_opts_t ob = {.site = "orphan-site", .term = 4, .node = "n2"};
    kvc_kube_token_opts_t oc = {.site = "other-site", .term = 4};
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, &oa, &a, &err), 0);
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, &ob, &b, &err), 0);
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, &oc, &c, &err), 0);
    kvc_buf_t names;
    kvc_buf_init(&names, 4096);
    assert_int_equal(kvc_kube_bootstrap_token_list_orphans(
                         g.kube, "app.kubernetes.io/managed-by=kvc,kvc.io/site=orphan-site",
                         s_collect, &names, &err),
                     0);
    char want[80];
    snprintf(want, sizeof want, ",%s,", a->name);
    assert_non_null(strstr(names.data, want));
    snprintf(want, sizeof want, ",%s,", b->name);
    assert_non_null(strstr(names.data, want));
    snprintf(want, sizeof want, ",%s,", c->name);
    assert_null(strstr(names.data, want));
    assert_int_equal(strlen(names.data), 1 + 2 * (strlen(a->name) + 1));
    /* One term only. */
    kvc_buf_reset(&names);
    assert_int_equal(kvc_kube_bootstrap_token_list_orphans(
                         g.kube, "kvc.io/site=orphan-site,kvc.io/term=4", s_collect, &names, &err),
                     0);
    snprintf(want, sizeof want, ",%s,", b->name);
    assert_string_equal(names.data, want);
    /* Nothing matches: no calls. */
    kvc_buf_reset(&names);
    assert_int_equal(kvc_kube_bootstrap_token_list_orphans(g.kube, "kvc.io/site=nowhere", s_collect,
                                                           &names, &err),
                     0);
    assert_int_equal(names.len, 0);
    kvc_buf_free(&names);
    kvc_kube_bootstrap_token_delete(g.kube, a->id, &err);
    kvc_kube_bootstrap_token_delete(g.kube, b->id, &err);
    kvc_kube_bootstrap_token_delete(g.kube, c->id, &err);
    kvc_kube_token_destroy(&a);
    kvc_kube_token_destroy(&b);
    kvc_kube_token_destroy(&c);
}

/* Delete removes the Secret; deleting it again (NotFound) still succeeds. */
static void test_token_delete(void **state)
{
    kvc_err_t err = {0};
    kvc_kube_token_t *tok = NULL;
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, NULL, &tok, &err), 0);
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    assert_int_equal(s_get_secret(tok->name, &b), 200);
    assert_int_equal(kvc_kube_bootstrap_token_delete(g.kube, tok->id, &err), 0);
    assert_int_equal(s_get_secret(tok->name, &b), 404);
    assert_int_equal(kvc_kube_bootstrap_token_delete(g.kube, tok->id, &err), 0);
    assert_int_equal(err.code, 0);
    assert_int_equal(kvc_kube_bootstrap_token_delete(g.kube, "BAD", &err), KVC_EINVAL);
    kvc_buf_free(&b);
    kvc_kube_token_destroy(&tok);
}

/* The stand-in's tokencleaner deletes a token whose expiration has passed. */
static void test_token_swept(void **state)
{
    kvc_err_t err = {0};
    kvc_kube_token_t *tok = NULL;
    kvc_kube_token_opts_t o = {.ttl_s = 1};
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, &o, &tok, &err), 0);
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    long long deadline = kvc_standin_now_ms() + 10000;
    long code;
    while ((code = s_get_secret(tok->name, &b)) == 200 && kvc_standin_now_ms() < deadline) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL); /* polling, bounded by the deadline */
    }
    assert_int_equal(code, 404);
    /* Not before its expiration. */
    assert_true(kvc_clock_wall_s() >= tok->expires);
    kvc_buf_free(&b);
    kvc_kube_token_destroy(&tok);
}

/* --- nodes, errors ----------------------------------------------------------- */

/* A node is there once registered, and only then; bad names never reach a URL. */
static void test_node_exists(void **state)
{
    kvc_err_t err = {0};
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    assert_int_equal(kvc_kube_node_exists(g.kube, "edge-node-7", &err), 0);
    assert_int_equal(s_raw("POST", "/api/v1/nodes", "application/json",
                           "{\"apiVersion\":\"v1\",\"kind\":\"Node\","
                           "\"metadata\":{\"name\":\"edge-node-7\"}}",
                           &b),
                     201);
    assert_int_equal(kvc_kube_node_exists(g.kube, "edge-node-7", &err), 1);
    assert_int_equal(kvc_kube_node_exists(g.kube, "edge-node-8", &err), 0);
    assert_int_equal(kvc_kube_node_exists(g.kube, "../secrets", &err), KVC_EINVAL);
    kvc_buf_free(&b);
}

/* A server that refuses connections: a retryable error, after the retries. */
static void test_unreachable(void **state)
{
    int port = 0;
    int fd = kvc_it_hold_port(&port, 0);
    assert_true(fd >= 0);
    kvc_kubeconfig_t cfg = g.cfg;
    snprintf(cfg.server, sizeof cfg.server, "https://127.0.0.1:%d", port);
    kvc_kube_opts_t o = {.connect_timeout_ms = 500, .max_attempts = 3, .backoff_ms = 40};
    kvc_err_t err = {0};
    kvc_kube_t *k = kvc_kube_new(&cfg, &o, &err);
    assert_non_null(k);
    long long t0 = kvc_standin_now_ms();
    assert_int_equal(kvc_kube_node_exists(k, "n", &err), KVC_EUNAVAIL);
    long long spent = kvc_standin_now_ms() - t0;
    assert_non_null(strstr(err.msg, "GET /api/v1/nodes/n: API server unreachable (retryable)"));
    assert_true(spent >= 40 + 80); /* two backoffs: it did retry */
    /* A create whose connection was refused was never seen by the server:
     * it is retried too (one that reached it is not: test_retry_and_errors
     * counts that). */
    kvc_kube_token_t *tok = NULL;
    t0 = kvc_standin_now_ms();
    assert_int_equal(kvc_kube_bootstrap_token_create(k, NULL, &tok, &err), KVC_EUNAVAIL);
    assert_true(kvc_standin_now_ms() - t0 >= 40 + 80);
    assert_non_null(
        strstr(err.msg, "POST /api/v1/namespaces/kube-system/secrets: API server unreachable"));
    assert_null(tok);
    kvc_kube_destroy(&k);
    close(fd);
}

/* No client certificate (a bearer token the stand-in does not know): 401. */
static void test_unauthorized(void **state)
{
    kvc_kubeconfig_t cfg = g.cfg;
    cfg.cert = cfg.key = NULL;
    cfg.cert_len = cfg.key_len = 0;
    char token[] = "not-a-valid-token";
    cfg.token = token;
    cfg.token_len = strlen(token);
    kvc_err_t err = {0};
    kvc_kube_t *k = kvc_kube_new(&cfg, NULL, &err);
    assert_non_null(k);
    assert_int_equal(kvc_kube_node_exists(k, "n", &err), KVC_ECRYPTO);
    assert_int_equal(kvc_kube_last_http_status(k), 401);
    assert_string_equal(kvc_kube_last_reason(k), "Unauthorized");
    assert_non_null(strstr(err.msg, "401 Unauthorized"));
    kvc_kube_destroy(&k);
}

/* Makes a client that authenticates with a bearer token only. */
static kvc_kube_t *s_token_client(const char *bearer)
{
    kvc_kubeconfig_t cfg = g.cfg;
    cfg.cert = cfg.key = NULL;
    cfg.cert_len = cfg.key_len = 0;
    cfg.token = (char *)bearer;
    cfg.token_len = strlen(bearer);
    kvc_err_t err = {0};
    kvc_kube_t *k = kvc_kube_new(&cfg, NULL, &err);
    assert_non_null(k);
    return k;
}

/* The token we mint authenticates a joining node as a bootstrapper, which
 * may read cluster-info and nothing else (403), until it is deleted (401). */
static void test_bootstrap_token_auth(void **state)
{
    kvc_err_t err = {0};
    kvc_kube_token_t *tok = NULL;
    assert_int_equal(kvc_kube_bootstrap_token_create(g.kube, NULL, &tok, &err), 0);
    char bearer[32], wrong[32];
    snprintf(bearer, sizeof bearer, "%s.%s", tok->id, tok->secret);
    snprintf(wrong, sizeof wrong, "%s.%s", tok->id, "0000000000000000");
    kvc_kube_t *node = s_token_client(bearer);
    assert_int_equal(kvc_kube_wait_jws(node, tok->id, (int64_t)kvc_clock_mono_ms() + 10000, &err),
                     0);
    assert_int_equal(kvc_kube_node_exists(node, "edge-node-7", &err), KVC_EPERM);
    assert_int_equal(kvc_kube_last_http_status(node), 403);
    assert_string_equal(kvc_kube_last_reason(node), "Forbidden");
    char want[128];
    snprintf(want, sizeof want, "User \"system:bootstrap:%s\" cannot get resource \"nodes\"",
             tok->id);
    assert_non_null(strstr(err.msg, want));
    assert_int_equal(
        kvc_kube_bootstrap_token_list_orphans(node, "kvc.io/site=x", s_collect, NULL, &err),
        KVC_EPERM);
    assert_int_equal(kvc_kube_bootstrap_token_delete(node, tok->id, &err), KVC_EPERM);

    kvc_kube_t *bad = s_token_client(wrong);
    assert_int_equal(kvc_kube_cluster_info_has_jws(bad, tok->id, NULL, NULL, &err), KVC_ECRYPTO);
    kvc_kube_destroy(&bad);

    assert_int_equal(kvc_kube_bootstrap_token_delete(g.kube, tok->id, &err), 0);
    assert_int_equal(kvc_kube_cluster_info_has_jws(node, tok->id, NULL, NULL, &err), KVC_ECRYPTO);
    assert_int_equal(kvc_kube_last_http_status(node), 401);
    kvc_kube_destroy(&node);
    kvc_kube_token_destroy(&tok);
}

/* Status bodies decode to the reason the client maps. */
static void test_status_parse(void **state)
{
    kvc_kube_status_t st;
    const char *b = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":"
                    "\"Failure\",\"message\":\"secrets \\\"x\\\" already exists\\n\","
                    "\"reason\":\"AlreadyExists\",\"details\":{\"name\":\"x\"},\"code\":409}";
    assert_int_equal(kvc_kube_status_parse(b, strlen(b), &st), 0);
    assert_int_equal(st.code, 409);
    assert_string_equal(st.reason, "AlreadyExists");
    assert_string_equal(st.message, "secrets \"x\" already exists?");
    const char *notstatus = "{\"kind\":\"Secret\",\"code\":409}";
    assert_int_equal(kvc_kube_status_parse(notstatus, strlen(notstatus), &st), KVC_EPARSE);
    assert_int_equal(kvc_kube_status_parse("{", 1, &st), KVC_EPARSE);
}

/* How many requests the stand-in got for "METHOD /path". */
static uint64_t s_count(const char *what)
{
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    assert_int_equal(s_raw("GET", "/kvc-standin/requests", NULL, NULL, &b), 200);
    kvc_json_cursor_t c;
    kvc_json_cursor_init(&c, b.data, b.len, NULL);
    int st = 0;
    char key[256];
    uint64_t n = 0;
    while (kvc_json_cursor_member(&c, &st, key, sizeof key) == 1) {
        if (strcmp(key, what) == 0)
            assert_int_equal(kvc_json_cursor_read_u64(&c, &n), 0);
        else
            assert_int_equal(kvc_json_cursor_skip(&c), 0);
    }
    kvc_buf_free(&b);
    return n;
}

/* Makes the stand-in answer the next count requests to METHOD path* with code. */
static void s_fault(const char *method, const char *path, int code, const char *reason, int count,
                    int delay_ms, int oversize)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"method\":\"%s\",\"path\":\"%s\",\"code\":%d,\"reason\":\"%s\",\"count\":%d,"
             "\"delay_ms\":%d,\"oversize\":%s}",
             method, path, code, reason, count, delay_ms, oversize ? "true" : "false");
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    assert_int_equal(s_raw("POST", "/kvc-standin/faults", "application/json", body, &b), 201);
    kvc_buf_free(&b);
}

/* Drops the faults not yet used. */
static void s_faults_clear(void)
{
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    assert_int_equal(s_raw("DELETE", "/kvc-standin/faults", NULL, NULL, &b), 200);
    kvc_buf_free(&b);
}

/* Idempotent calls retry through 503s; a create does not; each API error
 * maps to its code; oversized and slow answers are bounded. */
static void test_retry_and_errors(void **state)
{
    kvc_kube_opts_t o = {.max_attempts = 4, .backoff_ms = 10, .timeout_ms = 3000};
    kvc_err_t err = {0};
    kvc_kube_t *k = kvc_kube_new(&g.cfg, &o, &err);
    assert_non_null(k);

    /* Two 503s, then the real answer (404: no such node) on the third try. */
    s_fault("GET", "/api/v1/nodes/retry-node", 503, "ServiceUnavailable", 2, 0, 0);
    uint64_t before = s_count("GET /api/v1/nodes/retry-node");
    assert_int_equal(kvc_kube_node_exists(k, "retry-node", &err), 0);
    assert_int_equal(s_count("GET /api/v1/nodes/retry-node") - before, 3);
    /* A 200 after a 503: success, and the 503 left no message behind. */
    s_fault("GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info", 503,
            "ServiceUnavailable", 1, 0, 0);
    assert_int_equal(kvc_kube_cluster_info_has_jws(k, "abcdef", NULL, NULL, &err), 0);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.msg, "");
    /* Four 503s: gives up after max_attempts with a retryable code. */
    s_fault("GET", "/api/v1/nodes/retry-node", 503, "ServiceUnavailable", 4, 0, 0);
    before = s_count("GET /api/v1/nodes/retry-node");
    assert_int_equal(kvc_kube_node_exists(k, "retry-node", &err), KVC_EUNAVAIL);
    assert_int_equal(s_count("GET /api/v1/nodes/retry-node") - before, 4);
    assert_non_null(strstr(err.msg, "503 ServiceUnavailable"));

    /* A create that got a 503 may have been applied: exactly one POST. */
    const char *post = "POST /api/v1/namespaces/kube-system/secrets";
    s_fault("POST", "/api/v1/namespaces/kube-system/secrets", 503, "ServiceUnavailable", 1, 0, 0);
    before = s_count(post);
    kvc_kube_token_t *tok = NULL;
    assert_int_equal(kvc_kube_bootstrap_token_create(k, NULL, &tok, &err), KVC_EUNAVAIL);
    assert_null(tok);
    assert_int_equal(s_count(post) - before, 1);

    /* The Status reasons the broker must tell apart. */
    static const struct {
        int http;
        const char *reason;
        int code;
    } map[] = {{409, "Conflict", KVC_KUBE_ECONFLICT}, {403, "Forbidden", KVC_EPERM},
               {410, "Gone", KVC_KUBE_EGONE},         {401, "Unauthorized", KVC_ECRYPTO},
               {422, "Invalid", KVC_EINVAL},          {404, "NotFound", KVC_ENOENT}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        s_fault("PATCH", "/api/v1/namespaces/kube-system/secrets/", map[i].http, map[i].reason, 1,
                0, 0);
        before = s_count("PATCH /api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef");
        assert_int_equal(kvc_kube_bootstrap_token_extend(k, "abcdef", 30, &err), map[i].code);
        assert_int_equal(kvc_kube_last_http_status(k), map[i].http);
        assert_string_equal(kvc_kube_last_reason(k), map[i].reason);
        char want[64];
        snprintf(want, sizeof want, "%d %s: injected by the test", map[i].http, map[i].reason);
        assert_non_null(strstr(err.msg, want));
        /* None of these is worth a retry. */
        assert_int_equal(
            s_count("PATCH /api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef") - before,
            1);
    }

    /* A body past KVC_KUBE_RESPONSE_MAX is cut off, not buffered. */
    s_fault("GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info", 200, "", 1, 0, 1);
    assert_int_equal(kvc_kube_cluster_info_has_jws(k, "abcdef", NULL, NULL, &err), KVC_ERANGE);
    assert_non_null(strstr(err.msg, "response longer than"));
    kvc_kube_destroy(&k);

    /* A server slower than the timeout: KVC_ETIMEDOUT, said so. */
    kvc_kube_opts_t slow = {.max_attempts = 1, .timeout_ms = 300};
    k = kvc_kube_new(&g.cfg, &slow, &err);
    assert_non_null(k);
    s_fault("GET", "/api/v1/nodes/slow-node", 200, "", 1, 1500, 0);
    assert_int_equal(kvc_kube_node_exists(k, "slow-node", &err), KVC_ETIMEDOUT);
    assert_non_null(strstr(err.msg, "timed out"));
    kvc_kube_destroy(&k);
    s_faults_clear();
}

/* Every allocation failure inside the kubeconfig reader and the response
 * decoders is an error, never a crash or a leak (ASan checks the leaks). */
static void test_alloc_failures(void **state)
{
    char path[128];
    snprintf(path, sizeof path, "%s/kubeconfig", g.dir);
    int ok = 0;
    for (long n = 0; n < 200 && !ok; n++) {
        kvc_kubeconfig_t cfg;
        kvc_err_t err = {0};
        kvc_alloc_fail_after(n);
        int rc = kvc_kubeconfig_load(path, &cfg, &err);
        kvc_alloc_fail_after(-1);
        if (rc == 0) {
            ok = 1;
            assert_int_equal(cfg.key_len, g.cfg.key_len);
            kvc_kubeconfig_free(&cfg);
        } else {
            assert_int_equal(rc, KVC_ENOMEM);
        }
    }
    assert_true(ok);
    const char *list =
        "{\"items\":[{\"metadata\":{\"name\":\"a\"}},{\"metadata\":{\"name\":\"b\"}}]}";
    ok = 0;
    for (long n = 0; n < 50 && !ok; n++) {
        kvc_buf_t names;
        kvc_buf_init(&names, 4096);
        kvc_alloc_fail_after(n);
        int rc = kvc_kube_list_names(list, strlen(list), s_collect, &names);
        kvc_alloc_fail_after(-1);
        if (rc == 0) {
            ok = 1;
            assert_string_equal(names.data, ",a,b,");
        } else {
            assert_int_equal(rc, KVC_ENOMEM);
        }
        kvc_buf_free(&names);
    }
    assert_true(ok);
}

/* --- pins ----------------------------------------------------------------- */

/* Our SPKI pin equals openssl's, for the RSA CA and the EC client cert. */
static void test_ca_pin(void **state)
{
    static const char *const files[] = {"ca.pem", "client.pem"};
    for (size_t i = 0; i < 2; i++) {
        char cmd[512], want[128], path[128];
        snprintf(cmd, sizeof cmd,
                 "openssl x509 -in %s/%s -pubkey -noout | openssl pkey -pubin -outform der | "
                 "sha256sum",
                 g.dir, files[i]);
        s_sh_line(want, sizeof want, cmd);
        want[64] = '\0';
        assert_int_equal(strlen(want), 64);
        snprintf(path, sizeof path, "%s/%s", g.dir, files[i]);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        unsigned char pem[8192];
        size_t n = fread(pem, 1, sizeof pem, f);
        fclose(f);
        char pin[KVC_KUBE_PIN_LEN];
        assert_int_equal(kvc_kube_ca_pin(pem, n, pin), 0);
        assert_memory_equal(pin, "sha256:", 7);
        assert_string_equal(pin + 7, want);
        /* Cut before its END line, it is no certificate. */
        assert_int_equal(kvc_kube_ca_pin(pem, n / 2, pin), KVC_EPARSE);
    }
    /* The kubeconfig's CA blob is the same certificate. */
    char pin[KVC_KUBE_PIN_LEN];
    assert_int_equal(kvc_kube_ca_pin(g.cfg.ca, g.cfg.ca_len, pin), 0);
    assert_int_equal(kvc_kube_ca_pin((const unsigned char *)"hello", 5, pin), KVC_EPARSE);

    /* k3s: K10 + sha256 of the CA file's bytes. */
    char cmd[256], want[128], tok[KVC_KUBE_K3S_TOKEN_LEN], exp[200];
    snprintf(cmd, sizeof cmd, "sha256sum %s/ca.pem", g.dir);
    s_sh_line(want, sizeof want, cmd);
    want[64] = '\0';
    assert_int_equal(kvc_kube_k3s_token(g.cfg.ca, g.cfg.ca_len, "abcdef", "0123456789abcdef", tok),
                     0);
    snprintf(exp, sizeof exp, "K10%s::abcdef.0123456789abcdef", want);
    assert_string_equal(tok, exp);
    assert_int_equal(kvc_kube_k3s_token(g.cfg.ca, g.cfg.ca_len, "ABCDEF", "0123456789abcdef", tok),
                     KVC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kubeconfig_forms),     cmocka_unit_test(test_kubeconfig_errors),
        cmocka_unit_test(test_token_create),         cmocka_unit_test(test_token_collision),
        cmocka_unit_test(test_token_extend),         cmocka_unit_test(test_token_jws),
        cmocka_unit_test(test_token_list_orphans),   cmocka_unit_test(test_token_delete),
        cmocka_unit_test(test_token_swept),          cmocka_unit_test(test_node_exists),
        cmocka_unit_test(test_unreachable),          cmocka_unit_test(test_unauthorized),
        cmocka_unit_test(test_status_parse),         cmocka_unit_test(test_ca_pin),
        cmocka_unit_test(test_retry_and_errors),     cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_bootstrap_token_auth),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
