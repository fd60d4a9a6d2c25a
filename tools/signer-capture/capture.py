#!/usr/bin/env python3
"""Capture ACS3-HMAC-SHA256 known answers from the official Python SDK.

Drives `alibabacloud-emr-serverless-spark20230808` (over `alibabacloud-tea-openapi`)
against a recording HTTP server on 127.0.0.1, re-derives every signature with a small
independent implementation of the documented algorithm, and writes
tests/fixtures/acs3-known-answers.json. See README.md next to this file.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import importlib.metadata
import json
import os
import re
import sys
import threading
from pathlib import Path
from urllib.parse import unquote_plus

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "acs3-known-answers.json"
REQUIREMENTS = Path(__file__).resolve().with_name("requirements.txt")
GENERATOR = "tools/signer-capture/capture.py"

# Proxy variables would make the SDK send the requests elsewhere: drop them first.
for _var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
             "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
    os.environ.pop(_var, None)

import urllib3.util.connection  # noqa: E402
import Tea  # noqa: E402
from alibabacloud_emr_serverless_spark20230808 import models as spark_models  # noqa: E402
from alibabacloud_emr_serverless_spark20230808.client import Client as SparkClient  # noqa: E402
from alibabacloud_tea_openapi import utils_models as openapi_models  # noqa: E402
from alibabacloud_tea_openapi.utils import Utils as OpenApiUtils  # noqa: E402

ALGORITHM = "ACS3-HMAC-SHA256"


# --------------------------------------------------------------------------------------
# Installed versions must equal the pins, so the fixture says exactly what produced it.
# --------------------------------------------------------------------------------------
def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_norm(name)] = version
    for name, version in pins.items():
        installed = importlib.metadata.version(name)
        if installed != version:
            sys.exit(f"{name}: installed {installed}, pinned {version}; "
                     f"install {REQUIREMENTS.name} into a fresh venv")
    # Recorded in the fixture: the SDK stack and the HTTP layers that build the wire request.
    keep = [n for n in pins if n.startswith(("alibabacloud-", "darabonba-"))]
    keep += ["requests", "urllib3"]
    return {n: pins[n] for n in sorted(keep)}


# --------------------------------------------------------------------------------------
# Pin the SDK's per-request variables. The SDK reads all of them through
# alibabacloud_tea_openapi.utils.Utils at call time (see Client.do_request).
# --------------------------------------------------------------------------------------
PINNED = {"date": None, "nonce": None}
OpenApiUtils.get_timestamp = staticmethod(lambda: PINNED["date"])
OpenApiUtils.get_nonce = staticmethod(lambda: PINNED["nonce"])
# The default user-agent names the OS, CPU and Python of the machine; it is a signed header,
# so fix it to one plausible value (same format, real Tea core version).
USER_AGENT = f"AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/{Tea.__version__} TeaDSL/2"
OpenApiUtils._Utils__get_default_agent = staticmethod(lambda: USER_AGENT)


# --------------------------------------------------------------------------------------
# Recording server.
# --------------------------------------------------------------------------------------
RECORDED: list[dict] = []


def _response_for(action: str, path: str) -> dict:
    """A plausible lowerCamel JSON answer per action, enough for the SDK to decode."""
    request_id = "0A1B2C3D-4E5F-6789-ABCD-EF0123456789"
    if action == "GetJobRun":
        return {"requestId": request_id, "jobRun": {
            "workspaceId": "w-d2d82aa09151abcd", "jobRunId": "jr-93d98d2f7061abcd",
            "name": "spark-pi", "state": "Running", "codeType": "JAR",
            "submitTime": 1714550400000, "releaseVersion": "esr-2.1 (Spark 3.3.1, Scala 2.12)",
            "resourceQueueId": "root_queue", "priority": "5",
            "stateChangeReason": {"code": "", "message": ""},
        }}
    if action == "StartJobRun":
        return {"requestId": request_id, "jobRunId": "jr-0123456789abcdef"}
    if action == "CancelJobRun":
        return {"requestId": request_id, "jobRunId": path.rsplit("/", 1)[-1]}
    if action == "ListJobRuns":
        return {"requestId": request_id, "jobRuns": [], "maxResults": 20,
                "nextToken": "", "totalCount": 0}
    return {"requestId": request_id}


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request exactly as received; HTTP/1.0, so one request per connection."""

    def _record(self) -> None:
        names = [k.lower() for k in self.headers.keys()]
        if len(names) != len(set(names)):
            raise RuntimeError(f"repeated header in {names}")
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self.rfile.read(int(headers.get("content-length", "0")))
        target = self.path  # the request-target, not decoded
        path, _, query = target.partition("?")
        RECORDED.append({"method": self.command, "path": path, "query": query,
                         "headers": headers, "body": body})
        answer = json.dumps(_response_for(headers.get("x-acs-action", ""), path)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = _record

    def log_message(self, *args) -> None:  # keep the output quiet
        pass


def start_recorder() -> int:
    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


# --------------------------------------------------------------------------------------
# Routing. The Python SDK signs every header it sets, `host` included, so an endpoint of
# 127.0.0.1:<random port> would change the signatures on every run. Instead the client
# keeps the regional endpoint it derives itself (emr-serverless-spark.<region>.aliyuncs.com,
# plain http) and urllib3's connect step is redirected to the recorder: the bytes on the
# wire are the SDK's own, no name is ever resolved and nothing leaves the loopback.
# --------------------------------------------------------------------------------------
ALLOWED_HOSTS: set[str] = set()


def route_to(port: int) -> None:
    original = urllib3.util.connection.create_connection

    def connect(address, *args, **kwargs):
        host, _ = address
        if host not in ALLOWED_HOSTS:
            raise RuntimeError(f"refusing to connect to {host!r}")
        return original(("127.0.0.1", port), *args, **kwargs)

    urllib3.util.connection.create_connection = connect


# --------------------------------------------------------------------------------------
# Independent implementation of the documented algorithm (signature V3).
# --------------------------------------------------------------------------------------
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def pct(text: str) -> str:
    """RFC 3986: unreserved bytes kept, every other UTF-8 byte as %XX (upper-case hex)."""
    return "".join(chr(b) if b in UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def parse_wire_query(query: str) -> list[tuple[str, str]]:
    """Decode a query as the SDK sends it (form encoding: '+' is a space)."""
    if not query:
        return []
    pairs = []
    for item in query.split("&"):
        name, _, value = item.partition("=")
        pairs.append((unquote_plus(name), unquote_plus(value)))
    return pairs


def canonical_query(pairs: list[tuple[str, str]]) -> str:
    encoded = sorted((pct(n), pct(v)) for n, v in pairs)
    return "&".join(f"{n}={v}" for n, v in encoded)


def sign(method: str, path: str, cquery: str, headers: dict[str, str],
         signed: list[str], body: bytes, secret: str) -> dict:
    canonical_headers = "".join(f"{h}:{headers[h].strip()}\n" for h in signed)
    canonical_request = "\n".join([method, path, cquery, canonical_headers, ";".join(signed),
                                   hashlib.sha256(body).hexdigest()])
    hashed = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{hashed}"
    signature = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"),
                         hashlib.sha256).hexdigest()
    return {"canonicalRequest": canonical_request, "hashedCanonicalRequest": hashed,
            "signature": signature}


def authorization(key_id: str, signed: list[str], signature: str) -> str:
    return f"{ALGORITHM} Credential={key_id},SignedHeaders={';'.join(signed)},Signature={signature}"


def require(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(message)


AUTH_RE = re.compile(r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),"
                     r"Signature=([0-9a-f]{64})")


# --------------------------------------------------------------------------------------
# The cases.
# --------------------------------------------------------------------------------------
KEYS_A = ("LTAI5tFixtureKeyIdA0000001", "FixtureSecretA0000000000000001")
KEYS_B = ("LTAI5tFixtureKeyIdB0000002", "FixtureSecretB0000000000000002")
KEYS_STS = ("STS.NUFixtureTemporaryKeyId03", "FixtureStsSecret000000000000003")
STS_TOKEN = "CAIS1AJ1q6Ft5B2yfSjIr5fixtureSecurityToken+/=0123456789abcdefFIXTURE"
WS = "w-d2d82aa09151abcd"
JR = "jr-93d98d2f7061abcd"


JOB_RUNS = "/api/v1/workspaces/{workspaceId}/jobRuns"
JOB_RUN = JOB_RUNS + "/{jobRunId}"


def case(name, description, keys, region, call, date, path, path_params, token=None):
    """`path` is the operation's template, filled with pct() of `path_params` to check the wire."""
    return {"name": name, "description": description, "keys": keys, "token": token,
            "region": region, "call": call, "date": date, "pathTemplate": path,
            "pathParams": path_params}


def get_job_run(ws, jr, region):
    return lambda c: c.get_job_run(ws, jr, spark_models.GetJobRunRequest(region_id=region))


def start_job_run(c):
    request = spark_models.StartJobRunRequest(
        region_id="cn-hangzhou",
        name="spark-pi ü",
        code_type="JAR",
        release_version="esr-2.1 (Spark 3.3.1, Scala 2.12)",
        resource_queue_id="root_queue",
        client_token="7c3f1b2a-0d4e-4f6a-9b8c-1d2e3f4a5b6c",
        job_driver=spark_models.JobDriver(spark_submit=spark_models.JobDriverSparkSubmit(
            entry_point="oss://bucket/jars/spark-examples.jar",
            entry_point_arguments=["1000"],
            spark_submit_parameters="--class org.apache.spark.examples.SparkPi",
        )),
        tags=[spark_models.Tag(key="owner", value="operator")],
    )
    return c.start_job_run(WS, request)


def list_job_runs(c):
    request = spark_models.ListJobRunsRequest(
        region_id="cn-hangzhou", max_results=20, name="daily etl*~",
        next_token="AAE/x+y=", states=["Running", "Submitted"])
    return c.list_job_runs(WS, request)


def list_job_runs_batched(c):
    """What the operator sends to observe a group of runs (and what import sends); the token is one the simulator issues."""
    request = spark_models.ListJobRunsRequest(
        region_id="cn-hangzhou", max_results=100, next_token="sim-100",
        job_run_id=JR, states=["Submitted", "Pending", "Running", "Cancelling", "CancelFailed"],
        tags=[spark_models.ListJobRunsRequestTags(key="team", value="data ü")],
        start_time=spark_models.ListJobRunsRequestStartTime(start_time=1714550400000,
                                                            end_time=1714636800000))
    return c.list_job_runs(WS, request)


def cancel_job_run(c):
    return c.cancel_job_run(WS, JR, spark_models.CancelJobRunRequest(region_id="cn-hangzhou"))


CASES = [
    case("get-job-run-plain",
         "GetJobRun with a plain AccessKey pair.",
         KEYS_A, "cn-hangzhou", get_job_run(WS, JR, "cn-hangzhou"), "2024-05-01T08:00:00Z",
         JOB_RUN, {"workspaceId": WS, "jobRunId": JR}),
    case("get-job-run-sts",
         "GetJobRun with STS credentials: the SDK adds x-acs-accesskey-id and "
         "x-acs-security-token, and signs both.",
         KEYS_STS, "cn-hangzhou", get_job_run(WS, JR, "cn-hangzhou"), "2024-05-01T08:01:02Z",
         JOB_RUN, {"workspaceId": WS, "jobRunId": JR}, token=STS_TOKEN),
    case("get-job-run-encoded-ids",
         "GetJobRun with ids that need percent-encoding. Each path parameter is encoded as "
         "one segment (DaraURL.percent_encode): space -> %20, '/' -> %2F, '+' -> %2B, "
         "'*' -> %2A, '~' kept, UTF-8 bytes as upper-case %XX; that exact path is sent and signed.",
         KEYS_A, "cn-hangzhou", get_job_run("w-a b/c", "jr-ü+*~", "cn-hangzhou"),
         "2024-05-01T08:02:03Z", JOB_RUN, {"workspaceId": "w-a b/c", "jobRunId": "jr-ü+*~"}),
    case("get-job-run-other-region",
         "GetJobRun in ap-southeast-1 with another key pair; the host header follows the region.",
         KEYS_B, "ap-southeast-1", get_job_run(WS, JR, "ap-southeast-1"), "2024-12-31T23:59:59Z",
         JOB_RUN, {"workspaceId": WS, "jobRunId": JR}),
    case("get-job-run-no-query",
         "GetJobRun with regionId left unset (client.get_job_run -> call_api -> do_request, "
         "the same path as every operation): the SDK sends no query string at all and the "
         "canonical query line is empty. The real service would answer MissingParameter.regionId; "
         "this case only pins the signature of a query-less request.",
         KEYS_A, "cn-hangzhou", get_job_run(WS, JR, None), "2024-05-01T08:03:04Z",
         JOB_RUN, {"workspaceId": WS, "jobRunId": JR}),
    case("start-job-run-json-body",
         "StartJobRun (POST) with a JSON body. The SDK serialises the body compactly "
         "(separators ',' and ':', non-ASCII kept as raw UTF-8), sets content-type "
         "'application/json; charset=utf-8' and signs it; x-acs-content-sha256 and the "
         "hashed payload are the SHA-256 of those UTF-8 bytes.",
         KEYS_A, "cn-hangzhou", start_job_run, "2024-05-01T08:04:05Z",
         JOB_RUNS, {"workspaceId": WS}),
    case("list-job-runs-encoded-query",
         "ListJobRuns with query values that need encoding: states as a JSON array, a name "
         "with a space, '*' and '~', a base64-like nextToken. On the wire the SDK uses form "
         "encoding (urllib urlencode: space -> '+', '*' -> %2A, '~' kept) in the order it "
         "builds the parameters (alphabetical for this operation, not sorted on purpose); it "
         "signs the sorted RFC 3986 form (space -> %20) given in canonicalQuery. maxResults "
         "goes out as the decimal string.",
         KEYS_A, "cn-hangzhou", list_job_runs, "2024-05-01T08:05:06Z",
         JOB_RUNS, {"workspaceId": WS}),
    case("cancel-job-run",
         "CancelJobRun (DELETE) without a body: the HTTP layer adds 'content-length: 0'; "
         "the payload hash is that of the empty body.",
         KEYS_A, "cn-hangzhou", cancel_job_run, "2024-05-01T08:06:07Z",
         JOB_RUN, {"workspaceId": WS, "jobRunId": JR}),
    case("list-job-runs-json-filters",
         "ListJobRuns with every filter the operator sends: states, tags and startTime are "
         "JSON values (compact separators, non-ASCII kept as UTF-8, object keys in the "
         "model's to_map order: key, value and endTime, startTime), jobRunId, maxResults=100 "
         "and a nextToken.",
         KEYS_A, "cn-hangzhou", list_job_runs_batched, "2024-05-01T08:05:36Z",
         JOB_RUNS, {"workspaceId": WS}),
]

# From the signature V3 page of the official documentation (shared/docs, section Signing).
DOCUMENTATION_CASE = {
    "name": "documentation-run-instances",
    "description": "Known answer published in the official signature V3 documentation "
                   "(ECS RunInstances); request fields as given there.",
    "accessKeyId": "YourAccessKeyId",
    "accessKeySecret": "YourAccessKeySecret",
    "method": "POST",
    "path": "/",
    "query": "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai",
    "headers": {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
        "x-acs-version": "2014-05-26",
    },
    "hashedCanonicalRequest": "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259",
    "signature": "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0",
}


def run_sdk_case(spec: dict, ordinal: int, endpoint: str | None = None) -> dict:
    """Make the SDK call of `spec`, check it and return its fixture entry."""
    key_id, secret = spec["keys"]
    PINNED["date"] = spec["date"]
    PINNED["nonce"] = hashlib.md5(f"acs3-fixture-{ordinal}-{spec['name']}".encode()).hexdigest()
    config = openapi_models.Config(access_key_id=key_id, access_key_secret=secret,
                                   security_token=spec["token"], region_id=spec["region"],
                                   endpoint=endpoint, protocol="http")
    client = SparkClient(config)
    ALLOWED_HOSTS.clear()
    ALLOWED_HOSTS.add(client._endpoint.split(":", 1)[0])
    before = len(RECORDED)
    spec["call"](client)
    if len(RECORDED) != before + 1:
        raise RuntimeError(f"{spec['name']}: expected one request, got {len(RECORDED) - before}")
    wire = RECORDED[-1]
    headers = dict(sorted(wire["headers"].items()))

    # What the SDK claims.
    match = AUTH_RE.fullmatch(headers.pop("authorization"))
    if not match:
        raise RuntimeError(f"{spec['name']}: unexpected Authorization header")
    auth_key_id, signed_list, sdk_signature = match.groups()
    signed = signed_list.split(";")

    # Consistency with the documented rules, then the independent recomputation.
    require(auth_key_id == key_id, "Credential is not the AccessKey id")
    require(signed == sorted(signed), "SignedHeaders not sorted")
    require(all(h in headers for h in signed), "a signed header was not sent")
    require(headers["x-acs-content-sha256"] == hashlib.sha256(wire["body"]).hexdigest(),
            "x-acs-content-sha256 is not the SHA-256 of the body")
    require(headers["x-acs-date"] == PINNED["date"], "x-acs-date not pinned")
    require(headers["x-acs-signature-nonce"] == PINNED["nonce"], "nonce not pinned")
    expected_path = spec["pathTemplate"].format(**{k: pct(v) for k, v in spec["pathParams"].items()})
    require(wire["path"] == expected_path, f"path {wire['path']} != {expected_path}")

    cquery = canonical_query(parse_wire_query(wire["query"]))
    mine = sign(wire["method"], wire["path"], cquery, headers, signed, wire["body"], secret)
    if mine["signature"] != sdk_signature:
        raise RuntimeError(f"{spec['name']}: independent signature {mine['signature']} "
                           f"!= SDK signature {sdk_signature}")

    description = spec["description"]
    unsigned = [h for h in headers if h not in signed]
    description += (" Signed: every header the SDK sets itself, accept, user-agent and "
                    f"x-acs-credentials-provider ({headers.get('x-acs-credentials-provider')}) "
                    "included. Added by the HTTP layer, unsigned: "
                    f"{', '.join(unsigned) if unsigned else 'none'}.")
    out = {
        "name": spec["name"],
        "source": "python-sdk",
        "description": description,
        "accessKeyId": key_id,
        "accessKeySecret": secret,
        "securityToken": spec["token"],
        "pathParams": spec["pathParams"],
        "method": wire["method"],
        "path": wire["path"],
        "query": wire["query"],
    }
    if cquery != wire["query"]:
        out["canonicalQuery"] = cquery
    out.update({
        "headers": headers,
        "body": wire["body"].decode("utf-8"),
        "signedHeaders": signed,
        **mine,
        "authorization": authorization(key_id, signed, sdk_signature),
    })
    return out


def documentation_case() -> dict:
    doc = DOCUMENTATION_CASE
    signed = sorted(doc["headers"])
    cquery = canonical_query(parse_wire_query(doc["query"]))
    require(cquery == doc["query"], "documentation query is not canonical")
    mine = sign(doc["method"], doc["path"], cquery, doc["headers"], signed, b"",
                doc["accessKeySecret"])
    for field in ("hashedCanonicalRequest", "signature"):
        if mine[field] != doc[field]:
            raise RuntimeError(f"documentation {field}: computed {mine[field]}, given {doc[field]}")
    return {
        "name": doc["name"],
        "source": "documentation",
        "description": doc["description"],
        "accessKeyId": doc["accessKeyId"],
        "accessKeySecret": doc["accessKeySecret"],
        "securityToken": None,
        "method": doc["method"],
        "path": doc["path"],
        "query": doc["query"],
        "headers": doc["headers"],
        "body": "",
        "signedHeaders": signed,
        **mine,
        "authorization": authorization(doc["accessKeyId"], signed, doc["signature"]),
    }


def main() -> None:
    sdk = check_pins()
    port = start_recorder()
    route_to(port)
    # Self-check, not stored: the client pointed literally at 127.0.0.1:<port> signs by the
    # same rules (its host header carries the random port, so it cannot be a fixture).
    check = run_sdk_case(CASES[0], 0, endpoint=f"127.0.0.1:{port}")
    require(check["headers"]["host"] == f"127.0.0.1:{port}", "loopback endpoint not used")
    print(f"ok  {'loopback-endpoint (not kept)':<30} {check['signature']}")
    cases = [run_sdk_case(spec, i) for i, spec in enumerate(CASES, 1)]
    cases.append(documentation_case())
    fixture = {
        "generator": GENERATOR,
        "sdk": sdk,
        "notes": [
            "Requests were captured on the wire from the SDK; date, nonce and user-agent "
            "were pinned by replacing Utils.get_timestamp, Utils.get_nonce and the default "
            "user-agent of alibabacloud_tea_openapi.utils.",
            "The client kept its own regional endpoint (protocol http) and the TCP "
            "connection was redirected to a local recorder, so host is the real endpoint.",
            "Every signature was recomputed independently from the captured request and "
            "the SDK's SignedHeaders list before this file was written.",
        ],
        "cases": cases,
    }
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    for c in cases:
        print(f"ok  {c['name']:<30} {c['signature']}")
    print(f"wrote {FIXTURE.relative_to(REPO_ROOT)} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
