#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
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

    /* a new file of our own: whatever is left under the temporary name (a
     * FIFO would block the open, a link would be written through) goes */
    if (unlink(tmp) != 0 && errno != ENOENT) {
        e = errno;
        apr_snprintf(err, errlen, "cannot remove %s: %s", tmp, strerror(e));
        return APR_FROM_OS_ERROR(e);
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
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

int staple_store_sweep(const char *dir, apr_time_t before)
{
    DIR *d;
    struct dirent *de;
    struct stat st;
    int fd, n = 0;

    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        return 0;
    }
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        apr_size_t l = strlen(de->d_name);

        if (de->d_name[0] != '.' || l < 6 || strcmp(de->d_name + l - 4, ".tmp") ||
            fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode) || apr_time_from_sec(st.st_mtime) >= before) {
            continue;
        }
        if (unlinkat(fd, de->d_name, 0) == 0) {
            n++;
        }
    }
    closedir(d); /* closes fd */
    return n;
}

apr_status_t staple_store_load(const char *dir, const char *name, unsigned char **der,
                               apr_size_t *len, apr_time_t *mtime, apr_pool_t *p)
{
    const char *path = staple_store_path(dir, name, p);
    struct stat st;
    unsigned char *buf;
    apr_size_t got = 0;
    int fd, e, fl;

    /* O_NONBLOCK: a FIFO (or a device) under the name must not block the
     * open; only a regular file is read, and then blocking again */
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? APR_ENOENT : APR_FROM_OS_ERROR(errno);
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return APR_EINVAL;
    }
    if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        e = errno;
        close(fd);
        return APR_FROM_OS_ERROR(e);
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

apr_status_t staple_store_mtime(const char *dir, const char *name, apr_time_t *mtime,
                                apr_pool_t *p)
{
    struct stat st;

    if (lstat(staple_store_path(dir, name, p), &st) != 0) {
        return errno == ENOENT ? APR_ENOENT : APR_FROM_OS_ERROR(errno);
    }
    *mtime = apr_time_from_sec(st.st_mtim.tv_sec) + st.st_mtim.tv_nsec / 1000;
    return S_ISREG(st.st_mode) ? APR_SUCCESS : APR_EINVAL;
}

apr_status_t staple_store_remove(const char *dir, const char *name, apr_pool_t *p)
{
    if (unlink(staple_store_path(dir, name, p)) != 0 && errno != ENOENT) {
        return APR_FROM_OS_ERROR(errno);
    }
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* The store directory                                                 */

#define DIR_OPEN (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

static const char *user_name(uid_t uid, char *buf, apr_size_t len)
{
    struct passwd *pw = getpwuid(uid);

    if (pw && pw->pw_name) {
        apr_cpystrn(buf, pw->pw_name, len);
    } else {
        apr_snprintf(buf, len, "uid %ld", (long)uid);
    }
    return buf;
}

/* 1 when the opened directory holds nothing but . and .. */
static int dir_empty(int fd)
{
    int dfd = dup(fd), empty = 1;
    DIR *d;
    struct dirent *e;

    if (dfd < 0 || (d = fdopendir(dfd)) == NULL) {
        if (dfd >= 0) {
            close(dfd);
        }
        return 0;
    }
    while (empty && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = 0;
        }
    }
    closedir(d);
    return empty;
}

/*
 * Open the parent component name under fd: a directory, created 0755 when
 * missing (unless checking), or a symbolic link that root owns. Returns the
 * new descriptor, -1 with errno set, or -2 when it is missing and only
 * checked.
 */
static int open_parent(int fd, const char *name, int check_only)
{
    struct stat st;
    int nfd = openat(fd, name, DIR_OPEN);

    if (nfd >= 0 || (errno != ENOENT && errno != ELOOP && errno != ENOTDIR)) {
        return nfd;
    }
    if (errno == ENOENT) {
        if (check_only) {
            return -2;
        }
        if (mkdirat(fd, name, 0755) != 0 && errno != EEXIST) {
            return -1;
        }
        if ((nfd = openat(fd, name, DIR_OPEN)) >= 0) {
            /* whatever the umask */
            if (fchmod(nfd, 0755) != 0) {
                close(nfd);
                return -1;
            }
        }
        return nfd;
    }
    /* a symbolic link: only root's can be trusted not to be swapped */
    if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return -1;
    }
    if (!S_ISLNK(st.st_mode) || st.st_uid != 0) {
        errno = S_ISLNK(st.st_mode) ? EPERM : ENOTDIR;
        return -1;
    }
    return openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/*
 * A parent directory of the store, opened as fd and shown as the first len
 * characters of dir, can be trusted when nobody but root and the user can
 * change what its entries are: it belongs to one of them, and it is not
 * writable by group or others, unless sticky (/tmp). Anyone else could
 * swap the store, or the rest of the path, for a directory of theirs.
 */
static apr_status_t check_parent(int fd, const char *dir, int len, uid_t uid, char *err,
                                 apr_size_t errlen)
{
    struct stat st;
    char who[64];
    int e;

    if (fstat(fd, &st) != 0) {
        e = errno;
        apr_snprintf(err, errlen, "StapleStore %s: cannot check %.*s: %s", dir, len, dir,
                     strerror(e));
        return APR_FROM_OS_ERROR(e);
    }
    if (st.st_uid != 0 && st.st_uid != uid) {
        apr_snprintf(err, errlen,
                     "StapleStore %s: its parent directory %.*s belongs to %s, who "
                     "could swap the path: refused; chown root %.*s, or set "
                     "StapleStore to a directory whose parents belong to root",
                     dir, len, dir, user_name(st.st_uid, who, sizeof(who)), len, dir);
        return APR_EACCES;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
        apr_snprintf(err, errlen,
                     "StapleStore %s: its parent directory %.*s is writable by %s "
                     "(mode %04o, not sticky), who could swap the path: refused; "
                     "chmod go-w %.*s, or set StapleStore to a directory whose "
                     "parents belong to root",
                     dir, len, dir, (st.st_mode & S_IWOTH) ? "every user" : "its group",
                     (unsigned)(st.st_mode & 07777), len, dir);
        return APR_EACCES;
    }
    return APR_SUCCESS;
}

apr_status_t staple_store_prepare(const char *dir, uid_t uid, gid_t gid, int check_only,
                                  char *err, apr_size_t errlen)
{
    char *path, *name, *next, *save = NULL, who[64];
    const char *missing = NULL, *reached = "/";
    int fd, nfd, as_root = geteuid() == 0, e;
    struct stat st;
    apr_status_t rv = APR_SUCCESS;

    err[0] = '\0';
    if (dir[0] != '/' || (path = strdup(dir)) == NULL) {
        apr_snprintf(err, errlen, "StapleStore %s: an absolute path is needed", dir);
        return APR_EINVAL;
    }
    if ((fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rv = APR_FROM_OS_ERROR(errno);
        goto out;
    }
    if ((rv = check_parent(fd, dir, 1, uid, err, errlen)) != APR_SUCCESS) {
        goto out;
    }
    /* the parents, one component at a time */
    name = strtok_r(path, "/", &save);
    while (name && (next = strtok_r(NULL, "/", &save)) != NULL) {
        nfd = open_parent(fd, name, check_only);
        if (nfd == -2) {
            missing = dir;
            break;
        }
        if (nfd < 0) {
            e = errno;
            apr_snprintf(err, errlen,
                         "StapleStore %s: cannot use %s under %s: %s; make the parent "
                         "directories exist as directories (symbolic links only of "
                         "root), or set StapleStore to another directory",
                         dir, name, reached,
                         e == EPERM ? "a symbolic link not owned by "
                                      "root"
                                    : strerror(e));
            rv = APR_FROM_OS_ERROR(e);
            goto out;
        }
        close(fd);
        fd = nfd;
        if ((rv = check_parent(fd, dir, (int)(name - path + strlen(name)), uid, err,
                               errlen)) != APR_SUCCESS) {
            goto out;
        }
        reached = dir;
        name = next;
    }
    if (missing) {
        apr_snprintf(
            err, errlen,
            "StapleStore %s does not exist yet: startup creates it (0700, User %s) "
            "and its missing parent directories (0755)",
            dir, user_name(uid, who, sizeof(who)));
        goto out;
    }
    if (name == NULL) {
        apr_snprintf(err, errlen,
                     "StapleStore %s: not a directory to use; set StapleStore "
                     "to a directory of its own",
                     dir);
        rv = APR_EINVAL;
        goto out;
    }
    /* the store itself: what is opened is checked below, even when this
     * mkdirat made it (the name may have been swapped in between) */
    if (!check_only) {
        (void)mkdirat(fd, name, 0700);
    }
    nfd = openat(fd, name, DIR_OPEN);
    if (nfd < 0) {
        e = errno;
        if ((e == ELOOP || e == ENOTDIR) &&
            fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
            e = ELOOP; /* O_DIRECTORY says ENOTDIR for a link */
        }
        if (e == ENOENT && check_only) {
            apr_snprintf(err, errlen,
                         "StapleStore %s does not exist yet: startup creates it (0700, "
                         "User %s)",
                         dir, user_name(uid, who, sizeof(who)));
            goto out;
        }
        apr_snprintf(err, errlen,
                     "StapleStore %s %s; set StapleStore to a directory of its "
                     "own",
                     dir,
                     e == ELOOP     ? "is a symbolic link: refused, not followed"
                     : e == ENOTDIR ? "is not a directory"
                                    : strerror(e));
        rv = APR_FROM_OS_ERROR(e);
        goto out;
    }
    close(fd);
    fd = nfd;
    if (fstat(fd, &st) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
        goto out;
    }
    if (st.st_uid != uid && (!as_root || st.st_uid != 0)) {
        apr_snprintf(
            err, errlen,
            "StapleStore %s belongs to %s, not to User %s: it is not taken over; "
            "chown it to %s, remove it, or set StapleStore to another directory",
            dir, user_name(st.st_uid, who, sizeof(who)), user_name(uid, who + 32, 32),
            who + 32);
        rv = APR_EACCES;
        goto out;
    }
    if (st.st_uid != uid && (st.st_mode & (S_IWGRP | S_IWOTH))) {
        /* /tmp, /dev/shm: a directory others write into is not the
         * server's to take */
        apr_snprintf(err, errlen,
                     "StapleStore %s belongs to root and others can write to it (mode "
                     "%04o): a shared directory is not taken over; set StapleStore to a "
                     "directory of its own below it, which startup creates",
                     dir, (unsigned int)(st.st_mode & 07777));
        rv = APR_EACCES;
        goto out;
    }
    if (st.st_uid == 0 && uid != 0 && !dir_empty(fd)) {
        apr_snprintf(err, errlen,
                     "StapleStore %s belongs to root and is not empty: it is not taken "
                     "over; chown it to User %s, or empty it",
                     dir, user_name(uid, who, sizeof(who)));
        rv = APR_EACCES;
        goto out;
    }
    if (check_only) {
        if (st.st_uid != uid || (st.st_mode & 07777) != 0700) {
            apr_snprintf(err, errlen, "StapleStore %s: startup makes it 0700, User %s",
                         dir, user_name(uid, who, sizeof(who)));
        }
        goto out;
    }
    if ((st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
    } else if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
    }
    if (rv != APR_SUCCESS) {
        apr_snprintf(err, errlen, "StapleStore %s: cannot make it private to User %s: %s",
                     dir, user_name(uid, who, sizeof(who)),
                     strerror(APR_TO_OS_ERROR(rv)));
    }

out:
    if (rv != APR_SUCCESS && err[0] == '\0') {
        apr_snprintf(err, errlen, "StapleStore %s: %s", dir,
                     strerror(APR_TO_OS_ERROR(rv)));
    }
    if (fd >= 0) {
        close(fd);
    }
    free(path);
    return rv;
}
