//! mosquitto's dynamic-security plugin, driven over MQTT.
//!
//! Commands are JSON published to `$CONTROL/dynamic-security/v1`; the plugin answers on
//! `$CONTROL/dynamic-security/v1/response`, echoing each command's `correlationData`. Only the
//! plugin's administrator may use these topics.
//!
//! Layout in the plugin (mosquitto 2.0's plugin does not substitute `%u`/`%c` in role ACLs, so
//! each device gets its own role with literal topics):
//! - client `<id>`, client id bound to `<id>`, roles [`ROLE_GATE`] or [`ROLE_TERMINAL`] (no ACLs:
//!   they record the kind) and `tapgate-device-<id>` (its own topics);
//! - client `<name>` of a service, client id bound to `<name>`, role [`ROLE_BRIDGE`] or
//!   [`ROLE_MONITOR`].
//!
//! Deleting a client disconnects it at once.

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Packet, QoS};
use serde_json::{json, Value};
use tapgate_protocol::{DeviceId, DeviceKind, Topics};
use tapgate_runtime::mqtt::{BrokerSettings, TlsFiles};

use crate::policy::{self, Access, LoginKind, Rule, ServiceRole};
use crate::{AdminError, Login, Settings};

/// The plugin's command topic.
pub const CONTROL_TOPIC: &str = "$CONTROL/dynamic-security/v1";
/// Where the plugin answers.
pub const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";
/// Role held by every gate (records the kind; grants nothing by itself).
pub const ROLE_GATE: &str = "tapgate-gate";
/// Role held by every terminal (records the kind; grants nothing by itself).
pub const ROLE_TERMINAL: &str = "tapgate-terminal";
/// Role of the bridges.
pub const ROLE_BRIDGE: &str = "tapgate-bridge";
/// Role of the monitor.
pub const ROLE_MONITOR: &str = "tapgate-monitor";

/// The role holding one device's own topics.
pub fn device_role(id: &DeviceId) -> String {
    format!("tapgate-device-{id}")
}

/// The role recording a device kind.
pub const fn kind_role(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Gate => ROLE_GATE,
        DeviceKind::Terminal => ROLE_TERMINAL,
    }
}

/// The role of a service.
pub const fn service_role(role: ServiceRole) -> &'static str {
    match role {
        ServiceRole::Bridge => ROLE_BRIDGE,
        ServiceRole::Monitor => ROLE_MONITOR,
    }
}

/// The plugin's ACL entries for a rule. Device rules have literal topics (`subscribeLiteral`);
/// service rules hold wildcards (`subscribePattern`), and the bridge's are also allowed behind
/// any `$share/<group>/`.
fn acls(rules: &[Rule], literal: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for r in rules {
        match r.access {
            Access::Publish => out.push(json!({
                "acltype": "publishClientSend", "topic": r.topic, "allow": true, "priority": 0
            })),
            Access::Subscribe if literal => out.push(json!({
                "acltype": "subscribeLiteral", "topic": r.topic, "allow": true, "priority": 0
            })),
            Access::Subscribe => {
                out.push(json!({
                    "acltype": "subscribePattern", "topic": r.topic, "allow": true, "priority": 0
                }));
                out.push(json!({
                    "acltype": "subscribePattern",
                    "topic": Topics::shared("+", &r.topic),
                    "allow": true,
                    "priority": 0
                }));
            }
        }
    }
    out
}

/// A connection to the plugin as its administrator.
pub struct Dynsec {
    client: AsyncClient,
    events: EventLoop,
    topics: Topics,
    timeout: Duration,
    next: u64,
}

impl std::fmt::Debug for Dynsec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dynsec")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// The administrator's broker options, built as every program's are: TLS for mqtts:// (the
/// admin's password never crosses the network in clear where TLS was asked for), TCP_NODELAY; a
/// clean session with a client id of its own, and room for listings of every login.
fn admin_options(settings: &Settings) -> Result<rumqttc::MqttOptions, AdminError> {
    let mut pid = [0u8; 6];
    getrandom::fill(&mut pid).map_err(|e| AdminError::Random(e.to_string()))?;
    let suffix: String = pid.iter().map(|b| format!("{b:02x}")).collect();
    let broker = BrokerSettings {
        url: settings.mqtt.clone(),
        username: Some(settings.admin_username.clone()),
        password: Some(settings.admin_password.clone().unwrap_or_default()),
        tls: TlsFiles {
            ca: settings.mqtt_ca.clone(),
            cert: None,
            key: None,
        },
        keep_alive: Duration::from_secs(30),
    };
    let mut opts = broker
        .options(&format!("tapgate-admin-{suffix}"))
        .map_err(|e| AdminError::Settings {
            field: "mqtt",
            why: e.to_string(),
        })?;
    opts.set_clean_session(true);
    // Listings of every login can be large.
    opts.set_max_packet_size(1 << 20, 1 << 20);
    Ok(opts)
}

impl Dynsec {
    /// Logs in as the administrator and subscribes to the plugin's answers.
    pub async fn connect(settings: &Settings, topics: Topics) -> Result<Self, AdminError> {
        let (client, events) = tapgate_runtime::mqtt::client(admin_options(settings)?, 16);
        let mut me = Self {
            client,
            events,
            topics,
            timeout: settings.timeout,
            next: 0,
        };
        let url = &settings.mqtt;
        let address = format!("{}:{}", url.host, url.port);
        let secs = me.timeout.as_secs().max(1);
        let timed_out = |what: &str| AdminError::Timeout {
            what: what.into(),
            secs,
        };
        tokio::time::timeout(me.timeout, me.logged_in(settings, &address))
            .await
            .map_err(|_| timed_out("the connection"))??;
        me.client
            .subscribe(RESPONSE_TOPIC, QoS::AtLeastOnce)
            .await
            .map_err(|e| AdminError::Connect {
                address: address.clone(),
                why: e.to_string(),
            })?;
        tokio::time::timeout(me.timeout, me.subscribed(settings, &address))
            .await
            .map_err(|_| timed_out("the subscription"))??;
        Ok(me)
    }

    /// Waits until the broker accepts the administrator's login (`address` names it in errors).
    async fn logged_in(&mut self, settings: &Settings, address: &str) -> Result<(), AdminError> {
        loop {
            match self.events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => {
                    return Err(AdminError::Refused {
                        command: format!("the login of {:?}", settings.admin_username),
                        message: format!("{code:?}"),
                    })
                }
                Err(e) => {
                    return Err(AdminError::Connect {
                        address: address.to_owned(),
                        why: e.to_string(),
                    })
                }
            }
        }
    }

    /// Waits until the broker grants the subscription to the plugin's answers: only the
    /// dynamic-security administrator may read them.
    async fn subscribed(&mut self, settings: &Settings, address: &str) -> Result<(), AdminError> {
        loop {
            match self.events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let ok = ack
                        .return_codes
                        .iter()
                        .all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure));
                    return if ok {
                        Ok(())
                    } else {
                        Err(AdminError::Refused {
                            command: format!("a subscription to {RESPONSE_TOPIC}"),
                            message: format!(
                                "{:?} is not the dynamic-security administrator",
                                settings.admin_username
                            ),
                        })
                    };
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(AdminError::Connect {
                        address: address.to_owned(),
                        why: e.to_string(),
                    })
                }
            }
        }
    }

    /// Sends `commands` in one message and returns the plugin's answer to each, in order.
    async fn request(&mut self, mut commands: Vec<Value>) -> Result<Vec<Value>, AdminError> {
        let what = commands
            .iter()
            .filter_map(|c| c["command"].as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut ids = Vec::new();
        for c in commands.iter_mut() {
            self.next += 1;
            let id = format!("tapgate-admin-{}", self.next);
            c["correlationData"] = Value::String(id.clone());
            ids.push(id);
        }
        let body = json!({ "commands": commands }).to_string();
        self.client
            .publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, body)
            .await
            .map_err(|e| AdminError::Connect {
                address: "broker".into(),
                why: e.to_string(),
            })?;
        let secs = self.timeout.as_secs().max(1);
        let wait = async {
            loop {
                match self.events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == RESPONSE_TOPIC => {
                        let v: Value = serde_json::from_slice(&p.payload).map_err(|e| {
                            AdminError::Protocol {
                                command: what.clone(),
                                why: format!("answer is not JSON: {e}"),
                            }
                        })?;
                        let answers = v["responses"].as_array().cloned().unwrap_or_default();
                        let mine: Vec<Value> = ids
                            .iter()
                            .filter_map(|id| {
                                answers
                                    .iter()
                                    .find(|a| a["correlationData"].as_str() == Some(id))
                                    .cloned()
                            })
                            .collect();
                        if mine.len() == ids.len() {
                            return Ok(mine);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(AdminError::Connect {
                            address: "broker".into(),
                            why: e.to_string(),
                        })
                    }
                }
            }
        };
        tokio::time::timeout(self.timeout, wait)
            .await
            .map_err(|_| AdminError::Timeout {
                what: what.clone(),
                secs,
            })?
    }

    /// Sends commands and fails on the first error the plugin reports, except the ones listed in
    /// `tolerated` (e.g. "Role already exists").
    async fn run(
        &mut self,
        commands: Vec<Value>,
        tolerated: &[&str],
    ) -> Result<Vec<Value>, AdminError> {
        let answers = self.request(commands).await?;
        for a in &answers {
            if let Some(err) = a["error"].as_str() {
                if !tolerated.contains(&err) {
                    return Err(AdminError::Refused {
                        command: a["command"].as_str().unwrap_or("a command").to_owned(),
                        message: err.to_owned(),
                    });
                }
            }
        }
        Ok(answers)
    }

    async fn exists(&mut self, username: &str) -> Result<bool, AdminError> {
        let a = self
            .run(
                vec![json!({"command": "getClient", "username": username})],
                &["Client not found"],
            )
            .await?;
        Ok(a.first().is_some_and(|a| a["error"].is_null()))
    }

    /// Creates device `id` of `kind` with `password`.
    pub async fn add_device(
        &mut self,
        id: &DeviceId,
        kind: DeviceKind,
        password: &str,
    ) -> Result<(), AdminError> {
        if self.exists(id.as_str()).await? {
            return Err(AdminError::Exists {
                username: id.to_string(),
            });
        }
        let role = device_role(id);
        let rules = policy::device_rules(&self.topics, kind, id);
        self.run(
            vec![
                json!({"command": "createRole", "rolename": kind_role(kind),
                       "textdescription": format!("every tapgate {kind}; grants nothing")}),
                json!({"command": "deleteRole", "rolename": role}),
                json!({"command": "createRole", "rolename": role,
                       "textdescription": format!("the topics of {kind} {id}"),
                       "acls": acls(&rules, true)}),
                json!({"command": "createClient", "username": id.as_str(), "password": password,
                       "clientid": id.as_str(),
                       "textdescription": format!("tapgate {kind}"),
                       "roles": [{"rolename": kind_role(kind)}, {"rolename": role}]}),
            ],
            &["Role already exists", "Role not found"],
        )
        .await?;
        Ok(())
    }

    /// Creates the login of a bridge or the monitor.
    pub async fn add_service(
        &mut self,
        name: &str,
        role: ServiceRole,
        password: &str,
    ) -> Result<(), AdminError> {
        if self.exists(name).await? {
            return Err(AdminError::Exists {
                username: name.to_owned(),
            });
        }
        let rules = policy::service_rules(&self.topics, role);
        let rolename = service_role(role);
        // The role is shared by every login of the service; rewrite it so it always matches
        // this version's policy.
        self.run(
            vec![json!({"command": "createRole", "rolename": rolename,
                       "textdescription": format!("tapgate {}", role.as_str())})],
            &["Role already exists"],
        )
        .await?;
        let current = self
            .run(
                vec![json!({"command": "getRole", "rolename": rolename})],
                &[],
            )
            .await?;
        let mut commands = Vec::new();
        if let Some(old) = current
            .first()
            .and_then(|a| a["data"]["role"]["acls"].as_array())
        {
            for acl in old {
                commands.push(json!({"command": "removeRoleACL", "rolename": rolename,
                                     "acltype": acl["acltype"], "topic": acl["topic"]}));
            }
        }
        for acl in acls(&rules, false) {
            let mut c = acl;
            c["command"] = json!("addRoleACL");
            c["rolename"] = json!(rolename);
            commands.push(c);
        }
        commands.push(
            json!({"command": "createClient", "username": name, "password": password,
                             "clientid": name,
                             "textdescription": format!("tapgate {}", role.as_str()),
                             "roles": [{"rolename": rolename}]}),
        );
        self.run(commands, &[]).await?;
        Ok(())
    }

    /// Deletes a login (disconnecting it) and its own role, if it has one.
    pub async fn remove(&mut self, username: &str) -> Result<(), AdminError> {
        let mut commands = vec![json!({"command": "deleteClient", "username": username})];
        if let Ok(id) = DeviceId::new(username) {
            commands.push(json!({"command": "deleteRole", "rolename": device_role(&id)}));
        }
        self.run(commands, &["Role not found"]).await?;
        Ok(())
    }

    /// Every client of the plugin, with its kind read from its roles.
    pub async fn list(&mut self) -> Result<Vec<Login>, AdminError> {
        let a = self
            .run(
                vec![json!({"command": "listClients", "verbose": true, "count": -1, "offset": 0})],
                &[],
            )
            .await?;
        let clients = a
            .first()
            .and_then(|a| a["data"]["clients"].as_array())
            .ok_or_else(|| AdminError::Protocol {
                command: "listClients".into(),
                why: "no data.clients in the answer".into(),
            })?;
        Ok(clients
            .iter()
            .filter_map(|c| {
                let username = c["username"].as_str()?.to_owned();
                let roles: Vec<&str> = c["roles"]
                    .as_array()
                    .map(|r| r.iter().filter_map(|r| r["rolename"].as_str()).collect())
                    .unwrap_or_default();
                let kind = if roles.contains(&ROLE_GATE) {
                    LoginKind::Device(DeviceKind::Gate)
                } else if roles.contains(&ROLE_TERMINAL) {
                    LoginKind::Device(DeviceKind::Terminal)
                } else if roles.contains(&ROLE_BRIDGE) {
                    LoginKind::Service(ServiceRole::Bridge)
                } else if roles.contains(&ROLE_MONITOR) {
                    LoginKind::Service(ServiceRole::Monitor)
                } else {
                    LoginKind::Other
                };
                Some(Login { username, kind })
            })
            .collect())
    }

    /// Disconnects cleanly.
    pub async fn close(mut self) {
        if self.client.disconnect().await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while self.events.poll().await.is_ok() {}
            })
            .await;
        }
    }
}
