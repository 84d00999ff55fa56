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

/// The console's files and gRPC-Web go through the same TLS listener: a
/// browser negotiates HTTP/2 (the server offers `h2` by ALPN) and gets the
/// page with its security headers; over plaintext it gets nothing.
#[tokio::test]
async fn the_console_is_served_over_tls() {
    use tonic::transport::Channel;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.tls_cert_file = Some(pki.server_cert.clone());
        config.tls_key_file = Some(pki.server_key.clone());
    })
    .await;
    let channel = Channel::from_shared(format!("https://localhost:{}", server.addr.port()))
        .unwrap()
        .tls_config(trusting(&pki))
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection");
    let page = http::Request::get(format!("https://localhost:{}/", server.addr.port()))
        .header("accept", "text/html")
        .body(tonic::body::Body::empty())
        .unwrap();
    let answer = channel.clone().oneshot(page).await.expect("an answer");
    assert_eq!(answer.status(), http::StatusCode::OK);
    let headers = answer.headers();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{headers:?}"
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"),
        "{headers:?}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // A gRPC-Web call over the same TLS connection: the empty
    // ListAccessRequests, answered with status 0 in its trailer frame.
    let call = http::Request::post(format!(
        "https://localhost:{}/sesame.v1.AccessRequestService/ListAccessRequests",
        server.addr.port()
    ))
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .header("authorization", format!("Bearer {}", server.keys.admin))
    .body(tonic::body::Body::new(http_body_util::Full::new(
        bytes::Bytes::from_static(&[0, 0, 0, 0, 0]),
    )))
    .unwrap();
    let answer = channel.oneshot(call).await.expect("an answer");
    assert_eq!(answer.status(), http::StatusCode::OK);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web"),
    );
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .expect("the body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("grpc-status:0"), "{text}");
    server.stop().await;
}
