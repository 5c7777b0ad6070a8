package StapleFirefox;
# Headless Firefox ESR (Debian's firefox-esr) for the tests, driven through
# Marionette, its remote protocol: frames "LENGTH:JSON", commands
# [0, id, name, params], answers [1, id, error, result].
#
#   my $ff = StapleFirefox->new(dir => $dir, ca => 't/pki/root.pem');
#   $ff->start;                    # bounded: profile, browser, session
#   my $r = $ff->load('https://localhost:PORT/');
#       # { ok => 1, url, title, text }  or  { ok => 0, error, net_error }
#       # net_error: Firefox's code for a refused page, e.g.
#       # MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING
#   $ff->stop;                     # Marionette:Quit, bounded, SIGKILL last
#
# Each instance has a fresh profile in DIR/profile whose certificate
# database holds the test root (imported with NSS's certutil, Debian's
# libnss3-tools) as a trusted CA and nothing else of ours; every host but
# localhost goes to a proxy port where nothing listens, so the browser
# never reaches out (Firefox never proxies localhost).  Updates, telemetry
# and first-run pages are off.  A started instance is stopped at exit
# (StapleProc::track).
use strict;
use warnings;

use File::Path ();
use File::Spec::Functions qw(catfile);
use IO::Socket::INET ();
use JSON::PP ();

use StapleProc qw(alive children_of find_program free_port read_reply run_cmd slurp spawn
                  spit wait_until);

my $START_TIMEOUT = 60;    # browser up and Marionette listening
my $CMD_TIMEOUT   = 30;    # one Marionette command
my $PAGE_TIMEOUT  = 15;    # one page load, in the browser

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        dir => $o{dir} || die("dir needed\n"),
        ca  => $o{ca} || die("ca needed\n"),
        id  => 0,
    }, $class;
    $self->{profile} = catfile($self->{dir}, 'profile');
    return $self;
}

sub program { find_program('firefox-esr') // find_program('firefox') }

# The profile: NSS database with the test root, and prefs.
sub make_profile {
    my ($self) = @_;
    my $p = $self->{profile};
    File::Path::make_path($p);
    my $certutil = find_program('certutil') or die "certutil missing (Debian: libnss3-tools)\n";
    for my $cmd ([$certutil, '-N', '-d', "sql:$p", '--empty-password'],
                 [$certutil, '-A', '-d', "sql:$p", '-n', 'mod_staple test root', '-t', 'C,,',
                  '-i', $self->{ca}]) {
        my ($rc, $out) = run_cmd($cmd, merge => 1);
        die "@$cmd: $out\n" if $rc;
    }
    my $dead = free_port();    # nothing listens there
    my %prefs = (
        'marionette.port'                             => $self->{port},
        'network.proxy.type'                          => 1,
        'network.proxy.http'                          => '127.0.0.1',
        'network.proxy.http_port'                     => $dead,
        'network.proxy.ssl'                           => '127.0.0.1',
        'network.proxy.ssl_port'                      => $dead,
        'network.proxy.share_proxy_settings'          => JSON::PP::true,
        'app.update.auto'                             => JSON::PP::false,
        'browser.shell.checkDefaultBrowser'           => JSON::PP::false,
        'browser.startup.homepage_override.mstone'    => 'ignore',
        'browser.aboutwelcome.enabled'                => JSON::PP::false,
        'datareporting.policy.dataSubmissionEnabled'  => JSON::PP::false,
        'toolkit.telemetry.reportingpolicy.firstRun'  => JSON::PP::false,
        'extensions.update.enabled'                   => JSON::PP::false,
        # the defaults, stated: staples are asked for and Must-Staple enforced
        'security.ssl.enable_ocsp_stapling'           => JSON::PP::true,
        'security.ssl.enable_ocsp_must_staple'        => JSON::PP::true,
    );
    my $json = JSON::PP->new->allow_nonref;
    spit(catfile($p, 'user.js'),
         join '', map { "user_pref(\"$_\", " . $json->encode($prefs{$_}) . ");\n" } sort keys %prefs);
}

sub start {
    my ($self) = @_;
    my $ff = program() or die "firefox-esr missing (Debian: firefox-esr)\n";
    $self->{port} = free_port();
    $self->make_profile;
    my $log = catfile($self->{dir}, 'firefox.log');
    $self->{log} = $log;
    $self->{pid} = spawn([$ff, '--headless', '--marionette', '--no-remote', '--profile',
                          $self->{profile}, 'about:blank'],
                         out => $log,
                         env => { HOME => $self->{dir}, MOZ_CRASHREPORTER_DISABLE => 1 });
    StapleProc::track($self, 0);
    my $up = wait_until($START_TIMEOUT, sub {
        return -1 unless alive($self->{pid});
        return -e catfile($self->{profile}, 'MarionetteActivePort') && $self->connect;
    }, 0.1);
    if (!$up || $up == -1) {
        my $tail = slurp($log) // '';
        $self->stop;
        die "Firefox did not start (Marionette on port $self->{port}):\n$tail";
    }
    $self->command('WebDriver:NewSession',
                   { capabilities => { alwaysMatch => { acceptInsecureCerts => JSON::PP::false } } });
    $self->command('WebDriver:SetTimeouts', { pageLoad => $PAGE_TIMEOUT * 1000 });
    return $self;
}

# Connect and read Marionette's greeting; 1 when it answered.
sub connect {
    my ($self) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                                  Proto => 'tcp', Timeout => 2) or return 0;
    $self->{sock} = $s;
    my $hello = eval { $self->read_frame(5) };
    return $hello && ($hello->{applicationType} // '') eq 'gecko' ? 1 : 0;
}

# One "LENGTH:JSON" frame, within $secs.
sub read_frame {
    my ($self, $secs) = @_;
    my ($len, $body);
    my ($buf) = read_reply($self->{sock}, $secs, sub {
        ($len, $body) = $_[0] =~ /^(\d+):(.*)$/s or return 0;
        return length($body) >= $len;
    });
    die "no answer from Marionette within $secs s\n"
        unless defined $len && length($body) >= $len;
    return JSON::PP->new->decode(substr $body, 0, $len);
}

# command(NAME, PARAMS) -> result; dies with Marionette's error message.
sub command {
    my ($self, $name, $params) = @_;
    my $id = ++$self->{id};
    my $msg = JSON::PP->new->encode([0, $id, $name, $params // {}]);
    syswrite $self->{sock}, length($msg) . ":$msg" or die "Marionette: $!\n";
    my $r = $self->read_frame($CMD_TIMEOUT);
    die "Marionette answered $r->[1] to $id\n" unless ref $r eq 'ARRAY' && $r->[1] == $id;
    die(($r->[2]{message} // $r->[2]{error} // 'error') . "\n") if $r->[2];
    my $v = $r->[3];
    return ref $v eq 'HASH' && exists $v->{value} ? $v->{value} : $v;
}

sub script {
    my ($self, $js) = @_;
    return $self->command('WebDriver:ExecuteScript', { script => $js, args => [] });
}

# Load $url in the browser's tab and say what came.
sub load {
    my ($self, $url) = @_;
    my $ok = eval { $self->command('WebDriver:Navigate', { url => $url }); 1 };
    my $error = $ok ? undef : $@ =~ s/\s+$//r;
    unless ($ok) {
        # an error page (about:neterror, about:certerror) tells its code
        my $info = eval { $self->script('return JSON.stringify(document.getNetErrorInfo())') };
        my $code = $info ? eval { JSON::PP->new->decode($info)->{errorCodeString} } : undef;
        return { ok => 0, error => $error, net_error => $code // '' };
    }
    return {
        ok    => 1,
        url   => scalar $self->command('WebDriver:GetCurrentURL'),
        title => scalar $self->command('WebDriver:GetTitle'),
        text  => scalar $self->script('return document.body ? document.body.innerText : ""'),
    };
}

sub stop {
    my ($self) = @_;
    StapleProc::untrack($self);
    my $pid = delete $self->{pid} or return 1;
    my @kids = children_of($pid);
    if ($self->{sock}) {
        eval { $self->command('Marionette:Quit', { flags => ['eForceQuit'] }) };
        close delete $self->{sock};
    }
    my $clean = StapleProc::wait_gone($pid, 15);
    for my $k (@kids, children_of($pid)) {
        kill 'KILL', $k if alive($k);
    }
    return $clean;
}

1;
