//! vuma-cuda (placeholder, filled by its issue).
