//! The filter's configuration: the JSON object every shell takes (the Wasm
//! plugin's `configuration`, the dynamic module's `filter_config`, the
//! ext_proc server's `--config` file), parsed in two steps (shape, then
//! meaning) so that a bad value is rejected at load time instead of
//! surfacing per request.
//!
//! The object is flat and small, so it is read by the few lines of strict
//! JSON below rather than a general deserializer: a generic JSON library
//! was about a seventh of the Wasm module for a parse that runs once per
//! plugin load.

use std::fmt;

/// What to do with a header of the configured name that the client sent
/// itself, when the body carries no contextId.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientHeader {
    /// Keep it: clients that already set the header keep working.
    Keep,
    /// Remove it: only the filter decides the hash key.
    Strip,
}

impl ClientHeader {
    /// The value that names it in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            ClientHeader::Keep => "keep",
            ClientHeader::Strip => "strip",
        }
    }
}

/// When the request body has told the filter enough to route it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecideAt {
    /// At the end of the body (or `max_scan_bytes`), reading every key the
    /// way the agents do: a later duplicate key wins.
    BodyEnd,
    /// At the first usable contextId of the message (or a task call's task
    /// id): the rest of the body goes to the agent without being held or
    /// read. First turns are still read to the end before minting.
    FirstId,
}

impl DecideAt {
    /// The value that names it in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            DecideAt::BodyEnd => "body_end",
            DecideAt::FirstId => "first_id",
        }
    }
}

/// What Envoy's route hashes to pick the replica: where the filter puts the
/// contextId it decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashOn {
    /// The request header `header`, which the agent also receives. Every
    /// shell, every gateway's consistent-hash setting.
    Header,
    /// Envoy's filter state, as the hashable string object Envoy registers
    /// under [`HASHABLE_STRING_KEY`], for a route whose `hash_policy` names
    /// that key first: cheaper for Envoy than a header, and the agent
    /// receives no header. The dynamic module only (every Envoy that loads
    /// it, 1.38 to 1.40, has the factory); the other shells reject it.
    FilterState,
}

/// The filter-state key, and the name of Envoy's object factory, under
/// which `hash_on: filter_state` writes the contextId. Envoy hashes that
/// object as xxHash64 of the string, as it hashes a header's value, so a
/// route may fall back to the header with the same result.
pub const HASHABLE_STRING_KEY: &str = "envoy.hashable_string";

impl HashOn {
    /// The value that names it in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            HashOn::Header => "header",
            HashOn::FilterState => "filter_state",
        }
    }
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
    /// Route a task-only call by the contextId its task id carries, when
    /// the agent mints ids in that format (`task_id`).
    pub task_id_context: bool,
    /// Learned tasks kept at most (fixed capacity, oldest overwritten).
    /// The default holds 100,000 live tasks with under 2 % of them pushed
    /// out early by 4-way set collisions (131,072 would push out 11 %;
    /// tests/task_store.rs).
    pub task_capacity: u32,
    /// Seconds a learned task stays usable.
    pub task_ttl_secs: u64,
    /// Decide at the end of the body, or at the first id read.
    pub decide_at: DecideAt,
    /// Where the decided contextId goes for Envoy to hash.
    pub hash_on: HashOn,
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
            task_id_context: true,
            task_capacity: 262_144,
            task_ttl_secs: 3600,
            decide_at: DecideAt::BodyEnd,
            hash_on: HashOn::Header,
        }
    }
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

/// The stream buffer limit the shipped Envoy configs give the A2A route
/// (`request_body_buffer_limit`, 2 MiB). Envoy answers 413 itself when a
/// held body passes the stream's limit, and a held body can reach
/// `max_scan_bytes` plus one read from the connection; the rule is a limit
/// of at least twice `max_scan_bytes`.
pub const SHIPPED_ROUTE_BUFFER_LIMIT: u64 = 2 * 1024 * 1024;

impl Config {
    /// What Envoy may refuse with this configuration, one line each, for
    /// the shell to log when it loads it (it is still accepted: the limit
    /// that matters is set in Envoy, where the filter cannot always see it).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_scan_bytes > SHIPPED_ROUTE_BUFFER_LIMIT / 2 {
            out.push(format!(
                "max_scan_bytes {} needs a stream buffer limit of at least {} bytes (twice it): set the route's request_body_buffer_limit (the shipped configs set {}) or the listener's per_connection_buffer_limit_bytes that high, or Envoy answers 413 to bodies that reach it",
                self.max_scan_bytes,
                self.max_scan_bytes.saturating_mul(2),
                SHIPPED_ROUTE_BUFFER_LIMIT
            ));
        }
        out
    }
}

/// Every field as `name=value`, values as the configuration spells them:
/// the line each shell logs when it loads a configuration.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "header={} max_scan_bytes={} max_value_bytes={} client_header={} mint_context_id={} learn_tasks={} task_id_context={} task_capacity={} task_ttl_secs={} decide_at={} hash_on={}",
            self.header,
            self.max_scan_bytes,
            self.max_value_bytes,
            self.client_header.name(),
            self.mint_context_id,
            self.learn_tasks,
            self.task_id_context,
            self.task_capacity,
            self.task_ttl_secs,
            self.decide_at.name(),
            self.hash_on.name()
        )
    }
}

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
        // JSON whitespace only (RFC 8259: space, tab, LF, CR).
        let trimmed = bytes
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .map_or(&[][..], |start| bytes.get(start..).unwrap_or(&[]));
        if trimmed.is_empty() {
            return Ok(Config::default());
        }
        let mut config = Config::default();
        let mut seen = [false; FIELDS.len()];
        let mut p = Json {
            bytes: trimmed,
            at: 0,
        };
        p.object(|name, value| {
            let index = FIELDS.iter().position(|f| *f == name).ok_or_else(|| {
                format!(
                    "unknown field `{name}`, expected one of {}",
                    FIELDS.join(", ")
                )
            })?;
            let field = FIELDS.get(index).copied().unwrap_or_default();
            if let Some(seen) = seen.get_mut(index) {
                if *seen {
                    return Err(format!("duplicate field `{field}`"));
                }
                *seen = true;
            }
            if value == Value::Null {
                return Ok(());
            }
            let kind = |want: &str| format!("{field}: expected {want}, found {}", value.kind());
            let int = |v: &Value| match v {
                Value::Int(n) => Ok(*n),
                _ => Err(kind("a non-negative integer")),
            };
            let boolean = |v: &Value| match v {
                Value::Bool(b) => Ok(*b),
                _ => Err(kind("a boolean")),
            };
            let too_big = || format!("{field}: integer out of range");
            match field {
                "header" => match &value {
                    Value::Str(h) => config.header = h.to_ascii_lowercase(),
                    _ => return Err(kind("a string")),
                },
                "max_value_bytes" => {
                    config.max_value_bytes = usize::try_from(int(&value)?).map_err(|_| too_big())?
                }
                "max_scan_bytes" => config.max_scan_bytes = int(&value)?,
                "client_header" => {
                    config.client_header = either(
                        field,
                        &value,
                        [ClientHeader::Keep, ClientHeader::Strip].map(|c| (c.name(), c)),
                    )?
                }
                "mint_context_id" => config.mint_context_id = boolean(&value)?,
                "learn_tasks" => config.learn_tasks = boolean(&value)?,
                "task_id_context" => config.task_id_context = boolean(&value)?,
                "task_capacity" => {
                    config.task_capacity = u32::try_from(int(&value)?).map_err(|_| too_big())?
                }
                "decide_at" => {
                    config.decide_at = either(
                        field,
                        &value,
                        [DecideAt::BodyEnd, DecideAt::FirstId].map(|d| (d.name(), d)),
                    )?
                }
                "hash_on" => {
                    config.hash_on = either(
                        field,
                        &value,
                        [HashOn::Header, HashOn::FilterState].map(|h| (h.name(), h)),
                    )?
                }
                _ => config.task_ttl_secs = int(&value)?,
            }
            Ok(())
        })
        .map_err(ConfigError::Json)?;
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

impl Config {
    /// For a shell that can only set a header (the proxy-wasm filter, the
    /// ext_proc server): `hash_on: filter_state` rejected, in one line.
    pub fn require_header_hashing(&self, shell: &str) -> Result<(), ConfigError> {
        if self.hash_on == HashOn::Header {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            field: "hash_on",
            reason: format!(
                "\"{}\" is for the Envoy dynamic module only; {shell} sets the header: use \"{}\" (and a route hash_policy on the header)",
                self.hash_on.name(),
                HashOn::Header.name()
            ),
        })
    }
}

/// The choice a string field names, of two.
fn either<T>(field: &str, value: &Value, [(a, x), (b, y)]: [(&str, T); 2]) -> Result<T, String> {
    match value {
        Value::Str(v) if v == a => Ok(x),
        Value::Str(v) if v == b => Ok(y),
        Value::Str(v) => Err(format!(
            "{field}: unknown variant `{v}`, expected `{a}` or `{b}`"
        )),
        _ => Err(format!(
            "{field}: expected a string, found {}",
            value.kind()
        )),
    }
}

/// The configuration's fields, in the order of the README's table.
const FIELDS: [&str; 11] = [
    "header",
    "max_value_bytes",
    "max_scan_bytes",
    "client_header",
    "mint_context_id",
    "learn_tasks",
    "task_id_context",
    "task_capacity",
    "task_ttl_secs",
    "decide_at",
    "hash_on",
];

/// A configuration value: the JSON types a field can have, and what any
/// other value was (for the error).
#[derive(Debug, PartialEq, Eq)]
enum Value {
    Str(String),
    Int(u64),
    Bool(bool),
    Null,
    Other(&'static str),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::Null => "null",
            Value::Other(what) => what,
        }
    }
}

/// A strict reader for one flat JSON object (RFC 8259): members whose
/// values are strings, numbers, booleans or null. Nested values are read
/// and reported by kind, so that a wrong type names its field.
struct Json<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Json<'_> {
    fn fail<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.at))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        let hit = self.peek() == Some(byte);
        if hit {
            self.at += 1;
        }
        hit
    }

    /// The whole document: one object, calling `member` for each member.
    fn object(
        &mut self,
        mut member: impl FnMut(&str, Value) -> Result<(), String>,
    ) -> Result<(), String> {
        if !self.eat(b'{') {
            return self.fail("expected a JSON object");
        }
        if !self.eat(b'}') {
            loop {
                self.skip_ws();
                let name = self.string()?;
                if !self.eat(b':') {
                    return self.fail("expected `:`");
                }
                let value = self.value(0)?;
                member(&name, value)?;
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return self.fail("expected `,` or `}`");
                }
            }
        }
        self.skip_ws();
        if self.at != self.bytes.len() {
            return self.fail("trailing characters");
        }
        Ok(())
    }

    fn value(&mut self, depth: u32) -> Result<Value, String> {
        if depth > 64 {
            return self.fail("nested too deep");
        }
        self.skip_ws();
        match self.peek() {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.at += 1;
                if !self.eat(close) {
                    loop {
                        if open == b'{' {
                            self.skip_ws();
                            self.string()?;
                            if !self.eat(b':') {
                                return self.fail("expected `:`");
                            }
                        }
                        self.value(depth + 1)?;
                        if self.eat(close) {
                            break;
                        }
                        if !self.eat(b',') {
                            return self.fail("expected `,`");
                        }
                    }
                }
                Ok(Value::Other(if open == b'{' {
                    "an object"
                } else {
                    "an array"
                }))
            }
            _ => self.fail("expected a value"),
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, String> {
        let end = self.at + word.len();
        if self.bytes.get(self.at..end) != Some(word.as_bytes()) {
            return self.fail("invalid literal");
        }
        self.at = end;
        Ok(value)
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let digits = |p: &mut Self| {
            let from = p.at;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.at += 1;
            }
            p.at - from
        };
        let int_start = self.at;
        let int_digits = digits(self);
        if int_digits == 0 || (int_digits > 1 && self.bytes.get(int_start) == Some(&b'0')) {
            return self.fail("invalid number");
        }
        let mut integer = !negative;
        if self.peek() == Some(b'.') {
            self.at += 1;
            integer = false;
            if digits(self) == 0 {
                return self.fail("invalid number");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            integer = false;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return self.fail("invalid number");
            }
        }
        if !integer {
            return Ok(Value::Other("a number that is not a non-negative integer"));
        }
        let text = self.bytes.get(start..self.at).unwrap_or_default();
        std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .map(Value::Int)
            .ok_or_else(|| format!("integer out of range at byte {start}"))
    }

    /// A string at the cursor, escapes decoded.
    fn string(&mut self) -> Result<String, String> {
        if self.peek() != Some(b'"') {
            return self.fail("expected a string");
        }
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return self.fail("unterminated string");
            };
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let Some(escape) = self.peek() else {
                        return self.fail("unterminated string");
                    };
                    self.at += 1;
                    let simple = match escape {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let c = self.unicode_escape()?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                        _ => return self.fail("invalid escape"),
                    };
                    out.push(simple);
                }
                0..=0x1f => return self.fail("control character in string"),
                _ => out.push(byte),
            }
        }
        String::from_utf8(out).or_else(|_| self.fail("string is not UTF-8"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let text = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(value) = text.and_then(|h| u32::from_str_radix(h, 16).ok()) else {
            return self.fail("invalid \\u escape");
        };
        self.at += 4;
        Ok(value)
    }

    /// After `\\u`: one code point, a surrogate pair taken whole.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let high = self.hex4()?;
        let code = if (0xd800..0xdc00).contains(&high) {
            if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                return self.fail("unpaired surrogate");
            }
            self.at += 2;
            let low = self.hex4()?;
            if !(0xdc00..0xe000).contains(&low) {
                return self.fail("unpaired surrogate");
            }
            0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
        } else {
            high
        };
        char::from_u32(code).map_or_else(|| self.fail("unpaired surrogate"), Ok)
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
                "task_id_context":false,"task_capacity":10,"task_ttl_secs":5,
                "decide_at":"first_id","hash_on":"filter_state"}"#,
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
                task_id_context: false,
                task_capacity: 10,
                task_ttl_secs: 5,
                decide_at: DecideAt::FirstId,
                hash_on: HashOn::FilterState,
            }
        );
    }

    #[test]
    fn the_logged_line_names_every_field_as_the_configuration_spells_it() {
        let c = Config::parse(br#"{"client_header":"strip","decide_at":"first_id"}"#).unwrap();
        let line = c.to_string();
        let names: Vec<&str> = line
            .split(' ')
            .filter_map(|pair| pair.split_once('=').map(|(name, _)| name))
            .collect();
        let mut sorted_fields = FIELDS.to_vec();
        sorted_fields.sort_unstable();
        let mut sorted_names = names.clone();
        sorted_names.sort_unstable();
        assert_eq!(sorted_names, sorted_fields, "{line}");
        assert!(line.contains(" client_header=strip "), "{line}");
        assert!(
            line.ends_with(" decide_at=first_id hash_on=header"),
            "{line}"
        );
        assert!(line.starts_with("header=x-context-id max_scan_bytes=262144 "));
        // Each name the line prints is one the parser takes back.
        for value in ["keep", "strip"] {
            let json = format!(r#"{{"client_header":"{value}"}}"#);
            let parsed = Config::parse(json.as_bytes()).unwrap();
            assert_eq!(parsed.client_header.name(), value);
        }
        for value in ["body_end", "first_id"] {
            let json = format!(r#"{{"decide_at":"{value}"}}"#);
            let parsed = Config::parse(json.as_bytes()).unwrap();
            assert_eq!(parsed.decide_at.name(), value);
        }
        for value in ["header", "filter_state"] {
            let json = format!(r#"{{"hash_on":"{value}"}}"#);
            let parsed = Config::parse(json.as_bytes()).unwrap();
            assert_eq!(parsed.hash_on.name(), value);
        }
    }

    #[test]
    fn task_id_context_is_on_unless_turned_off() {
        assert!(Config::default().task_id_context);
        assert!(
            Config::parse(br#"{"task_id_context":null}"#)
                .unwrap()
                .task_id_context
        );
        assert!(
            Config::parse(br#"{"task_id_context":true}"#)
                .unwrap()
                .task_id_context
        );
        assert!(
            !Config::parse(br#"{"task_id_context":false}"#)
                .unwrap()
                .task_id_context
        );
        assert!(matches!(
            Config::parse(br#"{"task_id_context":false,"task_id_context":true}"#),
            Err(ConfigError::Json(_))
        ));
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

    #[test]
    fn the_reader_agrees_with_serde_json_on_what_is_json() {
        let docs: &[&[u8]] = &[
            br#"{"header":"x-a\u0062c"}"#,
            br#"{"header":"\ud83d\ude00"}"#,
            br#"{"header":"\ud83d"}"#,
            br#"{"header":"a\qb"}"#,
            br#"{"max_scan_bytes":01}"#,
            br#"{"max_scan_bytes":1.5}"#,
            br#"{"max_scan_bytes":1e3}"#,
            br#"{"max_scan_bytes":18446744073709551616}"#,
            br#"{"header":null}"#,
            br#"{"mint_context_id":true,}"#,
            br#"{"mint_context_id":true} x"#,
            b"\x0c{}",
            br#"{"learn_tasks":tru}"#,
            br#"{"header":{"a":[1,2,{}]}}"#,
            b"{\"header\":\"a\tb\"}",
            br#"{"header":"x","header":"y"}"#,
        ];
        for doc in docs {
            // Every document that is not JSON is rejected as such.
            if serde_json::from_slice::<serde_json::Value>(doc).is_err() {
                assert!(
                    matches!(Config::parse(doc), Err(ConfigError::Json(_))),
                    "{}",
                    String::from_utf8_lossy(doc)
                );
            }
        }
        assert_eq!(
            Config::parse(br#"{"header":"x-a\u0062c"}"#).unwrap().header,
            "x-abc"
        );
        assert!(Config::parse(br#"{"header":null}"#).is_ok());
    }

    #[test]
    fn wrong_types_name_their_field() {
        for (bad, field) in [
            (&br#"{"max_scan_bytes":"big"}"#[..], "max_scan_bytes"),
            (br#"{"learn_tasks":1}"#, "learn_tasks"),
            (br#"{"task_id_context":"yes"}"#, "task_id_context"),
            (br#"{"header":[]}"#, "header"),
            (br#"{"task_capacity":4294967296}"#, "task_capacity"),
            (br#"{"client_header":"drop"}"#, "client_header"),
            (br#"{"decide_at":"first_key"}"#, "decide_at"),
            (br#"{"decide_at":true}"#, "decide_at"),
            (br#"{"hash_on":"metadata"}"#, "hash_on"),
            (br#"{"headr":"x"}"#, "headr"),
        ] {
            let e = Config::parse(bad).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn shells_that_only_set_headers_refuse_filter_state_by_name() {
        assert_eq!(Config::default().require_header_hashing("x"), Ok(()));
        let c = Config::parse(br#"{"hash_on":"filter_state"}"#).unwrap();
        let e = c
            .require_header_hashing("the proxy-wasm filter")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid plugin configuration: hash_on: \"filter_state\" is for the Envoy dynamic module only; the proxy-wasm filter sets the header"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn a_scan_limit_above_half_the_shipped_route_limit_is_warned_about() {
        let config = |n: u64| Config {
            max_scan_bytes: n,
            ..Config::default()
        };
        assert!(Config::default().warnings().is_empty());
        assert!(config(1024 * 1024).warnings().is_empty());
        let warned = config(16 * 1024 * 1024).warnings();
        assert_eq!(warned.len(), 1);
        assert!(warned[0].contains("33554432"), "{warned:?}");
        assert!(warned[0].contains("request_body_buffer_limit"));
        assert_eq!(config(1024 * 1024 + 1).warnings().len(), 1);
    }
}
