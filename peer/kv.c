/*
 * kv.c - kvc_kv_t over this peer's LMDB store. See kv.h.
 */
#include "kv.h"

static void s_db(char ns, char name[8])
{
    name[0] = 'k';
    name[1] = 'v';
    name[2] = '_';
    name[3] = ns;
    name[4] = '\0';
}

static int s_get(void *self, char ns, const void *key, size_t klen, void *buf, size_t cap,
                 size_t *vlen)
{
    char db[8];
    s_db(ns, db);
    return kvc_store_get(self, db, key, klen, buf, cap, vlen);
}

static int s_put(void *self, char ns, const void *key, size_t klen, const void *val, size_t vlen)
{
    char db[8];
    s_db(ns, db);
    return kvc_store_put(self, db, key, klen, val, vlen);
}

static int s_del(void *self, char ns, const void *key, size_t klen)
{
    char db[8];
    s_db(ns, db);
    return kvc_store_del(self, db, key, klen);
}

static int s_each(void *self, char ns, kvc_kv_each_fn fn, void *arg)
{
    char db[8];
    s_db(ns, db);
    return kvc_store_foreach(self, db, fn, arg);
}

kvc_kv_t kvc_kv_store(kvc_store_t *store)
{
    kvc_kv_t kv = {s_get, s_put, s_del, s_each, store};
    return kv;
}
