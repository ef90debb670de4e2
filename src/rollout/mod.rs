//! The rollout: its plan, its state machine, its analysis, and the controller task that owns it.
//!
//! ```text
//! idle ──candidate configured──► progressing(step i) ──all steps passed──► promoted
//!                                  │  ▲        │
//!                          pause   │  │ resume │ gate failed failure_limit times,
//!                                  ▼  │        │ fast-fail trip, or manual rollback
//!                                 paused       ▼
//!                                           rolled_back ──retry──► progressing(0)
//! ```
//!
//! [`Rollout`] is the pure state machine (no I/O, time passed in); the
//! [`controller`] task drives it, publishes snapshots and persists it ([`persist`]).

pub mod analysis;
pub mod controller;
mod machine;
pub mod persist;
pub mod sequential;
pub mod status;
pub mod step;

pub use controller::{Action, Control, ControlError, Msg};
pub use machine::{Event, NotAllowed, Phase, Plan, Rollout, Step, Trigger, EVENTS_KEPT};
pub use status::{Status, Statuses};

pub use crate::telemetry::now_rfc3339;
