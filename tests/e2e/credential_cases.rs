//! Credential modes end to end: the operator binary with RRSA-style environment variables
//! against the simulator's STS (short-lived credentials refreshed mid-run, the token file
//! rotated), many objects sharing one identity, cross-account roles allowed and refused, and no
//! secret or token in the trace log, the status or the events.

use std::time::{Duration, Instant};

use sparkjobrun_operator::crd::{CredentialsSource, SecretReference};
use sparkjobrun_operator::kit::simulator::{Account, OidcRole, RoleTrust, RunScript};
use sparkjobrun_operator::secret::Secret;

use crate::support::{
    ACCESS_KEY_ID, Env, OperatorProcess, WS, condition, ensure, phase, spec_with as spec, unique,
    wait_for,
};

const PROVIDER: &str = "acs:ram::111111111111:oidc-provider/ack-rrsa-e2e";
/// Credentials issued for RRSA in these cases live 10 s and are refreshed 4 s before expiry.
const LIFETIME_SECS: u64 = 10;
const MARGIN_SECS: u64 = 4;

fn role(role_arn: &str, secret: Option<&str>) -> Option<CredentialsSource> {
    Some(CredentialsSource {
        secret_ref: secret.map(|name| SecretReference { name: name.into() }),
        role_arn: Some(role_arn.into()),
    })
}

/// Writes the token the way the kubelet does: a new file renamed over the old one.
fn write_token(path: &std::path::Path, token: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, token).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("renaming to {}: {e}", path.display()))
}

/// An operator using RRSA-style variables, with short-lived credentials.
fn rrsa_operator(
    env: &Env,
    name: &str,
    role_arn: &str,
    token_file: &std::path::Path,
    extra: &[&str],
    log_level: &str,
) -> Result<OperatorProcess, String> {
    let selector = format!("e2e-process={name}");
    let duration = format!("--role-session-duration={LIFETIME_SECS}s");
    let margin = format!("--credentials-refresh-margin={MARGIN_SECS}s");
    let mut args = vec![
        "--label-selector",
        selector.as_str(),
        duration.as_str(),
        margin.as_str(),
    ];
    args.extend_from_slice(extra);
    let token_path = token_file.display().to_string();
    let sts = env.sim.endpoint();
    env.spawn_operator(
        name,
        &args,
        &[
            ("ALIBABA_CLOUD_ROLE_ARN", role_arn),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token_path.as_str()),
            ("ALIBABA_CLOUD_STS_ENDPOINT", sts.as_str()),
            ("RUST_LOG", log_level),
        ],
    )
}

async fn stop(op: &mut OperatorProcess) -> Result<String, String> {
    op.signal(libc::SIGTERM);
    match tokio::time::timeout(Duration::from_secs(15), op.child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(op.log_text()),
        Ok(Ok(status)) => Err(format!("operator exited with {status}:\n{}", op.log_text())),
        Ok(Err(e)) => Err(format!("waiting for the operator: {e}")),
        Err(_) => Err("operator did not stop within 15s".into()),
    }
}

/// No secret value may appear in the operator's log, nor in the objects' status or events.
async fn no_leaks(
    env: &Env,
    ns: &str,
    names: &[&str],
    log: &str,
    secrets: &[(String, String)],
) -> Result<(), String> {
    let mut texts = vec![("the operator log".to_string(), log.to_owned())];
    for name in names {
        let obj = env.get(ns, name).await?;
        texts.push((
            format!("status of {ns}/{name}"),
            serde_json::to_string(&obj.status).map_err(|e| e.to_string())?,
        ));
        texts.push((
            format!("events of {ns}/{name}"),
            serde_json::to_string(&env.events(ns, name).await?).map_err(|e| e.to_string())?,
        ));
    }
    for (what, value) in secrets {
        ensure(!value.is_empty(), || format!("empty secret for {what}"))?;
        for (place, text) in &texts {
            ensure(!text.contains(value.as_str()), || {
                format!("{what} appears in {place}")
            })?;
        }
    }
    Ok(())
}

/// Every secret the simulator issued for `role_arn`, labelled.
fn issued_secrets(env: &Env, role_arn: &str) -> Vec<(String, String)> {
    env.sim
        .issued_for(role_arn)
        .into_iter()
        .flat_map(|i| {
            [
                (
                    format!("AccessKey secret of {}", i.access_key_id),
                    i.access_key_secret.expose().to_owned(),
                ),
                (
                    format!("security token of {}", i.access_key_id),
                    i.security_token.expose().to_owned(),
                ),
            ]
        })
        .collect()
}

/// RRSA: a run held Running for 25 s while credentials live 10 s; the token file is rotated
/// mid-run. The operator refreshes ahead of expiry, never reports Synced=False and the service
/// never refuses one of its calls; then the run succeeds.
pub async fn rrsa_refresh_and_rotation(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("rrsa").await?;
    let role_arn = format!(
        "acs:ram::111111111111:role/e2e-rrsa-{}",
        hex::encode(rand::random::<[u8; 3]>())
    );
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let token_file = dir.path().join("token");
    let token_one = unique("eyJoidc-token-one-");
    let token_two = unique("eyJoidc-token-two-");
    write_token(&token_file, &token_one)?;
    env.sim.set_sts_durations(1, None);
    env.sim.add_oidc_role(OidcRole {
        role_arn: role_arn.clone(),
        oidc_provider_arn: PROVIDER.into(),
        token: Secret::new(token_one.clone()),
    });
    let jr = unique("jr-rrsa");
    let phases = vec![
        phase("Running", Some(25.0), None),
        phase("Success", None, None),
    ];
    env.sim
        .add_run(RunScript::new(WS, &jr).with_phases(phases))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut op = rrsa_operator(env, "rrsa", &role_arn, &token_file, &[], "trace")?;
    env.create_labeled(&ns, "rrsa", spec(&jr, None), &[("e2e-process", "rrsa")])
        .await?;

    let mut synced_false = Vec::new();
    let mut rotation: Option<u64> = None;
    let accepted = || {
        env.sim
            .sts_calls()
            .for_role(&role_arn, "AssumeRoleWithOIDC", "Accepted")
    };
    loop {
        let s = env.status(&ns, "rrsa").await?;
        if let Some((status, reason, message)) = condition(&s, "Synced")
            && status == "False"
        {
            synced_false.push(format!("{reason}: {message}"));
        }
        if s.state.as_deref() == Some("Success") {
            break;
        }
        if rotation.is_none() && started.elapsed() > Duration::from_secs(12) {
            // The kubelet writes a new token; STS accepts only the new one from now on.
            write_token(&token_file, &token_two)?;
            env.sim.add_oidc_role(OidcRole {
                role_arn: role_arn.clone(),
                oidc_provider_arn: PROVIDER.into(),
                token: Secret::new(token_two.clone()),
            });
            rotation = Some(accepted());
        }
        if started.elapsed() > Duration::from_secs(75) {
            return Err(format!(
                "no Success after {:?}: {s:?}\n{}",
                started.elapsed(),
                op.log_text()
            ));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let elapsed = started.elapsed();
    let (_, metrics) = op.http_get("/metrics").await?;
    let log = stop(&mut op).await?;
    let sts = env.sim.sts_calls();
    let exchanges = sts.for_role(&role_arn, "AssumeRoleWithOIDC", "Accepted");
    // The operator's own count of exchanges agrees with what the simulator accepted.
    let counted = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "sparkjobrun_sts_exchanges_total{action=\"AssumeRoleWithOIDC\",outcome=\"ok\"}",
            )
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    // (One exchange may still have been in flight when /metrics was read.)
    let counted = counted as u64;
    ensure(
        counted <= exchanges as u64 && counted + 1 >= exchanges as u64 && counted > 0,
        || format!("/metrics counts {counted} exchanges, the simulator accepted {exchanges}"),
    )?;
    let refused = sts.all_for_role(&role_arn) - exchanges;
    let calls = env.sim.calls();
    println!(
        "    rrsa: {exchanges} AssumeRoleWithOIDC exchanges ({refused} refused) in {:.1}s with {LIFETIME_SECS}s credentials and a {MARGIN_SECS}s margin; {} GetJobRun calls, {} refused",
        elapsed.as_secs_f64(),
        calls.for_job_run(&jr),
        calls.rejected_for_job_run(&jr)
    );
    ensure(synced_false.is_empty(), || {
        format!("Synced=False was observed: {synced_false:?}")
    })?;
    ensure(calls.rejected_for_job_run(&jr) == 0, || {
        format!(
            "the service refused {} GetJobRun calls of {jr}",
            calls.rejected_for_job_run(&jr)
        )
    })?;
    ensure(exchanges >= 3, || {
        format!("only {exchanges} exchanges in {elapsed:?}: credentials were not refreshed\n{log}")
    })?;
    let after_rotation = exchanges - rotation.unwrap_or(exchanges);
    ensure(after_rotation >= 1, || {
        "no exchange with the rotated token".to_string()
    })?;
    // At most one refusal: a refresh racing the rotation between file and STS.
    ensure(refused <= 1, || format!("{refused} refused exchanges"))?;
    ensure(
        log.lines()
            .any(|l| l.contains("operator credentials source") && l.contains("oidc")),
        || format!("the log does not name the credential source:\n{log}"),
    )?;
    let events = env.events_once(&ns, "rrsa", "Succeeded").await?;
    let reasons: Vec<String> = events.iter().filter_map(|e| e.reason.clone()).collect();
    ensure(reasons == ["Running", "Succeeded"], || {
        format!("events: {reasons:?}")
    })?;

    let mut secrets = issued_secrets(env, &role_arn);
    ensure(secrets.len() as u64 == 2 * exchanges, || {
        format!("{} issued secrets for {exchanges} exchanges", secrets.len())
    })?;
    secrets.push(("the first OIDC token".into(), token_one));
    secrets.push(("the rotated OIDC token".into(), token_two));
    no_leaks(env, &ns, &["rrsa"], &log, &secrets).await
}

/// Twenty objects using the operator's RRSA identity: about one exchange per refresh period,
/// not one per object.
pub async fn many_objects_share_one_exchange(env: &'static Env) -> Result<(), String> {
    const N: usize = 20;
    let ns = env.namespace("rrsa-many").await?;
    let role_arn = format!(
        "acs:ram::111111111111:role/e2e-many-{}",
        hex::encode(rand::random::<[u8; 3]>())
    );
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let token_file = dir.path().join("token");
    let token = unique("eyJoidc-token-many-");
    write_token(&token_file, &token)?;
    env.sim.set_sts_durations(1, None);
    env.sim.add_oidc_role(OidcRole {
        role_arn: role_arn.clone(),
        oidc_provider_arn: PROVIDER.into(),
        token: Secret::new(token.clone()),
    });
    let runs: Vec<String> = (0..N).map(|_| unique("jr-many")).collect();
    for jr in &runs {
        env.sim
            .add_run(RunScript::new(WS, jr).holding("Running"))
            .map_err(|e| e.to_string())?;
    }
    let started = Instant::now();
    let mut op = rrsa_operator(
        env,
        "rrsa-many",
        &role_arn,
        &token_file,
        &["--rate-limit=100", "--rate-burst=100"],
        // Twenty objects at trace level would load the machine for the concurrent cases; the
        // trace-level leak check runs in the other two cases.
        "debug",
    )?;
    for (i, jr) in runs.iter().enumerate() {
        env.create_labeled(
            &ns,
            &format!("m{i}"),
            spec(jr, None),
            &[("e2e-process", "rrsa-many")],
        )
        .await?;
    }
    wait_for("all objects Running", Duration::from_secs(40), || async {
        let mut missing = 0;
        for i in 0..N {
            if env.status(&ns, &format!("m{i}")).await?.state.as_deref() != Some("Running") {
                missing += 1;
            }
        }
        if missing == 0 {
            Ok(Some(()))
        } else {
            Err(format!("{missing} objects not Running yet"))
        }
    })
    .await?;
    // Keep polling (every object once a second) across several refresh periods.
    let window = Duration::from_secs(24);
    if let Some(rest) = window.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let exchanges = env
        .sim
        .sts_calls()
        .for_role(&role_arn, "AssumeRoleWithOIDC", "Accepted");
    let calls = env.sim.calls();
    let get_calls: u64 = runs.iter().map(|jr| calls.for_job_run(jr)).sum();
    let refused: u64 = runs.iter().map(|jr| calls.rejected_for_job_run(jr)).sum();
    // Expiration has whole seconds, so a credential can live up to 1 s less than asked.
    let period = (LIFETIME_SECS - MARGIN_SECS - 1) as f64;
    let bound = (elapsed / period).floor() as u64 + 2;
    println!(
        "    {N} objects on one RRSA identity: {exchanges} exchanges in {elapsed:.1}s (bound {bound}, refresh period {period}s), {get_calls} GetJobRun calls, {refused} refused"
    );
    ensure(exchanges <= bound, || {
        format!("{exchanges} exchanges in {elapsed:.1}s for {N} objects exceeds {bound}")
    })?;
    ensure(exchanges >= 2, || {
        format!("{exchanges} exchanges in {elapsed:.1}s: no refresh happened")
    })?;
    ensure(refused == 0, || {
        format!("{refused} GetJobRun calls refused")
    })?;
    ensure(get_calls >= (N as u64) * 5, || {
        format!("only {get_calls} GetJobRun calls: the objects are not polled")
    })?;
    for i in 0..N {
        let s = env.status(&ns, &format!("m{i}")).await?;
        ensure(condition(&s, "Synced").map(|c| c.0) == Some("True"), || {
            format!("m{i}: {:?}", s.conditions)
        })?;
    }
    let log = stop(&mut op).await?;
    let mut secrets = issued_secrets(env, &role_arn);
    secrets.push(("the OIDC token".into(), token));
    no_leaks(env, &ns, &["m0", "m1"], &log, &secrets).await
}

/// Cross-account roles on top of the operator's AccessKey (and of a tenant's Secret): an allowed
/// and trusted role works through AssumeRole; a role outside --assume-role-allow is refused
/// without any STS call, and so is a role allowed for another namespace only; a role whose trust
/// policy refuses the caller reports STS's code.
pub async fn cross_account_roles(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("xacct").await?;
    let other_ns = env.namespace("xacct-b").await?;
    let tag = hex::encode(rand::random::<[u8; 3]>());
    let allowed = format!("acs:ram::222222222222:role/e2e-xacct-reader-{tag}");
    let untrusted = format!("acs:ram::222222222222:role/e2e-xacct-untrusted-{tag}");
    let refused = format!("acs:ram::333333333333:role/e2e-xacct-other-{tag}");
    let tenant_key = unique("LTAI5tE2eTenant");
    let tenant_secret = unique("tenant-secret-value-");
    env.sim
        .add_account(Account::new(tenant_key.as_str(), tenant_secret.as_str()));
    env.put_secret(
        &ns,
        "tenant",
        &[
            ("accessKeyId", tenant_key.as_str()),
            ("accessKeySecret", tenant_secret.as_str()),
        ],
    )
    .await?;
    env.sim.add_role_trust(RoleTrust {
        role_arn: allowed.clone(),
        callers: vec![ACCESS_KEY_ID.into(), tenant_key.clone()],
    });
    env.sim.add_role_trust(RoleTrust {
        role_arn: untrusted.clone(),
        callers: vec!["LTAI5tSomebodyElse".into()],
    });
    env.sim.add_role_trust(RoleTrust {
        role_arn: refused.clone(),
        callers: vec![ACCESS_KEY_ID.into()],
    });
    let runs: Vec<String> = (0..5).map(|_| unique("jr-xacct")).collect();
    for jr in &runs {
        env.sim
            .add_run(RunScript::new(WS, jr).holding("Running"))
            .map_err(|e| e.to_string())?;
    }
    let sts = env.sim.endpoint();
    let allow = format!("{ns}=acs:ram::222222222222:role/e2e-xacct-*");
    let mut op = env.spawn_operator(
        "xacct",
        &[
            "--label-selector",
            "e2e-process=xacct",
            "--assume-role-allow",
            &allow,
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", env.secret.as_str()),
            ("ALIBABA_CLOUD_STS_ENDPOINT", sts.as_str()),
            ("RUST_LOG", "trace"),
        ],
    )?;
    let label = [("e2e-process", "xacct")];
    env.create_labeled(&ns, "allowed", spec(&runs[0], role(&allowed, None)), &label)
        .await?;
    env.create_labeled(
        &ns,
        "secret-base",
        spec(&runs[1], role(&allowed, Some("tenant"))),
        &label,
    )
    .await?;
    env.create_labeled(&ns, "refused", spec(&runs[2], role(&refused, None)), &label)
        .await?;
    env.create_labeled(
        &ns,
        "untrusted",
        spec(&runs[3], role(&untrusted, None)),
        &label,
    )
    .await?;
    // Another tenant names the role allowed for `ns`, which trusts the operator.
    env.create_labeled(
        &other_ns,
        "borrower",
        spec(&runs[4], role(&allowed, None)),
        &label,
    )
    .await?;

    for name in ["allowed", "secret-base"] {
        wait_for(
            &format!("{name} to be Running"),
            Duration::from_secs(40),
            || async {
                let s = env.status(&ns, name).await?;
                if s.state.as_deref() == Some("Running") {
                    Ok(Some(()))
                } else {
                    Err(format!("{:?} {:?}", s.state, s.conditions))
                }
            },
        )
        .await?;
    }
    let want = [
        (
            &ns,
            "refused",
            "RoleNotAllowed",
            vec![refused.as_str(), "--assume-role-allow"],
        ),
        (
            &ns,
            "untrusted",
            "StsError",
            vec![untrusted.as_str(), "NoPermission"],
        ),
        (
            &other_ns,
            "borrower",
            "RoleNotAllowed",
            vec![allowed.as_str(), "not allowed for this namespace"],
        ),
    ];
    for (ns, name, reason, needles) in &want {
        let message = wait_for(
            &format!("{name} to report {reason}"),
            Duration::from_secs(40),
            || async {
                let s = env.status(ns, name).await?;
                match condition(&s, "Synced") {
                    Some(("False", r, m)) if r == *reason => Ok(Some(m.to_owned())),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await?;
        for needle in needles {
            ensure(message.contains(needle), || {
                format!("{name}: message {message:?} lacks {needle}")
            })?;
        }
        let events = env.events_once(ns, name, reason).await?;
        ensure(
            events.iter().any(|e| e.reason.as_deref() == Some(*reason)),
            || format!("{name}: no {reason} event"),
        )?;
    }
    let sts_calls = env.sim.sts_calls();
    let assumed = sts_calls.for_role(&allowed, "AssumeRole", "Accepted");
    println!(
        "    cross-account: {assumed} AssumeRole exchanges for two identities on the allowed role; {} for the refused role; untrusted answered {:?}",
        sts_calls.all_for_role(&refused),
        sts_calls.by_role.get(&untrusted)
    );
    ensure(assumed == 2, || {
        format!(
            "{assumed} AssumeRole exchanges for the allowed role (one per base identity expected)"
        )
    })?;
    ensure(sts_calls.all_for_role(&refused) == 0, || {
        "a role outside the allow-list reached STS".into()
    })?;
    ensure(
        sts_calls.for_role(&untrusted, "AssumeRole", "NoPermission") >= 1,
        || format!("{:?}", sts_calls.by_role.get(&untrusted)),
    )?;
    let log = stop(&mut op).await?;
    let mut secrets = issued_secrets(env, &allowed);
    ensure(secrets.len() == 4, || {
        format!("{} issued secrets", secrets.len())
    })?;
    secrets.push(("the tenant's AccessKey secret".into(), tenant_secret));
    secrets.push(("the operator's AccessKey secret".into(), env.secret.clone()));
    no_leaks(
        env,
        &ns,
        &["allowed", "secret-base", "refused", "untrusted"],
        &log,
        &secrets,
    )
    .await
}

/// A Secret whose key the service refuses, fixed afterwards: the operator (with the default
/// 10-minute recheck of permanent failures) notices the fix within 30 s, and calls the service
/// no more often than before while the Secret stays wrong.
pub async fn fixed_secret_is_noticed_soon(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("secretfix").await?;
    let jr = unique("jr-secretfix");
    env.sim
        .add_run(RunScript::new(WS, &jr).holding("Running"))
        .map_err(|e| e.to_string())?;
    let wrong_key = unique("LTAI5tNoSuchKey");
    env.put_secret(
        &ns,
        "ak",
        &[
            ("accessKeyId", wrong_key.as_str()),
            ("accessKeySecret", "not-the-secret"),
        ],
    )
    .await?;
    let mut op = env.spawn_operator(
        "secretfix",
        &[
            "--label-selector",
            "e2e-process=secretfix",
            "--recheck-permanent",
            "10m",
        ],
        &[],
    )?;
    let with_secret = Some(CredentialsSource {
        secret_ref: Some(SecretReference { name: "ak".into() }),
        role_arn: None,
    });
    env.create_labeled(
        &ns,
        "fixed",
        spec(&jr, with_secret),
        &[("e2e-process", "secretfix")],
    )
    .await?;
    let reason = wait_for(
        "the refused key to be reported",
        Duration::from_secs(40),
        || async {
            let s = env.status(&ns, "fixed").await?;
            match condition(&s, "Synced") {
                Some(("False", r, _)) => Ok(Some(r.to_owned())),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    ensure(reason == "Unauthorized", || format!("reported {reason}"))?;
    // That the rechecks before the fix cost no service call is proven on a paused clock in
    // tests/reconcile_scenarios.rs; here the count is only reported.
    let calls_while_wrong = env.sim.calls_for(&jr);
    env.put_secret(
        &ns,
        "ak",
        &[
            ("accessKeyId", ACCESS_KEY_ID),
            ("accessKeySecret", env.secret.as_str()),
        ],
    )
    .await?;
    let fixed_at = Instant::now();
    wait_for(
        "the fixed Secret to be used",
        Duration::from_secs(60),
        || async {
            let s = env.status(&ns, "fixed").await?;
            match s.state.as_deref() {
                Some("Running") => Ok(Some(())),
                other => Err(format!("{other:?} {:?}", condition(&s, "Synced"))),
            }
        },
    )
    .await?;
    let noticed_after = fixed_at.elapsed();
    println!(
        "e2e-count secret-fix noticed_after_s={:.1} calls_while_wrong={calls_while_wrong}",
        noticed_after.as_secs_f64()
    );
    ensure(noticed_after <= Duration::from_secs(30), || {
        format!("the fixed Secret was used only after {noticed_after:?}")
    })?;
    op.signal(libc::SIGTERM);
    let _ = tokio::time::timeout(Duration::from_secs(10), op.child.wait()).await;
    Ok(())
}
