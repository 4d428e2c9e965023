//! vuma-sched (placeholder, filled by its issue).
