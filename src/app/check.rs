//! Reading and checking a config file the way a running switchyard takes it.

use crate::config::{self, Config};

/// Reads, parses and checks a config file the way a running switchyard takes it: its
/// values, and what it names outside itself (each monitor's reference file, which the
/// monitor reads). It blocks: the running proxy calls it off its async runtime.
pub fn check_file(path: &std::path::Path) -> Result<Config, config::Refusal> {
    config::check_file_with(path, crate::monitor::reference_problems)
}

/// [`check_file`], its problems alone when refused.
pub fn load_file(path: &std::path::Path) -> Result<Config, config::Problems> {
    check_file(path).map_err(|r| r.problems)
}
