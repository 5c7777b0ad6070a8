# StapleEventCmd: a server of its own (t/lib/StapleNode.pm) runs
# t/bin/record-event, which appends each run's arguments (event, id,
# subject, detail) as one line to a file, with short retries
# (StapleRetryDelay 1, StapleErrorCacheTimeout 2):
#
#   ev-good      good                   -> one "renewed"
#   ev-revoked   revoked (t/pki/revoked.crt's serial) -> one "revoked"
#   refuse-ev    responder closes every connection: >= 3 failed fetches
#                within a few seconds  -> ONE "errored" (rate limit)
#   refuse-evms  the same, Must-Staple -> one "missing" (and one "errored")
#
# Each run's exit status is logged ("StapleEventCmd EVENT for SUBJECT
# exited with status 0"), and the program runs as the server's User.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(slurp tempdir wait_until);
use Time::HiRes qw(time sleep);

my $MIN_FAILURES = 3;    # failed fetches of refuse-ev at least
my $WINDOW       = 6;    # seconds they may take (1 s, 2 s, 2 s... apart)

my $dir = tempdir('events');
my %leaf = (
    good    => make_leaf($dir, 'ev-good'),
    revoked => make_leaf($dir, 'ev-revoked', serial_of => 'revoked'),
    failing => make_leaf($dir, 'refuse-ev'),
    missing => make_leaf($dir, 'refuse-evms', must_staple => 1),
);

my ($recorder, $evlog) = event_program($dir, 'record-event');

my $node = StapleNode->new(
    name  => 'events',
    dir   => "$dir/server",
    cert  => $leaf{good},
    certs => [@leaf{qw(revoked failing missing)}],
    directives => <<"EOF",
StapleRetryDelay 1
StapleErrorCacheTimeout 2
StapleEventCmd "$recorder" "$evlog"
EOF
);

plan tests => 17;

my %count0 = map { $_->{name} => responder_count($_->{name}) } values %leaf;
my $t0 = time;
my $ok = eval { $node->start; 1 };
ok($ok, 'server with StapleEventCmd starts') or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;

# lines of the event file: [event, id, subject, detail, ...]
sub events {
    my $text = slurp($evlog) // '';
    return map { [split /\t/, $_, -1] } split /\n/, $text;
}
sub events_for {
    my ($leaf, $event) = @_;
    return grep { ($_->[1] // '') eq $leaf->{id} && (!$event || $_->[0] eq $event) } events();
}

my $failing = $leaf{failing};
my $fails = sub { responder_count($failing->{name}) - $count0{ $failing->{name} } };
# one failure more than needed, so that "exactly one" comes after several
wait_until($WINDOW, sub { $fails->() > $MIN_FAILURES && events_for($leaf{good}, 'renewed') });
my $elapsed = time - $t0;
# whatever is pending has been run and reaped: the refresher runs at least
# every second while an event program is running
wait_until(5, sub {
    my @runs = events();
    my @exits = $node->log_lines(qr/StapleEventCmd \S+ for .* exited with status/);
    @runs >= 5 && @exits >= @runs;
});
my $n_fail = $fails->();
my @warn = $node->log_lines(qr/OCSP for CN=refuse-ev\.localhost .*fetch failed/);
diag(sprintf "%d failed fetches of refuse-ev (%d warn lines) in %.1f s",
             $n_fail, scalar @warn, $elapsed);
ok($n_fail >= $MIN_FAILURES && @warn >= $MIN_FAILURES,
   "refuse-ev: at least $MIN_FAILURES failed fetches within $WINDOW s")
    or diag($node->log_tail(30));

my @all = events();
diag("event: " . join(' | ', @$_)) for @all;
ok(!grep({ @$_ != 4 } @all), 'every run got 4 arguments: event, id, subject, detail')
    or diag(explain(\@all));

# --- one event of each kind -------------------------------------------------------

sub one_event {
    my ($leaf, $event, $detail_re, $what) = @_;
    my @e = events_for($leaf, $event);
    ok(@e == 1 && $e[0][2] eq "CN=$leaf->{name}.localhost" && $e[0][3] =~ $detail_re, $what)
        or diag(scalar(@e) . " $event event(s) for $leaf->{name}: " . explain(\@e));
}

one_event($leaf{good}, 'renewed', qr/^good until \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$/,
          'ev-good: exactly one "renewed" with its id, subject and detail');
ok(!grep({ $_->[0] ne 'renewed' } events_for($leaf{good})), 'ev-good: no other event');

one_event($leaf{revoked}, 'revoked', qr/^revoked; response valid until /,
          'ev-revoked: exactly one "revoked"');
ok(!events_for($leaf{revoked}, 'renewed'), 'ev-revoked: no "renewed"');

one_event($failing, 'errored', qr/fetch failed after .* ms \(GET\): \S/,
          "refuse-ev: exactly one \"errored\" after $n_fail failures");
ok(!grep({ $_->[0] ne 'errored' } events_for($failing)),
   'refuse-ev: no other event (not Must-Staple: no "missing")');
my @limited = $node->log_lines(qr/StapleEventCmd errored for CN=refuse-ev\.localhost: rate-limited/);
ok(@limited >= 1, 'refuse-ev: the later "errored" events were rate-limited (debug line)')
    or diag($node->log_tail(30));

one_event($leaf{missing}, 'missing', qr/^Must-Staple certificate without a valid response: fetch failed/,
          'refuse-evms: exactly one "missing"');
is(scalar(events_for($leaf{missing}, 'errored')), 1, 'refuse-evms: exactly one "errored" too');
ok(scalar($node->log_lines(qr/Must-Staple certificate CN=refuse-evms\.localhost .*has no valid OCSP response/)) >= 1,
   'refuse-evms: the error line about the Must-Staple certificate');

# --- exit statuses, the User ----------------------------------------------------------

my @exits = $node->log_lines(qr/StapleEventCmd \S+ for .* exited with status/);
diag("log: $_") for @exits;
my @runs = events();
my @want = map { "$_->[0] for $_->[2]" } @runs;
my @missing_exit = grep { my $w = $_; !grep { /StapleEventCmd \Q$w\E exited with status 0$/ } @exits } @want;
ok(@runs && !@missing_exit, 'every run logged "StapleEventCmd EVENT for SUBJECT exited with status 0"')
    or diag("no exit line for: @missing_exit\n" . $node->log_tail(30));
is(scalar(@exits), scalar(@runs), 'one exit line per run');

SKIP: {
    skip 'not root: the server runs as this user', 1 unless $> == 0;
    my $uid = getpwnam('nobody');
    is((stat $evlog)[4], $uid, 'the program ran as the server\'s User (nobody)');
}

ok($node->stop, 'server stops cleanly');
