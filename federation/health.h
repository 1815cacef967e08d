/*
 * health.h - health and capacity in the gossiped state: every peer tells
 * every other member which models it serves, whether each is ready, how
 * loaded it is (in flight, capacity) and how fast (p50, p99), plus what the
 * router's constraints need (site, region, arch, accelerator) and where its
 * forwarding server listens. The router (router.h) turns these reports into
 * its table of candidate sites.
 *
 * A sans-IO core on the core.h interface (channel KVC_HEALTH_CHANNEL, name
 * "health"): it never reads a clock, a socket or a file and draws no random
 * numbers. The caller hands in monotonic milliseconds, authenticated
 * messages and member events, ticks it at its deadline and sends what it
 * leaves in the outbox. kvc-peer and tests/sim run it unchanged. Not
 * thread-safe: the caller serialises calls (the proxy reads lookups under
 * the daemon's lock or from a copy).
 *
 * Dissemination. Members come from member events: JOINED and ALIVE make a
 * member known alive and owed our report at the next tick (a restarted peer
 * learns of us within one tick of hearing of us); SUSPECT keeps it (still
 * sent to); DEAD, LEFT and REAPED forget its report at once and stop our
 * sends. Our own report (kvc_health_set_local) goes to every known member:
 *  - at once, but not more often than min_interval_ms, after a significant
 *    change: a model added or removed, ready flipping, capacity changing,
 *    in_flight crossing capacity (from below to at/above, or back), p50 or
 *    p99 changing by more than 25% (or between known and unknown), any of
 *    site, region, arch, accel, accel_count, forward changing;
 *  - otherwise as a heartbeat every heartbeat_ms, carrying the latest
 *    values (small in_flight and latency moves travel this way).
 * Every encoded report raises seq; a receiver keeps the highest (epoch,
 * seq) per sender, ignores older or equal ones (counted stale), and treats
 * a report not refreshed for ttl_ms as absent (freed at the next tick). A
 * report whose site is not the sender's "site/" prefix is dropped (counted).
 * Once a sender's report has expired any epoch is accepted again, so a
 * restarted peer whose start id went backwards is heard after one ttl.
 *
 * Bounds. At most KVC_HEALTH_MEMBERS_MAX members (known or reporting); a
 * new one beyond is refused and counted. At most KVC_HEALTH_MODELS_MAX
 * models per report, and a report is at most KVC_HEALTH_WIRE_MAX bytes
 * encoded; the receiver never decodes more. Worst case encoded size:
 *   header: version 2 + epoch 11 + seq 11 + site, region, arch 3 * 65 +
 *           accel 2 + accel_count 6 + forward 258           =   485 bytes
 *   a model: tag 1 + length 2 + name 131 + ready 2 + in_flight 6 +
 *            capacity 6 + p50 11 + p99 11                  =   170 bytes
 * so 64 models of 128-byte names (11365 bytes) do not fit, while 45 always
 * do; kvc_health_set_local refuses (KVC_ERANGE) a report that does not fit
 * even at the largest seq. With 20-byte names a model takes 63 bytes and 64
 * of them 4.0 KiB. Memory: a held report costs ~170 bytes per model plus
 * ~600, so 1024 members of 64 models stay under 12 MiB.
 *
 * Traffic. Every peer sends its report to every member: at N members,
 * heartbeat H seconds and a report of B bytes, each peer sends and receives
 * N * B / H bytes per second (plus the envelope, ~60 bytes). For 300
 * members, a 2 s heartbeat and a 200-byte report (a few models):
 * 300 * 200 / 2 = 30 KB/s out and 30 KB/s in per peer (9 MB/s over the
 * federation); at 1000 members 100 KB/s per peer. A model flapping all the
 * time adds at most one round per min_interval_ms: 300 * 200 * 5 =
 * 300 KB/s per peer at the default 200 ms, the worst case the debounce
 * allows.
 */
#ifndef KVC_HEALTH_H
#define KVC_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "core.h"
#include "router.h"

#define KVC_HEALTH_CHANNEL 70 /* kvc.fed.Envelope.health */
#define KVC_HEALTH_MEMBERS_MAX 1024
#define KVC_HEALTH_MODELS_MAX 64
#define KVC_HEALTH_WIRE_MAX 8192 /* bytes of an encoded report; never decode more */
#define KVC_HEALTH_NAME_MAX 63   /* site, region, arch */
#define KVC_HEALTH_FORWARD_MAX 255

/* One model as a peer reports it. A plain value. */
typedef struct {
    char name[KVC_ROUTER_MODEL_MAX + 1]; /* [a-z0-9._-]{1,128} */
    int ready;                           /* the backend for it is healthy */
    uint32_t in_flight;                  /* requests in progress */
    uint32_t capacity;                   /* saturation point; 0 unknown */
    int64_t p50_us;                      /* < 0 unknown (kept as -1) */
    int64_t p99_us;
} kvc_health_model_t;

/* A peer's own report body (and, in kvc_health_report_t, another's). A
 * plain value of ~11 KiB: keep it off small stacks. */
typedef struct {
    char site[KVC_HEALTH_NAME_MAX + 1];   /* "" = this peer's site */
    char region[KVC_HEALTH_NAME_MAX + 1]; /* "" unknown, else [a-z0-9._-]{1,63} */
    char arch[KVC_HEALTH_NAME_MAX + 1];   /* "" unknown, else [a-z0-9._-]{1,63} */
    uint32_t accel;                       /* a kvc_accel_t */
    uint32_t accel_count;
    char forward[KVC_HEALTH_FORWARD_MAX + 1]; /* "" none; printable, no spaces */
    size_t n_models;
    kvc_health_model_t models[KVC_HEALTH_MODELS_MAX]; /* any order; unique names */
} kvc_health_local_t;

/* One member's report as lookup returns it for one model. A plain value. */
typedef struct {
    char member[KVC_MEMBER_ID_MAX + 1]; /* "site/name" of the sender */
    char site[KVC_HEALTH_NAME_MAX + 1];
    char region[KVC_HEALTH_NAME_MAX + 1];
    char arch[KVC_HEALTH_NAME_MAX + 1];
    uint32_t accel; /* a kvc_accel_t */
    uint32_t accel_count;
    char forward[KVC_HEALTH_FORWARD_MAX + 1];
    uint64_t age_ms; /* since the report was received */
    kvc_health_model_t model;
} kvc_health_view_t;

/* One member's whole report (kvc_health_member). A plain value (~11 KiB). */
typedef struct {
    char member[KVC_MEMBER_ID_MAX + 1];
    uint64_t epoch, seq;
    uint64_t age_ms;
    kvc_health_local_t body; /* models sorted by name */
} kvc_health_report_t;

/* Timing, in milliseconds of the caller's monotonic clock. */
typedef struct {
    uint32_t min_interval_ms; /* least time between change-driven rounds (200) */
    uint32_t heartbeat_ms;    /* a round at least this often (2000) */
    uint32_t ttl_ms;          /* a report not refreshed this long is absent (6000) */
} kvc_health_config_t;

typedef struct {
    uint64_t sent;              /* reports put in the outbox, one per destination */
    uint64_t bytes_sent;        /* their bytes */
    uint64_t send_refused;      /* the outbox refused one (full or no memory) */
    uint64_t rounds;            /* heartbeat or change rounds to every member */
    uint64_t received;          /* reports accepted (stored) */
    uint64_t dropped_malformed; /* not a valid report, oversized, bad values */
    uint64_t dropped_stale;     /* (epoch, seq) not above the held one */
    uint64_t dropped_site;      /* site not the sender's */
    uint64_t dropped_full;      /* a new sender while the member table was full */
    uint64_t members_refused;   /* a member event while the member table was full */
    uint64_t expired;           /* reports freed after ttl_ms */
    uint64_t held;              /* reports held now (fresh or not yet freed) */
    uint64_t members;           /* members known alive or suspect now */
} kvc_health_stats_t;

typedef struct kvc_health kvc_health_t;

/* Fills cfg with the defaults above. */
void kvc_health_config_default(kvc_health_config_t *cfg);
/* Checks ranges (heartbeat 1..600000, min_interval <= heartbeat,
 * heartbeat < ttl <= 3600000); KVC_EINVAL with a message naming the field
 * (err may be NULL). */
int kvc_health_config_check(const kvc_health_config_t *cfg, kvc_err_t *err);

/* Creates a core for member self_id ("site/name", copied) with cfg (copied;
 * NULL for the defaults) and epoch, this process's start id (it must grow
 * across restarts, e.g. the start time in ms; 0 is allowed). It sends
 * nothing until kvc_health_set_local. Returns NULL on a bad id or config,
 * or on allocation failure. */
kvc_health_t *kvc_health_new(const char *self_id, const kvc_health_config_t *cfg, uint64_t epoch);
/* Frees the core and everything it holds, and sets *self_p to NULL;
 * NULL-safe. */
void kvc_health_destroy(kvc_health_t **self_p);

/* Replaces our own report with *local (copied; models sorted, negative
 * latencies kept as -1). A significant change (see the top) is sent at the
 * next tick at or after the last round + min_interval_ms. Returns 0, or
 * KVC_EINVAL (a NULL argument, a site other than ours, a bad name, region,
 * arch, forward or accel, a duplicate model, a string without its NUL),
 * KVC_ERANGE (more than KVC_HEALTH_MODELS_MAX models, or an encoding over
 * KVC_HEALTH_WIRE_MAX); the previous report is kept on error. */
int kvc_health_set_local(kvc_health_t *h, uint64_t now_ms, const kvc_health_local_t *local);

/* Handles one report from member `from` (authenticated by the caller).
 * Returns 0 when it was stored or ignored (stale, from ourselves, table
 * full: counted); KVC_EPARSE for a malformed, oversized or invalid report
 * or a site other than from's (counted, nothing changed); KVC_ENOMEM
 * (nothing changed); KVC_EINVAL for NULL arguments or a bad from. */
int kvc_health_receive(kvc_health_t *h, uint64_t now_ms, const char *from, const uint8_t *msg,
                       size_t len, kvc_outbox_t *out);
/* Frees expired reports and sends what is due (a round, or the report to
 * members that joined). Returns 0 (a full outbox is counted, not an error),
 * KVC_EINVAL for NULL arguments. */
int kvc_health_tick(kvc_health_t *h, uint64_t now_ms, kvc_outbox_t *out);
/* The earliest time tick has work (0 when some is due at once);
 * KVC_DEADLINE_NONE if none. */
uint64_t kvc_health_next_deadline(const kvc_health_t *h);
/* A member event (see the top). Events about ourselves are ignored. */
void kvc_health_member_event(kvc_health_t *h, uint64_t now_ms, const kvc_member_event_t *ev,
                             kvc_outbox_t *out);

/* The reports of members other than ourselves that list model and are
 * fresh at now_ms: fills out[0..cap) with the member, its report's site,
 * region, arch, accelerator and forward endpoint and that model's entry, in
 * member id order, and returns how many it filled (at most cap; the rest
 * are left off). 0 for NULL arguments. */
size_t kvc_health_lookup(const kvc_health_t *h, uint64_t now_ms, const char *model,
                         kvc_health_view_t *out, size_t cap);

/* One member's report, fresh at now_ms, into *out (our own, age 0, when id
 * is self_id and set_local was called). Returns 0, KVC_ENOENT (none, or
 * expired), KVC_EINVAL for NULL arguments. */
int kvc_health_member(const kvc_health_t *h, uint64_t now_ms, const char *id,
                      kvc_health_report_t *out);

/* The members (other than ourselves) whose reports are fresh at now_ms,
 * in id order: fills ids[0..cap) and returns how many it filled (at most
 * cap). With kvc_health_member, how the daemon walks every report. */
size_t kvc_health_ids(const kvc_health_t *h, uint64_t now_ms, char (*ids)[KVC_MEMBER_ID_MAX + 1],
                      size_t cap);

/* Copies the counters into *out. */
void kvc_health_stats(const kvc_health_t *h, kvc_health_stats_t *out);

/* The health core on the core.h interface (state: a kvc_health_t). Static. */
const kvc_core_ops_t *kvc_health_core_ops(void);

/* Encodes body (validated as by set_local) as a Report of epoch and seq
 * into buf[0..cap); *len gets the size. KVC_EINVAL, KVC_ERANGE (too many
 * models, over KVC_HEALTH_WIRE_MAX or cap). For tests and tools. */
int kvc_health_encode(const kvc_health_local_t *body, uint64_t epoch, uint64_t seq, uint8_t *buf,
                      size_t cap, size_t *len);
/* Decodes and checks a Report from hostile bytes into *out (member left
 * "", age 0; models sorted). KVC_EPARSE (malformed, oversized, invalid
 * values), KVC_ENOMEM; *out unspecified on error. */
int kvc_health_decode(const uint8_t *data, size_t len, kvc_health_report_t *out);

#endif
