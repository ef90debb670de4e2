//! The tap on the live answer: a capped copy of the body as it streams to the client,
//! delivered to the mirror job once the answer has ended. The client never waits for it.

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

/// The live answer as captured for a comparison.
#[derive(Debug)]
pub struct Captured {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
    /// The body exceeded the cap, or the client went away before its end.
    pub truncated: bool,
}

/// Copies a response body into a capped buffer as it streams past.
pub struct Tap {
    status: u16,
    content_type: Option<String>,
    buf: BytesMut,
    cap: usize,
    truncated: bool,
    tx: Option<oneshot::Sender<Captured>>,
}

impl Tap {
    pub fn new(
        status: u16,
        content_type: Option<String>,
        cap: usize,
        tx: oneshot::Sender<Captured>,
    ) -> Self {
        Tap {
            status,
            content_type,
            buf: BytesMut::new(),
            cap,
            truncated: false,
            tx: Some(tx),
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
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Captured {
                status: self.status,
                content_type: self.content_type.take(),
                body: std::mem::take(&mut self.buf).freeze(),
                truncated: self.truncated || !complete,
            });
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.finish(false);
    }
}
