/* libFuzzer target: the match[] selector parser. Any input must parse or
 * fail with a message, never crash or leak; a parsed selector must give a
 * stable answer when matched against a few series. */
#include "promsel.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvc_promsel_t *sel = NULL;
    kvc_err_t err = {0};
    int rc = kvc_promsel_parse((const char *)data, size, &sel, &err);
    if (rc != KVC_OK) {
        if (sel || err.msg[0] == '\0')
            abort();
        return 0;
    }
    if (!sel || kvc_promsel_count(sel) == 0)
        abort();
    static const char *names[] = {"site", "peer", "model", "le"};
    static const char *values[] = {"edge-1", "p1", "bert", "+Inf"};
    int a = kvc_promsel_match(sel, "kvc_up", names, values, 4);
    int b = kvc_promsel_match(sel, "kvc_up", names, values, 4);
    if (a != b || (a != 0 && a != 1))
        abort();
    /* The selector needs a non-empty matcher, so the empty series never matches. */
    if (kvc_promsel_match(sel, "", NULL, NULL, 0))
        abort();
    kvc_promsel_destroy(&sel);
    return 0;
}
