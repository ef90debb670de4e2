//! Where rollout state lives: one opaque record per route, behind the [`Store`] seam.
//!
//! The controller loads every route's record at start, saves each by compare-and-swap on
//! the revision it last knew, and puts aside what cannot be read; it knows no path and no
//! server. A store deals in records (a route's name, JSON bytes, the store's revision of
//! them), never in rollouts: what a record says is the rollout's business.
//!
//! - `FileStore`: one file on disk, owned by one replica (`state.path`).
//! - [`EtcdStore`]: keys of an etcd cluster a fleet of replicas shares (`state.etcd`).
//! - `MemoryStore`: kept in memory, shared by its handles; what unit tests run on.

mod etcd;
pub(crate) mod file;
#[cfg(test)]
pub(crate) mod memory;
mod seam;

use std::sync::Arc;

use crate::config::{StateConfig, StoreKind};

pub use etcd::EtcdStore;
pub(crate) use file::FileStore;
#[cfg(test)]
pub(crate) use memory::MemoryStore;
pub use seam::{
    Aside, LoadError, Loaded, Record, Revision, SaveError, Store, Unreadable, Watch, Watched, Write,
};

/// The store `state` names: etcd (`state.store: etcd`), else the file at `state.path`;
/// `None` (nothing persisted) without one. Nothing is read or connected here: a store
/// does its work when first asked, so opening one never waits for a server.
pub fn open(state: &StateConfig) -> Option<Arc<dyn Store>> {
    if let (StoreKind::Etcd, Some(etcd)) = (state.store, &state.etcd) {
        return Some(Arc::new(EtcdStore::new(etcd)));
    }
    let path = state.path.as_ref()?;
    Some(Arc::new(FileStore::new(path.clone())))
}
