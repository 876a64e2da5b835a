//! Read-only by construction: one module sends requests, and it can express only GET and HEAD.

use std::path::Path;

fn sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "rs") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            // Only the code that ships: test modules may build fake servers and requests.
            let shipped = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            out.push((name, shipped));
        }
    }
    out
}

#[test]
fn only_transport_builds_requests() {
    for (name, text) in sources() {
        if name == "transport.rs" {
            continue;
        }
        for needle in [
            "Request::builder",
            "send_request",
            "hyper::Method",
            "http1::handshake",
            "hyper::Request",
        ] {
            assert!(
                !text.contains(needle),
                "{name} contains {needle}: requests must go through transport.rs"
            );
        }
    }
}

#[test]
fn transport_can_express_only_get_and_head() {
    let text = sources()
        .into_iter()
        .find(|(n, _)| n == "transport.rs")
        .unwrap()
        .1;
    let start = text.find("pub enum Method {").expect("Method enum");
    let body = &text[start..start + text[start..].find('}').unwrap()];
    let variants: Vec<&str> = body
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect();
    assert_eq!(variants, vec!["Get,", "Head,"]);
    let methods: Vec<&str> = text.matches("hyper::Method::").collect();
    assert_eq!(methods.len(), 2, "hyper methods named in transport.rs");
    for verb in [
        "POST", "PUT", "DELETE", "PATCH", "CONNECT", "OPTIONS", "TRACE",
    ] {
        assert!(
            !text.contains(&format!("Method::{verb}")),
            "transport.rs names {verb}"
        );
    }
}
