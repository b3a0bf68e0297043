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
    /// Answers 200 with this many bytes of JSON whitespace and no length (read until close).
    Huge(usize),
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
        Reply::Huge(bytes) => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_ok() {
                let block = vec![b' '; 64 * 1024];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(block.len());
                    // The client may stop reading and hang up: that is the point.
                    if stream.write_all(&block[..n]).await.is_err() {
                        break;
                    }
                    left -= n;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}
