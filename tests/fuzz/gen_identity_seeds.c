/*
 * gen_identity_seeds - writes seed inputs for fuzz_identity_file into a
 * folder of the build tree: identity files signed by the deterministic
 * fuzzing key (bytes 1..32), plus CRLF and truncated variants. Generated at
 * build time so that no key material, not even a throwaway one, is in git.
 *
 *   gen_identity_seeds DIR
 */
#include "credential.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Writes len bytes to dir/name (replacing it). */
static int s_write(const char *dir, const char *name, const char *data, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Issues an identity, saves it as dir/name and returns its text in buf. */
static int s_issue(const kvc_ca_t *ca, const char *dir, const char *name, const char *site,
                   const char *peer, const char *const *roles, size_t n_roles, char *buf,
                   size_t size, size_t *len)
{
    kvc_identity_t id;
    kvc_err_t err = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    if (kvc_cred_issue(ca, site, peer, roles, n_roles, (int64_t)time(NULL), 365, &id, &err) ||
        kvc_identity_save(&id, path, &err)) {
        fprintf(stderr, "gen_identity_seeds: %s\n", err.msg);
        return -1;
    }
    kvc_identity_wipe(&id);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    *len = fread(buf, 1, size, f);
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_identity_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return 1;
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(i + 1);
    kvc_ca_t ca;
    if (kvc_crypto_init() || kvc_ca_from_seed(seed, &ca))
        return 1;
    char text[4096], crlf[8192];
    size_t len = 0;
    const char *roles[] = {"gateway", "coordinator"};
    if (s_issue(&ca, dir, "valid-two-roles.id", "edge-1", "gw-a", roles, 2, text, sizeof text,
                &len) ||
        s_issue(&ca, dir, "valid-no-roles.id", "s", "n", NULL, 0, text, sizeof text, &len))
        return 1;
    size_t n = 0;
    for (size_t i = 0; i < len && n + 2 < sizeof crlf; i++) {
        if (text[i] == '\n')
            crlf[n++] = '\r';
        crlf[n++] = text[i];
    }
    if (s_write(dir, "crlf.id", crlf, n) || s_write(dir, "truncated.id", text, len / 2))
        return 1;
    return 0;
}
