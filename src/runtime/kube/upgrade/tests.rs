use super::*;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, PodStatus,
};

const GRACE: Duration = Duration::from_secs(300);
const NOW: UnixMillis = 1_000_000;

fn pod(revision: &str, healthy: bool) -> Option<PeerPod> {
    Some(PeerPod {
        revision: Some(revision.into()),
        healthy,
        created: Some(NOW - 10_000),
        cannot_run: None,
    })
}

/// Pods `old` or `new` by ordinal: `"oon"` is web-0 and web-1 old and healthy, web-2 new and
/// healthy; `N` is new and not healthy; `-` no pod.
fn input(partition: i32, pods: &str) -> GateInput {
    GateInput {
        replicas: i32::try_from(pods.len()).expect("replicas"),
        partition,
        update_revision: Some("new".into()),
        current_revision: Some("old".into()),
        pods: pods
            .chars()
            .map(|c| match c {
                'o' => pod("old", true),
                'n' => pod("new", true),
                'N' => pod("new", false),
                _ => None,
            })
            .collect(),
        healing: false,
        grace: GRACE,
        now: NOW,
    }
}

fn gate(input: &GateInput) -> Gate {
    decide(input, |o| format!("web-{o}"))
}

#[test]
fn a_new_template_opens_the_highest_ordinal_first() {
    let g = gate(&input(3, "ooo"));
    assert_eq!(g.partition, 2);
    assert_eq!(
        g.rollout,
        Rollout::Upgrading("0/3 peers updated; updating web-2".into())
    );
}

#[test]
fn the_next_ordinal_opens_only_once_the_updated_pod_is_healthy() {
    let waiting = gate(&input(2, "ooN"));
    assert_eq!(waiting.partition, 2, "web-2 is not healthy yet");
    assert_eq!(
        waiting.rollout,
        Rollout::Upgrading("1/3 peers updated; waiting for web-2 to be healthy".into())
    );
    let next = gate(&input(2, "oon"));
    assert_eq!(next.partition, 1);
    assert_eq!(
        next.rollout,
        Rollout::Upgrading("1/3 peers updated; updating web-1".into())
    );
    // The StatefulSet controller has not replaced web-1 yet: wait, do not open web-0.
    let replacing = gate(&input(1, "oon"));
    assert_eq!(replacing.partition, 1);
    assert!(matches!(&replacing.rollout, Rollout::Upgrading(m) if m.ends_with("to update web-1")));
    assert_eq!(gate(&input(1, "onn")).partition, 0);
}

#[test]
fn all_updated_and_healthy_closes_the_partition() {
    let g = gate(&input(0, "nnn"));
    assert_eq!(
        g,
        Gate {
            partition: 3,
            rollout: Rollout::Settled
        }
    );
    // At rest a missing pod (a healing restart) is no rollout: the partition stays closed.
    let mut at_rest = input(3, "n-n");
    at_rest.current_revision = Some("new".into());
    assert_eq!(
        gate(&at_rest),
        Gate {
            partition: 3,
            rollout: Rollout::Settled
        }
    );
}

#[test]
fn no_pod_is_updated_during_a_healing_restart() {
    let mut i = input(2, "oon");
    i.healing = true;
    let g = gate(&i);
    assert_eq!(g.partition, 2);
    assert!(matches!(&g.rollout, Rollout::Upgrading(m) if m.contains("healing restart")));
}

#[test]
fn a_status_that_has_not_seen_the_spec_changes_nothing() {
    let mut i = input(3, "ooo");
    i.update_revision = None;
    assert_eq!(
        gate(&i),
        Gate {
            partition: 3,
            rollout: Rollout::Settled
        }
    );
}

#[test]
fn a_reverted_template_skips_the_pods_that_never_left_it() {
    // web-2 ran a broken template; the spec went back: "old" is the update revision again.
    let mut i = input(2, "ooN");
    i.update_revision = Some("old".into());
    i.pods[2] = pod("broken", false);
    let g = gate(&i);
    assert_eq!(g.partition, 2, "web-2 is replaced first");
    i.pods[2] = pod("old", true);
    assert_eq!(
        gate(&i),
        Gate {
            partition: 3,
            rollout: Rollout::Settled
        }
    );
}

#[test]
fn a_pod_that_cannot_run_stalls_at_once_naming_it() {
    let mut i = input(2, "ooN");
    if let Some(p) = i.pods[2].as_mut() {
        p.cannot_run = Some("init container kubo-config exits with code 127".into());
    }
    let g = gate(&i);
    assert_eq!(g.partition, 2, "the other peers keep the old template");
    assert_eq!(
        g.rollout,
        Rollout::Stalled {
            peer: "web-2".into(),
            why: "init container kubo-config exits with code 127".into()
        }
    );
}

#[test]
fn a_pod_not_healthy_within_the_grace_stalls() {
    let mut i = input(2, "ooN");
    assert!(matches!(gate(&i).rollout, Rollout::Upgrading(_)));
    if let Some(p) = i.pods[2].as_mut() {
        p.created = Some(NOW - 300_000);
    }
    match gate(&i).rollout {
        Rollout::Stalled { peer, why } => {
            assert_eq!(peer, "web-2");
            assert!(why.contains("300 s after its pod was created"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_last_updated_pod_is_still_gated() {
    let mut i = input(0, "Nnn");
    if let Some(p) = i.pods[0].as_mut() {
        p.cannot_run = Some("container kubo exits with code 1".into());
    }
    assert!(matches!(gate(&i).rollout, Rollout::Stalled { ref peer, .. } if peer == "web-0"));
}

fn container(name: &str, restarts: i32, state: ContainerState) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        restart_count: restarts,
        state: Some(state),
        ..Default::default()
    }
}

#[test]
fn kubelet_says_why_a_pod_cannot_run() {
    let exited = |code| ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some("Error".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let waiting = |reason: &str, message: &str| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: Some(message.into()),
        }),
        ..Default::default()
    };
    let with = |inits: Vec<ContainerStatus>, mains: Vec<ContainerStatus>| Pod {
        status: Some(PodStatus {
            init_container_statuses: Some(inits),
            container_statuses: Some(mains),
            ..Default::default()
        }),
        ..Default::default()
    };
    let once = with(vec![container("kubo-config", 1, exited(127))], vec![]);
    assert_eq!(cannot_run(&once), None, "one exit may be a hiccup");
    let looping = with(vec![container("kubo-config", 2, exited(127))], vec![]);
    assert_eq!(
        cannot_run(&looping).as_deref(),
        Some("init container kubo-config exits with code 127 (Error; restarted 2 times)")
    );
    let pull = with(
        vec![],
        vec![container(
            "kubo",
            0,
            waiting(
                "ImagePullBackOff",
                "Back-off pulling image \"ipfs/kubo:v9\"\nmore",
            ),
        )],
    );
    assert_eq!(
        cannot_run(&pull).as_deref(),
        Some(
            "container kubo cannot start: ImagePullBackOff: Back-off pulling image \"ipfs/kubo:v9\""
        )
    );
    let starting = with(
        vec![],
        vec![container("kubo", 0, waiting("ContainerCreating", ""))],
    );
    assert_eq!(cannot_run(&starting), None);
}

#[test]
fn a_settled_statefulset_gets_a_closed_partition_with_a_new_body() {
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    assert_eq!(
        partition_to_apply(None, 3),
        0,
        "a new StatefulSet creates every pod"
    );
    let mut sts = StatefulSet::default();
    set_partition(&mut sts, 1);
    sts.status = Some(StatefulSetStatus {
        current_revision: Some("a".into()),
        update_revision: Some("b".into()),
        ..Default::default()
    });
    assert_eq!(
        partition_to_apply(Some(&sts), 3),
        1,
        "a rollout keeps its gate"
    );
    if let Some(s) = sts.status.as_mut() {
        s.update_revision = Some("a".into());
    }
    assert_eq!(partition_to_apply(Some(&sts), 3), 3);
}
