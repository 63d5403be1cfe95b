"""A stand-in for the Azure CLI, just enough for infra/azure/setup-graph-app.sh.

State lives in the JSON file named by FAKE_AZ_STATE; every call is appended to FAKE_AZ_LOG (one JSON
array of arguments per line). Only the argument shapes the script uses are understood; anything else
fails loudly, so that a changed script shows up as a failing test rather than a silent pass.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_SP_ID = "99999999-0000-0000-0000-000000000001"
ROLES = {
    "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
    "Group.Read.All": "5b567255-7703-4780-807c-7be8301ae99b",
    "GroupMember.Read.All": "98830695-27a2-44f7-8c18-0c3ebc9698f6",
    "User.ReadWrite.All": "741f803b-c850-494e-b5df-cde7c675a1ca",
}
TENANT = "12345678-1234-1234-1234-123456789abc"


def opt(args: list[str], name: str) -> str | None:
    if name in args:
        return args[args.index(name) + 1]
    return None


def out(lines: list[str]) -> None:
    if opt(sys.argv[1:], "-o") == "none":
        return
    for line in lines:
        print(line)


def fail(msg: str) -> None:
    print(f"fake az: {msg}: {sys.argv[1:]}", file=sys.stderr)
    sys.exit(3)


def main() -> None:
    args = sys.argv[1:]
    state_path = os.environ["FAKE_AZ_STATE"]
    state = {"apps": {}, "sps": {}, "assignments": {}, "perms": {}, "vault": {}}
    if os.path.exists(state_path):
        with open(state_path) as fh:
            state = json.load(fh)
    with open(os.environ["FAKE_AZ_LOG"], "a") as log:
        log.write(json.dumps(args) + "\n")
    query = opt(args, "--query")

    if args[:2] == ["account", "show"] and query == "tenantId":
        out([TENANT])
    elif args[:3] == ["ad", "sp", "show"] and opt(args, "--id") == GRAPH_APP_ID:
        if query == "id":
            out([GRAPH_SP_ID])
        else:
            m = re.fullmatch(r"appRoles\[\?value=='([\w.]+)' && contains\(allowedMemberTypes, 'Application'\)\]\.id", query or "")
            if not m:
                fail("unexpected query")
            out([ROLES[m.group(1)]] if m.group(1) in ROLES else [])
    elif args[:3] == ["ad", "app", "list"] and query == "[].appId":
        name = opt(args, "--display-name")
        out([app_id for app_id, n in state["apps"].items() if n == name])
    elif args[:3] == ["ad", "app", "create"] and query == "appId":
        app_id = str(uuid.uuid4())
        state["apps"][app_id] = opt(args, "--display-name")
        out([app_id])
    elif args[:3] == ["ad", "sp", "list"] and query == "[].id":
        m = re.fullmatch(r"appId eq '([0-9a-f-]+)'", opt(args, "--filter") or "")
        if not m:
            fail("unexpected filter")
        out([sp for sp, app in state["sps"].items() if app == m.group(1)])
    elif args[:3] == ["ad", "sp", "create"] and query == "id":
        app_id = opt(args, "--id")
        if app_id not in state["apps"]:
            fail("no such app")
        sp = str(uuid.uuid4())
        state["sps"][sp] = app_id
        out([sp])
    elif args[:4] == ["ad", "app", "permission", "list"]:
        if query != f"[?resourceAppId=='{GRAPH_APP_ID}'].resourceAccess[].id":
            fail("unexpected query")
        out(state["perms"].get(opt(args, "--id"), []))
    elif args[:4] == ["ad", "app", "permission", "add"]:
        if opt(args, "--api") != GRAPH_APP_ID:
            fail("unexpected api")
        i = args.index("--api-permissions") + 1
        perms = state["perms"].setdefault(opt(args, "--id"), [])
        while i < len(args) and not args[i].startswith("-"):
            role_id, kind = args[i].split("=")
            if kind != "Role":
                fail("not an application permission")
            perms.append(role_id)
            i += 1
    elif args[0] == "rest":
        url = opt(args, "--url") or ""
        m = re.fullmatch(r"https://graph\.microsoft\.com/v1\.0/servicePrincipals/([0-9a-f-]+)/appRoleAssignments", url)
        if not m:
            fail("unexpected url")
        sp = m.group(1)
        assigned = state["assignments"].setdefault(sp, [])
        if opt(args, "--method") == "GET":
            if query != f"value[?resourceId=='{GRAPH_SP_ID}'].appRoleId":
                fail("unexpected query")
            out(assigned)
        elif opt(args, "--method") == "POST":
            body = json.loads(opt(args, "--body") or "")
            if body["principalId"] != sp or body["resourceId"] != GRAPH_SP_ID:
                fail("bad body")
            assigned.append(body["appRoleId"])
        else:
            fail("unexpected method")
    elif args[:4] == ["ad", "app", "credential", "reset"] and query == "password":
        out(["s3cr3t-value"])
    elif args[:3] == ["keyvault", "secret", "set"]:
        with open(opt(args, "--file") or "") as fh:
            state["vault"][f"{opt(args, '--vault-name')}/{opt(args, '--name')}"] = fh.read()
    else:
        fail("unexpected command")
    with open(state_path, "w") as fh:
        json.dump(state, fh)


main()
