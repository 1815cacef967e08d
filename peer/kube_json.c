/*
 * kube_json.c - reads the few things the Kubernetes client needs from API
 * responses: a Status's code, reason and message, one string or integer
 * at a path of keys, and the names in a list.
 *
 * Bodies come from the network: the proxy's bounded JSON cursor walks
 * them, values we do not want are skipped with its depth limit, and every
 * string we keep is checked (no NUL, printable where it goes into a
 * message). Nothing here allocates except the strings it returns.
 */
#include "json_cursor.h"
#include "kube.h"

#include <stdint.h>
#include <string.h>

/* Longest object key we compare; Kubernetes keys stop at 253. */
#define S_KEY_MAX 512

/*
 * Moves the cursor to the value at path (object keys, depth of them) and
 * returns 1, or returns 0 if some key is absent or a value on the way is
 * not an object (the cursor is then somewhere inside), or a negative code.
 */
static int s_locate(kvc_json_cursor_t *c, const char *const *path, size_t depth)
{
    if (depth == 0)
        return 1;
    if (kvc_json_cursor_peek(c) != '{')
        return 0;
    int state = 0, rc;
    char key[S_KEY_MAX];
    while ((rc = kvc_json_cursor_member(c, &state, key, sizeof key)) == 1) {
        if (strcmp(key, path[0]) == 0)
            return s_locate(c, path + 1, depth - 1);
        if ((rc = kvc_json_cursor_skip(c)) < 0)
            return rc;
    }
    return rc;
}

/* Reads the string value at the cursor into a fresh buffer; 0 if not a string. */
static int s_read_alloc(kvc_json_cursor_t *c, char **out, size_t *out_len)
{
    if (kvc_json_cursor_peek(c) != '"')
        return 0;
    const char *raw;
    size_t n;
    int escaped;
    int rc = kvc_json_cursor_string_span(c, &raw, &n, &escaped);
    if (rc < 0)
        return rc;
    char *s = kvc_malloc(n + 1);
    if (!s)
        return KVC_ENOMEM;
    size_t len = n;
    if (escaped) {
        if ((rc = kvc_json_cursor_unescape(c, raw, n, s, &len)) < 0) {
            kvc_free(s);
            return rc;
        }
    } else {
        memcpy(s, raw, n);
    }
    s[len] = '\0';
    *out = s;
    if (out_len)
        *out_len = len;
    return 1;
}

int kvc_kube_json_string(const char *body, size_t len, const char *const *path, size_t depth,
                         char **out, size_t *out_len)
{
    *out = NULL;
    kvc_json_cursor_t c;
    kvc_json_cursor_init(&c, body, len, NULL);
    int rc = s_locate(&c, path, depth);
    if (rc != 1)
        return rc < 0 ? KVC_EPARSE : 0;
    rc = s_read_alloc(&c, out, out_len);
    if (rc < 0)
        return rc == KVC_ENOMEM ? rc : KVC_EPARSE;
    return rc;
}

int kvc_kube_json_u64(const char *body, size_t len, const char *const *path, size_t depth,
                      uint64_t *out)
{
    *out = 0;
    kvc_json_cursor_t c;
    kvc_json_cursor_init(&c, body, len, NULL);
    int rc = s_locate(&c, path, depth);
    if (rc != 1)
        return rc < 0 ? KVC_EPARSE : 0;
    int ch = kvc_json_cursor_peek(&c);
    if (ch != '-' && (ch < '0' || ch > '9'))
        return 0; /* a string, object, array, bool or null: not a count */
    uint64_t v;
    if (kvc_json_cursor_read_u64(&c, &v) < 0 || v > (uint64_t)INT64_MAX)
        return KVC_EPARSE;
    *out = v;
    return 1;
}

int kvc_kube_list_names(const char *body, size_t len, kvc_kube_name_fn fn, void *arg)
{
    static const char *const items_path[] = {"items"};
    static const char *const name_path[] = {"metadata", "name"};
    kvc_json_cursor_t c;
    kvc_json_cursor_init(&c, body, len, NULL);
    if (kvc_json_cursor_peek(&c) != '{')
        return KVC_EPARSE;
    int rc = s_locate(&c, items_path, 1);
    if (rc != 1)
        return rc < 0 ? KVC_EPARSE : KVC_OK; /* a list without items is empty */
    if (kvc_json_cursor_peek(&c) == 'n')
        return KVC_OK; /* "items": null, as Go writes an empty slice */
    int state = 0;
    while ((rc = kvc_json_cursor_element(&c, &state)) == 1) {
        kvc_json_cursor_ws(&c);
        const char *start = c.p;
        if (kvc_json_cursor_skip(&c) < 0)
            return KVC_EPARSE;
        char *name = NULL;
        size_t name_len = 0;
        rc = kvc_kube_json_string(start, (size_t)(c.p - start), name_path, 2, &name, &name_len);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue; /* an item without a name is none of ours */
        if (strlen(name) != name_len || name_len == 0) {
            kvc_free(name);
            return KVC_EPARSE;
        }
        rc = fn(name, arg);
        kvc_free(name);
        if (rc)
            return rc;
    }
    return rc < 0 ? KVC_EPARSE : KVC_OK;
}

/* Copies a string into dst (size bytes) with anything unprintable as '?'. */
static void s_clean_copy(char *dst, size_t size, const char *src, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[o++] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
    }
    dst[o] = '\0';
}

int kvc_kube_status_parse(const char *body, size_t len, kvc_kube_status_t *st)
{
    memset(st, 0, sizeof *st);
    kvc_json_cursor_t c;
    kvc_json_cursor_init(&c, body, len, NULL);
    int state = 0, rc, is_status = 0;
    char key[S_KEY_MAX];
    while ((rc = kvc_json_cursor_member(&c, &state, key, sizeof key)) == 1) {
        if (strcmp(key, "kind") == 0 || strcmp(key, "reason") == 0 || strcmp(key, "message") == 0) {
            char *s = NULL;
            size_t n = 0;
            if (s_read_alloc(&c, &s, &n) != 1) {
                kvc_free(s);
                return KVC_EPARSE;
            }
            if (key[0] == 'k')
                is_status = n == 6 && memcmp(s, "Status", 6) == 0;
            else if (key[0] == 'r')
                s_clean_copy(st->reason, sizeof st->reason, s, n);
            else
                s_clean_copy(st->message, sizeof st->message, s, n);
            kvc_free(s);
        } else if (strcmp(key, "code") == 0) {
            uint64_t v;
            if (kvc_json_cursor_read_u64(&c, &v) < 0 || v > 999)
                return KVC_EPARSE;
            st->code = (long)v;
        } else if (kvc_json_cursor_skip(&c) < 0) {
            return KVC_EPARSE;
        }
    }
    if (rc < 0 || !is_status)
        return KVC_EPARSE;
    return KVC_OK;
}
