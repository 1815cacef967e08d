/*
 * config.h - kvc-peer's configuration, read from YAML (libyaml).
 *
 * Strict by design: an unknown key, a wrong type or an invalid value is an
 * error that names FILE:LINE:COL and the dotted key, and the peer refuses
 * to start. Every field has a documented default (README, "Configuration").
 */
#ifndef KVC_CONFIG_H
#define KVC_CONFIG_H

#include "base.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_NAME_MAX 64      /* site, name, region: [a-z0-9-]{1,63} */
#define KVC_PATH_MAX 1024
#define KVC_ENDPOINT_MAX 256
#define KVC_MAX_ROLES 8
/* A peer config without peer.roles, and kvc cert issue without --roles: a
 * gateway that votes in its site's coordinator election. */
#define KVC_DEFAULT_ROLES "gateway,voter"
#define KVC_MAX_SEEDS 64
#define KVC_MAX_REVOKED 256
#define KVC_MAX_BACKENDS 16
#define KVC_CONFIG_MAX_BYTES (1024 * 1024)           /* largest config file */
#define KVC_CONFIG_DEFAULT_MAX_BODY (64ull << 20)    /* http.max_body default */
#define KVC_CONFIG_DEFAULT_MAX_MESSAGE (64ull << 20) /* proxy.max_message default */
#define KVC_CONFIG_DEFAULT_IMAGE_MEMORY (256ull << 20) /* proxy.image_memory default */

typedef enum { KVC_LOG_DEBUG, KVC_LOG_INFO, KVC_LOG_WARN, KVC_LOG_ERROR } kvc_log_level_t;

typedef enum { KVC_PROFILE_LAN, KVC_PROFILE_WAN } kvc_profile_t;

/* A seed: a peer's endpoint and its Curve25519 public key (CurveZMQ needs
 * the server's key before it connects). */
typedef struct {
    char endpoint[KVC_ENDPOINT_MAX];
    uint8_t public_key[32];
} kvc_seed_t;

/* Optional overrides of the membership timing profile; 0 means "use the
 * profile's value". */
typedef struct {
    uint32_t probe_interval_ms;
    uint32_t probe_timeout_ms;
    uint32_t suspicion_mult;
    uint32_t indirect_probes;
    uint32_t retransmit_mult;
    uint32_t pushpull_interval_ms;
    uint32_t reap_after_s;
    uint32_t gossip_interval_ms;
    uint32_t gossip_nodes;
    uint32_t max_message_bytes;
} kvc_timing_t;

/* Inputs a config may declare for one model server. */
#define KVC_MAX_INPUTS 16

/* One declared input: a tensor name and its dtype ("float32", "FP32" or
 * "DT_FLOAT": proxy/tensor.h kvc_dtype_parse). */
typedef struct {
    char name[KVC_NAME_MAX * 2];
    char dtype[16];
} kvc_backend_input_t;

/* A model server this peer's proxy talks to (issue 4 fills the rest). */
typedef struct {
    char model[KVC_NAME_MAX * 2];
    char grpc[KVC_ENDPOINT_MAX];      /* [http://|https://]host:port of the gRPC API */
    char api[16];                     /* "tfserving" or "kserve" */
    char metrics_url[KVC_ENDPOINT_MAX]; /* Prometheus endpoint, optional */
    char preprocess[256];             /* image spec (proxy/preprocess.h), "" = no images */
    char image_input[KVC_NAME_MAX * 2]; /* input tensor images go to, "" = the only one */
    /* Inputs to serve when the model server gives no metadata (none: such
     * a server's TF Serving REST requests are refused, never guessed at). */
    kvc_backend_input_t inputs[KVC_MAX_INPUTS];
    size_t n_inputs;
} kvc_backend_t;

typedef struct {
    /* peer.* */
    char name[KVC_NAME_MAX];
    char site[KVC_NAME_MAX];
    char region[KVC_NAME_MAX];
    char roles[KVC_MAX_ROLES][KVC_NAME_MAX];
    size_t n_roles;
    char data_dir[KVC_PATH_MAX];
    char credential[KVC_PATH_MAX];   /* path of the peer's credential file */

    /* federation.* */
    char trust[KVC_PATH_MAX];        /* path of the federation's public key */
    char listen[KVC_ENDPOINT_MAX];   /* e.g. tcp://0.0.0.0:7946 */
    char advertise[KVC_ENDPOINT_MAX];/* e.g. tcp://10.0.0.5:7946; "" = listen */
    kvc_seed_t seeds[KVC_MAX_SEEDS];
    size_t n_seeds;
    uint8_t revoked[KVC_MAX_REVOKED][32];
    size_t n_revoked;
    kvc_profile_t profile;
    kvc_timing_t timing;             /* federation.timing.* overrides */

    /* control.* */
    char control_endpoint[KVC_ENDPOINT_MAX]; /* "" = ipc://DATA_DIR/control.sock */

    /* http.* */
    char http_listen[KVC_ENDPOINT_MAX];      /* host:port, "" = disabled */
    uint64_t http_max_body;                   /* bytes */

    /* proxy.* (issue 4) */
    kvc_backend_t backends[KVC_MAX_BACKENDS];
    size_t n_backends;
    uint32_t proxy_timeout_ms;               /* per backend call */
    char proxy_grpc_ca_file[KVC_PATH_MAX];   /* CA bundle for https:// backends, "" = system */
    uint64_t proxy_max_message;              /* largest gRPC message either way, bytes */
    uint64_t proxy_image_memory;             /* bytes all image decodes may hold at once */
    int32_t proxy_cpu; /* CPU for the HTTP loop and ZeroMQ's I/O thread; -1 = not pinned */

    /* kubernetes.* (the join-token broker; used while this peer coordinates) */
    char kube_kubeconfig[KVC_PATH_MAX];     /* "" = this peer mints no tokens */
    char kube_kind[16];                     /* "kubeadm" or "k3s" */
    char kube_api_server[KVC_ENDPOINT_MAX]; /* host:port nodes join; "" = the kubeconfig's */
    char kube_groups[256];                  /* auth-extra-groups; "" = the kind's default */
    uint32_t kube_token_ttl_s;              /* expiration of a new token, < 60 */
    uint32_t join_window_s;                 /* a join request's clock may be this far off */
    uint32_t join_progress_timeout_s;       /* silence after which a token is deleted */

    /* registry.* (the model registry; the coordinator reconciles it) */
    uint64_t store_max_bytes;               /* the LMDB map: writes beyond are refused */
    char registry_namespace[64];            /* Kubernetes namespace of the model servers */
    char registry_grpc[KVC_ENDPOINT_MAX];   /* model server address, {model} replaced */
    uint32_t registry_reconcile_s;          /* a full reconciliation at least this often */
    char registry_tfserving_image[256];     /* "" = the reconciler's default */
    char registry_kserve_image[256];

    /* jobs.* (node setup and cluster creation, run by the coordinator) */
    char jobs_playbooks[KVC_PATH_MAX];      /* folder of node.yml, cluster.yml, callback_plugins */
    char jobs_ansible_playbook[KVC_PATH_MAX]; /* the program ("ansible-playbook": from PATH) */
    char jobs_connection[16];               /* "ssh" or "local" */
    char jobs_ssh_user[64];                 /* the user Ansible logs in as on a node */
    uint32_t jobs_timeout_s;                /* a job running longer is killed */
    /* routing: cross-site routing and failover of inference requests */
    int routing_enabled;                    /* 0: serve only this site's models */
    char routing_forward_listen[KVC_ENDPOINT_MAX];    /* "" = federation.listen's host, port 0 */
    char routing_forward_advertise[KVC_ENDPOINT_MAX]; /* "" = advertise's host, bound port */
    uint32_t routing_capacity;              /* in-flight per model that saturate; 0 = unknown */
    uint32_t routing_hedge_ms;              /* hedge Kvc-Idempotent requests after; 0 = off */
    char routing_arch[KVC_NAME_MAX];        /* "" = uname's */
    uint32_t routing_accel;                 /* a kvc_accel_t (router.h); 0 = none */
    uint32_t routing_accelerator_count;

    /* log.* */
    kvc_log_level_t log_level;
} kvc_config_t;

/* Fills cfg with every documented default. */
void kvc_config_defaults(kvc_config_t *cfg);

/*
 * Parses YAML text (len bytes, need not be NUL-terminated) named `name` in
 * messages, on top of the defaults already in cfg. On error returns a
 * negative code and sets err->msg to "NAME:LINE:COL: key: what is wrong"
 * (one line). cfg may be partly filled after an error.
 */
int kvc_config_parse(kvc_config_t *cfg, const char *name, const char *text, size_t len,
                     kvc_err_t *err);

/* Reads and parses a file (at most 1 MiB), defaults first. Same errors,
 * plus "PATH: cannot read: REASON". */
int kvc_config_load(kvc_config_t *cfg, const char *path, kvc_err_t *err);

/* Fills the derived defaults that depend on other fields (advertise from
 * listen, control endpoint under data_dir). Call after parse/load. */
void kvc_config_finish(kvc_config_t *cfg);

/* Returns "site/name" in buf (size >= 2*KVC_NAME_MAX). */
const char *kvc_config_member_id(const kvc_config_t *cfg, char *buf, size_t size);

/* 1 if s matches [a-z0-9-]{1,63} and does not start or end with '-'. */
int kvc_config_valid_name(const char *s);

/* Parses a 64-character hex Curve25519/Ed25519 key. */
int kvc_config_parse_key(const char *hex, uint8_t key[32]);

#endif
