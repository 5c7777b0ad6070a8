# The fault matrix: one certificate and vhost per responder fault (see
# t/lib/StapleFaults.pm).  Each responder first answers a valid short good
# response (thisUpdate 30 s ago, nextUpdate 90 s after the start, due for
# refresh 60 s after it was fetched); every later answer is the fault.
# Polling every vhost in one loop until shortly after that nextUpdate, the
# client sees, for every fault:
#   - every staple is the original good response (same bytes), verified;
#   - a staple on every handshake until nextUpdate, through the faults;
#   - no staple after nextUpdate;
# and the proxy counted the good fetch and at least one fault, and error_log
# has a warn line naming the certificate and the check that failed.  The
# Must-Staple certificate among them gets an error line on every failed
# attempt once no valid response is left, and not before.
#
# Needs a fresh server start (the window opens when httpd starts) and
# faketime for the time-shifted responses.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleFaults;
use StaplePKI qw(cert_serial);
use StapleProc qw(wait_until);
use Time::HiRes qw(time sleep);

my @faults = StapleFaults::faults();

plan skip_all => StapleFaults::faketime_missing() unless StapleFaults::have_faketime();

my $SLACK = 1;          # seconds of clock slack around nextUpdate
my $AFTER = 2;          # keep polling this long after a nextUpdate
my $ROUND_PAUSE = 0.2;  # between two rounds over all vhosts
my $MAX_WAIT = 150;     # bound on the whole polling loop, seconds
my $ERROR_CACHE_TIMEOUT = 8;    # t/conf/extra.conf.in

# (the first call reads the Apache::Test configuration, which clobbers $_:
# not inside a map)
my $proxy_port = proxy_port();
my %proxy_url = map { $_->{name} => "http://127.0.0.1:$proxy_port/$_->{name}/" } @faults;

# The window opens with the startup fetch, the first request of each
# fault certificate; the faults start 60 s later, the good responses end
# 90 s after it.  A server that has run much longer cannot show the good
# response surviving the faults (t/TEST runs this test first).
my $start = time;
my @first;
for my $f (@faults) {
    push @first, (request_times($f->{name}))[0];
}
# (a certificate never fetched fails below)
my ($oldest) = sort { $a <=> $b } map { $_->[0] } grep { defined } @first;
unless (defined $oldest) {
    plan skip_all => 'the proxy saw no request for any fault certificate: not '
        . 'a server started by t/TEST with this configuration';
}
if ($start - $oldest > 70) {
    plan skip_all => sprintf 'httpd started %.0f s ago, the window of the fault '
        . 'matrix has passed: run it right after a server start '
        . '(t/TEST t/staple_faults.t)', $start - $oldest;
}

plan tests => 2 + @faults;

# --- poll -------------------------------------------------------------------

my %st;
for my $f (@faults) {
    $st{ $f->{name} } = { f => $f, port => vhost_port($f->{vhost}), hs => [] };
}
my $RESPONDER_TIMEOUT = 2;      # StapleResponderTimeout
my $slowest = 0;
my @elapsed;
my $rounds = 0;

while (time - $start < $MAX_WAIT) {
    my @active = grep { !$st{$_}{done} } sort keys %st;
    last unless @active;
    $rounds++;
    for my $name (@active) {
        my $s = $st{$name};
        my $t0 = time;
        my $r = handshake($s->{port}, timeout => 5);
        my $t1 = time;
        $slowest = $r->{elapsed} if $r->{elapsed} > $slowest;
        push @elapsed, $r->{elapsed};
        delete $r->{der} unless $r->{stapled};
        push @{ $s->{hs} }, { t0 => $t0, t1 => $t1, r => $r };
        if (!defined $s->{next_update} && $r->{stapled} && $r->{next_update}) {
            $s->{next_update} = $r->{next_update};
            $s->{first} = $r;
        }
        if (defined $s->{next_update}) {
            $s->{done} = 1 if $t0 > $s->{next_update} + $AFTER;
        }
        elsif ($t1 - $start > 10) {
            $s->{done} = 1;    # never stapled: nothing to follow
        }
    }
    sleep $ROUND_PAUSE;
}
my $polled = time - $start;

# The Must-Staple error line comes with the first failed attempt after
# nextUpdate, at most StapleErrorCacheTimeout later.
for my $s (grep { $_->{f}{must_staple} && defined $_->{next_update} } values %st) {
    my $name = $s->{f}{name};
    wait_until($s->{next_update} + $ERROR_CACHE_TIMEOUT + 3 - time,
               sub { must_staple_lines($name) }, 0.2);
}
my $elapsed = time - $start;
my $window = time - $oldest;

diag(sprintf "fault matrix: %d certificates, %d rounds of handshakes, polled "
     . "%.1f s, %.1f s in all (%.1f s since the server start)",
     scalar @faults, $rounds, $polled, $elapsed, $window);
@elapsed = sort { $a <=> $b } @elapsed;
diag(sprintf "%d handshakes: median %.3f s, slowest %.3f s", scalar @elapsed,
     $elapsed[@elapsed / 2] // 0, $slowest);

ok($polled < $MAX_WAIT, 'every certificate followed until after its nextUpdate')
    or diag('still active: ', join ' ', grep { !$st{$_}{done} } sort keys %st);
# one that waited on the delaying or hanging responders would take the
# responder timeout at least
ok($slowest < $RESPONDER_TIMEOUT,
   "no handshake waits on a responder (each under $RESPONDER_TIMEOUT s)");

# --- per fault ----------------------------------------------------------------

sub must_staple_lines {
    my ($name) = @_;
    return grep { /\[staple:error\]/ && /Must-Staple certificate CN=\Q$name\E\.localhost / }
        server_log_lines(qr/Must-Staple certificate/);
}

sub fetch_lines {
    my ($name) = @_;
    return grep { /OCSP for CN=\Q$name\E\.localhost / } server_log_lines(qr/OCSP for CN=/);
}

for my $name (map { $_->{name} } @faults) {
    my $s = $st{$name};
    my $f = $s->{f};
    subtest "$name: $f->{fault}" => sub {
        my $nu = $s->{next_update};
        ok(defined $nu, 'stapled with the short good response first')
            or return;
        my $first = $s->{first};
        ok(staple_good($first), 'which is verified and good')
            or diag($first->{verify_error} // $first->{error} // 'not good');
        my @hs = @{ $s->{hs} };

        # every staple is the original response
        my @stapled = grep { $_->{r}{stapled} } @hs;
        my @other = grep {
            my $r = $_->{r};
            !staple_good($r)
                || ($r->{this_update} // -1) != $first->{this_update}
                || $r->{der} ne $first->{der}
        } @stapled;
        ok(!@other, sprintf('all %d staples are the original response, verified',
                            scalar @stapled));
        for my $h (@other[0 .. ($#other < 2 ? $#other : 2)]) {
            diag(sprintf "%.1f s before nextUpdate: verified=%d status=%s "
                 . "thisUpdate=%s", $nu - $h->{t1}, $h->{r}{verified},
                 $h->{r}{cert_status} // '-', $h->{r}{this_update} // '-');
        }

        # the requests: the good one, then the fault
        my @req = request_times($name);
        my @bad_steps = grep { $_->[1] ne $f->{fault_mode} } @req[1 .. $#req];
        ok(@req >= 2 && !@bad_steps,
           sprintf '%d requests: the good one, then the fault', scalar @req)
            or diag(join "\n", map { "$_->[0] $_->[1]" } @req);
        my $first_fault = $req[1] ? $req[1][0] : $nu;

        # stapled until nextUpdate, through the faults
        my @before = grep { $_->{t1} < $nu - $SLACK } @hs;
        my @missed = grep { !$_->{r}{stapled} } @before;
        my @through = grep { $_->{t0} > $first_fault } @before;
        ok(@before && !@missed && @through,
           sprintf 'stapled on all %d handshakes before nextUpdate, %d of '
               . 'them after the first fault', scalar @before, scalar @through);
        diag(sprintf "%d unstapled, the first %.1f s before nextUpdate (%s)",
             scalar @missed, $nu - $missed[0]{t1}, $missed[0]{r}{error} // '')
            if @missed;

        # never after
        my @after = grep { $_->{t0} > $nu + $SLACK } @hs;
        my @late = grep { $_->{r}{stapled} } @after;
        ok(@after && !@late,
           sprintf 'no staple on the %d handshakes after nextUpdate', scalar @after);
        diag(sprintf "%d stapled after nextUpdate, the first %.1f s after it",
             scalar @late, $late[0]{t0} - $nu)
            if @late;
        ok(!grep({ !$_->{r}{ok} } @hs), 'every handshake completes');

        # the log: one success, then warn lines naming the certificate and
        # what went wrong
        my $serial = cert_serial($name);
        my @lines = fetch_lines($name);
        my @good = grep { /\[staple:info\].*: good in [\d.]+ ms/ } @lines;
        is(scalar @good, 1, 'one successful fetch logged');
        # (a loaded machine may turn an answer into a timeout now and then:
        # every warn line must be complete, one at least must name the fault)
        my @warn = grep { /\[staple:warn\]/ } @lines;
        my $line = qr/\[staple:warn\] .*OCSP for CN=\Q$name\E\.localhost \(serial \Q$serial\E\) from \Q$proxy_url{$name}\E: ((?:fetch failed after|response rejected) [^;]+); (?:the cached response stays in use for [^;]+|no valid response to staple); retry in [^;]+ \(failure \d+\)$/;
        my @bad = grep { $_ !~ $line } @warn;
        ok(@warn && !@bad, sprintf '%d warn lines name the certificate, the '
               . 'failure and what happens next', scalar @warn)
            or diag(@bad ? @bad[0 .. ($#bad < 2 ? $#bad : 2)] : 'no warn line');
        my @what = map { /$line/ ? $1 : () } @warn;
        my @right = grep { /^(?:$f->{what})/ } @what;
        ok(@right, sprintf '%d of them say: %s', scalar @right, $f->{what})
            or diag(join "\n", 'they say:', @what);
        diag(join "\n", "$name: other failures:", grep { !/^(?:$f->{what})/ } @what)
            if @right < @what;
        like($warn[0] // '', qr/; the cached response stays in use for \d+s; retry in /,
             'the first failure keeps the cached response');

        # Must-Staple: an error line with each failure once nothing valid is
        # left, none before
        if ($f->{must_staple}) {
            my ($count, @problems) = must_staple_errors($name);
            my @early = grep { (log_line_time($_) // 0) < $nu } must_staple_lines($name);
            ok($count && !@problems && !@early,
               sprintf '%d Must-Staple error lines, one with each failure after '
                   . 'nextUpdate, none before', $count)
                or diag(@problems, @early);
        }
        else {
            ok(!must_staple_lines($name), 'no Must-Staple error line');
        }
    };
}
