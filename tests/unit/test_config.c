/*
 * Unit tests of peer/config.c: exact field values of a full file, defaults,
 * every error class with its exact "NAME:LINE:COL: key: what" message, both
 * seed forms, timing overrides, byte sizes, over-long strings, the 1 MiB
 * limit, derived values, allocation failures and the shipped example.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"

#ifndef KVC_SOURCE_DIR
#define KVC_SOURCE_DIR "."
#endif

/* A valid document prefix whose sections can be extended after it. */
#define BASE "peer: {name: a, site: b}\nfederation: {advertise: 'tcp://h:1'}\n"

static const char *const KEY_A = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
static const char *const KEY_B = "8F2A559490E2F1E3B1F0A5B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6";

/* Parses text with defaults first; returns the code. */
static int s_parse(const char *text, kvc_config_t *cfg, kvc_err_t *err)
{
    kvc_config_defaults(cfg);
    memset(err, 0, sizeof *err);
    return kvc_config_parse(cfg, "c.yaml", text, strlen(text), err);
}

/* Asserts that text fails with code and exactly msg. */
static void s_expect(const char *text, int code, const char *msg)
{
    static kvc_config_t cfg;
    kvc_err_t err;
    int rc = s_parse(text, &cfg, &err);
    if (rc != code || strcmp(err.msg, msg))
        print_error("input: %s\nwant %d [%s]\ngot  %d [%s]\n", text, code, msg, rc, err.msg);
    assert_int_equal(rc, code);
    assert_string_equal(err.msg, msg);
    assert_int_equal(err.code, code);
}

/* Decodes a test key. */
static void s_key(const char *hex, uint8_t out[32])
{
    assert_int_equal(kvc_config_parse_key(hex, out), KVC_OK);
}

/* Writes len bytes to a new temporary file; returns its path (static). */
static const char *s_temp_file(const char *data, size_t len)
{
    static char path[64];
    kvc_strlcpy(path, "/tmp/kvc-test-config-XXXXXX", sizeof path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    close(fd);
    return path;
}

static void test_full_file(void **state)
{
    const char *text = "peer:\n"
                       "  name: gw-1\n"
                       "  site: berlin-1\n"
                       "  region: eu-central\n"
                       "  roles: [gateway, builder]\n"
                       "  data_dir: /srv/kvc\n"
                       "  credential: /etc/kvc/id\n"
                       "federation:\n"
                       "  trust: /etc/kvc/federation.pub\n"
                       "  listen: tcp://[::]:7000\n"
                       "  advertise: tcp://gw-1.berlin.example:7000\n"
                       "  seeds:\n"
                       "    - {endpoint: 'tcp://10.0.0.2:7946', key: "
                       "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29}\n"
                       "  revoked: "
                       "[8F2A559490E2F1E3B1F0A5B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6]\n"
                       "  profile: wan\n"
                       "  timing: {probe_interval_ms: 2000, gossip_nodes: 4}\n"
                       "control:\n"
                       "  endpoint: tcp://127.0.0.1:7950\n"
                       "http:\n"
                       "  listen: '[::1]:9000'\n"
                       "  max_body: 512KiB\n"
                       "proxy:\n"
                       "  backends:\n"
                       "    - model: resnet50\n"
                       "      grpc: resnet.models:8500\n"
                       "    - model: bert.v2\n"
                       "      grpc: 10.1.2.3:9000\n"
                       "      api: kserve\n"
                       "      metrics_url: https://bert:8002/metrics\n"
                       "    - model: tls\n"
                       "      grpc: https://models.example:8500\n"
                       "    - model: plain\n"
                       "      grpc: http://[::1]:8500\n"
                       "log:\n"
                       "  level: debug\n";
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    uint8_t ka[32], kb[32];
    assert_non_null(cfg);
    s_key(KEY_A, ka);
    s_key(KEY_B, kb);
    assert_int_equal(s_parse(text, cfg, &err), KVC_OK);
    assert_string_equal(err.msg, "");
    assert_string_equal(cfg->name, "gw-1");
    assert_string_equal(cfg->site, "berlin-1");
    assert_string_equal(cfg->region, "eu-central");
    assert_int_equal(cfg->n_roles, 2);
    assert_string_equal(cfg->roles[0], "gateway");
    assert_string_equal(cfg->roles[1], "builder");
    assert_string_equal(cfg->data_dir, "/srv/kvc");
    assert_string_equal(cfg->credential, "/etc/kvc/id");
    assert_string_equal(cfg->trust, "/etc/kvc/federation.pub");
    assert_string_equal(cfg->listen, "tcp://[::]:7000");
    assert_string_equal(cfg->advertise, "tcp://gw-1.berlin.example:7000");
    assert_int_equal(cfg->n_seeds, 1);
    assert_string_equal(cfg->seeds[0].endpoint, "tcp://10.0.0.2:7946");
    assert_memory_equal(cfg->seeds[0].public_key, ka, 32);
    assert_int_equal(cfg->n_revoked, 1);
    assert_memory_equal(cfg->revoked[0], kb, 32);
    assert_int_equal(cfg->profile, KVC_PROFILE_WAN);
    assert_int_equal(cfg->timing.probe_interval_ms, 2000);
    assert_int_equal(cfg->timing.gossip_nodes, 4);
    assert_int_equal(cfg->timing.probe_timeout_ms, 0);
    assert_string_equal(cfg->control_endpoint, "tcp://127.0.0.1:7950");
    assert_string_equal(cfg->http_listen, "[::1]:9000");
    assert_int_equal(cfg->http_max_body, 512 * 1024);
    assert_int_equal(cfg->n_backends, 4);
    assert_string_equal(cfg->backends[0].model, "resnet50");
    assert_string_equal(cfg->backends[0].grpc, "resnet.models:8500");
    assert_string_equal(cfg->backends[0].api, "tfserving");
    assert_string_equal(cfg->backends[0].metrics_url, "");
    assert_string_equal(cfg->backends[1].model, "bert.v2");
    assert_string_equal(cfg->backends[1].grpc, "10.1.2.3:9000");
    assert_string_equal(cfg->backends[1].api, "kserve");
    assert_string_equal(cfg->backends[1].metrics_url, "https://bert:8002/metrics");
    assert_string_equal(cfg->backends[2].model, "tls");
    assert_string_equal(cfg->backends[2].grpc, "https://models.example:8500");
    assert_string_equal(cfg->backends[3].model, "plain");
    assert_string_equal(cfg->backends[3].grpc, "http://[::1]:8500");
    assert_int_equal(cfg->log_level, KVC_LOG_DEBUG);
    free(cfg);
}

static void test_defaults(void **state)
{
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    assert_non_null(cfg);
    assert_int_equal(s_parse(BASE, cfg, &err), KVC_OK);
    assert_string_equal(cfg->name, "a");
    assert_string_equal(cfg->site, "b");
    assert_string_equal(cfg->region, "default");
    assert_int_equal(cfg->n_roles, 2);
    assert_string_equal(cfg->roles[0], "gateway");
    assert_string_equal(cfg->roles[1], "voter");
    assert_string_equal(cfg->data_dir, "/var/lib/kvc");
    assert_string_equal(cfg->credential, "/var/lib/kvc/identity");
    assert_string_equal(cfg->trust, "/var/lib/kvc/federation.pub");
    assert_string_equal(cfg->listen, "tcp://0.0.0.0:7946");
    assert_string_equal(cfg->advertise, "tcp://h:1");
    assert_int_equal(cfg->n_seeds, 0);
    assert_int_equal(cfg->n_revoked, 0);
    assert_int_equal(cfg->profile, KVC_PROFILE_LAN);
    kvc_timing_t zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&cfg->timing, &zero, sizeof zero);
    assert_string_equal(cfg->control_endpoint, "");
    assert_string_equal(cfg->http_listen, "127.0.0.1:8500");
    assert_int_equal(cfg->http_max_body, 67108864);
    assert_int_equal(cfg->proxy_max_message, 67108864);
    assert_int_equal(cfg->proxy_image_memory, 268435456);
    assert_int_equal(cfg->proxy_cpu, -1);
    assert_int_equal(cfg->n_backends, 0);
    assert_int_equal(cfg->log_level, KVC_LOG_INFO);

    /* Null sections and lists read as empty; "" disables HTTP. */
    assert_int_equal(s_parse(BASE "proxy:\n  backends:\nhttp: {listen: ''}\nlog:\n", cfg, &err),
                     KVC_OK);
    assert_int_equal(cfg->n_backends, 0);
    assert_string_equal(cfg->http_listen, "");
    assert_int_equal(cfg->log_level, KVC_LOG_INFO);

    /* data_dir moves the derived paths; a trailing '/' is dropped. */
    assert_int_equal(
        s_parse("peer: {name: a, site: b, data_dir: /srv/kvc/}\nfederation: {advertise: "
                "'tcp://h:1'}\n",
                cfg, &err),
        KVC_OK);
    assert_string_equal(cfg->data_dir, "/srv/kvc");
    assert_string_equal(cfg->credential, "/srv/kvc/identity");
    assert_string_equal(cfg->trust, "/srv/kvc/federation.pub");
    free(cfg);
}

/* kubernetes.*: the broker's settings, their defaults and their errors. */
static void test_kubernetes(void **state)
{
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    assert_non_null(cfg);
    assert_int_equal(s_parse(BASE, cfg, &err), KVC_OK);
    assert_string_equal(cfg->kube_kubeconfig, "");
    assert_string_equal(cfg->kube_kind, "kubeadm");
    assert_int_equal(cfg->kube_token_ttl_s, 50);
    assert_int_equal(cfg->join_window_s, 120);
    assert_int_equal(cfg->join_progress_timeout_s, 45);
    assert_int_equal(s_parse(BASE "kubernetes:\n  kubeconfig: /etc/kvc/admin.conf\n  kind: k3s\n"
                                  "  api_server: 10.0.0.1:6443\n  groups: system:bootstrappers:x\n"
                                  "  token_ttl_s: 30\n  join_window_s: 60\n"
                                  "  progress_timeout_s: 15\n",
                             cfg, &err),
                     KVC_OK);
    assert_string_equal(cfg->kube_kubeconfig, "/etc/kvc/admin.conf");
    assert_string_equal(cfg->kube_kind, "k3s");
    assert_string_equal(cfg->kube_api_server, "10.0.0.1:6443");
    assert_string_equal(cfg->kube_groups, "system:bootstrappers:x");
    assert_int_equal(cfg->kube_token_ttl_s, 30);
    assert_int_equal(cfg->join_window_s, 60);
    assert_int_equal(cfg->join_progress_timeout_s, 15);
    free(cfg);
    s_expect(BASE "kubernetes: {kind: rke}\n", KVC_EINVAL,
             "c.yaml:3:20: kubernetes.kind: \"rke\" must be one of kubeadm, k3s");
    s_expect(BASE "kubernetes: {token_ttl_s: 60}\n", KVC_ERANGE,
             "c.yaml:3:27: kubernetes.token_ttl_s: \"60\" is out of range (10..59)");
    s_expect(BASE "kubernetes: {api_server: '0.0.0.0:6443'}\n", KVC_EINVAL,
             "c.yaml:3:26: kubernetes.api_server: \"0.0.0.0:6443\" is a wildcard address; give the "
             "address nodes reach");
    s_expect(BASE "kubernetes: {groups: 'a b'}\n", KVC_EINVAL,
             "c.yaml:3:22: kubernetes.groups: \"a b\" must be group names [a-z0-9:.-] separated by "
             "commas");
    s_expect(BASE "kubernetes: {kubeconfig: relative}\n", KVC_EINVAL,
             "c.yaml:3:26: kubernetes.kubeconfig: \"relative\" must be an absolute path");
}

/* Every class of error, with its exact message. */
static void test_errors(void **state)
{
    /* Missing required keys: at the mapping that lacks them, 1:1 if none. */
    s_expect("", KVC_EINVAL, "c.yaml:1:1: peer.name: is required");
    s_expect("# only a comment\n", KVC_EINVAL, "c.yaml:1:1: peer.name: is required");
    s_expect("log: {level: info}\n", KVC_EINVAL, "c.yaml:1:1: peer.name: is required");
    s_expect("peer:\n  name: a\n", KVC_EINVAL, "c.yaml:2:3: peer.site: is required");
    s_expect("peer:\n", KVC_EINVAL, "c.yaml:1:6: peer.name: is required");
    /* Unknown and duplicate keys point at the key. */
    s_expect(BASE "bogus: 1\n", KVC_EINVAL, "c.yaml:3:1: bogus: unknown key");
    s_expect("peer: {name: a, site: b, nmae: c}", KVC_EINVAL,
             "c.yaml:1:26: peer.nmae: unknown key");
    s_expect("peer: {name: a, site: b, name: c}", KVC_EINVAL,
             "c.yaml:1:26: peer.name: duplicate key");
    s_expect(BASE "federation: {}\n", KVC_EINVAL,
             "c.yaml:3:1: federation: duplicate key");
    /* Wrong types point at the value. */
    s_expect("peer: {name: [a], site: b}", KVC_EINVAL,
             "c.yaml:1:14: peer.name: expected a scalar, found a sequence");
    s_expect("peer: 5", KVC_EINVAL, "c.yaml:1:7: peer: expected a mapping, found a scalar");
    s_expect("hello", KVC_EINVAL, "c.yaml:1:1: (document): expected a mapping, found a scalar");
    s_expect("- a", KVC_EINVAL, "c.yaml:1:1: (document): expected a mapping, found a sequence");
    s_expect("? [a]\n: b", KVC_EINVAL, "c.yaml:1:3: (document): expected a key, found a sequence");
    s_expect("peer: {name: a, site: b, roles: {x: 1}}", KVC_EINVAL,
             "c.yaml:1:33: peer.roles: expected a sequence, found a mapping");
    /* Nesting deeper than the schema is refused at the first extra level. */
    s_expect("peer: {name: [[[[[[[[[[a]]]]]]]]]], site: b}", KVC_EINVAL,
             "c.yaml:1:14: peer.name: expected a scalar, found a sequence");
    /* Invalid values. */
    s_expect("peer: {name: -a, site: b}", KVC_EINVAL,
             "c.yaml:1:14: peer.name: \"-a\" must match [a-z0-9-]{1,63} and not start or end "
             "with '-'");
    s_expect("peer: {name: \"a\\x01\", site: b}", KVC_EINVAL,
             "c.yaml:1:14: peer.name: \"a\\x01\" contains a control character");
    s_expect("peer: {name: a, site: b, data_dir: var/kvc}", KVC_EINVAL,
             "c.yaml:1:36: peer.data_dir: \"var/kvc\" must be an absolute path");
    s_expect("peer: {name: a, site: b, roles: [x, y, x]}", KVC_EINVAL,
             "c.yaml:1:40: peer.roles[2]: \"x\" is listed twice");
    s_expect("peer: {name: a, site: b, roles: [a, b, c, d, e, f, g, h, i]}", KVC_ERANGE,
             "c.yaml:1:58: peer.roles[8]: too many entries (at most 8)");
    s_expect("peer: {name: a, site: b, roles: []}", KVC_EINVAL,
             "c.yaml:1:33: peer.roles: must list at least one role");
    s_expect(BASE "log: {level: loud}\n", KVC_EINVAL,
             "c.yaml:3:14: log.level: \"loud\" must be one of debug, info, warn, error");
    s_expect("peer: {name: a, site: b}\nfederation: {advertise: 'tcp://h:1', profile: LAN}",
             KVC_EINVAL, "c.yaml:2:47: federation.profile: \"LAN\" must be one of lan, wan");
    /* Aliases, anchors, tags. */
    s_expect("peer: {name: a, site: *s}", KVC_EINVAL,
             "c.yaml:1:23: peer.site: aliases are not supported");
    s_expect("peer: &p {name: a, site: b}", KVC_EINVAL,
             "c.yaml:1:7: peer: anchors are not supported");
    s_expect("peer: {name: !!str a, site: b}", KVC_EINVAL,
             "c.yaml:1:14: peer.name: tags are not supported");
    s_expect("%TAG ! tag:x,2000:\n---\npeer: {}\n", KVC_EINVAL,
             "c.yaml:1:1: (document): tags are not supported");
    /* One document only. */
    s_expect(BASE "---\nlog: {}\n", KVC_EINVAL,
             "c.yaml:3:1: (document): multiple documents are not supported");
    /* libyaml's own errors, in the same form. */
    s_expect("peer: {name: a, site: b\n", KVC_EPARSE,
             "c.yaml:2:1: yaml: did not find expected ',' or '}' (while parsing a flow mapping "
             "started at 1:7)");
    s_expect("peer:\n\tname: a", KVC_EPARSE,
             "c.yaml:2:1: yaml: found character that cannot start any token (while scanning for "
             "the next token started at 2:1)");
    s_expect("peer:\n  name: \xff", KVC_EPARSE, "c.yaml:2:9: yaml: invalid leading UTF-8 octet");
    s_expect("peer:\n  name: \xc3\xbc\xff", KVC_EPARSE,
             "c.yaml:2:10: yaml: invalid leading UTF-8 octet"); /* columns count characters */
    s_expect("peer:\n  name: a\x01", KVC_EPARSE,
             "c.yaml:2:10: yaml: control characters are not allowed");
    /* Advertise is required with a wildcard listen, at the listen key. */
    s_expect("peer: {name: a, site: b}\nfederation:\n  listen: tcp://0.0.0.0:7946\n", KVC_EINVAL,
             "c.yaml:3:3: federation.advertise: required when federation.listen is a wildcard "
             "address");
    s_expect("peer: {name: a, site: b}\nfederation: {listen: 'tcp://*:1'}\n", KVC_EINVAL,
             "c.yaml:2:14: federation.advertise: required when federation.listen is a wildcard "
             "address");
    s_expect("peer: {name: a, site: b}\nfederation: {listen: 'tcp://[::]:1'}\n", KVC_EINVAL,
             "c.yaml:2:14: federation.advertise: required when federation.listen is a wildcard "
             "address");
    /* ... and with the default (wildcard) listen: at federation, or the top. */
    s_expect("peer: {name: a, site: b}\nfederation: {profile: wan}\n", KVC_EINVAL,
             "c.yaml:2:13: federation.advertise: required when federation.listen is a wildcard "
             "address");
    s_expect("peer: {name: a, site: b}\n", KVC_EINVAL,
             "c.yaml:1:1: federation.advertise: required when federation.listen is a wildcard "
             "address");
    s_expect("peer: {name: a, site: b}\nfederation: {advertise: 'tcp://0.0.0.0:1'}\n", KVC_EINVAL,
             "c.yaml:2:25: federation.advertise: \"tcp://0.0.0.0:1\" cannot use a wildcard host");
}

/* Endpoint, host:port, URL and key validation. */
static void test_endpoint_errors(void **state)
{
#define FED "peer: {name: a, site: b}\nfederation:\n  advertise: tcp://h:1\n"
    s_expect(FED "  listen: udp://x:1\n", KVC_EINVAL,
             "c.yaml:4:11: federation.listen: \"udp://x:1\" must be tcp://HOST:PORT or "
             "ipc:///PATH");
    s_expect(FED "  listen: tcp://h:65536\n", KVC_EINVAL,
             "c.yaml:4:11: federation.listen: \"tcp://h:65536\" has an invalid port (0..65535)");
    s_expect(FED "  listen: tcp://h\n", KVC_EINVAL,
             "c.yaml:4:11: federation.listen: \"tcp://h\" needs a port (HOST:PORT)");
    s_expect(FED "  listen: tcp://:5\n", KVC_EINVAL,
             "c.yaml:4:11: federation.listen: \"tcp://:5\" needs a host (HOST:PORT)");
    s_expect(FED "  listen: tcp://::1:5\n", KVC_EINVAL,
             "c.yaml:4:11: federation.listen: \"tcp://::1:5\" must write an IPv6 address in "
             "brackets ([::1]:PORT)");
    s_expect(FED "  listen: tcp://[::g]:5\n", KVC_EINVAL,
             "c.yaml:4:11: federation.listen: \"tcp://[::g]:5\" has an invalid IPv6 address");
    s_expect(FED "  listen: tcp://300.1.1.1:5\n", KVC_EINVAL,
             "c.yaml:4:11: federation.listen: \"tcp://300.1.1.1:5\" has an invalid IPv4 address");
    s_expect(FED "  listen: tcp://bad_host:5\n", KVC_EINVAL,
             "c.yaml:4:11: federation.listen: \"tcp://bad_host:5\" has an invalid host name");
    s_expect(FED "  listen: ipc://rel.sock\n", KVC_EINVAL,
             "c.yaml:4:11: federation.listen: \"ipc://rel.sock\" must name an absolute file path "
             "(ipc:///PATH)");
    {
        char text[512];
        char path[109];
        memset(path, 'p', sizeof path - 1);
        path[sizeof path - 1] = '\0';
        path[0] = '/';
        snprintf(text, sizeof text, FED "  listen: ipc://%s\n", path);
        s_expect(text, KVC_EINVAL,
                 "c.yaml:4:11: federation.listen: \"ipc:///ppppppppppppppppppppppppppppppppp...\" "
                 "has an ipc path longer than 107 bytes");
        path[107] = '\0'; /* exactly 107 bytes is fine */
        snprintf(text, sizeof text, FED "  listen: ipc://%s\n", path);
        kvc_config_t *cfg = malloc(sizeof *cfg);
        kvc_err_t err;
        assert_int_equal(s_parse(text, cfg, &err), KVC_OK);
        free(cfg);
    }
    s_expect(FED "  seeds: ['abc@tcp://h:1']\n", KVC_EINVAL,
             "c.yaml:4:11: federation.seeds[0]: \"abc@tcp://h:1\" does not start with a "
             "64-character hex key");
    s_expect(FED "  seeds: [tcp://h:1]\n", KVC_EINVAL,
             "c.yaml:4:11: federation.seeds[0]: \"tcp://h:1\" must be KEY@tcp://HOST:PORT or a "
             "mapping");
    s_expect(FED "  seeds: [[a]]\n", KVC_EINVAL,
             "c.yaml:4:11: federation.seeds[0]: expected a mapping or a string, found a "
             "sequence");
    s_expect(FED "  seeds:\n    - endpoint: tcp://0.0.0.0:1\n", KVC_EINVAL,
             "c.yaml:5:17: federation.seeds[0].endpoint: \"tcp://0.0.0.0:1\" cannot use a "
             "wildcard host");
    s_expect(FED "  seeds:\n    - endpoint: tcp://h:0\n", KVC_EINVAL,
             "c.yaml:5:17: federation.seeds[0].endpoint: \"tcp://h:0\" has an invalid port "
             "(1..65535)");
    s_expect(FED "  seeds:\n    - endpoint: ipc:///x\n", KVC_EINVAL,
             "c.yaml:5:17: federation.seeds[0].endpoint: \"ipc:///x\" must be tcp://HOST:PORT");
    s_expect(FED "  seeds:\n    - endpoint: tcp://h:1\n", KVC_EINVAL,
             "c.yaml:5:7: federation.seeds[0].key: is required");
    s_expect(FED "  seeds:\n    - {endpoint: 'tcp://h:1', key: abc}\n", KVC_EINVAL,
             "c.yaml:5:36: federation.seeds[0].key: \"abc\" is not a 64-character hex key");
    s_expect(FED
             "  seeds:\n"
             "    - 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29@tcp://h:1\n"
             "    - 3B6A27BCCEB6A42D62A3A8D02A6F0D73653215771DE243A63AC048A18B59DA29@tcp://i:1\n",
             KVC_EINVAL, "c.yaml:6:7: federation.seeds[1]: duplicate seed key (also in item 0)");
    s_expect(FED "  revoked: [3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da2]\n",
             KVC_EINVAL,
             "c.yaml:4:13: federation.revoked[0]: \"3b6a27bcceb6a42d62a3a8d02a6f0d7365321577...\""
             " is not a 64-character hex key");
    s_expect(FED "  revoked: [3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da2x]\n",
             KVC_EINVAL,
             "c.yaml:4:13: federation.revoked[0]: \"3b6a27bcceb6a42d62a3a8d02a6f0d7365321577...\""
             " is not a 64-character hex key");
    s_expect(FED "  revoked:\n"
                 "    - 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n"
                 "    - 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n",
             KVC_EINVAL,
             "c.yaml:6:7: federation.revoked[1]: \"3b6a27bcceb6a42d62a3a8d02a6f0d7365321577...\""
             " is listed twice");
#undef FED
    s_expect(BASE "control: {endpoint: 'tcp://0.0.0.0:5'}\n", KVC_EINVAL,
             "c.yaml:3:21: control.endpoint: \"tcp://0.0.0.0:5\" must be local: ipc:///PATH or "
             "tcp://127.0.0.1:PORT");
    s_expect(BASE "control: {endpoint: 'tcp://localhost:5'}\n", KVC_EINVAL,
             "c.yaml:3:21: control.endpoint: \"tcp://localhost:5\" must be local: ipc:///PATH or "
             "tcp://127.0.0.1:PORT");
    s_expect(BASE "control: {endpoint: 'tcp://127.0.0.1:0'}\n", KVC_EINVAL,
             "c.yaml:3:21: control.endpoint: \"tcp://127.0.0.1:0\" has an invalid port "
             "(1..65535)");
    s_expect(BASE "http: {listen: 8500}\n", KVC_EINVAL,
             "c.yaml:3:16: http.listen: \"8500\" needs a port (HOST:PORT)");
    s_expect(BASE "http: {listen: 'localhost:99999'}\n", KVC_EINVAL,
             "c.yaml:3:16: http.listen: \"localhost:99999\" has an invalid port (0..65535)");
    s_expect(BASE "proxy:\n  backends:\n    - model: m\n", KVC_EINVAL,
             "c.yaml:5:7: proxy.backends[0].grpc: is required");
    s_expect(BASE "proxy:\n  backends:\n    - {model: -m, grpc: 'h:1'}\n", KVC_EINVAL,
             "c.yaml:5:15: proxy.backends[0].model: \"-m\" must match "
             "[A-Za-z0-9][A-Za-z0-9._-]*");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: '0.0.0.0:1'}\n", KVC_EINVAL,
             "c.yaml:5:24: proxy.backends[0].grpc: \"0.0.0.0:1\" cannot use a wildcard host");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'https://0.0.0.0:1'}\n", KVC_EINVAL,
             "c.yaml:5:24: proxy.backends[0].grpc: \"https://0.0.0.0:1\" cannot use a wildcard "
             "host");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'https://h'}\n", KVC_EINVAL,
             "c.yaml:5:24: proxy.backends[0].grpc: \"https://h\" needs a port (HOST:PORT)");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'https://h:1/v1'}\n", KVC_EINVAL,
             "c.yaml:5:24: proxy.backends[0].grpc: \"https://h:1/v1\" has an invalid port "
             "(1..65535)");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'grpcs://h:1'}\n", KVC_EINVAL,
             "c.yaml:5:24: proxy.backends[0].grpc: \"grpcs://h:1\" must be HOST:PORT, "
             "http://HOST:PORT or https://HOST:PORT");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'h:1', api: grpc}\n", KVC_EINVAL,
             "c.yaml:5:36: proxy.backends[0].api: \"grpc\" must be one of tfserving, kserve");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'h:1', metrics_url: 'ftp://x'}\n",
             KVC_EINVAL,
             "c.yaml:5:44: proxy.backends[0].metrics_url: \"ftp://x\" must be an http:// or "
             "https:// URL");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'h:1'}\n"
                  "    - {model: m, grpc: 'h:2'}\n",
             KVC_EINVAL, "c.yaml:6:7: proxy.backends[1]: model \"m\" is listed twice");
    s_expect(BASE "proxy:\n  backends: [x]\n", KVC_EINVAL,
             "c.yaml:4:14: proxy.backends[0]: expected a mapping, found a scalar");
    {
        char text[2048];
        size_t o = (size_t)snprintf(text, sizeof text, "%s", BASE "proxy:\n  backends:\n");
        for (int i = 0; i <= KVC_MAX_BACKENDS; i++)
            o +=
                (size_t)snprintf(text + o, sizeof text - o, "    - {model: m%d, grpc: 'h:1'}\n", i);
        s_expect(text, KVC_ERANGE,
                 "c.yaml:21:7: proxy.backends[16]: too many entries (at most 16)");
    }
}

/* Timing overrides: exact values, ranges, 0 = profile default. */
static void test_timing(void **state)
{
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    assert_int_equal(s_parse("peer: {name: a, site: b}\n"
                             "federation:\n"
                             "  advertise: tcp://h:1\n"
                             "  timing:\n"
                             "    probe_interval_ms: 100\n"
                             "    probe_timeout_ms: 60000\n"
                             "    suspicion_mult: 5\n"
                             "    indirect_probes: 16\n"
                             "    retransmit_mult: 1\n"
                             "    pushpull_interval_ms: 3600000\n"
                             "    reap_after_s: 604800\n"
                             "    gossip_interval_ms: 0\n"
                             "    gossip_nodes: 64\n"
                             "    max_message_bytes: 1024\n",
                             cfg, &err),
                     KVC_OK);
    assert_int_equal(cfg->timing.probe_interval_ms, 100);
    assert_int_equal(cfg->timing.probe_timeout_ms, 60000);
    assert_int_equal(cfg->timing.suspicion_mult, 5);
    assert_int_equal(cfg->timing.indirect_probes, 16);
    assert_int_equal(cfg->timing.retransmit_mult, 1);
    assert_int_equal(cfg->timing.pushpull_interval_ms, 3600000);
    assert_int_equal(cfg->timing.reap_after_s, 604800);
    assert_int_equal(cfg->timing.gossip_interval_ms, 0);
    assert_int_equal(cfg->timing.gossip_nodes, 64);
    assert_int_equal(cfg->timing.max_message_bytes, 1024);
    free(cfg);

#define TIM "peer: {name: a, site: b}\nfederation:\n  advertise: tcp://h:1\n  timing:\n"
    s_expect(TIM "    probe_interval_ms: 99\n", KVC_ERANGE,
             "c.yaml:5:24: federation.timing.probe_interval_ms: \"99\" is out of range "
             "(100..60000, or 0 for the profile default)");
    s_expect(TIM "    gossip_nodes: 65\n", KVC_ERANGE,
             "c.yaml:5:19: federation.timing.gossip_nodes: \"65\" is out of range (1..64, or 0 "
             "for the profile default)");
    s_expect(TIM "    gossip_nodes: -1\n", KVC_EINVAL,
             "c.yaml:5:19: federation.timing.gossip_nodes: \"-1\" is not a decimal integer");
    s_expect(TIM "    gossip_nodes: 010\n", KVC_EINVAL,
             "c.yaml:5:19: federation.timing.gossip_nodes: \"010\" is not a decimal integer");
    s_expect(TIM "    gossip_nodes: 1e3\n", KVC_EINVAL,
             "c.yaml:5:19: federation.timing.gossip_nodes: \"1e3\" is not a decimal integer");
    s_expect(TIM "    gossip_nodes: 99999999999999999999999\n", KVC_EINVAL,
             "c.yaml:5:19: federation.timing.gossip_nodes: \"99999999999999999999999\" is not a "
             "decimal integer");
    s_expect(TIM "    gossip_nodez: 1\n", KVC_EINVAL,
             "c.yaml:5:5: federation.timing.gossip_nodez: unknown key");
#undef TIM
}

/* http.max_body (and the proxy's sizes): plain bytes and units, bounds. */
static void test_byte_sizes(void **state)
{
    static const struct {
        const char *text;
        uint64_t bytes;
    } ok[] = {
        {"1024", 1024},           {"64MiB", 64ull << 20},
        {"512KiB", 512ull << 10}, {"1GiB", 1ull << 30},
        {"2 MiB", 2ull << 20},    {"10KB", 10000},
        {"3MB", 3000000},         {"1GB", 1000000000},
        {"4096B", 4096},          {"1073741824", 1ull << 30},
    };
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    char text[256];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(text, sizeof text, BASE "http: {max_body: '%s'}\n", ok[i].text);
        assert_int_equal(s_parse(text, cfg, &err), KVC_OK);
        assert_int_equal(cfg->http_max_body, ok[i].bytes);
    }
    free(cfg);
    s_expect(BASE "http: {max_body: 1023}\n", KVC_ERANGE,
             "c.yaml:3:18: http.max_body: \"1023\" is out of range (1 KiB..1 GiB)");
    s_expect(BASE "http: {max_body: 2GiB}\n", KVC_ERANGE,
             "c.yaml:3:18: http.max_body: \"2GiB\" is out of range (1 KiB..1 GiB)");
    s_expect(BASE "http: {max_body: 1073741825}\n", KVC_ERANGE,
             "c.yaml:3:18: http.max_body: \"1073741825\" is out of range (1 KiB..1 GiB)");
    /* proxy.max_message has max_body's bounds; proxy.image_memory 1 MiB..3 GiB. */
    cfg = malloc(sizeof *cfg);
    assert_int_equal(s_parse(BASE "proxy: {max_message: 256MiB, image_memory: 3GiB}\n", cfg, &err),
                     KVC_OK);
    assert_int_equal(cfg->proxy_max_message, 256ull << 20);
    assert_int_equal(cfg->proxy_image_memory, 3ull << 30);
    assert_int_equal(s_parse(BASE "proxy: {max_message: 1KiB, image_memory: 1MiB}\n", cfg, &err),
                     KVC_OK);
    assert_int_equal(cfg->proxy_max_message, 1024);
    assert_int_equal(cfg->proxy_image_memory, 1ull << 20);
    /* proxy.cpu: a CPU number or none */
    assert_int_equal(s_parse(BASE "proxy: {cpu: 3}\n", cfg, &err), 0);
    assert_int_equal(cfg->proxy_cpu, 3);
    assert_int_equal(s_parse(BASE "proxy: {cpu: none}\n", cfg, &err), 0);
    assert_int_equal(cfg->proxy_cpu, -1);
    free(cfg);
    s_expect(BASE "proxy: {max_message: 2GiB}\n", KVC_ERANGE,
             "c.yaml:3:22: proxy.max_message: \"2GiB\" is out of range (1 KiB..1 GiB)");
    s_expect(BASE "proxy: {image_memory: 1048575}\n", KVC_ERANGE,
             "c.yaml:3:23: proxy.image_memory: \"1048575\" is out of range (1 MiB..3 GiB)");
    s_expect(BASE "proxy: {image_memory: 4GiB}\n", KVC_ERANGE,
             "c.yaml:3:23: proxy.image_memory: \"4GiB\" is out of range (1 MiB..3 GiB)");
    s_expect(BASE "proxy: {cpu: 1024}\n", KVC_ERANGE,
             "c.yaml:3:14: proxy.cpu: \"1024\" is out of range (0..1023, or none)");
    s_expect(BASE "proxy: {cpu: -1}\n", KVC_EINVAL,
             "c.yaml:3:14: proxy.cpu: \"-1\" is not a CPU number or \"none\"");
    s_expect(BASE "http: {max_body: 99999999999GiB}\n", KVC_EINVAL,
             "c.yaml:3:18: http.max_body: \"99999999999GiB\" is not a size (an integer with an "
             "optional unit: B, KiB, MiB, GiB, KB, MB, GB)");
    s_expect(BASE "http: {max_body: 64mb}\n", KVC_EINVAL,
             "c.yaml:3:18: http.max_body: \"64mb\" is not a size (an integer with an optional "
             "unit: B, KiB, MiB, GiB, KB, MB, GB)");
    s_expect(BASE "http: {max_body: MiB}\n", KVC_EINVAL,
             "c.yaml:3:18: http.max_body: \"MiB\" is not a size (an integer with an optional "
             "unit: B, KiB, MiB, GiB, KB, MB, GB)");
}

/* Seeds in both forms, keys case-insensitive. */
static void test_seeds(void **state)
{
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    uint8_t ka[32], kb[32];
    s_key(KEY_A, ka);
    s_key(KEY_B, kb);
    assert_int_equal(
        s_parse("peer: {name: a, site: b}\n"
                "federation:\n"
                "  advertise: tcp://h:1\n"
                "  seeds:\n"
                "    - endpoint: tcp://[fe80::1]:7946\n"
                "      key: 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n"
                "    - 8F2A559490E2F1E3B1F0A5B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6@tcp://"
                "seed.example.org:65535\n",
                cfg, &err),
        KVC_OK);
    assert_int_equal(cfg->n_seeds, 2);
    assert_string_equal(cfg->seeds[0].endpoint, "tcp://[fe80::1]:7946");
    assert_memory_equal(cfg->seeds[0].public_key, ka, 32);
    assert_string_equal(cfg->seeds[1].endpoint, "tcp://seed.example.org:65535");
    assert_memory_equal(cfg->seeds[1].public_key, kb, 32);
    free(cfg);
}

/* Builds a document from tmpl with "@" replaced by value; returns the
 * expected "c.yaml:L:C: " prefix of an error at the value in prefix. */
static char *s_fill(const char *tmpl, const char *value, char *prefix, size_t prefix_size)
{
    const char *at = strchr(tmpl, '@');
    assert_non_null(at);
    size_t line = 1, col = 1;
    for (const char *p = tmpl; p < at; p++) {
        if (*p == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    snprintf(prefix, prefix_size, "c.yaml:%zu:%zu: ", line, col);
    size_t n = strlen(tmpl) + strlen(value) + 1;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(at - tmpl), tmpl, value, at + 1);
    return out;
}

/* Every string key refuses a value one byte longer than its buffer. */
static void test_too_long(void **state)
{
    static const struct {
        const char *tmpl; /* '@' marks the value */
        const char *key;
        const char *lead; /* value starts with this, padded with 'a' */
        size_t max;       /* longest accepted value */
    } cases[] = {
        {"peer: {name: @, site: b}", "peer.name", "", 63},
        {"peer: {name: a, site: @}", "peer.site", "", 63},
        {"peer: {name: a, site: b, region: @}", "peer.region", "", 63},
        {"peer: {name: a, site: b, roles: [@]}", "peer.roles[0]", "", 63},
        {"peer: {name: a, site: b, data_dir: @}", "peer.data_dir", "/", 1023},
        {"peer: {name: a, site: b, credential: @}", "peer.credential", "/", 1023},
        {"peer: {name: a, site: b}\nfederation: {advertise: 'tcp://h:1', trust: @}",
         "federation.trust", "/", 1023},
        {"peer: {name: a, site: b}\nfederation: {advertise: 'tcp://h:1', listen: @}",
         "federation.listen", "tcp://", 255},
        {"peer: {name: a, site: b}\nfederation: {advertise: @}", "federation.advertise", "tcp://",
         255},
        {"peer: {name: a, site: b}\nfederation: {advertise: 'tcp://h:1', seeds: [{endpoint: @, "
         "key: 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29}]}",
         "federation.seeds[0].endpoint", "tcp://", 255},
        {"peer: {name: a, site: b}\nfederation: {advertise: 'tcp://h:1', seeds: [@]}",
         "federation.seeds[0]",
         "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29@tcp://", 64 + 1 + 255},
        {BASE "control: {endpoint: @}", "control.endpoint", "ipc:///", 255},
        {BASE "http: {listen: @}", "http.listen", "", 255},
        {BASE "proxy: {backends: [{grpc: 'h:1', model: @}]}", "proxy.backends[0].model", "", 127},
        {BASE "proxy: {backends: [{model: m, grpc: @}]}", "proxy.backends[0].grpc", "", 255},
        {BASE "proxy: {backends: [{model: m, grpc: 'h:1', metrics_url: @}]}",
         "proxy.backends[0].metrics_url", "http://", 255},
        {BASE "http: {max_body: @}", "http.max_body", "", 31},
        {"peer: {name: a, site: b}\nfederation: {advertise: 'tcp://h:1', timing: "
         "{gossip_nodes: @}}",
         "federation.timing.gossip_nodes", "", 31},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char value[1100];
        char prefix[64];
        char want[KVC_ERR_MAX];
        size_t lead = strlen(cases[i].lead);
        assert_true(cases[i].max + 1 < sizeof value);
        memcpy(value, cases[i].lead, lead);
        memset(value + lead, 'a', cases[i].max + 1 - lead);
        value[cases[i].max + 1] = '\0';
        char *text = s_fill(cases[i].tmpl, value, prefix, sizeof prefix);
        snprintf(want, sizeof want, "%s%s: \"%.40s%s\" is too long (at most %zu bytes)", prefix,
                 cases[i].key, value, strlen(value) > 40 ? "..." : "", cases[i].max);
        s_expect(text, KVC_ERANGE, want);
        free(text);
    }
}

/* Paths derived from a long data_dir must fit too. */
static void test_derived_lengths(void **state)
{
    char dir[1100];
    char text[1300];
    dir[0] = '/';
    memset(dir + 1, 'd', 94);
    dir[95] = '\0';
    /* 95 bytes: DIR/control.sock is 108 bytes, one more than ipc allows. */
    snprintf(text, sizeof text,
             "peer: {name: a, site: b, data_dir: %s}\nfederation: {advertise: 'tcp://h:1'}\n", dir);
    s_expect(text, KVC_ERANGE,
             "c.yaml:1:36: peer.data_dir: too long for the default control endpoint "
             "ipc://DATA_DIR/control.sock (at most 94 bytes; set control.endpoint)");
    dir[94] = '\0'; /* 94 bytes fits */
    snprintf(text, sizeof text,
             "peer: {name: a, site: b, data_dir: %s}\nfederation: {advertise: 'tcp://h:1'}\n", dir);
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    assert_int_equal(s_parse(text, cfg, &err), KVC_OK);
    kvc_config_finish(cfg);
    assert_int_equal(strlen(cfg->control_endpoint), 6 + 94 + 13);

    /* 1015 bytes: DIR/identity would be 1024 bytes. */
    memset(dir + 1, 'd', 1014);
    dir[1015] = '\0';
    snprintf(text, sizeof text,
             "peer: {name: a, site: b, data_dir: %s}\nfederation: {advertise: 'tcp://h:1'}\n"
             "control: {endpoint: 'ipc:///c'}\n",
             dir);
    s_expect(text, KVC_ERANGE,
             "c.yaml:1:36: peer.data_dir: too long to derive peer.credential (DATA_DIR/identity)");
    snprintf(text, sizeof text,
             "peer: {name: a, site: b, credential: /c, data_dir: %s}\nfederation: {advertise: "
             "'tcp://h:1'}\ncontrol: {endpoint: 'ipc:///c'}\n",
             dir);
    s_expect(text, KVC_ERANGE,
             "c.yaml:1:52: peer.data_dir: too long to derive federation.trust "
             "(DATA_DIR/federation.pub)");
    free(cfg);
}

/* The 1 MiB limit, in parse and in load; exactly 1 MiB is fine. */
static void test_size_limit(void **state)
{
    size_t big = KVC_CONFIG_MAX_BYTES + 1;
    char *text = malloc(big + 1);
    assert_non_null(text);
    const char *head = BASE;
    size_t hl = strlen(head);
    memcpy(text, head, hl);
    text[hl] = '#';
    memset(text + hl + 1, 'x', big - hl - 2);
    text[big - 1] = '\n';
    text[big] = '\0';

    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    kvc_config_defaults(cfg);
    assert_int_equal(kvc_config_parse(cfg, "c.yaml", text, big, &err), KVC_ERANGE);
    assert_string_equal(err.msg, "c.yaml:1:1: (document): larger than 1 MiB (1048576 bytes)");

    char want[256];
    const char *path = s_temp_file(text, big);
    assert_int_equal(kvc_config_load(cfg, path, &err), KVC_ERANGE);
    snprintf(want, sizeof want, "%s:1:1: (document): larger than 1 MiB (1048576 bytes)", path);
    assert_string_equal(err.msg, want);
    unlink(path);

    /* One byte less: exactly 1 MiB loads. */
    text[big - 2] = '\n';
    path = s_temp_file(text, big - 1);
    assert_int_equal(kvc_config_load(cfg, path, &err), KVC_OK);
    assert_string_equal(cfg->advertise, "tcp://h:1");
    unlink(path);
    free(text);
    free(cfg);
}

/* load: missing files, messages naming the path, control chars escaped. */
static void test_load(void **state)
{
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    assert_int_equal(kvc_config_load(cfg, "/nonexistent/kvc.yaml", &err), KVC_EIO);
    assert_string_equal(err.msg, "/nonexistent/kvc.yaml: cannot read: No such file or directory");
    assert_int_equal(kvc_config_load(cfg, "/tmp", &err), KVC_EIO);
    assert_string_equal(err.msg, "/tmp: cannot read: Is a directory");
    assert_int_equal(kvc_config_load(cfg, "/nonexistent/a\nb", &err), KVC_EIO);
    assert_string_equal(err.msg, "/nonexistent/a\\x0ab: cannot read: No such file or directory");

    const char *bad = "peer:\n  name: a\n  site: B\n";
    const char *path = s_temp_file(bad, strlen(bad));
    char want[256];
    assert_int_equal(kvc_config_load(cfg, path, &err), KVC_EINVAL);
    snprintf(want, sizeof want,
             "%s:3:9: peer.site: \"B\" must match [a-z0-9-]{1,63} and not start or end with '-'",
             path);
    assert_string_equal(err.msg, want);
    unlink(path);
    free(cfg);
}

/* kvc_config_finish derives advertise and the control endpoint. */
static void test_finish(void **state)
{
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    kvc_config_defaults(cfg);
    kvc_config_finish(cfg);
    assert_string_equal(cfg->advertise, ""); /* wildcard listen: nothing to derive */
    assert_string_equal(cfg->control_endpoint, "ipc:///var/lib/kvc/control.sock");

    assert_int_equal(s_parse("peer: {name: a, site: b, data_dir: /srv/kvc}\n"
                             "federation: {listen: 'tcp://10.0.0.5:0'}\n",
                             cfg, &err),
                     KVC_OK);
    assert_string_equal(cfg->advertise, "");
    kvc_config_finish(cfg);
    assert_string_equal(cfg->advertise, "tcp://10.0.0.5:0");
    assert_string_equal(cfg->control_endpoint, "ipc:///srv/kvc/control.sock");
    assert_string_equal(cfg->credential, "/srv/kvc/identity");

    assert_int_equal(s_parse("peer: {name: a, site: b, data_dir: /}\n"
                             "federation: {listen: 'ipc:///run/kvc/fed.sock', advertise: "
                             "'tcp://gw:7946'}\n"
                             "control: {endpoint: 'tcp://127.0.0.1:7950'}\n",
                             cfg, &err),
                     KVC_OK);
    kvc_config_finish(cfg);
    assert_string_equal(cfg->advertise, "tcp://gw:7946");
    assert_string_equal(cfg->control_endpoint, "tcp://127.0.0.1:7950");
    assert_string_equal(cfg->credential, "/identity");
    assert_string_equal(cfg->trust, "/federation.pub");

    char id[2 * KVC_NAME_MAX];
    assert_string_equal(kvc_config_member_id(cfg, id, sizeof id), "b/a");
    free(cfg);
}

static void test_valid_name_and_key(void **state)
{
    char name[80];
    assert_true(kvc_config_valid_name("a"));
    assert_true(kvc_config_valid_name("gw-1"));
    assert_true(kvc_config_valid_name("0"));
    assert_false(kvc_config_valid_name(""));
    assert_false(kvc_config_valid_name("-a"));
    assert_false(kvc_config_valid_name("a-"));
    assert_false(kvc_config_valid_name("A"));
    assert_false(kvc_config_valid_name("a_b"));
    assert_false(kvc_config_valid_name("a.b"));
    assert_false(kvc_config_valid_name(NULL));
    memset(name, 'n', 63);
    name[63] = '\0';
    assert_true(kvc_config_valid_name(name));
    name[63] = 'n';
    name[64] = '\0';
    assert_false(kvc_config_valid_name(name));

    uint8_t key[32];
    assert_int_equal(kvc_config_parse_key(KEY_A, key), KVC_OK);
    assert_int_equal(key[0], 0x3b);
    assert_int_equal(key[31], 0x29);
    assert_int_equal(kvc_config_parse_key(KEY_B, key), KVC_OK);
    assert_int_equal(key[0], 0x8f);
    assert_int_equal(key[31], 0xf6);
    char hex[70];
    memcpy(hex, KEY_A, 65);
    hex[63] = '\0';
    assert_int_equal(kvc_config_parse_key(hex, key), KVC_EINVAL);
    memcpy(hex, KEY_A, 65);
    hex[64] = '0';
    hex[65] = '\0';
    assert_int_equal(kvc_config_parse_key(hex, key), KVC_EINVAL);
    memcpy(hex, KEY_A, 65);
    hex[10] = 'g';
    assert_int_equal(kvc_config_parse_key(hex, key), KVC_EINVAL);
    assert_int_equal(kvc_config_parse_key("", key), KVC_EINVAL);
}

/* Every allocation failure ends in KVC_ENOMEM with a message; no leaks
 * (ASan checks at exit), and the same call succeeds once memory is back. */
static void test_alloc_failures(void **state)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/ops/examples/kvc-peer.yaml", KVC_SOURCE_DIR);
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    long n;
    for (n = 0; n < 100; n++) {
        kvc_alloc_fail_after(n);
        int rc = kvc_config_load(cfg, path, &err);
        kvc_alloc_fail_after(-1);
        if (rc == KVC_OK)
            break;
        assert_int_equal(rc, KVC_ENOMEM);
        size_t len = strlen(err.msg);
        assert_true(len > strlen(": out of memory"));
        assert_string_equal(err.msg + len - strlen(": out of memory"), ": out of memory");
        assert_memory_equal(err.msg, path, strlen(path));
    }
    assert_true(n > 1); /* the file buffer and the parser both allocate */
    assert_true(n < 100);
    assert_string_equal(cfg->name, "gw-1");

    kvc_alloc_fail_after(0);
    int rc = s_parse(BASE, cfg, &err);
    kvc_alloc_fail_after(-1);
    assert_int_equal(rc, KVC_ENOMEM);
    assert_string_equal(err.msg, "c.yaml: out of memory");
    free(cfg);
}

/* The shipped example parses and says what its comments say. */
static void test_example_file(void **state)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/ops/examples/kvc-peer.yaml", KVC_SOURCE_DIR);
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    int rc = kvc_config_load(cfg, path, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, KVC_OK);
    assert_string_equal(cfg->name, "gw-1");
    assert_string_equal(cfg->site, "berlin-1");
    assert_string_equal(cfg->data_dir, "/var/lib/kvc");
    assert_string_equal(cfg->listen, "tcp://0.0.0.0:7946");
    assert_string_equal(cfg->advertise, "tcp://10.0.0.5:7946");
    assert_int_equal(cfg->n_seeds, 2);
    assert_int_equal(cfg->n_revoked, 1);
    assert_int_equal(cfg->profile, KVC_PROFILE_LAN);
    assert_string_equal(cfg->http_listen, "127.0.0.1:8500");
    assert_int_equal(cfg->http_max_body, 64ull << 20);
    assert_int_equal(cfg->n_backends, 1);
    assert_string_equal(cfg->backends[0].api, "tfserving");
    assert_int_equal(cfg->log_level, KVC_LOG_INFO);
    kvc_config_finish(cfg);
    assert_string_equal(cfg->control_endpoint, "ipc:///var/lib/kvc/control.sock");
    char id[2 * KVC_NAME_MAX];
    assert_string_equal(kvc_config_member_id(cfg, id, sizeof id), "berlin-1/gw-1");
    free(cfg);
}

/* A deeply nested value is refused at the first level, without recursion. */
static void test_deep_nesting(void **state)
{
    size_t depth = 100000;
    char *text = malloc(depth + 16);
    assert_non_null(text);
    memcpy(text, "peer: ", 6);
    memset(text + 6, '[', depth);
    text[6 + depth] = '\0';
    kvc_config_t *cfg = malloc(sizeof *cfg);
    kvc_err_t err;
    assert_int_equal(s_parse(text, cfg, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "c.yaml:1:7: peer: expected a mapping, found a sequence");
    free(text);
    free(cfg);
}

/* proxy.backends[].preprocess / image_input and proxy.timeout_ms. */
static void test_proxy_image_keys(void **state)
{
    static kvc_config_t cfg;
    kvc_err_t err;
    assert_int_equal(s_parse(BASE "proxy:\n  timeout_ms: 2500\n  backends:\n"
                                  "    - {model: m, grpc: 'h:1', preprocess: '224x224 rgb nhwc float32"
                                  " scale=1/255', image_input: 'input_1:0'}\n",
                             &cfg, &err),
                     0);
    assert_int_equal(cfg.proxy_timeout_ms, 2500);
    assert_string_equal(cfg.proxy_grpc_ca_file, "");
    assert_int_equal(cfg.n_backends, 1);
    assert_string_equal(cfg.backends[0].preprocess, "224x224 rgb nhwc float32 scale=1/255");
    assert_string_equal(cfg.backends[0].image_input, "input_1:0");
    assert_int_equal(s_parse(BASE, &cfg, &err), 0);
    assert_int_equal(cfg.proxy_timeout_ms, 30000);
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'h:1', preprocess: 'huge'}\n",
             KVC_EINVAL, "c.yaml:5:43: proxy.backends[0].preprocess: unknown word 'huge'");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'h:1', image_input: 'a b'}\n",
             KVC_EINVAL,
             "c.yaml:5:44: proxy.backends[0].image_input: \"a b\" must match [A-Za-z0-9._/:-]+");
    assert_int_equal(s_parse(BASE "proxy:\n  grpc_ca_file: /etc/kvc/models-ca.pem\n", &cfg, &err), 0);
    assert_string_equal(cfg.proxy_grpc_ca_file, "/etc/kvc/models-ca.pem");
    s_expect(BASE "proxy:\n  grpc_ca_file: ca.pem\n", KVC_EINVAL,
             "c.yaml:4:17: proxy.grpc_ca_file: \"ca.pem\" must be an absolute path");
    s_expect(BASE "proxy:\n  timeout_ms: 5\n", KVC_ERANGE,
             "c.yaml:4:15: proxy.timeout_ms: \"5\" is out of range (10..600000)");
    s_expect(BASE "proxy:\n  timeout_ms: 0\n", KVC_ERANGE,
             "c.yaml:4:15: proxy.timeout_ms: \"0\" is out of range (10..600000)");
}

/* proxy.backends[].inputs: NAME:DTYPE, split at the last ':'. */
static void test_proxy_inputs(void **state)
{
    (void)state;
    static kvc_config_t cfg;
    kvc_err_t err;
    assert_int_equal(s_parse(BASE "proxy:\n  backends:\n"
                                  "    - {model: m, grpc: 'h:1', inputs: ['input_ids:int32', "
                                  "'x:0:FP32', 'mask:DT_BOOL']}\n",
                             &cfg, &err),
                     0);
    assert_int_equal(cfg.backends[0].n_inputs, 3);
    assert_string_equal(cfg.backends[0].inputs[0].name, "input_ids");
    assert_string_equal(cfg.backends[0].inputs[0].dtype, "int32");
    assert_string_equal(cfg.backends[0].inputs[1].name, "x:0");
    assert_string_equal(cfg.backends[0].inputs[1].dtype, "FP32");
    assert_string_equal(cfg.backends[0].inputs[2].dtype, "DT_BOOL");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'h:1', inputs: [ids]}\n",
             KVC_EINVAL,
             "c.yaml:5:40: proxy.backends[0].inputs[0]: \"ids\" must be NAME:DTYPE, e.g. "
             "input_ids:int64");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'h:1', inputs: ['ids:float']}\n",
             KVC_EINVAL,
             "c.yaml:5:40: proxy.backends[0].inputs[0]: \"ids:float\" has an unknown dtype (float32, "
             "float64, float16, int8, int16, int32, int64, uint8, uint16, uint32, uint64, bool, "
             "string)");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'h:1', inputs: ['a b:int8']}\n",
             KVC_EINVAL,
             "c.yaml:5:40: proxy.backends[0].inputs[0]: \"a b:int8\" has a name that must match "
             "[A-Za-z0-9._/:-]{1,127}");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'h:1', inputs: [':int8']}\n",
             KVC_EINVAL,
             "c.yaml:5:40: proxy.backends[0].inputs[0]: \":int8\" must be NAME:DTYPE, e.g. "
             "input_ids:int64");
    s_expect(BASE "proxy:\n  backends:\n    - {model: m, grpc: 'h:1', inputs: [a:int8, a:int16]}\n",
             KVC_EINVAL,
             "c.yaml:5:48: proxy.backends[0].inputs[1]: \"a:int16\" names an input listed twice");
    char text[4096];
    int n = snprintf(text, sizeof text, BASE "proxy:\n  backends:\n    - {model: m, grpc: 'h:1', "
                                             "inputs: [");
    for (int i = 0; i <= KVC_MAX_INPUTS; i++)
        n += snprintf(text + n, sizeof text - (size_t)n, "%si%d:int8", i ? ", " : "", i);
    snprintf(text + n, sizeof text - (size_t)n, "]}\n");
    assert_int_equal(s_parse(text, &cfg, &err), KVC_ERANGE);
    assert_non_null(strstr(err.msg, "too many entries (at most 16)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_inputs),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_kubernetes),
        cmocka_unit_test(test_endpoint_errors),
        cmocka_unit_test(test_timing),
        cmocka_unit_test(test_byte_sizes),
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_derived_lengths),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_finish),
        cmocka_unit_test(test_valid_name_and_key),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_proxy_image_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
