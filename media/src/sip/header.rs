//! Typed views of the headers the node acts on: Via, name-addr (From, To,
//! Contact), CSeq and header parameters.
//!
//! These parsers are strict where RFC 3261's grammar is unambiguous (a
//! display name with a bare comma, whitespace inside `<…>`, an empty
//! parameter) and lenient about linear whitespace, which the grammar allows
//! almost everywhere (RFC 4475 §3.1.1.1).

use super::message::Method;
use thiserror::Error;

/// Why a header value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct HeaderError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, HeaderError> {
    Err(HeaderError(msg.into()))
}

/// RFC 3261 §25.1 `token` characters.
pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Header parameters (`;name=value`) in order. A missing value is `None`.
pub type Params = Vec<(String, Option<String>)>;

/// Finds a parameter by case-insensitive name.
pub fn param<'a>(params: &'a Params, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

/// Splits `s` on `sep` outside double-quoted strings.
fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Parses a quoted string starting at `s[0] == '"'`; returns the unescaped
/// content and the rest after the closing quote.
pub fn parse_quoted(s: &str) -> Result<(String, &str), HeaderError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    if !matches!(chars.next(), Some((_, '"'))) {
        return err("expected a quoted string");
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e)) if e != '\r' && e != '\n' => out.push(e),
                _ => return err("bad escape in quoted string"),
            },
            '"' => return Ok((out, &s[i + 1..])),
            _ => out.push(c),
        }
    }
    err("unterminated quoted string")
}

/// Parses `;a=b;c` (leading semicolon already removed when `s` is the text
/// after the first `;`). An empty parameter is an error.
pub fn parse_params(s: &str) -> Result<Params, HeaderError> {
    let mut params = Vec::new();
    if s.trim().is_empty() {
        return err("empty parameter");
    }
    for part in split_outside_quotes(s, b';') {
        let part = part.trim();
        if part.is_empty() {
            return err("empty parameter");
        }
        let (name, value) = match part.find('=') {
            Some(eq) => (part[..eq].trim(), Some(part[eq + 1..].trim())),
            None => (part, None),
        };
        if !is_token(name) {
            return err(format!("bad parameter name {name:?}"));
        }
        let value = match value {
            None => None,
            Some(v) if v.starts_with('"') => {
                let (text, rest) = parse_quoted(v)?;
                if !rest.trim().is_empty() {
                    return err("text after quoted parameter value");
                }
                Some(text)
            }
            Some("") => return err(format!("parameter {name} has an empty value")),
            Some(v) => {
                if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return err(format!("bad value of parameter {name}"));
                }
                Some(v.to_owned())
            }
        };
        params.push((name.to_owned(), value));
    }
    Ok(params)
}

/// A URI must start with a scheme (RFC 3986 §3.1) and hold no whitespace.
fn check_uri(uri: &str) -> Result<(), HeaderError> {
    let Some(colon) = uri.find(':') else {
        return err(format!("URI without scheme: {uri:?}"));
    };
    let scheme = &uri[..colon];
    let mut sc = scheme.chars();
    if !sc.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !sc.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return err(format!("bad URI scheme {scheme:?}"));
    }
    if uri.len() == colon + 1 {
        return err("empty URI after scheme");
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err("whitespace inside URI");
    }
    Ok(())
}

/// The URI's scheme, lower-cased (`sip`, `sips`, `tel`, …).
pub fn uri_scheme(uri: &str) -> Option<String> {
    let colon = uri.find(':')?;
    Some(uri[..colon].to_ascii_lowercase())
}

/// The user part of a `sip:`/`sips:`/`tel:` URI, percent-decoded.
pub fn uri_user(uri: &str) -> Option<String> {
    let scheme = uri_scheme(uri)?;
    let rest = &uri[scheme.len() + 1..];
    let user = match scheme.as_str() {
        "sip" | "sips" => {
            let at = rest.find('@')?;
            let userinfo = &rest[..at];
            userinfo.split(':').next().unwrap_or(userinfo)
        }
        "tel" => rest.split(';').next().unwrap_or(rest),
        _ => return None,
    };
    Some(percent_decode(user.split(';').next().unwrap_or(user)))
}

/// The host part of a `sip:`/`sips:` URI, lower-cased, without port.
pub fn uri_host(uri: &str) -> Option<String> {
    let scheme = uri_scheme(uri)?;
    if scheme != "sip" && scheme != "sips" {
        return None;
    }
    let rest = &uri[scheme.len() + 1..];
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let end = rest.find([';', '?']).unwrap_or(rest.len());
    let hostport = &rest[..end];
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        hostport.split(':').next().unwrap_or(hostport)
    };
    Some(host.to_ascii_lowercase())
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name-addr` or `addr-spec` with header parameters (From, To, Contact,
/// Route, Record-Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Params,
}

impl NameAddr {
    pub fn parse(value: &str) -> Result<NameAddr, HeaderError> {
        let s = value.trim();
        if s.is_empty() {
            return err("empty address");
        }
        let (display, after_display) = if s.starts_with('"') {
            let (d, rest) = parse_quoted(s)?;
            let rest = rest.trim_start();
            if !rest.starts_with('<') {
                return err("quoted display name not followed by <URI>");
            }
            (Some(d), rest)
        } else if let Some(lt) = s.find('<') {
            let d = s[..lt].trim();
            // RFC 3261 §25.1: an unquoted display name is tokens and LWS.
            if !d.chars().all(|c| is_token_char(c) || c == ' ' || c == '\t') {
                return err(format!("display name {d:?} must be quoted"));
            }
            ((!d.is_empty()).then(|| d.to_owned()), &s[lt..])
        } else {
            // addr-spec: RFC 3261 §20: a URI with a comma, question mark
            // or semicolon must be in angle brackets, so `;` starts params.
            let (uri, params) = match s.find(';') {
                Some(semi) => (s[..semi].trim(), Some(&s[semi + 1..])),
                None => (s, None),
            };
            if uri.contains(['?', ',', '<', '>', '"']) {
                return err("URI with ?, comma or brackets must be enclosed in <>");
            }
            check_uri(uri)?;
            let params = params.map(parse_params).transpose()?.unwrap_or_default();
            return Ok(NameAddr {
                display: None,
                uri: uri.to_owned(),
                params,
            });
        };
        // after_display starts with '<'
        let Some(gt) = after_display.find('>') else {
            return err("unterminated <URI>");
        };
        let uri = &after_display[1..gt];
        check_uri(uri)?;
        let rest = after_display[gt + 1..].trim_start();
        let params = if rest.is_empty() {
            Vec::new()
        } else if let Some(p) = rest.strip_prefix(';') {
            parse_params(p)?
        } else {
            return err("unexpected text after <URI>");
        };
        Ok(NameAddr {
            display,
            uri: uri.to_owned(),
            params,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        param(&self.params, "tag").flatten()
    }

    /// The URI typed by `rsip` (for SIP/SIPS URIs).
    pub fn rsip_uri(&self) -> Result<rsip::Uri, rsip::Error> {
        rsip::Uri::try_from(self.uri.as_str())
    }
}

/// One Via value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub version: String,
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(value: &str) -> Result<Via, HeaderError> {
        let mut parts = value.splitn(3, '/');
        let (Some(name), Some(version), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return err("Via without SIP/2.0/transport");
        };
        if !name.trim().eq_ignore_ascii_case("SIP") {
            return err("Via protocol is not SIP");
        }
        let version = version.trim().to_owned();
        let rest = rest.trim_start();
        let tlen = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        if tlen == 0 {
            return err("Via without transport");
        }
        let transport = rest[..tlen].to_ascii_uppercase();
        let rest = rest[tlen..].trim_start();
        let (sent_by, params) = match rest.find(';') {
            Some(semi) => (rest[..semi].trim(), Some(&rest[semi + 1..])),
            None => (rest.trim(), None),
        };
        let (host, port) = parse_host_port(sent_by)?;
        let params = params.map(parse_params).transpose()?.unwrap_or_default();
        Ok(Via {
            version,
            transport,
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        param(&self.params, "branch").flatten()
    }

    /// RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with the magic
    /// cookie; others come from RFC 2543 peers.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }
}

/// `host[:port]`, with IPv6 references in brackets.
pub fn parse_host_port(s: &str) -> Result<(String, Option<u16>), HeaderError> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let Some(end) = v6.find(']') else {
            return err("unterminated IPv6 reference");
        };
        let after = &v6[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return err("bad text after IPv6 reference"),
        };
        (format!("[{}]", &v6[..end]), port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c))
    {
        return err(format!("bad host {host:?}"));
    }
    let port = match port {
        Some(p) => Some(
            p.trim()
                .parse::<u16>()
                .map_err(|_| HeaderError(format!("bad port {p:?}")))?,
        ),
        None => None,
    };
    Ok((host, port))
}

/// CSeq (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Checks the shape `digits SP method` without bounding the number, so
    /// an overlarge value can still be answered (RFC 4475 §3.1.2.4).
    pub fn check_shape(value: &str) -> Result<(), HeaderError> {
        let mut it = value.split_whitespace();
        match (it.next(), it.next(), it.next()) {
            (Some(n), Some(m), None) if n.bytes().all(|b| b.is_ascii_digit()) && is_token(m) => {
                Ok(())
            }
            _ => err("CSeq must be a number and a method"),
        }
    }

    pub fn parse(value: &str) -> Result<CSeq, HeaderError> {
        Self::check_shape(value)?;
        let mut it = value.split_whitespace();
        let (n, m) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
        let seq = n
            .parse::<u32>()
            .map_err(|_| HeaderError("CSeq number above 2^32-1".into()))?;
        Ok(CSeq {
            seq,
            method: Method::from_token(m),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let a = NameAddr::parse(r#""A \"B\"" <sip:a@b.com>;tag=1"#).unwrap();
        assert_eq!(a.display.as_deref(), Some(r#"A "B""#));
        assert_eq!(a.tag(), Some("1"));
        let b = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(b.display.as_deref(), Some("caller"));
        let c = NameAddr::parse("sip:x@y ;  tag   = 7").unwrap();
        assert_eq!((c.uri.as_str(), c.tag()), ("sip:x@y", Some("7")));
        assert!(NameAddr::parse("Bell, Alexander <sip:a@b>").is_err());
        assert!(NameAddr::parse("< sip:a@b >").is_err());
        assert!(NameAddr::parse(r#""open <sip:a@b>"#).is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=x").is_err());
        assert!(NameAddr::parse(r#""Joe" <sip:joe@example.org>;;;;"#).is_err());
        assert!(NameAddr::parse("alan@jasomi.com").is_err());
        assert!(NameAddr::parse("isbn:2983792873").is_ok());
    }

    #[test]
    fn via_with_whitespace_everywhere() {
        let v = Via::parse("SIP  /   2.0  /UDP     192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse("SIP/2.0/TCP [2001:db8::1]:5070;rport;branch=z9hG4bKx").unwrap();
        assert_eq!((v.host.as_str(), v.port), ("[2001:db8::1]", Some(5070)));
        assert_eq!(param(&v.params, "rport"), Some(None));
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
    }

    #[test]
    fn cseq_shapes() {
        assert_eq!(CSeq::parse("0009   INVITE").unwrap().seq, 9);
        assert!(CSeq::check_shape("36893488147419103232 REGISTER").is_ok());
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::check_shape("abc INVITE").is_err());
    }

    #[test]
    fn uri_parts() {
        assert_eq!(
            uri_user("sip:1001@example.com:5060;transport=udp").as_deref(),
            Some("1001")
        );
        assert_eq!(uri_user("sip:%75ser@x").as_deref(), Some("user"));
        assert_eq!(
            uri_host("sip:1001@Example.COM:5060;x").as_deref(),
            Some("example.com")
        );
        assert_eq!(uri_host("sip:[::1]:5060").as_deref(), Some("::1"));
        assert_eq!(
            uri_user("tel:+8613800138000;phone-context=x").as_deref(),
            Some("+8613800138000")
        );
    }
}
