//! A packet worker whose handler panics is logged exactly once per panic,
//! with its cause and place, and nothing else is printed for it (the
//! default panic hook stays quiet on supervised workers). The fault is
//! injected by the tests' own handler on the public `PacketHandler`
//! trait (`support::fragile`); production handlers have no such switch.

mod support;

use std::io::Write;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::metrics::MetricsHub;
use sluice::net::{DataPlane, DataPlaneOptions, IoMode};
use sluice::relay::empty_cell;
use support::fragile::{FragileEcho, echoes};

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
    let plane = DataPlane::start(&opts, empty_cell(), &metrics, |_, _| FragileEcho).unwrap();
    let to = plane.local_addr();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(echoes(&c, to));
    c.send_to(b"panic", to).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(echoes(&c, to), "the worker answers again after the panic");
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
    assert!(lines[0].contains("support/fragile.rs"), "{text}");
    assert!(lines[0].contains("ERROR"), "{text}");
    let scrape = metrics.render(&Default::default());
    assert!(
        scrape.contains("sluice_worker_restarts_total{worker=\"0\"} 1"),
        "{scrape}"
    );
}
