//! Records what built the binary (for `env.json` of `ueb run`): rustc's version and, when
//! built from a git checkout, the commit and whether the tree was dirty.

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Some(v) = output(&rustc, &["--version"]) {
        println!("cargo:rustc-env=UEB_RUSTC_VERSION={v}");
    }
    if let Some(sha) = output("git", &["rev-parse", "HEAD"]) {
        println!("cargo:rustc-env=UEB_GIT_SHA={sha}");
        let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        println!("cargo:rustc-env=UEB_GIT_DIRTY={dirty}");
    }
    if let Some(dir) = output("git", &["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
