//! The status page and `/metrics`, over HTTP (`[web] listen`).
//!
//! - `/`: the lab on one page (every board, the claims waiting per class,
//!   the latest events), kept current by `/events`;
//! - `/events`: server-sent events: the whole lab first (`lab`), then what
//!   changed (`change`), pushed when the registry publishes a change;
//! - `/metrics`: Prometheus' text format (OpenMetrics);
//! - `/app.js`, `/app.css`: the page's script and style, compiled into
//!   labd (nothing is fetched from elsewhere).
//!
//! actix-web runs on labd's actix system (one worker), started and
//! stopped by `daemon.rs`. This module reads the registry's published
//! snapshot and asks it for the latest events; nothing below it knows it
//! exists. Claim handles never reach it: see [`page`].

mod auth;
mod feed;
mod lab_metrics;
pub mod page;

use std::sync::Arc;

use actix::Addr;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use prometheus_client::registry::Registry as Prometheus;
use tokio::sync::watch;
use tracing::info;

pub use lab_metrics::LabCollector;

use crate::actors::registry::{Registry, Snapshot};
use crate::config::Web;
use page::Page;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Open connections the page server holds at most (pages, streams,
/// scrapes together).
const MAX_CONNECTIONS: usize = 256;

/// Event streams open at once, at most: a stream is held for as long as
/// its client likes at no cost to it, so without a cap of their own
/// [`MAX_CONNECTIONS`] streams (from anyone who reaches the page) left no
/// connection for the page, `/metrics` or anyone else's stream. The rest
/// is kept for requests that end by themselves (a head must come within
/// actix's client request timeout, 5 s).
const MAX_STREAMS: usize = MAX_CONNECTIONS / 2;

struct State {
    pages: watch::Receiver<Arc<Page>>,
    prometheus: Arc<Prometheus>,
    auth: Option<auth::Auth>,
    stop: watch::Receiver<bool>,
    /// Shown in the page's title: this host in a lab of several.
    host: Option<String>,
    /// Event streams open now (at most [`MAX_STREAMS`]).
    streams: Arc<std::sync::atomic::AtomicUsize>,
}

/// The running page server.
pub struct WebServer {
    handle: actix_web::dev::ServerHandle,
    stop: watch::Sender<bool>,
    pub addr: std::net::SocketAddr,
}

#[derive(Debug, thiserror::Error)]
#[error("the status page cannot listen on {addr}: {source}")]
pub struct WebError {
    addr: std::net::SocketAddr,
    source: std::io::Error,
}

/// Binds `cfg.listen`, before anything else starts: a port in use is a
/// start-up error, like the socket's.
pub fn bind(cfg: &Web) -> Result<std::net::TcpListener, WebError> {
    std::net::TcpListener::bind(cfg.listen).map_err(|source| WebError { addr: cfg.listen, source })
}

/// Serves the page on `listener` (from [`bind`]) until
/// [`WebServer::stop`]. Must run on labd's actix system.
pub fn start(
    listener: std::net::TcpListener,
    cfg: &Web,
    registry: Addr<Registry>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    prometheus: Arc<Prometheus>,
    host: Option<String>,
) -> Result<WebServer, WebError> {
    let (stop_tx, stop) = watch::channel(false);
    let pages = feed::spawn(registry, snapshots, stop.clone());
    let state = web::Data::new(State {
        pages,
        prometheus,
        auth: cfg.auth.as_ref().map(auth::Auth::new),
        stop,
        host,
        streams: Arc::default(),
    });
    let err = |source| WebError { addr: cfg.listen, source };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/", web::get().to(index))
            .route("/events", web::get().to(events))
            .route("/metrics", web::get().to(metrics))
            .route("/app.js", web::get().to(app_js))
            .route("/app.css", web::get().to(app_css))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2)
    .max_connections(MAX_CONNECTIONS)
    .listen(listener)
    .map_err(err)?;
    let addr = server.addrs().first().copied().unwrap_or(cfg.listen);
    let server = server.run();
    let handle = server.handle();
    tokio::task::spawn_local(server);
    info!(url = %format!("http://{addr}/"), auth = cfg.auth.is_some(), "status page listening");
    Ok(WebServer { handle, stop: stop_tx, addr })
}

impl WebServer {
    /// Ends the event streams and stops the server (on the one shutdown
    /// path, with the socket).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.handle.stop(true).await;
    }
}

/// Headers every answer carries: nothing is cached, framed or sniffed,
/// and the page runs only its own script and style.
fn secure(mut b: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    b.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ));
    b
}

/// `None` when the request may go on; else the answer that refuses it.
async fn refused(state: &State, req: &HttpRequest) -> Option<HttpResponse> {
    let auth = state.auth.as_ref()?;
    if auth.allows(req).await {
        return None;
    }
    Some(
        secure(HttpResponse::Unauthorized())
            .insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="boardlab", charset="UTF-8""#))
            .content_type("text/plain; charset=utf-8")
            .body("boardlab: a user name and password are needed\n"),
    )
}

async fn index(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = refused(&state, &req).await {
        return r;
    }
    let page = state.pages.borrow().clone();
    let now = crate::util::now_unix_ms();
    let host = state.host.as_deref().map(|h| format!(" on {}", page::escape(&page::clean(h)))).unwrap_or_default();
    let body = fill(
        INDEX,
        &[
            ("{{HOST}}", &host),
            ("{{ROWS}}", &page::render_rows(&page, now)),
            ("{{WAITING}}", &page::render_waiting(&page)),
            ("{{EVENTS}}", &page::render_events(&page)),
        ],
    );
    secure(HttpResponse::Ok()).content_type("text/html; charset=utf-8").body(body)
}

/// `template` with each marker replaced by its text; what is put in is
/// never searched for markers.
fn fill(template: &str, parts: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + parts.iter().map(|(_, t)| t.len()).sum::<usize>());
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match parts.iter().find(|(m, _)| rest.starts_with(m)) {
            Some((m, text)) => {
                out.push_str(text);
                rest = &rest[m.len()..];
            }
            None => {
                out.push_str("{{");
                rest = &rest[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

async fn events(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = refused(&state, &req).await {
        return r;
    }
    let Some(slot) = feed::StreamSlot::take(&state.streams, MAX_STREAMS) else {
        return secure(HttpResponse::ServiceUnavailable())
            .insert_header((header::RETRY_AFTER, "30"))
            .content_type("text/plain; charset=utf-8")
            .body(format!(
                "boardlab: {MAX_STREAMS} event streams are open, the most the page serves; try again later\n"
            ));
    };
    secure(HttpResponse::Ok())
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(feed::stream(state.pages.clone(), state.stop.clone(), slot))
}

async fn metrics(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = refused(&state, &req).await {
        return r;
    }
    let mut text = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.prometheus) {
        return secure(HttpResponse::InternalServerError()).body(format!("encoding the metrics failed: {e}\n"));
    }
    secure(HttpResponse::Ok()).content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(text)
}

async fn app_js(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = refused(&state, &req).await {
        return r;
    }
    secure(HttpResponse::Ok()).content_type("text/javascript; charset=utf-8").body(APP_JS)
}

async fn app_css(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = refused(&state, &req).await {
        return r;
    }
    secure(HttpResponse::Ok()).content_type("text/css; charset=utf-8").body(APP_CSS)
}

async fn not_found() -> HttpResponse {
    secure(HttpResponse::NotFound()).content_type("text/plain; charset=utf-8").body("not found\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn fill_puts_text_in_once() {
        let t = "a{{X}}b{{Y}}c{{Z}}";
        assert_eq!(super::fill(t, &[("{{X}}", "{{Y}}"), ("{{Y}}", "2")]), "a{{Y}}b2c{{Z}}");
    }
}
