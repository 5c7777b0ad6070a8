# Every socache backend of StapleCache -- shmcb, dbm, memcache (a real
# memcached started here) and redis (a real redis-server started here) --
# under the event and the prefork MPM (and the suite's, if another): a
# server of its own (t/lib/StapleNode.pm) staples its first handshake with a
# good, verified response after exactly one responder request, parallel
# handshakes from several clients are all stapled, and the response is
# where the backend keeps it.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleDaemon ();
use StapleLoad ();
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(tempdir);

my $CLIENTS = 6;     # parallel clients
my $EACH    = 10;    # handshakes each

my %seen;
my @MPMS = grep { !$seen{$_}++ } (StapleNode::mpm(), 'event', 'prefork');

my $dir = tempdir('backends');
my ($memcached, $redis);

# name, StapleCache argument, modules to load, where the response is kept
my @BACKENDS = (
    {
        name  => 'shmcb',
        cache => sub { 'shmcb' },
        where => sub {
            my ($node) = @_;
            return scalar $node->start_lines(qr/StapleCache shmcb\b(?!.*node-local)/);
        },
    },
    {
        name    => 'dbm',
        modules => ['socache_dbm'],
        cache   => sub { my ($node) = @_; 'dbm:' . $node->rundir . '/staple-cache' },
        where   => sub {
            my ($node) = @_;
            my @f = glob($node->rundir . '/staple-cache*');
            my $uid = $> == 0 ? scalar getpwnam('nobody') : $>;
            return @f && !grep { (stat $_)[4] != $uid } @f;
        },
    },
    {
        name    => 'memcache',
        modules => ['socache_memcache'],
        daemon  => sub { $memcached ||= StapleDaemon->start('memcached', $dir) },
        cache   => sub { 'memcache:' . $memcached->addr },
        where   => sub {
            my ($node, $leaf) = @_;
            return $memcached->has_key(StapleDaemon::staple_key($leaf->{id}));
        },
    },
    {
        name    => 'redis',
        modules => ['socache_redis'],
        daemon  => sub { $redis ||= StapleDaemon->start('redis', $dir) },
        cache   => sub { 'redis:' . $redis->addr },
        where   => sub {
            my ($node, $leaf) = @_;
            return $redis->has_key(StapleDaemon::staple_key($leaf->{id}));
        },
    },
);

my %WHERE = (shmcb => 'the log names StapleCache shmcb (read directly)',
             dbm => 'the DBM file exists, owned by the server\'s User',
             memcache => 'memcached holds the response',
             redis => 'redis-server holds the response');

plan tests => 7 * @BACKENDS * @MPMS;

for my $b (@BACKENDS) {
    for my $mpm (@MPMS) {
        my $tag = "$b->{name}/$mpm";
        SKIP: {
            if ($b->{daemon} && !eval { $b->{daemon}->(); 1 }) {
                skip "$b->{name}: cannot start its server: $@", 7;
            }
            # a certificate of its own: its own counter and cache key
            my $leaf = make_leaf($dir, "be-$b->{name}-$mpm");
            my $node = StapleNode->new(name => $tag =~ s{/}{-}r, cert => $leaf, mpm => $mpm,
                                       modules => $b->{modules} || [], store => 'none',
                                       dir => "$dir/$b->{name}-$mpm");
            $node->{cache} = $b->{cache}->($node);
            my $c0 = responder_count($leaf->{name});
            unless (ok(eval { $node->start; 1 }, "$tag: server starts")) {
                diag($@);
                skip "$tag: no server", 6;
            }
            my $r = $node->handshake;
            ok(staple_good($r), "$tag: first handshake stapled (good, verified)")
                or diag(explain({ map { $_ => $r->{$_} } grep { $_ ne 'der' } keys %$r }),
                        $node->log_tail(20));
            is(responder_count($leaf->{name}) - $c0, 1, "$tag: one responder request");

            my $sum = StapleLoad::load_collect(
                StapleLoad::load_start($node->port, clients => $CLIENTS, count => $EACH));
            diag(sprintf "%s: %d parallel handshakes (%d clients), %d failed, %d not "
                       . "stapled good and verified, slowest %.3f s",
                 $tag, $sum->{total}, $CLIENTS, $sum->{total} - $sum->{ok},
                 $sum->{total} - $sum->{good}, $sum->{max});
            diag($_) for @{ $sum->{bad} };
            is($sum->{total}, $CLIENTS * $EACH, "$tag: every parallel handshake ran");
            is($sum->{good}, $sum->{total},
               "$tag: every parallel handshake stapled (good, verified)")
                or diag($node->log_tail(20));
            ok($b->{where}->($node, $leaf), "$tag: $WHERE{$b->{name}}")
                or diag($node->log_tail(10));
            ok($node->stop, "$tag: server stops cleanly");
        }
    }
}
