//! A fake mail server that accepts, refuses the sign-in, rejects the recipient (quoting the
//! address, as real servers do) or hangs up mid-dialogue.

use super::AbortOnDrop;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the fake mail server behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpMode {
    /// Accepts the message (and AUTH with the expected password).
    Working,
    /// Hangs up right after `MAIL FROM`.
    HangUpAfterMailFrom,
    /// Answers `RCPT TO` with a 550 that quotes the recipient's address.
    RejectRecipient,
}

/// A small SMTP server on a raw socket: EHLO advertises AUTH PLAIN/LOGIN, AUTH succeeds only
/// with `password`, and messages are kept in memory.
pub struct FakeSmtp {
    pub mode: Arc<Mutex<SmtpMode>>,
    pub messages: Arc<Mutex<Vec<String>>>,
    pub connections: Arc<AtomicUsize>,
    pub _task: AbortOnDrop,
}

impl FakeSmtp {
    pub async fn start(port: u16, mode: SmtpMode, password: &'static str) -> FakeSmtp {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the fake mail server");
        let mode = Arc::new(Mutex::new(mode));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = {
            let (mode, messages, connections) =
                (mode.clone(), messages.clone(), connections.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let mode = *mode.lock().unwrap();
                    let messages = messages.clone();
                    tokio::spawn(async move {
                        let _ = smtp_dialogue(stream, mode, password, messages).await;
                    });
                }
            })
        };
        FakeSmtp {
            mode,
            messages,
            connections,
            _task: AbortOnDrop(task),
        }
    }

    pub fn set_mode(&self, mode: SmtpMode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

pub fn plain_auth_password(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split('\0').nth(2).map(str::to_string)
}

pub async fn smtp_dialogue(
    stream: TcpStream,
    mode: SmtpMode,
    password: &str,
    messages: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 fake.smtp ESMTP ready\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let answer: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250-fake.smtp\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let mut encoded = command["AUTH PLAIN".len()..].trim().to_string();
            if encoded.is_empty() {
                write.write_all(b"334 \r\n").await?;
                line.clear();
                read.read_line(&mut line).await?;
                encoded = line.trim().to_string();
            }
            if plain_auth_password(&encoded).as_deref() == Some(password) {
                "235 2.7.0 Authentication successful\r\n".into()
            } else {
                "535 5.7.8 Authentication credentials invalid\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM") {
            if mode == SmtpMode::HangUpAfterMailFrom {
                return Ok(());
            }
            "250 2.1.0 OK\r\n".into()
        } else if upper.starts_with("RCPT TO") {
            if mode == SmtpMode::RejectRecipient {
                let address = command["RCPT TO:".len().min(command.len())..].trim();
                format!(
                    "550 5.1.1 {address}: Recipient address rejected: User unknown in local recipient table\r\n"
                )
            } else {
                "250 2.1.5 OK\r\n".into()
            }
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut message = String::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                message.push_str(&line);
            }
            messages.lock().unwrap().push(message);
            "250 2.0.0 OK queued as FAKE1\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 OK\r\n".into()
        } else {
            "502 5.5.2 Command not recognised\r\n".into()
        };
        write.write_all(answer.as_bytes()).await?;
    }
}
