//! The frame guard: a relay between rumqttc and the POS broker that never
//! lets one message stop intake (docs/protocol/cashpad-local.md §2a).
//!
//! MQTT 3.1.1 gives a client no way to refuse a packet, and rumqttc reads
//! each packet whole into memory and drops the connection on one larger
//! than its limit; the broker then hands the same message again at every
//! reconnect (persistent session), and intake stops for good. So rumqttc
//! does not talk to the broker itself: it connects to a Unix socket of
//! the guard ([`Guard::start`], in a directory of its own, mode 0700, and
//! only this process may connect: `SO_PEERCRED`), and for each of its
//! connections the guard opens one to the broker (TCP, or TLS when the POS
//! announces `tls=1`, with the box's CA store as before) and relays:
//!
//! - client → broker: the bytes as they are;
//! - broker → client: MQTT frames, read as a stream (fixed header and
//!   remaining length first). Every frame passes byte for byte, except a
//!   PUBLISH whose payload is over [`MAX_PAYLOAD_BYTES`] or whose topic is
//!   not UTF-8: the guard reads past it, keeping its topic, QoS, packet id
//!   and first [`KEEP_BYTES`] of payload, and hands rumqttc instead a small
//!   PUBLISH with the same topic, flags and packet id whose payload is a
//!   [`Marker`]. Intake stores the marker as a rejected message and
//!   acknowledges it after the commit, like any other: the broker drops
//!   the original.
//!
//! A marker begins with [`MARKER_TAG`] and a random nonce drawn once per
//! process, never sent anywhere: nothing on the LAN can forge one.
//!
//! Memory per connection: the relay buffers (16 KiB each way), the topic
//! (at most 64 KiB by MQTT), the kept prefix, and what rumqttc holds (at
//! most one frame under [`MAX_FRAME_BYTES`]).
//!
//! A failure on the broker's side (refused, unreachable, TLS handshake,
//! reset) closes the client's side and is kept for the session
//! ([`Guard::take_failure`]), which explains it as it did when rumqttc
//! met it itself.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rumqttc::tokio_rustls::{TlsConnector, rustls};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// Largest payload of a POS message, bytes (cashpad §2a: 1 MiB). A payload
/// of exactly this size passes; one byte more is read past.
pub const MAX_PAYLOAD_BYTES: usize = super::event::MAX_PAYLOAD_BYTES;
/// Largest frame the guard hands rumqttc: the largest payload, a topic of
/// the longest MQTT allows (2 + 65,535 bytes), a packet id, and room.
pub const MAX_FRAME_BYTES: usize = MAX_PAYLOAD_BYTES + 128 * 1024;
/// Bytes of a read-past payload's beginning kept in its marker (enough to
/// read an `event_id` and a `data.order_id`; what `rejected` keeps).
pub const KEEP_BYTES: usize = 4096;
/// How a marker payload begins (then the nonce, see the module doc).
pub const MARKER_TAG: &[u8] = b"\0zenchef-edge frame guard\0";
/// How long the guard waits for the broker's TCP and TLS handshakes
/// (rumqttc gives up on the whole login after 5 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Relay buffer, each way.
const BUF: usize = 16 * 1024;

/// The process's marker nonce: random, drawn once, never sent anywhere.
fn nonce() -> &'static [u8; 16] {
    static NONCE: OnceLock<[u8; 16]> = OnceLock::new();
    NONCE.get_or_init(rand::random)
}

/// Why a message was read past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its payload is over [`MAX_PAYLOAD_BYTES`].
    TooLarge,
    /// Its topic is not UTF-8 (rumqttc would drop the connection on it).
    TopicNotUtf8,
}

/// What the guard read of a message it read past: the payload of the
/// PUBLISH rumqttc gets in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker<'a> {
    /// Why it was read past.
    pub why: Why,
    /// The real payload size, bytes.
    pub size: u64,
    /// The payload's first bytes (at most [`KEEP_BYTES`]).
    pub head: &'a [u8],
}

impl Marker<'_> {
    /// The marker payload: tag, nonce, why (1 byte), size (8 bytes, big
    /// endian), head.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MARKER_TAG.len() + 16 + 9 + self.head.len());
        out.extend_from_slice(MARKER_TAG);
        out.extend_from_slice(nonce());
        out.push(match self.why {
            Why::TooLarge => 1,
            Why::TopicNotUtf8 => 2,
        });
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(self.head);
        out
    }

    /// Reads a marker made by this process's guard; `None` for any other
    /// payload (a POS message, or a marker with another nonce).
    pub fn decode(payload: &[u8]) -> Option<Marker<'_>> {
        let rest = payload.strip_prefix(MARKER_TAG)?;
        let rest = rest.strip_prefix(&nonce()[..])?;
        let (&why, rest) = rest.split_first()?;
        let why = match why {
            1 => Why::TooLarge,
            2 => Why::TopicNotUtf8,
            _ => return None,
        };
        let size = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        Some(Marker {
            why,
            size,
            head: &rest[8..],
        })
    }
}

/// The broker the guard relays to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or address.
    pub host: String,
    /// MQTT port.
    pub port: u16,
    /// The port speaks TLS (TXT `tls=1`).
    pub tls: bool,
}

/// A failure on the broker's side of the latest connection.
#[derive(Debug)]
pub enum UpstreamFailure {
    /// TCP: refused, unreachable, reset, or the broker's stream was not
    /// MQTT.
    Io(io::Error),
    /// The TLS handshake.
    Tls(io::Error),
}

impl UpstreamFailure {
    /// The error rumqttc would have given had it connected itself, for
    /// [`super::session::classify`] and [`super::session::explain`].
    pub fn into_connection_error(self) -> rumqttc::ConnectionError {
        match self {
            UpstreamFailure::Io(e) => rumqttc::ConnectionError::Io(e),
            UpstreamFailure::Tls(e) => rumqttc::ConnectionError::Tls(rumqttc::TlsError::Io(e)),
        }
    }
}

/// The latest connection's number and its broker-side failure.
type Slot = Arc<Mutex<(u64, Option<UpstreamFailure>)>>;

/// A running guard for one broker; stops (and removes its socket) when
/// dropped.
pub struct Guard {
    path: PathBuf,
    dir_owned: bool,
    slot: Slot,
    task: JoinHandle<()>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
        if self.dir_owned
            && let Some(dir) = self.path.parent()
        {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Guard {
    /// Listens on `<dir>/pos-guard/pos.sock` (the directory made or
    /// fixed to mode 0700; a stale socket replaced) and relays each
    /// connection to `up`. When that path is too long for a Unix socket,
    /// a fresh private directory under the temporary directory is used.
    ///
    /// Errors: the directory or the socket cannot be made, or it belongs
    /// to another user.
    pub fn start(dir: &Path, up: Upstream) -> io::Result<Guard> {
        let (sock_dir, dir_owned) = private_dir(dir)?;
        let path = sock_dir.join("pos.sock");
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&path)?;
        let tls = if up.tls { Some(tls_connector()?) } else { None };
        let slot: Slot = Arc::default();
        let task = tokio::spawn(accept_loop(listener, up, tls, slot.clone()));
        Ok(Guard {
            path,
            dir_owned,
            slot,
            task,
        })
    }

    /// The socket rumqttc connects to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The broker-side failure of the latest connection, if it failed
    /// there (taken: asked once per failure).
    pub fn take_failure(&self) -> Option<UpstreamFailure> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).1.take()
    }
}

/// `<dir>/pos-guard`, mode 0700 and ours; or, when a socket path in it
/// would be too long (108 bytes on Linux), a new private directory under
/// the temporary directory (`true`: remove it when done).
fn private_dir(dir: &Path) -> io::Result<(PathBuf, bool)> {
    let d = dir.join("pos-guard");
    if d.join("pos.sock").as_os_str().len() < 100 {
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            r => r?,
        }
        let meta = std::fs::symlink_metadata(&d)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() || meta.uid() != me {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is not a directory of this user", d.display()),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
        }
        return Ok((d, false));
    }
    let d = std::env::temp_dir().join(format!(
        "zenchef-edge-guard-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&d)?;
    Ok((d, true))
}

/// The TLS client configuration: the box's CA store, ring, TLS 1.2 and
/// 1.3 (what rumqttc's default configuration used before the guard).
fn tls_connector() -> io::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Accepts rumqttc's connections, one at a time: a new one ends the
/// previous (rumqttc holds one connection at a time). A peer that is not
/// this process is turned away.
async fn accept_loop(listener: UnixListener, up: Upstream, tls: Option<TlsConnector>, slot: Slot) {
    let me = std::process::id();
    let mut current: Option<JoinHandle<()>> = None;
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!("the MQTT frame guard cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let pid = stream.peer_cred().ok().and_then(|c| c.pid());
        if pid != Some(me as libc::pid_t) {
            warn!(
                peer_pid = pid.unwrap_or(0),
                "the MQTT frame guard turned away a connection from another process"
            );
            continue;
        }
        if let Some(previous) = current.take() {
            previous.abort();
        }
        let n = {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.0 += 1;
            s.1 = None;
            s.0
        };
        current = Some(tokio::spawn(relay(
            stream,
            up.clone(),
            tls.clone(),
            slot.clone(),
            n,
        )));
    }
}

/// Either side of a relayed connection.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Opens the broker's side: TCP, then TLS when announced.
async fn connect(
    up: &Upstream,
    tls: Option<TlsConnector>,
) -> Result<Pin<Box<dyn Stream>>, UpstreamFailure> {
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((up.host.as_str(), up.port)),
    )
    .await
    .map_err(|_| UpstreamFailure::Io(io::ErrorKind::TimedOut.into()))?
    .map_err(UpstreamFailure::Io)?;
    let Some(tls) = tls else {
        return Ok(Box::pin(tcp));
    };
    let name = rustls::pki_types::ServerName::try_from(up.host.clone())
        .map_err(|e| UpstreamFailure::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let s = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp))
        .await
        .map_err(|_| UpstreamFailure::Tls(io::ErrorKind::TimedOut.into()))?
        .map_err(UpstreamFailure::Tls)?;
    Ok(Box::pin(s))
}

/// One rumqttc connection, relayed until either side ends. A broker-side
/// failure is put in `slot` (if this is still connection `n`) before the
/// client's side closes.
async fn relay(client: UnixStream, up: Upstream, tls: Option<TlsConnector>, slot: Slot, n: u64) {
    let fail = |f: UpstreamFailure| {
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 == n {
            s.1 = Some(f);
        }
    };
    let broker = match connect(&up, tls).await {
        Ok(b) => b,
        Err(f) => {
            debug!("the MQTT frame guard cannot reach the broker: {f:?}");
            fail(f);
            return;
        }
    };
    let (broker_r, mut broker_w) = tokio::io::split(broker);
    let (mut client_r, client_w) = client.into_split();
    let ping = Notify::new();
    let upward = async {
        let mut buf = vec![0u8; BUF];
        let mut frames = Upward::default();
        loop {
            let n = match client_r.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = broker_w.shutdown().await;
                    return None;
                }
                Ok(n) => n,
            };
            if frames.pings_in(&buf[..n]) > 0 {
                ping.notify_one();
            }
            if let Err(e) = broker_w.write_all(&buf[..n]).await {
                return Some(e);
            }
            if let Err(e) = broker_w.flush().await {
                return Some(e);
            }
        }
    };
    let mut reader = BufReader::with_capacity(BUF, broker_r);
    let mut writer = BufWriter::with_capacity(BUF, client_w);
    let downward = filter(&mut reader, &mut writer, &ping);
    let broke = tokio::select! {
        e = upward => e,
        r = downward => match r {
            Ok(()) | Err(Broke::Client) => None,
            Err(Broke::Broker(e)) => Some(e),
        },
    };
    if let Some(e) = broke {
        fail(UpstreamFailure::Io(e));
    }
}

/// How the broker → client relay ended badly.
#[derive(Debug)]
enum Broke {
    /// Reading the broker failed, or it sent a frame that cannot be
    /// framed (a remaining length of more than 4 bytes).
    Broker(io::Error),
    /// Writing to rumqttc failed (it closed its side).
    Client,
}

/// Relays broker → client frames until the broker ends its stream
/// between two frames (`Ok`), reading past the oversized PUBLISHes.
async fn filter<R, W>(r: &mut BufReader<R>, w: &mut W, ping: &Notify) -> Result<(), Broke>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        if r.buffer().is_empty() {
            w.flush().await.map_err(|_| Broke::Client)?;
        }
        let mut b1 = [0u8; 1];
        match r.read(&mut b1).await {
            Ok(0) => {
                let _ = w.flush().await;
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => return Err(Broke::Broker(e)),
        }
        let (len, len_bytes) = remaining_length(r).await?;
        if b1[0] >> 4 == 3 {
            publish(b1[0], len, &len_bytes, r, w, ping).await?;
        } else {
            put(w, &b1).await?;
            put(w, &len_bytes).await?;
            pass(r, w, len).await?;
        }
    }
}

/// Reads an MQTT remaining length: its value and its bytes as sent.
async fn remaining_length<R: AsyncRead + Unpin>(r: &mut R) -> Result<(usize, Vec<u8>), Broke> {
    let mut value = 0usize;
    let mut bytes = Vec::with_capacity(4);
    loop {
        let b = r.read_u8().await.map_err(Broke::Broker)?;
        bytes.push(b);
        value |= ((b & 0x7f) as usize) << (7 * (bytes.len() - 1));
        if b & 0x80 == 0 {
            return Ok((value, bytes));
        }
        if bytes.len() == 4 {
            return Err(Broke::Broker(io::Error::new(
                io::ErrorKind::InvalidData,
                "the broker sent an MQTT frame whose remaining length is longer than 4 bytes",
            )));
        }
    }
}

/// One PUBLISH of `len` bytes after its fixed header (`b1`, `len_bytes`):
/// passed as it is, or read past and replaced by a marker.
async fn publish<R, W>(
    b1: u8,
    len: usize,
    len_bytes: &[u8],
    r: &mut BufReader<R>,
    w: &mut W,
    ping: &Notify,
) -> Result<(), Broke>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let qos = (b1 >> 1) & 3;
    let id_len = if qos > 0 { 2 } else { 0 };
    if qos == 3 || len < 2 {
        // Not a PUBLISH anyone can acknowledge: rumqttc says so.
        put(w, &[b1]).await?;
        put(w, len_bytes).await?;
        return pass(r, w, len).await;
    }
    let topic_len = r.read_u16().await.map_err(Broke::Broker)? as usize;
    if 2 + topic_len + id_len > len {
        put(w, &[b1]).await?;
        put(w, len_bytes).await?;
        put(w, &(topic_len as u16).to_be_bytes()).await?;
        return pass(r, w, len - 2).await;
    }
    let mut topic = vec![0u8; topic_len];
    r.read_exact(&mut topic).await.map_err(Broke::Broker)?;
    let mut id = [0u8; 2];
    r.read_exact(&mut id[..id_len])
        .await
        .map_err(Broke::Broker)?;
    let size = len - 2 - topic_len - id_len;
    let why = match std::str::from_utf8(&topic) {
        Err(_) => Why::TopicNotUtf8,
        Ok(_) if size > MAX_PAYLOAD_BYTES => Why::TooLarge,
        Ok(_) => {
            put(w, &[b1]).await?;
            put(w, len_bytes).await?;
            put(w, &(topic_len as u16).to_be_bytes()).await?;
            put(w, &topic).await?;
            put(w, &id[..id_len]).await?;
            return pass(r, w, size).await;
        }
    };
    // What came before (a PINGRESP, the markers of messages read past
    // just before) goes to rumqttc now, not after this message's
    // megabytes: held back, rumqttc would miss its PINGRESP and drop the
    // connection, and the broker would send these messages again.
    w.flush().await.map_err(|_| Broke::Client)?;
    let mut head = vec![0u8; size.min(KEEP_BYTES)];
    r.read_exact(&mut head).await.map_err(Broke::Broker)?;
    skip(r, w, size - head.len(), ping).await?;
    let topic = lossy_topic(&topic);
    debug!(
        size,
        %topic,
        "read past a POS message ({why:?}); intake gets a marker in its place"
    );
    let body = Marker {
        why,
        size: size as u64,
        head: &head,
    }
    .encode();
    let mut frame = Vec::with_capacity(body.len() + topic.len() + 8);
    frame.push(b1);
    let rest = 2 + topic.len() + id_len + body.len();
    let mut x = rest;
    loop {
        let mut b = (x % 128) as u8;
        x /= 128;
        if x > 0 {
            b |= 0x80;
        }
        frame.push(b);
        if x == 0 {
            break;
        }
    }
    frame.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    frame.extend_from_slice(topic.as_bytes());
    frame.extend_from_slice(&id[..id_len]);
    frame.extend_from_slice(&body);
    put(w, &frame).await?;
    // At once: the next message may be another one to read past.
    w.flush().await.map_err(|_| Broke::Client)
}

/// A topic that is not UTF-8, made readable (and cut to what MQTT allows).
fn lossy_topic(topic: &[u8]) -> String {
    let mut t = String::from_utf8_lossy(topic).into_owned();
    while t.len() > u16::MAX as usize {
        t.pop();
    }
    t
}

async fn put<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> Result<(), Broke> {
    w.write_all(bytes).await.map_err(|_| Broke::Client)
}

/// Copies exactly `n` bytes from the broker to the client.
async fn pass<R, W>(r: &mut BufReader<R>, w: &mut W, mut n: usize) -> Result<(), Broke>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    while n > 0 {
        let buf = r.fill_buf().await.map_err(Broke::Broker)?;
        if buf.is_empty() {
            return Err(Broke::Broker(io::ErrorKind::UnexpectedEof.into()));
        }
        let k = buf.len().min(n);
        w.write_all(&buf[..k]).await.map_err(|_| Broke::Client)?;
        r.consume(k);
        n -= k;
    }
    Ok(())
}

/// Reads and drops exactly `n` bytes from the broker. A PINGREQ of
/// rumqttc (`ping`) meanwhile is answered here, once the broker's next
/// bytes show the link alive: the broker's own PINGRESP comes only after
/// this message, and rumqttc drops a connection whose PINGRESP is later
/// than its next keep-alive (the broker would then send the message
/// again, for ever, on a link too slow to send it within that time). The
/// broker's PINGRESP, when it comes, is one more (rumqttc takes it as
/// such).
async fn skip<R, W>(
    r: &mut BufReader<R>,
    w: &mut W,
    mut n: usize,
    ping: &Notify,
) -> Result<(), Broke>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    let mut owed = false;
    while n > 0 {
        let got = tokio::select! {
            got = async { r.fill_buf().await.map(<[u8]>::len) } => got.map_err(Broke::Broker)?,
            _ = ping.notified(), if !owed => {
                owed = true;
                continue;
            }
        };
        if got == 0 {
            return Err(Broke::Broker(io::ErrorKind::UnexpectedEof.into()));
        }
        let k = got.min(n);
        r.consume(k);
        n -= k;
        if owed {
            owed = false;
            put(w, &PINGRESP).await?;
            w.flush().await.map_err(|_| Broke::Client)?;
        }
    }
    Ok(())
}

/// An MQTT PINGRESP.
const PINGRESP: [u8; 2] = [0xd0, 0x00];

/// rumqttc's frames to the broker, read as a stream to see its PINGREQs.
#[derive(Default)]
struct Upward {
    /// The fixed header read so far (first byte, remaining length bytes).
    header: Vec<u8>,
    /// Bytes of the current frame's body still to come.
    body_left: usize,
}

impl Upward {
    /// Follows `buf` (the next bytes rumqttc sent) and counts the PINGREQs
    /// that end in it.
    fn pings_in(&mut self, mut buf: &[u8]) -> usize {
        let mut pings = 0;
        while !buf.is_empty() {
            if self.body_left > 0 {
                let k = self.body_left.min(buf.len());
                buf = &buf[k..];
                self.body_left -= k;
                continue;
            }
            self.header.push(buf[0]);
            buf = &buf[1..];
            let last = self.header[self.header.len() - 1];
            if self.header.len() == 1 || (last & 0x80 != 0 && self.header.len() < 5) {
                continue;
            }
            let len = self.header[1..]
                .iter()
                .enumerate()
                .fold(0usize, |v, (i, b)| v | (((b & 0x7f) as usize) << (7 * i)));
            if self.header[0] == 0xc0 && len == 0 {
                pings += 1;
            }
            self.body_left = len;
            self.header.clear();
        }
        pings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PUBLISH frame as a broker sends it.
    fn frame(b1: u8, topic: &[u8], id: Option<u16>, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        body.extend_from_slice(topic);
        if let Some(id) = id {
            body.extend_from_slice(&id.to_be_bytes());
        }
        body.extend_from_slice(payload);
        let mut out = vec![b1];
        let mut x = body.len();
        loop {
            let mut b = (x % 128) as u8;
            x /= 128;
            if x > 0 {
                b |= 0x80;
            }
            out.push(b);
            if x == 0 {
                break;
            }
        }
        out.extend_from_slice(&body);
        out
    }

    async fn through(input: Vec<u8>) -> Vec<u8> {
        let mut r = BufReader::with_capacity(BUF, &input[..]);
        let mut out = Vec::new();
        filter(&mut r, &mut out, &Notify::new()).await.unwrap();
        out
    }

    /// Reads one frame (fixed header, remaining length, body) from `r`.
    async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
        let b1 = r.read_u8().await.unwrap();
        let (len, len_bytes) = remaining_length(r).await.unwrap();
        let mut out = vec![b1];
        out.extend_from_slice(&len_bytes);
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await.unwrap();
        out.extend_from_slice(&body);
        out
    }

    /// While the guard reads past a large message, what came before it (a
    /// PINGRESP, the marker of the previous message read past) has already
    /// reached rumqttc: held behind megabytes, rumqttc misses its PINGRESP,
    /// drops the connection, and the broker sends every unacknowledged
    /// message again.
    #[tokio::test]
    async fn nothing_waits_behind_a_message_being_read_past() {
        let (mut broker, guard_in) = tokio::io::duplex(256 * 1024);
        let (guard_out, mut client) = tokio::io::duplex(256 * 1024);
        let relay = tokio::spawn(async move {
            let mut r = BufReader::with_capacity(BUF, guard_in);
            let mut w = BufWriter::with_capacity(BUF, guard_out);
            let _ = filter(&mut r, &mut w, &Notify::new()).await;
        });
        let big = |id| {
            frame(
                0x32,
                b"cashpad/CP/events",
                Some(id),
                &vec![b'x'; 2 * MAX_PAYLOAD_BYTES],
            )
        };
        let (one, two) = (big(1), big(2));
        let wait = Duration::from_secs(5);
        // A PINGRESP, and the first 64 KiB of a large message in the
        // same read.
        let mut start = vec![0xd0, 0x00];
        start.extend_from_slice(&one[..64 * 1024]);
        broker.write_all(&start).await.unwrap();
        let got = tokio::time::timeout(wait, read_frame(&mut client))
            .await
            .expect("the PINGRESP is held behind the message being read past");
        assert_eq!(got, [0xd0, 0x00]);
        // The rest of it, and the beginning of another one: the first one's
        // marker reaches rumqttc before the second is read past.
        broker.write_all(&one[64 * 1024..]).await.unwrap();
        broker.write_all(&two[..64 * 1024]).await.unwrap();
        let got = tokio::time::timeout(wait, read_frame(&mut client))
            .await
            .expect("the marker is held behind the next message");
        assert_eq!(got[0], 0x32);
        assert!(got.windows(MARKER_TAG.len()).any(|w| w == MARKER_TAG));
        relay.abort();
    }

    /// A broker sending a large message slowly (a Wi-Fi link) answers
    /// rumqttc's PINGREQ only after the message; rumqttc drops the
    /// connection when a PINGRESP has not come by its next keep-alive (30 s
    /// later), and the broker sends the message again at the reconnect:
    /// a message longer to send than that is never read past. While the
    /// guard reads past one and the broker's bytes keep coming, it answers
    /// the PINGREQ itself.
    #[tokio::test]
    async fn a_ping_is_answered_while_a_slow_large_message_is_read_past() {
        let broker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = broker.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let guard = Guard::start(
            dir.path(),
            Upstream {
                host: "127.0.0.1".into(),
                port,
                tls: false,
            },
        )
        .unwrap();
        let mut client = UnixStream::connect(guard.path()).await.unwrap();
        let (mut up, _) = broker.accept().await.unwrap();
        let big = frame(
            0x32,
            b"cashpad/CP/events",
            Some(1),
            &vec![b'x'; 2 * MAX_PAYLOAD_BYTES],
        );
        // The broker: 64 KiB at once, then 4 KiB every 20 ms (its answer to
        // the PINGREQ would come after the whole message).
        let sender = tokio::spawn(async move {
            up.write_all(&big[..64 * 1024]).await.unwrap();
            for chunk in big[64 * 1024..].chunks(4096) {
                if up.write_all(chunk).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.write_all(&[0xc0, 0x00]).await.unwrap();
        let mut got = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(3), client.read_exact(&mut got))
            .await
            .expect("no PINGRESP while the message is read past")
            .unwrap();
        assert_eq!(got, [0xd0, 0x00]);
        sender.abort();
    }

    /// rumqttc's frames, cut anywhere: only the PINGREQs are counted.
    #[test]
    fn the_pingreqs_of_the_client_are_seen_across_reads() {
        let publish = frame(0x32, b"cashpad/CP/status", Some(3), &[0xc0; 300]);
        let stream = [
            &[0x10, 0x02, 0x00, 0x04][..],
            &[0xc0, 0x00],
            &publish,
            &[0x40, 0x02, 0x00, 0x07],
            &[0xc0, 0x00],
        ]
        .concat();
        for cut in 0..stream.len() {
            let mut u = Upward::default();
            let n = u.pings_in(&stream[..cut]) + u.pings_in(&stream[cut..]);
            assert_eq!(n, 2, "cut at {cut}");
        }
        let mut u = Upward::default();
        assert_eq!(stream.iter().map(|b| u.pings_in(&[*b])).sum::<usize>(), 2);
    }

    /// Frames at and under the limit pass byte for byte; over it, or with
    /// a topic that is not UTF-8, a marker with the same flags, topic and
    /// packet id takes their place; the frames after them pass.
    #[tokio::test]
    async fn oversized_publishes_are_replaced_and_the_rest_passes() {
        let at_limit = frame(
            0x32,
            b"cashpad/CP/events",
            Some(7),
            &vec![b'a'; MAX_PAYLOAD_BYTES],
        );
        let pingresp = vec![0xd0, 0x00];
        let suback = vec![0x90, 0x03, 0x00, 0x01, 0x01];
        let small = frame(0x30, b"cashpad/CP/events", None, b"{}");
        let mut input = Vec::new();
        for f in [&at_limit, &pingresp, &suback, &small] {
            input.extend_from_slice(f);
        }
        assert_eq!(through(input.clone()).await, input);

        let mut big = br#"{"event_id":"e-big","data":{"order_id":"O-7"#.to_vec();
        big.resize(MAX_PAYLOAD_BYTES + 1, b'x');
        // DUP, QoS 1, retain.
        let over = frame(0x3b, b"cashpad/CP/floorplan", Some(9), &big);
        let bad_topic = frame(0x32, b"cashpad/\xff", Some(10), b"{}");
        let mut input = over.clone();
        input.extend_from_slice(&bad_topic);
        input.extend_from_slice(&small);
        let out = through(input).await;
        let first = frame(
            0x3b,
            b"cashpad/CP/floorplan",
            Some(9),
            &Marker {
                why: Why::TooLarge,
                size: big.len() as u64,
                head: &big[..KEEP_BYTES],
            }
            .encode(),
        );
        let second = frame(
            0x32,
            "cashpad/\u{fffd}".as_bytes(),
            Some(10),
            &Marker {
                why: Why::TopicNotUtf8,
                size: 2,
                head: b"{}",
            }
            .encode(),
        );
        let want = [first, second, small].concat();
        assert_eq!(out, want);
    }

    #[test]
    fn a_marker_reads_back_and_another_nonce_is_not_one() {
        let m = Marker {
            why: Why::TooLarge,
            size: 17 << 20,
            head: b"{\"event_id\"",
        };
        let bytes = m.encode();
        assert_eq!(Marker::decode(&bytes), Some(m));
        let mut forged = bytes.clone();
        forged[MARKER_TAG.len()] ^= 1;
        assert_eq!(Marker::decode(&forged), None);
        assert_eq!(Marker::decode(b"{\"event_id\":\"x\"}"), None);
    }
}
