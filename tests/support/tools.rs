//! Locates the binaries that `scripts/test-world.sh` built. The script is the one place that names
//! versions and the cache directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding the binaries of one test-world component
/// (`etcd`, `kubernetes`, `kwok`, `kubo`, `ipfs-cluster`, `helm`).
pub fn bin_dir(component: &str) -> PathBuf {
    let var = format!(
        "IPFS_KIT_BIN_{}",
        component.replace('-', "_").to_uppercase()
    );
    if let Ok(dir) = std::env::var(&var) {
        return PathBuf::from(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-world.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["bindir", component])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} bindir {component} failed",
        script.display()
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The path of one binary, failing with the command that builds it when it is missing.
pub fn binary(component: &str, name: &str) -> PathBuf {
    let path = bin_dir(component).join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the test world first with `make test-world` \
         (or `scripts/test-world.sh build {component}`)",
        path.display()
    );
    path
}

/// The kwok Stage objects shipped next to the kwok binary.
pub fn kwok_stages() -> PathBuf {
    let path = bin_dir("kwok").join("../kwok-stages.yaml");
    assert!(
        path.is_file(),
        "{} is missing: run `make test-world`",
        path.display()
    );
    path
}

/// The version `scripts/test-world.sh` pins for a component, e.g. `v1.36.3` for `kubernetes`.
pub fn version(component: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-world.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["version", component])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} version {component} failed",
        script.display()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
