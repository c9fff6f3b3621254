//! A small table that prints either as aligned text or as CSV.
//!
//! Every answer is first turned into one [`Table`]; the two text formats then differ
//! only in layout, so a column can never be in one and missing from the other.

use std::io::{self, Write};

/// One column: its header in each format and how its cells align.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    /// Header of the aligned-text table, e.g. `INPUT TOKENS`.
    pub(crate) title: &'static str,
    /// Header of the CSV file, e.g. `input_tokens`.
    pub(crate) csv: &'static str,
    /// Right-aligned (numbers) in the text table.
    pub(crate) numeric: bool,
}

impl Column {
    pub(crate) const fn text(title: &'static str, csv: &'static str) -> Self {
        Column {
            title,
            csv,
            numeric: false,
        }
    }

    pub(crate) const fn number(title: &'static str, csv: &'static str) -> Self {
        Column {
            title,
            csv,
            numeric: true,
        }
    }
}

/// Columns, body rows and, for the text table only, footer rows (totals).
#[derive(Debug, Default)]
pub(crate) struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    footer: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(columns: Vec<Column>) -> Self {
        Table {
            columns,
            ..Default::default()
        }
    }

    /// Adds a body row; missing cells are empty, extra cells are dropped.
    pub(crate) fn push(&mut self, row: Vec<String>) {
        let row = self.fit(row);
        self.rows.push(row);
    }

    /// Adds a footer row, printed after a rule in the text table and never in CSV.
    pub(crate) fn push_footer(&mut self, row: Vec<String>) {
        let row = self.fit(row);
        self.footer.push(row);
    }

    fn fit(&self, mut row: Vec<String>) -> Vec<String> {
        row.resize(self.columns.len(), String::new());
        row
    }

    /// Aligned columns separated by two spaces, no trailing blanks.
    pub(crate) fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| width(c.title)).collect();
        for row in self.rows.iter().chain(&self.footer) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let titles: Vec<String> = self.columns.iter().map(|c| c.title.to_owned()).collect();
        self.write_line(out, &widths, &titles)?;
        for row in &self.rows {
            self.write_line(out, &widths, row)?;
        }
        if !self.footer.is_empty() {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            self.write_line(out, &widths, &rule)?;
            for row in &self.footer {
                self.write_line(out, &widths, row)?;
            }
        }
        Ok(())
    }

    fn write_line(
        &self,
        out: &mut dyn Write,
        widths: &[usize],
        cells: &[String],
    ) -> io::Result<()> {
        let mut line = String::new();
        for (i, ((column, w), cell)) in self.columns.iter().zip(widths).zip(cells).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(w.saturating_sub(width(cell)));
            if column.numeric {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        writeln!(out, "{}", line.trim_end())
    }

    /// A header line and the body rows; the footer is left out so the file loads as is.
    pub(crate) fn write_csv(&self, out: &mut dyn Write) -> csv::Result<()> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(self.columns.iter().map(|c| c.csv))?;
        for row in &self.rows {
            writer.write_record(row)?;
        }
        writer.flush()?;
        Ok(())
    }
}

/// Columns a cell takes on a terminal: CJK characters take two.
fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_take_two_columns() {
        assert_eq!(width("search"), 6);
        assert_eq!(width("チーム"), 6);
        assert_eq!(width("Zürich"), 6);
    }

    fn sample() -> Table {
        let mut table = Table::new(vec![
            Column::text("NAME", "name"),
            Column::number("COST", "cost"),
            Column::text("NOTE", "note"),
        ]);
        table.push(vec!["a".into(), "1.5".into(), "x, \"quoted\"".into()]);
        table.push(vec!["longer".into(), "10.25".into()]);
        table.push_footer(vec!["TOTAL".into(), "11.75".into()]);
        table
    }

    #[test]
    fn aligns_text() {
        let mut out = Vec::new();
        sample().write_text(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "NAME     COST  NOTE\n\
             a         1.5  x, \"quoted\"\n\
             longer  10.25\n\
             ------  -----  -----------\n\
             TOTAL   11.75\n"
        );
    }

    #[test]
    fn csv_has_no_footer() {
        let mut out = Vec::new();
        sample().write_csv(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "name,cost,note\na,1.5,\"x, \"\"quoted\"\"\"\nlonger,10.25,\n"
        );
    }
}
