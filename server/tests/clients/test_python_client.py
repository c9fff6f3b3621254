"""A Python client generated from proto/ with grpcio-tools (the `stubs` fixture) calls
every RPC of the demo server, and each answer is compared with the Rust client's: the
`bedrock-attribution` CLI's `--format json` document for the same question, field for
field, money as the exact decimal strings (to the last of the ten places).

The Python side fetches every page at a small page size, the CLI at its default (1000),
so paging is compared too. A dimension the CLI leaves out of a row (not grouped by) must
be empty on the wire.
"""

import json
import subprocess
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from conftest import _clean_env

PAGE_SIZE = 50
TIMEOUT_S = 30


# --- The wire answer in the shape of the CLI's JSON documents -------------------------


def rfc3339(t):
    """As the CLI prints timestamps: UTC, a fraction only when there is one (3, 6 or 9
    digits)."""
    text = datetime.fromtimestamp(t.seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    n = t.nanos
    if n % 1_000_000_000 == 0:
        frac = ""
    elif n % 1_000_000 == 0:
        frac = f".{n // 1_000_000:03d}"
    elif n % 1000 == 0:
        frac = f".{n // 1000:06d}"
    else:
        frac = f".{n:09d}"
    return text + frac + "Z"


def money(m):
    """`exact` is the amount; `units` + `nanos` must be it rounded half-even to 1e-9."""
    exact = Decimal(m.exact)
    rounded = exact.quantize(Decimal("1e-9"), rounding=ROUND_HALF_EVEN)
    assert Decimal(m.units) + Decimal(m.nanos) / 10**9 == rounded, m
    assert m.units == 0 or m.nanos == 0 or (m.units > 0) == (m.nanos > 0), m
    return {"amount": m.exact, "currency_code": m.currency_code}


def tokens(t):
    return {"input": t.input, "output": t.output, "cache_read": t.cache_read,
            "cache_write": t.cache_write}


def label(name, prefix):
    return name[len(prefix):].lower().replace("_", "-")


def principal(pb2, p, grouping):
    if p.kind == pb2.PRINCIPAL_KIND_UNATTRIBUTED:
        shown = "UNATTRIBUTED"
    elif grouping == pb2.PRINCIPAL_GROUPING_ACCOUNT and p.account_id:
        shown = p.account_id
    else:
        shown = p.arn
    return {"label": shown, "arn": p.arn,
            "kind": label(pb2.PrincipalKind.Name(p.kind), "PRINCIPAL_KIND_"),
            "account_id": p.account_id, "name": p.name, "session_name": p.session_name,
            "partition": p.partition}


def tag(t):
    return {"key": t.key, "value": t.value, "untagged": t.untagged}


def row(pb2, r, grouping):
    """Every field of a Row; None where the message field is unset."""
    def opt(field, convert):
        return convert(getattr(r, field)) if r.HasField(field) else None

    return {
        "principal": opt("principal", lambda p: principal(pb2, p, grouping)),
        "tag": opt("tag", tag),
        "also_tag": opt("also_tag", tag),
        "model": r.model,
        "account_id": r.account_id,
        "region": r.region,
        "usage_category": label(pb2.UsageCategory.Name(r.usage_category), "USAGE_CATEGORY_"),
        "line_item_type": r.line_item_type,
        "period_start": opt("period_start", rfc3339),
        "direct_cost": opt("direct_cost", money),
        "allocated_cost": opt("allocated_cost", money),
        "cost": money(r.cost),
        "tokens": tokens(r.tokens),
        "cost_per_million_tokens": opt("cost_per_million_tokens", money),
        "line_items": r.line_items,
    }


EMPTY = (None, "", "unspecified")


def project_rows(wire_rows, cli_rows):
    """The wire rows with the keys of the CLI's rows; every other field must be empty."""
    projected = []
    for i, full in enumerate(wire_rows):
        keys = cli_rows[i].keys() if i < len(cli_rows) else full.keys()
        unknown = set(keys) - set(full)
        assert not unknown, f"row {i}: the CLI prints fields the wire does not have: {unknown}"
        extra = {k: v for k, v in full.items() if k not in keys and v not in EMPTY}
        assert not extra, f"row {i}: set on the wire but not grouped by: {extra}"
        projected.append({k: full[k] for k in keys})
    return projected


def pages(method, request):
    """Every page of a paged RPC, at PAGE_SIZE."""
    request.page_size = PAGE_SIZE
    answers = []
    while True:
        answer = method(request, timeout=TIMEOUT_S)
        answers.append(answer)
        if not answer.next_page_token:
            return answers
        assert len(answers) < 1000, "paging does not end"
        request.page_token = answer.next_page_token


def same_on_every_page(answers, field):
    values = [getattr(a, field) for a in answers]
    assert all(v == values[0] for v in values), f"{field} differs between pages"
    return values[0]


def rows_document(pb2, answers, grouping, cli_doc):
    wire = [row(pb2, r, grouping) for a in answers for r in a.rows]
    info = same_on_every_page(answers, "info")
    return {
        "rows": project_rows(wire, cli_doc.get("rows", [])),
        "totals": [money(m) for m in same_on_every_page(answers, "totals")],
        "total_tokens": tokens(same_on_every_page(answers, "total_tokens")),
        "snapshot_version": info.snapshot_version,
        "notes": list(info.notes),
    }


def problem(p):
    return {"at": rfc3339(p.at) if p.HasField("at") else "", "source": p.source,
            "billing_period": p.billing_period, "file": p.file, "message": p.message}


# --- The questions: one request, the same CLI command --------------------------------


def time_range(pb2, start, end):
    begin, finish = Timestamp(), Timestamp()
    begin.FromJsonString(start)
    finish.FromJsonString(end)
    return pb2.TimeRange(start=begin, end=finish)


JULY = ("2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z")
CLI_JULY = ["--from", "2026-07-01", "--to", "2026-08-01"]


def cost_by_principal_role(pb2, stub, cli_doc):
    request = pb2.CostByPrincipalRequest(time_range=time_range(pb2, *JULY),
                                         grouping=pb2.PRINCIPAL_GROUPING_ROLE)
    return rows_document(pb2, pages(stub.CostByPrincipal, request),
                         pb2.PRINCIPAL_GROUPING_ROLE, cli_doc)


def cost_by_principal_allocated(pb2, stub, cli_doc):
    request = pb2.CostByPrincipalRequest(
        time_range=time_range(pb2, "2026-06-01T00:00:00Z", "2026-09-01T00:00:00Z"),
        grouping=pb2.PRINCIPAL_GROUPING_ACCOUNT,
        also_group_by=[pb2.DIMENSION_MODEL],
        granularity=pb2.GRANULARITY_MONTHLY,
        allocation=pb2.ALLOCATION_PROPORTIONAL)
    return rows_document(pb2, pages(stub.CostByPrincipal, request),
                         pb2.PRINCIPAL_GROUPING_ACCOUNT, cli_doc)


def cost_by_principal_filtered(pb2, stub, cli_doc):
    request = pb2.CostByPrincipalRequest(
        time_range=time_range(pb2, "2026-07-15T00:00:00Z", "2026-07-16T00:00:00Z"),
        grouping=pb2.PRINCIPAL_GROUPING_ARN,
        granularity=pb2.GRANULARITY_HOURLY,
        cost_metric=pb2.COST_METRIC_PUBLIC_ON_DEMAND,
        filter=pb2.Filter(tags=[pb2.TagFilter(key="iamPrincipal/team", values=["search"])]))
    return rows_document(pb2, pages(stub.CostByPrincipal, request),
                         pb2.PRINCIPAL_GROUPING_ARN, cli_doc)


def cost_by_tag_daily(pb2, stub, cli_doc):
    request = pb2.CostByTagRequest(time_range=time_range(pb2, *JULY),
                                   tag_key="iamPrincipal/team",
                                   granularity=pb2.GRANULARITY_DAILY)
    return rows_document(pb2, pages(stub.CostByTag, request),
                         pb2.PRINCIPAL_GROUPING_ARN, cli_doc)


def cost_by_tag_two_keys(pb2, stub, cli_doc):
    request = pb2.CostByTagRequest(time_range=time_range(pb2, *JULY),
                                   tag_key="iamPrincipal/team",
                                   also_group_by=[pb2.DIMENSION_TAG],
                                   also_group_by_tag_key="iamPrincipal/cost-center",
                                   cost_metric=pb2.COST_METRIC_NET_UNBLENDED)
    return rows_document(pb2, pages(stub.CostByTag, request),
                         pb2.PRINCIPAL_GROUPING_ARN, cli_doc)


def token_usage_by_model(pb2, stub, cli_doc):
    request = pb2.TokenUsageRequest(
        time_range=time_range(pb2, "2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z"),
        group_by=[pb2.DIMENSION_MODEL, pb2.DIMENSION_USAGE_CATEGORY,
                  pb2.DIMENSION_LINE_ITEM_TYPE])
    return rows_document(pb2, pages(stub.TokenUsage, request),
                         pb2.PRINCIPAL_GROUPING_ARN, cli_doc)


def token_usage_by_role_and_region(pb2, stub, cli_doc):
    request = pb2.TokenUsageRequest(
        time_range=time_range(pb2, "2026-04-01T00:00:00Z", "2026-06-01T00:00:00Z"),
        group_by=[pb2.DIMENSION_PRINCIPAL, pb2.DIMENSION_REGION, pb2.DIMENSION_ACCOUNT],
        principal_grouping=pb2.PRINCIPAL_GROUPING_ROLE,
        granularity=pb2.GRANULARITY_MONTHLY,
        filter=pb2.Filter(usage_categories=[pb2.USAGE_CATEGORY_ON_DEMAND]))
    return rows_document(pb2, pages(stub.TokenUsage, request),
                         pb2.PRINCIPAL_GROUPING_ROLE, cli_doc)


def list_principals(pb2, stub, cli_doc):
    answers = pages(stub.ListPrincipals,
                    pb2.ListPrincipalsRequest(time_range=time_range(pb2, *JULY)))
    info = same_on_every_page(answers, "info")
    return {
        "principals": [
            {"principal": principal(pb2, s.principal, pb2.PRINCIPAL_GROUPING_ARN),
             "cost": [money(m) for m in s.cost], "tokens": tokens(s.tokens),
             "line_items": s.line_items}
            for a in answers for s in a.principals],
        "snapshot_version": info.snapshot_version,
        "notes": list(info.notes),
    }


def list_tag_keys(pb2, stub, cli_doc):
    answers = pages(stub.ListTagKeys, pb2.ListTagKeysRequest(
        time_range=time_range(pb2, "2026-03-01T00:00:00Z", "2026-11-01T00:00:00Z")))
    info = same_on_every_page(answers, "info")
    return {
        "tag_keys": [{"key": k.key, "cost": [money(m) for m in k.cost],
                      "distinct_values": k.distinct_values, "line_items": k.line_items}
                     for a in answers for k in a.tag_keys],
        "total_line_items": same_on_every_page(answers, "total_line_items"),
        "snapshot_version": info.snapshot_version,
        "notes": list(info.notes),
    }


def list_models(pb2, stub, cli_doc):
    answers = pages(stub.ListModels, pb2.ListModelsRequest(
        time_range=time_range(pb2, *JULY),
        filter=pb2.Filter(account_ids=["345678901234"])))
    info = same_on_every_page(answers, "info")
    return {
        "models": [{"model": m.model, "cost": [money(c) for c in m.cost],
                    "tokens": tokens(m.tokens), "line_items": m.line_items}
                   for a in answers for m in a.models],
        "snapshot_version": info.snapshot_version,
        "notes": list(info.notes),
    }


def spend_anomalies(pb2, stub, cli_doc):
    """Tag values of September, baseline of a week, lower thresholds: the CLI's
    `spend-anomalies` document from the wire, doubles as proto3 JSON writes them."""
    request = pb2.SpendAnomaliesRequest(
        time_range=time_range(pb2, "2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z"),
        dimension=pb2.DIMENSION_TAG, tag_key="iamPrincipal/team", baseline_days=7,
        min_factor="2", min_robust_z=2.5, min_excess="0.5",
        filter=pb2.Filter(line_item_types=["Usage"]))
    answers = pages(stub.SpendAnomalies, request)
    info = same_on_every_page(answers, "info")

    def double(a, field):
        if not a.HasField(field):
            return None
        v = getattr(a, field)
        return "Infinity" if v == float("inf") else v

    return {
        "anomalies": [
            {"group": "UNTAGGED" if a.tag.untagged else a.tag.value,
             "principal": None, "tag": tag(a.tag), "model": a.model,
             "day": rfc3339(a.day),
             "kind": label(pb2.AnomalyKind.Name(a.kind), "ANOMALY_KIND_"),
             "observed": money(a.observed), "baseline": money(a.baseline),
             "median_absolute_deviation": money(a.median_absolute_deviation),
             "excess": money(a.excess), "robust_z": double(a, "robust_z"),
             "factor": double(a, "factor"),
             "baseline_days_counted": a.baseline_days_counted, "line_items": a.line_items}
            for page in answers for a in page.anomalies],
        "snapshot_version": info.snapshot_version,
        "notes": list(info.notes),
    }


def data_status(pb2, stub, cli_doc):
    s = stub.DataStatus(pb2.DataStatusRequest(), timeout=TIMEOUT_S)
    return {
        "snapshot_version": s.snapshot_version,
        "last_refresh": rfc3339(s.last_refresh) if s.HasField("last_refresh") else "",
        "total_line_items": s.total_line_items,
        "sources": list(s.sources),
        "periods": [{"source": p.source, "billing_period": p.billing_period,
                     "file_list": p.file_list, "files": p.files, "rows_read": p.rows_read,
                     "bedrock_line_items": p.bedrock_line_items, "bytes": p.bytes,
                     "last_modified": rfc3339(p.last_modified)
                     if p.HasField("last_modified") else "",
                     "missing_columns": list(p.missing_columns), "execution": p.execution}
                    for p in s.periods],
        "schema_notes": list(s.schema_notes),
        "problems": [problem(p) for p in s.problems],
    }


def refresh(pb2, stub, cli_doc):
    r = stub.Refresh(pb2.RefreshRequest(), timeout=TIMEOUT_S)
    # Two refreshes take their own time; everything else must agree.
    cli_doc.pop("duration_ms")
    return {"snapshot_version": r.snapshot_version, "periods": r.periods,
            "line_items": r.line_items, "problems": [problem(p) for p in r.problems]}


def budget(pb2, b):
    """A Budget as the CLI's JSON shows it."""
    s = b.scope
    return {
        "id": b.id, "name": b.name,
        "scope": {"tag": {"key": s.tag.key, "value": s.tag.value} if s.HasField("tag") else None,
                  "principal_arn": s.principal_arn, "role_arn": s.role_arn,
                  "account_id": s.account_id, "model": s.model},
        "monthly_amount": money(b.monthly_amount),
        "thresholds": list(b.thresholds),
        "owner": b.owner,
        "origin": label(pb2.BudgetOrigin.Name(b.origin), "BUDGET_ORIGIN_"),
        "created_at": rfc3339(b.created_at) if b.HasField("created_at") else "",
    }


def new_budget(pb2, stub, name):
    """A budget of the search team in account 345678901234, created for one case."""
    request = pb2.CreateBudgetRequest(
        name=name,
        scope=pb2.BudgetScope(tag=pb2.BudgetTag(key="iamPrincipal/team", value="search"),
                              account_id="345678901234"),
        monthly_amount=pb2.Money(currency_code="USD", exact="1500"),
        thresholds=["0.5", "1"])
    return stub.CreateBudget(request, timeout=TIMEOUT_S).budget


def delete(pb2, stub, budget_id):
    stub.DeleteBudget(pb2.DeleteBudgetRequest(id=budget_id), timeout=TIMEOUT_S)


def create_budget(pb2, stub, cli_doc):
    request = pb2.CreateBudgetRequest(
        name="cli case",
        scope=pb2.BudgetScope(account_id="345678901234", model="Claude Sonnet 4.6"),
        monthly_amount=pb2.Money(currency_code="USD", exact="2500"),
        thresholds=["0.9"])
    doc = budget(pb2, stub.CreateBudget(request, timeout=TIMEOUT_S).budget)
    delete(pb2, stub, doc["id"])
    # Each created its own: the server's id and time differ, everything else must not.
    created = cli_doc["budget"]
    delete(pb2, stub, created["id"])
    assert doc["id"].startswith("b-") and created["id"].startswith("b-"), (doc, created)
    assert doc["id"] != created["id"] and doc["created_at"] and created["created_at"]
    doc["id"], doc["created_at"] = created["id"], created["created_at"]
    return {"budget": doc}


def list_budgets(pb2, stub, cli_doc):
    answer = stub.ListBudgets(pb2.ListBudgetsRequest(), timeout=TIMEOUT_S)
    doc = {"budgets": [budget(pb2, b) for b in answer.budgets]}
    for b in answer.budgets:
        if b.name == "list case":
            delete(pb2, stub, b.id)
    return doc


def delete_budget(pb2, stub, cli_doc):
    mine = new_budget(pb2, stub, "delete case (python)")
    assert stub.DeleteBudget(pb2.DeleteBudgetRequest(id=mine.id), timeout=TIMEOUT_S) \
        == pb2.DeleteBudgetResponse()
    left = {b.id for b in stub.ListBudgets(pb2.ListBudgetsRequest(), timeout=TIMEOUT_S).budgets}
    assert mine.id not in left and cli_doc["deleted"] not in left, left
    with pytest.raises(grpc.RpcError) as error:
        delete(pb2, stub, cli_doc["deleted"])
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    return {"deleted": cli_doc["deleted"]}


def budget_status(pb2, stub, cli_doc):
    as_of = Timestamp()
    as_of.FromJsonString("2026-07-20T00:00:00Z")
    ids = [r["budget"]["id"] for r in cli_doc["budgets"]]
    a = stub.BudgetStatus(pb2.BudgetStatusRequest(as_of=as_of, budget_ids=ids),
                          timeout=TIMEOUT_S)
    for i in ids:
        delete(pb2, stub, i)
    return {"month": a.month, "as_of": rfc3339(a.as_of),
            "newest_usage_hour": rfc3339(a.newest_usage_hour),
            "snapshot_version": a.info.snapshot_version,
            "budgets": [report(pb2, r) for r in a.budgets]}


def report(pb2, r):
    """A BudgetReport as the CLI's JSON shows it."""
    f = r.forecast_inputs
    return {
        "budget": budget(pb2, r.budget),
        "status": label(pb2.BudgetState.Name(r.status), "BUDGET_STATE_"),
        "spend_to_date": money(r.spend_to_date), "forecast": money(r.forecast),
        "thresholds_crossed": list(r.thresholds_crossed),
        "thresholds_forecast": list(r.thresholds_forecast),
        "daily_average": money(f.daily_average), "days_averaged": f.days_averaged,
        "averaged_from": rfc3339(f.averaged_from) if f.HasField("averaged_from") else "",
        "averaged_to": rfc3339(f.averaged_to) if f.HasField("averaged_to") else "",
        "remaining_hours": f.remaining_hours, "remaining_days": f.remaining_days,
        "notes": list(r.notes),
    }


def watch_budgets(pb2, stub, cli_doc):
    """The first event of a watch with the initial statuses: the CLI's JSON line."""
    budget_id = cli_doc["budget_id"]
    stream = stub.WatchBudgets(pb2.WatchBudgetsRequest(budget_ids=[budget_id],
                                                       send_initial=True))
    try:
        e = next(stream)
    finally:
        stream.cancel()
    delete(pb2, stub, budget_id)
    # The two calls computed their events at their own times; nothing else may differ.
    assert e.HasField("at") and cli_doc["at"], (e, cli_doc)
    return {
        "budget_id": e.budget_id, "budget_name": e.budget_name,
        "reason": label(pb2.BudgetEventReason.Name(e.reason), "BUDGET_EVENT_REASON_"),
        "previous_status": label(pb2.BudgetState.Name(e.previous_status), "BUDGET_STATE_"),
        "status": label(pb2.BudgetState.Name(e.status), "BUDGET_STATE_"),
        "previous_thresholds_crossed": list(e.previous_thresholds_crossed),
        "report": report(pb2, e.report) if e.HasField("report") else None,
        "month": e.month, "as_of": rfc3339(e.as_of), "snapshot_version": e.snapshot_version,
        "at": cli_doc["at"],
    }


def list_budgets_args(pb2, stub):
    new_budget(pb2, stub, "list case")
    return ["list-budgets"]


def delete_budget_args(pb2, stub):
    return ["delete-budget", new_budget(pb2, stub, "delete case").id]


def watch_budgets_args(pb2, stub):
    return ["watch-budgets", "--initial", "--count", "1",
            "--budget", new_budget(pb2, stub, "watch case").id]


def budget_status_args(pb2, stub):
    return ["budget-status", "--as-of", "2026-07-20",
            "--budget", new_budget(pb2, stub, "status case").id]


CASES = [
    (cost_by_principal_role, ["cost-by-principal", *CLI_JULY, "--by", "role"]),
    (cost_by_principal_allocated,
     ["cost-by-principal", "--from", "2026-06-01", "--to", "2026-09-01", "--by", "account",
      "--also", "model", "--granularity", "monthly", "--allocation", "proportional"]),
    (cost_by_principal_filtered,
     ["cost-by-principal", "--from", "2026-07-15", "--to", "2026-07-16", "--granularity",
      "hourly", "--metric", "public-on-demand", "--tag", "iamPrincipal/team=search"]),
    (cost_by_tag_daily,
     ["cost-by-tag", "--tag-key", "iamPrincipal/team", *CLI_JULY, "--granularity", "daily"]),
    (cost_by_tag_two_keys,
     ["cost-by-tag", "--tag-key", "iamPrincipal/team", *CLI_JULY, "--also", "tag",
      "--also-tag-key", "iamPrincipal/cost-center", "--metric", "net-unblended"]),
    (token_usage_by_model,
     ["token-usage", "--from", "2026-09-01", "--to", "2026-10-01",
      "--group-by", "model,usage-category,line-item-type"]),
    (token_usage_by_role_and_region,
     ["token-usage", "--from", "2026-04-01", "--to", "2026-06-01", "--group-by",
      "principal,region,account", "--by", "role", "--granularity", "monthly",
      "--usage-category", "on-demand"]),
    (list_principals, ["list-principals", *CLI_JULY]),
    (list_tag_keys, ["list-tag-keys", "--from", "2026-03-01", "--to", "2026-11-01"]),
    (list_models, ["list-models", *CLI_JULY, "--account", "345678901234"]),
    (spend_anomalies,
     ["spend-anomalies", "--from", "2026-09-01", "--to", "2026-10-01", "--group-by", "tag",
      "--tag-key", "iamPrincipal/team", "--baseline-days", "7", "--min-factor", "2",
      "--min-z", "2.5", "--min-excess", "0.5", "--line-item-type", "Usage"]),
    (data_status, ["status"]),
    (create_budget, ["create-budget", "--name", "cli case", "--account", "345678901234",
                     "--model", "Claude Sonnet 4.6", "--amount", "2500", "--threshold", "0.9"]),
    (list_budgets, list_budgets_args),
    (delete_budget, delete_budget_args),
    (budget_status, budget_status_args),
    (watch_budgets, watch_budgets_args),
    (refresh, ["refresh"]),
]


@pytest.fixture(scope="module")
def client(stubs, server):
    pb2, pb2_grpc = stubs
    with grpc.insecure_channel(server.addr) as channel:
        yield pb2, pb2_grpc.AttributionServiceStub(channel)


def cli_json(cli_bin, server, args):
    command = [str(cli_bin), "--server", server.url, "--format", "json", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env=_clean_env())
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr}"
    return json.loads(result.stdout)


def test_every_rpc_has_a_case(stubs):
    pb2, _ = stubs
    rpcs = {m.name for m in pb2.DESCRIPTOR.services_by_name["AttributionService"].methods}
    asked = {"".join(w.capitalize() for w in case.__name__.split("_")) for case, _ in CASES}
    covered = {rpc for rpc in rpcs if any(a.startswith(rpc) for a in asked)}
    assert covered == rpcs, rpcs - covered


@pytest.mark.parametrize("case, args", CASES, ids=[case.__name__ for case, _ in CASES])
def test_same_answer_as_the_rust_client(client, cli_bin, server, case, args):
    pb2, stub = client
    if callable(args):
        # Budget cases make what the command acts on first.
        args = args(pb2, stub)
    cli_doc = cli_json(cli_bin, server, args)
    wire_doc = case(pb2, stub, cli_doc)
    assert wire_doc == cli_doc
    # Each question has an answer: an empty one would compare equal and test nothing.
    listed = [v for v in wire_doc.values() if isinstance(v, list) and v]
    assert (listed or wire_doc.get("periods") or "line_items" in wire_doc
            or wire_doc.get("budget") or wire_doc.get("deleted")
            or wire_doc.get("report")), wire_doc


def test_same_error_as_the_rust_client(client, cli_bin, server):
    pb2, stub = client
    request = pb2.CostByPrincipalRequest(
        time_range=time_range(pb2, "2026-08-01T00:00:00Z", "2026-07-01T00:00:00Z"))
    with pytest.raises(grpc.RpcError) as error:
        stub.CostByPrincipal(request, timeout=TIMEOUT_S)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not after start" in error.value.details()
    result = subprocess.run(
        [str(cli_bin), "--server", server.url, "cost-by-principal",
         "--from", "2026-08-01", "--to", "2026-07-01"],
        capture_output=True, text=True, timeout=60, env=_clean_env())
    assert result.returncode == 2, result
    assert result.stderr.strip() == f"error: INVALID_ARGUMENT: {error.value.details()}"
