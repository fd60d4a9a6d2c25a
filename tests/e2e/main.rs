//! End-to-end tests on a real etcd + kube-apiserver, with the operator running in-process as the
//! least-privilege user and the service simulator as the only simulated part.
//!
//! A custom harness starts the control plane once, runs every test (each in its own namespace),
//! prints `e2e <name> ... ok|FAILED` lines and a closing `N passed, N failed`, keeps the control
//! plane's logs when anything failed, and stops both daemons whatever happened. It never skips:
//! missing binaries fail the run.

mod cases;
mod credential_cases;
mod fault_cases;
mod pipeline_cases;
mod process_cases;
mod support;

use std::time::Instant;

use futures::FutureExt;

use support::Env;

type TestFn = fn(&'static Env) -> futures::future::BoxFuture<'static, Result<(), String>>;

fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("crd_columns_and_names", |e| {
            cases::crd_columns_and_names(e).boxed()
        }),
        ("invalid_specs_are_refused", |e| {
            cases::invalid_specs_are_refused(e).boxed()
        }),
        ("run_that_succeeds", |e| cases::run_that_succeeds(e).boxed()),
        ("recreated_object_never_shows_the_old_run", |e| {
            cases::recreated_object_never_shows_the_old_run(e).boxed()
        }),
        ("run_that_fails", |e| cases::run_that_fails(e).boxed()),
        ("job_run_not_found", |e| cases::job_run_not_found(e).boxed()),
        ("wrong_credentials_then_fixed", |e| {
            cases::wrong_credentials_then_fixed(e).boxed()
        }),
        ("missing_secret_then_created", |e| {
            cases::missing_secret_then_created(e).boxed()
        }),
        ("quiet_run_writes_nothing", |e| {
            cases::quiet_run_writes_nothing(e).boxed()
        }),
        ("api_trouble_keeps_outcome", |e| {
            cases::api_trouble_keeps_outcome(e).boxed()
        }),
        ("operator_rights_are_minimal", |e| {
            cases::operator_rights_are_minimal(e).boxed()
        }),
        ("process_logs_metrics_and_scope", |e| {
            process_cases::process_logs_metrics_and_scope(e).boxed()
        }),
        ("leader_failover", |e| {
            process_cases::leader_failover(e).boxed()
        }),
        ("fixed_secret_is_noticed_soon", |e| {
            credential_cases::fixed_secret_is_noticed_soon(e).boxed()
        }),
        ("paused_leader_stays_silent", |e| {
            fault_cases::paused_leader_stays_silent(e).boxed()
        }),
        ("refused_renewals_stop_the_leader", |e| {
            fault_cases::refused_renewals_stop_the_leader(e).boxed()
        }),
        ("refresh_on_request", |e| {
            pipeline_cases::refresh_on_request(e).boxed()
        }),
        ("wait_exit_codes", |e| {
            pipeline_cases::wait_exit_codes(e).boxed()
        }),
        ("dashboard_and_alerts_query_exported_metrics", |e| {
            process_cases::dashboard_and_alerts_query_exported_metrics(e).boxed()
        }),
        ("import_then_apply", |e| {
            pipeline_cases::import_then_apply(e).boxed()
        }),
        ("cancel_on_delete", |e| {
            pipeline_cases::cancel_on_delete(e).boxed()
        }),
        ("ttl_deletes_after_the_delay", |e| {
            pipeline_cases::ttl_deletes_after_the_delay(e).boxed()
        }),
        ("overload_is_shared_fairly", |e| {
            fault_cases::overload_is_shared_fairly(e).boxed()
        }),
        ("watch_outage_drops_readiness", |e| {
            fault_cases::watch_outage_drops_readiness(e).boxed()
        }),
        ("cancel_failed_and_unknown_states", |e| {
            cases::cancel_failed_and_unknown_states(e).boxed()
        }),
        ("namespace_scoping", |e| {
            process_cases::namespace_scoping(e).boxed()
        }),
        ("rate_limit_bounds_calls", |e| {
            process_cases::rate_limit_bounds_calls(e).boxed()
        }),
        ("rrsa_refresh_and_rotation", |e| {
            credential_cases::rrsa_refresh_and_rotation(e).boxed()
        }),
        ("many_objects_share_one_exchange", |e| {
            credential_cases::many_objects_share_one_exchange(e).boxed()
        }),
        ("cross_account_roles", |e| {
            credential_cases::cross_account_roles(e).boxed()
        }),
        ("partial_answers_erase_nothing", |e| {
            fault_cases::partial_answers_erase_nothing(e).boxed()
        }),
        ("refused_status_writes_announce_once", |e| {
            fault_cases::refused_status_writes_announce_once(e).boxed()
        }),
    ]
}

/// Cases that disturb the whole control plane; each runs alone, after the others.
fn serial_tests() -> Vec<(&'static str, TestFn)> {
    vec![("api_server_stall_announces_once", |e| {
        fault_cases::api_server_stall_announces_once(e).boxed()
    })]
}

fn selected(filter: &[String], tests: Vec<(&'static str, TestFn)>) -> Vec<(&'static str, TestFn)> {
    tests
        .into_iter()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect()
}

/// Prints one case's outcome; true when it passed.
fn report(
    name: &str,
    t: Instant,
    outcome: Result<Result<(), String>, tokio::task::JoinError>,
) -> bool {
    let outcome = match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(msg)) => Err(msg),
        Err(join) => Err(format!("panicked: {join}")),
    };
    match outcome {
        Ok(()) => {
            println!("e2e {name} ... ok ({:.1}s)", t.elapsed().as_secs_f64());
            true
        }
        Err(msg) => {
            println!("e2e {name} ... FAILED\n    {}", msg.replace('\n', "\n    "));
            false
        }
    }
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("e2e: cannot build the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async move {
        let started = Instant::now();
        let env = match Env::start().await {
            Ok(env) => env,
            Err(e) => {
                eprintln!("e2e: environment did not start: {e}");
                println!("0 passed, 1 failed");
                return 1;
            }
        };
        let env: &'static Env = Box::leak(Box::new(env));
        let concurrent = selected(&filter, tests());
        let serial = selected(&filter, serial_tests());
        println!(
            "running {} end-to-end tests",
            concurrent.len() + serial.len()
        );
        // Independent tests run concurrently: each has its own namespace and job run ids.
        let handles: Vec<_> = concurrent
            .into_iter()
            .map(|(name, f)| (name, Instant::now(), tokio::spawn(f(env))))
            .collect();
        let (mut passed, mut failed) = (0, 0);
        for (name, t, handle) in handles {
            if report(name, t, handle.await) {
                passed += 1;
            } else {
                failed += 1;
            }
        }
        for (name, f) in serial {
            let t = Instant::now();
            if report(name, t, tokio::spawn(f(env)).await) {
                passed += 1;
            } else {
                failed += 1;
            }
        }
        let m = &env.ctx.metrics;
        println!(
            "operator: {} GetJobRun calls ok, {} status writes",
            m.calls_total("ok"),
            m.status_writes.get()
        );
        let kept = env.finish(failed > 0).await;
        if let Some(dir) = kept {
            println!("control plane logs kept in {}", dir.display());
        }
        println!("e2e wall time {:.1}s", started.elapsed().as_secs_f64());
        println!("{passed} passed, {failed} failed");
        i32::from(failed > 0)
    });
    std::process::exit(code);
}
