//! A real Jaeger receives an OTLP span and returns it through its query API.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vworkspace_operator::cluster::jaeger::http;

#[test]
fn otlp_span_round_trips_through_jaeger() {
    let j = support::jaeger();
    let trace_id = vworkspace_operator::engine::naming::trace_id("0b9c5d1e-test-operation-uid");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let body = json!({ "resourceSpans": [{
        "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": "vworkspace-test" } }] },
        "scopeSpans": [{ "scope": { "name": "jaeger-otlp-test" }, "spans": [{
            "traceId": trace_id, "spanId": "00f067aa0ba902b7", "name": "operation demo/nightly", "kind": 1,
            "startTimeUnixNano": (now - 1_000_000).to_string(), "endTimeUnixNano": now.to_string(),
            "attributes": [{ "key": "k8s.namespace.name", "value": { "stringValue": "demo" } }],
        }] }],
    }] });
    let (status, resp) =
        http(j.otlp_http, "POST", "/v1/traces", Some(("application/json", body.to_string().as_bytes()))).unwrap();
    assert_eq!(status, 200, "OTLP/HTTP export refused: {resp}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = http(j.query, "GET", &format!("/api/traces/{trace_id}"), None).unwrap();
        if status == 200 {
            let v: Value = serde_json::from_str(&text).expect("json");
            let span = &v["data"][0]["spans"][0];
            assert_eq!(span["operationName"], "operation demo/nightly");
            assert_eq!(v["data"][0]["traceID"], trace_id);
            let tags = span["tags"].as_array().unwrap();
            assert!(tags.iter().any(|t| t["key"] == "k8s.namespace.name" && t["value"] == "demo"), "{span}");
            let (_, services) = http(j.query, "GET", "/api/services", None).unwrap();
            assert!(services.contains("vworkspace-test"), "{services}");
            return;
        }
        assert!(Instant::now() < deadline, "span never arrived in Jaeger (last status {status}): {text}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
