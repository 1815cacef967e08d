/*
 * models_ctl.h - the control commands over the model registry
 * (registry.h): "models-publish", "models-list", "models-show",
 * "models-retire", "models-status". Replies carry encoded
 * kvc.registry.Model / SiteStatus records (control.proto).
 */
#ifndef KVC_MODELS_CTL_H
#define KVC_MODELS_CTL_H

#include "ctl_table.h"
#include "registry.h"

#define KVC_MODELS_SITES_MAX 1024

typedef struct {
    const kvc_kv_t *kv;  /* the registry */
    const char *self_id; /* who publishes */
    const char *site;    /* our site */
    /* The region of a site ("" when unknown), from membership. */
    const char *(*region_of)(void *arg, const char *site);
    /* Every site membership knows (ours included) into out[0..cap). */
    size_t (*sites)(void *arg, char (*out)[64], size_t cap);
    void *arg;
} kvc_models_ctl_t;

int kvc_models_ctl_publish(const kvc_models_ctl_t *mc, const Kvc__Ctl__Request *req,
                           kvc_ctl_ctx_t *ctx);
/* [site]: every version (placed on site), by name, newest first. */
int kvc_models_ctl_list(const kvc_models_ctl_t *mc, const Kvc__Ctl__Request *req,
                        kvc_ctl_ctx_t *ctx);
/* name [version]: one version (the newest when version is absent or 0). */
int kvc_models_ctl_show(const kvc_models_ctl_t *mc, const Kvc__Ctl__Request *req,
                        kvc_ctl_ctx_t *ctx);
int kvc_models_ctl_retire(const kvc_models_ctl_t *mc, const Kvc__Ctl__Request *req,
                          kvc_ctl_ctx_t *ctx);
/* name: its versions, every site's status for them and the sites it is
 * placed on. */
int kvc_models_ctl_status(const kvc_models_ctl_t *mc, const Kvc__Ctl__Request *req,
                          kvc_ctl_ctx_t *ctx);

#endif
