//! Following the other replicas through a shared store: their writes seen by the watch,
//! and the conflicts that say one of them moved a route first.

use tokio::time::Instant;

use super::{Controller, RouteRollout, LOAD_RETRY};
use crate::rollout::machine::{Phase, Trigger};
use crate::rollout::persist::{self, Entry, Restore};
use crate::store::{Record, Watched};

impl Controller {
    /// Takes in what the watch on a shared store saw: another replica's write of a route
    /// is applied here and published, never written back; a removal leaves the route as
    /// it is; a watch that lost its place reads the whole store again and watches anew.
    pub(super) async fn follow(&mut self, watched: Option<Watched>) {
        let now = Instant::now();
        let changed = match watched {
            // The store is gone: nothing more to follow.
            None => {
                self.watch = None;
                false
            }
            // A rollback not stored yet (the store was out of reach) is made again on
            // top of what another replica wrote meanwhile, and written.
            Some(Watched::Changed(record)) if self.unstored_rollback(&record) => {
                let rewrite = self.beaten(&record.route, &record, now);
                self.publish(rewrite).await;
                return;
            }
            Some(Watched::Changed(record)) => self.take_record(&record, now),
            Some(Watched::Removed { .. }) => false,
            Some(Watched::Lost) => self.relist(now).await,
        };
        if changed {
            self.publish(false).await;
        }
    }

    /// Whether `record`, newer than what this replica last read or wrote of its route,
    /// meets a rollback of that route this replica has not stored yet.
    fn unstored_rollback(&self, record: &Record) -> bool {
        let route = &record.route;
        let newer = self
            .revisions
            .get(route)
            .is_none_or(|r| *r < record.revision);
        let rolled_back = self
            .routes
            .iter()
            .any(|r| r.route.name == *route && r.rollout.phase == Phase::RolledBack);
        let stored = self
            .known
            .get(route)
            .is_some_and(|k| k.phase == Phase::RolledBack);
        self.unread.is_none() && newer && rolled_back && !stored
    }

    /// Applies `record` to its route when it is newer than what this replica last read
    /// or wrote of it (so another replica wrote it), and remembers its revision; true
    /// when the route changed. Nothing is taken while the store could not be read: the
    /// read that succeeds restores the routes.
    pub(super) fn take_record(&mut self, record: &Record, now: Instant) -> bool {
        if self.unread.is_some() {
            return false;
        }
        let known = self.revisions.get(&record.route);
        if known.is_some_and(|r| *r >= record.revision) {
            return false;
        }
        let Some(store) = &self.store else {
            return false;
        };
        let place = store.describe();
        let Some(r) = self
            .routes
            .iter_mut()
            .find(|r| r.route.name == record.route)
        else {
            return false;
        };
        self.revisions.insert(record.route.clone(), record.revision);
        if let Ok(state) = Entry::of(record).state {
            self.known.insert(record.route.clone(), state);
        }
        let was_rolled_back = r.rollout.phase == Phase::RolledBack;
        let changed = r.follow(record, &place, now);
        // Retried elsewhere: a new rollout here too, so a stale trip is ignored.
        if was_rolled_back && r.rollout.phase != Phase::RolledBack {
            self.last_id += 1;
            r.id = self.last_id;
            r.schedule_eval(now);
        }
        changed
    }

    /// Reads the whole store again after the watch lost its place, applies what changed,
    /// and watches again; a store that cannot be read is read again later
    /// ([`LOAD_RETRY`]). True when a route changed.
    pub(super) async fn relist(&mut self, now: Instant) -> bool {
        self.watch = None;
        self.rewatch_at = None;
        let Some(store) = self.store.clone() else {
            return false;
        };
        match store.load().await {
            Ok(loaded) => {
                // Watched from what was just read: nothing falls between the two.
                self.watch = Some(store.watch());
                let mut changed = false;
                for record in &loaded.records {
                    changed |= self.take_record(record, now);
                }
                changed
            }
            Err(e) => {
                tracing::warn!(store = %store.describe(), error = %e, "the watch on the rollout state lost its place and the store cannot be read again yet");
                self.rewatch_at = Some(now + LOAD_RETRY);
                false
            }
        }
    }

    /// Another replica wrote `route` first (`current`, its record now): its state is
    /// taken here and this replica's is dropped, saying so in an event, except a rollback,
    /// which is always allowed: it is made again on top of theirs. True when that
    /// rollback is to be written again.
    pub(super) fn beaten(&mut self, route: &str, current: &Record, now: Instant) -> bool {
        let Some(i) = self.routes.iter().position(|r| r.route.name == route) else {
            self.revisions.insert(route.to_string(), current.revision);
            return false;
        };
        let ours = self.routes[i].rollout.clone();
        // Taken whatever this replica last knew of it: it is what the store holds now.
        self.revisions.remove(route);
        self.known.remove(route);
        self.take_record(current, now);
        let place = self
            .store
            .as_ref()
            .map(|s| s.describe())
            .unwrap_or_default();
        let r = &mut self.routes[i];
        let theirs = &mut r.rollout;
        let rollback = ours.phase == Phase::RolledBack && theirs.phase != Phase::RolledBack;
        if rollback {
            let reason = ours.reason.clone().unwrap_or_default();
            let said = ours.events.iter().rev().find(|e| e.kind == "rollback");
            if theirs.rollback(reason, Trigger::Manual).is_ok() {
                if let (Some(said), Some(last)) = (said, theirs.events.back_mut()) {
                    *last = said.clone();
                }
                let msg = format!("another replica wrote this route first ({} at step {} in {place}): the rollback is made again on top of it", theirs.phase.as_str(), theirs.step);
                theirs.event("state", msg);
                return true;
            }
        }
        let same = (ours.phase, ours.step, ours.safe, &ours.reason)
            == (theirs.phase, theirs.step, theirs.safe, &theirs.reason);
        if !same {
            let msg = format!(
                "another replica changed this route first: its state ({} at step {}) is in force here, and this replica's ({} at step {}) was not stored and is dropped",
                theirs.phase.as_str(),
                theirs.step,
                ours.phase.as_str(),
                ours.step
            );
            theirs.event("state", msg);
        }
        false
    }
}

impl RouteRollout {
    /// Applies another replica's `record` of this route (in the store at `place`) as a
    /// restore does, when it is of the same revision; a record of another revision or one
    /// that makes no sense is left alone and said in an event. True when something
    /// changed.
    fn follow(&mut self, record: &Record, place: &str, now: Instant) -> bool {
        let name = self.route.name.clone();
        let state = match Entry::of(record).state {
            Ok(state) => state,
            Err(why) => {
                let msg = format!("another replica's state of this route in {place} cannot be read ({why}); this replica's stays");
                self.rollout.event("state", msg);
                return true;
            }
        };
        let step = self.rollout.step;
        let msg = match state.restore_into(&name, &mut self.rollout, now) {
            Restore::Restored => {
                if self.rollout.step != step {
                    self.rollout.step_verdict = None;
                }
                if self.next_eval.is_none() {
                    self.schedule_eval(now);
                }
                let r = &self.rollout;
                tracing::info!(route = %name, store = %place, "another replica's state of this route is in force here: {} at step {}", r.phase.as_str(), r.step);
                return true;
            }
            Restore::OtherRevision => format!(
                "another replica stored this route for another revision ({}, this replica runs {}) in {place}; this replica's state stays",
                state.revision,
                persist::revision_hex(self.rollout.plan.revision)
            ),
            Restore::Nonsense(why) => format!(
                "another replica's state of this route in {place} makes no sense ({why}); this replica's stays"
            ),
        };
        self.rollout.event("state", msg);
        true
    }
}
