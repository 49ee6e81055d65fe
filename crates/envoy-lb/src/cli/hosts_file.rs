//! The hosts file: one endpoint per line, `key=value` attributes, `#` comments.
//!
//! ```text
//! # ADDR [weight=N] [hash_key=K] [hostname=H] [priority=P] [locality=REGION/ZONE/SUB_ZONE]
//! #      [health=healthy|degraded|unhealthy]
//! 10.0.0.1:8080 weight=2 hostname=replica-1 locality=eu/eu-1a
//! 10.0.0.2:8080 hash_key=replica-2 priority=1 health=unhealthy
//! # locality weights (used with --locality-weighted; an unlisted locality weighs 0)
//! locality eu/eu-1a weight=3
//! ```

use envoy_lb::{Health, Host, HostSet, Locality};

use super::CliError;

/// Parses a hosts file into priority levels (index = priority).
pub fn parse(text: &str, origin: &str) -> Result<Vec<HostSet>, CliError> {
    let mut priorities: Vec<HostSet> = Vec::new();
    let mut locality_weights: Vec<(Locality, u32)> = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let at = || format!("{origin}:{}", number + 1);
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else {
            continue;
        };
        if first == "locality" {
            let name = words
                .next()
                .ok_or_else(|| CliError::new(format!("{}: 'locality' needs a name", at())))?;
            let mut weight = None;
            for word in words {
                match word.split_once('=') {
                    Some(("weight", v)) => weight = Some(parse_number(v, "weight", &at())?),
                    _ => {
                        return Err(CliError::new(format!(
                            "{}: unknown locality attribute '{word}' (expected weight=N)",
                            at()
                        )))
                    }
                }
            }
            let weight = weight
                .ok_or_else(|| CliError::new(format!("{}: locality needs weight=N", at())))?;
            locality_weights.push((Locality::parse(name), weight));
            continue;
        }
        let mut host = Host::new(first).map_err(|e| CliError::new(format!("{}: {e}", at())))?;
        let mut priority: u32 = 0;
        for word in words {
            let Some((name, value)) = word.split_once('=') else {
                return Err(CliError::new(format!(
                    "{}: expected key=value, got '{word}'",
                    at()
                )));
            };
            match name {
                "weight" => host.weight = parse_number(value, "weight", &at())?,
                "hash_key" => host.hash_key = Some(value.to_string()),
                "hostname" => host.hostname = value.to_string(),
                "priority" => priority = parse_number(value, "priority", &at())?,
                "locality" => host.locality = Locality::parse(value),
                "health" => host.health = parse_health(value, &at())?,
                _ => {
                    return Err(CliError::new(format!(
                        "{}: unknown attribute '{name}' (weight, hash_key, hostname, priority, locality, health)",
                        at()
                    )))
                }
            }
        }
        if host.weight == 0 {
            return Err(CliError::new(format!(
                "{}: weight must be at least 1",
                at()
            )));
        }
        // Envoy numbers priorities 0..=127 in practice; a huge number here is a typo.
        if priority > 127 {
            return Err(CliError::new(format!(
                "{}: priority {priority} > 127",
                at()
            )));
        }
        let slot = priority as usize;
        if priorities.len() <= slot {
            priorities.resize_with(slot + 1, HostSet::default);
        }
        if let Some(set) = priorities.get_mut(slot) {
            set.hosts.push(host);
        }
    }
    if priorities.iter().all(|p| p.hosts.is_empty()) {
        return Err(CliError::new(format!("{origin}: no hosts")));
    }
    for set in &mut priorities {
        for (locality, weight) in &locality_weights {
            set.locality_weights.insert(locality.clone(), *weight);
        }
    }
    Ok(priorities)
}

fn parse_number(value: &str, what: &str, at: &str) -> Result<u32, CliError> {
    value
        .parse()
        .map_err(|_| CliError::new(format!("{at}: {what} '{value}' is not a number")))
}

fn parse_health(value: &str, at: &str) -> Result<Health, CliError> {
    match value.to_ascii_lowercase().as_str() {
        "healthy" => Ok(Health::Healthy),
        "degraded" => Ok(Health::Degraded),
        "unhealthy" => Ok(Health::Unhealthy),
        _ => Err(CliError::new(format!(
            "{at}: health '{value}' is not healthy, degraded or unhealthy"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_attributes_priorities_and_localities() {
        let text = "# replicas\n\
                    10.0.0.1:8080 weight=2 hostname=a locality=eu/1a\n\
                    \n\
                    10.0.0.2:8080 hash_key=k priority=1 health=unhealthy # note\n\
                    locality eu/1a weight=3\n";
        let sets = parse(text, "f").unwrap();
        assert_eq!(sets.len(), 2);
        let a = &sets[0].hosts[0];
        assert_eq!((a.weight, a.hostname.as_str()), (2, "a"));
        assert_eq!(a.locality, Locality::parse("eu/1a"));
        let b = &sets[1].hosts[0];
        assert_eq!(b.hash_key.as_deref(), Some("k"));
        assert_eq!(b.health, Health::Unhealthy);
        assert_eq!(
            sets[0].locality_weights.get(&Locality::parse("eu/1a")),
            Some(&3)
        );
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("10.0.0.1:80\n10.0.0.2:80 weight=x\n", "hosts.txt").unwrap_err();
        assert!(err.to_string().contains("hosts.txt:2"), "{err}");
        assert!(parse("replica-1\n", "f").is_err());
        assert!(parse("10.0.0.1:80 colour=red\n", "f").is_err());
        assert!(parse("10.0.0.1:80 weight=0\n", "f").is_err());
        assert!(parse("# nothing\n", "f").is_err());
        assert!(parse("locality a\n10.0.0.1:80\n", "f").is_err());
    }
}
