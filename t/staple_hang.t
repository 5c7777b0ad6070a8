# A responder that never answers never delays a handshake: each completes
# quickly, without a staple.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;

my $N = 20;
plan tests => 4;

my $port = vhost_port('staple_hang');
my (@failed, @stapled);
my $slowest = 0;
for my $i (1 .. $N) {
    my $r = handshake($port, timeout => 5);
    $slowest = $r->{elapsed} if $r->{elapsed} > $slowest;
    push @failed, "#$i: " . ($r->{error} // '') unless $r->{ok};
    push @stapled, "#$i" if $r->{stapled};
}
diag(sprintf "slowest of %d handshakes to staple_hang: %.3f s", $N, $slowest);

ok(!@failed, "all $N handshakes complete") or diag(join "\n", @failed);
ok($slowest < 1, 'each in under 1 s');
ok(!@stapled, 'none stapled') or diag("stapled: @stapled");
ok(responder_count('hang') >= 1, 'the responder got at least one request for hang');
