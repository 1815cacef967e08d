/*
 * kubeconfig.c - reads the current context of a kubeconfig (libyaml's
 * document loader): the API server, its CA, and the client certificate and
 * key or bearer token to present.
 *
 * The file is hostile input like any other: it is bounded in size, every
 * blob is bounded after decoding, base64 and paths are checked, and every
 * error names the field ("kubeconfig: users[0].user.client-key-data: not
 * base64"). It must never echo a value (a key or token) into a message,
 * and never leave key material in memory it frees.
 */
#include "kube.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* Reads a whole regular file of at most max bytes into a fresh buffer. */
static int s_read_file(const char *path, size_t max, unsigned char **out, size_t *out_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? KVC_ENOENT : KVC_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return KVC_EIO;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return KVC_ERANGE;
    }
    unsigned char *buf = kvc_malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return KVC_ENOMEM;
    }
    size_t n = 0;
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return KVC_OK;
}

/* Returns the scalar text of node (and its length), or NULL. */
static const char *s_scalar(const yaml_node_t *node, size_t *len)
{
    if (!node || node->type != YAML_SCALAR_NODE)
        return NULL;
    if (len)
        *len = node->data.scalar.length;
    return (const char *)node->data.scalar.value;
}

/* Tells whether the scalar node equals s exactly. */
static int s_scalar_is(const yaml_node_t *node, const char *s)
{
    size_t n;
    const char *v = s_scalar(node, &n);
    return v && n == strlen(s) && memcmp(v, s, n) == 0;
}

/* Returns the value of key in the mapping node, or NULL. */
static yaml_node_t *s_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        if (s_scalar_is(yaml_document_get_node(doc, p->key), key))
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

/* Tells whether a scalar is plain text for a message or a path: printable
 * ASCII, no NUL. */
static int s_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

/*
 * Finds the item of the named list (contexts, clusters, users) whose name is
 * want and returns its inner mapping (item[inner]); *index gets its place.
 */
static int s_find_named(yaml_document_t *doc, yaml_node_t *root, const char *list,
                        const char *inner, const char *want, yaml_node_t **out, size_t *index,
                        kvc_err_t *err)
{
    yaml_node_t *seq = s_get(doc, root, list);
    if (!seq)
        return kvc_err_set(err, KVC_ENOENT, "kubeconfig: %s: missing", list);
    if (seq->type != YAML_SEQUENCE_NODE)
        return kvc_err_set(err, KVC_EPARSE, "kubeconfig: %s: must be a list", list);
    size_t i = 0;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++, i++) {
        yaml_node_t *item = yaml_document_get_node(doc, *it);
        if (!item || item->type != YAML_MAPPING_NODE)
            return kvc_err_set(err, KVC_EPARSE, "kubeconfig: %s[%zu]: must be a mapping", list, i);
        if (!s_scalar_is(s_get(doc, item, "name"), want))
            continue;
        yaml_node_t *m = s_get(doc, item, inner);
        if (!m || m->type != YAML_MAPPING_NODE)
            return kvc_err_set(err, KVC_EPARSE, "kubeconfig: %s[%zu].%s: must be a mapping", list,
                               i, inner);
        *out = m;
        *index = i;
        return KVC_OK;
    }
    return kvc_err_set(err, KVC_ENOENT, "kubeconfig: %s: no entry named by the current context",
                       list);
}

/*
 * Reads a blob from field "<name>-data" (base64) or "<name>" (a file) of
 * mapping m; *out stays NULL if neither is there. where is "users[0].user".
 */
static int s_blob(yaml_document_t *doc, yaml_node_t *m, const char *name, const char *where,
                  const char *dir, unsigned char **out, size_t *out_len, kvc_err_t *err)
{
    char data_key[64];
    snprintf(data_key, sizeof data_key, "%s-data", name);
    yaml_node_t *d = s_get(doc, m, data_key);
    yaml_node_t *f = s_get(doc, m, name);
    *out = NULL;
    *out_len = 0;
    if (d) {
        size_t n;
        const char *v = s_scalar(d, &n);
        if (!v)
            return kvc_err_set(err, KVC_EPARSE, "kubeconfig: %s.%s: must be a string", where,
                               data_key);
        if (n > sodium_base64_ENCODED_LEN(KVC_KUBE_BLOB_MAX, sodium_base64_VARIANT_ORIGINAL) + 64)
            return kvc_err_set(err, KVC_ERANGE, "kubeconfig: %s.%s: longer than %d bytes", where,
                               data_key, KVC_KUBE_BLOB_MAX);
        unsigned char *buf = kvc_malloc(n / 4 * 3 + 4);
        if (!buf)
            return kvc_err_set(err, KVC_ENOMEM, "kubeconfig: out of memory");
        size_t bin_len = 0;
        const char *endp = NULL;
        if (sodium_base642bin(buf, n / 4 * 3 + 3, v, n, " \t\r\n", &bin_len, &endp,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            endp != v + n || bin_len == 0) {
            sodium_memzero(buf, n / 4 * 3 + 4);
            kvc_free(buf);
            return kvc_err_set(err, KVC_EPARSE, "kubeconfig: %s.%s: not base64", where, data_key);
        }
        if (bin_len > KVC_KUBE_BLOB_MAX) {
            sodium_memzero(buf, n / 4 * 3 + 4);
            kvc_free(buf);
            return kvc_err_set(err, KVC_ERANGE, "kubeconfig: %s.%s: longer than %d bytes", where,
                               data_key, KVC_KUBE_BLOB_MAX);
        }
        buf[bin_len] = '\0';
        *out = buf;
        *out_len = bin_len;
        return KVC_OK;
    }
    if (!f)
        return KVC_OK;
    size_t n;
    const char *v = s_scalar(f, &n);
    if (!v || n == 0 || n >= 1024 || !s_printable(v, n))
        return kvc_err_set(err, KVC_EPARSE, "kubeconfig: %s.%s: must be a file name", where, name);
    if (!dir)
        return kvc_err_set(err, KVC_EPERM, "kubeconfig: %s.%s: file references not allowed here",
                           where, name);
    char path[2048];
    if (v[0] == '/')
        snprintf(path, sizeof path, "%.*s", (int)n, v);
    else
        snprintf(path, sizeof path, "%s/%.*s", dir, (int)n, v);
    int rc = s_read_file(path, KVC_KUBE_BLOB_MAX, out, out_len);
    if (rc == KVC_ERANGE)
        return kvc_err_set(err, rc, "kubeconfig: %s.%s: file longer than %d bytes", where, name,
                           KVC_KUBE_BLOB_MAX);
    if (rc != KVC_OK)
        return kvc_err_set(err, rc, "kubeconfig: %s.%s: cannot read %s: %s", where, name, path,
                           rc == KVC_ENOENT ? "no such file" : kvc_strerror(rc));
    return KVC_OK;
}

void kvc_kubeconfig_free(kvc_kubeconfig_t *cfg)
{
    if (!cfg)
        return;
    if (cfg->key)
        sodium_memzero(cfg->key, cfg->key_len);
    if (cfg->token)
        sodium_memzero(cfg->token, cfg->token_len);
    kvc_free(cfg->ca);
    kvc_free(cfg->cert);
    kvc_free(cfg->key);
    kvc_free(cfg->token);
    memset(cfg, 0, sizeof *cfg);
}

/* Reads the parts of the loaded document into cfg. */
static int s_read_doc(yaml_document_t *doc, const char *dir, kvc_kubeconfig_t *cfg, kvc_err_t *err)
{
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root || root->type != YAML_MAPPING_NODE)
        return kvc_err_set(err, KVC_EPARSE, "kubeconfig: not a mapping");
    size_t n;
    const char *cur = s_scalar(s_get(doc, root, "current-context"), &n);
    if (!cur || n == 0)
        return kvc_err_set(err, KVC_ENOENT, "kubeconfig: current-context: missing");
    if (n > 253 || !s_printable(cur, n))
        return kvc_err_set(err, KVC_EPARSE, "kubeconfig: current-context: not a valid name");

    yaml_node_t *ctx;
    size_t ci;
    int rc = s_find_named(doc, root, "contexts", "context", cur, &ctx, &ci, err);
    if (rc)
        return rc;
    char cluster_name[256], user_name[256];
    const char *v = s_scalar(s_get(doc, ctx, "cluster"), &n);
    if (!v || n == 0 || n >= sizeof cluster_name || !s_printable(v, n))
        return kvc_err_set(err, KVC_EPARSE, "kubeconfig: contexts[%zu].context.cluster: %s", ci,
                           v ? "not a valid name" : "missing");
    memcpy(cluster_name, v, n);
    cluster_name[n] = '\0';
    v = s_scalar(s_get(doc, ctx, "user"), &n);
    if (!v || n == 0 || n >= sizeof user_name || !s_printable(v, n))
        return kvc_err_set(err, KVC_EPARSE, "kubeconfig: contexts[%zu].context.user: %s", ci,
                           v ? "not a valid name" : "missing");
    memcpy(user_name, v, n);
    user_name[n] = '\0';

    yaml_node_t *cl, *us;
    size_t cli, usi;
    if ((rc = s_find_named(doc, root, "clusters", "cluster", cluster_name, &cl, &cli, err)) ||
        (rc = s_find_named(doc, root, "users", "user", user_name, &us, &usi, err)))
        return rc;

    char where[64];
    snprintf(where, sizeof where, "clusters[%zu].cluster", cli);
    v = s_scalar(s_get(doc, cl, "server"), &n);
    if (!v)
        return kvc_err_set(err, KVC_EPARSE, "kubeconfig: %s.server: missing", where);
    while (n > 0 && v[n - 1] == '/')
        n--;
    if (n >= sizeof cfg->server)
        return kvc_err_set(err, KVC_ERANGE, "kubeconfig: %s.server: longer than %d bytes", where,
                           KVC_KUBE_SERVER_MAX - 1);
    if (n <= 8 || strncmp(v, "https://", 8) != 0 || !s_printable(v, n) || memchr(v, ' ', n))
        return kvc_err_set(err, KVC_EPARSE, "kubeconfig: %s.server: must be an https:// URL",
                           where);
    memcpy(cfg->server, v, n);
    cfg->server[n] = '\0';
    if ((rc = s_blob(doc, cl, "certificate-authority", where, dir, &cfg->ca, &cfg->ca_len, err)))
        return rc;

    snprintf(where, sizeof where, "users[%zu].user", usi);
    if ((rc = s_blob(doc, us, "client-certificate", where, dir, &cfg->cert, &cfg->cert_len, err)) ||
        (rc = s_blob(doc, us, "client-key", where, dir, &cfg->key, &cfg->key_len, err)))
        return rc;
    yaml_node_t *tok = s_get(doc, us, "token");
    if (tok) {
        v = s_scalar(tok, &n);
        if (!v || n == 0)
            return kvc_err_set(err, KVC_EPARSE, "kubeconfig: %s.token: must be a string", where);
        if (n > KVC_KUBE_BLOB_MAX)
            return kvc_err_set(err, KVC_ERANGE, "kubeconfig: %s.token: longer than %d bytes", where,
                               KVC_KUBE_BLOB_MAX);
        /* It goes into an HTTP header: no CR, LF or other control bytes. */
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
                return kvc_err_set(err, KVC_EPARSE,
                                   "kubeconfig: %s.token: holds a byte a header cannot carry",
                                   where);
        cfg->token = kvc_strndup(v, n);
        if (!cfg->token)
            return kvc_err_set(err, KVC_ENOMEM, "kubeconfig: out of memory");
        cfg->token_len = n;
    }
    if (!cfg->cert != !cfg->key)
        return kvc_err_set(err, KVC_EINVAL,
                           "kubeconfig: %s: client-certificate and client-key go together", where);
    if (!cfg->cert && !cfg->token)
        return kvc_err_set(err, KVC_ENOENT,
                           "kubeconfig: %s: neither a client certificate nor a token", where);
    return KVC_OK;
}

/* Wipes libyaml's copies of the text (scalars and the parser's buffers):
 * they hold the key and token too, and libyaml frees without wiping. */
static void s_wipe_yaml(yaml_document_t *doc, yaml_parser_t *parser)
{
    for (yaml_node_t *n = doc ? doc->nodes.start : NULL; n && n < doc->nodes.top; n++)
        if (n->type == YAML_SCALAR_NODE && n->data.scalar.value)
            sodium_memzero(n->data.scalar.value, n->data.scalar.length);
    if (parser->buffer.start)
        sodium_memzero(parser->buffer.start, (size_t)(parser->buffer.end - parser->buffer.start));
    if (parser->raw_buffer.start)
        sodium_memzero(parser->raw_buffer.start,
                       (size_t)(parser->raw_buffer.end - parser->raw_buffer.start));
}

int kvc_kubeconfig_parse(const char *text, size_t len, const char *dir, kvc_kubeconfig_t *cfg,
                         kvc_err_t *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (len > KVC_KUBECONFIG_MAX)
        return kvc_err_set(err, KVC_ERANGE, "kubeconfig: longer than %d bytes", KVC_KUBECONFIG_MAX);
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return kvc_err_set(err, KVC_ENOMEM, "kubeconfig: out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = kvc_err_set(err, KVC_EPARSE, "kubeconfig:%lu:%lu: %s",
                             (unsigned long)parser.problem_mark.line + 1,
                             (unsigned long)parser.problem_mark.column + 1,
                             parser.problem ? parser.problem : "YAML error");
        s_wipe_yaml(NULL, &parser);
        yaml_parser_delete(&parser);
        return rc;
    }
    int rc = s_read_doc(&doc, dir, cfg, err);
    s_wipe_yaml(&doc, &parser);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc)
        kvc_kubeconfig_free(cfg);
    return rc;
}

int kvc_kubeconfig_load(const char *path, kvc_kubeconfig_t *cfg, kvc_err_t *err)
{
    memset(cfg, 0, sizeof *cfg);
    unsigned char *text = NULL;
    size_t len = 0;
    int rc = s_read_file(path, KVC_KUBECONFIG_MAX, &text, &len);
    if (rc == KVC_ERANGE)
        return kvc_err_set(err, rc, "kubeconfig: %s: longer than %d bytes", path,
                           KVC_KUBECONFIG_MAX);
    if (rc)
        return kvc_err_set(err, rc, "kubeconfig: %s: cannot read: %s", path,
                           rc == KVC_ENOENT ? "no such file" : kvc_strerror(rc));
    char dir[1024];
    const char *slash = strrchr(path, '/');
    if (!slash)
        kvc_strlcpy(dir, ".", sizeof dir);
    else if ((size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash == path ? 1 : slash - path), path);
    else {
        kvc_free(text);
        return kvc_err_set(err, KVC_ERANGE, "kubeconfig: %s: folder name too long", path);
    }
    rc = kvc_kubeconfig_parse((const char *)text, len, dir, cfg, err);
    /* The text may hold a key in base64. */
    sodium_memzero(text, len);
    kvc_free(text);
    return rc;
}
