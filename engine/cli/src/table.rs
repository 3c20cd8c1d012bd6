//! Text tables as the commands print them.

/// `header` and `rows` as a table of columns two spaces apart, each as wide as its widest cell
/// and aligned to the right where `right` says (a last column aligned left is not padded).
pub(crate) fn aligned<const N: usize>(header: [&str; N], rows: &[[String; N]], right: [bool; N]) -> String {
    let header = header.map(str::to_owned);
    let mut widths = [0; N];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = (0..N)
            .map(|i| match (right[i], i + 1 == N) {
                (true, _) => format!("{:>w$}", row[i], w = widths[i]),
                (false, true) => row[i].clone(),
                (false, false) => format!("{:<w$}", row[i], w = widths[i]),
            })
            .collect();
        text += &cells.join("  ");
        text.push('\n');
    }
    text
}
