/*
 * store.c - LMDB behind a four-call API. Every write is its own committed,
 * synced transaction; every read copies out before the transaction ends.
 * Must never hand out a pointer into the memory map.
 */
#include "store.h"

#include <errno.h>
#include <lmdb.h>
#include <string.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

struct kvc_store {
    MDB_env *env;
};

/* Maps an LMDB error to a kvc code. */
static int s_code(int rc)
{
    switch (rc) {
    case 0: return KVC_OK;
    case MDB_NOTFOUND: return KVC_ENOENT;
    case MDB_MAP_FULL: return KVC_ERANGE;
    case ENOMEM: return KVC_ENOMEM;
    default: return KVC_EIO;
    }
}

kvc_store_t *kvc_store_open(const char *dir, size_t map_bytes, kvc_err_t *err)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        kvc_err_set(err, KVC_EIO, "%s: cannot create: %s", dir, strerror(errno));
        return NULL;
    }
    kvc_store_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "store: out of memory");
        return NULL;
    }
    int rc = mdb_env_create(&self->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(self->env, 32);
    if (rc == 0)
        rc = mdb_env_set_mapsize(self->env, map_bytes ? map_bytes : (size_t)256 << 20);
    if (rc == 0)
        rc = mdb_env_open(self->env, dir, 0, 0600);
    if (rc != 0) {
        kvc_err_set(err, s_code(rc), "%s: cannot open store: %s", dir, mdb_strerror(rc));
        if (self->env)
            mdb_env_close(self->env);
        kvc_free(self);
        return NULL;
    }
    return self;
}

void kvc_store_destroy(kvc_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mdb_env_close((*self_p)->env);
    kvc_free(*self_p);
    *self_p = NULL;
}

/* Begins a transaction and opens (creating when writing) the named db. */
static int s_begin(kvc_store_t *self, const char *db, int write, MDB_txn **txn, MDB_dbi *dbi)
{
    int rc = mdb_txn_begin(self->env, NULL, write ? 0 : MDB_RDONLY, txn);
    if (rc)
        return rc;
    rc = mdb_dbi_open(*txn, db, write ? MDB_CREATE : 0, dbi);
    if (rc)
        mdb_txn_abort(*txn);
    return rc;
}

int kvc_store_put(kvc_store_t *self, const char *db, const void *key, size_t klen,
                  const void *val, size_t vlen)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc = s_begin(self, db, 1, &txn, &dbi);
    if (rc)
        return s_code(rc);
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    rc = mdb_put(txn, dbi, &k, &v, 0);
    if (rc) {
        mdb_txn_abort(txn);
        return s_code(rc);
    }
    return s_code(mdb_txn_commit(txn));
}

int kvc_store_get(kvc_store_t *self, const char *db, const void *key, size_t klen, void *buf,
                  size_t cap, size_t *vlen)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc = s_begin(self, db, 0, &txn, &dbi);
    if (rc)
        return s_code(rc);
    MDB_val k = {klen, (void *)key}, v;
    rc = mdb_get(txn, dbi, &k, &v);
    int out = s_code(rc);
    if (rc == 0) {
        if (vlen)
            *vlen = v.mv_size;
        if (v.mv_size > cap)
            out = KVC_ERANGE;
        else if (v.mv_size)
            memcpy(buf, v.mv_data, v.mv_size);
    }
    mdb_txn_abort(txn);
    return out;
}

int kvc_store_del(kvc_store_t *self, const char *db, const void *key, size_t klen)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc = s_begin(self, db, 1, &txn, &dbi);
    if (rc)
        return s_code(rc);
    MDB_val k = {klen, (void *)key};
    rc = mdb_del(txn, dbi, &k, NULL);
    if (rc) {
        mdb_txn_abort(txn);
        return s_code(rc);
    }
    return s_code(mdb_txn_commit(txn));
}

int kvc_store_incr(kvc_store_t *self, const char *db, const char *key, uint64_t delta,
                   uint64_t *out)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc = s_begin(self, db, 1, &txn, &dbi);
    if (rc)
        return s_code(rc);
    MDB_val k = {strlen(key), (void *)key}, v;
    uint64_t n = 0;
    rc = mdb_get(txn, dbi, &k, &v);
    if (rc == 0 && v.mv_size == 8) {
        const uint8_t *p = v.mv_data;
        for (int i = 7; i >= 0; i--)
            n = (n << 8) | p[i];
    } else if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return s_code(rc);
    }
    n += delta;
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(n >> (8 * i));
    v.mv_size = 8;
    v.mv_data = le;
    rc = mdb_put(txn, dbi, &k, &v, 0);
    if (rc) {
        mdb_txn_abort(txn);
        return s_code(rc);
    }
    rc = mdb_txn_commit(txn);
    if (rc == 0 && out)
        *out = n;
    return s_code(rc);
}

int kvc_store_foreach(kvc_store_t *self, const char *db, kvc_store_each_fn fn, void *arg)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc = s_begin(self, db, 0, &txn, &dbi);
    if (rc == MDB_NOTFOUND)
        return KVC_OK;
    if (rc)
        return s_code(rc);
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) {
        mdb_txn_abort(txn);
        return s_code(rc);
    }
    MDB_val k, v;
    int out = KVC_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        out = fn(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg);
        if (out)
            break;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        out = s_code(rc);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return out;
}

struct kvc_store_batch {
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc;
};

int kvc_store_batch_put(kvc_store_batch_t *b, const void *key, size_t klen, const void *val,
                        size_t vlen)
{
    if (b->rc)
        return b->rc;
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    b->rc = s_code(mdb_put(b->txn, b->dbi, &k, &v, 0));
    return b->rc;
}

int kvc_store_batch_del(kvc_store_batch_t *b, const void *key, size_t klen)
{
    if (b->rc)
        return b->rc;
    MDB_val k = {klen, (void *)key};
    int rc = mdb_del(b->txn, b->dbi, &k, NULL);
    if (rc == MDB_NOTFOUND)
        return KVC_OK;
    b->rc = s_code(rc);
    return b->rc;
}

int kvc_store_update(kvc_store_t *self, const char *db, kvc_store_batch_fn fn, void *arg)
{
    struct kvc_store_batch b = {0};
    int rc = s_begin(self, db, 1, &b.txn, &b.dbi);
    if (rc)
        return s_code(rc);
    rc = fn(&b, arg);
    if (rc == 0)
        rc = b.rc;
    if (rc) {
        mdb_txn_abort(b.txn);
        return rc;
    }
    return s_code(mdb_txn_commit(b.txn));
}

int kvc_store_room(kvc_store_t *self, size_t need)
{
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(self->env, &info) != 0 || mdb_env_stat(self->env, &st) != 0)
        return KVC_EIO;
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    /* copy-on-write: a commit writes new pages before it frees the old
     * ones, so keep room for the tree's branches besides the value */
    uint64_t want = (uint64_t)need * 2 + KVC_STORE_HEADROOM;
    return used + want <= info.me_mapsize ? KVC_OK : KVC_ERANGE;
}

int kvc_store_backup(kvc_store_t *self, const char *dir, kvc_err_t *err)
{
    if (!dir || dir[0] != '/')
        return kvc_err_set(err, KVC_EINVAL, "backup: an absolute folder path is needed");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return kvc_err_set(err, KVC_EIO, "backup: %s: %s", dir, strerror(errno));
    char file[4096];
    struct stat sb;
    if ((size_t)snprintf(file, sizeof file, "%s/data.mdb", dir) >= sizeof file)
        return kvc_err_set(err, KVC_ERANGE, "backup: path too long");
    if (stat(file, &sb) == 0)
        return kvc_err_set(err, KVC_EEXIST, "backup: %s already holds a store; give a new folder",
                           dir);
    /* a consistent snapshot in one read transaction, free pages left out */
    int rc = mdb_env_copy2(self->env, dir, MDB_CP_COMPACT);
    if (rc != 0) {
        unlink(file);
        return kvc_err_set(err, s_code(rc), "backup: %s: %s", dir, mdb_strerror(rc));
    }
    return KVC_OK;
}
