#!/usr/bin/env python3
"""DuckDB timing of the scale benchmark's questions, each answered from the RAW parquet files.

Every query is ONE SQL statement over `read_parquet([...files...], union_by_name = true)` that
applies the data contract (/work/shared/cur2-bedrock.md) itself: Bedrock row selection, caller
NULL/empty -> UNATTRIBUTED (a NULL group), role = ARN with the session collapsed, model name rule,
token kind and count rule (capacity rows count no tokens), cost as DECIMAL(38,10) parsed from the
double's shortest text, the half-open time range on line_item_usage_start_date, and tag values
read from `tags` (NULL = UNTAGGED). Nothing is loaded or prepared ahead: no table, no view, so
each execution pays for reading the files, as the service does for a question it never saw.

Input (stdin, JSON):
    {
      "files":   ["/abs/path/acme-cur2-00001.snappy.parquet", ...],
      "repeat":  1,                       # executions of each query entry (default 1)
      "threads": 0,                       # DuckDB threads (0 or absent: DuckDB's default)
      "queries": [
        {"id": "top_arn",     "question": "principal_arn",  "start": RFC3339, "end": RFC3339,
         "limit": 100},
        {"id": "role",        "question": "principal_role", "start": ..., "end": ...},
        {"id": "team",        "question": "tag",            "start": ..., "end": ...,
         "tag_key": "iamPrincipal/team"},
        {"id": "model_daily", "question": "model",          "start": ..., "end": ...,
         "granularity": "daily"},
        {"id": "one_caller",  "question": "principal_arn",  "start": ..., "end": ...,
         "granularity": "daily", "principals": ["arn:aws:sts::..."]},
        ...
      ]
    }
    Several entries may share an `id` (e.g. the same question over moving ranges): their
    timings are appended to the same list. Optional on any entry: "metric" (unblended,
    net_unblended, blended, public_on_demand), "granularity" (none, hourly, daily, monthly),
    "limit", "principals".

Output (stdout, JSON):
    {"timings": {id: [seconds, ...]}, "first_query_s": seconds, "rows": {id: rows of the last run},
     "duckdb": version}

Usage:
    python3 duckdb_raw.py < spec.json
    python3 duckdb_raw.py --self-test
"""

import json
import os
import sys
import time

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# ASCII-only lower case (positions preserved), shared with the reference implementation.
from duckdb_reference import MACROS_SQL  # noqa: E402

BEDROCK_CODES = ["AmazonBedrock", "AmazonBedrockService", "AmazonBedrockFoundationModels"]

METRICS = {
    "unblended": "line_item_unblended_cost",
    "net_unblended": "line_item_net_unblended_cost",
    "blended": "line_item_blended_cost",
    "public_on_demand": "pricing_public_on_demand_cost",
}
GRAIN = {"hourly": "hour", "daily": "day", "monthly": "month"}

# Where the model name ends in a usage type (after the region prefix), per the contract.
MODEL_CUTS = [
    "-mantle-",
    "-input-tokens",
    "-output-tokens",
    "-cache-read-input-token-count",
    "-cache-write-input-token-count",
    "-cache-read-tokens",
    "-cache-write-tokens",
    "-cache-write-1h-",
    "-reserved-",
]

# Lower case: DuckDB's lower() is 4x faster than the reference's ASCII-only alower() and gives
# the same answer for every test below: the patterns are ASCII without 'k', and no non-ASCII
# character lower-cases to an ASCII letter other than KELVIN SIGN -> 'k' (U+0130 gives 'i' plus
# a combining dot, which matches no pattern either). Positions are another matter: the model
# name cut keeps alower(), which maps character for character.
RULE_MACROS = [
    # Token units per `pricing_unit` unit; for `Units`, the unit the description's third field
    # names (lower-cased on its first 8 characters only: all the prefix test needs).
    r"""CREATE OR REPLACE TEMP MACRO token_unit(pu, descr) AS (
        CASE lower(trim(pu))
            WHEN '1k tokens' THEN 1000
            WHEN '1m tokens' THEN 1000000
            WHEN 'units' THEN
                CASE WHEN lower(left(trim(split_part(descr, '|', 3)), 8)) = 'thousand' THEN 1000
                     WHEN lower(left(trim(split_part(descr, '|', 3)), 7)) = 'million' THEN 1000000
                     ELSE 1 END
            ELSE 1 END)""",
    # The decimal the double was written as (its shortest text), at scale 10: parsed as
    # DECIMAL(18,10) when it fits (about 5x faster in DuckDB), else as DECIMAL(38,10).
    r"""CREATE OR REPLACE TEMP MACRO exact(x) AS (
        coalesce(TRY_CAST(CAST(coalesce(x, 0) AS VARCHAR) AS DECIMAL(18,10)),
                 CAST(CAST(coalesce(x, 0) AS VARCHAR) AS DECIMAL(38,10))))""",
]

# One statement per question. The inner SELECT reads the line items of the range that are
# Bedrock and derives, in one projection over the scan, what the rules need (lower-cased usage
# type and token-kind source, token unit, exact cost); the outer one classifies the token kind,
# counts tokens (Usage line items only; capacity rows none), names the model when asked, and
# groups. The time predicate sits on the scanned column so that row groups can be pruned.
BASE_SQL = r"""
SELECT currency{period}{keys},
       sum(cost)                                                  AS cost,
       sum(CASE WHEN kind = 'input' THEN tokens ELSE 0 END)       AS tok_input,
       sum(CASE WHEN kind = 'output' THEN tokens ELSE 0 END)      AS tok_output,
       sum(CASE WHEN kind = 'cache_read' THEN tokens ELSE 0 END)  AS tok_cache_read,
       sum(CASE WHEN kind = 'cache_write' THEN tokens ELSE 0 END) AS tok_cache_write,
       count(*)                                                   AS line_items
FROM (
    SELECT *,
           CASE WHEN is_usage AND kind <> 'none'
                THEN coalesce(TRY_CAST(round(amount * unit) AS BIGINT), 0)
                ELSE 0 END                                        AS tokens
    FROM (
        SELECT *,
               CASE WHEN contains(utl, 'reserved') OR contains(utl, 'provisionedthroughput')
                      OR contains(utl, 'modelunits') THEN 'none'
                    WHEN contains(ks, 'cache read') OR contains(ks, 'cache-read')
                      OR contains(ks, 'cache_read') OR contains(ks, 'cacheread') THEN 'cache_read'
                    WHEN contains(ks, 'cache write') OR contains(ks, 'cache-write')
                      OR contains(ks, 'cache_write') OR contains(ks, 'cachewrite') THEN 'cache_write'
                    WHEN contains(ks, 'input') THEN 'input'
                    WHEN contains(ks, 'output') THEN 'output'
                    ELSE 'none' END                               AS kind
        FROM (
            SELECT
                line_item_usage_start_date                        AS usage_start,
                line_item_currency_code                           AS currency,
                NULLIF(line_item_iam_principal, '')               AS p,
                tags,
                exact({cost_col})                                 AS cost,
                line_item_line_item_type = 'Usage'                AS is_usage,
                coalesce(line_item_usage_amount, 0)               AS amount,
                token_unit(pricing_unit, line_item_line_item_description)::DOUBLE AS unit,
                lower(coalesce(line_item_usage_type, ''))         AS utl,
                -- token-kind source: inference_type when non-empty, else the usage type
                lower(CASE WHEN coalesce(product['inference_type'], '') <> ''
                           THEN product['inference_type']
                           ELSE coalesce(line_item_usage_type, '') END) AS ks{model}
            FROM read_parquet($files, union_by_name = true, hive_partitioning = false)
            WHERE line_item_usage_start_date >= CAST($t_start AS TIMESTAMPTZ)
              AND line_item_usage_start_date <  CAST($t_end AS TIMESTAMPTZ)
              AND (line_item_product_code IN ({codes})
                   OR product_product_family = 'Amazon Bedrock'
                   OR (bill_billing_entity = 'AWS Marketplace'
                       AND ends_with(product['product_name'], '(Amazon Bedrock Edition)'))
                   OR coalesce(line_item_iam_principal, '') <> '')
        )
    )
)
{where}
GROUP BY ALL
{order}
"""

# The model name (only computed by the question that groups by it): product['model'], else
# the Marketplace product name without its suffix, else the usage type without its region
# prefix and without everything from the token kind on.
MODEL_SQL = r""",
                CASE WHEN coalesce(product['model'], '') <> '' THEN product['model']
                     WHEN ends_with(product['product_name'], ' (Amazon Bedrock Edition)')
                          THEN left(product['product_name'], length(product['product_name'])
                                    - length(' (Amazon Bedrock Edition)'))
                     ELSE model_from_usage_type(coalesce(line_item_usage_type, ''))
                END                                               AS model"""

# Sessions collapsed to their role. The role is a function of the ARN, so the role question
# groups by ARN first and collapses the (few thousand) ARN groups, not every line item: the
# decimal sums are exact, so regrouping them changes nothing.
ROLE_MACRO = (
    "CREATE OR REPLACE TEMP MACRO role_of(p) AS "
    "CASE WHEN p IS NULL THEN NULL "
    "WHEN regexp_full_match(p, '(?s)arn:[^:]+:sts::[0-9]{12}:assumed-role/[^/]+/.+') "
    "THEN regexp_replace(p, '(?s)^arn:([^:]+):sts::([0-9]{12}):assumed-role/([^/]+)/.+$', "
    "'arn:\\1:iam::\\2:role/\\3') ELSE p END"
)
REGROUP_SQL = r"""
SELECT currency{period}, role_of(k) AS k,
       sum(cost) AS cost, sum(tok_input) AS tok_input, sum(tok_output) AS tok_output,
       sum(tok_cache_read) AS tok_cache_read, sum(tok_cache_write) AS tok_cache_write,
       sum(line_items) AS line_items
FROM ({inner})
GROUP BY ALL
{order}
"""


# The efficiency view's cache saving (docs/efficiency.md): prices per usage month, model,
# region, usage category, routing and currency over EVERY Bedrock Usage line item of kind
# input or cache read in the files (not only the range), per million tokens in units of
# 1e-10 rounded half away from zero; a range's cache-read tokens times the difference, in
# units of 1e-16. One statement: the line items are classified once (CTE), priced, joined.
EFFICIENCY_SQL = r"""
WITH items AS (
    SELECT *,
           CASE WHEN is_usage AND kind <> 'none'
                THEN coalesce(TRY_CAST(round(amount * unit) AS BIGINT), 0)
                ELSE 0 END                                        AS tokens,
           CASE WHEN contains(utl, 'provisionedthroughput') OR contains(utl, 'modelunits') THEN 5
                WHEN contains(utl, 'reserved') THEN 6
                WHEN contains(utl, 'batch') THEN 2
                WHEN contains(utl, '-flex') THEN 3
                WHEN contains(utl, '-priority') THEN 4
                WHEN contains(utl, 'latency-optimized') THEN 7
                WHEN contains(utl, 'customization') THEN 8
                WHEN contains(utl, 'custommodelimport') THEN 9
                WHEN kind <> 'none' THEN 1
                ELSE 10 END                                       AS category,
           CASE WHEN contains(utl, 'cross-region-global') OR contains(utl, '_global')
                  OR contains(utl, '-global-') THEN 3
                WHEN contains(utl, 'cross-region-geo') THEN 2
                ELSE 1 END                                        AS routing
    FROM (
        SELECT *,
               CASE WHEN contains(utl, 'reserved') OR contains(utl, 'provisionedthroughput')
                      OR contains(utl, 'modelunits') THEN 'none'
                    WHEN contains(ks, 'cache read') OR contains(ks, 'cache-read')
                      OR contains(ks, 'cache_read') OR contains(ks, 'cacheread') THEN 'cache_read'
                    WHEN contains(ks, 'cache write') OR contains(ks, 'cache-write')
                      OR contains(ks, 'cache_write') OR contains(ks, 'cachewrite') THEN 'cache_write'
                    WHEN contains(ks, 'input') THEN 'input'
                    WHEN contains(ks, 'output') THEN 'output'
                    ELSE 'none' END                               AS kind
        FROM (
            SELECT
                line_item_usage_start_date                        AS usage_start,
                line_item_currency_code                           AS currency,
                NULLIF(line_item_iam_principal, '')               AS p,
                tags,
                coalesce(product_region_code, '')                 AS region,
                exact({cost_col})                                 AS cost,
                line_item_line_item_type = 'Usage'                AS is_usage,
                coalesce(line_item_usage_amount, 0)               AS amount,
                token_unit(pricing_unit, line_item_line_item_description)::DOUBLE AS unit,
                lower(coalesce(line_item_usage_type, ''))         AS utl,
                lower(CASE WHEN coalesce(product['inference_type'], '') <> ''
                           THEN product['inference_type']
                           ELSE coalesce(line_item_usage_type, '') END) AS ks{model}
            FROM read_parquet($files, union_by_name = true, hive_partitioning = false)
            WHERE line_item_usage_start_date IS NOT NULL
              AND (line_item_product_code IN ({codes})
                   OR product_product_family = 'Amazon Bedrock'
                   OR (bill_billing_entity = 'AWS Marketplace'
                       AND ends_with(product['product_name'], '(Amazon Bedrock Edition)'))
                   OR coalesce(line_item_iam_principal, '') <> '')
        )
    )
), sums AS (
    SELECT date_trunc('month', usage_start) AS month, model, region, category, routing, currency,
           CAST(sum(CASE WHEN kind = 'input' THEN tokens ELSE 0 END) AS HUGEINT) AS in_tok,
           sum(CASE WHEN kind = 'input' THEN CAST(cost * 10000000000 AS HUGEINT) ELSE 0 END) AS in_cost,
           CAST(sum(CASE WHEN kind = 'cache_read' THEN tokens ELSE 0 END) AS HUGEINT) AS cr_tok,
           sum(CASE WHEN kind = 'cache_read' THEN CAST(cost * 10000000000 AS HUGEINT) ELSE 0 END) AS cr_cost
    FROM items
    WHERE is_usage AND kind IN ('input', 'cache_read')
    GROUP BY ALL
), prices AS (
    SELECT month, model, region, category, routing, currency,
           CASE WHEN in_tok > 0 THEN sign(in_cost) * ((2 * abs(in_cost) * 1000000 + in_tok) // (2 * in_tok)) END
         - CASE WHEN cr_tok > 0 THEN sign(cr_cost) * ((2 * abs(cr_cost) * 1000000 + cr_tok) // (2 * cr_tok)) END
                                                                  AS delta
    FROM sums
)
SELECT i.currency, {key} AS k,
       sum(i.cost)                                                    AS cost,
       sum(CASE WHEN i.kind = 'input' THEN i.tokens ELSE 0 END)       AS tok_input,
       sum(CASE WHEN i.kind = 'output' THEN i.tokens ELSE 0 END)      AS tok_output,
       sum(CASE WHEN i.kind = 'cache_read' THEN i.tokens ELSE 0 END)  AS tok_cache_read,
       sum(CASE WHEN i.kind = 'cache_write' THEN i.tokens ELSE 0 END) AS tok_cache_write,
       count(*)                                                       AS line_items,
       CAST(sum(CASE WHEN i.kind = 'cache_read' THEN i.tokens ELSE 0 END * coalesce(pr.delta, 0))
            AS VARCHAR)                                               AS cache_saving_units16
FROM items i
LEFT JOIN prices pr
  ON date_trunc('month', i.usage_start) = pr.month AND i.model = pr.model AND i.region = pr.region
 AND i.category = pr.category AND i.routing = pr.routing
 AND i.currency IS NOT DISTINCT FROM pr.currency
WHERE i.usage_start >= CAST($t_start AS TIMESTAMPTZ) AND i.usage_start < CAST($t_end AS TIMESTAMPTZ)
GROUP BY ALL
ORDER BY cost DESC, k NULLS FIRST, i.currency
"""


def build_efficiency(spec, metric, params):
    """(sql, params) of the efficiency view grouped by a caller ARN, a model or a tag value."""
    question = spec["question"]
    if question == "principal_arn":
        key = "i.p"
    elif question == "model":
        key = "i.model"
    elif question == "tag":
        params["tag_key"] = spec["tag_key"]
        key = "i.tags[$tag_key]"
    else:
        raise ValueError("no efficiency view of question %r" % question)
    if (spec.get("granularity") or "none") != "none" or spec.get("principals") or spec.get("limit"):
        raise ValueError("the efficiency view here takes no granularity, principals or limit")
    sql = EFFICIENCY_SQL.format(
        cost_col=METRICS[metric],
        codes=", ".join(_sql_literal(c) for c in BEDROCK_CODES),
        model=MODEL_SQL,
        key=key,
    )
    return sql, params


def _sql_literal(s):
    return "'" + s.replace("'", "''") + "'"


def build(spec):
    """(sql, params) for one query entry."""
    question = spec["question"]
    model = ""
    metric = spec.get("metric") or "unblended"
    if metric not in METRICS:
        raise ValueError("unknown metric %r" % metric)
    params = {"t_start": spec["start"], "t_end": spec["end"]}
    if spec.get("efficiency"):
        return build_efficiency(spec, metric, params)
    granularity = spec.get("granularity") or "none"
    if granularity == "none":
        period = ""
    elif granularity in GRAIN:
        period = ", date_trunc('%s', usage_start) AS period_start" % GRAIN[granularity]
    else:
        raise ValueError("unknown granularity %r" % granularity)
    if question == "principal_arn":
        key = "p"
    elif question == "principal_role":
        key = "p"
    elif question == "model":
        key = "model"
        model = MODEL_SQL
    elif question == "tag":
        params["tag_key"] = spec["tag_key"]
        key = "tags[$tag_key]"
    else:
        raise ValueError("unknown question %r" % question)
    where = []
    principals = spec.get("principals") or []
    if principals:
        named = [p for p in principals if p != ""]
        parts = []
        if named:
            params["principals"] = named
            parts.append("list_contains(CAST($principals AS VARCHAR[]), p)")
        if "" in principals:
            parts.append("p IS NULL")
        where.append("(" + " OR ".join(parts) + ")")
    limit = spec.get("limit")
    order = "ORDER BY cost DESC%s, k NULLS FIRST, currency%s" % (
        ", period_start" if period else "",
        ("\nLIMIT %d" % int(limit)) if limit else "",
    )
    role = question == "principal_role"
    sql = BASE_SQL.format(
        cost_col=METRICS[metric],
        codes=", ".join(_sql_literal(c) for c in BEDROCK_CODES),
        model=model,
        period=period,
        keys=", %s AS k" % key,
        where=("WHERE " + " AND ".join(where)) if where else "",
        order="" if role else order,
    )
    if role:
        sql = REGROUP_SQL.format(period=", period_start" if period else "", inner=sql, order=order)
    if period:
        # Bucket starts as text, so that fetching needs no Python time zone package.
        sql = "SELECT * REPLACE (CAST(period_start AS VARCHAR) AS period_start) FROM (%s)" % sql
    return sql, params


def connect(threads=0):
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute("SET threads = %d" % int(threads))
    for m in MACROS_SQL + RULE_MACROS + [ROLE_MACRO, model_macro()]:
        con.execute(m)
    return con


def model_macro():
    """model_from_usage_type(ut): the usage type without its region prefix (up to the first
    '-') and without everything from the token kind on (the first of MODEL_CUTS)."""
    rest = "substr(ut, strpos(ut, '-') + 1)"
    cuts = ", ".join(
        "nullif(strpos(alower(%s), %s), 0)" % (rest, _sql_literal(c)) for c in MODEL_CUTS
    )
    return (
        "CREATE OR REPLACE TEMP MACRO model_from_usage_type(ut) AS "
        "left(%s, coalesce(least(%s) - 1, length(%s)))" % (rest, cuts, rest)
    )


def run(doc):
    files = [os.path.abspath(f) for f in doc["files"]]
    repeat = max(1, int(doc.get("repeat") or 1))
    con = connect(doc.get("threads") or 0)
    timings, rows = {}, {}
    first = None
    for spec in doc["queries"]:
        sql, params = build(spec)
        params["files"] = files
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = con.execute(sql, params).fetchall()
            elapsed = time.perf_counter() - t0
            if first is None:
                first = elapsed
            timings.setdefault(spec["id"], []).append(elapsed)
            rows[spec["id"]] = len(out)
    return {"timings": timings, "first_query_s": first, "rows": rows, "duckdb": duckdb.__version__}


def self_test():
    """Three hand-made line items through every question."""
    import tempfile

    con = connect()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.parquet")
        con.execute(
            """
            COPY (SELECT * FROM (VALUES
              (TIMESTAMPTZ '2026-05-01 10:00:00+00', 'USD', 'Usage',
               'arn:aws:sts::123456789012:assumed-role/app/s1', 'USE1-Claude4.6Sonnet-input-tokens',
               'AmazonBedrock', 'AWS', NULL, '1M tokens', 'x', 0.5, 0.1 + 0.2,
               MAP {'model': 'Claude Sonnet 4.6', 'inference_type': 'Input tokens'},
               MAP {'iamPrincipal/team': 'search'}),
              (TIMESTAMPTZ '2026-05-01 11:00:00+00', 'USD', 'Usage',
               'arn:aws:sts::123456789012:assumed-role/app/s2', 'USE1-MP:USE1_OutputTokenCount-Units',
               'abc123', 'AWS Marketplace', NULL, 'Units', 'Claude Sonnet 4.6 (Amazon Bedrock Edition)|us-east-1|Million Output Tokens',
               0.25, 1.5,
               MAP {'product_name': 'Claude Sonnet 4.6 (Amazon Bedrock Edition)'},
               MAP {'iamPrincipal/team': 'risk'}),
              (TIMESTAMPTZ '2026-05-02 00:00:00+00', 'USD', 'Tax', '', '', 'AmazonBedrock', 'AWS', NULL,
               NULL, 'Tax', 1.0, 2.0, MAP {}, MAP {}),
              (TIMESTAMPTZ '2026-05-02 00:00:00+00', 'USD', 'Usage', '', 'USE1-BoxUsage', 'AmazonEC2',
               'AWS', 'Compute', 'Hrs', 'ec2', 1.0, 9.0, MAP {}, MAP {})
            ) t(line_item_usage_start_date, line_item_currency_code, line_item_line_item_type,
                line_item_iam_principal, line_item_usage_type, line_item_product_code,
                bill_billing_entity, product_product_family, pricing_unit,
                line_item_line_item_description, line_item_usage_amount, line_item_unblended_cost,
                product, tags)) TO '%s' (FORMAT parquet)
            """
            % path
        )
        base = {"start": "2026-05-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"}
        doc = {
            "files": [path],
            "queries": [
                dict(base, id="arn", question="principal_arn"),
                dict(base, id="role", question="principal_role"),
                dict(base, id="team", question="tag", tag_key="iamPrincipal/team"),
                dict(base, id="model", question="model", granularity="daily"),
                dict(base, id="one", question="principal_arn", granularity="daily",
                     principals=["arn:aws:sts::123456789012:assumed-role/app/s1"]),
            ],
        }
        out = run(doc)
        assert out["rows"] == {"arn": 3, "role": 2, "team": 3, "model": 2, "one": 1}, out["rows"]
        sql, params = build(dict(base, question="principal_role"))
        params["files"] = [path]
        got = con.execute(sql, params).fetchall()
        # role rows: (currency, k, cost, in, out, cr, cw, n); both sessions collapse to one role
        role = [r for r in got if r[1] is not None]
        assert role[0][1] == "arn:aws:iam::123456789012:role/app", role
        # 0.1 + 0.2 is the double 0.30000000000000004, read as the decimal 0.3000000000
        assert str(role[0][2]) == "1.8000000000", role
        assert role[0][3] == 500000 and role[0][4] == 250000, role
        sql, params = build(dict(base, question="model"))
        params["files"] = [path]
        models = {r[1] for r in con.execute(sql, params).fetchall()}
        assert models == {"Claude Sonnet 4.6", ""}, models
    print("OK")


if __name__ == "__main__":
    if "--self-test" in sys.argv[1:]:
        self_test()
    else:
        json.dump(run(json.load(sys.stdin)), sys.stdout)
        sys.stdout.write("\n")
