//! The gRPC server (ext_proc and the standard health service), the HTTP
//! metrics endpoint, and their graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use envoy_types::pb::envoy::service::ext_proc::v3::{ProcessingRequest, ProcessingResponse};
use futures_util::FutureExt as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use log::{debug, error, info, warn};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Status, Streaming};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::metrics::Metrics;
use crate::settings::{Settings, TaskStoreSetting};
use crate::shell::{Shared, StreamShell};
use crate::store::{MemoryStore, RedisStore, Store};

/// The ext_proc service: one `StreamShell` per gRPC stream.
struct Processor {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl ExternalProcessor for Processor {
    type ProcessStream = ReceiverStream<Result<ProcessingResponse, Status>>;

    async fn process(
        &self,
        request: tonic::Request<Streaming<ProcessingRequest>>,
    ) -> Result<tonic::Response<Self::ProcessStream>, Status> {
        let inbound = request.into_inner();
        // Replies are one per message, in order: a small buffer suffices.
        let (replies, outbound) = mpsc::channel(4);
        tokio::spawn(run_stream(Arc::clone(&self.shared), inbound, replies));
        Ok(tonic::Response::new(ReceiverStream::new(outbound)))
    }
}

type Replies = mpsc::Sender<Result<ProcessingResponse, Status>>;

/// Answers the messages of one stream in order until Envoy closes it (or
/// the reply side goes away), then counts the request's outcome if it was
/// never decided.
async fn run_stream(
    shared: Arc<Shared>,
    mut inbound: Streaming<ProcessingRequest>,
    replies: Replies,
) {
    let metrics = Arc::clone(&shared.metrics);
    metrics.stream_opened();
    let mut shell = StreamShell::new(shared);
    // After the shell failed on a message, every later one is answered
    // unchanged: its state may be inconsistent.
    let mut broken = false;
    loop {
        let message = tokio::select! {
            message = inbound.message() => message,
            () = replies.closed() => break,
        };
        let request = match message {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(status) => {
                // Envoy resets the stream when it is done with a request,
                // as often as it half-closes it: not an error.
                debug!(
                    "ext_proc stream reset by the data plane: {}",
                    status.message()
                );
                break;
            }
        };
        let started = Instant::now();
        let kind = StreamShell::kind(&request);
        let wants_reply = !request.observability_mode;
        let response = if broken {
            kind.filter(|_| wants_reply).map(StreamShell::unchanged)
        } else {
            match AssertUnwindSafe(shell.handle(request)).catch_unwind().await {
                Ok(reply) => reply.response,
                Err(_) => {
                    broken = true;
                    metrics.internal_error();
                    error!("internal error while handling an ext_proc message; answered with no mutation, the rest of this stream passes unchanged");
                    kind.filter(|_| wants_reply).map(StreamShell::unchanged)
                }
            }
        };
        if let Some(kind) = kind {
            metrics.observe(kind, started.elapsed());
        }
        if let Some(response) = response {
            if replies.send(Ok(response)).await.is_err() {
                break;
            }
        }
    }
    if !broken && std::panic::catch_unwind(AssertUnwindSafe(|| shell.end())).is_err() {
        metrics.internal_error();
    }
    metrics.stream_closed();
}

/// A running server.
pub struct Running {
    grpc_addr: SocketAddr,
    metrics_addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: HealthReporter,
    shutdown: watch::Sender<bool>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    http: JoinHandle<()>,
}

impl Running {
    /// The bound gRPC address (useful with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Starts a graceful shutdown: the health service reports NOT_SERVING,
    /// the listeners close (new connections are refused), and existing
    /// connections are told to take no new streams (HTTP/2 GOAWAY) while
    /// their streams in flight run to the end.
    pub async fn shutdown(&self) {
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.health
            .set_not_serving::<ExternalProcessorServer<Processor>>()
            .await;
        let _ = self.shutdown.send(true);
    }

    /// Waits until both servers have stopped (after `shutdown`, once the
    /// streams in flight are over).
    pub async fn wait(self) -> Result<(), String> {
        let grpc = self.grpc.await;
        let _ = self.http.await;
        match grpc {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("gRPC server: {e}")),
            Err(e) => Err(format!("gRPC server task: {e}")),
        }
    }
}

/// Binds both listeners and starts serving. The error is one line.
pub async fn start(settings: Settings) -> Result<Running, String> {
    let metrics = Arc::new(Metrics::new());
    let config = settings.config.clone();
    let store = match &settings.task_store {
        TaskStoreSetting::Memory => Store::Memory(Arc::new(MemoryStore::new(
            config.task_capacity,
            config.task_ttl_secs,
        ))),
        TaskStoreSetting::Redis(redis) => Store::Redis(Arc::new(RedisStore::new(
            redis,
            config.task_ttl_secs,
            Arc::clone(&metrics),
        )?)),
    };
    let store_description = store.describe();
    let shared = Arc::new(Shared {
        config,
        store,
        metrics: Arc::clone(&metrics),
    });

    let grpc_listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", settings.listen))?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", settings.listen))?;
    let http_listener = TcpListener::bind(settings.metrics_listen)
        .await
        .map_err(|e| format!("--metrics-listen {}: {e}", settings.metrics_listen))?;
    let metrics_addr = http_listener
        .local_addr()
        .map_err(|e| format!("--metrics-listen {}: {e}", settings.metrics_listen))?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ExternalProcessorServer<Processor>>()
        .await;
    let (shutdown, shutdown_rx) = watch::channel(false);

    let processor = ExternalProcessorServer::new(Processor {
        shared: Arc::clone(&shared),
    });
    // Replies are small and each one holds a request: no Nagle delay. TCP
    // keepalive ends the streams of a data plane that vanished without
    // closing its connection.
    let incoming = TcpIncoming::from(grpc_listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(std::time::Duration::from_secs(60)));
    let mut grpc_shutdown = shutdown_rx.clone();
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(processor)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = grpc_shutdown.wait_for(|stop| *stop).await;
            }),
    );
    let http = tokio::spawn(serve_http(http_listener, Arc::clone(&metrics), shutdown_rx));

    info!(
        "a2a-affinity-ext-proc {} serving {} and grpc.health.v1.Health on {grpc_addr}, metrics on http://{metrics_addr}/metrics; task store {store_description}; config {}: {}; string kernel {}",
        env!("CARGO_PKG_VERSION"),
        <ExternalProcessorServer<Processor> as NamedService>::NAME,
        settings.config_source,
        shared.config,
        a2a_affinity_core::json::string_kernel(),
    );
    Ok(Running {
        grpc_addr,
        metrics_addr,
        metrics,
        health,
        shutdown,
        grpc,
        http,
    })
}

/// `/metrics` (Prometheus text) and `/healthz` over HTTP/1.1.
async fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather
                // than spin.
                warn!("metrics listener: accept failed ({e})");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&request, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!("metrics connection: {e}");
            }
        });
    }
}

fn respond(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let readable = matches!(*request.method(), Method::GET | Method::HEAD);
    let (status, content_type, body) = match (readable, request.uri().path()) {
        (true, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        (true, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
