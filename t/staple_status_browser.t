# The status page (SetHandler staple-status) in a real browser: headless
# Chromium (Debian's chromium) renders it from a server of its own
# (t/lib/StapleNode.pm) with three certificates in three states:
#
#   browser-good     good
#   browser-rev      revoked (t/pki/revoked.crt's serial)
#   err500-browser   its responder answers HTTP 500: no response, "none"
#
# The DOM Chromium built (--dump-dom) has one table row per certificate,
# each with its state class; the screenshot (--screenshot) shows each
# state's colour, and is kept as an artifact of the run in
# t/logs/artifacts/staple-status-MPM.png.  The browser runs with a fresh
# profile, every host but loopback sent to a proxy port where nothing
# listens, and no background networking.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(find_program free_port run_cmd slurp tempdir wait_until);
use Compress::Zlib ();
use File::Copy ();
use File::Path ();
use File::Spec::Functions qw(catfile);

my ($W, $H) = (1400, 700);    # window, and so screenshot, size
# state => the background its row gets (the page's style sheet)
my %COLOUR = (good => 'd8f5d0', revoked => 'f9c9c4', none => 'e6e6e6');

plan tests => 6;

my $chromium = find_program('chromium');
ok($chromium, 'chromium is installed (Debian package chromium)')
    or BAIL_OUT('chromium is missing: apt-get install chromium');

my $dir  = tempdir('browser');
my $good = make_leaf($dir, 'browser-good');
my $rev  = make_leaf($dir, 'browser-rev', serial_of => 'revoked');
my $none = make_leaf($dir, 'err500-browser');
my %want = ($good->{id} => 'good', $rev->{id} => 'revoked', $none->{id} => 'none');

my $node = StapleNode->new(name => 'browser', dir => "$dir/server", cert => $good,
                          certs => [$rev, $none], status => 1,
                          # no retry of the failing certificate while the test reads
                          directives => "StapleRetryDelay 300\nStapleErrorCacheTimeout 600\n");

my $ok = eval { $node->start; 1 };
ok($ok, 'server with a good, a revoked and a failing certificate starts') or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;
# the startup fetches are done when both responses are held
wait_until(10, sub {
    my $json = $node->http_get('/staple-status?json')->{body} // '';
    my $n = () = $json =~ /"state": *"(?:good|revoked)"/g;
    return $n == 2;
}, 0.2);

# --- the page in Chromium ---------------------------------------------------------

my $png = catfile($dir, 'staple-status.png');
my ($rc, $dom, $err) = run_cmd([$chromium, '--headless', '--no-sandbox', '--disable-gpu',
                                '--disable-quic', '--no-first-run', '--disable-background-networking',
                                '--disable-component-update', '--disable-sync',
                                '--user-data-dir=' . catfile($dir, 'chromium'),
                                '--proxy-server=http://127.0.0.1:' . free_port(),
                                "--window-size=$W,$H", "--screenshot=$png", '--dump-dom',
                                'http://127.0.0.1:' . $node->http_port . '/staple-status'],
                               timeout => 60, env => { HOME => $dir });
ok($rc == 0 && $dom =~ m{<title>OCSP stapling</title>}, 'Chromium renders /staple-status')
    or diag("exit $rc\n", grep { !/dbus/ } split /^/, $err);

# rows of the certificates' table as the browser built it (it adds the
# <tbody>); the responders have a table of their own
my ($tbody) = $dom =~ m{<table id="certificates">\s*<tbody>(.*?)</tbody>\s*</table>}s;
my @rows = ($tbody // '') =~ m{<tr class="([a-z]+)">(.*?)</tr>}gs;
my %got;
while (my ($class, $cells) = splice @rows, 0, 2) {
    my ($id) = grep { $cells =~ /\b\Q$_\E\b/ } keys %want;
    $got{ $id // "unknown row: $cells" } = $class;
}
is_deeply(\%got, \%want, 'the DOM: one row per certificate, each with its state class')
    or diag($dom);

# --- the screenshot ------------------------------------------------------------------

my $pixels = eval { png_colours($png) };
my @missing = grep { ($pixels->{ $COLOUR{$_} } // 0) < 500 } sort keys %COLOUR;
ok($pixels && !@missing, "the screenshot ($W x $H) shows the colour of each state")
    or diag($@ || "too few pixels for: @missing");

my $keep = catfile(Apache::Test::vars('t_logs'), 'artifacts');
File::Path::make_path($keep);
my $artifact = catfile($keep, 'staple-status-' . $node->{mpm} . '.png');
File::Copy::copy($png, $artifact) and diag("screenshot: $artifact");

ok($node->stop, 'server stops cleanly');

# png_colours(FILE) -> { "rrggbb" => pixels }: the colours of an 8-bit RGB
# or RGBA PNG (as Chromium writes them) of $W x $H; dies on anything else.
sub png_colours {
    my ($file) = @_;
    my $data = slurp($file) // die "no screenshot $file\n";
    die "not a PNG\n" unless substr($data, 0, 8, '') eq "\x89PNG\r\n\x1a\n";
    my ($w, $h, $depth, $type, $idat) = (0, 0, 0, 0, '');
    while (length $data >= 12) {
        my ($len, $kind) = unpack 'Na4', substr($data, 0, 8, '');
        my $body = substr($data, 0, $len + 4, '');    # and the CRC
        if ($kind eq 'IHDR') {
            ($w, $h, $depth, $type) = unpack 'NNCC', $body;
        }
        elsif ($kind eq 'IDAT') {
            $idat .= substr($body, 0, $len);
        }
    }
    die "PNG of ${w}x$h, not ${W}x$H\n" unless $w == $W && $h == $H;
    my $bpp = { 2 => 3, 6 => 4 }->{$type};
    die "PNG colour type $type, depth $depth\n" unless $bpp && $depth == 8;
    my $raw = Compress::Zlib::uncompress($idat) // die "bad PNG data\n";
    my $stride = $w * $bpp;
    my ($prev, %count) = ("\0" x $stride);
    for my $y (0 .. $h - 1) {
        my $filter = ord substr($raw, $y * ($stride + 1), 1);
        my @cur = unpack 'C*', substr($raw, $y * ($stride + 1) + 1, $stride);
        my @up = unpack 'C*', $prev;
        for my $i (0 .. $#cur) {
            my $a = $i >= $bpp ? $cur[$i - $bpp] : 0;
            my $b = $up[$i];
            my $c = $i >= $bpp ? $up[$i - $bpp] : 0;
            if    ($filter == 1) { $cur[$i] += $a }
            elsif ($filter == 2) { $cur[$i] += $b }
            elsif ($filter == 3) { $cur[$i] += ($a + $b) >> 1 }
            elsif ($filter == 4) {
                my $p = $a + $b - $c;
                my ($pa, $pb, $pc) = (abs($p - $a), abs($p - $b), abs($p - $c));
                $cur[$i] += $pa <= $pb && $pa <= $pc ? $a : $pb <= $pc ? $b : $c;
            }
            $cur[$i] &= 0xff;
        }
        $prev = pack 'C*', @cur;
        for (my $i = 0; $i < @cur; $i += $bpp) {
            $count{ sprintf '%02x%02x%02x', @cur[$i .. $i + 2] }++;
        }
    }
    return \%count;
}
