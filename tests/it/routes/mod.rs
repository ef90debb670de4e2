//! Several models behind one switchyard: `routes:`, each with its own rollout.
//!
//! Every test runs a real switchyard in process, on a config file it watches, in front of
//! mock model servers that answer in the protocol of each request (V2, V1, OpenAI-style)
//! and record what they receive ([`crate::support::mock`]). [`harness`] writes the configs
//! route by route and talks to the data plane, the admin API and the command line.

mod harness;

mod cli;
mod controls;
mod history;
mod isolation;
mod matching;
mod metrics;
mod phases;
mod reload;
mod state;
