# The status page (SetHandler staple-status) and its machine-readable forms,
# checked against what the clients and the responder saw.  A server of its
# own (t/lib/StapleNode.pm, the suite's MPM; under prefork at least 4
# children) with three certificates in four SSL virtual hosts:
#
#   status-good   good, served by two virtual hosts (one registry entry)
#   status-ms     good, Must-Staple
#   err500-status its responder answers HTTP 500 from the start
#
# After a known number of handshakes per certificate, ?json is fetched over
# 20 connections, 8 at a time (so that under prefork several processes
# answer; the access log records which), and every answer must carry the
# same figures: handshakes stapled and unstapled as the clients counted
# them, fetch outcomes as the responder's own request counts, the response
# times of the staple the clients received, the responder URL, virtual
# hosts and Must-Staple flag; the failing certificate's error, failures and
# state.  ?prometheus, ?auto, the HTML page and mod_status's server-status
# say the same.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(logged_serial make_leaf);
use StapleProc qw(children_of read_reply tempdir wait_until);
use IO::Socket::INET ();
use JSON::PP ();
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);

my $K = 6;            # handshakes per virtual host
my $FETCHES = 20;     # ?json answers compared
my $AT_ONCE = 8;      # connections open at the same time

my $dir  = tempdir('status');
my $good = make_leaf($dir, 'status-good');
my $ms   = make_leaf($dir, 'status-ms', must_staple => 1);
my $bad  = make_leaf($dir, 'err500-status');    # proxy prefix err500: HTTP 500
my @certs = ($good, $ms, $bad);
my %by_name = map { $_->{name} => $_ } @certs;

my $node = StapleNode->new(
    name    => 'status',
    dir     => "$dir/server",
    cert    => $good,
    certs   => [$ms, $bad, $good],
    http    => 1,
    modules => [qw(status authz_host)],
    # no retry of the failing certificate while the test reads the figures
    directives => "StapleRetryDelay 300\nStapleErrorCacheTimeout 600\n",
    extra   => <<'EOF',
<Location "/staple-status">
    SetHandler staple-status
    Require ip 127.0.0.1
</Location>
<Location "/server-status">
    SetHandler server-status
    Require ip 127.0.0.1
</Location>
LogFormat "%P %U%q %>s" staple_pid
CustomLog logs/access_log staple_pid
EOF
);
my $prefork = $node->{mpm} eq 'prefork';

plan tests => 29;

my %count0 = map { $_->{name} => responder_count($_->{name}) } @certs;
my $ok = eval { $node->start; 1 };
ok($ok, 'server with 3 certificates in 4 SSL virtual hosts starts') or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;

# --- the server's processes ---------------------------------------------------

if ($prefork) {
    wait_until(10, sub { my @k = children_of($node->pid); @k >= 4 });
}
my @kids = children_of($node->pid);
diag(scalar(@kids) . " httpd children under $node->{mpm}");
ok(@kids >= ($prefork ? 4 : 1), $prefork ? 'prefork: at least 4 children' : 'children run');

# --- handshakes ------------------------------------------------------------------

my %client;    # name => { stapled, unstapled, bad => [...], this_update, next_update }
for my $c (@certs) {
    my $v = $client{ $c->{name} } = { stapled => 0, unstapled => 0, bad => [] };
    for my $port ($node->ports_of($c->{name})) {
        for (1 .. $K) {
            my $r = handshake($port);
            unless ($r->{ok}) {
                push @{ $v->{bad} }, "port $port: $r->{error}";
                next;
            }
            if ($r->{stapled}) {
                $v->{stapled}++;
                push @{ $v->{bad} }, "port $port: staple not good/verified: "
                    . ($r->{cert_status} // '-') . " verified=$r->{verified}"
                    unless staple_good($r);
                for my $k (qw(this_update next_update)) {
                    $v->{$k}{ $r->{$k} // 'undef' }++;
                }
            }
            else {
                $v->{unstapled}++;
            }
        }
    }
}
my $total_hs = 0;
$total_hs += $client{$_}{stapled} + $client{$_}{unstapled} for keys %client;
is($total_hs, 4 * $K, 'every handshake completed');
ok($client{'status-good'}{stapled} == 2 * $K && $client{'status-ms'}{stapled} == $K
   && !$client{'status-good'}{unstapled} && !$client{'status-ms'}{unstapled}
   && !@{ $client{'status-good'}{bad} } && !@{ $client{'status-ms'}{bad} },
   'good certificates: every handshake stapled (good, verified)')
    or diag(explain(\%client), $node->log_tail(20));
ok($client{'err500-status'}{unstapled} == $K && !$client{'err500-status'}{stapled},
   'failing certificate: no handshake stapled') or diag(explain($client{'err500-status'}));

# --- ?json from many connections -------------------------------------------------

my $access_mark = -s "$dir/server/logs/access_log" || 0;

# GET $path on $n connections open at the same time; the answers in order.
sub get_parallel {
    my ($path, $n) = @_;
    my @socks;
    for (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $node->http_port,
                                      Proto => 'tcp', Timeout => 5);
        push @socks, $s;
        next unless $s;
        $s->autoflush(1);
        print $s "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    }
    my @res;
    for my $s (@socks) {
        unless ($s) {
            push @res, { status => 0, error => 'connect failed' };
            next;
        }
        my ($buf, $eof) = read_reply($s, 10);
        close $s;
        my ($head, $body) = split /\r\n\r\n/, $buf, 2;
        my ($status) = ($head // '') =~ m{^HTTP/\d\.\d (\d{3})};
        my ($type) = ($head // '') =~ /^Content-Type:\s*(.*?)\s*$/mi;
        push @res, { status => ($eof ? $status // 0 : 0), type => $type // '',
                     head => $head // '', body => $body // '' };
    }
    return @res;
}

my @answers;
while (@answers < $FETCHES) {
    my $n = $FETCHES - @answers;
    $n = $AT_ONCE if $n > $AT_ONCE;
    push @answers, get_parallel('/staple-status?json', $n);
}
my $t_fetch = time;

my (@docs, @errors);
my $json = JSON::PP->new->canonical;
for my $i (0 .. $#answers) {
    my $a = $answers[$i];
    if ($a->{status} != 200 || $a->{type} !~ m{^application/json}) {
        push @errors, "answer $i: status $a->{status}, type $a->{type}";
        next;
    }
    my $d = eval { JSON::PP::decode_json($a->{body}) };
    unless ($d) {
        push @errors, "answer $i: not JSON: $@";
        next;
    }
    push @docs, $d;
}
is(scalar @docs, $FETCHES, "$FETCHES ?json answers, each application/json that parses")
    or diag(join "\n", @errors);
ok(scalar(grep { $_->{head} =~ /^Cache-Control:\s*no-store/mi } @answers) == $FETCHES,
   'answers carry Cache-Control: no-store');

# which processes answered (access log: "%P %U%q %>s")
my %pids;
{
    open my $fh, '<', "$dir/server/logs/access_log";
    seek $fh, $access_mark, 0 if $fh;
    while ($fh && (my $l = <$fh>)) {
        $pids{$1}++ if $l =~ m{^(\d+) /staple-status\?json 200};
    }
}
diag(sprintf "?json answered by %d process(es): %s", scalar(keys %pids),
     join(' ', map { "$_ x$pids{$_}" } sort keys %pids));
if ($prefork) {
    ok(keys(%pids) >= 2, 'prefork: several processes answered');
}
else {
    ok(keys(%pids) >= 1, 'answers logged');
}

# every answer the same, but for the clock
sub figures {
    my ($d) = @_;
    my %c = %$d;
    delete $c{now};
    $c{certificates} = [map { my %x = %$_; delete $x{seconds_left}; \%x }
                        @{ $d->{certificates} || [] }];
    return $json->encode(\%c);
}
my $first = figures($docs[0] // {});
my @differ = grep { figures($docs[$_]) ne $first } 1 .. $#docs;
ok(@docs && !@differ, 'every answer has the same figures')
    or diag("answers @differ differ from the first:\n$first\n"
            . (@differ ? figures($docs[ $differ[0] ]) : ''));

my $doc = $docs[0] // {};
note(JSON::PP->new->canonical->pretty->encode($doc));
for my $c (@{ $doc->{certificates} || [] }) {
    diag(sprintf '%s: state %s, stapled %s, unstapled %s, failures %s, last fetch %s ms%s',
         $c->{subject} // '?', $c->{state} // '?', $c->{handshakes_stapled} // '?',
         $c->{handshakes_unstapled} // '?', $c->{consecutive_failures} // '?',
         $c->{last_fetch_ms} // '?', $c->{last_error} ? ", error: $c->{last_error}" : '');
}
diag('fetches: ' . join(', ', map { "$_ $doc->{fetches}{$_}" }
                        grep { $doc->{fetches}{$_} } sort keys %{ $doc->{fetches} || {} }));
my %cert = map { $_->{id} => $_ } @{ $doc->{certificates} || [] };

sub iso {
    my ($s) = @_;
    return undef unless defined $s;
    my @f = $s =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/ or return -1;
    return timegm($f[5], $f[4], $f[3], $f[2], $f[1] - 1, $f[0]);
}

# the proxy's counts since the start
my %proxy = map { $_->{name} => responder_count($_->{name}) - $count0{ $_->{name} } } @certs;
diag('responder requests: ' . join(', ', map { "$_ $proxy{$_}" } sort keys %proxy));

is(scalar(keys %cert), 3, 'three certificates, one entry each');

# --- the good certificates -----------------------------------------------------------

my $serial = logged_serial($good->{crt}) // '';
my $url_base = 'http://127.0.0.1:' . proxy_port();

for my $c ($good, $ms) {
    my $j = $cert{ $c->{id} } || {};
    my $v = $client{ $c->{name} };
    my @bad;
    my @tu = keys %{ $v->{this_update} || {} };
    my @nu = keys %{ $v->{next_update} || {} };
    push @bad, "clients saw several responses: @tu / @nu" unless @tu == 1 && @nu == 1;
    push @bad, "subject $j->{subject}" unless ($j->{subject} // '') eq "CN=$c->{name}.localhost";
    push @bad, "serial $j->{serial} vs $serial" unless ($j->{serial} // '') eq $serial;
    push @bad, "state $j->{state}" unless ($j->{state} // '') eq 'good';
    push @bad, 'valid not true' unless $j->{valid} && JSON::PP::is_bool($j->{valid});
    push @bad, "cert_status $j->{cert_status}" unless ($j->{cert_status} // '') eq 'good';
    push @bad, "this_update $j->{this_update} vs client $tu[0]"
        unless @tu && (iso($j->{this_update}) // -1) == $tu[0];
    push @bad, "next_update $j->{next_update} vs client $nu[0]"
        unless @nu && (iso($j->{next_update}) // -1) == $nu[0];
    push @bad, "responder $j->{responder}"
        unless ($j->{responder} // '') eq "$url_base/$c->{name}/";
    my @want_vh = sort map { "localhost:$_" } $node->ports_of($c->{name});
    my @vh = sort @{ $j->{vhosts} || [] };
    push @bad, "vhosts @vh, want @want_vh" unless "@vh" eq "@want_vh";
    push @bad, "must_staple $j->{must_staple}"
        unless JSON::PP::is_bool($j->{must_staple}) && !!$j->{must_staple} == !!$c->{must_staple};
    push @bad, "last_fetch_ms $j->{last_fetch_ms}" unless ($j->{last_fetch_ms} // 0) > 0;
    push @bad, "next_refresh $j->{next_refresh} not in the future"
        unless (iso($j->{next_refresh}) // 0) > $t_fetch;
    push @bad, "seconds_left $j->{seconds_left}"
        unless @nu && ($j->{seconds_left} // -1) > 0 && $j->{seconds_left} <= $nu[0] - $t_fetch + 2;
    push @bad, 'fetched_at/last_fetch_at missing' unless $j->{fetched_at} && $j->{last_fetch_at};
    push @bad, "consecutive_failures $j->{consecutive_failures}" if $j->{consecutive_failures};
    push @bad, "last_error $j->{last_error}" if defined $j->{last_error};
    push @bad, "handshakes_stapled $j->{handshakes_stapled}, clients $v->{stapled}"
        unless ($j->{handshakes_stapled} // -1) == $v->{stapled};
    push @bad, "handshakes_unstapled $j->{handshakes_unstapled}, clients $v->{unstapled}"
        unless ($j->{handshakes_unstapled} // -1) == $v->{unstapled};
    ok(!@bad, "$c->{name}: JSON matches the clients' staple and counts"
              . ($c->{must_staple} ? ' (Must-Staple)' : '')) or diag(join "\n", @bad);
}

# --- the failing certificate -------------------------------------------------------

{
    my $j = $cert{ $bad->{id} } || {};
    my $v = $client{ $bad->{name} };
    my @bad;
    push @bad, "state $j->{state}" unless ($j->{state} // '') eq 'none';
    push @bad, 'valid not false' unless JSON::PP::is_bool($j->{valid}) && !$j->{valid};
    push @bad, "cert_status $j->{cert_status}" if defined $j->{cert_status};
    push @bad, 'this_update/next_update set' if defined $j->{this_update} || defined $j->{next_update};
    push @bad, "consecutive_failures $j->{consecutive_failures}"
        unless ($j->{consecutive_failures} // 0) >= 1;
    push @bad, "consecutive_failures $j->{consecutive_failures} but $proxy{$bad->{name}} requests"
        unless ($j->{consecutive_failures} // 0) == $proxy{ $bad->{name} };
    push @bad, 'last_error: ' . ($j->{last_error} // 'null')
        unless ($j->{last_error} // '') =~ /HTTP status 500/;
    push @bad, 'last_error_at missing' unless $j->{last_error_at};
    push @bad, "responder $j->{responder}"
        unless ($j->{responder} // '') eq "$url_base/$bad->{name}/";
    push @bad, "must_staple $j->{must_staple}" if $j->{must_staple};
    push @bad, "next_refresh $j->{next_refresh} not in the future"
        unless (iso($j->{next_refresh}) // 0) > $t_fetch;
    push @bad, "handshakes_unstapled $j->{handshakes_unstapled}, clients $v->{unstapled}"
        unless ($j->{handshakes_unstapled} // -1) == $v->{unstapled};
    push @bad, "handshakes_stapled $j->{handshakes_stapled}"
        unless ($j->{handshakes_stapled} // -1) == 0;
    ok(!@bad, 'failing certificate: state none, not valid, its error and failures, '
              . 'unstapled handshakes') or diag(join "\n", @bad);
}

# --- fetch counts and the histogram ------------------------------------------------

my $f = $doc->{fetches} || {};
my $sum_outcomes = 0;
$sum_outcomes += $_ for values %$f;
my $sum_proxy = 0;
$sum_proxy += $_ for values %proxy;
is($sum_outcomes, $sum_proxy, 'sum of all fetch outcomes == requests the responder got');
is($f->{ok} // -1, $proxy{'status-good'} + $proxy{'status-ms'},
   'fetches.ok == responder requests for the good certificates');
is($f->{'fetch-error'} // -1, $proxy{'err500-status'},
   'fetches.fetch-error == responder requests for the failing certificate');

my $h = $doc->{fetch_duration_ms} || {};
my $bk = $h->{buckets} || {};
my @bounds = sort { $a <=> $b } grep { $_ ne '+Inf' } keys %$bk;
my @cum = map { $bk->{$_} } @bounds, '+Inf';
my $monotonic = !grep { !defined $cum[$_] || $cum[$_] < $cum[$_ - 1] } 1 .. $#cum;
ok(@bounds >= 5 && $monotonic && defined $bk->{'+Inf'}
   && $bk->{'+Inf'} == ($h->{count} // -1) && $h->{count} == $sum_outcomes
   && ($h->{sum} // 0) > 0,
   'fetch_duration_ms: cumulative buckets, +Inf == count == all fetches')
    or diag(explain($h));

# --- ?prometheus ----------------------------------------------------------------------

my $prom = $node->http_get('/staple-status?prometheus');
is($prom->{status}, 200, '?prometheus answers 200');
my (%help, %type, %samples, @badline);
for my $l (split /\n/, $prom->{body}) {
    if ($l =~ /^# HELP (\S+) \S/) { $help{$1} = 1; next }
    if ($l =~ /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/) { $type{$1} = $2; next }
    if ($l =~ /^#/) { push @badline, $l; next }
    unless ($l =~ /^(staple_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/) {
        push @badline, $l;
        next;
    }
    my ($name, $labels, $value) = ($1, $2 // '', $3);
    my %lab = $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
    push @{ $samples{$name} }, [\%lab, $value];
}
ok(!@badline && %samples, 'every sample line is staple_NAME{labels} VALUE')
    or diag(join "\n", 'bad lines:', @badline);
my @nohelp;
for my $name (sort keys %samples) {
    my $family = $name;
    $family =~ s/_(bucket|sum|count)$// unless $type{$name};
    push @nohelp, $name unless $help{$family} && $type{$family};
}
ok(!@nohelp, 'HELP and TYPE for every family') or diag("without: @nohelp");

my @prom_bad;
for my $c (@certs) {
    my $j = $cert{ $c->{id} } || {};
    for my $s (@{ $samples{staple_handshakes_total} || [] }) {
        my ($lab, $v) = @$s;
        next unless ($lab->{id} // '') eq $c->{id};
        my $want = $lab->{stapled} eq 'true' ? $j->{handshakes_stapled} : $j->{handshakes_unstapled};
        push @prom_bad, "$c->{name} stapled=$lab->{stapled}: $v vs JSON " . ($want // 'undef')
            unless defined $want && $v == $want;
        push @prom_bad, "$c->{name}: subject label $lab->{subject}"
            unless ($lab->{subject} // '') eq "CN=$c->{name}.localhost";
    }
    my $n = grep { ($_->[0]{id} // '') eq $c->{id} } @{ $samples{staple_handshakes_total} || [] };
    push @prom_bad, "$c->{name}: $n staple_handshakes_total samples" unless $n == 2;
}
for my $s (@{ $samples{staple_fetches_total} || [] }) {
    my ($lab, $v) = @$s;
    push @prom_bad, "fetches_total{outcome=$lab->{outcome}} $v vs JSON "
                    . ($f->{ $lab->{outcome} } // 'undef')
        unless defined $f->{ $lab->{outcome} } && $v == $f->{ $lab->{outcome} };
}
ok(!@prom_bad && $samples{staple_fetches_total},
   'staple_handshakes_total and staple_fetches_total equal the JSON figures')
    or diag(join "\n", @prom_bad);

{
    my @b = @{ $samples{staple_fetch_duration_seconds_bucket} || [] };
    my @fin = sort { $a->[0] <=> $b->[0] }
              map { [$_->[0]{le}, $_->[1]] } grep { $_->[0]{le} ne '+Inf' } @b;
    my ($inf) = map { $_->[1] } grep { $_->[0]{le} eq '+Inf' } @b;
    my @vals = (map({ $_->[1] } @fin), $inf // -1);
    my $mono = !grep { $vals[$_] < $vals[$_ - 1] } 1 .. $#vals;
    my ($count) = map { $_->[1] } @{ $samples{staple_fetch_duration_seconds_count} || [] };
    my ($sum) = map { $_->[1] } @{ $samples{staple_fetch_duration_seconds_sum} || [] };
    ok(@fin >= 5 && $mono && defined $inf && defined $count && $inf == $count
       && $count == $sum_outcomes && defined $sum && $sum > 0
       && ($type{staple_fetch_duration_seconds} // '') eq 'histogram',
       'histogram: cumulative buckets, +Inf == _count == all fetches')
        or diag(explain(\@b, $count, $sum));
    my ($valid_bad) = grep { ($_->[0]{id} // '') eq $bad->{id} } @{ $samples{staple_response_valid} || [] };
    my ($valid_good) = grep { ($_->[0]{id} // '') eq $good->{id} } @{ $samples{staple_response_valid} || [] };
    ok($valid_bad && $valid_bad->[1] == 0 && $valid_bad->[0]{state} eq 'none'
       && $valid_good && $valid_good->[1] == 1 && $valid_good->[0]{state} eq 'good',
       'staple_response_valid: 1 (good) and 0 (none)') or diag(explain($valid_bad, $valid_good));
}

# --- ?auto --------------------------------------------------------------------------

my $auto = $node->http_get('/staple-status?auto');
my (%kv, @auto_bad);
for my $l (split /\n/, $auto->{body}) {
    if ($l =~ /^([A-Za-z0-9]+): (.*)$/) { $kv{$1} = $2 } else { push @auto_bad, "line: $l" }
}
{
    my ($st, $un) = (0, 0);
    $st += $_->{handshakes_stapled} for values %cert;
    $un += $_->{handshakes_unstapled} for values %cert;
    my $failed = $sum_outcomes - ($f->{ok} // 0);
    my %want = (StapleCertificates => 3, StapleValid => 2, StapleHandshakesStapled => $st,
                StapleHandshakesUnstapled => $un, StapleFetches => $sum_outcomes,
                StapleFetchesFailed => $failed);
    for my $k (sort keys %want) {
        push @auto_bad, "$k: " . ($kv{$k} // 'missing') . ", want $want{$k}"
            unless defined $kv{$k} && $kv{$k} eq $want{$k};
    }
    for my $i (0 .. 2) {
        my $j = $cert{ $kv{"Cert${i}Id"} // '' };
        unless ($j) {
            push @auto_bad, "Cert${i}Id unknown";
            next;
        }
        my %w = (Subject => $j->{subject}, State => $j->{state},
                 Failures => $j->{consecutive_failures}, Stapled => $j->{handshakes_stapled},
                 Unstapled => $j->{handshakes_unstapled});
        for my $k (sort keys %w) {
            push @auto_bad, "Cert$i$k: " . ($kv{"Cert$i$k"} // 'missing') . ", JSON $w{$k}"
                unless ($kv{"Cert$i$k"} // '') eq $w{$k};
        }
    }
    is($auto->{status}, 200, '?auto answers 200');
    ok(!@auto_bad, '?auto: key: value lines, totals and per-certificate figures match')
        or diag(join("\n", @auto_bad), "\n", $auto->{body});
}

# --- mod_status and the HTML page ------------------------------------------------

my $ss = $node->http_get('/server-status?auto');
ok($ss->{status} == 200 && $ss->{body} =~ /^StapleCertificates: 3$/m
   && $ss->{body} =~ /^StapleValid: 2$/m
   && $ss->{body} =~ /^StapleHandshakesStapled: \Q$kv{StapleHandshakesStapled}\E$/m
   && $ss->{body} =~ /^StapleHandshakesUnstapled: \Q$kv{StapleHandshakesUnstapled}\E$/m,
   'server-status?auto: StapleCertificates, StapleValid and handshake lines')
    or diag($ss->{status}, "\n", $ss->{body});
my $ssh = $node->http_get('/server-status');
ok($ssh->{status} == 200 && $ssh->{body} =~ /OCSP stapling \(mod_staple\)/
   && $ssh->{body} =~ /3 certificate\(s\), 2 with a valid response/,
   'server-status (HTML): the mod_staple section') or diag($ssh->{body});

my $html = $node->http_get('/staple-status');
my @html_bad;
push @html_bad, "status $html->{status}" unless $html->{status} == 200;
push @html_bad, "type $html->{headers}{'content-type'}"
    unless ($html->{headers}{'content-type'} // '') =~ m{^text/html};
for my $c (@certs) {
    push @html_bad, "no row for $c->{name}" unless $html->{body} =~ /\Q$c->{id}\E/
        && $html->{body} =~ /CN=\Q$c->{name}\E\.localhost/;
}
push @html_bad, 'no Must-Staple mark' unless $html->{body} =~ /Must-Staple/;
push @html_bad, 'states' unless $html->{body} =~ /<tr class="good">/
    && $html->{body} =~ /<tr class="none">/;
push @html_bad, 'error text' unless $html->{body} =~ /HTTP status 500/;
ok(!@html_bad, 'HTML page: a row per certificate with its state and error')
    or diag(join("\n", @html_bad), "\n", $html->{body});

ok($node->stop, 'server stops cleanly');
