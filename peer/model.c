/*
 * model.c - the model registry's entries: validation, parsing of the
 * command line's tensor specs and storage URLs, placement, keys, the
 * protobuf records and the YAML form. See model.h.
 */
#include "model.h"

#include "json_cursor.h"
#include "pb_alloc.h"
#include "preprocess.h"
#include "registry.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YAML_FILE_MAX (64 * 1024)

static const char *s_fw_names[] = {NULL, "tfserving", "kserve-v2"};

const char *kvc_model_fw_name(kvc_model_fw_t fw)
{
    return fw == KVC_FW_TFSERVING || fw == KVC_FW_KSERVE_V2 ? s_fw_names[fw] : "?";
}

int kvc_model_fw_parse(const char *s, kvc_model_fw_t *out)
{
    if (!s)
        return KVC_EINVAL;
    if (strcmp(s, "tfserving") == 0 || strcmp(s, "tensorflow") == 0)
        *out = KVC_FW_TFSERVING;
    else if (strcmp(s, "kserve-v2") == 0 || strcmp(s, "kserve") == 0 || strcmp(s, "triton") == 0)
        *out = KVC_FW_KSERVE_V2;
    else
        return KVC_EINVAL;
    return KVC_OK;
}

void kvc_model_init(kvc_model_t *m)
{
    memset(m, 0, sizeof *m);
    m->framework = KVC_FW_TFSERVING;
    m->replicas = 1;
}

int kvc_model_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > 63 || !(islower((unsigned char)name[0]) || isdigit((unsigned char)name[0])))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) || name[i] == '-'))
            return 0;
    return 1;
}

/* Printable ASCII, no spaces in words, bounded. */
static int s_text_ok(const char *s, size_t cap, int spaces)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n + 1 >= cap || (unsigned char)s[n] < 0x20 || (unsigned char)s[n] >= 0x7f ||
            (!spaces && s[n] == ' '))
            return 0;
    return 1;
}

/* A host name or an IPv4 / [IPv6] literal. */
static int s_host_ok(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253)
        return 0;
    if (h[0] == '[') {
        if (h[n - 1] != ']' || n < 4)
            return 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (!isxdigit((unsigned char)h[i]) && h[i] != ':' && h[i] != '.')
                return 0;
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.')
            return 0;
    return h[0] != '-' && h[0] != '.';
}

int kvc_model_storage_parse(const char *url, kvc_model_storage_t *out, kvc_err_t *err)
{
    kvc_model_storage_t st;
    memset(&st, 0, sizeof st);
    if (!url || !url[0])
        return kvc_err_set(err, KVC_EINVAL, "storage: required (nfs://server/export/path)");
    if (!s_text_ok(url, KVC_MODEL_STORAGE_MAX, 0))
        return kvc_err_set(err, KVC_EINVAL,
                           "storage: at most %d printable characters, no spaces",
                           KVC_MODEL_STORAGE_MAX - 1);
    const char *rest;
    if (strncmp(url, "nfs://", 6) == 0) {
        strcpy(st.scheme, "nfs");
        rest = url + 6;
    } else if (strncmp(url, "iscsi://", 8) == 0) {
        strcpy(st.scheme, "iscsi");
        rest = url + 8;
    } else {
        return kvc_err_set(err, KVC_EINVAL,
                           "storage: \"%s\" is not nfs://server/path or iscsi://server/iqn/lun",
                           url);
    }
    const char *slash = strchr(rest, '/');
    size_t hl = slash ? (size_t)(slash - rest) : strlen(rest);
    if (hl == 0 || hl >= sizeof st.server)
        return kvc_err_set(err, KVC_EINVAL, "storage: \"%s\" has no server", url);
    memcpy(st.server, rest, hl);
    st.server[hl] = '\0';
    /* iscsi portals may carry a port; nfs ones do not (the export is what counts) */
    char host[256];
    kvc_strlcpy(host, st.server, sizeof host);
    char *colon = strrchr(host, ':');
    if (colon && strcmp(st.scheme, "iscsi") == 0 && host[0] != '[') {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535)
            return kvc_err_set(err, KVC_EINVAL, "storage: bad port in \"%s\"", url);
        *colon = '\0';
    }
    if (!s_host_ok(host))
        return kvc_err_set(err, KVC_EINVAL, "storage: bad server \"%s\"", st.server);
    if (!slash || !slash[1])
        return kvc_err_set(err, KVC_EINVAL, "storage: \"%s\" has no path", url);
    if (strlen(slash) >= sizeof st.path)
        return kvc_err_set(err, KVC_EINVAL, "storage: path over %zu characters",
                           sizeof st.path - 1);
    kvc_strlcpy(st.path, slash, sizeof st.path);
    /* no "." or ".." segments, no empty ones but a trailing slash */
    for (const char *p = st.path; *p;) {
        const char *q = strchr(p + 1, '/');
        size_t seg = q ? (size_t)(q - p - 1) : strlen(p + 1);
        if ((seg == 1 && p[1] == '.') || (seg == 2 && p[1] == '.' && p[2] == '.') ||
            (seg == 0 && q))
            return kvc_err_set(err, KVC_EINVAL, "storage: path \"%s\" has an empty, . or .. part",
                               st.path);
        if (!q)
            break;
        p = q;
    }
    if (strcmp(st.scheme, "iscsi") == 0) {
        /* /IQN/LUN */
        const char *lun = strrchr(st.path, '/');
        char *end;
        long l = strtol(lun + 1, &end, 10);
        if (lun == st.path || *end || l < 0 || l > 16383 || strncmp(st.path + 1, "iqn.", 4) != 0)
            return kvc_err_set(err, KVC_EINVAL,
                               "storage: iscsi://server[:port]/iqn.YYYY-MM.domain:target/LUN");
    }
    if (out)
        *out = st;
    return KVC_OK;
}

int kvc_model_tensor_parse(const char *spec, kvc_model_tensor_t *out, kvc_err_t *err)
{
    kvc_model_tensor_t t;
    memset(&t, 0, sizeof t);
    if (!spec)
        return kvc_err_set(err, KVC_EINVAL, "tensor: missing");
    const char *c1 = strchr(spec, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c1 || !c2)
        return kvc_err_set(err, KVC_EINVAL, "tensor \"%.80s\": want NAME:DTYPE:SHAPE", spec);
    size_t nl = (size_t)(c1 - spec), dl = (size_t)(c2 - c1 - 1);
    if (nl == 0 || nl >= sizeof t.name)
        return kvc_err_set(err, KVC_EINVAL, "tensor \"%.80s\": name of 1..%zu characters", spec,
                           sizeof t.name - 1);
    memcpy(t.name, spec, nl);
    char dt[32];
    if (dl == 0 || dl >= sizeof dt)
        return kvc_err_set(err, KVC_EINVAL, "tensor \"%.80s\": missing dtype", spec);
    memcpy(dt, c1 + 1, dl);
    dt[dl] = '\0';
    t.dtype = kvc_dtype_parse(dt);
    if (!kvc_dtype_valid(t.dtype))
        return kvc_err_set(err, KVC_EINVAL,
                           "tensor %s: unknown dtype \"%s\" (float32, FP32 or DT_FLOAT style)",
                           t.name, dt);
    const char *p = c2 + 1;
    while (*p) {
        if (t.n_dims == KVC_MODEL_DIMS_MAX)
            return kvc_err_set(err, KVC_EINVAL, "tensor %s: more than %d dimensions", t.name,
                               KVC_MODEL_DIMS_MAX);
        char *end;
        errno = 0;
        long long d = strtoll(p, &end, 10);
        if (end == p || errno || d < -1 || d > ((long long)1 << 40) || (*end && *end != ','))
            return kvc_err_set(err, KVC_EINVAL,
                               "tensor %s: shape \"%s\" is not a list like 1,224,224,3 (-1 any)",
                               t.name, c2 + 1);
        t.dims[t.n_dims++] = d;
        p = *end ? end + 1 : end;
        if (*end && !*p)
            return kvc_err_set(err, KVC_EINVAL, "tensor %s: shape ends with a comma", t.name);
    }
    if (out)
        *out = t;
    return KVC_OK;
}

static int s_tensor_check(const char *what, const kvc_model_tensor_t *t, kvc_err_t *err)
{
    if (!t->name[0] || !s_text_ok(t->name, sizeof t->name, 0))
        return kvc_err_set(err, KVC_EINVAL, "%s: a tensor needs a name (printable, no spaces)",
                           what);
    if (!kvc_dtype_valid(t->dtype))
        return kvc_err_set(err, KVC_EINVAL, "%s %s: unknown dtype", what, t->name);
    if (t->n_dims > KVC_MODEL_DIMS_MAX)
        return kvc_err_set(err, KVC_EINVAL, "%s %s: more than %d dimensions", what, t->name,
                           KVC_MODEL_DIMS_MAX);
    for (size_t i = 0; i < t->n_dims; i++)
        if (t->dims[i] < -1 || t->dims[i] > ((int64_t)1 << 40))
            return kvc_err_set(err, KVC_EINVAL, "%s %s: dimension %zu is %lld", what, t->name, i,
                               (long long)t->dims[i]);
    return KVC_OK;
}

static int s_word_ok(const char *w)
{
    size_t n = strlen(w);
    if (n == 0 || n >= KVC_MODEL_WORD_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)w[i]) && !strchr("-_.:/=", w[i]))
            return 0;
    return 1;
}

/* "all", "site:NAME", "region:NAME" or a bare site NAME. */
static int s_placement_ok(const char *p)
{
    if (strcmp(p, "all") == 0)
        return 1;
    const char *name = p;
    if (strncmp(p, "site:", 5) == 0)
        name = p + 5;
    else if (strncmp(p, "region:", 7) == 0)
        name = p + 7;
    return kvc_model_name_ok(name);
}

int kvc_model_check(const kvc_model_t *m, kvc_err_t *err)
{
    if (!kvc_model_name_ok(m->name))
        return kvc_err_set(err, KVC_EINVAL,
                           "name: \"%.70s\" does not match [a-z0-9][a-z0-9-]{0,62}", m->name);
    if (m->version < 1 || m->version > KVC_MODEL_VERSION_MAX)
        return kvc_err_set(err, KVC_EINVAL, "version: a positive integer up to 2^53 is needed");
    if (m->framework != KVC_FW_TFSERVING && m->framework != KVC_FW_KSERVE_V2)
        return kvc_err_set(err, KVC_EINVAL, "framework: tfserving or kserve-v2");
    if (m->signature[0] && !s_text_ok(m->signature, sizeof m->signature, 0))
        return kvc_err_set(err, KVC_EINVAL, "signature: printable, no spaces");
    if (m->n_inputs > KVC_MODEL_TENSORS_MAX || m->n_outputs > KVC_MODEL_TENSORS_MAX)
        return kvc_err_set(err, KVC_EINVAL, "inputs/outputs: at most %d each",
                           KVC_MODEL_TENSORS_MAX);
    for (size_t i = 0; i < m->n_inputs; i++) {
        int rc = s_tensor_check("input", &m->inputs[i], err);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->inputs[i].name, m->inputs[j].name) == 0)
                return kvc_err_set(err, KVC_EINVAL, "input %s: given twice", m->inputs[i].name);
    }
    for (size_t i = 0; i < m->n_outputs; i++) {
        int rc = s_tensor_check("output", &m->outputs[i], err);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->outputs[i].name, m->outputs[j].name) == 0)
                return kvc_err_set(err, KVC_EINVAL, "output %s: given twice", m->outputs[i].name);
    }
    if (m->preprocess[0]) {
        kvc_preprocess_t pp;
        kvc_err_t e2 = {0};
        if (!s_text_ok(m->preprocess, sizeof m->preprocess, 1) ||
            kvc_preprocess_parse(m->preprocess, &pp, &e2) != 0)
            return kvc_err_set(err, KVC_EINVAL, "preprocess: %s",
                               e2.msg[0] ? e2.msg : "not printable text");
    }
    if (m->image_input[0]) {
        size_t i = 0;
        while (i < m->n_inputs && strcmp(m->inputs[i].name, m->image_input) != 0)
            i++;
        if (i == m->n_inputs)
            return kvc_err_set(err, KVC_EINVAL, "image_input: %.64s is not one of the inputs",
                               m->image_input);
        if (!m->preprocess[0])
            return kvc_err_set(err, KVC_EINVAL, "image_input: needs a preprocess spec");
    } else if (m->preprocess[0] && m->n_inputs > 1) {
        return kvc_err_set(err, KVC_EINVAL,
                           "image_input: name the input images go to (the model has %zu)",
                           m->n_inputs);
    }
    int rc = kvc_model_storage_parse(m->storage, NULL, err);
    if (rc)
        return rc;
    if (m->sha256[0]) {
        size_t n = strlen(m->sha256);
        int ok = n == 64;
        for (size_t i = 0; ok && i < n; i++)
            ok = isdigit((unsigned char)m->sha256[i]) || (m->sha256[i] >= 'a' && m->sha256[i] <= 'f');
        if (!ok)
            return kvc_err_set(err, KVC_EINVAL, "sha256: 64 lower-case hex digits");
    }
    if (m->n_placement > KVC_MODEL_PLACEMENT_MAX)
        return kvc_err_set(err, KVC_EINVAL, "placement: at most %d", KVC_MODEL_PLACEMENT_MAX);
    for (size_t i = 0; i < m->n_placement; i++)
        if (!s_placement_ok(m->placement[i]))
            return kvc_err_set(err, KVC_EINVAL,
                               "placement: \"%.70s\" is not all, site:NAME, region:NAME or a site",
                               m->placement[i]);
    if (m->n_labels > KVC_MODEL_LABELS_MAX)
        return kvc_err_set(err, KVC_EINVAL, "labels: at most %d", KVC_MODEL_LABELS_MAX);
    for (size_t i = 0; i < m->n_labels; i++)
        if (!s_word_ok(m->labels[i]))
            return kvc_err_set(err, KVC_EINVAL, "label: \"%.70s\": letters, digits and -_.:/=",
                               m->labels[i]);
    if (m->published_by[0] && !s_text_ok(m->published_by, sizeof m->published_by, 0))
        return kvc_err_set(err, KVC_EINVAL, "published_by: printable, no spaces");
    if (m->image[0] && !s_text_ok(m->image, sizeof m->image, 0))
        return kvc_err_set(err, KVC_EINVAL, "image: a container image reference, no spaces");
    if (m->replicas < 1 || m->replicas > KVC_MODEL_REPLICAS_MAX)
        return kvc_err_set(err, KVC_EINVAL, "replicas: 1..%d", KVC_MODEL_REPLICAS_MAX);
    return KVC_OK;
}

int kvc_model_placed(const kvc_model_t *m, const char *site, const char *region)
{
    if (m->n_placement == 0)
        return 1;
    for (size_t i = 0; i < m->n_placement; i++) {
        const char *p = m->placement[i];
        if (strcmp(p, "all") == 0 || strcmp(p, site) == 0 ||
            (strncmp(p, "site:", 5) == 0 && strcmp(p + 5, site) == 0) ||
            (region && region[0] && strncmp(p, "region:", 7) == 0 && strcmp(p + 7, region) == 0))
            return 1;
    }
    return 0;
}

/* --- keys ------------------------------------------------------------------ */

static size_t s_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
    return 8;
}

size_t kvc_model_key(const char *name, uint64_t version, uint8_t *out, size_t cap)
{
    size_t n = name ? strlen(name) : 0;
    if (!kvc_model_name_ok(name) || cap < n + 9)
        return 0;
    memcpy(out, name, n);
    out[n] = 0;
    return n + 1 + s_put_be64(out + n + 1, version);
}

size_t kvc_model_status_key(const char *site, const char *name, uint64_t version, uint8_t *out,
                            size_t cap)
{
    size_t sl = site ? strlen(site) : 0;
    if (!kvc_model_name_ok(site) || cap < sl + 1)
        return 0;
    memcpy(out, site, sl);
    out[sl] = 0;
    size_t k = kvc_model_key(name, version, out + sl + 1, cap - sl - 1);
    return k ? sl + 1 + k : 0;
}

int kvc_model_key_parse(const uint8_t *key, size_t len, char *name, size_t name_cap,
                        uint64_t *version)
{
    if (len < 10 || len > KVC_MODEL_NAME_MAX + 8 || key[len - 9] != 0)
        return KVC_EPARSE;
    size_t n = len - 9;
    if (n >= name_cap || memchr(key, 0, n))
        return KVC_EPARSE;
    memcpy(name, key, n);
    name[n] = '\0';
    if (!kvc_model_name_ok(name))
        return KVC_EPARSE;
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = v << 8 | key[n + 1 + i];
    *version = v;
    return KVC_OK;
}

/* --- records ------------------------------------------------------------- */

static void s_tensors_out(const kvc_model_tensor_t *t, size_t n, Kvc__Registry__Tensor *pb,
                          Kvc__Registry__Tensor **ptrs, int64_t (*dims)[KVC_MODEL_DIMS_MAX])
{
    for (size_t i = 0; i < n; i++) {
        kvc__registry__tensor__init(&pb[i]);
        pb[i].name = (char *)t[i].name;
        pb[i].dtype = (char *)kvc_dtype_name(t[i].dtype);
        memcpy(dims[i], t[i].dims, sizeof dims[i]);
        pb[i].shape = dims[i];
        pb[i].n_shape = t[i].n_dims;
        ptrs[i] = &pb[i];
    }
}

int kvc_model_encode(const kvc_model_t *m, uint8_t *buf, size_t cap, size_t *len)
{
    int rc = kvc_model_check(m, NULL);
    if (rc)
        return rc;
    Kvc__Registry__Model r;
    kvc__registry__model__init(&r);
    Kvc__Registry__Tensor ti[KVC_MODEL_TENSORS_MAX], to[KVC_MODEL_TENSORS_MAX];
    Kvc__Registry__Tensor *pi[KVC_MODEL_TENSORS_MAX], *po[KVC_MODEL_TENSORS_MAX];
    int64_t di[KVC_MODEL_TENSORS_MAX][KVC_MODEL_DIMS_MAX], dout[KVC_MODEL_TENSORS_MAX][KVC_MODEL_DIMS_MAX];
    char *pl[KVC_MODEL_PLACEMENT_MAX], *lb[KVC_MODEL_LABELS_MAX];
    r.name = (char *)m->name;
    r.version = m->version;
    r.framework = (char *)kvc_model_fw_name(m->framework);
    r.signature = (char *)m->signature;
    s_tensors_out(m->inputs, m->n_inputs, ti, pi, di);
    s_tensors_out(m->outputs, m->n_outputs, to, po, dout);
    r.inputs = pi;
    r.n_inputs = m->n_inputs;
    r.outputs = po;
    r.n_outputs = m->n_outputs;
    r.preprocess = (char *)m->preprocess;
    r.image_input = (char *)m->image_input;
    r.storage = (char *)m->storage;
    r.sha256 = (char *)m->sha256;
    for (size_t i = 0; i < m->n_placement; i++)
        pl[i] = (char *)m->placement[i];
    r.placement = pl;
    r.n_placement = m->n_placement;
    for (size_t i = 0; i < m->n_labels; i++)
        lb[i] = (char *)m->labels[i];
    r.labels = lb;
    r.n_labels = m->n_labels;
    r.published_by = (char *)m->published_by;
    r.published_ms = m->published_ms;
    r.image = (char *)m->image;
    r.replicas = m->replicas;
    size_t need = kvc__registry__model__get_packed_size(&r);
    if (need > cap || need > KVC_MODEL_RECORD_MAX)
        return KVC_ERANGE;
    *len = kvc__registry__model__pack(&r, buf);
    return KVC_OK;
}

/* Copies a decoded string into a field, refusing what does not fit. */
#define S_COPY(dst, src) (strlen(src) < sizeof(dst) ? (kvc_strlcpy(dst, src, sizeof(dst)), 1) : 0)

static int s_tensors_in(Kvc__Registry__Tensor **pb, size_t n, kvc_model_tensor_t *t)
{
    for (size_t i = 0; i < n; i++) {
        if (!S_COPY(t[i].name, pb[i]->name) || pb[i]->n_shape > KVC_MODEL_DIMS_MAX)
            return 0;
        t[i].dtype = kvc_dtype_parse(pb[i]->dtype);
        t[i].n_dims = pb[i]->n_shape;
        for (size_t j = 0; j < pb[i]->n_shape; j++)
            t[i].dims[j] = pb[i]->shape[j];
    }
    return 1;
}

int kvc_model_decode(const uint8_t *buf, size_t len, kvc_model_t *m, kvc_err_t *err)
{
    if (!m || (!buf && len))
        return KVC_EINVAL;
    if (len > KVC_MODEL_RECORD_MAX)
        return kvc_err_set(err, KVC_EPARSE, "model record: over %d bytes", KVC_MODEL_RECORD_MAX);
    kvc_pb_alloc_t alloc;
    Kvc__Registry__Model *r = kvc__registry__model__unpack(kvc_pb_alloc_init(&alloc), len, buf);
    if (!r) {
        int rc = kvc_pb_alloc_error(&alloc);
        return kvc_err_set(err, rc == KVC_ENOMEM ? rc : KVC_EPARSE, "model record: %s",
                           rc == KVC_ENOMEM ? "out of memory" : "malformed");
    }
    kvc_model_t *t = kvc_malloc(sizeof *t);
    if (!t) {
        kvc__registry__model__free_unpacked(r, kvc_pb_allocator());
        return kvc_err_set(err, KVC_ENOMEM, "model record: out of memory");
    }
    kvc_model_init(t);
    int ok = S_COPY(t->name, r->name) && kvc_model_fw_parse(r->framework, &t->framework) == 0 &&
             S_COPY(t->signature, r->signature) && r->n_inputs <= KVC_MODEL_TENSORS_MAX &&
             r->n_outputs <= KVC_MODEL_TENSORS_MAX &&
             r->n_placement <= KVC_MODEL_PLACEMENT_MAX && r->n_labels <= KVC_MODEL_LABELS_MAX &&
             S_COPY(t->preprocess, r->preprocess) && S_COPY(t->image_input, r->image_input) &&
             S_COPY(t->storage, r->storage) && S_COPY(t->sha256, r->sha256) &&
             S_COPY(t->published_by, r->published_by) && S_COPY(t->image, r->image);
    if (ok) {
        t->version = r->version;
        t->published_ms = r->published_ms;
        t->replicas = r->replicas ? r->replicas : 1;
        t->n_inputs = r->n_inputs;
        t->n_outputs = r->n_outputs;
        ok = s_tensors_in(r->inputs, r->n_inputs, t->inputs) &&
             s_tensors_in(r->outputs, r->n_outputs, t->outputs);
        for (size_t i = 0; ok && i < r->n_placement; i++)
            ok = S_COPY(t->placement[i], r->placement[i]);
        t->n_placement = r->n_placement;
        for (size_t i = 0; ok && i < r->n_labels; i++)
            ok = S_COPY(t->labels[i], r->labels[i]);
        t->n_labels = r->n_labels;
    }
    kvc__registry__model__free_unpacked(r, kvc_pb_allocator());
    int rc = KVC_OK;
    kvc_err_t e2 = {0};
    if (!ok)
        rc = kvc_err_set(err, KVC_EPARSE, "model record: a field is out of bounds");
    else if (kvc_model_check(t, &e2) != 0)
        rc = kvc_err_set(err, KVC_EPARSE, "model record: %s", e2.msg);
    else
        *m = *t;
    kvc_free(t);
    return rc;
}

int kvc_model_status_encode(const kvc_model_status_t *s, uint8_t *buf, size_t cap, size_t *len)
{
    if (!kvc_model_name_ok(s->site) || !kvc_model_name_ok(s->model))
        return KVC_EINVAL;
    Kvc__Registry__SiteStatus r;
    kvc__registry__site_status__init(&r);
    r.site = (char *)s->site;
    r.model = (char *)s->model;
    r.version = s->version;
    r.applied = s->applied != 0;
    r.desired_replicas = s->desired_replicas;
    r.ready_replicas = s->ready_replicas;
    r.error = (char *)s->error;
    r.updated_ms = s->updated_ms;
    r.server_version = (char *)s->server_version;
    r.coordinator = (char *)s->coordinator;
    size_t need = kvc__registry__site_status__get_packed_size(&r);
    if (need > cap)
        return KVC_ERANGE;
    *len = kvc__registry__site_status__pack(&r, buf);
    return KVC_OK;
}

int kvc_model_status_decode(const uint8_t *buf, size_t len, kvc_model_status_t *s,
                            kvc_err_t *err)
{
    if (!s || (!buf && len))
        return KVC_EINVAL;
    if (len > KVC_MODEL_RECORD_MAX)
        return kvc_err_set(err, KVC_EPARSE, "status record: too big");
    kvc_pb_alloc_t alloc;
    Kvc__Registry__SiteStatus *r =
        kvc__registry__site_status__unpack(kvc_pb_alloc_init(&alloc), len, buf);
    if (!r) {
        int rc = kvc_pb_alloc_error(&alloc);
        return kvc_err_set(err, rc == KVC_ENOMEM ? rc : KVC_EPARSE, "status record: %s",
                           rc == KVC_ENOMEM ? "out of memory" : "malformed");
    }
    kvc_model_status_t t;
    memset(&t, 0, sizeof t);
    int ok = S_COPY(t.site, r->site) && S_COPY(t.model, r->model) && S_COPY(t.error, r->error) &&
             S_COPY(t.server_version, r->server_version) &&
             S_COPY(t.coordinator, r->coordinator) && kvc_model_name_ok(t.site) &&
             kvc_model_name_ok(t.model) && s_text_ok(t.error, sizeof t.error, 1) &&
             s_text_ok(t.server_version, sizeof t.server_version, 0) &&
             s_text_ok(t.coordinator, sizeof t.coordinator, 0);
    t.version = r->version;
    t.applied = r->applied;
    t.desired_replicas = r->desired_replicas;
    t.ready_replicas = r->ready_replicas;
    t.updated_ms = r->updated_ms;
    kvc__registry__site_status__free_unpacked(r, kvc_pb_allocator());
    if (!ok)
        return kvc_err_set(err, KVC_EPARSE, "status record: a field is out of bounds");
    *s = t;
    return KVC_OK;
}

/* --- YAML ---------------------------------------------------------------- */

typedef struct {
    yaml_document_t *doc;
    kvc_err_t *err;
} s_yaml_t;

static yaml_node_t *s_node(s_yaml_t *y, int id)
{
    return yaml_document_get_node(y->doc, id);
}

/* The scalar text of a node, or NULL when it is not a scalar. */
static const char *s_scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int s_yaml_str(s_yaml_t *y, const char *key, yaml_node_t *n, char *dst, size_t cap)
{
    const char *s = s_scalar(n);
    if (!s)
        return kvc_err_set(y->err, KVC_EINVAL, "%s: a string is needed", key);
    if (strlen(s) >= cap)
        return kvc_err_set(y->err, KVC_EINVAL, "%s: at most %zu characters", key, cap - 1);
    kvc_strlcpy(dst, s, cap);
    return KVC_OK;
}

static int s_yaml_uint(s_yaml_t *y, const char *key, yaml_node_t *n, uint64_t max, uint64_t *out)
{
    const char *s = s_scalar(n);
    char *end;
    errno = 0;
    if (!s || !isdigit((unsigned char)s[0]))
        return kvc_err_set(y->err, KVC_EINVAL, "%s: a positive integer is needed", key);
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno || v < 1 || v > max)
        return kvc_err_set(y->err, KVC_EINVAL, "%s: an integer in 1..%llu is needed", key,
                           (unsigned long long)max);
    *out = v;
    return KVC_OK;
}

/* A list of words (or one word) into a fixed array. */
static int s_yaml_words(s_yaml_t *y, const char *key, yaml_node_t *n, char (*dst)[KVC_MODEL_WORD_MAX],
                        size_t max, size_t *count)
{
    *count = 0;
    if (n->type == YAML_SCALAR_NODE)
        return *count = 1, s_yaml_str(y, key, n, dst[0], KVC_MODEL_WORD_MAX);
    if (n->type != YAML_SEQUENCE_NODE)
        return kvc_err_set(y->err, KVC_EINVAL, "%s: a list is needed", key);
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        if (*count == max)
            return kvc_err_set(y->err, KVC_EINVAL, "%s: at most %zu", key, max);
        int rc = s_yaml_str(y, key, s_node(y, *it), dst[*count], KVC_MODEL_WORD_MAX);
        if (rc)
            return rc;
        (*count)++;
    }
    return KVC_OK;
}

static int s_yaml_tensors(s_yaml_t *y, const char *key, yaml_node_t *n, kvc_model_tensor_t *t,
                          size_t *count)
{
    *count = 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return kvc_err_set(y->err, KVC_EINVAL, "%s: a list of {name, dtype, shape} is needed",
                           key);
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        if (*count == KVC_MODEL_TENSORS_MAX)
            return kvc_err_set(y->err, KVC_EINVAL, "%s: at most %d", key, KVC_MODEL_TENSORS_MAX);
        yaml_node_t *e = s_node(y, *it);
        kvc_model_tensor_t *x = &t[*count];
        memset(x, 0, sizeof *x);
        if (!e || e->type != YAML_MAPPING_NODE)
            return kvc_err_set(y->err, KVC_EINVAL, "%s[%zu]: a map {name, dtype, shape} is needed",
                               key, *count);
        for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top;
             p++) {
            const char *k = s_scalar(s_node(y, p->key));
            yaml_node_t *v = s_node(y, p->value);
            int rc = KVC_OK;
            if (!k || !v) {
                rc = kvc_err_set(y->err, KVC_EINVAL, "%s[%zu]: bad key", key, *count);
            } else if (strcmp(k, "name") == 0) {
                rc = s_yaml_str(y, "name", v, x->name, sizeof x->name);
            } else if (strcmp(k, "dtype") == 0) {
                const char *d = s_scalar(v);
                x->dtype = d ? kvc_dtype_parse(d) : KVC_DT_INVALID;
                if (!kvc_dtype_valid(x->dtype))
                    rc = kvc_err_set(y->err, KVC_EINVAL, "%s[%zu].dtype: unknown \"%.32s\"", key,
                                     *count, d ? d : "");
            } else if (strcmp(k, "shape") == 0) {
                if (v->type != YAML_SEQUENCE_NODE)
                    rc = kvc_err_set(y->err, KVC_EINVAL, "%s[%zu].shape: a list like [1, -1]",
                                     key, *count);
                for (yaml_node_item_t *d = v->data.sequence.items.start;
                     !rc && d < v->data.sequence.items.top; d++) {
                    const char *s = s_scalar(s_node(y, *d));
                    char *end;
                    errno = 0;
                    long long dv = s ? strtoll(s, &end, 10) : 0;
                    if (!s || !*s || *end || errno || dv < -1 || x->n_dims == KVC_MODEL_DIMS_MAX)
                        rc = kvc_err_set(y->err, KVC_EINVAL,
                                         "%s[%zu].shape: up to %d integers >= -1", key, *count,
                                         KVC_MODEL_DIMS_MAX);
                    else
                        x->dims[x->n_dims++] = dv;
                }
            } else {
                rc = kvc_err_set(y->err, KVC_EINVAL, "%s[%zu]: unknown key \"%.40s\"", key,
                                 *count, k);
            }
            if (rc)
                return rc;
        }
        (*count)++;
    }
    return KVC_OK;
}

/* Appends " word" to a preprocess text. */
static void s_pp_add(char *dst, size_t cap, const char *word)
{
    size_t n = strlen(dst);
    snprintf(dst + n, cap - n, "%s%s", n ? " " : "", word);
}

/* A numeric list such as [0.485, 0.456, 0.406] as "0.485,0.456,0.406". */
static int s_yaml_numlist(s_yaml_t *y, const char *key, yaml_node_t *n, char *dst, size_t cap)
{
    dst[0] = '\0';
    if (n->type == YAML_SCALAR_NODE)
        return s_yaml_str(y, key, n, dst, cap);
    if (n->type != YAML_SEQUENCE_NODE)
        return kvc_err_set(y->err, KVC_EINVAL, "preprocess.%s: a number or a list", key);
    size_t len = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        const char *s = s_scalar(s_node(y, *it));
        char *end;
        if (!s || (strtod(s, &end), *end) || !*s)
            return kvc_err_set(y->err, KVC_EINVAL, "preprocess.%s: numbers only", key);
        int w = snprintf(dst + len, cap - len, "%s%s", len ? "," : "", s);
        if (w < 0 || (size_t)w >= cap - len)
            return kvc_err_set(y->err, KVC_EINVAL, "preprocess.%s: too long", key);
        len += (size_t)w;
    }
    return KVC_OK;
}

/* The map form of preprocessing, turned into the text form. */
static int s_yaml_preprocess(s_yaml_t *y, yaml_node_t *n, char *dst, size_t cap)
{
    if (n->type == YAML_SCALAR_NODE)
        return s_yaml_str(y, "preprocess", n, dst, cap);
    if (n->type != YAML_MAPPING_NODE)
        return kvc_err_set(y->err, KVC_EINVAL, "preprocess: a spec string or a map");
    dst[0] = '\0';
    char scale[64] = "", mean[128] = "", std[128] = "";
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = s_scalar(s_node(y, p->key));
        yaml_node_t *v = s_node(y, p->value);
        char w[160];
        int rc = KVC_OK;
        if (!k || !v)
            return kvc_err_set(y->err, KVC_EINVAL, "preprocess: bad key");
        if (strcmp(k, "size") == 0) {
            if (v->type == YAML_SEQUENCE_NODE &&
                v->data.sequence.items.top - v->data.sequence.items.start == 2) {
                const char *a = s_scalar(s_node(y, v->data.sequence.items.start[0]));
                const char *b = s_scalar(s_node(y, v->data.sequence.items.start[1]));
                if (!a || !b)
                    return kvc_err_set(y->err, KVC_EINVAL, "preprocess.size: [width, height]");
                snprintf(w, sizeof w, "%.20sx%.20s", a, b);
            } else {
                rc = s_yaml_str(y, "preprocess.size", v, w, sizeof w);
            }
            if (!rc)
                s_pp_add(dst, cap, w);
        } else if (strcmp(k, "layout") == 0 || strcmp(k, "channels") == 0 ||
                   strcmp(k, "dtype") == 0 || strcmp(k, "resize") == 0) {
            rc = s_yaml_str(y, k, v, w, 32);
            for (char *c = w; !rc && *c; c++)
                *c = (char)tolower((unsigned char)*c);
            if (!rc)
                s_pp_add(dst, cap, w);
        } else if (strcmp(k, "scale") == 0 || strcmp(k, "scaling") == 0) {
            /* "[0,1]" and "[-1,1]" as a range, or a number such as 1/255 */
            if (v->type == YAML_SEQUENCE_NODE) {
                char r[64];
                rc = s_yaml_numlist(y, "scale", v, r, sizeof r);
                if (!rc && strcmp(r, "0,1") == 0)
                    kvc_strlcpy(scale, "1/255", sizeof scale);
                else if (!rc && strcmp(r, "-1,1") == 0)
                    kvc_strlcpy(scale, "-1,1", sizeof scale);
                else if (!rc)
                    rc = kvc_err_set(y->err, KVC_EINVAL,
                                     "preprocess.scale: [0, 1], [-1, 1] or a number");
            } else {
                rc = s_yaml_str(y, "preprocess.scale", v, scale, sizeof scale);
                if (!rc && (strcmp(scale, "[0,1]") == 0 || strcmp(scale, "[0, 1]") == 0))
                    kvc_strlcpy(scale, "1/255", sizeof scale);
                else if (!rc && (strcmp(scale, "[-1,1]") == 0 || strcmp(scale, "[-1, 1]") == 0))
                    kvc_strlcpy(scale, "-1,1", sizeof scale);
            }
        } else if (strcmp(k, "mean") == 0) {
            rc = s_yaml_numlist(y, "mean", v, mean, sizeof mean);
        } else if (strcmp(k, "std") == 0) {
            rc = s_yaml_numlist(y, "std", v, std, sizeof std);
        } else {
            rc = kvc_err_set(y->err, KVC_EINVAL, "preprocess: unknown key \"%.40s\"", k);
        }
        if (rc)
            return rc;
    }
    char w[200];
    if (strcmp(scale, "-1,1") == 0) {
        /* pixel / 127.5 - 1 */
        if (mean[0] || std[0])
            return kvc_err_set(y->err, KVC_EINVAL,
                               "preprocess: scale [-1, 1] already sets mean and std");
        s_pp_add(dst, cap, "scale=1/127.5 mean=1");
    } else if (scale[0]) {
        snprintf(w, sizeof w, "scale=%s", scale);
        s_pp_add(dst, cap, w);
    }
    if (mean[0]) {
        snprintf(w, sizeof w, "mean=%s", mean);
        s_pp_add(dst, cap, w);
    }
    if (std[0]) {
        snprintf(w, sizeof w, "std=%s", std);
        s_pp_add(dst, cap, w);
    }
    if (strlen(dst) + 1 >= cap)
        return kvc_err_set(y->err, KVC_EINVAL, "preprocess: too long");
    return KVC_OK;
}

static int s_yaml_model(s_yaml_t *y, yaml_node_t *root, kvc_model_t *m)
{
    if (!root || root->type != YAML_MAPPING_NODE)
        return kvc_err_set(y->err, KVC_EINVAL, "a map of model fields is needed");
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *k = s_scalar(s_node(y, p->key));
        yaml_node_t *v = s_node(y, p->value);
        int rc = KVC_OK;
        uint64_t u;
        if (!k || !v)
            return kvc_err_set(y->err, KVC_EINVAL, "keys must be strings");
        if (strcmp(k, "name") == 0) {
            rc = s_yaml_str(y, k, v, m->name, sizeof m->name);
        } else if (strcmp(k, "version") == 0) {
            rc = s_yaml_uint(y, k, v, KVC_MODEL_VERSION_MAX, &m->version);
        } else if (strcmp(k, "framework") == 0) {
            const char *s = s_scalar(v);
            if (!s || kvc_model_fw_parse(s, &m->framework) != 0)
                rc = kvc_err_set(y->err, KVC_EINVAL, "framework: tfserving or kserve-v2");
        } else if (strcmp(k, "signature") == 0) {
            rc = s_yaml_str(y, k, v, m->signature, sizeof m->signature);
        } else if (strcmp(k, "inputs") == 0) {
            rc = s_yaml_tensors(y, k, v, m->inputs, &m->n_inputs);
        } else if (strcmp(k, "outputs") == 0) {
            rc = s_yaml_tensors(y, k, v, m->outputs, &m->n_outputs);
        } else if (strcmp(k, "preprocess") == 0) {
            rc = s_yaml_preprocess(y, v, m->preprocess, sizeof m->preprocess);
        } else if (strcmp(k, "image_input") == 0) {
            rc = s_yaml_str(y, k, v, m->image_input, sizeof m->image_input);
        } else if (strcmp(k, "storage") == 0) {
            rc = s_yaml_str(y, k, v, m->storage, sizeof m->storage);
        } else if (strcmp(k, "sha256") == 0) {
            rc = s_yaml_str(y, k, v, m->sha256, sizeof m->sha256);
        } else if (strcmp(k, "placement") == 0) {
            rc = s_yaml_words(y, k, v, m->placement, KVC_MODEL_PLACEMENT_MAX, &m->n_placement);
        } else if (strcmp(k, "labels") == 0) {
            rc = s_yaml_words(y, k, v, m->labels, KVC_MODEL_LABELS_MAX, &m->n_labels);
        } else if (strcmp(k, "image") == 0) {
            rc = s_yaml_str(y, k, v, m->image, sizeof m->image);
        } else if (strcmp(k, "replicas") == 0) {
            rc = s_yaml_uint(y, k, v, KVC_MODEL_REPLICAS_MAX, &u);
            m->replicas = (uint32_t)u;
        } else {
            rc = kvc_err_set(y->err, KVC_EINVAL, "unknown key \"%.40s\"", k);
        }
        if (rc)
            return rc;
    }
    return KVC_OK;
}

int kvc_model_load_yaml_text(const char *text, size_t len, kvc_model_t *m, kvc_err_t *err)
{
    if (len > YAML_FILE_MAX)
        return kvc_err_set(err, KVC_ERANGE, "over %d bytes", YAML_FILE_MAX);
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = kvc_err_set(err, KVC_EPARSE, "line %zu: %s", parser.problem_mark.line + 1,
                             parser.problem ? parser.problem : "not YAML");
        yaml_parser_delete(&parser);
        return rc;
    }
    kvc_model_init(m);
    s_yaml_t y = {&doc, err};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = root ? s_yaml_model(&y, root, m)
                  : kvc_err_set(err, KVC_EINVAL, "empty: a map of model fields is needed");
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int kvc_model_load_yaml(const char *path, kvc_model_t *m, kvc_err_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kvc_err_set(err, KVC_EIO, "%s: %s", path, strerror(errno));
    char *buf = kvc_malloc(YAML_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, YAML_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    int rc;
    if (bad)
        rc = kvc_err_set(err, KVC_EIO, "%s: read error", path);
    else if (n > YAML_FILE_MAX)
        rc = kvc_err_set(err, KVC_ERANGE, "%s: over %d bytes", path, YAML_FILE_MAX);
    else {
        rc = kvc_model_load_yaml_text(buf, n, m, err);
        if (rc)
            kvc_err_prefix(err, "%s: ", path);
    }
    kvc_free(buf);
    return rc;
}

/* --- the version a model server reports ---------------------------------- */

/* A version written as a JSON string ("2", TF Serving) or a number. */
static int s_read_version(kvc_json_cursor_t *c, uint64_t *v)
{
    kvc_json_cursor_ws(c);
    if (kvc_json_cursor_peek(c) != '"')
        return kvc_json_cursor_read_u64(c, v);
    char buf[24];
    int rc = kvc_json_cursor_read_string(c, buf, sizeof buf, NULL);
    if (rc)
        return rc;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(buf, &end, 10);
    if (!buf[0] || *end || errno || buf[0] == '-')
        return kvc_json_cursor_fail(c, KVC_EPARSE, "a version is not a number");
    *v = x;
    return KVC_OK;
}

int kvc_model_served_version_parse(const char *body, size_t len, uint64_t *version,
                                   kvc_err_t *err)
{
    kvc_json_cursor_t c;
    kvc_json_cursor_init(&c, body, len, err);
    uint64_t best = 0;
    int st = 0, rc;
    char key[32];
    while ((rc = kvc_json_cursor_member(&c, &st, key, sizeof key)) == 1) {
        int es = 0;
        if (strcmp(key, "model_version_status") == 0) {
            /* TF Serving: [{"version": "2", "state": "AVAILABLE", ...}] */
            while ((rc = kvc_json_cursor_element(&c, &es)) == 1) {
                int ms = 0, available = 0;
                uint64_t v = 0;
                char k2[16];
                while ((rc = kvc_json_cursor_member(&c, &ms, k2, sizeof k2)) == 1) {
                    if (strcmp(k2, "version") == 0) {
                        rc = s_read_version(&c, &v);
                    } else if (strcmp(k2, "state") == 0) {
                        char state[32];
                        rc = kvc_json_cursor_read_string(&c, state, sizeof state, NULL);
                        available = rc == 0 && strcmp(state, "AVAILABLE") == 0;
                    } else {
                        rc = kvc_json_cursor_skip(&c);
                    }
                    if (rc)
                        return rc;
                }
                if (rc < 0)
                    return rc;
                if (available && v > best)
                    best = v;
            }
        } else if (strcmp(key, "versions") == 0) {
            /* KServe v2 model metadata: ["1", "2"] */
            while ((rc = kvc_json_cursor_element(&c, &es)) == 1) {
                uint64_t v = 0;
                if ((rc = s_read_version(&c, &v)) != 0)
                    return rc;
                if (v > best)
                    best = v;
            }
        } else {
            rc = kvc_json_cursor_skip(&c);
        }
        if (rc < 0)
            return rc;
    }
    if (rc < 0)
        return rc;
    kvc_json_cursor_ws(&c);
    if (c.p != c.end)
        return kvc_json_cursor_unexpected(&c, "the end of the answer");
    *version = best;
    return best ? KVC_OK : KVC_ENOENT;
}
