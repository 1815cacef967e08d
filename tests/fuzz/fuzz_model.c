/*
 * libFuzzer target for the model registry's decoders: the input's first
 * byte picks one, the rest is its input: a kvc.registry.Model record (and,
 * when it decodes, its re-encoding must decode to the same entry), a
 * SiteStatus record, a registry key, a model YAML file, or a model
 * server's status answer (the version it serves). Any crash,
 * leak, UB or a decoded entry that fails its own check is a bug.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t which = data[0] % 5;
    data++, size--;
    static kvc_model_t m, back;
    kvc_err_t err = {0};
    if (which == 0) {
        if (kvc_model_decode(data, size, &m, &err) != 0)
            return 0;
        if (kvc_model_check(&m, NULL) != 0)
            abort();
        static uint8_t buf[KVC_MODEL_RECORD_MAX];
        size_t len = 0;
        /* a decoded record may be longer than the bound once re-encoded
         * (unknown fields dropped make it shorter; never longer) */
        if (kvc_model_encode(&m, buf, sizeof buf, &len) != 0)
            abort();
        if (kvc_model_decode(buf, len, &back, NULL) != 0 || memcmp(&m, &back, sizeof m) != 0)
            abort();
    } else if (which == 1) {
        kvc_model_status_t s;
        uint8_t buf[2048];
        size_t len;
        if (kvc_model_status_decode(data, size, &s, &err) == 0 &&
            kvc_model_status_encode(&s, buf, sizeof buf, &len) != 0)
            abort();
    } else if (which == 2) {
        char name[KVC_MODEL_NAME_MAX];
        uint64_t v;
        uint8_t key[KVC_MODEL_KEY_MAX];
        if (kvc_model_key_parse(data, size, name, sizeof name, &v) == 0 &&
            (kvc_model_key(name, v, key, sizeof key) != size || memcmp(key, data, size) != 0))
            abort();
    } else if (which == 4) {
        uint64_t v = 0;
        if (kvc_model_served_version_parse((const char *)data, size, &v, &err) == 0 && v == 0)
            abort();
    } else {
        if (kvc_model_load_yaml_text((const char *)data, size, &m, &err) == 0)
            (void)kvc_model_check(&m, &err);
    }
    return 0;
}
