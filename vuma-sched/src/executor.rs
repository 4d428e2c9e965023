//! Async execution on tokio: per-device priority queues with backpressure, cancellation
//! before start, failure isolation, and run times fed back into the scheduler's history.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use vuma_core::{DeviceId, Error};

use crate::error::{SchedError, SubmitError};
use crate::scheduler::{Choice, Scheduler};
use crate::workload::{NoResidency, Priority, Residency, WorkloadProfile};

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;

/// Where a submitted job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting in its device's queue (it can still be cancelled).
    Queued,
    /// Started (running or finished).
    Started,
    /// Cancelled before it started; it never runs.
    Cancelled,
}

type Erased = Box<dyn FnOnce(DeviceId) + Send>;

struct Entry {
    priority: Priority,
    seq: u64,
    state: Arc<AtomicU8>,
    run: Erased,
    /// A place in the device's bounded queue, given back when the job leaves the queue.
    _slot: OwnedSemaphorePermit,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    /// Max-heap order: higher priority first, then the earlier submission (FIFO).
    fn cmp(&self, o: &Self) -> CmpOrdering {
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.seq.cmp(&self.seq))
    }
}

struct DeviceQueue {
    device: DeviceId,
    heap: Mutex<BinaryHeap<Entry>>,
    notify: Notify,
    slots: Arc<Semaphore>,
    closed: AtomicBool,
}

impl DeviceQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, BinaryHeap<Entry>> {
        self.heap.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps a job's estimate in the scheduler's backlog of its device until dropped (after the
/// job ran, or when it is cancelled or discarded).
struct Backlog {
    sched: Arc<Scheduler>,
    device: DeviceId,
    priority: Priority,
    est_s: f64,
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.sched
            .queue_finished(self.device, self.priority, self.est_s);
    }
}

/// Runs jobs on the devices the [`Scheduler`] chooses: one priority queue per device
/// (higher priority first, FIFO within a priority), bounded by
/// [`SchedConfig::queue_capacity`](crate::SchedConfig::queue_capacity) (`submit` waits for
/// room, `try_submit` hands the job back), `workers_per_device` jobs at a time per device
/// on tokio's blocking threads. A job that fails or panics fails alone. Successful runs are
/// recorded in the scheduler's history.
///
/// Dropping the executor closes it: jobs already queued still run, then its dispatcher
/// tasks end.
pub struct Executor {
    sched: Arc<Scheduler>,
    queues: Vec<Arc<DeviceQueue>>,
    seq: AtomicU64,
    capacity: usize,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("devices", &self.queues.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor over the scheduler's devices. It spawns one dispatcher task per device
    /// on the current tokio runtime; outside a runtime it is an [`Error::InvalidArgument`].
    pub fn new(sched: Arc<Scheduler>) -> vuma_core::Result<Self> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::invalid("vuma_sched::Executor::new must be called inside a tokio runtime")
        })?;
        let capacity = sched.config().queue_capacity;
        let workers = sched.config().workers_per_device;
        let queues: Vec<Arc<DeviceQueue>> = sched
            .devices()
            .map(|d| {
                Arc::new(DeviceQueue {
                    device: d.id,
                    heap: Mutex::new(BinaryHeap::new()),
                    notify: Notify::new(),
                    slots: Arc::new(Semaphore::new(capacity)),
                    closed: AtomicBool::new(false),
                })
            })
            .collect();
        for q in &queues {
            rt.spawn(dispatch(Arc::clone(q), workers));
        }
        Ok(Executor {
            sched,
            queues,
            seq: AtomicU64::new(0),
            capacity,
        })
    }

    /// The scheduler deciding where jobs run.
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.sched
    }

    /// Jobs waiting (not yet started) in `device`'s queue.
    pub fn queued(&self, device: DeviceId) -> usize {
        self.queue(device).map_or(0, |q| q.lock().len())
    }

    fn queue(&self, device: DeviceId) -> Option<&Arc<DeviceQueue>> {
        self.queues.iter().find(|q| q.device == device)
    }

    /// Chooses a device for `profile` (no residency facts) and queues `job` on it, waiting
    /// while that device's queue is full. The handle resolves to the job's result.
    pub fn submit<T, F>(
        &self,
        profile: WorkloadProfile,
        job: F,
    ) -> impl Future<Output = Result<JobHandle<T>, SubmitError<F>>> + Send + '_
    where
        T: Send + 'static,
        F: FnOnce(DeviceId) -> vuma_core::Result<T> + Send + 'static,
    {
        self.submit_with(profile, &NoResidency, job)
    }

    /// [`Executor::submit`] with residency facts for the choice (the choice is made at once;
    /// only the wait for room in the queue is asynchronous).
    pub fn submit_with<T, F>(
        &self,
        profile: WorkloadProfile,
        residency: &dyn Residency,
        job: F,
    ) -> impl Future<Output = Result<JobHandle<T>, SubmitError<F>>> + Send + '_
    where
        T: Send + 'static,
        F: FnOnce(DeviceId) -> vuma_core::Result<T> + Send + 'static,
    {
        let chosen = self.sched.choose(&profile, residency);
        self.enqueue_waiting(chosen, profile, job)
    }

    /// Queues `job` on `device` (the caller's pick), waiting while its queue is full.
    pub fn submit_on<T, F>(
        &self,
        device: DeviceId,
        profile: WorkloadProfile,
        job: F,
    ) -> impl Future<Output = Result<JobHandle<T>, SubmitError<F>>> + Send + '_
    where
        T: Send + 'static,
        F: FnOnce(DeviceId) -> vuma_core::Result<T> + Send + 'static,
    {
        let chosen = self.sched.choose_on(device, &profile, &NoResidency);
        self.enqueue_waiting(chosen, profile, job)
    }

    async fn enqueue_waiting<T, F>(
        &self,
        chosen: vuma_core::Result<Choice>,
        profile: WorkloadProfile,
        job: F,
    ) -> Result<JobHandle<T>, SubmitError<F>>
    where
        T: Send + 'static,
        F: FnOnce(DeviceId) -> vuma_core::Result<T> + Send + 'static,
    {
        let choice = match chosen {
            Ok(c) => c,
            Err(e) => {
                return Err(SubmitError {
                    error: e.into(),
                    job,
                })
            }
        };
        let Some(q) = self.queue(choice.device).cloned() else {
            return Err(SubmitError {
                error: SchedError::Closed,
                job,
            });
        };
        match Arc::clone(&q.slots).acquire_owned().await {
            Ok(permit) => Ok(self.push(&q, permit, choice, profile, job)),
            Err(_) => Err(SubmitError {
                error: SchedError::Closed,
                job,
            }),
        }
    }

    /// Chooses a device and queues `job` without waiting: a full queue is
    /// [`SchedError::QueueFull`] with the job handed back in the [`SubmitError`].
    pub fn try_submit<T, F>(
        &self,
        profile: WorkloadProfile,
        job: F,
    ) -> Result<JobHandle<T>, SubmitError<F>>
    where
        T: Send + 'static,
        F: FnOnce(DeviceId) -> vuma_core::Result<T> + Send + 'static,
    {
        self.try_submit_with(profile, &NoResidency, job)
    }

    /// [`Executor::try_submit`] with residency facts.
    pub fn try_submit_with<T, F>(
        &self,
        profile: WorkloadProfile,
        residency: &dyn Residency,
        job: F,
    ) -> Result<JobHandle<T>, SubmitError<F>>
    where
        T: Send + 'static,
        F: FnOnce(DeviceId) -> vuma_core::Result<T> + Send + 'static,
    {
        let choice = match self.sched.choose(&profile, residency) {
            Ok(c) => c,
            Err(e) => {
                return Err(SubmitError {
                    error: e.into(),
                    job,
                })
            }
        };
        let Some(q) = self.queue(choice.device).cloned() else {
            return Err(SubmitError {
                error: SchedError::Closed,
                job,
            });
        };
        match Arc::clone(&q.slots).try_acquire_owned() {
            Ok(permit) => Ok(self.push(&q, permit, choice, profile, job)),
            Err(TryAcquireError::NoPermits) => Err(SubmitError {
                error: SchedError::QueueFull {
                    device: q.device,
                    capacity: self.capacity,
                },
                job,
            }),
            Err(TryAcquireError::Closed) => Err(SubmitError {
                error: SchedError::Closed,
                job,
            }),
        }
    }

    fn push<T, F>(
        &self,
        q: &Arc<DeviceQueue>,
        permit: OwnedSemaphorePermit,
        choice: Choice,
        profile: WorkloadProfile,
        job: F,
    ) -> JobHandle<T>
    where
        T: Send + 'static,
        F: FnOnce(DeviceId) -> vuma_core::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let est_s = choice.est_run_s;
        self.sched
            .queue_started(choice.device, profile.priority, est_s);
        let backlog = Backlog {
            sched: Arc::clone(&self.sched),
            device: choice.device,
            priority: profile.priority,
            est_s,
        };
        let sched = Arc::clone(&self.sched);
        let name = profile.name.clone();
        let work = profile.effective_work();
        let run: Erased = Box::new(move |dev: DeviceId| {
            let t0 = Instant::now();
            let r = catch_unwind(AssertUnwindSafe(move || job(dev)));
            let elapsed = t0.elapsed();
            drop(backlog);
            let out = match r {
                Ok(Ok(v)) => {
                    sched.record_run(dev, &name, work, elapsed);
                    Ok(v)
                }
                Ok(Err(e)) => Err(SchedError::Core(e)),
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic payload".into());
                    Err(SchedError::Panicked { name, message })
                }
            };
            // The receiver may have been dropped (nobody awaits the result): fine.
            let _ = tx.send(out);
        });
        q.lock().push(Entry {
            priority: profile.priority,
            seq,
            state: Arc::clone(&state),
            run,
            _slot: permit,
        });
        q.notify.notify_one();
        JobHandle {
            rx,
            state,
            seq,
            queue: Arc::downgrade(q),
            name: profile.name,
            choice,
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        for q in &self.queues {
            q.closed.store(true, Ordering::Release);
            q.notify.notify_one();
        }
    }
}

/// Takes the highest-priority job that was not cancelled off the queue, marks it started
/// and frees its place in the queue.
fn take_next(q: &DeviceQueue) -> Option<Erased> {
    loop {
        let entry = q.lock().pop()?;
        if entry
            .state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let Entry { run, _slot, .. } = entry;
            drop(_slot); // leaving the queue: room for a waiting `submit`
            return Some(run);
        }
        // Cancelled between its flag and its removal: drop it and look further.
    }
}

/// One device's dispatcher: whenever a worker is free and a job is queued, starts a worker
/// on a blocking thread; the worker runs jobs, highest priority first, until the queue is
/// empty. Ends when the executor is closed and the queue is empty.
async fn dispatch(q: Arc<DeviceQueue>, workers: usize) {
    let workers = Arc::new(Semaphore::new(workers.max(1)));
    loop {
        let Ok(worker) = Arc::clone(&workers).acquire_owned().await else {
            return;
        };
        // Checked after taking the worker: a job pushed while the previous worker was
        // finishing is seen here (or its `notify_one` permit wakes the wait below).
        let first = loop {
            if let Some(run) = take_next(&q) {
                break Some(run);
            }
            if q.closed.load(Ordering::Acquire) {
                break None;
            }
            q.notify.notified().await;
        };
        let Some(first) = first else { return };
        let queue = Arc::clone(&q);
        tokio::task::spawn_blocking(move || {
            let dev = queue.device;
            first(dev);
            while let Some(run) = take_next(&queue) {
                run(dev);
            }
            drop(worker);
        });
    }
}

/// A submitted job: await it for the job's result; [`JobHandle::cancel`] it before it
/// starts. Dropping the handle detaches the job (it still runs).
pub struct JobHandle<T> {
    rx: oneshot::Receiver<Result<T, SchedError>>,
    state: Arc<AtomicU8>,
    seq: u64,
    queue: Weak<DeviceQueue>,
    name: String,
    choice: Choice,
}

impl<T> std::fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("name", &self.name)
            .field("device", &self.choice.device)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl<T> JobHandle<T> {
    /// The scheduler's decision for this job.
    pub fn choice(&self) -> &Choice {
        &self.choice
    }

    /// The device the job runs on.
    pub fn device(&self) -> DeviceId {
        self.choice.device
    }

    /// Where the job is in its life.
    pub fn state(&self) -> JobState {
        match self.state.load(Ordering::Acquire) {
            QUEUED => JobState::Queued,
            CANCELLED => JobState::Cancelled,
            _ => JobState::Started,
        }
    }

    /// Cancels the job if it has not started: it leaves the queue at once (freeing its
    /// place), never runs, and the handle resolves to [`SchedError::Cancelled`]. Returns
    /// whether it was cancelled (`false`: it had already started, or was cancelled before).
    pub fn cancel(&self) -> bool {
        if self
            .state
            .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        if let Some(q) = self.queue.upgrade() {
            let removed: Vec<Entry> = {
                let mut heap = q.lock();
                let (gone, keep): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut *heap)
                    .into_vec()
                    .into_iter()
                    .partition(|e| e.seq == self.seq);
                *heap = BinaryHeap::from(keep);
                gone
            };
            // Dropped outside the lock: the job's own destructor may do anything.
            drop(removed);
        }
        true
    }
}

impl<T> Future for JobHandle<T> {
    type Output = Result<T, SchedError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => {
                Poll::Ready(Err(if self.state.load(Ordering::Acquire) == CANCELLED {
                    SchedError::Cancelled {
                        name: self.name.clone(),
                    }
                } else {
                    SchedError::Closed
                }))
            }
        }
    }
}
