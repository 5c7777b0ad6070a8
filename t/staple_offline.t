# Offline delivery, on a server of its own (t/lib/StapleNode.pm) with a
# StapleStore of its own and two certificates:
#
#   refuse-offb  its responder closes every connection: the server cannot
#                fetch (a host without outbound HTTP). A response fetched
#                elsewhere with `openssl ocsp -respout`, copied into the
#                store as <id>.der, is stapled within a minute.
#   off-a        fetched at startup; a response older than that one, copied
#                into the store, is not taken: the newer one stays.
#   off-c        fetched at startup; a FIFO put in place of its file (a read
#                of it would block) is reported and passed over, and the
#                response held stays stapled.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use File::Copy ();
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(run_cmd tempdir wait_until);
use Time::HiRes qw(time);

plan tests => 11;

my $dir = tempdir('offline');
my $b = make_leaf($dir, 'refuse-offb');
my $a = make_leaf($dir, 'off-a');
my $c = make_leaf($dir, 'off-c');
my $store = "$dir/store";

# What an operator runs on a host that reaches the responder (the README's
# recipe): the response into a file, then into the store by rename.
sub fetch_to {
    my ($leaf, $file) = @_;
    my ($rc, $out) = run_cmd(['openssl', 'ocsp', '-issuer', pki_file('inter.pem'),
                              '-cert', $leaf->{crt}, '-CAfile', pki_file('root.pem'),
                              '-url', 'http://127.0.0.1:' . proxy_port() . '/offline-src/',
                              '-respout', $file], merge => 1);
    return $rc == 0 && $out =~ /: good/;
}
sub deliver {
    my ($file, $leaf) = @_;
    my $tmp = "$store/.$leaf->{id}.der.new";
    File::Copy::copy($file, $tmp) or return 0;
    chmod 0644, $tmp;
    return rename $tmp, "$store/$leaf->{id}.der";
}

# an off-a response made before the server's own, a second earlier at least
ok(fetch_to($a, "$dir/a-old.der"), 'off-a: a response fetched elsewhere, to be older');
my $t = time;
wait_until(3, sub { time > $t + 1.1 }, 0.1);

# no retry of refuse-offb while the test waits: only the store's scan
my $node = StapleNode->new(name => 'offline', dir => "$dir/server", cert => $a,
                           certs => [$b, $c], store => $store,
                           directives => "StapleRetryDelay 300\n");
my $ok = eval { $node->start; 1 };
ok($ok, 'server starts') or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;
my $bport = ($node->ports_of('refuse-offb'))[0];
ok(!handshake($bport)->{stapled}, 'refuse-offb: no staple, its responder cannot be reached');
ok(staple_good($node->handshake), 'off-a: stapled from its own fetch');

ok(fetch_to($b, "$dir/b.der"), 'refuse-offb: a response fetched elsewhere (openssl ocsp -respout)');
ok(deliver("$dir/b.der", $b) && deliver("$dir/a-old.der", $a), 'both copied into StapleStore');
my $cport = ($node->ports_of('off-c'))[0];
ok(staple_good(handshake($cport)) && unlink("$store/$c->{id}.der")
   && system('mkfifo', '-m', '0644', "$store/$c->{id}.der") == 0,
   'off-c: stapled, and its file in StapleStore replaced by a FIFO');
my $t0 = time;
my $got = wait_until(62, sub { staple_good(handshake($bport)) }, 0.5);
ok($got, sprintf 'refuse-offb: stapled %.0f s after the copy', time - $t0)
    or diag($node->log_tail(10));
ok(scalar $node->log_lines(qr/\[staple:info\].*OCSP for CN=refuse-offb\.localhost \(serial \w+\): good response loaded from \Q$store\E\/$b->{id}\.der/),
   'the log says where it came from') or diag($node->log_tail(10));
ok(wait_until(5, sub { scalar $node->log_lines(qr/OCSP for CN=off-a\.localhost: the response put into StapleStore .* is not newer than the one held/) }, 0.1)
   && staple_good($node->handshake),
   'off-a: the older copy is not taken, the newer response stays stapled')
    or diag($node->log_tail(10));
ok(wait_until(5, sub { scalar $node->log_lines(qr/\[staple:warn.*StapleStore: cannot read \Q$store\E\/$c->{id}\.der for CN=off-c\.localhost \(not a regular file\): ignoring it/) }, 0.1)
   && staple_good(handshake($cport)),
   'off-c: the FIFO is reported (not a regular file) and passed over, the response held stays stapled')
    or diag($node->log_tail(10));
$node->stop;
