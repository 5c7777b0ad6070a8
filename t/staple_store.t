# StapleStore, safe and honest, on a server of its own (t/lib/StapleNode.pm)
# started as root: missing parent directories are created 0755 so that
# User reaches the store (0700, its own) and saves there; a directory of
# another user is not taken over, a symbolic link is not followed, and the
# server staples all the same, from memory; `httpd -t` says what startup
# will do.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(tempdir wait_until);

plan skip_all => 'the ownership cases need root' unless $> == 0;
plan tests => 14;

my $dir  = tempdir('store');
my $leaf = make_leaf($dir, 'store-safe');
my $nobody = getpwnam('nobody');
my $daemon = getpwnam('daemon') // 1;

# node with StapleStore $store: started, its first handshake checked
sub run_with {
    my ($store, $what) = @_;
    my $node = StapleNode->new(name => 'store', cert => $leaf, store => $store,
                               dir => "$dir/server");
    my $ok = eval { $node->start; 1 };
    ok($ok, "$what: the server starts") or diag($@);
    return $node;
}

# --- missing parents ------------------------------------------------------------------

my $deep = "$dir/deep/er/store";
my ($rc, $out) = StapleNode::httpd_t(StapleNode->new(name => 'store-t', cert => $leaf,
                                                     store => $deep)->write_conf);
like($out, qr/StapleStore \Q$deep\E does not exist yet: startup creates it \(0700, User nobody\) and its missing parent directories \(0755\)/,
     'httpd -t: says that startup creates the store and its parents');

my $node = run_with($deep, 'missing parents');
my $r = $node->handshake;
ok(staple_good($r), 'missing parents: the first handshake is stapled') or diag(explain($r));
my $file = $node->store_file($deep);
ok(wait_until(5, sub { -f $file }), 'the response is kept in the store')
    or diag($node->log_tail(10));
my @st = stat "$dir/deep/er";
ok(@st && ($st[2] & 07777) == 0755 && $st[4] == 0, 'a created parent: 0755, root');
@st = stat $deep;
ok(@st && ($st[2] & 07777) == 0700 && $st[4] == $nobody, 'the store: 0700, User nobody');
my @cannot = $node->start_lines(qr/StapleStore/);
ok(!grep({ /\[staple:warn/ } @cannot), 'no StapleStore warning') or diag(@cannot);
$node->stop;

# --- another user's directory -------------------------------------------------------------

my $theirs = "$dir/theirs";
mkdir $theirs or die "mkdir $theirs: $!\n";
chown $daemon, $daemon, $theirs;
($rc, $out) = StapleNode::httpd_t(StapleNode->new(name => 'store-t2', cert => $leaf,
                                                  store => $theirs)->write_conf);
like($out, qr/StapleStore \Q$theirs\E belongs to \S+, not to User nobody: it is not taken over/,
     'httpd -t: warns that another user\'s directory will not be used');
$node = run_with($theirs, "another user's directory");
ok(staple_good($node->handshake), "another user's directory: stapled from memory");
ok(scalar($node->start_lines(qr/\[staple:warn.*StapleStore \Q$theirs\E belongs to \S+, not to User nobody: it is not taken over; chown it to nobody/)),
   'a warning names the directory and the fix') or diag($node->log_tail(10));
@st = stat $theirs;
ok(@st && $st[4] == $daemon, 'the directory still belongs to its user');
$node->stop;

# --- a symbolic link -------------------------------------------------------------------

my $link = "$dir/link";
symlink($theirs, $link) or die "symlink: $!\n";
$node = run_with($link, 'a symbolic link');
ok(scalar($node->start_lines(qr/\[staple:warn.*StapleStore \Q$link\E is a symbolic link: refused, not followed/)),
   'a symbolic link is refused, with a warning') or diag($node->log_tail(10));
$node->stop;
