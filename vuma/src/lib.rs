//! vuma
