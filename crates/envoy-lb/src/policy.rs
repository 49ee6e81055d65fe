//! Request hash from a route's `hash_policy` (`source/common/http/hash_policy.cc`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::hash::{uint64_to_hex, xx_hash64, xx_hash64_chain};

/// One `RouteAction.HashPolicy` specifier. `regex_rewrite` on headers is not modelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashMethod {
    /// `header.header_name`, matched case-insensitively (also pseudo-headers like `:authority`).
    Header { name: String },
    /// `cookie`; with `ttl` set (even `0s`) a missing cookie is generated (route-level form).
    Cookie {
        name: String,
        ttl_seconds: Option<u64>,
    },
    /// `connection_properties.source_ip: true` (`false` produces no policy at all in Envoy).
    SourceIp,
    /// `query_parameter.name`: first occurrence, no percent-decoding.
    QueryParameter { name: String },
    /// `filter_state.key` holding a string object, which hashes as `xxHash64(value)`.
    FilterState { key: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEntry {
    pub method: HashMethod,
    pub terminal: bool,
}

/// The ordered list of hash policies of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashPolicy {
    pub entries: Vec<PolicyEntry>,
}

/// What a hash policy can look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Header map entries in order; a repeated header is several entries.
    pub headers: Vec<(String, String)>,
    /// The stream's downstream remote address (after XFF / original-IP processing).
    pub remote_address: Option<SocketAddr>,
    /// The downstream local address, used only to generate cookies.
    pub local_address: Option<SocketAddr>,
    pub filter_state: BTreeMap<String, String>,
}

impl Request {
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl HashPolicy {
    /// The hash an `x-context-id`-style header policy (`[{header: {header_name: NAME}}]`) uses.
    pub fn header(name: &str) -> Self {
        Self::default().then(HashMethod::Header {
            name: name.to_string(),
        })
    }

    pub fn then(mut self, method: HashMethod) -> Self {
        self.entries.push(PolicyEntry {
            method,
            terminal: false,
        });
        self
    }

    pub fn then_terminal(mut self, method: HashMethod) -> Self {
        self.entries.push(PolicyEntry {
            method,
            terminal: true,
        });
        self
    }

    /// `HashPolicyImpl::generateHash`. The previous value is rotated left by one before the
    /// XOR so duplicate policies do not cancel. `terminal` looks at the accumulated hash: a
    /// terminal policy that yields nothing still stops the loop if an earlier one produced a hash.
    /// `None` means Envoy would pick a random hash.
    pub fn generate_hash(&self, request: &Request) -> Option<u64> {
        let mut hash: Option<u64> = None;
        for entry in &self.entries {
            if let Some(new) = evaluate(&entry.method, request) {
                hash = Some(match hash {
                    Some(old) => old.rotate_left(1) ^ new,
                    None => new,
                });
            }
            if entry.terminal && hash.is_some() {
                break;
            }
        }
        hash
    }
}

fn evaluate(method: &HashMethod, request: &Request) -> Option<u64> {
    match method {
        HashMethod::Header { name } => {
            let mut values: Vec<&str> = request.header_values(name).collect();
            if values.is_empty() {
                return None;
            }
            // All entries, byte-sorted, seed-chained (Envoy >= 1.19); one value = xxHash64(v).
            values.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            Some(xx_hash64_chain(values, 0))
        }
        HashMethod::Cookie { name, ttl_seconds } => {
            if let Some(value) = cookie_value(request, name).filter(|v| !v.is_empty()) {
                return Some(xx_hash64(value.as_bytes(), 0));
            }
            ttl_seconds.as_ref()?;
            let generated = generated_cookie_value(request.remote_address?, request.local_address?);
            Some(xx_hash64(generated.as_bytes(), 0))
        }
        HashMethod::SourceIp => {
            // `addressAsString()`: the IP without port or brackets.
            let ip = request.remote_address?.ip().to_string();
            Some(xx_hash64(ip.as_bytes(), 0))
        }
        HashMethod::QueryParameter { name } => {
            let path = request.header_values(":path").next()?;
            query_first_value(path, name).map(|v| xx_hash64(v.as_bytes(), 0))
        }
        HashMethod::FilterState { key } => request
            .filter_state
            .get(key)
            .map(|v| xx_hash64(v.as_bytes(), 0)),
    }
}

/// `Utility::parseCookieValue`: cookie headers in order, tokens split on `;` (empty ones
/// dropped); the key starts at the first non-space and ends at the first `=`, the value is
/// the rest, unquoted if wrapped in double quotes. The first matching key wins.
pub fn cookie_value<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    for header in request.header_values("cookie") {
        for token in header.split(';').filter(|t| !t.is_empty()) {
            let Some((key, value)) = token.split_once('=') else {
                continue;
            };
            if key.trim_start_matches(' ') != name {
                continue;
            }
            let unquoted = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
                value.get(1..value.len() - 1).unwrap_or(value)
            } else {
                value
            };
            return Some(unquoted);
        }
    }
    None
}

/// Route-level cookie generation (`Filter::addDownstreamSetCookie`): hex of the XXH64 of the
/// connection's remote then local address strings, no separator.
pub fn generated_cookie_value(remote: SocketAddr, local: SocketAddr) -> String {
    uint64_to_hex(xx_hash64(format!("{remote}{local}").as_bytes(), 0))
}

/// `QueryParamsMulti::parseQueryString(path).getFirstValue(name)`: after the first `?`,
/// pieces split on `&`, name/value at the first `=`, a bare name has value "". No decoding.
pub fn query_first_value<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query
        .split('&')
        .filter(|piece| !piece.is_empty() || name.is_empty())
        .map(|piece| piece.split_once('=').unwrap_or((piece, "")))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str) -> HashMethod {
        HashMethod::Header {
            name: name.to_string(),
        }
    }

    fn xx(s: &str) -> u64 {
        xx_hash64(s.as_bytes(), 0)
    }

    fn from_ip(ip: &str) -> Request {
        Request {
            remote_address: Some(format!("{ip}:4242").parse().unwrap()),
            ..Request::default()
        }
    }

    // hash_policy_test.cc
    #[test]
    fn header_single_and_multiple_values() {
        let policy = HashPolicy::header("x-test");
        let one = Request::default().with_header("X-Test", "test-value");
        assert_eq!(policy.generate_hash(&one), Some(xx("test-value")));
        let two = Request::default()
            .with_header("x-test", "value2")
            .with_header("x-test", "value1");
        assert_eq!(policy.generate_hash(&two), Some(9193721384592083371));
        assert_eq!(
            policy.generate_hash(&two),
            Some(xx_hash64_chain(["value1", "value2"], 0))
        );
        assert_eq!(policy.generate_hash(&Request::default()), None);
        let empty = Request::default().with_header("x-test", "");
        assert_eq!(policy.generate_hash(&empty), Some(17241709254077376921));
    }

    #[test]
    fn cookie_present_absent_and_generated() {
        let policy = HashPolicy::default().then(HashMethod::Cookie {
            name: "hash".into(),
            ttl_seconds: None,
        });
        let with = Request::default().with_header("cookie", "a=b; hash=cookie-value");
        assert_eq!(policy.generate_hash(&with), Some(xx("cookie-value")));
        let quoted = Request::default().with_header("cookie", "hash=\"cookie-value\"");
        assert_eq!(policy.generate_hash(&quoted), Some(xx("cookie-value")));
        let empty = Request::default().with_header("cookie", "hash=");
        assert_eq!(policy.generate_hash(&empty), None);
        assert_eq!(policy.generate_hash(&Request::default()), None);

        let generating = HashPolicy::default().then(HashMethod::Cookie {
            name: "hash".into(),
            ttl_seconds: Some(0),
        });
        let request = Request {
            remote_address: Some("10.0.0.1:54321".parse().unwrap()),
            local_address: Some("10.0.0.2:8080".parse().unwrap()),
            ..Request::default()
        };
        let value = generated_cookie_value(
            request.remote_address.unwrap(),
            request.local_address.unwrap(),
        );
        assert_eq!(value, "d5bede35465dd05f");
        assert_eq!(
            generating.generate_hash(&request),
            Some(17006073653103894269)
        );
        // No connection addresses: nothing to generate, so no hash.
        assert_eq!(generating.generate_hash(&Request::default()), None);
    }

    #[test]
    fn cookie_parsing_rules() {
        let r = Request::default()
            .with_header("cookie", ";;  other=1;  hash=first")
            .with_header("cookie", "hash=second");
        assert_eq!(cookie_value(&r, "hash"), Some("first"));
        let r = Request::default().with_header("cookie", "hash =x; hash=y");
        assert_eq!(cookie_value(&r, "hash"), Some("y"));
        let r = Request::default().with_header("cookie", "hash=\"");
        assert_eq!(cookie_value(&r, "hash"), Some("\""));
    }

    #[test]
    fn source_ip_ignores_port() {
        let policy = HashPolicy::default().then(HashMethod::SourceIp);
        assert_eq!(
            policy.generate_hash(&from_ip("192.168.1.1")),
            Some(4727775843391247014)
        );
        let v6 = Request {
            remote_address: Some("[1:2:3:4:5::]:80".parse().unwrap()),
            ..Request::default()
        };
        assert_eq!(policy.generate_hash(&v6), Some(xx("1:2:3:4:5::")));
        assert_eq!(policy.generate_hash(&Request::default()), None);
    }

    #[test]
    fn query_parameter_first_value_no_decoding() {
        let policy = HashPolicy::default().then(HashMethod::QueryParameter {
            name: "test-param".into(),
        });
        let r = Request::default().with_header(":path", "/test?test-param=param-value");
        assert_eq!(policy.generate_hash(&r), Some(xx("param-value")));
        assert_eq!(query_first_value("/?a=1&a=2", "a"), Some("1"));
        assert_eq!(query_first_value("/?a", "a"), Some(""));
        assert_eq!(query_first_value("/?b=%20&a=x=y", "a"), Some("x=y"));
        assert_eq!(query_first_value("/?b=%20", "b"), Some("%20"));
        assert_eq!(query_first_value("/a=1", "a"), None);
        assert_eq!(policy.generate_hash(&Request::default()), None);
    }

    #[test]
    fn filter_state_string_object() {
        let policy = HashPolicy::default().then(HashMethod::FilterState { key: "k".into() });
        let mut r = Request::default();
        assert_eq!(policy.generate_hash(&r), None);
        r.filter_state.insert("k".into(), "v".into());
        assert_eq!(policy.generate_hash(&r), Some(xx("v")));
    }

    // Envoy's HashPolicyImpl folds each further key in as rotl(h, 1) ^ key.
    #[test]
    fn rotate_xor_combination() {
        let r = from_ip("4.3.2.1").with_header("foo_header", "bar");
        let policy = HashPolicy::header("foo_header").then(HashMethod::SourceIp);
        assert_eq!(policy.generate_hash(&r), Some(9890873716945683598));
        assert_eq!(xx("4.3.2.1"), 1730939287958243388);
        let r = r.with_header("x-foo", "foo");
        let three = HashPolicy::header("foo_header")
            .then(HashMethod::SourceIp)
            .then(header("x-foo"));
        assert_eq!(three.generate_hash(&r), Some(2394194076956341026));
        let twice = HashPolicy::header("foo_header").then(header("foo_header"));
        assert_eq!(twice.generate_hash(&r), Some(15701102675303656171));
    }

    // config_impl_test.cc: HashTerminal
    #[test]
    fn terminal_checks_the_accumulated_hash() {
        let policy = HashPolicy::default()
            .then(HashMethod::Cookie {
                name: "c".into(),
                ttl_seconds: None,
            })
            .then_terminal(header("h"))
            .then(HashMethod::SourceIp);
        let both = |ip| {
            from_ip(ip)
                .with_header("cookie", "c=1")
                .with_header("h", "v")
        };
        let a = policy.generate_hash(&both("1.1.1.1"));
        assert_eq!(a, policy.generate_hash(&both("2.2.2.2")));
        assert_eq!(a, Some(xx("1").rotate_left(1) ^ xx("v")));
        assert_eq!(
            policy.generate_hash(&from_ip("1.1.1.1")),
            Some(xx("1.1.1.1"))
        );
        // The terminal header is absent but the cookie produced a hash: still stops.
        let cookie_only = from_ip("1.1.1.1").with_header("cookie", "c=1");
        assert_eq!(policy.generate_hash(&cookie_only), Some(xx("1")));
    }
}
