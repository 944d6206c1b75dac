//! kubectl-style tables: upper-case headers, columns aligned by padding, three spaces between
//! columns, no borders, no trailing spaces.

/// A table under construction.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers (written as given: upper-case them at the call site).
    pub(crate) fn new(headers: &[&str]) -> Table {
        Table { rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()] }
    }

    /// Adds a row; missing cells are empty, extra ones are kept.
    pub(crate) fn row(&mut self, cells: Vec<String>) -> &mut Table {
        self.rows.push(cells);
        self
    }

    /// Rows added so far, without the header.
    pub(crate) fn len(&self) -> usize {
        self.rows.len() - 1
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text, one line per row, each ending in a newline.
    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| self.rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                if i > 0 {
                    line.push_str("   ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `yes` or `no`.
pub(crate) fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// A list of names, or `-` when empty.
pub(crate) fn list_or_dash(items: &[String], sep: &str) -> String {
    if items.is_empty() { "-".to_owned() } else { items.join(sep) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_without_trailing_spaces() {
        let mut t = Table::new(&["CLUSTER", "CLOUD", "REGION"]);
        t.row(vec!["aws-1".into(), "aws".into(), "us-east-1".into()]);
        t.row(vec!["azure-westeurope".into(), "azure".into(), String::new()]);
        t.row(vec!["gcp-1".into()]);
        assert_eq!(t.len(), 3);
        assert_eq!(
            t.render(),
            "\
CLUSTER            CLOUD   REGION
aws-1              aws     us-east-1
azure-westeurope   azure
gcp-1
"
        );
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["→→".into(), "x".into()]);
        assert_eq!(t.render(), "A    B\n→→   x\n");
        assert!(Table::new(&["ONLY"]).is_empty());
        assert_eq!(list_or_dash(&[], ","), "-");
        assert_eq!(yes_no(true), "yes");
    }
}
