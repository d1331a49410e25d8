//! The README's first command, `cargo run --release -- up`, runs at the workspace root with
//! no `--bin`: cargo must find exactly one binary among the workspace's default members, and
//! it must be `tandem`. (A second binary there, or losing `default-members`, makes cargo
//! refuse to choose.) Asked of `cargo metadata`, which builds nothing.

use std::path::Path;
use std::process::Command;

#[test]
fn a_bare_cargo_run_at_the_workspace_root_runs_tandem() {
    let workspace_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(&workspace_root)
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");

    let default_members: Vec<&str> = metadata["workspace_default_members"]
        .as_array()
        .expect("cargo metadata lists the default members")
        .iter()
        .filter_map(|id| id.as_str())
        .collect();
    let binaries: Vec<&str> = metadata["packages"]
        .as_array()
        .expect("cargo metadata lists the packages")
        .iter()
        .filter(|package| {
            package["id"]
                .as_str()
                .is_some_and(|id| default_members.contains(&id))
        })
        .flat_map(|package| package["targets"].as_array().into_iter().flatten())
        .filter(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"))
        })
        .filter_map(|target| target["name"].as_str())
        .collect();
    assert_eq!(
        binaries,
        ["tandem"],
        "the workspace's default members must hold exactly one binary, tandem \
         (default members: {default_members:?})"
    );
}
