//! The container image carries one static binary (deploy/Dockerfile). No Docker engine runs
//! here, so this builds the same binary with the same cargo command and checks that it has no
//! dynamic dependencies and runs. The build is cached in ~/.cache/vworkspace/target-musl.

use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-musl";

#[test]
fn the_image_binary_is_static_and_runs() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let dockerfile = std::fs::read_to_string(format!("{repo}/deploy/Dockerfile")).unwrap();
    let args = ["build", "--release", "--locked", "--target", TARGET, "--bin", "vworkspace-operator"];
    assert!(
        dockerfile.contains(&format!("cargo {}", args.join(" "))),
        "the Dockerfile builds with `cargo {}`",
        args.join(" ")
    );
    let home = std::env::var("HOME").expect("HOME");
    let target_dir = format!("{home}/.cache/vworkspace/target-musl");
    let out = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(repo)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CC_x86_64_unknown_linux_musl", "musl-gcc")
        .output()
        .expect("cargo");
    assert!(
        out.status.success(),
        "the static build failed (needs `rustup target add {TARGET}` and musl-tools, as .ci/run installs):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = format!("{target_dir}/{TARGET}/release/vworkspace-operator");
    let file = Command::new("file").arg(&bin).output().expect("file(1)");
    let what = String::from_utf8_lossy(&file.stdout);
    assert!(what.contains("statically linked") || what.contains("static-pie linked"), "{what}");
    let ldd = Command::new("ldd").arg(&bin).output().expect("ldd");
    let said = format!("{}{}", String::from_utf8_lossy(&ldd.stdout), String::from_utf8_lossy(&ldd.stderr));
    assert!(said.contains("not a dynamic executable") || said.contains("statically linked"), "ldd: {said}");
    let version = Command::new(&bin).arg("--version").output().expect("run it");
    assert!(version.status.success() && String::from_utf8_lossy(&version.stdout).starts_with("vworkspace-operator "));
}
