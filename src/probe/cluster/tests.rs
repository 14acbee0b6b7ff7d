use super::*;
use reqwest::header::HeaderValue;
use serde_json::json;

#[test]
fn pin_counts_group_statuses() {
    let mut counts = PinCounts::default();
    for status in [
        "pinned",
        "pinned",
        "pinning",
        "pin_queued",
        "pin_error",
        "remote",
    ] {
        count_pin(
            &mut counts,
            &json!({"cid": "x", "peer_map": {"p": {"status": status}}}),
        );
    }
    assert_eq!(
        counts,
        PinCounts {
            queued: 1,
            pinning: 1,
            pinned: 2,
            error: 1
        }
    );
}

/// Serves `lines` as a chunked NDJSON stream on 127.0.0.1, then `trailer` as X-Stream-Error.
async fn ndjson_server(lines: Vec<&'static str>, trailer: &'static str) -> Endpoint {
    use axum::body::Body;
    use http_body::Frame;
    use http_body_util::StreamBody;
    let app = axum::Router::new().route(
        "/peers",
        axum::routing::get(move || {
            let lines = lines.clone();
            async move {
                let mut frames: Vec<Result<Frame<bytes::Bytes>, std::convert::Infallible>> = lines
                    .into_iter()
                    .map(|l| Ok(Frame::data(bytes::Bytes::from(format!("{l}\n")))))
                    .collect();
                let mut trailers = http::HeaderMap::new();
                trailers.insert("X-Stream-Error", HeaderValue::from_static(trailer));
                frames.push(Ok(Frame::trailers(trailers)));
                http::Response::builder()
                    .header("Content-Type", "application/json")
                    .header("Trailer", "X-Stream-Error")
                    .body(Body::new(StreamBody::new(futures::stream::iter(frames))))
                    .expect("response")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Endpoint::new(format!("http://{addr}"))
}

#[tokio::test]
async fn stream_reads_one_object_per_line() {
    let ep = ndjson_server(vec![r#"{"id":"a"}"#, r#"{"id":"b"}"#, r#"{"id":"c"}"#], "").await;
    let client = IpfsClient::new().expect("client");
    let mut ids = Vec::new();
    client
        .cluster_stream(&ep, "/peers", Duration::from_secs(5), |v| {
            ids.push(v["id"].as_str().unwrap_or("").to_string())
        })
        .await
        .expect("stream");
    assert_eq!(ids, ["a", "b", "c"]);
}

#[tokio::test]
async fn stream_error_trailer_fails_the_probe() {
    let ep = ndjson_server(vec![r#"{"id":"a"}"#], "peer b did not answer").await;
    let client = IpfsClient::new().expect("client");
    let err = client
        .cluster_stream(&ep, "/peers", Duration::from_secs(5), |_| {})
        .await
        .expect_err("trailer error");
    assert_eq!(err.kind, FailureKind::HttpStatus);
    assert!(
        err.message.contains("peer b did not answer"),
        "{}",
        err.message
    );
}

#[test]
fn the_pin_request_carries_the_options() {
    let options = PinOptions {
        name: "default/docs".into(),
        replication_min: Some(2),
        replication_max: None,
        mode: "direct".into(),
    };
    assert_eq!(
        pin_query(&options),
        [
            ("mode", "direct".to_string()),
            ("replication-min", "2".to_string()),
            ("name", "default/docs".to_string())
        ]
    );
}
