# A responder that goes down and comes back.  The responder of recover.pem
# answers a short good response at startup, then closes every connection
# (t/lib/StapleFaults.pm).  From the proxy's request times:
#   - the retries after the refresh failures grow 1 s, 2 s, 4 s, 8 s, 8 s...
#     (StapleRetryDelay 1, doubling, StapleErrorCacheTimeout 8, each shortened
#     by up to 20 % jitter but never below StapleRetryDelay) and stay within
#     [StapleRetryDelay, StapleErrorCacheTimeout];
#   - the warn lines count the consecutive failures.
# Then the proxy is switched back to normal and the next retry restores
# stapling: a new good response, with a newer thisUpdate.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleFaults;
use StapleProc qw(wait_until);
use Time::HiRes qw(time sleep);

plan skip_all => StapleFaults::faketime_missing() unless StapleFaults::have_faketime();

my $NAME = 'recover';
my $cert = StapleFaults::cert($NAME);
my $port = vhost_port($cert->{vhost});

my $RETRY = 1;       # StapleRetryDelay (t/conf/extra.conf.in)
my $MAX   = 8;       # StapleErrorCacheTimeout
my $FAILS = 7;       # failed attempts to look at: 1+2+4+8+8+8 s of retries
# Each retry starts a little after its due time: the watchdog's 100 ms tick,
# its 200 ms shortest interval, the failed fetch itself (a closed
# connection: milliseconds).
my $LATE  = 0.35;
my $EARLY = 0.05;    # the proxy logs a request a little after it was sent

my $fail_step = (split /,/, $cert->{mode})[-1];
my @req = request_times($NAME);
unless (@req) {
    plan skip_all => "the proxy never saw a request for $NAME: not a server "
        . 'started by t/TEST with this configuration';
}
if (grep { $_->[1] eq 'forward' } @req) {
    plan skip_all => "the responder of $NAME was switched back already: run it "
        . 'after a server start (t/TEST t/staple_recovery.t)';
}

plan tests => 9;

# the startup fetch, then the refresh 60 s later and its retries
my $start = $req[0][0];
my $need = 60 + $RETRY + 2 + 4 + 3 * $MAX;    # until the 7th failure
my $waited = time;
wait_until($start + $need + 10 - time,
           sub { grep({ $_->[1] eq $fail_step } request_times($NAME)) >= $FAILS }, 0.2);
$waited = time - $waited;
@req = request_times($NAME);
my @fail = map { $_->[0] } grep { $_->[1] eq $fail_step } @req;
diag(sprintf "waited %.1f s for %d failed attempts (%.1f s after the first request)",
     $waited, scalar @fail, time - $start);
ok(@fail >= $FAILS, "at least $FAILS failed attempts") or diag(explain \@req);

# --- retry intervals ----------------------------------------------------------

my (@intervals, @bad);
for my $k (1 .. $#fail) {
    my $nominal = $RETRY * 2**($k - 1);
    $nominal = $MAX if $nominal > $MAX;
    my $lo = 0.8 * $nominal;
    $lo = $RETRY if $lo < $RETRY;
    my $got = $fail[$k] - $fail[$k - 1];
    push @intervals, $got;
    next unless $got < $lo - $EARLY || $got > $nominal + $LATE;
    push @bad, sprintf("after failure %d: %.3f s, expected %.1f..%.1f s%s",
                       $k, $got, $lo, $nominal,
                       slow_fetches($fail[$k - 1] + $lo, $fail[$k]));
}

# Requests of other certificates that take StapleResponderTimeout (2 s) to
# fail and were under way between $from and $to: what kept the refresher
# from a due retry, if anything.
sub slow_fetches {
    my ($from, $to) = @_;
    open my $fh, '<', StapleTest::proxy_log() or return '';
    my @slow;
    while (my $line = <$fh>) {
        my ($t, $name, undef, $step) = split ' ', $line;
        next unless defined $step && $step =~ /^(?:hang|delay)/;
        push @slow, sprintf('%s at %+.2f s', $name, $t - $from)
            if $t < $to && $t + 2 > $from;
    }
    return @slow ? '; fetches of 2 s under way after the earliest due time '
                   . '(their start relative to it): ' . join(', ', @slow)
                 : '';
}
diag('retry intervals (s): ' . join ' ', map { sprintf '%.2f', $_ } @intervals);
ok(!@bad, 'each retry interval is the doubled delay, less up to 20 % jitter')
    or diag(join "\n", @bad);
ok(!grep({ $_ < $RETRY - $EARLY || $_ > $MAX + $LATE } @intervals),
   "all within [StapleRetryDelay $RETRY s, StapleErrorCacheTimeout $MAX s]");
ok(@intervals >= 4 && $intervals[0] < $intervals[1] && $intervals[1] < $intervals[2]
       && $intervals[2] < $intervals[3],
   'the first four intervals grow');
ok(2 <= grep({ $_ >= 0.8 * $MAX - $EARLY } @intervals[3 .. $#intervals]),
   'then stay at the cap');

# --- the log --------------------------------------------------------------------

# (the proxy logs a request before the module logs its failure)
sub warn_lines {
    grep { /\[staple:warn\].*OCSP for CN=\Q$NAME\E\.localhost .*: fetch failed after / }
        server_log_lines(qr/OCSP for CN=/);
}
wait_until(2, sub { warn_lines() >= @fail });
my @warn = warn_lines();
my @numbers = map { /\(failure (\d+)\)$/ ? $1 : -1 } @warn;
is_deeply([@numbers[0 .. $#fail]], [1 .. @fail],
          'warn lines count the consecutive failures 1, 2, 3...')
    or diag(@warn[0 .. 2]);

# --- back to normal ---------------------------------------------------------------

my $before = handshake($port);
ok(proxy_mode($NAME, 'default'), "the proxy answers $NAME normally again");
my $switched = time;
@req = request_times($NAME);
my $last_fail = (map { $_->[0] } grep { $_->[1] eq $fail_step } @req)[-1];
my $failures = grep { $_->[1] eq $fail_step } @req;
my $restored;
wait_until($last_fail + $MAX + $LATE + 2 - time, sub {
    my $r = handshake($port);
    $restored = $r if $r->{stapled} && ($r->{this_update} // 0) >= int $switched;
    return $restored;
}, 0.1);
my $restored_at = time;
my ($retry) = grep { $_->[0] > $switched } request_times($NAME);
diag(sprintf "before the switch: %s; retry %.2f s after the last failure, staple "
     . "restored %.2f s after the switch",
     $before->{stapled} ? 'stapled' : 'no staple',
     $retry ? $retry->[0] - $last_fail : -1, $restored_at - $switched);

ok($restored && staple_good($restored),
   'a new good response is stapled, with a thisUpdate after the switch')
    or diag($restored ? "verified=$restored->{verified}" : 'no new staple');
my $nominal = $RETRY * 2**($failures - 1);
$nominal = $MAX if $nominal > $MAX;
ok($retry && $retry->[1] eq 'forward' && $retry->[0] - $last_fail <= $nominal + $LATE,
   'at the next scheduled retry')
    or diag($retry ? sprintf('%s %.2f s after the last failure, expected at most '
                             . '%.2f s%s', $retry->[1], $retry->[0] - $last_fail,
                             $nominal + $LATE,
                             slow_fetches($last_fail + 0.8 * $nominal, $retry->[0]))
                   : 'no request after the switch');
