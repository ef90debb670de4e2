//! The shadow side: mirrors of live requests, sent to the candidate and compared with
//! the live answer off the request path.
//!
//! In the order a mirror lives:
//!
//! 0. **[`live`]**: what the live path hands over: the request as it went upstream, its
//!    copies; it gets back where the answer is to be teed.
//! 1. **[`admission`]**: whether a request is mirrored; a place among `shadow.max_in_flight`, or dropped and counted;
//!    the live path looks for room before it buffers, and takes the place once the body
//!    is in hand.
//! 2. **[`tap`]**: the live answer is copied (capped) as it streams to the client.
//! 3. **[`mirror`]**: the job: the copy to the candidate (and, with `shadow.calibrate`,
//!    to the stable itself), the comparison, and its tally.
//! 4. **[`runtime`]**: where jobs run: one low-priority thread, fed in batches once the
//!    live side is quiet.
//!
//! A sampled request takes the same way without the copy: its tapped answer goes through
//! [`observed`]'s bounded queue to the route's [`Observers`](crate::observe::Observers);
//! a sampled request that is also mirrored is observed by the mirror job, with both answers.
//!
//! Disagreements, redacted, go to the route's [`Diffs`](crate::telemetry::diffs::Diffs).
//!
//! Nothing here is awaited by the live path.

pub(crate) mod admission;
pub(crate) mod live;
pub(crate) mod mirror;
pub(crate) mod observed;
pub(crate) mod runtime;
pub(crate) mod tap;

pub(crate) use admission::{has_room, mirrors};
pub(crate) use live::{Copies, Live, Sample};
pub(crate) use observed::RequestCopy;
pub(crate) use runtime::LiveRequest;
pub(crate) use tap::{Delivery, Tap};
