//! The workspace's example programs, as the tests run them.

use std::path::PathBuf;
use std::process::Command;

/// The example `name`'s binary, built (or found up to date) by cargo, as a user's `cargo run`
/// would; with the workspace's features, so after `cargo test --workspace` it is already up to
/// date.
pub(crate) fn binary(name: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--workspace", "--example", name])
        .status()
        .unwrap();
    assert!(status.success(), "building the {name} example failed");
    let profile_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_owned();
    profile_dir.join("examples").join(name)
}
