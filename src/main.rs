use std::process::ExitCode;

use clap::Parser;
use ipfs_kit_operator::cli::{Cli, Command, LocalCommand};
use ipfs_kit_operator::telemetry;

/// Exit code of a subcommand whose implementation has not landed yet.
const EXIT_NOT_IMPLEMENTED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = telemetry::init(cli.log_format, cli.log_filter.as_deref()) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let (command, plan) = match &cli.command {
        Command::Crd => return print_crds(),
        Command::Run(_) => (
            "run",
            "watch IpfsCluster objects and manage their StatefulSets, Services, Secrets and \
             status, probing and healing the peers",
        ),
        Command::Dashboard(_) => (
            "dashboard",
            "serve the dashboard API, Prometheus metrics and web page from reconciled status",
        ),
        Command::Local { command } => match command {
            LocalCommand::Up(_) => (
                "local up",
                "start the declared peers as real `ipfs` and `ipfs-cluster-service` processes \
                 on this host, join them into one cluster, keep them healthy and serve the \
                 dashboard",
            ),
            LocalCommand::Down(_) => (
                "local down",
                "stop the daemons this tool started for the cluster, leaving data in place",
            ),
            LocalCommand::Status(_) => (
                "local status",
                "print the peers of the local clusters with their health",
            ),
        },
    };
    eprintln!("`ipfs-kit-operator {command}` is not implemented yet. When it is, it will {plan}.");
    ExitCode::from(EXIT_NOT_IMPLEMENTED)
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
