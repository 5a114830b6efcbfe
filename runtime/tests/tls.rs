//! MQTT over TLS against a real mosquitto, with a CA and certificates made in the test.
//!
//! What a device or bridge relies on: `mqtts://` with the operator's CA connects and works; a
//! broker whose certificate does not chain to that CA is refused; a client certificate whose CN
//! is the device id logs in as that device on a listener that requires certificates, and a
//! client without one is refused there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rumqttc::{Event, Packet, QoS};
use tapgate_runtime::mqtt::{client, BrokerSettings, TlsFiles};
use tapgate_testkit::Mosquitto;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1/localhost and a client certificate with CN `g7`.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "tapgate test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("ca");

        let server_key = KeyPair::generate().expect("key");
        let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        server
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        let server_cert = server
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("server cert");

        let client_key = KeyPair::generate().expect("key");
        let mut client = CertificateParams::new(Vec::<String>::new()).expect("params");
        client.distinguished_name.push(DnType::CommonName, "g7");
        let client_cert = client
            .signed_by(&client_key, &ca_cert, &ca_key)
            .expect("client cert");

        let other_key = KeyPair::generate().expect("key");
        let mut other = CertificateParams::new(Vec::<String>::new()).expect("params");
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        other
            .distinguished_name
            .push(DnType::CommonName, "somebody else's CA");
        let other_cert = other.self_signed(&other_key).expect("other ca");

        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write pem");
        };
        write("ca.pem", ca_cert.pem());
        write("server.pem", server_cert.pem());
        write("server.key", server_key.serialize_pem());
        write("client.pem", client_cert.pem());
        write("client.key", client_key.serialize_pem());
        write("other-ca.pem", other_cert.pem());
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn listener_lines(&self, extra: &str) -> String {
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\n{extra}",
            self.path("ca.pem").display(),
            self.path("server.pem").display(),
            self.path("server.key").display(),
        )
    }
}

/// Connects, subscribes to `topic`, publishes to it and waits for the message to come back.
/// Returns the first error instead when the connection fails.
async fn round_trip(settings: &BrokerSettings, client_id: &str, topic: &str) -> Result<(), String> {
    let opts = settings.options(client_id).map_err(|e| e.to_string())?;
    let (client, mut eventloop) = client(opts, 16);
    let work = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe(topic, QoS::AtLeastOnce)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    client
                        .publish(topic, QoS::AtLeastOnce, false, "hello")
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| "no answer within 10 s".to_owned())?
}

fn mqtts(broker: &Mosquitto) -> BrokerSettings {
    BrokerSettings::new(&format!("mqtts://127.0.0.1:{}", broker.port())).expect("url")
}

fn files(ca: &Path, cert: Option<(&Path, &Path)>) -> TlsFiles {
    TlsFiles {
        ca: Some(ca.to_owned()),
        cert: cert.map(|(c, _)| c.to_owned()),
        key: cert.map(|(_, k)| k.to_owned()),
    }
}

#[tokio::test]
async fn mqtts_with_the_operators_ca_connects_and_a_foreign_ca_is_refused() {
    let pki = Pki::new();
    let broker = Mosquitto::with_config(&pki.listener_lines("allow_anonymous true\n"));

    let trusted = mqtts(&broker).with_tls(files(&pki.path("ca.pem"), None));
    round_trip(&trusted, "tls-ok", "t/tls")
        .await
        .unwrap_or_else(|e| panic!("TLS round trip failed: {e}\n{}", broker.log()));

    let foreign = mqtts(&broker).with_tls(files(&pki.path("other-ca.pem"), None));
    let e = round_trip(&foreign, "tls-foreign", "t/tls")
        .await
        .expect_err("a broker certificate from another CA must be refused");
    assert!(
        e.to_lowercase().contains("certificate") || e.to_lowercase().contains("tls"),
        "{e}"
    );

    // Plain MQTT to a TLS listener does not get through either.
    let plain = BrokerSettings::new(&broker.url()).expect("url");
    assert!(round_trip(&plain, "plain", "t/tls").await.is_err());
}

#[tokio::test]
async fn a_client_certificate_logs_in_as_its_cn() {
    let pki = Pki::new();
    // Only g7 may use its own topic: the username comes from the certificate, not the client.
    let acl = pki.dir.path().join("acl");
    std::fs::write(&acl, "user g7\ntopic readwrite tapgate/gate/g7/#\n").expect("acl");
    let broker = Mosquitto::with_config(&pki.listener_lines(&format!(
        "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\nacl_file {}\n",
        acl.display()
    )));

    let with_cert = mqtts(&broker).with_tls(files(
        &pki.path("ca.pem"),
        Some((&pki.path("client.pem"), &pki.path("client.key"))),
    ));
    round_trip(&with_cert, "g7", "tapgate/gate/g7/decision")
        .await
        .unwrap_or_else(|e| panic!("certificate login failed: {e}\n{}", broker.log()));

    let without_cert = mqtts(&broker).with_tls(files(&pki.path("ca.pem"), None));
    assert!(
        round_trip(&without_cert, "g7", "tapgate/gate/g7/decision")
            .await
            .is_err(),
        "a client without a certificate got in"
    );
}
