/*
 * Unit tests of peer/cli_ca.c: `kvc ca`, `kvc cert` and `kvc keygen` run
 * in-process in a temporary directory, with stdout and stderr captured, so
 * exit codes, printed keys and the exact one-line errors are checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli_ca.h"
#include "config.h"
#include "credential.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

typedef int (*s_cmd_fn)(int, char **);

/* One captured run of a command. */
typedef struct {
    int rc;
    char out[16384];
    char err[4096];
} s_run_t;

/* Reads what a capture file holds into buf. */
static void s_drain(FILE *f, char *buf, size_t size)
{
    rewind(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs fn with the NULL-terminated arguments, capturing stdout and stderr. */
static void s_run(s_run_t *r, s_cmd_fn fn, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, fn);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    FILE *out = tmpfile(), *err = tmpfile();
    assert_non_null(out);
    assert_non_null(err);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    dup2(fileno(out), 1);
    dup2(fileno(err), 2);
    r->rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    s_drain(out, r->out, sizeof r->out);
    s_drain(err, r->err, sizeof r->err);
}

/* Removes a directory tree made by a test. */
static void s_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            s_rmtree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Paths used by the tests, under a fresh temporary directory. */
typedef struct {
    char tmp[64];
    char ca[128];  /* tmp/fed */
    char pub[160]; /* tmp/fed/federation.pub */
    char key[160]; /* tmp/fed/federation.key */
    char id[128];  /* tmp/gw-a.id */
} s_env_t;

/* Makes the temporary directory. */
static int s_setup(void **state)
{
    s_env_t *e = calloc(1, sizeof *e);
    snprintf(e->tmp, sizeof e->tmp, "/tmp/kvc-cli-XXXXXX");
    if (!mkdtemp(e->tmp)) {
        free(e);
        return -1;
    }
    snprintf(e->ca, sizeof e->ca, "%s/fed", e->tmp);
    snprintf(e->pub, sizeof e->pub, "%s/federation.pub", e->ca);
    snprintf(e->key, sizeof e->key, "%s/federation.key", e->ca);
    snprintf(e->id, sizeof e->id, "%s/gw-a.id", e->tmp);
    *state = e;
    return 0;
}

/* Removes it. */
static int s_teardown(void **state)
{
    s_env_t *e = *state;
    s_rmtree(e->tmp);
    free(e);
    return 0;
}

/* Returns the permission bits of path. */
static unsigned s_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (unsigned)(st.st_mode & 0777);
}

/* Runs `kvc ca init --out e->ca` and expects success. */
static void s_ca_init(s_env_t *e)
{
    s_run_t r;
    s_run(&r, kvc_cli_ca, "ca", "init", "--out", e->ca, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
}

/* ---- kvc ca ------------------------------------------------------------- */

static void test_ca_help_and_usage(void **state)
{
    s_run_t r;
    s_run(&r, kvc_cli_ca, "ca", "--help", NULL);
    assert_int_equal(r.rc, 0);
    assert_memory_equal(r.out, "Usage: kvc ca init --out DIR [--json]\n", 38);
    assert_string_equal(r.err, "");
    s_run(&r, kvc_cli_ca, "ca", "init", "-h", NULL);
    assert_int_equal(r.rc, 0);
    assert_memory_equal(r.out, "Usage: kvc ca init --out DIR [--json]\n", 38);

    s_run(&r, kvc_cli_ca, "ca", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "kvc: ca: missing subcommand (see 'kvc ca --help')\n");
    s_run(&r, kvc_cli_ca, "ca", "frob", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: ca: unknown subcommand 'frob' (see 'kvc ca --help')\n");
    s_run(&r, kvc_cli_ca, "ca", "init", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: ca init: --out DIR is required (see 'kvc ca --help')\n");
    s_run(&r, kvc_cli_ca, "ca", "init", "--out", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: option '--out' needs a value (see 'kvc ca --help')\n");
    s_run(&r, kvc_cli_ca, "ca", "init", "--outdir", "x", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: unknown option '--outdir' (see 'kvc ca --help')\n");
    s_run(&r, kvc_cli_ca, "ca", "init", "--out", "a", "--out", "b", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: option '--out' given twice (see 'kvc ca --help')\n");
    s_run(&r, kvc_cli_ca, "ca", "init", "stray", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: unexpected argument 'stray' (see 'kvc ca --help')\n");
}

static void test_ca_init(void **state)
{
    s_env_t *e = *state;
    s_run_t r;
    s_run(&r, kvc_cli_ca, "ca", "init", "--out", e->ca, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_int_equal(s_mode(e->ca), 0700);
    assert_int_equal(s_mode(e->key), 0600);
    assert_int_equal(s_mode(e->pub), 0644);
    uint8_t pk[32];
    kvc_err_t err = {0};
    assert_int_equal(kvc_ca_load_public(e->pub, pk, &err), KVC_OK);
    char hex[65], want[600];
    kvc_key_hex(pk, hex);
    snprintf(want, sizeof want,
             "public key: %s\n"
             "secret:     %s/federation.key (0600; keep it offline)\n"
             "public:     %s/federation.pub (every peer's federation.trust)\n",
             hex, e->ca, e->ca);
    assert_string_equal(r.out, want);

    /* Never twice: the key is left as it was. */
    s_run(&r, kvc_cli_ca, "ca", "init", "--out=" /* joined form */, NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err,
                        "kvc: option '--out' needs a non-empty value (see 'kvc ca --help')\n");
    s_run(&r, kvc_cli_ca, "ca", "init", "--out", e->ca, NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    snprintf(want, sizeof want, "kvc: %s: already exists; refusing to overwrite it\n", e->key);
    assert_string_equal(r.err, want);
    uint8_t again[32];
    assert_int_equal(kvc_ca_load_public(e->pub, again, &err), KVC_OK);
    assert_memory_equal(again, pk, 32);
}

/* ---- kvc cert ----------------------------------------------------------- */

static void test_cert_help_and_usage(void **state)
{
    s_env_t *e = *state;
    s_run_t r;
    const char *usage = "Usage: kvc cert issue --ca DIR --site S --name N";
    s_run(&r, kvc_cli_cert, "cert", "--help", NULL);
    assert_int_equal(r.rc, 0);
    assert_memory_equal(r.out, usage, strlen(usage));
    s_run(&r, kvc_cli_cert, "cert", "issue", "--help", NULL);
    assert_int_equal(r.rc, 0);
    assert_memory_equal(r.out, usage, strlen(usage));
    s_run(&r, kvc_cli_cert, "cert", "show", "--help", NULL);
    assert_int_equal(r.rc, 0);
    assert_memory_equal(r.out, usage, strlen(usage));

    s_run(&r, kvc_cli_cert, "cert", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: cert: missing subcommand (see 'kvc cert --help')\n");
    s_run(&r, kvc_cli_cert, "cert", "revoke", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: cert: unknown subcommand 'revoke' (see 'kvc cert --help')\n");

    struct {
        const char *args[12];
        const char *err;
    } cases[] = {
        {{"--site", "s", "--name", "n", "--out", "f"},
         "kvc: cert issue: --ca DIR is required (see 'kvc cert --help')\n"},
        {{"--ca", e->ca, "--name", "n", "--out", "f"},
         "kvc: cert issue: --site S is required (see 'kvc cert --help')\n"},
        {{"--ca", e->ca, "--site", "s", "--out", "f"},
         "kvc: cert issue: --name N is required (see 'kvc cert --help')\n"},
        {{"--ca", e->ca, "--site", "s", "--name", "n"},
         "kvc: cert issue: --out FILE is required (see 'kvc cert --help')\n"},
        {{"--ca", e->ca, "--site", "s", "--name", "n", "--out", "f", "--days", "0"},
         "kvc: cert issue: --days must be a whole number in 1..3650, not '0' (see 'kvc cert "
         "--help')\n"},
        {{"--ca", e->ca, "--site", "s", "--name", "n", "--out", "f", "--days", "3651"},
         "kvc: cert issue: --days must be a whole number in 1..3650, not '3651' (see 'kvc cert "
         "--help')\n"},
        {{"--ca", e->ca, "--site", "s", "--name", "n", "--out", "f", "--days", "7x"},
         "kvc: cert issue: --days must be a whole number in 1..3650, not '7x' (see 'kvc cert "
         "--help')\n"},
        {{"--ca", e->ca, "--site", "s", "--name", "n", "--out", "f", "--roles", "a,,b"},
         "kvc: cert issue: roles: empty role in 'a,,b' (see 'kvc cert --help')\n"},
        {{"--ca", e->ca, "--site", "s", "--name", "n", "--out", "f", "--jsn"},
         "kvc: unknown option '--jsn' (see 'kvc cert --help')\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char **a = cases[i].args;
        s_run(&r, kvc_cli_cert, "cert", "issue", a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
              a[8], a[9], a[10], NULL);
        assert_int_equal(r.rc, 2);
        assert_string_equal(r.err, cases[i].err);
        assert_string_equal(r.out, "");
    }
    s_run(&r, kvc_cli_cert, "cert", "show", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: cert show: which identity file? (see 'kvc cert --help')\n");
    s_run(&r, kvc_cli_cert, "cert", "show", "a", "b", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: unexpected argument 'b' (see 'kvc cert --help')\n");
    s_run(&r, kvc_cli_cert, "cert", "show", "a", "--json=yes", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: option '--json' takes no value (see 'kvc cert --help')\n");
}

static void test_cert_issue_and_show(void **state)
{
    s_env_t *e = *state;
    s_run_t r;
    char want[2048];
    s_ca_init(e);
    int64_t before = (int64_t)time(NULL);
    s_run(&r, kvc_cli_cert, "cert", "issue", "--ca", e->ca, "--site", "edge-1", "--name", "gw-a",
          "--roles", "gateway,coordinator", "--days=10", "--out", e->id, NULL);
    int64_t after = (int64_t)time(NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_int_equal(s_mode(e->id), 0600);

    kvc_identity_t id;
    kvc_err_t err = {0};
    assert_int_equal(kvc_identity_load(e->id, &id, &err), KVC_OK);
    uint8_t trust[32];
    assert_int_equal(kvc_ca_load_public(e->pub, trust, &err), KVC_OK);
    kvc_cred_t c;
    assert_int_equal(kvc_cred_verify(id.cred.blob, id.cred.blob_len, trust, after, &c, &err),
                     KVC_OK);
    assert_true(c.not_before >= before && c.not_before <= after);
    assert_int_equal(c.not_after - c.not_before, 10 * 86400);
    assert_int_equal(c.n_roles, 2);
    char pub[65], ca[65], from[32], to[32];
    kvc_key_hex(c.curve_public, pub);
    kvc_key_hex(trust, ca);
    kvc_cred_time_str(c.not_before, from, sizeof from);
    kvc_cred_time_str(c.not_after, to, sizeof to);
    snprintf(want, sizeof want,
             "member:     edge-1/gw-a\npublic key: %s\nroles:      gateway,coordinator\n"
             "expires:    %s\nidentity:   %s (0600; the peer's peer.credential)\n",
             pub, to, e->id);
    assert_string_equal(r.out, want);

    /* Overwrite refused. */
    s_run(&r, kvc_cli_cert, "cert", "issue", "--ca", e->ca, "--site", "edge-1", "--name", "gw-a",
          "--out", e->id, NULL);
    assert_int_equal(r.rc, 1);
    snprintf(want, sizeof want, "kvc: %s: already exists; refusing to overwrite it\n", e->id);
    assert_string_equal(r.err, want);

    /* show without --trust: contents, not verified. */
    s_run(&r, kvc_cli_cert, "cert", "show", e->id, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    char body[1024];
    snprintf(body, sizeof body,
             "member:     edge-1/gw-a\nsite:       edge-1\nname:       gw-a\n"
             "roles:      gateway,coordinator\npublic key: %s\nfederation: %s\n"
             "valid from: %s\nvalid to:   %s\n",
             pub, ca, from, to);
    snprintf(want, sizeof want, "%sstatus:     not verified (use --trust federation.pub)\n", body);
    assert_string_equal(r.out, want);

    /* with --trust: valid. */
    s_run(&r, kvc_cli_cert, "cert", "show", "--trust", e->pub, e->id, NULL);
    assert_int_equal(r.rc, 0);
    snprintf(want, sizeof want, "%sstatus:     valid\n", body);
    assert_string_equal(r.out, want);

    /* --json */
    s_run(&r, kvc_cli_cert, "cert", "show", e->id, "--trust", e->pub, "--json", NULL);
    assert_int_equal(r.rc, 0);
    snprintf(want, sizeof want,
             "{\"member\":\"edge-1/gw-a\",\"site\":\"edge-1\",\"name\":\"gw-a\","
             "\"roles\":[\"gateway\",\"coordinator\"],\"public_key\":\"%s\","
             "\"federation_key\":\"%s\",\"not_before\":\"%s\",\"not_after\":\"%s\","
             "\"status\":\"valid\",\"reason\":null}\n",
             pub, ca, from, to);
    assert_string_equal(r.out, want);

    /* Issuing with an invalid name is a usage error. */
    char other[200];
    snprintf(other, sizeof other, "%s/x.id", e->tmp);
    s_run(&r, kvc_cli_cert, "cert", "issue", "--ca", e->ca, "--site", "Edge", "--name", "gw",
          "--out", other, NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: cert issue: credential: site 'Edge' must match "
                               "[a-z0-9-]{1,63} and not start or end with '-' (see 'kvc cert "
                               "--help')\n");
    assert_int_equal(access(other, F_OK), -1);
    /* A missing federation key is a failure, not a usage error. */
    char nope[200];
    snprintf(nope, sizeof nope, "%s/nope", e->tmp);
    s_run(&r, kvc_cli_cert, "cert", "issue", "--ca", nope, "--site", "edge", "--name", "gw",
          "--out", other, NULL);
    assert_int_equal(r.rc, 1);
    snprintf(want, sizeof want, "kvc: %s: cannot open: No such file or directory\n", nope);
    assert_string_equal(r.err, want);
}

static void test_cert_show_invalid(void **state)
{
    s_env_t *e = *state;
    s_run_t r;
    char want[2048];
    kvc_err_t err = {0};
    s_ca_init(e);

    /* Signed by this federation long ago, for one day. */
    kvc_ca_t fed;
    assert_int_equal(kvc_ca_load(e->ca, &fed, &err), KVC_OK);
    kvc_identity_t old;
    assert_int_equal(kvc_cred_issue(&fed, "edge-1", "old", NULL, 0, 1000000000, 1, &old, &err),
                     KVC_OK);
    char old_path[200];
    snprintf(old_path, sizeof old_path, "%s/old.id", e->tmp);
    assert_int_equal(kvc_identity_save(&old, old_path, &err), KVC_OK);
    s_run(&r, kvc_cli_cert, "cert", "show", old_path, "--trust", e->pub, NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "kvc: credential: expired at 2001-09-10T01:46:40Z\n");
    assert_non_null(
        strstr(r.out, "\nstatus:     invalid: credential: expired at 2001-09-10T01:46:40Z\n"));
    s_run(&r, kvc_cli_cert, "cert", "show", old_path, "--trust", e->pub, "--json", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.out, "\"roles\":[],"));
    assert_non_null(strstr(
        r.out,
        "\"status\":\"invalid\",\"reason\":\"credential: expired at 2001-09-10T01:46:40Z\"}\n"));

    /* Checked against another federation's key. */
    char other_ca[200], other_pub[260];
    snprintf(other_ca, sizeof other_ca, "%s/other", e->tmp);
    snprintf(other_pub, sizeof other_pub, "%s/federation.pub", other_ca);
    s_run(&r, kvc_cli_ca, "ca", "init", "--out", other_ca, NULL);
    assert_int_equal(r.rc, 0);
    kvc_identity_t id;
    assert_int_equal(
        kvc_cred_issue(&fed, "edge-1", "gw-a", NULL, 0, (int64_t)time(NULL), 5, &id, &err), KVC_OK);
    assert_int_equal(kvc_identity_save(&id, e->id, &err), KVC_OK);
    uint8_t other_key[32];
    assert_int_equal(kvc_ca_load_public(other_pub, other_key, &err), KVC_OK);
    char a[65], b[65];
    kvc_key_hex(fed.public_key, a);
    kvc_key_hex(other_key, b);
    s_run(&r, kvc_cli_cert, "cert", "show", e->id, "--trust", other_pub, NULL);
    assert_int_equal(r.rc, 1);
    snprintf(want, sizeof want,
             "kvc: credential: signed by a different federation key (%.8s\u2026), expected "
             "%.8s\u2026\n",
             a, b);
    assert_string_equal(r.err, want);

    /* A damaged identity file: the line and what is wrong. */
    FILE *f = fopen(e->id, "r+");
    assert_non_null(f);
    assert_int_equal(fseek(f, 16, SEEK_SET), 0);
    fputs("SITE", f);
    fclose(f);
    s_run(&r, kvc_cli_cert, "cert", "show", e->id, NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    snprintf(want, sizeof want, "kvc: %s:2: expected 'site: ...'\n", e->id);
    assert_string_equal(r.err, want);

    /* A trust file that is not one. */
    s_run(&r, kvc_cli_cert, "cert", "show", old_path, "--trust", e->key, NULL);
    assert_int_equal(r.rc, 1);
    snprintf(want, sizeof want,
             "kvc: %s:1: not a federation public key file (first line must be "
             "'kvc-federation-public-v1')\n",
             e->key);
    assert_string_equal(r.err, want);
    kvc_identity_wipe(&id);
    kvc_identity_wipe(&old);
}

/* ---- kvc keygen --------------------------------------------------------- */

static void test_keygen(void **state)
{
    s_env_t *e = *state;
    s_run_t r;
    char path[200], pub[220], want[600];
    snprintf(path, sizeof path, "%s/node.key", e->tmp);
    snprintf(pub, sizeof pub, "%s.pub", path);

    s_run(&r, kvc_cli_keygen, "keygen", "--help", NULL);
    assert_int_equal(r.rc, 0);
    assert_memory_equal(r.out, "Usage: kvc keygen --out FILE [--json]\n", 38);
    s_run(&r, kvc_cli_keygen, "keygen", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: keygen: --out FILE is required (see 'kvc keygen --help')\n");
    s_run(&r, kvc_cli_keygen, "keygen", "--force", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "kvc: unknown option '--force' (see 'kvc keygen --help')\n");

    s_run(&r, kvc_cli_keygen, "keygen", "--out", path, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_int_equal(s_mode(path), 0600);
    assert_int_equal(s_mode(pub), 0644);
    kvc_nodekey_t key;
    kvc_err_t err = {0};
    assert_int_equal(kvc_nodekey_load(path, &key, &err), KVC_OK);
    char hex[65];
    kvc_key_hex(key.public_key, hex);
    snprintf(want, sizeof want,
             "public key: %s\nsecret:     %s (0600)\npublic:     %s.pub (what an operator "
             "approves)\n",
             hex, path, path);
    assert_string_equal(r.out, want);

    s_run(&r, kvc_cli_keygen, "keygen", "--out", path, NULL);
    assert_int_equal(r.rc, 1);
    snprintf(want, sizeof want, "kvc: %s: already exists; refusing to overwrite it\n", path);
    assert_string_equal(r.err, want);
    kvc_nodekey_t again;
    assert_int_equal(kvc_nodekey_load(path, &again, &err), KVC_OK);
    assert_memory_equal(&again, &key, sizeof key);

    /* A folder that does not exist. */
    char deep[260];
    snprintf(deep, sizeof deep, "%s/no/such/node.key", e->tmp);
    s_run(&r, kvc_cli_keygen, "keygen", "--out", deep, NULL);
    assert_int_equal(r.rc, 1);
    snprintf(want, sizeof want, "kvc: %s: cannot create: No such file or directory\n", deep);
    assert_string_equal(r.err, want);
}

/* --json on every offline command: one object, the same facts as the text;
 * cert issue without --roles gets the roles a config without peer.roles
 * gets (KVC_DEFAULT_ROLES). */
static void test_json_and_default_roles(void **state)
{
    s_env_t *e = *state;
    s_run_t r;
    char want[1200], hex[65];
    kvc_err_t err = {0};
    s_run(&r, kvc_cli_ca, "ca", "init", "--out", e->ca, "--json", NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    uint8_t pk[32];
    assert_int_equal(kvc_ca_load_public(e->pub, pk, &err), KVC_OK);
    kvc_key_hex(pk, hex);
    snprintf(want, sizeof want, "{\"public_key\":\"%s\",\"secret\":\"%s\",\"public\":\"%s\"}\n",
             hex, e->key, e->pub);
    assert_string_equal(r.out, want);

    s_run(&r, kvc_cli_cert, "cert", "issue", "--ca", e->ca, "--site", "edge-1", "--name", "gw-a",
          "--out", e->id, "--json", NULL);
    assert_int_equal(r.rc, 0);
    kvc_identity_t id;
    assert_int_equal(kvc_identity_load(e->id, &id, &err), KVC_OK);
    assert_int_equal(id.cred.n_roles, 2);
    assert_string_equal(id.cred.roles[0], "gateway");
    assert_string_equal(id.cred.roles[1], "voter");
    char to[32];
    kvc_key_hex(id.cred.curve_public, hex);
    kvc_cred_time_str(id.cred.not_after, to, sizeof to);
    kvc_identity_wipe(&id);
    snprintf(want, sizeof want,
             "{\"member\":\"edge-1/gw-a\",\"public_key\":\"%s\",\"roles\":[\"gateway\","
             "\"voter\"],\"not_after\":\"%s\",\"identity\":\"%s\"}\n",
             hex, to, e->id);
    assert_string_equal(r.out, want);

    /* an empty --roles is refused, not taken as "no roles" */
    char id2[200];
    snprintf(id2, sizeof id2, "%s/none.id", e->tmp);
    s_run(&r, kvc_cli_cert, "cert", "issue", "--ca", e->ca, "--site", "edge-1", "--name", "gw-b",
          "--roles", "", "--out", id2, NULL);
    assert_int_equal(r.rc, 2);

    char key[200];
    snprintf(key, sizeof key, "%s/n.key", e->tmp);
    s_run(&r, kvc_cli_keygen, "keygen", "--json", "--out", key, NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "\"secret\":\""));
    assert_int_equal(r.out[0], '{');
    assert_int_equal(r.out[strlen(r.out) - 2], '}');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ca_help_and_usage, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_ca_init, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cert_help_and_usage, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cert_issue_and_show, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cert_show_invalid, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_keygen, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_json_and_default_roles, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
