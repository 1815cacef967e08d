/*
 * cli_models.c - `kvc models`. See cli_models.h.
 *
 * Reads a model entry from its options (or a YAML file), checks it here so
 * the error is immediate, and sends the encoded record to the peer, which
 * checks it again: the peer trusts no client. Everything the peer answers
 * is decoded with the same checks.
 */
#include "cli_models.h"

#include "cli_out.h"
#include "cli_conn.h"
#include "model.h"
#include "pb_alloc.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { S_OK = 0, S_FAIL = 1, S_USAGE = 2 };



static const char s_help[] =
    "usage: kvc models publish --name N --version V --storage URL [--framework tfserving|kserve-v2]\n"
    "                          [--input NAME:DTYPE:SHAPE]... [--output NAME:DTYPE:SHAPE]...\n"
    "                          [--signature S] [--preprocess SPEC] [--image-input NAME]\n"
    "                          [--placement all|site:S|region:R]... [--label L]...\n"
    "                          [--sha256 HEX] [--replicas N] [--image IMAGE]\n"
    "       kvc models publish --file model.yaml [same options, which override the file]\n"
    "       kvc models list [--site S]\n"
    "       kvc models show NAME[:VERSION]\n"
    "       kvc models retire NAME:VERSION\n"
    "       kvc models status NAME\n"
    "\n"
    "The federation's model registry, from any site. A published version spreads to\n"
    "every peer; the coordinator of each site it is placed on (--placement; none:\n"
    "every site) serves it from its read-only storage (nfs://server/export/path,\n"
    "the model's base path holding one numbered folder per version). Versions of a\n"
    "model share its framework and storage. SHAPE is like 1,224,224,3 (-1: any\n"
    "size); DTYPE float32, FP32 or DT_FLOAT style. SPEC is the image preprocessing,\n"
    "e.g. \"224x224 rgb nhwc float32 scale=1/255\". retire removes a version from\n"
    "every site. status shows each site's state: desired and ready replicas,\n"
    "whether its objects were applied, and any error.\n"
    "Options anywhere: --config FILE, --control ENDPOINT, --timeout MS, --json.\n";

/* NAME or NAME:VERSION. */
static int s_name_version(const char *arg, char *name, size_t cap, char *version, size_t vcap,
                          int need_version)
{
    const char *colon = strchr(arg, ':');
    size_t n = colon ? (size_t)(colon - arg) : strlen(arg);
    if (n == 0 || n >= cap)
        return -1;
    memcpy(name, arg, n);
    name[n] = '\0';
    version[0] = '\0';
    if (colon) {
        const char *v = colon + 1;
        if (!v[0] || strlen(v) >= vcap || strspn(v, "0123456789") != strlen(v))
            return -1;
        kvc_strlcpy(version, v, vcap);
    }
    if (need_version && !version[0])
        return -1;
    return kvc_model_name_ok(name) ? 0 : -1;
}

static void s_words(const char (*w)[KVC_MODEL_WORD_MAX], size_t n, const char *none, char *buf,
                    size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, cap - used, "%s%s", i ? "," : "", w[i]);
    }
    if (!n)
        kvc_strlcpy(buf, none, cap);
}

static void s_json_tensors(const char *key, const kvc_model_tensor_t *t, size_t n)
{
    printf(",\"%s\":[", key);
    for (size_t i = 0; i < n; i++) {
        printf("%s{\"name\":", i ? "," : "");
        kvc_json_str(stdout, t[i].name);
        kvc_json_field(stdout, "dtype", kvc_dtype_name(t[i].dtype));
        printf(",\"shape\":[");
        for (size_t j = 0; j < t[i].n_dims; j++)
            printf("%s%" PRId64, j ? "," : "", t[i].dims[j]);
        printf("]}");
    }
    putchar(']');
}

static void s_json_words(const char *key, const char (*w)[KVC_MODEL_WORD_MAX], size_t n)
{
    printf(",\"%s\":[", key);
    for (size_t i = 0; i < n; i++) {
        if (i)
            putchar(',');
        kvc_json_str(stdout, w[i]);
    }
    putchar(']');
}

static void s_model_json(const kvc_model_t *m)
{
    char t[40];
    printf("{\"name\":");
    kvc_json_str(stdout, m->name);
    printf(",\"version\":%" PRIu64, m->version);
    kvc_json_field(stdout, "framework", kvc_model_fw_name(m->framework));
    kvc_json_field(stdout, "signature", m->signature[0] ? m->signature : "serving_default");
    s_json_tensors("inputs", m->inputs, m->n_inputs);
    s_json_tensors("outputs", m->outputs, m->n_outputs);
    kvc_json_field(stdout, "preprocess", m->preprocess);
    kvc_json_field(stdout, "image_input", m->image_input);
    kvc_json_field(stdout, "storage", m->storage);
    kvc_json_field(stdout, "sha256", m->sha256);
    s_json_words("placement", (const char(*)[KVC_MODEL_WORD_MAX])m->placement, m->n_placement);
    s_json_words("labels", (const char(*)[KVC_MODEL_WORD_MAX])m->labels, m->n_labels);
    printf(",\"replicas\":%u", m->replicas);
    kvc_json_field(stdout, "image", m->image);
    kvc_json_field(stdout, "published_by", m->published_by);
    kvc_json_field(stdout, "published", kvc_fmt_time_ms(m->published_ms, t, sizeof t));
    putchar('}');
}

static void s_model_text(const kvc_model_t *m)
{
    char buf[2600], t[40];
    printf("name:        %s\nversion:     %" PRIu64 "\nframework:   %s\nsignature:   %s\n",
           m->name, m->version, kvc_model_fw_name(m->framework),
           m->signature[0] ? m->signature : "serving_default");
    for (int out = 0; out < 2; out++) {
        const kvc_model_tensor_t *ts = out ? m->outputs : m->inputs;
        size_t n = out ? m->n_outputs : m->n_inputs;
        for (size_t i = 0; i < n; i++) {
            printf("%-12s %s %s [", i ? "" : out ? "outputs:" : "inputs:", ts[i].name,
                   kvc_dtype_plain_name(ts[i].dtype));
            for (size_t j = 0; j < ts[i].n_dims; j++)
                printf("%s%" PRId64, j ? "," : "", ts[i].dims[j]);
            printf("]\n");
        }
        if (!n)
            printf("%-12s -\n", out ? "outputs:" : "inputs:");
    }
    printf("preprocess:  %s\n", m->preprocess[0] ? m->preprocess : "-");
    if (m->image_input[0])
        printf("image input: %s\n", m->image_input);
    printf("storage:     %s (read-only)\nsha256:      %s\n", m->storage,
           m->sha256[0] ? m->sha256 : "-");
    s_words((const char(*)[KVC_MODEL_WORD_MAX])m->placement, m->n_placement, "all", buf,
            sizeof buf);
    printf("placement:   %s\n", buf);
    s_words((const char(*)[KVC_MODEL_WORD_MAX])m->labels, m->n_labels, "-", buf, sizeof buf);
    printf("labels:      %s\nreplicas:    %u\nimage:       %s\npublished:   %s by %s\n", buf,
           m->replicas, m->image[0] ? m->image : "(framework default)",
           kvc_fmt_time_ms(m->published_ms, t, sizeof t), m->published_by);
}

/* Decodes the reply's models into a heap array (*out, free with kvc_free). */
static int s_reply_models(const Kvc__Ctl__Reply *rep, kvc_model_t **out, size_t *n)
{
    *n = 0;
    *out = kvc_calloc(rep->n_models ? rep->n_models : 1, sizeof **out);
    if (!*out)
        return kvc_cli_fail(S_FAIL, "out of memory");
    for (size_t i = 0; i < rep->n_models; i++) {
        kvc_err_t err = {0};
        if (kvc_model_decode(rep->models[i].data, rep->models[i].len, &(*out)[*n], &err) != 0)
            return kvc_cli_fail(S_FAIL, "the peer sent a bad model record: %s", err.msg);
        (*n)++;
    }
    return S_OK;
}

/* --- publish ------------------------------------------------------------- */

static int s_add_word(char (*w)[KVC_MODEL_WORD_MAX], size_t *n, size_t max, const char *opt,
                      const char *v)
{
    if (*n == max)
        return kvc_cli_fail(S_USAGE, "%s: at most %zu", opt, max);
    if (kvc_strlcpy(w[*n], v, KVC_MODEL_WORD_MAX))
        return kvc_cli_fail(S_USAGE, "%s: '%.40s...' is too long", opt, v);
    (*n)++;
    return S_OK;
}

static int s_set(char *dst, size_t cap, const char *opt, const char *v)
{
    return kvc_strlcpy(dst, v, cap) ? kvc_cli_fail(S_USAGE, "%s: at most %zu characters", opt, cap - 1)
                                    : S_OK;
}

static int s_publish(const kvc_cli_conn_t *c, int argc, char **argv)
{
    kvc_model_t *m = kvc_malloc(sizeof *m);
    if (!m)
        return kvc_cli_fail(S_FAIL, "out of memory");
    kvc_model_init(m);
    int rc = S_OK;
    /* the file first, so options override it */
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], "--file") == 0) {
            kvc_err_t err = {0};
            if (kvc_model_load_yaml(argv[i + 1], m, &err) != 0) {
                rc = kvc_cli_fail(S_USAGE, "--file %s", err.msg);
                goto out;
            }
        }
    int reset_in = 0, reset_out = 0, reset_pl = 0, reset_lb = 0;
    for (int i = 0; i < argc && rc == S_OK; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            rc = kvc_cli_fail(S_USAGE, "models publish: '%.40s' needs a value (kvc models --help)", a);
            break;
        }
        const char *v = argv[++i];
        kvc_err_t err = {0};
        if (strcmp(a, "--file") == 0) {
            continue;
        } else if (strcmp(a, "--name") == 0) {
            rc = s_set(m->name, sizeof m->name, a, v);
        } else if (strcmp(a, "--version") == 0) {
            char *end;
            unsigned long long x = strtoull(v, &end, 10);
            if (*end || v[0] == '-' || !v[0] || x < 1 || x > KVC_MODEL_VERSION_MAX)
                rc = kvc_cli_fail(S_USAGE, "--version: '%.40s' is not a positive integer", v);
            m->version = x;
        } else if (strcmp(a, "--framework") == 0) {
            if (kvc_model_fw_parse(v, &m->framework) != 0)
                rc = kvc_cli_fail(S_USAGE, "--framework: '%.40s' is not tfserving or kserve-v2", v);
        } else if (strcmp(a, "--storage") == 0) {
            rc = s_set(m->storage, sizeof m->storage, a, v);
        } else if (strcmp(a, "--signature") == 0) {
            rc = s_set(m->signature, sizeof m->signature, a, v);
        } else if (strcmp(a, "--preprocess") == 0) {
            rc = s_set(m->preprocess, sizeof m->preprocess, a, v);
        } else if (strcmp(a, "--image-input") == 0) {
            rc = s_set(m->image_input, sizeof m->image_input, a, v);
        } else if (strcmp(a, "--sha256") == 0) {
            rc = s_set(m->sha256, sizeof m->sha256, a, v);
        } else if (strcmp(a, "--image") == 0) {
            rc = s_set(m->image, sizeof m->image, a, v);
        } else if (strcmp(a, "--replicas") == 0) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || !v[0] || x < 1 || x > KVC_MODEL_REPLICAS_MAX)
                rc = kvc_cli_fail(S_USAGE, "--replicas: '%.40s' is not 1..%d", v,
                            KVC_MODEL_REPLICAS_MAX);
            m->replicas = (uint32_t)x;
        } else if (strcmp(a, "--input") == 0 || strcmp(a, "--output") == 0) {
            int in = a[2] == 'i';
            size_t *n = in ? &m->n_inputs : &m->n_outputs;
            int *reset = in ? &reset_in : &reset_out;
            if (!*reset) /* options replace the file's list */
                *n = 0, *reset = 1;
            if (*n == KVC_MODEL_TENSORS_MAX)
                rc = kvc_cli_fail(S_USAGE, "%s: at most %d", a, KVC_MODEL_TENSORS_MAX);
            else if (kvc_model_tensor_parse(v, in ? &m->inputs[*n] : &m->outputs[*n], &err) != 0)
                rc = kvc_cli_fail(S_USAGE, "%s: %s", a, err.msg);
            else
                (*n)++;
        } else if (strcmp(a, "--placement") == 0) {
            if (!reset_pl)
                m->n_placement = 0, reset_pl = 1;
            rc = s_add_word(m->placement, &m->n_placement, KVC_MODEL_PLACEMENT_MAX, a, v);
        } else if (strcmp(a, "--label") == 0) {
            if (!reset_lb)
                m->n_labels = 0, reset_lb = 1;
            rc = s_add_word(m->labels, &m->n_labels, KVC_MODEL_LABELS_MAX, a, v);
        } else {
            rc = kvc_cli_fail(S_USAGE, "models publish: unknown option '%.40s' (kvc models --help)", a);
        }
    }
    if (rc)
        goto out;
    kvc_err_t err = {0};
    if (kvc_model_check(m, &err) != 0) {
        rc = kvc_cli_fail(S_USAGE, "models publish: %s", err.msg);
        goto out;
    }
    uint8_t rec[KVC_MODEL_RECORD_MAX];
    size_t len;
    if (kvc_model_encode(m, rec, sizeof rec, &len) != 0) {
        rc = kvc_cli_fail(S_USAGE, "models publish: the entry is over %d bytes", KVC_MODEL_RECORD_MAX);
        goto out;
    }
    Kvc__Ctl__Reply *rep = NULL;
    rc = kvc_cli_call(c, "models-publish", NULL, 0, rec, len, &rep);
    if (rc)
        goto out;
    kvc_model_t *ms;
    size_t n;
    rc = s_reply_models(rep, &ms, &n);
    if (rc == 0 && n == 1) {
        if (c->json) {
            s_model_json(&ms[0]);
            putchar('\n');
        } else {
            printf("published %s:%" PRIu64 " (%s, %s)\n", ms[0].name, ms[0].version,
                   kvc_model_fw_name(ms[0].framework), ms[0].storage);
        }
    }
    kvc_free(ms);
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
out:
    kvc_free(m);
    return rc;
}

/* --- list, show, retire, status ----------------------------------------- */

static int s_list(const kvc_cli_conn_t *c, const char *site)
{
    const char *args[2] = {"site", site ? site : ""};
    Kvc__Ctl__Reply *rep = NULL;
    int rc = kvc_cli_call(c, "models-list", args, 1, NULL, 0, &rep);
    if (rc)
        return rc;
    kvc_model_t *ms;
    size_t n;
    rc = s_reply_models(rep, &ms, &n);
    if (rc == 0) {
        if (c->json)
            putchar('[');
        else
            printf("%-24s %-8s %-10s %-24s %-16s %s\n", "NAME", "VERSION", "FRAMEWORK",
                   "PLACEMENT", "LABELS", "PUBLISHED");
        for (size_t i = 0; i < n; i++) {
            if (c->json) {
                if (i)
                    putchar(',');
                s_model_json(&ms[i]);
                continue;
            }
            char pl[2600], lb[1300], t[40];
            s_words((const char(*)[KVC_MODEL_WORD_MAX])ms[i].placement, ms[i].n_placement,
                    "all", pl, sizeof pl);
            s_words((const char(*)[KVC_MODEL_WORD_MAX])ms[i].labels, ms[i].n_labels, "-", lb,
                    sizeof lb);
            printf("%-24s %-8" PRIu64 " %-10s %-24s %-16s %s\n", ms[i].name, ms[i].version,
                   kvc_model_fw_name(ms[i].framework), pl, lb,
                   kvc_fmt_time_ms(ms[i].published_ms, t, sizeof t));
        }
        if (c->json)
            puts("]");
    }
    kvc_free(ms);
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return rc;
}

/* Calls cmd with NAME[:VERSION] from arg (VERSION required if need). */
static int s_call_nv(const kvc_cli_conn_t *c, const char *cmd, const char *arg, int need, char *name,
                     char *version, Kvc__Ctl__Reply **rep)
{
    if (s_name_version(arg, name, KVC_MODEL_NAME_MAX, version, 24, need) != 0)
        return kvc_cli_fail(S_USAGE, "models %s: '%.70s' is not NAME%s", cmd + 7, arg,
                            need ? ":VERSION" : " or NAME:VERSION");
    const char *args[4] = {"name", name, "version", version};
    return kvc_cli_call(c, cmd, args, 2, NULL, 0, rep);
}

static int s_show(const kvc_cli_conn_t *c, const char *arg)
{
    char name[KVC_MODEL_NAME_MAX], version[24];
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call_nv(c, "models-show", arg, 0, name, version, &rep);
    if (rc)
        return rc;
    kvc_model_t *ms;
    size_t n;
    rc = s_reply_models(rep, &ms, &n);
    if (rc == 0 && n == 1 && c->json)
        s_model_json(&ms[0]), putchar('\n');
    else if (rc == 0 && n == 1)
        s_model_text(&ms[0]);
    kvc_free(ms);
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return rc;
}

static int s_retire(const kvc_cli_conn_t *c, const char *arg)
{
    char name[KVC_MODEL_NAME_MAX], version[24];
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call_nv(c, "models-retire", arg, 1, name, version, &rep);
    if (rc)
        return rc;
    if (c->json)
        printf("{\"retired\":\"%s:%s\"}\n", name, version);
    else
        printf("retired %s:%s\n", name, version);
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return S_OK;
}

static int s_status(const kvc_cli_conn_t *c, const char *name)
{
    if (!kvc_model_name_ok(name))
        return kvc_cli_fail(S_USAGE, "models status: '%.70s' is not a model name", name);
    const char *args[2] = {"name", name};
    Kvc__Ctl__Reply *rep = NULL;
    int rc = kvc_cli_call(c, "models-status", args, 1, NULL, 0, &rep);
    if (rc)
        return rc;
    kvc_model_t *ms;
    size_t n;
    rc = s_reply_models(rep, &ms, &n);
    kvc_model_status_t *st = kvc_calloc(rep->n_model_status ? rep->n_model_status : 1, sizeof *st);
    size_t nst = 0;
    if (rc == 0 && !st)
        rc = kvc_cli_fail(S_FAIL, "out of memory");
    for (size_t i = 0; rc == 0 && i < rep->n_model_status; i++) {
        kvc_err_t err = {0};
        if (kvc_model_status_decode(rep->model_status[i].data, rep->model_status[i].len,
                                    &st[nst], &err) != 0)
            rc = kvc_cli_fail(S_FAIL, "the peer sent a bad status record: %s", err.msg);
        else
            nst++;
    }
    if (rc == 0 && c->json) {
        printf("{\"name\":");
        kvc_json_str(stdout, name);
        printf(",\"versions\":[");
        for (size_t i = 0; i < n; i++)
            printf("%s%" PRIu64, i ? "," : "", ms[i].version);
        printf("]");
        kvc_json_str_array(stdout, "placed_on", rep->sites, rep->n_sites);
        printf(",\"sites\":[");
        int first = 1;
        for (size_t s = 0; s < rep->n_sites; s++) {
            int any = 0;
            for (size_t i = 0; i < nst; i++) {
                if (strcmp(st[i].site, rep->sites[s]) != 0)
                    continue;
                char t[40];
                printf("%s{\"site\":", first ? "" : ",");
                first = 0;
                any = 1;
                kvc_json_str(stdout, st[i].site);
                printf(",\"version\":%" PRIu64 ",\"applied\":%s,\"desired_replicas\":%u,"
                       "\"ready_replicas\":%u",
                       st[i].version, st[i].applied ? "true" : "false", st[i].desired_replicas,
                       st[i].ready_replicas);
                kvc_json_field(stdout, "server_version", st[i].server_version);
                kvc_json_field(stdout, "error", st[i].error);
                kvc_json_field(stdout, "coordinator", st[i].coordinator);
                kvc_json_field(stdout, "updated", kvc_fmt_time_ms(st[i].updated_ms, t, sizeof t));
                putchar('}');
            }
            if (!any) {
                printf("%s{\"site\":", first ? "" : ",");
                first = 0;
                kvc_json_str(stdout, rep->sites[s]);
                printf(",\"pending\":true}");
            }
        }
        puts("]}");
    } else if (rc == 0) {
        printf("%s: versions", name);
        for (size_t i = 0; i < n; i++)
            printf("%s%" PRIu64, i ? "," : " ", ms[i].version);
        printf("; placed on %zu site%s\n", rep->n_sites, rep->n_sites == 1 ? "" : "s");
        printf("%-20s %-8s %-8s %-8s %-6s %-8s %-20s %s\n", "SITE", "VERSION", "APPLIED",
               "DESIRED", "READY", "SERVER", "UPDATED", "ERROR");
        for (size_t s = 0; s < rep->n_sites; s++) {
            int any = 0;
            for (size_t i = 0; i < nst; i++) {
                if (strcmp(st[i].site, rep->sites[s]) != 0)
                    continue;
                char t[40];
                any = 1;
                printf("%-20s %-8" PRIu64 " %-8s %-8u %-6u %-8s %-20s %s\n", st[i].site,
                       st[i].version, st[i].applied ? "yes" : "no", st[i].desired_replicas,
                       st[i].ready_replicas, st[i].server_version[0] ? st[i].server_version : "-",
                       kvc_fmt_time_ms(st[i].updated_ms, t, sizeof t), st[i].error[0] ? st[i].error : "-");
            }
            if (!any)
                printf("%-20s %-8s %-8s %-8s %-6s %-8s %-20s %s\n", rep->sites[s], "-",
                       "pending", "-", "-", "-", "-", "its coordinator has not reported");
        }
    }
    kvc_free(st);
    kvc_free(ms);
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return rc;
}

int kvc_cli_models(int argc, char **argv, const char *config, const char *control, int json,
                   int timeout_ms)
{
    kvc_cli_conn_t c = {config, control, json, timeout_ms};
    char **rest = kvc_calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return kvc_cli_fail(S_FAIL, "out of memory");
    int n = 0, help = 0;
    const char *site = NULL;
    /* the connection options may follow "models" too */
    int rc = kvc_cli_conn_parse(&c, argc, argv, rest, &n, &help);
    if (rc == S_OK && help) {
        fputs(s_help, stdout);
        kvc_free(rest);
        return S_OK;
    }
    /* --site is list's own */
    int k = 0;
    for (int i = 0; rc == S_OK && i < n; i++) {
        if (strcmp(rest[i], "--site") != 0) {
            rest[k++] = rest[i];
        } else if (i + 1 >= n) {
            rc = kvc_cli_fail(S_USAGE, "--site needs a value (kvc models --help)");
        } else {
            site = rest[++i];
        }
    }
    n = k;
    if (rc == S_OK && n == 0)
        rc = kvc_cli_fail(S_USAGE, "models: publish, list, show, retire or status (kvc models --help)");
    const char *verb = n ? rest[0] : "";
    if (rc != S_OK) {
    } else if (site && strcmp(verb, "list") != 0) {
        rc = kvc_cli_fail(S_USAGE, "models %s takes no --site", verb);
    } else if (site && !kvc_model_name_ok(site)) {
        rc = kvc_cli_fail(S_USAGE, "--site: '%.70s' is not a site name", site);
    } else if (strcmp(verb, "publish") == 0) {
        rc = s_publish(&c, n - 1, rest + 1);
    } else if (strcmp(verb, "list") == 0) {
        rc = n == 1 ? s_list(&c, site) : kvc_cli_fail(S_USAGE, "models list takes no argument");
    } else if (strcmp(verb, "show") == 0 || strcmp(verb, "retire") == 0 ||
               strcmp(verb, "status") == 0) {
        if (n != 2)
            rc = kvc_cli_fail(S_USAGE, "models %s needs one NAME%s", verb,
                        verb[0] == 'r' ? ":VERSION" : verb[1] == 'h' ? "[:VERSION]" : "");
        else
            rc = verb[0] == 'r' ? s_retire(&c, rest[1])
                 : verb[1] == 'h' ? s_show(&c, rest[1])
                                  : s_status(&c, rest[1]);
    } else {
        rc = kvc_cli_fail(S_USAGE, "models: '%.40s' is not publish, list, show, retire or status",
                    verb);
    }
    kvc_free(rest);
    return rc;
}
