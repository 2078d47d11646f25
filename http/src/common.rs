//! What every route module uses: pages and cursors, id and number checks,
//! days, the clock.

use crate::error::{ApiError, ApiResult};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_storage::model::{Date, Day, Timestamp};
use switchboard_storage::{Cursor, PageRequest};
use utoipa::ToSchema;

/// The default number of items of a page.
pub const DEFAULT_LIMIT: u32 = 50;
/// The most items a page may hold.
pub const MAX_LIMIT: u32 = 1000;

/// One page of a listing; pass `next` back as `cursor` for the next one.
/// A page may hold fewer than `limit` items even when more follow; `next`
/// is absent only at the end.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// An opaque cursor to the next page.
    pub next: Option<String>,
}

/// The `limit` parameter, checked.
pub fn limit(limit: Option<u32>) -> ApiResult<u32> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::field(
            "limit",
            format!("{l} is not within 1..={MAX_LIMIT}"),
        )),
    }
}

/// A page request of the store from the query's cursor and limit.
pub fn page_request(cursor: Option<String>, l: Option<u32>) -> ApiResult<PageRequest> {
    Ok(PageRequest {
        limit: limit(l)?,
        cursor: cursor.filter(|c| !c.is_empty()).map(Cursor),
    })
}

/// Pages through records held in memory, ordered by `key`; the cursor is
/// the last key handed out, hex-encoded.
pub fn paginate<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> &str,
    cursor: Option<&str>,
    l: Option<u32>,
) -> ApiResult<Page<T>> {
    let limit = limit(l)? as usize;
    items.sort_by(|a, b| key(a).cmp(key(b)));
    let after = match cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            hex::decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::field("cursor", "not a cursor this API handed out"))?,
        ),
    };
    let mut rest: Vec<T> = match &after {
        Some(a) => items.into_iter().filter(|i| key(i) > a.as_str()).collect(),
        None => items,
    };
    let next = if rest.len() > limit {
        rest.truncate(limit);
        rest.last().map(|l| hex::encode(key(l)))
    } else {
        None
    };
    Ok(Page { items: rest, next })
}

/// An id chosen by the client: 1 to 64 letters, digits, `_`, `-` or `.`,
/// not starting with `.` (ids name files and appear in URLs).
pub fn check_id(field: &str, id: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&id.len())
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            field,
            format!(
                "{id:?} is not a valid id: use 1 to 64 letters, digits, '_', '-' or '.', not starting with '.'"
            ),
        ))
    }
}

/// A phone number as calls present it: 1 to 32 digits, an optional
/// leading `+`, `*` and `#` allowed.
pub fn check_number(field: &str, n: &str) -> ApiResult<()> {
    let body = n.strip_prefix('+').unwrap_or(n);
    let ok = (1..=32).contains(&body.len())
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            field,
            format!("{n:?} is not a phone number: use 1 to 32 digits, optionally after '+'"),
        ))
    }
}

/// A non-empty text of at most `max` characters, without control
/// characters but line breaks and tabs.
pub fn check_text(field: &str, s: &str, max: usize) -> ApiResult<()> {
    if s.trim().is_empty() {
        Err(ApiError::field(field, "must not be empty"))
    } else if let Some(c) = s
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        Err(ApiError::field(
            field,
            format!("contains the control character {c:?}"),
        ))
    } else if s.chars().count() > max {
        Err(ApiError::field(
            field,
            format!("is longer than {max} characters"),
        ))
    } else {
        Ok(())
    }
}

/// At most `max` characters (may be empty).
pub fn check_len(field: &str, s: &str, max: usize) -> ApiResult<()> {
    if s.chars().count() > max {
        Err(ApiError::field(
            field,
            format!("is longer than {max} characters"),
        ))
    } else {
        Ok(())
    }
}

/// Now, on the wall clock.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Timestamp(ms)
}

/// A date `YYYY-MM-DD`, checked to exist.
pub fn parse_date(field: &str, s: &str) -> ApiResult<Date> {
    let bad = || ApiError::field(field, format!("{s:?} is not a date (YYYY-MM-DD)"));
    let mut parts = s.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let date = Date {
        year: y.parse().map_err(|_| bad())?,
        month: m.parse().map_err(|_| bad())?,
        day: d.parse().map_err(|_| bad())?,
    };
    // The date exists if it survives the round trip through a day number.
    if !(1..=12).contains(&date.month) || Day::from_date(date).date() != date {
        return Err(bad());
    }
    Ok(date)
}

pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

/// A tenant-local day from `YYYY-MM-DD`, or today in the tenant's zone.
pub fn day_or_today(field: &str, s: Option<&str>, utc_offset_minutes: i32) -> ApiResult<Day> {
    match s {
        Some(s) => Ok(Day::from_date(parse_date(field, s)?)),
        None => Ok(Day::of(now(), utc_offset_minutes)),
    }
}
