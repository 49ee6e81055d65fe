//! Ports for servers a test starts in another process (Envoy, redis-server).
//!
//! Asking the kernel for port 0 and releasing the socket before the server
//! binds is racy twice over: the next port-0 bind in this process may get the
//! same port back, and an outgoing connection may take it as its local port.
//! [`free_port`] takes ports from below the kernel's ephemeral range, where
//! neither happens, and never hands the same port out twice in one process.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

struct Picker {
    handed_out: HashSet<u16>,
    state: u64,
}

static PICKER: Mutex<Option<Picker>> = Mutex::new(None);

fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port on 127.0.0.1 that was free a moment ago and that this process has
/// not handed out before; the caller binds it (or has a child bind it) next.
pub fn free_port() -> u16 {
    let mut guard = PICKER.lock().unwrap_or_else(|e| e.into_inner());
    let picker = guard.get_or_insert_with(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Picker {
            handed_out: HashSet::new(),
            state: nanos ^ (u64::from(std::process::id()) << 32) | 1,
        }
    });
    let low = ephemeral_low();
    let first: u16 = if low > 20000 { 10000 } else { 1024 };
    if low.saturating_sub(first) >= 1000 {
        for _ in 0..200 {
            // xorshift64: enough to spread concurrent test processes apart.
            picker.state ^= picker.state << 13;
            picker.state ^= picker.state >> 7;
            picker.state ^= picker.state << 17;
            let span = u64::from(low - first);
            let port = first + (picker.state % span) as u16;
            if !picker.handed_out.contains(&port) && bindable(port) {
                picker.handed_out.insert(port);
                return port;
            }
        }
    }
    // No room below the ephemeral range: let the kernel choose.
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding 127.0.0.1:0");
        if picker.handed_out.insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_the_same_port_twice() {
        let ports: Vec<u16> = (0..500).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|&p| bindable(p)));
    }
}
