//! A fake Plane server for sync tests and benchmarks.
