/*
 * Verified OCSP responses on disk, one DER file per certificate, so that
 * staples survive restarts and responder outages at startup. Files are
 * readable by `openssl ocsp -respin`. Whatever is read back is untrusted
 * until verified again.
 */
#ifndef STAPLE_STORE_H
#define STAPLE_STORE_H

#include <apr_pools.h>
#include <apr_time.h>

/**
 * Write a response atomically as dir/name.der, mode 0600: a temporary file,
 * fsync, rename over the old one, fsync of the directory.
 * @param err receives the reason on failure
 */
apr_status_t staple_store_save(const char *dir, const char *name,
                               const unsigned char *der, apr_size_t len, apr_pool_t *p,
                               char *err, apr_size_t errlen);

/**
 * Read dir/name.der.
 * @param der receives the content, from p
 * @param mtime receives the file's modification time (when it was fetched)
 * @return APR_SUCCESS, APR_ENOENT when there is no file, APR_ENOSPC when it
 *         is larger than any acceptable response, another error otherwise
 */
apr_status_t staple_store_load(const char *dir, const char *name, unsigned char **der,
                               apr_size_t *len, apr_time_t *mtime, apr_pool_t *p);

/** Remove dir/name.der; no error when it does not exist. */
apr_status_t staple_store_remove(const char *dir, const char *name, apr_pool_t *p);

/** The path of a certificate's file, for log lines. */
const char *staple_store_path(const char *dir, const char *name, apr_pool_t *p);

#endif /* STAPLE_STORE_H */
