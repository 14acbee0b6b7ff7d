//! `IpfsCluster`: a set of peers, each a Kubo daemon plus an IPFS Cluster daemon, kept healthy.
//! Here the spec and its limits; [`status`] the observed state the operator writes; `validate`
//! the spec checks for specs that do not pass through the API server (local mode).

use std::time::Duration;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{ResourceRequirements, StorageSpec, annotations_schema};
use super::validation::{
    DURATION_PATTERN, FieldError, IMAGE_DIGEST_MESSAGE, IMAGE_DIGEST_RULE, NO_DOWNGRADE_MESSAGE,
    PINNED_IMAGE_MESSAGE, PINNED_IMAGE_RULE, STORAGE_SIZE_PATTERN, no_downgrade_rule,
    parse_duration, parse_storage_size,
};

pub mod alert;
mod daemon_metrics;
mod kubo_config;
mod pods;
pub mod status;
mod validate;

pub use alert::{AlertSeverity, AlertState, ClusterAlert, RESOLVED_ALERTS_LIMIT};
pub use daemon_metrics::{CLUSTER_METRICS_PORT, KUBO_METRICS_PORT, MetricsSpec};
pub use kubo_config::{
    KuboValueType, MANAGED_KUBO_CONFIG, MANAGED_KUBO_KEYS, ManagedKuboKey, check_kubo_config,
};
pub use pods::{
    DEFAULT_POD_ID, DEFAULT_SWARM_KEY_KEY, PodIds, PodSecurityContextSpec, SwarmKeyReference,
    check_swarm_key, swarm_key_text,
};
pub use validate::check_cluster_name;

pub use status::{
    ClusterPhase, HealingAction, HealingRecord, HealingResult, IpfsClusterStatus, PeerState,
    PeerStatus,
};

/// Default Kubo image: pinned, never `latest`.
pub const DEFAULT_KUBO_IMAGE: &str = "ipfs/kubo:v0.42.0";
/// Default IPFS Cluster image: pinned, never `latest`.
pub const DEFAULT_CLUSTER_IMAGE: &str = "ipfs/ipfs-cluster:v1.1.6";
/// Default number of peers.
pub const DEFAULT_REPLICAS: i32 = 3;
/// Largest number of peers one IpfsCluster may have.
pub const MAX_REPLICAS: i32 = 100;
/// Default volume size of each Kubo repository.
pub const DEFAULT_KUBO_STORAGE: &str = "10Gi";
/// Default volume size of each IPFS Cluster state directory.
pub const DEFAULT_CLUSTER_STORAGE: &str = "1Gi";
/// Kubo's libp2p swarm port: the only Kubo port that may be exposed outside the cluster.
pub const KUBO_SWARM_PORT: i32 = 4001;
/// IPFS Cluster's libp2p cluster-swarm port: the only cluster port that may be exposed.
pub const CLUSTER_SWARM_PORT: i32 = 9096;
/// Kubo RPC API port: full control of the node, never exposed.
pub const KUBO_RPC_PORT: i32 = 5001;
/// IPFS Cluster REST API port: full control of the cluster, never exposed.
pub const CLUSTER_REST_PORT: i32 = 9094;
/// IPFS Cluster IPFS-proxy API port: the Kubo RPC through the cluster, never exposed.
pub const CLUSTER_PROXY_PORT: i32 = 9095;
/// Most recent healing actions kept in `status.healing` (older ones are dropped).
pub const HEALING_HISTORY_LIMIT: usize = 20;
/// Longest name of an IpfsCluster. The StatefulSet has the cluster's name, and the
/// `controller-revision-hash` label Kubernetes puts on its pods is `<statefulset>-<hash of up to 10
/// characters>`, a label value of at most 63 characters: 63 - 11 = 52. Every other derived name is
/// shorter: the longest Services (DNS-1035 labels, at most 63), a peer's `<name>-<ordinal>-p2p`
/// (ordinals up to 99) and `<name>-gateway`, have 59 and 60 characters, the pods
/// `<name>-<ordinal>` (hostnames, at most 63) at most 55.
pub const MAX_CLUSTER_NAME_LENGTH: usize = 52;
/// CEL rule at the root of an IpfsCluster on `metadata.name`: a DNS-1035 label (Service names
/// derive from it) of at most [`MAX_CLUSTER_NAME_LENGTH`] characters. Checked on creation only
/// (`oldSelf` is set on updates; the name never changes), so that an object created before the
/// rule can still be updated and deleted.
pub const CLUSTER_NAME_RULE: &str = "oldSelf.hasValue() || (self.metadata.name.size() <= 52 && \
     self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))";
/// Message of [`CLUSTER_NAME_RULE`].
pub const CLUSTER_NAME_MESSAGE: &str = "metadata.name must be at most 52 characters and start \
     with a letter (then lower-case letters, digits and `-`, ending in a letter or digit): the \
     operator derives from it the StatefulSet's pod label `controller-revision-hash: \
     <name>-<10-character hash>` (at most 63 characters) and Services such as `<name>-gateway` \
     and `<name>-<ordinal>-p2p` (DNS-1035 labels)";

/// An IPFS Cluster: `replicas` peers, each running Kubo (the IPFS daemon) and IPFS Cluster (pin
/// orchestration), with their storage, exposure and health policy. The operator creates and
/// updates the StatefulSet, Services and Secret that run it, probes every peer and heals the
/// unhealthy ones, and reports what it sees in `status`.
// Clippy reads the repeated `printcolumn(type_ = ...)` keys as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "ipfskit.io",
    version = "v1alpha1",
    kind = "IpfsCluster",
    plural = "ipfsclusters",
    namespaced,
    status = "IpfsClusterStatus",
    shortname = "ipfsc",
    category = "ipfs",
    derive = "PartialEq",
    validation = Rule::new(CLUSTER_NAME_RULE)
        .message(CLUSTER_NAME_MESSAGE)
        .optional_old_self(true),
    doc = "An IPFS Cluster of Kubo + IPFS Cluster peers, run and kept healthy by ipfs-kit-operator.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired number of peers"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Peers whose Kubo and IPFS Cluster daemons answer"
    ),
    printcolumn(
        name = "Health",
        type_ = "integer",
        json_path = ".status.healthScore",
        description = "Health score of the cluster, 0-100"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.cluster.consensus != 'raft' || (self.replicas >= 3 && self.replicas % 2 == 1)")
        .message("spec.replicas must be an odd number of at least 3 with spec.cluster.consensus: raft (raft needs a majority of peers up: 1 peer has no fault tolerance and an even count tolerates no more failures than one fewer peer)")
        .field_path(".replicas"),
    validation = Rule::new("!has(self.cluster.replicationFactorMin) || self.cluster.replicationFactorMin <= self.replicas")
        .message("spec.cluster.replicationFactorMin must not exceed spec.replicas: a pin cannot be held by more peers than exist")
        .field_path(".cluster.replicationFactorMin"),
    validation = Rule::new("!has(self.cluster.replicationFactorMax) || self.cluster.replicationFactorMax <= self.replicas")
        .message("spec.cluster.replicationFactorMax must not exceed spec.replicas: a pin cannot be held by more peers than exist")
        .field_path(".cluster.replicationFactorMax"),
)]
pub struct IpfsClusterSpec {
    /// Number of peers (each one Kubo plus one IPFS Cluster daemon). 1 to 100, default 3. With
    /// raft consensus it must be odd and at least 3. `kubectl scale` changes it.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = MAX_REPLICAS))]
    pub replicas: i32,

    /// The Kubo (IPFS) daemon of every peer. All fields have defaults.
    #[serde(default)]
    pub kubo: KuboSpec,

    /// The IPFS Cluster daemon of every peer. All fields have defaults.
    #[serde(default)]
    pub cluster: ClusterSpec,

    /// How often and how the peers are probed, and how unhealthy peers are healed. All fields
    /// have defaults.
    #[serde(default)]
    pub health: HealthSpec,

    /// What is reachable from outside the cluster. By default nothing is: the peer-to-peer ports
    /// stay internal and the gateway is off. The APIs (Kubo RPC 5001, IPFS Cluster REST 9094 and
    /// proxy 9095) are never exposed.
    #[serde(default)]
    pub networking: NetworkingSpec,

    /// Secret holding a libp2p swarm key (Kubo's `swarm.key` file: the lines
    /// `/key/swarm/psk/1.0.0/`, `/base16/` and 64 hex digits). Set: every Kubo of the cluster
    /// joins only the private network of that key and refuses to start without it; Kubo then
    /// speaks TCP only (QUIC, WebTransport and WebRTC cannot carry the key). Unset (default):
    /// the public network. The key reaches only the `kubo-config` init container, as a Secret
    /// volume, and is copied into each repository with mode 0400; it is removed from the
    /// repositories when this field is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_key_ref: Option<SwarmKeyReference>,

    /// The user and groups of the peer pods: `runAsUser`, `runAsGroup` and `fsGroup`, each 1000
    /// by default (the official images' `ipfs` user), or `omitIds: true` to leave them to the
    /// platform (OpenShift's restricted SCC assigns them). The pods always run non-root, without
    /// privilege escalation or capabilities, under the runtime's default seccomp profile.
    #[serde(default)]
    pub pod_security_context: PodSecurityContextSpec,

    /// The daemons' own Prometheus metrics in the peer pods: Kubo's (default on) and IPFS
    /// Cluster's (default off). All fields have defaults.
    #[serde(default)]
    pub metrics: MetricsSpec,

    /// Stop reconciling and healing this cluster: running peers keep running untouched, status
    /// phase becomes Paused. Default false.
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    DEFAULT_REPLICAS
}

impl Default for IpfsClusterSpec {
    fn default() -> Self {
        Self {
            replicas: DEFAULT_REPLICAS,
            kubo: KuboSpec::default(),
            cluster: ClusterSpec::default(),
            health: HealthSpec::default(),
            networking: NetworkingSpec::default(),
            swarm_key_ref: None,
            pod_security_context: PodSecurityContextSpec::default(),
            metrics: MetricsSpec::default(),
            paused: false,
        }
    }
}

/// The Kubo (IPFS) daemon of every peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.profiles.filter(p, p in ['flatfs', 'pebbleds']).size() <= 1")
        .message("spec.kubo.profiles may name at most one datastore profile (flatfs or pebbleds)")
        .field_path(".profiles"),
    validation = Rule::new(storage_max_rule())
        .message(STORAGE_MAX_MESSAGE)
        .field_path(".storageMax"),
)]
pub struct KuboSpec {
    /// Container image of Kubo, pinned to a version tag or digest (never `latest`). Default
    /// `ipfs/kubo:v0.42.0`. A change rolls the peers one at a time, each healthy before the
    /// next. A lower `vX.Y.Z` tag than the current one is refused (Kubo repositories migrate
    /// forward only); digests and other tags are not compared. In local mode the `ipfs` binary
    /// on the PATH is used instead.
    #[serde(default = "default_kubo_image")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(
        validation = Rule::new(PINNED_IMAGE_RULE).message(PINNED_IMAGE_MESSAGE),
        validation = Rule::new(IMAGE_DIGEST_RULE).message(IMAGE_DIGEST_MESSAGE),
        validation = Rule::new(no_downgrade_rule())
            .message(Message::Expression(NO_DOWNGRADE_MESSAGE.into()))
            .reason(Reason::FieldValueForbidden),
    )]
    pub image: String,

    /// CPU and memory requests and limits of the Kubo container. Unset: none (best effort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Kubo configuration profiles applied when a repository is created, in order (`ipfs init
    /// --profile`). One of: server, local-discovery, lowpower, randomports, test, flatfs,
    /// pebbleds, announce-on, announce-off. At most one datastore profile (flatfs, pebbleds).
    /// Default `[server]` (no local network discovery, suitable for data centres).
    #[serde(default = "default_kubo_profiles")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub profiles: Vec<KuboProfile>,

    /// Kubo configuration overrides, merged over the configuration the operator renders on every
    /// start (`ipfs config replace`), written as in Kubo's config file, e.g.
    /// `{"Swarm": {"ConnMgr": {"HighWater": 200}}}`. Keys the operator manages are refused:
    /// `Identity`, `Addresses.API`, `Addresses.Gateway`, `Datastore.Spec`, `Datastore.StorageMax`
    /// (see `storageMax`) and `Bootstrap`.
    /// `Peering.Peers` may add peers: the cluster's own peers are kept in Kubo's peering besides
    /// them. `Swarm.AddrFilters` and `Addresses.NoAnnounce`, which the start script clears (pod
    /// addresses are private), may be set back here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "kubo_config::kubo_config_schema")]
    pub config: Option<Map<String, Value>>,

    /// Volume holding each peer's Kubo repository (blocks, datastore, keys). Default size 10Gi
    /// in the default StorageClass. The size may grow but never shrink; the class is immutable.
    #[serde(default = "default_kubo_storage")]
    pub storage: StorageSpec,

    /// Most the Kubo repository may hold (Kubo's `Datastore.StorageMax`), a quantity like
    /// `storage.size` (e.g. `9Gi`), at most `storage.size`. Unset: 90 % of `storage.size`,
    /// following it when the volume grows. Garbage collection is on: at most once per
    /// `Datastore.GCPeriod` (Kubo's default 1h; `config` may change it, `0` turns it off) the
    /// operator has Kubo remove the blocks no pin holds once the repository passes
    /// `Datastore.StorageGCWatermark` (default 90 %) of this. Status and metrics show each peer's
    /// repository size against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = STORAGE_SIZE_PATTERN))]
    pub storage_max: Option<String>,
}

/// CEL rule on `spec.kubo`: `storageMax`, when set, is at least 1Mi and at most `storage.size`
/// (sizes in another syntax are left to their own pattern check).
pub fn storage_max_rule() -> String {
    let size = format!("r'{STORAGE_SIZE_PATTERN}'");
    format!(
        "!has(self.storageMax) || !has(self.storage) || !self.storageMax.matches({size}) || \
         !self.storage.size.matches({size}) || \
         (quantity(self.storageMax).compareTo(quantity('1Mi')) >= 0 && \
         quantity(self.storageMax).compareTo(quantity(self.storage.size)) <= 0)"
    )
}
/// Message of [`storage_max_rule`].
pub const STORAGE_MAX_MESSAGE: &str = "spec.kubo.storageMax must be at least 1Mi and at most \
     spec.kubo.storage.size: Kubo would count on room its volume does not have";
/// Share of `spec.kubo.storage.size` Kubo may fill when `spec.kubo.storageMax` is unset, in %.
pub const DEFAULT_STORAGE_MAX_PERCENT: u128 = 90;

fn default_kubo_image() -> String {
    DEFAULT_KUBO_IMAGE.to_owned()
}

fn default_kubo_profiles() -> Vec<KuboProfile> {
    vec![KuboProfile::Server]
}

fn default_kubo_storage() -> StorageSpec {
    StorageSpec::of_size(DEFAULT_KUBO_STORAGE)
}

impl Default for KuboSpec {
    fn default() -> Self {
        Self {
            image: default_kubo_image(),
            resources: None,
            profiles: default_kubo_profiles(),
            config: None,
            storage: default_kubo_storage(),
            storage_max: None,
        }
    }
}

impl KuboSpec {
    /// `Datastore.StorageMax` in bytes: `storageMax`, or 90 % of the volume.
    pub fn storage_max_bytes(&self) -> Result<u128, String> {
        match &self.storage_max {
            Some(max) => parse_storage_size(max),
            None => Ok(self.storage.size_bytes()? * DEFAULT_STORAGE_MAX_PERCENT / 100),
        }
    }
}

/// A Kubo configuration profile (`ipfs config profile apply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KuboProfile {
    Server,
    LocalDiscovery,
    Lowpower,
    Randomports,
    Test,
    Flatfs,
    Pebbleds,
    AnnounceOn,
    AnnounceOff,
}

impl KuboProfile {
    /// The name Kubo knows the profile by.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::LocalDiscovery => "local-discovery",
            Self::Lowpower => "lowpower",
            Self::Randomports => "randomports",
            Self::Test => "test",
            Self::Flatfs => "flatfs",
            Self::Pebbleds => "pebbleds",
            Self::AnnounceOn => "announce-on",
            Self::AnnounceOff => "announce-off",
        }
    }
}

/// The IPFS Cluster daemon of every peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.replicationFactorMin) || !has(self.replicationFactorMax) || self.replicationFactorMin <= self.replicationFactorMax")
    .message("spec.cluster.replicationFactorMin must not exceed spec.cluster.replicationFactorMax")
    .field_path(".replicationFactorMin"))]
pub struct ClusterSpec {
    /// Container image of IPFS Cluster (`ipfs-cluster-service`), pinned to a version tag or
    /// digest (never `latest`). Default `ipfs/ipfs-cluster:v1.1.6`.
    #[serde(default = "default_cluster_image")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(
        validation = Rule::new(PINNED_IMAGE_RULE).message(PINNED_IMAGE_MESSAGE),
        validation = Rule::new(IMAGE_DIGEST_RULE).message(IMAGE_DIGEST_MESSAGE),
    )]
    pub image: String,

    /// How the peers agree on the pin set: `crdt` (default; any number of peers, tolerates
    /// partitions) or `raft` (strong consistency; an odd number of at least 3 peers, a majority
    /// must be up). Fixed at creation: the two keep incompatible state.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.cluster.consensus is immutable: the crdt and raft states are incompatible (create a new IpfsCluster to switch)")
        .reason(Reason::FieldValueForbidden))]
    pub consensus: Consensus,

    /// Default minimum number of peers that must hold each pin (IPFS Cluster
    /// `replication_factor_min`), at most `replicas` and at most `replicationFactorMax`. Unset:
    /// every peer holds every pin. An IpfsPin may override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_REPLICAS))]
    pub replication_factor_min: Option<i32>,

    /// Default maximum number of peers that hold each pin (IPFS Cluster
    /// `replication_factor_max`), at most `replicas`. Unset: every peer holds every pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_REPLICAS))]
    pub replication_factor_max: Option<i32>,

    /// Secret holding the 32-byte hex cluster secret shared by all peers. Unset: the operator
    /// generates a Secret named `<cluster name>-cluster-secret` and keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyReference>,

    /// CPU and memory requests and limits of the IPFS Cluster container. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Volume holding each peer's IPFS Cluster state (identity, consensus data). Default size
    /// 1Gi in the default StorageClass. The size may grow but never shrink; the class is
    /// immutable.
    #[serde(default = "default_cluster_storage")]
    pub storage: StorageSpec,
}

fn default_cluster_image() -> String {
    DEFAULT_CLUSTER_IMAGE.to_owned()
}

fn default_cluster_storage() -> StorageSpec {
    StorageSpec::of_size(DEFAULT_CLUSTER_STORAGE)
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            image: default_cluster_image(),
            consensus: Consensus::default(),
            replication_factor_min: None,
            replication_factor_max: None,
            secret_ref: None,
            resources: None,
            storage: default_cluster_storage(),
        }
    }
}

/// The consensus component of IPFS Cluster (raft: restarts must protect a quorum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Consensus {
    #[default]
    Crdt,
    Raft,
}

impl Consensus {
    /// The name in the spec, and IPFS Cluster's (`init --consensus`, its config section).
    pub fn as_str(self) -> &'static str {
        match self {
            Consensus::Crdt => "crdt",
            Consensus::Raft => "raft",
        }
    }
}

/// A key of a Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Name of the Secret, in the namespace of the IpfsCluster.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Key within the Secret. Default `secret`.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_secret_key() -> String {
    "secret".to_owned()
}

/// Probing and healing policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(concat!(
        // Malformed durations are reported by the pattern; do not also fail converting them here.
        "!self.probeTimeout.matches('^([0-9]{1,6}(ms|s|m|h))+$') || ",
        "!self.probeInterval.matches('^([0-9]{1,6}(ms|s|m|h))+$') || ",
        "duration(self.probeTimeout) < duration(self.probeInterval)"
    ))
    .message("spec.health.probeTimeout must be shorter than spec.health.probeInterval, so that one probe ends before the next begins")
    .field_path(".probeTimeout"))]
pub struct HealthSpec {
    /// Time between two probes of a peer, as a duration like `10s`, `1m` or `1m30s` (units ms,
    /// s, m, h). Between 1s and 1h. Default `10s`. A daemon exit is noticed at once regardless.
    #[serde(default = "default_probe_interval")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]{1,6}(ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('1h'))")
        .message("spec.health.probeInterval must be between 1s and 1h"))]
    pub probe_interval: String,

    /// How long one probe (one API call to Kubo or IPFS Cluster) may take before it counts as
    /// failed, as a duration like `5s` or `500ms`. Shorter than `probeInterval`. Default `5s`.
    #[serde(default = "default_probe_timeout")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    pub probe_timeout: String,

    /// Consecutive failed probes after which a peer's daemon counts as unresponsive and is
    /// restarted (if `autoHeal`). 1 to 100, default 3.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,

    /// Heal unhealthy peers: reconnect a poorly connected peer to the others, restart an
    /// unresponsive or exited daemon (one peer at a time, never breaking raft quorum). When false
    /// the operator only reports. Default true.
    #[serde(default = "default_true")]
    pub auto_heal: bool,

    /// Restart budget per peer: at most this many restarts in any hour, with exponential backoff
    /// between them; a peer over budget is marked Unhealthy and left alone (no restart storms).
    /// 0 disables restarts. 0 to 60, default 5.
    #[serde(default = "default_max_restarts_per_hour")]
    #[schemars(range(min = 0, max = 60))]
    pub max_restarts_per_hour: i32,

    /// Fewest Kubo swarm connections a healthy peer has. Below it the peer is degraded and is
    /// reconnected to the other peers. The effective threshold is at most `replicas - 1` in a
    /// cluster with no other IPFS peers in reach. 0 to 1000, default 1.
    #[serde(default = "default_min_peer_connections")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_peer_connections: i32,
}

fn default_probe_interval() -> String {
    "10s".to_owned()
}

fn default_probe_timeout() -> String {
    "5s".to_owned()
}

fn default_failure_threshold() -> i32 {
    3
}

fn default_true() -> bool {
    true
}

fn default_max_restarts_per_hour() -> i32 {
    5
}

fn default_min_peer_connections() -> i32 {
    1
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self {
            probe_interval: default_probe_interval(),
            probe_timeout: default_probe_timeout(),
            failure_threshold: default_failure_threshold(),
            auto_heal: true,
            max_restarts_per_hour: default_max_restarts_per_hour(),
            min_peer_connections: default_min_peer_connections(),
        }
    }
}

impl HealthSpec {
    /// `probeInterval` as a duration.
    pub fn probe_interval(&self) -> Result<Duration, FieldError> {
        parse_duration(&self.probe_interval)
            .map_err(|e| FieldError::new("spec.health.probeInterval", e))
    }

    /// `probeTimeout` as a duration.
    pub fn probe_timeout(&self) -> Result<Duration, FieldError> {
        parse_duration(&self.probe_timeout)
            .map_err(|e| FieldError::new("spec.health.probeTimeout", e))
    }
}

/// Exposure outside the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkingSpec {
    /// The peer-to-peer ports: Kubo swarm (4001) and IPFS Cluster swarm (9096).
    #[serde(default)]
    pub p2p: P2pSpec,

    /// The read-only HTTP gateway of Kubo (container port 8080).
    #[serde(default)]
    pub gateway: GatewaySpec,
}

/// How a Service reaches outside the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Exposure {
    /// Cluster-internal only (a ClusterIP Service).
    #[default]
    #[serde(rename = "None")]
    Internal,
    /// A NodePort Service.
    NodePort,
    /// A LoadBalancer Service.
    LoadBalancer,
}

/// Exposure of the peer-to-peer ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct P2pSpec {
    /// `None` (default: only reachable inside the cluster), `NodePort` or `LoadBalancer`: each
    /// peer then gets a Service of its own of that type, `<cluster>-<ordinal>-p2p`, carrying the
    /// `ports` below to that peer alone, and announces the Service's address (the load
    /// balancer's, or its node's ExternalIP, else the node's InternalIP, with the node ports):
    /// Kubo in `Addresses.AppendAnnounce`, IPFS Cluster in its announce addresses. A peer whose
    /// Service has no address yet starts without it; when the address appears or changes, that
    /// peer alone restarts to announce it.
    #[serde(default)]
    pub exposure: Exposure,

    /// Which peer-to-peer ports each peer's Service carries: 4001 (Kubo swarm, over TCP and UDP
    /// for QUIC; TCP only with `swarmKeyRef`) and/or 9096 (IPFS Cluster swarm, TCP), no others.
    /// Default `[4001, 9096]`. The Kubo RPC (5001) and the IPFS Cluster REST API (9094) and
    /// proxy (9095) control the node and are never exposed.
    #[serde(default = "default_p2p_ports")]
    #[schemars(length(min = 1, max = 2), inner(range(min = 1, max = 65535)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("!self.exists(p, p == 5001 || p == 9094 || p == 9095)")
            .message("spec.networking.p2p.ports must not expose 5001 (Kubo RPC), 9094 (IPFS Cluster REST API) or 9095 (IPFS Cluster proxy): they control the node and stay cluster-internal")
            .reason(Reason::FieldValueForbidden),
        // Skipped when the rule above fires, so that one mistake gives one error.
        validation = Rule::new("self.exists(p, p == 5001 || p == 9094 || p == 9095) || self.all(p, p == 4001 || p == 9096)")
            .message("spec.networking.p2p.ports may list only 4001 (Kubo swarm) and 9096 (IPFS Cluster swarm)"),
    )]
    pub ports: Vec<i32>,

    /// Annotations for each peer's Service, e.g. for a cloud load balancer. At most 32.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(schema_with = "annotations_schema")]
    pub service_annotations: std::collections::BTreeMap<String, String>,
}

fn default_p2p_ports() -> Vec<i32> {
    vec![KUBO_SWARM_PORT, CLUSTER_SWARM_PORT]
}

impl Default for P2pSpec {
    fn default() -> Self {
        Self {
            exposure: Exposure::Internal,
            ports: default_p2p_ports(),
            service_annotations: Default::default(),
        }
    }
}

/// Kubo's read-only HTTP gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.enabled || self.exposure == 'None'")
    .message("spec.networking.gateway.exposure needs spec.networking.gateway.enabled: true")
    .field_path(".exposure"))]
pub struct GatewaySpec {
    /// Serve the read-only HTTP gateway (port 8080) through a Service. Default false.
    #[serde(default)]
    pub enabled: bool,

    /// `None` (default: a ClusterIP Service), `NodePort` or `LoadBalancer`. Needs `enabled`.
    #[serde(default)]
    pub exposure: Exposure,
}
