//! The service client on loopback: transport failures (nothing listening, an answer slower than
//! the read timeout) and ListJobRuns / CancelJobRun against the simulator.

use std::time::Duration;

use sparkjobrun_operator::client::{
    ApiErrorKind, GetJobRunRequest, HttpJobRunService, JobRunService, ListFilter,
    ListJobRunsRequest, Timeouts,
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
    sim.inject(Fault::new(FaultKind::Slow { delay_ms: 3000 }))
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

fn list_request(endpoint: &str, filter: ListFilter, token: Option<String>) -> ListJobRunsRequest {
    ListJobRunsRequest {
        workspace_id: "w-client0000001".into(),
        region_id: "cn-hangzhou".into(),
        endpoint: endpoint::parse(endpoint).expect("endpoint parses"),
        filter,
        max_results: 100,
        next_token: token,
    }
}

/// The operator's ListJobRuns and CancelJobRun, signed for real, against the simulator: paging
/// through 250 runs with a states filter, then a cancel that goes Cancelling → Cancelled and a
/// second cancel of the ended run that is refused.
#[tokio::test]
async fn list_pages_and_cancel_over_the_wire() {
    let sim = Simulator::start(SimulatorConfig {
        accounts: vec![Account::new("AKCLIENT", "client-secret")],
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator starts");
    for i in 0..250 {
        let state = if i % 5 == 0 { "Success" } else { "Running" };
        let mut run = RunScript::new("w-client0000001", format!("jr-{i:03}")).holding(state);
        run.cancel_seconds = Some(1.0);
        sim.add_run(run).expect("valid run");
    }
    sim.add_run(RunScript::new("w-other", "jr-elsewhere").holding("Running"))
        .expect("valid run");
    let creds = Credentials::new("AKCLIENT", "client-secret");
    let svc = service(Duration::from_secs(5));
    let filter = ListFilter {
        states: vec!["Running".into()],
        ..ListFilter::default()
    };
    let (mut seen, mut token, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = svc
            .list_job_runs(
                &list_request(&sim.endpoint(), filter.clone(), token),
                &creds,
            )
            .await
            .expect("page");
        pages += 1;
        assert_eq!(page.total_count, Some(200));
        seen.extend(
            page.job_runs
                .iter()
                .filter_map(|r| r.run.job_run_id.clone()),
        );
        assert!(page.job_runs.iter().all(|r| r.vcore_seconds.is_some()));
        token = page.next_token.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 2);
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        200,
        "every running run once, no other workspace"
    );
    assert_eq!(sim.calls().for_action("ListJobRuns"), 2);

    let target = |id: &str| GetJobRunRequest {
        job_run_id: id.into(),
        ..request(&sim.endpoint())
    };
    svc.cancel_job_run(&target("jr-001"), &creds)
        .await
        .expect("cancel accepted");
    let state = |run: sparkjobrun_operator::wire::JobRun| run.state.unwrap_or_default();
    let now = svc
        .get_job_run(&target("jr-001"), &creds)
        .await
        .expect("get");
    assert_eq!(state(now), "Cancelling");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = svc
        .get_job_run(&target("jr-001"), &creds)
        .await
        .expect("get");
    assert_eq!(state(later), "Cancelled");
    let again = svc
        .cancel_job_run(&target("jr-001"), &creds)
        .await
        .expect_err("an ended run cannot be cancelled");
    assert_eq!(again.code.as_deref(), Some("JobRun.AlreadyFinished"));
    let missing = svc
        .cancel_job_run(&target("jr-none"), &creds)
        .await
        .expect_err("unknown run");
    assert_eq!(missing.kind, ApiErrorKind::NotFound);
    assert_eq!(sim.calls().for_action("CancelJobRun"), 3);
    assert_eq!(
        sim.cancels_of("jr-001"),
        1,
        "the refused second cancel is not counted"
    );
    let wrong = Credentials::new("AKCLIENT", "not-the-secret");
    let refused = svc
        .cancel_job_run(&target("jr-002"), &wrong)
        .await
        .expect_err("bad signature");
    assert_eq!(refused.code.as_deref(), Some("SignatureDoesNotMatch"));
    let still = svc
        .get_job_run(&target("jr-002"), &creds)
        .await
        .expect("get");
    assert_eq!(state(still), "Running", "a refused cancel changes nothing");
}
