# scripts/staple-migrate: mod_ssl's stapling directives rewritten into
# mod_staple's, on a copy of Debian's real /etc/apache2 (ssl enabled as
# a2enmod/a2ensite would, stapling configured as an admin would) and on
# configurations of our own; every result must pass `httpd -t` with the
# module from the build tree loaded.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Digest::SHA ();
use File::Copy ();
use File::Find ();
use File::Path qw(make_path);
use File::Spec::Functions qw(catfile rel2abs abs2rel);
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StapleProc qw(run_cmd slurp spit);

my $vars    = Apache::Test::vars();
my $top     = rel2abs(catfile($vars->{t_dir}, '..'));
my $migrate = catfile($top, 'scripts', 'staple-migrate');
my $module  = catfile($top, 'mod_staple', '.libs', 'mod_staple.so');
my $cert = pki_file('good.pem');
my $key  = pki_file('good.key');

my $DEBIAN_TESTS = 25;
plan tests => $DEBIAN_TESTS + 48;

# migrate([\%env,] @args) -> (exit code, stdout, stderr); bounded to 60 s
sub migrate {
    my $env = ref $_[0] ? shift : {};
    return run_cmd([$^X, $migrate, @_], env => $env, timeout => 60);
}

# relative path => what it is (file digest, link target, directory)
sub snapshot {
    my ($dir) = @_;
    my %s;
    File::Find::find({ no_chdir => 1, wanted => sub {
        my $rel = abs2rel($File::Find::name, $dir);
        if (-l $_) { $s{$rel} = 'link ' . readlink $_ }
        elsif (-d _) { $s{$rel} = 'dir' }
        else { $s{$rel} = 'file ' . Digest::SHA->new(1)->addfile($_)->hexdigest }
    } }, $dir);
    return \%s;
}

# directives in effect (not comments) matching $re, in every file under
# $dir but the backups
sub active {
    my ($dir, $re) = @_;
    my @hits;
    File::Find::find({ no_chdir => 1, wanted => sub {
        return if -l $_ || !-f _ || /\.bak(?:\.\d+)?$/;
        open my $fh, '<', $_ or return;
        while (my $l = <$fh>) {
            push @hits, abs2rel($File::Find::name, $dir) . ": $l"
                if $l !~ /^\s*#/ && $l =~ $re;
        }
    } }, $dir);
    return @hits;
}

sub httpd_t {
    my ($env, $root, $conf) = @_;
    return StapleNode::httpd_t($conf, root => $root, env => $env);
}

my $SSL_STAPLING = qr/^\s*SSL(?:UseStapling|Stapling\w+)\b/i;

# --- Debian's /etc/apache2 -------------------------------------------------------------

SKIP: {
    skip 'no /etc/apache2/apache2.conf (Debian apache2 package) here', $DEBIAN_TESTS
        unless -f '/etc/apache2/apache2.conf' && -d '/etc/apache2/mods-available';
    my $tmp  = tempdir(CLEANUP => 1);
    my $etc  = catfile($tmp, 'apache2');
    my $conf = catfile($etc, 'apache2.conf');

    # a copy of the tree; links stay links (absolute ones into the tree are
    # pointed into the copy, so that nothing outside it is ever changed)
    File::Find::find({ no_chdir => 1, wanted => sub {
        my $rel = abs2rel($File::Find::name, '/etc/apache2');
        my $to = $rel eq '.' ? $etc : catfile($etc, $rel);
        if (-l $_) {
            my $t = readlink $_;
            $t =~ s{^/etc/apache2(?=/|$)}{$etc};
            symlink $t, $to or die "symlink $to: $!";
        }
        elsif (-d _) { make_path($to) }
        elsif (-f _) { File::Copy::copy($_, $to) or die "copy $_: $!" }
    } }, '/etc/apache2');

    # a2enmod ssl (with socache_shmcb), a2ensite default-ssl
    for my $l (['mods-enabled', 'mods-available', qw(ssl.load ssl.conf socache_shmcb.load)],
               ['sites-enabled', 'sites-available', 'default-ssl.conf']) {
        my ($en, $av, @names) = @$l;
        for my $n (@names) {
            my $link = catfile($etc, $en, $n);
            next if -e $link || -l $link;
            symlink "../$av/$n", $link or die "symlink $link: $!";
        }
    }

    # what an admin adds for mod_ssl's stapling
    my $sslconf = catfile($etc, 'mods-available', 'ssl.conf');
    my $t = slurp($sslconf);
    my $cache = 'SSLStaplingCache "shmcb:${APACHE_RUN_DIR}/ssl_stapling(32768)"';
    $t =~ s/^(\s*)(SSLSessionCacheTimeout[^\n]*\n)/$1$2\n$1# OCSP stapling\n$1$cache\n/m
        or $t .= "\n$cache\n";
    spit($sslconf, $t);
    my $site = catfile($etc, 'sites-available', 'default-ssl.conf');
    $t = slurp($site);
    $t =~ s{^(\s*)SSLCertificateFile\s.*$}{$1SSLCertificateFile      $cert}m or die 'no SSLCertificateFile';
    $t =~ s{^(\s*)SSLCertificateKeyFile\s.*$}{$1SSLCertificateKeyFile   $key}m or die 'no SSLCertificateKeyFile';
    $t =~ s{^(\s*)(SSLEngine on\s*\n)}{$1$2\n$1SSLUseStapling on\n$1SSLStaplingResponderTimeout 5\n$1SSLStaplingReturnResponderErrors off\n}m
        or die 'no SSLEngine on in default-ssl.conf';
    spit($site, $t);
    my %before_text = (ssl => slurp($sslconf), site => slurp($site));

    # Debian's envvars, pointed at the temporary directory
    my %env = (APACHE_RUN_DIR => "$tmp/run", APACHE_LOCK_DIR => "$tmp/lock",
               APACHE_LOG_DIR => "$tmp/log", APACHE_PID_FILE => "$tmp/run/apache2.pid",
               APACHE_RUN_USER => 'nobody', APACHE_RUN_GROUP => 'nogroup', LANG => 'C');
    make_path("$tmp/run", "$tmp/lock", "$tmp/log");

    my ($rc, $out) = httpd_t(\%env, $etc, $conf);
    is($rc, 0, 'Debian: the mod_ssl configuration passes httpd -t before') or diag($out);

    # diff mode
    my $snap = snapshot($etc);
    my ($mrc, $mout, $merr) = migrate('--root', $etc, $conf);
    is($mrc, 0, 'Debian, diff mode: exit 0') or diag($merr);
    like($mout, qr/^-\s*SSLUseStapling on\n/m, 'Debian, diff mode: SSLUseStapling removed in the diff')
        or diag($mout);
    like($mout, qr/^\+\s*StapleEngine on\n/m, 'Debian, diff mode: StapleEngine added in the diff');
    like($mout, qr/^\+\s*StapleCache "shmcb:\$\{APACHE_RUN_DIR\}\/ssl_stapling\(32768\)"\n/m,
         'Debian, diff mode: StapleCache with the same argument');
    like($mout, qr/^--- sites-available\/default-ssl\.conf\n\+\+\+ sites-available\/default-ssl\.conf\n/m,
         'Debian, diff mode: per-file headers with paths relative to ServerRoot');
    like($merr, qr/mod_staple is not loaded.*a2enmod staple/s, 'Debian, diff mode: LoadModule hint');
    is_deeply(snapshot($etc), $snap, 'Debian, diff mode: nothing changed');

    # in place, with the LoadModule of the build tree's module
    ($mrc, $mout, $merr) = migrate('--in-place', '--root', $etc, '--add-load', $module, $conf);
    is($mrc, 0, 'Debian, --in-place: exit 0') or diag($merr);
    like($merr, qr/SSLStaplingResponderTimeout 5 -> StapleResponderTimeout 5, moved out of <VirtualHost \*:443>/,
         'Debian, --in-place: explains the move out of the virtual host');
    like($merr, qr/SSLStaplingReturnResponderErrors off removed: mod_staple never staples an error/,
         'Debian, --in-place: explains SSLStaplingReturnResponderErrors');

    ($rc, $out) = httpd_t(\%env, $etc, $conf);
    is($rc, 0, 'Debian: the migrated configuration passes httpd -t') or diag($out);
    like($out, qr/Syntax OK/, 'Debian: Syntax OK');
    is_deeply([active($etc, $SSL_STAPLING)], [], 'Debian: no SSLUseStapling/SSLStapling* left in effect');

    my $ssl_after  = slurp($sslconf);
    my $site_after = slurp($site);
    like($ssl_after, qr/^StapleCache "shmcb:\$\{APACHE_RUN_DIR\}\/ssl_stapling\(32768\)"$/m,
         'Debian: ssl.conf has StapleCache');
    like($site_after, qr/^StapleResponderTimeout 5\n<VirtualHost \*:443>/m,
         'Debian: StapleResponderTimeout 5 right before <VirtualHost *:443>, outside it')
        or diag($site_after);
    like($site_after, qr/<VirtualHost \*:443>.*^\s+StapleEngine on\n.*<\/VirtualHost>/ms,
         'Debian: StapleEngine on inside the virtual host');
    like($site_after, qr/^\s+# staple-migrate: "SSLStaplingReturnResponderErrors off" removed: /m,
         'Debian: a comment in place of SSLStaplingReturnResponderErrors');
    like($site_after, qr/^\s+SSLCertificateFile\s+\Q$cert\E$/m, 'Debian: the rest is unchanged');

    my $load = catfile($etc, 'mods-enabled', 'staple.load');
    is(readlink($load) // '', '../mods-available/staple.load',
       'Debian: staple.load enabled as a2enmod does');
    like(-e $load ? slurp($load) : '', qr/^LoadModule staple_module \Q$module\E$/m,
         'Debian: staple.load loads the module');
    ok(-l catfile($etc, 'sites-enabled', 'default-ssl.conf'),
       'Debian: sites-enabled/default-ssl.conf is still a link');
    is_deeply([map { -f "$_.bak" ? slurp("$_.bak") : undef } $sslconf, $site],
              [@before_text{qw(ssl site)}], 'Debian: .bak copies of the originals');

    ($mrc, $mout, $merr) = migrate('--root', $etc, $conf);
    is($mout, '', 'Debian, again: no diff');
    like($merr, qr/nothing to change/, 'Debian, again: nothing to change');
}

# --- configurations of our own ------------------------------------------------------

sub base_conf {
    my ($dir, $staple_loaded) = @_;
    return StapleNode::minimal_conf($dir, qw(mpm_event authz_core socache_shmcb ssl),
                                    $staple_loaded ? 'staple' : ());
}

my $vh_cert = qq{    SSLEngine on\n    SSLCertificateFile "$cert"\n    SSLCertificateKeyFile "$key"\n};

# A: SSLStaplingResponderTimeout inside a virtual host moves out
{
    my $d = tempdir(CLEANUP => 1);
    my $conf = catfile($d, 'httpd.conf');
    spit($conf, base_conf($d) . <<"EOF");
SSLStaplingCache shmcb:stapling(65536)

<VirtualHost 127.0.0.1:1>
    ServerName a.example
$vh_cert    SSLUseStapling on
    SSLStaplingResponderTimeout 5
</VirtualHost>
EOF
    my ($rc, $out) = httpd_t({}, $d, $conf);
    is($rc, 0, 'A: passes httpd -t with mod_ssl') or diag($out);
    my $orig = slurp($conf);
    my ($mrc, $mout, $merr) = migrate($conf);
    is($mrc, 0, 'A, diff mode: exit 0') or diag($merr);
    like($mout, qr/^--- httpd\.conf\n\+\+\+ httpd\.conf\n\@\@/m, 'A, diff mode: a unified diff');
    like($mout, qr/^\+StapleResponderTimeout 5\n \n? ?<VirtualHost 127\.0\.0\.1:1>/m,
         'A, diff mode: StapleResponderTimeout added before the virtual host') or diag($mout);
    is(slurp($conf), $orig, 'A, diff mode: file unchanged');
    ok(!-e "$conf.bak", 'A, diff mode: no backup');

    ($mrc, $mout, $merr) = migrate('--in-place', '--add-load', $module, $conf);
    is($mrc, 0, 'A, --in-place: exit 0') or diag($merr);
    my $t = slurp($conf);
    like($t, qr/^LoadModule ssl_module [^\n]+\nLoadModule staple_module \Q$module\E\n/m,
         'A: --add-load puts LoadModule staple_module right after mod_ssl');
    like($t, qr/^StapleCache shmcb:stapling\(65536\)$/m, 'A: StapleCache');
    like($t, qr/^# staple-migrate: StapleResponderTimeout moved here from <VirtualHost 127\.0\.0\.1:1> \(server-wide in mod_staple\)\nStapleResponderTimeout 5\n<VirtualHost 127\.0\.0\.1:1>\n/m,
         'A: StapleResponderTimeout moved to server level, with a comment') or diag($t);
    like($t, qr/^    # staple-migrate: "SSLStaplingResponderTimeout 5" moved out of this <VirtualHost 127\.0\.0\.1:1>/m,
         'A: a comment where it was');
    like($t, qr/^    StapleEngine on$/m, 'A: StapleEngine on stays in the virtual host');
    is(slurp("$conf.bak"), $orig, 'A: httpd.conf.bak is the original');
    ($rc, $out) = httpd_t({}, $d, $conf);
    is($rc, 0, 'A: the result passes httpd -t with mod_staple') or diag($out);
}

# B: conflicts between virtual hosts, a server-level value, directives
# without counterpart, case-insensitive names, a continuation line
{
    my $d = tempdir(CLEANUP => 1);
    my $conf = catfile($d, 'httpd.conf');
    spit($conf, base_conf($d) . <<"EOF");
SSLStaplingCache "shmcb:stapling(65536)"
SSLStaplingStandardCacheTimeout 1800
<IfModule ssl_module>
	<VirtualHost 127.0.0.1:1>
	    ServerName b1.example
$vh_cert	    sslusestapling On
	    SSLSTAPLINGRESPONSEMAXAGE 900
	    SSLStaplingStandardCacheTimeout 600
	    SSLStaplingReturnResponderErrors off
	    SSLStaplingForceURL \\
	        http://127.0.0.1:9/ocsp
	</VirtualHost>
	<VirtualHost 127.0.0.1:2>
	    ServerName b2.example
$vh_cert	    SSLUseStapling off
	    SSLStaplingResponseMaxAge 1200
	    SSLStaplingFakeTryLater off
	    SSLStaplingErrorCacheTimeout 60
	</VirtualHost>
</IfModule>
EOF
    my ($rc, $out) = httpd_t({}, $d, $conf);
    is($rc, 0, 'B: passes httpd -t with mod_ssl') or diag($out);
    my ($mrc, $mout, $merr) = migrate('--in-place', '--no-backup', '--add-load', $module, $conf);
    is($mrc, 0, 'B, --in-place: exit 0') or diag($merr);
    my $t = slurp($conf);
    like($t, qr/^StapleStandardCacheTimeout 1800$/m, 'B: server-level value renamed in place');
    like($t, qr/^\t    # staple-migrate: "SSLStaplingStandardCacheTimeout 600" removed: StapleStandardCacheTimeout is server-wide in mod_staple; the server-level value 1800 set in httpd\.conf applies \(this virtual host had 600\)$/m,
         'B: the virtual host value under a server-level one is removed, explained') or diag($t);
    like($t, qr/^\tStapleResponseMaxAge 900\n\t<VirtualHost 127\.0\.0\.1:1>/m,
         'B: the first virtual host\'s StapleResponseMaxAge moved before it, same indentation');
    like($t, qr/# staple-migrate: "SSLStaplingResponseMaxAge 1200" removed: .*conflict: this virtual host had 1200/,
         'B: the conflicting value of the second virtual host is removed, explained');
    like($merr, qr/httpd\.conf:\d+: SSLStaplingResponseMaxAge 1200 removed: .*conflict/,
         'B: the conflict is explained on stderr too');
    like($t, qr/^\tStapleErrorCacheTimeout 60\n\t<VirtualHost 127\.0\.0\.1:2>/m,
         'B: StapleErrorCacheTimeout moved before the second virtual host');
    like($t, qr/^\t    StapleEngine On$/m, 'B: lower-case sslusestapling renamed, value kept');
    like($t, qr/^\t    StapleEngine off$/m, 'B: SSLUseStapling off -> StapleEngine off');
    like($t, qr/^\t    StapleForceURL \\\n\t        http:\/\/127\.0\.0\.1:9\/ocsp$/m,
         'B: StapleForceURL stays in the virtual host, continuation line kept');
    like($t, qr/# staple-migrate: "SSLStaplingFakeTryLater off" removed: mod_staple never fakes tryLater/,
         'B: SSLStaplingFakeTryLater explained');
    like($t, qr/# staple-migrate: "SSLStaplingReturnResponderErrors off" removed: mod_staple never staples an error or tryLater response/,
         'B: SSLStaplingReturnResponderErrors explained');
    is_deeply([grep { !/^\s*#/ && /$SSL_STAPLING/ } split /^/, $t], [], 'B: no mod_ssl stapling directive left');
    ok(!-e "$conf.bak", 'B: --no-backup: no backup');
    ($rc, $out) = httpd_t({}, $d, $conf);
    is($rc, 0, 'B: the result passes httpd -t with mod_staple') or diag($out);

    # idempotent
    my $after = slurp($conf);
    ($mrc, $mout, $merr) = migrate($conf);
    is($mout, '', 'B, again: no diff');
    is(slurp($conf), $after, 'B, again: unchanged');
}

# C: Include inside a virtual host, a wildcard Include, a link to the file
{
    my $d = tempdir(CLEANUP => 1);
    my $conf = catfile($d, 'httpd.conf');
    spit($conf, base_conf($d) . "Include conf.d/*.conf\nIncludeOptional nothing.d/*.conf\n");
    spit(catfile($d, 'sites', 'site.conf'), <<"EOF");
# a site
<VirtualHost 127.0.0.1:1>
$vh_cert    Include common/ssl-common.conf
</VirtualHost>
EOF
    spit(catfile($d, 'common', 'ssl-common.conf'),
         "SSLUseStapling on\nSSLStaplingErrorCacheTimeout 300\n");
    make_path(catfile($d, 'conf.d'));
    symlink '../sites/site.conf', catfile($d, 'conf.d', 'site.conf') or die "symlink: $!";

    my ($rc, $out) = httpd_t({}, $d, $conf);
    is($rc, 0, 'C: passes httpd -t with mod_ssl') or diag($out);
    my ($mrc, $mout, $merr) = migrate('--in-place', '--add-load', $module, $conf);
    is($mrc, 0, 'C, --in-place: exit 0') or diag($merr);
    my $site = slurp(catfile($d, 'sites', 'site.conf'));
    like($site, qr/^# staple-migrate: StapleErrorCacheTimeout moved here from <VirtualHost 127\.0\.0\.1:1> \(in common\/ssl-common\.conf\) \(server-wide in mod_staple\)\nStapleErrorCacheTimeout 300\n<VirtualHost /m,
         'C: a directive of a file included inside a virtual host moves before that virtual host')
        or diag($site);
    my $common = slurp(catfile($d, 'common', 'ssl-common.conf'));
    like($common, qr/^StapleEngine on\n# staple-migrate: "SSLStaplingErrorCacheTimeout 300" moved out/,
         'C: the included file: StapleEngine on, and a comment');
    ok(-l catfile($d, 'conf.d', 'site.conf'), 'C: the link is still a link');
    ok(-e catfile($d, 'sites', 'site.conf.bak'), 'C: the backup is next to the real file');
    ($rc, $out) = httpd_t({}, $d, $conf);
    is($rc, 0, 'C: the result passes httpd -t with mod_staple') or diag($out);
}

# D: mod_staple already loaded and configured, a missing Include, usage
{
    my $d = tempdir(CLEANUP => 1);
    my $conf = catfile($d, 'httpd.conf');
    spit($conf, base_conf($d, 1) . <<"EOF");
StapleCache shmcb:staple(65536)
SSLStaplingCache shmcb:stapling(65536)
EOF
    my ($rc, $out) = httpd_t({}, $d, $conf);
    is($rc, 0, 'D: passes httpd -t') or diag($out);
    my ($mrc, $mout, $merr) = migrate('--in-place', $conf);
    is($mrc, 0, 'D, --in-place: exit 0') or diag($merr);
    unlike($merr, qr/not loaded/, 'D: no LoadModule hint when the module is loaded');
    like(slurp($conf), qr/^# staple-migrate: "SSLStaplingCache shmcb:stapling\(65536\)" removed: StapleCache is already set at server level in httpd\.conf \(to shmcb:staple\(65536\), which applies\)$/m,
         'D: SSLStaplingCache next to an existing StapleCache is removed, explained');
    ($rc, $out) = httpd_t({}, $d, $conf);
    is($rc, 0, 'D: the result passes httpd -t') or diag($out);

    spit($conf, base_conf($d) . "Include missing.conf\nSSLStaplingCache shmcb:x(65536)\n");
    ($mrc, $mout, $merr) = migrate($conf);
    is($mrc, 1, 'missing Include: exit 1');
    like($merr, qr/Include missing\.conf: no such file/, 'missing Include: named');
    ($mrc) = migrate();
    is($mrc, 2, 'no CONFIG_FILE: exit 2');
    ($mrc, $mout) = migrate('-h');
    like($mout, qr/^usage: staple-migrate /, '-h: usage');
}
