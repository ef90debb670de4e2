//! What flows through, per route and backend: payload statistics and drift, off the live path.
//!
//! The tap hands each sampled [`Exchange`] to the observers after the answer
//! has gone to the client; [`Payload::parse`] reads its bodies once, and
//! every observer reads that [`Payload`].

pub mod payload;

#[cfg(test)]
mod tests;

pub use payload::{Answer, Exchange, Payload, Prediction, Protocol};
