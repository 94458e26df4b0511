//! The step loop in real time: a dedicated thread owns the [`LiveEngine`] and sleeps through each step.
//!
//! HTTP handlers send [`Submission`]s over a channel; the thread queues them, runs a step, sleeps
//! until the step's end (its cost-model duration divided by the time scale, measured from the end
//! of the previous step so that sleeps do not drift), and sends each client its [`Chunk`]s.
//! An idle engine's step starts when the waking request was read, so the twin's own parsing takes
//! no simulated time.
//! Requests whose client went away are aborted between steps, as SGLang aborts them.
//! [`Counters`] carry what `/metrics` reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::engine::{Chunk, LiveEngine};
use super::error::ServeError;
use crate::sim::cluster::StepTimer;

/// A request handed to the step loop.
#[derive(Debug)]
pub struct Submission {
    /// Its id (unique for the server's lifetime).
    pub request_id: u64,
    /// Input tokens.
    pub isl: u64,
    /// Output tokens.
    pub osl: u64,
    /// Where its chunks go; dropping the receiver aborts the request.
    pub sink: UnboundedSender<Chunk>,
    /// When its HTTP request had been read, before it was parsed.
    pub received_at: Instant,
}

/// Counters and gauges for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests received.
    pub requests_total: AtomicU64,
    /// Input tokens received.
    pub prompt_tokens_total: AtomicU64,
    /// Output tokens generated.
    pub generation_tokens_total: AtomicU64,
    /// Requests running after the latest step was formed.
    pub running: AtomicU64,
    /// Requests waiting after the latest step was formed.
    pub waiting: AtomicU64,
    /// Steps run.
    pub steps_total: AtomicU64,
}

/// Starts the step loop on its own thread; it ends when every sender of the returned channel is gone
/// and no request is left.
pub fn spawn_step_loop<T: StepTimer + Send + 'static>(
    engine: LiveEngine<T>,
    time_scale: f64,
    counters: Arc<Counters>,
) -> Result<Sender<Submission>, ServeError> {
    if !(time_scale.is_finite() && time_scale > 0.0) {
        return Err(ServeError::BadValue {
            field: "--time-scale".into(),
            value: time_scale.to_string(),
            expected: "a positive factor (simulated seconds per wall-clock second)".into(),
        });
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sglsim-step-loop".into())
        .spawn(move || StepLoop::new(engine, time_scale, counters).run(receiver))
        .map_err(|e| ServeError::Runtime(format!("cannot start the step loop: {e}")))?;
    Ok(sender)
}

struct StepLoop<T: StepTimer> {
    engine: LiveEngine<T>,
    time_scale: f64,
    counters: Arc<Counters>,
    sinks: BTreeMap<u64, UnboundedSender<Chunk>>,
}

impl<T: StepTimer> StepLoop<T> {
    fn new(engine: LiveEngine<T>, time_scale: f64, counters: Arc<Counters>) -> StepLoop<T> {
        StepLoop {
            engine,
            time_scale,
            counters,
            sinks: BTreeMap::new(),
        }
    }

    fn accept(&mut self, submission: Submission) {
        // A request that cannot be queued drops its sink: the client sees the stream end.
        if self.engine.submit(submission.request_id, submission.isl, submission.osl).is_ok() {
            self.sinks.insert(submission.request_id, submission.sink);
        }
    }

    /// Takes every submission already waiting; `false` when the channel is closed.
    fn drain(&mut self, receiver: &Receiver<Submission>) -> bool {
        loop {
            match receiver.try_recv() {
                Ok(submission) => self.accept(submission),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn run(mut self, receiver: Receiver<Submission>) {
        let mut open = true;
        let mut step_start = Instant::now();
        let mut busy = false;
        loop {
            if !busy {
                if !open {
                    return;
                }
                let idle_since = step_start;
                let received_at = match receiver.recv() {
                    Ok(submission) => {
                        let received_at = submission.received_at;
                        self.accept(submission);
                        received_at
                    }
                    Err(_) => return,
                };
                open = self.drain(&receiver);
                // The twin's own parsing and hand-over take no simulated time: an idle engine starts
                // when the request was read (not before it went idle), which keeps that overhead out
                // of TTFT even when --time-scale magnifies it.
                step_start = received_at.max(idle_since).min(Instant::now());
            }
            let Some(duration_s) = self.engine.start_step() else {
                busy = false;
                self.publish_queues();
                continue;
            };
            busy = true;
            self.publish_queues();
            self.counters.steps_total.fetch_add(1, Ordering::Relaxed);
            let step_end = step_start + Duration::from_secs_f64(duration_s / self.time_scale);
            let now = Instant::now();
            if step_end > now {
                std::thread::sleep(step_end - now);
            }
            // Requests that came during the step arrive now, before its results are applied.
            open &= self.drain(&receiver);
            let chunks = self.engine.finish_step();
            self.deliver(chunks);
            self.abort_abandoned();
            step_start = step_end;
        }
    }

    fn deliver(&mut self, chunks: Vec<Chunk>) {
        let mut generated = 0;
        for chunk in chunks {
            generated += chunk.n_tokens;
            let Some(sink) = self.sinks.get(&chunk.request_id) else { continue };
            let sent = sink.send(chunk).is_ok();
            if chunk.finished {
                self.sinks.remove(&chunk.request_id);
            } else if !sent {
                self.sinks.remove(&chunk.request_id);
                self.engine.abort(chunk.request_id);
            }
        }
        self.counters.generation_tokens_total.fetch_add(generated, Ordering::Relaxed);
    }

    fn abort_abandoned(&mut self) {
        let abandoned: Vec<u64> = self.sinks.iter().filter(|(_, sink)| sink.is_closed()).map(|(&id, _)| id).collect();
        for request_id in abandoned {
            self.sinks.remove(&request_id);
            self.engine.abort(request_id);
        }
    }

    fn publish_queues(&self) {
        let counts = self.engine.queue_counts();
        self.counters.running.store(counts.running, Ordering::Relaxed);
        self.counters.waiting.store(counts.waiting, Ordering::Relaxed);
    }
}
