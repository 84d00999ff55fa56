//! TLS and mutual TLS with certificates made in the test (rcgen): a client
//! that trusts the CA gets through, one that does not, or that speaks
//! plaintext, or that has no client certificate under mTLS, is refused.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use sesame_client::{Options, SesameClient, v1 as pb};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::harness::{Backend, TestServer};

/// A CA, a server certificate for localhost / 127.0.0.1, and a client
/// certificate, written as PEM files into `dir`.
struct Pki {
    ca: String,
    client_cert: String,
    client_key: String,
    server_cert: String,
    server_key: String,
}

fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Sesame test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["gateway.example".into()]);
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    write("server.pem", &server_cert);
    write("server.key", &server_key);
    write("ca.pem", &ca.pem());
    Pki {
        ca: ca.pem(),
        client_cert,
        client_key,
        server_cert: dir.join("server.pem").display().to_string(),
        server_key: dir.join("server.key").display().to_string(),
    }
}

async fn connect(
    server: &TestServer,
    tls: Option<ClientTlsConfig>,
) -> Result<pb::ListAccessRequestsResponse, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let options = Options {
        tls,
        retry: sesame_client::RetryPolicy::never(),
        ..Options::default()
    };
    let url = format!("{scheme}://{}", server.addr);
    let client = SesameClient::connect_with(&url, &server.keys.admin, options)
        .await
        .map_err(|error| error.to_string())?;
    client
        .list(pb::ListAccessRequestsRequest::default())
        .await
        .map_err(|status| status.to_string())
}

fn trusting(pki: &Pki) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost")
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.tls_cert_file = Some(pki.server_cert.clone());
        config.tls_key_file = Some(pki.server_key.clone());
    })
    .await;
    connect(&server, Some(trusting(&pki)))
        .await
        .expect("TLS works");
    let untrusted = ClientTlsConfig::new().domain_name("localhost");
    assert!(
        connect(&server, Some(untrusted)).await.is_err(),
        "an unknown CA is refused"
    );
    assert!(
        connect(&server, None).await.is_err(),
        "plaintext is refused"
    );
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let ca_file = dir.path().join("ca.pem").display().to_string();
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.tls_cert_file = Some(pki.server_cert.clone());
        config.tls_key_file = Some(pki.server_key.clone());
        config.tls_client_ca_file = Some(ca_file);
    })
    .await;
    let with_identity =
        trusting(&pki).identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    connect(&server, Some(with_identity))
        .await
        .expect("mTLS works");
    let without = connect(&server, Some(trusting(&pki))).await;
    assert!(without.is_err(), "no client certificate: refused");
    server.stop().await;
}
