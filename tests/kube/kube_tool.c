/*
 * kube_tool.c - drives peer/kube.c from a shell test (test_kubectl_standin.sh),
 * so that the real kubectl can be asked about what our client did.
 *
 *   kube_tool KUBECONFIG create SITE TERM NODE   prints the new token's id
 *   kube_tool KUBECONFIG wait-jws ID SECRET      waits (10 s) for cluster-info's
 *                                                JWS of the token and verifies it
 *   kube_tool KUBECONFIG create-secret           as create, and prints "id secret"
 *   kube_tool KUBECONFIG delete ID
 *   kube_tool KUBECONFIG node-exists NAME        prints 1 or 0
 *
 * A test tool: it prints a token secret only where asked (create-secret).
 * Exit 0 on success, 1 with one line on stderr otherwise.
 */
#include "base.h"
#include "clock.h"
#include "kube.h"

#include <stdio.h>
#include <string.h>

/* Prints the error and returns 1. */
static int s_fail(const kvc_err_t *err, int rc)
{
    fprintf(stderr, "kube_tool: %s\n", err->msg[0] ? err->msg : kvc_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(
            stderr,
            "usage: kube_tool KUBECONFIG create|create-secret|wait-jws|delete|node-exists ...\n");
        return 2;
    }
    kvc_err_t err = {0};
    kvc_kubeconfig_t cfg;
    int rc = kvc_kubeconfig_load(argv[1], &cfg, &err);
    if (rc)
        return s_fail(&err, rc);
    kvc_kube_t *kube = kvc_kube_new(&cfg, NULL, &err);
    kvc_kubeconfig_free(&cfg);
    if (!kube)
        return s_fail(&err, KVC_EIO);
    int ret = 0;
    const char *cmd = argv[2];
    if ((strcmp(cmd, "create") == 0 || strcmp(cmd, "create-secret") == 0) && argc == 6) {
        int64_t term = 0;
        if (kvc_parse_i64(argv[4], 0, INT64_MAX, &term) != 0) {
            fprintf(stderr, "kube_tool: TERM must be a number\n");
            ret = 2;
        } else {
            kvc_kube_token_opts_t o = {.site = argv[3], .term = (uint64_t)term, .node = argv[5]};
            kvc_kube_token_t *tok = NULL;
            rc = kvc_kube_bootstrap_token_create(kube, &o, &tok, &err);
            if (rc)
                ret = s_fail(&err, rc);
            else if (cmd[6] == '-')
                printf("%s %s\n", tok->id, tok->secret);
            else
                printf("%s\n", tok->id);
            kvc_kube_token_destroy(&tok);
        }
    } else if (strcmp(cmd, "wait-jws") == 0 && argc == 5) {
        rc = kvc_kube_wait_jws(kube, argv[3], (int64_t)kvc_clock_mono_ms() + 10000, &err);
        char *jws = NULL, *kc = NULL;
        if (rc == 0) {
            rc = kvc_kube_cluster_info_has_jws(kube, argv[3], &jws, &kc, &err);
            if (rc == 1)
                rc = kvc_kube_jws_verify(jws, kc, strlen(kc), argv[3], argv[4]);
            else if (rc == 0)
                rc = kvc_err_set(&err, KVC_ENOENT, "the JWS went away");
            if (rc && !err.msg[0])
                kvc_err_set(&err, rc, "the JWS does not verify: %s", kvc_strerror(rc));
        }
        kvc_free(jws);
        kvc_free(kc);
        if (rc)
            ret = s_fail(&err, rc);
    } else if (strcmp(cmd, "delete") == 0 && argc == 4) {
        rc = kvc_kube_bootstrap_token_delete(kube, argv[3], &err);
        if (rc)
            ret = s_fail(&err, rc);
    } else if (strcmp(cmd, "node-exists") == 0 && argc == 4) {
        rc = kvc_kube_node_exists(kube, argv[3], &err);
        if (rc < 0)
            ret = s_fail(&err, rc);
        else
            printf("%d\n", rc);
    } else {
        fprintf(stderr, "kube_tool: unknown command or wrong arguments\n");
        ret = 2;
    }
    kvc_kube_destroy(&kube);
    return ret;
}
