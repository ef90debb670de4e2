//! Configuration: the serde types of the YAML file, how it is loaded, and how it is validated.
//!
//! Only [`load`] touches YAML; everything else works on these plain types.
//!
//! ```
//! let config = switchyard::config::parse(
//!     "backends: { blue: { url: 'http://127.0.0.1:18001' } }\nrollout: { stable: blue }\n",
//! ).unwrap();
//! assert_eq!(config.rollout.stable, "blue");
//! ```

mod load;
mod monitor;
mod path;
#[cfg(test)]
mod route_tests;
mod types;
mod units;
mod validate;
mod words;

pub use load::{
    check, check_file, check_file_with, check_with, load_file, parse, Outside, Problem, Problems,
    Reach, Refusal,
};
pub use monitor::{
    check_features, FeatureKind, FeatureSpec, MonitorConfig, ReferenceFrom, ReferenceSettings,
    Thresholds,
};
pub use path::FieldPath;
pub use types::{
    path_under, AccuracyGate, AdminConfig, AgreementGate, AnalysisConfig, BackendConfig,
    BlueGreenConfig, CaptureConfig, CompareConfig, Config, ErrorRateGate, EtcdConfig,
    FastRollbackConfig, FeedbackConfig, FleetConfig, GatesConfig, Hold, LatencyGate, Limits, Match,
    OutputDriftGate, RolloutConfig, Route, RouteConfig, SampleRatioGate, ShadowConfig, StateConfig,
    StepConfig, StickyConfig, StoreKind, Strategy, DEFAULT_FEEDBACK_MAX_BODY, DEFAULT_ROUTE,
    FEEDBACK_MAX_BODY_LIMIT, MAX_CONNECTIONS,
};
pub use units::{ByteSize, Dur};
