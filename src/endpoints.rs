//! The Engine API paths the collector uses, the paper's tables 1-6 plus changes, stats, swarm
//! and archive pulls. Each is built here, versioned and percent-encoded, and named by the
//! template that the acquisition log records (`/containers/{id}/export`).

/// Oldest API version the collector accepts, and the newest it knows.
pub const API_MIN: (u32, u32) = (1, 24);
pub const API_MAX: (u32, u32) = (1, 56);

/// Parse "1.41" into (1, 41).
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Percent-encode one path segment or query value: everything but RFC 3986 unreserved bytes.
pub fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The negotiated API: every path goes through here.
#[derive(Debug, Clone)]
pub struct Api {
    pub version: (u32, u32),
}

/// One request: its log template, the object it concerns, and the wire path.
#[derive(Debug, Clone)]
pub struct Call {
    pub template: &'static str,
    pub object: String,
    pub path: String,
}

impl Api {
    pub fn at_least(&self, v: (u32, u32)) -> bool {
        self.version >= v
    }

    pub fn version_string(&self) -> String {
        format!("{}.{}", self.version.0, self.version.1)
    }

    fn call(&self, template: &'static str, object: &str, rest: String) -> Call {
        Call {
            template,
            object: object.to_string(),
            path: format!("/v{}.{}{}", self.version.0, self.version.1, rest),
        }
    }

    fn on(&self, template: &'static str, kind: &str, id: &str, tail: &str) -> Call {
        self.call(template, id, format!("/{kind}/{}{tail}", encode(id)))
    }

    // System (table 6)
    pub fn info(&self) -> Call {
        self.call("/info", "", "/info".into())
    }
    pub fn version(&self) -> Call {
        self.call("/version", "", "/version".into())
    }
    pub fn system_df(&self) -> Call {
        self.call("/system/df", "", "/system/df".into())
    }
    /// Buffered events up to `until` (unix seconds with nanoseconds), then the stream closes.
    pub fn events_until(&self, until: &str) -> Call {
        self.call(
            "/events",
            "buffered",
            format!("/events?since=0&until={}", encode(until)),
        )
    }
    /// The live stream from `since` on; it stays open until the session closes it.
    pub fn events_live(&self, since: &str) -> Call {
        self.call(
            "/events",
            "live",
            format!("/events?since={}", encode(since)),
        )
    }

    // Containers (table 1-2)
    pub fn containers(&self) -> Call {
        self.call("/containers/json", "", "/containers/json?all=1".into())
    }
    pub fn container_inspect(&self, id: &str) -> Call {
        self.on("/containers/{id}/json", "containers", id, "/json")
    }
    pub fn container_top(&self, id: &str) -> Call {
        self.on("/containers/{id}/top", "containers", id, "/top")
    }
    pub fn container_stats(&self, id: &str) -> Call {
        let q = if self.at_least((1, 41)) {
            "/stats?stream=false&one-shot=true"
        } else {
            "/stats?stream=false"
        };
        self.on("/containers/{id}/stats", "containers", id, q)
    }
    pub fn container_changes(&self, id: &str) -> Call {
        self.on("/containers/{id}/changes", "containers", id, "/changes")
    }
    pub fn container_logs(&self, id: &str) -> Call {
        self.on(
            "/containers/{id}/logs",
            "containers",
            id,
            "/logs?stdout=1&stderr=1&timestamps=1&follow=0&tail=all",
        )
    }
    pub fn container_export(&self, id: &str) -> Call {
        self.on("/containers/{id}/export", "containers", id, "/export")
    }
    pub fn container_archive(&self, id: &str, path: &str) -> Call {
        let mut c = self.on(
            "/containers/{id}/archive",
            "containers",
            id,
            &format!("/archive?path={}", encode(path)),
        );
        c.object = format!("{id}:{path}");
        c
    }

    // Images (table 3-4)
    pub fn images(&self) -> Call {
        self.call("/images/json", "", "/images/json".into())
    }
    pub fn image_inspect(&self, id: &str) -> Call {
        self.on("/images/{name}/json", "images", id, "/json")
    }
    pub fn image_history(&self, id: &str) -> Call {
        self.on("/images/{name}/history", "images", id, "/history")
    }
    pub fn image_save(&self, id: &str) -> Call {
        self.on("/images/{name}/get", "images", id, "/get")
    }

    // Networks, volumes, plugins (table 5)
    pub fn networks(&self) -> Call {
        self.call("/networks", "", "/networks".into())
    }
    pub fn network_inspect(&self, id: &str) -> Call {
        self.on("/networks/{id}", "networks", id, "?verbose=1")
    }
    pub fn volumes(&self) -> Call {
        self.call("/volumes", "", "/volumes".into())
    }
    pub fn volume_inspect(&self, name: &str) -> Call {
        self.on("/volumes/{name}", "volumes", name, "")
    }
    pub fn plugins(&self) -> Call {
        self.call("/plugins", "", "/plugins".into())
    }
    pub fn plugin_inspect(&self, name: &str) -> Call {
        self.on("/plugins/{name}/json", "plugins", name, "/json")
    }

    // Swarm (manager only)
    pub fn swarm(&self) -> Call {
        self.call("/swarm", "", "/swarm".into())
    }
    /// A service's logs from every node's tasks, each line with its node, service and task
    /// (`details`), framed like a container's logs.
    pub fn service_logs(&self, id: &str) -> Call {
        self.on(
            "/services/{id}/logs",
            "services",
            id,
            "/logs?details=1&stdout=1&stderr=1&timestamps=1&follow=0&tail=all",
        )
    }
    pub fn swarm_list(&self, kind: &'static str) -> Call {
        let template = match kind {
            "services" => "/services",
            "tasks" => "/tasks",
            "nodes" => "/nodes",
            "secrets" => "/secrets",
            _ => "/configs",
        };
        // Running and desired task counts come with `status` from API 1.41 on.
        let query = if kind == "services" && self.at_least((1, 41)) {
            "?status=true"
        } else {
            ""
        };
        self.call(template, "", format!("{template}{query}"))
    }
}

/// `/_ping` is never versioned.
pub const PING: &str = "/_ping";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_cannot_leave_their_segment() {
        let api = Api { version: (1, 41) };
        let c = api.container_inspect("../../info?x=1#");
        assert_eq!(c.path, "/v1.41/containers/..%2F..%2Finfo%3Fx%3D1%23/json");
        assert_eq!(c.object, "../../info?x=1#");
        assert_eq!(c.template, "/containers/{id}/json");
    }

    #[test]
    fn stats_asks_one_shot_only_where_the_api_has_it() {
        assert_eq!(
            Api { version: (1, 41) }.container_stats("a").path,
            "/v1.41/containers/a/stats?stream=false&one-shot=true"
        );
        assert!(!Api { version: (1, 40) }
            .container_stats("a")
            .path
            .contains("one-shot"));
    }

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(parse_version("1.41"), Some((1, 41)));
        assert_eq!(parse_version("1.9"), Some((1, 9)));
        assert!(parse_version("x").is_none());
        assert!((1, 9) < (1, 24));
    }

    #[test]
    fn archive_paths_are_query_encoded() {
        let c = Api { version: (1, 41) }.container_archive("abc", "/etc/pass wd&x");
        assert_eq!(
            c.path,
            "/v1.41/containers/abc/archive?path=%2Fetc%2Fpass%20wd%26x"
        );
    }
}
