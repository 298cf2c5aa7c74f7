//! systemd's service notification protocol (`sd_notify(3)`), in-tree.
//!
//! A service of `Type=notify` finds a Unix datagram socket in
//! `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace) and sends
//! newline-separated `KEY=value` assignments to it, one datagram per message:
//! `READY=1` once the device is live, `STATUS=…` for `systemctl status`,
//! `STOPPING=1` when it starts to stop. No libsystemd: the protocol is one
//! `sendto`.
//!
//! Only a foreground server notifies: the CLI [`install`]s a notifier from
//! the environment; without one every call here is a no-op (a background
//! server or a plain shell never talks to systemd).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::OnceLock;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{NOTIFY_SOCKET}={0:?} is not a socket address this server understands")]
    Address(String),
    #[error("cannot reach {NOTIFY_SOCKET} {socket}")]
    Send {
        socket: String,
        #[source]
        source: std::io::Error,
    },
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    name: String,
    address: SocketAddr,
    socket: UnixDatagram,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, `None` when it is unset or empty.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var(NOTIFY_SOCKET) {
            Ok(value) if !value.is_empty() => Notifier::new(&value).map(Some),
            Ok(_) => Ok(None),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(raw)) => {
                Err(NotifyError::Address(raw.to_string_lossy().into_owned()))
            }
        }
    }

    /// A notifier for the socket `name` (a path, or `@abstract`).
    pub fn new(name: &str) -> Result<Notifier, NotifyError> {
        let address = if let Some(abstract_name) = name.strip_prefix('@') {
            abstract_address(abstract_name.as_bytes())
                .map_err(|_| NotifyError::Address(name.to_string()))?
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(Path::new(name))
                .map_err(|_| NotifyError::Address(name.to_string()))?
        } else {
            // vsock: and anything else systemd may grow.
            return Err(NotifyError::Address(name.to_string()));
        };
        let socket = UnixDatagram::unbound().map_err(|source| NotifyError::Send {
            socket: name.to_string(),
            source,
        })?;
        Ok(Notifier {
            name: name.to_string(),
            address,
            socket,
        })
    }

    /// Send one message (`KEY=value` lines).
    pub fn send(&self, message: &str) -> Result<(), NotifyError> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.address)
            .map(|_| ())
            .map_err(|source| NotifyError::Send {
                socket: self.name.clone(),
                source,
            })
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_name: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::ErrorKind::Unsupported.into())
}

static NOTIFIER: OnceLock<Notifier> = OnceLock::new();

/// Make `notifier` the process's (the first one wins).
pub fn install(notifier: Notifier) {
    let _ = NOTIFIER.set(notifier);
}

/// Whether a notifier is installed.
pub fn enabled() -> bool {
    NOTIFIER.get().is_some()
}

/// Send `message` through the installed notifier, if any. A failure is
/// logged, never fatal: the device serves whether or not systemd hears it.
pub fn send(message: &str) {
    if let Some(notifier) = NOTIFIER.get()
        && let Err(err) = notifier.send(message)
    {
        log::warn!("{}", crate::error_chain(&err));
    }
}

/// The device is live: `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}"));
}

/// The server begins to stop: `STOPPING=1` with a status line.
pub fn stopping(status: &str) {
    send(&format!("STOPPING=1\nSTATUS={status}"));
}

/// A status line for `systemctl status`.
pub fn status(status: &str) {
    send(&format!("STATUS={status}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("receive");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_datagrams_to_a_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::new(path.to_str().expect("utf-8")).expect("notifier");
        notifier.send("READY=1\nSTATUS=live").expect("send");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=live");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_datagrams_to_an_abstract_socket() {
        let name = format!("pmem-stack-test-{}", std::process::id());
        let address = abstract_address(name.as_bytes()).expect("address");
        let listener = UnixDatagram::bind_addr(&address).expect("bind");
        let notifier = Notifier::new(&format!("@{name}")).expect("notifier");
        notifier.send("STOPPING=1").expect("send");
        assert_eq!(receive(&listener), "STOPPING=1");
    }

    #[test]
    fn refuses_addresses_it_cannot_use() {
        for bad in ["relative/path", "vsock:2:1234"] {
            assert!(
                matches!(Notifier::new(bad), Err(NotifyError::Address(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let notifier = Notifier::new("/nonexistent/pmem-stack/notify").expect("notifier");
        let err = notifier.send("READY=1").expect_err("no listener");
        assert!(err.to_string().contains("/nonexistent"), "{err}");
    }
}
