/*
 * cli_join.c - `kvc join`: runs on a new node. Asks a peer of the site for
 * a bootstrap token over CurveZMQ (the node key as the CURVE client key),
 * opens the sealed answer with the node's secret key, and prints the join
 * command (--print) or runs it (--exec), reporting progress so the
 * coordinator keeps the token alive exactly as long as the join needs it.
 *
 * The token is a secret: it is printed only with --print (on stdout, the
 * one place the operator asked for it), passed to kubeadm/k3s in its
 * arguments with --exec, never logged, and wiped from memory after use.
 */
#include "pb_alloc.h"
#include "cli_join.h"

#include "broker.h"
#include "clock.h"
#include "config.h"
#include "credential.h"
#include "nodes.h"
#include "wire.h"
#include "federation.pb-c.h"
#include "join.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define PROGRESS_EVERY_MS 2000
#define DONE_WAIT_MS 30000

static const char s_help[] =
    "Usage: kvc join --site S --peer ENDPOINT --peer-key KEY --key NODEKEY\n"
    "                [--name N] [--arch A] [--address IP]... [--kind kubeadm|k3s]\n"
    "                [--enroll CODE] [--wait SECONDS] [--timeout MS] [--print|--exec]\n"
    "\n"
    "Runs on a new node: asks a peer of site S (ENDPOINT tcp://HOST:PORT, KEY its\n"
    "64-hex public key, from 'kvc status' there) for a short-lived Kubernetes\n"
    "bootstrap token, sealed to the node key (kvc keygen --out NODEKEY).\n"
    "  --name N       the node's name in Kubernetes (default: the host name)\n"
    "  --arch A       amd64, arm64 or arm (default: this machine's)\n"
    "  --address IP   an address of the node, for the operator (repeatable;\n"
    "                 default: this machine's non-loopback addresses)\n"
    "  --kind K       kubeadm (default) or k3s\n"
    "  --enroll CODE  an enrollment code (kvc enroll create) instead of waiting\n"
    "                 for an operator's 'kvc nodes approve'\n"
    "  --wait S       keep asking while the node is not approved yet, up to S\n"
    "                 seconds (default 0: print why and exit 3)\n"
    "  --print        print the join command (it holds the token: it expires in\n"
    "                 under a minute and is deleted once the node registers)\n"
    "  --exec         run it (kubeadm join / k3s agent from PATH) and report\n"
    "                 progress until the node is registered\n"
    "Exit: 0 joined (or command printed), 1 refused or failed, 2 usage,\n"
    "3 refused for now (not approved yet, no coordinator, the API unreachable):\n"
    "retry, or pass --wait.\n";

static int s_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kvc: join: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

typedef struct {
    const char *site, *peer, *peer_key, *key, *name, *arch, *kind, *enroll, *wait, *timeout;
    const char *addresses[KVC_NODE_ADDRS_MAX];
    size_t n_addresses;
    int print, exec, json;
    char host[KVC_NODE_NAME_MAX + 1];
    char found[KVC_NODE_ADDRS_MAX][KVC_NODE_ADDR_MAX + 1];
} s_opts_t;

/* The session with the peer. */
typedef struct {
    void *ctx, *sock;
    kvc_nodekey_t key;
    uint8_t nonce[KVC_BROKER_NONCE_LEN];
    int timeout_ms;
    char site[64], name[KVC_NODE_NAME_MAX + 1];
} s_session_t;

static int s_send(s_session_t *s, Kvc__Join__NodeMessage *m)
{
    m->version = 1;
    uint8_t body[KVC_BROKER_MSG_MAX];
    size_t n = kvc__join__node_message__get_packed_size(m);
    if (n > sizeof body)
        return KVC_ERANGE;
    kvc__join__node_message__pack(m, body);
    char sender[160];
    snprintf(sender, sizeof sender, "%s/%s", s->site, s->name);
    Kvc__Fed__Envelope env = KVC__FED__ENVELOPE__INIT;
    env.sender = sender;
    env.body_case = KVC__FED__ENVELOPE__BODY_NODE_JOIN;
    env.node_join.data = body;
    env.node_join.len = n;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = kvc_wire_encode(&env, &buf, &len);
    if (rc)
        return rc;
    rc = zmq_send(s->sock, buf, len, 0) == (int)len ? KVC_OK : KVC_EIO;
    kvc_free(buf);
    return rc;
}

/* Waits up to ms for a Reply whose nonce is ours; *out is the caller's. */
static int s_recv(s_session_t *s, int ms, Kvc__Join__NodeMessage **out)
{
    uint64_t end = kvc_clock_mono_ms() + (uint64_t)ms;
    for (;;) {
        uint64_t now = kvc_clock_mono_ms();
        if (now >= end)
            return KVC_ETIMEDOUT;
        zmq_pollitem_t it = {s->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, (long)(end - now)) <= 0)
            continue;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, s->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            continue;
        }
        Kvc__Fed__Envelope *env = NULL;
        kvc_reject_t why;
        int rc = kvc_wire_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &env, &why);
        zmq_msg_close(&msg);
        if (rc || env->body_case != KVC__FED__ENVELOPE__BODY_NODE_JOIN ||
            env->node_join.len > KVC_BROKER_MSG_MAX) {
            kvc_wire_free(&env);
            continue;
        }
        kvc_pb_alloc_t alloc;
        Kvc__Join__NodeMessage *m = kvc__join__node_message__unpack(
            kvc_pb_alloc_init(&alloc), env->node_join.len, env->node_join.data);
        kvc_wire_free(&env);
        if (!m)
            continue;
        if (m->version == 1 && m->body_case == KVC__JOIN__NODE_MESSAGE__BODY_REPLY &&
            m->reply->nonce.len == KVC_BROKER_NONCE_LEN &&
            memcmp(m->reply->nonce.data, s->nonce, KVC_BROKER_NONCE_LEN) == 0 &&
            m->reply->body_case != KVC__JOIN__REPLY__BODY__NOT_SET) {
            *out = m;
            return KVC_OK;
        }
        kvc__join__node_message__free_unpacked(m, kvc_pb_allocator());
    }
}

static int s_progress(s_session_t *s, const char *phase, const char *detail,
                      Kvc__Join__NodeMessage **reply, int wait_ms)
{
    Kvc__Join__Progress p = KVC__JOIN__PROGRESS__INIT;
    p.nonce.data = s->nonce;
    p.nonce.len = KVC_BROKER_NONCE_LEN;
    p.phase = (char *)phase;
    p.detail = (char *)detail;
    Kvc__Join__NodeMessage m = KVC__JOIN__NODE_MESSAGE__INIT;
    m.body_case = KVC__JOIN__NODE_MESSAGE__BODY_PROGRESS;
    m.progress = &p;
    int rc = s_send(s, &m);
    if (rc)
        return rc;
    return s_recv(s, wait_ms, reply);
}

/* This machine's architecture in Kubernetes' words ("" if another). */
static const char *s_arch(void)
{
    struct utsname u;
    if (uname(&u) != 0)
        return "";
    if (!strcmp(u.machine, "x86_64"))
        return "amd64";
    if (!strcmp(u.machine, "aarch64") || !strcmp(u.machine, "arm64"))
        return "arm64";
    if (!strncmp(u.machine, "armv", 4))
        return "arm";
    return "";
}

/* Non-loopback addresses of this machine, as text. */
static void s_addresses(s_opts_t *o)
{
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) != 0)
        return;
    for (struct ifaddrs *i = ifa; i && o->n_addresses < KVC_NODE_ADDRS_MAX; i = i->ifa_next) {
        if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET))
            continue;
        char host[NI_MAXHOST];
        if (getnameinfo(i->ifa_addr, sizeof(struct sockaddr_in), host, sizeof host, NULL, 0,
                        NI_NUMERICHOST) != 0 ||
            !strncmp(host, "127.", 4))
            continue;
        kvc_strlcpy(o->found[o->n_addresses], host, sizeof o->found[0]);
        o->addresses[o->n_addresses] = o->found[o->n_addresses];
        o->n_addresses++;
    }
    freeifaddrs(ifa);
}

/* The join command for the opened secret, as argv (pointers into sec and
 * buf; the token stays in sec). */
static size_t s_command(const Kvc__Join__Secret *sec, const char *name, char *server, size_t cap,
                        const char **argv)
{
    size_t n = 0;
    if (!strcmp(sec->kind, "k3s")) {
        snprintf(server, cap, "https://%s", sec->api_server);
        argv[n++] = "k3s";
        argv[n++] = "agent";
        argv[n++] = "--server";
        argv[n++] = server;
        argv[n++] = "--token";
        argv[n++] = sec->token;
        argv[n++] = "--node-name";
        argv[n++] = name;
    } else {
        argv[n++] = "kubeadm";
        argv[n++] = "join";
        argv[n++] = sec->api_server;
        argv[n++] = "--token";
        argv[n++] = sec->token;
        argv[n++] = "--discovery-token-ca-cert-hash";
        argv[n++] = sec->ca_cert_hash;
        argv[n++] = "--node-name";
        argv[n++] = name;
    }
    argv[n] = NULL;
    return n;
}

/* A shell word: quoted only if it needs to be. */
static void s_print_word(const char *w)
{
    int plain = *w != '\0';
    for (const char *p = w; *p; p++)
        plain &= isalnum((unsigned char)*p) || strchr("-_.:/=@,+", *p) != NULL;
    if (plain) {
        fputs(w, stdout);
        return;
    }
    putchar('\'');
    for (const char *p = w; *p; p++)
        if (*p == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*p);
    putchar('\'');
}

/* Runs argv and reports progress; returns the exit code for kvc. */
static int s_exec(s_session_t *s, const char *const *argv)
{
    Kvc__Join__NodeMessage *r = NULL;
    if (s_progress(s, "discovery", argv[0], &r, s->timeout_ms) == 0)
        kvc__join__node_message__free_unpacked(r, kvc_pb_allocator());
    pid_t pid = fork();
    if (pid < 0)
        return s_fail(1, "cannot start %s: %s", argv[0], strerror(errno));
    if (pid == 0) {
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "kvc: join: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status = 0, reaped = 0;
    while (!reaped) { /* report while it runs; the coordinator extends the token meanwhile */
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            return s_fail(1, "lost %s: %s", argv[0], strerror(errno));
        r = NULL;
        if (s_progress(s, "tls-bootstrap", "", &r, PROGRESS_EVERY_MS) == 0)
            kvc__join__node_message__free_unpacked(r, kvc_pb_allocator());
        /* the next report in PROGRESS_EVERY_MS, unless the child ends first */
        uint64_t until = kvc_clock_mono_ms() + PROGRESS_EVERY_MS;
        while (kvc_clock_mono_ms() < until) {
            w = waitpid(pid, &status, WNOHANG);
            if (w == pid || (w < 0 && errno != EINTR)) {
                reaped = w == pid;
                if (!reaped)
                    return s_fail(1, "lost %s: %s", argv[0], strerror(errno));
                break;
            }
            struct timespec ts = {0, 50 * 1000000L}; /* the child's pace, not a test's */
            nanosleep(&ts, NULL);
        }
    }
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        char why[64];
        snprintf(why, sizeof why, "%s exited with %d", argv[0],
                 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        r = NULL;
        if (s_progress(s, "failed", why, &r, s->timeout_ms) == 0)
            kvc__join__node_message__free_unpacked(r, kvc_pb_allocator());
        return s_fail(1, "%s; the token was deleted", why);
    }
    uint64_t end = kvc_clock_mono_ms() + DONE_WAIT_MS;
    while (kvc_clock_mono_ms() < end) {
        r = NULL;
        if (s_progress(s, "registered", "", &r, PROGRESS_EVERY_MS) != 0)
            continue;
        int done = r->reply->body_case == KVC__JOIN__REPLY__BODY_ACK && r->reply->ack->done;
        int refused = r->reply->body_case == KVC__JOIN__REPLY__BODY_REFUSED;
        kvc__join__node_message__free_unpacked(r, kvc_pb_allocator());
        if (done) {
            fprintf(stderr, "kvc: join: node %s is registered; its token is deleted\n", s->name);
            return 0;
        }
        if (refused)
            return s_fail(1, "%s ran, but the coordinator lost track of the join; check 'kubectl "
                             "get nodes'",
                          argv[0]);
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return s_fail(1, "%s ran, but the coordinator does not see node %s registered", argv[0],
                  s->name);
}

int kvc_cli_join(int argc, char **argv)
{
    s_opts_t o;
    memset(&o, 0, sizeof o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(s_help, stdout);
            return 0;
        }
        struct {
            const char *name;
            const char **dst;
        } vals[] = {{"--site", &o.site},     {"--peer", &o.peer},         {"--peer-key", &o.peer_key},
                    {"--key", &o.key},       {"--name", &o.name},         {"--arch", &o.arch},
                    {"--kind", &o.kind},     {"--enroll", &o.enroll},     {"--wait", &o.wait},
                    {"--timeout", &o.timeout}};
        int matched = 0;
        for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++)
            if (!strcmp(a, vals[k].name)) {
                if (i + 1 >= argc)
                    return s_fail(2, "%s needs a value (see 'kvc join --help')", a);
                if (*vals[k].dst)
                    return s_fail(2, "%s given twice", a);
                *vals[k].dst = argv[++i];
                matched = 1;
            }
        if (matched)
            continue;
        if (!strcmp(a, "--address")) {
            if (i + 1 >= argc)
                return s_fail(2, "--address needs a value");
            if (o.n_addresses >= KVC_NODE_ADDRS_MAX)
                return s_fail(2, "at most %d --address", KVC_NODE_ADDRS_MAX);
            o.addresses[o.n_addresses++] = argv[++i];
        } else if (!strcmp(a, "--print")) {
            o.print = 1;
        } else if (!strcmp(a, "--exec")) {
            o.exec = 1;
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
        } else {
            return s_fail(2, "unknown argument '%.100s' (see 'kvc join --help')", a);
        }
    }
    if (!o.site || !o.peer || !o.peer_key || !o.key)
        return s_fail(2, "--site, --peer, --peer-key and --key are required (see 'kvc join "
                         "--help')");
    if (o.print && o.exec)
        return s_fail(2, "--print or --exec, not both");
    if (!kvc_config_valid_name(o.site))
        return s_fail(2, "--site: '%.63s' is not a site name", o.site);
    if (strncmp(o.peer, "tcp://", 6) != 0 && strncmp(o.peer, "ipc://", 6) != 0)
        return s_fail(2, "--peer: '%.100s' must be tcp://HOST:PORT", o.peer);
    uint8_t server_key[32];
    if (kvc_config_parse_key(o.peer_key, server_key) != 0)
        return s_fail(2, "--peer-key: must be 64 hex digits (the peer's public_key in kvc status)");
    if (!o.name) {
        if (gethostname(o.host, sizeof o.host) != 0)
            return s_fail(2, "no --name, and the host name cannot be read");
        o.host[sizeof o.host - 1] = '\0';
        for (char *p = o.host; *p; p++) {
            *p = (char)tolower((unsigned char)*p);
            if (*p == '.') /* the short name */
                *p = '\0';
        }
        o.name = o.host;
    }
    if (!kvc_node_name_ok(o.name))
        return s_fail(2, "the node name '%.63s' is not a DNS label; give --name", o.name);
    if (!o.arch)
        o.arch = s_arch();
    if (!o.kind)
        o.kind = "kubeadm";
    if (strcmp(o.kind, "kubeadm") && strcmp(o.kind, "k3s"))
        return s_fail(2, "--kind must be kubeadm or k3s");
    long wait_s = 0, timeout_ms = 10000;
    if (o.wait && (sscanf(o.wait, "%ld", &wait_s) != 1 || wait_s < 0 || wait_s > 86400))
        return s_fail(2, "--wait: seconds, 0..86400");
    if (o.timeout &&
        (sscanf(o.timeout, "%ld", &timeout_ms) != 1 || timeout_ms < 100 || timeout_ms > 600000))
        return s_fail(2, "--timeout: milliseconds, 100..600000");
    if (!o.n_addresses)
        s_addresses(&o);
    if (kvc_crypto_init() != 0)
        return s_fail(1, "libsodium failed to initialise");

    s_session_t s;
    memset(&s, 0, sizeof s);
    Kvc__Join__NodeMessage *r = NULL;
    s.timeout_ms = (int)timeout_ms;
    kvc_strlcpy(s.site, o.site, sizeof s.site);
    kvc_strlcpy(s.name, o.name, sizeof s.name);
    kvc_err_t err = {0};
    if (kvc_nodekey_load(o.key, &s.key, &err) != 0)
        return s_fail(1, "%s", err.msg);
    s.ctx = zmq_ctx_new();
    s.sock = s.ctx ? zmq_socket(s.ctx, ZMQ_DEALER) : NULL;
    int linger = 0, rc = 1;
    if (!s.sock || zmq_setsockopt(s.sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(s.sock, ZMQ_CURVE_SERVERKEY, server_key, 32) ||
        zmq_setsockopt(s.sock, ZMQ_CURVE_PUBLICKEY, s.key.public_key, 32) ||
        zmq_setsockopt(s.sock, ZMQ_CURVE_SECRETKEY, s.key.secret_key, 32) ||
        zmq_connect(s.sock, o.peer) != 0) {
        rc = s_fail(1, "cannot connect to %s: %s", o.peer, zmq_strerror(zmq_errno()));
        goto out;
    }
    uint64_t give_up = kvc_clock_mono_ms() + (uint64_t)wait_s * 1000;
    int said_waiting = 0;
    for (;;) {
        randombytes_buf(s.nonce, sizeof s.nonce);
        Kvc__Join__Request req = KVC__JOIN__REQUEST__INIT;
        req.site = (char *)o.site;
        req.node = (char *)o.name;
        req.arch = (char *)o.arch;
        req.addresses = (char **)o.addresses;
        req.n_addresses = o.n_addresses;
        req.nonce.data = s.nonce;
        req.nonce.len = sizeof s.nonce;
        req.timestamp_ms = (int64_t)kvc_clock_wall_ms();
        req.enroll_code = (char *)(o.enroll ? o.enroll : "");
        req.kind = (char *)o.kind;
        Kvc__Join__NodeMessage m = KVC__JOIN__NODE_MESSAGE__INIT;
        m.body_case = KVC__JOIN__NODE_MESSAGE__BODY_REQUEST;
        m.request = &req;
        if (s_send(&s, &m) != 0) {
            rc = s_fail(1, "cannot send the request to %s", o.peer);
            goto out;
        }
        int got = s_recv(&s, s.timeout_ms, &r);
        if (got != 0) {
            rc = s_fail(1, "no answer from %s within %ld ms (is it a peer of site %s, with key "
                           "%.16s...?)",
                        o.peer, timeout_ms, o.site, o.peer_key);
            goto out;
        }
        if (r->reply->body_case == KVC__JOIN__REPLY__BODY_GRANTED)
            break;
        if (r->reply->body_case != KVC__JOIN__REPLY__BODY_REFUSED) {
            rc = s_fail(1, "unexpected answer from %s", o.peer);
            goto out;
        }
        const Kvc__Join__Refused *ref = r->reply->refused;
        if (!ref->retryable || kvc_clock_mono_ms() >= give_up) {
            rc = s_fail(ref->retryable ? 3 : 1, "refused: %s", ref->reason);
            goto out;
        }
        if (!said_waiting++)
            fprintf(stderr, "kvc: join: waiting: %s\n", ref->reason);
        kvc__join__node_message__free_unpacked(r, kvc_pb_allocator());
        r = NULL;
        struct timespec ts = {1, 0}; /* asking again, not a test's wait */
        nanosleep(&ts, NULL);
    }
    /* granted: open the sealed secret */
    const Kvc__Join__Granted *g = r->reply->granted;
    uint8_t plain[1024];
    if (g->sealed.len < crypto_box_SEALBYTES || g->sealed.len - crypto_box_SEALBYTES > sizeof plain ||
        crypto_box_seal_open(plain, g->sealed.data, g->sealed.len, s.key.public_key,
                             s.key.secret_key) != 0) {
        rc = s_fail(1, "the token could not be opened with %s (not sealed to this key)", o.key);
        goto out;
    }
    size_t plen = g->sealed.len - crypto_box_SEALBYTES;
    kvc_pb_alloc_t alloc;
    Kvc__Join__Secret *sec = kvc__join__secret__unpack(kvc_pb_alloc_init(&alloc), plen, plain);
    sodium_memzero(plain, sizeof plain);
    if (!sec || !sec->api_server[0] || !sec->token[0]) {
        if (sec)
            kvc__join__secret__free_unpacked(sec, kvc_pb_allocator());
        rc = s_fail(1, "the coordinator sent an unusable token");
        goto out;
    }
    char server[KVC_ENDPOINT_MAX + 16];
    const char *cmd[16];
    size_t n = s_command(sec, o.name, server, sizeof server, cmd);
    fprintf(stderr, "kvc: join: token %s granted by %s (term %llu), expires in %lld s\n",
            g->token_id, g->coordinator, (unsigned long long)g->term,
            (long long)(g->expires_unix - kvc_clock_wall_s()));
    if (o.exec) {
        rc = s_exec(&s, cmd);
    } else {
        for (size_t i = 0; i < n; i++) {
            if (i)
                putchar(' ');
            s_print_word(cmd[i]);
        }
        putchar('\n');
        fflush(stdout);
        rc = 0;
    }
    sodium_memzero(sec->token, strlen(sec->token));
    kvc__join__secret__free_unpacked(sec, kvc_pb_allocator());
out:
    if (r)
        kvc__join__node_message__free_unpacked(r, kvc_pb_allocator());
    sodium_memzero(&s.key, sizeof s.key);
    if (s.sock)
        zmq_close(s.sock);
    if (s.ctx)
        zmq_ctx_term(s.ctx);
    return rc;
}
