# Honest diagnostics, each on a server of its own (t/lib/StapleNode.pm):
#
#   mod_md    loaded first, with MDStapling on: it claims the certificate,
#             whose chain is complete; the log says another module staples
#             it, not that mod_ssl did not find its issuer
#   redis     StapleCache on a redis-server that hangs (SIGSTOP) at a cold
#             start without StapleStore: the startup deadline bounds the
#             cache's round trips, the first handshake is stapled, and the
#             startup child's exit status is logged
#   memcache  a response valid for 60 days (ocsp-proxy signs it): memcached
#             reads expiries of more than 30 days as absolute times, so the
#             entry must be stored with one of 30 days at most
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StapleDaemon ();
use StaplePKI qw(make_leaf);
use StapleProc qw(tempdir wait_until);
use Time::HiRes qw(time);

my $dir = tempdir('diag');
my $md = -f StapleNode::libexecdir() . '/mod_md.so';
plan tests => 11;

# --- mod_md claims the certificate ------------------------------------------------

SKIP: {
    skip 'mod_md.so is not installed', 3 unless $md;
    my $leaf = make_leaf($dir, 'diag-md');
    mkdir "$dir/md";
    chmod 0777, "$dir/md";
    my $node = StapleNode->new(name => 'diag-md', dir => "$dir/md-server", cert => $leaf,
                               modules => ['md'],
                               directives => "MDStapling on\nMDStoreDir \"$dir/md\"\n");
    my $ok = eval { $node->start; 1 };
    ok($ok, 'mod_md with MDStapling on, loaded first: the server starts') or diag($@);
    my @other = $node->start_lines(qr/\[staple:info\].*certificate CN=diag-md\.localhost \(serial \w+\) in \S+ is stapled by another module, which claimed it first/);
    ok(scalar @other, 'the log says another module staples it') or diag($node->log_tail(15));
    my @wrong = $node->start_lines(qr/did not find its issuer/);
    ok(!@wrong, 'and not that mod_ssl did not find its issuer') or diag(@wrong);
    $node->stop;
}

# --- redis hangs at a cold start ----------------------------------------------------

my $redis = StapleDaemon->start('redis', $dir);
my $leaf = make_leaf($dir, 'diag-redis');
my $node = StapleNode->new(name => 'diag-redis', dir => "$dir/redis-server", cert => $leaf,
                           cache => 'redis:' . $redis->addr, store => 'none',
                           modules => ['socache_redis']);
ok($redis->pause, 'redis-server hangs (SIGSTOP)');
my $t0 = time;
my $ok = eval { $node->start; 1 };
my $took = time - $t0;
ok($ok, 'the server starts while redis hangs') or diag($@);
ok($took < 10, sprintf 'within StapleStartupTimeout and a little more (%.1f s)', $took);
ok(staple_good($node->handshake), 'its first handshake is stapled')
    or diag($node->log_tail(15));
ok(scalar $node->start_lines(qr/\[staple:warn\].*StapleCache redis:\S+ did not answer within \d+ ms: the startup fetch goes on without it/),
   'a warning says the startup fetch went on without the hanging cache')
    or diag($node->log_tail(15));
ok(scalar $node->start_lines(qr/\[staple:info\].*startup OCSP fetch \(pid \d+\) exited with status 0 after \d+ ms/),
   "the startup child's exit status is logged") or diag($node->log_tail(15));
$redis->resume;
$node->stop;
$redis->stop;

# --- memcached and a response valid for 60 days --------------------------------------

my $mc = StapleDaemon->start('memcached', $dir);
my $long = make_leaf($dir, 'diag-long');
ok(proxy_mode('diag-long', 'sign:ndays=60'), 'the responder answers with 60 days of validity');
END { local $?; proxy_mode('diag-long', 'default') }
$node = StapleNode->new(name => 'diag-mc', dir => "$dir/mc-server", cert => $long,
                        cache => 'memcache:' . $mc->addr, modules => ['socache_memcache']);
$ok = eval { $node->start; 1 } && staple_good($node->handshake);
ok($ok && wait_until(5, sub { $mc->has_key(StapleDaemon::staple_key($long->{id})) }, 0.1),
   'the 60-day response is in memcached (its expiry clamped to 30 days)')
    or diag($@ // '', $node->log_tail(15));
$node->stop;
$mc->stop;
