#!/usr/bin/env python3
"""Independent reference implementation of the CUR 2.0 / Amazon Bedrock cost-attribution
contract (/work/shared/cur2-bedrock.md, sections 1-6), in plain DuckDB SQL.

Python does only file discovery and plumbing; every rule (Bedrock row selection, principal
parsing, model name, token kind / count, usage category, routing, money, grouping, filters) lives in
the SQL below.  It shares no code with the Rust service on purpose.

Usage:
    python3 duckdb_reference.py ROOT [ROOT ...] < specs.json > results.json
    python3 duckdb_reference.py --self-test          # prints OK, or fails with a traceback

Each ROOT is a local export root holding data/ and metadata/.  Only `duckdb` is required.
"""

import glob
import json
import statistics
import time
import os
import re
import sys

import duckdb

# --------------------------------------------------------------------------------------------
# File discovery
# --------------------------------------------------------------------------------------------

PERIOD_DIR_RE = re.compile(r"^BILLING_PERIOD=\d{4}-\d{2}$")
DATA_MARKER = "data/BILLING_PERIOD="


def _warn(msg):
    print("duckdb_reference: warning: " + msg, file=sys.stderr)


def _manifest_parquet_uris(node, out):
    """Collect every string ending in .parquet found inside any JSON array (at any depth)."""
    if isinstance(node, dict):
        for v in node.values():
            _manifest_parquet_uris(v, out)
    elif isinstance(node, list):
        for v in node:
            if isinstance(v, str):
                if v.endswith(".parquet"):
                    out.append(v)
            else:
                _manifest_parquet_uris(v, out)


def discover_files(root):
    """Return the parquet files to read for one export root (sorted, absolute paths)."""
    data_dir = os.path.join(root, "data")
    meta_dir = os.path.join(root, "metadata")
    files = []
    if not os.path.isdir(data_dir):
        _warn("no data/ folder under %r" % root)
        return files
    for period in sorted(os.listdir(data_dir)):
        pdir = os.path.join(data_dir, period)
        if not (PERIOD_DIR_RE.match(period) and os.path.isdir(pdir)):
            continue
        mdir = os.path.join(meta_dir, period)
        manifests = []
        if os.path.isdir(mdir):
            manifests = sorted(
                os.path.join(mdir, n)
                for n in os.listdir(mdir)
                if n.endswith("Manifest.json") and os.path.isfile(os.path.join(mdir, n))
            )
        if manifests:
            # Manifest is the truth.  (Several manifests in one folder: union of their lists.)
            for mpath in manifests:
                with open(mpath, "r", encoding="utf-8") as fh:
                    doc = json.load(fh)
                uris = []
                _manifest_parquet_uris(doc, uris)
                for uri in uris:
                    i = uri.find(DATA_MARKER)
                    if i < 0:
                        _warn("manifest %s: cannot map %r (no %r)" % (mpath, uri, DATA_MARKER))
                        continue
                    local = os.path.join(root, *uri[i:].split("/"))
                    if not os.path.isfile(local):
                        _warn("manifest %s lists missing file %s" % (mpath, local))
                        continue
                    files.append(local)
            continue
        subdirs = sorted(n for n in os.listdir(pdir) if os.path.isdir(os.path.join(pdir, n)))
        if subdirs:
            # create-new layout without a manifest: newest execution only
            target = os.path.join(pdir, subdirs[-1])
        else:
            target = pdir
        files.extend(
            sorted(p for p in glob.glob(os.path.join(glob.escape(target), "*.parquet")) if os.path.isfile(p))
        )
    # a file named twice (e.g. listed twice in a manifest) is read once
    seen, out = set(), []
    for f in files:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


# --------------------------------------------------------------------------------------------
# Loading: one raw table with a fixed schema; every file is projected onto it separately, so a
# column missing from a file (or a whole period) reads as NULL and files of different physical
# schemas (timestamp units, UTC annotation) never need type unification.
# --------------------------------------------------------------------------------------------

VARCHAR_COLS = [
    "identity_line_item_id",
    "line_item_product_code",
    "product_product_family",
    "bill_billing_entity",
    "line_item_iam_principal",
    "line_item_usage_type",
    "line_item_line_item_type",
    "pricing_unit",
    "line_item_line_item_description",
    "line_item_usage_account_id",
    "bill_payer_account_id",
    "product_region_code",
    "line_item_currency_code",
]
COST_COLS = [
    "line_item_unblended_cost",
    "line_item_net_unblended_cost",
    "line_item_blended_cost",
    "pricing_public_on_demand_cost",
]
MAP_COLS = ["product", "tags"]
TS_COL = "line_item_usage_start_date"
AMOUNT_COL = "line_item_usage_amount"

RAW_DDL = (
    "CREATE TEMP TABLE raw (usage_start TIMESTAMP, "
    + ", ".join("%s VARCHAR" % c for c in VARCHAR_COLS)
    + ", %s DOUBLE, " % AMOUNT_COL
    + ", ".join("%s DECIMAL(38,10)" % c for c in COST_COLS)
    + ", product MAP(VARCHAR, VARCHAR), tags MAP(VARCHAR, VARCHAR), period VARCHAR)"
)


def _qi(name):
    return '"' + name.replace('"', '""') + '"'


def _ts_expr(col, typ):
    """Usage start as a naive TIMESTAMP holding UTC wall time (session TimeZone is UTC)."""
    t = typ.upper()
    if t == "TIMESTAMP_NS":
        return "CAST(%s AS TIMESTAMP)" % col  # truncates to microseconds (never crosses a bound)
    if t.startswith("TIMESTAMP") or t == "DATE":
        return "CAST(%s AS TIMESTAMP)" % col  # TIMESTAMPTZ -> UTC wall time; _MS/_S widen
    if t in ("BIGINT", "INTEGER", "UBIGINT", "HUGEINT", "UINTEGER"):
        # un-annotated integer epoch: pick the unit by magnitude (s / ms / us / ns)
        return (
            "CASE WHEN abs({c}) >= 100000000000000000 THEN make_timestamp(CAST({c} AS BIGINT) // 1000) "
            "WHEN abs({c}) >= 100000000000000 THEN make_timestamp(CAST({c} AS BIGINT)) "
            "WHEN abs({c}) >= 100000000000 THEN make_timestamp(CAST({c} AS BIGINT) * 1000) "
            "ELSE make_timestamp(CAST({c} AS BIGINT) * 1000000) END"
        ).format(c=col)
    return "CAST(CAST(%s AS TIMESTAMPTZ) AS TIMESTAMP)" % col


def _map_expr(col, typ):
    t = typ.upper().replace(" ", "")
    if t.startswith("MAP("):
        return "CAST(%s AS MAP(VARCHAR, VARCHAR))" % col
    if t.startswith('STRUCT("KEY"') or t.startswith("STRUCT(KEY"):
        if t.endswith("[]"):
            return "CAST(map_from_entries(%s) AS MAP(VARCHAR, VARCHAR))" % col
    _warn("column %s has unsupported type %s; read as NULL" % (col, typ))
    return "NULL"


# What refuses a file (and with it its whole billing period), as the contract's CUR 2.0
# schema is fixed: required columns and their types, amounts that are finite numbers within
# what one line item may hold, and every line item dated within the billing period of its
# folder. Checked only in files that hold rows (an emptied leftover chunk may have any schema).
REQUIRED_TEXT = ["line_item_line_item_type", "line_item_product_code", "line_item_usage_type",
                 "line_item_currency_code"]
REQUIRED_NUMBER = [AMOUNT_COL] + COST_COLS
OPTIONAL_TEXT = [c for c in VARCHAR_COLS if c not in REQUIRED_TEXT]
LEGACY_MARKS = ["lineItem/UnblendedCost", "lineItem/LineItemType", "identity/LineItemId",
                "product_product_name"]
NUMERIC_TYPES = ("DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT",
                 "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT")


def _is_number_type(t):
    t = t.upper()
    return t in NUMERIC_TYPES or t.startswith("DECIMAL") or t == "VARCHAR" or t == '"NULL"'


def _check_file(con, path, cols, period):
    """None when the file may be served, else (kind, detail) saying why not."""
    has = lambda name: name in cols
    if any(m.lower() in cols for m in LEGACY_MARKS) and not has("line_item_iam_principal"):
        return ("legacy", "")
    known = REQUIRED_TEXT + REQUIRED_NUMBER + [TS_COL] + OPTIONAL_TEXT + MAP_COLS
    if not any(has(c) for c in known):
        return ("not_cur", "")
    missing = [c for c in REQUIRED_TEXT + [TS_COL] + REQUIRED_NUMBER if not has(c)]
    wrong = []
    for c in REQUIRED_TEXT + OPTIONAL_TEXT:
        if has(c) and cols[c][1].upper() not in ("VARCHAR", '"NULL"'):
            wrong.append(c)
    if has(TS_COL) and not cols[TS_COL][1].upper().startswith("TIMESTAMP"):
        wrong.append(TS_COL)
    for c in REQUIRED_NUMBER:
        if has(c) and not _is_number_type(cols[c][1]):
            wrong.append(c)
    for c in MAP_COLS:
        if has(c) and not cols[c][1].upper().replace(" ", "").startswith("MAP(VARCHAR,VARCHAR)"):
            wrong.append(c)
    if missing or wrong:
        return ("columns", {"missing": missing, "wrong": sorted(wrong)})
    bad = {}
    for c in REQUIRED_NUMBER:
        q, t = _qi(cols[c][0]), cols[c][1].upper()
        if t == "VARCHAR":
            sql = ("SELECT 0, count(*) FILTER (WHERE trim({c}) <> '' AND TRY_CAST({c} AS DECIMAL(38,10)) IS NULL), "
                   "count(*) FILTER (WHERE abs(TRY_CAST({c} AS DECIMAL(38,10))) > 922337203.6854775807) "
                   "FROM read_parquet($p, hive_partitioning = false)").format(c=q)
        elif t in ("DOUBLE", "FLOAT", "REAL"):
            sql = ("SELECT count(*) FILTER (WHERE isnan({c}) OR isinf({c})), 0, "
                   "count(*) FILTER (WHERE isfinite({c}) AND abs({c}) > 922337203.6854775807) "
                   "FROM read_parquet($p, hive_partitioning = false)").format(c=q)
        else:
            sql = ("SELECT 0, 0, count(*) FILTER (WHERE abs(CAST({c} AS DECIMAL(38,10))) > 922337203.6854775807) "
                   "FROM read_parquet($p, hive_partitioning = false)").format(c=q)
        if c == AMOUNT_COL:
            # usage amounts are not money: only finite and numeric matter
            sql = sql.replace("count(*) FILTER (WHERE isfinite({c}) AND abs({c}) > 922337203.6854775807)".format(c=q), "0")
            sql = sql.replace("count(*) FILTER (WHERE abs(TRY_CAST({c} AS DECIMAL(38,10))) > 922337203.6854775807)".format(c=q), "0")
            sql = sql.replace("count(*) FILTER (WHERE abs(CAST({c} AS DECIMAL(38,10))) > 922337203.6854775807)".format(c=q), "0")
        counts = con.execute(sql, {"p": path}).fetchone()
        if any(counts):
            bad[c] = {"non_finite": counts[0], "non_numeric": counts[1], "too_large": counts[2]}
    ts = _ts_expr(_qi(cols[TS_COL][0]), cols[TS_COL][1])
    undated, outside = con.execute(
        "SELECT count(*) FILTER (WHERE u IS NULL), "
        "count(*) FILTER (WHERE $period IS NOT NULL AND (u < CAST($period || '-01' AS TIMESTAMP) "
        "OR u >= CAST($period || '-01' AS TIMESTAMP) + INTERVAL 1 MONTH)) "
        "FROM (SELECT %s AS u FROM read_parquet($p, hive_partitioning = false))" % ts,
        {"p": path, "period": period},
    ).fetchone()
    if bad or undated or outside:
        return ("cells", {"amounts": bad, "undated": undated, "out_of_period": outside})
    return None


def load_files(con, files, refused=None):
    """Loads `files` into `raw`; a period with any refused file is left out whole, and
    `refused` (a list) receives {period, file, kind, detail} for each refused file."""
    con.execute(RAW_DDL)
    refused = [] if refused is None else refused
    plans = []
    for path in files:
        nrows = con.execute("SELECT num_rows FROM parquet_file_metadata($p)", {"p": path}).fetchone()[0]
        if not nrows:
            continue  # 0-row (leftover / empty) chunk: nothing to read, schema irrelevant
        desc = con.execute(
            "DESCRIBE SELECT * FROM read_parquet($p, hive_partitioning = false)", {"p": path}
        ).fetchall()
        cols = {}
        for row in desc:
            cols.setdefault(row[0].lower(), (row[0], row[1]))
        m = re.search(r"BILLING_PERIOD=([0-9]{4}-[0-9]{2})", path)
        period = m.group(1) if m else None
        fault = _check_file(con, path, cols, period)
        if fault is not None:
            i = path.find(DATA_MARKER)
            refused.append({"period": period, "file": path[i:] if i >= 0 else path,
                            "kind": fault[0], "detail": fault[1]})
        plans.append((path, cols, period))
    bad_periods = {r["period"] for r in refused}
    for path, cols, period in plans:
        if period in bad_periods:
            continue

        def col(name):
            c = cols.get(name)
            return (_qi(c[0]), c[1]) if c else (None, None)

        exprs = []
        c, t = col(TS_COL)
        exprs.append(_ts_expr(c, t) if c else "NULL")
        for name in VARCHAR_COLS:
            c, _ = col(name)
            exprs.append("CAST(%s AS VARCHAR)" % c if c else "NULL")
        c, _ = col(AMOUNT_COL)
        exprs.append("CAST(%s AS DOUBLE)" % c if c else "NULL")
        for name in COST_COLS:
            c, t = col(name)
            if c and t in ("DOUBLE", "FLOAT"):
                # the decimal the double was written as: its shortest round-trip text
                exprs.append("CAST(CAST(%s AS VARCHAR) AS DECIMAL(38,10))" % c)
            else:
                exprs.append("CAST(%s AS DECIMAL(38,10))" % c if c else "NULL")
        for name in MAP_COLS:
            c, t = col(name)
            exprs.append(_map_expr(c, t) if c else "NULL")
        exprs.append("CAST($period AS VARCHAR)")
        con.execute(
            "INSERT INTO raw SELECT %s FROM read_parquet($p, hive_partitioning = false)" % ", ".join(exprs),
            {"p": path, "period": period},
        )
    return refused


# --------------------------------------------------------------------------------------------
# Normalisation: all contract rules, in SQL.
# --------------------------------------------------------------------------------------------

_WS = r"[\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]"

MACROS_SQL = [
    # ASCII-only lower case: 1:1 per character, so positions in the result equal positions in
    # the input (used to cut the model name out of the original usage type).
    "CREATE OR REPLACE TEMP MACRO alower(s) AS "
    "translate(s, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')",
    # trim leading / trailing whitespace (Unicode White_Space set)
    "CREATE OR REPLACE TEMP MACRO wtrim(s) AS regexp_replace(s, '^%s+|%s+$', '', 'g')" % (_WS, _WS),
]

NORM_SQL = r"""
CREATE TEMP TABLE norm AS
WITH bedrock AS (
    SELECT r.*,
           NULLIF(line_item_iam_principal, '')      AS p,
           product['model']                         AS p_model,
           product['product_name']                  AS p_name,
           product['inference_type']                AS p_itype,
           coalesce(line_item_usage_type, '')       AS ut
    FROM raw r
    WHERE line_item_product_code IN ('AmazonBedrock', 'AmazonBedrockService', 'AmazonBedrockFoundationModels')
       OR product_product_family = 'Amazon Bedrock'
       OR (bill_billing_entity = 'AWS Marketplace'
           AND ends_with(product['product_name'], '(Amazon Bedrock Edition)'))
       OR coalesce(line_item_iam_principal, '') <> ''
), s1 AS (
    SELECT *,
           -- token-kind source: inference_type when non-empty, else usage type
           alower(CASE WHEN coalesce(p_itype, '') <> '' THEN p_itype ELSE line_item_usage_type END) AS ks,
           alower(ut)                                                                             AS utl,
           CASE WHEN strpos(ut, '-') > 0 THEN substr(ut, strpos(ut, '-') + 1) ELSE ut END          AS ut_rest,
           regexp_full_match(p,
               '(?s)arn:[^:]+:(iam::[0-9]{12}:(user/.+|role/.+|root)|sts::[0-9]{12}:(assumed-role/[^/]+/.+|federated-user/.+))')
                                                                                                  AS p_known,
           regexp_full_match(p, '(?s)arn:[^:]+:sts::[0-9]{12}:assumed-role/[^/]+/.+')             AS p_assumed,
           CASE alower(wtrim(pricing_unit))
               WHEN '1k tokens' THEN 1000
               WHEN '1m tokens' THEN 1000000
               WHEN 'units' THEN
                   CASE WHEN starts_with(alower(wtrim(split_part(line_item_line_item_description, '|', 3))), 'million') THEN 1000000
                        WHEN starts_with(alower(wtrim(split_part(line_item_line_item_description, '|', 3))), 'thousand') THEN 1000
                        ELSE 1 END
               ELSE 1
           END::DOUBLE                                                                            AS unit
    FROM bedrock
), s2 AS (
    SELECT *,
           -- capacity (reserved tier, provisioned throughput) names a kind but counts no tokens
           CASE WHEN contains(utl, 'reserved') OR contains(utl, 'provisionedthroughput')
                  OR contains(utl, 'modelunits') THEN 'none'
                WHEN ks IS NULL THEN 'none'
                WHEN contains(ks, 'cache read') OR contains(ks, 'cache-read')
                  OR contains(ks, 'cache_read') OR contains(ks, 'cacheread') THEN 'cache_read'
                WHEN contains(ks, 'cache write') OR contains(ks, 'cache-write')
                  OR contains(ks, 'cache_write') OR contains(ks, 'cachewrite') THEN 'cache_write'
                WHEN contains(ks, 'input') THEN 'input'
                WHEN contains(ks, 'output') THEN 'output'
                ELSE 'none' END                                                                   AS kind,
           least(nullif(strpos(alower(ut_rest), '-mantle-'), 0),
                 nullif(strpos(alower(ut_rest), '-input-tokens'), 0),
                 nullif(strpos(alower(ut_rest), '-output-tokens'), 0),
                 nullif(strpos(alower(ut_rest), '-cache-read-input-token-count'), 0),
                 nullif(strpos(alower(ut_rest), '-cache-write-input-token-count'), 0),
                 nullif(strpos(alower(ut_rest), '-cache-read-tokens'), 0),
                 nullif(strpos(alower(ut_rest), '-cache-write-tokens'), 0),
                 nullif(strpos(alower(ut_rest), '-cache-write-1h-'), 0),
                 nullif(strpos(alower(ut_rest), '-reserved-'), 0))                                AS cut
    FROM s1
), s3 AS (
    SELECT *,
           CASE WHEN line_item_line_item_type = 'Usage' AND kind <> 'none'
                THEN coalesce(TRY_CAST(round(coalesce(line_item_usage_amount, 0) * unit) AS BIGINT), 0)
                ELSE 0 END                                                                        AS tokens
    FROM s2
)
SELECT
    usage_start,
    period,
    identity_line_item_id                                     AS line_item_id,
    line_item_currency_code                                   AS currency,
    line_item_usage_account_id                                AS account,
    bill_payer_account_id                                     AS payer,
    coalesce(product_region_code, '')                         AS region,
    line_item_line_item_type                                  AS line_item_type,
    p                                                         AS principal_arn,
    CASE WHEN p IS NULL THEN NULL
         WHEN p_assumed THEN regexp_replace(p,
             '(?s)^arn:([^:]+):sts::([0-9]{12}):assumed-role/([^/]+)/.+$', 'arn:\1:iam::\2:role/\3')
         ELSE p END                                           AS principal_role,
    CASE WHEN p IS NULL THEN NULL
         WHEN p_known THEN regexp_extract(p, '^arn:[^:]+:(iam|sts)::([0-9]{12}):', 2)
         ELSE p END                                           AS principal_account,
    CASE WHEN coalesce(p_model, '') <> '' THEN p_model
         WHEN ends_with(p_name, ' (Amazon Bedrock Edition)')
              THEN regexp_replace(p_name, '(?s) \(Amazon Bedrock Edition\)$', '')
         WHEN cut IS NULL THEN ut_rest
         ELSE substr(ut_rest, 1, cut - 1) END                 AS model,
    CASE WHEN contains(utl, 'provisionedthroughput') OR contains(utl, 'modelunits') THEN 'provisioned_throughput'
         WHEN contains(utl, 'reserved') THEN 'reserved'
         WHEN contains(utl, 'batch') THEN 'batch'
         WHEN contains(utl, '-flex') THEN 'flex'
         WHEN contains(utl, '-priority') THEN 'priority'
         WHEN contains(utl, 'latency-optimized') THEN 'latency_optimized'
         WHEN contains(utl, 'customization') THEN 'customization'
         WHEN contains(utl, 'custommodelimport') THEN 'custom_model_import'
         WHEN kind <> 'none' THEN 'on_demand'
         ELSE 'other' END                                     AS usage_category,
    CASE WHEN contains(utl, 'cross-region-global') OR contains(utl, '_global')
              OR contains(utl, '-global-') THEN 'cross_region_global'
         WHEN contains(utl, 'cross-region-geo') THEN 'cross_region_geographic'
         ELSE 'in_region' END                                 AS routing,
    kind,
    tags,
    CASE WHEN kind = 'input' THEN tokens ELSE 0 END           AS tok_input,
    CASE WHEN kind = 'output' THEN tokens ELSE 0 END          AS tok_output,
    CASE WHEN kind = 'cache_read' THEN tokens ELSE 0 END      AS tok_cache_read,
    CASE WHEN kind = 'cache_write' THEN tokens ELSE 0 END     AS tok_cache_write,
    CAST(CAST(coalesce(line_item_unblended_cost, 0) AS VARCHAR) AS DECIMAL(38,10))      AS cost_unblended,
    CAST(CAST(coalesce(line_item_net_unblended_cost, 0) AS VARCHAR) AS DECIMAL(38,10))  AS cost_net_unblended,
    CAST(CAST(coalesce(line_item_blended_cost, 0) AS VARCHAR) AS DECIMAL(38,10))        AS cost_blended,
    CAST(CAST(coalesce(pricing_public_on_demand_cost, 0) AS VARCHAR) AS DECIMAL(38,10)) AS cost_public_on_demand
FROM s3
"""


def build(roots):
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    for m in MACROS_SQL:
        con.execute(m)
    files = []
    for root in roots:
        files.extend(discover_files(root))
    REFUSED.clear()
    load_files(con, files, REFUSED)
    con.execute(NORM_SQL)
    return con


# The files the last build() refused ({period, file, kind, detail}); their periods hold no rows.
REFUSED = []


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------

METRIC_COL = {
    "unblended": "cost_unblended",
    "net_unblended": "cost_net_unblended",
    "blended": "cost_blended",
    "public_on_demand": "cost_public_on_demand",
}
GRAIN = {"hourly": "hour", "daily": "day", "monthly": "month"}
PLAIN_KEYS = {
    "principal_arn": "principal_arn",
    "principal_role": "principal_role",
    "principal_account": "principal_account",
    "model": "model",
    "account": "account",
    "region": "region",
    "usage_category": "usage_category",
    "routing": "routing",
    "line_item_type": "line_item_type",
}
LIST_FILTERS = {
    "account_ids": "account",
    "models": "model",
    "regions": "region",
    "line_item_types": "line_item_type",
    "payer_account_ids": "payer",
    "usage_categories": "usage_category",
    "routings": "routing",
    # A role with every session of it (budgets): the role key, as principal_role groups.
    "roles": "principal_role",
}


def _strs(values):
    return [v if isinstance(v, str) else str(v) for v in values]


# Proportional allocation, per billing period, payer and currency, in units of 1e-10
# (HUGEINT): receivers are attributed Usage line items, donors the line items without a
# caller; an account whose receivers' cost sums above zero shares its donors' pool over
# them; the donors of other accounts pool per payer and share over all the payer's
# receivers if those sum above zero; else they stay. Each pool: floor shares, then one
# unit each to the largest remainders, ties to the smaller line_item_id.
ALLOC_SQL = r"""
CREATE TEMP TABLE {table} AS
WITH base AS (
    SELECT *,
           (principal_arn IS NOT NULL AND line_item_type = 'Usage') AS is_recv,
           (principal_arn IS NULL)                                 AS is_donor,
           CAST({cost} * 10000000000 AS HUGEINT)                   AS cu
    FROM norm
), acct AS (
    SELECT *,
           sum(CASE WHEN is_recv THEN cu ELSE 0 END) OVER (PARTITION BY period, payer, currency, account)  AS w_acct,
           sum(CASE WHEN is_donor THEN cu ELSE 0 END) OVER (PARTITION BY period, payer, currency, account) AS pool_acct
    FROM base
), payer AS (
    SELECT *,
           sum(CASE WHEN is_recv THEN cu ELSE 0 END) OVER (PARTITION BY period, payer, currency) AS w_payer,
           sum(CASE WHEN is_donor AND w_acct <= 0 THEN cu ELSE 0 END)
               OVER (PARTITION BY period, payer, currency)                                    AS pool_payer
    FROM acct
), prod AS (
    SELECT *,
           CASE WHEN is_recv AND w_acct > 0 THEN pool_acct * cu END   AS x1,
           CASE WHEN is_recv AND w_payer > 0 THEN pool_payer * cu END AS x2
    FROM payer
), rem AS (
    SELECT *,
           ((x1 % w_acct) + w_acct) % w_acct    AS r1,
           ((x2 % w_payer) + w_payer) % w_payer AS r2
    FROM prod
), q AS (
    SELECT *, (x1 - r1) // w_acct AS q1, (x2 - r2) // w_payer AS q2 FROM rem
), ranked AS (
    SELECT *,
           row_number() OVER (PARTITION BY period, payer, currency, account, x1 IS NULL
                              ORDER BY r1 DESC, line_item_id)                              AS rank1,
           pool_acct - sum(q1) OVER (PARTITION BY period, payer, currency, account, x1 IS NULL) AS left1,
           row_number() OVER (PARTITION BY period, payer, currency, x2 IS NULL
                              ORDER BY r2 DESC, line_item_id)                              AS rank2,
           pool_payer - sum(q2) OVER (PARTITION BY period, payer, currency, x2 IS NULL)     AS left2
    FROM q
)
SELECT *,
       coalesce(q1 + CASE WHEN rank1 <= left1 THEN 1 ELSE 0 END, 0)
     + coalesce(q2 + CASE WHEN rank2 <= left2 THEN 1 ELSE 0 END, 0)
     - CASE WHEN is_donor AND (w_acct > 0 OR w_payer > 0) THEN cu ELSE 0 END AS alloc_u
FROM ranked
"""


def ensure_alloc(con, metric):
    table = "norm_alloc_" + metric
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = $t", {"t": table}
    ).fetchone()[0]
    if not exists:
        con.execute(ALLOC_SQL.format(table=table, cost=METRIC_COL[metric]))
    return table


# The efficiency view's cache saving: per usage month, model, region, usage category,
# routing and currency, the price per million tokens (units of 1e-10, rounded half away
# from zero) of plain input and of cache reads over every Bedrock Usage line item of that
# kind (whatever the request's range, filters or scope); a cache-read token saves their
# difference, when both are known. Sums are in units of 1e-16 (HUGEINT).
PRICES_SQL = r"""
CREATE TEMP TABLE {table} AS
WITH s AS (
    SELECT date_trunc('month', usage_start) AS month, model, region, usage_category, routing, currency,
           CAST(sum(CASE WHEN kind = 'input' THEN tok_input ELSE 0 END) AS HUGEINT)      AS in_tok,
           sum(CASE WHEN kind = 'input' THEN CAST({cost} * 10000000000 AS HUGEINT) ELSE 0 END)
                                                                                         AS in_cost,
           CAST(sum(CASE WHEN kind = 'cache_read' THEN tok_cache_read ELSE 0 END) AS HUGEINT) AS cr_tok,
           sum(CASE WHEN kind = 'cache_read' THEN CAST({cost} * 10000000000 AS HUGEINT) ELSE 0 END)
                                                                                         AS cr_cost
    FROM norm
    WHERE line_item_type = 'Usage' AND usage_start IS NOT NULL AND kind IN ('input', 'cache_read')
    GROUP BY ALL
), p AS (
    SELECT *,
           CASE WHEN in_tok > 0 THEN sign(in_cost) * ((2 * abs(in_cost) * 1000000 + in_tok) // (2 * in_tok)) END AS in_price,
           CASE WHEN cr_tok > 0 THEN sign(cr_cost) * ((2 * abs(cr_cost) * 1000000 + cr_tok) // (2 * cr_tok)) END AS cr_price
    FROM s
)
SELECT month, model, region, usage_category, routing, currency, in_price - cr_price AS delta FROM p
"""


def ensure_prices(con, metric):
    table = "prices_" + metric
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = $t", {"t": table}
    ).fetchone()[0]
    if not exists:
        con.execute(PRICES_SQL.format(table=table, cost=METRIC_COL[metric]))
    return table


def _saving(units16):
    """A count of 1e-16 units as a decimal string, rounded half-even to ten places."""
    from decimal import Decimal, ROUND_HALF_EVEN
    return str(Decimal(int(units16)).scaleb(-16).quantize(Decimal("1E-10"), rounding=ROUND_HALF_EVEN))


def _units(text):
    """A HUGEINT count of 1e-10 units, as a decimal string."""
    from decimal import Decimal
    return str(Decimal(int(text)).scaleb(-10))


def run_query(con, spec):
    params = {}
    metric = spec.get("metric", "unblended") or "unblended"
    if metric not in METRIC_COL:
        raise ValueError("unknown metric %r" % metric)
    allocation = bool(spec.get("allocation"))
    efficiency = bool(spec.get("efficiency"))
    table = ensure_alloc(con, metric) if allocation else "norm"
    if efficiency:
        prices = ensure_prices(con, metric)
        table = (
            "(SELECT n.*, n.tok_cache_read * coalesce(p.delta, 0) AS saving16 FROM {t} n "
            "LEFT JOIN {p} p ON date_trunc('month', n.usage_start) = p.month AND n.model = p.model "
            "AND n.region = p.region AND n.usage_category = p.usage_category "
            "AND n.routing = p.routing AND n.currency IS NOT DISTINCT FROM p.currency) AS priced"
        ).format(t=table, p=prices)
    if allocation:
        cost_sql = "CAST(sum(cu + alloc_u) AS VARCHAR), CAST(sum(alloc_u) AS VARCHAR)"
    else:
        cost_sql = "CAST(sum(%s) AS VARCHAR), NULL" % METRIC_COL[metric]
    granularity = spec.get("granularity", "none") or "none"
    if granularity == "none":
        period_sql = "CAST(NULL AS VARCHAR)"
    elif granularity in GRAIN:
        period_sql = "strftime(date_trunc('%s', usage_start), '%%Y-%%m-%%dT%%H:%%M:%%SZ')" % GRAIN[granularity]
    else:
        raise ValueError("unknown granularity %r" % granularity)

    group_names = []
    for g in spec.get("group_by", []) or []:
        if g not in group_names:
            group_names.append(g)
    group_sql = []
    for g in group_names:
        if g in PLAIN_KEYS:
            group_sql.append(PLAIN_KEYS[g])
        elif g in ("tag", "tag2"):
            pname = "tag_key" if g == "tag" else "tag_key2"
            key = spec.get(pname)
            if key is None:
                raise ValueError("group_by %r needs %r" % (g, pname))
            params["g_" + pname] = key
            group_sql.append("tags[$g_%s]" % pname)
        else:
            raise ValueError("unknown group_by %r" % g)

    where = []
    if spec.get("start") is not None:
        params["t_start"] = spec["start"]
        where.append("usage_start >= CAST(CAST($t_start AS TIMESTAMPTZ) AS TIMESTAMP)")
    if spec.get("end") is not None:
        params["t_end"] = spec["end"]
        where.append("usage_start < CAST(CAST($t_end AS TIMESTAMPTZ) AS TIMESTAMP)")

    flt = spec.get("filter") or {}
    for fname, col in LIST_FILTERS.items():
        vals = flt.get(fname) or []
        if vals:
            params["f_" + fname] = _strs(vals)
            where.append("list_contains(CAST($f_%s AS VARCHAR[]), %s)" % (fname, col))
    principals = flt.get("principals") or []
    if principals:
        principals = _strs(principals)
        named = [p for p in principals if p != ""]
        parts = []
        if named:
            params["f_principals"] = named
            parts.append("list_contains(CAST($f_principals AS VARCHAR[]), principal_arn)")
        if "" in principals:
            parts.append("principal_arn IS NULL")
        where.append("(" + " OR ".join(parts) + ")")
    for i, tf in enumerate(flt.get("tags") or []):
        params["tk%d" % i] = tf["key"]
        params["tv%d" % i] = _strs(tf.get("values") or [])
        params["tu%d" % i] = bool(tf.get("untagged", False))
        where.append(
            "(coalesce(list_contains(CAST($tv{i} AS VARCHAR[]), tags[$tk{i}]), false)"
            " OR (CAST($tu{i} AS BOOLEAN) AND tags[$tk{i}] IS NULL))".format(i=i)
        )

    # A caller's scope (access control): fields AND, values OR; a line item lacking a
    # scoped tag key, or without a caller under a principal prefix scope, is outside.
    scope = spec.get("scope") or {}
    if scope.get("accounts"):
        params["s_accounts"] = _strs(scope["accounts"])
        where.append("list_contains(CAST($s_accounts AS VARCHAR[]), account)")
    for i, (key, values) in enumerate(sorted((scope.get("tags") or {}).items())):
        params["sk%d" % i] = key
        params["sv%d" % i] = _strs(values)
        where.append("coalesce(list_contains(CAST($sv{i} AS VARCHAR[]), tags[$sk{i}]), false)".format(i=i))
    prefixes = scope.get("principal_prefixes") or []
    if prefixes:
        parts = []
        for i, prefix in enumerate(prefixes):
            params["sp%d" % i] = prefix
            parts.append("starts_with(principal_arn, $sp%d)" % i)
        where.append("(principal_arn IS NOT NULL AND (" + " OR ".join(parts) + "))")

    n_keys = 2 + len(group_sql)
    sql = (
        "SELECT currency, {period}{groups}, {cost}, sum(tok_input), sum(tok_output), "
        "sum(tok_cache_read), sum(tok_cache_write), count(*){saving} FROM {table} {where} GROUP BY {gb}"
    ).format(
        saving=", CAST(sum(saving16) AS VARCHAR)" if efficiency else "",
        period=period_sql,
        groups="".join(", " + g for g in group_sql),
        cost=cost_sql,
        table=table,
        where=("WHERE " + " AND ".join(where)) if where else "",
        gb=", ".join(str(i) for i in range(1, n_keys + 1)),
    )
    out = []
    for row in con.execute(sql, params).fetchall():
        keys = {"currency": row[0], "period_start": row[1]}
        for i, g in enumerate(group_names):
            keys[g] = row[2 + i]
        r = row[n_keys:]
        out.append(
            {
                "keys": keys,
                "cost": _units(r[0]) if allocation else r[0],
                "input": int(r[2]),
                "output": int(r[3]),
                "cache_read": int(r[4]),
                "cache_write": int(r[5]),
                "line_items": int(r[6]),
            }
        )
        if allocation:
            out[-1]["allocated"] = _units(r[1])
        if efficiency:
            out[-1]["cache_saving"] = _saving(r[7])
            out[-1]["cache_saving_units16"] = str(int(r[7]))
    return out


def run(roots, specs, repeat=0):
    """Answers every query; with repeat > 0 also times the load and each query
    (median of `repeat` runs, in seconds), for the benchmark."""
    started = time.perf_counter()
    con = build(roots)
    load_s = time.perf_counter() - started
    results = {}
    timings = {}
    for q in specs.get("queries", []):
        results[q["id"]] = run_query(con, q)
        if repeat > 0:
            runs = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                run_query(con, q)
                runs.append(time.perf_counter() - t0)
            timings[q["id"]] = statistics.median(runs)
    out = {"results": results, "refused": list(REFUSED)}
    if repeat > 0:
        out["timings"] = {"load_s": load_s, "queries": timings}
    return out


def main(argv):
    args = argv[1:]
    repeat = 0
    if "--repeat" in args:
        at = args.index("--repeat")
        repeat = int(args[at + 1])
        del args[at:at + 2]
    roots = args
    if not roots:
        print(__doc__, file=sys.stderr)
        return 2
    specs = json.load(sys.stdin)
    json.dump(run(roots, specs, repeat), sys.stdout)
    sys.stdout.write("\n")
    return 0


# --------------------------------------------------------------------------------------------
# Self test (hand-computed expectations)
# --------------------------------------------------------------------------------------------

_TEST_COLS = [
    # (name, SQL type used when writing the file)
    ("bill_billing_entity", "VARCHAR"),
    ("bill_payer_account_id", "VARCHAR"),
    ("line_item_usage_account_id", "VARCHAR"),
    ("line_item_line_item_type", "VARCHAR"),
    ("line_item_usage_start_date", None),  # per-file timestamp type
    ("line_item_product_code", "VARCHAR"),
    ("line_item_usage_type", "VARCHAR"),
    ("line_item_iam_principal", "VARCHAR"),
    ("line_item_line_item_description", "VARCHAR"),
    ("line_item_usage_amount", "DOUBLE"),
    ("line_item_unblended_cost", "DOUBLE"),
    ("line_item_net_unblended_cost", "DOUBLE"),
    ("line_item_blended_cost", "DOUBLE"),
    ("pricing_public_on_demand_cost", "DOUBLE"),
    ("line_item_currency_code", "VARCHAR"),
    ("pricing_unit", "VARCHAR"),
    ("product_product_family", "VARCHAR"),
    ("product_region_code", "VARCHAR"),
    ("product", "MAP"),
    ("tags", "MAP"),
]


def _row(**kw):
    d = {
        "bill_billing_entity": "AWS",
        "bill_payer_account_id": "999988887777",
        "line_item_usage_account_id": "111122223333",
        "line_item_line_item_type": "Usage",
        "line_item_usage_start_date": "2026-05-03 10:15:00",
        "line_item_product_code": "AmazonBedrock",
        "line_item_usage_type": None,
        "line_item_iam_principal": None,
        "line_item_line_item_description": None,
        "line_item_usage_amount": None,
        "line_item_unblended_cost": None,
        "line_item_net_unblended_cost": None,
        "line_item_blended_cost": None,
        "pricing_public_on_demand_cost": None,
        "line_item_currency_code": "USD",
        "pricing_unit": None,
        "product_product_family": None,
        "product_region_code": "us-east-1",
        "product": None,
        "tags": None,
    }
    for k, v in kw.items():
        if k not in d:
            raise KeyError(k)
        d[k] = v
    return d


def _write_parquet(con, path, rows, ts_type="TIMESTAMP", drop=(), empty_schema=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if empty_schema:
        con.execute("COPY (SELECT 1::INTEGER AS foo WHERE false) TO '%s' (FORMAT parquet)" % path.replace("'", "''"))
        return
    cols = [(n, t) for n, t in _TEST_COLS if n not in drop]
    con.execute("DROP TABLE IF EXISTS _t")
    ddl = []
    for n, t in cols:
        if t == "MAP":
            ddl.append("%s_k VARCHAR[], %s_v VARCHAR[]" % (n, n))
        elif t is None:
            ddl.append("%s VARCHAR" % n)
        else:
            ddl.append("%s %s" % (n, t))
    con.execute("CREATE TEMP TABLE _t (%s)" % ", ".join(ddl))
    for r in rows:
        vals = []
        for n, t in cols:
            if t == "MAP":
                m = r[n]
                vals.append(None if m is None else list(m.keys()))
                vals.append(None if m is None else list(m.values()))
            else:
                vals.append(r[n])
        con.execute("INSERT INTO _t VALUES (%s)" % ", ".join("?" * len(vals)), vals)
    sel = []
    for n, t in cols:
        if t == "MAP":
            sel.append("CASE WHEN {n}_k IS NULL THEN NULL ELSE MAP({n}_k, {n}_v) END AS {n}".format(n=n))
        elif t is None:
            if ts_type == "TIMESTAMPTZ":
                sel.append("CAST(%s || '+00' AS TIMESTAMPTZ) AS %s" % (n, n))
            else:
                sel.append("CAST(%s AS %s) AS %s" % (n, ts_type, n))
        else:
            sel.append(n)
    con.execute("COPY (SELECT %s FROM _t) TO '%s' (FORMAT parquet)" % (", ".join(sel), path.replace("'", "''")))


def _flip_utc(path, unit_byte):
    """Set isAdjustedToUTC=true on the file's single TIMESTAMP column by patching its thrift footer
    (compact protocol: bool field 1 false=0x12 -> true=0x11, then unit struct; 0x1C MILLIS, 0x3C NANOS).
    DuckDB itself never writes ms/ns timestamps with the UTC flag, Arrow-based writers do."""
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    pat = bytes([0x12, 0x1C, unit_byte, 0x00, 0x00, 0x00])
    assert data.count(pat) == 1, path
    data[data.rfind(pat)] = 0x11
    with open(path, "wb") as fh:
        fh.write(data)


def self_test():
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="cur2_ref_selftest_", dir="/tmp")
    try:
        _self_test_in(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("OK")


def _self_test_in(tmp):
    w = duckdb.connect(":memory:")
    w.execute("SET TimeZone = 'UTC'")
    A = os.path.join(tmp, "root A")  # space in the path on purpose
    B = os.path.join(tmp, "rootB")
    S = "arn:aws:sts::111122223333:assumed-role/AppRole/alice@example.com"
    BOB = "arn:aws:iam::111122223333:user/ops/bob"
    TEAM = "iamPrincipal/team"
    ODD = 'resourceTags/it\'s a "key": \u00e9'
    CLAUDE_MP = "Claude Sonnet 4.6 (Amazon Bedrock Edition)"

    # ---------------- root A, 2026-05: overwrite mode with manifest ----------------
    may1 = [
        # 1: product map model + inference_type; 1.2345 * 1000 = 1234.5 (double) -> 1235
        _row(line_item_iam_principal=S, line_item_usage_type="USE1-Claude4.6Sonnet-input-tokens",
             line_item_usage_amount=1.2345, pricing_unit="1K tokens",
             line_item_unblended_cost=0.0037035, line_item_net_unblended_cost=0.003,
             line_item_blended_cost=0.0037035, pricing_public_on_demand_cost=0.004,
             product={"model": "Claude Sonnet 4.6", "inference_type": "Input tokens"},
             tags={TEAM: "ml", ODD: "v\u00e9"}),
        # 2: no product map -> model from usage type; output 500
        _row(line_item_iam_principal=S,
             line_item_usage_type="USE1-Claude4.6Sonnet-output-tokens-cross-region-global",
             line_item_usage_amount=0.5, pricing_unit="1K tokens",
             line_item_unblended_cost=0.0075, line_item_net_unblended_cost=0.007,
             line_item_blended_cost=0.0075, pricing_public_on_demand_cost=0.0075,
             line_item_usage_start_date="2026-05-03 11:59:59", tags={TEAM: "ml"}),
        # 3: Marketplace, opaque code, unattributed; Units + "Million" -> 0.0025 * 1e6 = 2500 input
        _row(bill_billing_entity="AWS Marketplace", line_item_product_code="abc123opaque",
             line_item_usage_type="USE1-MP:USE1_InputTokenCount-Units",
             line_item_line_item_description="Claude|Sonnet 4.6| Million Input Tokens |x",
             line_item_usage_amount=0.0025, pricing_unit="Units",
             line_item_unblended_cost=0.0075, product={"product_name": CLAUDE_MP},
             line_item_usage_start_date="2026-05-04 00:00:00"),
        # 4: Marketplace cache read, "Thousand" -> 3000; IAM user with path
        _row(bill_billing_entity="AWS Marketplace", line_item_product_code="abc123opaque",
             line_item_iam_principal=BOB,
             line_item_usage_type="USE1-MP:USE1_CacheReadInputTokenCount_Global-Units",
             line_item_line_item_description="a|b|thousand cache read tokens",
             line_item_usage_amount=3.0, pricing_unit=" units ",
             line_item_unblended_cost=0.0009, product={"product_name": CLAUDE_MP},
             tags={TEAM: "web"}),
        # 5: Marketplace, not Bedrock edition, no caller -> excluded
        _row(bill_billing_entity="AWS Marketplace", line_item_product_code="zzz",
             line_item_usage_type="USE1-Whatever", line_item_unblended_cost=50.0,
             product={"product_name": "Some Other Product"}),
        # 6: EC2 without caller -> excluded
        _row(line_item_product_code="AmazonEC2", line_item_usage_type="BoxUsage:t3.micro",
             line_item_unblended_cost=70.0),
        # 7: EC2 WITH a caller -> included (non-empty caller rule); root principal; no '-' in usage type
        _row(line_item_product_code="AmazonEC2", line_item_iam_principal="arn:aws:iam::111122223333:root",
             line_item_usage_type="BoxUsage:t3.micro", line_item_usage_amount=2.0, pricing_unit="Hrs",
             line_item_unblended_cost=0.0208, product_region_code=None),
        # 8: Tax, empty-string principal, NULL usage type
        _row(line_item_line_item_type="Tax", line_item_iam_principal="", line_item_unblended_cost=0.5,
             line_item_net_unblended_cost=0.5, product_region_code=None),
        # 9: Credit on an input usage type: no tokens, on_demand category
        _row(line_item_line_item_type="Credit", line_item_iam_principal=S,
             line_item_usage_type="USE1-Claude4.6Sonnet-input-tokens", line_item_usage_amount=10.0,
             pricing_unit="1K tokens", line_item_unblended_cost=-0.03, line_item_net_unblended_cost=-0.03,
             tags={TEAM: "ml"}),
        # 10: flex, pricing unit 'tokens' (unit 1), 2.5 -> 3 (half away from zero)
        _row(line_item_iam_principal=S, line_item_usage_type="USE1-Nova2.0Lite-input-tokens-flex",
             line_item_usage_amount=2.5, pricing_unit="tokens", line_item_unblended_cost=0.0000000001,
             tags={TEAM: "ml"}),
    ]
    may2 = [
        # 11: mantle, ' 1m TOKENS ' -> 1e6; 0.000123 * 1e6 -> 123 ; role with path
        _row(line_item_iam_principal="arn:aws:iam::444455556666:role/service-role/MyRole",
             line_item_usage_account_id="444455556666",
             line_item_usage_type="USE1-openai.gpt-oss-120b-mantle-input-tokens-standard",
             line_item_usage_amount=0.000123, pricing_unit=" 1m TOKENS ",
             line_item_unblended_cost=0.1234567891, product_region_code="us-west-2",
             line_item_usage_start_date="2026-05-31 23:59:59.999999999"),
        # 12: provisioned throughput, no caller, no tokens
        _row(line_item_usage_type="USE1-Claude-ModelUnits-1Month", line_item_usage_amount=1.0,
             pricing_unit="Hours", line_item_unblended_cost=20.0),
        # 13: batch + inference_type overrides usage type (cache write); empty product model
        _row(line_item_iam_principal="arn:aws-us-gov:sts::444455556666:assumed-role/R1/s/x",
             line_item_usage_type="USE1-Some-Model-Batch-output-tokens", line_item_usage_amount=7.0,
             pricing_unit="1K tokens", line_item_unblended_cost=0.25,
             product={"model": "", "inference_type": "Cache write input tokens"}),
        # 14: EUR, federated user in aws-cn, AmazonBedrockService
        _row(line_item_product_code="AmazonBedrockService",
             line_item_iam_principal="arn:aws-cn:sts::111122223333:federated-user/carol",
             line_item_usage_type="CNN1-Titan-output-tokens", line_item_usage_amount=1.0,
             pricing_unit="1K tokens", line_item_unblended_cost=1.0, line_item_currency_code="EUR"),
        # 16: OTHER principal (short account), in May
        _row(line_item_iam_principal="arn:aws:sts::12345:assumed-role/X/y",
             line_item_usage_type="USE1-Foo-cache-read-input-token-count", line_item_usage_amount=4.0,
             pricing_unit="1K tokens", line_item_unblended_cost=0.004,
             line_item_usage_start_date="2026-05-10 05:00:00"),
    ]
    leftover = [_row(line_item_iam_principal=S, line_item_usage_type="USE1-X-input-tokens",
                     line_item_usage_amount=1.0, pricing_unit="1K tokens", line_item_unblended_cost=1000.0)]
    d = os.path.join(A, "data", "BILLING_PERIOD=2026-05")
    _write_parquet(w, os.path.join(d, "exp-00001.snappy.parquet"), may1, ts_type="TIMESTAMPTZ")
    _write_parquet(w, os.path.join(d, "exp-00002.snappy.parquet"), may2, ts_type="TIMESTAMP_NS")
    # 15: OTHER principal (short account), usage at the June boundary -> outside May (in
    # June's folder: a file may only hold line items of its own billing period)
    june_a = [_row(line_item_iam_principal="arn:aws:sts::12345:assumed-role/X/y",
                   line_item_usage_type="USE1-Foo-cache-read-input-token-count", line_item_usage_amount=4.0,
                   pricing_unit="1K tokens", line_item_unblended_cost=0.004,
                   line_item_usage_start_date="2026-06-01 00:00:00")]
    _write_parquet(w, os.path.join(A, "data", "BILLING_PERIOD=2026-06", "exp-00001.snappy.parquet"), june_a,
                   ts_type="TIMESTAMP_NS")
    # Refused files: their whole period (2026-02, 2026-03 of root A) holds no rows.
    bad = _row(line_item_iam_principal=S, line_item_usage_type="USE1-X-input-tokens",
               line_item_usage_amount=1.0, pricing_unit="1K tokens", line_item_unblended_cost=7.0,
               line_item_usage_start_date="2026-03-02 00:00:00")
    d3 = os.path.join(A, "data", "BILLING_PERIOD=2026-03")
    _write_parquet(w, os.path.join(d3, "exp-00001.snappy.parquet"), [bad])
    _write_parquet(w, os.path.join(d3, "exp-00002.snappy.parquet"),
                   [dict(bad, line_item_unblended_cost=float("nan")), dict(bad, line_item_blended_cost=float("inf")),
                    dict(bad, line_item_usage_start_date="2026-04-01 00:00:00")])
    d2 = os.path.join(A, "data", "BILLING_PERIOD=2026-02")
    _write_parquet(w, os.path.join(d2, "exp-00001.snappy.parquet"),
                   [dict(bad, line_item_usage_start_date="2026-02-02 00:00:00")], drop=("line_item_unblended_cost",))
    _write_parquet(w, os.path.join(d, "exp-00003.snappy.parquet"), leftover)
    os.makedirs(os.path.join(A, "metadata", "BILLING_PERIOD=2026-05"))
    with open(os.path.join(A, "metadata", "BILLING_PERIOD=2026-05", "exp-Manifest.json"), "w") as fh:
        json.dump({"assemblyId": "x", "billingPeriod": {"start": "2026-05-01"},
                   "columns": [{"category": "line_item", "name": "line_item_usage_type"}],
                   "reportKeys": [],
                   "dataFiles": ["s3://bkt/pfx/exp/data/BILLING_PERIOD=2026-05/exp-00001.snappy.parquet",
                                 "s3://bkt/pfx/exp/data/BILLING_PERIOD=2026-05/exp-00002.snappy.parquet"]}, fh)

    # ---------------- root A, 2026-04: no manifest, flat, old schema ----------------
    apr = [
        # 17: no product/tags/principal columns; ms timestamps (UTC flag set below)
        _row(line_item_usage_type="USW2-Claude3Haiku-input-tokens", line_item_usage_amount=2.0,
             pricing_unit="1K tokens", line_item_unblended_cost=0.0005, product_region_code="us-west-2",
             line_item_usage_start_date="2026-04-15 08:30:00"),
        # 18: product family rule with opaque code
        _row(line_item_product_code="Opaque", product_product_family="Amazon Bedrock",
             line_item_usage_type="USW2-Guardrails-TextUnits", line_item_usage_amount=5.0, pricing_unit="Units",
             line_item_unblended_cost=0.15, product_region_code="us-west-2",
             line_item_usage_start_date="2026-04-15 09:00:00"),
        # 19: S3 -> excluded
        _row(line_item_product_code="AmazonS3", line_item_unblended_cost=3.0,
             line_item_usage_start_date="2026-04-15 09:00:00"),
    ]
    d = os.path.join(A, "data", "BILLING_PERIOD=2026-04")
    _write_parquet(w, os.path.join(d, "exp-00001.snappy.parquet"), apr, ts_type="TIMESTAMP_MS",
                   drop=("line_item_iam_principal", "tags", "product"))
    _write_parquet(w, os.path.join(d, "exp-00002.snappy.parquet"), [], empty_schema=True)

    # ---------------- root B, 2026-06: create-new, no manifest ----------------
    d = os.path.join(B, "data", "BILLING_PERIOD=2026-06")
    old = [_row(line_item_usage_type="USE1-X-input-tokens", line_item_unblended_cost=100.0,
                line_item_usage_start_date="2026-06-02 00:00:00")]
    _write_parquet(w, os.path.join(d, "20260601T000000Z-aaa", "exp-00001.snappy.parquet"), old)
    _write_parquet(w, os.path.join(d, "stray-00001.snappy.parquet"), old)
    new = [
        # 20
        _row(line_item_iam_principal=BOB, line_item_usage_type="USE1-Claude4.6Sonnet-input-tokens",
             line_item_usage_amount=1.0, pricing_unit="1M tokens", line_item_unblended_cost=3.0,
             line_item_usage_start_date="2026-06-02 13:00:00",
             bill_payer_account_id="555566667777", tags={TEAM: "web"}),
    ]
    _write_parquet(w, os.path.join(d, "20260602T000000Z-bbb", "exp-00001.snappy.parquet"), new)

    # ---------------- root B, 2026-07: create-new WITH manifest (manifest wins) ----------------
    d = os.path.join(B, "data", "BILLING_PERIOD=2026-07")
    jul = [
        # 21
        _row(line_item_usage_type="USE1-Claude4.6Sonnet-latency-optimized-output-tokens",
             line_item_usage_amount=0.001, pricing_unit="1M tokens", line_item_unblended_cost=0.01,
             line_item_usage_start_date="2026-07-01 00:00:00"),
    ]
    _write_parquet(w, os.path.join(d, "20260701T000000Z-aaa", "exp-00001.snappy.parquet"), jul,
                   ts_type="TIMESTAMP_MS")
    _write_parquet(w, os.path.join(d, "20260702T000000Z-zzz", "exp-00001.snappy.parquet"), old)
    os.makedirs(os.path.join(B, "metadata", "BILLING_PERIOD=2026-07"))
    with open(os.path.join(B, "metadata", "BILLING_PERIOD=2026-07", "Manifest.json"), "w") as fh:
        json.dump({"nested": {"files": [
            "s3://b/p/e/data/BILLING_PERIOD=2026-07/20260701T000000Z-aaa/exp-00001.snappy.parquet"]}}, fh)

    # ---------------- root B, 2026-08: flat, INT64 nanoseconds WITH the UTC annotation ----------------
    d = os.path.join(B, "data", "BILLING_PERIOD=2026-08")
    aug = [
        # 22: empty product map, tag key present with a NULL value (reads as untagged)
        _row(line_item_iam_principal="arn:aws:iam::111122223333:user/BedrockAPIKey-abc",
             line_item_usage_type="USE1-Claude4.6Sonnet-cache-write-input-token-count",
             line_item_usage_amount=0.0005, pricing_unit="1M tokens", line_item_unblended_cost=0.123,
             line_item_usage_start_date="2026-08-31 23:59:59.999999999", product={}, tags={TEAM: None}),
    ]
    _write_parquet(w, os.path.join(d, "exp-00001.snappy.parquet"), aug, ts_type="TIMESTAMP_NS")
    _flip_utc(os.path.join(d, "exp-00001.snappy.parquet"), 0x3C)
    _flip_utc(os.path.join(A, "data", "BILLING_PERIOD=2026-04", "exp-00001.snappy.parquet"), 0x1C)
    for path, want_t in ((os.path.join(d, "exp-00001.snappy.parquet"), "TIMESTAMP WITH TIME ZONE"),
                         (os.path.join(A, "data", "BILLING_PERIOD=2026-04", "exp-00001.snappy.parquet"),
                          "TIMESTAMP WITH TIME ZONE")):
        t = w.execute("SELECT typeof(line_item_usage_start_date) FROM read_parquet($p) LIMIT 1",
                      {"p": path}).fetchone()[0]
        assert t == want_t, (path, t)

    # ---------------- file discovery ----------------
    got = sorted(os.path.relpath(f, tmp) for f in discover_files(A) + discover_files(B))
    want = sorted([
        "root A/data/BILLING_PERIOD=2026-02/exp-00001.snappy.parquet",
        "root A/data/BILLING_PERIOD=2026-03/exp-00001.snappy.parquet",
        "root A/data/BILLING_PERIOD=2026-03/exp-00002.snappy.parquet",
        "root A/data/BILLING_PERIOD=2026-06/exp-00001.snappy.parquet",
        "root A/data/BILLING_PERIOD=2026-04/exp-00001.snappy.parquet",
        "root A/data/BILLING_PERIOD=2026-04/exp-00002.snappy.parquet",
        "root A/data/BILLING_PERIOD=2026-05/exp-00001.snappy.parquet",
        "root A/data/BILLING_PERIOD=2026-05/exp-00002.snappy.parquet",
        "rootB/data/BILLING_PERIOD=2026-06/20260602T000000Z-bbb/exp-00001.snappy.parquet",
        "rootB/data/BILLING_PERIOD=2026-07/20260701T000000Z-aaa/exp-00001.snappy.parquet",
        "rootB/data/BILLING_PERIOD=2026-08/exp-00001.snappy.parquet",
    ])
    assert got == want, got

    # ---------------- row-level normalisation ----------------
    con = build([A, B])
    refused = sorted((r["period"], r["file"], r["kind"], json.dumps(r["detail"], sort_keys=True))
                     for r in REFUSED)
    want_refused = [
        ("2026-02", "data/BILLING_PERIOD=2026-02/exp-00001.snappy.parquet", "columns",
         json.dumps({"missing": ["line_item_unblended_cost"], "wrong": []}, sort_keys=True)),
        ("2026-03", "data/BILLING_PERIOD=2026-03/exp-00002.snappy.parquet", "cells",
         json.dumps({"amounts": {"line_item_unblended_cost": {"non_finite": 1, "non_numeric": 0, "too_large": 0},
                                 "line_item_blended_cost": {"non_finite": 1, "non_numeric": 0, "too_large": 0}},
                     "undated": 0, "out_of_period": 1}, sort_keys=True)),
    ]
    if refused != want_refused:
        raise AssertionError("refused files: got %r, want %r" % (refused, want_refused))
    in_refused = con.execute(
        "SELECT count(*) FROM raw WHERE period IN ('2026-02', '2026-03')").fetchone()[0]
    if in_refused:
        raise AssertionError("a refused period still holds %d rows" % in_refused)
    norm = con.execute(
        "SELECT strftime(usage_start, '%Y-%m-%d %H:%M:%S.%f'), currency, principal_arn, principal_role, "
        "principal_account, model, usage_category, region, tok_input, tok_output, tok_cache_read, "
        "tok_cache_write, CAST(cost_unblended AS VARCHAR) FROM norm ORDER BY ALL").fetchall()
    R1 = "arn:aws:iam::111122223333:role/AppRole"
    want_rows = sorted([
        ("2026-05-03 10:15:00.000000", "USD", S, R1, "111122223333", "Claude Sonnet 4.6", "on_demand",
         "us-east-1", 1235, 0, 0, 0, "0.0037035000"),
        ("2026-05-03 11:59:59.000000", "USD", S, R1, "111122223333", "Claude4.6Sonnet", "on_demand",
         "us-east-1", 0, 500, 0, 0, "0.0075000000"),
        ("2026-05-04 00:00:00.000000", "USD", None, None, None, "Claude Sonnet 4.6", "on_demand",
         "us-east-1", 2500, 0, 0, 0, "0.0075000000"),
        ("2026-05-03 10:15:00.000000", "USD", BOB, BOB, "111122223333", "Claude Sonnet 4.6", "on_demand",
         "us-east-1", 0, 0, 3000, 0, "0.0009000000"),
        ("2026-05-03 10:15:00.000000", "USD", "arn:aws:iam::111122223333:root",
         "arn:aws:iam::111122223333:root", "111122223333", "BoxUsage:t3.micro", "other",
         "", 0, 0, 0, 0, "0.0208000000"),
        ("2026-05-03 10:15:00.000000", "USD", None, None, None, "", "other", "", 0, 0, 0, 0, "0.5000000000"),
        ("2026-05-03 10:15:00.000000", "USD", S, R1, "111122223333", "Claude4.6Sonnet", "on_demand",
         "us-east-1", 0, 0, 0, 0, "-0.0300000000"),
        ("2026-05-03 10:15:00.000000", "USD", S, R1, "111122223333", "Nova2.0Lite", "flex",
         "us-east-1", 3, 0, 0, 0, "0.0000000001"),
        ("2026-05-31 23:59:59.999999", "USD", "arn:aws:iam::444455556666:role/service-role/MyRole",
         "arn:aws:iam::444455556666:role/service-role/MyRole", "444455556666", "openai.gpt-oss-120b",
         "on_demand", "us-west-2", 123, 0, 0, 0, "0.1234567891"),
        ("2026-05-03 10:15:00.000000", "USD", None, None, None, "Claude-ModelUnits-1Month",
         "provisioned_throughput", "us-east-1", 0, 0, 0, 0, "20.0000000000"),
        ("2026-05-03 10:15:00.000000", "USD", "arn:aws-us-gov:sts::444455556666:assumed-role/R1/s/x",
         "arn:aws-us-gov:iam::444455556666:role/R1", "444455556666", "Some-Model-Batch", "batch",
         "us-east-1", 0, 0, 0, 7000, "0.2500000000"),
        ("2026-05-03 10:15:00.000000", "EUR", "arn:aws-cn:sts::111122223333:federated-user/carol",
         "arn:aws-cn:sts::111122223333:federated-user/carol", "111122223333", "Titan", "on_demand",
         "us-east-1", 0, 1000, 0, 0, "1.0000000000"),
        ("2026-06-01 00:00:00.000000", "USD", "arn:aws:sts::12345:assumed-role/X/y",
         "arn:aws:sts::12345:assumed-role/X/y", "arn:aws:sts::12345:assumed-role/X/y", "Foo", "on_demand",
         "us-east-1", 0, 0, 4000, 0, "0.0040000000"),
        ("2026-05-10 05:00:00.000000", "USD", "arn:aws:sts::12345:assumed-role/X/y",
         "arn:aws:sts::12345:assumed-role/X/y", "arn:aws:sts::12345:assumed-role/X/y", "Foo", "on_demand",
         "us-east-1", 0, 0, 4000, 0, "0.0040000000"),
        ("2026-04-15 08:30:00.000000", "USD", None, None, None, "Claude3Haiku", "on_demand", "us-west-2",
         2000, 0, 0, 0, "0.0005000000"),
        ("2026-04-15 09:00:00.000000", "USD", None, None, None, "Guardrails-TextUnits", "other", "us-west-2",
         0, 0, 0, 0, "0.1500000000"),
        ("2026-06-02 13:00:00.000000", "USD", BOB, BOB, "111122223333", "Claude4.6Sonnet", "on_demand",
         "us-east-1", 1000000, 0, 0, 0, "3.0000000000"),
        ("2026-07-01 00:00:00.000000", "USD", None, None, None, "Claude4.6Sonnet-latency-optimized",
         "latency_optimized", "us-east-1", 0, 1000, 0, 0, "0.0100000000"),
        ("2026-08-31 23:59:59.999999", "USD", "arn:aws:iam::111122223333:user/BedrockAPIKey-abc",
         "arn:aws:iam::111122223333:user/BedrockAPIKey-abc", "111122223333", "Claude4.6Sonnet", "on_demand",
         "us-east-1", 0, 0, 0, 500, "0.1230000000"),
    ], key=lambda r: tuple("" if v is None else str(v) for v in r))
    norm_sorted = sorted(norm, key=lambda r: tuple("" if v is None else str(v) for v in r))
    if norm_sorted != want_rows:
        for a, b in zip(norm_sorted, want_rows):
            if a != b:
                print("got ", a, "\nwant", b, file=sys.stderr)
        raise AssertionError("normalised rows differ (%d vs %d)" % (len(norm_sorted), len(want_rows)))

    # ---------------- queries through the public interface ----------------
    MAY = {"start": "2026-05-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"}

    def q(qid, **kw):
        d = dict(MAY)
        d.update({"id": qid, "metric": "unblended", "granularity": "none", "group_by": []})
        d.update(kw)
        return d

    specs = {"queries": [
        q("total"),
        q("net", metric="net_unblended"),
        q("pod", metric="public_on_demand", filter={"principals": [S]}),
        q("by_role", group_by=["principal_role"], filter={"line_item_types": ["Usage"]}),
        q("by_tag", group_by=["tag", "tag2"], tag_key=TEAM, tag_key2=ODD),
        q("tag_filter", filter={"tags": [{"key": TEAM, "values": ["web"], "untagged": True}]},
          group_by=["principal_account"]),
        q("tag_odd", filter={"tags": [{"key": ODD, "values": ["v\u00e9"]}]}),
        q("unattributed", filter={"principals": [""], "regions": [""]}),
        q("daily", granularity="daily", group_by=["usage_category"],
          filter={"usage_categories": ["on_demand", "flex"], "account_ids": ["111122223333"]}),
        q("all_monthly", start="2026-01-01T00:00:00Z", end="2027-01-01T00:00:00Z", granularity="monthly",
          filter={"models": ["Claude4.6Sonnet", "Claude Sonnet 4.6"], "payer_account_ids": ["555566667777"]}),
        q("aug", start="2026-08-01T00:00:00Z", end="2026-09-01T00:00:00Z", group_by=["tag"], tag_key=TEAM,
          filter={"tags": [{"key": TEAM, "values": [], "untagged": True}]}),
        q("jul_ms", start="2026-07-01T00:00:00Z", end="2026-07-01T00:00:00.001Z", granularity="daily"),
        q("hourly", granularity="hourly", group_by=["model", "account", "region", "line_item_type"],
          filter={"principals": [S]}),
    ]}
    res = run([A, B], specs)["results"]
    json.dumps(res)  # must be serialisable

    def canon(rows):
        return sorted(json.dumps(r, sort_keys=True) for r in rows)

    def r(keys, cost, i=0, o=0, cr=0, cw=0, n=0):
        return {"keys": keys, "cost": cost, "input": i, "output": o, "cache_read": cr, "cache_write": cw,
                "line_items": n}

    N = None
    expect = {
        # USD May rows: 1,2,3,4,7,8,9,10,11,12,13,16 ; EUR row 14
        # unblended USD: .0037035+.0075+.0075+.0009+.0208+.5-.03+.0000000001+.1234567891+20+.25+.004
        "total": [
            r({"currency": "USD", "period_start": N}, "20.8878602892", 1235 + 2500 + 3 + 123, 500, 3000 + 4000,
              7000, 12),
            r({"currency": "EUR", "period_start": N}, "1.0000000000", 0, 1000, 0, 0, 1),
        ],
        # net: rows 1 (.003), 2 (.007), 8 (.5), 9 (-.03); rest NULL -> 0
        "net": [
            r({"currency": "USD", "period_start": N}, "0.4800000000", 3861, 500, 7000, 7000, 12),
            r({"currency": "EUR", "period_start": N}, "0.0000000000", 0, 1000, 0, 0, 1),
        ],
        # rows 1,2,9,10 : .004 + .0075 + 0 + 0
        "pod": [r({"currency": "USD", "period_start": N}, "0.0115000000", 1238, 500, 0, 0, 4)],
        # Usage rows only (8 Tax, 9 Credit dropped)
        "by_role": [
            r({"currency": "USD", "period_start": N, "principal_role": R1}, "0.0112035001", 1238, 500, 0, 0, 3),
            r({"currency": "USD", "period_start": N, "principal_role": N}, "20.0075000000", 2500, 0, 0, 0, 2),
            r({"currency": "USD", "period_start": N, "principal_role": BOB}, "0.0009000000", 0, 0, 3000, 0, 1),
            r({"currency": "USD", "period_start": N, "principal_role": "arn:aws:iam::111122223333:root"},
              "0.0208000000", 0, 0, 0, 0, 1),
            r({"currency": "USD", "period_start": N,
               "principal_role": "arn:aws:iam::444455556666:role/service-role/MyRole"},
              "0.1234567891", 123, 0, 0, 0, 1),
            r({"currency": "USD", "period_start": N, "principal_role": "arn:aws-us-gov:iam::444455556666:role/R1"},
              "0.2500000000", 0, 0, 0, 7000, 1),
            r({"currency": "USD", "period_start": N, "principal_role": "arn:aws:sts::12345:assumed-role/X/y"},
              "0.0040000000", 0, 0, 4000, 0, 1),
            r({"currency": "EUR", "period_start": N,
               "principal_role": "arn:aws-cn:sts::111122223333:federated-user/carol"},
              "1.0000000000", 0, 1000, 0, 0, 1),
        ],
        # team=ml: rows 1,2,9,10 (row 1 also has ODD=vé); team=web: row 4; untagged: 3,7,8,11,12,13,16 (+EUR 14)
        "by_tag": [
            r({"currency": "USD", "period_start": N, "tag": "ml", "tag2": "v\u00e9"}, "0.0037035000", 1235, 0, 0, 0, 1),
            r({"currency": "USD", "period_start": N, "tag": "ml", "tag2": N}, "-0.0224999999", 3, 500, 0, 0, 3),
            r({"currency": "USD", "period_start": N, "tag": "web", "tag2": N}, "0.0009000000", 0, 0, 3000, 0, 1),
            r({"currency": "USD", "period_start": N, "tag": N, "tag2": N}, "20.9057567891", 2623, 0, 4000, 7000, 7),
            r({"currency": "EUR", "period_start": N, "tag": N, "tag2": N}, "1.0000000000", 0, 1000, 0, 0, 1),
        ],
        # web or untagged: 4 | 3,7,8,11,12,13,16,14
        "tag_filter": [
            r({"currency": "USD", "period_start": N, "principal_account": "111122223333"}, "0.0217000000",
              0, 0, 3000, 0, 2),
            r({"currency": "USD", "period_start": N, "principal_account": N}, "20.5075000000", 2500, 0, 0, 0, 3),
            r({"currency": "USD", "period_start": N, "principal_account": "444455556666"}, "0.3734567891",
              123, 0, 0, 7000, 2),
            r({"currency": "USD", "period_start": N, "principal_account": "arn:aws:sts::12345:assumed-role/X/y"},
              "0.0040000000", 0, 0, 4000, 0, 1),
            r({"currency": "EUR", "period_start": N, "principal_account": "111122223333"}, "1.0000000000",
              0, 1000, 0, 0, 1),
        ],
        "tag_odd": [r({"currency": "USD", "period_start": N}, "0.0037035000", 1235, 0, 0, 0, 1)],
        # unattributed AND region '' : row 8 only
        "unattributed": [r({"currency": "USD", "period_start": N}, "0.5000000000", 0, 0, 0, 0, 1)],
        # account 111122223333, on_demand|flex: rows 1,2,3,4,9 (05-03/05-04), 10 flex, 16 (05-10); EUR 14
        "daily": [
            r({"currency": "USD", "period_start": "2026-05-03T00:00:00Z", "usage_category": "on_demand"},
              "-0.0178965000", 1235, 500, 3000, 0, 4),
            r({"currency": "USD", "period_start": "2026-05-03T00:00:00Z", "usage_category": "flex"},
              "0.0000000001", 3, 0, 0, 0, 1),
            r({"currency": "USD", "period_start": "2026-05-04T00:00:00Z", "usage_category": "on_demand"},
              "0.0075000000", 2500, 0, 0, 0, 1),
            r({"currency": "USD", "period_start": "2026-05-10T00:00:00Z", "usage_category": "on_demand"},
              "0.0040000000", 0, 0, 4000, 0, 1),
            r({"currency": "EUR", "period_start": "2026-05-03T00:00:00Z", "usage_category": "on_demand"},
              "1.0000000000", 0, 1000, 0, 0, 1),
        ],
        # payer 555566667777 only row 20 (June)
        "all_monthly": [r({"currency": "USD", "period_start": "2026-06-01T00:00:00Z"}, "3.0000000000",
                          1000000, 0, 0, 0, 1)],
        "aug": [r({"currency": "USD", "period_start": N, "tag": N}, "0.1230000000", 0, 0, 0, 500, 1)],
        "jul_ms": [r({"currency": "USD", "period_start": "2026-07-01T00:00:00Z"}, "0.0100000000", 0, 1000, 0, 0, 1)],
        "hourly": [
            r({"currency": "USD", "period_start": "2026-05-03T10:00:00Z", "model": "Claude Sonnet 4.6",
               "account": "111122223333", "region": "us-east-1", "line_item_type": "Usage"},
              "0.0037035000", 1235, 0, 0, 0, 1),
            r({"currency": "USD", "period_start": "2026-05-03T11:00:00Z", "model": "Claude4.6Sonnet",
               "account": "111122223333", "region": "us-east-1", "line_item_type": "Usage"},
              "0.0075000000", 0, 500, 0, 0, 1),
            r({"currency": "USD", "period_start": "2026-05-03T10:00:00Z", "model": "Claude4.6Sonnet",
               "account": "111122223333", "region": "us-east-1", "line_item_type": "Credit"},
              "-0.0300000000", 0, 0, 0, 0, 1),
            r({"currency": "USD", "period_start": "2026-05-03T10:00:00Z", "model": "Nova2.0Lite",
               "account": "111122223333", "region": "us-east-1", "line_item_type": "Usage"},
              "0.0000000001", 3, 0, 0, 0, 1),
        ],
    }
    for qid, want_q in expect.items():
        if canon(res[qid]) != canon(want_q):
            print("query %s\n got: %s\nwant: %s" % (qid, json.dumps(res[qid], sort_keys=True, indent=1),
                                                    json.dumps(want_q, sort_keys=True, indent=1)), file=sys.stderr)
            raise AssertionError("query %s differs" % qid)
    assert set(res) == set(expect)

    # ---------------- the CLI end to end ----------------
    import subprocess

    p = subprocess.run([sys.executable, os.path.abspath(__file__), A, B], input=json.dumps(specs),
                       capture_output=True, text=True, check=True)
    cli = json.loads(p.stdout)["results"]
    for qid in expect:
        assert canon(cli[qid]) == canon(expect[qid]), qid

    _self_test_shapes_2026(w, tmp)


def _self_test_shapes_2026(w, tmp):
    """The usage-type shapes seen in 2026 (contract section 5), one line item each, in a root of
    their own: token kind, token count (capacity: none), model, usage category and routing."""
    C = os.path.join(tmp, "rootC")
    S = "arn:aws:sts::111122223333:assumed-role/AppRole/alice@example.com"

    def u(ut, amount, cost, **kw):
        kw.setdefault("line_item_iam_principal", S)
        return _row(line_item_usage_type=ut, line_item_usage_amount=amount, pricing_unit="1K tokens",
                    line_item_unblended_cost=cost, **kw)

    rows = [
        # geographic cross-region routing
        u("USE1-Claude4.5Sonnet-input-tokens-cross-region-geo", 2.0, 0.0066),
        u("EUC1-Claude4.5Sonnet-Output-Tokens-Cross-Region-Geo", 0.5, 0.0075),
        # mantle: `cache-write-tokens`, then routing and tier
        u("USW2-anthropic.claude-opus-4-8-mantle-cache-write-tokens-global-standard", 3.0, 0.01875),
        u("USW2-anthropic.claude-opus-4-8-mantle-cache-read-tokens-global-standard", 4.0, 0.002),
        u("USW2-anthropic.claude-opus-4-8-mantle-input-tokens-global-flex", 1.0, 0.0025),
        # one-hour cache writes, both spellings; inference_type agrees
        u("USE1-Claude4.6Opus-cache-write-1h-input-token-count", 5.0, 0.05),
        u("USE1-Claude4.6Opus-cache-write-1h-tokens", 6.0, 0.06,
          product={"inference_type": "Cache write input tokens"}),
        # reserved capacity: names input tokens (usage type AND inference_type), no caller: no tokens
        u("USE1-Claude4.5Sonnet-reserved-3-month-input-tokens-per-minute-cross-region-geo", 1440.0, 250.0,
          line_item_iam_principal=None, product={"inference_type": "Input tokens"}),
        # provisioned throughput that names a token kind: no tokens either
        u("USE1-ProvisionedThroughput-Claude-output-tokens-ModelUnits", 24.0, 480.0,
          line_item_iam_principal=None),
        # Marketplace `_Global`
        u("USE1-MP:USE1_CacheReadInputTokenCount_Global-Units", 1.0, 0.0003,
          bill_billing_entity="AWS Marketplace", line_item_product_code="abc123opaque",
          product={"product_name": "Claude Sonnet 4.6 (Amazon Bedrock Edition)"}),
    ]
    d = os.path.join(C, "data", "BILLING_PERIOD=2026-05")
    _write_parquet(w, os.path.join(d, "exp-00001.snappy.parquet"), rows)
    con = build([C])
    got = con.execute(
        "SELECT model, kind, usage_category, routing, tok_input, tok_output, tok_cache_read, tok_cache_write, "
        "CAST(cost_unblended AS VARCHAR) FROM norm ORDER BY ALL").fetchall()
    want = sorted([
        ("Claude4.5Sonnet", "input", "on_demand", "cross_region_geographic", 2000, 0, 0, 0, "0.0066000000"),
        ("Claude4.5Sonnet", "output", "on_demand", "cross_region_geographic", 0, 500, 0, 0, "0.0075000000"),
        ("anthropic.claude-opus-4-8", "cache_write", "on_demand", "cross_region_global", 0, 0, 0, 3000,
         "0.0187500000"),
        ("anthropic.claude-opus-4-8", "cache_read", "on_demand", "cross_region_global", 0, 0, 4000, 0,
         "0.0020000000"),
        ("anthropic.claude-opus-4-8", "input", "flex", "cross_region_global", 1000, 0, 0, 0, "0.0025000000"),
        ("Claude4.6Opus", "cache_write", "on_demand", "in_region", 0, 0, 0, 5000, "0.0500000000"),
        ("Claude4.6Opus", "cache_write", "on_demand", "in_region", 0, 0, 0, 6000, "0.0600000000"),
        ("Claude4.5Sonnet", "none", "reserved", "cross_region_geographic", 0, 0, 0, 0, "250.0000000000"),
        ("ProvisionedThroughput-Claude", "none", "provisioned_throughput", "in_region", 0, 0, 0, 0,
         "480.0000000000"),
        ("Claude Sonnet 4.6", "cache_read", "on_demand", "cross_region_global", 0, 0, 1000, 0, "0.0003000000"),
    ])
    assert got == want, "\n".join(map(str, got))
    # routing as a dimension and as a filter, through the public interface
    spec = {"start": "2026-05-01T00:00:00Z", "end": "2026-06-01T00:00:00Z", "metric": "unblended",
            "granularity": "none"}
    by_routing = run_query(con, dict(spec, group_by=["routing"]))
    got = sorted((r["keys"]["routing"], r["cost"], r["input"], r["output"], r["cache_read"], r["cache_write"],
                  r["line_items"]) for r in by_routing)
    assert got == [
        ("cross_region_geographic", "250.0141000000", 2000, 500, 0, 0, 3),
        ("cross_region_global", "0.0235500000", 1000, 0, 5000, 3000, 4),
        ("in_region", "480.1100000000", 0, 0, 0, 11000, 3),
    ], got
    geo = run_query(con, dict(spec, group_by=["usage_category"], filter={"routings": ["cross_region_geographic"]}))
    got = sorted((r["keys"]["usage_category"], r["cost"], r["input"], r["output"], r["line_items"]) for r in geo)
    assert got == [("on_demand", "0.0141000000", 2000, 500, 2), ("reserved", "250.0000000000", 0, 0, 1)], got


if __name__ == "__main__":
    if "--self-test" in sys.argv[1:]:
        self_test()
        sys.exit(0)
    sys.exit(main(sys.argv))
