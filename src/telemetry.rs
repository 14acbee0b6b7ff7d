//! Logging set-up: tracing with a `RUST_LOG`-style filter, human or JSON output.

use clap::ValueEnum;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// How log lines are written to standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Errors while setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {source} (example: \"info,ipfs_kit_operator=debug\")")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("logging was already initialised")]
    AlreadyInitialised,
}

/// The filter used when neither `--log-filter` nor `RUST_LOG` is given.
pub const DEFAULT_FILTER: &str = "info";

/// Builds the filter from an explicit directive string (flag or environment), or the default.
pub fn filter(directives: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let directives = directives.unwrap_or(DEFAULT_FILTER);
    EnvFilter::try_new(directives).map_err(|source| TelemetryError::Filter {
        filter: directives.to_string(),
        source,
    })
}

/// Installs the global subscriber. Logs go to standard error so standard output stays clean for
/// command output (for example `crd` YAML or `local status --output json`).
pub fn init(format: LogFormat, directives: Option<&str>) -> Result<(), TelemetryError> {
    let filter = filter(directives)?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Human => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_target(false))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInitialised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_is_info() {
        assert_eq!(filter(None).expect("default parses").to_string(), "info");
    }

    #[test]
    fn bad_filter_names_the_value() {
        let err = filter(Some("info,[")).expect_err("must be refused");
        assert!(err.to_string().contains("info,["), "{err}");
    }
}
