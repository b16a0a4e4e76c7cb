//! The metadata service's sockets and HTTP: one listening socket per
//! [`Listener`], made inside its namespace and tied to its interface, all
//! served by the agent's own runtime — no process per network.
//!
//! Who is calling and what to answer is the core's; what the objects say
//! and what a Secret holds comes from a [`Directory`] the agent is given.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Method, Response, Uri, header};
use futures::future::BoxFuture;
use socket2::{Domain, Socket, Type};
use tokio::task::JoinHandle;

use super::netns;
use neutrino_core::metadata::{self, Extras, Instance, Listener, Refusal, Reply};

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
    open: Mutex<HashMap<Listener, Open>>,
}

impl MetadataService {
    pub fn new(directory: Arc<dyn Directory>) -> Self {
        Self {
            directory,
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
        let socket = tokio::net::TcpListener::from_std(socket)?;
        let context = Arc::new(Context {
            listener: listener.clone(),
            directory: self.directory.clone(),
        });
        let app = Router::new().fallback(answer).with_state(context);
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let where_ = format!("{} on {}", listener.namespace, listener.interface);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(socket, service).await {
                tracing::warn!(listener = %where_, error = %e, "metadata listener ended");
            }
        });
        Ok(Open { inode, task })
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
}

async fn answer(
    State(context): State<Arc<Context>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
) -> Response<Body> {
    let reply = if method != Method::GET && method != Method::HEAD {
        Reply::error(405, format!("{method}: only GET is served"))
    } else {
        reply(&context, peer.ip(), uri.path()).await
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(reply.body)
    };
    Response::builder()
        .status(reply.status)
        .header(header::CONTENT_TYPE, reply.content_type)
        .body(body)
        .expect("a status and a content type make a response")
}

async fn reply(context: &Context, source: IpAddr, path: &str) -> Reply {
    let directory = &context.directory;
    let instance = match directory.caller(&context.listener, source) {
        Ok(instance) => instance,
        Err(refusal) => {
            tracing::info!(%source, %path, %refusal, "metadata request refused");
            return Reply::error(404, refusal.to_string());
        }
    };
    let extras = match &instance.secret {
        None => Extras::default(),
        Some(name) => match directory.secret(&instance.port.namespace, name).await {
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
