//! Command-line flags, and the settings they resolve to. Every error is one
//! line naming the flag (and, for the configuration file, the field), so a
//! bad deployment fails at start with a readable reason.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use a2a_affinity_core::config::Config;
use clap::Parser;

use crate::store::RedisSettings;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "a2a-affinity-ext-proc",
    version,
    about = "a2a-affinity as an Envoy ext_proc server: sets x-context-id from A2A request bodies so Envoy's RING_HASH/MAGLEV keeps a conversation on one replica"
)]
pub struct Flags {
    /// gRPC address: envoy.service.ext_proc.v3.ExternalProcessor and
    /// grpc.health.v1.Health.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// The filter's JSON configuration, the same object the Wasm filter
    /// takes (fields, defaults and validation alike). All defaults when
    /// absent.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// HTTP address for Prometheus text at /metrics and /healthz.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,

    /// Where learned taskId -> contextId pairs live: `memory` (this
    /// process) or `redis://HOST:PORT` (shared by every instance using it).
    #[arg(
        long,
        value_name = "memory|redis://HOST:PORT",
        default_value = "memory"
    )]
    pub task_store: String,

    /// Longest a request waits for a Redis lookup before it goes on as if
    /// the task were unknown.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub redis_timeout_ms: u64,

    /// Prefix of the Redis keys (one key per learned task).
    #[arg(long, value_name = "PREFIX", default_value = "a2a-affinity:task:")]
    pub redis_key_prefix: String,

    /// After SIGTERM/SIGINT, how long in-flight streams (a streamed
    /// response can be long) may run before the server exits anyway.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// Log level on stderr: error, warn, info, debug, trace or off.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Where learned tasks live.
#[derive(Clone, Debug)]
pub enum TaskStoreSetting {
    Memory,
    Redis(RedisSettings),
}

/// Everything the server runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub config: Config,
    /// Where the configuration came from, for the start line.
    pub config_source: String,
    pub task_store: TaskStoreSetting,
    pub shutdown_grace: Duration,
}

impl Settings {
    /// Settings with every default and `config`, listening on ephemeral
    /// loopback ports (tests, embedding).
    pub fn local(config: Config) -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            config,
            config_source: "(given)".to_string(),
            task_store: TaskStoreSetting::Memory,
            shutdown_grace: Duration::from_secs(30),
        }
    }

    /// Resolves the flags, reading and validating the configuration file.
    /// The error is one line.
    pub fn from_flags(flags: &Flags) -> Result<Settings, String> {
        let (config, config_source) = match &flags.config {
            None => (Config::default(), "(defaults)".to_string()),
            Some(path) => {
                let shown = path.display();
                let bytes = std::fs::read(path).map_err(|e| format!("--config {shown}: {e}"))?;
                let config = Config::parse(&bytes)
                    .and_then(|c| c.require_header_hashing("the ext_proc server").map(|()| c))
                    .map_err(|e| format!("--config {shown}: {e}"))?;
                (config, shown.to_string())
            }
        };
        if !(1..=60_000).contains(&flags.redis_timeout_ms) {
            return Err("--redis-timeout-ms: must be between 1 and 60000".to_string());
        }
        let task_store = match flags.task_store.as_str() {
            "memory" => TaskStoreSetting::Memory,
            url if url.starts_with("redis://") => TaskStoreSetting::Redis(RedisSettings {
                url: url.to_string(),
                key_prefix: flags.redis_key_prefix.clone(),
                timeout: Duration::from_millis(flags.redis_timeout_ms),
            }),
            other => {
                return Err(format!(
                    "--task-store {other:?}: expected memory or redis://HOST:PORT"
                ))
            }
        };
        Ok(Settings {
            listen: flags.listen,
            metrics_listen: flags.metrics_listen,
            config,
            config_source,
            task_store,
            shutdown_grace: Duration::from_secs(flags.shutdown_grace_secs),
        })
    }
}

/// `info` -> `LevelFilter::Info`; the error names the flag.
pub fn log_level(flag: &str) -> Result<log::LevelFilter, String> {
    flag.parse().map_err(|_| {
        format!("--log-level {flag:?}: expected error, warn, info, debug, trace or off")
    })
}

/// An error as one line (a configuration error's source text may hold line
/// breaks).
pub fn one_line(error: &str) -> String {
    error.split_whitespace().collect::<Vec<_>>().join(" ")
}
