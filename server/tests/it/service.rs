//! Server-wide behaviour: health and reflection stay open, message size
//! limits hold, and shutdown turns health NOT_SERVING.

use sesame_proto::v1 as pb;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::harness::{Backend, TestServer, both_backends, valid_submission};

both_backends!(
    each_key_has_a_request_budget,
    health_and_reflection_need_no_key,
    oversized_messages_are_refused,
    shutdown_turns_health_not_serving_first,
);

async fn health_and_reflection_need_no_key(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "sesame.v1.AccessRequestService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }

    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(server.channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection v1")
            .into_inner();
        let response = responses.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer {response:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.contains(&"sesame.v1.AccessRequestService".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"grpc.health.v1.Health".to_owned()),
            "{names:?}"
        );
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(server.channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "sesame.v1.AccessRequestService".into(),
            )),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection v1alpha")
            .into_inner();
        let response = responses.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
            panic!("unexpected reflection answer {response:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }

    server.stop().await;
}

async fn shutdown_turns_health_not_serving_first(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut health = HealthClient::new(server.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "sesame.v1.AccessRequestService".into(),
        })
        .await
        .expect("health watch")
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    server.begin_shutdown();
    let next = watch.message().await.unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    // The open watch was an in-flight call; once it ends the server stops.
    drop(watch);
    drop(health);
    server.stop().await;
}

async fn oversized_messages_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = server.client(&server.keys.alice).await;
    let mut huge = valid_submission();
    huge.justification = "x".repeat(100 * 1024);
    // A 100 KiB message exceeds the 64 KiB limit.
    crate::harness::assert_error(
        alice.submit_access_request(huge).await,
        Code::ResourceExhausted,
        "MESSAGE_TOO_LARGE",
    );
    assert_eq!(server.count("access_requests").await, 0);
    let listed = alice
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.access_requests.is_empty());
    server.stop().await;
}

async fn each_key_has_a_request_budget(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.rate_limit_per_key = 1;
        config.rate_limit_burst = 3;
    })
    .await;
    let mut alice = server.client(&server.keys.alice).await;
    let list = || pb::ListAccessRequestsRequest::default();
    for _ in 0..3 {
        alice.list_access_requests(list()).await.unwrap();
    }
    let status = crate::harness::assert_error(
        alice.list_access_requests(list()).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    use tonic_types::StatusExt;
    let wait = status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo says when to come back");
    assert!(wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_secs(1));
    // Another key has its own budget.
    let mut bob = server.client(&server.keys.bob).await;
    bob.list_access_requests(list()).await.unwrap();
    server.stop().await;
}

/// Readiness follows the database: with the database gone (dropped, its
/// connections terminated) health turns NOT_SERVING within a few check
/// intervals, and SERVING again once the database answers; the `liveness`
/// service stays SERVING throughout. PostgreSQL only:
/// a SQLite file cannot be taken away from an open pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_the_database_is_unreachable() {
    use sea_orm::{ConnectionTrait, Database};

    let server = TestServer::start_with(Backend::Postgres, |config| {
        config.health_check_interval_secs = 1;
        config.database_timeout_secs = 1;
    })
    .await;
    let (base, database) = server
        .config
        .database_url
        .rsplit_once('/')
        .expect("a database URL");
    let admin = Database::connect(format!("{base}/postgres")).await.unwrap();
    let mut health = HealthClient::new(server.channel().await);
    let status_within = async |health: &mut HealthClient<_>, wanted: ServingStatus| {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let status = health
                .check(HealthCheckRequest::default())
                .await
                .expect("health answers even when the database does not")
                .into_inner()
                .status();
            if status == wanted {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "health stayed {status:?}, wanted {wanted:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    status_within(&mut health, ServingStatus::Serving).await;

    admin
        .execute_unprepared(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await
        .expect("drop the server's database");
    status_within(&mut health, ServingStatus::NotServing).await;
    let liveness = health
        .check(HealthCheckRequest {
            service: sesame_server::server::LIVENESS_SERVICE.into(),
        })
        .await
        .expect("liveness answers")
        .into_inner();
    assert_eq!(
        liveness.status(),
        ServingStatus::Serving,
        "liveness does not depend on the database"
    );

    admin
        .execute_unprepared(&format!("CREATE DATABASE {database}"))
        .await
        .expect("recreate it");
    status_within(&mut health, ServingStatus::Serving).await;
    admin.close().await.ok();
    server.stop().await;
}
