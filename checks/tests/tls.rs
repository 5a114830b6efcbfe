//! MQTT over TLS on a real mosquitto, with a CA and certificates generated here.
//!
//! The broker runs the repository's policy plus the TLS listener of mosquitto/tls.conf (its
//! paths pointed at the generated files). A device with its own password connects over TLS; a
//! client that does not trust the CA, or speaks plain MQTT, does not. With client certificates
//! required, a certificate whose CN is a device id logs in as that device, and one from another
//! CA is refused.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tapgate_checks::repo;
use tapgate_protocol::{DeviceId, DeviceKind, Topics};
use tapgate_testkit::session::MqttSession;
use tapgate_testkit::{free_port, Mosquitto};

/// A CA and what it signed.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key, as files and as DER.
struct Issued {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca_key = KeyPair::generate().expect("key");
        let ca = params.self_signed(&ca_key).expect("CA");
        Self { ca, ca_key }
    }

    fn server(&self) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("server cert");
        Issued { cert, key }
    }

    fn client(&self, cn: &str) -> Issued {
        self.client_numbered(cn, None)
    }

    /// A client certificate with this serial number (one a CRL can name).
    fn client_numbered(&self, cn: &str, serial: Option<u64>) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.serial_number = serial.map(rcgen::SerialNumber::from);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("client cert");
        Issued { cert, key }
    }
}

/// A CRL of `pki`'s CA revoking `serials`, in PEM.
fn crl(pki: &Pki, serials: &[u64]) -> String {
    let params = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(*s),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    params
        .signed_by(&pki.ca, &pki.ca_key)
        .expect("CRL")
        .pem()
        .expect("CRL PEM")
}

/// The TLS lines of mosquitto/tls.conf, with the port and the generated files.
fn tls_listener(dir: &std::path::Path, port: u16, pki: &Pki, client_certs: bool) -> String {
    tls_listener_with_crl(dir, port, pki, client_certs, None)
}

/// [`tls_listener`], with the `crlfile` line on and holding `crl` when given.
fn tls_listener_with_crl(
    dir: &std::path::Path,
    port: u16,
    pki: &Pki,
    client_certs: bool,
    crl: Option<String>,
) -> String {
    let server = pki.server();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write pem");
        path.display().to_string()
    };
    let ca = write("ca.crt", pki.ca.pem());
    let cert = write("server.crt", server.cert.pem());
    let key = write("server.key", server.key.serialize_pem());
    let crl = crl.map(|c| write("crl.pem", c));
    let template = repo::read("mosquitto/tls.conf").expect("mosquitto/tls.conf");
    let mut out = String::new();
    for line in template.lines() {
        let line = match line {
            "listener 8883" => format!("listener {port} 127.0.0.1"),
            l if l.starts_with("certfile ") => format!("certfile {cert}"),
            l if l.starts_with("keyfile ") => format!("keyfile {key}"),
            l if l.starts_with("cafile ") => format!("cafile {ca}"),
            "#require_certificate true" if client_certs => "require_certificate true".into(),
            "#use_identity_as_username true" if client_certs => {
                "use_identity_as_username true".into()
            }
            "#use_username_as_clientid true" if client_certs => {
                "use_username_as_clientid true".into()
            }
            l if l.starts_with("#crlfile ") && crl.is_some() => {
                format!("crlfile {}", crl.as_deref().unwrap_or_default())
            }
            l => l.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    if crl.is_some() {
        assert!(
            out.contains("\ncrlfile "),
            "mosquitto/tls.conf has no #crlfile line to turn on"
        );
    }
    for needed in ["listener ", "certfile ", "keyfile ", "cafile "] {
        assert!(
            out.contains(needed),
            "mosquitto/tls.conf has no {needed}line"
        );
    }
    out
}

/// Starts mosquitto with the repository's policy, the dynamic-security logins of the tests and a
/// TLS listener; returns it and the TLS port.
async fn broker(pki: &Pki, client_certs: bool) -> (Mosquitto, u16) {
    let tls_port = free_port();
    let certs = tempfile::tempdir().expect("temp dir");
    let tls = tls_listener(certs.path(), tls_port, pki, client_certs);
    // The certificate folder must outlive the broker: keep it for the whole test process.
    let _keep = certs.keep();
    let broker = support::broker_with(&tls).await;
    (broker, tls_port)
}

/// [`broker`] with client certificates required and `crl` as its `crlfile`.
async fn broker_with_crl(pki: &Pki, crl: String) -> (Mosquitto, u16) {
    let tls_port = free_port();
    let certs = tempfile::tempdir().expect("temp dir");
    let tls = tls_listener_with_crl(certs.path(), tls_port, pki, true, Some(crl));
    let _keep = certs.keep();
    let broker = support::broker_with(&tls).await;
    (broker, tls_port)
}

fn client_config(trust: &Pki, identity: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(trust.ca.der().to_vec()))
        .expect("CA into the root store");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(id.cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key.serialize_der())),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

fn tls_options(
    port: u16,
    client_id: &str,
    credentials: Option<(&str, String)>,
    config: Arc<rustls::ClientConfig>,
) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, "localhost", port);
    opts.set_keep_alive(Duration::from_secs(5));
    if let Some((user, pw)) = credentials {
        opts.set_credentials(user, pw);
    }
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    opts
}

#[tokio::test]
async fn devices_connect_over_tls_only_when_they_trust_the_broker() {
    let pki = Pki::new("tapgate test CA");
    let (broker, tls_port) = broker(&pki, false).await;
    let topics = Topics::default();
    let g1 = DeviceId::new("g1").expect("id");

    let opts = tls_options(
        tls_port,
        "g1",
        Some(("g1", support::password("g1"))),
        client_config(&pki, None),
    );
    let mut device = MqttSession::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("g1 over TLS: {e}\n{}", broker.log()));
    assert_eq!(
        device
            .subscribe(&topics.decision(DeviceKind::Gate, &g1))
            .await,
        Ok(true)
    );
    assert_eq!(
        device
            .subscribe(&topics.decision(DeviceKind::Gate, &DeviceId::new("g2").expect("id")))
            .await,
        Ok(false),
        "the policy holds over TLS too"
    );

    // A client that trusts another CA does not connect.
    let other = Pki::new("someone else's CA");
    let opts = tls_options(
        tls_port,
        "g1",
        Some(("g1", support::password("g1"))),
        client_config(&other, None),
    );
    assert!(
        MqttSession::connect(opts).await.is_err(),
        "untrusted broker accepted"
    );
    // A wrong password over TLS is refused like anywhere else.
    let opts = tls_options(
        tls_port,
        "g1",
        Some(("g1", "not-the-password".to_owned())),
        client_config(&pki, None),
    );
    assert!(
        MqttSession::connect(opts).await.is_err(),
        "wrong password accepted"
    );
    // Plain MQTT on the TLS port gets nowhere.
    let mut plain = MqttOptions::new("g1", "127.0.0.1", tls_port);
    plain.set_credentials("g1", support::password("g1"));
    assert!(
        MqttSession::connect(plain).await.is_err(),
        "plain MQTT on the TLS port"
    );
}

#[tokio::test]
async fn a_client_certificate_whose_cn_is_a_device_id_logs_in_as_that_device() {
    let pki = Pki::new("tapgate test CA");
    let (broker, tls_port) = broker(&pki, true).await;
    let topics = Topics::default();
    let g1 = DeviceId::new("g1").expect("id");
    let g1_cert = pki.client("g1");

    let opts = tls_options(tls_port, "g1", None, client_config(&pki, Some(&g1_cert)));
    let mut device = MqttSession::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("g1 with its certificate: {e}\n{}", broker.log()));
    assert_eq!(
        device
            .subscribe(&topics.decision(DeviceKind::Gate, &g1))
            .await,
        Ok(true),
        "its own decisions, as g1\n{}",
        broker.log()
    );
    assert_eq!(
        device
            .subscribe(&topics.decision(DeviceKind::Gate, &DeviceId::new("g2").expect("id")))
            .await,
        Ok(false),
        "not g2's"
    );
    drop(device);
    // The certificate's CN is the login and the client id: g1's certificate asking for client id
    // g2 is still g1, and the live g2 keeps its session.
    let g2 = DeviceId::new("g2").expect("id");
    let opts = tls_options(
        tls_port,
        "g2",
        None,
        client_config(&pki, Some(&pki.client("g2"))),
    );
    let mut live_g2 = MqttSession::connect(opts)
        .await
        .expect("g2 with its certificate");
    let opts = tls_options(tls_port, "g2", None, client_config(&pki, Some(&g1_cert)));
    let mut posing = MqttSession::connect(opts)
        .await
        .expect("g1's certificate connects");
    assert_eq!(
        posing
            .subscribe(&topics.decision(DeviceKind::Gate, &g2))
            .await,
        Ok(false),
        "g1's certificate is not g2"
    );
    assert_eq!(
        live_g2.closed(Duration::from_millis(300)).await,
        None,
        "the live g2 was disconnected by a client asking for its client id\n{}",
        broker.log()
    );
    drop(posing);

    // No certificate, or one from another CA: refused even with the right password.
    let opts = tls_options(
        tls_port,
        "g1",
        Some(("g1", support::password("g1"))),
        client_config(&pki, None),
    );
    assert!(MqttSession::connect(opts).await.is_err(), "no certificate");
    let other = Pki::new("someone else's CA");
    let forged = other.client("g1");
    let opts = tls_options(tls_port, "g1", None, client_config(&pki, Some(&forged)));
    assert!(
        MqttSession::connect(opts).await.is_err(),
        "a CN from another CA"
    );
    // A certificate for an id that is not provisioned gets a connection but no rights.
    let stranger = pki.client("g9");
    let opts = tls_options(tls_port, "g9", None, client_config(&pki, Some(&stranger)));
    if let Ok(mut s) = MqttSession::connect(opts).await {
        let g9 = DeviceId::new("g9").expect("id");
        assert_eq!(
            s.subscribe(&topics.decision(DeviceKind::Gate, &g9)).await,
            Ok(false),
            "an unprovisioned CN has no rights"
        );
    }
}

/// The stolen-device steps of docs/deploy.md: the device's login is removed and made again, and
/// its old certificate goes on the CRL that mosquitto/tls.conf's `crlfile` reads. The old
/// certificate is then refused at the TLS handshake, although its CN names a provisioned
/// device; the device's new certificate, and other devices', log in. The CRL is made here with
/// rcgen; `admin/tests/cert_revocation.rs` runs the same steps with `tapgate-admin cert`.
#[tokio::test]
async fn a_revoked_certificate_is_refused_though_its_device_exists() {
    let pki = Pki::new("tapgate test CA");
    let stolen = pki.client_numbered("g1", Some(1001));
    let reissued = pki.client_numbered("g1", Some(1002));
    let other = pki.client_numbered("g2", Some(1003));
    let (broker, tls_port) = broker_with_crl(&pki, crl(&pki, &[1001])).await;
    let topics = Topics::default();
    let g1 = DeviceId::new("g1").expect("id");

    let opts = tls_options(tls_port, "g1", None, client_config(&pki, Some(&stolen)));
    match MqttSession::connect(opts).await {
        Err(_) => {}
        Ok(mut s) => panic!(
            "the revoked certificate logged in (own decisions: {:?})\n{}",
            s.subscribe(&topics.decision(DeviceKind::Gate, &g1)).await,
            broker.log()
        ),
    }
    for (id, cert) in [("g1", &reissued), ("g2", &other)] {
        let device = DeviceId::new(id).expect("id");
        let opts = tls_options(tls_port, id, None, client_config(&pki, Some(cert)));
        let mut s = MqttSession::connect(opts)
            .await
            .unwrap_or_else(|e| panic!("{id} with a valid certificate: {e}\n{}", broker.log()));
        assert_eq!(
            s.subscribe(&topics.decision(DeviceKind::Gate, &device))
                .await,
            Ok(true),
            "{id} keeps its rights"
        );
    }
}
