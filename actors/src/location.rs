//! Number location (归属地): province, city and carrier of a Chinese phone
//! number from its prefix.
//!
//! The data is libphonenumber's (Apache-2.0), see `data/README.md`: mobile
//! segments (the first 7 digits of a mobile number) and landline area
//! codes, with the carrier of mobile prefixes. It is compiled into the
//! binary and parsed once, on first use.
//!
//! ```
//! use switchboard_actors::location::lookup;
//!
//! let loc = lookup("+86 138-0013-8000").unwrap();
//! assert_eq!(loc.carrier, Some("中国移动"));
//! assert_eq!(lookup("020-12345678").unwrap().place, "广东省广州市");
//! assert!(lookup("12345").is_none());
//! ```

use serde::Serialize;
use std::sync::OnceLock;

static RUNS: &str = include_str!("../data/number_location_cn.tsv");
static NAMES: &str = include_str!("../data/number_location_cn_names.txt");
static CARRIERS: &str = include_str!("../data/number_carrier_cn.tsv");

/// Where a number is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NumberLocation {
    /// Province and city, e.g. `广东省深圳市` (municipalities: `北京市`).
    pub place: &'static str,
    /// The mobile carrier (`中国移动`, `中国联通`, `中国电信`, `中国广电`);
    /// `None` for landlines.
    pub carrier: Option<&'static str>,
}

#[derive(Debug)]
struct Table {
    /// Per prefix length (index = length): sorted (first prefix, count,
    /// place index) runs.
    runs: Vec<Vec<(u64, u32, u16)>>,
    names: Vec<&'static str>,
    /// (prefix, carrier), for longest-prefix match.
    carriers: Vec<(&'static str, &'static str)>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut runs: Vec<Vec<(u64, u32, u16)>> = vec![Vec::new(); 12];
        for line in RUNS.lines().filter(|l| !l.starts_with('#')) {
            let mut f = line.split('\t');
            let (Some(prefix), Some(count), Some(place)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Ok(start), Ok(count), Ok(place)) = (
                prefix.parse::<u64>(),
                count.parse::<u32>(),
                place.parse::<u16>(),
            ) else {
                continue;
            };
            if let Some(v) = runs.get_mut(prefix.len()) {
                v.push((start, count, place));
            }
        }
        for v in &mut runs {
            v.sort_unstable();
        }
        let carriers = CARRIERS
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('\t'))
            .collect();
        Table {
            runs,
            names: NAMES.lines().collect(),
            carriers,
        }
    })
}

/// The national significant number of a Chinese number: `+86`/`0086` and
/// a landline's trunk prefix `0` removed, separators dropped. `None` when
/// it is not a plausible Chinese number.
pub fn national_number(number: &str) -> Option<String> {
    let digits: String = number
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let digits = digits
        .strip_prefix("+86")
        .or_else(|| digits.strip_prefix("0086"))
        .unwrap_or(&digits);
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // A landline dialled nationally starts with 0; mobiles with 1.
    let n = digits.strip_prefix('0').unwrap_or(digits);
    (n.len() >= 7 && n.len() <= 12).then(|| n.to_owned())
}

/// The location of `number`, by its longest known prefix.
pub fn lookup(number: &str) -> Option<NumberLocation> {
    let n = national_number(number)?;
    let t = table();
    let place = (2..=n.len().min(t.runs.len() - 1)).rev().find_map(|len| {
        let key: u64 = n.get(..len)?.parse().ok()?;
        let runs = &t.runs[len];
        let i = runs.partition_point(|(start, _, _)| *start <= key);
        let (start, count, place) = runs.get(i.checked_sub(1)?)?;
        (key < start + u64::from(*count)).then_some(*place)
    })?;
    let carrier = if n.starts_with('1') {
        t.carriers
            .iter()
            .filter(|(p, _)| n.starts_with(p))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, c)| *c)
    } else {
        None
    };
    Some(NumberLocation {
        place: t.names.get(usize::from(place))?,
        carrier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobiles_and_landlines() {
        let l = lookup("13800138000").unwrap();
        assert_eq!(l.carrier, Some("中国移动"));
        assert_eq!(l.place, "北京市");
        assert_eq!(lookup("+8613800138000"), lookup("0086 138 0013 8000"));
        let sz = lookup("075512345678").unwrap();
        assert_eq!((sz.place, sz.carrier), ("广东省深圳市", None));
        assert_eq!(lookup("010-62345678").unwrap().place, "北京市");
        assert_eq!(lookup("18912345678").unwrap().carrier, Some("中国电信"));
        assert_eq!(lookup("15312345678").unwrap().carrier, Some("中国电信"));
        assert_eq!(lookup("15012345678").unwrap().carrier, Some("中国移动"));
    }

    #[test]
    fn not_chinese_numbers() {
        assert_eq!(lookup("1001"), None);
        assert_eq!(lookup("*43"), None);
        assert_eq!(lookup("sip:alice"), None);
        assert_eq!(
            national_number("+86 (755) 1234-5678").as_deref(),
            Some("75512345678")
        );
    }

    #[test]
    fn every_run_is_found_at_both_ends() {
        let t = table();
        let mut checked = 0;
        for (len, runs) in t.runs.iter().enumerate() {
            for (start, count, place) in runs.iter().step_by(97) {
                for n in [*start, start + u64::from(*count) - 1] {
                    let prefix = format!("{n:0len$}");
                    let number = if prefix.starts_with('1') {
                        format!("{prefix:0<11}")
                    } else {
                        format!("0{prefix:0<10}")
                    };
                    let got = lookup(&number).map(|l| l.place);
                    // A longer prefix may refine a shorter one; it never
                    // misses.
                    assert!(got.is_some(), "{number}");
                    if len == 7 && prefix.starts_with('1') {
                        assert_eq!(got, t.names.get(usize::from(*place)).copied(), "{number}");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }
}
