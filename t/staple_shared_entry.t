# What comes from a shared cache is verified before use: a corrupt entry in
# redis, or another certificate's valid response written under this
# certificate's key, is rejected, logged, fetched again (which repairs the
# entry for every server sharing it), and never stapled.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleDaemon ();
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(tempdir);

plan tests => 14;

my $dir = tempdir('shared-entry');
my $redis = eval { StapleDaemon->start('redis', $dir) };
BAIL_OUT("cannot start redis-server: $@") unless $redis;

# distinct serials, so that neither response is valid for the other
my $x = make_leaf($dir, 'entry-x', serial_of => 'shared');
my $y = make_leaf($dir, 'entry-y', serial_of => 'good');
my $node = StapleNode->new(
    name => 'entry', dir => "$dir/node", cert => $x, certs => [$y],
    cache => 'redis:' . $redis->addr, modules => ['socache_redis'],
    # no store: a restart must read what redis holds
    store => 'none',
);
$node->start;

my ($px) = $node->ports_of('entry-x');
my ($py) = $node->ports_of('entry-y');
my $key_x = StapleDaemon::staple_key($x->{id});
my $key_y = StapleDaemon::staple_key($y->{id});

sub stapled_good { staple_good(handshake($_[0])) }
sub redis_cmd { $redis->redis_cmd(@_) }
sub redis_get { $redis->redis_get(@_) }

ok(stapled_good($px) && stapled_good($py), 'both certificates stapled at first');
is(responder_count('entry-x'), 1, 'one fetch for x');
like(redis_get($key_x) // '', qr/^STPL/, "x's response is in redis");

# 1. garbage under x's key
is(redis_cmd('SET', $key_x, 'garbage, not a response') // '', "+OK\r\n",
   'garbage written under x\'s key');
my $mark = $node->log_mark;
$node->restart('graceful');
ok(stapled_good($px), 'x stapled (good, verified) after the restart');
my @l = $node->log_lines(qr/OCSP response for CN=entry-x\.localhost in StapleCache redis\S* rejected, fetching a new one: not a mod_staple cache entry/, $mark);
is(scalar @l, 1, 'the corrupt entry is rejected and logged once') or diag($node->log_tail(20));
is(responder_count('entry-x'), 2, 'x fetched again');
like(redis_get($key_x) // '', qr/^STPL/, 'the entry in redis is repaired');

# 2. y's valid response under x's key
my $yv = redis_get($key_y);
ok(defined $yv && $yv =~ /^STPL/, "y's entry read from redis");
is(redis_cmd('SET', $key_x, $yv // '') // '', "+OK\r\n", "y's response written under x's key");
$mark = $node->log_mark;
$node->restart('graceful');
ok(stapled_good($px), 'x stapled with its own response after the restart');
@l = $node->log_lines(qr/OCSP response for CN=entry-x\.localhost in StapleCache redis\S* rejected, fetching a new one: no status for serial/, $mark);
is(scalar @l, 1, "another certificate's response is rejected and logged once")
    or diag($node->log_tail(20));
is(responder_count('entry-x'), 3, 'x fetched again');
isnt(redis_get($key_x) // '', $yv, "y's response no longer sits under x's key");

$node->stop;
$redis->stop;
