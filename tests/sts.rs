//! The operator's STS clients against the simulator's STS, over loopback HTTP: RRSA/OIDC with a
//! rotated token file, cross-account AssumeRole through the trust check, expiry of issued
//! credentials on GetJobRun, and one exchange for many concurrent callers.

use std::sync::Arc;
use std::time::Duration;

use sparkjobrun_operator::client::{
    ApiErrorKind, GetJobRunRequest, HttpJobRunService, JobRunService, Timeouts,
};
use sparkjobrun_operator::credentials::http::{OidcProvider, OidcSource, StsClient};
use sparkjobrun_operator::credentials::roles::{RoleAssumer, StsSettings};
use sparkjobrun_operator::credentials::{
    CredentialProvider, CredentialsError, Refresher, RoleAllowList,
};
use sparkjobrun_operator::endpoint;
use sparkjobrun_operator::kit::simulator::{
    Account, OidcRole, RoleTrust, RunScript, Simulator, SimulatorConfig, SimulatorHandle,
};
use sparkjobrun_operator::secret::Secret;
use sparkjobrun_operator::signer::Credentials;

const WS: &str = "w-sts0000000001";
const ROLE: &str = "acs:ram::111111111111:role/rrsa-operator";
const PROVIDER: &str = "acs:ram::111111111111:oidc-provider/ack-rrsa-test";
const XROLE: &str = "acs:ram::222222222222:role/emr-reader";

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        read: Duration::from_secs(3),
    }
}

async fn simulator() -> SimulatorHandle {
    let sim = Simulator::start(SimulatorConfig {
        accounts: vec![Account::new("AK-base", "base-secret")],
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator starts");
    sim.set_sts_durations(1, None);
    sim.add_run(RunScript::new(WS, "jr-sts1").holding("Running"))
        .expect("valid run");
    sim
}

async fn get_job_run(
    sim: &SimulatorHandle,
    creds: &Credentials,
) -> Result<(), sparkjobrun_operator::client::ApiError> {
    let service = HttpJobRunService::new(timeouts()).expect("client");
    let req = GetJobRunRequest {
        workspace_id: WS.into(),
        job_run_id: "jr-sts1".into(),
        region_id: "cn-hangzhou".into(),
        endpoint: endpoint::parse(&sim.endpoint()).expect("endpoint"),
    };
    service.get_job_run(&req, creds).await.map(|_| ())
}

fn oidc_provider(
    sim: &SimulatorHandle,
    token_file: &std::path::Path,
    duration: u64,
    margin: Duration,
) -> OidcProvider {
    OidcProvider::new(
        OidcSource {
            role_arn: ROLE.into(),
            oidc_provider_arn: PROVIDER.into(),
            token_file: token_file.to_owned(),
            role_session_name: "sparkjobrun-operator".into(),
            duration_seconds: duration,
        },
        endpoint::parse(&sim.endpoint()).expect("endpoint"),
        StsClient::new(timeouts()).expect("client"),
        Refresher::new(margin),
    )
}

#[tokio::test]
async fn oidc_exchange_rotation_and_expiry() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "oidc-token-one\n").expect("write");
    sim.add_oidc_role(OidcRole {
        role_arn: ROLE.into(),
        oidc_provider_arn: PROVIDER.into(),
        token: Secret::new("oidc-token-one"),
    });
    let provider = oidc_provider(&sim, &token_file, 3, Duration::from_secs(1));
    let first = provider.credentials().await.expect("exchanged");
    assert!(first.access_key_id.starts_with("STS."));
    assert!(first.security_token.is_some());
    get_job_run(&sim, &first)
        .await
        .expect("issued credentials work");
    assert_eq!(
        provider.credentials().await.expect("cached").access_key_id,
        first.access_key_id,
        "fresh credentials are reused"
    );
    assert_eq!(
        sim.sts_calls()
            .for_role(ROLE, "AssumeRoleWithOIDC", "Accepted"),
        1
    );

    // The kubelet rotates the token: STS now wants the new one, the file has it.
    std::fs::write(&token_file, "oidc-token-two").expect("rotate");
    sim.add_oidc_role(OidcRole {
        role_arn: ROLE.into(),
        oidc_provider_arn: PROVIDER.into(),
        token: Secret::new("oidc-token-two"),
    });
    tokio::time::sleep(Duration::from_millis(3200)).await;
    // The first credentials are now expired for the service.
    let err = get_job_run(&sim, &first).await.expect_err("expired");
    assert_eq!(err.code.as_deref(), Some("InvalidSecurityToken.Expired"));
    assert_eq!(err.kind, ApiErrorKind::Unauthorized);
    let second = provider
        .credentials()
        .await
        .expect("refreshed with the new token");
    assert_ne!(second.access_key_id, first.access_key_id);
    get_job_run(&sim, &second)
        .await
        .expect("new credentials work");
    assert_eq!(
        sim.sts_calls()
            .for_role(ROLE, "AssumeRoleWithOIDC", "Accepted"),
        2
    );

    // An old token is refused with the STS code, surfaced as such.
    std::fs::write(&token_file, "oidc-token-one").expect("stale");
    provider.invalidate();
    let err = provider.credentials().await.expect_err("stale token");
    let CredentialsError::Sts(f) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        f.code.as_deref(),
        Some("AuthenticationFail.OIDCToken.Invalid")
    );
    assert!(!err.to_string().contains("oidc-token"), "{err}");

    // A missing token file names the file.
    let gone = oidc_provider(&sim, &dir.path().join("absent"), 3, Duration::from_secs(1));
    let err = gone.credentials().await.expect_err("no file");
    assert!(matches!(err, CredentialsError::TokenFile { .. }), "{err:?}");
    assert!(err.to_string().contains("absent"), "{err}");
}

#[tokio::test]
async fn many_concurrent_callers_make_one_exchange() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tok").expect("write");
    sim.add_oidc_role(OidcRole {
        role_arn: ROLE.into(),
        oidc_provider_arn: PROVIDER.into(),
        token: Secret::new("tok"),
    });
    let provider = Arc::new(oidc_provider(
        &sim,
        &token_file,
        3600,
        Duration::from_secs(180),
    ));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.credentials().await.map(|c| c.access_key_id) })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        ids.insert(t.await.expect("joins").expect("credentials"));
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(sim.sts_calls().all_for_role(ROLE), 1);
}

#[tokio::test]
async fn assume_role_is_signed_and_trust_checked() {
    let sim = simulator().await;
    sim.add_role_trust(RoleTrust {
        role_arn: XROLE.into(),
        callers: vec!["AK-base".into()],
    });
    let untrusted = "acs:ram::222222222222:role/emr-untrusted";
    sim.add_role_trust(RoleTrust {
        role_arn: untrusted.into(),
        callers: vec!["AK-someone-else".into()],
    });
    let assumer = RoleAssumer::new(
        Ok(StsClient::new(timeouts()).expect("client")),
        StsSettings {
            endpoint: endpoint::parse(&sim.endpoint()).expect("endpoint"),
            allow: RoleAllowList::new(["*=acs:ram::222222222222:role/emr-*"]).expect("valid"),
            ..StsSettings::default()
        },
    );
    let base = || async { Ok(Credentials::new("AK-base", "base-secret")) };
    let (creds, key) = assumer
        .assume("operator", XROLE, "sparkjobrun.team-a", base)
        .await
        .expect("assumed");
    get_job_run(&sim, &creds)
        .await
        .expect("role credentials work");
    for _ in 0..20 {
        let (again, _) = assumer
            .assume("operator", XROLE, "sparkjobrun.team-a", base)
            .await
            .expect("cached");
        assert_eq!(again.access_key_id, creds.access_key_id);
    }
    assert_eq!(sim.sts_calls().for_role(XROLE, "AssumeRole", "Accepted"), 1);
    assert!(key.contains(XROLE));

    let err = assumer
        .assume("operator", untrusted, "sparkjobrun.team-a", base)
        .await
        .expect_err("trust refuses");
    let msg = err.to_string();
    assert!(
        msg.contains("NoPermission") && msg.contains(untrusted),
        "{msg}"
    );

    let err = assumer
        .assume("operator", XROLE, "sparkjobrun.team-b", || async {
            Ok(Credentials::new("AK-base", "wrong-secret"))
        })
        .await
        .expect_err("bad signature");
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
    assert_eq!(
        sim.sts_calls()
            .for_role(XROLE, "AssumeRole", "SignatureDoesNotMatch"),
        1
    );
}
