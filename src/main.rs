use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ipfs_kit_operator::cli::{Cli, Command, LocalCommand, OutputFormat, StateDirArg};
use ipfs_kit_operator::runtime::local::{self, Binaries, DownOptions, LocalError, UpOptions};
use ipfs_kit_operator::telemetry;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = telemetry::init(cli.log_format, cli.log_filter.as_deref()) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    match &cli.command {
        Command::Crd => print_crds(),
        Command::Run(args) => run(args),
        Command::Dashboard(args) => dashboard(args),
        Command::KuboMetrics(args) => kubo_metrics(args),
        Command::Local { command } => local(command),
    }
}

/// `ipfs-kit-operator dashboard`: the sidecar, serving IpfsCluster status from the API server.
fn dashboard(args: &ipfs_kit_operator::cli::DashboardArgs) -> ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| format!("starting the async runtime: {e}"))
        .and_then(|rt| {
            rt.block_on(ipfs_kit_operator::dashboard::kube::serve_sidecar(
                args.listen,
                args.token_file.as_deref(),
                args.auth_reads,
                args.kube_auth,
                args.namespace.clone(),
                &args.leader,
            ))
            .map_err(|e| e.to_string())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// `ipfs-kit-operator kubo-metrics`: Kubo's metrics on a port of their own.
fn kubo_metrics(args: &ipfs_kit_operator::cli::KuboMetricsArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
        .and_then(|rt| {
            rt.block_on(ipfs_kit_operator::kubo_metrics::serve(
                args.listen,
                &args.kubo,
            ))
            .map_err(|e| e.to_string())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// `ipfs-kit-operator crd`: both CRDs on stdout, as one YAML stream.
fn print_crds() -> ExitCode {
    match ipfs_kit_operator::api::crds_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: rendering the CustomResourceDefinitions as YAML: {err}");
            ExitCode::from(1)
        }
    }
}

/// Grace period between SIGTERM and SIGKILL when stopping a daemon.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `ipfs-kit-operator local up|down|status`.
fn local(command: &LocalCommand) -> ExitCode {
    match run_local(command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

fn state_root(arg: &StateDirArg) -> Result<PathBuf, LocalError> {
    match &arg.state_dir {
        Some(dir) => Ok(dir.clone()),
        None => local::state::default_state_root(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, LocalError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| LocalError::system("starting the async runtime", e))
}

fn run_local(command: &LocalCommand) -> Result<ExitCode, LocalError> {
    match command {
        LocalCommand::Up(args) => {
            let alerts = args.alerts.options().map_err(LocalError::Alerts)?;
            let binaries = Binaries::resolve(args.ipfs_bin.clone(), args.cluster_bin.clone())?;
            // The dashboard listener is bound before the network namespace changes, so that it
            // stays reachable from the host; the namespace must be entered while this is the
            // only thread, before the runtime exists.
            let dashboard =
                std::net::TcpListener::bind(args.dashboard_listen).map_err(|source| {
                    LocalError::DashboardAddress {
                        addr: args.dashboard_listen,
                        source,
                    }
                })?;
            if args.isolated {
                local::isolate::enter_loopback_namespace()?;
            }
            let options = UpOptions {
                spec_file: args.file.clone(),
                state_root: state_root(&args.state)?,
                binaries,
                stop_grace: STOP_GRACE,
                dashboard: Some(dashboard),
                detach_after_start: args.detach,
                prometheus_url: args.prometheus.prometheus_url.clone(),
                alerts,
            };
            runtime()?.block_on(local::up(options))?;
            Ok(ExitCode::SUCCESS)
        }
        LocalCommand::Down(args) => {
            let options = DownOptions {
                name: args.name.clone(),
                state_root: state_root(&args.state)?,
                stop_grace: STOP_GRACE,
                purge: args.purge,
                yes: args.yes,
            };
            runtime()?.block_on(local::down(options))?;
            Ok(ExitCode::SUCCESS)
        }
        LocalCommand::Status(args) => {
            let root = state_root(&args.state)?;
            let all = runtime()?.block_on(local::status(&root, args.name.as_deref()))?;
            match args.output {
                OutputFormat::Json => {
                    let json = if args.name.is_some() && all.len() == 1 {
                        serde_json::to_string_pretty(&all[0])
                    } else {
                        serde_json::to_string_pretty(&all)
                    }
                    .map_err(|source| LocalError::Serialize {
                        what: "the status".into(),
                        source,
                    })?;
                    println!("{json}");
                }
                OutputFormat::Table => {
                    if all.is_empty() {
                        println!("no local clusters in {}", root.display());
                    }
                    for status in &all {
                        print!("{}", local::status::format_table(status));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `ipfs-kit-operator run`: the controller, with its metrics and health endpoint, until SIGTERM
/// or Ctrl-C.
fn run(args: &ipfs_kit_operator::cli::RunArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    // On a worker thread, not this one: the controller's streams wake with every reconcile that
    // ends, and a worker wakes without the thread hand-off a `block_on` thread needs.
    let args = args.clone();
    let operator =
        runtime.spawn(async move { ipfs_kit_operator::runtime::kube::run_operator(&args).await });
    match runtime.block_on(operator) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(err)) => {
            tracing::error!("{err}");
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("error: the controller stopped unexpectedly: {err}");
            ExitCode::from(1)
        }
    }
}
