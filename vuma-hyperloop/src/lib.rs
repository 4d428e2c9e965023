//! vuma-hyperloop (placeholder, filled by its issue).
