//! The rollout controller on paused tokio time: steps and holds, controls and the phase
//! table, analysis gates, blue-green, fast rollback, reloads and persisted state.
//!
//! No network: samples are recorded straight into the backends' windows, as the data
//! plane would, while the clock is advanced (it never sleeps for real). Each module is
//! one topic; [`harness`] is the one place that knows how the library builds and runs a
//! controller, and `support::config` builds the configs.

mod harness;

mod blue_green;
mod controls;
mod fast_rollback;
mod gates;
mod reload;
mod state;
mod steps;
