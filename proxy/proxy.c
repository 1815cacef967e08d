/*
 * proxy.c - placeholder until the inference proxy's handler lands: a peer
 * configured with proxy.backends refuses to start with a clear message
 * rather than pretending to serve models.
 */
#include "proxy.h"

kvc_proxy_t *kvc_proxy_new(const kvc_proxy_opts_t *opts, kvc_err_t *err)
{
    kvc_err_set(err, KVC_EUNAVAIL, "the inference proxy is not built into this version yet");
    return NULL;
}

void kvc_proxy_destroy(kvc_proxy_t **self_p)
{
    if (self_p)
        *self_p = NULL;
}

void kvc_proxy_handle(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp)
{
    kvc_http_error(resp, 503, "the inference proxy is not built into this version yet");
}

int kvc_proxy_http_status(int grpc_code)
{
    return grpc_code == 0 ? 200 : 500;
}
