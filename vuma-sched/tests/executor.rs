//! Executor tests: priorities, backpressure, cancellation, failure isolation, history.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vuma_core::{Backend, DeviceId, Error};
use vuma_sched::{
    described, Executor, JobState, Priority, SchedConfig, SchedError, Scheduler, WorkloadKind,
    WorkloadProfile,
};

fn one_cpu(capacity: usize) -> (Arc<Scheduler>, DeviceId) {
    let devs = described::cpu_only();
    let id = devs[0].id;
    let cfg = SchedConfig::default().with_queue_capacity(capacity);
    (Arc::new(Scheduler::new(devs, cfg)), id)
}

fn job(name: &str, p: Priority) -> WorkloadProfile {
    WorkloadProfile::new(name, WorkloadKind::LightCompute)
        .with_priority(p)
        .with_work(1e6)
}

/// Occupies the device's only worker until the returned sender is dropped or sent to;
/// returns once the blocker is running.
async fn block_device(ex: &Executor) -> (mpsc::Sender<()>, vuma_sched::JobHandle<()>) {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let h = ex
        .submit(job("blocker", Priority::Realtime), move |_| {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
            Ok(())
        })
        .await
        .unwrap();
    started_rx.await.unwrap();
    assert_eq!(h.state(), JobState::Started);
    (release_tx, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_first_fifo_within_a_priority() {
    let (sched, dev) = one_cpu(64);
    let ex = Executor::new(sched).unwrap();
    let (release, blocker) = block_device(&ex).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for (name, p) in [
        ("low-1", Priority::Low),
        ("normal-1", Priority::Normal),
        ("high-1", Priority::High),
        ("normal-2", Priority::Normal),
        ("realtime-1", Priority::Realtime),
        ("low-2", Priority::Low),
        ("high-2", Priority::High),
    ] {
        let order = Arc::clone(&order);
        let h = ex
            .submit(job(name, p), move |d| {
                order.lock().unwrap().push(name);
                Ok(d)
            })
            .await
            .unwrap();
        handles.push(h);
    }
    assert_eq!(ex.queued(dev), 7);
    release.send(()).unwrap();
    blocker.await.unwrap();
    for h in handles {
        assert_eq!(h.await.unwrap(), dev);
    }
    assert_eq!(
        *order.lock().unwrap(),
        [
            "realtime-1",
            "high-1",
            "high-2",
            "normal-1",
            "normal-2",
            "low-1",
            "low-2"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_queue_backpressure() {
    let (sched, dev) = one_cpu(2);
    let ex = Arc::new(Executor::new(sched).unwrap());
    let (release, blocker) = block_device(&ex).await;
    let a = ex
        .try_submit(job("a", Priority::Normal), |_| Ok(1u32))
        .unwrap();
    let b = ex
        .try_submit(job("b", Priority::Normal), |_| Ok(2u32))
        .unwrap();
    // Full: the job comes back untouched, with a typed, transient error.
    let err = ex
        .try_submit(job("c", Priority::Normal), |_| Ok(3u32))
        .unwrap_err();
    assert!(matches!(err.error, SchedError::QueueFull { device, capacity: 2 } if device == dev));
    assert!(err.error.is_transient());
    let back = err.into_job();
    assert_eq!(back(dev).unwrap(), 3);
    let core: Error = ex
        .try_submit(job("d", Priority::Normal), |_| Ok(4u32))
        .unwrap_err()
        .into();
    assert!(core.is_transient(), "{core}");

    // The awaiting submit waits for room: polled while the queue is full (and nothing can
    // free it before the blocker is released), it is pending, however often it is polled.
    let mut waiting = Box::pin(ex.submit(job("e", Priority::Normal), |_| Ok(5u32)));
    for _ in 0..3 {
        let polled = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(waiting.as_mut().poll(cx).is_pending())
        })
        .await;
        assert!(polled, "submit must wait while the queue is full");
    }
    release.send(()).unwrap();
    blocker.await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("submit resumes once there is room")
        .map_err(|e| e.error)
        .unwrap();
    assert_eq!(a.await.unwrap() + b.await.unwrap() + e.await.unwrap(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_before_start() {
    let (sched, dev) = one_cpu(2);
    let ex = Executor::new(Arc::clone(&sched)).unwrap();
    let (release, blocker) = block_device(&ex).await;
    let ran = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ran);
    let a = ex
        .submit(job("a", Priority::Normal), move |_| {
            r.store(true, Ordering::SeqCst);
            Ok(())
        })
        .await
        .unwrap();
    let b = ex
        .submit(job("b", Priority::Normal), |_| Ok(7))
        .await
        .unwrap();
    assert!(sched.backlog_s(dev).unwrap() > 0.0);
    assert!(a.cancel());
    assert!(!a.cancel(), "cancelling twice says no");
    assert_eq!(a.state(), JobState::Cancelled);
    // Its place in the queue is free at once.
    assert_eq!(ex.queued(dev), 1);
    let c = ex
        .try_submit(job("c", Priority::Normal), |_| Ok(8))
        .unwrap();
    release.send(()).unwrap();
    blocker.await.unwrap();
    assert!(matches!(a.await, Err(SchedError::Cancelled { name }) if name == "a"));
    assert_eq!(b.await.unwrap() + c.await.unwrap(), 15);
    assert!(!ran.load(Ordering::SeqCst), "a cancelled job never runs");
    // A started job cannot be cancelled.
    let (release, blocker) = block_device(&ex).await;
    assert!(!blocker.cancel());
    release.send(()).unwrap();
    blocker.await.unwrap();
    // Every estimate left the backlog (a job's estimate leaves before its result is sent;
    // a cancelled job's when it is cancelled).
    assert_eq!(sched.backlog_s(dev), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_fails_alone() {
    let (sched, _dev) = one_cpu(16);
    let ex = Executor::new(sched).unwrap();
    let ok1 = ex
        .submit(job("ok", Priority::Normal), |_| Ok(1))
        .await
        .unwrap();
    let bad = ex
        .submit(
            job("bad", Priority::Normal),
            |_| -> vuma_core::Result<i32> {
                Err(Error::Kernel {
                    kernel: "bad".into(),
                    reason: "boom".into(),
                })
            },
        )
        .await
        .unwrap();
    let panics = ex
        .submit(
            job("panics", Priority::Normal),
            |_| -> vuma_core::Result<i32> { panic!("kernel exploded") },
        )
        .await
        .unwrap();
    let ok2 = ex
        .submit(job("ok", Priority::Normal), |_| Ok(2))
        .await
        .unwrap();
    assert_eq!(ok1.await.unwrap(), 1);
    match bad.await {
        Err(SchedError::Core(Error::Kernel { reason, .. })) => assert_eq!(reason, "boom"),
        other => panic!("unexpected {other:?}"),
    }
    match panics.await {
        Err(SchedError::Panicked { name, message }) => {
            assert_eq!(name, "panics");
            assert!(message.contains("kernel exploded"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(ok2.await.unwrap(), 2);
    // The job's own error passes through `?` into vuma_core::Error unchanged.
    let again = ex
        .submit(
            job("bad", Priority::Normal),
            |_| -> vuma_core::Result<i32> { Err(Error::invalid("x")) },
        )
        .await
        .unwrap();
    let e: Error = again.await.unwrap_err().into();
    assert!(matches!(e, Error::InvalidArgument(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_recorded_into_history_and_errors_are_typed() {
    let (sched, dev) = one_cpu(16);
    let ex = Executor::new(Arc::clone(&sched)).unwrap();
    for run in 0..2 {
        let h = ex
            .submit(job("timed", Priority::Normal), |_| {
                std::thread::sleep(Duration::from_millis(20));
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(h.choice().device, dev);
        h.await.unwrap();
        if run == 0 {
            // The first run of a kernel on a device is a warm-up: counted, not learned.
            assert_eq!(sched.history(dev, "timed"), None);
        }
    }
    let (rate, n) = sched.history(dev, "timed").expect("history recorded");
    assert_eq!(n, 1);
    // 1e6 work units in >= 20 ms: at most 5e7 units/s.
    assert!(rate <= 5.0e7 && rate > 1e6, "rate {rate}");

    // No eligible device: the job is handed back with the core error.
    let cuda_only = job("cuda", Priority::Normal).with_backends(vec![Backend::Cuda]);
    let err = ex.submit(cuda_only.clone(), |_| Ok(9)).await.unwrap_err();
    assert!(matches!(
        err.error,
        SchedError::Core(Error::NoEligibleDevice(_))
    ));
    assert_eq!((err.into_job())(dev).unwrap(), 9);
    let bad = job("nan", Priority::Normal).with_complexity(f32::NAN);
    assert!(matches!(
        ex.try_submit(bad, |_| Ok(())).unwrap_err().error,
        SchedError::Core(Error::InvalidArgument(_))
    ));
    assert!(ex
        .submit_on(DeviceId(u64::MAX), job("x", Priority::Low), |_| Ok(()))
        .await
        .is_err());
    let pinned = ex
        .submit_on(dev, job("x", Priority::Low), Ok)
        .await
        .unwrap();
    assert_eq!(pinned.await.unwrap(), dev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_spreads_over_devices_and_drains_on_drop() {
    let devs = described::two_gpu_desktop();
    let gpus: Vec<DeviceId> = devs[1..].iter().map(|d| d.id).collect();
    let sched = Arc::new(Scheduler::new(devs, SchedConfig::default()));
    let ex = Executor::new(Arc::clone(&sched)).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let mut per_device = std::collections::HashMap::new();
    let mut handles = Vec::new();
    for i in 0..8 {
        let w = WorkloadProfile::new(format!("gemm-{i}"), WorkloadKind::HeavyCompute)
            .with_complexity(0.9)
            .with_memory(64 << 20)
            .with_work(1e12);
        let d = Arc::clone(&done);
        let h = ex
            .submit(w, move |_| {
                std::thread::sleep(Duration::from_millis(5));
                d.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await
            .unwrap();
        *per_device.entry(h.device()).or_insert(0) += 1;
        handles.push(h);
    }
    // The backlog accounting alternates the two identical GPUs.
    assert_eq!(per_device.get(&gpus[0]), Some(&4), "{per_device:?}");
    assert_eq!(per_device.get(&gpus[1]), Some(&4), "{per_device:?}");
    drop(ex); // queued jobs still run
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 8);
}

#[test]
fn executor_outside_a_runtime_is_a_typed_error() {
    let (sched, _) = one_cpu(4);
    assert!(matches!(
        Executor::new(sched),
        Err(Error::InvalidArgument(_))
    ));
}
