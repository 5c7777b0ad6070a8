# Graceful restart under load: forked clients loop full TLS handshakes
# against a server of its own (t/lib/StapleNode.pm) while it is gracefully
# restarted mid-way; every handshake completes and is stapled with a good,
# verified response.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleLoad ();
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(tempdir);
use Time::HiRes qw(time sleep);

my $CLIENTS  = 4;    # forked handshake loops
my $DURATION = 6;    # seconds they loop
my $GRACEFUL_AT = $DURATION / 2;

plan tests => 8;

my $NAME = 'gload';
my $dir  = tempdir('graceful');
my $leaf = make_leaf($dir, $NAME);
my $node = StapleNode->new(name => 'graceful', cert => $leaf, store => "$dir/store",
                           dir => "$dir/server");

ok(eval { $node->start; 1 }, 'server starts') or do {
    diag($@);
    BAIL_OUT('cannot start a test server');
};
my $r = $node->handshake;
ok(staple_good($r), 'stapled before the load starts')
    or diag($r->{error} // '', $node->log_tail(20));

my $load = StapleLoad::load_start($node->port, clients => $CLIENTS, duration => $DURATION);
# mid-way through the load: a point in time, not a readiness wait
sleep($load->{start} + $GRACEFUL_AT - time);
my $gen = $node->generations;
my $graceful_ok = eval { $node->restart('graceful'); 1 };
my $graceful_err = $@;
my $sum = StapleLoad::load_collect($load);

ok($graceful_ok, '-k graceful mid-way: a new generation came up') or diag($graceful_err);
is($node->generations, $gen + 1, 'exactly one graceful restart happened during the load');
diag(sprintf "%d clients, %.1f s, -k graceful at %.1f s (took %.2f s): %d handshakes, "
           . "%d failed, %d not stapled with a good verified response, slowest %.3f s",
     $CLIENTS, $sum->{elapsed}, $GRACEFUL_AT, $node->{restart_time} // -1,
     $sum->{total}, $sum->{total} - $sum->{ok}, $sum->{total} - $sum->{good}, $sum->{max});
diag($_) for @{ $sum->{bad} };
is($sum->{missing}, 0, 'every client reported');
ok($sum->{total} > 50, "a steady load ($sum->{total} handshakes)");
is($sum->{total} - $sum->{ok}, 0, 'no failed handshake');
is($sum->{total} - $sum->{good}, 0, 'no handshake without a good, verified staple')
    or diag($node->log_tail(30));
$node->stop;
