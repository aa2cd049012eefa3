//! Decisions in batches: requests wait in a bounded queue; one thread takes the first waiting
//! text and every text already waiting (up to the batch size), and has the router score them
//! together (the libtorch side shares a batch's encoder passes out between the cores). A full
//! queue refuses at once (503) instead of growing.
//!
//! How long a batch waits for more: until it holds as many texts as the previous batch did, for
//! at most the batch wait. Under steady concurrent load the clients of one batch send their next
//! texts within a millisecond or two of their answers; without the wait, the first of them would
//! go alone and the rest in the next batch, and half the batches would be small (on two cores at
//! concurrency 32, 18 of 46 batches held 8 texts or fewer). A lone client (the previous batch
//! held one text) never waits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{BatchSettings, Decide, RouterInfo};

/// What one text gets back: its scores, with the router that gave them.
pub type Scored = Result<(Vec<f64>, Arc<RouterInfo>), String>;

struct Job {
    text: String,
    reply: tokio::sync::oneshot::Sender<Scored>,
}

/// The router in use and a description of it, swapped together on reload.
pub struct Slot {
    pub decider: Box<dyn Decide>,
    pub info: Arc<RouterInfo>,
}

/// The queue's sending side; [`Batcher::close`] (or dropping every clone) ends the batching
/// thread once the batch it is scoring is done.
#[derive(Clone)]
pub struct Batcher {
    sender: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    pub slot: Arc<Mutex<Slot>>,
}

/// Why a text was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Full,
    Closed,
}

impl Batcher {
    /// Start the batching thread over `decider` (described by `info`); `observe` is told each batch's size.
    pub fn start(
        decider: Box<dyn Decide>,
        info: Arc<RouterInfo>,
        settings: &BatchSettings,
        observe: impl Fn(usize) + Send + 'static,
    ) -> (Batcher, std::thread::JoinHandle<()>) {
        let (sender, receiver) = std::sync::mpsc::sync_channel(settings.queue);
        let slot = Arc::new(Mutex::new(Slot { decider, info }));
        let depth = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let worker = {
            let (slot, depth, closed) = (slot.clone(), depth.clone(), closed.clone());
            let (max_size, wait) = (settings.max_size, Duration::from_micros(settings.max_wait_us));
            std::thread::Builder::new()
                .name("routerdc-batch".into())
                .spawn(move || run(&receiver, &slot, &depth, &closed, max_size, wait, &observe))
                .unwrap_or_else(|error| panic!("cannot start the batching thread: {error}"))
        };
        (Batcher { sender, depth, closed, slot }, worker)
    }

    /// Refuse new texts and let the thread end (the process must not exit while libtorch is
    /// scoring a batch on it).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Queue `text`; the receiver gets its scores.
    pub fn submit(&self, text: String) -> Result<tokio::sync::oneshot::Receiver<Scored>, Refused> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Refused::Closed);
        }
        let (reply, receiver) = tokio::sync::oneshot::channel();
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(Job { text, reply }) {
            Ok(()) => Ok(receiver),
            Err(error) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(match error {
                    TrySendError::Full(_) => Refused::Full,
                    TrySendError::Disconnected(_) => Refused::Closed,
                })
            }
        }
    }

    /// Texts waiting or being scored.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

fn run(
    receiver: &Receiver<Job>,
    slot: &Mutex<Slot>,
    depth: &AtomicUsize,
    closed: &AtomicBool,
    max_size: usize,
    wait: Duration,
    observe: &dyn Fn(usize),
) {
    // The previous batch's size: how many texts a batch waits for (see the module's docs).
    let mut expected = 1;
    loop {
        let first = match receiver.recv_timeout(Duration::from_millis(50)) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) if !closed.load(Ordering::SeqCst) => continue,
            Err(_) => break,
        };
        let deadline = Instant::now() + wait;
        let mut jobs = vec![first];
        while jobs.len() < max_size {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || jobs.len() >= expected {
                        break;
                    }
                    match receiver.recv_timeout(left) {
                        Ok(job) => jobs.push(job),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
        }
        // Requests whose client has gone are not scored.
        let queued = jobs.len();
        expected = queued;
        jobs.retain(|job| !job.reply.is_closed());
        depth.fetch_sub(queued - jobs.len(), Ordering::Relaxed);
        if jobs.is_empty() {
            continue;
        }
        observe(jobs.len());
        let texts: Vec<&str> = jobs.iter().map(|job| job.text.as_str()).collect();
        let (result, info) = match slot.lock() {
            Ok(mut slot) => {
                let info = slot.info.clone();
                (slot.decider.scores(&texts).map_err(|error| error.to_string()), info)
            }
            Err(_) => {
                for job in jobs {
                    depth.fetch_sub(1, Ordering::Relaxed);
                    let _ = job.reply.send(Err("the router failed earlier (a panic); restart the service".into()));
                }
                continue;
            }
        };
        // Counted out before anyone hears back, so a client that has its answer sees a depth
        // without its own text.
        let count = jobs.len();
        depth.fetch_sub(count, Ordering::Relaxed);
        match result {
            Ok(scores) if scores.len() == count => {
                for (job, scores) in jobs.into_iter().zip(scores) {
                    let _ = job.reply.send(Ok((scores, info.clone())));
                }
            }
            Ok(scores) => {
                let message = format!("the router gave {} score rows for {count} texts", scores.len());
                for job in jobs {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
            Err(message) => {
                for job in jobs {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores each text by its length; records the batch sizes it saw. Each batch takes `pause`;
    /// the first one, when there is a gate, says it has started and waits for the gate to open.
    struct Lengths {
        info: RouterInfo,
        batches: Arc<Mutex<Vec<usize>>>,
        pause: Duration,
        gate: Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>,
    }

    impl Decide for Lengths {
        fn info(&self) -> &RouterInfo {
            &self.info
        }
        fn scores(&mut self, texts: &[&str]) -> crate::Result<Vec<Vec<f64>>> {
            if let Some((started, gate)) = self.gate.take() {
                let _ = started.send(());
                let _ = gate.recv();
            }
            std::thread::sleep(self.pause);
            self.batches.lock().unwrap().push(texts.len());
            Ok(texts.iter().map(|text| vec![text.len() as f64, 0.0]).collect())
        }
    }

    fn lengths(pause: Duration) -> (Box<dyn Decide>, Arc<Mutex<Vec<usize>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        (Box::new(Lengths { info: info(), batches: batches.clone(), pause, gate: None }), batches)
    }

    fn info() -> RouterInfo {
        RouterInfo {
            kind: "test".into(),
            models: vec!["a".into(), "b".into()],
            costs: None,
            probabilities: false,
            cost_rate: 0.0,
        }
    }

    #[test]
    fn waiting_texts_share_a_batch_and_each_gets_its_own_scores() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (open, gate) = std::sync::mpsc::channel();
        let started = std::sync::mpsc::channel().0;
        let decider =
            Lengths { info: info(), batches: batches.clone(), pause: Duration::ZERO, gate: Some((started, gate)) };
        let settings = BatchSettings { max_size: 8, max_wait_us: 0, queue: 64 };
        let (batcher, worker) = Batcher::start(Box::new(decider), Arc::new(info()), &settings, |_| {});
        // The first batch holds the thread until every text is in; the others wait and go in
        // batches of ≤ 8 (whatever the machine's load, so the test cannot race).
        let receivers: Vec<_> = (0..11).map(|n| batcher.submit("x".repeat(n + 1)).unwrap()).collect();
        open.send(()).unwrap();
        for (n, receiver) in receivers.into_iter().enumerate() {
            let (scores, _) = receiver.blocking_recv().unwrap().unwrap();
            assert_eq!(scores, vec![(n + 1) as f64, 0.0]);
        }
        let seen = batches.lock().unwrap().clone();
        assert_eq!(seen.iter().sum::<usize>(), 11);
        assert!(seen.iter().all(|&size| size <= 8) && seen.len() < 11, "{seen:?}");
        assert_eq!(batcher.depth(), 0);
        drop(batcher);
        worker.join().unwrap();
    }

    #[test]
    fn a_batch_waits_for_as_many_texts_as_the_last_one_held() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (open, gate) = std::sync::mpsc::channel();
        let (started, has_started) = std::sync::mpsc::channel();
        let decider =
            Lengths { info: info(), batches: batches.clone(), pause: Duration::ZERO, gate: Some((started, gate)) };
        let settings = BatchSettings { max_size: 8, max_wait_us: 1_000_000, queue: 64 };
        let (batcher, worker) = Batcher::start(Box::new(decider), Arc::new(info()), &settings, |_| {});
        let answer = |receiver: tokio::sync::oneshot::Receiver<Scored>| receiver.blocking_recv().unwrap().unwrap();
        // The first text goes alone (no batch before it) and holds the thread; two more wait for
        // it and go together.
        let first = batcher.submit("a".into()).unwrap();
        has_started.recv().unwrap();
        let waiting: Vec<_> = ["bb", "ccc"].iter().map(|text| batcher.submit((*text).into()).unwrap()).collect();
        open.send(()).unwrap();
        std::iter::once(first).chain(waiting).for_each(|receiver| drop(answer(receiver)));
        // Now a batch waits (up to a second) for a second text, sent 200 ms after the first.
        let first = batcher.submit("d".into()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let second = batcher.submit("ee".into()).unwrap();
        drop((answer(first), answer(second)));
        // A text alone waits the whole second for a second one; the next lone text does not wait.
        let started = Instant::now();
        drop(answer(batcher.submit("f".into()).unwrap()));
        assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
        let started = Instant::now();
        drop(answer(batcher.submit("g".into()).unwrap()));
        assert!(started.elapsed() < Duration::from_millis(900), "a lone client waited {:?}", started.elapsed());
        assert_eq!(*batches.lock().unwrap(), vec![1, 2, 2, 1, 1]);
        drop(batcher);
        worker.join().unwrap();
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let (decider, _) = lengths(Duration::from_millis(200));
        let settings = BatchSettings { max_size: 1, max_wait_us: 0, queue: 2 };
        let (batcher, _worker) = Batcher::start(decider, Arc::new(info()), &settings, |_| {});
        let mut refused = 0;
        let mut kept = Vec::new();
        for _ in 0..6 {
            match batcher.submit("x".into()) {
                Ok(receiver) => kept.push(receiver),
                Err(Refused::Full) => refused += 1,
                Err(Refused::Closed) => panic!("closed"),
            }
        }
        // One being scored, two waiting: the rest refused.
        assert!(refused >= 2, "{refused}");
        for receiver in kept {
            assert!(receiver.blocking_recv().unwrap().is_ok());
        }
    }
}
