//! Plugin configuration: the JSON object Envoy passes as the Wasm plugin's
//! `configuration`, parsed in two steps (serde shape, then meaning) so that a
//! bad value is rejected at load time instead of surfacing per request.

use serde::Deserialize;
use std::fmt;

/// What to do with a header of the configured name that the client sent
/// itself, when the body carries no contextId.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientHeader {
    /// Keep it: clients that already set the header keep working.
    Keep,
    /// Remove it: only the filter decides the hash key.
    Strip,
}

/// The validated configuration one root context owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Lower-case request header that carries the hash key.
    pub header: String,
    /// Longest contextId accepted, in bytes.
    pub max_value_bytes: usize,
    /// Body bytes read before giving up on a request.
    pub max_scan_bytes: u64,
    pub client_header: ClientHeader,
    /// Insert a fresh contextId into a first-turn message that has none.
    pub mint_context_id: bool,
    /// Learn taskId -> contextId from responses and route task-only calls.
    pub learn_tasks: bool,
    /// Learned tasks kept at most (fixed capacity, oldest overwritten).
    /// The default holds 100,000 live tasks with under 2 % of them pushed
    /// out early by 4-way set collisions (131,072 would push out 11 %;
    /// tests/task_store.rs).
    pub task_capacity: u32,
    /// Seconds a learned task stays usable.
    pub task_ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            header: "x-context-id".to_string(),
            max_value_bytes: 256,
            // Well under Envoy's default 1 MiB per-connection buffer limit.
            // The body is held while it is scanned, and Envoy appends a
            // whole connection read to it before the filter can give up, so
            // the stream's buffer limit must cover this plus one read (the
            // shipped configs set the route's request_body_buffer_limit).
            max_scan_bytes: 256 * 1024,
            client_header: ClientHeader::Keep,
            mint_context_id: true,
            learn_tasks: true,
            task_capacity: 262_144,
            task_ttl_secs: 3600,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    header: Option<String>,
    max_value_bytes: Option<usize>,
    max_scan_bytes: Option<u64>,
    client_header: Option<ClientHeader>,
    mint_context_id: Option<bool>,
    learn_tasks: Option<bool>,
    task_capacity: Option<u32>,
    task_ttl_secs: Option<u64>,
}

/// Why a configuration was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Not a JSON object of the expected shape (unknown field, wrong type).
    Json(String),
    /// A field has a value the filter cannot work with.
    Invalid { field: &'static str, reason: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Json(msg) => write!(f, "invalid plugin configuration: {msg}"),
            ConfigError::Invalid { field, reason } => {
                write!(f, "invalid plugin configuration: {field}: {reason}")
            }
        }
    }
}

/// Largest `max_scan_bytes` accepted. Envoy holds the scanned part of the
/// body in its connection buffer; larger values only trade a 413 from Envoy
/// for a scan that can never finish.
pub const MAX_SCAN_BYTES_LIMIT: u64 = 16 * 1024 * 1024;

/// Headers the filter must never set: routing pseudo-headers, framing
/// headers, and headers Envoy or the upstream interpret.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "trailer",
    "proxy-connection",
];

impl Config {
    /// Parses the plugin configuration. An empty configuration means all
    /// defaults.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let trimmed = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map_or(&[][..], |start| bytes.get(start..).unwrap_or(&[]));
        if trimmed.is_empty() {
            return Ok(Config::default());
        }
        let raw: RawConfig =
            serde_json::from_slice(trimmed).map_err(|e| ConfigError::Json(e.to_string()))?;
        let d = Config::default();
        let config = Config {
            header: raw.header.unwrap_or(d.header).to_ascii_lowercase(),
            max_value_bytes: raw.max_value_bytes.unwrap_or(d.max_value_bytes),
            max_scan_bytes: raw.max_scan_bytes.unwrap_or(d.max_scan_bytes),
            client_header: raw.client_header.unwrap_or(d.client_header),
            mint_context_id: raw.mint_context_id.unwrap_or(d.mint_context_id),
            learn_tasks: raw.learn_tasks.unwrap_or(d.learn_tasks),
            task_capacity: raw.task_capacity.unwrap_or(d.task_capacity),
            task_ttl_secs: raw.task_ttl_secs.unwrap_or(d.task_ttl_secs),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_string(),
            })
        };
        if self.header.is_empty() || !self.header.bytes().all(is_token_byte) {
            return invalid(
                "header",
                "must be a non-empty HTTP header name (RFC 9110 token)",
            );
        }
        if FORBIDDEN_HEADERS.contains(&self.header.as_str()) {
            return invalid("header", "names a header Envoy or the upstream interpret");
        }
        if !(1..=8192).contains(&self.max_value_bytes) {
            return invalid("max_value_bytes", "must be between 1 and 8192");
        }
        if !(1..=MAX_SCAN_BYTES_LIMIT).contains(&self.max_scan_bytes) {
            return invalid("max_scan_bytes", "must be between 1 and 16777216");
        }
        if !(1..=4_194_304).contains(&self.task_capacity) {
            return invalid("task_capacity", "must be between 1 and 4194304");
        }
        if self.task_ttl_secs == 0 {
            return invalid("task_ttl_secs", "must be at least 1");
        }
        Ok(())
    }
}

/// RFC 9110 `tchar`; a leading ':' would name a pseudo-header and is not one.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_configuration_means_defaults() {
        assert_eq!(Config::parse(b"").unwrap(), Config::default());
        assert_eq!(Config::parse(b"  \n").unwrap(), Config::default());
        assert_eq!(Config::parse(b"{}").unwrap(), Config::default());
    }

    #[test]
    fn every_field_is_read() {
        let c = Config::parse(
            br#"{"header":"X-Session","max_value_bytes":64,"max_scan_bytes":1024,
                "client_header":"strip","mint_context_id":false,"learn_tasks":false,
                "task_capacity":10,"task_ttl_secs":5}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            Config {
                header: "x-session".into(),
                max_value_bytes: 64,
                max_scan_bytes: 1024,
                client_header: ClientHeader::Strip,
                mint_context_id: false,
                learn_tasks: false,
                task_capacity: 10,
                task_ttl_secs: 5,
            }
        );
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_rejected() {
        for bad in [
            &br#"{"headr":"x"}"#[..],
            br#"{"max_scan_bytes":"big"}"#,
            br#"{"client_header":"drop"}"#,
            br#"[]"#,
            br#"{"#,
            br#"{"max_scan_bytes":-1}"#,
        ] {
            assert!(
                matches!(Config::parse(bad), Err(ConfigError::Json(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn meaningless_values_are_rejected_with_the_field_named() {
        for (bad, field) in [
            (&br#"{"header":""}"#[..], "header"),
            (br#"{"header":":path"}"#, "header"),
            (br#"{"header":"x context"}"#, "header"),
            (br#"{"header":"Content-Length"}"#, "header"),
            (br#"{"max_value_bytes":0}"#, "max_value_bytes"),
            (br#"{"max_scan_bytes":0}"#, "max_scan_bytes"),
            (br#"{"max_scan_bytes":16777217}"#, "max_scan_bytes"),
            (br#"{"task_capacity":0}"#, "task_capacity"),
            (br#"{"task_ttl_secs":0}"#, "task_ttl_secs"),
        ] {
            match Config::parse(bad) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(bad)),
            }
        }
    }

    #[test]
    fn errors_read_as_one_line() {
        let e = Config::parse(br#"{"nope":1}"#).unwrap_err().to_string();
        assert!(e.starts_with("invalid plugin configuration: "), "{e}");
        assert!(e.contains("nope"), "{e}");
        assert!(!e.contains('\n'));
    }
}
