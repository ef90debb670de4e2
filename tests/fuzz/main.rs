//! Property-based fuzz targets for the parts of switchyard that read what others write:
//! the config loader, the comparator (and its redaction), the header handling, the
//! observers' payload parsers with the monitor's extraction, the baseline reader, the
//! reference file reader, the feedback body reader and the rollout state a controller
//! restores.
//!
//! They run on the stable toolchain with `proptest`: each target draws inputs from
//! strategies and from mutations of the seed corpora under `tests/fuzz/corpus/`, and
//! checks that nothing panics and that the stated properties hold. See
//! `docs/fuzzing.md` for how to run them longer.
//!
//! The number of cases per property is `PROPTEST_CASES` (proptest's own variable);
//! without it each property runs the modest count given to [`config`], so a plain
//! `cargo test` stays quick. A failure is shrunk to a minimal input and its seed is
//! saved in `tests/fuzz/proptest-regressions/`, which is committed: those seeds are
//! replayed first on every run. Each crash found also has a named regression test.

mod baseline;
mod compare;
mod config;
mod feedback;
mod headers;
mod mutate;
mod payload;
mod reference;
mod state;

use std::path::{Path, PathBuf};

use proptest::test_runner::{Config, FileFailurePersistence};

/// The proptest settings of one target: `cases` unless `PROPTEST_CASES` says otherwise
/// (the `proptest!` macro applies the environment on top of this), failures saved
/// beside the targets.
pub fn config(cases: u32, regressions: &'static str) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    }
}

/// The files of a seed corpus directory (relative to the package root) whose names end
/// with one of `extensions`, sorted by name, as (name, contents).
pub fn corpus(dir: &str, extensions: &[&str]) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}
