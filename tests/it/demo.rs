//! `switchyard demo` tells its whole story, in its quick mode: the bad candidate is
//! rolled back by its analysis with no request failing for the user, the labels posted
//! are matched, and the good candidate is promoted.

use switchyard::demo::{self, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_rolls_the_bad_candidate_back_unseen_and_promotes_the_good_one() {
    let story = demo::run(Options {
        keep: false,
        quick: true,
    })
    .await
    .expect("the demo ends with the good candidate promoted");
    assert!(story.requests > 500, "too little traffic: {story:?}");
    assert_eq!(story.failed, 0, "a request failed for the user: {story:?}");
    let reason = story.rollback.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("analysis failed"),
        "rolled back by its analysis (not by hand, not by the tripwire): {reason:?}"
    );
    assert!(story.promoted, "{story:?}");
    assert!(story.labels_matched > 0, "{story:?}");
}
