# ?prometheus against Prometheus' own tools (promtool, Debian's prometheus
# package), and the alert rules of conf/prometheus/staple-alerts.yml against
# that output.  A server of its own (t/lib/StapleNode.pm) with three
# certificates:
#
#   prom-good       good
#   err500-promms   Must-Staple, its responder answers HTTP 500: no staple
#   prom-rev        revoked (t/pki/revoked.crt's serial)
#
# Checks: `promtool check metrics` finds nothing to say about the live
# output; Unix times are named _timestamp_seconds; the per-certificate
# Must-Staple and revoked series say what the certificates are;
# `promtool check rules` and `promtool test rules` (the unit tests in
# t/prometheus/staple-alerts.test.yml) pass; every metric and label an
# alert reads is in the live output; and
# the alerts, evaluated by promtool on the live samples, fire for the
# Must-Staple certificate without a staple and for the revoked one, and for
# nothing else.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(find_program run_cmd spit tempdir wait_until);
use CPAN::Meta::YAML ();
use File::Spec::Functions qw(catfile);
use JSON::PP ();

my $RULES = catfile(Apache::Test::vars('top_dir'), 'conf', 'prometheus', 'staple-alerts.yml');
my $RULE_TESTS = catfile(Apache::Test::vars('t_dir'), 'prometheus', 'staple-alerts.test.yml');
# labels a scrape adds to every series (not in the output itself)
my %TARGET_LABELS = map { $_ => 1 } qw(instance job);

my $dir  = tempdir('prometheus');
my $good = make_leaf($dir, 'prom-good');
my $ms   = make_leaf($dir, 'err500-promms', must_staple => 1);
my $rev  = make_leaf($dir, 'prom-rev', serial_of => 'revoked');

my $node = StapleNode->new(name => 'prometheus', dir => "$dir/server", cert => $good,
                          certs => [$ms, $rev], status => 1,
                          # no retry of the failing certificate while the test reads
                          directives => "StapleRetryDelay 300\nStapleErrorCacheTimeout 600\n");

plan tests => 12;

my $promtool = find_program('promtool');
ok($promtool, 'promtool is installed (Debian package prometheus)')
    or BAIL_OUT('promtool is missing: apt-get install prometheus');

my $ok = eval { $node->start; 1 };
ok($ok, 'server with a good, a Must-Staple failing and a revoked certificate starts')
    or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;

# the startup fetches are done when the revoked response is held
my $text = '';
wait_until(10, sub {
    my $res = $node->http_get('/staple-status?prometheus');
    $text = $res->{status} == 200 ? $res->{body} : '';
    return $text =~ /^staple_response_revoked\{id="\Q$rev->{id}\E",[^}]*\} 1$/m;
}, 0.2);
my $file = catfile($dir, 'metrics.txt');
spit($file, $text);

# --- the exposition format ---------------------------------------------------------

{
    my ($rc, $out) = run_cmd(['sh', '-c', 'exec "$1" check metrics < "$2"', 'sh', $promtool, $file],
                             merge => 1);
    ok($text ne '' && $rc == 0 && $out !~ /\S/, 'promtool check metrics: no problem')
        or diag("exit $rc\n$out\n$text");
}

my (%help, %type, %series);    # family => help text / type; name => [labels...]
for my $l (split /\n/, $text) {
    if ($l =~ /^# HELP (\S+) (.*)$/) { $help{$1} = $2; next }
    if ($l =~ /^# TYPE (\S+) (\S+)$/) { $type{$1} = $2; next }
    next unless $l =~ /^([a-z_]+)(?:\{(.*)\})? (\S+)$/;
    my ($name, $labels, $value) = ($1, $2 // '', $3);
    push @{ $series{$name} }, { labels => { $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g },
                                value => $value };
}
{
    my @bad = grep { $help{$_} =~ /Unix time/ && !/_timestamp_seconds$/ } sort keys %help;
    push @bad, grep { ($type{$_} // '') eq 'counter' && !/_total$/ } sort keys %type;
    ok(!@bad && %help, 'Unix times are _timestamp_seconds, counters _total') or diag("@bad");
}

# value of NAME for the certificate $c
sub cert_value {
    my ($name, $c) = @_;
    my @v = map { $_->{value} } grep { ($_->{labels}{id} // '') eq $c->{id} } @{ $series{$name} || [] };
    return @v == 1 ? $v[0] : 'none';
}
is(join(' ', map { cert_value('staple_certificate_must_staple', $_) } $good, $ms, $rev), '0 1 0',
   'staple_certificate_must_staple: 1 for the Must-Staple certificate only');
is(join(' ', map { cert_value($_, $ms) } qw(staple_response_valid staple_response_revoked))
   . ' ' . cert_value('staple_response_revoked', $rev) . ' ' . cert_value('staple_response_revoked', $good),
   '0 0 1 0', 'staple_response_valid and _revoked: the Must-Staple one holds nothing, the revoked one is revoked');

# --- the alert rules -------------------------------------------------------------------

{
    my ($rc, $out) = run_cmd([$promtool, 'check', 'rules', $RULES], merge => 1);
    ok($rc == 0 && $out =~ /SUCCESS: 5 rules found/, 'promtool check rules conf/prometheus/staple-alerts.yml')
        or diag($out);
}
{
    my ($rc, $out) = run_cmd([$promtool, 'test', 'rules', $RULE_TESTS], merge => 1, timeout => 60);
    ok($rc == 0 && $out =~ /SUCCESS/, 'promtool test rules t/prometheus/staple-alerts.test.yml')
        or diag($out);
}

my $yaml = CPAN::Meta::YAML->read($RULES) or BAIL_OUT("$RULES: " . CPAN::Meta::YAML->errstr);
my @rules = map { @{ $_->{rules} || [] } } @{ $yaml->[0]{groups} || [] };
is(scalar @rules, 5, 'five alerts');

# Every metric an alert reads is in the output, and so is every label it
# matches, joins, groups by or prints, on one of those metrics.
{
    my @missing;
    for my $rule (@rules) {
        my $expr = $rule->{expr};
        my %metrics = map { $_ => 1 } $expr =~ /\b(staple_[a-z0-9_]+)/g;
        my %labels = map { $_ => 1 } (
            $expr =~ /(\w+)\s*(?:=~|!~|!=|=)\s*"/g,
            map({ split /\s*,\s*/ } $expr =~ /\b(?:on|ignoring|by|without|group_left|group_right)\s*\(\s*([^)]*?)\s*\)/g),
            map({ /\$labels\.(\w+)/g } values %{ $rule->{annotations} || {} }),
        );
        my %have;
        for my $m (keys %metrics) {
            my @s = @{ $series{$m} || [] };
            push @missing, "$rule->{alert}: metric $m" unless @s;
            $have{$_} = 1 for map { keys %{ $_->{labels} } } @s;
        }
        next unless %have;
        push @missing, map { "$rule->{alert}: label $_" }
                       grep { !$have{$_} && !$TARGET_LABELS{$_} } sort keys %labels;
    }
    ok(!@missing, 'every metric and label the alerts read is in the live output')
        or diag(join "\n", @missing);
}

# The live samples as constant series of one scraped instance, and the
# rules (without their annotations, which the unit tests check) evaluated
# on them by promtool past every `for`.
{
    my @input;
    for my $name (sort keys %series) {
        for my $s (@{ $series{$name} }) {
            my %l = (%{ $s->{labels} }, instance => 'live:80', job => 'staple');
            my $sel = join ',', map { my $v = $l{$_}; qq{$_="$v"} } sort keys %l;
            push @input, { series => "$name\{$sel\}", values => "$s->{value}x30" };
        }
    }
    my @plain = map { my %r = %$_; delete $r{annotations}; \%r } @rules;
    my $json = JSON::PP->new->canonical;
    spit(catfile($dir, 'live-rules.json'), $json->encode({ groups => [{ name => 'live', rules => \@plain }] }));
    my $alert = sub {
        my ($c, $severity) = @_;
        return { exp_labels => { instance => 'live:80', job => 'staple', id => $c->{id},
                                 subject => "CN=$c->{name}.localhost", severity => $severity } };
    };
    spit(catfile($dir, 'live-test.json'), $json->encode({
        rule_files => ['live-rules.json'],
        evaluation_interval => '1m',
        tests => [{
            interval => '1m',
            input_series => \@input,
            alert_rule_test => [
                { eval_time => '20m', alertname => 'StapleMustStapleWithoutStaple',
                  exp_alerts => [$alert->($ms, 'critical')] },
                { eval_time => '20m', alertname => 'StapleCertificateRevoked',
                  exp_alerts => [$alert->($rev, 'critical')] },
            ],
        }],
    }));
    my ($rc, $out) = run_cmd([$promtool, 'test', 'rules', catfile($dir, 'live-test.json')],
                             merge => 1, timeout => 60);
    ok($rc == 0 && $out =~ /SUCCESS/,
       'on the live output: the Must-Staple and the revoked alerts fire, each for its certificate only')
        or diag($out);
}

ok($node->stop, 'server stops cleanly');
