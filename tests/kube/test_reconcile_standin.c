/*
 * Interop tests of peer/reconcile.c (the site reconciler of the model
 * registry) against tests/kube/kube_api_standin.py, a Kubernetes API
 * server stand-in (a test double; its deployment controller and PV binder
 * are SIMULATED), with the REAL kubectl reading back what was applied.
 *
 * One stand-in for the whole sequence, whose steps build on each other:
 * apply a plan (namespace created, every object readable by kubectl with
 * -l app.kubernetes.io/managed-by=kvc), readiness reaches ready == desired
 * and a held-back replica shows, a new version changes the ConfigMap but
 * not the Deployment's generation, another manager's apply conflicts, a
 * foreign Deployment with a model's name is left alone and reported, and a
 * retired model is pruned. Every wait polls with a deadline; port 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "kube.h"
#include "kube_standin_proc.h"
#include "reconcile.h"

#define S_NS "kvc-models"

typedef struct {
    char dir[64];
    kvc_standin_t standin;
    kvc_kubeconfig_t cfg;
    kvc_kube_t *kube;
    char base[64];
    char gen_before[32]; /* kvc-resnet's generation before a new version */
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

/*
 * Runs the real kubectl with the test's kubeconfig and args (a shell
 * word list); its output (stdout and stderr, at most size-1 bytes, the
 * final newline cut) in out, and its exit status.
 */
static int s_kubectl(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_kubectl(char *out, size_t size, const char *fmt, ...)
{
    char args[1536], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "KUBECONFIG=%s/kubeconfig %s --request-timeout=20s %s 2>&1", g.dir,
             KVC_KUBECTL, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = 0;
    while (n + 1 < size) {
        size_t r = fread(out + n, 1, size - 1 - n, p);
        if (r == 0)
            break;
        n += r;
    }
    out[n] = '\0';
    while (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* kubectl, which must succeed, and whose output must be want. */
static void s_kubectl_is(const char *want, const char *args)
{
    char out[8192];
    int rc = s_kubectl(out, sizeof out, "%s", args);
    if (rc != 0 || strcmp(out, want) != 0)
        print_error("kubectl %s\n  exit %d, said: [%s]\n  wanted: [%s]\n", args, rc, out, want);
    assert_int_equal(rc, 0);
    assert_string_equal(out, want);
}

/* libcurl write callback of the raw requests. */
static size_t s_raw_write(char *d, size_t s, size_t n, void *arg)
{
    return kvc_buf_append(arg, d, s * n) == 0 ? s * n : 0;
}

/* A request with the test PKI's files, past the client under test; the HTTP status. */
static long s_raw(const char *method, const char *path, const char *body)
{
    char url[512], ca[128], cert[128], key[128];
    snprintf(url, sizeof url, "%s%s", g.base, path);
    snprintf(ca, sizeof ca, "%s/ca.pem", g.dir);
    snprintf(cert, sizeof cert, "%s/client.pem", g.dir);
    snprintf(key, sizeof key, "%s/client.key", g.dir);
    kvc_buf_t resp;
    kvc_buf_init(&resp, 1 << 20);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, key);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_raw_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode cc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    kvc_buf_free(&resp);
    assert_int_equal(cc, CURLE_OK);
    return code;
}

/* A model version as the registry would hand it over. */
static kvc_model_t s_model(const char *name, uint64_t version, kvc_model_fw_t fw,
                           const char *storage, uint32_t replicas)
{
    kvc_model_t m;
    memset(&m, 0, sizeof m);
    kvc_strlcpy(m.name, name, sizeof m.name);
    m.version = version;
    m.framework = fw;
    kvc_strlcpy(m.storage, storage, sizeof m.storage);
    m.replicas = replicas;
    return m;
}

static const kvc_reconcile_opts_t s_opts = {NULL, "edge-a", NULL, NULL, 5};

/* Builds a plan for models and applies it; the apply's code. st gets n statuses. */
static int s_reconcile(const kvc_model_t *m, size_t n, kvc_model_status_t *st, kvc_err_t *err)
{
    kvc_reconcile_plan_t *p = NULL;
    kvc_err_t berr = {0};
    int rc = kvc_reconcile_build(&s_opts, m, n, &p, &berr);
    if (rc)
        print_error("build: %s\n", berr.msg);
    assert_int_equal(rc, KVC_OK);
    size_t n_st = 0;
    memset(err, 0, sizeof *err);
    rc = kvc_reconcile_apply(g.kube, p, st, n, &n_st, err);
    kvc_reconcile_plan_destroy(&p);
    assert_int_equal(n_st, n);
    return rc;
}

/* The models of the first steps. */
static const kvc_model_t *s_base_models(size_t *n)
{
    static kvc_model_t m[2];
    m[0] = s_model("resnet", 1, KVC_FW_TFSERVING, "nfs://nfs1.lan/export/resnet", 2);
    m[1] = s_model("bert", 3, KVC_FW_KSERVE_V2, "nfs://10.0.0.5/srv/bert", 1);
    *n = 2;
    return m;
}

/* --- setup ------------------------------------------------------------------- */

/* Makes the PKI, starts the stand-in, writes the kubeconfig, makes the client. */
static int s_setup(void **state)
{
    memset(&g, 0, sizeof g);
    g.standin.in_fd = -1;
    kvc_strlcpy(g.dir, "/tmp/kvc-rec-XXXXXX", sizeof g.dir);
    if (!mkdtemp(g.dir))
        return -1;
    if (s_sh(KVC_KUBE_DIR "/kube_pki.sh pki %s", g.dir) != 0)
        return -1;
    static const char *const extra[] = {"--deploy-ready-ms", "150", NULL};
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

/* Frees the client, stops the stand-in, removes the folder with its keys. */
static int s_teardown(void **state)
{
    kvc_kube_destroy(&g.kube);
    kvc_kubeconfig_free(&g.cfg);
    int rc = kvc_standin_stop(&g.standin);
    if (g.dir[0] && strncmp(g.dir, "/tmp/kvc-rec-", 13) == 0)
        s_sh("rm -rf %s", g.dir);
    return rc;
}

/* --- the steps ------------------------------------------------------------------ */

/* A first apply creates the namespace and every object; kubectl reads them back. */
static void test_apply_and_read_back(void **state)
{
    char out[8192];
    assert_int_not_equal(s_kubectl(out, sizeof out, "get namespace " S_NS), 0);
    assert_non_null(strstr(out, "NotFound"));

    size_t n;
    const kvc_model_t *m = s_base_models(&n);
    kvc_model_status_t st[2];
    kvc_err_t err;
    int rc = s_reconcile(m, n, st, &err);
    if (rc)
        print_error("apply: %s\n", err.msg);
    assert_int_equal(rc, KVC_OK);
    assert_string_equal(st[0].site, "edge-a");
    assert_string_equal(st[0].model, "resnet");
    assert_int_equal(st[0].version, 1);
    assert_int_equal(st[0].applied, 1);
    assert_int_equal(st[0].desired_replicas, 2);
    assert_string_equal(st[0].error, "");
    assert_string_equal(st[1].model, "bert");
    assert_int_equal(st[1].version, 3);
    assert_int_equal(st[1].applied, 1);
    assert_int_equal(st[1].desired_replicas, 1);

    s_kubectl_is("kvc", "get namespace " S_NS
                        " -o jsonpath='{.metadata.labels.app\\.kubernetes\\.io/managed-by}'");
#define SEL "-l app.kubernetes.io/managed-by=kvc"
    s_kubectl_is("kvc-bert kvc-resnet",
                 "get deploy -n " S_NS " " SEL " -o jsonpath='{.items[*].metadata.name}'");
    /* The table needs apps/v1 discovery, as on a real cluster. */
    assert_int_equal(s_kubectl(out, sizeof out, "get deployments -n " S_NS), 0);
    assert_non_null(strstr(out, "kvc-resnet"));
    s_kubectl_is("2 tensorflow/serving:2.14.1 /models/resnet true resnet edge-a kvc",
                 "get deploy kvc-resnet -n " S_NS " -o jsonpath='{.spec.replicas} "
                 "{.spec.template.spec.containers[0].image} "
                 "{.spec.template.spec.containers[0].volumeMounts[0].mountPath} "
                 "{.spec.template.spec.containers[0].volumeMounts[0].readOnly} "
                 "{.metadata.labels.app\\.kubernetes\\.io/name} "
                 "{.metadata.labels.kvc\\.io/site} "
                 "{.spec.template.metadata.labels.app\\.kubernetes\\.io/managed-by}'");
    s_kubectl_is("--model_config_file=/etc/kvc-model/models.config "
                 "--model_config_file_poll_wait_seconds=5 /v1/models/resnet true",
                 "get deploy kvc-resnet -n " S_NS " -o jsonpath='"
                 "{.spec.template.spec.containers[0].args[2]} "
                 "{.spec.template.spec.containers[0].args[3]} "
                 "{.spec.template.spec.containers[0].readinessProbe.httpGet.path} "
                 "{.spec.template.metadata.annotations.prometheus\\.io/scrape}'");
    s_kubectl_is("nvcr.io/nvidia/tritonserver:24.01-py3 --model-control-mode=poll /v2/health/ready",
                 "get deploy kvc-bert -n " S_NS " -o jsonpath='"
                 "{.spec.template.spec.containers[0].image} "
                 "{.spec.template.spec.containers[0].args[1]} "
                 "{.spec.template.spec.containers[0].readinessProbe.httpGet.path}'");
    s_kubectl_is("kvc-bert:grpc http metrics\nkvc-resnet:grpc rest metrics",
                 "get svc -n " S_NS " " SEL " -o jsonpath='{range .items[*]}{.metadata.name}:"
                 "{.spec.ports[*].name}{\"\\n\"}{end}'");

    /* The volumes: read-only NFS, bound to their claims by name. */
    char pv[2][64];
    assert_int_equal(s_kubectl(out, sizeof out,
                               "get pv " SEL ",kvc.io/site=edge-a -o jsonpath='{range "
                               ".items[*]}{.spec.nfs.server}|{.spec.nfs.path}|{.spec.nfs.readOnly}|"
                               "{.spec.accessModes[0]}|{.spec.persistentVolumeReclaimPolicy}|"
                               "{.status.phase}|{.spec.claimRef.name}{\"\\n\"}{end}'"),
                     0);
    assert_non_null(strstr(out, "nfs1.lan|/export/resnet|true|ReadOnlyMany|Retain|Bound|kvc-nfs-"));
    assert_non_null(strstr(out, "10.0.0.5|/srv/bert|true|ReadOnlyMany|Retain|Bound|kvc-nfs-"));
    assert_int_equal(s_kubectl(out, sizeof out,
                               "get pvc -n " S_NS " " SEL " -o jsonpath='{range .items[*]}"
                               "{.metadata.name}={.spec.volumeName}={.status.phase} {end}'"),
                     0);
    if (sscanf(out, "%63[^=]=%*[^=]=Bound %63[^=]=", pv[0], pv[1]) != 2)
        print_error("claims: %s\n", out);
    assert_int_equal(sscanf(out, "%63[^=]=%*[^=]=Bound %63[^=]=", pv[0], pv[1]), 2);
    for (int i = 0; i < 2; i++) {
        char want[160];
        snprintf(want, sizeof want, "%s=%s=Bound", pv[i], pv[i]);
        assert_non_null(strstr(out, want));
    }
    /* The Deployment mounts one of those claims. */
    assert_int_equal(s_kubectl(out, sizeof out,
                               "get deploy kvc-resnet -n " S_NS " -o jsonpath='{.spec.template."
                               "spec.volumes[0].persistentVolumeClaim.claimName}'"),
                     0);
    assert_true(strcmp(out, pv[0]) == 0 || strcmp(out, pv[1]) == 0);

    /* The server's config: exactly the registry's versions. */
    assert_int_equal(s_kubectl(out, sizeof out,
                               "get cm kvc-resnet -n " S_NS
                               " -o jsonpath='{.data.models\\.config}'"),
                     0);
    assert_non_null(strstr(out, "name: \"resnet\""));
    assert_non_null(strstr(out, "base_path: \"/models/resnet\""));
    assert_non_null(strstr(out, "        versions: 1\n"));
    assert_null(strstr(out, "versions: 2"));
    s_kubectl_is("prometheus_config { enable: true, path: \"/monitoring/prometheus/metrics\" }",
                 "get cm kvc-resnet -n " S_NS " -o jsonpath='{.data.monitoring\\.config}'");
    s_kubectl_is("kvc-bert kvc-resnet",
                 "get cm -n " S_NS " " SEL " -o jsonpath='{.items[*].metadata.name}'");
}

/* The SIMULATED controller makes the replicas ready; the status follows, and a held one shows. */
static void test_readiness(void **state)
{
    size_t n;
    const kvc_model_t *m = s_base_models(&n);
    kvc_model_status_t st[2];
    kvc_err_t err;
    long long deadline = kvc_standin_now_ms() + 10000;
    for (;;) {
        assert_int_equal(s_reconcile(m, n, st, &err), KVC_OK);
        if (st[0].ready_replicas == 2 && st[1].ready_replicas == 1)
            break;
        assert_true(kvc_standin_now_ms() < deadline);
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL); /* polling the API, bounded by the deadline */
    }
    assert_int_equal(st[0].desired_replicas, 2);

    /* One replica of resnet held back (a pod that is not ready). */
    assert_int_equal(s_raw("POST", "/kvc-standin/deployments",
                           "{\"namespace\":\"" S_NS
                           "\",\"name\":\"kvc-resnet\",\"readyReplicas\":1}"),
                     200);
    assert_int_equal(s_reconcile(m, n, st, &err), KVC_OK);
    assert_int_equal(st[0].applied, 1);
    assert_int_equal(st[0].ready_replicas, 1);
    assert_int_equal(st[0].desired_replicas, 2);
    s_kubectl_is("1/2", "get deploy kvc-resnet -n " S_NS
                        " -o jsonpath='{.status.readyReplicas}/{.spec.replicas}'");
    /* None ready: the API leaves readyReplicas out; the status says 0. */
    assert_int_equal(s_raw("POST", "/kvc-standin/deployments",
                           "{\"namespace\":\"" S_NS
                           "\",\"name\":\"kvc-resnet\",\"readyReplicas\":0}"),
                     200);
    assert_int_equal(s_reconcile(m, n, st, &err), KVC_OK);
    assert_int_equal(st[0].ready_replicas, 0);
    assert_int_equal(s_raw("POST", "/kvc-standin/deployments",
                           "{\"namespace\":\"" S_NS
                           "\",\"name\":\"kvc-resnet\",\"readyReplicas\":null}"),
                     200);
    assert_int_equal(s_reconcile(m, n, st, &err), KVC_OK);
    assert_int_equal(st[0].ready_replicas, 2);

    char out[256];
    assert_int_equal(s_kubectl(out, sizeof out,
                               "get deploy kvc-resnet -n " S_NS
                               " -o jsonpath='{.metadata.generation}'"),
                     0);
    kvc_strlcpy(g.gen_before, out, sizeof g.gen_before);
    assert_string_equal(g.gen_before, "1"); /* re-applying the same spec changed nothing */
}

/* A new version: the ConfigMap lists it, the Deployment's spec stays (no pod restart). */
static void test_new_version_changes_only_the_config(void **state)
{
    kvc_model_t m[3];
    size_t n;
    memcpy(m, s_base_models(&n), 2 * sizeof m[0]);
    m[2] = s_model("resnet", 2, KVC_FW_TFSERVING, "nfs://nfs1.lan/export/resnet", 2);
    kvc_model_status_t st[3];
    kvc_err_t err;
    assert_int_equal(s_reconcile(m, 3, st, &err), KVC_OK);
    assert_string_equal(st[2].model, "resnet");
    assert_int_equal(st[2].version, 2);
    assert_int_equal(st[2].applied, 1);
    char out[4096];
    assert_int_equal(s_kubectl(out, sizeof out,
                               "get cm kvc-resnet -n " S_NS
                               " -o jsonpath='{.data.models\\.config}'"),
                     0);
    assert_non_null(strstr(out, "        versions: 1\n        versions: 2\n"));
    s_kubectl_is(g.gen_before,
                 "get deploy kvc-resnet -n " S_NS " -o jsonpath='{.metadata.generation}'");
    s_kubectl_is("1",
                 "get deploy kvc-resnet -n " S_NS " -o jsonpath='{.status.observedGeneration}'");

    /* A change of the server (replicas) does move the generation: the check can fail. */
    m[0].replicas = m[2].replicas = 3;
    assert_int_equal(s_reconcile(m, 3, st, &err), KVC_OK);
    s_kubectl_is("2", "get deploy kvc-resnet -n " S_NS " -o jsonpath='{.metadata.generation}'");
    assert_int_equal(st[0].desired_replicas, 3);
}

/* Another field manager's apply over kvc's field conflicts; kvc's forced apply wins it back. */
static void test_field_manager_conflict(void **state)
{
    char path[128], out[4096];
    snprintf(path, sizeof path, "%s/other.json", g.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":"
          "\"kvc-resnet\",\"namespace\":\"" S_NS "\"},\"spec\":{\"replicas\":7}}\n",
          f);
    fclose(f);
    assert_int_not_equal(
        s_kubectl(out, sizeof out, "apply --server-side --field-manager=other -f %s", path), 0);
    assert_non_null(strstr(out, "conflict with \"kvc\""));
    assert_non_null(strstr(out, ".spec.replicas"));
    assert_int_equal(s_kubectl(out, sizeof out,
                               "apply --server-side --force-conflicts --field-manager=other -f %s",
                               path),
                     0);
    s_kubectl_is("7", "get deploy kvc-resnet -n " S_NS " -o jsonpath='{.spec.replicas}'");

    kvc_model_t m[3];
    size_t n;
    memcpy(m, s_base_models(&n), 2 * sizeof m[0]);
    m[2] = s_model("resnet", 2, KVC_FW_TFSERVING, "nfs://nfs1.lan/export/resnet", 3);
    m[0].replicas = 3;
    kvc_model_status_t st[3];
    kvc_err_t err;
    assert_int_equal(s_reconcile(m, 3, st, &err), KVC_OK);
    s_kubectl_is("3", "get deploy kvc-resnet -n " S_NS " -o jsonpath='{.spec.replicas}'");
}

/* A Deployment someone else made with a model's name is left alone and reported. */
static void test_foreign_deployment_untouched(void **state)
{
    char out[4096];
    int rc = s_kubectl(out, sizeof out,
                       "create deployment kvc-yolo --image=registry.lan/yolo:1 -n " S_NS);
    if (rc)
        print_error("kubectl create deployment: %s\n", out);
    assert_int_equal(rc, 0);
    s_kubectl_is("1 registry.lan/yolo:1 ",
                 "get deploy kvc-yolo -n " S_NS " -o jsonpath='{.metadata.generation} "
                 "{.spec.template.spec.containers[0].image} "
                 "{.metadata.labels.app\\.kubernetes\\.io/managed-by}'");

    kvc_model_t m[3];
    size_t n;
    memcpy(m, s_base_models(&n), 2 * sizeof m[0]);
    m[2] = s_model("yolo", 8, KVC_FW_TFSERVING, "nfs://nfs1.lan/export/yolo", 1);
    kvc_model_status_t st[3];
    kvc_err_t err;
    rc = s_reconcile(m, 3, st, &err);
    assert_int_equal(rc, KVC_EEXIST);
    assert_non_null(strstr(err.msg, "1 of 3 models not applied"));
    assert_int_equal(st[2].applied, 0);
    assert_string_equal(st[2].model, "yolo");
    assert_int_equal(st[2].version, 8);
    assert_string_equal(st[2].error, "deployment kvc-yolo exists and is not managed by kvc");
    assert_int_equal(st[2].ready_replicas, 0);
    assert_int_equal(st[0].applied, 1); /* the others go on */
    assert_int_equal(st[1].applied, 1);

    /* Untouched: same generation, image and labels; and no Service of ours on its pods. */
    s_kubectl_is("1 registry.lan/yolo:1 ",
                 "get deploy kvc-yolo -n " S_NS " -o jsonpath='{.metadata.generation} "
                 "{.spec.template.spec.containers[0].image} "
                 "{.metadata.labels.app\\.kubernetes\\.io/managed-by}'");
    assert_int_not_equal(s_kubectl(out, sizeof out, "get svc kvc-yolo -n " S_NS), 0);
    assert_non_null(strstr(out, "NotFound"));
    assert_int_equal(s_kubectl(out, sizeof out,
                               "get deploy kvc-yolo -n " S_NS
                               " -o jsonpath='{.metadata.managedFields[*].manager}'"),
                     0);
    assert_null(strstr(out, "kvc"));
}

/* A foreign ConfigMap (POSTed by our client, without our label) stops its
 * model before the server: no Deployment is made on someone else's config. */
static void test_foreign_config_stops_the_server(void **state)
{
    static const char body[] = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
                               "{\"name\":\"kvc-ssd\",\"labels\":{\"team\":\"vision\"}},"
                               "\"data\":{\"models.config\":\"theirs\"}}";
    const char *coll = "/api/v1/namespaces/" S_NS "/configmaps";
    kvc_err_t err = {0};
    assert_int_equal(kvc_kube_create(g.kube, coll, body, strlen(body), &err), KVC_OK);
    assert_int_equal(kvc_kube_create(g.kube, coll, body, strlen(body), &err), KVC_EEXIST);
    assert_int_equal(kvc_kube_create(g.kube, "/api/v1/../x", body, strlen(body), &err), KVC_EINVAL);

    kvc_model_t m[4];
    size_t n;
    memcpy(m, s_base_models(&n), 2 * sizeof m[0]);
    m[2] = s_model("yolo", 8, KVC_FW_TFSERVING, "nfs://nfs1.lan/export/yolo", 1);
    m[3] = s_model("ssd", 1, KVC_FW_TFSERVING, "nfs://nfs1.lan/export/ssd", 1);
    kvc_model_status_t st[4];
    assert_int_equal(s_reconcile(m, 4, st, &err), KVC_EEXIST);
    assert_non_null(strstr(err.msg, "2 of 4 models not applied"));
    assert_string_equal(st[3].error, "configmap kvc-ssd exists and is not managed by kvc");
    assert_int_equal(st[3].applied, 0);
    char out[1024];
    assert_int_not_equal(s_kubectl(out, sizeof out, "get deploy kvc-ssd -n " S_NS), 0);
    assert_non_null(strstr(out, "NotFound"));
    s_kubectl_is("theirs vision", "get cm kvc-ssd -n " S_NS " -o jsonpath='{.data.models\\.config} "
                                  "{.metadata.labels.team}'");

    char *got = NULL;
    size_t len = 0;
    assert_int_equal(
        kvc_kube_get(g.kube, "/api/v1/namespaces/" S_NS "/configmaps/kvc-ssd", &got, &len, &err),
        1);
    assert_non_null(strstr(got, "\"theirs\""));
    assert_int_equal(strlen(got), len);
    kvc_free(got);
    assert_int_equal(
        kvc_kube_get(g.kube, "/api/v1/namespaces/" S_NS "/configmaps/nope", &got, NULL, &err), 0);
    assert_null(got);
}

/* A retired model's objects go; the others' stay; the foreign one too. */
static void test_prune(void **state)
{
    char out[4096];
    assert_int_equal(s_kubectl(out, sizeof out, "get pv " SEL " -o name"), 0);
    int pvs_before = 0;
    for (const char *p = out; (p = strstr(p, "persistentvolume/")); p++)
        pvs_before++;
    assert_int_equal(pvs_before, 4); /* resnet, bert, yolo, ssd */

    kvc_model_t m[2];
    m[0] = s_model("resnet", 1, KVC_FW_TFSERVING, "nfs://nfs1.lan/export/resnet", 3);
    m[1] = s_model("resnet", 2, KVC_FW_TFSERVING, "nfs://nfs1.lan/export/resnet", 3);
    kvc_model_status_t st[2];
    kvc_err_t err;
    int rc = s_reconcile(m, 2, st, &err);
    if (rc)
        print_error("apply: %s\n", err.msg);
    assert_int_equal(rc, KVC_OK);

    s_kubectl_is("kvc-resnet",
                 "get deploy -n " S_NS " " SEL " -o jsonpath='{.items[*].metadata.name}'");
    s_kubectl_is("kvc-resnet",
                 "get svc -n " S_NS " " SEL " -o jsonpath='{.items[*].metadata.name}'");
    s_kubectl_is("kvc-resnet",
                 "get cm -n " S_NS " " SEL " -o jsonpath='{.items[*].metadata.name}'");
    s_kubectl_is("nfs1.lan:/export/resnet", "get pv " SEL " -o jsonpath='{range .items[*]}"
                                            "{.spec.nfs.server}:{.spec.nfs.path}{end}'");
    assert_int_equal(s_kubectl(out, sizeof out, "get pvc -n " S_NS " " SEL " -o name"), 0);
    assert_non_null(strstr(out, "persistentvolumeclaim/kvc-nfs-"));
    assert_null(strchr(out, '\n')); /* one claim */
    assert_int_not_equal(s_kubectl(out, sizeof out, "get deploy kvc-bert -n " S_NS), 0);
    assert_non_null(strstr(out, "NotFound"));
    /* The foreign Deployment has none of our labels: never listed, never pruned. */
    s_kubectl_is("registry.lan/yolo:1", "get deploy kvc-yolo -n " S_NS
                                        " -o jsonpath='{.spec.template.spec.containers[0].image}'");
    s_kubectl_is("theirs", "get cm kvc-ssd -n " S_NS " -o jsonpath='{.data.models\\.config}'");
    /* Nothing placed here any more: everything of ours goes, the namespace stays. */
    rc = s_reconcile(NULL, 0, st, &err);
    assert_int_equal(rc, KVC_OK);
    s_kubectl_is("", "get deploy,svc,cm,pvc -n " S_NS " " SEL " -o name");
    s_kubectl_is("", "get pv " SEL " -o name");
    s_kubectl_is("kvc-models", "get ns kvc-models -o jsonpath='{.metadata.name}'");
#undef SEL
}

/* An unreachable API server: the statuses say so, the call fails clearly. */
static void test_api_down(void **state)
{
    kvc_kubeconfig_t cfg = g.cfg;
    char server[64];
    snprintf(server, sizeof server, "https://127.0.0.1:1");
    kvc_strlcpy(cfg.server, server, sizeof cfg.server);
    kvc_kube_opts_t o = {200, 1000, 1, 10, 10};
    kvc_err_t err = {0};
    kvc_kube_t *down = kvc_kube_new(&cfg, &o, &err);
    assert_non_null(down);
    size_t n;
    const kvc_model_t *m = s_base_models(&n);
    kvc_reconcile_plan_t *p = NULL;
    assert_int_equal(kvc_reconcile_build(&s_opts, m, n, &p, &err), 0);
    kvc_model_status_t st[2];
    size_t n_st = 0;
    assert_int_equal(kvc_reconcile_apply(down, p, st, 1, &n_st, &err), KVC_ERANGE);
    assert_int_equal(n_st, 0);
    int rc = kvc_reconcile_apply(down, p, st, 2, &n_st, &err);
    assert_int_equal(rc, KVC_EUNAVAIL);
    assert_int_equal(n_st, 2);
    assert_int_equal(st[0].applied, 0);
    assert_non_null(strstr(st[0].error, "namespace kvc-models: kube: GET"));
    assert_non_null(strstr(err.msg, "2 of 2 models not applied"));
    kvc_reconcile_plan_destroy(&p);
    kvc_kube_destroy(&down);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_and_read_back),
        cmocka_unit_test(test_readiness),
        cmocka_unit_test(test_new_version_changes_only_the_config),
        cmocka_unit_test(test_field_manager_conflict),
        cmocka_unit_test(test_foreign_deployment_untouched),
        cmocka_unit_test(test_foreign_config_stops_the_server),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_api_down),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
