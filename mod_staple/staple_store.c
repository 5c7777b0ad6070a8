#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_strings.h>

#include "staple_store.h"
#include "staple_util.h"

const char *staple_store_path(const char *dir, const char *name, apr_pool_t *p)
{
    return apr_pstrcat(p, dir, "/", name, ".der", NULL);
}

static int write_all(int fd, const unsigned char *buf, apr_size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        buf += n;
        len -= (apr_size_t)n;
    }
    return 0;
}

apr_status_t staple_store_save(const char *dir, const char *name,
                               const unsigned char *der, apr_size_t len, apr_pool_t *p,
                               char *err, apr_size_t errlen)
{
    const char *path = staple_store_path(dir, name, p);
    const char *tmp = apr_psprintf(p, "%s/.%s.%ld.tmp", dir, name, (long)getpid());
    int fd, dfd, e;

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        e = errno;
        apr_snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(e));
        return APR_FROM_OS_ERROR(e);
    }
    if (write_all(fd, der, len) != 0 || fsync(fd) != 0) {
        e = errno;
        close(fd);
        unlink(tmp);
        apr_snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(e));
        return APR_FROM_OS_ERROR(e);
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        apr_snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(e));
        return APR_FROM_OS_ERROR(e);
    }
    /* make the rename itself durable */
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return APR_SUCCESS;
}

apr_status_t staple_store_load(const char *dir, const char *name, unsigned char **der,
                               apr_size_t *len, apr_time_t *mtime, apr_pool_t *p)
{
    const char *path = staple_store_path(dir, name, p);
    struct stat st;
    unsigned char *buf;
    apr_size_t got = 0;
    int fd, e;

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? APR_ENOENT : APR_FROM_OS_ERROR(errno);
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return APR_EINVAL;
    }
    if (st.st_size > STAPLE_MAX_RESPONSE_LEN) {
        close(fd);
        return APR_ENOSPC;
    }
    buf = apr_palloc(p, (apr_size_t)st.st_size + 1);
    while (got < (apr_size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (apr_size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            e = (n < 0) ? errno : EIO;
            close(fd);
            return APR_FROM_OS_ERROR(e);
        }
        got += (apr_size_t)n;
    }
    close(fd);
    *der = buf;
    *len = got;
    *mtime = apr_time_from_sec(st.st_mtime);
    return APR_SUCCESS;
}

apr_status_t staple_store_remove(const char *dir, const char *name, apr_pool_t *p)
{
    if (unlink(staple_store_path(dir, name, p)) != 0 && errno != ENOENT) {
        return APR_FROM_OS_ERROR(errno);
    }
    return APR_SUCCESS;
}
