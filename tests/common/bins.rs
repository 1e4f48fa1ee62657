//! Where the tests find the workspace's binaries.

use std::path::{Path, PathBuf};

/// labsim, from the workspace's other crate: built next to labd (`make
/// test` builds every binary of the workspace first).
pub fn labsim_exe() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_labd")).with_file_name("labsim");
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (make test, or cargo build --workspace)",
        p.display()
    );
    p
}
