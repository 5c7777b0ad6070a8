# Right-sized by default: 3,000 certificates in 3,000 name-based SSL virtual
# hosts of a server of its own (t/lib/StapleNode.pm), with StapleCache left
# at its default. Once each certificate has a response, every child is
# killed; the new children have no process copies and read each response
# from StapleCache, so each of 3,000 handshakes (one per name, SNI) must be
# stapled with a verified good response. A fixed 1 MiB shmcb evicted all
# but a few hundred. Then an explicit shmcb too small for them: the startup
# warning names the size to set.
#
# The leaves share one key and are made by t/bench/mkcerts.c; a real
# `openssl ocsp` of this test's own answers for them, behind
# t/bench/slow-proxy (which reads whole requests before it connects, so
# that a fetch cut short never wedges the responder); the handshakes are
# t/bench/handshake.c's.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use File::Copy qw(copy);
use File::Spec::Functions qw(catfile);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StapleProc qw(children_of free_port run_cmd spawn stop_pid tempdir wait_until);
use StapleResponder ();

my $N = 3000;
plan tests => 9;

my $dir = tempdir('scale');
my ($pki, $certs) = ("$dir/pki", "$dir/certs");
for my $d ($pki, $certs) {
    mkdir $d or die "mkdir $d: $!\n";
    chmod 0755, $d;
}
for my $f (qw(inter.pem inter.key ocsp.pem ocsp.key root.pem good.key)) {
    copy(pki_file($f), "$pki/$f") or die "copy $f: $!\n";
}
open my $idx, '>', "$pki/index.txt" or die "index.txt: $!\n";
close $idx;

# the tools, built from the tree
my $bench = catfile(Apache::Test::vars('top_dir'), 't', 'bench');
my @ssl = split ' ', `pkg-config --cflags --libs openssl`;
for my $tool (qw(mkcerts handshake)) {
    my ($rc, $out) = run_cmd(['cc', '-O2', '-o', "$dir/$tool", "$bench/$tool.c", @ssl,
                              '-lpthread'], timeout => 120, merge => 1);
    die "cannot build $tool:\n$out" if $rc;
}

my ($ocsp_port, $proxy_port) = (free_port(), free_port());
my ($rc, $out) = run_cmd(["$dir/mkcerts", "$pki/inter.pem", "$pki/inter.key",
                          "$pki/good.key", $N, "http://127.0.0.1:$proxy_port/", $certs,
                          "$pki/index.txt"], timeout => 120, merge => 1);
is($rc, 0, "$N leaves made") or diag($out);
system('chmod', '-R', 'a+rX', $certs);

my $ocsp = spawn(StapleResponder::ocsp_argv(port => $ocsp_port, minutes => 60),
                 dir => $pki, out => "$dir/ocsp.log");
my $proxy = spawn([$^X, "$bench/slow-proxy", '--listen', "127.0.0.1:$proxy_port",
                   '--backend', "127.0.0.1:$ocsp_port", '--max-seconds', 900],
                  out => "$dir/proxy.log");
END { local $?; stop_pid($_) for grep { $_ } $proxy, $ocsp }
my ($ready) = StapleResponder::wait_ocsp(pki => $pki, port => $proxy_port, pid => $ocsp,
                                         cert => '../certs/h1.pem', timeout => 20);
BAIL_OUT('the scale test responder does not answer') unless $ready;

my $port = free_port();
my $vhosts = join '', map { <<"V" } 2 .. $N;
<VirtualHost 127.0.0.1:$port>
    ServerName h$_.localhost
    SSLEngine on
    SSLCertificateFile "$certs/h$_.pem"
    SSLCertificateKeyFile "$pki/good.key"
    SSLSessionTickets off
</VirtualHost>
V
my $node = StapleNode->new(
    name  => 'scale',
    dir   => "$dir/server",
    port  => $port,
    cert  => { pem => "$certs/h1.pem", key => "$pki/good.key" },
    http  => 1,
    start_timeout => 180,
    directives => "StapleResponderTimeout 10\n",
    extra => $vhosts . qq{<Location "/staple-status">\n    SetHandler staple-status\n</Location>\n},
);

# the key: value figures of the status page
sub status_auto {
    my $r = $node->http_get('/staple-status?auto', timeout => 10);
    return { $r->{body} =~ /^(Staple\w+): (\d+)$/mg };
}

sub start_and_fill {
    my ($what) = @_;
    my $ok = eval { $node->start; 1 };
    ok($ok, "$what: the server with $N certificates starts") or diag($@);
    BAIL_OUT('cannot start the scale server') unless $ok;
    my $valid = wait_until(180, sub { (status_auto()->{StapleValid} // 0) >= $N }, 1);
    ok($valid, "$what: every certificate has a valid response")
        or diag(explain(status_auto()), $node->log_tail(10));
}

start_and_fill('defaults');
my @warned = $node->start_lines(qr/StapleCache .*too few/);
ok(!@warned, 'defaults: no warning about the size of StapleCache') or diag(@warned);

# every process new: none has a copy of any response
my @old = children_of($node->pid);
kill 'KILL', @old;
my %old = map { $_ => 1 } @old;
my $fresh = wait_until(30, sub {
    my @now = children_of($node->pid);
    return @now && !grep { $old{$_} } @now;
}, 0.1);
$fresh &&= $node->wait_ready(30);
ok($fresh, scalar(@old) . ' children killed, new ones answer')
    or diag($node->log_tail(10));

($rc, $out) = run_cmd(["$dir/handshake", '-p', $port, '-s', 'h%d.localhost', '-N', $N,
                       '-n', $N, '-c', 4, '-A', "$pki/root.pem", '-q', '-T', 300],
                      timeout => 400, merge => 1);
my %hs = $out =~ /\b(\w+)=(\d+)\b/g;
ok($rc == 0 && ($hs{ok} // 0) == $N && ($hs{stapled} // 0) == $N && ($hs{good} // 0) == $N,
   "$N handshakes, one per name, from the new children: each stapled, verified, good")
    or diag($out, explain(status_auto()));
is(status_auto()->{StapleHandshakesUnstapled}, 0, 'the status page counts none unstapled');
$node->stop;

# an explicit shmcb too small for them
$node->{directives} .= "StapleCache shmcb:staple(1048576)\n";
my $ok = eval { $node->start; 1 };
ok($ok, 'StapleCache shmcb:staple(1048576): the server starts') or diag($@);
my @w = $node->start_lines(qr/\[staple:warn\].*StapleCache shmcb:staple\(1048576\): 1048576 bytes are too few for the $N certificates.*StapleCache shmcb:staple\(\d+\)/);
ok(scalar @w, 'a startup warning names the size to set') or diag($node->log_tail(10));
$node->stop;
