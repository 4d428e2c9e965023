//! vuma-vulkan (placeholder, filled by its issue).
