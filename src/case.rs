//! CASE/UCO 1.x description of one acquisition (`metadata/case.jsonld`).
//!
//! The graph says who acquired what, with which tool, when, and what came out: one
//! `InvestigativeAction` with the tool as instrument, the examiner as performer, the engine
//! endpoint as object and every payload file (size and SHA-256) as result. Other CASE tools
//! can read it without knowing DAC's log format.
//!
//! Node IRIs end in a UUID derived from the session ID and a fixed label, so the same session
//! always gives the same graph and no UUID crate or random source is needed.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::transport::hex;

pub struct CaseInfo<'a> {
    pub case_id: &'a str,
    pub examiner: &'a str,
    pub organization: &'a str,
    pub tool_version: &'a str,
    pub start_utc: &'a str,
    pub end_utc: &'a str,
    pub endpoint: &'a str,
    /// 64 hex characters, unique per acquisition.
    pub session_id: &'a str,
}

/// A UUID from SHA-256(session_id, label) with the version 4 and RFC 9562 variant bits set,
/// the remaining 122 bits taken from the hash. Version 4 rather than 8 ("custom") because
/// UCO's identifier shape only accepts versions 0-5 (version 8 draws an sh:Info result).
pub fn derived_uuid(session_id: &str, label: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"dac-case-node\0");
    h.update(session_id.as_bytes());
    h.update(b"\0");
    h.update(label.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn node_id(info: &CaseInfo, kind: &str, label: &str) -> String {
    format!("kb:{kind}-{}", derived_uuid(info.session_id, label))
}

fn datetime(v: &str) -> Value {
    json!({ "@type": "xsd:dateTime", "@value": v })
}

fn reference(id: &str) -> Value {
    json!({ "@id": id })
}

/// The CASE graph for one acquisition. `files` holds (bundle-relative path, sha256 hex, size)
/// for every payload file. Built from the same writer as [`write_graph`], so the two agree.
pub fn graph(info: &CaseInfo, files: &[(String, String, u64)]) -> Value {
    let mut out = Vec::new();
    match write_graph(&mut out, info, files).map(|_| serde_json::from_slice(&out)) {
        Ok(Ok(v)) => v,
        _ => Value::Null,
    }
}

const CONTEXT: &str = r#"{
    "kb": "http://example.org/kb/",
    "case-investigation": "https://ontology.caseontology.org/case/investigation/",
    "uco-action": "https://ontology.unifiedcyberontology.org/uco/action/",
    "uco-core": "https://ontology.unifiedcyberontology.org/uco/core/",
    "uco-identity": "https://ontology.unifiedcyberontology.org/uco/identity/",
    "uco-observable": "https://ontology.unifiedcyberontology.org/uco/observable/",
    "uco-tool": "https://ontology.unifiedcyberontology.org/uco/tool/",
    "uco-types": "https://ontology.unifiedcyberontology.org/uco/types/",
    "xsd": "http://www.w3.org/2001/XMLSchema#"
  }"#;

/// Write the CASE graph node by node: memory holds one file's node at a time (and the list of
/// file IRIs), not the whole graph, however many files the bundle has.
pub fn write_graph<W: std::io::Write>(
    w: &mut W,
    info: &CaseInfo,
    files: &[(String, String, u64)],
) -> std::io::Result<()> {
    let tool_id = node_id(info, "tool", "tool");
    let examiner_id = node_id(info, "person", "examiner");
    let org_id = node_id(info, "organization", "organization");
    let affiliation_id = node_id(info, "relationship", "examiner-organization");
    let target_id = node_id(info, "engine-endpoint", "target");
    let action_id = node_id(info, "investigative-action", "acquisition");
    let provenance_id = node_id(info, "provenance-record", "provenance");
    let investigation_id = node_id(info, "investigation", "investigation");

    write!(w, "{{\n  \"@context\": {CONTEXT},\n  \"@graph\": [")?;
    let mut first = true;
    let mut node = |w: &mut W, v: Value| -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&v).map_err(std::io::Error::other)?;
        w.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                w.write_all(b"\n")?;
            }
            w.write_all(b"    ")?;
            w.write_all(line.as_bytes())?;
        }
        Ok(())
    };

    node(
        w,
        json!({
            "@id": tool_id,
            "@type": "uco-tool:Tool",
            "uco-core:name": "dac",
            "uco-core:description": "Docker API Collector: read-only acquisition from a Docker or Podman Engine API into a BagIt bundle",
            "uco-tool:version": info.tool_version,
            "uco-tool:toolType": "acquisition",
        }),
    )?;
    node(
        w,
        json!({
            "@id": target_id,
            "@type": "uco-observable:ObservableObject",
            "uco-core:name": format!("Docker Engine API at {}", info.endpoint),
        }),
    )?;
    // The examiner is always the performer; a name or an organization the examiner did not
    // give is left out rather than recorded as an empty string.
    let mut examiner = json!({ "@id": examiner_id, "@type": "uco-identity:Person" });
    if !info.examiner.is_empty() {
        examiner["uco-core:name"] = json!(info.examiner);
    }
    node(w, examiner)?;
    if !info.organization.is_empty() {
        node(
            w,
            json!({
                "@id": org_id,
                "@type": "uco-identity:Organization",
                "uco-core:name": info.organization,
            }),
        )?;
        node(
            w,
            json!({
                "@id": affiliation_id,
                "@type": "uco-core:Relationship",
                "uco-core:source": [reference(&examiner_id)],
                "uco-core:target": reference(&org_id),
                "uco-core:kindOfRelationship": "Affiliated_With",
                "uco-core:isDirectional": true,
            }),
        )?;
    }

    let mut file_ids = Vec::with_capacity(files.len());
    for (path, sha256, size) in files {
        let file_id = node_id(info, "file", &format!("file:{path}"));
        node(
            w,
            json!({
                "@id": file_id,
                "@type": "uco-observable:File",
                "uco-core:hasFacet": [
                    {
                        "@id": node_id(info, "file-facet", &format!("file-facet:{path}")),
                        "@type": "uco-observable:FileFacet",
                        "uco-observable:fileName": path,
                        "uco-observable:sizeInBytes": size,
                    },
                    {
                        "@id": node_id(info, "content-data-facet", &format!("content-data-facet:{path}")),
                        "@type": "uco-observable:ContentDataFacet",
                        "uco-observable:sizeInBytes": size,
                        "uco-observable:hash": [
                            {
                                "@id": node_id(info, "hash", &format!("hash:{path}")),
                                "@type": "uco-types:Hash",
                                "uco-types:hashMethod": "SHA256",
                                "uco-types:hashValue": { "@type": "xsd:hexBinary", "@value": sha256 },
                            }
                        ],
                    },
                ],
            }),
        )?;
        file_ids.push(file_id);
    }
    let refs = |ids: &[String]| Value::Array(ids.iter().map(|i| reference(i)).collect());

    // UCO requires at least one object on a provenance record; an acquisition that saved
    // nothing has no exhibit to describe.
    let mut results = Vec::new();
    if !file_ids.is_empty() {
        node(
            w,
            json!({
                "@id": provenance_id,
                "@type": "case-investigation:ProvenanceRecord",
                "case-investigation:exhibitNumber": info.case_id,
                "uco-core:description": format!("Evidence acquired from {} by dac {}", info.endpoint, info.tool_version),
                "uco-core:object": refs(&file_ids),
            }),
        )?;
        results = file_ids;
        results.push(provenance_id);
    }

    let mut action = json!({
        "@id": action_id,
        "@type": "case-investigation:InvestigativeAction",
        "uco-core:name": "acquired",
        "uco-core:description": format!("Read-only acquisition from the Docker Engine API at {}", info.endpoint),
        "uco-action:startTime": datetime(info.start_utc),
        "uco-action:endTime": datetime(info.end_utc),
        "uco-action:instrument": reference(&tool_id),
        "uco-action:performer": reference(&examiner_id),
        "uco-action:object": [reference(&target_id)],
    });
    if !results.is_empty() {
        action["uco-action:result"] = refs(&results);
    }
    node(w, action)?;
    node(
        w,
        json!({
            "@id": investigation_id,
            "@type": "case-investigation:Investigation",
            "uco-core:name": info.case_id,
            "uco-core:object": [reference(&action_id)],
        }),
    )?;
    w.write_all(b"\n  ]\n}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "5f1e0c3a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    fn info() -> CaseInfo<'static> {
        CaseInfo {
            case_id: "CASE-2026-001",
            examiner: "Examiner A. Example",
            organization: "Example Forensics Lab",
            tool_version: "0.2.0",
            start_utc: "2026-12-02T15:16:38.123456789Z",
            end_utc: "2026-12-02T15:17:01.5Z",
            endpoint: "unix:///var/run/docker.sock",
            session_id: SESSION,
        }
    }

    fn files() -> Vec<(String, String, u64)> {
        vec![
            (
                "data/00-host/info.json".to_string(),
                "84ff92691f909a05b224e1c56abb4864f01b4f8e3c854e4bb4c7baf1d3f6d652".to_string(),
                1234,
            ),
            (
                format!(
                    "data/50-filesystem/containers/{}/export.tar",
                    "ab".repeat(32)
                ),
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_string(),
                10240,
            ),
        ]
    }

    fn nodes_of<'a>(g: &'a Value, ty: &str) -> Vec<&'a Value> {
        g["@graph"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["@type"] == ty)
            .collect()
    }

    fn ends_in_uuid(id: &str) -> bool {
        let Some(u) = id.get(id.len().saturating_sub(36)..) else {
            return false;
        };
        let parts: Vec<&str> = u.split('-').collect();
        parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && parts
                .iter()
                .all(|p| p.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
            && &u[14..15] == "4"
            && matches!(&u[19..20], "8" | "9" | "a" | "b")
    }

    fn collect_ids(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(id)) = m.get("@id") {
                    if m.len() > 1 {
                        out.push(id.clone());
                    }
                }
                m.values().for_each(|x| collect_ids(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| collect_ids(x, out)),
            _ => {}
        }
    }

    #[test]
    fn uuid_is_deterministic_and_well_formed() {
        let a = derived_uuid(SESSION, "tool");
        assert_eq!(a, derived_uuid(SESSION, "tool"));
        assert_ne!(a, derived_uuid(SESSION, "examiner"));
        assert_ne!(a, derived_uuid(&"0".repeat(64), "tool"));
        assert!(ends_in_uuid(&a), "{a}");
    }

    #[test]
    fn graph_has_the_acquisition_shape() {
        let g = graph(&info(), &files());
        assert_eq!(g, graph(&info(), &files()), "graph must be deterministic");

        let actions = nodes_of(&g, "case-investigation:InvestigativeAction");
        assert_eq!(actions.len(), 1);
        let a = actions[0];
        for k in ["uco-action:startTime", "uco-action:endTime"] {
            assert_eq!(a[k]["@type"], "xsd:dateTime");
        }
        assert_eq!(
            a["uco-action:startTime"]["@value"],
            "2026-12-02T15:16:38.123456789Z"
        );

        let tools = nodes_of(&g, "uco-tool:Tool");
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0]["uco-tool:version"], "0.2.0");
        assert_eq!(a["uco-action:instrument"]["@id"], tools[0]["@id"]);

        let people = nodes_of(&g, "uco-identity:Person");
        assert_eq!(people.len(), 1);
        assert_eq!(people[0]["uco-core:name"], "Examiner A. Example");
        assert!(a["uco-action:performer"].is_object(), "performer is single");
        assert_eq!(a["uco-action:performer"]["@id"], people[0]["@id"]);

        let targets = nodes_of(&g, "uco-observable:ObservableObject");
        assert_eq!(targets.len(), 1);
        assert_eq!(a["uco-action:object"][0]["@id"], targets[0]["@id"]);
        assert!(targets[0]["uco-core:name"]
            .as_str()
            .unwrap()
            .contains("unix:///var/run/docker.sock"));

        let file_nodes = nodes_of(&g, "uco-observable:File");
        assert_eq!(file_nodes.len(), 2);
        let results: Vec<&Value> = a["uco-action:result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["@id"])
            .collect();
        for (f, (path, sha, size)) in file_nodes.iter().zip(files()) {
            assert!(results.contains(&&f["@id"]));
            let facets = f["uco-core:hasFacet"].as_array().unwrap();
            let ff = facets
                .iter()
                .find(|x| x["@type"] == "uco-observable:FileFacet")
                .unwrap();
            assert_eq!(ff["uco-observable:fileName"], path.as_str());
            assert_eq!(ff["uco-observable:sizeInBytes"], size);
            let cd = facets
                .iter()
                .find(|x| x["@type"] == "uco-observable:ContentDataFacet")
                .unwrap();
            let h = &cd["uco-observable:hash"][0];
            assert_eq!(h["@type"], "uco-types:Hash");
            assert_eq!(h["uco-types:hashMethod"], "SHA256");
            assert_eq!(h["uco-types:hashValue"]["@type"], "xsd:hexBinary");
            assert_eq!(h["uco-types:hashValue"]["@value"], sha.as_str());
        }

        let prov = nodes_of(&g, "case-investigation:ProvenanceRecord");
        assert_eq!(prov.len(), 1);
        assert_eq!(prov[0]["uco-core:object"].as_array().unwrap().len(), 2);

        // Every node (anything with an @id and content) has a distinct IRI ending in a UUID.
        let mut ids = Vec::new();
        collect_ids(&g, &mut ids);
        assert!(ids.len() >= 12);
        for id in &ids {
            assert!(id.starts_with("kb:") && ends_in_uuid(id), "{id}");
        }
        let mut dedup = ids.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), ids.len(), "node IRIs must be unique");
    }

    #[test]
    fn empty_acquisition_has_no_dangling_result() {
        let g = graph(&info(), &[]);
        let a = nodes_of(&g, "case-investigation:InvestigativeAction")[0];
        assert!(a.get("uco-action:result").is_none());
        assert!(nodes_of(&g, "case-investigation:ProvenanceRecord").is_empty());
    }

    #[test]
    fn missing_names_are_left_out() {
        let mut i = info();
        i.organization = "";
        i.examiner = "";
        let g = graph(&i, &files());
        assert!(nodes_of(&g, "uco-identity:Organization").is_empty());
        assert!(nodes_of(&g, "uco-core:Relationship").is_empty());
        let p = nodes_of(&g, "uco-identity:Person");
        assert_eq!(p.len(), 1);
        assert!(p[0].get("uco-core:name").is_none());
        let a = nodes_of(&g, "case-investigation:InvestigativeAction")[0];
        assert_eq!(a["uco-action:performer"]["@id"], p[0]["@id"]);
    }

    /// Writes the graph where a manual `case_validate` run can pick it up:
    /// `case_validate /tmp/dac-case-graph.jsonld`.
    #[test]
    fn write_graph_for_case_validate() {
        let g = graph(&info(), &files());
        let p = std::env::temp_dir().join("dac-case-graph.jsonld");
        std::fs::write(&p, serde_json::to_vec_pretty(&g).unwrap()).unwrap();
    }
}
