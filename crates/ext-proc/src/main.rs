//! `a2a-affinity-ext-proc`: flags, logging, signals; the server itself is
//! the library's.

use std::process::ExitCode;

use a2a_affinity_ext_proc::settings::{log_level, one_line};
use a2a_affinity_ext_proc::{logger, start, Flags, Settings};
use clap::Parser;
use log::{error, info, warn};
use tokio::signal::unix::{signal, Signal, SignalKind};

fn main() -> ExitCode {
    let flags = Flags::parse();
    // Configuration errors are printed as one line and end the process
    // before anything is bound: a deployment with a bad file fails at once.
    let settings = match log_level(&flags.log_level)
        .and_then(|level| Settings::from_flags(&flags).map(|s| (level, s)))
    {
        Ok((level, settings)) => {
            logger::init(level);
            settings
        }
        Err(e) => {
            eprintln!("a2a-affinity-ext-proc: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("a2a-affinity-ext-proc: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> ExitCode {
    let grace = settings.shutdown_grace;
    // Handlers first: a SIGTERM that arrives once the start line is out must
    // drain, not kill the process.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            error!("cannot install signal handlers ({e})");
            return ExitCode::FAILURE;
        }
    };
    let running = match start(settings).await {
        Ok(running) => running,
        Err(e) => {
            error!("{}", one_line(&e));
            return ExitCode::FAILURE;
        }
    };
    let signal = signals.wait().await;
    info!(
        "{signal}: refusing new streams, draining {} in flight (up to {} s)",
        running.metrics().active_streams(),
        grace.as_secs()
    );
    running.shutdown().await;
    match tokio::time::timeout(grace, running.wait()).await {
        Ok(Ok(())) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            error!("{e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            // Envoy fails open on the streams cut here.
            warn!("streams still open after {} s; exiting", grace.as_secs());
            ExitCode::SUCCESS
        }
    }
}

/// SIGTERM (Kubernetes stopping the pod) and SIGINT (Ctrl-C).
struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
