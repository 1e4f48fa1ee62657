//! Tests that need root (namespaces, veth pairs, nftables, mounts, users
//! to switch to) fail saying so when run as anyone else, rather than
//! passing without having run: a green run always means the suite ran.

#[track_caller]
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces, veth pairs, nftables, mounts, test users): \
         run it as root, as `make test` does"
    );
}
