//! A packet worker whose handler panics is logged exactly once per panic,
//! with its cause and place, and nothing else is printed for it (the
//! default panic hook stays quiet on supervised workers). The fault is
//! injected by this test's own handler on the public `PacketHandler`
//! trait; production handlers have no such switch.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice::metrics::MetricsHub;
use sluice::net::{DataPlane, DataPlaneOptions, IoMode, PacketHandler};
use sluice::relay::{MeetingMode, Path, RoutingSnapshot, Transmits, empty_cell};

/// Echoes each datagram; panics on `panic`.
struct Fragile;

impl PacketHandler for Fragile {
    fn handle_datagram(
        &mut self,
        _snapshot: &RoutingSnapshot,
        from: Path,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        assert_ne!(&packet[..len], b"panic", "injected fault");
        let slot = out.slot();
        slot[..len].copy_from_slice(&packet[..len]);
        out.commit(len, from, MeetingMode::E2ee);
    }
}

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn echo(c: &UdpSocket, to: SocketAddr) -> bool {
    c.send_to(b"hello", to).unwrap();
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok((n, _)) = c.recv_from(&mut buf) {
            return &buf[..n] == b"hello";
        }
    }
    false
}

#[test]
fn a_worker_panic_is_logged_once_with_its_cause_and_place() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let metrics = MetricsHub::new("test");
    let opts = DataPlaneOptions {
        workers: 1,
        io: IoMode::Auto,
        pin_cores: false,
        ..DataPlaneOptions::new("127.0.0.1:0".parse().unwrap())
    };
    let plane = DataPlane::start(&opts, empty_cell(), &metrics, |_, _| Fragile).unwrap();
    let to = plane.local_addr();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(echo(&c, to));
    c.send_to(b"panic", to).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(echo(&c, to), "the worker answers again after the panic");
    plane.shutdown();

    let text = String::from_utf8_lossy(
        &captured
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("panicked")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("injected fault"), "{text}");
    assert!(lines[0].contains("worker_restart_log.rs"), "{text}");
    assert!(lines[0].contains("ERROR"), "{text}");
    let scrape = metrics.render(&Default::default());
    assert!(
        scrape.contains("sluice_worker_restarts_total{worker=\"0\"} 1"),
        "{scrape}"
    );
}
