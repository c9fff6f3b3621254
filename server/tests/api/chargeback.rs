//! The CLI's chargeback export against a real server: one month fully loaded per team,
//! as CSV and as Parquet, equal to CostByTag's rows to the last decimal and adding up to
//! its totals.

use std::{collections::BTreeMap, path::Path};

use bedrock_attribution_client::{
    cli::{self, Cli},
    proto,
};
use clap::Parser;
use datafusion::{
    arrow::{
        array::{Array, AsArray, Decimal128Array, RecordBatch},
        datatypes::{DataType, Int64Type},
    },
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder,
};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::common::{TestServer, exact, range, small_export};

const HEADER: &str = "billing_month,currency,tag_key,team,untagged,direct_cost,allocated_cost,cost,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,total_tokens,cost_per_million_tokens,line_items";

/// Runs `bedrock-attribution --server URL chargeback ARGS...`; returns what it printed.
async fn chargeback(server: &TestServer, args: &[&str]) -> String {
    let url = format!("http://{}", server.handle.addr());
    let mut argv = vec!["bedrock-attribution", "--server", &url, "chargeback"];
    argv.extend(args);
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    cli::run(&cli, &mut out)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"))
}

/// An amount as written: a plain decimal with exactly ten places.
fn amount(s: &str) -> Decimal {
    let (whole, fraction) = s
        .split_once('.')
        .unwrap_or_else(|| panic!("{s:?} has no decimal point"));
    assert_eq!(fraction.len(), 10, "{s:?} has ten places");
    assert!(
        whole
            .trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit())
            && fraction.chars().all(|c| c.is_ascii_digit()),
        "{s:?} is a plain decimal"
    );
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .unwrap_or_else(|e| panic!("{e}"));
    let batches: Vec<RecordBatch> = reader
        .map(|b| b.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let [batch] = batches.as_slice() else {
        panic!("{} batches", batches.len())
    };
    batch.clone()
}

#[tokio::test]
async fn a_month_per_team_as_csv_and_parquet_equals_cost_by_tag_and_adds_up() {
    let server = TestServer::start(&[small_export()]).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let csv_path = dir.path().join("chargeback-2026-07.csv");
    let parquet_path = dir.path().join("chargeback-2026-07.parquet");
    let month = ["--month", "2026-07", "--tag-key", "iamPrincipal/team"];
    let csv_file = csv_path.to_str().unwrap_or_default();
    let parquet_file = parquet_path.to_str().unwrap_or_default();
    let printed = chargeback(&server, &[&month[..], &["--output", csv_file]].concat()).await;
    assert!(printed.is_empty(), "a file, nothing on stdout");
    chargeback(&server, &[&month[..], &["-o", parquet_file]].concat()).await;
    let stdout = chargeback(&server, &month).await;
    let csv = std::fs::read_to_string(&csv_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stdout, csv, "stdout and the file hold the same CSV");
    assert!(
        !dir.path().join("chargeback-2026-07.csv.partial").exists(),
        "the temporary file is renamed"
    );

    // What the service answers for the month, fully loaded and not.
    let request = |allocation: proto::Allocation| proto::CostByTagRequest {
        time_range: range("2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z"),
        tag_key: "iamPrincipal/team".into(),
        allocation: allocation as i32,
        page_size: 3,
        ..Default::default()
    };
    let loaded = server
        .client
        .cost_by_tag_all(request(proto::Allocation::Proportional))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let direct = server
        .client
        .cost_by_tag_all(request(proto::Allocation::None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let totals = |moneys: &[proto::Money]| -> BTreeMap<String, Decimal> {
        moneys
            .iter()
            .map(|m| (m.currency_code.clone(), exact(m)))
            .collect()
    };
    assert_eq!(totals(&loaded.totals), totals(&direct.totals));
    let mut expected: BTreeMap<(String, String), &proto::Row> = BTreeMap::new();
    for row in &loaded.rows {
        let tag = row.tag.clone().unwrap_or_default();
        let team = if tag.untagged {
            "UNTAGGED".to_owned()
        } else {
            tag.value
        };
        let currency = row.cost.clone().unwrap_or_default().currency_code;
        expected.insert((currency, team), row);
    }

    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(HEADER));
    let mut reader = csv_reader(&csv);
    let mut sums: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    let mut seen = 0;
    let mut untagged = 0;
    for record in reader.records() {
        let r = record.unwrap_or_else(|e| panic!("{e}"));
        let field = |i: usize| r.get(i).unwrap_or_default();
        let int = |i: usize| -> i64 { field(i).parse().unwrap_or_else(|e| panic!("{e}")) };
        assert_eq!(field(0), "2026-07");
        assert_eq!(field(2), "iamPrincipal/team");
        let (currency, team) = (field(1).to_owned(), field(3).to_owned());
        let row = expected
            .get(&(currency.clone(), team.clone()))
            .unwrap_or_else(|| panic!("{currency} {team} is not a CostByTag row"));
        assert_eq!(field(4), if team == "UNTAGGED" { "true" } else { "false" });
        untagged += usize::from(team == "UNTAGGED");
        let money =
            |m: &Option<proto::Money>| exact(m.as_ref().unwrap_or_else(|| panic!("no money")));
        let (d, a, c) = (amount(field(5)), amount(field(6)), amount(field(7)));
        assert_eq!(
            (d, a, c),
            (
                money(&row.direct_cost),
                money(&row.allocated_cost),
                money(&row.cost)
            ),
            "{team}"
        );
        assert_eq!(d + a, c, "{team}: direct + allocated = fully loaded");
        let t = row.tokens.unwrap_or_default();
        let kinds = [t.input, t.output, t.cache_read, t.cache_write];
        assert_eq!([int(8), int(9), int(10), int(11)], kinds, "{team}");
        let all: i64 = kinds.iter().sum();
        assert_eq!(int(12), all);
        if all == 0 {
            assert_eq!(field(13), "", "{team}: no tokens, no cost per token");
        } else {
            let per_million = (c * Decimal::from(1_000_000) / Decimal::from(all))
                .round_dp_with_strategy(10, RoundingStrategy::MidpointNearestEven);
            assert_eq!(amount(field(13)), per_million, "{team}");
        }
        assert_eq!(int(14), row.line_items);
        let sum = sums.entry(currency).or_default();
        sum.0 += c;
        sum.1 += a;
        seen += 1;
    }
    assert_eq!(seen, loaded.rows.len(), "one line per team and currency");
    let answered_untagged = loaded
        .rows
        .iter()
        .filter(|r| r.tag.as_ref().is_some_and(|t| t.untagged))
        .count();
    assert!(untagged >= 1);
    assert_eq!(untagged, answered_untagged, "the UNTAGGED rows are kept");
    for (currency, (cost, allocated)) in &sums {
        assert_eq!(
            Some(cost),
            totals(&loaded.totals).get(currency),
            "{currency}: the rows add up to CostByTag's total"
        );
        assert_eq!(
            *allocated,
            Decimal::ZERO,
            "{currency}: allocation moves, never adds"
        );
    }
    assert!(
        loaded.rows.iter().any(|r| r
            .allocated_cost
            .as_ref()
            .is_some_and(|m| exact(m) != Decimal::ZERO)),
        "the month has spend shared by allocation"
    );

    // The Parquet file: the same rows, amounts as Decimal128(38, 10).
    let batch = read_parquet(&parquet_path);
    assert_eq!(batch.num_rows(), seen);
    let names: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names.join(","), HEADER);
    let mut reader = csv_reader(&csv);
    for (i, record) in reader.records().enumerate() {
        let r = record.unwrap_or_else(|e| panic!("{e}"));
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .map(|c| c.as_string::<i32>().value(i).to_owned())
        };
        assert_eq!(text("currency").as_deref(), r.get(1));
        assert_eq!(text("team").as_deref(), r.get(3));
        for (column, at) in [
            ("direct_cost", 5),
            ("allocated_cost", 6),
            ("cost", 7),
            ("cost_per_million_tokens", 13),
        ] {
            let values = batch
                .column_by_name(column)
                .and_then(|c| c.as_any().downcast_ref::<Decimal128Array>())
                .unwrap_or_else(|| panic!("{column} is not decimal"));
            assert_eq!(values.data_type(), &DataType::Decimal128(38, 10));
            let value = if values.is_null(i) {
                String::new()
            } else {
                values.value_as_string(i)
            };
            assert_eq!(Some(value.as_str()), r.get(at), "{column} of row {i}");
        }
        let tokens = batch
            .column_by_name("total_tokens")
            .map(|c| c.as_primitive::<Int64Type>().value(i).to_string());
        assert_eq!(tokens.as_deref(), r.get(12));
    }
    server.stop().await;
}

fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::Reader::from_reader(text.as_bytes())
}
