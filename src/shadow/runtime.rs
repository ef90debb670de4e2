//! The shadow side's own runtime: one thread at a low CPU priority, fed in batches that
//! start once the live side is quiet.
//!
//! Mirrors queue in [`Deferred`]; the shadow thread is woken once per batch and starts it
//! once no live request is in flight (or after [`MAX_DEFER`], so that a saturated proxy
//! still compares). When the CPU is short the live path gets it, and mirrors pile up
//! against `max_in_flight`, beyond which they are dropped and counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

/// Runs one mirror's whole work on the shadow runtime (deferred until the live side is
/// quiet), or on the caller's runtime when the shadow thread could not be started.
pub(crate) fn submit(job: Job) {
    match shadow_runtime() {
        Some(_) => DEFERRED.submit(job),
        None => drop(tokio::spawn(job)),
    }
}

/// A mirror's whole work, boxed once.
pub(crate) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The longest a batch of mirrors waits for the live side to go quiet.
const MAX_DEFER: Duration = Duration::from_millis(10);

/// At most this many mirrors run at once on the shadow thread; the rest of a batch waits
/// (still holding its `max_in_flight` place). Without it, a large `max_in_flight` and a
/// backlog let one batch open hundreds of candidate connections at the same moment.
const MAX_RUNNING: usize = 512;

/// Mirrors waiting for the shadow thread, which starts them once no live request is in
/// flight (or after [`MAX_DEFER`], so that a saturated proxy still compares).
///
/// Handing each mirror to the shadow thread as it comes woke that thread once for the
/// mirror and again for its live answer: two futex calls on the live thread per request,
/// and on a busy CPU the shadow thread's work cut in between live requests. Queued here,
/// the thread is woken once per batch, and by the time it starts a mirror the live answer
/// is usually complete, so delivering it wakes no one.
struct Deferred {
    jobs: Mutex<Vec<Job>>,
    /// A batch has begun (the queue was empty).
    arrived: Notify,
    /// The last live request in flight has finished while the shadow thread waited.
    quiet: Notify,
    /// Live requests in flight while mirroring is on ([`LiveRequest`]).
    live: AtomicUsize,
    /// The shadow thread waits for `quiet`.
    waiting: AtomicBool,
}

static DEFERRED: Deferred = Deferred::new();

impl Deferred {
    const fn new() -> Self {
        Deferred {
            jobs: Mutex::new(Vec::new()),
            arrived: Notify::const_new(),
            quiet: Notify::const_new(),
            live: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
        }
    }

    fn live_started(&self) {
        self.live.fetch_add(1, Ordering::SeqCst);
    }

    fn live_finished(&self) {
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 && self.waiting.load(Ordering::SeqCst) {
            self.quiet.notify_one();
        }
    }

    fn submit(&self, job: Job) {
        let first = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.push(job);
            jobs.len() == 1
        };
        if first {
            self.arrived.notify_one();
        }
    }

    /// The shadow thread's loop: waits for a batch, then for the live side to be quiet,
    /// then starts the batch's mirrors.
    async fn run(&'static self) {
        let running = Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING));
        loop {
            self.arrived.notified().await;
            if self.live.load(Ordering::SeqCst) > 0 {
                self.waiting.store(true, Ordering::SeqCst);
                // Checked again after announcing the wait: a live request finishing in
                // between saw `waiting` false and notified no one.
                if self.live.load(Ordering::SeqCst) > 0 {
                    let _ = tokio::time::timeout(MAX_DEFER, self.quiet.notified()).await;
                }
                self.waiting.store(false, Ordering::SeqCst);
            }
            let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()));
            for job in jobs {
                let Ok(slot) = running.clone().acquire_owned().await else {
                    return; // never closed
                };
                drop(tokio::spawn(async move {
                    job.await;
                    drop(slot);
                    // Step aside after each mirror: a live request waiting for this CPU
                    // runs now, not at the end of the shadow thread's time slice, which at
                    // saturation holds several mirrors' work.
                    std::thread::yield_now();
                }));
            }
        }
    }
}

/// Marks one live request in flight while mirroring is on, until dropped.
pub(crate) struct LiveRequest(());

impl LiveRequest {
    pub(crate) fn start() -> Self {
        DEFERRED.live_started();
        LiveRequest(())
    }
}

impl Drop for LiveRequest {
    fn drop(&mut self) {
        DEFERRED.live_finished();
    }
}

/// The runtime shadow work runs on: one thread, started on first use, at a low CPU
/// priority ([`lower_priority`]), so that on a busy CPU the live path is served first. `None` if the
/// thread could not be started (then shadow work shares the caller's runtime).
pub(crate) fn shadow_runtime() -> Option<&'static tokio::runtime::Handle> {
    static HANDLE: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let started = std::thread::Builder::new()
                .name("switchyard-shadow".into())
                .spawn(move || {
                    lower_priority();
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => {
                            let _ = tx.send(Some(rt.handle().clone()));
                            rt.block_on(DEFERRED.run());
                        }
                        Err(e) => {
                            tracing::warn!(target: "switchyard::shadow", "no shadow runtime: {e}");
                            let _ = tx.send(None);
                        }
                    }
                });
            match started {
                Ok(_) => rx.recv().ok().flatten(),
                Err(e) => {
                    tracing::warn!(target: "switchyard::shadow", "no shadow thread: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// Lowers the calling thread's CPU priority (on Linux, SCHED_OTHER at nice 9: about an
/// eighth of a CPU against each busy normal thread). Low enough that live requests are
/// served first on a saturated CPU; not the lowest, and not `SCHED_IDLE`, because on a
/// machine kept busy by something else (a model server beside the proxy) shadow work
/// would starve, and a `shadow_agreement` gate without samples holds a rollout forever.
pub(crate) fn lower_priority() {
    use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};
    let low = ThreadPriorityValue::try_from(SHADOW_PRIORITY).map(ThreadPriority::Crossplatform);
    let set = low
        .map_err(|e| e.to_string())
        .and_then(|p| set_current_thread_priority(p).map_err(|e| format!("{e:?}")));
    if let Err(e) = set {
        tracing::warn!(target: "switchyard::shadow", "could not lower the shadow thread's priority: {e}");
    }
}

/// The shadow thread's priority on thread-priority's 0–99 scale (25 is nice 9 on Linux).
const SHADOW_PRIORITY: u8 = 25;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use tokio::time::Instant;

    /// A deferred queue of its own, its loop running; jobs count into the returned counter.
    fn queue() -> (&'static Deferred, Arc<AtomicU32>) {
        let d: &'static Deferred = Box::leak(Box::new(Deferred::new()));
        tokio::spawn(d.run());
        (d, Arc::new(AtomicU32::new(0)))
    }

    fn job(done: &Arc<AtomicU32>) -> Job {
        let done = done.clone();
        Box::pin(async move {
            done.fetch_add(1, Ordering::SeqCst);
        })
    }

    /// Lets the loop and its jobs run without time passing.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn mirrors_start_once_no_live_request_is_in_flight() {
        let (d, done) = queue();
        d.live_started();
        d.live_started();
        d.submit(job(&done));
        d.submit(job(&done));
        settle().await;
        assert_eq!(
            done.load(Ordering::SeqCst),
            0,
            "started beside live requests"
        );
        d.live_finished();
        settle().await;
        assert_eq!(
            done.load(Ordering::SeqCst),
            0,
            "one live request still in flight"
        );
        d.live_finished();
        settle().await;
        assert_eq!(done.load(Ordering::SeqCst), 2);
        // Quiet already: the next one starts at once.
        d.submit(job(&done));
        settle().await;
        assert_eq!(done.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_proxy_never_quiet_still_starts_its_mirrors_after_max_defer() {
        let (d, done) = queue();
        d.live_started();
        let submitted = Instant::now();
        d.submit(job(&done));
        while done.load(Ordering::SeqCst) == 0 {
            assert!(
                submitted.elapsed() < Duration::from_secs(1),
                "never started"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let waited = submitted.elapsed();
        assert!(
            waited >= MAX_DEFER && waited <= MAX_DEFER + Duration::from_millis(2),
            "{waited:?}"
        );
    }
}
