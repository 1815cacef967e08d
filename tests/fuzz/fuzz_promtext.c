/* libFuzzer target: the Prometheus text parser. Any input must parse or fail
 * with a message, never crash or leak; every sample handed to the callback
 * must have a valid name and NUL-terminated, bounded labels. */
#include "promtext.h"

#include <stdlib.h>
#include <string.h>

/* Checks one sample's invariants. */
static int s_check(void *arg, const kvc_promtext_sample_t *s)
{
    size_t *n = arg;
    if (!s->name || !s->name[0] || s->n_labels > KVC_PROMTEXT_LABELS_MAX || s->line == 0)
        abort();
    for (size_t i = 0; i < s->n_labels; i++) {
        if (!s->label_names[i][0] || strlen(s->label_values[i]) > KVC_PROMTEXT_LINE_MAX)
            abort();
        if (kvc_promtext_label(s, s->label_names[i]) != s->label_values[i])
            abort(); /* names are unique, so the lookup finds this one */
    }
    (*n)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvc_err_t err = {0};
    size_t n = 0;
    int rc = kvc_promtext_parse((const char *)data, size, NULL, s_check, &n, &err);
    if (rc != KVC_OK && (err.msg[0] == '\0' || (rc != KVC_EPARSE && rc != KVC_ERANGE)))
        abort();
    if (rc == KVC_OK && n > size / 3 + 1)
        abort(); /* a sample takes at least three bytes: "a 1" */
    return 0;
}
