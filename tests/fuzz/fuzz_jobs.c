/*
 * libFuzzer target for the job records a peer reads from the site map
 * (kvc.jobs.Job, decoded and re-encoded: the round trip must hold) and the
 * redaction of job log text (in place, never past the end, never longer).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static kvc_job_t j, back;
    if (data[0] & 1) {
        if (kvc_job_decode(data + 1, size - 1, &j) != 0)
            return 0;
        static uint8_t buf[KVC_JOB_RECORD_MAX];
        size_t len;
        if (kvc_job_encode(&j, buf, sizeof buf, &len) != 0 || kvc_job_decode(buf, len, &back) != 0 ||
            memcmp(&j, &back, sizeof j) != 0)
            abort();
    } else {
        char *t = malloc(size);
        if (!t)
            return 0;
        memcpy(t, data + 1, size - 1);
        kvc_job_redact(t, size - 1);
        for (size_t i = 0; i < size - 1; i++)
            if ((uint8_t)t[i] != data[1 + i] && t[i] != '*')
                abort(); /* redaction only ever writes stars */
        free(t);
    }
    return 0;
}
