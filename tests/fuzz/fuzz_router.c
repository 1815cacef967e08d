/*
 * libFuzzer target for the router's constraint parser (a request header
 * value, so hostile): parses arbitrary bytes; when they parse, the
 * constraint must hold only valid names, and choosing with it over a fixed
 * table and explaining the choice into a buffer of a size the input picks
 * must stay in bounds and keep its promises (ranked sites meet the
 * constraint, a refusal names every site). Any crash, leak or UB is a bug.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

/* 1 if s is a name the parser may produce: [a-z0-9._-]{0,63}. */
static int s_lower_name(const char *s)
{
    size_t n = strnlen(s, KVC_ROUTER_NAME_MAX + 1);
    if (n > KVC_ROUTER_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvc_router_constraint_t c;
    kvc_err_t err;
    memset(&err, 0, sizeof(err));
    int rc = kvc_router_constraint_parse((const char *)data, size, &c, &err);
    if (rc != 0) {
        if (rc != KVC_EPARSE && rc != KVC_ERANGE)
            abort();
        if (strnlen(err.msg, sizeof(err.msg)) >= sizeof(err.msg))
            abort();
        return 0;
    }
    if (!s_lower_name(c.site) || !s_lower_name(c.region) || !s_lower_name(c.arch))
        abort();
    if ((int)c.accel < KVC_ROUTER_WANT_ANY || c.accel > KVC_ROUTER_WANT_NONE)
        abort();

    kvc_router_site_t t[3];
    memset(t, 0, sizeof(t));
    t[0] = (kvc_router_site_t){.site = "a",
                               .region = "eu",
                               .is_local = 1,
                               .placed = 1,
                               .ready = 1,
                               .capacity = 8,
                               .p50_us = 1000,
                               .p99_us = 2000,
                               .arch = "x86_64",
                               .reachable = 1};
    t[1] = (kvc_router_site_t){.site = "b",
                               .region = "us",
                               .placed = 1,
                               .ready = 1,
                               .p50_us = -1,
                               .p99_us = -1,
                               .arch = "arm64",
                               .accel = KVC_ACCEL_NVIDIA,
                               .accel_count = 1,
                               .reachable = 1,
                               .rtt_us = 20000};
    t[2] = (kvc_router_site_t){.site = "c",
                               .region = "eu",
                               .placed = 1,
                               .ready = 1,
                               .accel = KVC_ACCEL_TPU,
                               .accel_count = 2,
                               .reachable = 1,
                               .rtt_us = -1};
    kvc_router_t *r = kvc_router_new(NULL);
    if (!r)
        return 0;
    kvc_router_choice_t *ch = malloc(sizeof(*ch));
    if (!ch) {
        kvc_router_destroy(&r);
        return 0;
    }
    rc = kvc_router_choose(r, 1000, "m", t, 3, &c, ch, &err);
    if (rc != 0 && rc != KVC_EUNAVAIL)
        abort();
    for (size_t i = 0; i < ch->n_ranked; i++)
        for (int k = 0; k < 3; k++)
            if (strcmp(ch->cands[i].site, t[k].site) == 0 && !kvc_router_constraint_met(&c, &t[k]))
                abort();
    if (rc == KVC_EUNAVAIL && (!strstr(err.msg, " a: ") || !strstr(err.msg, " c: ")))
        abort();
    size_t cap = size ? (size_t)data[0] * 8 + 1 : 1;
    char *buf = malloc(cap);
    if (buf) {
        size_t len = 0;
        if (kvc_router_explain_json(ch, buf, cap, &len) == 0 && strlen(buf) != len)
            abort();
        free(buf);
    }
    free(ch);
    kvc_router_destroy(&r);
    return 0;
}
