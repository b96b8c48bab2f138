//! The macOS bundle settings, checked here since no Mac builds the bundle in CI:
//! `tauri.macos.conf.json` parses and names files that exist, the app is an agent
//! (no Dock icon) and is not sandboxed (the sandbox forbids inspecting and
//! signalling other processes, which is the app's whole job). The macOS
//! type-check (`cargo xtask macos-check`) additionally makes tauri's build script
//! read the merged config for aarch64-apple-darwin.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn plist_dict(path: &Path) -> plist::Dictionary {
    plist::Value::from_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_dictionary()
        .unwrap()
}

#[test]
fn macos_config_names_existing_files_and_a_hardened_runtime() {
    let path = manifest_dir().join("tauri.macos.conf.json");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let macos = &config["bundle"]["macOS"];
    assert_eq!(macos["hardenedRuntime"], true);
    assert!(macos["minimumSystemVersion"].as_str().unwrap() >= "12.0");
    let entitlements = manifest_dir().join(macos["entitlements"].as_str().unwrap());
    assert!(entitlements.is_file(), "{}", entitlements.display());
    let dmg = &macos["dmg"];
    for key in ["appPosition", "applicationFolderPosition"] {
        let x = dmg[key]["x"].as_u64().unwrap();
        assert!(x < dmg["windowSize"]["width"].as_u64().unwrap(), "{key} is off the window");
    }
}

#[test]
fn the_app_is_an_unsandboxed_agent() {
    let info = plist_dict(&manifest_dir().join("Info.plist"));
    assert_eq!(info.get("LSUIElement").and_then(plist::Value::as_boolean), Some(true));
    let entitlements = plist_dict(&manifest_dir().join("Entitlements.plist"));
    assert_eq!(
        entitlements.get("com.apple.security.app-sandbox").and_then(plist::Value::as_boolean),
        None,
        "sandboxed, Leakwatch could neither read other processes' descriptors nor signal them"
    );
}
