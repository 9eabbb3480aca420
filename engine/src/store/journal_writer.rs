//! Group commit (placeholder, filled in by the engine core).
