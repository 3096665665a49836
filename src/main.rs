//! Owns: the binary: logging set up from -v and RUST_LOG, then the CLI, then the exit code.
//! Must not: hold anything else; everything is in the library.

use clap::Parser;

fn main() {
    let cli = kcert::cli::Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "kcert=info",
        2 => "kcert=debug",
        _ => "kcert=trace,russh=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    let result = kcert::cli::run(cli);
    if let Err(e) = &result {
        eprintln!("kcert: error: {e}");
    }
    std::process::exit(kcert::error::exit_code(&result));
}
