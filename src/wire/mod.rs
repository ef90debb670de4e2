//! The inference wire forms: what a V2, V1, OpenAI-style or plain JSON request and answer
//! look like, read once into the forms the observers and the comparison share.
//!
//! Everything here reads untrusted bytes (a client's request, a candidate model's
//! answer), so nothing here trusts a size it reads: see [`payload`]'s limits.
//!
//! - [`Protocol`]: the one name of a wire form, used by `compare.protocol` and
//!   `monitor.protocol` alike.
//! - [`json`]: lenient JSON (the bare `NaN`/`Infinity` Python emits), a V2 answer's
//!   `outputs` read alone, numbers spelled as strings.
//! - [`v2`], [`v1`]: what an answer of each protocol looks like, and its tensors.
//! - [`tensor`]: nested JSON data flattened row-major.
//! - [`pointer`]: RFC 6901 JSON pointers with `*`, for ignoring and redacting.
//! - [`Payload`]: an exchange's two bodies parsed once, with the answer's predictions.

pub mod json;
mod payload;
pub mod pointer;
mod protocol;
pub mod tensor;
pub mod v1;
pub mod v2;

pub(crate) use payload::Rows;
pub use payload::{
    answer_redacted, Answer, Exchange, Payload, Prediction, MAX_BODY, MAX_DIMS, MAX_ROWS,
};
pub(crate) use protocol::detect_answer;
pub use protocol::Protocol;
