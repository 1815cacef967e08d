/*
 * cli_ca.c - `kvc ca`, `kvc cert` and `kvc keygen`: the operator's side of
 * the trust model (credential.h does the work; this file parses arguments
 * and prints).
 *
 * Options are parsed by hand rather than with getopt_long so that the
 * functions hold no global state between calls and never print anything
 * but the one line the team's CLI rules allow. This file must never print a
 * secret, never exit(), and never overwrite a key file.
 */
#include "cli_ca.h"
#include "clock.h"

#include "config.h"
#include "credential.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum { S_EXIT_OK = 0, S_EXIT_FAIL = 1, S_EXIT_USAGE = 2, S_HELP = 3 };

#define S_MAX_POSITIONAL 4

/* One option a subcommand accepts. */
typedef struct {
    const char *name;   /* "--out" */
    int takes_value;    /* 1: "--out X" or "--out=X"; 0: a flag */
    const char **value; /* where the value goes (takes_value) */
    int *flag;          /* set to 1 when present (flags) */
} s_opt_t;

static const char s_ca_help[] =
    "Usage: kvc ca init --out DIR [--json]\n"
    "\n"
    "Makes the federation signing key (Ed25519). Whoever holds federation.key\n"
    "can admit peers to the federation: keep DIR offline.\n"
    "\n"
    "  --out DIR    where to write federation.key (0600) and federation.pub\n"
    "               (0644); DIR is created 0700 if missing. Existing keys are\n"
    "               never overwritten.\n"
    "  --json       one JSON object instead of text\n"
    "  -h, --help   show this help\n";

static const char s_cert_help[] =
    "Usage: kvc cert issue --ca DIR --site S --name N [--roles R1,R2] [--days D]\n"
    "                      --out FILE [--json]\n"
    "       kvc cert show FILE [--trust federation.pub] [--json]\n"
    "\n"
    "issue  makes a peer's Curve25519 keypair, signs its credential with the\n"
    "       federation key in DIR and writes the identity file FILE (0600;\n"
    "       give it to the peer as peer.credential).\n"
    "         --ca DIR      folder holding federation.key (or the key file)\n"
    "         --site S      site name, [a-z0-9-]{1,63}\n"
    "         --name N      peer name, [a-z0-9-]{1,63}\n"
    "         --roles LIST  comma-separated roles, at most 8 (default: gateway,\n"
    "                       as a peer config without peer.roles)\n"
    "         --days D      validity in days, 1..3650 (default 365)\n"
    "         --out FILE    identity file to create (never overwritten)\n"
    "show   prints the credential in an identity file. With --trust it also\n"
    "       verifies it against the federation public key and exits 1 if it\n"
    "       is not valid.\n"
    "         --trust PUB   federation.pub to verify against\n"
    "         --json        one JSON object instead of text\n";

static const char s_keygen_help[] =
    "Usage: kvc keygen --out FILE [--json]\n"
    "\n"
    "Makes a node keypair (X25519). Join tokens are sealed to its public key,\n"
    "so only this node can open them. Writes FILE (secret, 0600) and\n"
    "FILE.pub (public, 0644; what an operator approves). Never overwrites.\n"
    "\n"
    "  --out FILE   where to write the key\n"
    "  --json       one JSON object instead of text\n"
    "  -h, --help   show this help\n";

/* Prints a usage error (one line with a hint) and returns exit code 2. */
static int s_usage(const char *cmd, const char *fmt, const char *arg)
{
    char what[KVC_ERR_MAX + 128]; /* room for a prefix and a whole error message */
    snprintf(what, sizeof what, fmt, arg ? arg : "");
    fprintf(stderr, "kvc: %s (see 'kvc %s --help')\n", what, cmd);
    return S_EXIT_USAGE;
}

/* Prints a failure (one line) and returns exit code 1. */
static int s_fail(const kvc_err_t *err)
{
    fprintf(stderr, "kvc: %s\n", err->msg[0] ? err->msg : kvc_strerror(err->code));
    return S_EXIT_FAIL;
}

/* 1 if arg asks for help. */
static int s_is_help(const char *arg)
{
    return !strcmp(arg, "-h") || !strcmp(arg, "--help") || !strcmp(arg, "help");
}

/*
 * Parses argv[1..argc) (argv[0] is the subcommand word) against opts and
 * collects at most max_pos positional arguments. Returns S_EXIT_OK,
 * S_HELP when -h/--help is present, or S_EXIT_USAGE after printing why.
 */
static int s_parse(const char *cmd, int argc, char **argv, const s_opt_t *opts, size_t n_opts,
                   const char **pos, size_t max_pos, size_t *n_pos)
{
    *n_pos = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return S_HELP;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0') {
            if (*n_pos == max_pos)
                return s_usage(cmd, "unexpected argument '%.200s'", arg);
            pos[(*n_pos)++] = arg;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const s_opt_t *o = NULL;
        for (size_t k = 0; k < n_opts; k++)
            if (strlen(opts[k].name) == name_len && !strncmp(opts[k].name, arg, name_len))
                o = &opts[k];
        if (!o)
            return s_usage(cmd, "unknown option '%.200s'", arg);
        if (!o->takes_value) {
            if (eq)
                return s_usage(cmd, "option '%s' takes no value", o->name);
            *o->flag = 1;
            continue;
        }
        if (*o->value)
            return s_usage(cmd, "option '%s' given twice", o->name);
        if (eq) {
            *o->value = eq + 1;
        } else {
            if (i + 1 >= argc)
                return s_usage(cmd, "option '%s' needs a value", o->name);
            *o->value = argv[++i];
        }
        if (!**o->value)
            return s_usage(cmd, "option '%s' needs a non-empty value", o->name);
    }
    return S_EXIT_OK;
}

/* Joins a credential's roles with commas ("-" for none) into buf. */
static const char *s_roles_str(const kvc_cred_t *c, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    if (c->n_roles == 0)
        snprintf(buf, size, "-");
    for (size_t i = 0; i < c->n_roles && off < size; i++) {
        int w = snprintf(buf + off, size - off, "%s%s", i ? "," : "", c->roles[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    return buf;
}

/* Writes s as a JSON string (quotes included) to stdout. */
static void s_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* ---- kvc ca ------------------------------------------------------------- */

/* kvc ca init --out DIR */
static int s_ca_init(int argc, char **argv)
{
    const char *out = NULL;
    int json = 0;
    const s_opt_t opts[] = {{"--out", 1, &out, NULL}, {"--json", 0, NULL, &json}};
    const char *pos[1] = {NULL};
    size_t n_pos = 0;
    int rc = s_parse("ca", argc, argv, opts, 2, pos, 0, &n_pos);
    if (rc == S_HELP) {
        fputs(s_ca_help, stdout);
        return S_EXIT_OK;
    }
    if (rc != S_EXIT_OK)
        return rc;
    if (!out)
        return s_usage("ca", "ca init: --out DIR is required", NULL);
    kvc_ca_t ca;
    kvc_err_t err = {0};
    if (kvc_ca_init(out, &ca, &err) != KVC_OK)
        return s_fail(&err);
    char hex[65];
    kvc_key_hex(ca.public_key, hex);
    sodium_memzero(&ca, sizeof ca);
    const char *sep = out[strlen(out) - 1] == '/' ? "" : "/";
    if (json) {
        char path[4096];
        printf("{\"public_key\":\"%s\",\"secret\":", hex);
        snprintf(path, sizeof path, "%s%sfederation.key", out, sep);
        s_json_string(path);
        printf(",\"public\":");
        snprintf(path, sizeof path, "%s%sfederation.pub", out, sep);
        s_json_string(path);
        printf("}\n");
        return S_EXIT_OK;
    }
    printf("public key: %s\n", hex);
    printf("secret:     %s%sfederation.key (0600; keep it offline)\n", out, sep);
    printf("public:     %s%sfederation.pub (every peer's federation.trust)\n", out, sep);
    return S_EXIT_OK;
}

/* Entry point for `kvc ca ...`. */
int kvc_cli_ca(int argc, char **argv)
{
    if (argc < 2)
        return s_usage("ca", "ca: missing subcommand", NULL);
    if (s_is_help(argv[1])) {
        fputs(s_ca_help, stdout);
        return S_EXIT_OK;
    }
    if (!strcmp(argv[1], "init"))
        return s_ca_init(argc - 1, argv + 1);
    return s_usage("ca", "ca: unknown subcommand '%.200s'", argv[1]);
}

/* ---- kvc cert ----------------------------------------------------------- */

/* kvc cert issue --ca DIR --site S --name N [--roles L] [--days D] --out F */
static int s_cert_issue(int argc, char **argv)
{
    const char *ca_dir = NULL, *site = NULL, *name = NULL, *roles_s = NULL, *days_s = NULL,
               *out = NULL;
    int json = 0;
    const s_opt_t opts[] = {
        {"--ca", 1, &ca_dir, NULL},     {"--site", 1, &site, NULL},   {"--name", 1, &name, NULL},
        {"--roles", 1, &roles_s, NULL}, {"--days", 1, &days_s, NULL}, {"--out", 1, &out, NULL},
        {"--json", 0, NULL, &json},
    };
    const char *pos[1] = {NULL};
    size_t n_pos = 0;
    int rc = s_parse("cert", argc, argv, opts, sizeof opts / sizeof opts[0], pos, 0, &n_pos);
    if (rc == S_HELP) {
        fputs(s_cert_help, stdout);
        return S_EXIT_OK;
    }
    if (rc != S_EXIT_OK)
        return rc;
    if (!ca_dir)
        return s_usage("cert", "cert issue: --ca DIR is required", NULL);
    if (!site)
        return s_usage("cert", "cert issue: --site S is required", NULL);
    if (!name)
        return s_usage("cert", "cert issue: --name N is required", NULL);
    if (!out)
        return s_usage("cert", "cert issue: --out FILE is required", NULL);
    int64_t days = 365;
    if (days_s && kvc_parse_i64(days_s, 1, 3650, &days) != KVC_OK)
        return s_usage("cert", "cert issue: --days must be a whole number in 1..3650, not '%.40s'",
                       days_s);
    char roles[KVC_MAX_ROLES][KVC_NAME_MAX];
    size_t n_roles = 0;
    kvc_err_t err = {0};
    if (!roles_s)
        roles_s = KVC_DEFAULT_ROLES; /* what a peer config without peer.roles gets */
    if (kvc_cred_parse_roles(roles_s, roles, &n_roles, &err) != KVC_OK)
        return s_usage("cert", "cert issue: %s", err.msg);
    const char *role_ptrs[KVC_MAX_ROLES];
    for (size_t i = 0; i < n_roles; i++)
        role_ptrs[i] = roles[i];

    kvc_ca_t ca;
    if (kvc_ca_load(ca_dir, &ca, &err) != KVC_OK)
        return s_fail(&err);
    kvc_identity_t id;
    rc = kvc_cred_issue(&ca, site, name, role_ptrs, n_roles, kvc_clock_wall_s(), (int)days, &id,
                        &err);
    sodium_memzero(&ca, sizeof ca);
    if (rc == KVC_EINVAL || rc == KVC_ERANGE)
        return s_usage("cert", "cert issue: %s", err.msg);
    if (rc != KVC_OK)
        return s_fail(&err);
    rc = kvc_identity_save(&id, out, &err);
    kvc_identity_wipe(&id);
    if (rc != KVC_OK)
        return s_fail(&err);
    char hex[65], when[32], rbuf[KVC_MAX_ROLES * KVC_NAME_MAX];
    kvc_key_hex(id.cred.curve_public, hex);
    if (json) {
        printf("{\"member\":\"%s/%s\",\"public_key\":\"%s\",\"roles\":[", id.cred.site,
               id.cred.name, hex);
        for (size_t i = 0; i < id.cred.n_roles; i++)
            printf("%s\"%s\"", i ? "," : "", id.cred.roles[i]);
        printf("],\"not_after\":\"%s\",\"identity\":",
               kvc_cred_time_str(id.cred.not_after, when, sizeof when));
        s_json_string(out);
        printf("}\n");
        return S_EXIT_OK;
    }
    printf("member:     %s/%s\n", id.cred.site, id.cred.name);
    printf("public key: %s\n", hex);
    printf("roles:      %s\n", s_roles_str(&id.cred, rbuf, sizeof rbuf));
    printf("expires:    %s\n", kvc_cred_time_str(id.cred.not_after, when, sizeof when));
    printf("identity:   %s (0600; the peer's peer.credential)\n", out);
    return S_EXIT_OK;
}

/* Prints a credential as text or JSON; status is "valid", "invalid" or
 * "unverified", reason the verification error (or NULL). */
static void s_print_cred(const kvc_cred_t *c, int json, const char *status, const char *reason)
{
    char pub[65], ca[65], from[32], to[32], rbuf[KVC_MAX_ROLES * KVC_NAME_MAX];
    kvc_key_hex(c->curve_public, pub);
    kvc_key_hex(c->ca_public, ca);
    kvc_cred_time_str(c->not_before, from, sizeof from);
    kvc_cred_time_str(c->not_after, to, sizeof to);
    if (!json) {
        printf("member:     %s/%s\n", c->site, c->name);
        printf("site:       %s\n", c->site);
        printf("name:       %s\n", c->name);
        printf("roles:      %s\n", s_roles_str(c, rbuf, sizeof rbuf));
        printf("public key: %s\n", pub);
        printf("federation: %s\n", ca);
        printf("valid from: %s\n", from);
        printf("valid to:   %s\n", to);
        if (!strcmp(status, "valid"))
            printf("status:     valid\n");
        else if (!strcmp(status, "invalid"))
            printf("status:     invalid: %s\n", reason);
        else
            printf("status:     not verified (use --trust federation.pub)\n");
        return;
    }
    printf("{\"member\":\"%s/%s\",\"site\":\"%s\",\"name\":\"%s\",\"roles\":[", c->site, c->name,
           c->site, c->name);
    for (size_t i = 0; i < c->n_roles; i++)
        printf("%s\"%s\"", i ? "," : "", c->roles[i]);
    printf("],\"public_key\":\"%s\",\"federation_key\":\"%s\",\"not_before\":\"%s\","
           "\"not_after\":\"%s\",\"status\":\"%s\",\"reason\":",
           pub, ca, from, to, status);
    if (reason)
        s_json_string(reason);
    else
        fputs("null", stdout);
    fputs("}\n", stdout);
}

/* kvc cert show FILE [--trust PUB] [--json] */
static int s_cert_show(int argc, char **argv)
{
    const char *trust_path = NULL;
    int json = 0;
    const s_opt_t opts[] = {{"--trust", 1, &trust_path, NULL}, {"--json", 0, NULL, &json}};
    const char *pos[1] = {NULL};
    size_t n_pos = 0;
    int rc = s_parse("cert", argc, argv, opts, 2, pos, 1, &n_pos);
    if (rc == S_HELP) {
        fputs(s_cert_help, stdout);
        return S_EXIT_OK;
    }
    if (rc != S_EXIT_OK)
        return rc;
    if (n_pos != 1)
        return s_usage("cert", "cert show: which identity file?", NULL);
    kvc_err_t err = {0};
    uint8_t trust[32];
    if (trust_path && kvc_ca_load_public(trust_path, trust, &err) != KVC_OK)
        return s_fail(&err);
    kvc_identity_t id;
    if (kvc_identity_load(pos[0], &id, &err) != KVC_OK)
        return s_fail(&err);
    kvc_identity_wipe(&id);
    if (!trust_path) {
        s_print_cred(&id.cred, json, "unverified", NULL);
        return S_EXIT_OK;
    }
    kvc_cred_t checked;
    rc =
        kvc_cred_verify(id.cred.blob, id.cred.blob_len, trust, kvc_clock_wall_s(), &checked, &err);
    if (rc == KVC_OK) {
        s_print_cred(&checked, json, "valid", NULL);
        return S_EXIT_OK;
    }
    s_print_cred(&id.cred, json, "invalid", err.msg);
    fflush(stdout);
    return s_fail(&err);
}

/* Entry point for `kvc cert ...`. */
int kvc_cli_cert(int argc, char **argv)
{
    if (argc < 2)
        return s_usage("cert", "cert: missing subcommand", NULL);
    if (s_is_help(argv[1])) {
        fputs(s_cert_help, stdout);
        return S_EXIT_OK;
    }
    if (!strcmp(argv[1], "issue"))
        return s_cert_issue(argc - 1, argv + 1);
    if (!strcmp(argv[1], "show"))
        return s_cert_show(argc - 1, argv + 1);
    return s_usage("cert", "cert: unknown subcommand '%.200s'", argv[1]);
}

/* ---- kvc keygen --------------------------------------------------------- */

/* Entry point for `kvc keygen --out FILE`. */
int kvc_cli_keygen(int argc, char **argv)
{
    const char *out = NULL;
    int json = 0;
    const s_opt_t opts[] = {{"--out", 1, &out, NULL}, {"--json", 0, NULL, &json}};
    const char *pos[1] = {NULL};
    size_t n_pos = 0;
    int rc = s_parse("keygen", argc, argv, opts, 2, pos, 0, &n_pos);
    if (rc == S_HELP) {
        fputs(s_keygen_help, stdout);
        return S_EXIT_OK;
    }
    if (rc != S_EXIT_OK)
        return rc;
    if (!out)
        return s_usage("keygen", "keygen: --out FILE is required", NULL);
    kvc_nodekey_t key;
    kvc_err_t err = {0};
    if (kvc_nodekey_generate(out, &key, &err) != KVC_OK)
        return s_fail(&err);
    char hex[65];
    kvc_key_hex(key.public_key, hex);
    sodium_memzero(&key, sizeof key);
    if (json) {
        char pub[4096];
        printf("{\"public_key\":\"%s\",\"secret\":", hex);
        s_json_string(out);
        snprintf(pub, sizeof pub, "%s.pub", out);
        printf(",\"public\":");
        s_json_string(pub);
        printf("}\n");
        return S_EXIT_OK;
    }
    printf("public key: %s\n", hex);
    printf("secret:     %s (0600)\n", out);
    printf("public:     %s.pub (what an operator approves)\n", out);
    return S_EXIT_OK;
}
