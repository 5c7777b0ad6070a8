package StapleResponder;
# Is an OCSP responder ready?  One probe each for the two responders the
# tests and scripts start:
#
#   ocsp_ready(pki => DIR, port => N)    a real `openssl ocsp` query for
#                                        DIR/good.crt answers "good"
#   wait_ocsp(pki => DIR, port => N, pid => P, timeout => S)   the same, polled
#   proxy_ready($port)                   t/bin/ocsp-proxy answers GET /_ping
#   proxy_set_mode($port, NAME, MODE)    its behaviour for NAME (or 'default')
#
# and the command lines that start them (for StapleProc::spawn):
#
#   ocsp_argv(port => N, minutes => M, index => FILE)   `openssl ocsp` answering
#       from a directory with scripts/mkpki's inter.pem, ocsp.pem and ocsp.key
#   proxy_argv(port => N, backend => M, log => FILE, ...)   t/bin/ocsp-proxy
#
# Never a bare TCP connect to `openssl ocsp`: one that sends nothing wedges
# it at 100 % CPU (OpenSSL 3.0).  Only core modules and StapleProc: used by
# t/TEST.PL before any Apache::Test configuration exists, and by the
# scripts (scripts/lib.sh).
use strict;
use warnings;

use Cwd ();
use File::Basename ();
use File::Spec::Functions qw(catfile);
use StapleProc qw(alive http_get run_cmd wait_until);

# ocsp_ready(pki => DIR, port => N, cert => FILE, timeout => S) ->
# ($ok, $output): asks 127.0.0.1:N about DIR/FILE (default good.crt, issued
# by DIR/inter.pem under DIR/root.pem, as scripts/mkpki makes them); $ok when
# the query succeeds and the answer is "good".  Bounded: openssl's own
# -timeout S (default 5), and run_cmd's limit a little later.
sub ocsp_ready {
    my (%o) = @_;
    my $dir = $o{pki};
    my $timeout = $o{timeout} || 5;
    my ($rc, $out) = run_cmd(['openssl', 'ocsp', '-issuer', catfile($dir, 'inter.pem'),
                              '-cert', catfile($dir, $o{cert} || 'good.crt'),
                              '-CAfile', catfile($dir, 'root.pem'),
                              '-url', "http://127.0.0.1:$o{port}/", '-timeout', $timeout],
                             timeout => $timeout + 5, merge => 1);
    return ($rc == 0 && $out =~ /: good\b/ ? 1 : 0, $out);
}

# wait_ocsp(%opt as ocsp_ready, pid => P, timeout => S) -> ($ok, $output):
# ocsp_ready until it says yes, for at most S seconds (default 10); gives
# up at once when process P (the responder, if given) is gone.  $output is
# the last query's.
sub wait_ocsp {
    my (%o) = @_;
    my $limit = delete $o{timeout} || 10;
    my $pid = delete $o{pid};
    my ($ok, $out) = (0, '');
    wait_until($limit, sub {
        if ($pid && !alive($pid)) {
            $out = "the responder (pid $pid) exited\n";
            return -1;
        }
        ($ok, $out) = ocsp_ready(%o, timeout => 2);
        return $ok;
    }, 0.1);
    return ($ok, $out);
}

# The argv of `openssl ocsp` run in a scripts/mkpki directory: it answers on
# port N for the certificates in FILE (default index.txt), signed by the
# delegated responder ocsp.pem, with responses valid M minutes.
sub ocsp_argv {
    my (%o) = @_;
    return ['openssl', 'ocsp', '-index', $o{index} || 'index.txt', '-port', $o{port},
            qw(-rsigner ocsp.pem -rkey ocsp.key -CA inter.pem -nmin), $o{minutes},
            '-ignore_err'];
}

# Does t/bin/ocsp-proxy on 127.0.0.1:$port answer GET /_ping with "ok"?
sub proxy_ready {
    my ($port) = @_;
    my $r = http_get($port, '/_ping', timeout => 2);
    return $r->{status} == 200 && $r->{body} =~ /^ok\n/ ? 1 : 0;
}

# The argv of t/bin/ocsp-proxy on 127.0.0.1:PORT in front of the responder
# on 127.0.0.1:BACKEND (see its header for the options):
#   port, backend, log      required
#   max_seconds             its lifetime (default 600)
#   pki                     the PKI directory, for the modes that sign
#   modes                   [ "NAME=MODE", ... ]
#   kill_on_exit            pid to send SIGTERM when it exits (the backend)
#   save                    file of the responses relayed from the backend
sub proxy_argv {
    my (%o) = @_;
    my $proxy = Cwd::abs_path(catfile(File::Basename::dirname(__FILE__), '..', 'bin',
                                      'ocsp-proxy'));
    return [$^X, $proxy, '--listen', "127.0.0.1:$o{port}",
            '--backend', "127.0.0.1:$o{backend}", '--log', $o{log},
            '--max-seconds', $o{max_seconds} || 600,
            (defined $o{pki} ? ('--pki', $o{pki}) : ()),
            (map { ('--mode', $_) } @{ $o{modes} || [] }),
            (defined $o{kill_on_exit} ? ('--kill-on-exit', $o{kill_on_exit}) : ()),
            (defined $o{save} ? ('--save', $o{save}) : ())];
}

# Set the proxy's behaviour for NAME (see t/bin/ocsp-proxy), or 'default'.
sub proxy_set_mode {
    my ($port, $name, $mode) = @_;
    return http_get($port, "/_mode/$name/$mode", timeout => 2)->{status} == 200 ? 1 : 0;
}

1;
