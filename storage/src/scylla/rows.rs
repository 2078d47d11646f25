//! Reading result rows without a row type per statement.

use crate::{Result, StoreError};
use scylla::response::query_result::QueryResult;
use scylla::value::{CqlValue, Row};

/// Every row of a result (none for a result that is not rows).
pub(super) fn all(result: QueryResult) -> Result<Vec<Row>> {
    if !result.is_rows() {
        return Ok(Vec::new());
    }
    let rows = result
        .into_rows_result()
        .map_err(|e| StoreError::invalid("a result does not decode").with_source(e))?;
    let iter = rows
        .rows::<Row>()
        .map_err(|e| StoreError::invalid("result rows do not decode").with_source(e))?;
    iter.map(|r| r.map_err(|e| StoreError::invalid("a row does not decode").with_source(e)))
        .collect()
}

fn column(row: &Row, i: usize) -> Option<&CqlValue> {
    row.columns.get(i).and_then(Option::as_ref)
}

fn wrong(i: usize, want: &str) -> StoreError {
    StoreError::invalid(format!("column {i} is not a {want}"))
}

pub(super) fn opt_text(row: &Row, i: usize) -> Option<String> {
    match column(row, i) {
        Some(CqlValue::Text(s) | CqlValue::Ascii(s)) => Some(s.clone()),
        _ => None,
    }
}

pub(super) fn text(row: &Row, i: usize) -> Result<String> {
    opt_text(row, i).ok_or_else(|| wrong(i, "text"))
}

pub(super) fn big(row: &Row, i: usize) -> Result<i64> {
    match column(row, i) {
        Some(CqlValue::BigInt(v)) => Ok(*v),
        Some(CqlValue::Int(v)) => Ok(i64::from(*v)),
        _ => Err(wrong(i, "bigint")),
    }
}

pub(super) fn int(row: &Row, i: usize) -> Result<i32> {
    match column(row, i) {
        Some(CqlValue::Int(v)) => Ok(*v),
        _ => Err(wrong(i, "int")),
    }
}

/// The answer to a conditional write: whether it applied, and if not the
/// row's current values by column name.
#[derive(Debug)]
pub(super) struct Lwt {
    pub applied: bool,
    columns: Vec<(String, Option<CqlValue>)>,
}

impl Lwt {
    pub(super) fn of(result: QueryResult) -> Result<Lwt> {
        let rows = result
            .into_rows_result()
            .map_err(|e| StoreError::invalid("an LWT answer does not decode").with_source(e))?;
        let names: Vec<String> = rows
            .column_specs()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let row = rows
            .rows::<Row>()
            .map_err(|e| StoreError::invalid("an LWT answer does not decode").with_source(e))?
            .next()
            .ok_or_else(|| StoreError::invalid("an LWT answer has no row"))?
            .map_err(|e| StoreError::invalid("an LWT answer does not decode").with_source(e))?;
        let applied = matches!(row.columns.first(), Some(Some(CqlValue::Boolean(true))));
        Ok(Lwt {
            applied,
            columns: names.into_iter().zip(row.columns).collect(),
        })
    }

    fn get(&self, name: &str) -> Option<&CqlValue> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_ref())
    }

    pub(super) fn text(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Some(CqlValue::Text(s) | CqlValue::Ascii(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub(super) fn big(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(CqlValue::BigInt(v)) => Some(*v),
            _ => None,
        }
    }
}
