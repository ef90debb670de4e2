//! Where rollout state lives: one opaque record per route, behind the [`Store`] seam.
//!
//! The controller loads every route's record at start, saves each by compare-and-swap on
//! the revision it last knew, and puts aside what cannot be read; it knows no path and no
//! server. A store deals in records (a route's name, JSON bytes, the store's revision of
//! them), never in rollouts: what a record says is the rollout's business.
//!
//! - [`FileStore`]: one file on disk, owned by one replica (`state.path`).
//! - [`MemoryStore`]: kept in memory, shared by its handles; what tests run on.

pub(crate) mod file;
#[cfg(test)]
pub(crate) mod memory;
mod seam;

use std::sync::Arc;

use crate::config::StateConfig;

pub(crate) use file::FileStore;
#[cfg(test)]
pub(crate) use memory::MemoryStore;
#[cfg(test)]
pub(crate) use seam::Unreadable;
pub(crate) use seam::{LoadError, Loaded, Record, Revision, SaveError, Store, Write};

/// The store `state` names: the file at `state.path`; `None` (nothing persisted) without one.
pub(crate) fn open(state: &StateConfig) -> Option<Arc<dyn Store>> {
    let path = state.path.as_ref()?;
    Some(Arc::new(FileStore::new(path.clone())))
}
