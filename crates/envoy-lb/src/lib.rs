//! Envoy consistent-hash load balancing model.
