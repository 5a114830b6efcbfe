//! EMQX 5 through its HTTP API v5.
//!
//! A login is a user of the built-in authentication database
//! (`password_based:built_in_database`) plus its own rules in the built-in authorization database
//! (`built_in_database`, rules per username). emqx/etc/emqx.conf puts that source before the file
//! rules and sets `use_username_as_clientid`, so a device's identity is its username. Removal
//! deletes both and kicks the client (its client id is its username).
//!
//! This backend follows EMQX's documented API; it is tested against a stand-in HTTP server that
//! answers like that documentation, not against a real EMQX.

use serde_json::{json, Value};
use tapgate_protocol::{DeviceId, DeviceKind, Topics};

use crate::http::{Answer, Endpoint};
use crate::policy::{self, Access, LoginKind, Rule, ServiceRole};
use crate::{AdminError, Login, Settings};

/// The built-in authentication database's users.
pub const USERS: &str = "/api/v5/authentication/password_based%3Abuilt_in_database/users";
/// The built-in authorization database's per-username rules.
pub const RULES: &str = "/api/v5/authorization/sources/built_in_database/rules/users";
/// Connected clients.
pub const CLIENTS: &str = "/api/v5/clients";
const PAGE: usize = 1000;

/// EMQX's API, with an API key.
#[derive(Debug)]
pub struct Emqx {
    api: Endpoint,
    topics: Topics,
}

/// The rule objects `device add` writes for a device, as the API takes them.
pub fn device_rule_objects(topics: &Topics, kind: DeviceKind, id: &DeviceId) -> Vec<Value> {
    emqx_rules(&policy::device_rules(topics, kind, id), false)
}

/// EMQX rule objects for `rules`. The bridge's subscriptions are also allowed behind `$share/`.
fn emqx_rules(rules: &[Rule], shared: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for r in rules {
        let action = match r.access {
            Access::Publish => "publish",
            Access::Subscribe => "subscribe",
        };
        out.push(json!({"topic": r.topic, "permission": "allow", "action": action}));
        if shared && r.access == Access::Subscribe {
            out.push(
                json!({"topic": Topics::shared("+", &r.topic), "permission": "allow",
                            "action": "subscribe"}),
            );
        }
    }
    out
}

fn refused(what: &str, a: &Answer) -> AdminError {
    let message = a.body["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {} {}", a.status, a.body));
    let code = a.body["code"].as_str().unwrap_or_default();
    AdminError::Refused {
        command: what.to_owned(),
        message: if code.is_empty() {
            message
        } else {
            format!("{code}: {message}")
        },
    }
}

impl Emqx {
    /// Checks the settings; nothing is sent until the first command.
    pub fn new(settings: &Settings, topics: Topics) -> Result<Self, AdminError> {
        let api = Endpoint::new(
            &settings.emqx_api,
            settings.emqx_api_key.as_deref().unwrap_or_default(),
            settings.emqx_api_secret.as_deref().unwrap_or_default(),
            settings.timeout,
        )?;
        Ok(Self { api, topics })
    }

    async fn create(
        &mut self,
        username: &str,
        password: &str,
        rules: Vec<Value>,
    ) -> Result<(), AdminError> {
        let what = format!("creating user {username:?}");
        let a = self
            .api
            .call(
                "POST",
                USERS,
                Some(&json!({"user_id": username, "password": password, "is_superuser": false})),
            )
            .await?;
        match a.status {
            200 | 201 => {}
            409 => {
                return Err(AdminError::Exists {
                    username: username.to_owned(),
                })
            }
            _ => return Err(refused(&what, &a)),
        }
        let body = json!([{"username": username, "rules": rules}]);
        let a = self.api.call("POST", RULES, Some(&body)).await?;
        if !(200..300).contains(&a.status) {
            // Leave no login without rules behind.
            let _ = self
                .api
                .call("DELETE", &format!("{USERS}/{username}"), None)
                .await;
            return Err(refused(&format!("the rules of {username:?}"), &a));
        }
        Ok(())
    }

    /// Creates device `id` of `kind` with `password`.
    pub async fn add_device(
        &mut self,
        id: &DeviceId,
        kind: DeviceKind,
        password: &str,
    ) -> Result<(), AdminError> {
        let rules = device_rule_objects(&self.topics, kind, id);
        self.create(id.as_str(), password, rules).await
    }

    /// Creates the login of a bridge or the monitor.
    pub async fn add_service(
        &mut self,
        name: &str,
        role: ServiceRole,
        password: &str,
    ) -> Result<(), AdminError> {
        let rules = emqx_rules(
            &policy::service_rules(&self.topics, role),
            role == ServiceRole::Bridge,
        );
        self.create(name, password, rules).await
    }

    /// Deletes the user and its rules and kicks its connection.
    pub async fn remove(&mut self, username: &str) -> Result<(), AdminError> {
        let a = self
            .api
            .call("DELETE", &format!("{USERS}/{username}"), None)
            .await?;
        if !(200..300).contains(&a.status) {
            return Err(refused(&format!("deleting user {username:?}"), &a));
        }
        let a = self
            .api
            .call("DELETE", &format!("{RULES}/{username}"), None)
            .await?;
        if !(200..300).contains(&a.status) && a.status != 404 {
            return Err(refused(&format!("deleting the rules of {username:?}"), &a));
        }
        let a = self
            .api
            .call("DELETE", &format!("{CLIENTS}/{username}"), None)
            .await?;
        if !(200..300).contains(&a.status) && a.status != 404 {
            return Err(refused(&format!("disconnecting {username:?}"), &a));
        }
        Ok(())
    }

    async fn pages(&mut self, path: &str) -> Result<Vec<Value>, AdminError> {
        let mut out = Vec::new();
        for page in 1.. {
            let a = self
                .api
                .call("GET", &format!("{path}?page={page}&limit={PAGE}"), None)
                .await?;
            if a.status != 200 {
                return Err(refused(&format!("GET {path}"), &a));
            }
            let data = a.body["data"]
                .as_array()
                .ok_or_else(|| AdminError::Protocol {
                    command: format!("GET {path}"),
                    why: "no data array".into(),
                })?;
            out.extend(data.iter().cloned());
            if data.len() < PAGE {
                break;
            }
        }
        Ok(out)
    }

    /// Every user, with its kind read from its rules.
    pub async fn list(&mut self) -> Result<Vec<Login>, AdminError> {
        let users = self.pages(USERS).await?;
        let rules = self.pages(RULES).await?;
        let p = self.topics.prefix().to_owned();
        Ok(users
            .iter()
            .filter_map(|u| u["user_id"].as_str())
            .map(|username| {
                let topics: Vec<(String, String)> = rules
                    .iter()
                    .find(|r| r["username"].as_str() == Some(username))
                    .and_then(|r| r["rules"].as_array())
                    .map(|rs| {
                        rs.iter()
                            .map(|r| {
                                (
                                    r["action"].as_str().unwrap_or_default().to_owned(),
                                    r["topic"].as_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let kind = kind_of(&p, username, &topics);
                Login {
                    username: username.to_owned(),
                    kind,
                }
            })
            .collect())
    }
}

fn kind_of(prefix: &str, username: &str, rules: &[(String, String)]) -> LoginKind {
    let has = |action: &str, topic: &str| rules.iter().any(|(a, t)| a == action && t == topic);
    if has("subscribe", &format!("{prefix}/gate/{username}/decision")) {
        LoginKind::Device(DeviceKind::Gate)
    } else if has(
        "subscribe",
        &format!("{prefix}/terminal/{username}/decision"),
    ) {
        LoginKind::Device(DeviceKind::Terminal)
    } else if has("publish", &format!("{prefix}/events/#")) {
        LoginKind::Service(ServiceRole::Bridge)
    } else if has("subscribe", &format!("{prefix}/events/#")) {
        LoginKind::Service(ServiceRole::Monitor)
    } else {
        LoginKind::Other
    }
}
