//! The checks the API server applies to an `IpfsCluster` spec (its CEL rules and schema bounds),
//! for specs that do not pass through one (local mode), one function per section in the order
//! the errors are reported.

use std::time::Duration;

use super::{
    CLUSTER_NAME_MESSAGE, CLUSTER_PROXY_PORT, CLUSTER_REST_PORT, CLUSTER_SWARM_PORT, Consensus,
    Exposure, IpfsCluster, IpfsClusterSpec, KUBO_RPC_PORT, KUBO_SWARM_PORT, KuboProfile,
    MAX_CLUSTER_NAME_LENGTH, MAX_REPLICAS, check_kubo_config,
};
use crate::api::validation::{FieldError, ValidationErrors, check_image, parse_storage_size};

/// A DNS subdomain (RFC 1123) as Kubernetes object names use: `^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`,
/// at most 253 characters.
fn is_dns_subdomain(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && bytes.first().is_some_and(edge_ok)
        && bytes.last().is_some_and(edge_ok)
        && bytes.iter().all(|b| edge_ok(b) || *b == b'-' || *b == b'.')
}

/// A reference to key `key` of Secret `name` at `field` (`spec.cluster.secretRef`): a valid
/// Secret name and key.
fn check_secret_key_ref(field: &str, name: &str, key: &str, errors: &mut Vec<FieldError>) {
    if !is_dns_subdomain(name) {
        errors.push(FieldError::new(
            format!("{field}.name"),
            "must be a Secret name: lower-case letters, digits, `-` and `.`, 1 to 253 characters",
        ));
    }
    let key_ok = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if key.is_empty() || key.len() > 253 || !key_ok {
        errors.push(FieldError::new(
            format!("{field}.key"),
            "must be a Secret key: letters, digits, `-`, `_` and `.`",
        ));
    }
}

/// Checks the name of an IpfsCluster ([`super::CLUSTER_NAME_RULE`]): a DNS-1035 label of at most
/// [`MAX_CLUSTER_NAME_LENGTH`] characters, so that every name the operator derives from it is
/// valid. The error names `metadata.name`.
pub fn check_cluster_name(name: &str) -> Result<(), FieldError> {
    let bytes = name.as_bytes();
    let ok = name.len() <= MAX_CLUSTER_NAME_LENGTH
        && bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        let message = CLUSTER_NAME_MESSAGE
            .strip_prefix("metadata.name ")
            .unwrap_or(CLUSTER_NAME_MESSAGE);
        Err(FieldError::new("metadata.name", message))
    }
}

impl IpfsCluster {
    /// Checks the rules the API server enforces on creation of the whole object: the name
    /// ([`check_cluster_name`]) and the spec ([`IpfsClusterSpec::validate`]). An object without a
    /// name yet (`generateName`) is checked by its spec alone.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        if let Some(name) = &self.metadata.name
            && let Err(e) = check_cluster_name(name)
        {
            errors.push(e);
        }
        if let Err(ValidationErrors(spec_errors)) = self.spec.validate() {
            errors.extend(spec_errors);
        }
        ValidationErrors::check(errors)
    }
}

impl IpfsClusterSpec {
    /// Checks the rules the API server enforces on creation, for specs that do not pass through
    /// one (local mode). Error fields are JSON paths from the object root (`spec.replicas`).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        self.check_replicas(&mut errors);
        self.check_images(&mut errors);
        self.check_kubo_profiles(&mut errors);
        self.check_kubo_config(&mut errors);
        self.check_replication_factors(&mut errors);
        self.check_health(&mut errors);
        self.check_networking(&mut errors);
        self.check_secret_refs(&mut errors);
        self.check_pod_security_context(&mut errors);
        self.check_storage_and_resources(&mut errors);
        ValidationErrors::check(errors)
    }

    /// `spec.replicas`: 1 to [`MAX_REPLICAS`], odd and at least 3 with raft.
    fn check_replicas(&self, errors: &mut Vec<FieldError>) {
        let mut err = |field: &str, message: String| errors.push(FieldError::new(field, message));
        if !(1..=MAX_REPLICAS).contains(&self.replicas) {
            err(
                "spec.replicas",
                format!("must be between 1 and {MAX_REPLICAS}"),
            );
        }
        if self.cluster.consensus == Consensus::Raft
            && (self.replicas < 3 || self.replicas % 2 == 0)
        {
            err(
                "spec.replicas",
                "must be an odd number of at least 3 with spec.cluster.consensus: raft".into(),
            );
        }
    }

    /// `spec.kubo.image` and `spec.cluster.image`: pinned to a tag or a whole digest, at most 512
    /// characters.
    fn check_images(&self, errors: &mut Vec<FieldError>) {
        for (name, image) in [
            ("spec.kubo.image", &self.kubo.image),
            ("spec.cluster.image", &self.cluster.image),
        ] {
            if image.len() > 512 {
                errors.push(FieldError::new(name, "must be at most 512 characters"));
            } else if let Err(message) = check_image(image) {
                errors.push(FieldError::new(name, message));
            }
        }
    }

    /// `spec.kubo.config`: none of the keys the operator manages.
    fn check_kubo_config(&self, errors: &mut Vec<FieldError>) {
        if let Some(config) = &self.kubo.config {
            errors.extend(check_kubo_config(config));
        }
    }

    /// `spec.kubo.profiles`: at most one datastore profile.
    fn check_kubo_profiles(&self, errors: &mut Vec<FieldError>) {
        let datastores = self
            .kubo
            .profiles
            .iter()
            .filter(|p| matches!(p, KuboProfile::Flatfs | KuboProfile::Pebbleds))
            .count();
        if datastores > 1 {
            errors.push(FieldError::new(
                "spec.kubo.profiles",
                "may name at most one datastore profile (flatfs or pebbleds)",
            ));
        }
    }

    /// `spec.cluster.replicationFactorMin/Max`: 1 to `spec.replicas`, min not above max.
    fn check_replication_factors(&self, errors: &mut Vec<FieldError>) {
        let mut err = |field: &str, message: String| errors.push(FieldError::new(field, message));
        let c = &self.cluster;
        for (name, factor) in [
            (
                "spec.cluster.replicationFactorMin",
                c.replication_factor_min,
            ),
            (
                "spec.cluster.replicationFactorMax",
                c.replication_factor_max,
            ),
        ] {
            match factor {
                Some(f) if f < 1 => err(name, "must be at least 1".into()),
                Some(f) if f > self.replicas => err(name, "must not exceed spec.replicas".into()),
                _ => {}
            }
        }
        if let (Some(min), Some(max)) = (c.replication_factor_min, c.replication_factor_max)
            && min > max
        {
            err(
                "spec.cluster.replicationFactorMin",
                "must not exceed spec.cluster.replicationFactorMax".into(),
            );
        }
    }

    /// `spec.health`: durations that parse, the timeout shorter than the interval, and the
    /// bounds of the counts.
    fn check_health(&self, errors: &mut Vec<FieldError>) {
        let mut err = |field: &str, message: String| errors.push(FieldError::new(field, message));
        let h = &self.health;
        match (h.probe_interval(), h.probe_timeout()) {
            (Ok(interval), Ok(timeout)) => {
                if interval < Duration::from_secs(1) || interval > Duration::from_secs(3600) {
                    err(
                        "spec.health.probeInterval",
                        "must be between 1s and 1h".into(),
                    );
                }
                if timeout >= interval {
                    err(
                        "spec.health.probeTimeout",
                        "must be shorter than spec.health.probeInterval".into(),
                    );
                }
            }
            (interval, timeout) => {
                for e in [interval.err(), timeout.err()].into_iter().flatten() {
                    err(&e.field, e.message);
                }
            }
        }
        if !(1..=100).contains(&h.failure_threshold) {
            err(
                "spec.health.failureThreshold",
                "must be between 1 and 100".into(),
            );
        }
        if !(0..=60).contains(&h.max_restarts_per_hour) {
            err(
                "spec.health.maxRestartsPerHour",
                "must be between 0 and 60".into(),
            );
        }
        if !(0..=1000).contains(&h.min_peer_connections) {
            err(
                "spec.health.minPeerConnections",
                "must be between 0 and 1000".into(),
            );
        }
    }

    /// `spec.networking`: only the swarm ports exposed, each once; a gateway exposure only with
    /// the gateway enabled.
    fn check_networking(&self, errors: &mut Vec<FieldError>) {
        let mut err = |field: &str, message: String| errors.push(FieldError::new(field, message));
        let p2p = &self.networking.p2p;
        if p2p
            .ports
            .iter()
            .any(|p| [KUBO_RPC_PORT, CLUSTER_REST_PORT, CLUSTER_PROXY_PORT].contains(p))
        {
            err(
                "spec.networking.p2p.ports",
                "must not expose 5001 (Kubo RPC), 9094 (IPFS Cluster REST API) or 9095 (IPFS \
                 Cluster proxy)"
                    .into(),
            );
        } else if p2p
            .ports
            .iter()
            .any(|p| ![KUBO_SWARM_PORT, CLUSTER_SWARM_PORT].contains(p))
        {
            err(
                "spec.networking.p2p.ports",
                "may list only 4001 and 9096".into(),
            );
        }
        let mut ports = p2p.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        if p2p.ports.is_empty() || ports.len() != p2p.ports.len() {
            err(
                "spec.networking.p2p.ports",
                "must list 4001 and/or 9096, each once".into(),
            );
        }
        let gw = &self.networking.gateway;
        if !gw.enabled && gw.exposure != Exposure::Internal {
            err(
                "spec.networking.gateway.exposure",
                "needs spec.networking.gateway.enabled: true".into(),
            );
        }
    }

    /// `spec.cluster.secretRef` and `spec.swarmKeyRef`: valid Secret names and keys.
    fn check_secret_refs(&self, errors: &mut Vec<FieldError>) {
        if let Some(secret) = &self.cluster.secret_ref {
            check_secret_key_ref("spec.cluster.secretRef", &secret.name, &secret.key, errors);
        }
        if let Some(swarm) = &self.swarm_key_ref {
            check_secret_key_ref("spec.swarmKeyRef", &swarm.name, &swarm.key, errors);
        }
    }

    /// `spec.podSecurityContext`: ids in range (no root user), none set with `omitIds`.
    fn check_pod_security_context(&self, errors: &mut Vec<FieldError>) {
        let psc = &self.pod_security_context;
        for (field, value, min) in [
            ("runAsUser", psc.run_as_user, 1),
            ("runAsGroup", psc.run_as_group, 0),
            ("fsGroup", psc.fs_group, 0),
        ] {
            if value.is_some_and(|v| !(min..=i64::from(i32::MAX)).contains(&v)) {
                errors.push(FieldError::new(
                    format!("spec.podSecurityContext.{field}"),
                    format!("must be between {min} and {}", i32::MAX),
                ));
            }
        }
        if psc.omit_ids
            && (psc.run_as_user.is_some() || psc.run_as_group.is_some() || psc.fs_group.is_some())
        {
            errors.push(FieldError::new(
                "spec.podSecurityContext.omitIds",
                "true leaves the user and groups to the platform: remove runAsUser, runAsGroup \
                 and fsGroup",
            ));
        }
    }

    /// The volumes and resource requirements of both daemons.
    fn check_storage_and_resources(&self, errors: &mut Vec<FieldError>) {
        self.kubo.storage.validate("spec.kubo.storage", errors);
        self.cluster
            .storage
            .validate("spec.cluster.storage", errors);
        self.check_storage_max(errors);
        if let Some(r) = &self.kubo.resources {
            r.validate("spec.kubo.resources", errors);
        }
        if let Some(r) = &self.cluster.resources {
            r.validate("spec.cluster.resources", errors);
        }
    }

    /// `spec.kubo.storageMax`: a size of at least 1Mi and at most the volume.
    fn check_storage_max(&self, errors: &mut Vec<FieldError>) {
        let Some(max) = &self.kubo.storage_max else {
            return;
        };
        let field = "spec.kubo.storageMax";
        match (parse_storage_size(max), self.kubo.storage.size_bytes()) {
            (Err(e), _) => errors.push(FieldError::new(field, e)),
            (Ok(bytes), _) if bytes < 1 << 20 => {
                errors.push(FieldError::new(field, "must be at least 1Mi"))
            }
            (Ok(bytes), Ok(size)) if bytes > size => errors.push(FieldError::new(
                field,
                format!(
                    "must be at most spec.kubo.storage.size ({}): Kubo would count on room \
                         its volume does not have",
                    self.kubo.storage.size
                ),
            )),
            _ => {}
        }
    }

    /// Checks the rules the API server enforces on update: [`Self::validate`] plus the
    /// transition rules (consensus fixed, storage never shrinks, storage class fixed).
    pub fn validate_update(&self, old: &Self) -> Result<(), ValidationErrors> {
        let mut errors = match self.validate() {
            Ok(()) => Vec::new(),
            Err(ValidationErrors(errors)) => errors,
        };
        if self.cluster.consensus != old.cluster.consensus {
            errors.push(FieldError::new(
                "spec.cluster.consensus",
                "is immutable: the crdt and raft states are incompatible",
            ));
        }
        self.kubo
            .storage
            .validate_update(&old.kubo.storage, "spec.kubo.storage", &mut errors);
        self.cluster.storage.validate_update(
            &old.cluster.storage,
            "spec.cluster.storage",
            &mut errors,
        );
        ValidationErrors::check(errors)
    }
}
