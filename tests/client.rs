//! The GetJobRun client's transport failures, on loopback: nothing listening, and an answer
//! slower than the read timeout (the simulator's `slow` fault).

use std::time::Duration;

use sparkjobrun_operator::client::{
    ApiErrorKind, GetJobRunRequest, HttpJobRunService, JobRunService, Timeouts,
};
use sparkjobrun_operator::endpoint;
use sparkjobrun_operator::kit::simulator::{
    Account, Fault, FaultKind, RunScript, Simulator, SimulatorConfig,
};
use sparkjobrun_operator::signer::Credentials;

fn request(endpoint: &str) -> GetJobRunRequest {
    GetJobRunRequest {
        workspace_id: "w-client0000001".into(),
        job_run_id: "jr-client01".into(),
        region_id: "cn-hangzhou".into(),
        endpoint: endpoint::parse(endpoint).expect("endpoint parses"),
    }
}

fn service(read: Duration) -> HttpJobRunService {
    HttpJobRunService::new(Timeouts {
        connect: Duration::from_secs(1),
        read,
    })
    .expect("client builds")
}

#[tokio::test]
async fn nothing_listening_is_unreachable_and_names_the_endpoint() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let err = service(Duration::from_secs(1))
        .get_job_run(&request(&url), &Credentials::new("AK", "SK"))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind, ApiErrorKind::Unreachable);
    assert!(
        err.message
            .starts_with("could not connect talking to http://127.0.0.1:"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("SK"), "{}", err.message);
}

#[tokio::test]
async fn slow_answer_times_out() {
    let sim = Simulator::start(SimulatorConfig {
        accounts: vec![Account::new("AKCLIENT", "client-secret")],
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator starts");
    sim.add_run(RunScript::new("w-client0000001", "jr-client01").holding("Running"))
        .expect("valid run");
    sim.inject(Fault {
        kind: FaultKind::Slow { delay_ms: 3000 },
        job_run_id: None,
        times: None,
    })
    .expect("valid fault");
    let err = service(Duration::from_millis(500))
        .get_job_run(
            &request(&sim.endpoint()),
            &Credentials::new("AKCLIENT", "client-secret"),
        )
        .await
        .expect_err("answer is slower than the read timeout");
    assert_eq!(err.kind, ApiErrorKind::Unreachable);
    assert!(
        err.message.starts_with("timed out talking to"),
        "{}",
        err.message
    );
    sim.clear_faults();
    let run = service(Duration::from_secs(2))
        .get_job_run(
            &request(&sim.endpoint()),
            &Credentials::new("AKCLIENT", "client-secret"),
        )
        .await
        .expect("answers once the fault is cleared");
    assert_eq!(run.state.as_deref(), Some("Running"));
}
