# StapleEventCmd bounded: a server of its own (t/lib/StapleNode.pm) with
# eleven certificates whose responder closes every connection, so that
# eleven "errored" events come at once at startup. t/bin/event-probe
# records when each program starts and ends, its signal masks, process
# group and environment; it ends after 1.5 s, except for the certificate
# "refuse-hang1", whose program starts a grandchild and sleeps on.
#
#   at most 4 programs at once, the others queued, and all of them run;
#   no signal blocked, no standard signal ignored in the programs; a process group each;
#   PATH and STAPLE_EVENT set;
#   the hanging one is killed after StapleEventTimeout with its process
#   group (the grandchild too), and a warning says so.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(alive slurp tempdir wait_until);

my $N = 10;
my $dir = tempdir('evbound');
my @leaves = map { make_leaf($dir, "refuse-b$_") } 1 .. $N;
my $hang = make_leaf($dir, 'refuse-hang1');

my ($probe, $evlog) = event_program($dir, 'event-probe');

my $node = StapleNode->new(
    name  => 'evbound',
    dir   => "$dir/server",
    cert  => $hang,
    certs => \@leaves,
    # one failure each: no retry while the test runs
    directives => <<"EOF",
StapleRetryDelay 300
StapleErrorCacheTimeout 600
StapleEventTimeout 3
StapleEventCmd "$probe" "$evlog"
EOF
);

plan tests => 9;

my $ok = eval { $node->start; 1 };
ok($ok, 'server with 11 failing certificates starts') or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;

sub lines { map { [split /\t/] } split /\n/, slurp($evlog) // '' }

my $done = wait_until(60, sub {
    my @l = lines();
    return (grep { $_->[0] eq 'end' } @l) >= $N && (grep { $_->[0] eq 'start' } @l) >= $N + 1;
}, 0.2);
my @l = lines();
my @starts = grep { $_->[0] eq 'start' } @l;
ok($done, 'every event ran: ' . scalar(@starts) . ' programs started, '
   . scalar(grep { $_->[0] eq 'end' } @l) . ' ended')
    or diag(slurp($evlog) // 'no events file', $node->log_tail(20));

# the hanging one: killed with its grandchild
my ($grand) = map { $_->[1] } grep { $_->[0] eq 'grandchild' } @l;
my ($hstart) = grep { $_->[8] =~ /hang/ } @starts;
my $killed = wait_until(20, sub {
    scalar $node->log_lines(qr/\[staple:warn\].*StapleEventCmd errored for CN=refuse-hang1\.localhost still runs after \d+s: killed with its process group/);
}, 0.2);
ok($killed, 'the program past StapleEventTimeout is killed, and a warning says so')
    or diag($node->log_tail(20));
ok($grand && wait_until(10, sub { !alive($grand) }, 0.1),
   'its grandchild, in its process group, is gone too')
    or diag('grandchild ' . ($grand // 'never recorded'));
ok($hstart && !alive($hstart->[1]), 'the hanging program itself is gone');

# at most 4 at once: the intervals from start to end (the hanging one until
# it was killed, StapleEventTimeout after its start at the latest + 2 s)
my %end = map { $_->[1] => $_->[2] } grep { $_->[0] eq 'end' } @l;
my @iv = map { [$_->[2], $end{ $_->[1] } // $_->[2] + 5] } @starts;
my $max = 0;
for my $t (map { $_->[0] } @iv) {
    my $n = grep { $_->[0] <= $t && $t < $_->[1] } @iv;
    $max = $n if $n > $max;
}
ok($max >= 1 && $max <= 4, "at most 4 programs at once (at most $max ran together)")
    or diag(explain(\@iv));

# how each program started
# (signals 32 and 33 are the C library's own; it sets them up itself)
my @bad_masks = grep { $_->[3] !~ /^0+$/ || (hex(substr($_->[4], -8)) & 0x7fffffff) } @starts;
ok(@starts && !@bad_masks, 'no signal blocked, no standard signal ignored in the programs')
    or diag(explain(\@bad_masks));
my @bad_group = grep { $_->[5] ne $_->[1] } @starts;
ok(@starts && !@bad_group, 'each program leads a process group of its own')
    or diag(explain(\@bad_group));
my @bad_env = grep { $_->[6] !~ m{(^|:)/usr/bin(:|$)} || $_->[7] ne 'errored' } @starts;
ok(@starts && !@bad_env, 'PATH and STAPLE_EVENT are set') or diag(explain(\@bad_env));
$node->stop;
