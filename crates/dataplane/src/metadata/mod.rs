//! The metadata service's sockets and HTTP: one listening socket per
//! [`Listener`], made inside its namespace and tied to its interface, all
//! served by the agent's own runtime — no process per network.
//!
//! Who is calling and what to answer is the core's; what the objects say
//! and what a Secret holds comes from a [`Directory`] the agent is given.
//! Every connection is bounded (see [`gate`]): the service is shared by
//! every tenant on the node.

pub mod gate;
mod secrets;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddrV4};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::netns;
use gate::{Gate, Limits};
use neutrino_core::metadata::{self, Extras, Instance, Listener, Refusal, Reply};
use secrets::Secrets;

/// A Secret's data, by key.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// A Secret being read: its data, `None` when there is no such Secret, or
/// why it could not be read.
pub type SecretRead<'a> = BoxFuture<'a, Result<Option<SecretData>, String>>;

/// What the service reads: the objects, and a port's Secret.
pub trait Directory: Send + Sync + 'static {
    /// The instance whose port holds `address`, calling `listener`.
    fn caller(&self, listener: &Listener, address: IpAddr) -> Result<Instance, Refusal>;
    /// The Secret `name` in `namespace`.
    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> SecretRead<'a>;
}

/// One open socket and the task serving it.
struct Open {
    /// The namespace's inode when the socket was made: a namespace made
    /// again under the same name is another one.
    inode: u64,
    task: JoinHandle<()>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The node's metadata service.
pub struct MetadataService {
    directory: Arc<dyn Directory>,
    secrets: Arc<Secrets>,
    gate: Arc<Gate>,
    open: Mutex<HashMap<Listener, Open>>,
}

impl MetadataService {
    pub fn new(directory: Arc<dyn Directory>) -> Self {
        Self::with_limits(directory, Limits::default())
    }

    pub fn with_limits(directory: Arc<dyn Directory>, limits: Limits) -> Self {
        Self {
            secrets: Arc::new(Secrets::new(directory.clone())),
            directory,
            gate: Gate::new(limits),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Listens where `wanted` says and nowhere else. A listener in one of
    /// `renewed` (namespaces whose interfaces were made again: a socket
    /// tied to an interface keeps its old index), in a namespace made
    /// again, or whose task ended, is opened afresh. Returns the errors,
    /// each naming the listener.
    pub fn sync(&self, wanted: &[Listener], renewed: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|listener, socket| {
            wanted.contains(listener)
                && !renewed(&listener.namespace)
                && !socket.task.is_finished()
                && inode(&listener.namespace).ok() == Some(socket.inode)
        });
        let mut errors = Vec::new();
        for listener in wanted {
            if open.contains_key(listener) {
                continue;
            }
            match self.listen(listener) {
                Ok(socket) => {
                    open.insert(listener.clone(), socket);
                }
                Err(e) => errors.push(format!(
                    "metadata service in {} on {}: {e}",
                    listener.namespace, listener.interface
                )),
            }
        }
        errors
    }

    fn listen(&self, listener: &Listener) -> std::io::Result<Open> {
        let inode = inode(&listener.namespace)?;
        let interface = listener.interface.clone();
        let socket = netns::run_in(Some(&listener.namespace), move || bound_socket(&interface))??;
        let socket = TcpListener::from_std(socket)?;
        let context = Arc::new(Context {
            listener: listener.clone(),
            directory: self.directory.clone(),
            secrets: self.secrets.clone(),
            gate: self.gate.clone(),
        });
        let task = tokio::spawn(accept(socket, context));
        Ok(Open { inode, task })
    }
}

/// Takes connections until aborted. A connection over a bound is closed at
/// once; one taken is served on a task of its own, with its ticket.
async fn accept(socket: TcpListener, context: Arc<Context>) {
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or buffers: wait for some to be freed
                // rather than spin, and go on.
                tracing::warn!(listener = %context.listener.namespace, error = %e, "metadata service could not take a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = peer.ip();
        match context.gate.admit(&context.listener, source) {
            Ok(ticket) => {
                let context = context.clone();
                tokio::spawn(async move {
                    serve(stream, source, &context).await;
                    drop(ticket);
                });
            }
            Err(full) => {
                tracing::debug!(%source, ?full, "metadata connection refused: too many open");
            }
        }
    }
}

/// Serves one connection: its request heads within the header timeout, and
/// the whole connection within its lifetime, idle or not.
async fn serve(stream: TcpStream, source: IpAddr, context: &Context) {
    let limits = context.gate.limits();
    let service = service_fn(|request: Request<Incoming>| async move {
        Ok::<_, Infallible>(answer(context, source, request.method(), request.uri().path()).await)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(limits.lifetime, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%source, error = %e, "metadata connection ended"),
        Err(_) => tracing::debug!(%source, "metadata connection closed at its lifetime"),
    }
}

/// The inode of the namespace `name`.
fn inode(name: &str) -> std::io::Result<u64> {
    Ok(std::fs::metadata(netns::path(name))?.ino())
}

/// A socket on the metadata address and port that takes connections
/// arriving on `interface` only. Free-bound: the address on loopback may
/// come a moment later.
fn bound_socket(interface: &str) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind_device(Some(interface.as_bytes()))?;
    socket.set_freebind_v4(true)?;
    socket.bind(&SocketAddrV4::new(metadata::ADDRESS, metadata::PORT).into())?;
    socket.listen(128)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

struct Context {
    listener: Listener,
    directory: Arc<dyn Directory>,
    secrets: Arc<Secrets>,
    gate: Arc<Gate>,
}

async fn answer(
    context: &Context,
    source: IpAddr,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    let reply = if method != Method::GET && method != Method::HEAD {
        Reply::error(405, format!("{method}: only GET is served"))
    } else {
        reply(context, source, path).await
    };
    let body = if method == Method::HEAD {
        Full::default()
    } else {
        Full::from(reply.body)
    };
    Response::builder()
        .status(reply.status)
        .header(header::CONTENT_TYPE, reply.content_type)
        .body(body)
        .expect("a status and a content type make a response")
}

async fn reply(context: &Context, source: IpAddr, path: &str) -> Reply {
    let instance = match context.directory.caller(&context.listener, source) {
        Ok(instance) => instance,
        Err(refusal) => {
            tracing::info!(%source, %path, %refusal, "metadata request refused");
            return Reply::error(404, refusal.to_string());
        }
    };
    let extras = match &instance.secret {
        None => Extras::default(),
        Some(name) => match context.secrets.get(&instance.port.namespace, name).await {
            Ok(Some(data)) => Extras::from_secret(&data),
            // Served without it, a guest would boot once without its keys
            // and never ask again: it is told to retry instead.
            Ok(None) => {
                return Reply::error(
                    503,
                    format!(
                        "Secret {}/{name}, named by Port {} (spec.metadataSecretName), does not exist",
                        instance.port.namespace, instance.port
                    ),
                );
            }
            Err(e) => {
                return Reply::error(
                    503,
                    format!(
                        "Secret {}/{name}, named by Port {}, could not be read: {e}",
                        instance.port.namespace, instance.port
                    ),
                );
            }
        },
    };
    tracing::debug!(port = %instance.port, %path, "metadata served");
    metadata::reply(path, &instance, &extras)
}
