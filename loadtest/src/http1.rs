//! One HTTP/1.1 keep-alive client connection, owned by whoever is sending on it:
//! the load phase's transport for `POST /v1/transfers` (see `transfers.rs`).
//!
//! It writes a request the caller has already laid out as bytes, in one write,
//! and reads the answer into a buffer it keeps between requests, parsing only the
//! status line and the headers that frame the body (`Content-Length`,
//! `Transfer-Encoding: chunked`, `Connection`). The request and its answer run in
//! the caller's task: no connection task to hand the request to and wake back,
//! no header maps, no per-request allocation once the buffers have grown. What it
//! does not do (TLS, pipelining, redirects, upgrades, request bodies of unknown
//! length) the harness never needs: one request at a time, to one loopback
//! server. A connection that may not carry another request (the server said
//! `Connection: close`, sent more than one answer, or closed it while idle) says
//! so through [`Connection::reusable`].

use std::io;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The most headers an answer may carry.
const MAX_HEADERS: usize = 64;

/// The largest answer read (head and body): far above anything the API sends to
/// a transfer, small enough that a runaway server cannot exhaust the harness.
const MAX_ANSWER: usize = 1 << 20;

/// Read-buffer growth step.
const READ_CHUNK: usize = 4096;

/// An answer: its status and its (de-chunked) body, borrowed from the
/// connection's buffers until the next request.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

/// How the body of an answer is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    /// Neither: the body runs until the server closes the connection.
    UntilClose,
}

/// One open connection.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// What was read of the current answer (head and raw body).
    read: Vec<u8>,
    /// The body of a chunked answer, decoded.
    dechunked: Vec<u8>,
    /// False once the connection must not carry another request.
    keep_alive: bool,
}

impl Connection {
    /// Connects to `address` (`host:port`), with Nagle off: small requests, one
    /// at a time, that Nagle could only delay.
    pub async fn connect(address: &str) -> io::Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            read: Vec::with_capacity(READ_CHUNK),
            dechunked: Vec::new(),
            keep_alive: true,
        })
    }

    /// Whether another request may be sent: the last answer allowed it and the
    /// server has not closed the connection (or sent anything) since. Costs no
    /// system call unless the socket was signalled readable since the last read.
    pub fn reusable(&self) -> bool {
        if !self.keep_alive {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(
            self.stream.try_read(&mut probe),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// Sends `request` (a complete HTTP/1.1 request: head and body) and reads its
    /// answer. Any error leaves the connection unusable; so does an answer after
    /// which the server closes it.
    pub async fn round_trip(&mut self, request: &[u8]) -> io::Result<Answer<'_>> {
        // Until this answer is read whole, the connection is mid-exchange: if the
        // future is dropped (a timeout) or fails, it must not be reused.
        self.keep_alive = false;
        self.stream.write_all(request).await?;
        self.read.clear();
        let (status, head_len, framing, keep_alive) = loop {
            let (status, head_len, framing, keep_alive) = self.read_head().await?;
            // An interim answer (100 Continue, 103 Early Hints) precedes the real
            // one; 101 would be an upgrade, which the harness never asks for.
            if (100..200).contains(&status) && status != 101 {
                self.read.drain(..head_len);
                continue;
            }
            break (status, head_len, framing, keep_alive);
        };
        // Answers that never have a body, whatever their headers say.
        let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else {
            framing
        };
        let body = match framing {
            Framing::Length(n) => {
                let end = head_len.checked_add(n).filter(|&e| e <= MAX_ANSWER);
                let end = end.ok_or_else(|| invalid("answer too large"))?;
                while self.read.len() < end {
                    self.fill().await?;
                }
                if self.read.len() > end {
                    // Bytes after the answer: the server is not answering one
                    // request with one answer; don't trust the connection.
                    return Err(invalid("unexpected bytes after the answer"));
                }
                head_len..end
            }
            Framing::Chunked => {
                self.dechunk(head_len).await?;
                0..self.dechunked.len()
            }
            Framing::UntilClose => {
                while self.fill_or_eof().await? {}
                self.keep_alive = false;
                return Ok(Answer {
                    status,
                    body: &self.read[head_len..],
                });
            }
        };
        self.keep_alive = keep_alive;
        let body = match framing {
            Framing::Chunked => &self.dechunked[body],
            _ => &self.read[body],
        };
        Ok(Answer { status, body })
    }

    /// Reads until the head of an answer is complete; returns its status, its
    /// length in `read`, its body framing and whether it allows keep-alive.
    async fn read_head(&mut self) -> io::Result<(u16, usize, Framing, bool)> {
        loop {
            if !self.read.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.read) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        let status = response.code.unwrap_or(0);
                        let mut framing = Framing::UntilClose;
                        // HTTP/1.1 keeps the connection unless told otherwise;
                        // HTTP/1.0 closes it unless told otherwise.
                        let mut keep_alive = response.version == Some(1);
                        for h in response.headers.iter() {
                            if h.name.eq_ignore_ascii_case("content-length") {
                                // Chunked wins over a length (RFC 9112 §6.3).
                                if framing != Framing::Chunked {
                                    framing = Framing::Length(content_length(h.value)?);
                                }
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                if last_token_is(h.value, b"chunked") {
                                    framing = Framing::Chunked;
                                } else {
                                    return Err(invalid("unsupported transfer-encoding"));
                                }
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                if has_token(h.value, b"close") {
                                    keep_alive = false;
                                } else if has_token(h.value, b"keep-alive") {
                                    keep_alive = true;
                                }
                            }
                        }
                        if framing == Framing::UntilClose {
                            keep_alive = false;
                        }
                        return Ok((status, head_len, framing, keep_alive));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(invalid(&format!("malformed answer: {e}"))),
                }
            }
            self.fill().await?;
        }
    }

    /// Decodes the chunked body that starts at `read[start..]` into `dechunked`,
    /// reading as needed, up to and including the final empty chunk and trailers.
    async fn dechunk(&mut self, start: usize) -> io::Result<()> {
        self.dechunked.clear();
        let mut at = start;
        loop {
            let (size_len, size) = loop {
                match httparse::parse_chunk_size(&self.read[at..]) {
                    Ok(httparse::Status::Complete(found)) => break found,
                    Ok(httparse::Status::Partial) => self.fill().await?,
                    Err(_) => return Err(invalid("malformed chunk size")),
                }
            };
            at += size_len;
            let size = usize::try_from(size)
                .ok()
                .filter(|&s| s <= MAX_ANSWER)
                .ok_or_else(|| invalid("chunk too large"))?;
            if size == 0 {
                break;
            }
            // The chunk's data, then its CRLF.
            while self.read.len() < at + size + 2 {
                self.fill().await?;
            }
            if &self.read[at + size..at + size + 2] != b"\r\n" {
                return Err(invalid("chunk without its CRLF"));
            }
            self.dechunked.extend_from_slice(&self.read[at..at + size]);
            at += size + 2;
        }
        // Trailers (ignored): lines up to an empty one.
        loop {
            let line_end = loop {
                match self.read[at..].windows(2).position(|w| w == b"\r\n") {
                    Some(p) => break at + p,
                    None => self.fill().await?,
                }
            };
            let empty = line_end == at;
            at = line_end + 2;
            if empty {
                break;
            }
        }
        if self.read.len() > at {
            return Err(invalid("unexpected bytes after the answer"));
        }
        Ok(())
    }

    /// Reads more of the answer; the end of the stream is an error here.
    async fn fill(&mut self) -> io::Result<()> {
        if self.fill_or_eof().await? {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the answer was complete",
            ))
        }
    }

    /// Reads more of the answer; false at the end of the stream.
    async fn fill_or_eof(&mut self) -> io::Result<bool> {
        if self.read.len() >= MAX_ANSWER {
            return Err(invalid("answer too large"));
        }
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        Ok(self.stream.read_buf(&mut self.read).await? > 0)
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// A `Content-Length` value: digits only (a list of equal values is refused too,
/// as hyper does).
fn content_length(value: &[u8]) -> io::Result<usize> {
    let text = std::str::from_utf8(value)
        .map_err(|_| invalid("bad content-length"))?
        .trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("bad content-length"));
    }
    text.parse().map_err(|_| invalid("bad content-length"))
}

/// Comma-separated tokens of a header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(|t| t.trim_ascii())
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

fn last_token_is(value: &[u8], token: &[u8]) -> bool {
    tokens(value)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(token))
}
