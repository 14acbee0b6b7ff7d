//! The dashboard's bad-input table: requests a careless or hostile client sends, each with the
//! answer it must get. Run against a dashboard whose status has `cluster` with a peer `peer`; the
//! caller then checks that nothing was acted on (no request reached the reconciler, nothing
//! restarted).

use serde_json::{Value, json};

/// How a request authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    /// The right bearer token.
    Token,
    /// A header that is not the right token.
    Header(&'static str),
}

/// One request of the table.
pub struct BadRequest {
    pub what: &'static str,
    pub method: &'static str,
    pub path: String,
    pub auth: Auth,
    /// Content-Type and raw body; `None` sends no body.
    pub body: Option<(&'static str, Vec<u8>)>,
    pub status: u16,
}

fn json_body(v: Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", v.to_string().into_bytes()))
}

fn raw(content_type: &'static str, text: &str) -> Option<(&'static str, Vec<u8>)> {
    Some((content_type, text.as_bytes().to_vec()))
}

/// At least 30 requests that must be refused with the given 4xx and change nothing.
pub fn table(cluster: &str, peer: &str) -> Vec<BadRequest> {
    let backend = format!("{cluster}/{peer}/ipfs");
    let daemon = "/api/dashboard/daemon/action".to_string();
    let cluster_action = "/api/dashboard/cluster/action".to_string();
    let check = "/api/dashboard/health/check".to_string();
    let restart = format!("/api/dashboard/backends/{backend}/restart");
    let logs = format!("/api/dashboard/logs/{backend}");
    let spec = format!("/api/dashboard/clusters/{cluster}/spec");
    let r = |what, method, path: &str, auth, body, status| BadRequest {
        what,
        method,
        path: path.to_string(),
        auth,
        body,
        status,
    };
    let big = "x".repeat(64 * 1024);
    vec![
        r(
            "malformed JSON",
            "POST",
            &daemon,
            Auth::Token,
            raw("application/json", "{\"daemon_name\": "),
            400,
        ),
        r(
            "not JSON at all",
            "POST",
            &daemon,
            Auth::Token,
            raw("application/json", "restart please"),
            400,
        ),
        r(
            "body sent as text/plain",
            "POST",
            &daemon,
            Auth::Token,
            raw(
                "text/plain",
                &json!({"daemon_name": backend, "action": "restart"}).to_string(),
            ),
            415,
        ),
        r("no body", "POST", &daemon, Auth::Token, None, 415),
        r(
            "unknown field",
            "POST",
            &daemon,
            Auth::Token,
            json_body(json!({"daemon_name": backend, "action": "restart", "sudo": true})),
            422,
        ),
        r(
            "unknown action",
            "POST",
            &daemon,
            Auth::Token,
            json_body(json!({"daemon_name": backend, "action": "explode"})),
            422,
        ),
        r(
            "action of the wrong type",
            "POST",
            &daemon,
            Auth::Token,
            json_body(json!({"daemon_name": backend, "action": 3})),
            422,
        ),
        r(
            "missing daemon_name",
            "POST",
            &daemon,
            Auth::Token,
            json_body(json!({"action": "restart"})),
            422,
        ),
        r(
            "null daemon_name",
            "POST",
            &daemon,
            Auth::Token,
            json_body(json!({"daemon_name": null, "action": "restart"})),
            422,
        ),
        r(
            "a JSON array body",
            "POST",
            &daemon,
            Auth::Token,
            json_body(json!([backend, "restart"])),
            422,
        ),
        r(
            "unknown cluster",
            "POST",
            &daemon,
            Auth::Token,
            json_body(json!({"daemon_name": format!("nosuch/{peer}/ipfs"), "action": "restart"})),
            404,
        ),
        r(
            "unknown peer",
            "POST",
            &daemon,
            Auth::Token,
            json_body(
                json!({"daemon_name": format!("{cluster}/peer-99/ipfs"), "action": "restart"}),
            ),
            404,
        ),
        r(
            "unknown daemon kind",
            "POST",
            &daemon,
            Auth::Token,
            json_body(
                json!({"daemon_name": format!("{cluster}/{peer}/nginx"), "action": "restart"}),
            ),
            404,
        ),
        r(
            "path traversal in daemon_name",
            "POST",
            &daemon,
            Auth::Token,
            json_body(json!({"daemon_name": "../../../etc/passwd", "action": "restart"})),
            404,
        ),
        r(
            "absolute path as daemon_name",
            "POST",
            &daemon,
            Auth::Token,
            json_body(
                json!({"daemon_name": format!("/{cluster}/{peer}/ipfs"), "action": "restart"}),
            ),
            404,
        ),
        r(
            "huge body",
            "POST",
            &daemon,
            Auth::Token,
            json_body(json!({"daemon_name": big, "action": "restart"})),
            413,
        ),
        r(
            "no token",
            "POST",
            &daemon,
            Auth::None,
            json_body(json!({"daemon_name": backend, "action": "restart"})),
            401,
        ),
        r(
            "wrong token",
            "POST",
            &daemon,
            Auth::Header("Bearer not-the-token-0123456789"),
            json_body(json!({"daemon_name": backend, "action": "restart"})),
            401,
        ),
        r(
            "basic auth instead of bearer",
            "POST",
            &daemon,
            Auth::Header("Basic YWRtaW46YWRtaW4="),
            json_body(json!({"daemon_name": backend, "action": "restart"})),
            401,
        ),
        r(
            "empty bearer",
            "POST",
            &daemon,
            Auth::Header("Bearer "),
            json_body(json!({"daemon_name": backend, "action": "restart"})),
            401,
        ),
        r(
            "token in the query string only",
            "POST",
            &format!("{daemon}?token=x"),
            Auth::None,
            json_body(json!({"daemon_name": backend, "action": "restart"})),
            401,
        ),
        r(
            "stop (the reconciler keeps declared peers running)",
            "POST",
            &daemon,
            Auth::Token,
            json_body(json!({"daemon_name": backend, "action": "stop"})),
            422,
        ),
        r(
            "cluster start",
            "POST",
            &cluster_action,
            Auth::Token,
            json_body(json!({"action": "start", "cluster": cluster})),
            422,
        ),
        r(
            "cluster action: unknown action",
            "POST",
            &cluster_action,
            Auth::Token,
            json_body(json!({"action": "reboot", "cluster": cluster})),
            422,
        ),
        r(
            "cluster action: unknown cluster",
            "POST",
            &cluster_action,
            Auth::Token,
            json_body(json!({"action": "restart", "cluster": "nosuch"})),
            404,
        ),
        r(
            "cluster action: unknown field",
            "POST",
            &cluster_action,
            Auth::Token,
            json_body(json!({"action": "restart", "cluster": cluster, "all": true})),
            422,
        ),
        r(
            "cluster action: restart without token",
            "POST",
            &cluster_action,
            Auth::None,
            json_body(json!({"action": "restart", "cluster": cluster})),
            401,
        ),
        r(
            "cluster action: empty JSON body",
            "POST",
            &cluster_action,
            Auth::Token,
            raw("application/json", ""),
            400,
        ),
        r(
            "restart: unknown peer",
            "POST",
            &format!("/api/dashboard/backends/{cluster}/peer-99/ipfs/restart"),
            Auth::Token,
            None,
            404,
        ),
        r(
            "restart: encoded traversal",
            "POST",
            &format!("/api/dashboard/backends/{cluster}/..%2F..%2Fetc/ipfs/restart"),
            Auth::Token,
            None,
            404,
        ),
        r("restart: no token", "POST", &restart, Auth::None, None, 401),
        r(
            "restart: wrong token",
            "POST",
            &restart,
            Auth::Header("Bearer wrong-token-0123456789"),
            None,
            401,
        ),
        r(
            "unknown backend sub-route",
            "POST",
            &format!("/api/dashboard/backends/{backend}/explode"),
            Auth::Token,
            None,
            404,
        ),
        r(
            "GET on the daemon action route",
            "GET",
            &daemon,
            Auth::Token,
            None,
            405,
        ),
        r(
            "GET on the cluster action route",
            "GET",
            &cluster_action,
            Auth::Token,
            None,
            405,
        ),
        r(
            "GET on the health check route",
            "GET",
            &check,
            Auth::Token,
            None,
            405,
        ),
        r(
            "PUT on the daemon action route",
            "PUT",
            &daemon,
            Auth::Token,
            json_body(json!({"daemon_name": backend, "action": "restart"})),
            405,
        ),
        r(
            "POST on the status route",
            "POST",
            "/api/dashboard/status",
            Auth::Token,
            json_body(json!({})),
            405,
        ),
        r(
            "DELETE a backend",
            "DELETE",
            &format!("/api/dashboard/backends/{backend}/status"),
            Auth::Token,
            None,
            405,
        ),
        r(
            "health check: unknown backend",
            "POST",
            &check,
            Auth::Token,
            json_body(json!({"backend_name": format!("{cluster}/peer-99/cluster")})),
            404,
        ),
        r(
            "health check: unknown field",
            "POST",
            &check,
            Auth::Token,
            json_body(json!({"backend": backend})),
            422,
        ),
        r(
            "health check: no token",
            "POST",
            &check,
            Auth::None,
            json_body(json!({})),
            401,
        ),
        r(
            "logs: encoded traversal",
            "GET",
            "/api/dashboard/logs/..%2F..%2F..%2Fetc%2Fpasswd",
            Auth::None,
            None,
            404,
        ),
        r(
            "logs: unknown peer",
            "GET",
            &format!("/api/dashboard/logs/{cluster}/peer-99/ipfs"),
            Auth::None,
            None,
            404,
        ),
        r(
            "logs: zero lines",
            "GET",
            &format!("{logs}?lines=0"),
            Auth::None,
            None,
            422,
        ),
        r(
            "logs: too many lines",
            "GET",
            &format!("{logs}?lines=1000000"),
            Auth::None,
            None,
            422,
        ),
        r(
            "logs: lines not a number",
            "GET",
            &format!("{logs}?lines=all"),
            Auth::None,
            None,
            400,
        ),
        r(
            "logs: unknown parameter",
            "GET",
            &format!("{logs}?file=/etc/passwd"),
            Auth::None,
            None,
            400,
        ),
        r(
            "status of an unknown backend",
            "GET",
            &format!("/api/dashboard/backends/{cluster}/{peer}/nginx/status"),
            Auth::None,
            None,
            404,
        ),
        r(
            "history of an unknown name",
            "GET",
            "/api/dashboard/history/nosuch",
            Auth::None,
            None,
            404,
        ),
        r(
            "history: since is neither a time nor a duration",
            "GET",
            &format!("/api/dashboard/history/{cluster}?since=yesterday"),
            Auth::None,
            None,
            400,
        ),
        r(
            "history: a step of zero",
            "GET",
            &format!("/api/dashboard/history/{cluster}?step=0s"),
            Auth::None,
            None,
            400,
        ),
        r(
            "history: unknown parameter",
            "GET",
            &format!("/api/dashboard/history/{cluster}?limit=5"),
            Auth::None,
            None,
            400,
        ),
        r(
            "spec: a read-only field",
            "PATCH",
            &spec,
            Auth::Token,
            json_body(json!({"kubo": {"image": "ipfs/kubo:v0.43.0"}})),
            422,
        ),
        r(
            "spec: no field of the spec",
            "PATCH",
            &spec,
            Auth::Token,
            json_body(json!({"replicaz": 2})),
            422,
        ),
        r(
            "spec: a field removed with null",
            "PATCH",
            &spec,
            Auth::Token,
            json_body(json!({"replicas": null})),
            422,
        ),
        r(
            "spec: a number as a string",
            "PATCH",
            &spec,
            Auth::Token,
            json_body(json!({"replicas": "4"})),
            422,
        ),
        r(
            "spec: out of bounds",
            "PATCH",
            &spec,
            Auth::Token,
            json_body(json!({"health": {"failureThreshold": 0}})),
            422,
        ),
        r(
            "spec: not an object",
            "PATCH",
            &spec,
            Auth::Token,
            json_body(json!([{"replicas": 4}])),
            422,
        ),
        r(
            "spec: without the token",
            "PATCH",
            &spec,
            Auth::None,
            json_body(json!({"paused": true})),
            401,
        ),
        r(
            "spec: a wrong token",
            "PATCH",
            &spec,
            Auth::Header("Bearer not-the-dashboard-token-0123"),
            json_body(json!({"paused": true})),
            401,
        ),
        r(
            "spec: an unknown cluster",
            "PATCH",
            "/api/dashboard/clusters/no-such-cluster/spec",
            Auth::Token,
            json_body(json!({"paused": true})),
            404,
        ),
        r(
            "pins: patched",
            "PATCH",
            &format!("/api/dashboard/clusters/{cluster}/pins"),
            Auth::Token,
            json_body(json!({"paused": true})),
            404,
        ),
        r(
            "clusters: an unknown part",
            "GET",
            &format!("/api/dashboard/clusters/{cluster}/secrets"),
            Auth::None,
            None,
            404,
        ),
        r(
            "an unknown route",
            "GET",
            "/api/dashboard/secrets",
            Auth::None,
            None,
            404,
        ),
    ]
}

/// Sends every request of the table to `base` and checks each answer: the status, and an error
/// envelope naming a code and a reason. Returns the failures, one line each.
pub async fn check_all(base: &str, token: &str, table: &[BadRequest]) -> Vec<String> {
    // A fresh connection per request: the server closes one after refusing an unread body.
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client");
    let mut failures = Vec::new();
    for req in table {
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).expect("method");
        let mut builder = http.request(method, format!("{base}{}", req.path));
        builder = match req.auth {
            Auth::None => builder,
            Auth::Token => builder.bearer_auth(token),
            Auth::Header(h) => builder.header("authorization", h),
        };
        if let Some((content_type, body)) = &req.body {
            builder = builder
                .header("content-type", *content_type)
                .body(body.clone());
        }
        let resp = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {} {}: {e}", req.what, req.method, req.path));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let envelope = body["success"] == json!(false)
            && body["error"]["code"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty());
        if status != req.status || !envelope {
            failures.push(format!(
                "{}: {} {} answered {status} {body} (expected {} with an error envelope)",
                req.what, req.method, req.path, req.status
            ));
        }
    }
    failures
}
