//! Process-wide `tracing` set-up: text or JSON, filtered by `SKYBRIDGE_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

/// Installs the global subscriber.
pub(crate) fn init(format: Format) {
    let filter = EnvFilter::try_from_env("SKYBRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        Format::Text => builder.init(),
        Format::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
}
