//! The EMQX backend against a stand-in for EMQX's HTTP API v5.
//!
//! No EMQX runs here. The stand-in is a small HTTP server on a free port that records every
//! request and answers as EMQX's documentation describes (status codes and `{code, message}`
//! error bodies) for the built-in authentication users, the built-in authorization rules and
//! client kicks. It checks what tapgate-admin sends, not how a real EMQX behaves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tapgate_admin::emqx::{CLIENTS, RULES, USERS};
use tapgate_admin::{AdminError, Backend, Broker, Expect, LoginKind, ServiceRole, Settings};
use tapgate_protocol::{DeviceId, DeviceKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const KEY: &str = "tapgate-admin-key";
const SECRET: &str = "s3cret-for-the-stand-in";

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    auth: Option<String>,
    body: Value,
}

#[derive(Default)]
struct State {
    users: BTreeMap<String, String>,
    rules: BTreeMap<String, Value>,
    clients: Vec<String>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<State>>;

fn answer(status: u16, body: Value) -> (u16, Value) {
    (status, body)
}

fn route(state: &Shared, seen: &Seen) -> (u16, Value) {
    let mut st = state.lock().expect("lock");
    st.seen.push(seen.clone());
    let expected = format!(
        "Basic {}",
        base64_encode(format!("{KEY}:{SECRET}").as_bytes())
    );
    if seen.auth.as_deref() != Some(expected.as_str()) {
        return answer(
            401,
            json!({"code": "BAD_API_KEY_OR_SECRET", "message": "Check api_key/api_secret"}),
        );
    }
    let (path, _query) = seen.path.split_once('?').unwrap_or((&seen.path, ""));
    match (seen.method.as_str(), path) {
        ("POST", p) if p == USERS => {
            let id = seen.body["user_id"].as_str().unwrap_or_default().to_owned();
            if st.users.contains_key(&id) {
                return answer(
                    409,
                    json!({"code": "ALREADY_EXISTS", "message": "User already exists"}),
                );
            }
            let pw = seen.body["password"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            st.users.insert(id.clone(), pw);
            answer(201, json!({"user_id": id, "is_superuser": false}))
        }
        ("GET", p) if p == USERS => {
            let data: Vec<Value> = st
                .users
                .keys()
                .map(|u| json!({"user_id": u, "is_superuser": false}))
                .collect();
            answer(
                200,
                json!({"data": data, "meta": {"page": 1, "limit": 1000, "hasnext": false}}),
            )
        }
        ("POST", p) if p == RULES => {
            for entry in seen.body.as_array().cloned().unwrap_or_default() {
                let user = entry["username"].as_str().unwrap_or_default().to_owned();
                st.rules.insert(user, entry["rules"].clone());
            }
            answer(204, Value::Null)
        }
        ("GET", p) if p == RULES => {
            let data: Vec<Value> = st
                .rules
                .iter()
                .map(|(u, r)| json!({"username": u, "rules": r}))
                .collect();
            answer(
                200,
                json!({"data": data, "meta": {"page": 1, "limit": 1000, "hasnext": false}}),
            )
        }
        ("DELETE", p) if p.starts_with(&format!("{USERS}/")) => {
            let id = &p[USERS.len() + 1..];
            if st.users.remove(id).is_some() {
                answer(204, Value::Null)
            } else {
                answer(
                    404,
                    json!({"code": "NOT_FOUND", "message": "User not found"}),
                )
            }
        }
        ("DELETE", p) if p.starts_with(&format!("{RULES}/")) => {
            let id = p[RULES.len() + 1..].to_owned();
            st.rules.remove(&id);
            answer(204, Value::Null)
        }
        ("DELETE", p) if p.starts_with(&format!("{CLIENTS}/")) => {
            let id = p[CLIENTS.len() + 1..].to_owned();
            if let Some(i) = st.clients.iter().position(|c| *c == id) {
                st.clients.remove(i);
                answer(204, Value::Null)
            } else {
                answer(
                    404,
                    json!({"code": "CLIENTID_NOT_FOUND", "message": "Client ID not found"}),
                )
            }
        }
        _ => answer(
            404,
            json!({"code": "NOT_FOUND", "message": "Request Path Not Found"}),
        ),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Starts the stand-in on 127.0.0.1:0; its base URL and state.
async fn stand_in() -> (String, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state: Shared = Arc::default();
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let st = st.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                let (head_end, length) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len = head
                            .lines()
                            .filter_map(|l| l.split_once(':'))
                            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, len);
                    }
                };
                while buf.len() < head_end + length {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut words = head.split_whitespace();
                let method = words.next().unwrap_or_default().to_owned();
                let path = words.next().unwrap_or_default().to_owned();
                let auth = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                    .map(|(_, v)| v.trim().to_owned());
                let body_bytes = &buf[head_end..];
                let body = if body_bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(body_bytes).unwrap_or(Value::Null)
                };
                let (status, reply) = route(
                    &st,
                    &Seen {
                        method,
                        path,
                        auth,
                        body,
                    },
                );
                let text = if reply.is_null() {
                    String::new()
                } else {
                    reply.to_string()
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), state)
}

fn settings(api: &str, secret: &str) -> Settings {
    Settings {
        backend: Backend::Emqx,
        emqx_api: api.to_owned(),
        emqx_api_key: Some(KEY.into()),
        emqx_api_secret: Some(secret.into()),
        timeout: Duration::from_secs(5),
        ..Settings::default()
    }
}

#[tokio::test]
async fn devices_are_created_listed_and_revoked_through_the_api() {
    let (api, state) = stand_in().await;
    let mut broker = Broker::connect(&settings(&api, SECRET))
        .await
        .expect("settings");
    let g7 = DeviceId::new("g7").expect("id");
    broker
        .add_device(&g7, DeviceKind::Gate, "Zq8-plenty-long-password")
        .await
        .expect("device add g7");
    {
        let st = state.lock().expect("lock");
        assert_eq!(
            st.users.get("g7").map(String::as_str),
            Some("Zq8-plenty-long-password")
        );
        let create = &st.seen[0];
        assert_eq!(
            (create.method.as_str(), create.path.as_str()),
            ("POST", USERS)
        );
        assert_eq!(create.body["is_superuser"], json!(false));
        let rules = st.rules.get("g7").expect("rules for g7");
        let want = json!([
            {"topic": "tapgate/gate/g7/tap", "permission": "allow", "action": "publish"},
            {"topic": "tapgate/gate/g7/status", "permission": "allow", "action": "publish"},
            {"topic": "tapgate/gate/g7/heartbeat", "permission": "allow", "action": "publish"},
            {"topic": "tapgate/gate/g7/decision", "permission": "allow", "action": "subscribe"},
        ]);
        assert_eq!(rules, &want);
    }
    // The same id again: EMQX's refusal, in words.
    let err = broker
        .add_device(&g7, DeviceKind::Gate, "Zq8-plenty-long-password")
        .await
        .expect_err("duplicate");
    assert!(matches!(err, AdminError::Exists { .. }), "{err}");
    let t3 = DeviceId::new("t3").expect("id");
    broker
        .add_device(&t3, DeviceKind::Terminal, "Another-long-password-1")
        .await
        .expect("device add t3");
    broker
        .add_service(
            "tapgate-bridge-2",
            ServiceRole::Bridge,
            "Bridge-long-password-2",
        )
        .await
        .expect("service add");
    let list = broker.list().await.expect("list");
    let kinds: Vec<(String, LoginKind)> =
        list.iter().map(|l| (l.username.clone(), l.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("g7".to_owned(), LoginKind::Device(DeviceKind::Gate)),
            ("t3".to_owned(), LoginKind::Device(DeviceKind::Terminal)),
            (
                "tapgate-bridge-2".to_owned(),
                LoginKind::Service(ServiceRole::Bridge)
            ),
        ]
    );
    {
        let st = state.lock().expect("lock");
        let bridge = st.rules.get("tapgate-bridge-2").expect("bridge rules");
        let text = bridge.to_string();
        assert!(text.contains("$share/+/tapgate/+/+/tap"), "{text}");
        for r in bridge.as_array().expect("array") {
            if r["action"] == "publish" {
                let t = r["topic"].as_str().unwrap_or_default();
                assert!(
                    t.ends_with("/decision")
                        || t.starts_with("tapgate/events/")
                        || t == "tapgate/bridge-probe/+",
                    "a bridge publishes {t}"
                );
            }
        }
    }
    // Revocation: the user, its rules and its connection.
    state.lock().expect("lock").clients.push("g7".into());
    broker
        .remove("g7", Expect::Device)
        .await
        .expect("device remove g7");
    {
        let st = state.lock().expect("lock");
        assert!(!st.users.contains_key("g7") && !st.rules.contains_key("g7"));
        assert!(st.clients.is_empty(), "the live g7 was kicked");
        let tail: Vec<(String, String)> = st
            .seen
            .iter()
            .rev()
            .take(3)
            .map(|s| (s.method.clone(), s.path.clone()))
            .collect();
        assert_eq!(
            tail,
            [
                ("DELETE".to_owned(), format!("{CLIENTS}/g7")),
                ("DELETE".to_owned(), format!("{RULES}/g7")),
                ("DELETE".to_owned(), format!("{USERS}/g7")),
            ]
        );
    }
    // Refusals name the problem.
    let err = broker.remove("g7", Expect::Device).await.expect_err("gone");
    assert!(matches!(err, AdminError::NotFound { .. }), "{err}");
    let err = broker
        .remove("tapgate-bridge-2", Expect::Device)
        .await
        .expect_err("not a device");
    assert!(
        err.to_string().contains("bridge login, not a device"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_api_secret_is_reported_with_emqx_s_message() {
    let (api, _state) = stand_in().await;
    let mut broker = Broker::connect(&settings(&api, "wrong-secret"))
        .await
        .expect("settings");
    let err = broker
        .add_device(
            &DeviceId::new("g8").expect("id"),
            DeviceKind::Gate,
            "Zq8-plenty-long-password",
        )
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("BAD_API_KEY_OR_SECRET"), "{text}");
    // Nothing listening: a connection error naming the address.
    let err = Broker::connect(&settings("http://127.0.0.1:1", SECRET))
        .await
        .expect("settings are fine")
        .list()
        .await
        .expect_err("no server");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}
