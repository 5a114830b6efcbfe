use std::collections::BTreeSet;

use rcgen::{BasicConstraints, IsCa};

use super::record::canonical_serial;
use super::*;

/// A CA folder as docker/make-certs.sh leaves it: ca.crt and ca.key (ECDSA here; the
/// integration test uses the script's own RSA CA).
fn ca_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = new_ca("tapgate test CA");
    std::fs::write(dir.path().join(CA_CERT), cert).expect("ca.crt");
    std::fs::write(dir.path().join(CA_KEY), key).expect("ca.key");
    dir
}

/// A CA certificate and key in PEM.
fn new_ca(name: &str) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("CA");
    (cert.pem(), key.serialize_pem())
}

fn id(s: &str) -> DeviceId {
    DeviceId::new(s).expect("id")
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).expect("time")
}

/// Every file of the folder with its contents.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).expect("read"))
        })
        .collect();
    out.sort();
    out
}

/// The CRL's number and the serials it lists.
fn read_crl(pem: &str) -> (String, BTreeSet<String>) {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).expect("CRL");
    let number = crl
        .crl_number()
        .map(ToString::to_string)
        .unwrap_or_default();
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| canonical_serial(r.raw_serial()))
        .collect();
    (number, serials)
}

#[test]
fn every_certificate_gets_its_own_random_serial_and_is_recorded() {
    let dir = ca_dir();
    let mut ca = Ca::open_locked(dir.path(), LOCK_WAIT).expect("CA");
    let mut seen = BTreeSet::new();
    for n in 0..40 {
        let device = if n % 2 == 0 { "g1" } else { "g2" };
        let issued = ca.issue(&id(device), at(n), CERT_DAYS).expect("issue");
        let (_, pem) = x509_parser::pem::parse_x509_pem(issued.cert_pem.as_bytes()).expect("PEM");
        let cert = pem.parse_x509().expect("certificate");
        assert_eq!(canonical_serial(cert.raw_serial()), issued.serial);
        assert_eq!(issued.serial.len(), 32, "16 bytes: {}", issued.serial);
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .filter_map(|c| c.as_str().ok())
            .collect();
        assert_eq!(cn, [device]);
        assert_eq!(cert.issuer().as_raw(), ca.subject.as_slice());
        assert!(seen.insert(issued.serial), "a serial came twice");
    }
    let recorded: BTreeSet<_> = ca.db.certs.iter().map(|c| c.serial.clone()).collect();
    assert_eq!(recorded, seen);
    // The record survives a save and a new open.
    ca.save().expect("save");
    let again = Ca::open(dir.path()).expect("reopen");
    assert_eq!(again.db, ca.db);
}

#[test]
fn each_crl_has_the_next_number_and_lists_the_revoked_certificates() {
    let dir = ca_dir();
    let path = dir.path().join(CRL);
    let first = publish_crl(dir.path(), None, at(0), CRL_DAYS, LOCK_WAIT).expect("empty CRL");
    assert_eq!(first.crl.number, 1);
    let (number, listed) = read_crl(&std::fs::read_to_string(&path).expect("crl.pem"));
    assert_eq!((number.as_str(), listed.len()), ("1", 0));

    let old = issue_files(dir.path(), "g1", None, None, at(1), CERT_DAYS, LOCK_WAIT).expect("g1");
    let other = issue_files(dir.path(), "g2", None, None, at(2), CERT_DAYS, LOCK_WAIT).expect("g2");
    let done = publish_crl(
        dir.path(),
        Some(("g1", &Target::All, Reason::KeyCompromise)),
        at(3),
        30,
        LOCK_WAIT,
    )
    .expect("revoke g1");
    assert_eq!(done.revoked, std::slice::from_ref(&old.serial));
    assert_eq!(done.crl.number, 2);
    assert_eq!(
        done.crl.next_update,
        at(3) + SignedDuration::from_hours(24 * 30)
    );
    let (number, listed) = read_crl(&std::fs::read_to_string(&path).expect("crl.pem"));
    assert_eq!(number, "2");
    assert_eq!(listed, BTreeSet::from([old.serial.clone()]));
    assert!(!listed.contains(&other.serial));

    // A new certificate for g1 is not on it; re-signing keeps the list and counts on.
    let new =
        issue_files(dir.path(), "g1", None, None, at(4), CERT_DAYS, LOCK_WAIT).expect("g1 again");
    let again = publish_crl(dir.path(), None, at(5), CRL_DAYS, LOCK_WAIT).expect("re-sign");
    assert_eq!(again.crl.number, 3);
    let (number, listed) = read_crl(&std::fs::read_to_string(&path).expect("crl.pem"));
    assert_eq!(number, "3");
    assert_eq!(listed, BTreeSet::from([old.serial]));
    assert!(!listed.contains(&new.serial));
}

#[test]
fn an_expired_certificate_leaves_the_crl() {
    let dir = ca_dir();
    let mut ca = Ca::open(dir.path()).expect("CA");
    let short = ca.issue(&id("g1"), at(0), 1).expect("issue");
    ca.revoke(&id("g1"), &Target::All, Reason::Superseded, at(10))
        .expect("revoke");
    assert_eq!(ca.crl(at(20), CRL_DAYS).expect("crl").listed, 1);
    let later = at(2 * 24 * 3600);
    let crl = ca.crl(later, CRL_DAYS).expect("crl");
    assert_eq!(crl.listed, 0);
    assert!(!read_crl(&crl.pem).1.contains(&short.serial));
}

#[test]
fn revoking_a_device_with_nothing_on_record_is_an_error_and_changes_nothing() {
    let dir = ca_dir();
    issue_files(dir.path(), "g1", None, None, at(0), CERT_DAYS, LOCK_WAIT).expect("g1");
    publish_crl(dir.path(), None, at(1), CRL_DAYS, LOCK_WAIT).expect("CRL");
    let before = snapshot(dir.path());
    let err = publish_crl(
        dir.path(),
        Some(("g9", &Target::All, Reason::KeyCompromise)),
        at(2),
        30,
        LOCK_WAIT,
    )
    .expect_err("g9 has no certificate");
    assert!(
        matches!(&err, AdminError::NothingToRevoke { device, .. } if device == "g9"),
        "{err}"
    );
    assert!(
        err.to_string().contains("--cert"),
        "says what to give: {err}"
    );
    assert_eq!(snapshot(dir.path()), before, "the folder changed");

    // Twice the same revocation: the second one says so and changes nothing either.
    publish_crl(
        dir.path(),
        Some(("g1", &Target::All, Reason::KeyCompromise)),
        at(3),
        30,
        LOCK_WAIT,
    )
    .expect("revoke g1");
    let before = snapshot(dir.path());
    let err = publish_crl(
        dir.path(),
        Some(("g1", &Target::All, Reason::KeyCompromise)),
        at(4),
        30,
        LOCK_WAIT,
    )
    .expect_err("nothing left to revoke");
    assert!(err.to_string().contains("already revoked"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_serial_of_another_device_or_not_hex_is_refused() {
    let dir = ca_dir();
    let mut ca = Ca::open(dir.path()).expect("CA");
    let g2 = ca.issue(&id("g2"), at(0), CERT_DAYS).expect("g2");
    let before = ca.db.clone();
    let err = ca
        .revoke(
            &id("g1"),
            &Target::Serial(g2.serial.to_uppercase()),
            Reason::KeyCompromise,
            at(1),
        )
        .expect_err("g2's serial for g1");
    assert!(matches!(err, AdminError::Serial { .. }), "{err}");
    for bad in ["", "xyz", "12 34", &"ab".repeat(21)] {
        assert!(
            ca.revoke(
                &id("g1"),
                &Target::Serial(bad.to_owned()),
                Reason::KeyCompromise,
                at(1)
            )
            .is_err(),
            "{bad:?}"
        );
    }
    assert_eq!(ca.db, before);
    // A serial made elsewhere (as `openssl x509 -serial` prints it) is recorded, revoked.
    let done = ca
        .revoke(
            &id("g1"),
            &Target::Serial("serial=00:1A:2b".to_owned()),
            Reason::KeyCompromise,
            at(2),
        )
        .expect("external serial");
    assert_eq!(done, ["1a2b"]);
    assert!(read_crl(&ca.crl(at(3), CRL_DAYS).expect("crl").pem)
        .1
        .contains("1a2b"));
}

#[test]
fn ids_the_admin_tool_refuses_elsewhere_are_refused_here() {
    let dir = ca_dir();
    for bad in ["tapgate-bridge-9", "Admin", "g/1", "g+1", ""] {
        let before = snapshot(dir.path());
        assert!(
            issue_files(dir.path(), bad, None, None, at(0), CERT_DAYS, LOCK_WAIT).is_err(),
            "issued for {bad:?}"
        );
        assert!(
            publish_crl(
                dir.path(),
                Some((bad, &Target::All, Reason::Unspecified)),
                at(0),
                30,
                LOCK_WAIT
            )
            .is_err(),
            "revoked for {bad:?}"
        );
        assert_eq!(snapshot(dir.path()), before, "{bad:?} changed the folder");
    }
}

#[test]
fn a_bad_ca_folder_is_a_clear_error() {
    let missing = Path::new("/nonexistent/tapgate-ca");
    let err = Ca::open(missing).expect_err("no folder");
    assert!(err.to_string().contains("not a folder"), "{err}");

    let dir = ca_dir();
    std::fs::remove_file(dir.path().join(CA_KEY)).expect("rm");
    let err = Ca::open(dir.path()).expect_err("no key");
    assert!(err.to_string().contains("ca.key"), "{err}");

    // A key that is not the certificate's.
    let (_, other_key) = new_ca("another CA");
    std::fs::write(dir.path().join(CA_KEY), other_key).expect("key");
    let err = Ca::open(dir.path()).expect_err("wrong key");
    assert!(
        err.to_string().contains("is not the key of ca.crt"),
        "{err}"
    );

    // Not a certificate; a broken record.
    let dir = ca_dir();
    std::fs::write(dir.path().join(CA_CERT), "hello").expect("write");
    let err = Ca::open(dir.path()).expect_err("not PEM");
    assert!(err.to_string().contains("ca.crt"), "{err}");
    let dir = ca_dir();
    std::fs::write(dir.path().join(DATABASE), "crl_number = \"x\"").expect("write");
    let err = Ca::open(dir.path()).expect_err("bad record");
    assert!(err.to_string().contains(DATABASE), "{err}");
    // And issuing from a bad folder writes nothing.
    let before = snapshot(dir.path());
    assert!(issue_files(dir.path(), "g1", None, None, at(0), CERT_DAYS, LOCK_WAIT).is_err());
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_certificate_file_not_on_record_is_not_overwritten() {
    let dir = ca_dir();
    let mut ca = Ca::open(dir.path()).expect("CA");
    // As docker/make-certs.sh would have made it: signed by the CA, not on record.
    let made_elsewhere = ca.issue(&id("g7"), at(0), CERT_DAYS).expect("issue");
    let path = dir.path().join("g7.crt");
    std::fs::write(&path, &made_elsewhere.cert_pem).expect("write");
    let err = issue_files(dir.path(), "g7", None, None, at(1), CERT_DAYS, LOCK_WAIT)
        .expect_err("overwrite");
    assert!(err.to_string().contains("--cert"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        made_elsewhere.cert_pem
    );
    // Revoked by its file, it is on record and may be replaced.
    let target = Target::File(path.clone());
    let done = publish_crl(
        dir.path(),
        Some(("g7", &target, Reason::KeyCompromise)),
        at(2),
        30,
        LOCK_WAIT,
    )
    .expect("revoke by file");
    assert_eq!(done.revoked, [made_elsewhere.serial]);
    let err = publish_crl(
        dir.path(),
        Some(("g8", &target, Reason::KeyCompromise)),
        at(3),
        30,
        LOCK_WAIT,
    )
    .expect_err("g7's file for g8");
    assert!(err.to_string().contains("CN"), "{err}");
    let new =
        issue_files(dir.path(), "g7", None, None, at(4), CERT_DAYS, LOCK_WAIT).expect("new g7");
    assert_ne!(
        std::fs::read_to_string(&path).expect("read"),
        made_elsewhere.cert_pem
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&new.key)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key is its owner's only");
    }
}

#[test]
fn serials_as_operators_type_them() {
    assert_eq!(parse_serial("1A:2B").expect("colons"), "1a2b");
    assert_eq!(parse_serial("serial=0001A2B").expect("openssl"), "1a2b");
    assert_eq!(parse_serial("00").expect("zero"), "00");
}

#[test]
fn a_writer_waits_for_the_folders_lock_and_gives_up_naming_it() {
    let dir = ca_dir();
    let held = FolderLock::acquire(dir.path(), LOCK_WAIT).expect("lock");
    assert_eq!(held.path(), dir.path().join(LOCK));
    let wait = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let err = publish_crl(dir.path(), None, at(0), CRL_DAYS, wait).expect_err("locked");
    assert!(
        started.elapsed() >= wait,
        "gave up early: {:?}",
        started.elapsed()
    );
    assert!(
        matches!(&err, AdminError::CaLocked { path, .. } if path == held.path()),
        "{err:?}"
    );
    assert!(err.to_string().contains(LOCK), "{err}");
    assert!(!dir.path().join(CRL).exists(), "written without the lock");
    assert!(
        !dir.path().join(DATABASE).exists(),
        "written without the lock"
    );

    // Released while another waits: that one goes on.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
    });
    let done = publish_crl(dir.path(), None, at(1), CRL_DAYS, LOCK_WAIT).expect("after release");
    assert_eq!(done.crl.number, 1);
    release.join().expect("release");
}

#[test]
fn a_ca_opened_without_the_lock_does_not_save() {
    let dir = ca_dir();
    let mut ca = Ca::open(dir.path()).expect("CA");
    ca.issue(&id("g1"), at(0), CERT_DAYS).expect("issue");
    let err = ca.save().expect_err("no lock");
    assert!(err.to_string().contains(LOCK), "{err}");
    assert!(!dir.path().join(DATABASE).exists());
}

/// The URIs of a list of general names.
fn uris(names: &[x509_parser::extensions::GeneralName<'_>]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect()
}

/// The URIs of a distribution point name (none when it is relative or absent).
fn point_uris(name: Option<&x509_parser::extensions::DistributionPointName<'_>>) -> Vec<String> {
    match name {
        Some(x509_parser::extensions::DistributionPointName::FullName(names)) => uris(names),
        _ => Vec::new(),
    }
}

/// The CRL distribution points a certificate names.
fn cert_crl_urls(cert_pem: &str) -> Vec<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("certificate");
    let mut out = Vec::new();
    for ext in cert.extensions() {
        if let x509_parser::extensions::ParsedExtension::CRLDistributionPoints(points) =
            ext.parsed_extension()
        {
            for p in points.iter() {
                out.extend(point_uris(p.distribution_point.as_ref()));
            }
        }
    }
    out
}

/// The issuing distribution point of a CRL: its URIs, and whether it lists user certificates only.
fn crl_issuing_point(crl_pem: &str) -> Option<(Vec<String>, bool)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(crl_pem.as_bytes()).expect("PEM");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).expect("CRL");
    crl.tbs_cert_list
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::IssuingDistributionPoint(idp) => Some((
                point_uris(idp.distribution_point.as_ref()),
                idp.only_contains_user_certs,
            )),
            _ => None,
        })
}

const CRL_URL: &str = "http://ca.tapgate.example:8080/crl.pem";

#[test]
fn with_a_crl_url_certificates_and_crls_name_where_the_crl_is_served() {
    let dir = ca_dir();
    let done = issue_files(
        dir.path(),
        "g1",
        None,
        Some(CRL_URL),
        at(1),
        CERT_DAYS,
        LOCK_WAIT,
    )
    .expect("g1");
    assert_eq!(done.crl_url.as_deref(), Some(CRL_URL));
    let pem = std::fs::read_to_string(&done.cert).expect("g1.crt");
    assert_eq!(cert_crl_urls(&pem), [CRL_URL]);
    // `openssl x509 -text` reads the same extension (as the brokers' TLS libraries will).
    if let Ok(out) = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&done.cert)
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("X509v3 CRL Distribution Points") && text.contains(CRL_URL),
            "{text}"
        );
    }

    // Kept in issued.toml: the next certificate names it without the flag, and so does the CRL,
    // as its issuing distribution point (which EMQX needs to enforce it), for user certificates.
    let g2 = issue_files(dir.path(), "g2", None, None, at(2), CERT_DAYS, LOCK_WAIT).expect("g2");
    assert_eq!(g2.crl_url.as_deref(), Some(CRL_URL));
    let pem = std::fs::read_to_string(&g2.cert).expect("g2.crt");
    assert_eq!(cert_crl_urls(&pem), [CRL_URL]);
    let text = std::fs::read_to_string(dir.path().join(DATABASE)).expect("issued.toml");
    assert!(text.contains(&format!("crl_url = \"{CRL_URL}\"")), "{text}");
    let published = publish_crl(
        dir.path(),
        Some(("g1", &Target::All, Reason::KeyCompromise)),
        at(3),
        CRL_DAYS,
        LOCK_WAIT,
    )
    .expect("revoke g1");
    assert_eq!(published.crl_url.as_deref(), Some(CRL_URL));
    let crl = std::fs::read_to_string(dir.path().join(CRL)).expect("crl.pem");
    assert_eq!(
        crl_issuing_point(&crl),
        Some((vec![CRL_URL.to_owned()], true))
    );
    let (_, listed) = read_crl(&crl);
    assert_eq!(listed, BTreeSet::from([done.serial]));
}

/// Setting the URL names the certificates issued before it, which name none: the CRL that names
/// it refuses them (OpenSSL: "different CRL scope"). Only the first time, and only valid ones.
#[test]
fn setting_a_crl_url_names_the_certificates_issued_without_it() {
    let dir = ca_dir();
    let g0 = issue_files(dir.path(), "g0", None, None, at(1), CERT_DAYS, LOCK_WAIT).expect("g0");
    issue_files(dir.path(), "g9", None, None, at(1), CERT_DAYS, LOCK_WAIT).expect("g9");
    publish_crl(
        dir.path(),
        Some(("g9", &Target::All, Reason::CessationOfOperation)),
        at(2),
        CRL_DAYS,
        LOCK_WAIT,
    )
    .expect("revoke g9");
    let g1 = issue_files(
        dir.path(),
        "g1",
        None,
        Some(CRL_URL),
        at(3),
        CERT_DAYS,
        LOCK_WAIT,
    )
    .expect("g1");
    assert_eq!(g1.older, [format!("g0 (serial {})", g0.serial)]);
    let g2 = issue_files(
        dir.path(),
        "g2",
        None,
        Some(CRL_URL),
        at(4),
        CERT_DAYS,
        LOCK_WAIT,
    )
    .expect("g2");
    assert!(g2.older.is_empty(), "{:?}", g2.older);
}

#[test]
fn without_a_crl_url_nothing_names_one() {
    let dir = ca_dir();
    let done = issue_files(dir.path(), "g1", None, None, at(1), CERT_DAYS, LOCK_WAIT).expect("g1");
    assert_eq!(done.crl_url, None);
    let pem = std::fs::read_to_string(&done.cert).expect("g1.crt");
    assert!(cert_crl_urls(&pem).is_empty());
    publish_crl(dir.path(), None, at(2), CRL_DAYS, LOCK_WAIT).expect("CRL");
    let crl = std::fs::read_to_string(dir.path().join(CRL)).expect("crl.pem");
    assert_eq!(crl_issuing_point(&crl), None);
    let text = std::fs::read_to_string(dir.path().join(DATABASE)).expect("issued.toml");
    assert!(!text.contains("crl_url"), "{text}");
}

#[test]
fn another_or_a_bad_crl_url_is_refused_and_changes_nothing() {
    let dir = ca_dir();
    issue_files(
        dir.path(),
        "g1",
        None,
        Some(CRL_URL),
        at(1),
        CERT_DAYS,
        LOCK_WAIT,
    )
    .expect("g1");
    let before = snapshot(dir.path());
    let long = format!("http://h/{}", "a".repeat(CRL_URL_MAX));
    for bad in [
        "http://elsewhere.example/crl.pem",
        "ftp://ca.example/crl.pem",
        "ca.example/crl.pem",
        "http:///crl.pem",
        "http://user@ca.example/crl.pem",
        "http://ca.example/crl .pem",
        "http://ca.example/crl\n.pem",
        "http://ca.example/crlé.pem",
        long.as_str(),
    ] {
        let err = issue_files(
            dir.path(),
            "g2",
            None,
            Some(bad),
            at(2),
            CERT_DAYS,
            LOCK_WAIT,
        )
        .expect_err(bad);
        assert!(matches!(err, AdminError::CrlUrl { .. }), "{bad:?}: {err}");
        assert_eq!(snapshot(dir.path()), before, "{bad:?} changed the folder");
    }
    // The same URL again is fine.
    issue_files(
        dir.path(),
        "g2",
        None,
        Some(CRL_URL),
        at(3),
        CERT_DAYS,
        LOCK_WAIT,
    )
    .expect("g2");
}
