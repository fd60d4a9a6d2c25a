//! GetJobRun answer → `status`, and the whole next status from the last one and what a poll found.
//! Pure: the clock is passed in, so a run that does not change yields an identical status and the
//! controller can skip the write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{self, Knowledge, SYNCED, Sync};
use crate::crd::{
    ConfigurationItem, ConfigurationOverrides, DriverLogs, JobDriver, RunTag, SparkJobRunRefStatus,
    SparkSubmit, StateChangeReason,
};
use crate::state::StateClass;
use crate::wire;

/// Epoch milliseconds → RFC 3339 (UTC, whole seconds when the input has no fraction).
pub fn epoch_ms_to_rfc3339(ms: i64) -> Option<String> {
    if ms <= 0 {
        return None;
    }
    let ts = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(if ms % 1000 == 0 {
        ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    })
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.is_empty()).cloned()
}

/// Copies every field of the answer into the status, replacing what was there: the status mirrors
/// the latest answer, so a field the service stops sending disappears from the status too.
pub fn apply_job_run(status: &mut SparkJobRunRefStatus, run: &wire::JobRun) {
    status.state = non_empty(&run.state);
    status.state_change_reason = run
        .state_change_reason
        .as_ref()
        .map(|r| StateChangeReason {
            code: non_empty(&r.code),
            message: non_empty(&r.message),
        })
        .filter(|r| r.code.is_some() || r.message.is_some());
    status.log = run
        .log
        .as_ref()
        .map(|l| DriverLogs {
            driver_std_out: non_empty(&l.driver_std_out),
            driver_std_error: non_empty(&l.driver_std_error),
            driver_syslog: non_empty(&l.driver_syslog),
            driver_startup: non_empty(&l.driver_startup),
        })
        .filter(|l| *l != DriverLogs::default());
    status.name = non_empty(&run.name);
    status.code_type = non_empty(&run.code_type);
    status.web_ui = non_empty(&run.web_ui);
    status.submit_time = run.submit_time.and_then(epoch_ms_to_rfc3339);
    status.end_time = run.end_time.and_then(epoch_ms_to_rfc3339);
    status.release_version = non_empty(&run.release_version);
    status.display_release_version = non_empty(&run.display_release_version);
    status.resource_queue_id = non_empty(&run.resource_queue_id);
    status.tags = run
        .tags
        .iter()
        .flatten()
        .filter_map(|t| {
            Some(RunTag {
                key: t.key.clone()?,
                value: t.value.clone().unwrap_or_default(),
            })
        })
        .collect();
    status.execution_timeout_seconds = run.execution_timeout_seconds;
    status.priority = non_empty(&run.priority);
    status.fusion = run.fusion;
    status.environment_id = non_empty(&run.environment_id);
    status.notebook_access_url = non_empty(&run.notebook_access_url);
    status.resource_owner_id = non_empty(&run.resource_owner_id);
    status.job_driver = run.job_driver.as_ref().map(|d| JobDriver {
        spark_submit: d.spark_submit.as_ref().map(|s| SparkSubmit {
            entry_point: non_empty(&s.entry_point),
            entry_point_arguments: s.entry_point_arguments.clone().unwrap_or_default(),
            spark_submit_parameters: non_empty(&s.spark_submit_parameters),
        }),
    });
    status.configuration_overrides =
        run.configuration_overrides
            .as_ref()
            .map(|c| ConfigurationOverrides {
                configurations: c
                    .configurations
                    .iter()
                    .flatten()
                    .map(|i| ConfigurationItem {
                        config_file_name: i.config_file_name.clone(),
                        config_item_key: i.config_item_key.clone(),
                        config_item_value: i.config_item_value.clone(),
                    })
                    .collect(),
            });
}

/// What one reconcile learned.
#[derive(Debug, Clone, Copy)]
pub enum PollOutcome<'a> {
    /// The service answered with the run (its `state` is present).
    Run(&'a wire::JobRun),
    /// The service says the run does not exist.
    NotFound { message: &'a str },
    /// The run could not be read (credentials, network, throttling, ...). `reason` is PascalCase.
    Failed { reason: &'a str, message: &'a str },
    /// No call was made (the run is already terminal): only bookkeeping is refreshed.
    Skipped,
}

/// Identity of the object the status belongs to.
#[derive(Debug, Clone, Copy)]
pub struct StatusContext<'a> {
    pub generation: Option<i64>,
    pub job_run_id: &'a str,
    pub region_id: Option<&'a str>,
}

/// The status to write after a reconcile. A failed call keeps every field and the job-outcome
/// conditions of `old`: nothing learned earlier is ever lost to an error.
pub fn next_status(
    old: Option<&SparkJobRunRefStatus>,
    outcome: PollOutcome<'_>,
    ctx: StatusContext<'_>,
    now: &Time,
) -> SparkJobRunRefStatus {
    let mut status = old.cloned().unwrap_or_default();
    let old_conditions = old.map(|o| o.conditions.as_slice()).unwrap_or_default();
    let old_outcome: Vec<conditions::Desired> = old_conditions
        .iter()
        .filter(|c| c.type_ != SYNCED)
        .filter_map(|c| {
            let type_ = [
                conditions::READY,
                conditions::RECONCILING,
                conditions::STALLED,
                conditions::SUCCEEDED,
                conditions::FAILED,
                conditions::FINISHED,
            ]
            .into_iter()
            .find(|t| *t == c.type_)?;
            let status = ["True", "False", "Unknown"]
                .into_iter()
                .find(|s| *s == c.status)?;
            Some(conditions::Desired {
                type_,
                status,
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
        })
        .collect();
    let old_synced = old_conditions.iter().find(|c| c.type_ == SYNCED);

    let (mut desired, sync) = match outcome {
        PollOutcome::Run(run) => {
            apply_job_run(&mut status, run);
            let state = status.state.as_deref().unwrap_or_default();
            let reason = status.state_change_reason.as_ref();
            let knowledge = Knowledge::State {
                state,
                reason_code: reason.and_then(|r| r.code.as_deref()),
                reason_message: reason.and_then(|r| r.message.as_deref()),
            };
            (
                conditions::outcome(&knowledge, ctx.job_run_id),
                Some(Sync::Ok),
            )
        }
        PollOutcome::NotFound { message } => (
            conditions::outcome(&Knowledge::NotFound { message }, ctx.job_run_id),
            Some(Sync::Failed {
                reason: "JobRunNotFound",
                message,
            }),
        ),
        PollOutcome::Failed { reason, message } => {
            let kept = if old_outcome.is_empty() {
                conditions::outcome(&Knowledge::Nothing, ctx.job_run_id)
            } else {
                old_outcome
            };
            (kept, Some(Sync::Failed { reason, message }))
        }
        PollOutcome::Skipped => {
            let kept = if old_outcome.is_empty() {
                conditions::outcome(&Knowledge::Nothing, ctx.job_run_id)
            } else {
                old_outcome
            };
            (kept, None)
        }
    };
    desired.push(match sync {
        Some(s) => conditions::synced(&s),
        None => match old_synced {
            Some(c) => conditions::Desired {
                type_: SYNCED,
                status: if c.status == "True" { "True" } else { "False" },
                reason: c.reason.clone(),
                message: c.message.clone(),
            },
            None => conditions::synced(&Sync::Ok),
        },
    });

    status.terminal = status
        .state
        .as_deref()
        .map(|s| StateClass::of(s).is_terminal());
    if let Some(region) = ctx.region_id {
        status.region_id = Some(region.to_owned());
    }
    status.observed_generation = ctx.generation;
    status.conditions = conditions::materialize(old_conditions, desired, ctx.generation, now);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::find;

    fn seed_run() -> wire::JobRun {
        let resp: wire::GetJobRunResponse =
            serde_json::from_str(include_str!("../tests/fixtures/get-job-run-seed.json"))
                .expect("seed decodes");
        resp.job_run.expect("jobRun")
    }

    fn ctx() -> StatusContext<'static> {
        StatusContext {
            generation: Some(1),
            job_run_id: "jr-93d98d2f7061abcd",
            region_id: Some("cn-hangzhou"),
        }
    }

    fn now() -> Time {
        Time("2024-05-01T00:00:00Z".parse().expect("ts"))
    }

    #[test]
    fn epoch_conversion() {
        assert_eq!(
            epoch_ms_to_rfc3339(1684119314000).as_deref(),
            Some("2023-05-15T02:55:14Z")
        );
        assert_eq!(
            epoch_ms_to_rfc3339(1684119314123).as_deref(),
            Some("2023-05-15T02:55:14.123Z")
        );
        assert_eq!(epoch_ms_to_rfc3339(0), None);
        assert_eq!(epoch_ms_to_rfc3339(i64::MAX), None);
    }

    #[test]
    fn seed_example_maps_every_field() {
        let status = next_status(None, PollOutcome::Run(&seed_run()), ctx(), &now());
        let got = serde_json::to_value(&status).expect("serialises");
        let want = serde_json::json!({
            "observedGeneration": 1,
            "state": "Running",
            "terminal": false,
            "regionId": "cn-hangzhou",
            "stateChangeReason": {"code": "ERR-100000", "message": "connection refused"},
            "log": {
                "driverStdOut": "oss://bucket/path/to/stdout",
                "driverStdError": "oss://bucket/path/to/stderr",
                "driverSyslog": "oss://bucket/path/to/syslog",
                "driverStartup": "oss://bucket/path/to/startup"
            },
            "name": "jobName",
            "codeType": "SQL",
            "webUI": "http://spark-ui",
            "submitTime": "2023-05-15T02:55:14Z",
            "endTime": "2023-05-15T03:55:14Z",
            "releaseVersion": "esr-3.3.1",
            "displayReleaseVersion": "esr-4.0.0 (Spark 3.5.2, Scala 2.12)",
            "resourceQueueId": "root_queue",
            "tags": [{"key": "workflowId", "value": "wf-123test"}],
            "executionTimeoutSeconds": 3600,
            "priority": "5",
            "fusion": false,
            "environmentId": "env-cpv569tlhtgndjl8****",
            "notebookAccessUrl": "http://workflow-ide-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/spark-notebook-output/w-xxxxxxxxx/xxxxxxx",
            "resourceOwnerId": "150978934701****",
            "jobDriver": {"sparkSubmit": {
                "entryPoint": "oss://bucket/path/to/entrypoint.jar",
                "entryPointArguments": ["arg1"],
                "sparkSubmitParameters": "--conf spark.app.name=test"
            }},
            "configurationOverrides": {"configurations": [{
                "configFileName": "common.conf",
                "configItemKey": "hive.metastore.type",
                "configItemValue": "USER_RDS"
            }]},
        });
        let mut got_without_conditions = got.clone();
        if let Some(obj) = got_without_conditions.as_object_mut() {
            obj.remove("conditions");
        }
        assert_eq!(got_without_conditions, want);
        assert_eq!(
            find(&status.conditions, "Synced").map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(
            find(&status.conditions, "Reconciling").map(|c| c.reason.as_str()),
            Some("Running")
        );
    }

    #[test]
    fn unchanged_run_gives_identical_status() {
        let run = seed_run();
        let first = next_status(None, PollOutcome::Run(&run), ctx(), &now());
        let later = Time("2024-05-01T01:00:00Z".parse().expect("ts"));
        let second = next_status(Some(&first), PollOutcome::Run(&run), ctx(), &later);
        assert_eq!(first, second);
    }

    #[test]
    fn failed_call_keeps_last_good_status() {
        let mut run = seed_run();
        run.state = Some("Success".into());
        let good = next_status(None, PollOutcome::Run(&run), ctx(), &now());
        let after = next_status(
            Some(&good),
            PollOutcome::Failed {
                reason: "Throttled",
                message: "Throttling.User: slow down",
            },
            ctx(),
            &now(),
        );
        let strip = |s: &SparkJobRunRefStatus| {
            let mut s = s.clone();
            s.conditions.retain(|c| c.type_ != "Synced");
            s
        };
        assert_eq!(
            strip(&good),
            strip(&after),
            "fields and outcome conditions untouched"
        );
        let synced = find(&after.conditions, "Synced").expect("synced");
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            ("False", "Throttled")
        );
        assert_eq!(
            find(&after.conditions, "Succeeded").map(|c| c.status.as_str()),
            Some("True")
        );
    }

    #[test]
    fn first_call_failing_reports_initializing() {
        let s = next_status(
            None,
            PollOutcome::Failed {
                reason: "SecretNotFound",
                message: "Secret data/emr-ak not found",
            },
            ctx(),
            &now(),
        );
        assert_eq!(s.state, None);
        assert_eq!(
            find(&s.conditions, "Ready").map(|c| c.reason.as_str()),
            Some("Initializing")
        );
        assert_eq!(
            find(&s.conditions, "Synced").map(|c| c.reason.as_str()),
            Some("SecretNotFound")
        );
    }

    #[test]
    fn not_found_keeps_fields_and_stalls() {
        let good = next_status(None, PollOutcome::Run(&seed_run()), ctx(), &now());
        let nf = next_status(
            Some(&good),
            PollOutcome::NotFound {
                message: "no such run",
            },
            ctx(),
            &now(),
        );
        assert_eq!(nf.state.as_deref(), Some("Running"));
        let stalled = find(&nf.conditions, "Stalled").expect("stalled");
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "JobRunNotFound")
        );
        assert!(find(&nf.conditions, "Reconciling").is_none());
        // An API error afterwards keeps the not-found verdict.
        let err = next_status(
            Some(&nf),
            PollOutcome::Failed {
                reason: "EndpointUnreachable",
                message: "timeout",
            },
            ctx(),
            &now(),
        );
        assert_eq!(
            find(&err.conditions, "Stalled").map(|c| c.reason.as_str()),
            Some("JobRunNotFound")
        );
    }

    #[test]
    fn skipped_only_refreshes_generation() {
        let mut run = seed_run();
        run.state = Some("Failed".into());
        let done = next_status(None, PollOutcome::Run(&run), ctx(), &now());
        let ctx2 = StatusContext {
            generation: Some(2),
            ..ctx()
        };
        let again = next_status(Some(&done), PollOutcome::Skipped, ctx2, &now());
        assert_eq!(again.observed_generation, Some(2));
        assert!(
            again
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );
        assert_eq!(
            find(&again.conditions, "Failed").map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(again.terminal, Some(true));
    }
}
