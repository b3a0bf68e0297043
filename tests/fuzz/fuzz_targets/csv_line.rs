//! `csv::line` on any cells: the line parses back (RFC 4180) to exactly those cells, except
//! that a cell a spreadsheet would run as a formula comes back with a leading `'`; no parsed
//! cell starts with `=`, `+`, `-`, `@`, a tab or a carriage return.
#![no_main]

use kyc_desk::server::csv::line;
use libfuzzer_sys::fuzz_target;

const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A strict reader of one CSV record whose fields are all quoted, ending in CRLF.
fn parse_quoted_record(text: &str) -> Result<Vec<String>, String> {
    let body = text.strip_suffix("\r\n").ok_or("no CRLF at the end")?;
    let mut fields = Vec::new();
    if body.is_empty() {
        return Ok(fields);
    }
    let mut chars = body.chars().peekable();
    loop {
        if chars.next() != Some('"') {
            return Err(format!("field {} is not quoted", fields.len()));
        }
        let mut field = String::new();
        loop {
            match chars.next() {
                None => return Err("unterminated quoted field".into()),
                Some('"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                Some('"') => break,
                Some(c) => field.push(c),
            }
        }
        fields.push(field);
        match chars.next() {
            None => return Ok(fields),
            Some(',') => {}
            Some(c) => return Err(format!("{c:?} after a closing quote")),
        }
    }
}

fuzz_target!(|cells: Vec<String>| {
    let text = line(&cells);
    let parsed = parse_quoted_record(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert_eq!(parsed.len(), cells.len(), "{text:?}");
    for (cell, field) in cells.iter().zip(&parsed) {
        let expected = if cell.starts_with(FORMULA_STARTS) {
            format!("'{cell}")
        } else {
            cell.clone()
        };
        assert_eq!(field, &expected);
        assert!(!field.starts_with(FORMULA_STARTS), "{field:?}");
    }
});
