/*
 * core.c - the shared outbox and the registration table of protocol cores.
 * No I/O, no clocks: see core.h.
 */
#include "core.h"

#include <string.h>

#define EVENTS_MAX 65536 /* per flush; membership emits at most a few per member */

int kvc_member_in_site(const char *id, const char *site)
{
    size_t n = strlen(site);
    return strncmp(id, site, n) == 0 && id[n] == '/' && id[n + 1] != '\0';
}

const char *kvc_member_event_name(kvc_member_event_type_t type)
{
    static const char *names[] = {"joined", "alive", "suspect", "dead", "left", "meta", "reaped"};
    if ((unsigned)type >= sizeof names / sizeof names[0])
        return "unknown";
    return names[type];
}

void kvc_outbox_init(kvc_outbox_t *out, size_t max_bytes)
{
    memset(out, 0, sizeof *out);
    out->max_bytes = max_bytes ? max_bytes : KVC_OUTBOX_DEFAULT_MAX;
}

void kvc_outbox_reset(kvc_outbox_t *out)
{
    out->n_msgs = 0;
    out->n_bytes = 0;
    out->n_events = 0;
}

void kvc_outbox_free(kvc_outbox_t *out)
{
    size_t max = out->max_bytes;
    kvc_free(out->msgs);
    kvc_free(out->bytes);
    kvc_free(out->events);
    kvc_outbox_init(out, max);
}

const uint8_t *kvc_outbox_data(const kvc_outbox_t *out, size_t i)
{
    return out->bytes + out->msgs[i].off;
}

/* Grows an array to hold at least need elements. */
static int s_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *p = kvc_realloc(*arr, nc * elem);
    if (!p)
        return KVC_ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

uint8_t *kvc_outbox_reserve(kvc_outbox_t *out, size_t n)
{
    if (n > out->max_bytes || out->n_bytes > out->max_bytes - n) {
        out->refused++;
        return NULL;
    }
    if (s_grow((void **)&out->bytes, &out->cap_bytes, out->n_bytes + n, 1) != 0) {
        out->refused++;
        return NULL;
    }
    return out->bytes + out->n_bytes;
}

int kvc_outbox_commit(kvc_outbox_t *out, const char *to, uint32_t channel, size_t len)
{
    if (!to || strlen(to) > KVC_MEMBER_ID_MAX || len > out->cap_bytes - out->n_bytes)
        return KVC_ERANGE;
    if (s_grow((void **)&out->msgs, &out->cap_msgs, out->n_msgs + 1, sizeof(kvc_out_msg_t)))
        return KVC_ENOMEM;
    kvc_out_msg_t *m = &out->msgs[out->n_msgs++];
    kvc_strlcpy(m->to, to, sizeof m->to);
    m->channel = channel;
    m->off = out->n_bytes;
    m->len = len;
    out->n_bytes += len;
    return KVC_OK;
}

int kvc_outbox_put(kvc_outbox_t *out, const char *to, uint32_t channel, const void *data,
                   size_t len)
{
    uint8_t *p = kvc_outbox_reserve(out, len ? len : 1);
    if (!p)
        return KVC_ERANGE;
    if (len)
        memcpy(p, data, len);
    return kvc_outbox_commit(out, to, channel, len);
}

int kvc_outbox_event(kvc_outbox_t *out, kvc_member_event_type_t type, const char *id,
                     uint64_t incarnation, uint64_t meta_version)
{
    if (!out)
        return KVC_OK;
    if (out->n_events >= EVENTS_MAX ||
        s_grow((void **)&out->events, &out->cap_events, out->n_events + 1,
               sizeof(kvc_member_event_t)))
        return KVC_ENOMEM;
    kvc_member_event_t *e = &out->events[out->n_events++];
    e->type = type;
    kvc_strlcpy(e->id, id, sizeof e->id);
    e->incarnation = incarnation;
    e->meta_version = meta_version;
    return KVC_OK;
}

/* --- the table ---------------------------------------------------------- */

void kvc_core_set_init(kvc_core_set_t *set)
{
    memset(set, 0, sizeof *set);
}

int kvc_core_set_add(kvc_core_set_t *set, const kvc_core_ops_t *ops, void *core)
{
    if (!ops)
        return KVC_EINVAL;
    if (ops->channel && kvc_core_set_find(set, ops->channel))
        return KVC_EEXIST;
    if (set->n >= KVC_CORES_MAX)
        return KVC_ERANGE;
    set->cores[set->n++] = (kvc_core_t){.ops = ops, .core = core};
    return KVC_OK;
}

const kvc_core_t *kvc_core_set_find(const kvc_core_set_t *set, uint32_t channel)
{
    if (!channel)
        return NULL;
    for (size_t i = 0; i < set->n; i++)
        if (set->cores[i].ops->channel == channel)
            return &set->cores[i];
    return NULL;
}

int kvc_core_set_receive(kvc_core_set_t *set, uint32_t channel, uint64_t now_ms,
                         const char *from, const uint8_t *msg, size_t len, kvc_outbox_t *out)
{
    const kvc_core_t *c = kvc_core_set_find(set, channel);
    if (!c || !c->ops->receive) {
        set->unknown_channel++;
        return KVC_ENOENT;
    }
    return c->ops->receive(c->core, now_ms, from, msg, len, out);
}

size_t kvc_core_set_tick(kvc_core_set_t *set, uint64_t now_ms, kvc_outbox_t *out)
{
    size_t ran = 0;
    for (size_t i = 0; i < set->n; i++) {
        const kvc_core_t *c = &set->cores[i];
        if (!c->ops->tick)
            continue;
        uint64_t d = c->ops->next_deadline ? c->ops->next_deadline(c->core) : 0;
        if (d <= now_ms) {
            c->ops->tick(c->core, now_ms, out);
            ran++;
        }
    }
    return ran;
}

uint64_t kvc_core_set_next_deadline(const kvc_core_set_t *set)
{
    uint64_t best = KVC_DEADLINE_NONE;
    for (size_t i = 0; i < set->n; i++) {
        const kvc_core_t *c = &set->cores[i];
        if (!c->ops->next_deadline)
            continue;
        uint64_t d = c->ops->next_deadline(c->core);
        if (d < best)
            best = d;
    }
    return best;
}

void kvc_core_set_deliver(kvc_core_set_t *set, uint64_t now_ms, kvc_outbox_t *out)
{
    if (set->events_done > out->n_events) /* reset behind our back */
        set->events_done = 0;
    while (set->events_done < out->n_events) {
        /* copy: a handler may append and move the array */
        kvc_member_event_t ev = out->events[set->events_done++];
        for (size_t i = 0; i < set->n; i++)
            if (set->cores[i].ops->member_event)
                set->cores[i].ops->member_event(set->cores[i].core, now_ms, &ev, out);
    }
}

void kvc_core_set_flushed(kvc_core_set_t *set)
{
    set->events_done = 0;
}
