//! Issue 10.6: the scale benchmark. Against a real kube-apiserver and the simulator (with the
//! account's quota enforced: calls beyond it are answered `Throttling.User`), one operator process
//! per observation mode follows N refs over 10 workspaces: most running and quiet, a tenth ended
//! from the start, and a tenth of the running ones changed to `Success` at a known moment.
//!
//! Printed per mode: initial sync time; service calls per active ref per interval while quiet;
//! calls after a run's final answer; status writes per remote change and for quiet refs (counted
//! from an independent watch, not from the operator's metrics); freshness p50/p99 (the change
//! to the watch seeing it); operator RSS and CPU; kube-apiserver CPU; bytes per cached ref.
//!
//! `cargo test --test scale` (part of the test command) runs N=300 with a 10 s interval and
//! asserts the counts, never the times. `tools/bench.sh N` runs it in release mode with
//! `SCALE_N`, `SCALE_INTERVAL_S`, `SCALE_QUOTA` and `SCALE_MODES` and prints the tables.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use sparkjobrun_operator::crd::{SparkJobRunRef, SparkJobRunRefSpec, SparkJobRunRefStatus};
use sparkjobrun_operator::kit::devenv::{ControlPlane, ControlPlaneOptions};
use sparkjobrun_operator::kit::simulator::counts::Call;
use sparkjobrun_operator::kit::simulator::{
    Account, RunScript, Simulator, SimulatorConfig, SimulatorHandle,
};

const KEY_ID: &str = "LTAI5tBenchKey00000001";
const KEY_SECRET: &str = "bench-secret-000000000001";
const WORKSPACES: usize = 10;
const REGION: &str = "cn-hangzhou";

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Params {
    n: usize,
    interval: Duration,
    quota: f64,
}

/// What the independent watch saw of one ref.
#[derive(Default, Clone)]
struct Seen {
    last: Option<SparkJobRunRefStatus>,
    writes: u64,
    first_state_at: Option<Instant>,
    terminal_at: Option<Instant>,
}

type Watched = Arc<Mutex<HashMap<String, Seen>>>;

/// Counts status changes per ref from a watch of the namespace.
fn watch(api: Api<SparkJobRunRef>) -> (Watched, tokio::task::JoinHandle<()>) {
    let seen: Watched = Arc::default();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Ok(Some(event)) = stream.try_next().await {
            let objects = match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
                _ => continue,
            };
            let now = Instant::now();
            let mut seen = out.lock().expect("seen");
            for o in objects {
                let entry = seen.entry(o.name_any()).or_default();
                if o.status != entry.last && o.status.is_some() {
                    entry.writes += 1;
                    let s = o.status.as_ref();
                    if entry.first_state_at.is_none() && s.and_then(|s| s.state.as_ref()).is_some()
                    {
                        entry.first_state_at = Some(now);
                    }
                    if entry.terminal_at.is_none() && s.and_then(|s| s.terminal) == Some(true) {
                        entry.terminal_at = Some(now);
                    }
                    entry.last = o.status;
                }
            }
        }
    });
    (seen, task)
}

/// `utime + stime` of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the state field.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// A `/proc/PID/status` size in MiB: `VmRSS` (resident now) or `VmHWM` (the most it ever was).
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (values.len() as f64 - 1.0)).round() as usize;
    values[rank.min(values.len() - 1)]
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Report {
    mode: &'static str,
    n: usize,
    active: usize,
    sync_s: f64,
    quiet_calls_per_ref_interval: f64,
    /// Calls in the quiet window, by API.
    quiet_by_api: BTreeMap<String, u64>,
    quiet_writes: u64,
    calls_after_terminal: u64,
    changes: usize,
    writes_per_change: f64,
    fresh_p50: f64,
    fresh_p99: f64,
    /// Where the freshness went (from the simulator's journal of calls).
    parts: Parts,
    rss_mib: f64,
    /// The most the operator was resident at any time, the initial sync included.
    peak_rss_mib: f64,
    cpu_pct: f64,
    apiserver_cpu_pct: f64,
    throttled: u64,
}

/// Freshness taken apart, as (p50, p99) seconds; `list_gap` is (p50, max).
#[derive(Default)]
struct Parts {
    to_list: (f64, f64),
    /// That list's first page to its last.
    list_took: (f64, f64),
    /// Its last page to the run's GetJobRun.
    list_to_get: (f64, f64),
    to_get: (f64, f64),
    get_to_seen: (f64, f64),
    list_gap: (f64, f64),
    /// Throttled calls in the window, by action.
    throttled: BTreeMap<String, u64>,
}

/// Reads the simulator's journal from `from`: for each change `(workspace, run, changed at,
/// status seen at)`, when its workspace was next listed and when its run was next asked for.
fn parts(calls: &[Call], changes: &[(String, String, Instant, Instant)]) -> Parts {
    let is_round = |c: &Call| {
        c.action.as_deref() == Some("ListJobRuns") && c.first_page && c.job_run_id.is_none()
    };
    let is_page = |c: &Call| c.action.as_deref() == Some("ListJobRuns") && c.job_run_id.is_none();
    let (mut to_list, mut to_get, mut get_to_seen) = (Vec::new(), Vec::new(), Vec::new());
    let (mut list_took, mut list_to_get) = (Vec::new(), Vec::new());
    for (ws, jr, at, seen) in changes {
        let after = |c: &&Call| c.at >= *at;
        let of_ws = |c: &&Call| c.workspace_id.as_deref() == Some(ws.as_str());
        let round = calls
            .iter()
            .enumerate()
            .find(|(_, c)| c.at >= *at && is_round(c) && of_ws(c));
        if let Some((i, list)) = round {
            to_list.push(list.at.duration_since(*at).as_secs_f64());
            // The round's last page: its workspace's last page before its next round.
            let last = calls[i..]
                .iter()
                .filter(|c| is_page(c) && of_ws(c))
                .take_while(|c| c.at == list.at || !c.first_page)
                .last()
                .unwrap_or(list);
            list_took.push(last.at.duration_since(list.at).as_secs_f64());
            if let Some(get) = calls[i..].iter().find(|c| {
                c.action.as_deref() == Some("GetJobRun")
                    && c.job_run_id.as_deref() == Some(jr.as_str())
            }) {
                list_to_get.push(get.at.saturating_duration_since(last.at).as_secs_f64());
            }
        }
        if let Some(get) = calls.iter().filter(after).find(|c| {
            c.action.as_deref() == Some("GetJobRun") && c.job_run_id.as_deref() == Some(jr.as_str())
        }) {
            to_get.push(get.at.duration_since(*at).as_secs_f64());
            get_to_seen.push(seen.saturating_duration_since(get.at).as_secs_f64());
        }
    }
    let mut last: HashMap<&str, Instant> = HashMap::new();
    let mut gaps = Vec::new();
    for c in calls.iter().filter(|c| is_round(c)) {
        let ws = c.workspace_id.as_deref().unwrap_or_default();
        if let Some(before) = last.insert(ws, c.at) {
            gaps.push(c.at.duration_since(before).as_secs_f64());
        }
    }
    let mut throttled = BTreeMap::new();
    for c in calls.iter().filter(|c| c.outcome.starts_with("Throttling")) {
        *throttled
            .entry(c.action.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    let both = |v: &mut Vec<f64>| (percentile(v, 50.0), percentile(v, 99.0));
    Parts {
        to_list: both(&mut to_list),
        list_took: both(&mut list_took),
        list_to_get: both(&mut list_to_get),
        to_get: both(&mut to_get),
        get_to_seen: both(&mut get_to_seen),
        list_gap: (
            percentile(&mut gaps, 50.0),
            gaps.iter().copied().fold(0.0, f64::max),
        ),
        throttled,
    }
}

fn print(r: &Report, p: &Params) {
    println!(
        "\n{} mode: N={} ({} active, {} ended at the start), interval {} s, quota {}/s",
        r.mode,
        r.n,
        r.active,
        r.n - r.active,
        p.interval.as_secs(),
        p.quota
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| initial sync (every ref shows its state) | {:.1} s |",
        r.sync_s
    );
    println!(
        "| service calls per active ref per interval, quiet | {:.4} |",
        r.quiet_calls_per_ref_interval
    );
    println!(
        "| calls in the quiet window ({:.0} s), by API | {:?} |",
        2.0 * p.interval.as_secs_f64(),
        r.quiet_by_api
    );
    println!(
        "| calls answered Throttling (whole run) | {} |",
        r.throttled
    );
    println!(
        "| calls after a run's final answer | {} |",
        r.calls_after_terminal
    );
    println!(
        "| status writes per remote change ({} changes) | {:.2} |",
        r.changes, r.writes_per_change
    );
    println!("| status writes for quiet refs | {} |", r.quiet_writes);
    println!(
        "| freshness p50 / p99 | {:.1} s / {:.1} s |",
        r.fresh_p50, r.fresh_p99
    );
    let q = &r.parts;
    for (what, (a, b)) in [
        ("change → next list of its workspace, p50 / p99", q.to_list),
        ("that list, first page → last page, p50 / p99", q.list_took),
        (
            "its last page → the run's GetJobRun, p50 / p99",
            q.list_to_get,
        ),
        ("change → its GetJobRun, p50 / p99", q.to_get),
        ("GetJobRun → status seen, p50 / p99", q.get_to_seen),
        ("gap between a workspace's lists, p50 / max", q.list_gap),
    ] {
        println!("| {what} | {a:.1} s / {b:.1} s |");
    }
    println!(
        "| throttled from the quiet window on, by API | {:?} |",
        q.throttled
    );
    println!(
        "| operator RSS, quiet (peak since start) | {:.1} MiB ({:.1} MiB) |",
        r.rss_mib, r.peak_rss_mib
    );
    println!("| operator CPU, quiet | {:.1} % of a core |", r.cpu_pct);
    println!(
        "| kube-apiserver CPU, same window | {:.1} % of a core |",
        r.apiserver_cpu_pct
    );
}

fn spec(ws: &str, jr: &str) -> SparkJobRunRefSpec {
    SparkJobRunRefSpec {
        workspace_id: ws.into(),
        job_run_id: jr.into(),
        region_id: Some(REGION.into()),
        ..SparkJobRunRefSpec::default()
    }
}

async fn create_all(api: &Api<SparkJobRunRef>, refs: &[(String, String, String)]) {
    futures::stream::iter(refs.iter().cloned())
        .for_each_concurrent(32, |(name, ws, jr)| {
            let api = api.clone();
            async move {
                let obj = SparkJobRunRef::new(&name, spec(&ws, &jr));
                api.create(&PostParams::default(), &obj)
                    .await
                    .unwrap_or_else(|e| panic!("creating {name}: {e}"));
            }
        })
        .await;
}

fn spawn_operator(
    plane: &ControlPlane,
    sim: &SimulatorHandle,
    ns: &str,
    mode: &str,
    p: &Params,
) -> std::process::Child {
    let interval = format!("{}s", p.interval.as_secs());
    let home = tempfile::tempdir().expect("home").keep();
    // SCALE_LOG=DIR keeps each operator's log there, at SCALE_LOG_LEVEL (default info).
    let (level, stderr) = match std::env::var_os("SCALE_LOG") {
        Some(dir) => {
            let path = std::path::Path::new(&dir).join(format!("operator-{mode}.log"));
            let file = std::fs::File::create(&path).expect("log file");
            let level = std::env::var("SCALE_LOG_LEVEL").unwrap_or_else(|_| "info".into());
            (level, std::process::Stdio::from(file))
        }
        None => ("warn".into(), std::process::Stdio::null()),
    };
    // SCALE_OPERATOR_BIN: another build of the operator (one with debug info, for a profile).
    let bin = operator_bin();
    // SCALE_HEAPTRACK=PREFIX runs the operator under heaptrack (a heap profile per mode, in
    // PREFIX-<mode>.zst); RSS and CPU are then those of the profiled process.
    let mut command = match std::env::var_os("SCALE_HEAPTRACK") {
        Some(prefix) => {
            let mut c = std::process::Command::new("heaptrack");
            let mut out = prefix;
            out.push(format!("-{mode}"));
            c.arg("-o").arg(out).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    };
    command
        .args(["run", "--namespace", ns, "--endpoint", &sim.endpoint()])
        .args(["--default-region", REGION, "--observe", mode])
        .args(["--metrics-addr", "127.0.0.1:0"])
        // Below the quota, as the README advises: the bucket can send rate + burst calls within
        // one second, so both together stay at the quota (a burst of a quarter of it on top of
        // 90 % was throttled whenever a list round met a full bucket).
        .args(["--rate-limit", &(p.quota * 0.9).to_string()])
        .args([
            "--rate-burst",
            &((p.quota * 0.1).floor() as u64).max(1).to_string(),
        ])
        .args(["--poll-running", &interval, "--poll-queued", &interval])
        .args([
            "--poll-long-running",
            &interval,
            "--min-poll-interval",
            "1s",
        ])
        .args(["--concurrency", "16"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("KUBECONFIG", plane.kubeconfig_admin_path())
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
        .env("RUST_LOG", level)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("operator starts")
}

fn operator_bin() -> std::ffi::OsString {
    std::env::var_os("SCALE_OPERATOR_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_sparkjobrun-operator").into())
}

/// The operator's own process: the child, or under heaptrack the child's descendant running
/// the operator's binary.
fn operator_pid(child: &std::process::Child) -> u32 {
    if std::env::var_os("SCALE_HEAPTRACK").is_none() {
        return child.id();
    }
    let bin = std::fs::canonicalize(operator_bin()).expect("binary");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let mut todo = vec![child.id()];
        while let Some(pid) = todo.pop() {
            if std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref() == Some(&bin) {
                return pid;
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            todo.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the operator did not start under heaptrack");
}

/// Stops the operator; under heaptrack with SIGTERM, so the profile is written out.
fn stop_operator(child: &mut std::process::Child, pid: u32) {
    if pid == child.id() {
        let _ = child.kill();
    } else {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = child.wait();
}

async fn run_mode(plane: &ControlPlane, client: &Client, mode: &'static str, p: &Params) -> Report {
    let ns = plane.create_namespace("scale").await.expect("namespace");
    let api: Api<SparkJobRunRef> = Api::namespaced(client.clone(), &ns);
    let sim = Simulator::start(SimulatorConfig {
        accounts: vec![Account::new(KEY_ID, KEY_SECRET)],
        quota_per_second: Some(p.quota),
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator");
    // (name, workspace, job run id), dealt to the workspaces in turn; a tenth of each
    // workspace's refs ended from the start.
    let tag = mode.replace('-', "");
    let refs: Vec<(String, String, String)> = (0..p.n)
        .map(|i| {
            let jr = format!("jr-{tag}{i:05}");
            (jr.clone(), format!("w-bench{:04}", i % WORKSPACES), jr)
        })
        .collect();
    // Decided by the ref's round of dealing, not by its index: `i % 10` is its workspace.
    let tenth = |i: usize| (i / WORKSPACES) % 10;
    let ended: Vec<&String> = refs
        .iter()
        .enumerate()
        .filter(|(i, _)| tenth(*i) == 0)
        .map(|(_, (_, _, jr))| jr)
        .collect();
    for (i, (_, ws, jr)) in refs.iter().enumerate() {
        let state = if tenth(i) == 0 { "Success" } else { "Running" };
        sim.add_run(RunScript::new(ws, jr).holding(state))
            .expect("run");
    }
    let active = p.n - ended.len();
    let (seen, watcher) = watch(api.clone());
    create_all(&api, &refs).await;

    let started = Instant::now();
    let mut operator = spawn_operator(plane, &sim, &ns, mode, p);
    let pid = operator_pid(&operator);
    let sync_timeout = Duration::from_secs_f64(60.0 + 3.0 * p.n as f64 / p.quota);
    wait_until("every ref to show its state", sync_timeout, || {
        let seen = seen.lock().expect("seen");
        seen.len() == p.n && seen.values().all(|s| s.first_state_at.is_some())
    })
    .await;
    let sync_s = started.elapsed().as_secs_f64();

    // Quiet: two intervals with nothing changing remotely.
    tokio::time::sleep(p.interval).await; // let the schedules spread after the sync
    let writes = |names: &mut dyn Iterator<Item = &String>| -> u64 {
        let seen = seen.lock().expect("seen");
        names.filter_map(|n| seen.get(n)).map(|s| s.writes).sum()
    };
    let all_names: Vec<String> = refs.iter().map(|(n, _, _)| n.clone()).collect();
    let writes_before = writes(&mut all_names.iter());
    let calls_before = sim.calls();
    let (cpu0, api0, t0) = (
        cpu_seconds(pid),
        cpu_seconds(plane.pids().kube_apiserver),
        Instant::now(),
    );
    let quiet = p.interval * 2;
    tokio::time::sleep(quiet).await;
    let window = t0.elapsed().as_secs_f64();
    let cpu_pct = 100.0 * (cpu_seconds(pid) - cpu0) / window;
    let apiserver_cpu_pct = 100.0 * (cpu_seconds(plane.pids().kube_apiserver) - api0) / window;
    let rss = status_mib(pid, "VmRSS");
    let peak_rss = status_mib(pid, "VmHWM");
    let calls_after = sim.calls();
    let quiet_calls = calls_after.total - calls_before.total;
    let quiet_by_api: BTreeMap<String, u64> = calls_after
        .by_action
        .iter()
        .map(|(api, n)| (api.clone(), n - calls_before.for_action(api)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let quiet_writes = writes(&mut all_names.iter()) - writes_before;
    let quiet_calls_per_ref_interval =
        quiet_calls as f64 / active as f64 / (window / p.interval.as_secs_f64());

    // Changes: some running runs end (a tenth, at most SCALE_CHANGES, default 100: each costs
    // its final GetJobRun and its usage, so a thousand within one interval would only measure
    // the quota), as many in each workspace.
    let most = env_num("SCALE_CHANGES", 100.0) as usize;
    let changed: Vec<(String, String, String)> = refs
        .iter()
        .enumerate()
        .filter(|(i, _)| tenth(*i) == 5)
        .map(|(_, r)| r.clone())
        .take(most)
        .collect();
    let changed_writes_before = writes(&mut changed.iter().map(|(n, _, _)| n));
    // Spread over one interval, each at a known moment, so freshness is not tied to the phase
    // of the groups' lists.
    let changed_at = Instant::now();
    let step = p.interval.div_f64(changed.len().max(1) as f64);
    let mut when: HashMap<String, Instant> = HashMap::new();
    for (i, (name, ws, jr)) in changed.iter().enumerate() {
        tokio::time::sleep_until((changed_at + step * i as u32).into()).await;
        sim.add_run(RunScript::new(ws, jr).holding("Success"))
            .expect("run");
        when.insert(name.clone(), Instant::now());
    }
    // Per-run mode under the quota may take a whole round of N calls to see a change.
    let change_timeout =
        p.interval * 6 + Duration::from_secs_f64(30.0 + 2.0 * p.n as f64 / p.quota);
    wait_until("every change to show", change_timeout, || {
        let seen = seen.lock().expect("seen");
        changed.iter().all(|(n, _, _)| {
            seen.get(n)
                .is_some_and(|s| s.terminal_at.is_some_and(|t| t >= changed_at))
        })
    })
    .await;
    let mut fresh: Vec<f64> = {
        let seen = seen.lock().expect("seen");
        changed
            .iter()
            .filter_map(|(n, _, _)| Some((seen.get(n)?.terminal_at?, *when.get(n)?)))
            .map(|(seen_at, at)| seen_at.saturating_duration_since(at).as_secs_f64())
            .collect()
    };
    let parts = {
        let seen = seen.lock().expect("seen");
        let changes: Vec<(String, String, Instant, Instant)> = changed
            .iter()
            .filter_map(|(n, ws, jr)| {
                Some((
                    ws.clone(),
                    jr.clone(),
                    *when.get(n)?,
                    seen.get(n)?.terminal_at?,
                ))
            })
            .collect();
        parts(&sim.journal_since(t0), &changes)
    };
    // Calls after the final answers: none for ended runs over one more interval.
    let terminal_calls = |sim: &SimulatorHandle| -> u64 {
        let calls = sim.calls();
        ended
            .iter()
            .map(|jr| calls.for_job_run(jr))
            .chain(changed.iter().map(|(_, _, jr)| calls.for_job_run(jr)))
            .sum()
    };
    let settled = terminal_calls(&sim);
    tokio::time::sleep(p.interval + Duration::from_secs(2)).await;
    let calls_after_terminal = terminal_calls(&sim) - settled;
    let changed_writes = writes(&mut changed.iter().map(|(n, _, _)| n)) - changed_writes_before;
    let throttled = sim.calls().for_outcome("Throttling.User");

    stop_operator(&mut operator, pid);
    watcher.abort();
    Report {
        mode,
        n: p.n,
        active,
        sync_s,
        quiet_calls_per_ref_interval,
        quiet_by_api,
        quiet_writes,
        calls_after_terminal,
        changes: changed.len(),
        writes_per_change: changed_writes as f64 / changed.len().max(1) as f64,
        fresh_p50: percentile(&mut fresh, 50.0),
        fresh_p99: percentile(&mut fresh, 99.0),
        parts,
        rss_mib: rss,
        peak_rss_mib: peak_rss,
        cpu_pct,
        apiserver_cpu_pct,
        throttled,
    }
}

/// Bytes of one ref as the API server sends it (JSON), and of its spec and status as the cache packs them.
async fn cache_bytes(client: &Client, plane: &ControlPlane) -> (usize, usize) {
    let ns = plane.create_namespace("cache").await.expect("namespace");
    let api: Api<SparkJobRunRef> = Api::namespaced(client.clone(), &ns);
    let mut obj = SparkJobRunRef::new("sized", spec("w-bench0000", "jr-sized"));
    obj.metadata.labels = Some(BTreeMap::from([
        (
            "app.kubernetes.io/instance".to_owned(),
            "nightly-pipelines".to_owned(),
        ),
        (
            "argocd.argoproj.io/instance".to_owned(),
            "data-team".to_owned(),
        ),
    ]));
    obj.metadata.annotations = Some(BTreeMap::from([(
        "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
        serde_json::to_string(&obj).unwrap_or_default(),
    )]));
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
    let mut status = SparkJobRunRefStatus::default();
    let run = sparkjobrun_operator::kit::simulator::job_run_at(
        &RunScript::new("w-bench0000", "jr-sized").holding("Running"),
        jiff::Timestamp::now(),
        jiff::Timestamp::now(),
    );
    sparkjobrun_operator::mapping::apply_job_run(&mut status, &run);
    let body = serde_json::json!({"apiVersion": "emrspark.io/v1alpha1", "kind": "SparkJobRunRef",
        "metadata": {"name": "sized"}, "status": status});
    api.patch_status(
        "sized",
        &kube::api::PatchParams::apply("sparkjobrun-operator").force(),
        &kube::api::Patch::Apply(&body),
    )
    .await
    .expect("status");
    let full = api.get("sized").await.expect("get");
    let before = serde_json::to_vec(&full).map_or(0, |v| v.len());
    let after = sparkjobrun_operator::reconcile::cache::CachedRef::new(full)
        .packed_len()
        .unwrap_or_default();
    (before, after)
}

fn main() {
    let params = Params {
        n: env_num("SCALE_N", 300.0) as usize,
        interval: Duration::from_secs_f64(env_num("SCALE_INTERVAL_S", 10.0)),
        quota: env_num("SCALE_QUOTA", 20.0),
    };
    let modes: Vec<&'static str> = match std::env::var("SCALE_MODES").ok().as_deref() {
        Some("batched") => vec!["batched"],
        Some("per-run") => vec!["per-run"],
        _ => vec!["batched", "per-run"],
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let reports = runtime.block_on(async {
        let plane = ControlPlane::start(ControlPlaneOptions::default())
            .await
            .unwrap_or_else(|e| panic!("control plane did not start: {e}"));
        let client = plane.admin_client().expect("client");
        plane
            .apply_yaml(
                &std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/crds/sparkjobruns.emrspark.io.yaml"
                ))
                .expect("CRD"),
            )
            .await
            .expect("CRD applies");
        plane
            .wait_crd_established("sparkjobruns.emrspark.io")
            .await
            .expect("CRD established");
        let (before, after) = cache_bytes(&client, &plane).await;
        println!(
            "cached ref: {before} bytes of JSON as served, its spec and status packed into {after} bytes"
        );
        let mut reports = Vec::new();
        for mode in modes {
            reports.push(run_mode(&plane, &client, mode, &params).await);
        }
        reports
    });
    for r in &reports {
        print(r, &params);
    }
    if let [b, p] = &reports[..] {
        println!(
            "\nper-run / batched: {:.1}x the calls per active ref per interval, freshness p99 {:.1} s vs {:.1} s",
            p.quiet_calls_per_ref_interval / b.quiet_calls_per_ref_interval.max(1e-9),
            p.fresh_p99,
            b.fresh_p99
        );
    }
    // Counts only: times depend on the machine.
    for r in &reports {
        assert_eq!(r.quiet_writes, 0, "{}: writes for quiet refs", r.mode);
        assert_eq!(
            r.calls_after_terminal, 0,
            "{}: calls after the final answer",
            r.mode
        );
        assert!(
            (r.writes_per_change - 1.0).abs() < f64::EPSILON,
            "{}: {} writes per change",
            r.mode,
            r.writes_per_change
        );
        if r.mode == "batched" {
            // One page per workspace and interval at most twice, for N/10 runs per workspace.
            let bound = 2.0 * WORKSPACES as f64 * (r.n as f64 / WORKSPACES as f64 / 100.0).ceil()
                / r.active as f64;
            assert!(
                r.quiet_calls_per_ref_interval <= bound,
                "batched: {:.4} calls per ref per interval > {bound:.4}",
                r.quiet_calls_per_ref_interval
            );
        }
    }
    println!("scale: ok");
}
