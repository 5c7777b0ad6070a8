/*
 * Verified OCSP responses on disk, one DER file per certificate, so that
 * staples survive restarts and responder outages at startup. Files are
 * readable by `openssl ocsp -respin`. Whatever is read back is untrusted
 * until verified again.
 */
#ifndef STAPLE_STORE_H
#define STAPLE_STORE_H

#include <sys/types.h>

#include <apr_pools.h>
#include <apr_time.h>

/**
 * Write a response atomically as dir/name.der, mode 0600: a temporary file
 * (always a new one: whatever was left under its name is removed first),
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
 *         is larger than any acceptable response, APR_EINVAL when it is not
 *         a regular file (a FIFO, a device, a directory: refused without
 *         blocking), another error otherwise
 */
apr_status_t staple_store_load(const char *dir, const char *name, unsigned char **der,
                               apr_size_t *len, apr_time_t *mtime, apr_pool_t *p);

/**
 * When dir/name.der was last written (to the microsecond), without reading
 * it: to see that another process put a response there.
 * @return APR_SUCCESS, APR_ENOENT, or APR_EINVAL for a file that is not a
 *         regular one (a link, a directory, a FIFO), whose time is given
 *         all the same
 */
apr_status_t staple_store_mtime(const char *dir, const char *name, apr_time_t *mtime,
                                apr_pool_t *p);

/**
 * Remove the temporary files (".NAME.PID.tmp", regular files) last written
 * before "before": a process killed between creating one and its rename
 * leaves it behind. Returns how many were removed.
 */
int staple_store_sweep(const char *dir, apr_time_t before);

/** Remove dir/name.der; no error when it does not exist. */
apr_status_t staple_store_remove(const char *dir, const char *name, apr_pool_t *p);

/**
 * Make dir the store of the user uid:gid, as root would: missing parent
 * directories are created mode 0755, the store itself 0700 owned by
 * uid:gid. Every step is taken on an opened directory (openat with
 * O_NOFOLLOW, fchown, fchmod), never on a path that can be swapped between
 * a check and its use; symbolic links in the parents are followed only
 * when root owns them (Debian's /var/run). Every parent directory (from /
 * on) must belong to root or to uid and be writable by nobody else
 * (group or others) unless sticky, like /tmp: anyone else could swap the
 * path. The store is refused when it is a symbolic link, not a directory,
 * owned by another user, or owned by root and not empty (even when just
 * made: what is opened is checked). Not as root (euid != 0): the store
 * must belong to the caller, and only its mode is set.
 * @param dir absolute path
 * @param check_only 1: create and change nothing, say what would happen
 * @param err the reason on failure (naming the directory and the fix); with
 *        check_only, what startup will do (empty when there is nothing to say)
 * @return APR_SUCCESS, or an error
 */
apr_status_t staple_store_prepare(const char *dir, uid_t uid, gid_t gid, int check_only,
                                  char *err, apr_size_t errlen);

/** The path of a certificate's file, for log lines. */
const char *staple_store_path(const char *dir, const char *name, apr_pool_t *p);

#endif /* STAPLE_STORE_H */
