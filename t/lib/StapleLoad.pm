package StapleLoad;
# Handshake load: forked clients making full TLS handshakes (asking for a
# staple) to a port, while the test does something else.
#
#   my $load = StapleLoad::load_start($port, clients => 4, duration => 6);
#   my $load = StapleLoad::load_start($port, clients => 8, count => 10);
#   my $load = StapleLoad::load_start($port, clients => 2, duration => 60, rate => 10,
#                                     hosts => \@names, record => 1,
#                                     handshake => { ca => $root });
#   ... (the clients run meanwhile) ...
#   my $sum = StapleLoad::load_collect($load);
#
# $sum: total, ok (completed), stapled, good (StapleTest::staple_good), max
# (slowest handshake, s), missing (clients that did not report), bad (up to
# 5 descriptions per client of handshakes that were not good), elapsed, and
# with record => 1, records: one hashref per handshake (see RECORD_FIELDS).
# Every client is bounded in time; one still running at the deadline is
# killed by PID.
use strict;
use warnings;

use Digest::SHA ();
use File::Temp ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

use StapleProc qw(slurp wait_until);
use StapleTest ();

# load_start($port, %opt) -> handle for load_collect
#   clients   forked clients (default 4)
#   duration  seconds each one loops, or
#   count     handshakes each one makes
#   delay     seconds until they all start (default 0.1)
#   timeout   seconds for each handshake (default 5)
#   rate      handshakes per second of each client, evenly paced (default:
#             one after the other)
#   hosts     SNI names (verified as the server's name), taken in turn
#             across the clients: handshake N of client I (from 0) asks for
#             hosts->[(N * clients + I) % @hosts]
#   handshake hashref of more StapleTest::handshake options (ca, verify...)
#   record    1: every handshake is kept, in load_collect's records
sub load_start {
    my ($port, %o) = @_;
    my $clients = $o{clients} || 4;
    my $tmp = File::Temp::tempdir('staple-load-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $start = time + ($o{delay} // 0.1);
    my $until = $start + ($o{duration} || 0);
    my %kids;
    for my $i (1 .. $clients) {
        my $out = "$tmp/client$i";
        my $pid = fork;
        die "fork: $!\n" unless defined $pid;
        if ($pid == 0) {
            my ($n, $ok, $stapled, $good, $max, @bad) = (0, 0, 0, 0, 0);
            my @hosts = @{ $o{hosts} || [] };
            my $rec;
            if ($o{record}) {
                open $rec, '>', "$out.rec" or POSIX::_exit(1);
            }
            # all clients begin together: a start time, not a readiness wait
            sleep($start - time) if $start > time;
            while ($o{count} ? $n < $o{count} : time < $until) {
                if ($o{rate}) {    # the pace of a steady load
                    my $at = $start + $n / $o{rate};
                    sleep($at - time) if $at > time;
                    last if !$o{count} && time >= $until;
                }
                my $host = @hosts ? $hosts[($n * $clients + $i - 1) % @hosts] : undef;
                my $t0 = time;
                my $h = StapleTest::handshake($port, timeout => $o{timeout} || 5,
                                              %{ $o{handshake} || {} },
                                              (defined $host ? (host => $host) : ()));
                print $rec record_line($t0, $host, $h) if $rec;
                $n++;
                $max = $h->{elapsed} if $h->{elapsed} > $max;
                $ok++ if $h->{ok};
                $stapled++ if $h->{ok} && $h->{stapled};
                my $fine = StapleTest::staple_good($h);
                $good++ if $fine;
                push @bad, sprintf('+%.3fs client %d #%d: ok=%d stapled=%d verified=%d '
                                   . 'status=%s %s', time - $start, $i, $n, $h->{ok},
                                   $h->{stapled}, $h->{verified},
                                   $h->{cert_status} // '-', $h->{error} // '')
                    if !$fine && @bad < 5;
            }
            close $rec if $rec;
            if (open my $fh, '>', "$out.tmp") {
                print $fh "$n $ok $stapled $good $max\n", map { "$_\n" } @bad;
                close $fh;
                rename "$out.tmp", $out;
            }
            POSIX::_exit(0);    # no END blocks of the test in the clients
        }
        $kids{$pid} = $out;
    }
    my $limit = $o{count} ? $o{count} * (($o{timeout} || 5) + 1) : ($o{duration} || 0) + 15;
    $limit += $o{count} / $o{rate} if $o{count} && $o{rate};
    return { kids => \%kids, deadline => $start + $limit, start => $start,
             record => $o{record} };
}

# A handshake's record: when it started (epoch), the SNI name asked for, and
# what StapleTest::handshake found; sha1 identifies the stapled response.
my @RECORD_FIELDS = qw(time host ok stapled resp_status verified cert_status
                       this_update next_update sha1 elapsed error);

sub record_line {
    my ($t0, $host, $h) = @_;
    my %r = (%$h, time => sprintf('%.3f', $t0), host => $host,
             sha1 => defined $h->{der} ? Digest::SHA::sha1_hex($h->{der}) : undef,
             elapsed => sprintf('%.4f', $h->{elapsed} // 0));
    my $error = join '; ', grep { defined } $r{error}, $r{result_error}, $r{verify_error};
    $r{error} = length $error ? $error =~ s/[\t\n]+/ /gr : undef;
    return join("\t", map { $r{$_} // '-' } @RECORD_FIELDS) . "\n";
}

sub parse_record {
    my ($line) = @_;
    chomp $line;
    my @v = split /\t/, $line, -1;
    return unless @v == @RECORD_FIELDS;
    my %r;
    @r{@RECORD_FIELDS} = map { $_ eq '-' ? undef : $_ } @v;
    return \%r;
}

sub load_collect {
    my ($load) = @_;
    my $kids = $load->{kids};
    wait_until($load->{deadline} - time, sub {
        my $running = 0;
        for my $pid (keys %$kids) {
            next if ref $kids->{$pid};
            if (waitpid($pid, WNOHANG) == $pid) {
                $kids->{$pid} = [$kids->{$pid}];
            }
            else {
                $running++;
            }
        }
        return !$running;
    });
    my %sum = (total => 0, ok => 0, stapled => 0, good => 0, max => 0, missing => 0,
               bad => [], elapsed => time - $load->{start},
               ($load->{record} ? (records => []) : ()));
    for my $pid (keys %$kids) {
        my $v = $kids->{$pid};
        unless (ref $v) {    # still running past the deadline
            kill 'KILL', $pid;
            waitpid($pid, 0);
            $v = [$v];
        }
        if ($load->{record} && open my $rec, '<', "$v->[0].rec") {
            # a client killed at the deadline may have left half a line
            push @{ $sum{records} }, grep { defined } map { parse_record($_) } <$rec>;
            close $rec;
        }
        my @l = split /\n/, slurp($v->[0]) // '';
        my $head = shift @l;
        unless ($head && $head =~ /^(\d+) (\d+) (\d+) (\d+) (\S+)$/) {
            $sum{missing}++;
            next;
        }
        $sum{total}   += $1;
        $sum{ok}      += $2;
        $sum{stapled} += $3;
        $sum{good}    += $4;
        $sum{max} = $5 if $5 > $sum{max};
        push @{ $sum{bad} }, @l;
    }
    return \%sum;
}

1;
