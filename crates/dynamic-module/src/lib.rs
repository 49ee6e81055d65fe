//! a2a-affinity as an Envoy dynamic module.
