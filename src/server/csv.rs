//! CSV output for exports: RFC 4180 quoting, and cells that a spreadsheet would run as a
//! formula neutralised.

/// One CSV line (with CRLF) from `cells`. Every cell is quoted; a cell starting with `=`,
/// `+`, `-`, `@`, a tab or a carriage return gets a leading `'` so a spreadsheet shows it as
/// text instead of evaluating it.
pub fn line<I, S>(cells: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for (index, cell) in cells.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('"');
        let cell = cell.as_ref();
        if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            out.push('\'');
        }
        for c in cell.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::line;

    #[test]
    fn quotes_and_neutralises() {
        assert_eq!(line(["a", "b,c"]), "\"a\",\"b,c\"\r\n");
        assert_eq!(line(["say \"hi\""]), "\"say \"\"hi\"\"\"\r\n");
        assert_eq!(line(["two\nlines"]), "\"two\nlines\"\r\n");
        assert_eq!(
            line(["=SUM(A1)", "+1", "-2", "@x", "\tx", "ok=1"]),
            "\"'=SUM(A1)\",\"'+1\",\"'-2\",\"'@x\",\"'\tx\",\"ok=1\"\r\n"
        );
        assert_eq!(line(Vec::<String>::new()), "\r\n");
    }
}
