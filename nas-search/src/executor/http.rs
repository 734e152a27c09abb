//! A small HTTP/1.1 client for the Ray executor: plain `http://` (Ray's dashboard serves its
//! jobs API without TLS unless a proxy is put in front of it), one connection per request
//! (`Connection: close`), JSON bodies, and a deadline on everything: name resolution, connect,
//! write and read together take at most the timeout given, so an address that does not answer
//! is an error, never a hang.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::{Duration, Instant};

/// Largest response read (a job list or a job's logs; more is cut off, which is an error).
const MAX_RESPONSE: usize = 32 << 20;

/// An `http://host:port[/prefix]` address.
#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    /// Host name or IP address (an IPv6 address without its brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path prefix (empty, or starting with `/` and without a trailing `/`).
    pub prefix: String,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.prefix)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.prefix)
        }
    }
}

impl Address {
    /// Parses `http://host:port[/prefix]`, or `host:port` (taken as `http://`); the port
    /// defaults to `default_port`. Other schemes are refused with a reason.
    pub fn parse(s: &str, default_port: u16) -> std::result::Result<Address, String> {
        let s = s.trim();
        let rest = match s.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(
                    "https is not supported: give the head's plain http:// dashboard address \
                     (on a tunnel or on the cluster's network)"
                        .into(),
                );
            }
            Some((scheme, _)) => return Err(format!("scheme {scheme:?} is not http")),
            None => s,
        };
        let (hostport, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // [v6]:port
            let (h, after) = h
                .split_once(']')
                .ok_or_else(|| format!("{hostport:?}: unclosed '['"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(format!("{hostport:?}: junk after ']'")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("port {p:?} is not a port number"))?,
            None => default_port,
        };
        Ok(Address {
            host: host.to_string(),
            port,
            prefix: prefix.to_string(),
        })
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (chunked transfer decoded).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Resolves `host:port` within `timeout` (name resolution runs on a thread: the system
/// resolver has no timeout of its own).
fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
) -> std::result::Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let h = host.to_string();
    std::thread::spawn(move || {
        let _ = tx.send((h.as_str(), port).to_socket_addrs().map(Vec::from_iter));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(a)) if !a.is_empty() => Ok(a),
        Ok(Ok(_)) => Err(format!("{host} has no address")),
        Ok(Err(e)) => Err(format!("cannot resolve {host}: {e}")),
        Err(_) => Err(format!(
            "cannot resolve {host} within {:.1} s",
            timeout.as_secs_f64()
        )),
    }
}

/// Sends `method path` (relative to the address's prefix) with an optional JSON `body`, and
/// reads the whole response, all within `timeout`. Errors are one line, for messages.
pub fn request(
    addr: &Address,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> std::result::Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let left = |what: &str| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {:.1} s ({what})", timeout.as_secs_f64()))
    };
    let addrs = resolve(&addr.host, addr.port, left("resolving")?)?;
    let mut stream = None;
    let mut last = String::new();
    for a in addrs {
        match TcpStream::connect_timeout(&a, left("connecting")?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = format!(
                    "no answer within {:.1} s (connecting)",
                    timeout.as_secs_f64()
                )
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let host = if addr.host.contains(':') {
        format!("[{}]:{}", addr.host, addr.port)
    } else {
        format!("{}:{}", addr.host, addr.port)
    };
    let mut req = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: nas-rs/{}\r\n\
         Accept: application/json\r\nConnection: close\r\n",
        addr.prefix,
        env!("CARGO_PKG_VERSION")
    );
    if let Some(b) = body {
        req += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        );
    }
    req += "\r\n";
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    let io = |e: std::io::Error, what: &str| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ) {
            format!("no answer within {:.1} s ({what})", timeout.as_secs_f64())
        } else {
            format!("{what}: {e}")
        }
    };
    stream
        .set_write_timeout(Some(left("sending")?))
        .map_err(|e| io(e, "sending"))?;
    stream.write_all(&bytes).map_err(|e| io(e, "sending"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        stream
            .set_read_timeout(Some(left("reading the answer")?))
            .map_err(|e| io(e, "reading the answer"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_RESPONSE {
                    return Err(format!("answer larger than {} MiB", MAX_RESPONSE >> 20));
                }
                // A server that keeps the connection open after a whole response is done.
                if complete(&raw) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e, "reading the answer")),
        }
    }
    parse_response(&raw)
}

/// Whether `raw` holds a whole response with a `Content-Length` (or a chunked body's end).
fn complete(raw: &[u8]) -> bool {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    if let Some(n) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        return raw.len() >= end + 4 + n;
    }
    header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked"))
        && raw.ends_with(b"0\r\n\r\n")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` (lower case) in a lower-cased header block.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then_some(v.trim())
    })
}

/// Parses a whole HTTP/1.x response.
pub fn parse_response(raw: &[u8]) -> std::result::Result<Response, String> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| {
        if raw.is_empty() {
            "the connection was closed without an answer".to_string()
        } else {
            "not an HTTP answer (no end of headers)".to_string()
        }
    })?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status_line = head.lines().next().unwrap_or("");
    let status = status_line
        .strip_prefix("http/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer ({status_line:?})"))?;
    let rest = &raw[end + 4..];
    let body = if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(n) = header(&head, "content-length") {
        let n: usize = n.parse().map_err(|_| format!("bad Content-Length {n:?}"))?;
        if rest.len() < n {
            return Err(format!(
                "answer cut short ({} of {n} bytes of its body)",
                rest.len()
            ));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// Decodes a chunked body.
fn dechunk(mut rest: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("answer cut short (chunk size)")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err("answer cut short (chunk)".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_their_defaults_and_refusals() {
        let a = Address::parse("http://127.0.0.1:8265", 1).unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.prefix.as_str()),
            ("127.0.0.1", 8265, "")
        );
        let a = Address::parse("head.cluster", 8265).unwrap();
        assert_eq!((a.host.as_str(), a.port), ("head.cluster", 8265));
        let a = Address::parse("http://h:80/ray/", 1).unwrap();
        assert_eq!((a.port, a.prefix.as_str()), (80, "/ray"));
        assert_eq!(a.to_string(), "http://h:80/ray");
        let a = Address::parse("[::1]:9", 1).unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 9));
        assert_eq!(a.to_string(), "http://[::1]:9");
        assert!(
            Address::parse("https://h:1", 1)
                .unwrap_err()
                .contains("https")
        );
        assert!(
            Address::parse("ray://h:10001", 1)
                .unwrap_err()
                .contains("\"ray\"")
        );
        assert!(Address::parse("h:x", 1).unwrap_err().contains("port"));
        assert!(Address::parse("h:0", 1).is_err());
        assert!(Address::parse(":5", 1).unwrap_err().contains("no host"));
    }

    #[test]
    fn responses_parse_plain_sized_and_chunked() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}junk").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "abcde"));
        let r = parse_response(b"HTTP/1.0 500 Oops\r\nServer: x\r\n\r\nall of it").unwrap();
        assert_eq!((r.status, r.text().as_str()), (500, "all of it"));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
                .unwrap_err()
                .contains("cut short")
        );
        assert!(parse_response(b"").unwrap_err().contains("closed"));
        assert!(
            parse_response(b"SSH-2.0\r\n\r\n")
                .unwrap_err()
                .contains("not an HTTP")
        );
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}"));
    }

    /// A listener that accepts and never answers: the request fails at its deadline.
    #[test]
    fn a_silent_server_is_an_error_at_the_deadline() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = Address::parse(&l.local_addr().unwrap().to_string(), 1).unwrap();
        let t0 = Instant::now();
        let e = request(
            &addr,
            "GET",
            "/api/version",
            None,
            Duration::from_millis(300),
        )
        .unwrap_err();
        let took = t0.elapsed();
        assert!(e.contains("no answer within 0.3 s"), "{e}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(20),
            "{took:?}"
        );
        drop(l);
    }

    /// A tiny server answering one request: the request line and body arrive, the answer is read.
    #[test]
    fn a_request_round_trips() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = Address::parse(&format!("http://{}/p", l.local_addr().unwrap()), 1).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"{\"a\":1}") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine")
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let r = request(
            &addr,
            "POST",
            "/api/jobs/",
            Some(b"{\"a\":1}"),
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "fine"));
        let got = server.join().unwrap();
        assert!(got.starts_with("POST /p/api/jobs/ HTTP/1.1\r\n"), "{got}");
        assert!(got.contains("Content-Length: 7\r\n"), "{got}");
    }
}
