//! A dashboard's answers checked against the OpenAPI document it serves: types, required
//! fields and enums by a JSON Schema 2020-12 validator, and every field of the answer described
//! by the document (its schemas allow unknown fields, so the validator alone would not notice
//! one the document forgot).

use serde_json::Value;

/// How the answer of `method path` with `status` and `body` differs from the document; empty
/// when it matches.
pub fn problems(method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
    use ipfs_kit_operator::dashboard::openapi::{answer_schema, undeclared_fields};
    let schema = match answer_schema(method, path, status) {
        Ok(Some(schema)) => schema,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![e],
    };
    let validator = jsonschema::validator_for(&schema).expect("the document's schema compiles");
    let mut problems: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    problems.extend(
        undeclared_fields(&schema, body)
            .into_iter()
            .map(|field| format!("{field}: not described in openapi.json")),
    );
    problems
}

/// Fails the test when the answer is off its schema, showing the answer.
pub fn check(method: &str, path: &str, status: u16, body: &Value) {
    let problems = problems(method, path, status, body);
    assert!(
        problems.is_empty(),
        "{method} {path} answered {status} off its schema:\n{}\n{body:#}",
        problems.join("\n")
    );
}

/// A client for the dashboard on loopback.
pub fn http() -> reqwest::Client {
    ipfs_kit_operator::tls::ensure_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
}

/// `GET {base}{path}`, its answer checked against the document: the status and the body.
pub async fn get(http: &reqwest::Client, base: &str, path: &str) -> (u16, Value) {
    let resp = http
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    check("GET", path, status, &body);
    (status, body)
}

/// `POST {base}{path}` with a JSON `body` (none for `Value::Null`) and the bearer `token`, its
/// answer checked against the document.
pub async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut req = http.post(format!("{base}{path}"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if !body.is_null() {
        req = req.json(body);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    check("POST", path, status, &answer);
    (status, answer)
}
