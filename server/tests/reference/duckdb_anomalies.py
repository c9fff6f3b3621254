#!/usr/bin/env python3
"""Independent reference for SpendAnomalies, in plain DuckDB SQL.

The daily spend per group comes from duckdb_reference.py (the data contract's rules,
filters and scope as SQL, grouped by day and one dimension) over the examined range and
the baseline window before it; the window statistics are SQL below: for each day on
which a group has line items, the window's days from the group's first day with line
items in it, zero-filled, their median (the mean of the two middle values for an even
count) and the median absolute deviation around it, exact in HUGEINT quarters of
1e-10, then rounded half-even to units of 1e-10 (the reported baseline and MAD); then
the rules of docs/anomalies.md for SPIKE and NEW on those reported values.

Usage:
    python3 duckdb_anomalies.py ROOT [ROOT ...] < queries.json > anomalies.json
    python3 duckdb_anomalies.py --self-test      # prints OK, or fails with a traceback

Each query: {"id", "start", "end" (whole UTC days, RFC 3339), "dimension" (a group_by
name of duckdb_reference.py: principal_arn, principal_role, principal_account, tag,
model), "tag_key", "metric", "filter", "scope", "baseline_days", "min_factor",
"min_robust_z", "min_excess"}. Answers: {"results": {id: [anomaly, ...]}} in the
service's order; amounts are decimal strings, robust_z and factor strings of doubles
("inf" for an infinite z) or null.
"""

import datetime
import json
import os
import sys
from decimal import Decimal

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import duckdb_reference as ref  # noqa: E402

SCORED_SQL = r"""
CREATE OR REPLACE TEMP TABLE scored AS
WITH s AS (
    SELECT currency, grp, day, n,
           CAST(CAST(cost AS DECIMAL(38,10)) * 10000000000 AS HUGEINT) AS u
    FROM series
), examined AS (
    SELECT e.*,
           (SELECT min(w.day) FROM s w
             WHERE w.currency = e.currency AND w.grp IS NOT DISTINCT FROM e.grp
               AND w.day >= e.day - CAST($b AS INTEGER) AND w.day < e.day)     AS first_day,
           -- the data (every line item, not only the series) covers the whole window
           e.day - CAST($b AS INTEGER) >= CAST($data_first AS DATE)            AS covered
    FROM s e
    WHERE e.day >= $first AND e.day < $end
), filled AS (
    -- the window's days from the group's first day with line items, zero-filled
    SELECT x.currency, x.grp, x.day, list_sort(list(coalesce(w.u, 0))) AS v
    FROM examined x
    JOIN range(1, $b + 1) k(k) ON x.day - CAST(k.k AS INTEGER) >= x.first_day
    LEFT JOIN s w ON w.currency = x.currency AND w.grp IS NOT DISTINCT FROM x.grp
                 AND w.day = x.day - CAST(k.k AS INTEGER)
    GROUP BY x.currency, x.grp, x.day
), med AS (
    -- the median in quarters of 1e-10: exact for an odd or an even count
    SELECT *, len(v) AS cnt,
           CASE WHEN len(v) % 2 = 1 THEN 4 * v[(len(v) + 1) // 2]
                ELSE 2 * (v[len(v) // 2] + v[len(v) // 2 + 1]) END            AS med_q
    FROM filled
), dev AS (
    SELECT *, list_sort(list_transform(v, lambda x: abs(4 * x - med_q)))    AS d
    FROM med
), exact_stats AS (
    SELECT currency, grp, day, cnt, med_q,
           CASE WHEN cnt % 2 = 1 THEN d[(cnt + 1) // 2]
                ELSE (d[cnt // 2] + d[cnt // 2 + 1]) // 2 END                 AS mad_q
    FROM dev
), floored AS (
    -- floor division by 4 and the remainder, for negative amounts too
    SELECT *,
           (med_q - ((med_q % 4) + 4) % 4) // 4 AS med_f, ((med_q % 4) + 4) % 4 AS med_r,
           (mad_q - ((mad_q % 4) + 4) % 4) // 4 AS mad_f, ((mad_q % 4) + 4) % 4 AS mad_r
    FROM exact_stats
), stats AS (
    -- half-even to units of 1e-10: the reported baseline and MAD
    SELECT currency, grp, day, cnt,
           med_f + CASE WHEN med_r > 2 OR (med_r = 2 AND med_f % 2 <> 0) THEN 1 ELSE 0 END AS base,
           mad_f + CASE WHEN mad_r > 2 OR (mad_r = 2 AND mad_f % 2 <> 0) THEN 1 ELSE 0 END AS mad
    FROM floored
)
    SELECT x.currency, x.grp, x.day, x.u, x.n,
           x.first_day IS NULL AND x.covered                                   AS is_new,
           x.first_day IS NULL AND NOT x.covered                               AS no_baseline,
           x.first_day IS NULL                                                 AS empty_window,
           coalesce(t.cnt, 0)                                                  AS cnt,
           coalesce(t.base, 0)                                                 AS base,
           coalesce(t.mad, 0)                                                  AS mad,
           x.u - coalesce(t.base, 0)                                           AS excess,
           CASE WHEN x.first_day IS NULL THEN NULL
                WHEN t.mad = 0 THEN CAST('inf' AS DOUBLE)
                ELSE CAST(x.u - t.base AS DOUBLE) / (1.4826 * CAST(t.mad AS DOUBLE))
           END                                                                 AS z,
           CASE WHEN x.first_day IS NOT NULL AND t.base > 0
                THEN CAST(x.u AS DOUBLE) / CAST(t.base AS DOUBLE) END          AS factor
    FROM examined x
    LEFT JOIN stats t ON t.currency = x.currency AND t.grp IS NOT DISTINCT FROM x.grp
                     AND t.day = x.day
"""

ANOMALIES_SQL = r"""
SELECT currency, grp, strftime(day, '%Y-%m-%d'), is_new, CAST(u AS VARCHAR), n,
       CAST(base AS VARCHAR), CAST(mad AS VARCHAR), CAST(excess AS VARCHAR), z, factor, cnt
FROM scored
WHERE (is_new AND u > 0 AND u >= CAST($min_excess AS HUGEINT))
   -- a spike needs a positive median: a zero one (spending on half or fewer of the
   -- counted days: weekly jobs, occasional users) is not compared
   -- and at least a week of counted days (all of the window when it is shorter)
   OR (NOT empty_window AND cnt >= least(CAST($b AS INTEGER), 7) AND base > 0 AND excess > 0 AND excess >= CAST($min_excess AS HUGEINT)
       AND CAST($f_den AS HUGEINT) * u >= CAST($f_num AS HUGEINT) * base
       AND z >= CAST($min_z AS DOUBLE))
ORDER BY excess DESC, grp NULLS FIRST, currency, day
"""

# Groups (per currency) with an examined day whose window starts before the first day
# of data and holds none of their line items: no baseline yet (the answer's note).
NO_BASELINE_SQL = "SELECT count(*) FROM (SELECT DISTINCT currency, grp FROM scored WHERE no_baseline)"


def _day(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).date()


def _units(text):
    """Units of 1e-10 of a decimal string (exact)."""
    return int(Decimal(text).scaleb(10))


def _amount(text):
    """A HUGEINT count of units of 1e-10 as an exact decimal string."""
    return format(Decimal(int(text)).scaleb(-10), "f")


def anomalies(con, q):
    """The anomalies of one query: its daily series from duckdb_reference.py's grouping,
    then the window statistics of series_anomalies()."""
    b = int(q.get("baseline_days") or 14)
    series_start = _day(q["start"]) - datetime.timedelta(days=b)
    spec = {
        "start": series_start.isoformat() + "T00:00:00Z",
        "end": q["end"],
        "metric": q.get("metric", "unblended"),
        "granularity": "daily",
        "group_by": [q["dimension"]],
        "filter": q.get("filter") or {},
        "scope": q.get("scope") or {},
    }
    if q.get("tag_key") is not None:
        spec["tag_key"] = q["tag_key"]
    rows = ref.run_query(con, spec)
    _series_table(con, [
        (r["keys"]["currency"], r["keys"][q["dimension"]],
         r["keys"]["period_start"][:10], r["cost"], r["line_items"])
        for r in rows
    ])
    data_first = con.execute("SELECT CAST(min(usage_start) AS DATE) FROM norm").fetchone()[0]
    return series_anomalies(con, q, data_first)


def _series_table(con, rows):
    """The daily series: (currency, group, YYYY-MM-DD, cost as a decimal string, line items)."""
    con.execute("CREATE OR REPLACE TEMP TABLE series "
                "(currency VARCHAR, grp VARCHAR, day DATE, cost VARCHAR, n BIGINT)")
    if rows:
        con.executemany("INSERT INTO series VALUES (?, ?, CAST(? AS DATE), ?, ?)", rows)


def series_anomalies(con, q, data_first):
    """The anomalies of the `series` table for the thresholds of `q`, the data starting
    on `data_first` (a date: the first day of any line item), and the number of groups
    without a baseline yet."""
    b = int(q.get("baseline_days") or 14)
    num, den = Decimal(str(q.get("min_factor") or "3")).as_integer_ratio()
    con.execute(SCORED_SQL, {
        "b": b,
        "first": _day(q["start"]),
        "end": _day(q["end"]),
        # no data: no window is covered
        "data_first": data_first or datetime.date.max,
    })
    params = {
        "b": b,
        "min_excess": _units(str(q.get("min_excess") or "1")),
        "f_num": num,
        "f_den": den,
        "min_z": float(q["min_robust_z"]) if q.get("min_robust_z") is not None else 3.5,
    }
    out = []
    for r in con.execute(ANOMALIES_SQL, params).fetchall():
        currency, grp, day, is_new, u, n, base, mad, excess, z, factor, cnt = r
        out.append(
            {
                "currency": currency,
                "group": grp,
                "day": day,
                "kind": "new" if is_new else "spike",
                "observed": _amount(u),
                "line_items": int(n),
                "baseline": _amount(base),
                "mad": _amount(mad),
                "excess": _amount(excess),
                "robust_z": None if z is None else repr(float(z)),
                "factor": None if factor is None else repr(float(factor)),
                "counted_days": int(cnt),
            }
        )
    return out, con.execute(NO_BASELINE_SQL).fetchone()[0]


def self_test():
    """Hand-computed expectations on a series written here (no files): an even window
    whose median falls on half of 1e-10 (rounded half-even) and whose MAD is one unit,
    a new group, a zero median from zero-filled days (not compared), a factor met
    exactly, a new group below min_excess, groups without a baseline yet."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    _series_table(con, [
        ("USD", "a", "2026-01-06", "1.0000000001", 1),
        ("USD", "a", "2026-01-07", "1.0000000002", 1),
        ("USD", "a", "2026-01-08", "1.0000000003", 1),
        ("USD", "a", "2026-01-09", "1.0000000009", 1),
        ("USD", "a", "2026-01-10", "10", 3),
        ("USD", "b", "2026-01-12", "5", 2),
        ("USD", "c", "2026-01-07", "2", 1),
        ("USD", "c", "2026-01-11", "3", 1),
        ("USD", None, "2026-01-13", "0.5", 1),
        ("EUR", "d", "2026-01-08", "4", 1),
        ("EUR", "d", "2026-01-09", "4", 1),
        ("EUR", "d", "2026-01-10", "4", 1),
        ("EUR", "d", "2026-01-11", "4", 1),
        ("EUR", "d", "2026-01-12", "12", 1),
    ])
    data_first = datetime.date(2026, 1, 6)
    q = {"start": "2026-01-10T00:00:00Z", "end": "2026-01-14T00:00:00Z", "baseline_days": 4}
    got, without = series_anomalies(con, q, data_first)
    brief = [(a["group"], a["currency"], a["day"], a["kind"], a["baseline"], a["mad"],
              a["excess"], a["counted_days"], a["robust_z"], a["factor"]) for a in got]
    want = [
        # median (1.0000000002 + 1.0000000003) / 2 -> 1.0000000002 (half-even); deviations
        # 1.5, 0.5, 0.5, 6.5 units -> MAD 1 unit
        ("a", "USD", "2026-01-10", "spike", "1.0000000002", "0.0000000001", "8.9999999998", 4,
         repr(89999999998 / (1.4826 * 1)), repr(100000000000 / 10000000002)),
        # 4, 4, 4, 4 -> median 4, MAD 0: infinite z; 12 is exactly 3 x 4
        ("d", "EUR", "2026-01-12", "spike", "4.0000000000", "0.0000000000", "8.0000000000", 4,
         "inf", "3.0"),
        # c on 2026-01-11: 2, 0, 0, 0 (zero-filled from its first day with line items)
        # has a median of zero: not compared
        ("b", "USD", "2026-01-12", "new", "0.0000000000", "0.0000000000", "5.0000000000", 0,
         None, None),
    ]
    assert (brief, without) == (want, 0), "\n%r\n%r" % (brief, want)
    # From the second day of data on: c's 2026-01-07 and d's 2026-01-08 have windows that
    # start before the data and hold none of their line items.
    earlier, without = series_anomalies(con, {**q, "start": "2026-01-07T00:00:00Z"}, data_first)
    assert (earlier, without) == (got, 2), (earlier, without)
    # With data from a day earlier, both windows are covered: c and d are new (c below
    # min_excess: 2 >= 1, so new; d's 4 too).
    earlier, without = series_anomalies(con, {**q, "start": "2026-01-07T00:00:00Z"},
                                        datetime.date(2026, 1, 3))
    assert without == 0 and [(a["group"], a["day"], a["kind"]) for a in earlier if a["kind"] == "new"] == [
        ("b", "2026-01-12", "new"), ("d", "2026-01-08", "new"), ("c", "2026-01-07", "new")], earlier
    # A week's rhythm: with a window of five days, d's four counted days are too few.
    short, _ = series_anomalies(con, {**q, "baseline_days": 5}, data_first)
    assert "d" not in [a["group"] for a in short], short
    # A lower min_excess lets the new unattributed half through, and factor 3.000001
    # drops d.
    got, _ = series_anomalies(con, {**q, "min_excess": "0.5", "min_factor": "3.000001"},
                              data_first)
    assert [(a["group"], a["kind"]) for a in got] == [
        ("a", "spike"), ("b", "new"), (None, "new")], got
    print("OK")


def main(argv):
    if argv[1:] == ["--self-test"]:
        self_test()
        return 0
    roots = argv[1:]
    if not roots:
        print(__doc__, file=sys.stderr)
        return 2
    queries = json.load(sys.stdin)["queries"]
    con = ref.build(roots)
    answers = {q["id"]: anomalies(con, q) for q in queries}
    json.dump({"results": {k: v[0] for k, v in answers.items()},
               "without_baseline": {k: v[1] for k, v in answers.items()}}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
