//! Command line (DESIGN.md §5): `levee [run] [-c FILE] [--upgrade]`, `levee check [-c FILE]`,
//! `levee demo`.

use crate::config::{self, Diagnostic, Severity};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "levee",
    version,
    about = "Adaptive load-shedding reverse proxy"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Config file.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "conf/levee.toml"
    )]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve (the default).
    Run {
        /// Take the listening sockets over from a running levee (zero-downtime upgrade):
        /// start this, then send SIGQUIT to the old process.
        #[arg(short = 'u', long)]
        upgrade: bool,
    },
    /// Validate the config: print every error and warning, exit non-zero on any error.
    Check,
    /// Start simulated shop backends and levee in front of them (conf/demo.toml).
    Demo,
}

fn print_diags(file: &Path, diags: &[Diagnostic]) {
    for d in diags {
        eprintln!("{}:{d}", file.display());
    }
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_tracing();
    match cli.cmd.unwrap_or(Cmd::Run { upgrade: false }) {
        Cmd::Check => check(&cli.config),
        Cmd::Run { upgrade } => match load(&cli.config) {
            Some(cfg) => serve(cfg, upgrade),
            None => 1,
        },
        Cmd::Demo => demo(&cli.config),
    }
}

fn check(path: &Path) -> i32 {
    match config::load_file(path) {
        Ok(l) => {
            print_diags(path, &l.warnings);
            let warnings = l.warnings.len();
            println!(
                "{}: ok ({} routes, {} pools{})",
                path.display(),
                l.config.routes.len(),
                l.config.pools.len(),
                if warnings > 0 {
                    format!(", {warnings} warnings")
                } else {
                    String::new()
                }
            );
            0
        }
        Err(diags) => {
            print_diags(path, &diags);
            let errors = diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            eprintln!("{}: {errors} error(s); config refused", path.display());
            1
        }
    }
}

fn load(path: &Path) -> Option<config::Config> {
    match config::load_file(path) {
        Ok(l) => {
            print_diags(path, &l.warnings);
            Some(l.config)
        }
        Err(diags) => {
            print_diags(path, &diags);
            eprintln!("{}: config refused", path.display());
            None
        }
    }
}

fn serve(cfg: config::Config, upgrade: bool) -> i32 {
    match crate::server::run(cfg, upgrade) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("levee: {e}");
            1
        }
    }
}

fn demo(path: &Path) -> i32 {
    // The built-in demo config unless -c names another file.
    let loaded = if path == Path::new("conf/levee.toml") {
        config::load_str(crate::demo::DEMO_CONFIG, Path::new("."))
    } else {
        config::load_file(path)
    };
    let cfg = match loaded {
        Ok(l) => l.config,
        Err(diags) => {
            print_diags(Path::new("demo.toml"), &diags);
            return 1;
        }
    };
    // Backends run on their own runtime thread; levee's Pingora server takes the main thread.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async {
            let r = crate::demo::start_backends()
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send(r);
            std::future::pending::<()>().await
        });
    });
    match rx
        .recv()
        .unwrap_or_else(|_| Err("backend thread died".to_string()))
    {
        Ok(()) => {}
        Err(e) => {
            eprintln!("levee demo: cannot start backends: {e}");
            return 1;
        }
    }
    println!(
        "{}",
        crate::demo::banner(cfg.server.listen, cfg.server.admin_listen)
    );
    serve(cfg, false)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEVEE_LOG")
        // Pingora's cache logs each stale answer and lock timeout at warn, unbounded: levee
        // counts those (levee_cache_lookups_total, levee_cache_coalesced_total) and logs its
        // own lines rate-limited instead.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,pingora_proxy::proxy_cache=error")
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
