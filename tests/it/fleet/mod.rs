//! Replicas sharing one rollout through etcd (`state.store: etcd`), against a real etcd
//! the harness starts ([`crate::support::etcd`]): the store's compare-and-swap, watch,
//! compaction and put-aside as two writers see them, and switchyards that restart on it,
//! start while it is down, or lose it while serving.

mod replica;
mod store;
