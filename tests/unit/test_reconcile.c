/* Unit tests of kvc_reconcile_build (peer/reconcile.c) on fixed models: the
 * objects' names and order, the NFS volume (server, path, read-only), the
 * versions in the ConfigMap, the labels, that a change of versions alone
 * leaves every other body byte for byte the same (no pod restart), what a
 * model in error keeps, bad options, and failed allocations. No IO: the
 * build is pure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "json_cursor.h"
#include "kube.h"
#include "reconcile.h"

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

static const kvc_reconcile_opts_t s_opts = {NULL, "edge-a", NULL, NULL, 0};

/* Builds, which must succeed. */
static kvc_reconcile_plan_t *s_build(const kvc_reconcile_opts_t *o, const kvc_model_t *m, size_t n)
{
    kvc_reconcile_plan_t *p = NULL;
    kvc_err_t err = {0};
    int rc = kvc_reconcile_build(o, m, n, &p, &err);
    if (rc)
        print_error("build: %s\n", err.msg);
    assert_int_equal(rc, KVC_OK);
    assert_non_null(p);
    return p;
}

/* The object, which must be in the plan with a body. */
static const kvc_reconcile_obj_t *s_obj(const kvc_reconcile_plan_t *p, kvc_reconcile_kind_t kind,
                                        const char *name)
{
    const kvc_reconcile_obj_t *o = kvc_reconcile_plan_find(p, kind, name);
    if (!o)
        print_error("no %s %s in the plan\n", kvc_reconcile_kind_name(kind), name);
    assert_non_null(o);
    assert_non_null(o->body);
    assert_int_equal(strlen(o->body), o->body_len);
    return o;
}

/* The string at a path of an object's body (caller frees), or NULL. */
static char *s_at(const kvc_reconcile_obj_t *o, const char *k1, const char *k2, const char *k3,
                  const char *k4)
{
    const char *path[4] = {k1, k2, k3, k4};
    size_t depth = k4 ? 4 : k3 ? 3 : k2 ? 2 : 1;
    char *out = NULL;
    if (kvc_kube_json_string(o->body, o->body_len, path, depth, &out, NULL) != 1)
        return NULL;
    return out;
}

/* Asserts the string at a path. */
static void s_expect(const kvc_reconcile_obj_t *o, const char *k1, const char *k2, const char *k3,
                     const char *k4, const char *want)
{
    char *v = s_at(o, k1, k2, k3, k4);
    if (!v)
        print_error("%s: no string at %s.%s.%s.%s\n", o->name, k1, k2 ? k2 : "", k3 ? k3 : "",
                    k4 ? k4 : "");
    assert_non_null(v);
    assert_string_equal(v, want);
    kvc_free(v);
}

/* Asserts that a body is one JSON value and nothing after it. */
static void s_valid_json(const kvc_reconcile_obj_t *o)
{
    kvc_json_cursor_t c;
    kvc_json_cursor_init(&c, o->body, o->body_len, NULL);
    assert_int_equal(kvc_json_cursor_peek(&c), '{');
    assert_int_equal(kvc_json_cursor_skip(&c), 0);
    assert_int_equal(kvc_json_cursor_peek(&c), -1);
}

/* Tells whether s is kvc-nfs-<12 lower-case hex>. */
static int s_volume_name(const char *s)
{
    if (strlen(s) != 20 || strncmp(s, "kvc-nfs-", 8) != 0)
        return 0;
    for (int i = 8; i < 20; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* One namespace and five objects per name, in apply order, each valid JSON. */
static void test_objects_and_order(void **state)
{
    (void)state;
    kvc_model_t m[] = {
        s_model("resnet", 2, KVC_FW_TFSERVING, "nfs://nfs1.lan/export/models/resnet", 2),
        s_model("bert", 7, KVC_FW_KSERVE_V2, "nfs://10.0.0.5/srv/bert", 1),
        s_model("resnet", 1, KVC_FW_TFSERVING, "nfs://nfs1.lan/export/models/resnet", 3),
    };
    kvc_reconcile_plan_t *p = s_build(&s_opts, m, 3);
    /* A namespace, and per name a PV, PVC, ConfigMap, Deployment, Service. */
    assert_int_equal(kvc_reconcile_plan_count(p), 11);
    kvc_reconcile_kind_t last = KVC_RECONCILE_NAMESPACE;
    for (size_t i = 0; i < kvc_reconcile_plan_count(p); i++) {
        const kvc_reconcile_obj_t *o = kvc_reconcile_plan_object(p, i);
        assert_true(o->kind >= last); /* apply order: what is referred to first */
        last = o->kind;
        assert_non_null(o->body);
        s_valid_json(o);
    }
    assert_null(kvc_reconcile_plan_object(p, 11));
    const kvc_reconcile_obj_t *ns = kvc_reconcile_plan_object(p, 0);
    assert_int_equal(ns->kind, KVC_RECONCILE_NAMESPACE);
    assert_string_equal(ns->name, "kvc-models");
    assert_string_equal(ns->path, "/api/v1/namespaces/kvc-models");

    const kvc_reconcile_obj_t *d = s_obj(p, KVC_RECONCILE_DEPLOYMENT, "kvc-resnet");
    assert_string_equal(d->path, "/apis/apps/v1/namespaces/kvc-models/deployments/kvc-resnet");
    assert_non_null(strstr(d->body, "\"replicas\":3,")); /* the largest of the versions' */
    s_expect(d, "kind", NULL, NULL, NULL, "Deployment");
    s_expect(d, "apiVersion", NULL, NULL, NULL, "apps/v1");
    s_expect(d, "metadata", "namespace", NULL, NULL, "kvc-models");
    s_obj(p, KVC_RECONCILE_SERVICE, "kvc-resnet");
    s_obj(p, KVC_RECONCILE_CONFIGMAP, "kvc-resnet");
    s_obj(p, KVC_RECONCILE_DEPLOYMENT, "kvc-bert");
    const kvc_reconcile_obj_t *svc = s_obj(p, KVC_RECONCILE_SERVICE, "kvc-bert");
    assert_string_equal(svc->path, "/api/v1/namespaces/kvc-models/services/kvc-bert");
    assert_non_null(strstr(svc->body, "{\"name\":\"grpc\",\"port\":8001,"));
    assert_non_null(strstr(svc->body, "{\"name\":\"http\",\"port\":8000,"));
    assert_non_null(strstr(svc->body, "{\"name\":\"metrics\",\"port\":8002,"));
    svc = s_obj(p, KVC_RECONCILE_SERVICE, "kvc-resnet");
    assert_non_null(strstr(svc->body, "{\"name\":\"grpc\",\"port\":8500,"));
    assert_non_null(strstr(svc->body, "{\"name\":\"rest\",\"port\":8501,"));
    assert_non_null(strstr(svc->body, "{\"name\":\"metrics\",\"port\":8502,"));
    assert_null(kvc_reconcile_plan_error(p, "resnet"));
    assert_null(kvc_reconcile_plan_error(p, "bert"));
    kvc_reconcile_plan_destroy(&p);
    assert_null(p);
    kvc_reconcile_plan_destroy(&p); /* NULL is fine */
}

/* The PV is read-only NFS at the URL's server and path; the claim names it. */
static void test_nfs_volume(void **state)
{
    (void)state;
    kvc_model_t m =
        s_model("resnet", 1, KVC_FW_TFSERVING, "nfs://nfs1.lan/export/models/resnet", 1);
    kvc_reconcile_plan_t *p = s_build(&s_opts, &m, 1);
    const kvc_reconcile_obj_t *pv = kvc_reconcile_plan_object(p, 1);
    assert_int_equal(pv->kind, KVC_RECONCILE_PV);
    assert_true(s_volume_name(pv->name));
    char want_path[64];
    snprintf(want_path, sizeof want_path, "/api/v1/persistentvolumes/%s", pv->name);
    assert_string_equal(pv->path, want_path);
    s_expect(pv, "spec", "nfs", "server", NULL, "nfs1.lan");
    s_expect(pv, "spec", "nfs", "path", NULL, "/export/models/resnet");
    assert_non_null(strstr(pv->body, "\"path\":\"/export/models/resnet\",\"readOnly\":true}"));
    assert_non_null(strstr(pv->body, "\"accessModes\":[\"ReadOnlyMany\"]"));
    s_expect(pv, "spec", "persistentVolumeReclaimPolicy", NULL, NULL, "Retain");
    s_expect(pv, "spec", "storageClassName", NULL, NULL, "");
    s_expect(pv, "spec", "capacity", "storage", NULL, "1Gi");
    assert_null(strstr(pv->body, "claimRef")); /* the PV controller's field (atomic in SSA) */
    s_expect(pv, "metadata", "annotations", "kvc.io/storage-url", NULL,
             "nfs://nfs1.lan/export/models/resnet");
    assert_null(s_at(pv, "metadata", "namespace", NULL, NULL)); /* cluster-scoped */

    const kvc_reconcile_obj_t *pvc = s_obj(p, KVC_RECONCILE_PVC, pv->name);
    s_expect(pvc, "spec", "volumeName", NULL, NULL, pv->name);
    s_expect(pvc, "spec", "storageClassName", NULL, NULL, "");
    s_expect(pvc, "metadata", "namespace", NULL, NULL, "kvc-models");
    assert_non_null(strstr(pvc->body, "\"accessModes\":[\"ReadOnlyMany\"]"));

    /* The Deployment mounts that claim read-only at the base path. */
    const kvc_reconcile_obj_t *d = s_obj(p, KVC_RECONCILE_DEPLOYMENT, "kvc-resnet");
    char want[160];
    snprintf(want, sizeof want,
             "\"persistentVolumeClaim\":{\"claimName\":\"%s\",\"readOnly\":true}", pv->name);
    assert_non_null(strstr(d->body, want));
    assert_non_null(
        strstr(d->body, "{\"name\":\"model\",\"mountPath\":\"/models/resnet\",\"readOnly\":true}"));

    /* The name is a hash of site, namespace and URL: stable, and distinct per site. */
    kvc_reconcile_plan_t *again = s_build(&s_opts, &m, 1);
    assert_string_equal(kvc_reconcile_plan_object(again, 1)->name, pv->name);
    kvc_reconcile_opts_t other = s_opts;
    other.site = "edge-b";
    kvc_reconcile_plan_t *b = s_build(&other, &m, 1);
    assert_string_not_equal(kvc_reconcile_plan_object(b, 1)->name, pv->name);
    kvc_reconcile_plan_destroy(&b);
    kvc_reconcile_plan_destroy(&again);
    kvc_reconcile_plan_destroy(&p);

    /* Two names on one export share one PV and claim. */
    kvc_model_t two[] = {s_model("a", 1, KVC_FW_TFSERVING, "nfs://s/x", 1),
                         s_model("b", 1, KVC_FW_TFSERVING, "nfs://s/x", 1)};
    p = s_build(&s_opts, two, 2);
    assert_int_equal(kvc_reconcile_plan_count(p), 1 + 1 + 1 + 2 * 3);
    kvc_reconcile_plan_destroy(&p);
}

/* The ConfigMap lists exactly the registry's versions, sorted, once each. */
static void test_configmap_versions(void **state)
{
    (void)state;
    kvc_model_t m[] = {
        s_model("resnet", 12, KVC_FW_TFSERVING, "nfs://s/m/resnet", 1),
        s_model("resnet", 3, KVC_FW_TFSERVING, "nfs://s/m/resnet", 1),
        s_model("resnet", 12, KVC_FW_TFSERVING, "nfs://s/m/resnet", 1), /* twice: once */
        s_model("other", 5, KVC_FW_TFSERVING, "nfs://s/m/other", 1),
    };
    kvc_reconcile_plan_t *p = s_build(&s_opts, m, 4);
    const kvc_reconcile_obj_t *cm = s_obj(p, KVC_RECONCILE_CONFIGMAP, "kvc-resnet");
    char *cfg = s_at(cm, "data", "models.config", NULL, NULL);
    assert_non_null(cfg);
    assert_string_equal(cfg, "model_config_list {\n"
                             "  config {\n"
                             "    name: \"resnet\"\n"
                             "    base_path: \"/models/resnet\"\n"
                             "    model_platform: \"tensorflow\"\n"
                             "    model_version_policy {\n"
                             "      specific {\n"
                             "        versions: 3\n"
                             "        versions: 12\n"
                             "      }\n"
                             "    }\n"
                             "  }\n"
                             "}\n");
    kvc_free(cfg);
    s_expect(cm, "data", "monitoring.config", NULL, NULL,
             "prometheus_config { enable: true, path: \"/monitoring/prometheus/metrics\" }\n");
    s_expect(cm, "data", "versions", NULL, NULL, "3\n12\n");
    s_expect(s_obj(p, KVC_RECONCILE_CONFIGMAP, "kvc-other"), "data", "versions", NULL, NULL, "5\n");
    kvc_reconcile_plan_destroy(&p);

    /* Triton: the versions, and the version_policy that would serve them. */
    kvc_model_t t[] = {s_model("bert", 2, KVC_FW_KSERVE_V2, "nfs://s/m/bert", 1),
                       s_model("bert", 1, KVC_FW_KSERVE_V2, "nfs://s/m/bert", 1)};
    p = s_build(&s_opts, t, 2);
    cm = s_obj(p, KVC_RECONCILE_CONFIGMAP, "kvc-bert");
    s_expect(cm, "data", "version_policy.pbtxt", NULL, NULL,
             "version_policy: { specific: { versions: [1, 2] } }\n");
    s_expect(cm, "data", "versions", NULL, NULL, "1\n2\n");
    kvc_reconcile_plan_destroy(&p);
}

/* Labels on every object; the server's args, probe, ports and mounts. */
static void test_labels_and_server(void **state)
{
    (void)state;
    kvc_model_t m = s_model("resnet", 1, KVC_FW_TFSERVING, "nfs://s/m/resnet", 2);
    kvc_reconcile_opts_t o = {"ml", "edge-a", NULL, NULL, 7};
    kvc_reconcile_plan_t *p = s_build(&o, &m, 1);
    static const kvc_reconcile_kind_t kinds[] = {KVC_RECONCILE_CONFIGMAP, KVC_RECONCILE_DEPLOYMENT,
                                                 KVC_RECONCILE_SERVICE};
    for (size_t k = 0; k < 3; k++) {
        const kvc_reconcile_obj_t *x = s_obj(p, kinds[k], "kvc-resnet");
        s_expect(x, "metadata", "labels", "app.kubernetes.io/name", NULL, "resnet");
        s_expect(x, "metadata", "labels", "app.kubernetes.io/managed-by", NULL, "kvc");
        s_expect(x, "metadata", "labels", "kvc.io/site", NULL, "edge-a");
        s_expect(x, "metadata", "labels", "kvc.io/model", NULL, "resnet");
        s_expect(x, "metadata", "namespace", NULL, NULL, "ml");
    }
    const kvc_reconcile_obj_t *pv = kvc_reconcile_plan_object(p, 1);
    s_expect(pv, "metadata", "labels", "app.kubernetes.io/managed-by", NULL, "kvc");
    s_expect(pv, "metadata", "labels", "kvc.io/site", NULL, "edge-a");
    s_expect(pv, "metadata", "labels", "kvc.io/storage", NULL, pv->name + 8);

    const kvc_reconcile_obj_t *d = s_obj(p, KVC_RECONCILE_DEPLOYMENT, "kvc-resnet");
    const char *tl[] = {"spec", "template", "metadata", "labels", "app.kubernetes.io/managed-by"};
    char *v = NULL;
    assert_int_equal(kvc_kube_json_string(d->body, d->body_len, tl, 5, &v, NULL), 1);
    assert_string_equal(v, "kvc");
    kvc_free(v);
    s_expect(d, "metadata", "annotations", "kvc.io/framework", NULL, "tfserving");
    assert_non_null(strstr(d->body, "\"selector\":{\"matchLabels\":{\"kvc.io/model\":\"resnet\","
                                    "\"kvc.io/site\":\"edge-a\"}}"));
    assert_non_null(strstr(d->body, "\"prometheus.io/scrape\":\"true\""));
    assert_non_null(strstr(d->body, "\"prometheus.io/path\":\"/monitoring/prometheus/metrics\""));
    assert_non_null(strstr(d->body, "\"image\":\"tensorflow/serving:2.14.1\""));
    assert_non_null(
        strstr(d->body,
               "\"args\":[\"--port=8500\",\"--rest_api_port=8501\","
               "\"--model_config_file=/etc/kvc-model/models.config\","
               "\"--model_config_file_poll_wait_seconds=7\",\"--file_system_poll_wait_seconds=7\","
               "\"--monitoring_config_file=/etc/kvc-model/monitoring.config\"]"));
    assert_non_null(strstr(d->body,
                           "\"readinessProbe\":{\"httpGet\":{\"path\":\"/v1/models/resnet\","
                           "\"port\":8501}"));
    assert_non_null(strstr(d->body, "\"configMap\":{\"name\":\"kvc-resnet\"}"));
    assert_null(strstr(d->body, "subPath")); /* a subPath mount is never refreshed */
    kvc_reconcile_plan_destroy(&p);

    /* Triton, with the image the model names. */
    kvc_model_t t = s_model("bert", 1, KVC_FW_KSERVE_V2, "nfs://s/m/bert", 1);
    kvc_strlcpy(t.image, "registry.lan/triton:24.01", sizeof t.image);
    p = s_build(&s_opts, &t, 1);
    d = s_obj(p, KVC_RECONCILE_DEPLOYMENT, "kvc-bert");
    assert_non_null(strstr(d->body, "\"image\":\"registry.lan/triton:24.01\""));
    assert_non_null(strstr(d->body,
                           "\"args\":[\"--model-repository=/models\","
                           "\"--model-control-mode=poll\",\"--repository-poll-secs=30\"]"));
    assert_non_null(strstr(d->body, "{\"name\":\"http\",\"containerPort\":8000,"));
    assert_non_null(strstr(d->body, "\"path\":\"/v2/health/ready\",\"port\":8000}"));
    assert_non_null(strstr(d->body, "\"mountPath\":\"/models/bert\",\"readOnly\":true"));
    s_expect(d, "metadata", "annotations", "kvc.io/framework", NULL, "kserve-v2");
    kvc_reconcile_plan_destroy(&p);
}

/* Plans that differ only in versions differ only in ConfigMaps. */
static void test_versions_do_not_touch_the_pod(void **state)
{
    (void)state;
    kvc_model_t a[] = {s_model("resnet", 1, KVC_FW_TFSERVING, "nfs://s/m/resnet", 2),
                       s_model("bert", 4, KVC_FW_KSERVE_V2, "nfs://s/m/bert", 1)};
    kvc_model_t b[] = {s_model("resnet", 1, KVC_FW_TFSERVING, "nfs://s/m/resnet", 2),
                       s_model("bert", 5, KVC_FW_KSERVE_V2, "nfs://s/m/bert", 1),
                       s_model("resnet", 2, KVC_FW_TFSERVING, "nfs://s/m/resnet", 2),
                       s_model("bert", 4, KVC_FW_KSERVE_V2, "nfs://s/m/bert", 1)};
    kvc_reconcile_plan_t *pa = s_build(&s_opts, a, 2), *pb = s_build(&s_opts, b, 4);
    assert_int_equal(kvc_reconcile_plan_count(pa), kvc_reconcile_plan_count(pb));
    int cm_differs = 0;
    for (size_t i = 0; i < kvc_reconcile_plan_count(pa); i++) {
        const kvc_reconcile_obj_t *x = kvc_reconcile_plan_object(pa, i);
        const kvc_reconcile_obj_t *y = kvc_reconcile_plan_find(pb, x->kind, x->name);
        assert_non_null(y);
        if (x->kind == KVC_RECONCILE_CONFIGMAP) {
            assert_string_not_equal(x->body, y->body);
            cm_differs++;
        } else {
            /* Deployments included: byte for byte, so the template and its
             * hash do not change and no pod restarts. */
            assert_int_equal(x->body_len, y->body_len);
            assert_memory_equal(x->body, y->body, x->body_len);
        }
    }
    assert_int_equal(cm_differs, 2);
    kvc_reconcile_plan_destroy(&pa);
    kvc_reconcile_plan_destroy(&pb);
}

/* A model in error is not applied, and keeps what it has from the prune. */
static void test_models_in_error_keep_their_objects(void **state)
{
    (void)state;
    kvc_model_t m[] = {
        s_model("resnet", 1, KVC_FW_TFSERVING, "nfs://s/m/resnet", 1),
        s_model("resnet", 2, KVC_FW_TFSERVING, "nfs://s/m/resnet-v2", 1), /* another base */
        s_model("lun", 1, KVC_FW_TFSERVING, "iscsi://s/iqn.2001-04.com.example:x/0", 1),
        s_model("mixed", 1, KVC_FW_TFSERVING, "nfs://s/m/mixed", 1),
        s_model("mixed", 2, KVC_FW_KSERVE_V2, "nfs://s/m/mixed", 1),
        s_model("Bad_Name", 1, KVC_FW_TFSERVING, "nfs://s/m/bad", 1),
        s_model("this-name-is-far-too-long-to-be-a-service-name-of-ours-xyzab", 1, KVC_FW_TFSERVING,
                "nfs://s/m/long", 1),
        s_model("good", 1, KVC_FW_TFSERVING, "nfs://s/m/good", 1),
    };
    kvc_reconcile_plan_t *p = s_build(&s_opts, m, sizeof m / sizeof m[0]);
    const char *e = kvc_reconcile_plan_error(p, "resnet");
    assert_non_null(e);
    assert_non_null(strstr(e, "under one base path"));
    assert_non_null(strstr(kvc_reconcile_plan_error(p, "lun"), "only nfs://"));
    assert_non_null(strstr(kvc_reconcile_plan_error(p, "mixed"), "framework"));
    assert_non_null(strstr(kvc_reconcile_plan_error(p, "Bad_Name"), "model name must match"));
    assert_non_null(kvc_reconcile_plan_error(
        p, "this-name-is-far-too-long-to-be-a-service-name-of-ours-xyzab"));
    assert_null(kvc_reconcile_plan_error(p, "good"));
    assert_null(kvc_reconcile_plan_error(p, "absent"));

    /* resnet is applied no more, but kept: its server, its config, and both exports. */
    const kvc_reconcile_obj_t *d =
        kvc_reconcile_plan_find(p, KVC_RECONCILE_DEPLOYMENT, "kvc-resnet");
    assert_non_null(d);
    assert_null(d->body);
    assert_non_null(kvc_reconcile_plan_find(p, KVC_RECONCILE_CONFIGMAP, "kvc-resnet"));
    assert_non_null(kvc_reconcile_plan_find(p, KVC_RECONCILE_SERVICE, "kvc-resnet"));
    size_t kept_pv = 0, applied = 0;
    for (size_t i = 0; i < kvc_reconcile_plan_count(p); i++) {
        const kvc_reconcile_obj_t *o = kvc_reconcile_plan_object(p, i);
        if (o->kind == KVC_RECONCILE_PV && !o->body)
            kept_pv++;
        if (o->body)
            applied++;
    }
    assert_int_equal(kept_pv, 3);     /* resnet's two, mixed's one */
    assert_int_equal(applied, 1 + 5); /* the namespace, and good's five */
    s_obj(p, KVC_RECONCILE_DEPLOYMENT, "kvc-good");
    kvc_reconcile_plan_destroy(&p);

    /* Nothing placed here: only the namespace (the apply then prunes all). */
    p = s_build(&s_opts, NULL, 0);
    assert_int_equal(kvc_reconcile_plan_count(p), 1);
    kvc_reconcile_plan_destroy(&p);
}

/* Options that could not name objects, or would inject JSON, are refused. */
static void test_bad_options(void **state)
{
    (void)state;
    kvc_model_t m = s_model("resnet", 1, KVC_FW_TFSERVING, "nfs://s/m/resnet", 1);
    const kvc_reconcile_opts_t bad[] = {
        {NULL, NULL, NULL, NULL, 0},
        {NULL, "Edge_A", NULL, NULL, 0},
        {NULL, "-edge", NULL, NULL, 0},
        {"kvc.models", "edge-a", NULL, NULL, 0},
        {NULL, "edge-a", "tensorflow/serving:2.14.1\",\"x", NULL, 0},
        {NULL, "edge-a", NULL, "triton latest", 0},
        {NULL, "edge-a", NULL, NULL, KVC_RECONCILE_POLL_MAX + 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kvc_reconcile_plan_t *p = (kvc_reconcile_plan_t *)&m; /* must be reset */
        kvc_err_t err = {0};
        assert_int_equal(kvc_reconcile_build(&bad[i], &m, 1, &p, &err), KVC_EINVAL);
        assert_null(p);
        assert_true(strncmp(err.msg, "reconcile: ", 11) == 0);
    }
    kvc_reconcile_plan_t *p = NULL;
    kvc_err_t err = {0};
    assert_int_equal(kvc_reconcile_build(NULL, &m, 1, &p, &err), KVC_EINVAL);
    /* A model's image with a quote is that model's error, not an injection. */
    kvc_strlcpy(m.image, "x\",\"privileged\":true", sizeof m.image);
    p = s_build(&s_opts, &m, 1);
    assert_non_null(strstr(kvc_reconcile_plan_error(p, "resnet"), "image"));
    kvc_reconcile_plan_destroy(&p);
}

/* Every failed allocation gives KVC_ENOMEM and leaks nothing (ASan). */
static void test_allocation_failures(void **state)
{
    (void)state;
    kvc_model_t m[] = {s_model("resnet", 1, KVC_FW_TFSERVING, "nfs://s/m/resnet", 1),
                       s_model("bert", 1, KVC_FW_KSERVE_V2, "nfs://s/m/bert", 1),
                       s_model("bad", 1, KVC_FW_TFSERVING, "nfs://s/m/a", 1),
                       s_model("bad", 2, KVC_FW_TFSERVING, "nfs://s/m/b", 1)};
    int succeeded = 0;
    for (long n = 0; n < 2000 && !succeeded; n++) {
        kvc_alloc_fail_after(n);
        kvc_reconcile_plan_t *p = NULL;
        kvc_err_t err = {0};
        int rc = kvc_reconcile_build(&s_opts, m, 4, &p, &err);
        kvc_alloc_fail_after(-1);
        if (rc == KVC_OK) {
            succeeded = 1;
            assert_int_equal(kvc_reconcile_plan_count(p), 1 + 2 * 5 + 3 + 2 * 2);
        } else {
            assert_int_equal(rc, KVC_ENOMEM);
            assert_null(p);
        }
        kvc_reconcile_plan_destroy(&p);
    }
    assert_true(succeeded);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objects_and_order),
        cmocka_unit_test(test_nfs_volume),
        cmocka_unit_test(test_configmap_versions),
        cmocka_unit_test(test_labels_and_server),
        cmocka_unit_test(test_versions_do_not_touch_the_pod),
        cmocka_unit_test(test_models_in_error_keep_their_objects),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
