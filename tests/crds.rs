//! `crds/` is generated from the Rust types: this fails when the two drift apart.

use std::path::Path;

use vworkspace_operator::crdgen;

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut expected_files = Vec::new();
    for (file, crd) in crdgen::all() {
        expected_files.push(file.to_string());
        let want = crdgen::to_yaml(&crd).expect("serialize");
        let have = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            have == want,
            "crds/{file} is out of date with the Rust types; regenerate with `cargo run -- crds --out-dir crds`"
        );
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    expected_files.sort();
    assert_eq!(on_disk, expected_files, "crds/ holds a file the types do not generate");
}

#[test]
fn operation_crd_carries_the_contract() {
    let (_, crd) = crdgen::all().into_iter().find(|(f, _)| f.contains("operations")).expect("operation crd");
    let v = serde_json::to_value(&crd).expect("json");
    let names = &v["spec"]["names"];
    assert_eq!(names["shortNames"], serde_json::json!(["op", "ops"]));
    assert_eq!(names["categories"], serde_json::json!(["vworkspace"]));
    let version = &v["spec"]["versions"][0];
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let cols: Vec<String> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_uppercase())
        .collect();
    assert_eq!(
        cols,
        ["TYPE", "TARGET", "ENGINE", "PHASE", "PROGRESS", "AGE", "DURATION", "MESSAGE", "REQUESTED-BY", "TRACE"]
    );
    for wide_only in 7..10 {
        assert_eq!(version["additionalPrinterColumns"][wide_only]["priority"], 1);
    }
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rule = spec["x-kubernetes-validations"][0]["rule"].as_str().unwrap();
    assert!(rule.contains("oldSelf") && !rule.contains("cancel"), "immutability except cancel: {rule}");
    assert_eq!(spec["properties"]["type"]["enum"].as_array().unwrap().len(), 6);
}
