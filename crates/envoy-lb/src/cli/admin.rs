//! Host sets from Envoy's admin `/clusters?format=json` (a saved file or a loopback URL).
//!
//! The admin output has addresses, weights, hostnames, localities, priorities and health, but
//! no endpoint metadata (so no `envoy.lb` `hash_key`) and no locality weights.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use envoy_lb::{Health, Host, HostSet, Locality};
use serde_json::Value;

use super::CliError;

/// Reads the admin JSON from `source`: `http://HOST:PORT` (loopback only) or a file path.
pub fn load(source: &str) -> Result<String, CliError> {
    if let Some(rest) = source.strip_prefix("http://") {
        let authority = rest.split('/').next().unwrap_or_default();
        return http_get(authority, "/clusters?format=json");
    }
    std::fs::read_to_string(source)
        .map_err(|e| CliError::new(format!("cannot read admin JSON '{source}': {e}")))
}

/// A minimal HTTP/1.1 GET over a loopback TCP connection (the admin API is plain HTTP).
fn http_get(authority: &str, path: &str) -> Result<String, CliError> {
    let addresses: Vec<_> = authority
        .to_socket_addrs()
        .map_err(|e| CliError::new(format!("bad admin address '{authority}': {e}")))?
        .collect();
    let Some(address) = addresses.into_iter().find(|a| is_loopback(a.ip())) else {
        return Err(CliError::new(format!(
            "admin address '{authority}' is not a loopback address (127.0.0.0/8, ::1)"
        )));
    };
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| CliError::new(format!("cannot connect to admin {address}: {e}")))?;
    let io = |e: std::io::Error| CliError::new(format!("admin {address}: {e}"));
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(io)?;
    parse_response(&response).map_err(|e| CliError::new(format!("admin {address}: {e}")))
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// Status line, headers, then a body that is either chunked or delimited by the close.
fn parse_response(raw: &[u8]) -> Result<String, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response has no header terminator")?;
    let head = String::from_utf8_lossy(raw.get(..split).unwrap_or_default());
    let body = raw.get(split + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!("unexpected status '{status}'"));
    }
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    String::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(data.get(..line_end).unwrap_or_default());
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size '{size_text}'"))?;
        data = data.get(line_end + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or("truncated chunk trailer")?;
    }
}

/// Extracts cluster `name`'s hosts, by priority, from the admin JSON.
pub fn parse_clusters(json: &str, name: &str) -> Result<Vec<HostSet>, CliError> {
    let root: Value = serde_json::from_str(json)
        .map_err(|e| CliError::new(format!("admin JSON is not valid JSON: {e}")))?;
    let clusters = root
        .get("cluster_statuses")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            CliError::new("admin JSON has no cluster_statuses (use /clusters?format=json)")
        })?;
    let cluster = clusters
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
        .ok_or_else(|| {
            let names: Vec<&str> = clusters
                .iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect();
            CliError::new(format!(
                "cluster '{name}' not found; clusters: {}",
                names.join(", ")
            ))
        })?;
    let mut priorities: Vec<HostSet> = Vec::new();
    let statuses = cluster
        .get("host_statuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for status in &statuses {
        let host = parse_host(status)?;
        // Proto3 JSON omits zero values: no "priority" means priority 0.
        let priority = status.get("priority").and_then(Value::as_u64).unwrap_or(0) as usize;
        if priority > 127 {
            return Err(CliError::new(format!(
                "host priority {priority} out of range"
            )));
        }
        if priorities.len() <= priority {
            priorities.resize_with(priority + 1, HostSet::default);
        }
        if let Some(set) = priorities.get_mut(priority) {
            set.hosts.push(host);
        }
    }
    if priorities.is_empty() {
        return Err(CliError::new(format!("cluster '{name}' has no hosts")));
    }
    Ok(priorities)
}

fn parse_host(status: &Value) -> Result<Host, CliError> {
    let socket = status
        .pointer("/address/socket_address")
        .ok_or_else(|| CliError::new("host without a socket_address (pipes are not supported)"))?;
    let ip = socket
        .get("address")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::new("socket_address without address"))?;
    let port = socket
        .get("port_value")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| CliError::new(format!("host address '{ip}' is not an IP")))?;
    let address = std::net::SocketAddr::new(ip, port as u16).to_string();
    let mut host = Host::new(&address).map_err(|e| CliError::new(e.to_string()))?;
    host.weight = status.get("weight").and_then(Value::as_u64).unwrap_or(1) as u32;
    host.hostname = status
        .get("hostname")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(locality) = status.get("locality") {
        let field = |k: &str| {
            locality
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        host.locality = Locality {
            region: field("region"),
            zone: field("zone"),
            sub_zone: field("sub_zone"),
        };
    }
    host.health = health(status.get("health_status"));
    Ok(host)
}

/// Health the way `Host::coarseHealth()` folds the flags: any failure flag is unhealthy,
/// a degraded flag or EDS DEGRADED is degraded.
fn health(status: Option<&Value>) -> Health {
    let Some(status) = status else {
        return Health::Healthy;
    };
    let flag = |k: &str| status.get(k).and_then(Value::as_bool).unwrap_or(false);
    let eds = status
        .get("eds_health_status")
        .and_then(Value::as_str)
        .unwrap_or("HEALTHY");
    let failed = flag("failed_active_health_check")
        || flag("failed_outlier_check")
        || flag("excluded_via_immediate_hc_fail")
        || flag("active_hc_timeout")
        || matches!(eds, "UNHEALTHY" | "DRAINING" | "TIMEOUT");
    if failed {
        Health::Unhealthy
    } else if flag("failed_active_degraded_check") || eds == "DEGRADED" {
        Health::Degraded
    } else {
        Health::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"cluster_statuses":[{"name":"other"},{"name":"replicas","host_statuses":[
      {"address":{"socket_address":{"address":"127.0.0.1","port_value":19910}},
       "health_status":{"eds_health_status":"HEALTHY"},"weight":2,"hostname":"h0",
       "locality":{"region":"r","zone":"z"}},
      {"address":{"socket_address":{"address":"127.0.0.1","port_value":19911}},
       "health_status":{"eds_health_status":"UNHEALTHY"},"weight":1},
      {"address":{"socket_address":{"address":"::1","port_value":19912}},
       "health_status":{"eds_health_status":"DEGRADED"},"weight":1,"priority":1}]}]}"#;

    #[test]
    fn parses_envoy_admin_clusters_json() {
        let sets = parse_clusters(SAMPLE, "replicas").unwrap();
        assert_eq!(sets.len(), 2);
        let h0 = &sets[0].hosts[0];
        assert_eq!(h0.address, "127.0.0.1:19910");
        assert_eq!((h0.weight, h0.hostname.as_str()), (2, "h0"));
        assert_eq!(h0.locality, Locality::parse("r/z"));
        assert_eq!(sets[0].hosts[1].health, Health::Unhealthy);
        assert_eq!(sets[1].hosts[0].address, "[::1]:19912");
        assert_eq!(sets[1].hosts[0].health, Health::Degraded);
        let err = parse_clusters(SAMPLE, "nope").unwrap_err().to_string();
        assert!(err.contains("other, replicas"), "{err}");
        assert!(parse_clusters("[]", "x").is_err());
        assert!(parse_clusters("{", "x").is_err());
    }

    #[test]
    fn chunked_and_plain_responses() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), "abcde");
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(parse_response(plain).unwrap(), "ok");
        assert!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .is_err()
        );
    }

    #[test]
    fn only_loopback_admin_addresses() {
        let err = load("http://192.0.2.1:9901").unwrap_err().to_string();
        assert!(err.contains("not a loopback"), "{err}");
    }
}
