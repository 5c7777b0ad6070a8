# shellcheck shell=bash
# scripts/lib.sh: shared by scripts/test, scripts/demo, scripts/bench and
# t/bench (sourced, not run).
#
# Provides:
#   staple_top                 absolute path of the repository's top directory
#   staple_ensure_packages [--no-install] [PACKAGE...]
#                              install missing Debian packages (root) or name them
#   staple_build               autoreconf (when needed), ./configure, make
#   staple_make_var NAME       a variable of the generated Makefile (APXS, HTTPD, ...)
#   staple_say / staple_die    messages prefixed with the script's name
#   staple_load_modules HTTPD LIBEXECDIR NAME...
#                              LoadModule lines, except for compiled-in modules
#   staple_run_group           the group of User nobody: nogroup, else nobody
#   staple_start_ocsp PKI PORT MINUTES LIFETIME LOG
#                              openssl ocsp on PKI's index in the background
#                              (its pid in staple_ocsp_pid)
# and, through the helpers of t/lib (StapleProc, StapleResponder), the same
# code the tests use:
#   staple_perl ARGS...        perl with t/lib on its path
#   staple_free_ports N        N distinct free TCP ports, one per line
#   staple_child_pids PID      the direct children of PID, one per line
#   staple_wait_gone PID SECS  wait for PID to exit; SIGKILL it after SECS
#   staple_wait_port PORT SECS [PID [FILE]]
#                              wait until 127.0.0.1:PORT accepts a connection
#                              (and FILE is not empty), giving up when PID exits
#   staple_wait_ocsp PKI PORT PID
#                              wait until the responder answers "good" for
#                              PKI/good.crt (a real query); prints its answer

# Everything needed to build mod_staple and to run every test and the demo on
# Debian 12 (bookworm) or a close derivative.
STAPLE_DEB_PACKAGES=(
    build-essential autoconf automake libtool pkg-config
    apache2 apache2-dev apache2-ssl-dev libapache2-mod-perl2
    libcurl4-openssl-dev libssl-dev openssl curl
    libnet-ssleay-perl libio-socket-ssl-perl libhttp-daemon-perl
    redis-server memcached faketime tinyproxy
    clang libclang-rt-14-dev
    debhelper lintian
    prometheus gnutls-bin libnss3-tools firefox-esr openjdk-17-jdk-headless chromium
    nginx-light apache2-utils
)

STAPLE_PROG=${STAPLE_PROG:-$(basename "$0")}

staple_say()
{
    printf '%s: %s\n' "$STAPLE_PROG" "$*"
}

staple_die()
{
    printf '%s: error: %s\n' "$STAPLE_PROG" "$*" >&2
    exit 1
}

staple_top()
{
    (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
}

# Print the packages named (default: STAPLE_DEB_PACKAGES) that are not installed.
staple_missing_packages()
{
    local pkg status
    [ $# -gt 0 ] || set -- "${STAPLE_DEB_PACKAGES[@]}"
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
        case $status in
        ii*) ;;
        *) printf '%s\n' "$pkg" ;;
        esac
    done
}

# staple_ensure_packages [--no-install] [PACKAGE...]
# The packages named, or else STAPLE_DEB_PACKAGES: as root, installs what is
# missing with apt-get; otherwise (or with --no-install) names what is
# missing and returns 1. On a system without dpkg it only warns: the build
# will tell what it lacks.
staple_ensure_packages()
{
    local no_install=${1:-} missing policy_rc_d=/usr/sbin/policy-rc.d created_policy=
    [ $# -eq 0 ] || shift
    local wanted=("$@")
    [ ${#wanted[@]} -gt 0 ] || wanted=("${STAPLE_DEB_PACKAGES[@]}")
    if ! command -v dpkg-query >/dev/null 2>&1; then
        staple_say "no dpkg-query: not a Debian system, not checking packages" \
            "(needed: ${wanted[*]} or their equivalents)"
        return 0
    fi
    mapfile -t missing < <(staple_missing_packages "${wanted[@]}")
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    if [ "$no_install" = --no-install ] || [ "$(id -u)" -ne 0 ]; then
        staple_say "missing Debian packages: ${missing[*]}"
        staple_say "install them with: apt-get install --no-install-recommends ${missing[*]}"
        return 1
    fi
    staple_say "installing missing Debian packages: ${missing[*]}"
    # The packages are needed for their files, not their services: keep
    # apache2, redis-server and memcached from being started by the
    # installation (the tests start their own instances on free ports).
    if [ ! -e "$policy_rc_d" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc_d" && chmod 755 "$policy_rc_d" &&
            created_policy=yes
    fi
    local rc=0
    apt-get update || rc=$?
    if [ "$rc" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            "${missing[@]}" || rc=$?
    fi
    if [ -n "$created_policy" ]; then
        rm -f "$policy_rc_d"
    fi
    if [ "$rc" -ne 0 ]; then
        staple_say "apt-get failed (exit $rc)"
        return 1
    fi
    mapfile -t missing < <(staple_missing_packages "${wanted[@]}")
    if [ "${#missing[@]}" -ne 0 ]; then
        staple_say "still missing after apt-get: ${missing[*]}"
        return 1
    fi
    return 0
}

# staple_build: in the repository's top directory, regenerate the build system
# when configure is missing or older than its sources, run ./configure with
# $STAPLE_CONFIGURE_ARGS and make. Returns non-zero on the first failure (it is
# written to work inside `if`, where set -e does not apply).
staple_build()
{
    local top
    top=$(staple_top)
    cd "$top" || return 1
    if [ ! -x configure ] || [ configure.ac -nt configure ] ||
        [ ! -f Makefile.in ] || [ Makefile.am -nt Makefile.in ]; then
        staple_say "autoreconf -fi"
        autoreconf -fi || return 1
    fi
    staple_say "./configure ${STAPLE_CONFIGURE_ARGS:-}"
    # shellcheck disable=SC2086 # STAPLE_CONFIGURE_ARGS is a list of words
    ./configure ${STAPLE_CONFIGURE_ARGS:-} || return 1
    staple_say "make -j${STAPLE_JOBS:-2}"
    make -j"${STAPLE_JOBS:-2}" || return 1
}

# staple_make_var NAME: the value of NAME in the generated Makefile.
staple_make_var()
{
    sed -n "s|^$1 = *||p" "$(staple_top)/Makefile" | head -n 1
}

# staple_load_modules HTTPD LIBEXECDIR NAME...: a LoadModule line for each
# module NAME (mpm_event, ssl, ...) that HTTPD does not have compiled in.
staple_load_modules()
{
    local httpd=$1 libexecdir=$2 builtin name
    shift 2
    builtin=$("$httpd" -l)
    for name in "$@"; do
        if ! grep -q "mod_$name\\.c" <<<"$builtin"; then
            echo "LoadModule ${name}_module \"$libexecdir/mod_$name.so\""
        fi
    done
}

# staple_run_group: the group for "User nobody" (Debian: nogroup).
staple_run_group()
{
    if getent group nogroup >/dev/null 2>&1; then echo nogroup; else echo nobody; fi
}

# staple_start_ocsp PKI PORT MINUTES LIFETIME LOG: openssl ocsp answering
# for PKI (scripts/mkpki's files) on PORT, responses valid MINUTES, the
# process bounded to LIFETIME seconds, output in LOG; staple_ocsp_pid is
# the pid to stop (its `timeout` wrapper, which passes SIGTERM on).
staple_start_ocsp()
{
    (cd "$1" && exec timeout -s TERM "$4" openssl ocsp -index index.txt -port "$2" \
        -rsigner ocsp.pem -rkey ocsp.key -CA inter.pem -nmin "$3") >"$5" 2>&1 &
    staple_ocsp_pid=$!
}

# --- the helpers of t/lib ----------------------------------------------------------

staple_perl()
{
    perl -I"$(staple_top)/t/lib" "$@"
}

# staple_free_ports N: N distinct TCP ports free on every interface, from
# the scripts' range (StapleProc::free_port).
staple_free_ports()
{
    staple_perl -MStapleProc -e 'print "$_\n" for StapleProc::free_ports($ARGV[0], "script")' \
        "${1:-1}"
}

staple_child_pids()
{
    staple_perl -MStapleProc -e 'print "$_\n" for StapleProc::children_of($ARGV[0])' "$1"
}

staple_wait_gone()
{
    staple_perl -MStapleProc -e 'StapleProc::wait_gone(@ARGV)' "$1" "$2"
}

staple_wait_port()
{
    staple_perl -MStapleProc -e '
        my ($port, $secs, $pid, $file) = @ARGV;
        my $up = StapleProc::wait_until($secs, sub {
            return -1 if $pid && !StapleProc::alive($pid);
            return (!$file || -s $file) && StapleProc::port_open($port);
        }, 0.05);
        exit($up && $up != -1 ? 0 : 1);' "$1" "$2" "${3:-}" "${4:-}"
}

staple_wait_ocsp()
{
    staple_perl -MStapleResponder -e '
        my ($ok, $out) = StapleResponder::wait_ocsp(pki => $ARGV[0], port => $ARGV[1],
                                                    pid => $ARGV[2], timeout => 10);
        print $out;
        exit !$ok;' "$1" "$2" "$3"
}
