//! Command-line interface: the subcommands and their flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::telemetry::LogFormat;

/// Runs IPFS (Kubo) and IPFS Cluster peers from a declared `IpfsCluster`, keeps them healthy and
/// serves a dashboard about them: in Kubernetes (`run`, `dashboard`) or on this host (`local`).
#[derive(Debug, Parser)]
#[command(name = "ipfs-kit-operator", version, propagate_version = true)]
pub struct Cli {
    /// Log line format on standard error.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "IPFS_KIT_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// Log filter in `RUST_LOG` syntax, e.g. `info` or `warn,ipfs_kit_operator=debug`.
    #[arg(long, global = true, env = "RUST_LOG", value_name = "FILTER")]
    pub log_filter: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller inside a Kubernetes cluster: watch IpfsCluster and IpfsPin objects,
    /// manage their StatefulSets, probe and heal the peers, write status.
    Run(RunArgs),
    /// Serve the dashboard API (status, metrics, actions) alone, from reconciled status (the sidecar
    /// container next to the controller).
    Dashboard(DashboardArgs),
    /// Serve Kubo's Prometheus metrics, and nothing else of its RPC API, on a port of their own
    /// (the `kubo-metrics` container of each peer pod).
    KuboMetrics(KuboMetricsArgs),
    /// Supervise real Kubo and ipfs-cluster-service processes on this host, no Kubernetes needed.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// Print the CustomResourceDefinitions (IpfsCluster, IpfsPin) as YAML, ready for
    /// `kubectl apply -f -`.
    Crd,
}

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "IPFS_KIT_NAMESPACE")]
    pub namespace: Option<String>,

    /// Address of the metrics and health endpoint of the controller.
    #[arg(long, default_value = "0.0.0.0:9090", env = "IPFS_KIT_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,

    /// The operator's own image (the chart and `deploy/` set it): each peer pod runs it as a
    /// `kubo-metrics` container serving Kubo's metrics (`spec.metrics.kubo`). Unset: Kubo's
    /// metrics are not exposed.
    #[arg(long, env = "IPFS_KIT_OPERATOR_IMAGE", value_name = "IMAGE")]
    pub kubo_metrics_image: Option<String>,

    /// IpfsClusters reconciled at the same time, at most.
    #[arg(long, default_value_t = 8, env = "IPFS_KIT_CONCURRENCY")]
    pub concurrency: u16,

    /// Name of this instance in Events and in the leader Lease (default: `$POD_NAME`).
    #[arg(long, env = "POD_NAME", default_value = "ipfs-kit-operator")]
    pub instance: String,

    /// Namespace of the leader-election Lease (default: `$POD_NAMESPACE`). Unset: no leader
    /// election (run a single replica).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(long, default_value = "ipfs-kit-operator")]
    pub lease_name: String,

    /// Run without leader election even when a Lease namespace is known (run a single replica).
    #[arg(long, env = "IPFS_KIT_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,

    /// Base URL at which the other replicas' dashboards reach this instance's metrics server (for
    /// the history it keeps while it leads), written on the Lease. Default:
    /// `http://$POD_IP:<metrics port>`.
    #[arg(long, env = "IPFS_KIT_ADVERTISE_URL", value_name = "URL")]
    pub advertise_url: Option<String>,

    /// This pod's IP (the downward API's `status.podIP`), for the default --advertise-url.
    #[arg(long, env = "POD_IP", hide = true)]
    pub pod_ip: Option<String>,

    /// Namespace the operator's pods run in (default: `$POD_NAMESPACE`): the peers'
    /// NetworkPolicy admits to the Kubo RPC and IPFS Cluster APIs the pods of this namespace
    /// labelled `ipfskit.io/api-access: operator`. Unset (run outside the cluster): only such
    /// pods of each IpfsCluster's own namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub operator_namespace: Option<String>,

    /// DNS domain of the Kubernetes cluster, in the peers' names
    /// (`<pod>.<cluster>-peers.<ns>.svc.<domain>`). Default: read from the search list of
    /// `/etc/resolv.conf` (the entry after `svc.`), else `cluster.local`.
    #[arg(
        long,
        env = "IPFS_KIT_CLUSTER_DOMAIN",
        value_name = "DOMAIN",
        value_parser = crate::runtime::kube::dns::parse_cluster_domain
    )]
    pub cluster_domain: Option<String>,

    #[command(flatten)]
    pub alerts: AlertArgs,
}

/// Alerts the operator evaluates itself and posts without Prometheus.
#[derive(Clone, Debug, Args)]
pub struct AlertArgs {
    /// POST firing and resolved alerts to this URL as Alertmanager's webhook JSON (http or
    /// https; user and password in the URL are sent as basic auth; the URL is never logged).
    /// In Kubernetes only the leader posts.
    #[arg(
        long,
        env = "IPFS_KIT_ALERT_WEBHOOK",
        value_name = "URL",
        hide_env_values = true
    )]
    pub alert_webhook: Option<String>,

    /// Overrides the `for` duration of an alert: `NAME=DURATION` (`IpfsKitPeerDown=30s`) or
    /// `all=DURATION`; repeatable. For tests.
    #[arg(long, value_name = "NAME=DURATION", hide = true)]
    pub alert_for: Vec<String>,
}

impl AlertArgs {
    /// The checked flags; the error names the flag at fault.
    pub fn options(&self) -> Result<crate::alerts::AlertOptions, String> {
        crate::alerts::AlertOptions::from_flags(self.alert_webhook.as_deref(), &self.alert_for)
    }
}

#[derive(Debug, Args)]
pub struct KuboMetricsArgs {
    /// Address to serve `GET /metrics` on.
    #[arg(long, default_value = "0.0.0.0:9401")]
    pub listen: SocketAddr,

    /// Base URL of Kubo's RPC API (only its `/debug/metrics/prometheus` is read).
    #[arg(long, default_value = "http://127.0.0.1:5001")]
    pub kubo: String,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address the dashboard listens on.
    #[arg(
        long,
        default_value = "127.0.0.1:8080",
        env = "IPFS_KIT_DASHBOARD_ADDR"
    )]
    pub listen: SocketAddr,

    /// File holding the bearer token that every mutating request must present (at least 16
    /// characters). Without it the dashboard refuses every change.
    #[arg(long, env = "IPFS_KIT_DASHBOARD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Require the token for reads too (default: reads are open, changes need the token).
    #[arg(long, env = "IPFS_KIT_DASHBOARD_AUTH_READS")]
    pub auth_reads: bool,

    /// Serve only the IpfsClusters of this namespace (default: all namespaces).
    #[arg(long, env = "IPFS_KIT_NAMESPACE")]
    pub namespace: Option<String>,

    /// Also accept Kubernetes bearer tokens (e.g. a client's ServiceAccount token): checked with
    /// a TokenReview, then allowed what RBAC allows on ipfsclusters (`patch` to act, `list` to
    /// read with --auth-reads). Needs `create` on tokenreviews and subjectaccessreviews.
    #[arg(long, env = "IPFS_KIT_DASHBOARD_KUBE_AUTH")]
    pub kube_auth: bool,

    #[command(flatten)]
    pub leader: LeaderArgs,
}

/// Where history older than the operator keeps is read.
#[derive(Debug, Args)]
pub struct PrometheusArg {
    /// A Prometheus that scrapes the operator (e.g. `http://prometheus.monitoring:9090`): history
    /// ranges older than the recorded samples (`?since=`) are read from it.
    #[arg(
        long,
        env = "IPFS_KIT_PROMETHEUS_URL",
        value_name = "URL",
        value_parser = crate::history::prometheus::parse_url
    )]
    pub prometheus_url: Option<String>,
}

/// Where the sidecar reads the history: the leader controller's metrics server.
#[derive(Debug, Args)]
pub struct LeaderArgs {
    /// Base URL of this pod's own controller's metrics server (read when it leads).
    #[arg(
        long,
        default_value = "http://127.0.0.1:9090",
        env = "IPFS_KIT_CONTROLLER_URL",
        value_name = "URL"
    )]
    pub controller_url: String,

    /// Namespace of the controllers' leader-election Lease (default: `$POD_NAMESPACE`). Unset:
    /// the own controller is read (a single replica).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Name of the controllers' leader-election Lease.
    #[arg(long, default_value = "ipfs-kit-operator")]
    pub lease_name: String,

    /// This pod's name: the Lease holder identity of its own controller (default: `$POD_NAME`).
    #[arg(long, env = "POD_NAME", default_value = "ipfs-kit-operator")]
    pub instance: String,

    #[command(flatten)]
    pub prometheus: PrometheusArg,
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Bring up (or reconcile) the IpfsCluster declared in a YAML file as local daemons.
    Up(LocalUpArgs),
    /// Stop every daemon this tool started for a cluster; data stays unless `--purge`.
    Down(LocalDownArgs),
    /// Show the peers of a local cluster: pids, ports, versions, connectivity, pins, health.
    Status(LocalStatusArgs),
}

#[derive(Debug, Args)]
pub struct StateDirArg {
    /// Where cluster state lives (default: `$XDG_DATA_HOME/ipfs-kit`, i.e. `~/.local/share/ipfs-kit`).
    #[arg(long, env = "IPFS_KIT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LocalUpArgs {
    /// The IpfsCluster YAML to run (the same kind as in Kubernetes).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,

    #[command(flatten)]
    pub state: StateDirArg,

    /// Run the daemons in a network namespace with only loopback (needs root or unprivileged
    /// user namespaces); the dashboard stays reachable from the host.
    #[arg(long)]
    pub isolated: bool,

    /// Address the in-process dashboard listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub dashboard_listen: SocketAddr,

    /// The Kubo executable (default: `ipfs` on the PATH).
    #[arg(long, env = "IPFS_KIT_IPFS_BIN", value_name = "PATH")]
    pub ipfs_bin: Option<PathBuf>,

    /// The IPFS Cluster daemon executable (default: `ipfs-cluster-service` on the PATH).
    #[arg(long, env = "IPFS_KIT_CLUSTER_BIN", value_name = "PATH")]
    pub cluster_bin: Option<PathBuf>,

    /// Bring the peers up (or adopt them), then return and leave them running instead of
    /// supervising in the foreground; a later `local up` adopts them.
    #[arg(long)]
    pub detach: bool,

    #[command(flatten)]
    pub prometheus: PrometheusArg,

    #[command(flatten)]
    pub alerts: AlertArgs,
}

#[derive(Debug, Args)]
pub struct LocalDownArgs {
    /// Name of the local cluster (`metadata.name` of its IpfsCluster).
    pub name: String,

    #[command(flatten)]
    pub state: StateDirArg,

    /// Also delete the cluster's data (repos, keys, logs).
    #[arg(long)]
    pub purge: bool,

    /// Do not ask for confirmation before `--purge`.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct LocalStatusArgs {
    /// Name of the local cluster (default: every cluster in the state directory).
    pub name: Option<String>,

    #[command(flatten)]
    pub state: StateDirArg,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A readable table.
    #[default]
    Table,
    /// JSON, for scripts.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn local_up_requires_a_file() {
        let err = Cli::try_parse_from(["ipfs-kit-operator", "local", "up"]).expect_err("no -f");
        assert!(err.to_string().contains("--file"), "{err}");
    }

    #[test]
    fn the_alert_webhook_is_checked_at_start_and_named_in_the_error() {
        let cli = Cli::try_parse_from([
            "ipfs-kit-operator",
            "local",
            "up",
            "-f",
            "c.yaml",
            "--alert-webhook",
            "ftp://user:token@example/x",
            "--alert-for",
            "IpfsKitPeerDown=2s",
        ])
        .expect("parses");
        let Command::Local {
            command: LocalCommand::Up(args),
        } = cli.command
        else {
            panic!("local up");
        };
        let err = args.alerts.options().expect_err("ftp");
        assert!(
            err.starts_with("--alert-webhook") && !err.contains("token"),
            "{err}"
        );
        let ok = AlertArgs {
            alert_webhook: Some("http://127.0.0.1:9/hook".into()),
            alert_for: args.alerts.alert_for,
        }
        .options()
        .expect("valid");
        assert_eq!(
            ok.timings.of(crate::alerts::AlertName::PeerDown),
            std::time::Duration::from_secs(2)
        );
        let run = Cli::try_parse_from(["ipfs-kit-operator", "run", "--alert-webhook", ""])
            .expect("parses");
        let Command::Run(run) = run.command else {
            panic!("run");
        };
        assert!(
            run.alerts
                .options()
                .expect("empty is unset")
                .webhook
                .is_none()
        );
    }

    #[test]
    fn global_log_format_parses_after_subcommand() {
        let cli = Cli::try_parse_from(["ipfs-kit-operator", "crd", "--log-format", "json"])
            .expect("parses");
        assert_eq!(cli.log_format, LogFormat::Json);
    }
}
