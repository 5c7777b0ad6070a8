#!/usr/bin/perl
# report.pl -- scripts/bench's results: the table on stdout, the JSON file.
#
#   perl t/bench/report.pl RUNS.jsonl OUT.json META-JSON
#
# RUNS.jsonl has one object per line, as scripts/bench records them: kind
# "first" (the first handshake after a server started, with startup_s),
# "round" (one measured run: cpu_ns of the server, the client's JSON of
# t/bench/handshake.c) or "log" (responder error lines the server logged).
# META-JSON (rounds, handshakes, delay, verify_every, ...) goes into the
# report as it is.  Per scenario and server: the median CPU per handshake,
# the two ratio estimates to "off", rates, latencies, staple shares.
use strict;
use warnings;

use JSON::PP;

my ($runs, $out, $meta) = @ARGV;
my $json = JSON::PP->new->canonical->pretty;
my @runs;
open my $fh, "<", $runs or die "$runs: $!";
while (<$fh>) { push @runs, decode_json($_) }
my %meta = %{ decode_json($meta) };
my @servers = qw(staple mod_ssl off);
my %desc = (a => "responder answering",
            b => "responder answering after $meta{delay} s",
            c => "responder hanging",
            d => "responder down after warm-up, short cache lifetimes");
sub median { my @v = sort { $a <=> $b } @_; return undef unless @v;
             my $n = @v; return $n % 2 ? $v[($n-1)/2] : ($v[$n/2-1] + $v[$n/2]) / 2 }
sub max { my $m; for (@_) { $m = $_ if !defined $m || $_ > $m } $m }
my %res;
my @order;
for my $r (@runs) {
    my $s = $r->{scenario};
    push @order, $s unless grep { $_ eq $s } @order;
    if ($r->{kind} eq "first") { $res{$s}{$r->{server}}{first} = $r }
    elsif ($r->{kind} eq "log") { $res{$s}{$r->{server}}{log} = $r->{responder_error_lines} }
    else { push @{ $res{$s}{$r->{server}}{rounds} }, $r }
}
my %out = (meta => \%meta, scenarios => {});
my $table = "";
for my $s (@order) {
    my %byround;
    for my $srv (@servers) {
        for my $r (@{ $res{$s}{$srv}{rounds} || [] }) {
            my $n = $r->{client}{ok} || 1;
            $r->{cpu_us_per_hs} = $r->{cpu_ns} / 1e3 / $n;
            $byround{ $r->{round} }{$srv} = $r->{cpu_us_per_hs};
        }
    }
    my %sum;
    for my $srv (@servers) {
        my @rr = @{ $res{$s}{$srv}{rounds} || [] };
        my ($ok, $failed, $stapled, $succ, $good, $checked) = (0) x 6;
        for my $r (@rr) { $ok += $r->{client}{ok}; $failed += $r->{client}{failed};
            $stapled += $r->{client}{stapled}; $succ += $r->{client}{successful};
            $good += $r->{client}{good} // 0; $checked += $r->{client}{checked} // 0 }
        my @ratio;
        for my $k (keys %byround) {
            push @ratio, $byround{$k}{$srv} / $byround{$k}{off}
                if defined $byround{$k}{$srv} && $byround{$k}{off};
        }
        my $f = $res{$s}{$srv}{first};
        $sum{$srv} = {
            rounds => scalar @rr,
            handshakes_ok => $ok, handshakes_failed => $failed,
            cpu_us_per_handshake_median => median(map { $_->{cpu_us_per_hs} } @rr),
            cpu_us_per_handshake => [ map { sprintf("%.2f", $_->{cpu_us_per_hs}) + 0 } @rr ],
            cpu_ratio_to_off_median => median(@ratio),
            cpu_median_ratio_to_off => undef,
            rate_median => median(map { $_->{client}{rate} } @rr),
            latency_ms_p50_median => median(map { $_->{client}{latency_ms}{p50} } @rr),
            latency_ms_p99_median => median(map { $_->{client}{latency_ms}{p99} } @rr),
            latency_ms_max => max(map { $_->{client}{latency_ms}{max} } @rr),
            stapled_share => $ok ? $stapled / $ok : 0,
            successful_share => $ok ? $succ / $ok : 0,
            good_share => $checked ? $good / $checked : 0,
            staples_verified => $checked,
            first_handshake_ms => $f ? $f->{client}{latency_ms}{max} : undef,
            first_handshake_successful => $f ? $f->{client}{successful} : undef,
            startup_s => $f ? $f->{startup_s} : undef,
            responder_error_log_lines => $res{$s}{$srv}{log},
        };
    }
    for my $srv (@servers) {
        $sum{$srv}{cpu_median_ratio_to_off} =
            $sum{off}{cpu_us_per_handshake_median}
            ? $sum{$srv}{cpu_us_per_handshake_median} / $sum{off}{cpu_us_per_handshake_median}
            : undef;
    }
    $out{scenarios}{$s} = { description => $desc{$s}, servers => \%sum, runs => $res{$s} };
    $table .= sprintf("\nscenario %s: %s\n", $s, $desc{$s});
    $table .= sprintf("%-8s %8s %7s %7s %8s %8s %8s %9s %7s %7s %7s %9s %7s %6s\n",
        "server", "cpu_us", "ratio", "r_med", "hs/s", "p50_ms", "p99_ms", "max_ms",
        "sent", "success", "good", "first_ms", "first", "start");
    for my $srv (@servers) {
        my $x = $sum{$srv};
        next unless $x->{rounds};
        $table .= sprintf("%-8s %8.1f %7.3f %7.3f %8.0f %8.2f %8.2f %9.1f %6.1f%% %6.1f%% %6.1f%% %9.1f %7s %5.1fs\n",
            $srv, $x->{cpu_us_per_handshake_median}, $x->{cpu_ratio_to_off_median} // 0,
            $x->{cpu_median_ratio_to_off} // 0,
            $x->{rate_median}, $x->{latency_ms_p50_median}, $x->{latency_ms_p99_median},
            $x->{latency_ms_max}, 100 * $x->{stapled_share}, 100 * $x->{successful_share},
            100 * $x->{good_share},
            $x->{first_handshake_ms} // 0,
            ($x->{first_handshake_successful} ? "stapled" : "none"),
            $x->{startup_s} // 0);
    }
    if ($s eq "d") {
        $table .= sprintf("(rounds: %d; responder error lines logged: mod_staple %s, mod_ssl %s)\n",
            $sum{staple}{rounds}, $sum{staple}{responder_error_log_lines} // "-",
            $sum{mod_ssl}{responder_error_log_lines} // "-");
    }
}
$table .= "\ncpu_us: median server CPU per handshake (all threads of all processes, /proc schedstat);\n"
        . "ratio: median over rounds of cpu_us / cpu_us of \"off\" in the same round;\n"
        . "r_med: median cpu_us / median cpu_us of \"off\" (the two estimates differ by\n"
        . "the machine's noise);\n"
        . "hs/s, p50_ms, p99_ms: medians over rounds; max_ms: over all rounds;\n"
        . "sent: handshakes with a staple; success: with a staple whose OCSP response\n"
        . "status is successful; good: of the successful staples the client verified\n"
        . "(every $meta{verify_every}th handshake), those that verify (OCSP_basic_verify)\n"
        . "with cert status good; first_ms: latency of the first\n"
        . "handshake after the server started; start: httpd start to port open.\n";
print $table;
open my $o, ">", $out or die "$out: $!";
print $o $json->encode(\%out);
close $o;
