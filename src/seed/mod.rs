//! Data sets: the demo project the console opens on, and the bulk generator
//! used for benchmarks.

mod demo;
mod load;

pub use demo::{DEMO_PROJECT_KEY, DemoOutcome, seed_demo};
pub use load::{LoadReport, load_tasks};
