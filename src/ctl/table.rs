//! Plain-text tables for `sluice ctl`: a header row, columns padded to
//! their widest cell, two spaces between, no trailing blanks. Cells are
//! sanitised so a name with control characters cannot move the cursor of
//! the operator's terminal.

/// A table being built.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are blank, extra ones dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.into_iter().map(|c| clean(&c)).collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// The rendered table, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Replaces control characters (ANSI escapes included) with U+FFFD.
fn clean(cell: &str) -> String {
    cell.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_controls_are_defused() {
        let mut t = Table::new(&["ID", "MODE", "PARTICIPANTS"]);
        t.row(vec!["standup".into(), "e2ee".into(), "2".into()]);
        t.row(vec!["a".into(), "standard".into()]);
        t.row(vec!["x\x1b[2J".into(), "e2ee".into(), "10".into()]);
        assert_eq!(
            t.render(),
            "ID       MODE      PARTICIPANTS\n\
             standup  e2ee      2\n\
             a        standard\n\
             x\u{fffd}[2J    e2ee      10\n"
        );
    }
}
