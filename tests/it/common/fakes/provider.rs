//! A fake provider: an HTTP server that plays a script of answers, including slow, truncated,
//! dropped and silent ones.

use super::AbortOnDrop;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fake provider treats one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Answers at once with this status and body.
    Answer(u16, String),
    /// Answers 200 with this body, but only after this long.
    Late(Duration, String),
    /// Promises (Content-Length) more body than it sends, then closes the connection.
    Truncated(String),
    /// Closes the connection in the middle of the answer's headers.
    Dropped,
    /// Reads the request and never answers (keeps the connection open).
    Silent,
}

/// An HTTP server on a raw socket that plays a script: the n-th request gets the n-th reply
/// (the last one repeats), and every request is counted (method and path).
pub struct FakeProvider {
    pub base: String,
    pub requests: Arc<Mutex<Vec<String>>>,
    pub _task: AbortOnDrop,
}

impl FakeProvider {
    pub async fn start(script: Vec<Reply>) -> FakeProvider {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let mut stream = stream;
                    let Some(request_line) = read_http_request(&mut stream).await else {
                        return;
                    };
                    let reply = {
                        let mut seen = seen.lock().unwrap();
                        let mut parts = request_line.split(' ');
                        seen.push(format!(
                            "{} {}",
                            parts.next().unwrap_or_default(),
                            parts.next().unwrap_or_default()
                        ));
                        script[(seen.len() - 1).min(script.len() - 1)].clone()
                    };
                    play(stream, reply).await;
                });
            }
        });
        FakeProvider {
            base,
            requests,
            _task: AbortOnDrop(task),
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one request (head and Content-Length body); returns its request line.
pub async fn read_http_request(stream: &mut TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            return head.lines().next().map(str::to_string);
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

pub fn http_answer(status: u16, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} Fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

pub async fn play(mut stream: TcpStream, reply: Reply) {
    match reply {
        Reply::Answer(status, body) => {
            let _ = stream
                .write_all(http_answer(status, &body).as_bytes())
                .await;
        }
        Reply::Late(delay, body) => {
            tokio::time::sleep(delay).await;
            let _ = stream.write_all(http_answer(200, &body).as_bytes()).await;
        }
        Reply::Truncated(body) => {
            let half = &body[..body.len() / 2];
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len() + 100
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(half.as_bytes()).await;
            let _ = stream.flush().await;
        }
        Reply::Dropped => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Ty").await;
            let _ = stream.flush().await;
        }
        Reply::Silent => {
            std::future::pending::<()>().await;
        }
    }
    let _ = stream.shutdown().await;
}

/// A strict stand-in for Eko: answers by method and exact path (the query is ignored),
/// 405 for a known path asked with another method, 404 for any path it does not know. The
/// routes can be changed while it runs (a provider that moves its document call).
pub struct FakeEko {
    /// Base URL (without `/eko`; credentials add it as [`FakeEko::PREFIX`]).
    pub base: String,
    /// (method, path, reply) of every known call.
    pub routes: Arc<Mutex<Vec<(String, String, Reply)>>>,
    /// Every request, as `METHOD /path` (without the query).
    pub requests: Arc<Mutex<Vec<String>>>,
    pub _task: AbortOnDrop,
}

impl FakeEko {
    /// Where the credential's base URL points under [`FakeEko::base`].
    pub const PREFIX: &'static str = "/eko";
    /// The create-URL call.
    pub const CREATE: &'static str = "/eko/tools/kyc/digilocker";
    /// The status call.
    pub const STATUS: &'static str = "/eko/tools/kyc/digilocker/status";
    /// The newer document call (POST).
    pub const DOCUMENT: &'static str = "/eko/tools/kyc/digilocker/document";
    /// The older document call for Aadhaar (GET).
    pub const DOCUMENT_AADHAAR: &'static str = "/eko/tools/kyc/digilocker/document/AADHAAR";

    pub async fn start() -> FakeEko {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<Vec<(String, String, Reply)>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let task = {
            let (routes, requests) = (routes.clone(), requests.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (routes, requests) = (routes.clone(), requests.clone());
                    tokio::spawn(async move {
                        let Some(request_line) = read_http_request(&mut stream).await else {
                            return;
                        };
                        let mut parts = request_line.split(' ');
                        let method = parts.next().unwrap_or_default().to_string();
                        let target = parts.next().unwrap_or_default();
                        let path = target.split('?').next().unwrap_or_default().to_string();
                        requests.lock().unwrap().push(format!("{method} {path}"));
                        let reply = {
                            let routes = routes.lock().unwrap();
                            match routes.iter().find(|(m, p, _)| *m == method && *p == path) {
                                Some((_, _, reply)) => reply.clone(),
                                None if routes.iter().any(|(_, p, _)| *p == path) => {
                                    Reply::Answer(405, r#"{"message":"Method Not Allowed"}"#.into())
                                }
                                None => Reply::Answer(404, r#"{"message":"Not Found"}"#.into()),
                            }
                        };
                        play(stream, reply).await;
                    });
                }
            })
        };
        FakeEko {
            base,
            routes,
            requests,
            _task: AbortOnDrop(task),
        }
    }

    /// Answers `method path` with `reply` from now on (replacing an earlier route).
    pub fn route(&self, method: &str, path: &str, reply: Reply) {
        let mut routes = self.routes.lock().unwrap();
        routes.retain(|(m, p, _)| !(m == method && p == path));
        routes.push((method.to_string(), path.to_string(), reply));
    }

    /// Forgets `method path` (it answers 404, or 405 if the path is known otherwise).
    pub fn unroute(&self, method: &str, path: &str) {
        self.routes
            .lock()
            .unwrap()
            .retain(|(m, p, _)| !(m == method && p == path));
    }

    /// The requests so far, and forgets them.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}
