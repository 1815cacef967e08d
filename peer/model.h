/*
 * model.h - one entry of the model registry: a model version, what its
 * server needs (framework, signature, tensors, image preprocessing), where
 * its files are (read-only network storage), where it is served
 * (placement) and who published it; and a site's status for it. Plain
 * values with bounded fields, checked by kvc_model_check, stored as
 * kvc.registry.Model / SiteStatus (proto/registry.proto).
 *
 * Everything here comes from a user or the network: every decoder bounds
 * sizes and every field is validated before it is used.
 */
#ifndef KVC_MODEL_H
#define KVC_MODEL_H

#include "base.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_MODEL_NAME_MAX 64     /* [a-z0-9][a-z0-9-]{0,62} + NUL */
#define KVC_MODEL_TENSOR_NAME_MAX 64
#define KVC_MODEL_TENSORS_MAX 16  /* inputs, and outputs */
#define KVC_MODEL_DIMS_MAX 8
#define KVC_MODEL_STORAGE_MAX 512
#define KVC_MODEL_PLACEMENT_MAX 32
#define KVC_MODEL_LABELS_MAX 16
#define KVC_MODEL_WORD_MAX 72     /* a placement ("region:" + name) or label */
#define KVC_MODEL_IMAGE_MAX 256   /* container image reference */
#define KVC_MODEL_ERROR_MAX 256
#define KVC_MODEL_VERSION_MAX ((uint64_t)1 << 53) /* exact in JSON numbers */
#define KVC_MODEL_REPLICAS_MAX 64
#define KVC_MODEL_RECORD_MAX 8192 /* an encoded Model or SiteStatus */

typedef enum { KVC_FW_TFSERVING = 1, KVC_FW_KSERVE_V2 = 2 } kvc_model_fw_t;

typedef struct {
    char name[KVC_MODEL_TENSOR_NAME_MAX];
    kvc_dtype_t dtype;
    size_t n_dims;
    int64_t dims[KVC_MODEL_DIMS_MAX]; /* -1 = any size */
} kvc_model_tensor_t;

/* Storage URL parts (kvc_model_storage_parse). */
typedef struct {
    char scheme[8];   /* "nfs" or "iscsi" */
    char server[256]; /* host name or IPv4/[IPv6] literal */
    char path[256];   /* nfs: absolute export path; iscsi: "IQN/LUN" */
} kvc_model_storage_t;

typedef struct {
    char name[KVC_MODEL_NAME_MAX];
    uint64_t version; /* 1..KVC_MODEL_VERSION_MAX */
    kvc_model_fw_t framework;
    char signature[KVC_MODEL_TENSOR_NAME_MAX]; /* "" = serving_default */
    size_t n_inputs, n_outputs;
    kvc_model_tensor_t inputs[KVC_MODEL_TENSORS_MAX];
    kvc_model_tensor_t outputs[KVC_MODEL_TENSORS_MAX];
    char preprocess[512]; /* proxy/preprocess.h text form; "" = no images */
    char image_input[KVC_MODEL_TENSOR_NAME_MAX];
    char storage[KVC_MODEL_STORAGE_MAX];
    char sha256[65]; /* lower-case hex, or "" when not given */
    size_t n_placement;
    char placement[KVC_MODEL_PLACEMENT_MAX][KVC_MODEL_WORD_MAX]; /* none = "all" */
    size_t n_labels;
    char labels[KVC_MODEL_LABELS_MAX][KVC_MODEL_WORD_MAX];
    char published_by[160];
    uint64_t published_ms;
    char image[KVC_MODEL_IMAGE_MAX]; /* "" = the framework's default image */
    uint32_t replicas;               /* 1..KVC_MODEL_REPLICAS_MAX */
} kvc_model_t;

typedef struct {
    char site[64];
    char model[KVC_MODEL_NAME_MAX];
    uint64_t version;
    int applied;
    uint32_t desired_replicas, ready_replicas;
    char error[KVC_MODEL_ERROR_MAX];
    uint64_t updated_ms;
    char server_version[32];
    char coordinator[160];
} kvc_model_status_t;

/* Fills m with the defaults: framework tfserving, 1 replica, rest empty. */
void kvc_model_init(kvc_model_t *m);

/* Checks every field; KVC_EINVAL with err naming the field and the rule. */
int kvc_model_check(const kvc_model_t *m, kvc_err_t *err);
/* A name matches [a-z0-9][a-z0-9-]{0,62}. */
int kvc_model_name_ok(const char *name);

const char *kvc_model_fw_name(kvc_model_fw_t fw); /* "tfserving", "kserve-v2" */
int kvc_model_fw_parse(const char *s, kvc_model_fw_t *out);

/* Parses "nfs://server/export/path" (absolute path, no "..", no NUL or
 * control characters) or "iscsi://server[:port]/IQN/LUN". */
int kvc_model_storage_parse(const char *url, kvc_model_storage_t *out, kvc_err_t *err);

/* Parses a tensor spec NAME:DTYPE:SHAPE, SHAPE as "1,224,224,3" or
 * "-1,10" or "" (scalar); DTYPE as TF Serving (DT_FLOAT), KServe (FP32) or
 * plain (float32) names. */
int kvc_model_tensor_parse(const char *spec, kvc_model_tensor_t *out, kvc_err_t *err);

/* 1 when m is placed on site (in region): no placement, "all",
 * "site:SITE" or a bare SITE, or "region:REGION". */
int kvc_model_placed(const kvc_model_t *m, const char *site, const char *region);

/* Registry keys, within the registry kv's namespaces (kv.h): models in
 * KVC_MODEL_NS ('m'), NAME "\0" be64(VERSION); site status in
 * KVC_MODEL_STATUS_NS ('s'), SITE "\0" NAME "\0" be64(VERSION). Return the
 * length written, or 0 on a bad name or a small buffer (KVC_MODEL_KEY_MAX
 * always suffices). */
#define KVC_MODEL_NS 'm'
#define KVC_MODEL_STATUS_NS 's'
#define KVC_MODEL_KEY_MAX (64 + 1 + 64 + 1 + 8)
size_t kvc_model_key(const char *name, uint64_t version, uint8_t *out, size_t cap);
size_t kvc_model_status_key(const char *site, const char *name, uint64_t version, uint8_t *out,
                            size_t cap);
/* Splits a model key; KVC_EPARSE when it is not one. */
int kvc_model_key_parse(const uint8_t *key, size_t len, char *name, size_t name_cap,
                        uint64_t *version);

/* Encodes m (checked first) as kvc.registry.Model into buf; *len set.
 * KVC_ERANGE when cap is too small. */
int kvc_model_encode(const kvc_model_t *m, uint8_t *buf, size_t cap, size_t *len);
/* Decodes and checks; KVC_EPARSE (err says why) on anything else. */
int kvc_model_decode(const uint8_t *buf, size_t len, kvc_model_t *m, kvc_err_t *err);

int kvc_model_status_encode(const kvc_model_status_t *s, uint8_t *buf, size_t cap, size_t *len);
int kvc_model_status_decode(const uint8_t *buf, size_t len, kvc_model_status_t *s,
                            kvc_err_t *err);

/* Reads a model from a YAML file (at most 64 KiB): the keys name, version,
 * framework, signature, inputs/outputs (lists of {name, dtype, shape}),
 * preprocess (a string, or a map of size/layout/scale/mean/std/channels),
 * image_input, storage, sha256, placement, labels, image, replicas.
 * Unknown keys are errors. Not checked: call kvc_model_check. */
int kvc_model_load_yaml(const char *path, kvc_model_t *m, kvc_err_t *err);
/* The same from text[0..len) (at most 64 KiB). */
int kvc_model_load_yaml_text(const char *text, size_t len, kvc_model_t *m, kvc_err_t *err);

/* The version a model server reports serving, from the proxy's answer to
 * GET /v1/models/NAME (TF Serving: the highest AVAILABLE version of
 * model_version_status) or GET /v2/models/NAME (KServe v2: the highest of
 * "versions"). KVC_ENOENT when it reports none, KVC_EPARSE (err says
 * where) for anything that is not such JSON. */
int kvc_model_served_version_parse(const char *body, size_t len, uint64_t *version,
                                   kvc_err_t *err);

#endif
