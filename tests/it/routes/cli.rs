//! The command line with routes, as an operator runs it: `switchyard routes`, and the
//! control commands with `--route NAME` or `SWITCHYARD_ROUTE`.

use super::harness::{held_canaries as routes, placement, Routed, HELD_BACKENDS as BACKENDS};

/// Asserts that a line of `out` lists route `name` (the name as a word of its own) with
/// each of `shown`.
fn assert_lists(out: &str, name: &str, shown: &[&str]) {
    let listed = out.lines().any(|l| {
        l.split(|c: char| c.is_whitespace() || c == ':' || c == ',')
            .any(|w| w == name)
            && shown.iter().all(|s| l.contains(s))
    });
    assert!(listed, "no line lists {name} with {shown:?}:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchyard_routes_lists_every_route_with_its_phase_and_weight() {
    let h = Routed::start(&BACKENDS, &routes()).await;
    let promoted = h.control("chat", "promote", r#"{"full":true}"#).await;
    assert_eq!(promoted.status, http::StatusCode::OK);
    let (code, out, err) = h.cli(&["routes"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    for (name, phase, weight) in [
        ("iris", "progressing", "50"),
        ("chat", "promoted", "100"),
        // No candidate: said where its traffic goes, not as step 0 at weight 0.
        ("fraud", "idle", "all traffic to fraud-v6"),
    ] {
        assert_lists(&out, name, &[phase, weight]);
    }
    // `status` without a route, on several routes, shows the same list.
    let (code, out, err) = h.cli(&["status"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    for (name, phase) in [
        ("iris", "progressing"),
        ("chat", "promoted"),
        ("fraud", "idle"),
    ] {
        assert_lists(&out, name, &[phase]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_commands_act_on_the_route_named_by_flag_or_environment() {
    let h = Routed::start(&BACKENDS, &routes()).await;

    let (code, out, err) = h.cli(&["pause", "--route", "iris", "--reason", "by flag"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("by flag"),
        "the command prints iris's status: {out}"
    );
    assert_eq!(placement(&h.status("iris").await).0, "paused");
    assert_eq!(
        placement(&h.status("chat").await),
        ("progressing".into(), 0, 25.0)
    );

    let env = [("SWITCHYARD_ROUTE", "chat")];
    let (code, out, err) = h.cli(&["rollback", "--reason", "by env"], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    let chat = h.status("chat").await;
    assert_eq!(placement(&chat), ("rolled_back".into(), 0, 0.0));
    assert_eq!(chat["reason"], "by env");
    assert_eq!(placement(&h.status("iris").await).0, "paused", "iris moved");

    let (code, out, err) = h.cli(&["status", "--route", "iris"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("phase:     paused") && out.contains("weight:    50%"),
        "{out}"
    );

    let (code, out, err) = h.cli(&["promote", "--full", "--route", "iris"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("weight:    100%"), "{out}");
    let iris = placement(&h.status("iris").await);
    assert_eq!((iris.0.as_str(), iris.2), ("promoted", 100.0));
    let (code, out, err) = h.cli(&["status", "--route", "chat", "--json"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let chat: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&chat["route"], &chat["phase"]),
        (&"chat".into(), &"rolled_back".into())
    );

    let (code, out, err) = h.cli(&["retry"], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        placement(&h.status("chat").await),
        ("progressing".into(), 0, 25.0)
    );
    assert_eq!(placement(&h.status("iris").await).0, "promoted");
    let chat_by = h.served(60, || h.chat("llama-3-8b")).await;
    assert!(chat_by.iter().any(|b| b == "chat-b"), "{chat_by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_command_without_a_route_or_with_an_unknown_one_fails_and_changes_nothing() {
    let h = Routed::start(&BACKENDS, &routes()).await;

    let (code, out, err) = h.cli(&["rollback", "--reason", "which one?"], &[]);
    assert_ne!(code, Some(0), "{out}{err}");
    for name in ["iris", "chat", "fraud"] {
        assert!(
            err.contains(name),
            "the failure does not name {name}: {err}"
        );
    }

    let (code, out, err) = h.cli(&["pause", "--route", "nope"], &[]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(err.contains("nope"), "{err}");
    let (code, out, err) = h.cli(&["pause"], &[("SWITCHYARD_ROUTE", "nope")]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(err.contains("nope"), "{err}");

    // A control the route's phase does not allow fails there too.
    let (code, out, err) = h.cli(&["pause", "--route", "fraud"], &[]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(err.contains("409"), "{err}");

    assert_eq!(
        placement(&h.status("iris").await),
        ("progressing".into(), 0, 50.0)
    );
    assert_eq!(
        placement(&h.status("chat").await),
        ("progressing".into(), 0, 25.0)
    );
    assert_eq!(placement(&h.status("fraud").await).0, "idle");
}
