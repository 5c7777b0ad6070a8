# Configuration errors: every directive with a bad value makes `httpd -t`
# fail with a message naming the directive and the accepted form; good values
# and the example configuration pass.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestConfig ();
use File::Spec::Functions qw(catfile rel2abs);
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleNode ();

my $vars    = Apache::Test::vars();
my $top     = rel2abs(catfile($vars->{t_dir}, '..'));

# [ directives, expected error pattern, warning ]; undef pattern: must pass,
# printing the warning when one is given
my @cases = (
    [ 'StapleEngine maybe', qr/StapleEngine/ ],
    [ 'StapleCache nosuchcache', qr/StapleCache: 'nosuchcache' is not a loaded socache provider \(loaded: [^)]*shmcb/ ],
    [ 'StapleCache shmcb:x(12)', qr/StapleCache: 'shmcb:x\(12\)'/ ],
    [ "<VirtualHost 127.0.0.1:1>\nStapleCache shmcb\n</VirtualHost>", qr/StapleCache cannot occur within <VirtualHost> section/ ],
    [ 'StapleForceURL ftp://ocsp.example.com/', qr/StapleForceURL: 'ftp:\/\/ocsp.example.com\/' is not an http:\/\/ or https:\/\/ URL/ ],
    [ 'StapleForceURL not-a-url', qr/StapleForceURL: 'not-a-url' is not an http/ ],
    [ 'StapleRenewWindow 150%', qr/StapleRenewWindow: '150%' is not a percentage from 1% to 99%/ ],
    [ 'StapleRenewWindow soon', qr/StapleRenewWindow: 'soon' is not a valid number of seconds/ ],
    (map { [ "$_ abc", qr/$_: 'abc' is not a valid number of seconds; use a whole number from \d+ to 315360000/ ] }
         qw(StapleStartupTimeout StapleResponderTimeout StapleResponseTimeSkew
            StapleStandardCacheTimeout StapleRetryDelay StapleErrorCacheTimeout
            StapleEventTimeout)),
    [ 'StapleResponderTimeout 0', qr/StapleResponderTimeout: '0' is not a valid number of seconds; use a whole number from 1 to 315360000/ ],
    [ 'StapleRetryDelay 315360001', qr/StapleRetryDelay: '315360001' is not a valid number of seconds; use a whole number from 1 to 315360000/ ],
    [ 'StapleResponseTimeSkew -5', qr/StapleResponseTimeSkew: '-5' is not a valid/ ],
    [ 'StapleResponseMaxAge abc', qr/StapleResponseMaxAge: 'abc' is not valid; use -1 or a whole number of seconds from 1 to 315360000/ ],
    [ 'StapleResponseMaxAge -2', qr/StapleResponseMaxAge: '-2' is not valid; use -1 or a whole number of seconds from 1 to 315360000 .*-1: no limit/ ],
    [ 'StapleResponseMaxAge 0', qr/StapleResponseMaxAge: 0 would refuse every response; use -1 or a whole number of seconds from 1 to 315360000/ ],
    [ 'StapleRenewWindow 2592001', qr/StapleRenewWindow: 2592001 seconds is longer than OCSP responses live \(30 days at most.*use a percentage/ ],
    [ "<VirtualHost 127.0.0.1:1>\nStapleStartupTimeout 3\n</VirtualHost>", qr/StapleStartupTimeout cannot occur within <VirtualHost> section/ ],
    [ 'StapleTrustedCertificate /nonexistent/anchors.pem', qr{StapleTrustedCertificate: cannot read /nonexistent/anchors.pem: No such file or directory; give a readable file of PEM certificates} ],
    [ "StapleTrustedCertificate " . rel2abs($0), qr{StapleTrustedCertificate: no PEM certificate in \S+config.t} ],
    [ "<VirtualHost 127.0.0.1:1>\nStapleStore none\n</VirtualHost>", qr/StapleStore cannot occur within <VirtualHost> section/ ],
    # good values
    [ join("\n", 'StapleEngine off', 'StapleCache shmcb:staple-test(65536)',
           'StapleForceURL http://ocsp.example.com/', 'StapleRenewWindow 3600',
           'StapleStartupTimeout 0', 'StapleResponderTimeout 3',
           'StapleResponseTimeSkew 0', 'StapleResponseMaxAge -1',
           'StapleStandardCacheTimeout 600', 'StapleRetryDelay 5',
           'StapleErrorCacheTimeout 60',
           "<VirtualHost 127.0.0.1:1>\nStapleEngine on\nStapleForceURL https://o.example/x\n</VirtualHost>"), undef ],
    [ 'StapleRenewWindow 33%', undef ],
    [ 'StapleRequestMethod sometimes', qr/StapleRequestMethod: 'sometimes' is not auto, get or post/ ],
    [ 'StapleRequestMethod post', undef ],
    [ 'StapleForceURL http://a.example/ https://b.example/ocsp', undef ],
    [ 'StapleForceURL http://a.example/ gopher://b.example/', qr{StapleForceURL: 'gopher://b.example/' is not an http:// or https:// URL} ],
    [ 'StapleEventTimeout 5', undef ],
    [ 'StapleRenewWindow 172800', undef, qr/StapleRenewWindow 172800: longer than the validity of many OCSP responses/ ],
    [ 'StapleResponseMaxAge 1', undef ],
    [ 'StapleStore none', undef ],
    [ 'StapleStore staple-test-store', undef ],
    [ 'StapleTrustedCertificate ' . catfile($vars->{t_dir}, 'pki', 'root.pem'), undef ],
    [ 'StapleCache dbm:staple-test.db', undef ],
    [ 'StapleCache memcache:127.0.0.1:11211', undef ],
    [ 'StapleCache redis:127.0.0.1:6379', undef ],
    [ 'Include ' . catfile($top, 'conf', 'staple.conf'), undef ],
    (map { [ 'Include ' . catfile($top, 'conf', $_), undef ] }
         qw(single-server.conf redis-cluster.conf internal-pki.conf relay.conf)),
    [ 'StapleProxy http://127.0.0.1:3128/', undef ],
    [ 'StapleProxy socks5://127.0.0.1:1080/', qr{StapleProxy: 'socks5://127.0.0.1:1080/' is not an http:// or https:// URL} ],
    [ 'StapleEventCmd /bin/true --flag "two words"', undef ],
    [ 'StapleEventCmd /nonexistent/notify', qr{StapleEventCmd: '/nonexistent/notify' is not an executable file} ],
    [ 'StapleEventCmd', qr{StapleEventCmd} ],
);

plan tests => 2 * @cases + grep { $_->[2] } @cases;

my @MODULES = qw(mpm_event authz_core authz_host socache_shmcb socache_dbm
                 socache_memcache socache_redis ssl staple);

my $dir = tempdir(CLEANUP => 1);
my $n = 0;
for my $case (@cases) {
    my ($directives, $expect, $warning) = @$case;
    my $conf = catfile($dir, 'httpd' . $n++ . '.conf');
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh StapleNode::minimal_conf($dir, @MODULES), "$directives\n";
    close $fh;
    my ($rc, $out) = StapleNode::httpd_t($conf);
    my $first = (split /\n/, $directives)[0];
    if (defined $expect) {
        # an error exit: not 0, nor a signal (128 + N) or the time limit (-1)
        ok($rc > 0 && $rc < 128, "rejected: $first") or diag("exit code $rc");
        like($out, $expect, "message names the directive and the fix: $first")
            or diag($out);
    }
    else {
        is($rc, 0, "accepted: $first") or diag($out);
        like($out, qr/Syntax OK/, "Syntax OK: $first");
        like($out, $warning, "a warning with the reason: $first") if $warning;
    }
}
