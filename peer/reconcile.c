/*
 * reconcile.c - the site reconciler of the model registry (see reconcile.h):
 * kvc_reconcile_build turns model versions into JSON bodies for
 * server-side apply, kvc_reconcile_apply sends them and prunes.
 *
 * The build is pure and deterministic: the same models and options give
 * the same bytes, and the Deployment's bytes never depend on which
 * versions exist (the versions live in the ConfigMap only), so publishing
 * a version restarts no pod. Every string that goes into JSON is escaped,
 * every body is bounded. The apply never changes or deletes an object that
 * lacks app.kubernetes.io/managed-by=kvc: a name clash with someone else's
 * object is that model's error, not a takeover.
 */
#include "reconcile.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MANAGED_BY "app.kubernetes.io/managed-by"
#define S_CONFIG_DIR "/etc/kvc-model"
#define S_STORAGE_SIZE "1Gi" /* required by the API; NFS does not enforce it */

/* One model name of the input: what its server needs. */
typedef struct {
    char name[KVC_MODEL_NAME_MAX];
    int name_ok;
    kvc_model_fw_t fw;
    char image[KVC_MODEL_IMAGE_MAX];
    char storage[KVC_MODEL_STORAGE_MAX];
    kvc_model_storage_t parsed;
    char volume[32]; /* kvc-nfs-<12 hex> */
    uint32_t replicas;
    char error[KVC_MODEL_ERROR_MAX];
    long obj[KVC_RECONCILE_KINDS]; /* index into objs, or -1 */
} s_group_t;

/* One model version of the input, in its order. */
typedef struct {
    size_t group;
    uint64_t version;
} s_entry_t;

struct kvc_reconcile_plan {
    char ns[64];
    char site[64];
    char tf_image[KVC_MODEL_IMAGE_MAX];
    char kserve_image[KVC_MODEL_IMAGE_MAX];
    unsigned poll_s;
    kvc_reconcile_obj_t *objs;
    size_t n_objs, cap_objs;
    s_group_t *groups;
    size_t n_groups;
    s_entry_t *entries;
    size_t n_entries;
};

static const char *const s_kind_names[KVC_RECONCILE_KINDS] = {
    "Namespace", "PersistentVolume", "PersistentVolumeClaim", "ConfigMap", "Deployment", "Service"};
/* The lower-case words of messages and URLs. */
static const char *const s_kind_words[KVC_RECONCILE_KINDS] = {
    "namespace", "persistentvolume", "persistentvolumeclaim", "configmap", "deployment", "service"};
static const char *const s_plurals[KVC_RECONCILE_KINDS] = {
    "namespaces", "persistentvolumes", "persistentvolumeclaims",
    "configmaps", "deployments",       "services"};

const char *kvc_reconcile_kind_name(kvc_reconcile_kind_t kind)
{
    return kind < KVC_RECONCILE_KINDS ? s_kind_names[kind] : "?";
}

/* --- checks ----------------------------------------------------------------- */

/* Tells whether s is a DNS label: [a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?, at most max bytes. */
static int s_dns_label_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (c != '-' || i == 0 || i == n - 1))
            return 0;
    }
    return 1;
}

/* Tells whether an image reference is safe to write anywhere: printable, no quote, no space. */
static int s_image_ok(const char *s)
{
    size_t n = strnlen(s, KVC_MODEL_IMAGE_MAX);
    if (n == 0 || n >= KVC_MODEL_IMAGE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

/* --- JSON writing --------------------------------------------------------------- */

/* A bounded JSON writer whose first failure sticks. */
typedef struct {
    kvc_buf_t b;
    int rc;
} s_json_t;

/* Appends raw text. */
static void s_raw(s_json_t *j, const char *s)
{
    if (!j->rc)
        j->rc = kvc_buf_append(&j->b, s, strlen(s));
}

/* Appends formatted raw text (short pieces: numbers, fixed words). */
static void s_fmt(s_json_t *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_fmt(s_json_t *j, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        if (!j->rc)
            j->rc = KVC_ERANGE;
        return;
    }
    s_raw(j, tmp);
}

/* Appends s as a JSON string literal, escaped. */
static void s_str(s_json_t *j, const char *s)
{
    s_raw(j, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p && !j->rc; p++) {
        if (*p == '"' || *p == '\\') {
            char e[3] = {'\\', (char)*p, '\0'};
            s_raw(j, e);
        } else if (*p == '\n') {
            s_raw(j, "\\n");
        } else if (*p < 0x20 || *p == 0x7f) {
            s_fmt(j, "\\u%04x", *p);
        } else {
            j->rc = kvc_buf_append(&j->b, p, 1);
        }
    }
    s_raw(j, "\"");
}

/* Appends "key":"value". */
static void s_kv(s_json_t *j, const char *key, const char *value)
{
    s_str(j, key);
    s_raw(j, ":");
    s_str(j, value);
}

/* The four labels of a model's objects. */
static void s_model_labels(s_json_t *j, const kvc_reconcile_plan_t *p, const s_group_t *g)
{
    s_raw(j, "{");
    s_kv(j, "app.kubernetes.io/name", g->name);
    s_raw(j, ",");
    s_kv(j, S_MANAGED_BY, "kvc");
    s_raw(j, ",");
    s_kv(j, "kvc.io/site", p->site);
    s_raw(j, ",");
    s_kv(j, "kvc.io/model", g->name);
    s_raw(j, "}");
}

/* The labels of a volume's objects (shared by the models on one export). */
static void s_volume_labels(s_json_t *j, const kvc_reconcile_plan_t *p, const s_group_t *g)
{
    s_raw(j, "{");
    s_kv(j, S_MANAGED_BY, "kvc");
    s_raw(j, ",");
    s_kv(j, "kvc.io/site", p->site);
    s_raw(j, ",");
    s_kv(j, "kvc.io/storage", g->volume + 8); /* the hex after "kvc-nfs-" */
    s_raw(j, "}");
}

/* The selector of a model's pods: stable for the Deployment's life (immutable). */
static void s_selector(s_json_t *j, const kvc_reconcile_plan_t *p, const s_group_t *g)
{
    s_raw(j, "{");
    s_kv(j, "kvc.io/model", g->name);
    s_raw(j, ",");
    s_kv(j, "kvc.io/site", p->site);
    s_raw(j, "}");
}

/* --- plan objects --------------------------------------------------------------- */

/* Index of the object of that kind and name, or -1. */
static long s_find(const kvc_reconcile_plan_t *p, kvc_reconcile_kind_t kind, const char *name)
{
    for (size_t i = 0; i < p->n_objs; i++)
        if (p->objs[i].kind == kind && strcmp(p->objs[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* Writes an object's API path. */
static void s_obj_path(const kvc_reconcile_plan_t *p, kvc_reconcile_kind_t kind, const char *name,
                       char *out, size_t size)
{
    if (kind == KVC_RECONCILE_NAMESPACE || kind == KVC_RECONCILE_PV)
        snprintf(out, size, "/api/v1/%s/%s", s_plurals[kind], name);
    else
        snprintf(out, size, "%s/namespaces/%s/%s/%s",
                 kind == KVC_RECONCILE_DEPLOYMENT ? "/apis/apps/v1" : "/api/v1", p->ns,
                 s_plurals[kind], name);
}

/* Writes a kind's collection path (where the prune lists). */
static void s_collection_path(const kvc_reconcile_plan_t *p, kvc_reconcile_kind_t kind, char *out,
                              size_t size)
{
    if (kind == KVC_RECONCILE_PV)
        snprintf(out, size, "/api/v1/%s", s_plurals[kind]);
    else
        snprintf(out, size, "%s/namespaces/%s/%s",
                 kind == KVC_RECONCILE_DEPLOYMENT ? "/apis/apps/v1" : "/api/v1", p->ns,
                 s_plurals[kind]);
}

/*
 * Adds an object (taking j's buffer as its body; j NULL for a kept-only
 * object), or finds the one already there (shared volumes). Its index, or
 * a negative code.
 */
static long s_add(kvc_reconcile_plan_t *p, kvc_reconcile_kind_t kind, const char *name, s_json_t *j)
{
    long at = s_find(p, kind, name);
    if (at >= 0) {
        kvc_reconcile_obj_t *o = &p->objs[at];
        if (!o->body && j) { /* kept by a model in error, applied by another */
            o->body = kvc_buf_detach(&j->b, &o->body_len);
            if (!o->body)
                return KVC_ENOMEM;
        } else if (j) {
            kvc_buf_free(&j->b);
        }
        return at;
    }
    if (j && j->rc) {
        int rc = j->rc;
        kvc_buf_free(&j->b);
        return rc;
    }
    if (p->n_objs >= KVC_RECONCILE_OBJECTS_MAX) {
        if (j)
            kvc_buf_free(&j->b);
        return KVC_ERANGE;
    }
    if (p->n_objs == p->cap_objs) {
        size_t cap = p->cap_objs ? p->cap_objs * 2 : 16;
        kvc_reconcile_obj_t *n = kvc_realloc(p->objs, cap * sizeof *n);
        if (!n) {
            if (j)
                kvc_buf_free(&j->b);
            return KVC_ENOMEM;
        }
        p->objs = n;
        p->cap_objs = cap;
    }
    kvc_reconcile_obj_t *o = &p->objs[p->n_objs];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    kvc_strlcpy(o->name, name, sizeof o->name);
    s_obj_path(p, kind, name, o->path, sizeof o->path);
    if (j) {
        o->body = kvc_buf_detach(&j->b, &o->body_len);
        if (!o->body)
            return KVC_ENOMEM;
    }
    return (long)p->n_objs++;
}

/* Starts a body in a fresh bounded writer. */
static void s_begin(s_json_t *j)
{
    kvc_buf_init(&j->b, KVC_RECONCILE_BODY_MAX);
    j->rc = 0;
}

/* The namespace, labelled as ours only when we create it. */
static long s_add_namespace(kvc_reconcile_plan_t *p)
{
    s_json_t j;
    s_begin(&j);
    s_raw(&j, "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{");
    s_kv(&j, "name", p->ns);
    s_raw(&j, ",\"labels\":{");
    s_kv(&j, S_MANAGED_BY, "kvc");
    s_raw(&j, "}}}");
    return s_add(p, KVC_RECONCILE_NAMESPACE, p->ns, &j);
}

/*
 * The read-only NFS PersistentVolume of g's storage. Not pre-bound with
 * spec.claimRef: claimRef is an atomic ObjectReference to server-side
 * apply, so applying {namespace, name} every pass would wipe the uid the
 * PV controller writes there and fight it. The claim names the volume
 * (spec.volumeName) instead; storageClassName "" keeps dynamic
 * provisioners away from both.
 */
static long s_add_pv(kvc_reconcile_plan_t *p, const s_group_t *g)
{
    s_json_t j;
    s_begin(&j);
    s_raw(&j, "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":{");
    s_kv(&j, "name", g->volume);
    s_raw(&j, ",\"labels\":");
    s_volume_labels(&j, p, g);
    s_raw(&j, ",\"annotations\":{");
    s_kv(&j, "kvc.io/storage-url", g->storage);
    s_raw(&j, "}},\"spec\":{\"capacity\":{\"storage\":\"" S_STORAGE_SIZE "\"},"
              "\"accessModes\":[\"ReadOnlyMany\"],\"persistentVolumeReclaimPolicy\":\"Retain\","
              "\"storageClassName\":\"\",\"volumeMode\":\"Filesystem\",\"nfs\":{");
    s_kv(&j, "server", g->parsed.server);
    s_raw(&j, ",");
    s_kv(&j, "path", g->parsed.path);
    s_raw(&j, ",\"readOnly\":true}}}");
    return s_add(p, KVC_RECONCILE_PV, g->volume, &j);
}

/* The claim bound by name to g's PersistentVolume. */
static long s_add_pvc(kvc_reconcile_plan_t *p, const s_group_t *g)
{
    s_json_t j;
    s_begin(&j);
    s_raw(&j, "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\",\"metadata\":{");
    s_kv(&j, "name", g->volume);
    s_raw(&j, ",");
    s_kv(&j, "namespace", p->ns);
    s_raw(&j, ",\"labels\":");
    s_volume_labels(&j, p, g);
    s_raw(&j, "},\"spec\":{\"accessModes\":[\"ReadOnlyMany\"],\"storageClassName\":\"\","
              "\"volumeMode\":\"Filesystem\",");
    s_kv(&j, "volumeName", g->volume);
    s_raw(&j, ",\"resources\":{\"requests\":{\"storage\":\"" S_STORAGE_SIZE "\"}}}}");
    return s_add(p, KVC_RECONCILE_PVC, g->volume, &j);
}

/* Sorts versions ascending (qsort callback). */
static int s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * The server's model config. TF Serving: models.config lists exactly the
 * registry's versions (model_version_policy specific), polled every
 * poll_s by --model_config_file_poll_wait_seconds; monitoring.config turns
 * on its Prometheus endpoint. Triton reads its repository's config.pbtxt
 * (on the read-only export, so not ours to rewrite): the ConfigMap records
 * the versions (and the version_policy that serves them) for the proxy and
 * for people.
 */
static long s_add_configmap(kvc_reconcile_plan_t *p, const s_group_t *g, size_t gi)
{
    uint64_t *v = kvc_calloc(p->n_entries ? p->n_entries : 1, sizeof *v);
    if (!v)
        return KVC_ENOMEM;
    size_t nv = 0;
    for (size_t i = 0; i < p->n_entries; i++)
        if (p->entries[i].group == gi)
            v[nv++] = p->entries[i].version;
    qsort(v, nv, sizeof *v, s_cmp_u64);
    size_t w = 0;
    for (size_t i = 0; i < nv; i++)
        if (w == 0 || v[w - 1] != v[i])
            v[w++] = v[i];
    nv = w;

    s_json_t t; /* the text of the config, escaped into the body below */
    s_begin(&t);
    if (g->fw == KVC_FW_TFSERVING) {
        s_raw(&t, "model_config_list {\n  config {\n");
        s_fmt(&t, "    name: \"%s\"\n    base_path: \"/models/%s\"\n", g->name, g->name);
        s_raw(&t, "    model_platform: \"tensorflow\"\n    model_version_policy {\n"
                  "      specific {\n");
        for (size_t i = 0; i < nv; i++)
            s_fmt(&t, "        versions: %llu\n", (unsigned long long)v[i]);
        s_raw(&t, "      }\n    }\n  }\n}\n");
    } else {
        s_raw(&t, "version_policy: { specific: { versions: [");
        for (size_t i = 0; i < nv; i++)
            s_fmt(&t, "%s%llu", i ? ", " : "", (unsigned long long)v[i]);
        s_raw(&t, "] } }\n");
    }
    s_json_t vl; /* one version a line */
    s_begin(&vl);
    for (size_t i = 0; i < nv; i++)
        s_fmt(&vl, "%llu\n", (unsigned long long)v[i]);
    kvc_free(v);

    char name[80];
    snprintf(name, sizeof name, "kvc-%s", g->name);
    s_json_t j;
    s_begin(&j);
    s_raw(&j, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{");
    s_kv(&j, "name", name);
    s_raw(&j, ",");
    s_kv(&j, "namespace", p->ns);
    s_raw(&j, ",\"labels\":");
    s_model_labels(&j, p, g);
    s_raw(&j, "},\"data\":{");
    if (t.rc || vl.rc) {
        j.rc = t.rc ? t.rc : vl.rc;
    } else if (g->fw == KVC_FW_TFSERVING) {
        s_kv(&j, "models.config", t.b.data ? t.b.data : "");
        s_raw(&j, ",");
        s_kv(&j, "monitoring.config",
             "prometheus_config { enable: true, path: \"/monitoring/prometheus/metrics\" }\n");
    } else {
        s_kv(&j, "version_policy.pbtxt", t.b.data ? t.b.data : "");
    }
    s_raw(&j, ",");
    s_kv(&j, "versions", vl.b.data ? vl.b.data : "");
    s_raw(&j, "}}");
    kvc_buf_free(&t.b);
    kvc_buf_free(&vl.b);
    return s_add(p, KVC_RECONCILE_CONFIGMAP, name, &j);
}

/* Appends a JSON array of strings. */
static void s_str_array(s_json_t *j, const char *const *items, size_t n)
{
    s_raw(j, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            s_raw(j, ",");
        s_str(j, items[i]);
    }
    s_raw(j, "]");
}

/*
 * The model server. Nothing in it depends on the versions: they are in the
 * ConfigMap, mounted as a folder (not subPath, which the kubelet would
 * never refresh), so a new version reaches the server without a restart.
 */
static long s_add_deployment(kvc_reconcile_plan_t *p, const s_group_t *g)
{
    int tf = g->fw == KVC_FW_TFSERVING;
    const char *image = g->image[0] ? g->image : tf ? p->tf_image : p->kserve_image;
    char name[80], mount[80], probe[96], a[6][96];
    snprintf(name, sizeof name, "kvc-%s", g->name);
    snprintf(mount, sizeof mount, "/models/%s", g->name);
    unsigned poll = p->poll_s;
    const char *args[8];
    size_t n_args = 0;
    if (tf) {
        snprintf(probe, sizeof probe, "/v1/models/%s", g->name);
        snprintf(a[0], sizeof a[0], "--model_config_file_poll_wait_seconds=%u", poll);
        snprintf(a[1], sizeof a[1], "--file_system_poll_wait_seconds=%u", poll);
        args[n_args++] = "--port=8500";
        args[n_args++] = "--rest_api_port=8501";
        args[n_args++] = "--model_config_file=" S_CONFIG_DIR "/models.config";
        args[n_args++] = a[0];
        args[n_args++] = a[1];
        args[n_args++] = "--monitoring_config_file=" S_CONFIG_DIR "/monitoring.config";
    } else {
        snprintf(probe, sizeof probe, "/v2/health/ready");
        snprintf(a[0], sizeof a[0], "--repository-poll-secs=%u", poll);
        args[n_args++] = "--model-repository=/models";
        args[n_args++] = "--model-control-mode=poll";
        args[n_args++] = a[0];
    }
    const char *cmd = tf ? "tensorflow_model_server" : "tritonserver";

    s_json_t j;
    s_begin(&j);
    s_raw(&j, "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{");
    s_kv(&j, "name", name);
    s_raw(&j, ",");
    s_kv(&j, "namespace", p->ns);
    s_raw(&j, ",\"labels\":");
    s_model_labels(&j, p, g);
    s_raw(&j, ",\"annotations\":{");
    s_kv(&j, "kvc.io/framework", kvc_model_fw_name(g->fw));
    s_raw(&j, "}},\"spec\":{");
    s_fmt(&j, "\"replicas\":%u,\"selector\":{\"matchLabels\":", (unsigned)g->replicas);
    s_selector(&j, p, g);
    s_raw(&j, "},\"template\":{\"metadata\":{\"labels\":");
    s_model_labels(&j, p, g);
    s_raw(&j, ",\"annotations\":{\"prometheus.io/scrape\":\"true\",");
    s_kv(&j, "prometheus.io/port", tf ? "8501" : "8002");
    s_raw(&j, ",");
    s_kv(&j, "prometheus.io/path", tf ? "/monitoring/prometheus/metrics" : "/metrics");
    s_raw(&j, "}},\"spec\":{\"containers\":[{\"name\":\"server\",");
    s_kv(&j, "image", image);
    s_raw(&j, ",\"command\":");
    s_str_array(&j, &cmd, 1);
    s_raw(&j, ",\"args\":");
    s_str_array(&j, args, n_args);
    if (tf)
        s_raw(&j, ",\"ports\":[{\"name\":\"grpc\",\"containerPort\":8500,\"protocol\":\"TCP\"},"
                  "{\"name\":\"rest\",\"containerPort\":8501,\"protocol\":\"TCP\"}]");
    else
        s_raw(&j, ",\"ports\":[{\"name\":\"grpc\",\"containerPort\":8001,\"protocol\":\"TCP\"},"
                  "{\"name\":\"http\",\"containerPort\":8000,\"protocol\":\"TCP\"},"
                  "{\"name\":\"metrics\",\"containerPort\":8002,\"protocol\":\"TCP\"}]");
    s_raw(&j, ",\"readinessProbe\":{\"httpGet\":{");
    s_kv(&j, "path", probe);
    s_fmt(&j, ",\"port\":%d},\"periodSeconds\":5,\"failureThreshold\":3}", tf ? 8501 : 8000);
    s_raw(&j, ",\"volumeMounts\":[{\"name\":\"model\",");
    s_kv(&j, "mountPath", mount);
    s_raw(&j, ",\"readOnly\":true},{\"name\":\"config\",\"mountPath\":\"" S_CONFIG_DIR
              "\",\"readOnly\":true}]}],\"volumes\":[{\"name\":\"model\","
              "\"persistentVolumeClaim\":{");
    s_kv(&j, "claimName", g->volume);
    s_raw(&j, ",\"readOnly\":true}},{\"name\":\"config\",\"configMap\":{");
    s_kv(&j, "name", name);
    s_raw(&j, "}}]}}}}");
    return s_add(p, KVC_RECONCILE_DEPLOYMENT, name, &j);
}

/* The Service in front of the model's pods; "metrics" is a port on every
 * model's Service (on TF Serving it reaches the REST port, where its
 * Prometheus endpoint is). */
static long s_add_service(kvc_reconcile_plan_t *p, const s_group_t *g)
{
    int tf = g->fw == KVC_FW_TFSERVING;
    char name[80];
    snprintf(name, sizeof name, "kvc-%s", g->name);
    s_json_t j;
    s_begin(&j);
    s_raw(&j, "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{");
    s_kv(&j, "name", name);
    s_raw(&j, ",");
    s_kv(&j, "namespace", p->ns);
    s_raw(&j, ",\"labels\":");
    s_model_labels(&j, p, g);
    s_raw(&j, "},\"spec\":{\"type\":\"ClusterIP\",\"selector\":");
    s_selector(&j, p, g);
    if (tf)
        s_raw(&j, ",\"ports\":[{\"name\":\"grpc\",\"port\":8500,\"targetPort\":8500,"
                  "\"protocol\":\"TCP\"},{\"name\":\"rest\",\"port\":8501,\"targetPort\":8501,"
                  "\"protocol\":\"TCP\"},{\"name\":\"metrics\",\"port\":8502,\"targetPort\":8501,"
                  "\"protocol\":\"TCP\"}]}}");
    else
        s_raw(&j, ",\"ports\":[{\"name\":\"grpc\",\"port\":8001,\"targetPort\":8001,"
                  "\"protocol\":\"TCP\"},{\"name\":\"http\",\"port\":8000,\"targetPort\":8000,"
                  "\"protocol\":\"TCP\"},{\"name\":\"metrics\",\"port\":8002,\"targetPort\":8002,"
                  "\"protocol\":\"TCP\"}]}}");
    return s_add(p, KVC_RECONCILE_SERVICE, name, &j);
}

/* --- build ------------------------------------------------------------------------ */

/* kvc-nfs-<first 6 bytes of SHA-256(site NUL ns NUL url) as hex>. */
static void s_volume_name(const kvc_reconcile_plan_t *p, const char *url, char out[32])
{
    crypto_hash_sha256_state h;
    unsigned char d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_init(&h);
    crypto_hash_sha256_update(&h, (const unsigned char *)p->site, strlen(p->site) + 1);
    crypto_hash_sha256_update(&h, (const unsigned char *)p->ns, strlen(p->ns) + 1);
    crypto_hash_sha256_update(&h, (const unsigned char *)url, strlen(url));
    crypto_hash_sha256_final(&h, d);
    char hex[13];
    sodium_bin2hex(hex, sizeof hex, d, 6);
    snprintf(out, 32, "kvc-nfs-%s", hex);
}

/* Sets a group's error once (the first reason is the one reported). */
static void s_group_fail(s_group_t *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_group_fail(s_group_t *g, const char *fmt, ...)
{
    if (g->error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->error, sizeof g->error, fmt, ap);
    va_end(ap);
}

/* Copies a model name into a group, bounded (a name need not be terminated). */
static void s_copy_name(char *dst, const char *src)
{
    size_t n = strnlen(src, KVC_MODEL_NAME_MAX - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Checks one model entry against its group (the first entry sets it). */
static void s_check_entry(kvc_reconcile_plan_t *p, s_group_t *g, const kvc_model_t *m, int first)
{
    char storage[KVC_MODEL_STORAGE_MAX], image[KVC_MODEL_IMAGE_MAX];
    size_t sn = strnlen(m->storage, sizeof storage - 1), in = strnlen(m->image, sizeof image - 1);
    memcpy(storage, m->storage, sn);
    storage[sn] = '\0';
    memcpy(image, m->image, in);
    image[in] = '\0';
    if (!g->name_ok)
        s_group_fail(g, "model name must match [a-z0-9]([a-z0-9-]{0,%d}[a-z0-9])?",
                     KVC_RECONCILE_NAME_MAX - 2);
    if (m->version < 1 || m->version > KVC_MODEL_VERSION_MAX)
        s_group_fail(g, "model %s: version %llu out of 1..2^53", g->name,
                     (unsigned long long)m->version);
    if (m->framework != KVC_FW_TFSERVING && m->framework != KVC_FW_KSERVE_V2)
        s_group_fail(g, "model %s version %llu: unknown framework %d", g->name,
                     (unsigned long long)m->version, (int)m->framework);
    if (image[0] && !s_image_ok(image))
        s_group_fail(g, "model %s version %llu: image: not a container image reference", g->name,
                     (unsigned long long)m->version);
    if (first) {
        g->fw = m->framework;
        kvc_strlcpy(g->image, image, sizeof g->image);
        kvc_strlcpy(g->storage, storage, sizeof g->storage);
        kvc_err_t e = {0};
        if (kvc_model_storage_parse(storage, &g->parsed, &e) != 0)
            s_group_fail(g, "model %s: storage: %s", g->name, e.msg);
        else if (strcmp(g->parsed.scheme, "nfs") != 0)
            s_group_fail(g, "model %s: storage %s: only nfs:// is served by the reconciler",
                         g->name, g->parsed.scheme);
        else
            s_volume_name(p, storage, g->volume);
    } else if (m->framework != g->fw) {
        s_group_fail(g,
                     "model %s: versions disagree on the framework (%s and %s): one server "
                     "serves every version",
                     g->name, kvc_model_fw_name(g->fw), kvc_model_fw_name(m->framework));
    } else if (strcmp(storage, g->storage) != 0) {
        s_group_fail(g,
                     "model %s: version %llu has storage %s, others %s: every version of a "
                     "name must be under one base path",
                     g->name, (unsigned long long)m->version, storage, g->storage);
    } else if (strcmp(image, g->image) != 0) {
        s_group_fail(g,
                     "model %s: versions disagree on the image: one server serves every "
                     "version",
                     g->name);
    }
    uint32_t r = m->replicas < 1                        ? 1
                 : m->replicas > KVC_MODEL_REPLICAS_MAX ? KVC_MODEL_REPLICAS_MAX
                                                        : m->replicas;
    if (r > g->replicas)
        g->replicas = r;
}

/* Marks what a model in error still owns as kept, so the prune leaves it. */
static int s_keep(kvc_reconcile_plan_t *p, s_group_t *g, const kvc_model_t *models, size_t n)
{
    if (!g->name_ok)
        return KVC_OK; /* it cannot have named an object of ours */
    char name[80];
    snprintf(name, sizeof name, "kvc-%s", g->name);
    static const kvc_reconcile_kind_t kinds[] = {KVC_RECONCILE_CONFIGMAP, KVC_RECONCILE_DEPLOYMENT,
                                                 KVC_RECONCILE_SERVICE};
    for (size_t k = 0; k < 3; k++) {
        long at = s_add(p, kinds[k], name, NULL);
        if (at < 0)
            return (int)at;
    }
    /* Every export any of its versions names. */
    for (size_t i = 0; i < n; i++) {
        char mn[KVC_MODEL_NAME_MAX], url[KVC_MODEL_STORAGE_MAX], vol[32];
        s_copy_name(mn, models[i].name);
        if (strcmp(mn, g->name) != 0)
            continue;
        size_t un = strnlen(models[i].storage, sizeof url - 1);
        memcpy(url, models[i].storage, un);
        url[un] = '\0';
        kvc_model_storage_t st;
        kvc_err_t e = {0};
        if (kvc_model_storage_parse(url, &st, &e) != 0 || strcmp(st.scheme, "nfs") != 0)
            continue;
        s_volume_name(p, url, vol);
        long at = s_add(p, KVC_RECONCILE_PV, vol, NULL);
        if (at >= 0)
            at = s_add(p, KVC_RECONCILE_PVC, vol, NULL);
        if (at < 0)
            return (int)at;
    }
    return KVC_OK;
}

int kvc_reconcile_build(const kvc_reconcile_opts_t *o, const kvc_model_t *models, size_t n,
                        kvc_reconcile_plan_t **plan, kvc_err_t *err)
{
    *plan = NULL;
    if (!o || !o->site)
        return kvc_err_set(err, KVC_EINVAL, "reconcile: opts.site is required");
    const char *ns = o->ns ? o->ns : KVC_RECONCILE_NS_DEFAULT;
    const char *tfi = o->tfserving_image ? o->tfserving_image : KVC_RECONCILE_TFSERVING_IMAGE;
    const char *ksi = o->kserve_image ? o->kserve_image : KVC_RECONCILE_KSERVE_IMAGE;
    if (!s_dns_label_ok(o->site, 63))
        return kvc_err_set(err, KVC_EINVAL, "reconcile: site: must be a DNS label [a-z0-9-]{1,63}");
    if (!s_dns_label_ok(ns, 63))
        return kvc_err_set(err, KVC_EINVAL,
                           "reconcile: namespace: must be a DNS label [a-z0-9-]{1,63}");
    if (!s_image_ok(tfi) || !s_image_ok(ksi))
        return kvc_err_set(err, KVC_EINVAL, "reconcile: %s image: not a container image reference",
                           s_image_ok(tfi) ? "kserve-v2" : "tfserving");
    if (o->poll_s > KVC_RECONCILE_POLL_MAX)
        return kvc_err_set(err, KVC_EINVAL, "reconcile: poll %u s: must be 1..%d", o->poll_s,
                           KVC_RECONCILE_POLL_MAX);
    if (n > KVC_RECONCILE_OBJECTS_MAX || (n && !models))
        return kvc_err_set(err, KVC_ERANGE, "reconcile: %zu model versions: at most %d", n,
                           KVC_RECONCILE_OBJECTS_MAX);
    if (sodium_init() < 0)
        return kvc_err_set(err, KVC_EIO, "reconcile: libsodium failed to initialise");

    kvc_reconcile_plan_t *p = kvc_calloc(1, sizeof *p);
    if (!p)
        return kvc_err_set(err, KVC_ENOMEM, "reconcile: out of memory");
    kvc_strlcpy(p->ns, ns, sizeof p->ns);
    kvc_strlcpy(p->site, o->site, sizeof p->site);
    kvc_strlcpy(p->tf_image, tfi, sizeof p->tf_image);
    kvc_strlcpy(p->kserve_image, ksi, sizeof p->kserve_image);
    p->poll_s = o->poll_s ? o->poll_s : KVC_RECONCILE_POLL_DEFAULT;
    int rc = KVC_ENOMEM;
    if (n) {
        p->groups = kvc_calloc(n, sizeof *p->groups);
        p->entries = kvc_calloc(n, sizeof *p->entries);
        if (!p->groups || !p->entries)
            goto fail;
    }

    /* Group the versions by name. */
    for (size_t i = 0; i < n; i++) {
        char name[KVC_MODEL_NAME_MAX];
        s_copy_name(name, models[i].name);
        size_t gi = 0;
        while (gi < p->n_groups && strcmp(p->groups[gi].name, name) != 0)
            gi++;
        int first = gi == p->n_groups;
        s_group_t *g = &p->groups[gi];
        if (first) {
            p->n_groups++;
            kvc_strlcpy(g->name, name, sizeof g->name);
            g->name_ok = s_dns_label_ok(name, KVC_RECONCILE_NAME_MAX);
            for (int k = 0; k < KVC_RECONCILE_KINDS; k++)
                g->obj[k] = -1;
        }
        s_check_entry(p, g, &models[i], first);
        p->entries[p->n_entries++] = (s_entry_t){gi, models[i].version};
    }

    /* Objects in apply order: what a later one refers to exists before it. */
    long at = s_add_namespace(p);
    for (int kind = KVC_RECONCILE_PV; at >= 0 && kind < KVC_RECONCILE_KINDS; kind++) {
        for (size_t gi = 0; at >= 0 && gi < p->n_groups; gi++) {
            s_group_t *g = &p->groups[gi];
            if (g->error[0])
                continue;
            switch (kind) {
            case KVC_RECONCILE_PV:
                at = s_add_pv(p, g);
                break;
            case KVC_RECONCILE_PVC:
                at = s_add_pvc(p, g);
                break;
            case KVC_RECONCILE_CONFIGMAP:
                at = s_add_configmap(p, g, gi);
                break;
            case KVC_RECONCILE_DEPLOYMENT:
                at = s_add_deployment(p, g);
                break;
            default:
                at = s_add_service(p, g);
                break;
            }
            if (at >= 0)
                g->obj[kind] = at;
        }
    }
    for (size_t gi = 0; at >= 0 && gi < p->n_groups; gi++)
        if (p->groups[gi].error[0])
            at = s_keep(p, &p->groups[gi], models, n);
    if (at < 0) {
        rc = (int)at;
        goto fail;
    }
    *plan = p;
    return KVC_OK;
fail:
    kvc_reconcile_plan_destroy(&p);
    return kvc_err_set(err, rc, "reconcile: %s",
                       rc == KVC_ENOMEM   ? "out of memory"
                       : rc == KVC_ERANGE ? "too many objects, or a body too long"
                                          : "cannot build the plan");
}

void kvc_reconcile_plan_destroy(kvc_reconcile_plan_t **plan_p)
{
    if (!plan_p || !*plan_p)
        return;
    kvc_reconcile_plan_t *p = *plan_p;
    for (size_t i = 0; i < p->n_objs; i++)
        kvc_free(p->objs[i].body);
    kvc_free(p->objs);
    kvc_free(p->groups);
    kvc_free(p->entries);
    kvc_free(p);
    *plan_p = NULL;
}

size_t kvc_reconcile_plan_count(const kvc_reconcile_plan_t *plan)
{
    return plan ? plan->n_objs : 0;
}

const kvc_reconcile_obj_t *kvc_reconcile_plan_object(const kvc_reconcile_plan_t *plan, size_t i)
{
    return plan && i < plan->n_objs ? &plan->objs[i] : NULL;
}

const kvc_reconcile_obj_t *kvc_reconcile_plan_find(const kvc_reconcile_plan_t *plan,
                                                   kvc_reconcile_kind_t kind, const char *name)
{
    long at = plan && name ? s_find(plan, kind, name) : -1;
    return at >= 0 ? &plan->objs[at] : NULL;
}

const char *kvc_reconcile_plan_error(const kvc_reconcile_plan_t *plan, const char *name)
{
    for (size_t i = 0; plan && name && i < plan->n_groups; i++)
        if (strcmp(plan->groups[i].name, name) == 0)
            return plan->groups[i].error[0] ? plan->groups[i].error : NULL;
    return NULL;
}

/* --- apply -------------------------------------------------------------------------- */

/* What one apply learnt about a model name. */
typedef struct {
    int failed;
    uint32_t ready;
    char error[KVC_MODEL_ERROR_MAX];
} s_state_t;

/* Fails a model for this pass (the first reason stays). */
static void s_state_fail(s_state_t *s, const char *msg)
{
    if (s->failed)
        return;
    s->failed = 1;
    kvc_strlcpy(s->error, msg, sizeof s->error);
}

/*
 * Tells whether a live object is ours: 1 if it carries managed-by=kvc and
 * no other site's label, 0 if not (why in msg), negative for a body that
 * does not parse.
 */
static int s_is_ours(const kvc_reconcile_plan_t *p, const kvc_reconcile_obj_t *o, const char *body,
                     size_t len, char *msg, size_t size)
{
    static const char *const mb_path[] = {"metadata", "labels", S_MANAGED_BY};
    static const char *const site_path[] = {"metadata", "labels", "kvc.io/site"};
    char *mb = NULL, *site = NULL;
    int rc = kvc_kube_json_string(body, len, mb_path, 3, &mb, NULL);
    if (rc < 0)
        return rc;
    int ours = rc == 1 && strcmp(mb, "kvc") == 0;
    kvc_free(mb);
    if (!ours) {
        snprintf(msg, size, "%s %s exists and is not managed by kvc", s_kind_words[o->kind],
                 o->name);
        return 0;
    }
    rc = kvc_kube_json_string(body, len, site_path, 3, &site, NULL);
    if (rc < 0)
        return rc;
    if (rc == 1 && strcmp(site, p->site) != 0) {
        /* Another site's reconciler owns it (sites sharing a namespace). */
        char clean[64];
        size_t i = 0;
        for (; site[i] && i < sizeof clean - 1; i++)
            clean[i] = (site[i] >= 0x20 && site[i] < 0x7f) ? site[i] : '?';
        clean[i] = '\0';
        snprintf(msg, size, "%s %s exists and is managed by kvc for site %s", s_kind_words[o->kind],
                 o->name, clean);
        ours = 0;
    }
    kvc_free(site);
    return ours;
}

/*
 * Applies one object unless it exists and is not ours. 0 when applied
 * (*ready from a Deployment's status), else a negative code with msg.
 */
static int s_apply_one(kvc_kube_t *kube, const kvc_reconcile_plan_t *p,
                       const kvc_reconcile_obj_t *o, uint32_t *ready, char *msg, size_t size)
{
    char *body = NULL;
    size_t len = 0;
    kvc_err_t e = {0};
    int rc = kvc_kube_get(kube, o->path, &body, &len, &e);
    if (rc < 0) {
        snprintf(msg, size, "%s", e.msg);
        return rc;
    }
    if (rc == 1) {
        rc = s_is_ours(p, o, body, len, msg, size);
        kvc_free(body);
        body = NULL;
        if (rc < 0)
            snprintf(msg, size, "%s %s: the API answered a body that is not an object",
                     s_kind_words[o->kind], o->name);
        if (rc <= 0)
            return rc < 0 ? KVC_EPARSE : KVC_EEXIST;
    }
    rc = kvc_kube_apply(kube, o->path, o->body, o->body_len,
                        o->kind == KVC_RECONCILE_DEPLOYMENT ? &body : NULL, &len, &e);
    if (rc != 0) {
        snprintf(msg, size, "%s", e.msg);
        return rc;
    }
    if (o->kind == KVC_RECONCILE_DEPLOYMENT) {
        static const char *const ready_path[] = {"status", "readyReplicas"};
        uint64_t v = 0;
        rc = kvc_kube_json_u64(body, len, ready_path, 2, &v);
        kvc_free(body);
        if (rc < 0) {
            snprintf(msg, size, "deployment %s: status.readyReplicas: not a count", o->name);
            return KVC_EPARSE;
        }
        *ready = rc == 1 ? (v > UINT32_MAX ? UINT32_MAX : (uint32_t)v) : 0;
    }
    return KVC_OK;
}

/* The names a prune's list found. */
typedef struct {
    char (*names)[64];
    size_t n, cap;
    int skipped; /* names no object of ours could have */
} s_names_t;

/* Collects one listed name (kvc_kube_list callback). */
static int s_collect(const char *name, void *arg)
{
    s_names_t *ns = arg;
    if (!s_dns_label_ok(name, 63)) {
        ns->skipped++; /* not a name we write, and not safe in a path */
        return 0;
    }
    if (ns->n == ns->cap) {
        if (ns->cap >= KVC_RECONCILE_OBJECTS_MAX)
            return KVC_ERANGE;
        size_t cap = ns->cap ? ns->cap * 2 : 16;
        void *q = kvc_realloc(ns->names, cap * sizeof *ns->names);
        if (!q)
            return KVC_ENOMEM;
        ns->names = q;
        ns->cap = cap;
    }
    kvc_strlcpy(ns->names[ns->n++], name, sizeof ns->names[0]);
    return 0;
}

/* Deletes this site's objects of one kind that the plan does not hold. */
static int s_prune_kind(kvc_kube_t *kube, const kvc_reconcile_plan_t *p, kvc_reconcile_kind_t kind,
                        const char *selector, kvc_err_t *err)
{
    char coll[256], path[384];
    s_collection_path(p, kind, coll, sizeof coll);
    s_names_t names = {0};
    int rc = kvc_kube_list(kube, coll, selector, s_collect, &names, err);
    if (rc > 0 || rc == KVC_ERANGE)
        rc = kvc_err_set(err, KVC_ERANGE, "reconcile: prune: over %d %ss to look at",
                         KVC_RECONCILE_OBJECTS_MAX, s_kind_words[kind]);
    for (size_t i = 0; rc == KVC_OK && i < names.n; i++) {
        if (s_find(p, kind, names.names[i]) >= 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", coll, names.names[i]);
        rc = kvc_kube_delete(kube, path, err);
    }
    kvc_free(names.names);
    return rc;
}

int kvc_reconcile_apply(kvc_kube_t *kube, const kvc_reconcile_plan_t *plan, kvc_model_status_t *st,
                        size_t cap, size_t *n_st, kvc_err_t *err)
{
    *n_st = 0;
    if (!kube || !plan || (plan->n_entries && !st))
        return kvc_err_set(err, KVC_EINVAL, "reconcile: apply: no client, plan or status array");
    if (cap < plan->n_entries)
        return kvc_err_set(err, KVC_ERANGE, "reconcile: apply: %zu statuses needed, room for %zu",
                           plan->n_entries, cap);
    s_state_t *s = kvc_calloc(plan->n_groups ? plan->n_groups : 1, sizeof *s);
    if (!s)
        return kvc_err_set(err, KVC_ENOMEM, "reconcile: out of memory");
    for (size_t gi = 0; gi < plan->n_groups; gi++)
        if (plan->groups[gi].error[0])
            s_state_fail(&s[gi], plan->groups[gi].error);

    int first_rc = KVC_OK;
    char first_msg[KVC_MODEL_ERROR_MAX] = "";
    char msg[KVC_MODEL_ERROR_MAX];

    /* The namespace: created when missing, used as it is when there. */
    const kvc_reconcile_obj_t *nso = &plan->objs[0];
    char *body = NULL;
    kvc_err_t e = {0};
    int rc = kvc_kube_get(kube, nso->path, &body, NULL, &e);
    kvc_free(body);
    if (rc == 0)
        rc = kvc_kube_apply(kube, nso->path, nso->body, nso->body_len, NULL, NULL, &e);
    int ns_failed = rc < 0;
    if (ns_failed) {
        /* Nothing can go in; and without a namespace there is nothing to prune. */
        snprintf(msg, sizeof msg, "namespace %s: %s", plan->ns, e.msg);
        for (size_t gi = 0; gi < plan->n_groups; gi++)
            s_state_fail(&s[gi], msg);
        first_rc = rc;
        kvc_strlcpy(first_msg, msg, sizeof first_msg);
    }

    /* A model's failure does not stop the others: it is recorded in its state. */
    for (size_t i = 1; !ns_failed && i < plan->n_objs; i++) {
        const kvc_reconcile_obj_t *o = &plan->objs[i];
        if (!o->body)
            continue; /* kept for a model in error */
        /* Is any model still waiting for this object? */
        int wanted = 0;
        for (size_t gi = 0; gi < plan->n_groups; gi++)
            if (plan->groups[gi].obj[o->kind] == (long)i && !s[gi].failed)
                wanted = 1;
        if (!wanted)
            continue; /* e.g. its volume is someone else's: build nothing on it */
        uint32_t ready = 0;
        msg[0] = '\0';
        rc = s_apply_one(kube, plan, o, &ready, msg, sizeof msg);
        for (size_t gi = 0; gi < plan->n_groups; gi++) {
            if (plan->groups[gi].obj[o->kind] != (long)i)
                continue;
            if (rc != KVC_OK)
                s_state_fail(&s[gi], msg);
            else if (o->kind == KVC_RECONCILE_DEPLOYMENT)
                s[gi].ready = ready;
        }
        if (rc != KVC_OK && first_rc == KVC_OK) {
            first_rc = rc;
            kvc_strlcpy(first_msg, msg, sizeof first_msg);
        }
    }

    size_t failed = 0;
    for (size_t gi = 0; gi < plan->n_groups; gi++)
        if (s[gi].failed) {
            failed++;
            if (first_rc == KVC_OK) { /* an error of the build */
                first_rc = KVC_EINVAL;
                kvc_strlcpy(first_msg, s[gi].error, sizeof first_msg);
            }
        }

    for (size_t i = 0; i < plan->n_entries; i++) {
        const s_group_t *g = &plan->groups[plan->entries[i].group];
        const s_state_t *gs = &s[plan->entries[i].group];
        kvc_model_status_t *out = &st[i];
        memset(out, 0, sizeof *out);
        kvc_strlcpy(out->site, plan->site, sizeof out->site);
        kvc_strlcpy(out->model, g->name, sizeof out->model);
        out->version = plan->entries[i].version;
        out->applied = !gs->failed;
        out->desired_replicas = g->replicas;
        out->ready_replicas = gs->ready;
        kvc_strlcpy(out->error, gs->error, sizeof out->error);
    }
    *n_st = plan->n_entries;
    kvc_free(s);

    /* Prune what a retired model left, dependants first (the server
     * before its volume). */
    int prune_rc = KVC_OK;
    kvc_err_t pe = {0};
    if (!ns_failed) {
        char selector[160];
        snprintf(selector, sizeof selector, S_MANAGED_BY "=kvc,kvc.io/site=%s", plan->site);
        static const kvc_reconcile_kind_t order[] = {
            KVC_RECONCILE_SERVICE, KVC_RECONCILE_DEPLOYMENT, KVC_RECONCILE_CONFIGMAP,
            KVC_RECONCILE_PVC, KVC_RECONCILE_PV};
        for (size_t k = 0; prune_rc == KVC_OK && k < sizeof order / sizeof order[0]; k++)
            prune_rc = s_prune_kind(kube, plan, order[k], selector, &pe);
    }

    if (first_rc != KVC_OK)
        return kvc_err_set(err, first_rc, "reconcile: %zu of %zu models not applied; first: %s",
                           failed, plan->n_groups, first_msg);
    if (prune_rc != KVC_OK)
        return kvc_err_set(err, prune_rc, "reconcile: prune: %s", pe.msg);
    if (err)
        memset(err, 0, sizeof *err);
    return KVC_OK;
}
