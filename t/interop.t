# The clients people use, against mod_staple.  Each is told the test root
# (t/pki/root.pem) and nothing else.  Two servers of their own
# (t/lib/StapleNode.pm, the suite's MPM) and two certificates:
#
#   interop-ms    Must-Staple; the responder answers the server's first
#                 fetch, then hangs (the proxy's mode "hang")
#   interop-rev   revoked (t/pki/revoked.crt's serial)
#
#   staple     mod_staple: interop-ms, and interop-rev on a second port
#   withheld   the same interop-ms certificate with StapleEngine off: no
#              staple (mod_ssl's own stapling is off too)
#
# Clients, each with a case that must pass and one that must fail:
#   Firefox ESR, headless, through Marionette (t/lib/StapleFirefox.pm):
#       loads the page from mod_staple; refuses the withheld server with
#       MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING
#   curl --cert-status (OpenSSL backend): exit 0; exit 91 when withheld
#   gnutls-cli --ocsp, and GnuTLS's ocsptool on the staple it saved:
#       Successful, good, for the leaf's serial, signature verified against
#       the chain the server sent; withheld: gnutls-cli refuses the
#       Must-Staple certificate and saves no staple
#   Java 17 (t/interop/StapleClient.java): revocation checked from the
#       staple only; connects; fails when withheld and for the revoked one
# No client ever asks the responder itself: its request counts stay as
# the servers left them.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleFirefox ();
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(find_program free_port run_cmd slurp spit tempdir wait_until);
use File::Spec::Functions qw(catfile);

my $ROOT = pki_file('root.pem');
my $TITLE = 'mod_staple interop';

my @need = ([qw(curl curl)], [qw(gnutls-cli gnutls-bin)], [qw(ocsptool gnutls-bin)],
            [qw(java openjdk-17-jdk-headless)], [qw(javac openjdk-17-jdk-headless)],
            [qw(certutil libnss3-tools)], [qw(firefox-esr firefox-esr)]);
my %bin = map { $_->[0] => find_program($_->[0]) } @need;

my $dir = tempdir('interop');
my $ms  = make_leaf($dir, 'interop-ms', must_staple => 1);
my $rev = make_leaf($dir, 'interop-rev', serial_of => 'revoked');

# mod_dir: GET / is the index.html written below
my $staple = StapleNode->new(name => 'staple', dir => "$dir/staple", cert => $ms, certs => [$rev],
                             modules => ['dir']);
my $withheld = StapleNode->new(name => 'withheld', dir => "$dir/withheld", cert => $ms,
                               modules => ['dir'], directives => "StapleEngine off\n");
for my $node ($staple, $withheld) {
    spit(catfile($node->dir, 'htdocs', 'index.html'),
         "<!DOCTYPE html>\n<title>$TITLE</title>\n<p>served by the " . $node->name . " server\n",
         0644);
}
my ($ms_port) = $staple->ports_of('interop-ms');
my ($rev_port) = $staple->ports_of('interop-rev');

plan tests => 20;

my @missing = map { "$_->[0] ($_->[1])" } grep { !$bin{ $_->[0] } } @need;
ok(!@missing, 'every client is installed') or diag("missing: @missing");
BAIL_OUT("clients missing: @missing") if @missing;

# --- the servers, and the responder hanging after the first fetch -----------------------

proxy_mode('interop-ms', 'default');
my $fetches0 = responder_count('interop-ms');    # more when this test runs again
my $ok = eval { $staple->start; $withheld->start; 1 };
ok($ok, 'the mod_staple server and the withheld server start') or diag($@);
BAIL_OUT('cannot start the test servers') unless $ok;

my $first = wait_until(10, sub { staple_good($staple->handshake) }, 0.1);
ok($first && responder_count('interop-ms') == $fetches0 + 1,
   'mod_staple staples interop-ms after one fetch')
    or diag('requests: ' . (responder_count('interop-ms') - $fetches0), "\n", $staple->log_tail(10));
ok(proxy_mode('interop-ms', 'hang'), 'the responder hangs from now on');
{
    # the responder's own answer to the next request: none within 2 s
    my ($rc, $out) = run_cmd(['openssl', 'ocsp', '-issuer', pki_file('inter.pem'), '-cert', $ms->{crt},
                              '-url', 'http://127.0.0.1:' . proxy_port() . '/interop-ms/',
                              '-timeout', 2], timeout => 10, merge => 1);
    ok($rc != 0 && (request_times('interop-ms'))[-1][1] eq 'hang',
       'an OCSP request for interop-ms now gets no answer') or diag($out);
}
my %asked = map { $_ => responder_count($_) } qw(interop-ms interop-rev);

# --- Firefox ----------------------------------------------------------------------------------

{
    my $ff = StapleFirefox->new(dir => "$dir/firefox", ca => $ROOT);
    my $started = eval { $ff->start; 1 };
    my $err = $@;
    my $r = $started ? $ff->load("https://localhost:$ms_port/") : { error => $err };
    ok($r->{ok} && ($r->{title} // '') eq $TITLE && ($r->{text} // '') =~ /served by the staple server/,
       'Firefox loads the Must-Staple page from mod_staple while the responder hangs')
        or diag(explain($r), slurp("$dir/firefox/firefox.log") // '');
    my $w = $started ? $ff->load('https://localhost:' . $withheld->port . '/') : { error => $err };
    ok(!$w->{ok} && ($w->{net_error} // '') eq 'MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING',
       'Firefox refuses the same certificate without its staple (REQUIRED_TLS_FEATURE_MISSING)')
        or diag(explain($w));
    $ff->stop;
}

# --- curl -------------------------------------------------------------------------------------

sub curl {
    my ($port) = @_;
    return run_cmd([$bin{curl}, '--silent', '--show-error', '--cert-status', '--cacert', $ROOT,
                    '--max-time', 10, "https://localhost:$port/"], merge => 1);
}
{
    my ($rc, $out) = curl($ms_port);
    ok($rc == 0 && $out =~ /served by the staple server/, 'curl --cert-status: success')
        or diag("exit $rc: $out");
    ($rc, $out) = curl($withheld->port);
    ok($rc == 91 && $out =~ /No OCSP response received/,
       'curl --cert-status against the withheld server: exit 91, no OCSP response')
        or diag("exit $rc: $out");
}

# --- GnuTLS -----------------------------------------------------------------------------------

# gnutls-cli --ocsp: (exit code, output, the staple it saved, the chain)
sub gnutls {
    my ($port, $tag) = @_;
    my ($staple_file, $chain) = map { catfile($dir, "gnutls-$tag.$_") } qw(der pem);
    unlink $staple_file, $chain;
    my ($rc, $out) = run_cmd([$bin{'gnutls-cli'}, '--ocsp', "--x509cafile=$ROOT",
                              "--save-ocsp=$staple_file", "--save-cert=$chain", '-p', $port,
                              'localhost'], merge => 1);
    return ($rc, $out, $staple_file, $chain);
}
{
    my ($rc, $out, $file, $chain) = gnutls($ms_port, 'staple');
    ok($rc == 0 && -s $file, 'gnutls-cli --ocsp: handshake completed, staple saved')
        or diag("exit $rc: $out");
    my ($irc, $info) = run_cmd([$bin{ocsptool}, '--response-info', '--load-response', $file],
                               merge => 1);
    my ($src, $serial) = run_cmd(['openssl', 'x509', '-in', $ms->{crt}, '-noout', '-serial']);
    $serial = lc($serial =~ /serial=([0-9A-Fa-f]+)/ ? $1 : 'none') =~ s/^(?:00)+(?=.)//r;
    ok($irc == 0 && $info =~ /Response Status: Successful/ && $info =~ /Certificate Status: good/
       && $info =~ /Serial Number: 0*\Q$serial\E\b/i,
       'ocsptool: Successful, good, for the leaf') or diag("serial $serial\n$info");
    my ($vrc, $v) = run_cmd([$bin{ocsptool}, '--verify-response', "--load-chain=$chain",
                             '--load-response', $file], merge => 1);
    ok($vrc == 0 && $v =~ /Verifying OCSP Response: Success\./,
       'ocsptool: the signature verifies against the chain the server sent') or diag($v);

    ($rc, $out, $file) = gnutls($withheld->port, 'withheld');
    ok($rc != 0 && $out =~ /OCSP status is missing/ && !-s $file,
       'gnutls-cli --ocsp refuses the withheld Must-Staple certificate, no staple saved')
        or diag("exit $rc: $out");
    ($vrc, $v) = run_cmd([$bin{ocsptool}, '--response-info', '--load-response', $file], merge => 1);
    ok($vrc != 0, 'ocsptool finds no response to read') or diag($v);
}

# --- Java ------------------------------------------------------------------------------------

{
    my $classes = catfile($dir, 'java');
    mkdir $classes;
    my ($crc, $cout) = run_cmd([$bin{javac}, '-d', $classes,
                                catfile(Apache::Test::vars('t_dir'), 'interop', 'StapleClient.java')],
                               timeout => 120, merge => 1);
    ok($crc == 0, 'javac t/interop/StapleClient.java') or diag($cout);
    my $dead = 'http://127.0.0.1:' . free_port() . '/';    # nothing listens there
    my $java = sub {
        my ($port) = @_;
        return run_cmd([$bin{java}, '-Djdk.tls.client.enableStatusRequestExtension=true',
                        '-cp', $classes, 'StapleClient', $ROOT, 'localhost', $port, $dead],
                       timeout => 60, merge => 1);
    };
    my ($rc, $out) = $java->($ms_port);
    ok($rc == 0 && $out =~ /^OK TLSv1\.[23] stapled [1-9]\d* HTTP\/1\.1 200 OK$/m,
       'Java: connects, revocation checked from the staple') or diag("exit $rc: $out");
    ($rc, $out) = $java->($withheld->port);
    ok($rc == 1 && $out =~ /^FAIL .*Unable to determine revocation status/m,
       'Java: fails without the staple (no fallback, no responder asked)') or diag("exit $rc: $out");
    ($rc, $out) = $java->($rev_port);
    ok($rc == 1 && $out =~ /^FAIL .*CertificateRevokedException: Certificate has been revoked/m,
       'Java: fails for the revoked certificate') or diag("exit $rc: $out");
}

# --- nobody asked the responder ---------------------------------------------------------------

is(join(' ', map { responder_count($_) } sort keys %asked), join(' ', map { $asked{$_} } sort keys %asked),
   'no client asked the responder: every answer came from the staple');
ok($staple->stop && $withheld->stop, 'servers stop cleanly');
