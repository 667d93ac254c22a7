//! Change notices between nodes: when a node changes what it hosts of a
//! meeting (a leg seated or gone, a stream published), it says so on the
//! Redis channel [`CHANNEL`] once its own cascade state is in Redis, and
//! every other node hosting the meeting brings its relay legs in line at
//! once instead of at its next heartbeat.
//!
//! A notice is a hint, never the state: the state is the meeting's keys
//! in Redis, which the receiver reads. A notice lost while a subscriber is
//! reconnecting (Redis away) costs only time: every node also reconciles
//! every heartbeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{ClusterError, ClusterLink};

/// The Redis pub/sub channel the notices go on.
pub const CHANNEL: &str = "sluice:changes";

/// The longest notice a node writes (two ids of at most 64 and a newline,
/// with room for a node id of the config's limit).
const MAX_NOTICE: usize = 512;

/// The first wait after a failed subscription.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A notice as sent: `{node}\n{meeting}`.
pub fn notice(node: &str, meeting: &str) -> String {
    format!("{node}\n{meeting}")
}

/// Reads a notice: (node, meeting), `None` for anything else (any host on
/// the Redis network may publish on the channel).
pub fn parse_notice(payload: &[u8]) -> Option<(&str, &str)> {
    if payload.len() > MAX_NOTICE {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?;
    let (node, meeting) = text.split_once('\n')?;
    let plain = |s: &str| !s.is_empty() && !s.chars().any(char::is_control);
    (plain(node) && plain(meeting)).then_some((node, meeting))
}

impl ClusterLink {
    /// Tells the other nodes that this node changed what it hosts of
    /// `meeting` (see the module doc).
    pub fn announce(&self, meeting: &str) -> Result<(), ClusterError> {
        let text = notice(&self.settings().node_id, meeting);
        self.run(|c| redis::cmd("PUBLISH").arg(CHANNEL).arg(text).exec(c))
    }
}

/// The subscriber thread: hands `sink` the meeting of every notice from
/// another node, reconnecting with backoff while Redis is away.
#[derive(Debug)]
pub struct ChangeFeed {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ChangeFeed {
    /// Subscribes on its own connection of `link`. `sink` runs on the
    /// feed's thread and must not block (it queues the meeting).
    pub fn start(
        link: Arc<ClusterLink>,
        sink: Box<dyn Fn(String) + Send>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sluice-changes".to_owned())
            .spawn(move || listen(&link, &*sink, &stopped))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (within one read timeout, 500 ms) and joins it.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the cluster change feed thread panicked");
        }
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn listen(link: &ClusterLink, sink: &dyn Fn(String), stop: &AtomicBool) {
    let me = link.settings().node_id.as_str();
    let mut backoff = MIN_BACKOFF;
    while !stop.load(Ordering::Relaxed) {
        let ended = link.connect().map_err(|e| e.to_string()).and_then(|mut c| {
            let mut pubsub = c.as_pubsub();
            pubsub.subscribe(CHANNEL).map_err(|e| e.to_string())?;
            backoff = MIN_BACKOFF;
            while !stop.load(Ordering::Relaxed) {
                match pubsub.get_message() {
                    Ok(message) => {
                        if let Some((node, meeting)) = parse_notice(message.get_payload_bytes())
                            && node != me
                        {
                            sink(meeting.to_owned());
                        }
                    }
                    // The connection's read timeout: look at `stop` again.
                    Err(e) if e.is_timeout() => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(())
        });
        if let Err(reason) = ended {
            tracing::debug!("cluster change feed down, retrying in {backoff:?}: {reason}");
            let until = std::time::Instant::now() + backoff;
            while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{notice, parse_notice};

    #[test]
    fn notices_read_back_and_noise_is_refused() {
        let text = notice("node-a", "standup");
        assert_eq!(parse_notice(text.as_bytes()), Some(("node-a", "standup")));
        for noise in [
            &b""[..],
            b"no newline",
            b"\nmeeting",
            b"node\n",
            b"node\nmeet\ning",
            b"\xff\xfe\nm",
            &[b'a'; 600],
        ] {
            assert_eq!(parse_notice(noise), None, "{noise:?}");
        }
    }
}
