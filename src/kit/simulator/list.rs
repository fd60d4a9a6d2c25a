//! ListJobRuns as the simulator serves it: the query (JSON-valued filters as the official SDKs
//! send them), filtering, paging and the item shape. Pure: runs and the clock come in as
//! arguments.

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ServiceError;
use super::script::{RunScript, answer_body};
use crate::signer::percent_decode;

/// The service's page size bound and its default.
pub const MAX_RESULTS: usize = 100;
pub const DEFAULT_RESULTS: usize = 20;
/// Resources a simulated run uses while it is not waiting: what usage grows by per second.
pub const VCORES: i64 = 4;
pub const MEMORY_MB: i64 = 16 * 1024;

/// A parsed ListJobRuns query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub region_id: String,
    pub max_results: usize,
    /// Where this page starts, from `nextToken`.
    pub offset: usize,
    pub states: Option<Vec<String>>,
    pub tags: Vec<(String, String)>,
    pub job_run_id: Option<String>,
    pub name: Option<String>,
    /// `startTime={"startTime":ms,"endTime":ms}`: submitted within, either bound optional.
    pub submitted: (Option<i64>, Option<i64>),
}

#[derive(Deserialize)]
struct TagFilter {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Range {
    start_time: Option<i64>,
    end_time: Option<i64>,
}

/// Decoded `name=value` pairs; `+` is a space, as in form encoding (the SDK's wire form).
fn pairs(raw: &str) -> Result<Vec<(String, String)>, ServiceError> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |t: &str| percent_decode(&t.replace('+', " "));
            match (decode(k), decode(v)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(ServiceError::invalid_query()),
            }
        })
        .collect()
}

fn json_param<T: serde::de::DeserializeOwned>(name: &str, value: &str) -> Result<T, ServiceError> {
    serde_json::from_str(value)
        .map_err(|e| ServiceError::invalid_parameter(name, &format!("not the expected JSON: {e}")))
}

/// Next-page tokens are opaque to clients; the simulator's carry the offset.
fn token_for(offset: usize) -> String {
    format!("sim-{offset}")
}

impl ListQuery {
    pub fn parse(raw_query: &str) -> Result<Self, ServiceError> {
        let mut q = Self {
            max_results: DEFAULT_RESULTS,
            ..Self::default()
        };
        let mut region = None;
        for (name, value) in pairs(raw_query)? {
            match name.as_str() {
                "regionId" => region = Some(value).filter(|v| !v.is_empty()),
                "maxResults" => {
                    q.max_results = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_RESULTS).contains(n))
                        .ok_or_else(|| {
                            ServiceError::invalid_parameter(
                                "maxResults",
                                &format!("{value:?} is not an integer from 1 to {MAX_RESULTS}"),
                            )
                        })?;
                }
                "nextToken" if value.is_empty() => {}
                "nextToken" => {
                    q.offset = value
                        .strip_prefix("sim-")
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| {
                            ServiceError::invalid_parameter("nextToken", "not a token of this API")
                        })?;
                }
                "states" => q.states = Some(json_param("states", &value)?),
                "tags" => {
                    let tags: Vec<TagFilter> = json_param("tags", &value)?;
                    q.tags = tags.into_iter().map(|t| (t.key, t.value)).collect();
                }
                "jobRunId" => q.job_run_id = Some(value).filter(|v| !v.is_empty()),
                "name" => q.name = Some(value).filter(|v| !v.is_empty()),
                "startTime" => {
                    let range: Range = json_param("startTime", &value)?;
                    q.submitted = (range.start_time, range.end_time);
                }
                // Filters the simulator does not model (creator, resourceQueueId, ...) match all.
                _ => {}
            }
        }
        q.region_id = region.ok_or_else(|| ServiceError::missing_parameter("regionId"))?;
        Ok(q)
    }

    fn matches(&self, item: &Value) -> bool {
        let text = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or_default();
        let submit = item.get("submitTime").and_then(Value::as_i64).unwrap_or(0);
        let tags = item.get("tags").and_then(Value::as_array);
        let has_tag = |(k, v): &(String, String)| {
            tags.is_some_and(|tags| {
                tags.iter().any(|t| {
                    t.get("key").and_then(Value::as_str) == Some(k)
                        && t.get("value").and_then(Value::as_str) == Some(v)
                })
            })
        };
        self.states
            .as_ref()
            .is_none_or(|s| s.iter().any(|s| s == text("state")))
            && self
                .job_run_id
                .as_deref()
                .is_none_or(|id| id == text("jobRunId"))
            && self
                .name
                .as_deref()
                .is_none_or(|n| text("name").contains(n))
            && self.submitted.0.is_none_or(|from| submit >= from)
            && self.submitted.1.is_none_or(|to| submit <= to)
            && self.tags.iter().all(has_tag)
    }
}

/// One list item: GetJobRun's `jobRun` without `jobDriver` and `configurationOverrides`, plus
/// `creator` and the usage so far.
pub fn item(script: &RunScript, started_at: Timestamp, now: Timestamp) -> Value {
    let mut run = answer_body(script, started_at, now, "")
        .get_mut("jobRun")
        .map(Value::take)
        .unwrap_or_default();
    if let Some(map) = run.as_object_mut() {
        map.remove("jobDriver");
        map.remove("configurationOverrides");
        let submit = map.get("submitTime").and_then(Value::as_i64).unwrap_or(0);
        let end = map
            .get("endTime")
            .and_then(Value::as_i64)
            .unwrap_or_else(|| now.as_millisecond());
        let (cu_hours, mb_seconds, vcore_seconds) = usage((end - submit).max(0) / 1000);
        map.insert("creator".into(), json!("1509789347010000"));
        map.insert("cuHours".into(), json!(cu_hours));
        map.insert("mbSeconds".into(), json!(mb_seconds));
        map.insert("vcoreSeconds".into(), json!(vcore_seconds));
    }
    run
}

/// Usage after `seconds` of running: one CU is one vcore with 4 GiB for an hour, rounded to
/// the service's three decimals.
pub fn usage(seconds: i64) -> (f64, i64, i64) {
    let vcore_seconds = seconds * VCORES;
    let cu_hours = (vcore_seconds as f64 / 3600.0 * 1000.0).round() / 1000.0;
    (cu_hours, seconds * MEMORY_MB, vcore_seconds)
}

/// The page `q` asks for among `runs` (already limited to the workspace and region), newest
/// submission first, ties by job run id.
pub fn page<'a>(
    runs: impl Iterator<Item = (&'a RunScript, Timestamp)>,
    q: &ListQuery,
    now: Timestamp,
    request_id: &str,
) -> Value {
    let mut items: Vec<Value> = runs
        .map(|(script, started_at)| item(script, started_at, now))
        .filter(|i| q.matches(i))
        .collect();
    let key = |i: &Value| {
        (
            std::cmp::Reverse(i.get("submitTime").and_then(Value::as_i64).unwrap_or(0)),
            i.get("jobRunId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )
    };
    items.sort_by_cached_key(key);
    let total = items.len();
    let end = q.offset.saturating_add(q.max_results).min(total);
    let next = if end < total {
        token_for(end)
    } else {
        String::new()
    };
    let shown: Vec<Value> = items
        .into_iter()
        .skip(q.offset)
        .take(q.max_results)
        .collect();
    json!({
        "requestId": request_id,
        "jobRuns": shown,
        "maxResults": q.max_results,
        "nextToken": next,
        "totalCount": total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::simulator::script::Phase;

    /// The query the official Python SDK sent (tests/fixtures/acs3-known-answers.json).
    #[test]
    fn parses_the_sdks_query() {
        let fixture: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/acs3-known-answers.json"
        ))
        .expect("fixture");
        let case = |name: &str| {
            fixture["cases"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == name))
                .and_then(|c| c["query"].as_str())
                .expect("case")
                .to_owned()
        };
        let q = ListQuery::parse(&case("list-job-runs-json-filters")).expect("parses");
        assert_eq!(q.region_id, "cn-hangzhou");
        assert_eq!(q.max_results, 100);
        assert_eq!(
            q.states.as_deref(),
            Some(
                &[
                    "Submitted",
                    "Pending",
                    "Running",
                    "Cancelling",
                    "CancelFailed"
                ]
                .map(String::from)[..]
            )
        );
        assert_eq!(q.tags, [("team".to_owned(), "data ü".to_owned())]);
        assert_eq!(q.job_run_id.as_deref(), Some("jr-93d98d2f7061abcd"));
        assert_eq!(q.submitted, (Some(1714550400000), Some(1714636800000)));
        assert_eq!(q.offset, 100);
        let other = ListQuery::parse(&case("list-job-runs-encoded-query"));
        // That capture pages with a made-up token, which this API never issued.
        assert_eq!(
            other.err().map(|e| e.code),
            Some("InvalidParameter.nextToken".to_owned())
        );
    }

    #[test]
    fn bad_queries_name_the_parameter() {
        for (query, code) in [
            ("maxResults=5", "MissingParameter.regionId"),
            ("regionId=r&maxResults=0", "InvalidParameter.maxResults"),
            ("regionId=r&maxResults=101", "InvalidParameter.maxResults"),
            ("regionId=r&states=Running", "InvalidParameter.states"),
            ("regionId=r&tags=%5B1%5D", "InvalidParameter.tags"),
            (
                "regionId=r&startTime=%7B%7D%7D",
                "InvalidParameter.startTime",
            ),
            ("regionId=r&nextToken=abc", "InvalidParameter.nextToken"),
            ("regionId=%FF", "InvalidParameter"),
        ] {
            let err = ListQuery::parse(query).expect_err(query);
            assert_eq!(err.code, code, "{query}");
            assert_eq!(err.status, 400);
        }
    }

    fn runs() -> Vec<(RunScript, Timestamp)> {
        let t = |s: i64| Timestamp::from_second(1_700_000_000 + s).expect("ts");
        let mut out = Vec::new();
        for i in 0..5 {
            let mut run = RunScript::new("w-1", format!("jr-{i}")).holding("Running");
            if i % 2 == 0 {
                run.tags = Some(vec![crate::wire::Tag {
                    key: Some("team".into()),
                    value: Some("a".into()),
                }]);
            }
            out.push((run, t(i)));
        }
        out.push((
            RunScript::new("w-1", "jr-done").with_phases(vec![
                Phase::new("Running").for_secs(90.0),
                Phase::new("Success"),
            ]),
            t(0),
        ));
        out
    }

    #[test]
    fn filters_pages_and_shapes_items() {
        let now = Timestamp::from_second(1_700_000_100).expect("ts");
        let runs = runs();
        let iter = || runs.iter().map(|(r, t)| (r, *t));
        let q = |query: &str| ListQuery::parse(query).expect(query);

        let active = page(
            iter(),
            &q("regionId=r&states=%5B%22Running%22%5D&maxResults=2"),
            now,
            "r",
        );
        assert_eq!(active["totalCount"], 5);
        let ids: Vec<&str> = active["jobRuns"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|i| i["jobRunId"].as_str())
            .collect();
        assert_eq!(ids, ["jr-4", "jr-3"], "newest first");
        assert_eq!(active["nextToken"], "sim-2");
        let last = page(
            iter(),
            &q("regionId=r&states=%5B%22Running%22%5D&maxResults=2&nextToken=sim-4"),
            now,
            "r",
        );
        assert_eq!(last["jobRuns"].as_array().map(Vec::len), Some(1));
        assert_eq!(last["nextToken"], "");

        let tagged = page(
            iter(),
            &q("regionId=r&tags=%5B%7B%22key%22%3A%22team%22%2C%22value%22%3A%22a%22%7D%5D"),
            now,
            "r",
        );
        assert_eq!(tagged["totalCount"], 3);
        let one = page(iter(), &q("regionId=r&jobRunId=jr-done"), now, "r");
        let item = &one["jobRuns"][0];
        assert_eq!(item["state"], "Success");
        assert!(item.get("jobDriver").is_none() && item.get("configurationOverrides").is_none());
        assert_eq!(item["vcoreSeconds"], 90 * VCORES, "usage stops at the end");
        assert_eq!(item["mbSeconds"], 90 * MEMORY_MB);
        assert_eq!(item["cuHours"], 0.1);
        assert!(item["log"]["driverStdOut"].is_string());
        let since = page(
            iter(),
            &q("regionId=r&startTime=%7B%22startTime%22%3A1700000003000%7D"),
            now,
            "r",
        );
        assert_eq!(since["totalCount"], 2);
    }

    /// Issue 10.1: a run's ListJobRuns item and its GetJobRun answer give the same status once the
    /// full answer is known (the item lacks only jobDriver and configurationOverrides, which are
    /// kept), so the two observation modes write the same thing.
    #[test]
    fn an_item_and_the_full_answer_map_to_the_same_status() {
        use crate::mapping::{PollOutcome, StatusContext, next_status};
        let started = Timestamp::from_second(1_700_000_000).expect("ts");
        let now = Timestamp::from_second(1_700_000_050).expect("ts");
        let script = RunScript::new("w-1", "jr-1").with_phases(vec![
            Phase::new("Running").for_secs(30.0),
            Phase::new("Failed").reason("ERR-1", "boom"),
        ]);
        let full: crate::wire::GetJobRunResponse =
            serde_json::from_value(answer_body(&script, started, now, "r")).expect("full");
        let full = full.job_run.expect("run");
        let listed: crate::wire::ListedRun =
            serde_json::from_value(item(&script, started, now)).expect("item");
        assert!(listed.run.job_driver.is_none() && full.job_driver.is_some());
        let ctx = StatusContext {
            generation: Some(1),
            workspace_id: "w-1",
            job_run_id: "jr-1",
            region_id: Some("cn-hangzhou"),
        };
        let at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now);
        let running_script = RunScript::new("w-1", "jr-1").holding("Running");
        let first: crate::wire::GetJobRunResponse =
            serde_json::from_value(answer_body(&running_script, started, started, "r"))
                .expect("first");
        let known = next_status(
            None,
            PollOutcome::Run(&first.job_run.expect("run")),
            ctx,
            &at,
        );
        let by_get = next_status(Some(&known), PollOutcome::Run(&full), ctx, &at);
        let by_list = next_status(Some(&known), PollOutcome::Run(&listed.run), ctx, &at);
        assert_eq!(by_list, by_get);
        assert_eq!(by_list.state.as_deref(), Some("Failed"));
        assert!(by_list.job_driver.is_some(), "kept from the full answer");
        assert!(
            by_list.usage.is_none(),
            "usage comes only from the final list"
        );
    }
}
