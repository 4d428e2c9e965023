//! Errors of the executor. The scheduler itself speaks [`vuma_core::Error`]; the executor
//! adds what only a queue can say (full, cancelled, a job that panicked) and converts into
//! [`vuma_core::Error`] so that `?` works in code returning `vuma_core::Result`.

use std::fmt;

use vuma_core::DeviceId;

/// What can go wrong submitting or running a job on the [`Executor`](crate::Executor).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedError {
    /// A core error: a malformed profile, no eligible device, or the job's own error
    /// (passed through unchanged).
    #[error(transparent)]
    Core(#[from] vuma_core::Error),
    /// The device's queue is full. Transient: retry later, or use the awaiting `submit`.
    #[error("queue of {device} is full ({capacity} jobs waiting)")]
    QueueFull {
        /// The device whose queue is full.
        device: DeviceId,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The job was cancelled before it started; it never ran.
    #[error("job `{name}` was cancelled before it started")]
    Cancelled {
        /// The workload's name.
        name: String,
    },
    /// The job panicked; other jobs are unaffected.
    #[error("job `{name}` panicked: {message}")]
    Panicked {
        /// The workload's name.
        name: String,
        /// The panic message, where it was a string.
        message: String,
    },
    /// The executor (or the runtime under it) shut down before the job could run.
    #[error("executor shut down before the job ran")]
    Closed,
}

impl SchedError {
    /// Whether retrying may succeed (a full queue; or a transient core error).
    pub fn is_transient(&self) -> bool {
        match self {
            SchedError::Core(e) => e.is_transient(),
            SchedError::QueueFull { .. } => true,
            _ => false,
        }
    }
}

impl From<SchedError> for vuma_core::Error {
    fn from(e: SchedError) -> Self {
        match e {
            SchedError::Core(e) => e,
            SchedError::QueueFull { device, capacity } => vuma_core::Error::QueueFull {
                device: device.to_string(),
                capacity,
            },
            SchedError::Cancelled { name } => vuma_core::Error::Cancelled(name),
            SchedError::Panicked { name, message } => vuma_core::Error::Kernel {
                kernel: name,
                reason: format!("panicked: {message}"),
            },
            SchedError::Closed => {
                vuma_core::Error::Cancelled("job (the executor shut down before it ran)".into())
            }
        }
    }
}

/// A failed submission, handing the job back (as tokio's `SendError<T>` does).
#[derive(thiserror::Error)]
#[error("{error}")]
pub struct SubmitError<F> {
    /// Why the job was not queued.
    pub error: SchedError,
    /// The job, untouched.
    pub job: F,
}

impl<F> SubmitError<F> {
    /// The job, for a retry or to run it elsewhere.
    pub fn into_job(self) -> F {
        self.job
    }
}

impl<F> fmt::Debug for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<F> From<SubmitError<F>> for vuma_core::Error {
    fn from(e: SubmitError<F>) -> Self {
        e.error.into()
    }
}
