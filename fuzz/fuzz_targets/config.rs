//! The configuration parser (its own strict JSON reader) on any bytes.
//! Checked: no panic; what it accepts is a JSON object for serde_json too
//! (or blank), with no member repeated; every field it takes has the value
//! serde_json reads there, and every other field keeps its default; what
//! it accepts passes the documented bounds.
#![no_main]

use a2a_affinity_core::config::{ClientHeader, Config, DecideAt, MAX_SCAN_BYTES_LIMIT};
use a2a_affinity_fuzz::json_without_duplicates;
use serde_json::Value;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(config) = Config::parse(data) else {
        return;
    };
    let json_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    if data.iter().all(json_space) {
        assert_eq!(config, Config::default());
        return;
    }
    let value: Value = serde_json::from_slice(data)
        .unwrap_or_else(|e| panic!("accepted what serde_json rejects ({e})"));
    assert!(json_without_duplicates(data), "accepted a repeated field");
    let object = value.as_object().expect("accepted a non-object");
    let default = Config::default();
    let number = |name: &str| -> Option<f64> {
        match object.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_f64().unwrap_or_else(|| panic!("{name}: {v}"))),
        }
    };
    let flag = |name: &str, default: bool| match object.get(name) {
        None | Some(Value::Null) => default,
        Some(v) => v.as_bool().unwrap_or_else(|| panic!("{name}: {v}")),
    };
    match object.get("header") {
        None | Some(Value::Null) => assert_eq!(config.header, default.header),
        Some(v) => assert_eq!(
            Some(config.header.as_str()),
            v.as_str().map(str::to_ascii_lowercase).as_deref()
        ),
    }
    let header_ok = config
        .header
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    assert!(
        !config.header.is_empty() && header_ok,
        "{:?}",
        config.header
    );
    for (name, got, default) in [
        (
            "max_value_bytes",
            config.max_value_bytes as f64,
            default.max_value_bytes as f64,
        ),
        (
            "max_scan_bytes",
            config.max_scan_bytes as f64,
            default.max_scan_bytes as f64,
        ),
        (
            "task_capacity",
            f64::from(config.task_capacity),
            f64::from(default.task_capacity),
        ),
        (
            "task_ttl_secs",
            config.task_ttl_secs as f64,
            default.task_ttl_secs as f64,
        ),
    ] {
        assert_eq!(got, number(name).unwrap_or(default), "{name}");
    }
    assert_eq!(
        config.mint_context_id,
        flag("mint_context_id", default.mint_context_id)
    );
    assert_eq!(config.learn_tasks, flag("learn_tasks", default.learn_tasks));
    assert_eq!(
        config.task_id_context,
        flag("task_id_context", default.task_id_context)
    );
    let strip = matches!(object.get("client_header"), Some(Value::String(s)) if s == "strip");
    assert_eq!(config.client_header == ClientHeader::Strip, strip);
    let first_id = matches!(object.get("decide_at"), Some(Value::String(s)) if s == "first_id");
    assert_eq!(config.decide_at == DecideAt::FirstId, first_id);
    assert!((1..=8192).contains(&config.max_value_bytes));
    assert!((1..=MAX_SCAN_BYTES_LIMIT).contains(&config.max_scan_bytes));
    assert!(config.task_capacity >= 1 && config.task_ttl_secs >= 1);
});
