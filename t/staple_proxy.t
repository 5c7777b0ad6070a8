# StapleProxy: responder requests go through an HTTP proxy.  A real
# tinyproxy, started here on a free loopback port with its own
# configuration (foreground, -d; stopped by PID), sits between a server of
# our own (t/lib/StapleNode.pm) and the suite's OCSP proxy:
#
#   - the first handshake is stapled (good, verified), tinyproxy's log shows
#     the request for the certificate's responder URL, and the responder got
#     exactly one request for it;
#   - the environment's proxy variables change nothing: with no_proxy
#     naming the responder's host, the request still goes through
#     StapleProxy (README: "the environment's proxy variables are never
#     used");
#   - StapleProxy pointing at a closed port: no staple, no request reaches
#     the responder, and a warn line gives the connect error.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(alive free_port port_open slurp spawn stop_pid tempdir wait_until);
use File::Spec::Functions qw(catfile);

my $tinyproxy = (grep { -x } map { catfile($_, 'tinyproxy') } split /:/, $ENV{PATH})[0];
unless ($tinyproxy) {
    plan skip_all => 'tinyproxy is not installed (Debian package tinyproxy)';
}

my $dir = tempdir('proxy');

# --- tinyproxy ----------------------------------------------------------------------

my $tp_dir = catfile($dir, 'tinyproxy');
mkdir $tp_dir or die "mkdir $tp_dir: $!\n";
chmod 0777, $tp_dir;    # as root, tinyproxy writes its log as nobody
my $tp_port = free_port();
my $tp_log  = catfile($tp_dir, 'tinyproxy.log');
my $tp_conf = catfile($tp_dir, 'tinyproxy.conf');
{
    open my $fh, '>', $tp_conf or die "$tp_conf: $!\n";
    print $fh "User nobody\nGroup nogroup\n" if $> == 0;
    print $fh <<"EOF";
Port $tp_port
Listen 127.0.0.1
Timeout 10
LogFile "$tp_log"
LogLevel Info
MaxClients 20
Allow 127.0.0.1
EOF
    close $fh;
}

# SIGTERM, SIGKILL after 5 s; true when SIGTERM was enough
my $tp_pid;
sub tp_stop {
    my $pid = $tp_pid or return;
    undef $tp_pid;
    return stop_pid($pid, timeout => 5);
}
END { local $?; tp_stop() }

$tp_pid = spawn([$tinyproxy, '-d', '-c', $tp_conf], out => catfile($dir, 'tinyproxy.out'));
my $tp_up = wait_until(10, sub {
    return -1 unless alive($tp_pid);
    return port_open($tp_port);
});
unless ($tp_up && $tp_up != -1) {
    undef $tp_pid if $tp_up;
    plan skip_all => 'tinyproxy did not start: ' . (slurp(catfile($dir, 'tinyproxy.out')) // '')
                   . (slurp($tp_log) // '');
}

plan tests => 17;
pass("tinyproxy (pid $tp_pid) listens on 127.0.0.1:$tp_port");

# tinyproxy's log lines for requests to the responder URL of certificate NAME
sub tp_requests {
    my ($name) = @_;
    my $url = 'http://127.0.0.1:' . proxy_port() . "/$name/";
    return grep { /Request \(file descriptor \d+\): (?:GET|POST) \Q$url\E/ }
           split /\n/, slurp($tp_log) // '';
}

# --- through tinyproxy ------------------------------------------------------------------

{
    my $leaf = make_leaf($dir, 'px-good');
    my $node = StapleNode->new(name => 'proxy', dir => "$dir/proxy", cert => $leaf,
                               directives => "StapleProxy http://127.0.0.1:$tp_port/\n");
    my $c0 = responder_count($leaf->{name});
    my $ok = eval { $node->start; 1 };
    ok($ok, 'server with StapleProxy (tinyproxy) starts') or diag($@);
    my $r = $node->handshake;
    ok(staple_good($r), 'first handshake stapled (good, verified)')
        or diag(explain($r), $node->log_tail(20));
    my @req = tp_requests($leaf->{name});
    diag("tinyproxy: $_") for @req;
    is(scalar @req, 1, "tinyproxy's log shows the request for the responder URL");
    is(responder_count($leaf->{name}) - $c0, 1, 'the responder got exactly one request');
    my @info = $node->log_lines(qr/OCSP for CN=px-good\.localhost .*: good in [\d.]+ ms/);
    ok(@info, 'info line for the fetch') or diag($node->log_tail(20));
    ok($node->stop, 'server stops cleanly');
}

# --- no_proxy in the environment changes nothing ----------------------------------------

{
    my $leaf = make_leaf($dir, 'px-noproxy');
    my $node = StapleNode->new(name => 'noproxy', dir => "$dir/noproxy", cert => $leaf,
                               directives => "StapleProxy http://127.0.0.1:$tp_port/\n");
    my $c0 = responder_count($leaf->{name});
    my $ok = eval {
        # httpd (and so the module's fetches) inherits this environment
        local $ENV{no_proxy} = '127.0.0.1,localhost';
        local $ENV{NO_PROXY} = '127.0.0.1,localhost';
        $node->start;
        1;
    };
    ok($ok, 'server with StapleProxy starts with no_proxy=127.0.0.1 in its environment')
        or diag($@);
    ok(staple_good($node->handshake), 'first handshake stapled');
    my @req = tp_requests($leaf->{name});
    is(scalar @req, 1, 'the request still went through StapleProxy (no_proxy ignored)')
        or diag($node->log_tail(10));
    is(responder_count($leaf->{name}) - $c0, 1, 'the responder got exactly one request');
    ok($node->stop, 'server stops cleanly');
}

# --- a proxy that is not there ------------------------------------------------------------

{
    my $closed = free_port();    # nothing listens there
    my $leaf = make_leaf($dir, 'px-closed');
    my $node = StapleNode->new(name => 'closed', dir => "$dir/closed", cert => $leaf,
                               directives => "StapleProxy http://127.0.0.1:$closed/\n");
    my $c0 = responder_count($leaf->{name});
    my $ok = eval { $node->start; 1 };
    ok($ok, 'server with StapleProxy on a closed port starts') or diag($@);
    my $r = $node->handshake;
    ok($r->{ok} && !$r->{stapled}, 'handshake completes without a staple')
        or diag(explain($r));
    my @warn;
    wait_until(5, sub {
        @warn = $node->log_lines(qr/\[staple:warn\].*OCSP for CN=px-closed\.localhost .*fetch failed/);
    });
    diag("log: $_") for @warn;
    ok(@warn && $warn[0] =~ /Couldn't connect to server|Failed to connect|Connection refused/,
       'a warn line with the connect error') or diag($node->log_tail(20));
    ok(responder_count($leaf->{name}) == $c0 && !tp_requests($leaf->{name}),
       'no request reached tinyproxy or the responder');
    $node->stop;
}

ok(tp_stop(), 'tinyproxy stops on SIGTERM');
