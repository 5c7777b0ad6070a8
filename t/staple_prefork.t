# Many full handshakes from parallel clients, spread over the server's
# processes: every one is stapled (verified, good), and the responder was
# asked only once for the certificate.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleLoad ();
use StapleProc qw(wait_until);

my $CLIENTS = 8;
my $PER_CLIENT = 25;
my $TOTAL = $CLIENTS * $PER_CLIENT;
my $prefork = (Apache::Test::vars('staple_mpm') // '') eq 'prefork';

plan tests => 4 + ($prefork ? 1 : 0);

if ($prefork) {
    # StartServers 8 / MinSpareServers 8: give the parent a moment if it is
    # still spawning
    wait_until(10, sub { server_children() >= 8 });
    my @kids = server_children();
    diag(scalar(@kids) . " httpd children under prefork");
    ok(@kids >= 8, 'at least 8 httpd children run');
}

my $sum = StapleLoad::load_collect(
    StapleLoad::load_start(vhost_port('staple_good'), clients => $CLIENTS,
                           count => $PER_CLIENT));
diag(sprintf "%d handshakes from %d clients in %.2f s", $sum->{total}, $CLIENTS,
     $sum->{elapsed});

is($sum->{ok}, $TOTAL, "all $TOTAL handshakes complete");
is($sum->{stapled}, $TOTAL, 'all stapled');
is($sum->{good}, $TOTAL, 'all staples verified and good')
    or diag("e.g.:\n", join "\n", @{ $sum->{bad} });

my $count = responder_count('good');
diag("responder requests for good: $count");
is($count, 1, 'the responder was asked exactly once for good');
