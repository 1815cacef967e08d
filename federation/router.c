/*
 * router.c - the routing choice, its hysteresis and its explanation (see
 * router.h). Pure logic over the caller's table and monotonic time: it must
 * never read a clock, do I/O or draw random numbers, so tests/sim can replay
 * it exactly. Every string that comes in is bounded and checked.
 */
#include "router.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    int used;
    char name[KVC_ROUTER_NAME_MAX + 1];
    uint64_t last_used_ms;
    kvc_breaker_t breaker;
    int seen_unready;
    uint64_t unready_at_ms;
    int saturated;
} s_site_state_t;

typedef struct {
    int used;
    char name[KVC_ROUTER_MODEL_MAX + 1];
    uint64_t last_used_ms;
    char current[KVC_ROUTER_NAME_MAX + 1];
    char challenger[KVC_ROUTER_NAME_MAX + 1];
    uint64_t challenger_since_ms;
} s_model_state_t;

struct kvc_router {
    kvc_router_config_t cfg;
    s_site_state_t sites[KVC_ROUTER_STATE_SITES];
    s_model_state_t models[KVC_ROUTER_STATE_MODELS];
};

void kvc_router_config_default(kvc_router_config_t *cfg)
{
    kvc_breaker_config_default(&cfg->breaker);
    cfg->holddown_ms = 2000;
    cfg->switch_margin_pct = 20;
    cfg->switch_margin_ms = 5;
    cfg->switch_hold_ms = 10000;
    cfg->saturation_low_pct = 80;
    cfg->unknown_rtt_ms = 100;
    cfg->unknown_latency_ms = 50;
    cfg->load_penalty_max_ms = 1000;
}

int kvc_router_config_check(const kvc_router_config_t *cfg, kvc_err_t *err)
{
    if (!cfg)
        return kvc_err_set(err, KVC_EINVAL, "router: no config");
    int rc = kvc_breaker_config_check(&cfg->breaker, err);
    if (rc != 0) {
        kvc_err_prefix(err, "router.");
        return rc;
    }
    if (cfg->switch_margin_pct > 1000)
        return kvc_err_set(err, KVC_EINVAL, "router.switch_margin_pct: must be <= 1000");
    if (cfg->saturation_low_pct == 0 || cfg->saturation_low_pct > 100)
        return kvc_err_set(err, KVC_EINVAL, "router.saturation_low_pct: must be in [1, 100]");
    if (cfg->unknown_rtt_ms > 60000 || cfg->unknown_latency_ms > 60000)
        return kvc_err_set(err, KVC_EINVAL, "router.unknown_*_ms: must be <= 60000");
    if (cfg->load_penalty_max_ms > 600000)
        return kvc_err_set(err, KVC_EINVAL, "router.load_penalty_max_ms: must be <= 600000");
    return 0;
}

kvc_router_t *kvc_router_new(const kvc_router_config_t *cfg)
{
    kvc_router_config_t def;
    if (!cfg) {
        kvc_router_config_default(&def);
        cfg = &def;
    }
    if (kvc_router_config_check(cfg, NULL) != 0)
        return NULL;
    kvc_router_t *r = kvc_calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cfg = *cfg;
    return r;
}

void kvc_router_destroy(kvc_router_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_free(*self_p);
    *self_p = NULL;
}

/* ---- names and the constraint ------------------------------------------ */

/* 1 if c may appear in a site, region or arch name. */
static int s_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

int kvc_router_name_ok(const char *s)
{
    if (!s)
        return 0;
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= KVC_ROUTER_NAME_MAX || !s_name_char((unsigned char)s[n]))
            return 0;
    return n > 0;
}

static int s_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Case-insensitive equality of two NUL-terminated strings (ASCII). */
static int s_ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (s_lower((unsigned char)*a) != s_lower((unsigned char)*b))
            return 0;
    return *a == *b;
}

/* Case-insensitive equality of a[0..n) and the NUL-terminated b. */
static int s_ieqn(const char *a, size_t n, const char *b)
{
    size_t m = strlen(b);
    if (m != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s_lower((unsigned char)a[i]) != (unsigned char)b[i])
            return 0;
    return 1;
}

static int s_space(int c)
{
    return c == ' ' || c == '\t';
}

/* Copies the name v[0..n) lowercased into dst, or returns KVC_EPARSE. */
static int s_parse_name(const char *v, size_t n, char *dst)
{
    if (n == 0 || n > KVC_ROUTER_NAME_MAX)
        return KVC_EPARSE;
    for (size_t i = 0; i < n; i++) {
        if (!s_name_char((unsigned char)v[i]))
            return KVC_EPARSE;
        dst[i] = (char)s_lower((unsigned char)v[i]);
    }
    dst[n] = '\0';
    return 0;
}

/* Parses one accelerator value. */
static int s_parse_accel(const char *v, size_t n, kvc_router_want_t *out)
{
    static const struct {
        const char *name;
        kvc_router_want_t want;
    } tab[] = {{"gpu", KVC_ROUTER_WANT_GPU}, {"nvidia", KVC_ROUTER_WANT_NVIDIA},
               {"amd", KVC_ROUTER_WANT_AMD}, {"tpu", KVC_ROUTER_WANT_TPU},
               {"npu", KVC_ROUTER_WANT_NPU}, {"none", KVC_ROUTER_WANT_NONE}};
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (s_ieqn(v, n, tab[i].name)) {
            *out = tab[i].want;
            return 0;
        }
    return KVC_EPARSE;
}

/* Parses into *out, which may be left half-filled on error. */
static int s_constraint_parse(const char *text, size_t len, kvc_router_constraint_t *out,
                              kvc_err_t *err);

int kvc_router_constraint_parse(const char *text, size_t len, kvc_router_constraint_t *out,
                                kvc_err_t *err)
{
    if (!out)
        return kvc_err_set(err, KVC_EINVAL, "constraint: no output");
    kvc_router_constraint_t c;
    memset(&c, 0, sizeof(c));
    int rc = s_constraint_parse(text, len, &c, err);
    memset(out, 0, sizeof(*out));
    if (rc == 0)
        *out = c;
    return rc;
}

static int s_constraint_parse(const char *text, size_t len, kvc_router_constraint_t *out,
                              kvc_err_t *err)
{
    if (len == 0)
        return 0;
    if (!text)
        return kvc_err_set(err, KVC_EINVAL, "constraint: no text");
    if (len > KVC_ROUTER_CONSTRAINT_MAX)
        return kvc_err_set(err, KVC_ERANGE, "constraint: %zu bytes, at most %d", len,
                           KVC_ROUTER_CONSTRAINT_MAX);
    /* Control bytes, NUL and non-ASCII first, so messages below may quote. */
    int blank = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c < 0x20 && c != '\t') || c >= 0x7f)
            return kvc_err_set(err, KVC_EPARSE, "constraint: byte 0x%02x at offset %zu", c, i);
        if (!s_space(c))
            blank = 0;
    }
    if (blank)
        return 0;
    int seen_accel = 0, seen_site = 0, seen_region = 0, seen_arch = 0;
    size_t pos = 0;
    while (pos <= len) {
        size_t end = pos;
        while (end < len && text[end] != ',')
            end++;
        size_t a = pos, b = end;
        while (a < b && s_space((unsigned char)text[a]))
            a++;
        while (b > a && s_space((unsigned char)text[b - 1]))
            b--;
        if (a == b)
            return kvc_err_set(err, KVC_EPARSE, "constraint: empty item at offset %zu", pos);
        const char *item = text + a;
        int ilen = (int)(b - a);
        const char *eq = memchr(item, '=', b - a);
        if (!eq)
            return kvc_err_set(err, KVC_EPARSE, "constraint: '%.*s' at offset %zu: want key=value",
                               ilen, item, a);
        size_t kl = (size_t)(eq - item);
        while (kl > 0 && s_space((unsigned char)item[kl - 1]))
            kl--;
        const char *v = eq + 1;
        size_t vl = (size_t)(text + b - v);
        while (vl > 0 && s_space((unsigned char)*v)) {
            v++;
            vl--;
        }
        int rc = KVC_EPARSE, dup = 0;
        const char *what = "a name [a-z0-9._-]{1,63}";
        if (s_ieqn(item, kl, "accelerator")) {
            dup = seen_accel++;
            rc = s_parse_accel(v, vl, &out->accel);
            what = "gpu, nvidia, amd, tpu, npu or none";
        } else if (s_ieqn(item, kl, "site")) {
            dup = seen_site++;
            rc = s_parse_name(v, vl, out->site);
        } else if (s_ieqn(item, kl, "region")) {
            dup = seen_region++;
            rc = s_parse_name(v, vl, out->region);
        } else if (s_ieqn(item, kl, "arch")) {
            dup = seen_arch++;
            rc = s_parse_name(v, vl, out->arch);
        } else {
            return kvc_err_set(err, KVC_EPARSE,
                               "constraint: '%.*s' at offset %zu: unknown key (accelerator, "
                               "site, region, arch)",
                               ilen, item, a);
        }
        if (dup) {
            return kvc_err_set(err, KVC_EPARSE, "constraint: '%.*s' at offset %zu: key given twice",
                               ilen, item, a);
        }
        if (rc != 0) {
            return kvc_err_set(err, KVC_EPARSE, "constraint: '%.*s' at offset %zu: want %s", ilen,
                               item, a, what);
        }
        pos = end + 1;
    }
    return 0;
}

int kvc_router_constraint_met(const kvc_router_constraint_t *c, const kvc_router_site_t *s)
{
    if (!c)
        return 1;
    if (c->site[0] && !(s->site && s_ieq(c->site, s->site)))
        return 0;
    if (c->region[0] && !(s->region && s_ieq(c->region, s->region)))
        return 0;
    if (c->arch[0] && !(s->arch && s_ieq(c->arch, s->arch)))
        return 0;
    int has = s->accel != KVC_ACCEL_NONE && s->accel_count > 0;
    switch (c->accel) {
    case KVC_ROUTER_WANT_ANY:
        return 1;
    case KVC_ROUTER_WANT_GPU:
        return has && (s->accel == KVC_ACCEL_NVIDIA || s->accel == KVC_ACCEL_AMD);
    case KVC_ROUTER_WANT_NVIDIA:
        return has && s->accel == KVC_ACCEL_NVIDIA;
    case KVC_ROUTER_WANT_AMD:
        return has && s->accel == KVC_ACCEL_AMD;
    case KVC_ROUTER_WANT_TPU:
        return has && s->accel == KVC_ACCEL_TPU;
    case KVC_ROUTER_WANT_NPU:
        return has && s->accel == KVC_ACCEL_NPU;
    case KVC_ROUTER_WANT_NONE:
        return !has;
    }
    return 0;
}

/* ---- per-site and per-model state -------------------------------------- */

/* The state of site, created (evicting the entry unused longest) when
 * create is set; NULL when absent and not created. */
static s_site_state_t *s_site(kvc_router_t *r, const char *site, uint64_t now_ms, int create)
{
    s_site_state_t *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < KVC_ROUTER_STATE_SITES; i++) {
        s_site_state_t *s = &r->sites[i];
        if (!s->used) {
            if (!free_slot)
                free_slot = s;
            continue;
        }
        if (strcmp(s->name, site) == 0) {
            if (create)
                s->last_used_ms = now_ms;
            return s;
        }
        if (!oldest || s->last_used_ms < oldest->last_used_ms)
            oldest = s;
    }
    if (!create)
        return NULL;
    s_site_state_t *s = free_slot ? free_slot : oldest;
    memset(s, 0, sizeof(*s));
    s->used = 1;
    kvc_strlcpy(s->name, site, sizeof(s->name));
    s->last_used_ms = now_ms;
    kvc_breaker_init(&s->breaker, &r->cfg.breaker);
    return s;
}

/* The state of model, created like s_site. */
static s_model_state_t *s_model(kvc_router_t *r, const char *model, uint64_t now_ms)
{
    s_model_state_t *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < KVC_ROUTER_STATE_MODELS; i++) {
        s_model_state_t *m = &r->models[i];
        if (!m->used) {
            if (!free_slot)
                free_slot = m;
            continue;
        }
        if (strcmp(m->name, model) == 0) {
            m->last_used_ms = now_ms;
            return m;
        }
        if (!oldest || m->last_used_ms < oldest->last_used_ms)
            oldest = m;
    }
    s_model_state_t *m = free_slot ? free_slot : oldest;
    memset(m, 0, sizeof(*m));
    m->used = 1;
    kvc_strlcpy(m->name, model, sizeof(m->name));
    m->last_used_ms = now_ms;
    return m;
}

int kvc_router_begin(kvc_router_t *r, uint64_t now_ms, const char *site)
{
    if (!r || !kvc_router_name_ok(site))
        return 0;
    s_site_state_t *s = s_site(r, site, now_ms, 1);
    return kvc_breaker_allow(&s->breaker, now_ms);
}

void kvc_router_report(kvc_router_t *r, uint64_t now_ms, const char *site, kvc_call_class_t cls)
{
    if (!r || !kvc_router_name_ok(site))
        return;
    s_site_state_t *s = s_site(r, site, now_ms, 1);
    kvc_breaker_record(&s->breaker, now_ms, cls);
}

kvc_breaker_state_t kvc_router_breaker_state(const kvc_router_t *r, const char *site,
                                             uint64_t now_ms)
{
    if (!r || !site)
        return KVC_BREAKER_CLOSED;
    for (size_t i = 0; i < KVC_ROUTER_STATE_SITES; i++)
        if (r->sites[i].used && strcmp(r->sites[i].name, site) == 0)
            return kvc_breaker_state(&r->sites[i].breaker, now_ms);
    return KVC_BREAKER_CLOSED;
}

/* ---- the choice --------------------------------------------------------- */

const char *kvc_router_reason_name(kvc_router_reason_t reason)
{
    switch (reason) {
    case KVC_ROUTER_ELIGIBLE:
        return "eligible";
    case KVC_ROUTER_NOT_PLACED:
        return "not placed";
    case KVC_ROUTER_CONSTRAINT_UNMET:
        return "constraint unmet";
    case KVC_ROUTER_UNREACHABLE:
        return "unreachable";
    case KVC_ROUTER_NOT_READY:
        return "not ready";
    case KVC_ROUTER_CIRCUIT_OPEN:
        return "circuit open";
    case KVC_ROUTER_SATURATED:
        return "saturated";
    }
    return "unknown";
}

double kvc_router_cand_cost_ms(const kvc_router_cand_t *cand)
{
    return cand->rtt_ms + cand->latency_ms;
}

/* Fills the score parts of c from s. */
static void s_score(const kvc_router_config_t *cfg, const kvc_router_site_t *s,
                    kvc_router_cand_t *c)
{
    c->rtt_ms = 0;
    if (!s->is_local)
        c->rtt_ms = s->rtt_us < 0 ? (double)cfg->unknown_rtt_ms : (double)s->rtt_us / 1000.0;
    if (s->p50_us < 0) {
        c->latency_ms = cfg->unknown_latency_ms;
    } else {
        double p50 = (double)s->p50_us / 1000.0;
        double p99 = s->p99_us < s->p50_us ? p50 : (double)s->p99_us / 1000.0;
        c->latency_ms = p50 + (p99 - p50) / 4.0;
    }
    c->load_ms = 0;
    if (s->capacity > 0) {
        double u = (double)s->in_flight / (double)s->capacity;
        double pen = u >= 1.0 ? (double)cfg->load_penalty_max_ms : c->latency_ms * u / (1.0 - u);
        c->load_ms = pen > cfg->load_penalty_max_ms ? cfg->load_penalty_max_ms : pen;
    }
    c->score_ms = c->rtt_ms + c->latency_ms + c->load_ms;
}

/* Orders candidates by score, then name (deterministic ties). */
static int s_better(const kvc_router_cand_t *a, const kvc_router_cand_t *b)
{
    if (a->score_ms != b->score_ms)
        return a->score_ms < b->score_ms;
    return strcmp(a->site, b->site) < 0;
}

/* Insertion sort of v[0..n) by s_better (n <= KVC_ROUTER_SITES_MAX). */
static void s_sort(kvc_router_cand_t *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        kvc_router_cand_t x = v[i];
        size_t j = i;
        while (j > 0 && s_better(&x, &v[j - 1])) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

/* Checks the table before anything changes. */
static int s_check_table(const char *model, const kvc_router_site_t *sites, size_t n,
                         kvc_err_t *err)
{
    if (!model || !*model || strlen(model) > KVC_ROUTER_MODEL_MAX)
        return kvc_err_set(err, KVC_EINVAL, "router: bad model name");
    for (const char *p = model; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            return kvc_err_set(err, KVC_EINVAL, "router: control byte in model name");
    if (n > KVC_ROUTER_SITES_MAX)
        return kvc_err_set(err, KVC_ERANGE, "router: %zu sites, at most %d", n,
                           KVC_ROUTER_SITES_MAX);
    if (n > 0 && !sites)
        return kvc_err_set(err, KVC_EINVAL, "router: no site table");
    int locals = 0;
    for (size_t i = 0; i < n; i++) {
        if (!kvc_router_name_ok(sites[i].site))
            return kvc_err_set(err, KVC_EINVAL, "router: site %zu: bad name", i);
        if (sites[i].region && sites[i].region[0] && !kvc_router_name_ok(sites[i].region))
            return kvc_err_set(err, KVC_EINVAL, "router: site %s: bad region", sites[i].site);
        if (sites[i].arch && strlen(sites[i].arch) > KVC_ROUTER_NAME_MAX)
            return kvc_err_set(err, KVC_EINVAL, "router: site %s: bad arch", sites[i].site);
        for (size_t j = 0; j < i; j++)
            if (strcmp(sites[i].site, sites[j].site) == 0)
                return kvc_err_set(err, KVC_EINVAL, "router: site %s listed twice", sites[i].site);
        if (sites[i].is_local && ++locals > 1)
            return kvc_err_set(err, KVC_EINVAL, "router: more than one local site");
    }
    return 0;
}

int kvc_router_choose(kvc_router_t *r, uint64_t now_ms, const char *model,
                      const kvc_router_site_t *sites, size_t n, const kvc_router_constraint_t *c,
                      kvc_router_choice_t *out, kvc_err_t *err)
{
    if (!r || !out)
        return kvc_err_set(err, KVC_EINVAL, "router: no router or output");
    memset(out, 0, sizeof(*out));
    int rc = s_check_table(model, sites, n, err);
    if (rc != 0)
        return rc;
    kvc_strlcpy(out->model, model, sizeof(out->model));
    const kvc_router_config_t *cfg = &r->cfg;

    /* Tier 0 (local), 1 (others), 2 (held), excluded. */
    kvc_router_cand_t t0[1], t1[KVC_ROUTER_SITES_MAX], t2[KVC_ROUTER_SITES_MAX],
        ex[KVC_ROUTER_SITES_MAX];
    size_t n0 = 0, n1 = 0, n2 = 0, nx = 0;
    for (size_t i = 0; i < n; i++) {
        const kvc_router_site_t *s = &sites[i];
        s_site_state_t *st = s_site(r, s->site, now_ms, 1);
        if (!s->ready) {
            st->seen_unready = 1;
            st->unready_at_ms = now_ms;
        }
        if (s->capacity == 0)
            st->saturated = 0;
        else if (s->in_flight >= s->capacity)
            st->saturated = 1;
        else if ((uint64_t)s->in_flight * 100 <= (uint64_t)s->capacity * cfg->saturation_low_pct)
            st->saturated = 0;

        kvc_router_cand_t cd;
        memset(&cd, 0, sizeof(cd));
        kvc_strlcpy(cd.site, s->site, sizeof(cd.site));
        if (s->region)
            kvc_strlcpy(cd.region, s->region, sizeof(cd.region));
        cd.is_local = s->is_local ? 1 : 0;
        kvc_breaker_state_t bs = kvc_breaker_state(&st->breaker, now_ms);
        if (!s->placed)
            cd.reason = KVC_ROUTER_NOT_PLACED;
        else if (!kvc_router_constraint_met(c, s))
            cd.reason = KVC_ROUTER_CONSTRAINT_UNMET;
        else if (!s->is_local && !s->reachable)
            cd.reason = KVC_ROUTER_UNREACHABLE;
        else if (!s->ready)
            cd.reason = KVC_ROUTER_NOT_READY;
        else if (bs == KVC_BREAKER_OPEN ||
                 (bs == KVC_BREAKER_HALF_OPEN && !kvc_breaker_would_allow(&st->breaker, now_ms)))
            cd.reason = KVC_ROUTER_CIRCUIT_OPEN;
        else if (st->saturated)
            cd.reason = KVC_ROUTER_SATURATED;
        if (cd.reason != KVC_ROUTER_ELIGIBLE) {
            ex[nx++] = cd;
            continue;
        }
        s_score(cfg, s, &cd);
        cd.probe = bs == KVC_BREAKER_HALF_OPEN;
        int held_down = st->seen_unready && now_ms < st->unready_at_ms + cfg->holddown_ms;
        if (s->is_local && !held_down) {
            t0[n0++] = cd; /* first, even as a probe: that is how it fails back */
        } else if (!held_down) {
            t1[n1++] = cd; /* half-open ones too: the best of them gets probed */
        } else {
            cd.held = 1;
            t2[n2++] = cd;
        }
    }
    s_sort(t1, n1);
    s_sort(t2, n2);

    /* Hysteresis among the others, when local is not the choice. */
    s_model_state_t *ms = s_model(r, model, now_ms);
    char prev[KVC_ROUTER_NAME_MAX + 1];
    kvc_strlcpy(prev, ms->current, sizeof(prev));
    if (n0 == 0 && n1 > 1 && ms->current[0]) {
        size_t k = 0;
        while (k < n1 && strcmp(t1[k].site, ms->current) != 0)
            k++;
        if (k > 0 && k < n1) {
            double cur = t1[k].score_ms, best = t1[0].score_ms;
            double margin = cur * cfg->switch_margin_pct / 100.0;
            if (margin < cfg->switch_margin_ms)
                margin = cfg->switch_margin_ms;
            int sw = cur - best >= margin;
            if (!sw && strcmp(ms->challenger, t1[0].site) == 0 &&
                now_ms >= ms->challenger_since_ms + cfg->switch_hold_ms)
                sw = 1;
            if (!sw) {
                if (strcmp(ms->challenger, t1[0].site) != 0) {
                    kvc_strlcpy(ms->challenger, t1[0].site, sizeof(ms->challenger));
                    ms->challenger_since_ms = now_ms;
                }
                kvc_router_cand_t keep = t1[k];
                memmove(&t1[1], &t1[0], k * sizeof(t1[0]));
                t1[0] = keep;
            }
        } else if (k == 0) {
            ms->challenger[0] = '\0';
        }
    }

    for (size_t i = 0; i < n0; i++)
        out->cands[out->n++] = t0[i];
    for (size_t i = 0; i < n1; i++)
        out->cands[out->n++] = t1[i];
    for (size_t i = 0; i < n2; i++)
        out->cands[out->n++] = t2[i];
    out->n_ranked = out->n;
    for (size_t i = 0; i < nx; i++)
        out->cands[out->n++] = ex[i];

    if (out->n_ranked > 0) {
        const char *first = out->cands[0].site;
        if (strcmp(first, ms->current) != 0) {
            kvc_strlcpy(ms->current, first, sizeof(ms->current));
            ms->challenger[0] = '\0';
        }
        out->cands[0].current = strcmp(first, prev) == 0;
        out->changed = strcmp(first, prev) != 0;
        return 0;
    }

    /* Nothing qualifies: say why, site by site. */
    char msg[KVC_ERR_MAX];
    size_t len = 0;
    int w = snprintf(msg, sizeof(msg), "no site can serve %s%s", model, n ? ":" : ": no sites");
    len = w > 0 && (size_t)w < sizeof(msg) ? (size_t)w : sizeof(msg) - 1;
    for (size_t i = 0; i < out->n && len < sizeof(msg) - 1; i++) {
        w = snprintf(msg + len, sizeof(msg) - len, "%s %s: %s", i ? ";" : "", out->cands[i].site,
                     kvc_router_reason_name(out->cands[i].reason));
        len = w > 0 && (size_t)w < sizeof(msg) - len ? len + (size_t)w : sizeof(msg) - 1;
    }
    return kvc_err_set(err, KVC_EUNAVAIL, "%s", msg);
}

/* ---- explain ------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t size, len;
    int over;
} s_jw_t;

/* Appends printf output, remembering overflow. */
__attribute__((format(printf, 2, 3))) static void s_jw(s_jw_t *w, const char *fmt, ...)
{
    if (w->over)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(w->buf + w->len, w->size - w->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= w->size - w->len)
        w->over = 1;
    else
        w->len += (size_t)n;
}

/* Appends s as a JSON string. */
static void s_jw_str(s_jw_t *w, const char *s)
{
    s_jw(w, "\"");
    for (; *s && !w->over; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            s_jw(w, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            s_jw(w, "\\u%04x", c);
        else
            s_jw(w, "%c", c);
    }
    s_jw(w, "\"");
}

/* A finite double as JSON (non-finite cannot occur, but never emit it). */
static void s_jw_num(s_jw_t *w, double v)
{
    s_jw(w, "%.3f", isfinite(v) ? v : 0.0);
}

int kvc_router_explain_json(const kvc_router_choice_t *choice, char *buf, size_t size, size_t *len)
{
    if (len)
        *len = 0;
    if (!choice || !buf || size == 0)
        return KVC_ERANGE;
    s_jw_t w = {buf, size, 0, 0};
    s_jw(&w, "{\"model\":");
    s_jw_str(&w, choice->model);
    s_jw(&w, ",\"chosen\":");
    if (choice->n_ranked > 0)
        s_jw_str(&w, choice->cands[0].site);
    else
        s_jw(&w, "null");
    s_jw(&w, ",\"candidates\":[");
    for (size_t i = 0; i < choice->n_ranked; i++) {
        const kvc_router_cand_t *c = &choice->cands[i];
        s_jw(&w, "%s{\"site\":", i ? "," : "");
        s_jw_str(&w, c->site);
        s_jw(&w, ",\"region\":");
        s_jw_str(&w, c->region);
        s_jw(&w, ",\"local\":%s,\"rank\":%zu,\"score_ms\":", c->is_local ? "true" : "false", i + 1);
        s_jw_num(&w, c->score_ms);
        s_jw(&w, ",\"rtt_ms\":");
        s_jw_num(&w, c->rtt_ms);
        s_jw(&w, ",\"latency_ms\":");
        s_jw_num(&w, c->latency_ms);
        s_jw(&w, ",\"load_ms\":");
        s_jw_num(&w, c->load_ms);
        s_jw(&w, ",\"held\":%s,\"probe\":%s,\"current\":%s}", c->held ? "true" : "false",
             c->probe ? "true" : "false", c->current ? "true" : "false");
    }
    s_jw(&w, "],\"excluded\":[");
    for (size_t i = choice->n_ranked; i < choice->n; i++) {
        const kvc_router_cand_t *c = &choice->cands[i];
        s_jw(&w, "%s{\"site\":", i > choice->n_ranked ? "," : "");
        s_jw_str(&w, c->site);
        s_jw(&w, ",\"region\":");
        s_jw_str(&w, c->region);
        s_jw(&w, ",\"local\":%s,\"reason\":", c->is_local ? "true" : "false");
        s_jw_str(&w, kvc_router_reason_name(c->reason));
        s_jw(&w, "}");
    }
    s_jw(&w, "]}");
    if (w.over) {
        buf[0] = '\0';
        return KVC_ERANGE;
    }
    if (len)
        *len = w.len;
    return 0;
}
