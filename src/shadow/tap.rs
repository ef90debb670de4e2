//! The tap on the live answer: a capped copy of the body as it streams to the client,
//! delivered once the answer has ended, to the mirror job (for the comparison) or to the
//! observers' queue (a sampled request). The client never waits for it.

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::observed::{self, Captured, Pending};

/// Where a tap delivers its copy.
pub enum Delivery {
    /// To the mirror job, which compares it with the shadow's answer.
    Mirror(oneshot::Sender<Captured>),
    /// To the observers' queue, for a sampled request that was not mirrored.
    Observe(Box<Pending>),
}

/// Copies a response body into a capped buffer as it streams past.
pub struct Tap {
    status: u16,
    content_type: Option<String>,
    buf: BytesMut,
    cap: usize,
    truncated: bool,
    to: Option<Delivery>,
}

impl Tap {
    pub fn new(status: u16, content_type: Option<String>, cap: usize, to: Delivery) -> Self {
        Tap {
            status,
            content_type,
            buf: BytesMut::new(),
            cap,
            truncated: false,
            to: Some(to),
        }
    }

    /// Copies one chunk of the answer, or gives up the copy once it would pass the cap.
    pub fn data(&mut self, chunk: &Bytes) {
        if self.truncated {
            return;
        }
        if self.buf.len() + chunk.len() > self.cap {
            self.truncated = true;
            self.buf = BytesMut::new();
        } else {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Delivers the capture of a body that ended before anything was polled.
    pub fn finish_complete(&mut self) {
        self.finish(true);
    }

    /// Delivers the capture; `complete` is false when the body failed or was dropped early.
    pub fn finish(&mut self, complete: bool) {
        let Some(to) = self.to.take() else {
            return;
        };
        let captured = Captured {
            status: self.status,
            content_type: self.content_type.take(),
            body: std::mem::take(&mut self.buf).freeze(),
            truncated: self.truncated || !complete,
            ended: Instant::now(),
        };
        match to {
            Delivery::Mirror(tx) => {
                let _ = tx.send(captured);
            }
            Delivery::Observe(pending) => observed::submit(pending, captured, None),
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.finish(false);
    }
}
