//! Monitoring through the proxy: sampled exchanges reach the monitor, the prediction log
//! and the feedback store, off the live path; the gates that read them decide rollouts.

mod capture;
mod drift;
mod feedback;
mod gates;
mod hostile;
mod reference;
mod stats;
mod wiring;
