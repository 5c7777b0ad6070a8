/*
 * Where the registry's fetch rounds run: once at startup in a child that
 * has become the server's User (the parent is root and must not parse
 * responder data), then in a mod_watchdog singleton that sleeps until the
 * next certificate is due. Also the StapleStore directory, made by root.
 */
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_allocator.h>
#include <apr_strings.h>

#include <httpd.h>
#include <http_log.h>
#include <ap_mpm.h>
#include <mod_watchdog.h>
#include <unixd.h>

#include "staple_store.h"
#include "mod_staple_private.h"

#define STAPLE_WATCHDOG "_staple_"

/* The longest the refresher sleeps: a round that finds nothing due costs a
 * loop over the certificates' slots in shared memory. */
#define STAPLE_REFRESHER_TICK apr_time_from_sec(1)

/* ------------------------------------------------------------------ */
/* StapleStore                                                         */

/* The user and group whose store it is: User and Group when started as
 * root, else whoever runs the server. */
static void store_owner(uid_t *uid, gid_t *gid)
{
    *uid = geteuid() == 0 ? ap_unixd_config.user_id : geteuid();
    *gid = geteuid() == 0 ? ap_unixd_config.group_id : getegid();
}

const char *staple_store_setup(server_rec *s, const char *dir)
{
    char err[1024];
    uid_t uid;
    gid_t gid;

    store_owner(&uid, &gid);
    if (staple_store_prepare(dir, uid, gid, 0, err, sizeof(err)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "%s. Responses are kept in memory only, and fetched again after "
                     "a restart",
                     err);
        return NULL;
    }
    return dir;
}

void staple_store_test(server_rec *s, const char *dir)
{
    char err[1024];
    uid_t uid;
    gid_t gid;
    apr_status_t rv;

    store_owner(&uid, &gid);
    rv = staple_store_prepare(dir, uid, gid, 1, err, sizeof(err));
    if (err[0]) {
        ap_log_error(APLOG_MARK, rv == APR_SUCCESS ? APLOG_NOTICE : APLOG_WARNING, 0, s,
                     "%s%s", err,
                     rv == APR_SUCCESS ? ""
                                       : ". Startup would go on with responses in "
                                         "memory only");
    }
}

/* ------------------------------------------------------------------ */
/* Startup: first responses before the first handshake                 */

static int become_server_user(server_rec *s)
{
    if (geteuid() != 0) {
        return 0;
    }
    if (setgid(ap_unixd_config.group_id) != 0 ||
        initgroups(ap_unixd_config.user_name, ap_unixd_config.group_id) != 0 ||
        setuid(ap_unixd_config.user_id) != 0 || (setuid(0) == 0 && geteuid() == 0)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s,
                     "cannot switch to User %s for the startup OCSP fetch; responses "
                     "will come from the background refresher",
                     ap_unixd_config.user_name);
        return -1;
    }
    return 0;
}

/* Set in the startup child when its time is up: the round stops taking up
 * certificates, and the child ends between writes, not in one. */
static volatile sig_atomic_t startup_stop;

static void on_term(int sig)
{
    (void)sig;
    startup_stop = 1;
}

int staple_startup_stopping(void)
{
    return startup_stop;
}

/* Wait for the startup child until limit; 1 when it ended. */
static int wait_child(pid_t pid, int *status, apr_time_t limit, server_rec *s)
{
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid) {
            return 1;
        }
        if (w < 0 && errno != EINTR) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s,
                         "startup OCSP fetch (pid %ld): cannot wait for it", (long)pid);
            return -1;
        }
        if (apr_time_now() > limit) {
            return 0;
        }
        apr_sleep(apr_time_from_msec(10));
    }
}

void staple_startup_fetch(staple_reg_t *reg, staple_caches_t *caches, server_rec *s,
                          apr_interval_time_t timeout, apr_pool_t *ptemp)
{
    apr_time_t start = apr_time_now();
    apr_time_t deadline = start + timeout;
    apr_time_t limit = deadline + apr_time_from_sec(1);
    int status = 0, done;
    pid_t pid;

    pid = fork();
    if (pid < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s,
                     "cannot fork for the startup OCSP fetch");
        return;
    }
    if (pid == 0) {
        struct sigaction sa;
        apr_pool_t *p;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_term;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        apr_pool_create(&p, ptemp);
        if (become_server_user(s) != 0 ||
            staple_caches_child_init(caches, p) != APR_SUCCESS) {
            _exit(1);
        }
        staple_reg_refresh(reg, deadline, 0, p);
        _exit(0);
    }
    done = wait_child(pid, &status, limit, s);
    if (done < 0) {
        return;
    }
    if (!done) {
        /* asked to stop first, so that it ends between two writes to the
         * caches and the store; killed when that does not come soon */
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "startup OCSP fetch (pid %ld) did not finish within "
                     "StapleStartupTimeout: stopped, going on without it",
                     (long)pid);
        kill(pid, SIGTERM);
        if (wait_child(pid, &status, apr_time_now() + apr_time_from_sec(1), s) == 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        }
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        ap_log_error(
            APLOG_MARK, APLOG_INFO, 0, s,
            "startup OCSP fetch (pid %ld) exited with status 0 after %" APR_TIME_T_FMT
            " ms",
            (long)pid, apr_time_as_msec(apr_time_now() - start));
    } else {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "startup OCSP fetch (pid %ld) %s %d after %" APR_TIME_T_FMT
                     " ms: the background refresher fetches the responses",
                     (long)pid,
                     WIFEXITED(status) ? "exited with status" : "died of signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                     apr_time_as_msec(apr_time_now() - start));
    }
}

/* ------------------------------------------------------------------ */
/* The refresher: a watchdog singleton                                 */

static APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) * wd_get_instance;
static APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) * wd_register_callback;
static APR_OPTIONAL_FN_TYPE(ap_watchdog_set_callback_interval) * wd_set_interval;

typedef struct {
    staple_reg_t *reg;
    server_rec *s;
    ap_watchdog_t *watchdog;
    const apr_array_header_t *event_cmd;
    apr_interval_time_t event_timeout;
    staple_events_t *events; /* made in the process running the refresher */
} refresher_t;

/* The runner of StapleEventCmd, made in the process that runs the
 * refresher. The watchdog's pools live for one call, and the programs
 * outlive it: their pool has an allocator of its own. */
static staple_events_t *events_of(refresher_t *rf)
{
    apr_allocator_t *alloc;
    apr_pool_t *p;

    if (rf->events == NULL && apr_allocator_create(&alloc) == APR_SUCCESS) {
        if (apr_pool_create_ex(&p, NULL, NULL, alloc) != APR_SUCCESS) {
            apr_allocator_destroy(alloc);
            return NULL;
        }
        apr_allocator_owner_set(alloc, p);
        apr_pool_tag(p, "staple_events");
        rf->events = staple_events_make(p, rf->s, rf->event_cmd, rf->event_timeout);
    }
    return rf->events;
}

/* One round with its own allocator, freed with it: the first round after a
 * cold start with thousands of certificates is much larger than the next
 * ones, and its memory should not stay with the process. Returns the
 * interval until the next round. */
static apr_interval_time_t round_once(refresher_t *rf, apr_pool_t *wpool)
{
    apr_allocator_t *alloc;
    apr_time_t next, now;
    apr_array_header_t *events;
    apr_pool_t *p;

    if (apr_allocator_create(&alloc) != APR_SUCCESS) {
        return apr_time_from_sec(1);
    }
    apr_pool_create_ex(&p, wpool, NULL, alloc);
    apr_allocator_owner_set(alloc, p);
    apr_pool_tag(p, "staple_refresher");
    next = staple_reg_refresh(rf->reg, 0, 1, p);
    events = staple_reg_take_events(rf->reg, p);
    if (events_of(rf)) {
        staple_events_run(rf->events, events);
    }
    apr_pool_destroy(p);

    now = apr_time_now();
    /* sleep until the earliest due time, but look again within a second:
     * a refresh asked for on the status page (another process) is done at
     * once, and event programs are started and collected */
    if (next > now + STAPLE_REFRESHER_TICK) {
        next = now + STAPLE_REFRESHER_TICK;
    }
    return next > now + apr_time_from_msec(200) ? next - now : apr_time_from_msec(200);
}

static apr_status_t refresher(int state, void *data, apr_pool_t *wpool)
{
    refresher_t *rf = data;

    switch (state) {
    case AP_WATCHDOG_STATE_STARTING:
        /* the schedule in shared memory carries over from the startup
         * fetch or from the process that ran the refresher before */
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, rf->s,
                     "OCSP refresher started in process %ld", (long)getpid());
        break;

    case AP_WATCHDOG_STATE_RUNNING:
        wd_set_interval(rf->watchdog, round_once(rf, wpool), rf, refresher);
        break;

    case AP_WATCHDOG_STATE_STOPPING:
        break;
    }
    /* anything else would stop the watchdog calling us */
    return APR_SUCCESS;
}

apr_status_t staple_refresher_start(staple_reg_t *reg, server_rec *s,
                                    const staple_mod_conf_t *mc, apr_pool_t *pconf)
{
    refresher_t *rf = apr_pcalloc(pconf, sizeof(*rf));
    apr_status_t rv;

    rf->reg = reg;
    rf->s = s;
    rf->event_cmd = mc->event_cmd;
    rf->event_timeout = staple_conf_event_timeout(mc);
    wd_get_instance = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    wd_register_callback = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    wd_set_interval = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_set_callback_interval);
    if (!wd_get_instance || !wd_register_callback || !wd_set_interval) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "mod_watchdog is not loaded: mod_staple needs it to renew OCSP "
                     "responses (LoadModule watchdog_module modules/mod_watchdog.so)");
        return APR_EGENERAL;
    }
    rv = wd_get_instance(&rf->watchdog, STAPLE_WATCHDOG, 0, 1, pconf);
    if (rv == APR_SUCCESS) {
        rv = wd_register_callback(rf->watchdog, apr_time_from_sec(1), rf, refresher);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot set up the OCSP refresher watchdog");
    }
    return rv;
}
