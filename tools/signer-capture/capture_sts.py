#!/usr/bin/env python3
"""Capture STS known answers from the official Python SDK `alibabacloud-sts20150401`.

AssumeRole (ACS3-HMAC-SHA256, RPC style: POST / with the parameters in the query) with a plain
AccessKey and with STS credentials as the caller, and AssumeRoleWithOIDC (anonymous). Same
recorder, routing and pinning as capture.py (imported from it); writes
tests/fixtures/sts-known-answers.json. See README.md next to this file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import capture  # noqa: E402  (pins date, nonce and user-agent; provides the recorder)
from capture import (  # noqa: E402
    ALLOWED_HOSTS, AUTH_RE, PINNED, RECORDED, authorization, canonical_query, parse_wire_query,
    require, route_to, sign, start_recorder,
)
from alibabacloud_sts20150401 import models as sts_models  # noqa: E402
from alibabacloud_sts20150401.client import Client as StsClient  # noqa: E402
from alibabacloud_tea_openapi import utils_models as openapi_models  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "sts-known-answers.json"
REQUIREMENTS = Path(__file__).resolve().with_name("requirements-sts.txt")
GENERATOR = "tools/signer-capture/capture_sts.py"
HOST = "sts.cn-hangzhou.aliyuncs.com"

ROLE = "acs:ram::222222222222:role/emr-reader"
SESSION = "sparkjobrun.team-a"
OIDC_PROVIDER = "acs:ram::111111111111:oidc-provider/ack-rrsa-c0123456789"
OIDC_TOKEN = "eyJhbGciOiJSUzI1NiJ9.fixture-payload+/=.fixture-signature"


def check_pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[capture._norm(name)] = version
    for name, version in pins.items():
        installed = importlib.metadata.version(name)
        if installed != version:
            sys.exit(f"{name}: installed {installed}, pinned {version}; "
                     f"install {REQUIREMENTS.name} into a fresh venv")
    keep = [n for n in pins if n.startswith(("alibabacloud-", "darabonba-"))]
    keep += ["requests", "urllib3"]
    return {n: pins[n] for n in sorted(keep)}


def client(keys, token=None) -> StsClient:
    config = openapi_models.Config(access_key_id=keys[0] if keys else None,
                                   access_key_secret=keys[1] if keys else None,
                                   security_token=token, endpoint=HOST, protocol="http")
    c = StsClient(config)
    ALLOWED_HOSTS.clear()
    ALLOWED_HOSTS.add(HOST)
    return c


def call(name: str, ordinal: int, date: str, fn) -> dict:
    PINNED["date"] = date
    PINNED["nonce"] = hashlib.md5(f"sts-fixture-{ordinal}-{name}".encode()).hexdigest()
    before = len(RECORDED)
    fn()
    require(len(RECORDED) == before + 1, f"{name}: expected one request")
    return RECORDED[-1]


def assume_role_case(name: str, ordinal: int, keys, token, date: str, description: str) -> dict:
    c = client(keys, token)
    request = sts_models.AssumeRoleRequest(role_arn=ROLE, role_session_name=SESSION,
                                           duration_seconds=3600)
    wire = call(name, ordinal, date, lambda: c.assume_role(request))
    headers = dict(sorted(wire["headers"].items()))
    match = AUTH_RE.fullmatch(headers.pop("authorization"))
    require(match is not None, f"{name}: unexpected Authorization header")
    key_id, signed_list, sdk_signature = match.groups()
    signed = signed_list.split(";")
    require(key_id == keys[0], "Credential is not the AccessKey id")
    require(wire["method"] == "POST" and wire["path"] == "/", "not POST /")
    require(wire["body"] == b"", "AssumeRole should have an empty body")
    cquery = canonical_query(parse_wire_query(wire["query"]))
    mine = sign(wire["method"], wire["path"], cquery, headers, signed, wire["body"], keys[1])
    require(mine["signature"] == sdk_signature,
            f"{name}: independent signature {mine['signature']} != SDK {sdk_signature}")
    out = {
        "name": name, "source": "python-sdk", "description": description,
        "action": "AssumeRole", "accessKeyId": keys[0], "accessKeySecret": keys[1],
        "securityToken": token, "roleArn": ROLE, "roleSessionName": SESSION,
        "durationSeconds": 3600, "method": wire["method"], "path": wire["path"],
        "query": wire["query"], "canonicalQuery": cquery, "headers": headers,
        "body": "", "signedHeaders": signed, **mine,
        "authorization": authorization(key_id, signed, sdk_signature),
    }
    return out


def oidc_case(ordinal: int) -> dict:
    name = "assume-role-with-oidc"
    c = client(None)
    request = sts_models.AssumeRoleWithOIDCRequest(
        role_arn=ROLE, oidcprovider_arn=OIDC_PROVIDER, oidctoken=OIDC_TOKEN,
        role_session_name="sparkjobrun-operator", duration_seconds=3600)
    wire = call(name, ordinal, "2024-05-01T09:02:03Z", lambda: c.assume_role_with_oidc(request))
    headers = dict(sorted(wire["headers"].items()))
    require("authorization" not in headers, "AssumeRoleWithOIDC must be anonymous")
    params = dict(parse_wire_query(wire["query"]))
    if wire["body"]:
        params.update(parse_wire_query(wire["body"].decode("utf-8")))
    return {
        "name": name, "source": "python-sdk",
        "description": "AssumeRoleWithOIDC through the STS SDK: anonymous (no Authorization), "
                       "RPC protocol parameters (Action, Format, Version, Timestamp, "
                       "SignatureNonce) and the request parameters together in the query of a "
                       "POST to /. The credential libraries send the request parameters as a "
                       "form body instead (the Go one) or a GET query (the Python one); the "
                       "operator follows the Go library so the token stays out of URLs.",
        "action": "AssumeRoleWithOIDC", "method": wire["method"], "path": wire["path"],
        "query": wire["query"], "headers": headers, "body": wire["body"].decode("utf-8"),
        "params": dict(sorted(params.items())),
    }


def main() -> None:
    sdk = check_pins()
    port = start_recorder()
    route_to(port)
    cases = [
        assume_role_case("assume-role-plain", 1, capture.KEYS_A, None, "2024-05-01T09:00:00Z",
                         "AssumeRole signed with a plain AccessKey (signature V3, RPC style)."),
        assume_role_case("assume-role-sts-caller", 2, capture.KEYS_STS, capture.STS_TOKEN,
                         "2024-05-01T09:01:02Z",
                         "AssumeRole signed with STS credentials (role chaining): "
                         "x-acs-accesskey-id and x-acs-security-token are added and signed."),
        oidc_case(3),
    ]
    fixture = {
        "generator": GENERATOR,
        "sdk": sdk,
        "notes": [
            "Captured on the wire from alibabacloud_sts20150401 with date, nonce and "
            "user-agent pinned as capture.py does; the connection to the regional STS host "
            "(protocol http) was redirected to a local recorder.",
            "The SDK signs every header it sets (accept, user-agent and "
            "x-acs-credentials-provider too); each signature was recomputed independently "
            "from the captured request and the SDK's SignedHeaders list.",
        ],
        "cases": cases,
    }
    FIXTURE.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    for c in cases:
        print(f"ok  {c['name']:<26} {c.get('signature', '(anonymous)')}")
    print(f"wrote {FIXTURE.relative_to(REPO_ROOT)} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
