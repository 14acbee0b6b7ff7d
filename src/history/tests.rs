use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::query::{Since, parse_since, parse_step};
use super::*;

const T0: UnixMillis = 1_795_813_200_000; // 2026-11-27T21:00:00Z
const SECOND: UnixMillis = 1000;

fn status(score: i32, bytes_in: i64, probed: UnixMillis) -> IpfsClusterStatus {
    let probed = k8s_openapi::jiff::Timestamp::from_millisecond(probed).expect("time");
    let mut s: IpfsClusterStatus = serde_json::from_value(json!({
        "phase": if score >= 80 { "Healthy" } else { "Degraded" },
        "healthScore": score,
        "peers": [{"name": "p-0", "state": "Healthy", "score": score, "repoSize": 1000,
                   "bytesIn": bytes_in, "bytesOut": bytes_in / 2,
                   "pinsPinned": 3, "pinsQueued": 0, "pinsPinning": 1, "pinsError": 0}],
    }))
    .expect("status");
    s.peers[0].last_probe = Some(Time(probed));
    s
}

fn scores(answer: &Answer) -> Vec<Option<i32>> {
    answer.samples.iter().map(|s| s.score).collect()
}

fn q(raw: &str) -> Query {
    Query::parse(Some(raw)).expect("query")
}

#[test]
fn samples_carry_score_state_repo_pins_and_rates_between_probes() {
    let h = History::in_memory();
    let interval = Duration::from_secs(1);
    h.record("c", interval, &status(90, 1_000, T0), T0);
    // The same probe sampled again: the rate is unknown still (one total so far).
    h.record("c", interval, &status(90, 1_000, T0), T0 + SECOND);
    // A probe 2 s later with 4000 more bytes in: 2000 B/s in, 1000 B/s out.
    h.record(
        "c",
        interval,
        &status(80, 5_000, T0 + 2 * SECOND),
        T0 + 2 * SECOND,
    );
    // Sampled again before the next probe: the same rate, not zero.
    h.record(
        "c",
        interval,
        &status(80, 5_000, T0 + 2 * SECOND),
        T0 + 3 * SECOND,
    );
    // Kubo restarted: its totals went down, no rate until the next probe.
    h.record(
        "c",
        interval,
        &status(70, 10, T0 + 4 * SECOND),
        T0 + 4 * SECOND,
    );
    let peer = h
        .query("c/p-0", &Query::default(), T0)
        .expect("peer series");
    let rates: Vec<Option<f64>> = peer.samples.iter().map(|s| s.bytes_in_per_second).collect();
    assert_eq!(rates, [None, None, Some(2000.0), Some(2000.0), None]);
    assert_eq!(peer.samples[2].bytes_out_per_second, Some(1000.0));
    let s = &peer.samples[0];
    assert_eq!(
        (s.time.as_str(), s.state.as_str(), s.repo_size),
        ("2026-11-27T21:00:00Z", "Healthy", Some(1000))
    );
    assert_eq!(
        (s.pins_pinned, s.pins_queued, s.pins_pinning, s.pins_error),
        (Some(3), Some(0), Some(1), Some(0))
    );
    assert_eq!(peer.interval, Some(interval));
    let cluster = h.query("c", &Query::default(), T0).expect("cluster series");
    assert_eq!(
        scores(&cluster),
        [Some(90), Some(90), Some(80), Some(80), Some(70)]
    );
    assert_eq!(cluster.samples[4].state, "Degraded");
    assert_eq!(
        cluster.samples[0].repo_size, None,
        "no peer figures on a cluster"
    );
    assert!(h.query("c/nope", &Query::default(), T0).is_none());
}

#[test]
fn since_takes_a_time_or_a_duration_and_step_a_duration_and_bad_values_name_the_parameter() {
    assert_eq!(parse_since("15m"), Ok(Since::Ago(Duration::from_secs(900))));
    assert_eq!(
        parse_since("2d"),
        Ok(Since::Ago(Duration::from_secs(172_800)))
    );
    assert_eq!(parse_since("2026-11-27T21:00:00Z"), Ok(Since::At(T0)));
    assert_eq!(
        parse_since("2026-11-27T22:00:00+01:00"),
        Ok(Since::At(T0)),
        "offsets"
    );
    assert_eq!(parse_step("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(
        Query::parse(Some("since=6h&step=5m")),
        Ok(Query {
            since: Some(Since::Ago(Duration::from_secs(6 * 3600))),
            step: Some(Duration::from_secs(300)),
        })
    );
    assert_eq!(
        Query::parse(Some("since=2026-11-27T21%3A00%3A00Z")).map(|q| q.since),
        Ok(Some(Since::At(T0))),
        "percent-encoded"
    );
    assert_eq!(Query::parse(None), Ok(Query::default()));
    for (raw, parameter) in [
        ("since=yesterday", "since"),
        ("since=2026-13-01T00:00:00Z", "since"),
        ("since=", "since"),
        ("step=0s", "step"),
        ("step=500ms", "step"),
        ("step=fast", "step"),
        ("step=-5m", "step"),
        ("limit=10", "limit"),
        ("since=1h&bogus", "bogus"),
    ] {
        let err = Query::parse(Some(raw)).expect_err(raw);
        assert_eq!(err.parameter, parameter, "{raw}: {err}");
        assert!(err.to_string().starts_with(parameter), "{raw}: {err}");
    }
}

/// Samples every second for `n` seconds from T0, score `90 - i % 3 * 10` (90, 80, 70, ...).
fn every_second(n: i64) -> History {
    let h = History::in_memory();
    for i in 0..n {
        let score = 90 - (i % 3) as i32 * 10;
        h.record(
            "c",
            Duration::from_secs(1),
            &status(score, 0, T0),
            T0 + i * SECOND,
        );
    }
    h
}

#[test]
fn step_averages_numbers_keeps_the_last_state_and_aligns_buckets_on_the_epoch() {
    let h = every_second(7);
    let a = h.query("c", &q("step=3s"), T0).expect("series");
    // T0 is a multiple of 3 s: buckets [0,3) [3,6) [6,9).
    assert_eq!(scores(&a), [Some(80), Some(80), Some(90)]);
    assert_eq!(a.step, Some(Duration::from_secs(3)));
    assert_eq!(
        a.samples
            .iter()
            .map(|s| s.time.as_str())
            .collect::<Vec<_>>(),
        [
            "2026-11-27T21:00:00Z",
            "2026-11-27T21:00:03Z",
            "2026-11-27T21:00:06Z"
        ]
    );
    // The last state of the bucket: 70 is Degraded.
    assert_eq!(a.samples[0].state, "Degraded");
    let b = h.query("c", &q("step=2s"), T0).expect("series");
    // [90,80] [70,90] [80,70] [90]: means 85, 80, 75, 90.
    assert_eq!(scores(&b), [Some(85), Some(80), Some(75), Some(90)]);
    // A peer's pins and repo size are averaged too.
    let p = h.query("c/p-0", &q("step=1m"), T0).expect("peer");
    assert_eq!(p.samples.len(), 1);
    assert_eq!(
        (p.samples[0].pins_pinning, p.samples[0].repo_size),
        (Some(1), Some(1000))
    );
}

#[test]
fn since_selects_the_range_and_the_default_is_the_latest_samples() {
    let h = every_second(DEFAULT_POINTS as i64 + 40);
    let now = T0 + (DEFAULT_POINTS as i64 + 40) * SECOND;
    let all = h.query("c", &Query::default(), now).expect("series");
    assert_eq!(all.samples.len(), DEFAULT_POINTS, "the latest ones");
    assert_eq!(all.samples[0].time, "2026-11-27T21:00:40Z");
    let last_10s = h.query("c", &q("since=10s"), now).expect("series");
    assert_eq!(last_10s.samples.len(), 10);
    assert_eq!(last_10s.since, Some(now - 10 * SECOND));
    let from = h
        .query("c", &q("since=2026-11-27T21:00:05Z"), now)
        .expect("series");
    assert_eq!(from.samples.len(), DEFAULT_POINTS + 35);
    assert_eq!(from.samples[0].time, "2026-11-27T21:00:05Z");
    let future = h.query("c", &q("since=2030-01-01T00:00:00Z"), now);
    assert_eq!(future.map(|a| a.samples.len()), Some(0));
}

#[test]
fn a_long_range_is_downsampled_to_at_most_max_points() {
    let h = every_second(3 * MAX_POINTS as i64);
    let now = T0 + 3 * MAX_POINTS as i64 * SECOND;
    let a = h.query("c", &q("since=1d"), now).expect("series");
    assert!(a.samples.len() <= MAX_POINTS, "{}", a.samples.len());
    assert_eq!(a.step, Some(Duration::from_secs(4)));
}

#[test]
fn each_series_is_bounded_by_count_and_by_age() {
    let h = History::in_memory();
    let s = status(90, 0, T0);
    let count = MAX_SAMPLES as i64 + 100;
    for i in 0..count {
        h.record("c", Duration::from_secs(1), &s, T0 + i * SECOND);
    }
    assert_eq!(h.len("c"), MAX_SAMPLES);
    assert_eq!(h.len("c/p-0"), MAX_SAMPLES);
    let oldest = h
        .query("c", &q("since=2026-01-01T00:00:00Z"), T0)
        .expect("series");
    assert!(oldest.step.is_some(), "downsampled: more than MAX_POINTS");
    // A sample a day later pushes out every sample older than the retention.
    let later = T0 + count * SECOND + RETENTION.as_millis() as i64 - 10 * SECOND;
    h.record("c", Duration::from_secs(1), &s, later);
    assert_eq!(
        h.len("c"),
        11,
        "the 10 s still within 24 h, and the new one"
    );
}

#[test]
fn forgetting_a_cluster_drops_its_series_and_its_peers() {
    let h = every_second(3);
    h.record("cc", Duration::from_secs(1), &status(50, 0, T0), T0);
    h.forget("c");
    assert_eq!((h.len("c"), h.len("c/p-0")), (0, 0));
    assert_eq!(h.len("cc"), 1, "a cluster whose name starts the same stays");
}

#[test]
fn the_store_keeps_the_samples_for_the_next_process_and_stays_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(STORE_FILE);
    {
        let h = History::open(&path, T0);
        for i in 0..5 {
            h.record(
                "c",
                Duration::from_secs(1),
                &status(90 - i as i32, 0, T0),
                T0 + i * SECOND,
            );
        }
    }
    let reopened = History::open(&path, T0 + 5 * SECOND);
    let a = reopened.query("c", &Query::default(), T0).expect("series");
    assert_eq!(
        scores(&a),
        [Some(90), Some(89), Some(88), Some(87), Some(86)]
    );
    assert_eq!(reopened.len("c/p-0"), 5);
    reopened.record(
        "c",
        Duration::from_secs(1),
        &status(10, 0, T0),
        T0 + 5 * SECOND,
    );
    drop(reopened);
    // A day later the old samples are gone from the store, not only from memory.
    let day_later = T0 + RETENTION.as_millis() as i64 + 3 * SECOND;
    drop(History::open(&path, day_later));
    let again = History::open(&path, T0);
    assert_eq!(
        again.len("c"),
        3,
        "only samples 3 to 5 were within 24 h of that open"
    );
}

#[test]
fn an_unreadable_store_is_set_aside_and_a_fresh_one_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(STORE_FILE);
    std::fs::write(
        &path,
        b"not a redb file at all, just garbage bytes".repeat(200),
    )
    .expect("write garbage");
    let h = History::open(&path, T0);
    assert!(h.is_empty());
    h.record("c", Duration::from_secs(1), &status(90, 0, T0), T0);
    drop(h);
    assert!(
        dir.path().join("history.redb.corrupt").is_file(),
        "the unreadable file is kept aside"
    );
    let reopened = History::open(&path, T0);
    assert_eq!(reopened.len("c"), 1, "the fresh store works");
}

#[test]
fn a_store_in_an_unwritable_place_leaves_the_history_in_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no-such-dir").join(STORE_FILE);
    let h = History::open(&path, T0);
    h.record("c", Duration::from_secs(1), &status(90, 0, T0), T0);
    assert_eq!(h.len("c"), 1);
}

#[test]
fn changes_handed_to_the_store_together_are_written_in_their_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(STORE_FILE);
    {
        let h = History::open(&path, T0);
        // Many changes in a row reach the writer while it commits: one transaction each time,
        // in which a cluster's samples and then its deletion leave nothing behind.
        for i in 0..200 {
            let t = T0 + i * SECOND;
            h.record("gone", Duration::from_secs(1), &status(50, 0, t), t);
            h.record("kept", Duration::from_secs(1), &status(90, 0, t), t);
        }
        h.forget("gone");
        h.record(
            "gone",
            Duration::from_secs(1),
            &status(70, 0, T0),
            T0 + 200 * SECOND,
        );
    }
    let reopened = History::open(&path, T0 + 200 * SECOND);
    assert_eq!(reopened.len("kept"), 200);
    assert_eq!(reopened.len("kept/p-0"), 200);
    let gone = reopened
        .query("gone", &Query::default(), T0)
        .expect("series");
    assert_eq!(
        scores(&gone),
        [Some(70)],
        "only the sample after the deletion"
    );
    assert_eq!(reopened.len("gone/p-0"), 1);
}
